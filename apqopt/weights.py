"""Weights as apqopt trusts them: a checksum of every tensor, stored beside them and checked on load, and
no non-finite value.

Why: ``torch.load`` does not check the CRCs of its zip records, so a file with flipped bytes in a tensor
loads without a word (a predictor then predicts nonsense); NaN or infinite weights make a network that
"measures" chance accuracy. Both are refused here, naming the file and the tensor. Files written before
checksums existed (and foreign ones: APQ's checkpoints) carry none; for those only finiteness is checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

from apqopt.errors import ConfigError


class WeightsError(ConfigError):
    """Weights that cannot be trusted: non-finite values, or tensors that do not match their checksum."""


def tensor_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 of a state dict's tensors: names, dtypes, shapes and bytes, in name order (what the
    weights *are*, not how ``torch.save`` happened to lay out the file)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_weights(state: Mapping[str, Any], where: str, expected: str | None = None) -> None:
    """Refuse non-finite floating-point tensors, and (``expected`` given) tensors whose digest differs."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and not torch.isfinite(t).all():
            raise WeightsError(
                f"{where}: tensor '{name}' holds non-finite values (NaN or infinity): the file is damaged or "
                "its training diverged"
            )
    if expected is not None and tensor_digest(state) != expected:
        raise WeightsError(
            f"{where}: its tensors do not match the checksum stored with them (flipped bytes, or a file "
            "swapped for another)"
        )


__all__ = ["WeightsError", "check_weights", "tensor_digest"]
