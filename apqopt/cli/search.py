"""`apqopt run`, `search`, `worker`, `compare`, `verify` and `refine`: searches, recorded as studies,
and the checks of what they predict against what the supernet measures."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apqopt.cli.common import (
    COMPARE_SEARCHERS,
    RUN_SEARCHERS,
    Sub,
    command_parser,
    data_arg,
    device_arg,
    load_study,
    measured_supernet,
    overwrite_arg,
    predictor_label,
    problem_args,
    problem_of,
    problem_spec_of,
    searcher_params,
    searchers_help,
    settings_tag,
    space_arg,
    storage_arg,
    threads_arg,
    weights_identity_on,
    weights_path,
)
from apqopt.cli.hardware import price_summary
from apqopt.cli_types import MAX_BUDGET, MAX_ROWS, file_path, integer, number
from apqopt.compare import check_compare_args, check_report_dir, compare, supernet_measurer, write_report
from apqopt.errors import ConfigError
from apqopt.live import LiveSpec, create_live_study, work
from apqopt.problem_spec import load_problem
from apqopt.record import CONTINUED, ENERGY_MJ, LATENCY_MS, MEASURED, OUTSIDE, PREDICTED, STDERR, study_record
from apqopt.refine import RefineConfig, refine
from apqopt.search import SEARCHERS, make_searcher
from apqopt.settings import compare_dir, default_storage, reports_dir
from apqopt.shipped import supernet_path
from apqopt.space import space_names
from apqopt.studies import (
    StorageError,
    check_study_name,
    continue_plan,
    extend,
    front_rows,
    open_storage,
    record,
    run_settings,
    settings_digest,
)
from apqopt.supernet.mqe import with_measured_sensitivity
from apqopt.supernet.train import load_supernet
from apqopt.verify import IMAGES, measure_config, verify_study


def cmd_run(args: argparse.Namespace) -> int:
    """The main job on the embedded defaults: shipped tables -> searchers compared head to head on the
    shipped predictor (fmnist), recorded as Optuna studies, each run's front measured on the supernet."""

    t0 = time.perf_counter()
    check_compare_args(args.searchers, args.seeds)
    # the same settings give the same studies: a rerun (after a kill) resumes instead of starting over
    key = json.dumps([args.latency, args.budget, args.searchers, args.seeds, args.verify])
    tag = f"run-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    storage = args.storage or default_storage()  # every run is recorded: the default storage when none is named
    open_storage(storage)  # a wrong URL or a read-only file fails now
    print("[1/3] hardware tables")
    for name in space_names():
        price_summary(name, args.samples, args.seed)
    print(f"\n[2/3] search: fmnist, latency <= {args.latency} ms, {args.budget} distinct networks per run")
    problem = load_problem("fmnist", latency=args.latency)
    if args.verify:
        print(f"[3/3] verify: {args.verify} candidates along each run's front measured on the supernet")
    report, results = compare(
        problem,
        args.searchers,
        args.seeds,
        args.budget,
        storage=storage,
        tag=tag,
        progress=not args.quiet,
        predictor="shipped",
        verify_top=args.verify,
        measurer=supernet_measurer(load_supernet(supernet_path("fmnist")), progress=not args.quiet)
        if args.verify
        else None,
        overwrite=args.overwrite,
    )
    paths = write_report(report, results, Path(args.out or reports_dir()) / tag, args.overwrite)
    print(report.markdown())
    print("   report: " + ", ".join(map(str, paths)))
    print(f"\ndone in {time.perf_counter() - t0:.0f} s")
    print(f"studies: {storage} -- review them with `apqopt dashboard --storage {storage}`")
    return 0


def _work_locally(storage: str, study: str, workers: int, quiet: bool, files: list[str | None]) -> int:
    """Work on a live study here with ``workers`` processes (this one and workers-1 children), allowed to
    load the ``files`` this command was given (the study names them; workers load only allowed folders)."""

    allow = sorted({str(Path(f).resolve().parent) for f in files if f})
    cmd = [sys.executable, "-m", "apqopt.cli", "worker", "--study", study, "--storage", storage, "--quiet"]
    cmd += ["--threads", str(torch.get_num_threads())]  # the cores shared out among the workers, as here
    cmd += [x for d in allow for x in ("--allow-dir", d)]
    children = [subprocess.Popen(cmd) for _ in range(workers - 1)]
    rep = work(storage, study, progress=not quiet, allow_dirs=allow)
    codes = [c.wait() for c in children]
    print(f"study '{study}': {rep.complete} complete trials; this worker told {rep.told} in {rep.wall_s:.1f} s")
    return max([0, *codes])


def cmd_worker(args: argparse.Namespace) -> int:

    rep = work(args.storage, args.study, max_trials=args.max_trials, progress=not args.quiet, allow_dirs=args.allow_dir)
    print(json.dumps(rep.__dict__))
    return 0


def _live_search(args: argparse.Namespace) -> int:

    if not args.searcher.startswith("optuna-"):
        raise ConfigError(
            f"--live runs Optuna samplers (optuna-nsga2, optuna-tpe, optuna-random), not {args.searcher!r}; "
            "batch searchers scale out as independent islands: one `apqopt search --searcher evolution --seed K "
            "--storage URL` per process or machine, each recording its own study into the shared storage"
        )
    if args.searcher_param:  # a live study's spec cannot carry it: refused, never silently dropped
        raise ConfigError("--live cannot carry --searcher-param; run without --live to use it")
    problem = problem_spec_of(args)
    files = {k: str(Path(v).resolve()) for k, v in (("lut", problem.lut), ("predictor", problem.predictor)) if v}
    spec = LiveSpec.for_search(  # refuses what a live study cannot carry (a fixed architecture, APQ's checkpoint)
        dataclasses.replace(problem, **files),
        budget=args.budget,
        sampler=args.searcher.removeprefix("optuna-"),
        seed=args.seed,
    )
    problem.build()  # validates predictor, LUT and constraints before anything is stored
    name = args.study or f"live-{args.searcher}-{args.space}-seed{args.seed}"
    study = create_live_study(spec, args.storage, name)
    return _work_locally(
        args.storage or default_storage(), study.study_name, args.workers, args.quiet, [args.lut, args.predictor]
    )


def cmd_search(args: argparse.Namespace) -> int:

    if args.extend and (args.live or args.overwrite):
        raise ConfigError(
            f"--continue extends a recorded run; it cannot go with {'--live' if args.live else '--overwrite'}"
        )
    if args.live:
        return _live_search(args)
    problem = problem_of(args)
    params = searcher_params(args, [args.searcher])[args.searcher]
    searcher = with_measured_sensitivity(make_searcher(args.searcher, **params, seed=args.seed))
    name = args.study or f"{args.searcher}-{problem.space.name}-seed{args.seed}"
    settings = run_settings(
        problem, args.searcher, searcher.recorded_params(), args.budget, predictor=predictor_label(args)
    )
    store = open_storage(args.storage)  # a wrong URL, a read-only file or a taken name fail now, not after the search
    where = args.storage or default_storage()
    if args.extend:
        plan = continue_plan(store, name, settings, where)
    elif check_study_name(store, name, settings_digest(settings), args.overwrite, where) == "reuse":
        raise StorageError(
            f"study '{name}' already exists in {where} (the same run); --overwrite to run it again, or "
            "--continue with a larger --budget to extend it"
        )
    res = searcher.run(problem, args.budget, progress=not args.quiet)
    kept = None  # networks the study held before, when --continue extends it
    if args.extend and plan == "extend":
        study, kept = extend(res, problem, args.storage, name, settings, predictor_label(args), not args.quiet)
    else:
        study = record(
            res,
            problem,
            args.storage,
            name,
            predictor=predictor_label(args),
            settings=settings,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    summary = search_summary(res, problem, study.study_name, where, top=args.top)
    if kept is not None:
        summary[CONTINUED] = {"kept": kept, "added": len(res.evaluated) - kept}
    print(json.dumps(summary, indent=2) if args.json else summary_table(summary))
    return 0 if summary["feasible"] else 1


def search_summary(res: Any, problem: Any, study: str, storage: str, top: int = 5) -> dict[str, Any]:
    """What a finished search found: counts, time, where it is stored, and the best feasible candidates
    along the front (most accurate first), each with its costs and its candidate JSON."""

    ev = res.evaluated
    rows = front_rows(ev, problem.objectives)
    rows = rows[np.argsort(-ev.accuracy[rows])][:top]
    cands = problem.space.to_candidates(ev.genes[rows]) if len(rows) else []
    outside = problem.outside_data(ev.genes[rows]) if len(rows) else np.zeros(0, dtype=bool)
    return {
        "study": study,
        "storage": storage,
        "searcher": res.searcher,
        "evaluated": len(ev),
        "feasible": int(ev.feasible.sum()),
        "wall_s": round(res.wall_s, 2),
        "constraints": dict(problem.constraints),
        "best": [
            {
                PREDICTED: round(float(ev.accuracy[i]), 5),
                LATENCY_MS: round(float(ev.latency[i]), 4),
                ENERGY_MJ: round(float(ev.energy[i]), 4),
                OUTSIDE: bool(out),
                "candidate": c.to_dict(),
            }
            for i, c, out in zip(rows, cands, outside)
        ],
    }


def summary_table(s: dict[str, Any]) -> str:
    """A search summary for people: one line of counts, then the best candidates along the front."""
    limits = ", ".join(f"{k} <= {v:g}" for k, v in s["constraints"].items()) or "no limits"
    lines = [
        f"{s['searcher']}: {s['evaluated']:,} distinct networks evaluated in {s['wall_s']:.1f} s, "
        f"{s['feasible']:,} feasible ({limits})"
    ]
    if not s["best"]:
        lines.append("no feasible candidate found")
    else:
        lines.append(f"best along the front ({len(s['best'])} shown, most accurate first):")
        head = f"  {'#':>2}  {'accuracy':>8}  {'latency ms':>10}  {'energy mJ':>9}  {'depths':<10}"
        lines.append(head + "  pointwise bits W/A per block")
        for k, b in enumerate(s["best"], 1):
            stages = b["candidate"]["stages"]
            depths = "/".join(str(len(st)) for st in stages)
            bits = " ".join(f"{blk['pw_w']}/{blk['pw_a']}" for st in stages for blk in st)
            mark = "!" if b.get(OUTSIDE) else " "
            lines.append(
                f"  {k:>2}  {100 * b[PREDICTED]:7.2f}%{mark} {b[LATENCY_MS]:10.4f}  "
                f"{b[ENERGY_MJ]:9.4f}  {depths:<10}  {bits[:72]}"
            )
        if any(b.get(OUTSIDE) for b in s["best"]):
            lines.append("  ! outside the networks the predictor was fitted on: its accuracy is an extrapolation")
    if CONTINUED in s:
        lines.append(f"continued: {s[CONTINUED]['kept']:,} networks kept, {s[CONTINUED]['added']:,} added")
    lines.append(f"stored: study '{s['study']}' in {s['storage']} (--json for every candidate in full)")
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:

    check_compare_args(args.searchers, args.seeds)
    problem = problem_of(args)
    params = searcher_params(args, args.searchers)
    measurer = None
    if args.verify_top:  # the weights load (and fail) before any search work
        weights = Path(args.supernet) if args.supernet else supernet_path(problem.space.name)
        cfg = measure_config(problem.space.name, args.verify_images)
        measurer = supernet_measurer(load_supernet(weights), cfg, progress=not args.quiet)
    tag = args.tag or settings_tag("compare", args)
    out = args.out or compare_dir() / tag
    runs = [(s, k) for s in args.searchers for k in args.seeds]
    check_report_dir(out, problem.space.name, args.budget, problem.constraints, runs, args.overwrite)
    report, results = compare(
        problem,
        args.searchers,
        args.seeds,
        args.budget,
        args.latency_budgets,
        storage=args.storage or default_storage(),  # recorded where --help says, resumable after a kill
        tag=tag,
        progress=not args.quiet,
        searcher_params=params,
        predictor=predictor_label(args),
        verify_top=args.verify_top,
        measurer=measurer,
        overwrite=args.overwrite,
        verify_images=args.verify_images,
    )
    paths = write_report(report, results, out, args.overwrite)
    print(report.markdown())
    print("written: " + ", ".join(map(str, paths)))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:

    space = study_record(load_study(args.study, args.storage)).space_name  # its space picks the supernet
    if space is None:
        raise StorageError(f"study '{args.study}' is not an apqopt study (it names no space)")
    weights = weights_path(args, space)
    res = verify_study(
        args.study,
        args.storage,
        measured_supernet(args, weights),
        args.top,
        not args.quiet,
        eval_images=args.eval_images,
    )
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"study '{res['study']}': {res['n']} front candidates measured on the supernet (quantized, fine-tuned)")
    print(f"  {'trial':>5}  {'latency ms':>10}  {'predicted':>9}  {'measured':>15}  {'error':>6}")
    for r in res["candidates"]:
        err = 100 * (r[PREDICTED] - r[MEASURED])
        print(
            f"  {r['trial']:>5}  {r[LATENCY_MS]:10.4f}  {100 * r[PREDICTED]:8.2f}%  "
            f"{100 * r[MEASURED]:7.2f} ± {100 * r[STDERR]:.2f}%  {err:+6.2f}"
        )
    extra = f", pairwise ranking {res['pairwise_accuracy']:.2f}" if "pairwise_accuracy" in res else ""
    print(f"mean absolute error {100 * res['mae']:.2f} points{extra}; stored in the study's 'verified' attr")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:

    cfg = RefineConfig(
        space=args.space,
        latency=args.latency,
        searcher=args.searcher,
        budget=args.budget,
        rounds=args.rounds,
        per_round=args.per_round,
        seed=args.seed,
        eval_images=args.eval_images,
        finetune_steps=args.finetune_steps,
        pick=args.pick,
    )
    weights = weights_path(args, args.space)
    net = measured_supernet(args, weights)
    out = Path(args.out) if args.out else reports_dir() / f"refine-{args.space}-seed{args.seed}"
    summary = refine(
        cfg,
        out,
        net,
        predictor=args.predictor,
        base_data=args.base_data,
        storage=args.storage,
        study_prefix=args.study_prefix or f"refine-{args.space}-seed{args.seed}",
        progress=not args.quiet,
        supernet_id=weights_identity_on(weights, net, args),
    )
    for r in summary["rounds"]:
        print(
            f"round {r['round']}: {r['measured']} networks measured; the predictor's error on them before "
            f"learning them: MAE {100 * r['mae_before']:.2f} points (bias {100 * r['bias_before']:+.2f})"
        )
    print(f"written: {out / 'report.md'} (and the predictor of each round under {out})")
    return 0


def add_run_parser(sub: Sub) -> None:
    run = command_parser(sub, "run", "main job: tables, searchers head to head on fmnist, verification")
    run.add_argument("--samples", type=integer(1, MAX_ROWS), default=100_000, help="random candidates priced per space")
    run.add_argument("--seed", type=integer(0), default=0, help="seed of the random candidates priced per space")
    run.add_argument("--latency", type=number(0), default=0.5, help="latency limit (ms, shipped BitFusion table)")
    run.add_argument("--budget", type=integer(1, MAX_BUDGET), default=1000, help="evaluated candidates per run")
    run.add_argument(
        "--searchers",
        nargs="+",
        default=RUN_SEARCHERS,
        help="optuna-tpe costs ~110 s per 1,000 trials here (multivariate TPE), so it is opt-in",
    )
    run.add_argument("--seeds", nargs="+", type=integer(0), default=[0, 1, 2], help="one run per searcher and seed")
    storage_arg(run)
    overwrite_arg(run)
    run.add_argument("--out", help="folder for the compare report (default: $APQOPT_HOME/reports)")
    run.add_argument(
        "--verify", type=integer(0), default=2, help="candidates along each run's front to measure for real (0: skip)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    threads_arg(run)
    run.set_defaults(func=cmd_run)


def add_search_parser(sub: Sub) -> None:
    se = command_parser(
        sub, "search", "run one searcher on one problem and record it as an Optuna study", epilog=searchers_help()
    )
    problem_args(se, budget=2000)
    se.add_argument("--searcher", default="evolution", help="one of the searchers below")
    se.add_argument("--seed", type=integer(0), default=0, help="seed of the searcher")
    se.add_argument("--study", help="study name (default: searcher-space-seedN)")
    se.add_argument(
        "--continue",
        dest="extend",
        action="store_true",
        help="extend the study this command recorded with a smaller --budget: its trials are kept and the "
        "new ones added, as one run with the larger budget would record them (the search walks its seeded "
        "path again; its first networks are checked against the study's)",
    )
    se.add_argument("--live", action="store_true", help="write trials as they come; other workers may join")
    se.add_argument("--workers", type=integer(1, 256), default=1, help="local worker processes for --live")
    se.add_argument("--top", type=integer(1), default=5, help="front candidates shown at the end")
    se.add_argument("--json", action="store_true", help="print the summary as JSON (candidates in full)")
    threads_arg(se)
    se.set_defaults(func=cmd_search)


def add_worker_parser(sub: Sub) -> None:
    wo = command_parser(sub, "worker", "join a live study (search or measure) until its budget is complete")
    wo.add_argument("--study", required=True, help="name of the live study to join")
    wo.add_argument("--storage", required=True, help="SQLite or PostgreSQL URL of the live study")
    wo.add_argument("--max-trials", type=integer(0), help="leave after telling this many trials")
    wo.add_argument(
        "--allow-dir",
        action="append",
        help="folder from which files the study names may be loaded (repeatable; $APQOPT_HOME always is)",
    )
    wo.add_argument("--quiet", action="store_true", help="no progress bars")
    threads_arg(wo)
    wo.set_defaults(func=cmd_worker)


def add_compare_parser(sub: Sub) -> None:
    co = command_parser(
        sub, "compare", "searchers x seeds on one problem: HV, best accuracy, evals to target", epilog=searchers_help()
    )
    problem_args(co, budget=2000)
    co.add_argument("--searchers", nargs="+", default=COMPARE_SEARCHERS, help="searchers to run (below)")
    co.add_argument(
        "--seeds", nargs="+", type=integer(0), default=[0, 1, 2, 3, 4], help="one run per searcher and seed"
    )
    co.add_argument("--latency-budgets", nargs="+", type=number(0), help="report best accuracy under these (ms)")
    co.add_argument(
        "--tag",
        help="prefix of the recorded study names (default: compare- and a fingerprint of the settings, so the "
        "same command resumes its studies and another one records beside them)",
    )
    co.add_argument(
        "--out",
        help="folder for compare.md/.json and plots (default: $APQOPT_HOME/compare/TAG); another comparison's "
        "report there is kept unless --overwrite",
    )
    co.add_argument(
        "--verify-top",
        type=integer(0),
        default=0,
        help="measure K candidates along each run's front; measured scores decide",
    )
    co.add_argument(
        "--supernet", type=file_path, help="weights file for --verify-top (default: the space's shipped one)"
    )
    co.add_argument(
        "--verify-images",
        choices=sorted(IMAGES),
        default="val",
        help="what --verify-top measures on: val, the first 5,000 validation images (those of the predictor's "
        "data); test, the 10,000 test images no predictor data and no selection used",
    )
    threads_arg(co)
    co.set_defaults(func=cmd_compare)


def add_verify_parser(sub: Sub) -> None:
    ve = command_parser(sub, "verify", "measure a study's front candidates for real (supernet, quantize, fine-tune)")
    ve.add_argument("--study", required=True, help="recorded study whose front to measure")
    storage_arg(ve)
    ve.add_argument("--top", type=integer(1), default=5, help="front candidates to measure")
    ve.add_argument("--eval-images", type=integer(1, 10_000), default=5000, help="val images per measurement")
    ve.add_argument("--supernet", type=file_path, help="weights file (default: the shipped one of the study's space)")
    data_arg(ve)
    device_arg(ve)
    ve.add_argument("--json", action="store_true", help="print the result as JSON")
    ve.add_argument("--quiet", action="store_true", help="no progress bars")
    ve.set_defaults(func=cmd_verify)


def add_refine_parser(sub: Sub) -> None:

    rf = command_parser(
        sub, "refine", "closed loop: search, measure the front, fine-tune the predictor; rounds (resumable)"
    )
    space_arg(rf)
    rf.add_argument("--latency", type=number(0), default=0.5, help="latency limit (ms) of every round's search")
    joint = [n for n in sorted(SEARCHERS) if n not in ("haq", "ohq")]  # those two search one architecture
    rf.add_argument("--searcher", default="evolution", choices=joint, help="searcher of each round")
    rf.add_argument("--budget", type=integer(1, MAX_BUDGET), default=1000, help="distinct networks per search")
    rf.add_argument("--rounds", type=integer(1, 100), default=3, help="search-measure-learn rounds")
    rf.add_argument("--per-round", type=integer(1, 1000), default=8, help="networks measured per round")
    rf.add_argument(
        "--pick",
        choices=["uncertainty", "spread"],
        default="uncertainty",
        help="which front networks to measure: per stretch of the front, the one the predictor ensemble is least "
        "sure of; or evenly by latency (a single-network predictor always picks evenly)",
    )
    rf.add_argument("--seed", type=integer(0), default=0, help="base seed (round R searches with seed + R)")
    rf.add_argument("--eval-images", type=integer(1, 10_000), default=5000, help="val images per measurement")
    rf.add_argument("--finetune-steps", type=integer(1, 100_000), default=40, help="of each quantized measurement")
    rf.add_argument("--predictor", type=file_path, help="where round 1 starts (default: the shipped one)")
    rf.add_argument("--base-data", type=file_path, help="its quantized dataset (default: the shipped one)")
    rf.add_argument("--supernet", type=file_path, help="weights file (default: the space's shipped one)")
    data_arg(rf)
    device_arg(rf)
    rf.add_argument("--out", help="folder for measurements, predictors and reports (default under APQOPT_HOME)")
    storage_arg(rf)
    rf.add_argument("--study-prefix", help="the rounds' studies are PREFIX-round-R (default refine-SPACE-seedS)")
    rf.add_argument("--quiet", action="store_true", help="no progress bars")
    rf.set_defaults(func=cmd_refine)
