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
import os
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


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def auto_threads(processes: int = 1) -> int:
    """Torch threads for each of ``processes`` processes of one command: ``OMP_NUM_THREADS`` where the user
    set it, else the usable cores shared out, at least one each. Why: torch gives every process as many
    threads as the machine has cores, so N processes on N cores run N x N threads that fight over the
    cores (measured: a main job past 100 minutes instead of 8 on a busy 2-core machine)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, usable_cores() // max(1, processes))


def set_threads(threads: int | None = None, processes: int = 1) -> int:
    """Set this process's torch threads (``threads``, or :func:`auto_threads` when None or 0); returns it."""
    n = threads or auto_threads(processes)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


__all__ = ["DEVICES", "auto_threads", "host", "mixed_precision", "of", "resolve", "set_threads", "to", "usable_cores"]
