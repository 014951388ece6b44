"""Accuracy-data collection: deterministic candidates, resume after SIGKILL, torn lines, shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from apqopt import get_space
from apqopt.cli import main
from apqopt.space import BIT_FIELDS
from apqopt.supernet.collect import (
    CollectConfig,
    DatasetFileError,
    candidate_genes,
    collect,
    dataset_arrays,
    load_dataset,
    summarize,
)
from apqopt.supernet.network import Supernet
from apqopt.supernet.quant import QUANTIZER, FinetuneConfig

SP = get_space("fmnist")
FP = CollectConfig(kind="fp", eval_images=200, bn_images=100)
QUANT = CollectConfig(
    kind="quant", eval_images=200, bn_images=100, finetune=FinetuneConfig(steps=2, batch_size=16, calib_images=64)
)


def _net() -> Supernet:
    torch.manual_seed(0)
    return Supernet(SP).to(memory_format=torch.channels_last).eval()


def test_candidates_are_deterministic_and_grouped() -> None:
    a = np.array([candidate_genes(SP, QUANT, i) for i in range(40)])
    b = np.array([candidate_genes(SP, QUANT, i) for i in range(40)])
    assert np.array_equal(a, b)
    bit_cols = [SP.block_gene(blk, f) for blk in range(SP.n_blocks) for f in BIT_FIELDS]
    arch = np.setdiff1d(np.arange(SP.n_genes), bit_cols)
    shared = a[10:20]  # odd group: ten policies of one architecture
    assert (shared[:, arch] == shared[0, arch]).all() and len({tuple(r) for r in shared[:, bit_cols]}) == 10
    assert len({tuple(r) for r in a[0:10][:, arch]}) == 10  # even group: fully random


def test_collect_appends_resumes_and_cuts_torn_line(tmp_path: Path, fmnist_available: None) -> None:
    out = tmp_path / "fp.jsonl"
    collect(FP, _net(), out, 2, progress=False)
    with out.open("a") as fh:
        fh.write('{"index": 2, "genes": [1, 2')  # a kill mid-write
    collect(FP, _net(), out, 4, progress=False)
    header, recs = load_dataset(out)
    assert header["config"]["eval_images"] == 200 and [r["index"] for r in recs] == [0, 1, 2, 3]
    assert all(0 <= r["accuracy"] <= 1 and r["stderr"] > 0 for r in recs)
    _, genes, acc = dataset_arrays(out)
    assert np.all((acc >= 0) & (acc <= 1))
    assert genes.shape == (4, SP.n_genes) and np.array_equal(genes[3], candidate_genes(SP, FP, 3))
    with pytest.raises(DatasetFileError, match="other settings"):
        collect(CollectConfig(kind="fp", eval_images=300, bn_images=100), _net(), out, 4, progress=False)


def test_shards_merge(tmp_path: Path, fmnist_available: None) -> None:
    out = tmp_path / "q.jsonl"
    collect(QUANT, _net(), out, 4, shard=(0, 2), progress=False)
    collect(QUANT, _net(), out, 4, shard=(1, 2), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.shard0of2.jsonl", "q.shard1of2.jsonl"]
    _, recs = load_dataset(out)
    assert [r["index"] for r in recs] == [0, 1, 2, 3]
    assert all(r["quantizer"] == QUANTIZER for r in recs)
    summary = summarize(out)
    accs = sorted(100 * r["accuracy"] for r in recs)
    assert summary["records"] == 4 and summary["kind"] == "quant"
    lo, _, hi = summary["accuracy_min_median_max"]
    assert (lo, hi) == (round(accs[0], 2), round(accs[-1], 2))
    assert summary["seconds_total"] == pytest.approx(sum(r["seconds"] for r in recs), abs=0.1)
    assert set(summary["median_s_by_quantizer"]) == {QUANTIZER}
    shard_sums = [sum(r["seconds"] for r in recs if r["index"] % 2 == k) for k in (0, 1)]
    assert summary["slowest_shard_s"] == pytest.approx(max(shard_sums), abs=0.1)  # shards ran side by side
    assert main(["dataset", str(out)]) == 0
    # re-split: shard 2/4 is half of shard 0/2's indices; index 2 is on disk already, only 6 is new
    collect(QUANT, _net(), out, 7, shard=(2, 4), progress=False)
    lines = (tmp_path / "q.shard2of4.jsonl").read_text().splitlines()
    assert [json.loads(line).get("index") for line in lines] == [None, 6]  # header, then index 6 only
    assert [r["index"] for r in load_dataset(out)[1]] == [0, 1, 2, 3, 6]
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(DatasetFileError, match="not an apqopt dataset"):
        summarize(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="shard must be"):
        collect(QUANT, _net(), out, 4, shard=(2, 2), progress=False)
    (tmp_path / "q.shard3of4.jsonl").write_text(json.dumps({"type": "header", "config": {"seed": 9}}) + "\n")
    with pytest.raises(DatasetFileError, match=r"shard3of4\.jsonl belongs to this dataset"):
        collect(QUANT, _net(), out, 7, shard=(1, 4), progress=False)


@pytest.mark.slow
def test_collect_cli_survives_sigkill(tmp_path: Path, fmnist_available: None) -> None:
    """`apqopt collect` killed mid-run and rerun: every index exactly once."""
    weights = tmp_path / "w.pt"
    torch.save({"space": "fmnist", "model": _net().state_dict()}, weights)
    out = tmp_path / "fp.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "apqopt.cli",
        "collect",
        "fp",
        "--n",
        "8",
        "--out",
        str(out),
        "--supernet",
        str(weights),
        "--eval-images",
        "500",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(out.read_text().splitlines()) < 9, "finished before the kill"
    subprocess.run(cmd, env=env, check=True, timeout=600)
    lines = out.read_text().splitlines()
    idx = [json.loads(x)["index"] for x in lines[1:]]
    assert sorted(idx) == list(range(8)) and len(idx) == 8


@pytest.mark.slow
def test_build_script_rebuilds_and_resumes(tmp_path: Path, fmnist_available: None) -> None:
    """scripts/build-fmnist-assets.sh on the shipped weights (tiny sizes): datasets from parallel
    shards and predictors; a rerun measures nothing again."""
    from apqopt.shipped import supernet_path

    script = Path(__file__).resolve().parents[1] / "scripts" / "build-fmnist-assets.sh"
    env = {
        **os.environ,
        "SUPERNET": str(supernet_path("fmnist")),
        "SHARDS": "2",
        "N_FP": "4",
        "N_QUANT": "2",  # one network per shard: the quantized steps' fine-tunes are most of the test's time
        "N_COST": "2",
        "N_HELDOUT": "2",
        "EVAL_IMAGES": "100",
        "MEMBERS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    out = tmp_path / "assets"
    subprocess.run([str(script), str(out)], env=env, check=True, capture_output=True, timeout=900)
    for name, n in (("fp", 4), ("quant", 2), ("quant_cost", 2), ("quant_heldout", 2)):
        header, records = load_dataset(out / f"{name}.jsonl")
        assert sorted(r["index"] for r in records) == list(range(n))
        assert header["config"]["eval_images"] == 100
    assert load_dataset(out / "quant_cost.jsonl")[0]["config"]["draw"] == "cost"
    report = json.loads((out / "predictor" / "report.json").read_text())
    assert report["n_quant"] == 4  # the uniform and the cost draw pooled
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl*")}
    res = subprocess.run([str(script), str(out)], env=env, check=True, capture_output=True, text=True, timeout=600)
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl*")} == before
    assert "supernet\t" not in (out / "build-times.tsv").read_text()  # SUPERNET given: no training
    assert "done:" in res.stdout


def test_a_cost_draw_reaches_the_ends_a_uniform_draw_misses() -> None:
    """`collect --draw cost`: the corners first (index 0 is the cheapest network of the space: smallest
    architecture, lowest bits; index 1 the dearest), then candidates spread over the whole cost range, where
    a uniform draw stays in the middle; deterministic; uniform datasets keep their stored settings."""
    from apqopt.problem_spec import load_problem

    sp, p = get_space("fmnist"), load_problem("fmnist")
    cost, uniform = CollectConfig(kind="quant", draw="cost"), CollectConfig(kind="quant")
    g = np.stack([candidate_genes(sp, cost, i) for i in range(64)])
    gu = np.stack([candidate_genes(sp, uniform, i) for i in range(64)])
    lat, lat_u = p.cost(g)[0], p.cost(gu)[0]
    cheapest = p.cost(np.zeros((1, sp.n_genes), dtype=np.int64))[0][0]
    dearest = p.cost(sp.canonical((sp.cardinalities - 1)[None]))[0][0]
    assert lat[0] == cheapest and lat[1] == dearest
    bins = np.histogram(lat, np.linspace(cheapest, dearest, 5))[0]
    assert (bins[:3] >= 10).all() and bins[3] >= 1, bins  # even in level: the dearest quarter is thin (cost grows fast)
    assert (lat < 0.3).sum() >= 10 and (lat_u < 0.3).sum() == 0
    np.testing.assert_array_equal(g, np.stack([candidate_genes(sp, cost, i) for i in range(64)]))
    assert "draw" not in uniform.to_dict() and cost.to_dict()["draw"] == "cost"
