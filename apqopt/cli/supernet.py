"""`apqopt supernet ...`, `collect`, `dataset`, `predictor ...` and `sensitivity`: the supernet and what
is measured on it (accuracy datasets, per-layer quantization sensitivity), and the predictor fitted to them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from apqopt import cli_types
from apqopt.cli.common import (
    Sub,
    command_parser,
    data_arg,
    device_arg,
    measured_supernet,
    named_candidate,
    space_arg,
    weights_identity_on,
    weights_path,
)
from apqopt.cli.search import _work_locally
from apqopt.cli_types import MAX_BUDGET, file_path, integer, number
from apqopt.errors import ConfigError
from apqopt.live import LiveSpec, create_live_study, enqueue
from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.train import load_xy, train_predictors
from apqopt.settings import mqe_cache_dir, supernet_run_dir
from apqopt.shipped import sensitivity_path
from apqopt.space import get_space, space_names
from apqopt.supernet.collect import CollectConfig, candidate_genes, collect, summarize
from apqopt.supernet.data import accuracy_stderr, load_split
from apqopt.supernet.evaluate import evaluate_subnet
from apqopt.supernet.mqe import measure_table
from apqopt.supernet.train import DEFAULT_PHASES, TrainConfig, train_supernet, weights_identity


def cmd_supernet_train(args: argparse.Namespace) -> int:

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

    weights = weights_path(args, args.space)
    if args.storage and args.data:
        raise ConfigError("collect: --data is for --out datasets; a live study measures on the supernet's own data")
    if args.storage and args.draw != "uniform":
        raise ConfigError("collect: --draw is for --out datasets; a live study draws uniformly")
    if args.storage:  # a live measure study: enqueue the candidates, work on them beside other workers
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
    net = measured_supernet(args, weights)
    cfg = CollectConfig(
        kind=args.kind,
        space=net.space.name,
        seed=args.seed,
        eval_images=args.eval_images,
        supernet=weights_identity_on(weights, net, args),
        draw=args.draw,
    )
    t0 = time.time()
    path = collect(cfg, net, args.out, args.n, _parse_shard(args.shard), progress=not args.quiet)
    print(f"{path}: done in {time.time() - t0:.0f} s")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:

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

    weights = weights_path(args, args.space)
    net = measured_supernet(args, weights)
    space = net.space
    cands = [(c, named_candidate(c, space)) for c in args.candidates]
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

    pred = AccuracyPredictor.load(args.predictor)
    X, y = load_xy(args.data, pred.space, bits=pred.variant != "fp")
    print(json.dumps(pred.report(X, y), indent=2))
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:

    weights = weights_path(args, args.space)
    if args.out is None and (args.supernet or args.space not in space_names()):
        raise ConfigError(
            "sensitivity: --out is required with --supernet or a space file (no shipped table to replace)"
        )
    out = Path(args.out) if args.out else sensitivity_path(args.space)
    net = measured_supernet(args, weights)
    t0 = time.perf_counter()
    table = measure_table(
        net, args.replicates, args.images, args.inputs, args.seed, cache_dir=mqe_cache_dir(), progress=not args.quiet
    )
    meta = {**table.meta, "supernet": weights_identity(weights), "seconds": round(time.perf_counter() - t0, 1)}
    meta["command"] = f"apqopt sensitivity --space {args.space} --replicates {args.replicates} --images {args.images}"
    dataclasses.replace(table, meta=meta).save(out)
    print(f"measured {meta['networks']} networks in {meta['seconds']:.0f} s -> {out}")
    return 0


def add_supernet_parser(sub: Sub) -> None:
    sn = command_parser(sub, "supernet", "train the once-for-all supernet").add_subparsers(dest="sub", required=True)
    train = command_parser(sn, "train", "progressive shrinking + in-place distillation; rerun to resume")
    space_arg(train)
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
    device_arg(train)
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_supernet_train)
    sev = command_parser(sn, "eval", "accuracy of subnets (BN re-estimated) with its standard error")
    space_arg(sev)
    sev.add_argument("candidates", nargs="*", default=["largest", "smallest"], help="largest, smallest or JSON")
    sev.add_argument("--split", default="test", choices=["train", "val", "test"], help="images to measure on")
    sev.add_argument("--supernet", type=file_path, help="weights file (default: the shipped one)")
    data_arg(sev)
    device_arg(sev)
    sev.set_defaults(func=cmd_supernet_eval)


def add_collect_parser(sub: Sub) -> None:
    col = command_parser(sub, "collect", "measure random subnets into an accuracy dataset (resumable)")
    col.add_argument("kind", choices=["fp", "quant"], help="fp: full precision; quant: policy + short QAT")
    space_arg(col)
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
    data_arg(col)
    device_arg(col)
    col.add_argument("--shard", default="0/1", help="k/n: this process measures indices i with i %% n == k")
    col.add_argument("--eval-images", type=integer(1, 10_000), default=5000, help="val images per measurement")
    col.add_argument("--supernet", type=file_path, help="weights file (default: the shipped one)")
    col.add_argument("--storage", help="SQLite/PostgreSQL URL: collect as a live study that workers share")
    col.add_argument("--study", help="live study name (default collect-KIND-SPACE-seedN)")
    col.add_argument("--workers", type=integer(1, 256), default=1, help="local worker processes for a live study")
    col.add_argument("--quiet", action="store_true", help="no progress bars")
    col.set_defaults(func=cmd_collect)


def add_dataset_parser(sub: Sub) -> None:
    ds = command_parser(sub, "dataset", "summarise accuracy datasets (shards merged): size, spread, measuring time")
    ds.add_argument("paths", nargs="+", type=file_path, help="dataset files as given to collect --out")
    ds.add_argument("--json", action="store_true", help="one JSON object per dataset instead of a table")
    ds.set_defaults(func=cmd_dataset)


def add_predictor_parser(sub: Sub) -> None:
    pr = command_parser(sub, "predictor", "accuracy predictors").add_subparsers(dest="sub", required=True)
    ptrain = command_parser(pr, "train", "fp predictor, transfer to quantized data, report on the held-out set")
    space_arg(ptrain)
    ptrain.add_argument("--fp", type=file_path, required=True, help="fp dataset (apqopt collect fp)")
    ptrain.add_argument(
        "--quant",
        type=file_path,
        nargs="+",
        required=True,
        help="quantized training dataset(s) (apqopt collect quant); several are pooled, measured alike",
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
    device_arg(ptrain)
    ptrain.add_argument("--quiet", action="store_true", help="no progress bars")
    ptrain.set_defaults(func=cmd_predictor_train)
    peval = command_parser(pr, "evaluate", "ranking metrics of a saved predictor on a dataset")
    peval.add_argument("--predictor", type=file_path, required=True, help="saved AccuracyPredictor (.pt)")
    peval.add_argument("--data", type=file_path, required=True, help="measured dataset (.jsonl) to score it on")
    peval.set_defaults(func=cmd_predictor_evaluate)


def add_sensitivity_parser(sub: Sub) -> None:
    se = command_parser(
        sub, "sensitivity", "measure the supernet-wide MQE table joint-ilp allocates bits with; rerun to resume"
    )
    space_arg(se)
    se.add_argument("--supernet", type=file_path, help="weights file (default: the shipped one)")
    se.add_argument("--out", type=file_path, help="output JSON (default: the shipped table of the space)")
    se.add_argument("--replicates", type=integer(1, 100), default=1, help="measurements of every block choice")
    se.add_argument("--images", type=integer(1, 100000), default=64, help="calibration images per MQE pass")
    se.add_argument("--inputs", choices=["synthetic", "real"], default="synthetic", help="OHQ's data-free default")
    se.add_argument("--seed", type=integer(0), default=0, help="seed of the design of networks")
    data_arg(se)
    device_arg(se)
    se.add_argument("--quiet", action="store_true", help="no progress bar")
    se.set_defaults(func=cmd_sensitivity)
