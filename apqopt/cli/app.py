"""The `apqopt` parser and entry point: every family's subcommands, and one rule for errors."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from apqopt import devices
from apqopt.cli.hardware import add_lut_parser, add_space_parser, cmd_lut_measure
from apqopt.cli.results import add_dashboard_parser, add_export_parser
from apqopt.cli.search import (
    add_compare_parser,
    add_refine_parser,
    add_run_parser,
    add_search_parser,
    add_verify_parser,
    add_worker_parser,
)
from apqopt.cli.supernet import (
    add_collect_parser,
    add_dataset_parser,
    add_predictor_parser,
    add_sensitivity_parser,
    add_supernet_parser,
)
from apqopt.errors import ApqoptError


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
            devices.set_threads(args.threads, processes=max(1, getattr(args, "workers", None) or 1))
        return int(args.func(args))
    except BrokenPipeError:  # `apqopt ... | head`: the reader has gone; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except (ApqoptError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"apqopt: error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return 2
