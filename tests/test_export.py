"""Export (#21.6): the file holds the network that was measured, and runs to the same outputs outside apqopt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from apqopt.cli import main
from apqopt.supernet.collect import CollectConfig, measured_network
from apqopt.supernet.data import MEAN, STD, accuracy_stderr, load_split
from apqopt.supernet.evaluate import accuracy
from apqopt.supernet.quant import FinetuneConfig, QuantConv2d

onnx = pytest.importorskip("onnx", reason="ONNX export needs the export extra (pip install 'apqopt[export]')")
ort = pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (the export extra)")

from apqopt.export import DeployedConv2d, deployable, export, read_metadata, run_exported  # noqa: E402


@pytest.fixture(scope="module")
def quantized(shipped_supernet):  # type: ignore[no-untyped-def]
    """A mixed-precision network as measure() builds it (short fine-tune: the test is about export)."""
    space = shipped_supernet.space
    for seed in range(100):  # a policy with 8-bit activations (Q/DQ in ONNX) and narrower ones (arithmetic)
        cand = space.to_candidates(space.sample(1, seed))[0]
        bits = {a for stage in cand.stages for b in stage for a in (b.pw_a, b.dw_a)}
        if 8 in bits and len(bits) > 1:
            break
    cfg = CollectConfig(kind="quant", finetune=FinetuneConfig(steps=3))
    return measured_network(shipped_supernet, cand, cfg, seed=0)


@pytest.fixture(scope="module")
def val() -> torch.Tensor:
    return load_split("val", "fmnist", "fmnist").subset(2000)


def test_deployable_computes_what_was_measured(quantized, val) -> None:  # type: ignore[no-untyped-def]
    """Folded weights and plain activation arithmetic give the fake-quantized network's outputs."""
    dep = deployable(quantized)
    assert not any(isinstance(m, QuantConv2d) for m in dep.modules())
    n_quant = sum(isinstance(m, QuantConv2d) for m in quantized.modules())
    assert sum(isinstance(m, DeployedConv2d) for m in dep.modules()) == n_quant > 0
    with torch.no_grad():
        a, b = quantized.eval()(val.images[:500]), dep(val.images[:500])
    # the same arithmetic in another order: an activation that lands on a rounding boundary may take the
    # next level (3 of 500 images on one CPU, none on another); everything else agrees to float precision
    same = (a - b).abs().max(dim=1).values < 1e-3
    assert same.float().mean() >= 0.98 and (a.argmax(1) == b.argmax(1)).float().mean() >= 0.995
    assert abs(accuracy(dep, val) - accuracy(quantized, val)) <= 0.001
    for m in dep.modules():  # weights sit on their grid: at most 2^(bits-1)-1 distinct magnitudes per channel
        if isinstance(m, DeployedConv2d):
            w = m.conv.weight.flatten(1)[0]
            assert len(torch.unique(w.abs())) <= 2 ** (8 - 1)


def test_onnx_file_runs_in_onnxruntime_like_pytorch(quantized, val, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = export(quantized, tmp_path / "m.onnx", val.images, {"kind": "quant", "preprocessing": {"mean": [0.3]}})
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert read_metadata(path) == {"kind": "quant", "preprocessing": {"mean": [0.3]}}  # in metadata_props
    dep = deployable(quantized)
    eight = sum(isinstance(m, DeployedConv2d) and m.bits == 8 for m in dep.modules())
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") == eight > 0  # 8-bit activations only
    assert "Round" in ops  # narrower activations as arithmetic
    for m in dep.modules():
        if isinstance(m, DeployedConv2d):
            m.qdq = True
    with torch.no_grad():
        ref = dep(val.images).numpy()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: val.images[:500].numpy()})[0]
    # quantizers amplify float rounding: a value on a step's edge can land one step apart, so compare
    # the decisions and the typical logit, not the worst one
    assert (got.argmax(1) == ref[:500].argmax(1)).mean() >= 0.99
    assert np.abs(got - ref[:500]).mean() < 0.02 * np.abs(ref).mean()
    # as deployed (onnxruntime's default optimizations fuse some convs into integer QLinearConv):
    # the same accuracy within two standard errors
    labels = val.labels.numpy()
    acc_file = float((run_exported(path, val.images).argmax(1) == labels).mean())
    acc_torch = float((ref.argmax(1) == labels).mean())
    assert abs(acc_file - acc_torch) < 2 * accuracy_stderr(acc_torch, len(labels))
    assert (run_exported(path, val.images[:7]).shape) == (7, 10)  # any batch size


def test_pt2_program_is_the_module(quantized, val, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = export(quantized, tmp_path / "m.pt2", val.images)
    with torch.no_grad():
        ref = deployable(quantized)(val.images[:300]).numpy()
    assert np.array_equal(run_exported(path, val.images[:300]), ref)
    assert run_exported(path, val.images[:3]).shape == (3, 10)
    assert path.stat().st_size < 4e6  # the network alone, not the supernet or the dataset behind its views


def test_cli_exports_a_study_trial_and_refuses_bad_output(tmp_path: Path, capsys, shipped_supernet) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'st.db'}"
    search = ["search", "--searcher", "random", "--latency", "0.6", "--budget", "10", "--quiet"]
    assert main([*search, "--storage", url, "--study", "s"]) == 0
    out = tmp_path / "t.pt2"
    common = ["--study", "s", "--storage", url, "--kind", "fp", "--eval-images", "200"]
    assert main(["export", *common, "--trial", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"written: {out}" in printed and "run on 200 val images: accuracy" in printed
    # the file says how to feed it, and what it is (the raw-pixel mistake gave 14% instead of 72%)
    assert "feed it: grey (L) 28x28 (bilinear resize), pixels / 255, then (x - mean) / std" in printed
    meta = read_metadata(out)
    assert meta["preprocessing"]["mean"] == [MEAN] and meta["preprocessing"]["std"] == [STD]
    assert meta["preprocessing"]["classes"][:2] == ["T-shirt/top", "Trouser"] and meta["kind"] == "fp"
    from apqopt.review import StudyReader

    assert meta["candidate"] == json.loads(StudyReader(url).candidate("s", 3).to_json())
    raw = load_split("val", "fmnist", "fmnist").subset(200).images * STD + MEAN  # pixels / 255, as read
    prepared = (raw - meta["preprocessing"]["mean"][0]) / meta["preprocessing"]["std"][0]
    assert np.allclose(run_exported(out, prepared), run_exported(out, load_split("val").subset(200).images), atol=1e-4)
    assert main(["export", *common, "--trial", "3", "--out", str(out)]) == 2  # never replaced unasked
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", *common, "--trial", "99", "--out", str(tmp_path / "u.pt2")]) == 2
    assert "--trial: study 's' has no complete trial 99" in capsys.readouterr().err
    assert main(["export", "largest", "--out", str(tmp_path / "m.txt")]) == 2
    assert "export writes .onnx or .pt2 files" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "give a CANDIDATE or --study" in capsys.readouterr().err
    bad = json.dumps({"space": "fmnist", "stages": []})
    assert main(["export", bad, "--out", str(tmp_path / "b.onnx")]) == 2
    assert not (tmp_path / "b.onnx").exists() and not (tmp_path / "u.pt2").exists()
