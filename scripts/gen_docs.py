"""Generate docs/cli-reference.md from the command line's own parser (every command's --help).

Run: python scripts/gen_docs.py          (tests/test_docs.py checks the committed file is current)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli-reference.md"


def _commands(parser: argparse.ArgumentParser, prefix: str = "apqopt") -> list[tuple[str, argparse.ArgumentParser]]:
    """(full command, parser) for every leaf command, in the order the parser lists them."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(prefix, parser)]
    out = []
    for name, sub in subs[0].choices.items():
        out += _commands(sub, f"{prefix} {name}")
    return out


def cli_reference() -> str:
    """The reference page: each command's --help, at a fixed width so the page does not depend on the terminal."""
    os.environ["COLUMNS"] = "100"
    from apqopt.cli import build_parser

    lines = [
        "# CLI reference",
        "",
        "Generated from the parser by `python scripts/gen_docs.py`; every command's `--help`, defaults included.",
        "",
    ]
    for name, parser in _commands(build_parser()):
        parser.prog = name
        lines += [f"## `{name}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def main() -> int:
    text = cli_reference()
    if "--check" in sys.argv:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
