"""Bad input, class by class, through the command line a user runs: one clear line on stderr (exit 2),
no traceback, and nothing stored -- study database, tables, predictor, weights -- changed."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apqopt.cli import main
from apqopt.hardware.lut import shipped_lut_path
from apqopt.predictor import AccuracyPredictor
from apqopt.space import Candidate, InvalidCandidateError, get_space

SP = get_space("fmnist")


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a predictor, a table, a corrupted copy of each, and a study database holding
    one recorded run."""
    d = tmp_path_factory.mktemp("ws")
    AccuracyPredictor("fmnist", variant="branch", seed=1).init_weights().save(d / "quant.pt")
    lut = d / "lut.csv"
    shutil.copy(shipped_lut_path("fmnist"), lut)
    lines = lut.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("layer,16,48,14,1,1,0,1,6,")]  # 3 rows gone
    kept[-1] = f"# end: {int(kept[-1].split()[2]) - 3} rows\n"
    (d / "cut.csv").write_text("".join(kept))
    (d / "trunc.csv").write_text("".join(lines)[: len("".join(lines)) // 2])
    (d / "nohead.csv").write_text("".join(line for line in lines if not line.startswith("# hardware")))
    raw = (d / "quant.pt").read_bytes()
    (d / "trunc.pt").write_bytes(raw[: len(raw) // 3])
    shutil.copy(d / "quant.pt.json", d / "trunc.pt.json")
    (d / "junk.pt").write_bytes(b"\x80\x04not a state dict")
    shutil.copy(d / "quant.pt.json", d / "junk.pt.json")
    args = ["--predictor", str(d / "quant.pt"), "--budget", "10", "--latency", "0.6", "--quiet"]
    assert main(["search", "--searcher", "random", "--storage", f"sqlite:///{d / 'st.db'}", "--study", "s", *args]) == 0
    return d


def search(ws: Path, *extra: str) -> list[str]:
    base = {"--predictor": str(ws / "quant.pt"), "--storage": f"sqlite:///{ws / 'st.db'}", "--budget": "10"}
    for k, v in zip(extra[::2], extra[1::2]):
        base[k] = v
    return ["search", "--searcher", "random", "--latency", "0.6", "--quiet", *(x for kv in base.items() for x in kv)]


def bad_candidate(ws: Path) -> list[str]:
    cand = SP.uniform().to_dict()
    cand["stages"][1][0]["kernel"] = 9  # the first block of stage 1
    return ["lut", "price", json.dumps(cand)]


CASES = {
    "invalid candidate": (bad_candidate, r"stage 1 block \d+: kernel=9 is not allowed; allowed values: \[3, 5, 7\]"),
    "invalid params (unknown searcher)": (lambda w: search(w, "--searcher", "annealing"), "unknown searcher"),
    "table without an entry (search)": (
        lambda w: search(w, "--lut", str(w / "cut.csv")),
        r"table lacks \d+ layer x bits entries that space 'fmnist' needs",
    ),
    "table without an entry (price)": (
        lambda w: ["lut", "price", "--lut", str(w / "cut.csv"), SP.uniform(kernel=3, middle=0, bits=6).to_json()],
        "has no entry for layer",
    ),
    "table with a bad header": (lambda w: ["lut", "show", "--lut", str(w / "nohead.csv")], "header lacks"),
    "truncated table": (lambda w: search(w, "--lut", str(w / "trunc.csv")), r"trunc\.csv: no '# end: N rows' line"),
    "truncated predictor": (lambda w: search(w, "--predictor", str(w / "trunc.pt")), r"trunc\.pt.*(corrupt|truncat)"),
    "corrupted predictor": (lambda w: search(w, "--predictor", str(w / "junk.pt")), r"junk\.pt.*(corrupt|truncat)"),
    "corrupted supernet": (
        lambda w: ["supernet", "eval", "largest", "--supernet", str(w / "junk.pt")],
        "not a readable apqopt supernet file",
    ),
    "predictor of another space": (
        lambda w: search(w, "--space", "apq-mbv2", "--latency", "20"),
        "trained for space 'fmnist'",
    ),
    "malformed storage URL": (lambda w: search(w, "--storage", "nosuchdb://x"), "cannot open storage 'nosuchdb://x'"),
    "unreachable storage": (
        lambda w: search(w, "--storage", "postgresql+psycopg2://u@127.0.0.1:9/db"),
        r"cannot open storage .*127\.0\.0\.1:9",
    ),
    "study name exists": (lambda w: search(w, "--study", "s"), "study 's' already exists"),
    "live study exists with other settings": (
        lambda w: [*search(w, "--study", "s", "--searcher", "optuna-tpe"), "--live"],
        "not an apqopt live study|exists with other settings",
    ),
    "infeasible budget": (
        lambda w: search(w, "--latency", "0.01"),
        r"latency <= 0.01 ms is infeasible: the cheapest candidate .* needs",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_changes_nothing(
    case: str, ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, pattern = CASES[case]
    argv = make(ws)
    before = digest(ws)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("apqopt: error: ") and "Traceback" not in err
    assert re.search(pattern, err), err
    assert digest(ws) == before  # the study database and every file unchanged


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-3, 300) | st.text(max_size=4),
        lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=8), kids, max_size=5),
        max_leaves=30,
    ),
    st.sampled_from(["replace", "stages", "block", "bits"]),
)
def test_random_malformed_candidates_raise_only_invalid_candidate(junk: object, where: str) -> None:
    """Whatever the JSON, decoding either gives a valid candidate or raises InvalidCandidateError."""
    data = SP.uniform().to_dict()
    if where == "replace":
        data = junk  # type: ignore[assignment]
    elif where == "stages":
        data["stages"] = junk
    elif where == "block":
        data["stages"][2][0] = junk
    else:
        data["stages"][0][0]["pw_bits"] = junk
    try:
        cand = Candidate.from_dict(data)  # type: ignore[arg-type]
    except InvalidCandidateError as exc:
        assert str(exc)
        return
    SP.validate(cand)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, 12), min_size=0, max_size=2 * SP.n_genes))
def test_random_gene_rows_are_validated(row: list[int]) -> None:
    """Params as gene rows: any wrong length or out-of-range choice is named, never indexed."""
    genes = np.array([row], dtype=np.int64)
    try:
        ok = SP.validate_matrix(genes)
    except InvalidCandidateError as exc:
        assert "gene" in str(exc) or "expected" in str(exc)
        return
    assert ok.shape == (1, SP.n_genes) and (ok >= 0).all() and (ok < SP.cardinalities).all()
