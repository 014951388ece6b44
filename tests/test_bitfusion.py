"""BitFusion cost model against the authors' simulator output and APQ's released entries."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from apqopt.hardware.bitfusion import BitFusion, BitFusionConfig
from apqopt.hardware.lut import load_shipped
from apqopt.space import Layer, get_space

# MobileNetV2-1.0 (t, c, n, s) after conv0 3->32 s2 at 224
MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenetv2_layers(w: int = 8, a: int = 8) -> list[Layer]:
    layers = [Layer("conv0", 3, 32, 224, 3, 2, 1, 1, w, a)]
    c_in, h = 32, 112
    for t, c, n, s in MBV2:
        for i in range(n):
            stride = s if i == 0 else 1
            mid = c_in * t
            if t != 1:
                layers.append(Layer("expand", c_in, mid, h, 1, 1, 0, 1, w, a))
            layers.append(Layer("dw", mid, mid, h, 3, stride, 1, mid, w, a))
            h = (h - 1) // stride + 1
            layers.append(Layer("project", mid, c, h, 1, 1, 0, 1, w, a))
            c_in = c
    layers += [Layer("conv_last", 320, 1280, 7, 1, 1, 0, 1, w, a), Layer("fc", 1280, 1000, 1, 1, 1, 0, 1, w, a)]
    return layers


def _reference_rows(reference_dir: Path) -> list[dict[str, str]]:
    with (reference_dir / "bitfusion_reference_layers.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(("variant", "mode"), [("apqlike", "apq"), ("orig", "orig")])
@pytest.mark.parametrize("batch", [1, 16])
def test_matches_simulator_reference(reference_dir: Path, variant: str, mode: str, batch: int) -> None:
    rows = [r for r in _reference_rows(reference_dir) if r["variant"] == variant and int(r["batch"]) == batch]
    assert len(rows) == 414
    model = BitFusion(BitFusionConfig(mode=mode, batch=batch))  # type: ignore[arg-type]
    lat_err, en_err, exact = [], [], []
    for r in rows:
        k, h, w, a = int(r["kernel"]), int(r["input_H"]), int(r["wbits"]), int(r["abits"])
        layer = Layer(r["layer"], int(r["Cin"]), int(r["Cout"]), h, k, int(r["stride"]), k // 2, int(r["groups"]), w, a)
        if r["kind"] != "fc":
            assert layer.h_out == int(r["H_out"])
        cost = model.conv_cost(layer, first=r["method"] == "im2col")
        lat, en = model.layer_cost(layer, first=r["method"] == "im2col")
        lat_err.append(abs(lat / float(r["latency_ms"]) - 1))
        en_err.append(abs(en * 1e6 / float(r["energy_nJ"]) - 1))
        exact.append(cost.cycles == int(r["cycles"]) and cost.compute_cycles == int(r["compute_cycles"]))
    within = float(np.mean(np.array(lat_err) < 0.01))
    assert within >= 0.95, f"only {within:.1%} of latencies within 1%"
    assert np.mean(exact) >= 0.99  # in practice every row matches to the cycle
    assert max(en_err) < 0.01


def test_whole_mobilenetv2_w8a8() -> None:
    """Reference (authors' simulator, APQ-compatible form): 9.505 ms / 10.11 mJ at batch 1."""
    model = BitFusion()
    lat, en = model.network_cost(mobilenetv2_layers())
    assert lat == pytest.approx(9.505, rel=0.02)
    assert en == pytest.approx(10.11, rel=0.02)


# APQ's released table (DESIGN.md): latency ms / energy mJ at W8A8, W6A6, W4A8, W8A4, W4A4
APQ_ENTRIES = {
    (16, 64, 112, 1, 1, 0, 1): [(0.552, 0.932), (0.548, 0.924), (0.552, 0.931), (0.544, 0.918), (0.544, 0.917)],
    (64, 64, 112, 3, 2, 1, 64): [(0.453, 0.526), (0.453, 0.495), (0.227, 0.424), (0.227, 0.365), (0.172, 0.319)],
    (144, 144, 56, 7, 1, 3, 144): [(5.538, 3.875), (5.536, 3.644), (2.772, 2.617), None, None],
    (240, 240, 28, 5, 2, 2, 240): [(0.307, 0.332), (0.305, 0.294), (0.160, 0.265), (0.161, 0.201), (0.094, 0.179)],
    (1152, 320, 7, 1, 1, 0, 1): [(0.088, 0.167), (0.072, 0.135), (0.073, 0.132), (0.065, 0.118), (0.049, 0.087)],
}
BITS = [(8, 8), (6, 6), (4, 8), (8, 4), (4, 4)]


def test_agreement_with_apq_table() -> None:
    """Latency agrees with APQ's table; APQ's energies are ~1.13x ours for pointwise layers (documented)."""
    lut = load_shipped("apq-mbv2")
    lat_ok, pw_ratio = [], []
    for shape, vals in APQ_ENTRIES.items():
        for (w, a), v in zip(BITS, vals):
            if v is None:
                continue
            lat, en = lut.entries[(*shape, w, a)]
            lat_ok.append(abs(lat / v[0] - 1) < 0.01)
            if shape[6] == 1:
                pw_ratio.append(v[1] / en)
    assert all(lat_ok)  # (APQ's values here are rounded to 3 decimals)
    assert 1.08 < np.median(pw_ratio) < 1.18
    assert lut.head[0] == pytest.approx(0.2959, abs=1e-4) and lut.tail[0] == pytest.approx(0.0816, abs=1e-4)


def _sample_agreement(reference_dir: Path, mode: str) -> dict[str, float]:
    """Share of APQ's sampled table entries (apq_table_sample.csv) within 1% in latency, per kind."""
    model = BitFusion(BitFusionConfig(mode=mode))  # type: ignore[arg-type]
    hits: dict[str, list[bool]] = {"pw": [], "dw": []}
    with (reference_dir / "apq_table_sample.csv").open() as fh:
        for r in csv.DictReader(fh):
            v = {k: int(r[k]) for k in ("c_in", "c_out", "h_in", "kernel", "stride", "padding", "groups")}
            layer = Layer("x", *v.values(), int(r["w_bits"]), int(r["a_bits"]))  # type: ignore[arg-type]
            lat, _ = model.layer_cost(layer)
            hits["dw" if v["groups"] > 1 else "pw"].append(abs(lat / float(r["latency_ms"]) - 1) <= 0.01)
    return {k: float(np.mean(h)) for k, h in hits.items()}


def test_apq_table_mode_reproduces_apqs_table(reference_dir: Path) -> None:
    """apq-table (buffers hold data in the array's layout: inputs and weights padded to N*pf rows, weights
    and outputs to M columns, 6-bit operands in 8-bit slots; DRAM traffic in real bits) puts every sampled
    entry of APQ's table within 1%; apq (no layout) gets 43% of them."""
    apq, table = _sample_agreement(reference_dir, "apq"), _sample_agreement(reference_dir, "apq-table")
    assert table == {"pw": 1.0, "dw": 1.0}
    assert apq["pw"] < 0.5 and apq["dw"] < 0.5


def test_apq_table_mode_matches_apqs_entries_in_the_reference(reference_dir: Path) -> None:
    """Every distinct APQ-table entry the simulator reference lists (MobileNetV2 layers, batch 1)."""
    model = BitFusion(BitFusionConfig(mode="apq-table"))
    rows = [r for r in _reference_rows(reference_dir) if r["apq_lut_latency_ms"] and r["batch"] == "1"]
    errs = {}
    for r in rows:
        k = int(r["kernel"])
        layer = Layer(
            r["layer"], int(r["Cin"]), int(r["Cout"]), int(r["input_H"]), k, int(r["stride"]), k // 2,
            int(r["groups"]), int(r["wbits"]), int(r["abits"]),
        )  # fmt: skip
        lat, _ = model.layer_cost(layer, first=r["method"] == "im2col")
        errs[(layer.shape, layer.w_bits, layer.a_bits)] = abs(lat / float(r["apq_lut_latency_ms"]) - 1)
    assert len(errs) >= 140 and max(errs.values()) <= 0.01


def test_shipped_apq_mbv2_table_sums_like_apqs() -> None:
    """Whole networks on the shipped apq-mbv2 table (apq-table mode) against APQ's own table's sums."""
    lut, sp = load_shipped("apq-mbv2"), get_space("apq-mbv2")
    mbv2_like = sp.uniform((2, 3, 4, 3, 3, 1), kernel=3, middle=-1, bits=8)
    for cand, apq_ms in ((mbv2_like, 8.72), (sp.smallest(bits=8), 4.67), (sp.uniform(bits=8), 46.79)):
        assert lut.price_candidate(cand).latency == pytest.approx(apq_ms, rel=0.01)


def test_precision_speedup_and_config() -> None:
    cfg = BitFusionConfig()
    assert [cfg.perf_factor(w, a) for w, a in [(8, 8), (6, 6), (4, 4), (4, 8), (2, 2), (3, 3)]] == [1, 1, 4, 2, 16, 4]
    big = Layer("pw", 256, 256, 28, 1, 1, 0, 1, 8, 8)
    base = BitFusion().layer_cost(big)[0]
    wider = BitFusion(cfg.with_(rows=32, cols=64)).layer_cost(big)[0]
    faster = BitFusion(cfg.with_(clock_mhz=1000.0)).layer_cost(big)[0]
    assert wider < base and faster == pytest.approx(base / 2)
    assert BitFusion().layer_cost(Layer("pw", 256, 256, 28, 1, 1, 0, 1, 4, 4))[0] < base
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        BitFusionConfig(rows=0)
    with pytest.raises(ValueError, match="unknown BitFusion config keys"):
        BitFusionConfig.from_dict({"rowz": 3})
    with pytest.raises(ValueError, match="mode must be"):
        BitFusionConfig(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only dense and depthwise"):
        BitFusion().layer_cost(Layer("g", 64, 64, 14, 3, 1, 1, 4))
