"""Search spaces from files: the presets are such files, a user's own space runs through the commands, and a
bad file is one error naming the file and the key."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from apqopt import get_space
from apqopt.errors import ApqoptError
from apqopt.hardware.lut import LUT
from apqopt.search import make_searcher
from apqopt.search.problem import Problem
from apqopt.space import read_space, space_from_dict, space_to_dict, space_to_toml
from apqopt.studies import record

# what the shipped tables, predictors and supernet were built for: a preset file that changes these breaks them
PINNED = {"fmnist": (125, 360, 95, 20), "apq-mbv2": (132, 772, 779, 21)}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apqopt", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_presets_are_space_files_read_like_any_other(name: str) -> None:
    space = get_space(name)
    shipped = Path(str(files("apqopt") / "assets" / "spaces" / f"{name}.toml"))
    assert read_space(shipped) == space
    assert space_from_dict(tomllib.loads(space_to_toml(space))) == space  # the writer round-trips
    assert (space.n_genes, space.encoding_width, len(space.layer_shapes()), space.n_blocks) == PINNED[name]


def _fmnist() -> dict:
    return space_to_dict(get_space("fmnist")) | {"name": "variant"}


def _set(d: dict, path: str, value: object) -> dict:
    node, keys = d, path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return d


BAD = [
    ("colour", "red", "colour: unknown key"),
    ("stages", KeyError, "stages: missing"),
    ("stages.1.stride", 0, "stages[1].stride: must be a positive integer"),
    ("stages.0.depths", [3, 2], "stages[0].depths: must be increasing"),
    ("stages.0.depths", [2, 2.5], "stages[0].depths[1]: must be a positive integer"),
    ("kernels", [3, 4], "kernels: kernels must be odd"),
    ("bits", [4, 64], "bits: bit-widths go up to 32"),
    ("bits", [], "bits: must be a non-empty list"),
    ("middle_steps", [4.0, 6.0], "give exactly one of middle_ratios and middle_steps"),
    ("middle_ratios", [3.0, float("nan")], "middle_ratios[1]: must be a positive number"),
    ("tail.0.c_in", 63, "tail[0].c_in: must equal the last stage's c_out (64)"),
    ("head.0.c_in", 3, "head[0]: the first head layer must read the image"),
    ("head.0.padding", -1, "head[0].padding: must be a whole number >= 0"),
    ("head.0.kernel", KeyError, "head[0].kernel: missing"),
    ("name", "my space", "name: letters, digits"),
    ("input_size", True, "input_size: must be a positive integer"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[b[0] + "=" + repr(b[1]) for b in BAD])
def test_bad_space_description_names_the_key(path: str, value: object, message: str) -> None:
    with pytest.raises(ApqoptError, match=r"^my\.json: ") as e:
        space_from_dict(_set(_fmnist(), path, value), "my.json")
    assert message in str(e.value)


def test_bad_space_file_is_exit_2_and_one_line(tmp_path: Path) -> None:
    good = space_to_toml(space_from_dict(_fmnist()))
    cases = {
        "stride.toml": good.replace("stride = 2", "stride = 0", 1),
        "broken.toml": good.replace("[[stages]]", "[[stages]", 1),
        "missing.toml": None,
        "folder.toml": "folder",
    }
    for fname, text in cases.items():
        if text == "folder":
            (tmp_path / fname).mkdir()
        elif text is not None:
            (tmp_path / fname).write_text(text)
        res = cli("space", "show", "--space", str(tmp_path / fname))
        assert res.returncode == 2, (fname, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "--space" in lines[0] and fname in lines[0], res.stderr
    assert "stages[1].stride" in cli("space", "show", "--space", str(tmp_path / "stride.toml")).stderr


def test_two_spaces_cannot_share_a_name(tmp_path: Path) -> None:
    d = space_to_dict(get_space("fmnist"))
    d["bits"] = [4, 8]
    (tmp_path / "f.json").write_text(json.dumps(d))
    with pytest.raises(ApqoptError, match="already taken by a different space"):
        get_space(str(tmp_path / "f.json"))


def test_a_taken_name_never_prices_another_space(tmp_path: Path) -> None:
    """A second space called "mine" with other channels is refused however it arrives (file or object), and
    a table's compiled prices are keyed by the space's content, not its name: the wrong-price case of #34
    (a second "mine" priced with the first one's table) cannot happen."""
    import dataclasses

    from apqopt.hardware.lut import load_shipped

    d = space_to_dict(get_space("fmnist"))
    d["name"] = f"mine-{tmp_path.name}"
    first = space_from_dict(dict(d))
    assert get_space(first) is first
    d["stages"][0]["c_out"] = d["stages"][0]["c_out"] + 8
    (tmp_path / "other.json").write_text(json.dumps(d))
    with pytest.raises(ApqoptError, match="already taken by a different space"):
        get_space(str(tmp_path / "other.json"))
    other = space_from_dict(dict(d))
    with pytest.raises(ApqoptError, match="already taken by a different space"):
        get_space(other)
    assert other.fingerprint != first.fingerprint
    assert dataclasses.replace(first, description="other words").fingerprint == first.fingerprint
    lut = load_shipped("fmnist")
    lut._compile(get_space("fmnist"))
    renamed = dataclasses.replace(get_space("fmnist"), name="fmnist", bits=(4, 8))
    assert lut._compile(renamed) is not lut._compile(get_space("fmnist"))


def test_own_space_from_a_file_through_table_search_and_a_stored_study(tmp_path: Path) -> None:
    """A user's space: written from a preset with `space show --toml`, edited, priced by `lut build`, searched,
    recorded; the study carries the space, so a fresh process reads it with the file gone."""
    res = cli("space", "show", "--space", "fmnist", "--toml")
    assert res.returncode == 0, res.stderr
    text = (
        res.stdout.replace('name = "fmnist"', 'name = "mine"')
        .replace("middle_ratios = [3.0, 4.0, 6.0]", "middle_ratios = [2, 4]")
        .replace("bits = [4, 6, 8]", "bits = [4, 8]")
    )
    spec = tmp_path / "mine.toml"
    spec.write_text(text)
    assert cli("lut", "build", "--space", str(spec), "--quiet").returncode == 2  # no shipped table to overwrite
    res = cli("lut", "build", "--space", str(spec), "--out", str(tmp_path / "t.csv"), "--quiet")
    assert res.returncode == 0, res.stderr
    shown = json.loads(cli("lut", "show", "--lut", str(tmp_path / "t.csv"), "--gaps", str(spec)).stdout)
    assert shown["gaps"]["missing"] == 0

    space = get_space(str(spec))
    assert space.name == "mine" and space.bits == (4, 8) and all(len(m) == 2 for m in space.middle_choices)
    table = LUT.load(tmp_path / "t.csv")
    w = np.random.default_rng(0).normal(size=space.encoding_width)
    problem = Problem(space, lambda g: 0.8 + 0.001 * space.encode(g) @ w, table, constraints={"latency": 0.5})
    result = make_searcher("evolution", seed=0).run(problem, 300)
    assert result.evaluated.feasible.any()
    url = str(tmp_path / "studies.log")
    record(result, problem, url, "mine-evolution")
    spec.unlink()
    code = (
        f"from apqopt.review import StudyReader; r = StudyReader({url!r}); f = r.front('mine-evolution'); "
        "c = r.candidate('mine-evolution', int(f['number'].iloc[0])); print(len(f), c.space, c.blocks[0].middle)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n, name, middle = out.stdout.split()
    assert int(n) > 0 and name == "mine" and int(middle) in space.middle_choices[0]


def test_a_live_study_carries_its_space_to_workers(tmp_path: Path) -> None:
    """Workers on other machines have no space file: the live spec holds the description and rebuilds it."""
    from apqopt.live import LiveSpec

    d = space_to_dict(get_space("fmnist")) | {"name": "carried", "bits": [4, 8]}
    (tmp_path / "carried.json").write_text(json.dumps(d))
    spec = LiveSpec("search", space=get_space(str(tmp_path / "carried.json")).name)
    assert LiveSpec("search", space="fmnist").space_def == {}  # presets travel by name
    code = (
        "import sys; from apqopt.live import LiveSpec; s = LiveSpec.from_json(sys.stdin.read()); "
        "print(s.codec().space.name, s.codec().space.bits)"
    )
    out = subprocess.run([sys.executable, "-c", code], input=spec.to_json(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(None, 1) == ["carried", "(4, 8)\n"]
