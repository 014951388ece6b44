"""`apqopt` command line: thin wrappers over the library, one subcommand per job.

Why thin: everything a command does is a library call a user can make from Python too; the CLI
only parses, reports errors as one clear line (exit 2), and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from apqopt import cli_types
from apqopt.cli_types import MAX_BUDGET, MAX_ROWS, file_path, integer, number
from apqopt.errors import ApqoptError, ConfigError
from apqopt.fileio import atomic_write, check_output
from apqopt.hardware.bitfusion import MODES, BitFusion
from apqopt.hardware.build import bitfusion_from_config, build_lut
from apqopt.hardware.lut import LUT, LUTError, load_shipped, shipped_lut_path
from apqopt.interop.apq import from_apq_spec, to_apq_spec
from apqopt.problem_spec import ProblemSpec, load_problem
from apqopt.record import CONTINUED, ENERGY_MJ, LATENCY_MS, MEASURED, OUTSIDE, PREDICTED, STDERR, study_record
from apqopt.settings import compare_dir, default_storage, host_lut_path, reports_dir, supernet_run_dir
from apqopt.shipped import supernet_path
from apqopt.space import Candidate, InvalidCandidateError, get_space, space_names


def _supernet_path(args: argparse.Namespace, space: str) -> Path:
    """--supernet, or the weights shipped for the space."""
    return Path(args.supernet) if args.supernet else supernet_path(space)


def _measured_supernet(args: argparse.Namespace, weights: Path) -> Any:
    """The supernet a command measures with, on ``--data`` if given (else the data it records)."""
    from apqopt.supernet.train import load_supernet

    net = load_supernet(weights, getattr(args, "data", None), getattr(args, "device", None))
    if not net.data:
        raise ConfigError(f"{weights} records no data to measure on; pass --data (e.g. imagefolder:DIR)")
    return net


def _identity(weights: Path, net: Any, args: argparse.Namespace) -> str:
    """Which weights, on which images: records measured on other data never mix into a dataset."""
    from apqopt.supernet.train import weights_identity

    data = getattr(args, "data", None)
    return weights_identity(weights) + (f"@{net.data}" if data else "")


def _space_arg(p: argparse.ArgumentParser, default: str | None = "fmnist") -> None:
    p.add_argument(
        "--space",
        default=default,
        type=cli_types.space,
        metavar="NAME|FILE",
        help=f"search space: a preset ({', '.join(space_names())}) or a TOML/JSON space file",
    )


def _load_lut(args: argparse.Namespace) -> LUT:
    return LUT.load(args.lut) if args.lut else load_shipped(args.space)


# ---------------------------------------------------------------------- commands
def _price_summary(name: str, samples: int, seed: int) -> None:
    """Price random candidates of a space on its shipped table and print the spread."""
    space = get_space(name)
    lut = load_shipped(name)
    genes = space.sample(samples, seed)
    t0 = time.perf_counter()
    lat, en = lut.price(space, genes)
    dt = time.perf_counter() - t0
    print(f"== {name}: {space.description}")
    print(
        f"   table: {shipped_lut_path(name).name} ({len(lut)} entries, {lut.hardware}, batch "
        f"{lut.config.get('batch', '?')}, mode {lut.config.get('mode', '?')})"
    )
    print(f"   priced {len(genes):,} random candidates in {dt * 1e3:.1f} ms ({len(genes) / dt:,.0f}/s)")
    for label, v, unit in (("latency", lat, "ms"), ("energy", en, "mJ")):
        q = np.percentile(v, [0, 50, 100])
        print(f"   {label:8s} min {q[0]:.3f}  median {q[1]:.3f}  max {q[2]:.3f} {unit}")
    if name == "apq-mbv2":
        cost = lut.price_candidate(space.uniform((2, 3, 4, 3, 3, 1), kernel=3, middle=-1, bits=8))
        print(
            f"   MobileNetV2-like candidate (d 2/3/4/3/3/1, k3, 6x, W8A8): {cost.latency:.2f} ms, "
            f"{cost.energy:.2f} mJ  (APQ Table 2, MobileNetV2 8-bit: 9.10 ms, 12.46 mJ)"
        )


def cmd_run(args: argparse.Namespace) -> int:
    """The main job on the embedded defaults: shipped tables -> searchers compared head to head on the
    shipped predictor (fmnist), recorded as Optuna studies, each run's front measured on the supernet."""
    from apqopt.compare import check_compare_args, compare, supernet_measurer, write_report
    from apqopt.studies import open_storage
    from apqopt.supernet.train import load_supernet

    t0 = time.perf_counter()
    check_compare_args(args.searchers, args.seeds)
    # the same settings give the same studies: a rerun (after a kill) resumes instead of starting over
    key = json.dumps([args.latency, args.budget, args.searchers, args.seeds, args.verify])
    tag = f"run-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    storage = args.storage or default_storage()  # every run is recorded: the default storage when none is named
    open_storage(storage)  # a wrong URL or a read-only file fails now
    print("[1/3] hardware tables")
    for name in space_names():
        _price_summary(name, args.samples, args.seed)
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


def cmd_space_show(args: argparse.Namespace) -> int:
    from apqopt.space import space_to_toml

    space = get_space(args.space)
    print(space_to_toml(space) if args.toml else json.dumps(space.describe(), indent=2), end="" if args.toml else "\n")
    return 0


def cmd_space_sample(args: argparse.Namespace) -> int:
    space = get_space(args.space)
    for cand in space.to_candidates(space.sample(args.n, args.seed)):
        print(json.dumps(to_apq_spec(space, cand)) if args.apq else cand.to_json())
    return 0


def _read_candidate(text: str, apq: bool, space: str) -> Candidate:
    """A candidate given inline as JSON, or as a file holding it."""
    from apqopt.fileio import read_text

    if not text.lstrip().startswith(("{", "[")):
        text = read_text(text, "a candidate (JSON, or a file holding it)")
    if apq:
        try:
            return from_apq_spec(get_space(space), json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidCandidateError(f"APQ spec is not valid JSON: {exc}") from exc
        except (RecursionError, ValueError) as exc:  # nested past the stack; an integer of over 4,300 digits
            raise InvalidCandidateError(f"APQ spec is not usable JSON: {str(exc).splitlines()[0][:120]}") from None
    return Candidate.from_json(text)


def _named_candidate(text: str, space: Any) -> Candidate:
    """``largest``, ``smallest``, or a candidate given as JSON (or a file holding it)."""
    named = {"largest": space.uniform, "smallest": space.smallest}
    return named[text]() if text in named else _read_candidate(text, False, space.name)


def cmd_lut_build(args: argparse.Namespace) -> int:
    if args.hardware != "bitfusion":
        raise LUTError(f"unknown hardware '{args.hardware}'; `lut build` knows: bitfusion")
    overrides = {k: v for k, v in (("mode", args.mode), ("batch", args.batch)) if v is not None}
    if args.out is None and args.space not in space_names():
        raise ConfigError(f"lut build: --out is required for space '{args.space}' (only presets have a shipped table)")
    if args.out is None and (args.config or overrides or args.format != "csv"):
        raise ConfigError(
            "lut build: --out is required with --config, --mode, --batch or --format apq/both "
            "(without it the package's shipped table would be overwritten)"
        )
    model = bitfusion_from_config(args.config)
    if overrides:
        model = BitFusion(model.config.with_(**overrides))
    parts = [f"apqopt lut build --space {args.space} --hardware {args.hardware}"]
    if args.config:
        parts.append(f"--config {Path(args.config).name}")
    parts += [f"--{k} {v}" for k, v in overrides.items()]
    out = Path(args.out) if args.out else shipped_lut_path(args.space, args.hardware)
    apq_out = out if out.suffix in (".dict", ".json") else out.with_suffix(".dict")
    if args.format == "csv" and apq_out == out:
        raise ConfigError(f"lut build: --out {out} names an APQ dict; use --format apq, or a .csv path")
    if args.format == "both" and apq_out == out:
        raise ConfigError(f"lut build --format both: --out {out} names the APQ dict; give the CSV path")
    if args.out is not None:  # the shipped table (no --out) is regenerated as its recorded command says
        for path in {"csv": [out], "apq": [apq_out], "both": [out, apq_out]}[args.format]:
            check_output(path, args.overwrite, inputs=(args.config,))
    t0 = time.perf_counter()
    lut = build_lut(
        args.space,
        model,
        command=" ".join(parts),
        workers=args.workers,
        progress=not args.quiet,
        checkpoint=out.with_name(out.name + ".ckpt.jsonl"),
    )
    written = [lut.save(apq_out)] if args.format == "apq" else [lut.save(out)]
    if args.format == "both":
        written.append(lut.save(apq_out))
    print(
        f"built {len(lut)} entries + head/tail in {time.perf_counter() - t0:.1f} s -> " + ", ".join(map(str, written))
    )
    return 0


def cmd_lut_measure(args: argparse.Namespace) -> int:
    """Time every layer shape here (fp32 or int8), write the table, optionally check whole networks."""
    from apqopt.hardware.host import HostCPU, check_sums

    model = HostCPU(args.precision, warmup=args.warmup, repeats=args.repeats, threads=args.threads)
    out = check_output(args.out or host_lut_path(args.precision, args.space), args.overwrite)
    cmd = f"apqopt lut measure --space {args.space} --precision {args.precision} --repeats {args.repeats}"
    t0 = time.perf_counter()
    lut = build_lut(
        args.space,
        model,
        command=cmd,
        bits=model.bits,
        progress=not args.quiet,
        checkpoint=out.with_name(out.name + ".ckpt.jsonl"),
    )
    lut.config.update(model.spread_summary())
    lut.save(out)
    report: dict[str, Any] = {"table": str(out), "entries": len(lut), "seconds": round(time.perf_counter() - t0, 1)}
    report |= {k: lut.config[k] for k in ("threads", "engine", "unsupported", "median_spread_ms", "max_spread_ms")}
    if args.check:
        chk = check_sums(
            args.space,
            lut,
            args.precision,
            args.check,
            warmup=args.warmup,
            repeats=args.repeats,
            progress=not args.quiet,
        )
        atomic_write(str(out) + ".check.json", json.dumps(chk, indent=2) + "\n")
        report["check"] = {k: v for k, v in chk.items() if k != "pairs"}
    print(json.dumps(report, indent=2))
    return 0


def cmd_lut_show(args: argparse.Namespace) -> int:
    lut = _load_lut(args)
    info: dict[str, Any] = {
        "hardware": lut.hardware,
        "command": lut.command,
        "config": lut.config,
        "entries": len(lut),
        "layer_shapes": len(lut.shapes()),
        "bit_pairs": [f"W{w}A{a}" for w, a in lut.bit_pairs()],
        "head": {"latency_ms": lut.head[0], "energy_mJ": lut.head[1]},
        "tail": {"latency_ms": lut.tail[0], "energy_mJ": lut.tail[1]},
    }
    if args.gaps:
        gaps = lut.missing(args.gaps)
        info["gaps"] = {"space": args.gaps, "missing": len(gaps), "first": [str(g) for g in gaps[:10]]}
    print(json.dumps(info, indent=2))
    return 0


def cmd_lut_price(args: argparse.Namespace) -> int:
    cand = _read_candidate(args.candidate, args.apq_spec, args.space)
    args.space = cand.space
    lut = _load_lut(args)
    cost = lut.price_candidate(cand)
    if args.layers:
        for layer, lat, en in cost.layers:
            print(f"{layer.name:14s} {layer.shape!s:34s} W{layer.w_bits}A{layer.a_bits}  {lat:8.4f} ms  {en:8.4f} mJ")
        print(f"{'head':14s} {'':34s} {'':5s} {cost.head[0]:8.4f} ms  {cost.head[1]:8.4f} mJ")
        print(f"{'tail':14s} {'':34s} {'':5s} {cost.tail[0]:8.4f} ms  {cost.tail[1]:8.4f} mJ")
    print(json.dumps({"latency_ms": cost.latency, "energy_mJ": cost.energy, "layers": len(cost.layers)}))
    return 0


def cmd_supernet_train(args: argparse.Namespace) -> int:
    from apqopt.supernet.train import DEFAULT_PHASES, TrainConfig, train_supernet

    phases = tuple(dataclasses.replace(p, epochs=p.epochs * args.epochs_scale) for p in DEFAULT_PHASES)
    cfg = TrainConfig(
        space=args.space,
        seed=args.seed,
        train_images=args.train_images,
        data=args.data,
        phases=phases,
        batch_size=args.batch_size,
        eval_images=args.eval_images,
    )
    out = Path(args.out) if args.out else supernet_run_dir(args.space)
    log_path = out / "train.log"
    out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line)
        with log_path.open("a") as fh:
            fh.write(line + "\n")

    t0 = time.time()
    train_supernet(cfg, out, progress=not args.quiet, log=log, device=args.device)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process reports
        log(json.dumps({"done": True, "wall_s": round(time.time() - t0, 1), "weights": str(out / "supernet.pt")}))
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like k/n (e.g. 0/2), got {text!r}") from None
    return k, n


def cmd_collect(args: argparse.Namespace) -> int:
    from apqopt.supernet.collect import CollectConfig, candidate_genes, collect

    weights = _supernet_path(args, args.space)
    if args.storage and args.data:
        raise ConfigError("collect: --data is for --out datasets; a live study measures on the supernet's own data")
    if args.storage and args.draw != "uniform":
        raise ConfigError("collect: --draw is for --out datasets; a live study draws uniformly")
    if args.storage:  # a live measure study: enqueue the candidates, work on them beside other workers
        from apqopt.live import LiveSpec, create_live_study, enqueue

        spec = LiveSpec(
            "measure",
            space=args.space,
            budget=args.n,
            seed=args.seed,
            measure=args.kind,
            supernet=str(Path(args.supernet).resolve()) if args.supernet else "",
            eval_images=args.eval_images,
        )
        study = create_live_study(spec, args.storage, args.study or f"collect-{args.kind}-{args.space}-seed{args.seed}")
        cfg = CollectConfig(kind=args.kind, space=args.space, seed=args.seed)
        space = get_space(args.space)
        added = enqueue(study, np.stack([candidate_genes(space, cfg, i) for i in range(args.n)]))
        print(f"study '{study.study_name}': {added} candidates enqueued")
        return _work_locally(args.storage, study.study_name, args.workers, args.quiet, [args.supernet])
    if not args.out:
        raise ConfigError("collect: give --out FILE (a dataset file), or --storage URL for a live study")
    net = _measured_supernet(args, weights)
    cfg = CollectConfig(
        kind=args.kind,
        space=net.space.name,
        seed=args.seed,
        eval_images=args.eval_images,
        supernet=_identity(weights, net, args),
        draw=args.draw,
    )
    t0 = time.time()
    path = collect(cfg, net, args.out, args.n, _parse_shard(args.shard), progress=not args.quiet)
    print(f"{path}: done in {time.time() - t0:.0f} s")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from apqopt.supernet.collect import summarize

    rows = [summarize(p) for p in args.paths]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    cols = ["dataset", "kind", "seed", "records", "accuracy min / median / max (%)", "Spearman(MACs, acc)", "wall s"]
    print("| " + " | ".join(cols) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        spread = " / ".join(f"{v:.1f}" for v in r["accuracy_min_median_max"])
        per = r.get("median_s_by_quantizer") or {"": r["median_s_per_record"]}
        each = ", ".join(f"{v:g} s{f' ({k})' if k else ''}" for k, v in per.items())
        print(
            f"| {r['dataset']} | {r['kind']} | {r['seed']} | {r['records']:,} | {spread} | "
            f"{r['spearman_macs_accuracy']:.2f} | {r['seconds_total']:,.0f} s (median per record: {each}) |"
        )
    return 0


def cmd_supernet_eval(args: argparse.Namespace) -> int:
    from apqopt.supernet.data import accuracy_stderr, load_split
    from apqopt.supernet.evaluate import evaluate_subnet

    weights = _supernet_path(args, args.space)
    net = _measured_supernet(args, weights)
    space = net.space
    cands = [(c, _named_candidate(c, space)) for c in args.candidates]
    data = net.data
    split = load_split(args.split, data, space.name)
    for name, cand in cands:
        acc = evaluate_subnet(net.extract(cand), split, data=data, space=space.name)
        print(
            json.dumps(
                {
                    "candidate": name[:60],
                    "split": args.split,
                    "images": len(split),
                    "accuracy": acc,
                    "stderr": accuracy_stderr(acc, len(split)),
                    "macs": space.macs(cand),
                }
            )
        )
    return 0


def cmd_predictor_train(args: argparse.Namespace) -> int:
    from apqopt.predictor.train import train_predictors

    res = train_predictors(
        args.fp,
        args.quant,
        args.heldout,
        args.out,
        args.space,
        args.variant,
        args.seed,
        members=args.members,
        progress=not args.quiet,
        device=args.device,
    )
    print(json.dumps(res, indent=2))
    return 0


def cmd_predictor_evaluate(args: argparse.Namespace) -> int:
    from apqopt.predictor import AccuracyPredictor
    from apqopt.predictor.train import load_xy

    pred = AccuracyPredictor.load(args.predictor)
    X, y = load_xy(args.data, pred.space, bits=pred.variant != "fp")
    print(json.dumps(pred.report(X, y), indent=2))
    return 0


def _problem_spec(args: argparse.Namespace) -> ProblemSpec:
    """The problem that --space, --latency/--energy, --objectives, --predictor/--apq-checkpoint, --lut,
    --architecture, --allow-missing and --pessimism describe."""
    arch = _read_candidate(args.architecture, False, args.space) if getattr(args, "architecture", None) else None
    return ProblemSpec(
        args.space,
        tuple(args.objectives),
        latency=args.latency,
        energy=args.energy,
        predictor=args.predictor,
        apq_checkpoint=args.apq_checkpoint,
        lut=args.lut,
        architecture=arch,
        allow_missing=args.allow_missing,
        pessimism=args.pessimism,
    )


def _problem(args: argparse.Namespace) -> Any:
    return _problem_spec(args).build()


def _searcher_params(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any]]:
    """--searcher-param [NAME.]KEY=VALUE, per searcher (VALUE read as JSON, else as text); checked now,
    before any search work."""
    from apqopt.search import searcher_class

    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for item in args.searcher_param or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--searcher-param must look like KEY=VALUE or NAME.KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        target, _, key = key.rpartition(".")
        if key == "seed":
            raise ConfigError("--searcher-param: set seeds with --seed/--seeds, not as a searcher parameter")
        chosen = [target] if target else [n for n in names if key in searcher_class(n).param_names()]
        for n in chosen:
            if n not in out:
                raise ConfigError(f"--searcher-param {item!r}: searcher '{n}' is not run here (runs: {names})")
            if key not in searcher_class(n).param_names():
                raise ConfigError(f"--searcher-param {item!r}: '{n}' takes {searcher_class(n).param_names()}")
            out[n][key] = value
        if not chosen:
            raise ConfigError(f"--searcher-param {item!r}: no searcher of {names} takes '{key}'")
    return out


def _predictor_label(args: argparse.Namespace) -> str:
    return str(args.apq_checkpoint or args.predictor or "shipped")


def _work_locally(storage: str, study: str, workers: int, quiet: bool, files: list[str | None]) -> int:
    """Work on a live study here with ``workers`` processes (this one and workers-1 children), allowed to
    load the ``files`` this command was given (the study names them; workers load only allowed folders)."""
    import subprocess

    import torch

    from apqopt.live import work

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
    from apqopt.live import work

    rep = work(args.storage, args.study, max_trials=args.max_trials, progress=not args.quiet, allow_dirs=args.allow_dir)
    print(json.dumps(rep.__dict__))
    return 0


def _live_search(args: argparse.Namespace) -> int:
    from apqopt.live import LiveSpec, create_live_study

    if not args.searcher.startswith("optuna-"):
        raise ConfigError(
            f"--live runs Optuna samplers (optuna-nsga2, optuna-tpe, optuna-random), not {args.searcher!r}; "
            "batch searchers scale out as independent islands: one `apqopt search --searcher evolution --seed K "
            "--storage URL` per process or machine, each recording its own study into the shared storage"
        )
    if args.searcher_param:  # a live study's spec cannot carry it: refused, never silently dropped
        raise ConfigError("--live cannot carry --searcher-param; run without --live to use it")
    problem = _problem_spec(args)
    if problem.architecture is not None or problem.apq_checkpoint:
        opt = "--architecture" if problem.architecture is not None else "--apq-checkpoint"
        raise ConfigError(f"--live cannot carry {opt}; run without --live to use it")
    problem.build()  # validates predictor, LUT and constraints before anything is stored
    files = {k: str(Path(v).resolve()) for k, v in (("lut", problem.lut), ("predictor", problem.predictor)) if v}
    spec = LiveSpec.for_search(
        dataclasses.replace(problem, **files),
        budget=args.budget,
        sampler=args.searcher.removeprefix("optuna-"),
        seed=args.seed,
    )
    name = args.study or f"live-{args.searcher}-{args.space}-seed{args.seed}"
    study = create_live_study(spec, args.storage, name)
    return _work_locally(
        args.storage or default_storage(), study.study_name, args.workers, args.quiet, [args.lut, args.predictor]
    )


def cmd_search(args: argparse.Namespace) -> int:
    from apqopt.search import make_searcher
    from apqopt.studies import (
        StorageError,
        check_study_name,
        continue_plan,
        extend,
        open_storage,
        record,
        run_settings,
        settings_digest,
    )

    if args.extend and (args.live or args.overwrite):
        raise ConfigError(
            f"--continue extends a recorded run; it cannot go with {'--live' if args.live else '--overwrite'}"
        )
    if args.live:
        return _live_search(args)
    problem = _problem(args)
    params = _searcher_params(args, [args.searcher])[args.searcher]
    searcher = make_searcher(args.searcher, **params, seed=args.seed)
    name = args.study or f"{args.searcher}-{problem.space.name}-seed{args.seed}"
    settings = run_settings(
        problem, args.searcher, searcher.recorded_params(), args.budget, predictor=_predictor_label(args)
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
        study, kept = extend(res, problem, args.storage, name, settings, _predictor_label(args), not args.quiet)
    else:
        study = record(
            res,
            problem,
            args.storage,
            name,
            predictor=_predictor_label(args),
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
    from apqopt.studies import front_rows

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


def _settings_tag(prefix: str, args: argparse.Namespace) -> str:
    """``prefix-`` and a fingerprint of every option that decides the results (not where they go or how
    they are shown): the same command finds its own studies again, another one never collides with them."""
    quiet = {"func", "out", "quiet", "storage", "overwrite", "threads", "tag", "command", "sub"}
    key = json.dumps({k: v for k, v in sorted(vars(args).items()) if k not in quiet}, default=str)
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def cmd_compare(args: argparse.Namespace) -> int:
    from apqopt.compare import check_compare_args, check_report_dir, compare, supernet_measurer, write_report
    from apqopt.supernet.train import load_supernet

    check_compare_args(args.searchers, args.seeds)
    problem = _problem(args)
    params = _searcher_params(args, args.searchers)
    measurer = None
    if args.verify_top:  # the weights load (and fail) before any search work
        weights = Path(args.supernet) if args.supernet else supernet_path(problem.space.name)
        measurer = supernet_measurer(load_supernet(weights), progress=not args.quiet)
    tag = args.tag or _settings_tag("compare", args)
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
        predictor=_predictor_label(args),
        verify_top=args.verify_top,
        measurer=measurer,
        overwrite=args.overwrite,
    )
    paths = write_report(report, results, out, args.overwrite)
    print(report.markdown())
    print("written: " + ", ".join(map(str, paths)))
    return 0


def _load_study(name: str, storage: str | None) -> Any:
    """A study that must exist (a missing one is one line naming the storage; nothing is created)."""
    import optuna

    from apqopt.studies import StorageError, open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage, create=False))
    except KeyError:
        raise StorageError(f"no study '{name}' in {storage or default_storage()}") from None


def cmd_verify(args: argparse.Namespace) -> int:
    from apqopt.studies import StorageError
    from apqopt.verify import verify_study

    space = study_record(_load_study(args.study, args.storage)).space_name  # its space picks the supernet
    if space is None:
        raise StorageError(f"study '{args.study}' is not an apqopt study (it names no space)")
    weights = _supernet_path(args, space)
    res = verify_study(
        args.study,
        args.storage,
        _measured_supernet(args, weights),
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


def _trial_candidate(study_name: str, storage: str | None, number: int) -> Candidate:
    """Trial ``number`` of a recorded study, as a candidate of the study's space."""
    import optuna

    study = _load_study(study_name, storage)
    codec = study_record(study).codec()
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    if number not in trials:
        raise ConfigError(f"--trial: study '{study_name}' has no complete trial {number}")
    return codec.space.to_candidates(codec.genes(trials[number].params)[None])[0]


def cmd_export(args: argparse.Namespace) -> int:
    from apqopt.export import META_KEY, check_out, export_candidate, run_exported
    from apqopt.supernet.data import accuracy_stderr, load_split, preprocessing

    if (args.candidate is None) == (args.study is None):
        raise ConfigError("export: give a CANDIDATE or --study with --trial (one of the two)")
    if args.study is not None and args.trial is None:
        raise ConfigError("export: --study needs --trial (the trial number to export)")
    check_out(args.out, args.overwrite)
    cand = _trial_candidate(args.study, args.storage, args.trial) if args.study is not None else None
    space = cand.space if cand is not None else args.space
    net = _measured_supernet(args, _supernet_path(args, space))
    if cand is None:
        cand = _named_candidate(args.candidate, net.space)
    print(
        f"building the {args.kind} network of the candidate (as measured: BN re-estimated"
        + (", quantized, fine-tuned)" if args.kind == "quant" else ")")
    )
    path = export_candidate(net, cand, args.out, args.kind, args.seed, args.overwrite)
    print(f"written: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    prep = preprocessing(net.data, net.space.name)  # what export_candidate wrote into the file
    print(f"feed it: {prep['input']}" + (f"; mean {prep['mean']}, std {prep['std']}" if "mean" in prep else ""))
    print(
        f"it returns {len(prep['classes'])} logits (class i: classes[i]); the file's metadata '{META_KEY}' holds "
        "this, the class names and the candidate (apqopt.export.read_metadata reads it)"
    )
    if args.eval_images:
        split = load_split("val", net.data, net.space.name).subset(args.eval_images)
        acc = float((run_exported(path, split.images).argmax(1) == split.labels.numpy()).mean())
        se = accuracy_stderr(acc, len(split))
        print(f"the file, run on {len(split)} val images: accuracy {100 * acc:.2f} ± {100 * se:.2f}%")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from apqopt.refine import RefineConfig, refine

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
    weights = _supernet_path(args, args.space)
    net = _measured_supernet(args, weights)
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
        supernet_id=_identity(weights, net, args),
    )
    for r in summary["rounds"]:
        print(
            f"round {r['round']}: {r['measured']} networks measured; the predictor's error on them before "
            f"learning them: MAE {100 * r['mae_before']:.2f} points (bias {100 * r['bias_before']:+.2f})"
        )
    print(f"written: {out / 'report.md'} (and the predictor of each round under {out})")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from apqopt.settings import mqe_cache_dir
    from apqopt.shipped import sensitivity_path
    from apqopt.supernet.mqe import measure_table
    from apqopt.supernet.train import weights_identity

    weights = _supernet_path(args, args.space)
    if args.out is None and (args.supernet or args.space not in space_names()):
        raise ConfigError(
            "sensitivity: --out is required with --supernet or a space file (no shipped table to replace)"
        )
    out = Path(args.out) if args.out else sensitivity_path(args.space)
    net = _measured_supernet(args, weights)
    t0 = time.perf_counter()
    table = measure_table(
        net, args.replicates, args.images, args.inputs, args.seed, cache_dir=mqe_cache_dir(), progress=not args.quiet
    )
    meta = {**table.meta, "supernet": weights_identity(weights), "seconds": round(time.perf_counter() - t0, 1)}
    meta["command"] = f"apqopt sensitivity --space {args.space} --replicates {args.replicates} --images {args.images}"
    dataclasses.replace(table, meta=meta).save(out)
    print(f"measured {meta['networks']} networks in {meta['seconds']:.0f} s -> {out}")
    return 0


def address_is_loopback(address: str) -> bool:
    """Whether every address ``address`` resolves to is this machine's loopback (127.0.0.0/8, ::1); one that
    does not resolve (``999.1.1.1``, an unknown name) is a ConfigError naming ``--address``."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(address, None)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--address {address!r} does not resolve to an address of this machine ({exc})") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start Streamlit on this machine only (127.0.0.1) unless --address says otherwise, with usage
    statistics off; SIGTERM/SIGINT reach the Streamlit process, so stopping this command stops the app."""
    import importlib.util
    import signal
    import subprocess

    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("the dashboard needs Streamlit: pip install 'apqopt[dashboard]'")
    from apqopt.studies import open_storage

    loopback = address_is_loopback(args.address)  # an address that does not resolve fails now
    storage = args.storage or default_storage()
    open_storage(storage, create=False)  # a missing or wrong storage is one line now, not a page of errors
    if not loopback:
        print(
            f"apqopt: warning: --address {args.address} is reachable from other machines: anyone who can reach "
            f"port {args.port} can read the studies in {storage}",
            file=sys.stderr,
            flush=True,
        )
    app = Path(__file__).resolve().parent / "dashboard.py"
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.headless",
        "true",
        "--server.address",
        args.address,
        "--server.port",
        str(args.port),
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--storage",
        storage,
        *(["--lut", str(Path(args.lut).resolve())] if args.lut else []),
    ]
    print(f"dashboard: http://{args.address}:{args.port} (storage {storage}; Ctrl-C stops it)", flush=True)
    child = subprocess.Popen(cmd)

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if child.poll() is None:
            child.kill()


# ---------------------------------------------------------------------- parser
Sub = Any  # argparse's subparsers action (its class is private)
RUN_SEARCHERS = ["random", "evolution", "pymoo-nsga2", "optuna-nsga2"]
COMPARE_SEARCHERS = ["random", "evolution", "pymoo-nsga2", "optuna-nsga2", "optuna-tpe"]


class _Help(argparse.RawDescriptionHelpFormatter):
    """--help shows every default (once, and not for flags) and keeps the searcher table's lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if unset or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".lstrip()


def _parser(sub: Sub, name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=_Help, **kw)


def _searchers_help() -> str:
    from apqopt.search import SEARCHERS

    return "searchers:\n" + "\n".join(f"  {n:18s} {c.summary}" for n, c in sorted(SEARCHERS.items()))


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=cli_types.data,
        help="images to measure on: fmnist, imagefolder:DIR or module:function (default: the supernet's own)",
    )


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        type=cli_types.device,
        default="cpu",
        metavar="DEVICE",
        help="where torch runs: auto (a GPU if there is one), cpu, cuda or cuda:N",
    )
    _threads_arg(p)


def _threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=integer(0, 1024),
        default=0,
        help="torch threads per process (0: $OMP_NUM_THREADS if set, else this machine's usable cores "
        "shared out among the processes the command starts, so never more threads than cores)",
    )


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL or journal path (default: sqlite:///$APQOPT_HOME/apqopt.db)"
    )


def _overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace studies of the same names, and another run's report in the report folder (default: "
        "resume interrupted ones, refuse others)",
    )


def add_run_parser(sub: Sub) -> None:
    run = _parser(sub, "run", "main job: tables, searchers head to head on fmnist, verification")
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
    _storage_arg(run)
    _overwrite_arg(run)
    run.add_argument("--out", help="folder for the compare report (default: $APQOPT_HOME/reports)")
    run.add_argument(
        "--verify", type=integer(0), default=2, help="candidates along each run's front to measure for real (0: skip)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    _threads_arg(run)
    run.set_defaults(func=cmd_run)


def add_space_parser(sub: Sub) -> None:
    space = _parser(sub, "space", "inspect a search space").add_subparsers(dest="sub", required=True)
    show = _parser(space, "show", "print the space's structure, gene count and encoding width")
    _space_arg(show)
    show.add_argument("--toml", action="store_true", help="print the space as a space file (to start your own)")
    show.set_defaults(func=cmd_space_show)
    sample = _parser(space, "sample", "print random candidates as JSON lines")
    _space_arg(sample)
    sample.add_argument("--n", type=integer(1, MAX_ROWS), default=5, help="candidates to draw")
    sample.add_argument("--seed", type=integer(0), default=0, help="seed of the draw")
    sample.add_argument("--apq", action="store_true", help="print APQ's spec dicts instead of apqopt JSON")
    sample.set_defaults(func=cmd_space_sample)


def add_supernet_parser(sub: Sub) -> None:
    sn = _parser(sub, "supernet", "train the once-for-all supernet").add_subparsers(dest="sub", required=True)
    train = _parser(sn, "train", "progressive shrinking + in-place distillation; rerun to resume")
    _space_arg(train)
    train.add_argument(
        "--out", help="folder for checkpoint.pt, supernet.pt, log (default: $APQOPT_HOME/supernet-SPACE)"
    )
    train.add_argument("--seed", type=integer(0), default=0, help="seed of initialisation, batches and subnets")
    train.add_argument("--train-images", type=integer(1), help="use only the first N training images (smoke tests)")
    train.add_argument(
        "--data", type=cli_types.data, default="fmnist", help="fmnist, imagefolder:DIR or module:function"
    )
    train.add_argument(
        "--epochs-scale",
        type=number(0, 100),
        default=1.0,
        help="multiply every phase's epochs (default schedule: 5 + 1.5 + 1.5 + 3 + 6 epochs)",
    )
    train.add_argument(
        "--batch-size", type=integer(1, 65536), default=256, help="images per step (per process under torchrun)"
    )
    train.add_argument("--eval-images", type=integer(1), default=2000, help="val images in each phase's report")
    _device_arg(train)
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_supernet_train)
    sev = _parser(sn, "eval", "accuracy of subnets (BN re-estimated) with its standard error")
    _space_arg(sev)
    sev.add_argument("candidates", nargs="*", default=["largest", "smallest"], help="largest, smallest or JSON")
    sev.add_argument("--split", default="test", choices=["train", "val", "test"], help="images to measure on")
    sev.add_argument("--supernet", type=file_path, help="weights file (default: the shipped one)")
    _data_arg(sev)
    _device_arg(sev)
    sev.set_defaults(func=cmd_supernet_eval)


def add_collect_parser(sub: Sub) -> None:
    col = _parser(sub, "collect", "measure random subnets into an accuracy dataset (resumable)")
    col.add_argument("kind", choices=["fp", "quant"], help="fp: full precision; quant: policy + short QAT")
    _space_arg(col)
    col.add_argument("--n", type=integer(1, MAX_BUDGET), required=True, help="dataset size (indices 0..n-1)")
    col.add_argument("--out", type=file_path, help="JSON-lines dataset file (appended; rerun to resume)")
    col.add_argument("--seed", type=integer(0), default=0, help="which candidates (a held-out set uses another seed)")
    col.add_argument(
        "--draw",
        choices=["uniform", "cost"],
        default="uniform",
        help="uniform over the space, or cost: spread evenly from the cheapest network to the dearest, the "
        "corners first (smallest/largest architecture at the lowest/highest bits); --out datasets only",
    )
    _data_arg(col)
    _device_arg(col)
    col.add_argument("--shard", default="0/1", help="k/n: this process measures indices i with i %% n == k")
    col.add_argument("--eval-images", type=integer(1, 10_000), default=5000, help="val images per measurement")
    col.add_argument("--supernet", type=file_path, help="weights file (default: the shipped one)")
    col.add_argument("--storage", help="SQLite/PostgreSQL URL: collect as a live study that workers share")
    col.add_argument("--study", help="live study name (default collect-KIND-SPACE-seedN)")
    col.add_argument("--workers", type=integer(1, 256), default=1, help="local worker processes for a live study")
    col.add_argument("--quiet", action="store_true", help="no progress bars")
    col.set_defaults(func=cmd_collect)


def add_dataset_parser(sub: Sub) -> None:
    ds = _parser(sub, "dataset", "summarise accuracy datasets (shards merged): size, spread, measuring time")
    ds.add_argument("paths", nargs="+", type=file_path, help="dataset files as given to collect --out")
    ds.add_argument("--json", action="store_true", help="one JSON object per dataset instead of a table")
    ds.set_defaults(func=cmd_dataset)


def add_predictor_parser(sub: Sub) -> None:
    pr = _parser(sub, "predictor", "accuracy predictors").add_subparsers(dest="sub", required=True)
    ptrain = _parser(pr, "train", "fp predictor, transfer to quantized data, report on the held-out set")
    _space_arg(ptrain)
    ptrain.add_argument("--fp", type=file_path, required=True, help="fp dataset (apqopt collect fp)")
    ptrain.add_argument(
        "--quant", type=file_path, required=True, help="quantized training dataset (apqopt collect quant)"
    )
    ptrain.add_argument("--heldout", type=file_path, required=True, help="quantized held-out dataset (another --seed)")
    ptrain.add_argument("--out", required=True, help="folder for fp.pt, quant.pt and their .json")
    ptrain.add_argument("--variant", choices=["branch", "wide"], default="branch", help="quantization-aware form")
    ptrain.add_argument("--seed", type=integer(0), default=0, help="seed of the networks, splits and batches")
    ptrain.add_argument(
        "--members",
        type=integer(1, 64),
        default=1,
        help="networks per predictor, averaged (a deep ensemble; 1 = APQ's)",
    )
    _device_arg(ptrain)
    ptrain.add_argument("--quiet", action="store_true", help="no progress bars")
    ptrain.set_defaults(func=cmd_predictor_train)
    peval = _parser(pr, "evaluate", "ranking metrics of a saved predictor on a dataset")
    peval.add_argument("--predictor", type=file_path, required=True, help="saved AccuracyPredictor (.pt)")
    peval.add_argument("--data", type=file_path, required=True, help="measured dataset (.jsonl) to score it on")
    peval.set_defaults(func=cmd_predictor_evaluate)


def _problem_args(p: argparse.ArgumentParser, budget: int) -> None:
    _space_arg(p)
    p.add_argument("--budget", type=integer(1, MAX_BUDGET), default=budget, help="evaluated candidates per run")
    p.add_argument("--latency", type=number(0), help="latency limit (ms)")
    p.add_argument("--energy", type=number(0), help="energy limit (mJ)")
    p.add_argument(
        "--objectives", nargs="+", default=["latency"], choices=["latency", "energy"], help="costs to minimise"
    )
    p.add_argument("--predictor", type=file_path, help="saved AccuracyPredictor (default: the space's shipped one)")
    p.add_argument(
        "--apq-checkpoint",
        type=file_path,
        help="APQ's released acc_quant.pt (its repository's checkpoint, downloaded by you) instead of an apqopt "
        "predictor; apq-mbv2 space only",
    )
    p.add_argument("--lut", type=file_path, help="table file (default: the space's shipped BitFusion table)")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="a table with gaps (e.g. APQ's own, which lacks 7x7 depthwise at A4): candidates it cannot price "
        "count as infeasible instead of the table being refused",
    )
    p.add_argument(
        "--architecture", help="candidate JSON (or file): search only its bits (how haq/ohq compare with others)"
    )
    p.add_argument(
        "--pessimism",
        type=number(0, above=False),
        default=0.0,
        metavar="KAPPA",
        help="optimise predicted mean - KAPPA x calibrated std (the shipped predictor is a calibrated ensemble)",
    )
    p.add_argument(
        "--searcher-param",
        action="append",
        metavar="[NAME.]KEY=VALUE",
        help="a searcher's constructor parameter, e.g. population=50 or evolution.mutate_prob=0.2 (repeatable)",
    )
    _storage_arg(p)
    _overwrite_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_search_parser(sub: Sub) -> None:
    se = _parser(
        sub, "search", "run one searcher on one problem and record it as an Optuna study", epilog=_searchers_help()
    )
    _problem_args(se, budget=2000)
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
    _threads_arg(se)
    se.set_defaults(func=cmd_search)


def add_worker_parser(sub: Sub) -> None:
    wo = _parser(sub, "worker", "join a live study (search or measure) until its budget is complete")
    wo.add_argument("--study", required=True, help="name of the live study to join")
    wo.add_argument("--storage", required=True, help="SQLite or PostgreSQL URL of the live study")
    wo.add_argument("--max-trials", type=integer(0), help="leave after telling this many trials")
    wo.add_argument(
        "--allow-dir",
        action="append",
        help="folder from which files the study names may be loaded (repeatable; $APQOPT_HOME always is)",
    )
    wo.add_argument("--quiet", action="store_true", help="no progress bars")
    _threads_arg(wo)
    wo.set_defaults(func=cmd_worker)


def add_compare_parser(sub: Sub) -> None:
    co = _parser(
        sub, "compare", "searchers x seeds on one problem: HV, best accuracy, evals to target", epilog=_searchers_help()
    )
    _problem_args(co, budget=2000)
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
    _threads_arg(co)
    co.set_defaults(func=cmd_compare)


def add_verify_parser(sub: Sub) -> None:
    ve = _parser(sub, "verify", "measure a study's front candidates for real (supernet, quantize, fine-tune)")
    ve.add_argument("--study", required=True, help="recorded study whose front to measure")
    _storage_arg(ve)
    ve.add_argument("--top", type=integer(1), default=5, help="front candidates to measure")
    ve.add_argument("--eval-images", type=integer(1, 10_000), default=5000, help="val images per measurement")
    ve.add_argument("--supernet", type=file_path, help="weights file (default: the shipped one of the study's space)")
    _data_arg(ve)
    _device_arg(ve)
    ve.add_argument("--json", action="store_true", help="print the result as JSON")
    ve.add_argument("--quiet", action="store_true", help="no progress bars")
    ve.set_defaults(func=cmd_verify)


def add_export_parser(sub: Sub) -> None:
    ex = _parser(sub, "export", "write a candidate's network, as measured, to an ONNX or torch.export file")
    ex.add_argument("candidate", nargs="?", help="largest, smallest, candidate JSON or a file holding it")
    _space_arg(ex)
    ex.add_argument("--study", help="export a trial of this study instead (with --trial)")
    ex.add_argument("--trial", type=integer(0), help="the trial number (see the dashboard's inspector)")
    _storage_arg(ex)
    ex.add_argument("--out", type=file_path, required=True, help="model.onnx (export extra) or model.pt2")
    ex.add_argument("--kind", choices=["quant", "fp"], default="quant", help="quant: its policy; fp: full precision")
    ex.add_argument("--seed", type=integer(0), default=0, help="seed of the quantization-aware fine-tune")
    ex.add_argument("--supernet", type=file_path, help="weights file (default: the space's shipped one)")
    _data_arg(ex)
    _device_arg(ex)
    ex.add_argument(
        "--eval-images", type=integer(0, 10_000), default=1000, help="run the file on N val images (0: skip)"
    )
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    ex.set_defaults(func=cmd_export)


def add_refine_parser(sub: Sub) -> None:
    from apqopt.search import SEARCHERS

    rf = _parser(sub, "refine", "closed loop: search, measure the front, fine-tune the predictor; rounds (resumable)")
    _space_arg(rf)
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
    _data_arg(rf)
    _device_arg(rf)
    rf.add_argument("--out", help="folder for measurements, predictors and reports (default under APQOPT_HOME)")
    _storage_arg(rf)
    rf.add_argument("--study-prefix", help="the rounds' studies are PREFIX-round-R (default refine-SPACE-seedS)")
    rf.add_argument("--quiet", action="store_true", help="no progress bars")
    rf.set_defaults(func=cmd_refine)


def add_sensitivity_parser(sub: Sub) -> None:
    se = _parser(
        sub, "sensitivity", "measure the supernet-wide MQE table joint-ilp allocates bits with; rerun to resume"
    )
    _space_arg(se)
    se.add_argument("--supernet", type=file_path, help="weights file (default: the shipped one)")
    se.add_argument("--out", type=file_path, help="output JSON (default: the shipped table of the space)")
    se.add_argument("--replicates", type=integer(1, 100), default=1, help="measurements of every block choice")
    se.add_argument("--images", type=integer(1, 100000), default=64, help="calibration images per MQE pass")
    se.add_argument("--inputs", choices=["synthetic", "real"], default="synthetic", help="OHQ's data-free default")
    se.add_argument("--seed", type=integer(0), default=0, help="seed of the design of networks")
    _data_arg(se)
    _device_arg(se)
    se.add_argument("--quiet", action="store_true", help="no progress bar")
    se.set_defaults(func=cmd_sensitivity)


def add_dashboard_parser(sub: Sub) -> None:
    da = _parser(sub, "dashboard", "review studies in the Streamlit dashboard (read-only)")
    _storage_arg(da)
    da.add_argument("--port", type=integer(1, 65535), default=8501, help="port to serve on")
    da.add_argument("--lut", type=file_path, help="a table for the LUT explorer (besides the shipped ones)")
    da.add_argument(
        "--address", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface, no login!)"
    )
    da.set_defaults(func=cmd_dashboard)


def add_lut_parser(sub: Sub) -> None:
    lut = _parser(sub, "lut", "build, inspect and use latency/energy tables").add_subparsers(dest="sub", required=True)
    build = _parser(lut, "build", "build a space's table from a hardware cost model")
    _space_arg(build)
    build.add_argument("--hardware", default="bitfusion", help="cost model (bitfusion)")
    build.add_argument(
        "--config", type=file_path, help="JSON file with BitFusionConfig fields (array size, clock, buffers, ...)"
    )
    build.add_argument(
        "--mode",
        choices=list(MODES),
        help="apq: APQ-compatible (default); apq-table: also APQ's buffer layout (docs/hardware.md); "
        "orig: the simulator as written",
    )
    build.add_argument("--batch", type=integer(1, 4096), help="batch size (default 1)")
    build.add_argument("--format", choices=["csv", "apq", "both"], default="csv", help="apq: APQ's JSON dict")
    build.add_argument("--out", type=file_path, help="output path (default: the shipped table of the space)")
    build.add_argument("--workers", type=integer(1, 256), default=2, help="processes that price layers")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    build.set_defaults(func=cmd_lut_build)
    meas = _parser(lut, "measure", "time every layer shape on this CPU with PyTorch (fp32 or int8)")
    _space_arg(meas)
    meas.add_argument("--precision", choices=["fp32", "int8"], default="fp32", help="what to time")
    meas.add_argument("--out", type=file_path, help="output CSV (default $APQOPT_HOME/host_PRECISION_SPACE.csv)")
    meas.add_argument("--warmup", type=integer(0), default=5, help="untimed runs per layer first")
    meas.add_argument("--repeats", type=integer(1), default=25, help="timed samples per layer (median kept)")
    meas.add_argument("--threads", type=integer(0, 1024), default=0, help="torch threads (0: PyTorch's default)")
    meas.add_argument("--check", type=integer(0), default=0, help="time N random subnets end to end against the sums")
    meas.add_argument("--quiet", action="store_true", help="no progress bars")
    meas.add_argument("--overwrite", action="store_true", help="replace an existing output table")
    meas.set_defaults(func=cmd_lut_measure)
    lshow = _parser(lut, "show", "summarise a table (shipped by default)")
    _space_arg(lshow)
    lshow.add_argument("--lut", type=file_path, help="table file (apqopt CSV or APQ JSON)")
    lshow.add_argument(
        "--gaps", type=cli_types.space, metavar="NAME|FILE", help="report entries this space needs that the table lacks"
    )
    lshow.set_defaults(func=cmd_lut_show)
    price = _parser(lut, "price", "price one candidate given as JSON (or a file)")
    _space_arg(price, default="apq-mbv2")
    price.add_argument("candidate", help="apqopt candidate JSON, an APQ spec dict (--apq-spec), or a file")
    price.add_argument("--lut", type=file_path, help="table file (default: the shipped table of the candidate's space)")
    price.add_argument("--apq-spec", action="store_true", help="the candidate is APQ's spec dict (ks, e, d, ...)")
    price.add_argument("--layers", action="store_true", help="print the per-layer breakdown")
    price.set_defaults(func=cmd_lut_price)


class _Parser(argparse.ArgumentParser):
    """Bad options are one line (naming the option) and exit 2, like every other user error."""

    def error(self, message: str) -> Any:  # argparse's contract: print and exit
        where = "" if self.prog == "apqopt" else f"{self.prog.removeprefix('apqopt ')}: "
        self.exit(2, f"apqopt: error: {where}{message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="apqopt",
        description="Hardware-aware joint search of architecture, pruning and mixed precision (APQ).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        add_run_parser,
        add_space_parser,
        add_supernet_parser,
        add_collect_parser,
        add_dataset_parser,
        add_predictor_parser,
        add_search_parser,
        add_worker_parser,
        add_compare_parser,
        add_verify_parser,
        add_export_parser,
        add_refine_parser,
        add_sensitivity_parser,
        add_dashboard_parser,
        add_lut_parser,
    ):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command. A user's mistake (an :class:`~apqopt.errors.ApqoptError`, a missing file) is one
    line on stderr and exit 2; anything else is a bug and keeps its traceback."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2, already reported)
        return int(exc.code or 0)
    try:
        if hasattr(args, "threads") and args.func is not cmd_lut_measure:  # lut measure times at its own count
            from apqopt import devices

            devices.set_threads(args.threads, processes=max(1, getattr(args, "workers", None) or 1))
        return int(args.func(args))
    except BrokenPipeError:  # `apqopt ... | head`: the reader has gone; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except (ApqoptError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"apqopt: error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
