"""Head-to-head comparison of searchers on one Problem and budget, over several seeds.

The rules, the same for every searcher: hardware cost is free (the table is known, as in APQ), so
every searcher starts from feasible candidates and may re-draw infeasible ones without paying; the
budget counts predictor evaluations of *distinct networks* (``Run``).

Yardsticks: hypervolume of the feasible (latency, -accuracy) front against one fixed reference point
shared by all searchers; the best accuracy under several latency budgets; evaluations needed to reach
95% of the best hypervolume any run reached; wall time. Predicted scores rank; with ``verify_top=K``
the best predicted candidate under each of K cost budgets along each run's front (``budget_picks``) is
measured on the supernet, and *measured* scores
(hypervolume, best accuracy under each budget with its standard error) decide, with a paired
verdict per pair of searchers over the seeds (:mod:`apqopt.search.verdict`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from pymoo.indicators.hv import HV
from tqdm import tqdm

from apqopt.errors import ConfigError
from apqopt.fileio import atomic_save, atomic_write
from apqopt.record import StudyRecord, Verified, compare_attrs, study_record
from apqopt.search import make_searcher
from apqopt.search.base import SearchResult
from apqopt.search.pareto import budget_picks
from apqopt.search.problem import Evaluation, Problem
from apqopt.search.verdict import Verdict, all_verdicts
from apqopt.studies import (
    check_study_name,
    front_rows,
    load_history,
    open_storage,
    record,
    run_settings,
    settings_digest,
)
from apqopt.supernet.mqe import with_measured_sensitivity
from apqopt.verify import IMAGES, verify

log = logging.getLogger(__name__)
CURVE_POINTS = 20
RULES = (
    "Rules, the same for every searcher: hardware cost is free (the table is known), so every searcher starts "
    "from feasible candidates and may re-draw infeasible ones without paying; the budget counts predictor "
    "evaluations of distinct networks (a network seen before costs nothing; dormant genes do not make a new "
    "network)."
)


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
class Measured:
    """A run's verified candidates: measured hypervolume, best measured accuracy under each budget with
    its standard error, and the predictor's mean absolute error on them."""

    n: int
    hv: float
    best_under: dict[str, tuple[float, float] | None]  # budget -> (accuracy, stderr)
    mae: float
    rows: list[int]
    measured: list[float]
    stderr: list[float]


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
    distinct: int = 0
    requested: int = 0
    stopped_early: bool = False
    measured: Measured | None = None


@dataclass
class CompareReport:
    space: str
    budget: int
    constraints: dict[str, float]
    reference: tuple[float, float]
    latency_budgets: list[float]
    runs: list[RunSummary] = field(default_factory=list)
    target_hv: float = 0.0
    verify_images: str = "val"  # a key of apqopt.verify.IMAGES: what the measured scores were measured on

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
            entry["distinct_min"] = min(r.distinct for r in rs)
            entry["stopped_early"] = sum(r.stopped_early for r in rs)
            ms = [r.measured for r in rs if r.measured is not None]
            if ms:
                mhv = np.array([m.hv for m in ms])
                entry["measured_hv_mean"] = float(mhv.mean())
                entry["measured_hv_sd"] = float(mhv.std(ddof=1)) if len(ms) > 1 else 0.0
                entry["measured_mae"] = float(np.mean([m.mae for m in ms]))
                entry["measured_n"] = int(sum(m.n for m in ms))
                for b in self.latency_budgets:
                    vals = [m.best_under[f"{b:g}"] for m in ms if m.best_under.get(f"{b:g}") is not None]
                    acc = np.array([v[0] for v in vals])  # type: ignore[index]
                    entry[f"measured_best@{b:g}ms"] = (
                        None
                        if not len(acc)
                        else (
                            float(acc.mean()),
                            float(acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else float(vals[0][1]),  # type: ignore[index]
                            len(acc),
                        )
                    )
            out[name] = entry
        return out

    @property
    def measured(self) -> bool:
        return bool(self.runs) and all(r.measured is not None for r in self.runs)

    def verdicts(self) -> list[Verdict]:
        """Pairwise verdicts on measured hypervolume when every run was verified, else on predicted."""
        key = "measured_hv_mean" if self.measured else "hv_mean"
        order = sorted(self.summary().items(), key=lambda kv: -kv[1][key])
        by: dict[str, dict[int, float]] = {}
        for name, _ in order:
            by[name] = {
                r.seed: (r.measured.hv if self.measured and r.measured is not None else r.hv)
                for r in self.runs
                if r.searcher == name
            }
        return all_verdicts(by, "measured HV" if self.measured else "predicted HV")

    def markdown(self) -> str:
        summ = self.summary()
        cols = [
            "searcher",
            "HV (mean ± sd)",
            *[f"best acc ≤{b:g} ms" for b in self.latency_budgets],
            "evals to target",
            "distinct (min)",
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
                f"{e['distinct_min']}" + (f" ({e['stopped_early']} stopped early)" if e["stopped_early"] else ""),
                f"{e['wall_s_mean']:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "*evals to target*: the median number of evaluated distinct networks after which a run's predicted "
            "hypervolume first reached 95% of the best final hypervolume of any run (in parentheses: runs that "
            "reached it); read at 20 evenly spaced checkpoints.",
        ]
        if any(r.measured is not None for r in self.runs):
            mcols = [
                "searcher",
                "measured HV (mean ± sd)",
                *[f"measured best ≤{b:g} ms (mean ± SE, runs)" for b in self.latency_budgets],
                "MAE pred. vs measured (points)",
                "measured",
            ]
            split, n = IMAGES[self.verify_images]
            lines += ["", f"Measured on the supernet (the scores that decide; {n:,} {split} images):", ""]
            lines += ["| " + " | ".join(mcols) + " |", "|" + "---|" * len(mcols)]
            for name, e in sorted(summ.items(), key=lambda kv: -kv[1].get("measured_hv_mean", -1)):
                if "measured_hv_mean" not in e:
                    continue
                cells = [name, f"{e['measured_hv_mean']:.5f} ± {e['measured_hv_sd']:.5f}"]
                for b in self.latency_budgets:
                    v = e[f"measured_best@{b:g}ms"]
                    cells.append("—" if v is None else f"{100 * v[0]:.2f} ± {100 * v[1]:.2f} % ({v[2]})")
                cells += [f"{100 * e['measured_mae']:.2f}", str(e["measured_n"])]
                lines.append("| " + " | ".join(cells) + " |")
        verdicts = self.verdicts()
        if verdicts:
            lines += ["", f"Verdicts ({verdicts[0].metric}):", ""]
            lines += [f"- {v.line()}" for v in verdicts]
        return "\n".join(lines)

    @classmethod
    def from_json(cls, text: str) -> CompareReport:
        """A report back from its ``compare.json`` (to re-render it, or to read it elsewhere)."""
        d = json.loads(text)
        runs = []
        for r in d["runs"]:
            m = r.pop("measured", None)
            run = RunSummary(**{**r, "hv_curve": [tuple(c) for c in r["hv_curve"]]})
            if m is not None:
                m["best_under"] = {k: None if v is None else tuple(v) for k, v in m["best_under"].items()}
                run.measured = Measured(**m)
            runs.append(run)
        return cls(
            d["space"],
            d["budget"],
            d["constraints"],
            tuple(d["reference"]),
            d["latency_budgets"],
            runs,
            d["target_hv"],
            d.get("verify_images", "val"),  # reports written before the choice measured on val
        )

    @classmethod
    def from_studies(cls, storage: str, tags: list[str], target_fraction: float = 0.95) -> CompareReport:
        """A report rebuilt from the studies that ``compare`` recorded under ``tags`` (later tags win where a
        searcher and seed ran under several, e.g. a part run again): everything a run scores is kept in
        its study (hypervolume curve, reference point, budgets, measured candidates)."""

        store = open_storage(storage, create=False)
        picked: dict[tuple[str, int], optuna.Study] = {}
        meta: StudyRecord | None = None
        for tag in tags:
            for summary in optuna.get_all_study_summaries(store):
                a = study_record(summary)
                if a.compare_tag != tag:
                    continue
                if a.state(summary.n_trials) != "complete":
                    log.warning("study '%s' was interrupted; left out (rerun its compare)", summary.study_name)
                    continue
                picked[(str(a.searcher), int(a.seed or 0))] = optuna.load_study(
                    study_name=summary.study_name, storage=store
                )
                meta = a
        if not picked or meta is None:
            raise ConfigError(f"no studies recorded by compare under {tags} in {storage}")
        budgets = meta.latency_budgets
        ref = meta.reference_point
        report = cls(
            str(meta.space_name),
            int(meta.budget or 0),
            meta.constraints,
            (ref[0], ref[1]),
            budgets,
            verify_images=meta.verify_images,
        )
        for study in picked.values():
            report.runs.append(run_from_study(study, budgets)[0])
        order = {n: i for i, n in enumerate(dict.fromkeys(n for n, _ in picked))}
        report.runs.sort(key=lambda r: (order[r.searcher], r.seed))
        report.set_target(target_fraction)
        return report

    def set_target(self, fraction: float) -> None:
        """Target hypervolume = ``fraction`` of the best final one; each run's evaluations to reach it."""
        self.target_hv = fraction * max(r.hv for r in self.runs)
        for r in self.runs:
            r.evals_to_target = next((c for c, hv in r.hv_curve if hv >= self.target_hv), None)

    def to_json(self) -> str:
        verdicts = [{**asdict(v), "line": v.line()} for v in self.verdicts()]
        return json.dumps({**asdict(self), "summary": self.summary(), "verdicts": verdicts}, indent=2, default=float)


def run_from_study(study: optuna.Study, budgets: list[float]) -> tuple[RunSummary, SearchResult]:
    """A compare run read back from its recorded study: its scores (kept in the study's attrs) and its
    result with the full history, as if it had just run."""

    a = study_record(study)
    ev = load_history(study)
    run = RunSummary(
        str(a.searcher),
        int(a.seed or 0),
        float(a.hypervolume or 0.0),
        a.hv_curve,
        best_under(ev, budgets),
        float(a.wall_s or 0.0),
        float(a.eval_s or 0.0),
        study=study.study_name,
        distinct=int(a.evaluated or 0),
        requested=int(a.requested or 0),
        stopped_early=a.stopped_early,
    )
    verified = a.verified
    if verified:
        nums = sorted(verified)
        acc = np.array([verified[k].measured_accuracy for k in nums])
        se = np.array([verified[k].stderr for k in nums])
        pred = np.array([verified[k].predicted_accuracy for k in nums])
        lat = np.array([verified[k].latency_ms for k in nums])
        run.measured = Measured(
            len(nums),
            float(a.measured_hypervolume or 0.0),
            measured_best_under(acc, se, lat, budgets),
            float(np.mean(np.abs(pred - acc))),
            nums,
            acc.tolist(),
            se.tolist(),
        )
    notes = {"distinct": run.distinct, "requested": run.requested, "stopped_early": run.stopped_early}
    res = SearchResult(
        run.searcher, run.seed, dict(a.attrs.get("params", {})), ev, run.wall_s, run.eval_s, int(a.budget or 0), notes
    )
    return run, res


class MeasureOnce:
    """A measurer that measures each network once per comparison (identity: the canonical gene row, as
    ``Run`` counts networks): seeds of one searcher, or two searchers, often pick the same network, and
    a report that measured it twice would count one network as two pieces of evidence and pay twice."""

    def __init__(self, measurer: Any, space: Any) -> None:
        self.measurer, self.space = measurer, space
        self.known: dict[bytes, tuple[float, float]] = {}
        self.calls = 0  # networks actually measured

    def _keys(self, genes: np.ndarray) -> list[bytes]:
        return [r.tobytes() for r in self.space.canonical(np.asarray(genes)).astype(np.int64)]

    def __call__(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = self._keys(genes)
        new = list(dict.fromkeys(k for k in keys if k not in self.known))
        if new:
            first = [keys.index(k) for k in new]
            acc, se = self.measurer(np.asarray(genes)[first])
            self.calls += len(new)
            for k, a, e in zip(new, np.asarray(acc, dtype=np.float64), np.asarray(se, dtype=np.float64)):
                self.known[k] = (float(a), float(e))
        return np.array([self.known[k][0] for k in keys]), np.array([self.known[k][1] for k in keys])


def measure_run(
    ev: Evaluation, k: int, measurer: Any, ref: tuple[float, float], latency_budgets: list[float]
) -> Measured:
    """Measure the best predicted candidate under each of k latency budgets along a run's front
    (:func:`~apqopt.search.pareto.budget_picks`); score them as the predictions are scored (same
    reference point), from measured accuracy."""
    rows = budget_picks(ev.accuracy, ev.latency, ev.feasible, k)
    if not len(rows):
        return Measured(0, 0.0, {f"{b:g}": None for b in latency_budgets}, float("nan"), [], [], [])
    acc, se = measurer(ev.genes[rows])
    acc, se = np.asarray(acc, dtype=np.float64), np.asarray(se, dtype=np.float64)
    sub = Evaluation(ev.genes[rows], acc, ev.latency[rows], ev.energy[rows], ev.violation[rows])
    best = measured_best_under(acc, se, sub.latency, latency_budgets)
    mae = float(np.mean(np.abs(ev.accuracy[rows] - acc)))
    return Measured(len(rows), hypervolume(sub, ref), best, mae, rows.tolist(), acc.tolist(), se.tolist())


def measured_best_under(
    acc: np.ndarray, se: np.ndarray, latency: np.ndarray, budgets: list[float]
) -> dict[str, tuple[float, float] | None]:
    """Per latency budget, the best measured accuracy among candidates within it, with its standard error."""
    best: dict[str, tuple[float, float] | None] = {}
    for b in budgets:
        ok = np.flatnonzero(latency <= b)
        best[f"{b:g}"] = None if not len(ok) else (float(acc[ok].max()), float(se[ok][np.argmax(acc[ok])]))
    return best


def supernet_measurer(supernet: Any, cfg: Any = None, progress: bool = False) -> Any:
    """Measured accuracy and standard error of gene rows: by default quantized under their own policy,
    the fixed fine-tune, val accuracy (``apqopt.verify.verify``; ``cfg``: a ``CollectConfig``)."""

    def measure(genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ver = verify(supernet, genes, np.zeros(len(genes)), cfg, progress=progress)
        return ver.measured, ver.stderr

    return measure


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
    verify_top: int = 0,
    measurer: Any = None,
    overwrite: bool = False,
    verify_images: str = "val",
) -> tuple[CompareReport, list[SearchResult]]:
    """Run every searcher x seed on ``problem`` with ``budget`` distinct networks each; optionally record
    each run, and with ``verify_top=K`` measure K candidates along each run's front with ``measurer``
    (gene rows -> (accuracy, stderr); e.g. :func:`supernet_measurer`). ``searcher_params``: per searcher
    name, constructor parameters (e.g. ``{"evolution": {"population": 50}}``). ``verify_images``: what the
    ``measurer`` measures on (a key of :data:`apqopt.verify.IMAGES`), kept in the studies and the report.

    Resumable: with a ``storage``, a run already recorded there whole with the same settings is read
    back instead of run again, and an interrupted one is replaced; a study of that name holding
    anything else is refused before any search work (``overwrite=True`` replaces it)."""

    check_compare_args(searchers, seeds, verify_top, measurer, searcher_params)
    if verify_images not in IMAGES:
        raise ConfigError(f"verify_images must be one of {sorted(IMAGES)}, got {verify_images!r}")
    searcher_params = searcher_params or {}
    ref = reference_point(problem)
    if latency_budgets is None:
        lo = problem.min_cost()["latency"]
        latency_budgets = [float(f"{lo + (ref[0] - lo) * f:.3g}") for f in (0.25, 0.5, 0.75)]
    store = open_storage(storage) if storage else None
    once = MeasureOnce(measurer, problem.space) if verify_top else None
    plan = []
    for name in searchers:  # every study name is checked before any search work
        for seed in seeds:
            searcher = with_measured_sensitivity(make_searcher(name, **{**searcher_params.get(name, {}), "seed": seed}))
            study_name = f"{tag}-{name}-{problem.space.name}-seed{seed}"
            settings = run_settings(
                problem,
                name,
                searcher.recorded_params(),
                budget,
                predictor=predictor,
                compare=tag,
                latency_budgets=latency_budgets,
                verify_top=verify_top,
                **({"verify_images": verify_images} if verify_top and verify_images != "val" else {}),
            )
            action = "new"
            if store is not None:
                action = check_study_name(store, study_name, settings_digest(settings), overwrite, str(storage))
            plan.append((searcher, study_name, settings, action))
    report = CompareReport(
        problem.space.name, budget, dict(problem.constraints), ref, latency_budgets, verify_images=verify_images
    )
    results = []
    checkpoints = np.linspace(budget / CURVE_POINTS, budget, CURVE_POINTS).astype(int)
    bar = tqdm(total=len(plan), desc="compare", disable=not progress)
    for searcher, study_name, settings, action in plan:
        if action == "reuse":
            run, res = run_from_study(optuna.load_study(study_name=study_name, storage=store), latency_budgets)
            report.runs.append(run)
            results.append(res)
            bar.update(1)
            log.info("study '%s': recorded whole before, read back", study_name)
            continue
        res = searcher.run(problem, budget, progress=progress)  # a bar per run, under the comparison's
        ev = res.evaluated
        curve = [(int(c), hypervolume(ev, ref, int(c))) for c in checkpoints]
        run = RunSummary(
            searcher.name,
            searcher.seed,
            curve[-1][1],
            curve,
            best_under(ev, latency_budgets),
            round(res.wall_s, 3),  # as the study keeps it: a report read back from studies is the same
            round(res.eval_s, 3),
            distinct=int(res.notes.get("distinct", len(ev))),
            requested=int(res.notes.get("requested", len(ev))),
            stopped_early=bool(res.notes.get("stopped_early", False)),
        )
        verified: dict[int, Verified] = {}
        if verify_top:
            run.measured = m = measure_run(ev, verify_top, once, ref, latency_budgets)
            verified = {
                i: Verified(a, e, float(ev.accuracy[i]), float(ev.latency[i]))
                for i, a, e in zip(m.rows, m.measured, m.stderr)
            }
        if storage:
            attrs = compare_attrs(
                tag,
                run.hv,
                ref,
                curve,
                latency_budgets,
                None if run.measured is None else run.measured.hv,
                verify_images,
            )
            run.study = record(
                res,
                problem,
                storage,
                study_name,
                attrs=attrs,
                predictor=predictor,
                verified_rows=verified,
                settings=settings,
                overwrite=overwrite,
            ).study_name
        report.runs.append(run)
        results.append(res)
        bar.update(1)
    bar.close()
    report.set_target(target_fraction)
    return report, results


def check_compare_args(
    searchers: list[str],
    seeds: list[int],
    verify_top: int = 0,
    measurer: Any = None,
    searcher_params: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Everything about a comparison that can be wrong, checked before any work (the CLI calls it first)."""

    if not searchers or len(set(searchers)) != len(searchers):
        raise ConfigError(f"searchers must be distinct names, got {searchers}")
    for name in searchers:  # unknown names or parameters
        make_searcher(name, **(searcher_params or {}).get(name, {}))
    if not seeds or len(set(seeds)) != len(seeds) or any(isinstance(x, bool) or x < 0 for x in seeds):
        raise ConfigError(f"seeds must be distinct non-negative integers, got {seeds}")
    if verify_top < 0:
        raise ConfigError(f"verify_top must be 0 or more candidates per run, got {verify_top}")
    if verify_top and measurer is None:
        raise ConfigError("verify_top needs a measurer (e.g. supernet_measurer(load_supernet(path)))")


REPORT_FILES = ("compare.md", "compare.json", "hv_curves.png", "fronts.png")


def check_report_dir(
    out_dir: str | Path,
    space: str,
    budget: int,
    constraints: dict[str, float],
    runs: list[tuple[str, int]],
    overwrite: bool = False,
) -> Path:
    """The report folder, checked before any work: one holding another comparison's report (other space,
    budget, limits, searchers or seeds), or files of the report's names that are not one, is kept unless
    ``overwrite``; the same comparison run again (a rerun, a resume) may rewrite its own report."""
    out = Path(out_dir)
    if overwrite or not any((out / n).exists() for n in REPORT_FILES):
        return out
    try:
        old = json.loads((out / "compare.json").read_text())
        same = (
            old["space"],
            old["budget"],
            old["constraints"],
            sorted((r["searcher"], r["seed"]) for r in old["runs"]),
        )
        ok = same == (space, budget, dict(constraints), sorted((s, int(k)) for s, k in runs))
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(
            f"--out: {out} holds another comparison's report; pass --overwrite to replace it, or another --out"
        )
    return out


def write_report(
    report: CompareReport, results: list[SearchResult], out_dir: str | Path, overwrite: bool = False
) -> list[Path]:
    """compare.md, compare.json, hv_curves.png and fronts.png in ``out_dir``. A folder holding the report of
    another comparison (or files of those names that are not a report) is kept unless ``overwrite``; the
    same comparison run again rewrites its own report."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend and global state stay untouched

    runs = [(r.searcher, r.seed) for r in report.runs]
    out = check_report_dir(out_dir, report.space, report.budget, report.constraints, runs, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(
        out / "compare.md",
        f"# compare on {report.space}\n\nbudget {report.budget} distinct networks per run, constraints "
        f"{report.constraints}, HV reference (latency, -acc) = {report.reference}; target HV = "
        f"{report.target_hv:.5f}\n\n{RULES}\n\n" + report.markdown() + "\n",
    )
    atomic_write(out / "compare.json", report.to_json())
    names = list(dict.fromkeys(r.searcher for r in report.runs))
    colour = {n: f"C{i % 10}" for i, n in enumerate(names)}  # one colour per searcher in both plots
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    x = [c for c, _ in report.runs[0].hv_curve]
    for name in names:
        curves = np.array([[hv for _, hv in r.hv_curve] for r in report.runs if r.searcher == name])
        m, sd = curves.mean(0), curves.std(0)
        ax.plot(x, m, label=name, color=colour[name])
        ax.fill_between(x, m - sd, m + sd, alpha=0.2, color=colour[name])
    ax.axhline(report.target_hv, color="grey", lw=0.8, ls=":", label="target (95% of best)")
    ax.set_title(f"{report.space}: predicted hypervolume (mean ± sd over seeds)", fontsize=9)
    ax.set_xlabel("evaluated distinct networks")
    ax.set_ylabel("hypervolume (latency, -accuracy)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save(out / "hv_curves.png", lambda fh: fig.savefig(fh, dpi=110, format="png"))
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for name in names:
        run = max((r for r in report.runs if r.searcher == name), key=lambda r: r.hv)
        res = next(x for x in results if x.searcher == name and x.seed == run.seed)
        ev = res.evaluated
        idx = front_rows(ev)
        idx = idx[np.argsort(ev.latency[idx])]
        ax.step(ev.latency[idx], ev.accuracy[idx], where="post", color=colour[name], label=f"{name} (seed {run.seed})")
        if run.measured is not None and run.measured.n:
            rows = np.array(run.measured.rows)
            ax.errorbar(
                ev.latency[rows],
                run.measured.measured,
                yerr=run.measured.stderr,
                fmt="x",
                color=colour[name],
                capsize=2,
            )
    if "latency" in report.constraints:
        ax.axvline(report.constraints["latency"], color="red", lw=0.8, ls="--", label="latency limit")
    ax.set_title(f"{report.space}: best run's front per searcher (line predicted, x measured ± SE)", fontsize=9)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save(out / "fronts.png", lambda fh: fig.savefig(fh, dpi=110, format="png"))
    return [out / n for n in REPORT_FILES]
