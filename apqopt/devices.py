"""Where tensors run: ``--device auto|cpu|cuda[:i]``, and what changes on a GPU.

Why one module: every torch path (supernet training and evaluation, collection, verification, OHQ's
MQE, predictor training, export) takes a device, and the rules are the same everywhere:

* the network lives on the device; data stays in host memory (pinned on CUDA) and moves there one
  batch at a time, so a split never has to fit in GPU memory;
* supernet training runs its forward passes under bf16 autocast on CUDA (mixed precision);
  measurements stay in float32, so a quantized policy's accuracy is not also a bf16 accuracy;
* on the CPU nothing changes: the same operations in the same order as before devices existed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import nn

from apqopt.errors import ConfigError

DEVICES = "auto, cpu, cuda or cuda:N"


def resolve(text: str | torch.device | None = "auto") -> torch.device:
    """``auto`` is the first GPU when there is one, else the CPU; a GPU that is not there is an error."""
    if isinstance(text, torch.device):
        return text
    text = (text or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not m:
        raise ConfigError(f"device must be {DEVICES}, got {text!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {text}: this machine's PyTorch sees no CUDA GPU (use --device cpu or auto)")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {text}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    return torch.device("cuda", index)


def of(net: nn.Module) -> torch.device:
    """The device a network's weights are on."""
    for t in net.parameters():
        return t.device
    return torch.device("cpu")


def to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device`` (asynchronous from pinned memory; the tensor itself on the CPU)."""
    return x if x.device == device else x.to(device, non_blocking=True)


def host(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host data made ready for fast copies to ``device`` (pinned on CUDA; as it is elsewhere)."""
    return x.pin_memory() if device.type == "cuda" and not x.is_pinned() else x


@contextlib.contextmanager
def mixed_precision(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA (training only); nothing at all on the CPU."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


__all__ = ["DEVICES", "host", "mixed_precision", "of", "resolve", "to"]
