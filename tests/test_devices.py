"""Devices (#21.3): --device is checked at the boundary, the CPU path is the path it always was, and on a
machine with a GPU the same steps run there (those tests skip on CPU-only machines, such as CI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apqopt import devices
from apqopt.cli import main
from apqopt.errors import ConfigError

CUDA = torch.cuda.is_available()
COMMANDS = [
    ["supernet", "train"],
    ["supernet", "eval"],
    ["collect", "fp", "--n", "1", "--out", "x.jsonl"],
    ["verify", "--study", "s"],
    ["export", "largest", "--out", "m.pt2"],
    ["predictor", "train", "--fp", "a", "--quant", "b", "--heldout", "c", "--out", "d"],
]


def test_resolve() -> None:
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve("auto") == torch.device("cuda:0" if CUDA else "cpu")
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        devices.resolve("gpu")
    with pytest.raises(ConfigError, match="cuda:99"):
        devices.resolve("cuda:99")
    if not CUDA:
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            devices.resolve("cuda")


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_torch_command_checks_its_device(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --device: device must be auto, cpu, cuda or cuda:N" in err


def test_mixed_precision_is_cuda_only() -> None:
    with devices.mixed_precision(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")  # the CPU computes in float32, as it always did
    if CUDA:
        with devices.mixed_precision(torch.device("cuda")):
            assert torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.bfloat16


def test_kl_clip_is_the_same_wherever_the_values_are() -> None:
    from apqopt.supernet.quant import kl_clip

    w = torch.randn(8, 300, generator=torch.Generator().manual_seed(0))
    ref = kl_clip(w, 4, signed=True)
    assert ref.device.type == "cpu"
    if CUDA:
        assert torch.equal(kl_clip(w.cuda(), 4, signed=True), ref)


@pytest.mark.skipif(not CUDA, reason="no CUDA GPU here: the CUDA path is tested on the CPU only")
def test_measurement_on_the_gpu_matches_the_cpu(shipped_supernet) -> None:  # type: ignore[no-untyped-def]
    """The shipped supernet measured on the GPU: fp accuracy within 0.2 points of the CPU's (float32 both
    ways; only summation order differs), and a quantized measurement runs end to end."""
    from apqopt.shipped import supernet_path
    from apqopt.supernet.collect import CollectConfig, measure
    from apqopt.supernet.quant import FinetuneConfig
    from apqopt.supernet.train import load_supernet

    gpu = load_supernet(supernet_path("fmnist"), device="cuda")
    cand = gpu.space.to_candidates(gpu.space.sample(1, 0))[0]
    cfg = CollectConfig(kind="fp", eval_images=2000)
    assert abs(measure(gpu, cand, cfg, 0) - measure(shipped_supernet, cand, cfg, 0)) < 0.002
    q = measure(gpu, cand, CollectConfig(kind="quant", eval_images=500, finetune=FinetuneConfig(steps=5)), 0)
    assert 0.5 < q <= 1


@pytest.mark.skipif(not CUDA, reason="no CUDA GPU here: the CUDA path is tested on the CPU only")
def test_training_and_predictor_fit_on_the_gpu(tmp_path, fmnist_available) -> None:  # type: ignore[no-untyped-def]
    from apqopt.predictor import AccuracyPredictor
    from apqopt.supernet.train import Phase, TrainConfig, train_supernet

    cfg = TrainConfig(phases=(Phase("largest", 0.5, 0.05, ()),), batch_size=64, train_images=512, eval_images=100)
    net = train_supernet(cfg, tmp_path / "run", progress=False, device="cuda")
    assert next(net.parameters()).device.type == "cuda" and (tmp_path / "run" / "supernet.pt").exists()
    from apqopt import get_space

    X = np.random.default_rng(1).integers(0, 2, (64, get_space("fmnist").arch_width)).astype(np.float32)
    pred = AccuracyPredictor(variant="fp", max_epochs=3, device="cuda").fit(X, 0.8 + 0.1 * X[:, 0])
    assert next(pred.model_.parameters()).device.type == "cpu" and pred.predict(X).shape == (64,)
