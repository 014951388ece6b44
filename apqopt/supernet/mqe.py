"""OHQ's Mask-Guided Quantization Estimation: how much each operator's bits hurt, one at a time.

For every quantizable operator (a block's pointwise pair, or its depthwise conv) and every (W, A)
bit pair, quantize only that operator -- everything else stays in floating point -- and measure the
KL divergence between the network's output distribution and the full-precision one on a small batch.
OHQ's data-free mode feeds synthetic inputs (standard normal in the normalised input space); real
images work the same way. Results are cached on disk keyed by architecture, inputs and bit pairs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from apqopt import devices
from apqopt.errors import ConfigError
from apqopt.sensitivity import SensitivityTable, design, table_shape
from apqopt.settings import mqe_cache_dir
from apqopt.shipped import supernet_path
from apqopt.space import Block, Candidate, get_space
from apqopt.supernet.data import load_split
from apqopt.supernet.evaluate import bn_slice, reestimate_bn
from apqopt.supernet.network import Subnet, Supernet
from apqopt.supernet.quant import quantize
from apqopt.supernet.train import load_supernet


def synthetic_inputs(n: int, size: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """OHQ's data-free calibration batch."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=g).contiguous(memory_format=torch.channels_last)


def calibration_inputs(supernet: Supernet, data: str, images: int, seed: int) -> torch.Tensor:
    """The batch MQE measures on: OHQ's data-free synthetic inputs, or (any other ``data``) the first
    ``images`` val images of the data the supernet is measured on."""
    sp = supernet.space
    if data == "synthetic":
        return synthetic_inputs(images, sp.input_size, sp.image_channels, seed)
    return load_split("val", supernet.data, sp.name).images[:images]


def supernet_mqe(
    supernet: Supernet,
    cand: Candidate,
    images: torch.Tensor,
    choices: tuple[tuple[int, int], ...] | None = None,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """MQE of one network of a supernet: its subnet extracted, BN statistics re-estimated, then
    :func:`mqe_sensitivity` (how OHQ and the supernet-wide table measure a network)."""
    sub = supernet.extract(cand)
    reestimate_bn(sub, bn_slice(data=supernet.data, space=supernet.space.name))
    return mqe_sensitivity(sub, images, choices, cache_dir=cache_dir)


@torch.no_grad()
def mqe_sensitivity(
    subnet: Subnet,
    images: torch.Tensor,
    choices: tuple[tuple[int, int], ...] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(2 * blocks, len(choices)) KL(fp || quantized-one-operator) on ``images``."""
    cand = subnet.candidate
    space = get_space(cand.space)
    choices = choices or tuple((w, a) for w in space.bits for a in space.bits)
    key = hashlib.sha256(
        json.dumps([cand.to_dict(), choices]).encode() + images.numpy().tobytes() + _weights_digest(subnet)
    ).hexdigest()[:20]
    path = Path(cache_dir) / f"mqe-{key}.npy" if cache_dir else None
    if path is not None and path.exists():
        return np.load(path)
    subnet.eval()
    images = devices.to(images, devices.of(subnet))  # (the cache key above is of the host copy)
    ref = F.log_softmax(subnet(images), dim=1)
    n_ops = 2 * len(cand.blocks)
    out = np.zeros((n_ops, len(choices)))
    bar = tqdm(total=n_ops * len(choices), desc="MQE", disable=not progress)
    for c, (w, a) in enumerate(choices):
        policy = get_space(cand.space).candidate(
            tuple(Block(b.kernel, b.middle, w, a, w, a) for b in s) for s in cand.stages
        )
        for op in range(n_ops):
            q = quantize(subnet, policy, images, fixed_bits=None, operators={op})
            logq = F.log_softmax(q(images), dim=1)
            out[op, c] = float(F.kl_div(logq, ref, log_target=True, reduction="batchmean"))
            bar.update(1)
    bar.close()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    return out


@dataclass(frozen=True)
class SupernetMQE:
    """OHQ's sensitivities measured for a problem's architecture: MQE on the supernet's subnet (the
    ``sensitivity`` an :class:`~apqopt.search.ohq.OHQ` run gets from the applications)."""

    supernet: str | None = None  # weights file (None: the space's shipped supernet)
    data: str = "synthetic"
    images: int = 64
    seed: int = 0
    cache_dir: str | None = "default"
    device: str = "cpu"
    measures_supernet: ClassVar[bool] = True  # OHQ records its run's parameters as if none were given

    @classmethod
    def of(cls, ohq: Any) -> SupernetMQE:
        """The measurer an OHQ searcher's own parameters describe."""
        return cls(ohq.supernet, ohq.data, ohq.images, ohq.seed, ohq.cache_dir, ohq.device)

    def __call__(self, problem: Any) -> np.ndarray:
        weights = Path(self.supernet) if self.supernet else supernet_path(problem.space.name)
        if not weights.exists():
            raise ConfigError(
                f"OHQ needs sensitivities: no supernet at {weights}; pass sensitivity=... or supernet=..."
            )
        net = load_supernet(weights, device=self.device)
        x = calibration_inputs(net, self.data, self.images, self.seed)
        cache = str(mqe_cache_dir()) if self.cache_dir == "default" else self.cache_dir
        return supernet_mqe(net, problem.architecture, x, cache_dir=cache)


def with_measured_sensitivity(searcher: Any) -> Any:
    """``searcher`` itself, an OHQ one without sensitivities given them measured on the supernet by its own
    parameters (what ``apqopt search`` and ``compare`` run); any other searcher unchanged."""
    if getattr(searcher, "name", None) == "ohq" and searcher.sensitivity is None:
        searcher.sensitivity = SupernetMQE.of(searcher)
    return searcher


def _weights_digest(net: torch.nn.Module) -> bytes:
    h = hashlib.sha256()
    for t in net.state_dict().values():
        h.update(t.detach().cpu().numpy().tobytes())
    return h.digest()


def measure_table(
    supernet: Any,
    replicates: int = 1,
    images: int = 64,
    data: str = "synthetic",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    choices: tuple[tuple[int, int], ...] | None = None,
) -> SensitivityTable:
    """Measure the table on a loaded supernet (:func:`apqopt.supernet.train.load_supernet`).

    Cost: ``replicates`` x (cells per block) MQE passes of a full-depth network -- for fmnist, 9 passes
    of 360 single-operator quantizations each. Each pass is cached in ``cache_dir`` (resumable).
    ``choices``: the (W, A) pairs (default every pair of the space's bits, what ``joint-ilp`` needs)."""
    sp = supernet.space
    if data not in ("synthetic", "real"):
        raise ConfigError(f"data must be 'synthetic' or 'real', got {data!r}")
    x = calibration_inputs(supernet, data, images, seed)
    choices = choices or tuple((w, a) for w in sp.bits for a in sp.bits)
    total = np.zeros(table_shape(sp, len(choices)))
    count = np.zeros(total.shape[:3])
    archs = design(sp, replicates, seed)
    for cand in tqdm(archs, desc="sensitivity table", disable=not progress):
        sens = supernet_mqe(supernet, cand, x, choices, cache_dir=cache_dir)
        for i, (b, blk) in enumerate(sp.active_blocks(cand)):
            k, m = sp.kernels.index(blk.kernel), sp.middle_choices[b].index(blk.middle)
            total[b, k, m] += sens[2 * i : 2 * i + 2]
            count[b, k, m] += 1
    with np.errstate(invalid="ignore"):
        values = total / count[..., None, None]
    values[count == 0] = np.nan
    meta = {"replicates": replicates, "images": images, "data": data, "seed": seed, "networks": len(archs)}
    return SensitivityTable(sp.name, values, choices, meta)
