"""Bad input, class by class, through the command line a user runs: one clear line on stderr (exit 2),
no traceback, and nothing stored -- study database, tables, predictor, weights -- changed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apqopt.cli import main
from apqopt.hardware.lut import shipped_lut_path
from apqopt.interop.apq import to_apq_spec
from apqopt.predictor import AccuracyPredictor
from apqopt.space import Candidate, InvalidCandidateError, get_space

SP = get_space("fmnist")


def digest(folder: Path) -> dict[str, str]:
    """Every entry's content (folders as such: one created by a rejected command shows up too)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in folder.iterdir()}


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
    compare = ["compare", "--searchers", "random", "--seeds", "0", "--tag", "c", "--out", str(d / "cmp")]
    assert main([*compare, "--storage", f"sqlite:///{d / 'st.db'}", *args]) == 0
    # files a user may point a command at by mistake, or that were damaged
    (d / "notes.csv").write_text("my notes, not a dataset\nsecond line\n")
    header = {"type": "header", "kind": "fp", "config": {"kind": "fp", "space": "fmnist"}}
    rec = {"index": 0, "genes": [0] * SP.n_genes, "accuracy": 0.9, "stderr": 0.01, "macs": 1, "seconds": 1}
    rows = [json.dumps(header), json.dumps(rec), "{not json", json.dumps({**rec, "index": 1})]
    (d / "corrupt.jsonl").write_text("\n".join(rows) + "\n")
    (d / "hdr.jsonl").write_text("[1, 2]\n" + json.dumps(rec) + "\n")
    (d / "inf.json").write_text('{"clock_mhz": Infinity}')
    (d / "boolrows.json").write_text('{"rows": true}')
    row = next(line for line in lines if line.startswith("layer,"))
    dup = "".join(lines).replace(row, row + row.rsplit(",", 2)[0] + ",9.0,9.0\n")
    (d / "dup.csv").write_text(re.sub(r"# end: (\d+) rows", lambda m: f"# end: {int(m[1]) + 1} rows", dup))
    spec = to_apq_spec(get_space("apq-mbv2"), get_space("apq-mbv2").uniform())
    spec["e"][0] = float("nan")
    (d / "nan_spec.json").write_text(json.dumps(spec))
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    os.mkfifo(d / "pipe.toml")  # opened, it would block for ever
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    meta = json.loads((d / "quant.pt.json").read_text())
    meta["params"]["colour"] = "red"
    shutil.copy(d / "quant.pt", d / "badmeta.pt")
    (d / "badmeta.pt.json").write_text(json.dumps(meta))
    (d / "torn.log").write_bytes(b'{"op_code": 0, "worker_id": "x", "study_name": "j", "directions": [1]}\ngarbage{{\n')
    (d / "sub").mkdir()
    import torch

    class Payload:  # what a crafted weights file carries: unpickling it would run a command
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return (Path.touch, (d / "pwned",))

    torch.save({"space": "fmnist", "model": Payload()}, d / "evil.pt")
    # weights damaged in place: one flipped byte inside a tensor (torch.load checks no CRC), NaN weights
    state = torch.load(d / "quant.pt", weights_only=True)
    name = max(state, key=lambda k: state[k].numel())
    raw = bytearray((d / "quant.pt").read_bytes())
    at = bytes(raw).find(state[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()[:64]) + 40
    raw[at] ^= 0x10
    (d / "flipped.pt").write_bytes(bytes(raw))
    shutil.copy(d / "quant.pt.json", d / "flipped.pt.json")
    state[name][0] = float("nan")
    torch.save(state, d / "nan.pt")
    nan_meta = json.loads((d / "quant.pt.json").read_text())
    del nan_meta["sha256"]  # as a file from before checksums: only finiteness can be checked
    (d / "nan.pt.json").write_text(json.dumps(nan_meta))
    from apqopt.shipped import supernet_path
    from apqopt.supernet.train import _save

    if supernet_path("fmnist").exists():
        payload = torch.load(supernet_path("fmnist"), weights_only=True)
        _save(d / "supernet.pt", payload)  # with its checksum
        raw = bytearray((d / "supernet.pt").read_bytes())
        big = max(payload["model"], key=lambda k: payload["model"][k].numel())
        head = payload["model"][big].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()[:64]
        at = bytes(raw).find(head) + 40
        raw[at] ^= 0x10
        (d / "supernet_flipped.pt").write_bytes(bytes(raw))
        payload["model"][big].view(-1)[0] = float("inf")
        torch.save(payload, d / "supernet_inf.pt")  # the old checksum no longer matters: inf is named first
    # image folders: a FIFO named like an image, a PNG that inflates past what an image may have
    from PIL import Image

    for name in ("fifo", "bomb"):
        for split in ("train", "val", "test"):
            (d / name / split / "shirt").mkdir(parents=True)
            Image.new("L", (28, 28), 128).save(d / name / split / "shirt" / "a.png")
    os.mkfifo(d / "fifo" / "train" / "shirt" / "b.png")
    Image.new("L", (7000, 7000)).save(d / "bomb" / "test" / "shirt" / "big.png")  # 49 Mpixel, ~50 kB on disk
    # data functions that misbehave (given with --data, as a user must)
    (d / "baddata.py").write_text(
        "import torch\n"
        "def _ok(n): return torch.zeros(n, 1, 28, 28), torch.zeros(n, dtype=torch.int64)\n"
        "def _all(x): return (x, x, x)\n"
        "def raises(): raise RuntimeError('disk not mounted')\n"
        "def empty(): return _all(_ok(0))\n"
        "def mismatch(): return _all((_ok(8)[0], _ok(5)[1]))\n"
        "def nan(): return _all((torch.full((8, 1, 28, 28), float('nan')), _ok(8)[1]))\n"
        "def negative(): return _all((_ok(8)[0], _ok(8)[1] - 1))\n"
        "def wrong(): return 'train', 'val', 'test'\n"
        "notfunc = 3.14\n"
    )
    # datasets and predictor descriptions with values no real one has
    header = json.dumps({"type": "header", "kind": "quant", "config": {"kind": "quant", "space": "fmnist", "seed": 0}})
    good = {"index": 0, "genes": SP.sample(1, 0)[0].tolist(), "accuracy": 0.8, "stderr": 0.005, "seconds": 1}
    for name, change in {
        "ds_nan": {"accuracy": float("nan")},
        "ds_short": {"genes": good["genes"][:-3]},
        "ds_range": {"genes": [99] * SP.n_genes},
        "ds_dup": {"index": 0},
    }.items():
        rows = [header, json.dumps(good), json.dumps({**good, "index": 1, **change})]
        (d / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    (d / "ds_header.jsonl").write_text(header + "\n")
    for name, hidden in (("huge", 10**12), ("text", "wide")):
        meta = json.loads((d / "quant.pt.json").read_text())
        meta["params"]["hidden"] = hidden
        shutil.copy(d / "quant.pt", d / f"{name}.pt")
        (d / f"{name}.pt.json").write_text(json.dumps(meta))
    (d / "bf_name.json").write_text('{"name": ["a"]}')
    (d / "bf_clock.json").write_text('{"clock_mhz": 1e-300}')
    (d / "bf_array.json").write_text('{"rows": 100000, "cols": 100000}')
    body = [line for line in lines if line.startswith("layer,")]
    zero = "".join(lines).replace("".join(body), "".join(row.rsplit(",", 2)[0] + ",0,0.001\n" for row in body))
    (d / "zero.csv").write_text(zero)
    (d / "huge.csv").write_text("".join(lines).replace(body[0], body[0].rsplit(",", 2)[0] + ",1e308,0.001\n"))
    space_text = (Path(__file__).resolve().parents[1] / "apqopt" / "assets" / "spaces" / "fmnist.toml").read_text()
    (d / "classes.toml").write_text(space_text.replace("num_classes = 10", "num_classes = 10000000000"))
    shutil.copy(d / "st.db", d / "imm.db")
    if subprocess.run(["chattr", "+i", str(d / "imm.db")], capture_output=True).returncode:
        (d / "imm.db").unlink()  # no immutable flag on this filesystem: that case skips
    return d


@pytest.fixture(scope="module", autouse=True)
def _mutable_again(ws: Path) -> Iterator[None]:
    sys.path.append(str(ws))  # baddata.py importable, as a user's module beside the command is
    yield
    sys.path.remove(str(ws))
    subprocess.run(["chattr", "-i", str(ws / "imm.db")], capture_output=True)


def measure_on(data: str) -> list[str]:
    return ["supernet", "eval", "largest", "--data", data]


def lut_build(config: Path) -> list[str]:
    return ["lut", "build", "--space", "fmnist", "--config", str(config), "--out", str(config.with_suffix(".csv"))]


CHECKED_CASES = {
    "dataset with a NaN accuracy": (lambda w: ["dataset", str(w / "ds_nan.jsonl")], r"ds_nan\.jsonl:3: accuracy nan"),
    "dataset with short gene rows": (
        lambda w: ["predictor", "evaluate", "--predictor", str(w / "quant.pt"), "--data", str(w / "ds_short.jsonl")],
        r"ds_short\.jsonl:3: genes must be a list of 125",
    ),
    "dataset with out-of-range genes": (
        lambda w: ["dataset", str(w / "ds_range.jsonl")],
        r"ds_range\.jsonl:3: .*index 99 out of range",
    ),
    "dataset with a duplicate index": (
        lambda w: ["dataset", str(w / "ds_dup.jsonl")],
        r"ds_dup\.jsonl:3: index 0 again \(first on line 2\)",
    ),
    "dataset with a header only": (lambda w: ["dataset", str(w / "ds_header.jsonl")], "no records yet"),
    "predictor whose hidden size is huge": (
        lambda w: search(w, "--predictor", str(w / "huge.pt")),
        r"hidden must be a whole number in 1\.\.16,384, got 1000000000000",
    ),
    "predictor whose hidden size is a text": (
        lambda w: search(w, "--predictor", str(w / "text.pt")),
        r"hidden must be a whole number in 1\.\.16,384, got 'wide'",
    ),
    "table whose every latency is 0": (lambda w: search(w, "--lut", str(w / "zero.csv")), "every layer's latency is 0"),
    "table with a 1e308 ms latency": (
        lambda w: search(w, "--lut", str(w / "huge.csv")),
        r"huge\.csv: line \d+: cost must be a number in 0\.\.1e\+06",
    ),
    "collect --n 2**63 (a list of every index filled the memory)": (
        lambda w: ["collect", "quant", "--n", str(2**63 - 1), "--out", str(w / "q.jsonl")],
        r"argument --n: must be between 1 and 10000000",
    ),
    "space sample --n 2**63": (
        lambda w: ["space", "sample", "--n", str(2**63 - 1)],
        r"argument --n: must be between 1 and 1000000",
    ),
    "a seed past 32 bits": (
        lambda w: search(w, "--seed", str(2**63 - 1)),
        r"argument --seed: must be <= 2147483647 \(2\*\*31 - 1\), got 9223372036854775807",
    ),
    "refine --out naming an existing file": (
        lambda w: ["refine", "--out", str(w / "notes.csv"), "--rounds", "1", "--budget", "10"],
        r"--out .*notes\.csv is a file",
    ),
    "refine onto an unusable storage (nothing written first)": (
        lambda w: ["refine", "--out", str(w / "rf"), "--storage", f"sqlite:///{w}/no/such/r.db", "--budget", "10"],
        r"folder .*no/such does not exist",
    ),
    "space file with 10**10 classes (supernet train)": (
        lambda w: ["supernet", "train", "--space", str(w / "classes.toml"), "--out", str(w / "sn")],
        r"num_classes: must be at most 65,536",
    ),
    "BitFusion config with a list as name": (lambda w: lut_build(w / "bf_name.json"), "name must be a text"),
    "BitFusion config with a 1e-300 MHz clock": (
        lambda w: lut_build(w / "bf_clock.json"),
        r"clock_mhz = 1e-300 is outside what an accelerator has",
    ),
    "BitFusion config with a 100000x100000 array": (
        lambda w: lut_build(w / "bf_array.json"),
        r"rows = 100000 is outside what an accelerator has",
    ),
}


DATA_CASES = {
    "image folder with a FIFO named *.png (a hang)": ("imagefolder:{w}/fifo", r"b\.png: not a regular file"),
    "image folder with a decompression bomb": ("imagefolder:{w}/bomb", r"big\.png: 7000x7000 pixels, more than"),
    "data function that raises": ("baddata:raises", r"raises\(\) raised RuntimeError: disk not mounted"),
    "data function with an empty split": ("baddata:empty", "split is empty"),
    "data function with more images than labels": ("baddata:mismatch", "has 8 images but labels of shape"),
    "data function with NaN images": ("baddata:nan", "images hold non-finite values"),
    "data function with negative labels": ("baddata:negative", "has label -1; labels are 0..9"),
    "data function returning the wrong type": ("baddata:wrong", "the test split must be a Dataset"),
    "data source that is not a function": ("baddata:notfunc", "notfunc is a float, not a function"),
    "data source that needs arguments": ("json:loads", r"loads\(\) raised TypeError"),
}


def search(ws: Path, *extra: str) -> list[str]:
    """A search command on the workspace's files; ``extra`` options replace the defaults (an APQ checkpoint
    replaces the predictor: the two together are refused)."""
    base = {"--predictor": str(ws / "quant.pt"), "--storage": f"sqlite:///{ws / 'st.db'}", "--budget": "10"}
    if "--apq-checkpoint" in extra:
        del base["--predictor"]
    for k, v in zip(extra[::2], extra[1::2]):
        base[k] = v
    return ["search", "--searcher", "random", "--latency", "0.6", "--quiet", *(x for kv in base.items() for x in kv)]


def bad_candidate(ws: Path) -> list[str]:
    cand = SP.uniform().to_dict()
    cand["stages"][1][0]["kernel"] = 9  # the first block of stage 1
    return ["lut", "price", json.dumps(cand)]


CASES = {
    "invalid candidate": (bad_candidate, r"stage 1 block \d+: kernel=9 is not allowed; allowed values: \[3, 5, 7\]"),
    "candidate with a 4,300-digit kernel (a short line)": (
        lambda w: [
            "lut",
            "price",
            json.dumps(SP.uniform().to_dict()).replace('"kernel": 7', '"kernel": ' + "9" * 4300, 1),
        ],
        r"^apqopt: error: .{0,100}kernel=9{20}\.\.\. \(4,300 characters\) is not allowed; allowed values: \[3, 5, 7\]$",
    ),
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
    "predictor with a flipped byte in a tensor": (
        lambda w: search(w, "--predictor", str(w / "flipped.pt")),
        r"flipped\.pt: its tensors do not match the checksum",
    ),
    "predictor with NaN weights": (
        lambda w: search(w, "--predictor", str(w / "nan.pt")),
        r"nan\.pt: tensor '.*' holds non-finite values",
    ),
    "supernet with a flipped byte in a tensor": (
        lambda w: ["supernet", "eval", "largest", "--supernet", str(w / "supernet_flipped.pt")],
        r"supernet_flipped\.pt: its tensors do not match the checksum",
    ),
    "supernet with an infinite weight": (
        lambda w: ["supernet", "eval", "largest", "--supernet", str(w / "supernet_inf.pt")],
        r"supernet_inf\.pt: tensor '.*' holds non-finite values",
    ),
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
    # 1. writers never take over a file that is not theirs
    "collect onto a file that is not a dataset": (
        lambda w: ["collect", "fp", "--n", "2", "--out", str(w / "notes.csv"), "--quiet"],
        r"notes\.csv:1: not an apqopt dataset",
    ),
    # 2. a corrupt line in the middle is named, never the silent end of the data
    "dataset with a corrupt middle line": (
        lambda w: ["dataset", str(w / "corrupt.jsonl")],
        r"corrupt\.jsonl:3: corrupt",
    ),
    "collect resume on a dataset with a corrupt middle line": (
        lambda w: ["collect", "fp", "--n", "4", "--out", str(w / "corrupt.jsonl"), "--quiet"],
        r"corrupt\.jsonl:3: corrupt record",
    ),
    "dataset header not an object": (
        lambda w: ["dataset", str(w / "hdr.jsonl")],
        r"hdr\.jsonl:1: not an apqopt dataset",
    ),
    # 3. loading never runs code from a file (the payload would create ws/pwned: the digest would change)
    "crafted weights file": (
        lambda w: ["supernet", "eval", "largest", "--supernet", str(w / "evil.pt")],
        r"evil\.pt is not a readable apqopt supernet file",
    ),
    "crafted predictor file": (
        lambda w: search(w, "--apq-checkpoint", str(w / "evil.pt"), "--space", "apq-mbv2", "--latency", "20"),
        r"evil\.pt is not a readable checkpoint",
    ),
    # 5. every check before the work; clashes and late options
    "compare study exists with other settings": (
        lambda w: [
            "compare",
            "--searchers",
            "random",
            "--seeds",
            "0",
            "--tag",
            "c",
            *search(w, "--budget", "12")[3:],
        ],
        r"study 'c-random-fmnist-seed0' already exists with other settings.*--overwrite",
    ),
    "unknown searcher given late": (
        lambda w: ["compare", "--searchers", "random", "annealing", *search(w)[3:]],
        "unknown searcher 'annealing'",
    ),
    "duplicate seeds": (lambda w: ["compare", "--seeds", "0", "0", *search(w)[3:]], "seeds must be distinct"),
    "unknown verify images": (
        lambda w: ["compare", "--seeds", "0", "--verify-top", "1", "--verify-images", "train", *search(w)[3:]],
        "argument --verify-images: invalid choice: 'train'",
    ),
    "negative seed": (lambda w: search(w, "--seed", "-1"), "argument --seed: must be >= 0, got -1"),
    "run --verify -1": (lambda w: ["run", "--verify", "-1"], "argument --verify: must be >= 0"),
    "run --samples 0": (lambda w: ["run", "--samples", "0"], "argument --samples: must be between 1 and 1000000"),
    "immutable database": (
        lambda w: search(w, "--storage", f"sqlite:///{w / 'imm.db'}", "--study", "new"),
        r"imm\.db \(or its folder\) is not writable",
    ),
    # 8. outputs: nothing written where the user did not ask
    "lut build --format apq without --out": (
        lambda w: ["lut", "build", "--format", "apq"],
        "--out is required.*shipped table would be overwritten",
    ),
    "lut build --config without --out": (
        lambda w: ["lut", "build", "--config", str(w / "inf.json")],
        "--out is required",
    ),
    "in-memory storage": (lambda w: search(w, "--storage", "sqlite://"), "in-memory database"),
    "SQLite path with '?'": (lambda w: search(w, "--storage", f"sqlite:///{w / 'a?b.db'}"), "may not contain '\\?'"),
    # 9. numbers: NaN, infinity, non-integers, booleans, out of range, duplicates
    "--latency nan": (lambda w: search(w, "--latency", "nan"), "argument --latency: must be a finite number"),
    "--budget 10^12": (lambda w: search(w, "--budget", "10^12"), "argument --budget: must be an integer"),
    "--budget too large": (lambda w: search(w, "--budget", str(10**12)), "argument --budget: must be between 1 and"),
    "--eval-images -5": (
        lambda w: ["collect", "fp", "--n", "2", "--out", str(w / "new.jsonl"), "--eval-images", "-5"],
        "argument --eval-images: must be between 1 and 10000",
    ),
    "BitFusion config with an infinite clock": (
        lambda w: ["lut", "build", "--config", str(w / "inf.json"), "--out", str(w / "new.csv")],
        "clock_mhz must be a positive finite number, got inf",
    ),
    "BitFusion config with a boolean row count": (
        lambda w: ["lut", "build", "--config", str(w / "boolrows.json"), "--out", str(w / "new.csv")],
        "rows must be a positive integer, got True",
    ),
    "table with a duplicated row of other values": (
        lambda w: search(w, "--lut", str(w / "dup.csv")),
        r"dup\.csv: line \d+: duplicate of the entry on line \d+",
    ),
    "APQ spec with e: NaN": (
        lambda w: ["lut", "price", "--apq-spec", "--space", "apq-mbv2", str(w / "nan_spec.json")],
        r"APQ spec 'e'\[0\] must be a finite number, got nan",
    ),
    # 10. no tracebacks, and words that say what is wrong
    "a folder given as a file": (lambda w: search(w, "--predictor", str(w / "sub")), "sub is a folder, not a file"),
    "a data file given as the predictor": (
        lambda w: search(w, "--predictor", str(w / "notes.csv")),
        r"notes\.csv is a data file, not a predictor: train one with `apqopt predictor train`",
    ),
    "APQ spec not a dict": (
        lambda w: ["lut", "price", "--apq-spec", "--space", "apq-mbv2", "[1, 2]"],
        "APQ spec must be a JSON object",
    ),
    "predictor description with unknown keys": (
        lambda w: search(w, "--predictor", str(w / "badmeta.pt")),
        r"badmeta\.pt\.json is not an apqopt predictor description",
    ),
    "verify on a missing study": (
        lambda w: ["verify", "--study", "nope", "--storage", f"sqlite:///{w / 'st.db'}"],
        "no study 'nope'",
    ),
    "verify on a missing database (not created)": (
        lambda w: ["verify", "--study", "s", "--storage", f"sqlite:///{w / 'none.db'}"],
        r"no storage at .*none\.db",
    ),
    "a predictor and an APQ checkpoint": (
        lambda w: [*search(w), "--apq-checkpoint", str(w / "acc_quant.pt")],
        r"predictor \(--predictor\) and apq_checkpoint \(--apq-checkpoint\) both given",
    ),
    "missing APQ checkpoint": (
        lambda w: search(w, "--apq-checkpoint", str(w / "acc_quant.pt"), "--space", "apq-mbv2", "--latency", "20"),
        r"APQ checkpoint not found: .*acc_quant\.pt \(acc\.pt / acc_quant\.pt come with APQ's released models",
    ),
    "missing table file": (lambda w: search(w, "--lut", str(w / "missing.csv")), r"missing\.csv"),
    "binary file as a table": (lambda w: search(w, "--lut", str(w / "binary.csv")), r"binary\.csv: not a text file"),
    "verify --top 0": (lambda w: ["verify", "--study", "s", "--top", "0"], "argument --top: must be >= 1"),
    "a FIFO as a space file (no hang)": (
        lambda w: ["space", "show", "--space", str(w / "pipe.toml")],
        r"pipe\.toml is not a regular file \(a pipe or device\), so not a space file",
    ),
    "a device as a space file (no endless read)": (
        lambda w: ["space", "show", "--space", "/dev/zero"],
        r"/dev/zero is not a regular file",
    ),
    "a FIFO as a candidate file (no hang)": (
        lambda w: ["lut", "price", "--space", "fmnist", str(w / "pipe.toml")],
        r"pipe\.toml is not a regular file",
    ),
    "a space file nested past the stack": (
        lambda w: ["space", "show", "--space", str(w / "deep.json")],
        r"deep\.json: not a space file \(RecursionError",
    ),
    "an integer of 4,301 digits in a candidate": (
        lambda w: [
            "lut",
            "price",
            "--space",
            "fmnist",
            '{"space": "fmnist", "stages": [[{"kernel": 1' + "0" * 4300 + "}]]}",
        ],
        r"candidate is not usable JSON: Exceeds the limit \(4300 digits\)",
    ),
    "one objective twice": (
        lambda w: [*search(w), "--objectives", "latency", "latency"],
        r"objectives must be distinct, got \['latency', 'latency'\]",
    ),
    "a storage in a folder that does not exist (not created)": (
        lambda w: search(w, "--storage", f"sqlite:///{w / 'typo' / 'deeper' / 'x.db'}"),
        r"folder .*typo/deeper does not exist \(create it first\)",
    ),
    "a journal in a folder that does not exist (not created)": (
        lambda w: search(w, "--storage", str(w / "typo2" / "x.log")),
        r"folder .*typo2 does not exist",
    ),
    "worker on a SQLite file that is not there (not created)": (
        lambda w: ["worker", "--study", "s", "--storage", f"sqlite:///{w / 'nothere.db'}", "--quiet"],
        r"nothere\.db",
    ),
    "journal with a garbage line": (
        lambda w: search(w, "--storage", str(w / "torn.log")),
        r"torn\.log:2: not a journal record \(damaged journal\); nothing was written",
    ),
}
CASES.update(CHECKED_CASES)
CASES.update(
    {
        name: ((lambda w, data=data: measure_on(data.format(w=w))), pattern)
        for name, (data, pattern) in DATA_CASES.items()
    }
)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_changes_nothing(
    case: str, ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, pattern = CASES[case]
    if case == "immutable database" and not (ws / "imm.db").exists():
        pytest.skip("this filesystem has no immutable flag (chattr +i)")
    argv = make(ws)
    before = digest(ws)

    def hung(*_: object) -> None:
        raise TimeoutError(f"{case}: no answer within 60 s (a hang)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        code = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("apqopt: error: ") and "Traceback" not in err
    assert err.count("\n") == 1, err  # one line
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
