"""What every command family shares: the options they have in common, reading candidates and studies,
and the one description of a search problem the options make (:func:`problem_spec_of`)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import optuna

from apqopt import cli_types
from apqopt.cli_types import MAX_BUDGET, file_path, integer, number
from apqopt.errors import ConfigError
from apqopt.fileio import read_text
from apqopt.hardware.lut import LUT, load_shipped
from apqopt.interop.apq import from_apq_spec
from apqopt.problem_spec import ProblemSpec
from apqopt.search import SEARCHERS, searcher_class
from apqopt.settings import default_storage
from apqopt.shipped import supernet_path
from apqopt.space import Candidate, InvalidCandidateError, get_space, space_names
from apqopt.studies import StorageError, open_storage
from apqopt.supernet.train import load_supernet, weights_identity


def weights_path(args: argparse.Namespace, space: str) -> Path:
    """--supernet, or the weights shipped for the space."""
    return Path(args.supernet) if args.supernet else supernet_path(space)


def measured_supernet(args: argparse.Namespace, weights: Path) -> Any:
    """The supernet a command measures with, on ``--data`` if given (else the data it records)."""

    net = load_supernet(weights, getattr(args, "data", None), getattr(args, "device", None))
    if not net.data:
        raise ConfigError(f"{weights} records no data to measure on; pass --data (e.g. imagefolder:DIR)")
    return net


def weights_identity_on(weights: Path, net: Any, args: argparse.Namespace) -> str:
    """Which weights, on which images: records measured on other data never mix into a dataset."""

    data = getattr(args, "data", None)
    return weights_identity(weights) + (f"@{net.data}" if data else "")


def space_arg(p: argparse.ArgumentParser, default: str | None = "fmnist") -> None:
    p.add_argument(
        "--space",
        default=default,
        type=cli_types.space,
        metavar="NAME|FILE",
        help=f"search space: a preset ({', '.join(space_names())}) or a TOML/JSON space file",
    )


def load_lut(args: argparse.Namespace) -> LUT:
    return LUT.load(args.lut) if args.lut else load_shipped(args.space)


def read_candidate(text: str, apq: bool, space: str) -> Candidate:
    """A candidate given inline as JSON, or as a file holding it."""

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


def named_candidate(text: str, space: Any) -> Candidate:
    """``largest``, ``smallest``, or a candidate given as JSON (or a file holding it)."""
    named = {"largest": space.uniform, "smallest": space.smallest}
    return named[text]() if text in named else read_candidate(text, False, space.name)


def problem_spec_of(args: argparse.Namespace) -> ProblemSpec:
    """The problem that --space, --latency/--energy, --objectives, --predictor/--apq-checkpoint, --lut,
    --architecture, --allow-missing and --pessimism describe."""
    arch = read_candidate(args.architecture, False, args.space) if getattr(args, "architecture", None) else None
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


def problem_of(args: argparse.Namespace) -> Any:
    return problem_spec_of(args).build()


def searcher_params(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any]]:
    """--searcher-param [NAME.]KEY=VALUE, per searcher (VALUE read as JSON, else as text); checked now,
    before any search work."""

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


def predictor_label(args: argparse.Namespace) -> str:
    return str(args.apq_checkpoint or args.predictor or "shipped")


def settings_tag(prefix: str, args: argparse.Namespace) -> str:
    """``prefix-`` and a fingerprint of every option that decides the results (not where they go or how
    they are shown): the same command finds its own studies again, another one never collides with them."""
    quiet = {"func", "out", "quiet", "storage", "overwrite", "threads", "tag", "command", "sub"}
    key = json.dumps({k: v for k, v in sorted(vars(args).items()) if k not in quiet}, default=str)
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def load_study(name: str, storage: str | None) -> Any:
    """A study that must exist (a missing one is one line naming the storage; nothing is created)."""

    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage, create=False))
    except KeyError:
        raise StorageError(f"no study '{name}' in {storage or default_storage()}") from None


Sub = Any  # argparse's subparsers action (its class is private)


RUN_SEARCHERS = ["random", "evolution", "pymoo-nsga2", "optuna-nsga2"]


COMPARE_SEARCHERS = ["random", "evolution", "pymoo-nsga2", "optuna-nsga2", "optuna-tpe"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help shows every default (once, and not for flags) and keeps the searcher table's lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if unset or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".lstrip()


def command_parser(sub: Sub, name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter, **kw)


def searchers_help() -> str:

    return "searchers:\n" + "\n".join(f"  {n:18s} {c.summary}" for n, c in sorted(SEARCHERS.items()))


def data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=cli_types.data,
        help="images to measure on: fmnist, imagefolder:DIR or module:function (default: the supernet's own)",
    )


def device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        type=cli_types.device,
        default="cpu",
        metavar="DEVICE",
        help="where torch runs: auto (a GPU if there is one), cpu, cuda or cuda:N",
    )
    threads_arg(p)


def threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=integer(0, 1024),
        default=0,
        help="torch threads per process (0: $OMP_NUM_THREADS if set, else this machine's usable cores "
        "shared out among the processes the command starts, so never more threads than cores)",
    )


def storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL or journal path (default: sqlite:///$APQOPT_HOME/apqopt.db)"
    )


def overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace studies of the same names, and another run's report in the report folder (default: "
        "resume interrupted ones, refuse others)",
    )


def problem_args(p: argparse.ArgumentParser, budget: int) -> None:
    space_arg(p)
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
    storage_arg(p)
    overwrite_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
