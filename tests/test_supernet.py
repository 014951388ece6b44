"""Elastic supernet: extraction, kernel transform, channel sorting, training resume, shipped weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from apqopt import get_space
from apqopt.supernet.network import Supernet, depthwise

SP = get_space("fmnist")


def _randomised(seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    net = Supernet(SP).to(memory_format=torch.channels_last)
    with torch.no_grad():  # non-trivial BN statistics and transforms, so the checks mean something
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
        for blk in net.blocks:
            for t in blk.transforms.values():
                t.add_(0.05 * torch.randn_like(t))
    return net.eval()


def test_extract_equals_supernet_forward() -> None:
    net = _randomised()
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    for cand in [SP.uniform(), SP.smallest(), *SP.to_candidates(SP.sample(3, 1))]:
        sub = net.extract(cand).eval()
        with torch.no_grad():
            torch.testing.assert_close(sub(x), net(x, cand), atol=1e-5, rtol=1e-4)
        n_blocks = sum(cand.depths)
        assert len(sub.blocks) == n_blocks


def test_kernel_transform_identity_is_centre_crop() -> None:
    net = Supernet(SP)
    blk = net.blocks[0]
    w7 = blk.dw_weight
    torch.testing.assert_close(blk.dw_kernel(5), w7[:, :, 1:6, 1:6])
    torch.testing.assert_close(blk.dw_kernel(3), w7[:, :, 2:5, 2:5])


def test_sort_channels_keeps_the_function() -> None:
    net = _randomised(1)
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        before = net(x, SP.uniform())
        net.sort_channels()
        after = net(x, SP.uniform())
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-4)
    imp = net.blocks[3].project.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(imp[:-1] >= imp[1:])


@pytest.mark.parametrize(("c", "h", "k", "s"), [(8, 4, 7, 1), (8, 4, 5, 1), (8, 7, 7, 2), (8, 14, 3, 2)])
def test_small_map_depthwise_equals_conv(c: int, h: int, k: int, s: int) -> None:
    x = torch.randn(3, c, h, h, requires_grad=True)
    w = torch.randn(c, 1, k, k, requires_grad=True)
    ref = F.conv2d(x, w, None, s, k // 2, 1, c)
    gx, gw = torch.autograd.grad(ref.square().sum(), (x, w))
    out = depthwise(x, w, s)
    gx2, gw2 = torch.autograd.grad(out.square().sum(), (x, w))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gw2, gw, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(gx2, gx, atol=1e-3, rtol=1e-4)


TRAIN_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from apqopt.supernet.train import Phase, TrainConfig, train_supernet
cfg = TrainConfig(phases=(Phase("largest", 1.0, 0.05, ()), Phase("width", 1.0, 0.02, ("kernel", "depth", "width"), 1)),
                  batch_size=32, train_images=256, ckpt_every=1, eval_images=100)
train_supernet(cfg, sys.argv[1], progress=False)
"""


@pytest.mark.slow
def test_training_resumes_after_sigkill(tmp_path: Path, fmnist_available: None) -> None:
    """Killed mid-phase and rerun, training ends with exactly the weights of an uninterrupted run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(clean)], check=True, env=env, timeout=600)
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(killed)], env=env)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-way through the first phase (16 steps in all)
    proc.wait()
    assert not (killed / "supernet.pt").exists(), "the run finished before it could be killed"
    subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(killed)], check=True, env=env, timeout=600)
    a = torch.load(clean / "supernet.pt", weights_only=True)
    b = torch.load(killed / "supernet.pt", weights_only=True)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], msg=key)
    assert [h["phase"] for h in b["history"]] == ["largest", "width"]


@pytest.mark.slow
def test_schedule_extends_finished_run(tmp_path: Path, fmnist_available: None) -> None:
    """A finished run trained further with a longer schedule ends where a fresh run with that schedule
    does; rerunning a finished run leaves its weights file (and identity) untouched; a schedule that
    changes a finished phase is refused by name."""
    from apqopt.supernet.train import Phase, TrainConfig, train_supernet, weights_identity

    torch.set_num_threads(1)
    first = (Phase("largest", 0.25, 0.05, ()),)
    longer = (*first, Phase("refine", 0.25, 0.02, ("kernel", "depth", "width"), 1))
    small = {"batch_size": 32, "train_images": 256, "eval_images": 50}
    train_supernet(TrainConfig(phases=first, **small), tmp_path / "grown", progress=False)
    identity = weights_identity(tmp_path / "grown" / "supernet.pt")
    train_supernet(TrainConfig(phases=first, **small), tmp_path / "grown", progress=False)  # finished: no-op
    assert weights_identity(tmp_path / "grown" / "supernet.pt") == identity  # datasets on it stay valid
    grown = train_supernet(TrainConfig(phases=longer, **small), tmp_path / "grown", progress=False)
    fresh = train_supernet(TrainConfig(phases=longer, **small), tmp_path / "fresh", progress=False)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(grown.state_dict()[key], value, msg=key)
    history = torch.load(tmp_path / "grown" / "supernet.pt", weights_only=True)["history"]
    assert [h["phase"] for h in history] == ["largest", "refine"]
    changed = (Phase("largest", 0.25, 0.1, ()), longer[1])
    with pytest.raises(ValueError, match=r"other phases \(a schedule may only be extended at its end\)"):
        train_supernet(TrainConfig(phases=changed, **small), tmp_path / "grown", progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train_supernet(TrainConfig(phases=longer, **{**small, "seed": 1}), tmp_path / "grown", progress=False)
    ckpt = tmp_path / "grown" / "checkpoint.pt"  # a checkpoint damaged since: never trained on
    payload = torch.load(ckpt, weights_only=True)
    next(v for v in payload["model"].values() if v.is_floating_point()).view(-1)[0] = float("nan")
    torch.save(payload, ckpt)
    with pytest.raises(ValueError, match="holds non-finite values"):
        train_supernet(TrainConfig(phases=(*longer, longer[1]), **small), tmp_path / "grown", progress=False)


def test_bad_weights_file(tmp_path: Path) -> None:
    from apqopt.supernet.train import load_supernet

    with pytest.raises(FileNotFoundError, match="apqopt supernet train"):
        load_supernet(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="not a readable apqopt supernet file"):
        load_supernet(tmp_path / "bad.pt")


@pytest.mark.slow
def test_shipped_supernet_accuracy(shipped_supernet: Supernet) -> None:
    """The issue's bars on the 10k test images: largest >= 91%, smallest >= 88% (measured when the
    shipped weights were made: 91.15% +- 0.28 and 89.90% +- 0.30)."""
    from apqopt.supernet.data import load_split
    from apqopt.supernet.evaluate import evaluate_subnet

    test = load_split("test")
    largest = evaluate_subnet(shipped_supernet.extract(SP.uniform()), test)
    smallest = evaluate_subnet(shipped_supernet.extract(SP.smallest()), test)
    assert largest >= 0.91 and smallest >= 0.88
    assert largest > smallest
