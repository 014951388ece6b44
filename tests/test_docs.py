"""The docs cannot rot: every Python block of the README and docs/ runs, every `apqopt` command in a bash
block parses with the real parser (the quick ones also run), the CLI reference is the parser's current
--help, and the MkDocs site builds with --strict (broken links, bad API references fail)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from apqopt.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# commands quick enough to run in the suite (the rest are parsed: options and values checked)
RUNS = ("space", "lut show", "lut price", "dataset", "predictor evaluate", "search")


def blocks(page: Path, *langs: str) -> list[str]:
    return [m.group(2) for m in BLOCK.finditer(page.read_text()) if m.group(1) in langs]


def shell_commands(page: Path) -> list[list[str]]:
    out = []
    for block in blocks(page, "bash"):
        text = re.sub(r"\\\n\s*", " ", block)  # line continuations
        for line in text.splitlines():
            if line.strip().startswith("apqopt "):
                out.append(shlex.split(line, comments=True)[1:])
    return out


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder where the docs' relative paths (studies/, apqopt/assets/...) resolve."""
    (tmp_path / "apqopt").symlink_to(ROOT / "apqopt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APQOPT_HOME", str(tmp_path / "studies"))
    return tmp_path


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=lambda p: p.name)
def test_python_blocks_run(page: Path, sandbox: Path) -> None:
    """Every Python block of a page runs on its own, as a reader who copies only that block would run it:
    each in a fresh namespace (one interpreter per page, blocks in order, so files one writes are there)."""
    runner = (
        "import json, sys\n"
        "for i, block in enumerate(json.loads(sys.argv[1])):\n"
        "    exec(compile(block, f'{sys.argv[2]} python block {i + 1}', 'exec'), {'__name__': '__main__'})\n"
    )
    code = runner
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", code, json.dumps(blocks(page, "python")), page.name]
    res = subprocess.run(argv, cwd=sandbox, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{page.name}:\n{res.stderr[-3000:]}"


OWN_RUN = ("own-task.md",)  # pages whose commands a test of their own runs whole (tests/test_own_task.py)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if shell_commands(p) and p.name not in OWN_RUN], ids=lambda p: p.name
)
def test_shell_commands_parse_and_quick_ones_run(page: Path, sandbox: Path) -> None:
    parser = build_parser()
    for argv in shell_commands(page):
        target = None
        if ">" in argv:  # `apqopt ... > file`: run with stdout into the file, as the shell would
            target, argv = sandbox / argv[argv.index(">") + 1], argv[: argv.index(">")]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{page.name}: `apqopt {' '.join(argv)}` does not parse (exit {exc.code})")
        quick = " ".join(argv[:2]) in RUNS or argv[0] in RUNS
        if quick and not {"--live", "--apq-checkpoint", "--lut"} & set(argv) and "[...]" not in " ".join(argv):
            if argv[0] == "search":
                budget = int(argv[argv.index("--budget") + 1]) if "--budget" in argv else 2000
                if budget > 2000:
                    continue
                argv = [*argv, "--quiet"]
            with contextlib.ExitStack() as stack:
                if target is not None:
                    stack.enter_context(contextlib.redirect_stdout(stack.enter_context(target.open("w"))))
                assert main(argv) == 0, f"{page.name}: `apqopt {' '.join(argv)}` failed"


def test_cli_reference_is_current() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"], capture_output=True)
    assert res.returncode == 0, "docs/cli-reference.md is stale: run python scripts/gen_docs.py"


def test_mkdocs_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="pip install -e '.[test]' installs MkDocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("doc-heading") > 20
