"""Command-line value types: every number and path is checked where it enters, with one message
naming the option (argparse adds ``argument --NAME:``).

Why a module of its own: the same rules (finite, integral, in range, not a folder) apply to every
command, and a value refused here never reaches work that would run for minutes first.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

MAX_BUDGET = 10_000_000  # distinct networks per run: beyond this a run does not end in a working day
MAX_ROWS = 1_000_000  # gene rows held at once (sampled, priced): 1M x 125 genes is 1 GB
MAX_INT = 2**31 - 1  # any other count or seed: seeds are mixed into larger ones, which must stay in 64 bits


def integer(lo: int = 0, hi: int | None = MAX_INT) -> Callable[[str], int]:
    """An integer in [lo, hi]; '3.5', '1e3', 'nan' and 'true' are refused, not rounded."""

    def parse(text: str) -> int:
        try:
            v = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            limits = _range(lo, hi) if v < lo or hi != MAX_INT else f"<= {hi} (2**31 - 1)"
            raise argparse.ArgumentTypeError(f"must be {limits}, got {v}")
        return v

    parse.__name__ = "integer"
    return parse


def number(lo: float = 0.0, hi: float = math.inf, above: bool = True) -> Callable[[str], float]:
    """A finite float greater than ``lo`` (or equal, with ``above=False``) and at most ``hi``."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (v <= lo if above else v < lo) or v > hi:
            op = ">" if above else ">="
            raise argparse.ArgumentTypeError(
                f"must be {op} {lo:g}{'' if hi == math.inf else f' and <= {hi:g}'}, got {v:g}"
            )
        return v

    parse.__name__ = "number"
    return parse


def file_path(text: str) -> str:
    """A path that, where it exists, is a file (a folder given as a file is named here, not traced back)."""
    if not text:
        raise argparse.ArgumentTypeError("must be a path, got an empty string")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    return text


def space(text: str) -> str:
    """A preset name or a space file (TOML/JSON); the file is read and checked here, and the space's
    name is what the command goes on with (the space stays findable by it in this process)."""
    from apqopt.errors import ApqoptError, first_line
    from apqopt.space import get_space

    try:
        return get_space(text).name
    except ApqoptError as e:
        raise argparse.ArgumentTypeError(first_line(e)) from None


def data(text: str) -> str:
    """A data source: fmnist, imagefolder:DIR or module:function (see :mod:`apqopt.supernet.data`)."""
    from apqopt.errors import ApqoptError, first_line
    from apqopt.supernet.data import check_data

    try:
        return check_data(text)
    except ApqoptError as e:
        raise argparse.ArgumentTypeError(first_line(e)) from None


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N, checked against this machine's GPUs."""
    from apqopt.devices import resolve
    from apqopt.errors import ApqoptError, first_line

    try:
        return str(resolve(text))
    except ApqoptError as e:
        raise argparse.ArgumentTypeError(first_line(e)) from None


def _range(lo: int, hi: int | None) -> str:
    return f">= {lo}" if hi in (None, MAX_INT) else f"between {lo} and {hi}"


__all__ = ["MAX_BUDGET", "MAX_INT", "MAX_ROWS", "data", "device", "file_path", "integer", "number", "space"]
