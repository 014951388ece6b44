"""The package's shape: no import cycle, no side effects at import, no working-directory defaults."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "apqopt"


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Every apqopt module -> the apqopt modules it imports (module level and inside functions; a
    submodule import counts the packages on its way too, except the importer's own)."""
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("apqopt"):
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("apqopt")]
            for t in targets:
                if t in modules and t != name:  # what the statement names, even its own package
                    graph[name].add(t)
                parts = t.split(".")
                for k in range(2, len(parts)):  # packages passed on the way (a module's own are already loaded)
                    dep = ".".join(parts[:k])
                    if dep in modules and dep != name and not name.startswith(dep + "."):
                        graph[name].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return [*stack[stack.index(v) :], v]
            if v not in state and (cycle := visit(v)):
                return cycle
        stack.pop()
        state[u] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert "apqopt.search.evolution" in graph["apqopt.search"]  # the searchers are listed, not registered
    assert find_cycle(graph) is None, find_cycle(graph)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the checker finds one


def test_importing_apqopt_changes_no_global_state() -> None:
    """Warning filters, Optuna's log level, torch's RNG and matplotlib's backend are the user's: importing
    every apqopt module (after the libraries it builds on) leaves them as they were."""
    modules = sorted(m for m in import_graph() if m not in ("apqopt.dashboard", "apqopt.__main__"))  # these run
    code = f"""
import warnings, logging
import numpy, scipy, scipy.optimize, sklearn, pandas, torch, optuna, pymoo, sqlalchemy, matplotlib, tqdm
import pymoo.algorithms.moo.nsga2, pymoo.optimize, pymoo.indicators.hv
before = (list(warnings.filters), optuna.logging.get_verbosity(), torch.get_rng_state().clone(),
          matplotlib.get_backend(), logging.getLogger().level)
import importlib
for m in {modules!r}:
    importlib.import_module(m)
after = (list(warnings.filters), optuna.logging.get_verbosity(), torch.get_rng_state(),
         matplotlib.get_backend(), logging.getLogger().level)
assert after[0] == before[0], [f for f in after[0] if f not in before[0]]
assert after[1] == before[1], "optuna verbosity"
assert torch.equal(after[2], before[2]), "torch RNG"
assert after[3] == before[3], "matplotlib backend"
assert after[4] == before[4], "root logger"
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_no_working_directory_defaults_outside_settings() -> None:
    """Default output paths come from apqopt.settings (APQOPT_HOME); no module spells its own relative one."""
    relative = re.compile(r"(?:studies|runs|luts|lut|reports|benchmarks)/.*|sqlite:///(?!file:)[^/{].*")
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and relative.fullmatch(node.value):
                offenders.append(f"{path.name}:{node.lineno}: {node.value}")
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("Path.cwd", "os.getcwd", "Path"):
                first = node.args[0] if node.args else None
                if ast.unparse(node.func) != "Path" or (
                    isinstance(first, ast.Constant) and isinstance(first.value, str) and not first.value.startswith("/")
                ):
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []
    for old in ("studies/mqe-cache", "sqlite:///studies/apqopt.db", "luts/host_fp32_fmnist.csv"):
        assert relative.fullmatch(old)  # the pattern catches the old defaults


def test_every_subpackage_is_installed() -> None:
    """pyproject lists apqopt's packages (the top-level lut/ folder is mapped to apqopt.tables), so a new
    subpackage must be listed too, or an installed apqopt would lack it."""
    import tomllib

    conf = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.relative_to(PKG.parent).parent.parts) for p in PKG.rglob("__init__.py")}
    assert set(conf["packages"]) == found | {"apqopt.tables"}
    assert conf["package-dir"] == {"apqopt.tables": "lut"}
    from apqopt.shipped import lut_path, tables_dir

    assert tables_dir().resolve() == (PKG.parent / "lut").resolve() and lut_path("fmnist").is_file()


def test_every_import_is_a_declared_dependency() -> None:
    """What apqopt imports is installed by `pip install apqopt` (or its named extra), not by luck."""
    import tomllib

    meta = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[ ;]", d)[0].lower() for d in meta["dependencies"]}
    optional = meta["optional-dependencies"]
    extras = {name: {re.split(r"[<>=\[ ;]", d)[0].lower() for d in reqs} for name, reqs in optional.items()}
    dist = {"sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow"}
    imported: dict[str, str] = {}
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top != "apqopt" and top not in sys.stdlib_module_names:
                    imported[dist.get(top, top).lower()] = path.name
    # a module that serves one extra may import that extra's packages (and only it)
    extra_of = {"dashboard.py": "dashboard", "export.py": "export"}
    missing = {
        k: v for k, v in imported.items() if k not in declared and k not in extras.get(extra_of.get(v, ""), set())
    }
    assert missing == {}


APPLICATIONS = {
    "apqopt.studies",
    "apqopt.verify",
    "apqopt.compare",
    "apqopt.refine",
    "apqopt.live",
    "apqopt.review",
    "apqopt.dashboard",
    "apqopt.cli",
    "apqopt.export",
}


def third_party_imports(module: str) -> set[str]:
    """Top-level names of the non-apqopt packages a module imports (anywhere in it)."""
    path = PKG.parent / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
    return out - {"apqopt"}


def test_searchers_know_no_application_no_network_and_no_torch() -> None:
    """search/ is the library of searchers over a Problem: nothing in it imports the applications built on
    it (studies, verification, compare, refine, live, review, dashboard, CLI, export), the supernet (OHQ is
    given its sensitivities: apqopt.supernet.mqe.SupernetMQE), the predictor (loaded by
    apqopt.problem_spec) or torch (HAQ's actor and critic are NumPy)."""
    graph = import_graph()
    search = {m for m in graph if m == "apqopt.search" or m.startswith("apqopt.search.")}
    assert "apqopt.search.ohq" in search and "apqopt.compare" in graph  # compare sits beside refine/live
    up = sorted((m, d) for m in search for d in graph[m] if d in APPLICATIONS or d.startswith("apqopt.cli"))
    assert not up, up
    nets = sorted((m, d) for m in search for d in graph[m] if d.startswith(("apqopt.supernet", "apqopt.predictor")))
    assert not nets, nets
    torch_users = {m for m in search if "torch" in third_party_imports(m)}
    assert not torch_users, torch_users
    code = "import sys, apqopt.search; print('torch' in sys.modules)"  # and none comes in on the way
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# how study and trial attrs are reached in Optuna: only the record codec (and the adapter's raw tables) may
ATTR_ACCESS = {
    "user_attrs",
    "system_attrs",
    "set_user_attr",
    "set_system_attr",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "set_study_user_attr",
    "set_study_system_attr",
    "set_trial_user_attr",
    "set_trial_system_attr",
}


def stored_name_uses(path: Path, names: set[str], access: bool) -> list[str]:
    """Where a module spells a stored name (a string constant, docstrings aside) or, with ``access``,
    reaches an attr of a study or trial (an attribute or keyword named as in :data:`ATTR_ACCESS`)."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if node.value in names or re.fullmatch(r"apqopt:[a-z_]+", node.value):
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
        elif access and isinstance(node, ast.Attribute) and node.attr in ATTR_ACCESS:
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
        elif access and isinstance(node, ast.keyword) and node.arg in ATTR_ACCESS:
            found.append(f"{path.name}:{getattr(node.value, 'lineno', 0)}: {node.arg}=")
    return found


def test_stored_fields_are_read_and_written_only_by_the_record_codec(tmp_path: Path) -> None:
    """One way in and one way out: no module but apqopt/record.py reaches a study's or trial's attrs
    (Optuna's raw-table adapter aside), and none spells a name only a study stores (common words such as
    'recording' or 'seed' are guarded by the first rule alone)."""
    from apqopt import record

    names = {
        record.PREDICTED,
        record.MEASURED,
        record.VERIFIED,
        record.LIVE_SPEC,
        record.OUTSIDE,
        record.TRIALS_HOLD,
        record.HISTORY,
        record.WORKERS,
        record.SUPERNET,
        "measured_hypervolume",
    }
    found = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name != "record.py":
            found += stored_name_uses(path, names, access=path.name != "optuna_adapter.py")
    assert not found, found
    bad = tmp_path / "probe.py"  # the checker sees each kind of use, and not a docstring
    body = '    """verified"""\n    s.enqueue_trial({}, user_attrs={})\n    return t.user_attrs["verified"]\n'
    bad.write_text(f"def f(t, s):\n{body}")
    assert len(stored_name_uses(bad, names, access=True)) == 3


def test_the_cli_is_one_module_per_command_family_with_its_imports_at_the_top() -> None:
    """The 1,321-line cli.py with 42 imports inside functions became a package: each family's commands
    and parsers in one module, every import at the top (what a module needs is read from its head)."""
    cli = PKG / "cli"
    families = {p.stem for p in cli.glob("*.py")}
    assert {"hardware", "supernet", "search", "results", "common", "app"} <= families
    inner = []
    for path in sorted(cli.glob("*.py")):
        tree = ast.parse(path.read_text())
        assert len(path.read_text().splitlines()) < 600, path.name
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                inner += [f"{path.name}:{n.lineno}" for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not inner, inner
