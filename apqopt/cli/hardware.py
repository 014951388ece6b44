"""`apqopt space ...` and `apqopt lut ...`: search spaces and their latency/energy tables."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from apqopt import cli_types
from apqopt.cli.common import Sub, command_parser, load_lut, read_candidate, space_arg
from apqopt.cli_types import MAX_ROWS, file_path, integer
from apqopt.errors import ConfigError
from apqopt.fileio import atomic_write, check_output
from apqopt.hardware.bitfusion import MODES, BitFusion
from apqopt.hardware.build import bitfusion_from_config, build_lut
from apqopt.hardware.host import HostCPU, check_sums
from apqopt.hardware.lut import LUTError, load_shipped, shipped_lut_path
from apqopt.interop.apq import to_apq_spec
from apqopt.settings import host_lut_path
from apqopt.space import get_space, space_names, space_to_toml


def price_summary(name: str, samples: int, seed: int) -> None:
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


def cmd_space_show(args: argparse.Namespace) -> int:

    space = get_space(args.space)
    print(space_to_toml(space) if args.toml else json.dumps(space.describe(), indent=2), end="" if args.toml else "\n")
    return 0


def cmd_space_sample(args: argparse.Namespace) -> int:
    space = get_space(args.space)
    for cand in space.to_candidates(space.sample(args.n, args.seed)):
        print(json.dumps(to_apq_spec(space, cand)) if args.apq else cand.to_json())
    return 0


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
    lut = load_lut(args)
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
    cand = read_candidate(args.candidate, args.apq_spec, args.space)
    args.space = cand.space
    lut = load_lut(args)
    cost = lut.price_candidate(cand)
    if args.layers:
        for layer, lat, en in cost.layers:
            print(f"{layer.name:14s} {layer.shape!s:34s} W{layer.w_bits}A{layer.a_bits}  {lat:8.4f} ms  {en:8.4f} mJ")
        print(f"{'head':14s} {'':34s} {'':5s} {cost.head[0]:8.4f} ms  {cost.head[1]:8.4f} mJ")
        print(f"{'tail':14s} {'':34s} {'':5s} {cost.tail[0]:8.4f} ms  {cost.tail[1]:8.4f} mJ")
    print(json.dumps({"latency_ms": cost.latency, "energy_mJ": cost.energy, "layers": len(cost.layers)}))
    return 0


def add_space_parser(sub: Sub) -> None:
    space = command_parser(sub, "space", "inspect a search space").add_subparsers(dest="sub", required=True)
    show = command_parser(space, "show", "print the space's structure, gene count and encoding width")
    space_arg(show)
    show.add_argument("--toml", action="store_true", help="print the space as a space file (to start your own)")
    show.set_defaults(func=cmd_space_show)
    sample = command_parser(space, "sample", "print random candidates as JSON lines")
    space_arg(sample)
    sample.add_argument("--n", type=integer(1, MAX_ROWS), default=5, help="candidates to draw")
    sample.add_argument("--seed", type=integer(0), default=0, help="seed of the draw")
    sample.add_argument("--apq", action="store_true", help="print APQ's spec dicts instead of apqopt JSON")
    sample.set_defaults(func=cmd_space_sample)


def add_lut_parser(sub: Sub) -> None:
    lut = command_parser(sub, "lut", "build, inspect and use latency/energy tables").add_subparsers(
        dest="sub", required=True
    )
    build = command_parser(lut, "build", "build a space's table from a hardware cost model")
    space_arg(build)
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
    meas = command_parser(lut, "measure", "time every layer shape on this CPU with PyTorch (fp32 or int8)")
    space_arg(meas)
    meas.add_argument("--precision", choices=["fp32", "int8"], default="fp32", help="what to time")
    meas.add_argument("--out", type=file_path, help="output CSV (default $APQOPT_HOME/host_PRECISION_SPACE.csv)")
    meas.add_argument("--warmup", type=integer(0), default=5, help="untimed runs per layer first")
    meas.add_argument("--repeats", type=integer(1), default=25, help="timed samples per layer (median kept)")
    meas.add_argument("--threads", type=integer(0, 1024), default=0, help="torch threads (0: PyTorch's default)")
    meas.add_argument("--check", type=integer(0), default=0, help="time N random subnets end to end against the sums")
    meas.add_argument("--quiet", action="store_true", help="no progress bars")
    meas.add_argument("--overwrite", action="store_true", help="replace an existing output table")
    meas.set_defaults(func=cmd_lut_measure)
    lshow = command_parser(lut, "show", "summarise a table (shipped by default)")
    space_arg(lshow)
    lshow.add_argument("--lut", type=file_path, help="table file (apqopt CSV or APQ JSON)")
    lshow.add_argument(
        "--gaps", type=cli_types.space, metavar="NAME|FILE", help="report entries this space needs that the table lacks"
    )
    lshow.set_defaults(func=cmd_lut_show)
    price = command_parser(lut, "price", "price one candidate given as JSON (or a file)")
    space_arg(price, default="apq-mbv2")
    price.add_argument("candidate", help="apqopt candidate JSON, an APQ spec dict (--apq-spec), or a file")
    price.add_argument("--lut", type=file_path, help="table file (default: the shipped table of the candidate's space)")
    price.add_argument("--apq-spec", action="store_true", help="the candidate is APQ's spec dict (ks, e, d, ...)")
    price.add_argument("--layers", action="store_true", help="print the per-layer breakdown")
    price.set_defaults(func=cmd_lut_price)
