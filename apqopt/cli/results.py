"""`apqopt export` and `apqopt dashboard`: taking a found network out, and reviewing recorded studies."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna

from apqopt.cli.common import (
    Sub,
    command_parser,
    data_arg,
    device_arg,
    load_study,
    measured_supernet,
    named_candidate,
    space_arg,
    storage_arg,
    weights_path,
)
from apqopt.cli_types import file_path, integer
from apqopt.errors import ConfigError
from apqopt.export import META_KEY, check_out, export_candidate, run_exported
from apqopt.record import study_record
from apqopt.settings import default_storage
from apqopt.space import Candidate
from apqopt.studies import open_storage
from apqopt.supernet.data import accuracy_stderr, load_split, preprocessing


def _trial_candidate(study_name: str, storage: str | None, number: int) -> Candidate:
    """Trial ``number`` of a recorded study, as a candidate of the study's space."""

    study = load_study(study_name, storage)
    codec = study_record(study).codec()
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    if number not in trials:
        raise ConfigError(f"--trial: study '{study_name}' has no complete trial {number}")
    return codec.space.to_candidates(codec.genes(trials[number].params)[None])[0]


def cmd_export(args: argparse.Namespace) -> int:

    if (args.candidate is None) == (args.study is None):
        raise ConfigError("export: give a CANDIDATE or --study with --trial (one of the two)")
    if args.study is not None and args.trial is None:
        raise ConfigError("export: --study needs --trial (the trial number to export)")
    check_out(args.out, args.overwrite)
    cand = _trial_candidate(args.study, args.storage, args.trial) if args.study is not None else None
    space = cand.space if cand is not None else args.space
    net = measured_supernet(args, weights_path(args, space))
    if cand is None:
        cand = named_candidate(args.candidate, net.space)
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


def address_is_loopback(address: str) -> bool:
    """Whether every address ``address`` resolves to is this machine's loopback (127.0.0.0/8, ::1); one that
    does not resolve (``999.1.1.1``, an unknown name) is a ConfigError naming ``--address``."""

    try:
        infos = socket.getaddrinfo(address, None)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--address {address!r} does not resolve to an address of this machine ({exc})") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start Streamlit on this machine only (127.0.0.1) unless --address says otherwise, with usage
    statistics off; SIGTERM/SIGINT reach the Streamlit process, so stopping this command stops the app."""

    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("the dashboard needs Streamlit: pip install 'apqopt[dashboard]'")

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
    app = Path(__file__).resolve().parents[1] / "dashboard.py"  # apqopt/dashboard.py, run by streamlit
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


def add_export_parser(sub: Sub) -> None:
    ex = command_parser(sub, "export", "write a candidate's network, as measured, to an ONNX or torch.export file")
    ex.add_argument("candidate", nargs="?", help="largest, smallest, candidate JSON or a file holding it")
    space_arg(ex)
    ex.add_argument("--study", help="export a trial of this study instead (with --trial)")
    ex.add_argument("--trial", type=integer(0), help="the trial number (see the dashboard's inspector)")
    storage_arg(ex)
    ex.add_argument("--out", type=file_path, required=True, help="model.onnx (export extra) or model.pt2")
    ex.add_argument("--kind", choices=["quant", "fp"], default="quant", help="quant: its policy; fp: full precision")
    ex.add_argument("--seed", type=integer(0), default=0, help="seed of the quantization-aware fine-tune")
    ex.add_argument("--supernet", type=file_path, help="weights file (default: the space's shipped one)")
    data_arg(ex)
    device_arg(ex)
    ex.add_argument(
        "--eval-images", type=integer(0, 10_000), default=1000, help="run the file on N val images (0: skip)"
    )
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    ex.set_defaults(func=cmd_export)


def add_dashboard_parser(sub: Sub) -> None:
    da = command_parser(sub, "dashboard", "review studies in the Streamlit dashboard (read-only)")
    storage_arg(da)
    da.add_argument("--port", type=integer(1, 65535), default=8501, help="port to serve on")
    da.add_argument("--lut", type=file_path, help="a table for the LUT explorer (besides the shipped ones)")
    da.add_argument(
        "--address", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface, no login!)"
    )
    da.set_defaults(func=cmd_dashboard)
