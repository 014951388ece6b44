"""`apqopt` command line: thin wrappers over the library, one module per command family.

Why thin: everything a command does is a library call a user can make from Python too; the CLI only
parses, reports errors as one clear line (exit 2), and prints. Families: :mod:`~apqopt.cli.hardware`
(space, lut), :mod:`~apqopt.cli.supernet` (supernet, collect, dataset, predictor, sensitivity),
:mod:`~apqopt.cli.search` (run, search, worker, compare, verify, refine), :mod:`~apqopt.cli.results`
(export, dashboard); :mod:`~apqopt.cli.app` assembles the parser.
"""

from __future__ import annotations

from apqopt.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
