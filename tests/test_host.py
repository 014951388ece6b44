"""Host-CPU tables: real PyTorch timings written in the LUT format, unsupported precisions left out
(not invented), latency-only tables refused for energy, and the end-to-end check's report.
No assertion here is about speed (benchmarks and `apqopt lut measure --check` report that)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from apqopt import get_space
from apqopt.cli import main
from apqopt.hardware.build import build_lut
from apqopt.hardware.host import HostCPU, check_sums, deployed_subnet, layer_runner
from apqopt.hardware.lut import LUT, MissingEntryError
from apqopt.search.problem import Problem
from apqopt.space import Layer

SP = get_space("fmnist")


@pytest.fixture(scope="module")
def int8_table() -> LUT:
    return build_lut(SP, HostCPU("int8", warmup=1, repeats=3), bits=(8,), progress=False)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_layer_runner_runs_the_layer(precision: str) -> None:
    layer = Layer("x", 32, 32, 14, 5, 2, 2, 32)
    out = layer_runner(layer, precision)()
    out = out.dequantize() if out.is_quantized else out
    assert tuple(out.shape) == (1, 32, 7, 7)


def test_int8_table_holds_w8a8_only_and_says_so(int8_table: LUT) -> None:
    assert {k[7:] for k in int8_table.entries} == {(8, 8)}
    assert len(int8_table.entries) == len(SP.layer_shapes())
    cfg = int8_table.config
    assert cfg["energy_measured"] is False and cfg["engine"] in ("x86", "fbgemm")
    assert sorted(map(tuple, cfg["unsupported"])) == [(w, a) for w in (4, 6, 8) for a in (4, 6, 8) if (w, a) != (8, 8)]
    lat = np.array([v[0] for v in int8_table.entries.values()])
    assert (lat > 0).all() and np.isfinite(lat).all()
    assert all(v[1] == 0.0 for v in int8_table.entries.values())


def test_problem_on_a_host_table(int8_table: LUT) -> None:
    pred = lambda g: np.full(len(g), 0.9)  # noqa: E731  (accuracy does not matter here)
    with pytest.raises(MissingEntryError, match=r"table lacks .* allow_missing=True"):
        Problem(SP, pred, int8_table)
    with pytest.raises(ValueError, match="measures latency only"):
        Problem(SP, pred, int8_table, objectives=("energy",), allow_missing=True)
    p = Problem(SP, pred, int8_table, allow_missing=True)
    eight = SP.from_candidates([SP.uniform(bits=8)])
    four = SP.from_candidates([SP.uniform(bits=4)])
    assert np.isfinite(p.cost(eight)[0]).all() and np.isinf(p.cost(four)[0]).all()


def test_fp32_table_gives_every_bit_pair_the_shape_time() -> None:
    model = HostCPU("fp32", warmup=1, repeats=3)
    lut = build_lut(SP, model, progress=False)
    assert lut.config["bits_ignored"] is True and not lut.missing(SP)
    shape = SP.layer_shapes()[0]
    assert len({lut.entries[(*shape, w, a)] for w in SP.bits for a in SP.bits}) == 1


def test_deployed_subnet_folds_bn_and_keeps_the_function() -> None:
    cand = SP.uniform(kernel=3, middle=0)
    x = torch.rand(2, 1, 28, 28)
    from apqopt.supernet.network import Subnet

    torch.manual_seed(0)
    ref = Subnet(SP, cand).eval()
    torch.manual_seed(0)
    folded = deployed_subnet(SP, cand, "fp32")
    with torch.inference_mode():
        assert torch.allclose(ref(x), folded(x), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_check_sums_report(int8_table: LUT) -> None:
    rep = check_sums(SP, int8_table, "int8", n=3, warmup=1, repeats=3, progress=False)
    assert rep["subnets"] == 3 and len(rep["pairs"]) == 3
    assert 0 <= rep["mean_abs_rel_error"] <= rep["max_abs_rel_error"]
    assert all(a > 0 and b > 0 for a, b in rep["pairs"])


def test_lut_measure_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "host.csv"
    args = ["lut", "measure", "--precision", "int8", "--repeats", "1", "--warmup", "0", "--check", "2"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["entries"] == len(SP.layer_shapes()) and report["check"]["subnets"] == 2
    lut = LUT.load(out)
    assert lut.hardware == "host-cpu-int8" and "apqopt lut measure" in lut.command
    assert json.loads((tmp_path / "host.csv.check.json").read_text())["precision"] == "int8"
