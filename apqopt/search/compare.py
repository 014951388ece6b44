"""Head-to-head comparison of searchers on one Problem and budget, over several seeds.

Yardsticks (DESIGN: "Yardsticks for comparing searchers"): hypervolume of the feasible
(latency, -accuracy) front against one fixed reference point shared by all searchers; the best
accuracy under several latency budgets; evaluations needed to reach a target hypervolume; wall time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.indicators.hv import HV
from tqdm import tqdm

from apqopt.search.base import SearchResult
from apqopt.search.problem import Evaluation, Problem

CURVE_POINTS = 20


def reference_point(problem: Problem, samples: int = 2000) -> tuple[float, float]:
    """(latency, -accuracy) reference: the latency limit (or the largest candidate's latency) and the
    worst predicted accuracy of a fixed random sample. Fixed per problem, shared by every searcher."""
    sp = problem.space
    lat_ref = problem.constraints.get("latency")
    if lat_ref is None:
        lat_ref = float(problem.lut.price(sp, sp.from_candidates([sp.uniform()]))[0][0])
    acc = problem.predict(sp.sample(samples, 12345))
    return float(lat_ref), float(-acc.min())


def hypervolume(ev: Evaluation, ref: tuple[float, float], upto: int | None = None) -> float:
    n = len(ev) if upto is None else upto
    feas = ev.feasible[:n]
    F = np.column_stack([ev.latency[:n][feas], -ev.accuracy[:n][feas]])
    F = F[np.all(np.array(ref) > F, axis=1)]
    return float(HV(ref_point=np.array(ref))(F)) if len(F) else 0.0


def best_under(ev: Evaluation, budgets: list[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for b in budgets:
        ok = ev.feasible & (ev.latency <= b)
        out[f"{b:g}"] = float(ev.accuracy[ok].max()) if ok.any() else None
    return out


@dataclass
class RunSummary:
    searcher: str
    seed: int
    hv: float
    hv_curve: list[tuple[int, float]]
    best_under: dict[str, float | None]
    wall_s: float
    eval_s: float
    evals_to_target: int | None = None
    study: str | None = None


@dataclass
class CompareReport:
    space: str
    budget: int
    constraints: dict[str, float]
    reference: tuple[float, float]
    latency_budgets: list[float]
    runs: list[RunSummary] = field(default_factory=list)
    target_hv: float = 0.0

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(r.searcher for r in self.runs):
            rs = [r for r in self.runs if r.searcher == name]
            hv = np.array([r.hv for r in rs])
            reach = [r.evals_to_target for r in rs if r.evals_to_target is not None]
            entry: dict[str, Any] = {
                "seeds": len(rs),
                "hv_mean": float(hv.mean()),
                "hv_sd": float(hv.std(ddof=1)) if len(rs) > 1 else 0.0,
                "wall_s_mean": float(np.mean([r.wall_s for r in rs])),
                "evals_to_target_median": float(np.median(reach)) if reach else None,
                "reached_target": f"{len(reach)}/{len(rs)}",
            }
            for b in self.latency_budgets:
                vals = [r.best_under[f"{b:g}"] for r in rs if r.best_under[f"{b:g}"] is not None]
                entry[f"best_acc@{b:g}ms"] = float(np.mean(vals)) if vals else None
            out[name] = entry
        return out

    def markdown(self) -> str:
        summ = self.summary()
        cols = [
            "searcher",
            "HV (mean ± sd)",
            *[f"best acc ≤{b:g} ms" for b in self.latency_budgets],
            "evals to target",
            "wall s",
        ]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for name, e in sorted(summ.items(), key=lambda kv: -kv[1]["hv_mean"]):
            cells = [name, f"{e['hv_mean']:.5f} ± {e['hv_sd']:.5f}"]
            cells += [
                "—" if e[f"best_acc@{b:g}ms"] is None else f"{e[f'best_acc@{b:g}ms']:.4f}" for b in self.latency_budgets
            ]
            ett = e["evals_to_target_median"]
            cells += [
                f"{ett:.0f} ({e['reached_target']})" if ett is not None else f"— ({e['reached_target']})",
                f"{e['wall_s_mean']:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "summary": self.summary()}, indent=2, default=float)


def compare(
    problem: Problem,
    searchers: list[str],
    seeds: list[int],
    budget: int,
    latency_budgets: list[float] | None = None,
    target_fraction: float = 0.95,
    storage: str | None = None,
    tag: str = "compare",
    progress: bool = True,
    searcher_params: dict[str, dict[str, Any]] | None = None,
    predictor: str = "",
) -> tuple[CompareReport, list[SearchResult]]:
    """Run every searcher x seed on ``problem`` with ``budget`` evaluations each; optionally record each
    run. ``searcher_params``: per searcher name, constructor parameters (e.g. ``{"evolution": {"population": 50}}``)."""
    from apqopt.search import make_searcher

    searcher_params = searcher_params or {}
    for name in searchers:  # unknown names or parameters fail before any search work
        make_searcher(name, **searcher_params.get(name, {}))
    ref = reference_point(problem)
    if latency_budgets is None:
        lo = problem.min_cost()["latency"]
        latency_budgets = [float(f"{lo + (ref[0] - lo) * f:.3g}") for f in (0.25, 0.5, 0.75)]
    report = CompareReport(problem.space.name, budget, dict(problem.constraints), ref, latency_budgets)
    results = []
    checkpoints = np.linspace(budget / CURVE_POINTS, budget, CURVE_POINTS).astype(int)
    bar = tqdm(total=len(searchers) * len(seeds), desc="compare", disable=not progress)
    for name in searchers:
        for seed in seeds:
            res = make_searcher(name, **{**searcher_params.get(name, {}), "seed": seed}).run(problem, budget)
            ev = res.evaluated
            curve = [(int(c), hypervolume(ev, ref, int(c))) for c in checkpoints]
            run = RunSummary(name, seed, curve[-1][1], curve, best_under(ev, latency_budgets), res.wall_s, res.eval_s)
            if storage:
                from apqopt.studies import record

                run.study = record(
                    res,
                    problem,
                    storage,
                    f"{tag}-{name}-{problem.space.name}-seed{seed}",
                    attrs={"compare": tag, "hypervolume": run.hv, "reference_point": list(ref), "hv_curve": curve},
                    predictor=predictor,
                ).study_name
            report.runs.append(run)
            results.append(res)
            bar.update(1)
    bar.close()
    report.target_hv = target_fraction * max(r.hv for r in report.runs)
    for r in report.runs:
        r.evals_to_target = next((c for c, hv in r.hv_curve if hv >= report.target_hv), None)
    return report, results


def write_report(report: CompareReport, results: list[SearchResult], out_dir: str | Path) -> list[Path]:
    """compare.md, compare.json, hv_curves.png and fronts.png in ``out_dir``."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend and global state stay untouched

    from apqopt.studies import front_rows

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(
        f"# compare on {report.space}\n\nbudget {report.budget} evaluations, constraints {report.constraints}, "
        f"HV reference (latency, -acc) = {report.reference}; target HV = {report.target_hv:.5f}\n\n"
        + report.markdown()
        + "\n"
    )
    (out / "compare.json").write_text(report.to_json())
    names = list(dict.fromkeys(r.searcher for r in report.runs))
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name in names:
        curves = np.array([[hv for _, hv in r.hv_curve] for r in report.runs if r.searcher == name])
        x = [c for c, _ in report.runs[0].hv_curve]
        m, sd = curves.mean(0), curves.std(0)
        ax.plot(x, m, label=name)
        ax.fill_between(x, m - sd, m + sd, alpha=0.2)
    ax.set_xlabel("evaluated candidates")
    ax.set_ylabel("hypervolume")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "hv_curves.png", dpi=110)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name in names:
        res = next(r for r in results if r.searcher == name)
        ev = res.evaluated
        idx = front_rows(ev)
        idx = idx[np.argsort(ev.latency[idx])]
        ax.step(ev.latency[idx], ev.accuracy[idx], where="post", label=f"{name} (seed {res.seed})")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("predicted accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fronts.png", dpi=110)
    return [out / n for n in ("compare.md", "compare.json", "hv_curves.png", "fronts.png")]
