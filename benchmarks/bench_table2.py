"""APQ's Table 2 on fmnist, measured: joint search against staged pipelines and a fixed architecture.

At three latency budgets and one energy budget, every method picks one network; the network is then
measured on the supernet (quantized under its policy, the fixed 40-step fine-tune, 5,000 val images:
`apqopt.supernet.collect.measure`, the datasets' own). Methods:

- fixed: a MobileNetV2-like architecture (depths 2/3/4/3/3, kernel 3, widest middle) at uniform
  W8A8 / W6A6 / W4A4, measured once (no search; a row is marked where it breaks the budget);
- staged ("OFA + HAQ" in APQ's Table 2, and its OHQ variant): APQ's evolution over architectures with the
  full-precision predictor at 8 bits, under the budget times SHARE (the median ratio of an
  architecture's all-8-bit to its all-6-bit cost on the table: the architecture is chosen for the
  quantized budget), then HAQ's agent (200 episodes, 20 DDPG updates each) or OHQ (MQE on 64 synthetic
  images + the exact ILP at the budget) allocates that architecture's bits under the budget;
- joint: APQ's evolution and pymoo's NSGA-II with the quantization-aware predictor, and ``joint-ilp``
  (evolution over architectures, bits by the exact ILP on the shipped sensitivity table);
- the same three joint searches with the predictor after 3 ``apqopt refine`` rounds (``--refined``).

Every search gets the same number of distinct networks (``--evaluations``) and the same Problem rules;
each (budget, method) runs ``--seeds`` seeds, so the table gives mean +- SE over seeds of the measured
accuracy. Rows are appended to results/table2.rows.jsonl as they finish (resumable: rerun the same
command). Two processes can share the work: ``--budgets`` picks budgets by index.

Scored again on images nothing chose with (#32): ``--test-images`` measures every distinct pick once more on
the 10,000 test images (no predictor record and no selection used them; same fine-tune seed), into
results/table2.test.jsonl (resumable), and the report adds the table on them: each distinct network counted
once per cell (two seeds that picked one network are one piece of evidence), and each joint method against
each staged one (not the best of six against the best of two).

With the predictor rebuilt on 2026-12-07 (#32), ``--rebuilt`` runs the three joint searches again with the
predictor shipped now (rows in results/table2_rebuilt.rows.jsonl, the same seeds and budgets), measures their
picks on val and on test, and reports them on the test images against the staged pipelines' picks above
(staged OHQ does not use the quantization-aware predictor; staged HAQ's rows are the old predictor's).

Run: python benchmarks/bench_table2.py [--seeds 3] [--evaluations 1000] [--budgets 0,1,2,3] [--threads 1]
     python benchmarks/bench_table2.py --rebuilt [--budgets 0,1] [--threads 1]   # then --rebuilt --test-images
     python benchmarks/bench_table2.py --test-images [--threads 1]   # the picks again, on test images
     python benchmarks/bench_table2.py --report      # the table from the rows written so far
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import MEASURE_SEED, RESULTS, measure_on_test, write

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.predictor import AccuracyPredictor
from apqopt.search import make_searcher
from apqopt.search.ilp import OperatorCosts, solve
from apqopt.search.problem import InfeasibleError, Problem
from apqopt.settings import mqe_cache_dir
from apqopt.shipped import predictor_path, supernet_path
from apqopt.space import Candidate
from apqopt.supernet.collect import CollectConfig, measure
from apqopt.supernet.data import accuracy_stderr
from apqopt.supernet.mqe import calibration_inputs, supernet_mqe
from apqopt.supernet.train import load_supernet

ROWS = RESULTS / "table2.rows.jsonl"
TEST_ROWS = RESULTS / "table2.test.jsonl"  # the picks measured again on the test images
REBUILT_ROWS = RESULTS / "table2_rebuilt.rows.jsonl"  # the joint searches with the rebuilt predictor
REBUILT_TEST_ROWS = RESULTS / "table2_rebuilt.test.jsonl"
BUDGETS = (("latency", 0.35), ("latency", 0.45), ("latency", 0.56), ("energy", 0.42))
FIXED = ("fixed-W8A8", "fixed-W6A6", "fixed-W4A4")
STAGED = ("staged-haq", "staged-ohq")
JOINT = ("evolution", "pymoo-nsga2", "joint-ilp")
REFINED = tuple(f"{m}+refine" for m in JOINT)
METHODS = (*FIXED, *STAGED, *JOINT, *REFINED)
REFINED_DEFAULT = RESULTS / "refine_fmnist" / "round-3" / "predictor.pt"
SP = get_space("fmnist")


def budget_label(budget: tuple[str, float]) -> str:
    name, limit = budget
    return f"{name} <= {limit} {'ms' if name == 'latency' else 'mJ'}"


def fixed_architecture(bits: int = 8) -> Candidate:
    return SP.uniform((2, 3, 4, 3, 3), kernel=3, middle=-1, bits=bits)


def share(lut: Any, name: str) -> float:
    """Median all-8-bit / all-6-bit cost ratio of random architectures: how much the 8-bit architecture
    search's budget is widened so that quantizing it lands on the budget."""
    genes = SP.sample(20000, np.random.default_rng(0))
    costs = []
    for bits in (2, 1):  # choice indices of 8 and 6 bits
        g = genes.copy()
        SP.block_genes(g)[:, :, 2:] = bits
        costs.append(lut.price(SP, g)[0 if name == "latency" else 1])
    return float(np.median(costs[0] / costs[1]))


def eight_bit_problem(pred: Any, lut: Any, name: str, limit: float) -> Problem:
    """The staged pipeline's first stage: architectures only, every bit gene fixed at 8."""
    fixed = np.full(SP.n_genes, -1, dtype=np.int64)
    for b in range(SP.n_blocks):
        for f in ("pw_w", "pw_a", "dw_w", "dw_a"):
            fixed[SP.block_gene(b, f)] = SP.bits.index(8)
    return Problem(SP, pred, lut, constraints={name: limit}, fixed=fixed)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lut = load_shipped("fmnist")
        self.quant = AccuracyPredictor.load(predictor_path("fmnist"), space="fmnist")
        self.fp = AccuracyPredictor.load(predictor_path("fmnist", "fp"), space="fmnist")
        refined = Path(args.refined)
        if not refined.exists() and not args.rebuilt:  # --rebuilt runs no refined search
            raise SystemExit(
                f"no refined predictor at {refined}: rebuild it with "
                "`apqopt refine --rounds 3 --out benchmarks/results/refine_fmnist` (no new measurements)"
            )
        self.refined = AccuracyPredictor.load(refined, space="fmnist") if refined.exists() else None
        self.net = load_supernet(supernet_path("fmnist"))
        self.cfg = CollectConfig(kind="quant", space="fmnist")
        self.rows_path = REBUILT_ROWS if args.rebuilt else ROWS
        self.rows = read_rows(self.rows_path)
        self.done = {(r["budget"], r["method"], r["seed"]) for r in self.rows}
        # one network, one number: picks the first run measured are not measured again
        known = [*read_rows(), *self.rows] if args.rebuilt else self.rows
        self.measured = {tuple(r["genes"]): (r["measured"], r["measure_s"]) for r in known if "measured" in r}

    def measure(self, genes: np.ndarray) -> tuple[float, float]:
        """(accuracy, seconds): a network measured before (by any method) is not measured again."""
        key = tuple(int(v) for v in genes)
        if key not in self.measured:
            t0 = time.perf_counter()
            acc = measure(self.net, SP.to_candidates(genes[None])[0], self.cfg, seed=MEASURE_SEED)
            self.measured[key] = (acc, time.perf_counter() - t0)
        return self.measured[key]

    def record(self, budget: tuple[str, float], method: str, seed: int, p: Problem, genes: Any, **kw: Any) -> None:
        if genes is None:
            rec = {"budget": budget_label(budget), "method": method, "seed": seed, "feasible": False}
            rec.update(threads=self.args.threads, **kw)
        else:
            genes = np.asarray(genes, dtype=np.int64)
            ev = p.evaluate(genes[None])
            acc, secs = self.measure(genes)
            rec = {
                "budget": budget_label(budget),
                "method": method,
                "seed": seed,
                "feasible": bool(ev.feasible[0]),
                "predicted": float(ev.accuracy[0]),
                "latency_ms": float(ev.latency[0]),
                "energy_mJ": float(ev.energy[0]),
                "measured": acc,
                "stderr": accuracy_stderr(acc, self.cfg.eval_images),
                "measure_s": round(secs, 1),
                "threads": self.args.threads,
                "genes": [int(v) for v in genes],
                **kw,
            }
        self.rows.append(rec)
        self.done.add((rec["budget"], method, seed))
        with self.rows_path.open("a") as fh:  # one short line per write: appends of two workers do not interleave
            fh.write(json.dumps(rec) + "\n")
        print({k: v for k, v in rec.items() if k != "genes"}, flush=True)

    def todo(self, budget: tuple[str, float], method: str, seed: int) -> bool:
        return (budget_label(budget), method, seed) not in self.done

    def run_budget(self, budget: tuple[str, float]) -> None:
        name, limit = budget
        problem = Problem(SP, self.quant, self.lut, constraints={name: limit})
        if self.args.rebuilt:  # only what the rebuilt predictor changes the search of
            for seed in range(self.args.seeds):
                for method in JOINT:
                    if self.todo(budget, method, seed):
                        self.joint(budget, method, seed, self.quant)
            return
        for bits, method in zip((8, 6, 4), FIXED):
            if self.todo(budget, method, 0):
                self.record(budget, method, 0, problem, SP.from_candidates([fixed_architecture(bits)])[0], search_s=0.0)
        for seed in range(self.args.seeds):
            if any(self.todo(budget, m, seed) for m in STAGED):
                self.staged(budget, seed)
            for method in (*JOINT, *REFINED):
                if self.todo(budget, method, seed):
                    self.joint(budget, method, seed, self.refined if method.endswith("+refine") else self.quant)

    def joint(self, budget: tuple[str, float], method: str, seed: int, pred: AccuracyPredictor) -> None:
        name, limit = budget
        p = Problem(SP, pred, self.lut, constraints={name: limit})
        res = make_searcher(method.removesuffix("+refine"), seed=seed).run(p, self.args.evaluations)
        i = res.best()
        # the searched problem's predictor scores it
        self.record(
            budget,
            method,
            seed,
            p,
            None if i < 0 else res.evaluated.genes[i],
            search_s=round(res.wall_s, 1),
            evaluations=len(res.evaluated),
        )

    def staged(self, budget: tuple[str, float], seed: int) -> None:
        name, limit = budget
        t0 = time.perf_counter()
        # the budget's share first; where that 8-bit architecture cannot be quantized into the budget at all
        # (on this table 4-bit layers save little energy), the budget itself: the staged pipeline always
        # gets a feasible architecture
        for s in (share(self.lut, name), 1.0):
            arch_p = eight_bit_problem(self.fp, self.lut, name, limit * s)
            res = make_searcher("evolution", seed=seed).run(arch_p, self.args.evaluations)
            i = res.best()
            arch = SP.to_candidates(res.evaluated.genes[i : i + 1])[0]
            try:
                p = Problem(SP, self.quant, self.lut, constraints={name: limit}).restricted_to(arch)
                break
            except InfeasibleError:
                continue
        arch_s = time.perf_counter() - t0
        extra = {"share": round(s, 4), "arch_search_s": round(arch_s, 1), "architecture": str(arch.depths)}
        if self.todo(budget, "staged-haq", seed):
            r = make_searcher("haq", seed=seed, updates_per_episode=20).run(p, 200)
            j = r.best()
            self.record(
                budget,
                "staged-haq",
                seed,
                p,
                None if j < 0 else r.evaluated.genes[j],
                search_s=round(arch_s + r.wall_s, 1),
                evaluations=len(res.evaluated) + len(r.evaluated),
                **extra,
            )
        if self.todo(budget, "staged-ohq", seed):
            t1 = time.perf_counter()
            x = calibration_inputs(self.net, "synthetic", 64, 0)
            sens = supernet_mqe(self.net, arch, x, cache_dir=mqe_cache_dir())
            costs = OperatorCosts.from_lut(arch, self.lut)
            genes = SP.from_candidates([costs.policy(solve(sens, costs, {name: limit}))])[0]
            self.record(
                budget,
                "staged-ohq",
                seed,
                p,
                genes,
                search_s=round(arch_s + time.perf_counter() - t1, 1),
                evaluations=len(res.evaluated) + 1,
                **extra,
            )


def read_rows(path: Path = ROWS) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill: that row is redone
            continue
    return out


def picks(path: Path) -> list[list[int]]:
    """The genes of every measured pick in a rows file (read by skipping torn lines: two runs append to it)."""
    return [r["genes"] for r in read_rows(path) if "measured" in r]


def mean_se(acc: np.ndarray, stderr: np.ndarray) -> float:
    """SE of a mean over picks: their spread, but never below what measurement noise alone gives (three
    seeds can agree by luck; each measurement's binomial SE is ~0.4 points)."""
    var = max(float(acc.var(ddof=1)) if len(acc) > 1 else 0.0, float(np.mean(stderr**2)))
    return float(np.sqrt(var / len(acc)))


def distinct_cells(rows: list[dict[str, Any]], on: dict[tuple[int, ...], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per budget and method, on the test images: mean ± SE (:func:`mean_se`) over the *distinct* networks
    its seeds picked."""
    out: dict[str, dict[str, Any]] = {}
    for b in (budget_label(x) for x in BUDGETS):
        out[b] = {}
        for m in METHODS:
            picks = {tuple(r["genes"]) for r in rows if r["budget"] == b and r["method"] == m and r.get("feasible")}
            got = [on[g] for g in picks if g in on]
            if not got or len(got) < len(picks):
                continue
            acc, meas = np.array([g["test"] for g in got]), np.array([g["stderr"] for g in got])
            seeds = sum(1 for r in rows if r["budget"] == b and r["method"] == m and r.get("feasible"))
            out[b][m] = {"n": len(acc), "seeds": seeds, "mean": float(acc.mean()), "se": mean_se(acc, meas)}
    return out


def each_against_each(cells: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every joint method against every staged one, per budget: difference ± SE (the two SEs combined);
    separated only beyond 1.96 SE (95%), otherwise not separable."""
    out: dict[str, list[dict[str, Any]]] = {}
    for b, c in cells.items():
        out[b] = []
        for j in (*JOINT, *REFINED):
            for st in STAGED:
                if j not in c or st not in c:
                    continue
                diff, se = c[j]["mean"] - c[st]["mean"], float(np.hypot(c[j]["se"], c[st]["se"]))
                word = "not separable" if abs(diff) <= 1.96 * se else ("joint ahead" if diff > 0 else "staged ahead")
                out[b].append({"joint": j, "staged": st, "diff": diff, "se": se, "verdict": word})
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per budget and method: measured mean, SE over seeds, n, mean cost, predicted mean, CPU seconds (a
    network is measured once: its time counts for the first row that picked it)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    first: set[tuple[int, ...]] = set()
    paid = []
    for r in rows:
        key = tuple(r.get("genes", ()))
        paid.append(bool(key) and key not in first)
        first.add(key)
    for r, p in zip(rows, paid):
        r["_paid"] = p
    for b in (budget_label(x) for x in BUDGETS):
        out[b] = {}
        for m in METHODS:
            rs = [r for r in rows if r["budget"] == b and r["method"] == m]
            ok = [r for r in rs if r.get("feasible") and "measured" in r]
            if not rs:
                continue
            acc = np.array([r["measured"] for r in ok])
            meas = np.array([r["stderr"] for r in ok])
            se = mean_se(acc, meas) if ok else 0.0
            out[b][m] = {
                "n": len(ok),
                "runs": len(rs),
                "mean": float(acc.mean()) if len(acc) else None,
                "se": se,
                "measurement_se": float(np.mean([r["stderr"] for r in ok])) if ok else None,
                "predicted": float(np.mean([r["predicted"] for r in ok])) if ok else None,
                "latency_ms": float(np.mean([r["latency_ms"] for r in ok])) if ok else None,
                "energy_mJ": float(np.mean([r["energy_mJ"] for r in ok])) if ok else None,
                "search_cpu_s": float(sum(r.get("search_s", 0.0) * r.get("threads", 1) for r in rs)),
                "measure_cpu_s": float(sum(r.get("measure_s", 0.0) * r.get("threads", 1) for r in rs if r["_paid"])),
            }
    return out


def verdicts(summ: dict[str, dict[str, dict[str, Any]]]) -> dict[str, str]:
    """Best joint method against best staged method per budget; a gap within one SE of the difference
    (the two seed-level SEs combined) is a tie and is called one."""
    out = {}
    for b, cells in summ.items():
        best = {}
        for group, names in (("joint", (*JOINT, *REFINED)), ("staged", STAGED)):
            have = [(cells[m]["mean"], m) for m in names if m in cells and cells[m]["mean"] is not None]
            if have:
                best[group] = max(have)[1]
        if len(best) < 2:
            continue
        j, s = cells[best["joint"]], cells[best["staged"]]
        diff, se = j["mean"] - s["mean"], float(np.hypot(j["se"], s["se"]))
        word = "tie (within one SE)" if abs(diff) <= se else ("joint ahead" if diff > 0 else "staged ahead")
        out[b] = (
            f"best joint {best['joint']} {100 * j['mean']:.2f} vs best staged {best['staged']} "
            f"{100 * s['mean']:.2f}: {100 * diff:+.2f} +- {100 * se:.2f} points, {word}"
        )
    return out


def report(args: argparse.Namespace) -> None:
    rows = read_rows()
    summ = summary(rows)
    labels = [budget_label(b) for b in BUDGETS]
    table = [["method", *labels, "search CPU-min", "measure CPU-min"]]
    for m in METHODS:
        cells, search, meas = [m], 0.0, 0.0
        for b in labels:
            c = summ.get(b, {}).get(m)
            if c is None:
                cells.append("")
                continue
            search += c["search_cpu_s"]
            meas += c["measure_cpu_s"]
            if c["mean"] is None:
                over = [r for r in rows if r["budget"] == b and r["method"] == m and "measured" in r]
                cost = [r["latency_ms" if b.startswith("latency") else "energy_mJ"] for r in over]
                cells.append(f"over budget ({100 * over[0]['measured']:.2f}; {cost[0]:.3f})" if over else "infeasible")
                continue
            cost = c["latency_ms"] if b.startswith("latency") else c["energy_mJ"]
            note = "" if c["n"] == c["runs"] else f", {c['runs'] - c['n']} infeasible"
            cells.append(f"{100 * c['mean']:.2f} ± {100 * c['se']:.2f} (n={c['n']}{note}; {cost:.3f})")
        table.append([*cells, f"{search / 60:.1f}", f"{meas / 60:.1f}"])
    v = verdicts(summ)
    notes = "\n".join(
        [
            "Cell: measured val accuracy, mean ± SE over seeds (n seeds; mean latency ms or energy mJ of the picks); "
            "SE = sqrt(max(seed variance, mean measurement variance) / n), so it never claims more precision than "
            "one measurement's binomial SE allows. Fixed rows: one network, its measurement's SE. "
            f"Each search: {args.evaluations} distinct networks; staged: 8-bit architecture search with the fp "
            "predictor under budget x share (share 1 where that architecture cannot be quantized into the budget), "
            "then HAQ (200 episodes) or OHQ (MQE + ILP). CPU-minutes = wall seconds "
            "x the torch threads of the process, summed over budgets and seeds (a network measured once counts "
            "once); not included: the predictors' "
            "training, the sensitivity table (joint-ilp; 744 s x 2 threads, once per supernet) and the 3 refine "
            "rounds (+refine rows; 24 measurements, 36 min x 2 cores, once).",
            "",
            *[f"- {b}: {t}" for b, t in v.items()],
        ]
    )
    for r in rows:
        r.pop("_paid", None)
    extra: dict[str, Any] = {}
    on_test = {tuple(r["genes"]): r for r in read_rows(TEST_ROWS)}
    if on_test:
        cells = distinct_cells(rows, on_test)
        versus = each_against_each(cells)
        extra = {"test_images": {"cells": cells, "each_against_each": versus}}
        table.append(["**on the 10,000 test images**", *["" for _ in labels], "", ""])
        for m in METHODS:
            row = [m]
            for b in labels:
                c = cells[b].get(m)
                seeds = "" if c is None or c["n"] == c["seeds"] else f" of {c['seeds']} picks"
                row.append("" if c is None else f"{100 * c['mean']:.2f} ± {100 * c['se']:.2f} (n={c['n']}{seeds})")
            table.append([*row, "", ""])
        lines = []
        for b, vs in versus.items():
            ahead = [f"{x['joint']} > {x['staged']} ({100 * x['diff']:+.2f} ± {100 * x['se']:.2f})" for x in vs
                     if x["verdict"] == "joint ahead"]  # fmt: skip
            behind = [f"{x['joint']} < {x['staged']} ({100 * x['diff']:+.2f} ± {100 * x['se']:.2f})" for x in vs
                      if x["verdict"] == "staged ahead"]  # fmt: skip
            rest = sum(x["verdict"] == "not separable" for x in vs)
            lines.append(
                f"- {b}, test images: {len(vs)} joint-staged pairs; joint ahead: {', '.join(ahead) or 'none'}; "
                f"staged ahead: {', '.join(behind) or 'none'}; not separable: {rest}"
            )
        notes += (
            "\n\nTest-image rows: every distinct pick measured again on the 10,000 test images (same fine-tune "
            "seed; `python benchmarks/bench_table2.py --test-images`), each distinct network counted once per cell "
            "(n = distinct networks; 'of k picks' where seeds picked the same one). Each joint method against each "
            "staged one, separated only beyond 1.96 SE of the difference:\n\n" + "\n".join(lines)
        )
    data = {"summary": summ, "verdicts": v, "rows": rows, "evaluations": args.evaluations, **extra}
    write("table2", data, table, notes)


def report_rebuilt() -> None:
    """The joint searches with the rebuilt predictor against the staged pipelines, on the test images."""
    old = [r for r in read_rows() if r["method"] in STAGED]
    new = read_rows(REBUILT_ROWS)
    on = {tuple(r["genes"]): r for r in (*read_rows(TEST_ROWS), *read_rows(REBUILT_TEST_ROWS))}
    cells = distinct_cells([*old, *new], on)
    versus = each_against_each(cells)
    labels = [budget_label(b) for b in BUDGETS]
    table = [["method", *labels]]
    for m in (*STAGED, *JOINT):
        row = [m + (" (rebuilt predictor)" if m in JOINT else "")]
        for b in labels:
            c = cells[b].get(m)
            seeds = "" if c is None or c["n"] == c["seeds"] else f" of {c['seeds']} picks"
            row.append("" if c is None else f"{100 * c['mean']:.2f} ± {100 * c['se']:.2f} (n={c['n']}{seeds})")
        table.append(row)
    lines = []
    for b, vs in versus.items():
        txt = [
            f"{x['joint']} vs {x['staged']} {100 * x['diff']:+.2f} ± {100 * x['se']:.2f} ({x['verdict']})" for x in vs
        ]
        lines.append(f"- {b}: " + "; ".join(txt))
    pred = {}
    for m in JOINT:
        rs = [r for r in new if r["method"] == m and r.get("feasible") and tuple(r["genes"]) in on]
        if rs:
            pred[m] = 100 * float(np.mean([r["predicted"] - r["measured"] for r in rs]))
    notes = (
        "Test-image accuracy % (mean ± SE over the distinct networks each method's 3 seeds picked; SE never below "
        "the measurements' own). Joint rows: `python benchmarks/bench_table2.py --rebuilt`, then `--rebuilt "
        "--test-images`, the predictor shipped since the 2026-12-07 rebuild; staged rows: the picks of the table2 "
        "run (staged OHQ never reads the quantization-aware predictor; staged HAQ's agent was rewarded by the old "
        "one). Each joint method against each staged one, separated beyond 1.96 SE:\n\n"
        + "\n".join(lines)
        + "\n\nPredicted − measured (val) on the rebuilt joint picks, points: "
        + ", ".join(f"{m} {v:+.2f}" for m, v in pred.items())
    )
    write("table2_rebuilt", {"cells": cells, "each_against_each": versus, "bias_points_val": pred, "rows": new},
          table, notes)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--evaluations", type=int, default=1000, help="distinct networks per search")
    ap.add_argument("--budgets", default=",".join(str(i) for i in range(len(BUDGETS))), help="indices into BUDGETS")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--refined", default=str(REFINED_DEFAULT), help="the predictor after 3 refine rounds")
    ap.add_argument("--report", action="store_true", help="only write the table from the rows so far")
    ap.add_argument("--test-images", action="store_true", help="measure every pick again on the test images")
    ap.add_argument("--rebuilt", action="store_true", help="the joint searches again with the shipped predictor")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.rebuilt:
        if args.test_images:
            first = (r["genes"] for r in read_rows(TEST_ROWS))  # measured on test in the first run
            measure_on_test(picks(REBUILT_ROWS), REBUILT_TEST_ROWS, args.threads, skip=first)
        elif not args.report:
            bench = Bench(args)
            for i in (int(x) for x in args.budgets.split(",")):
                bench.run_budget(BUDGETS[i])
        report_rebuilt()
        return
    if args.test_images:
        measure_on_test(picks(ROWS), TEST_ROWS, args.threads)
    elif not args.report:
        bench = Bench(args)
        for i in (int(x) for x in args.budgets.split(",")):
            bench.run_budget(BUDGETS[i])
    report(args)


if __name__ == "__main__":
    main()
