"""Host-CPU lookup tables: every layer shape of a space timed on this machine with PyTorch (OHQ's
"on-device" tables), and a check of how well the table's sums predict whole networks.

Why: a simulated accelerator is one answer to "how fast is this candidate"; the machine a user
actually deploys on is another. The builder (:func:`apqopt.hardware.build.build_lut`) walks the same
shapes and writes the same format; this module supplies the timings.

What is measured, and what is not invented:

* ``fp32``: ``nn.Conv2d`` (bias on: batch norm folded, as deployed), channels-last, as traced and
  frozen TorchScript (how a network runs without Python), inference mode.
  The policy's bits do not change an fp32 run, so every bit pair of a shape gets that shape's one
  measurement (the table says ``bits_ignored``).
* ``int8``: PyTorch's quantized CPU engine (``torch.ao.nn.quantized.Conv2d``, quint8 activations,
  qint8 weights, the ``x86``/``fbgemm`` engine). Only W8A8 exists on this engine: 4- and 6-bit pairs
  are left out of the table and listed as ``unsupported`` in its config; a Problem on such a table
  needs ``allow_missing=True`` and treats those policies as infeasible.
* Energy is not measured on a CPU: the energy column is 0 and the config says
  ``energy_measured: false``; a Problem refuses energy objectives/constraints on such a table.

Each timing: ``warmup`` calls, then ``repeats`` samples, each the mean of enough back-to-back calls
to last >= 0.2 ms (tiny layers are otherwise below the timer's resolution); the median is the
entry, the interquartile range its spread (kept in the config summary). Thread count is recorded.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from apqopt.errors import ConfigError
from apqopt.space import BIT_FIELDS, Candidate, Layer, SearchSpace, get_space

PRECISIONS = ("fp32", "int8")
MIN_SAMPLE_S = 2e-4

F = TypeVar("F", bound=Callable[..., Any])


def _quiet_int8(fn: F) -> F:
    """PyTorch's quantized engine is deprecated but is still what runs int8 on this CPU: silence its
    deprecation warnings inside these calls only (the user's warning filters stay as they are)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
            warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated")
            warnings.filterwarnings("ignore", message="Please use quant_min and quant_max")
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def time_call(fn: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, float]:
    """(median, interquartile range) of one call, in milliseconds."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        inner = max(1, math.ceil(MIN_SAMPLE_S / once))
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner * 1e3)
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    return float(q50), float(q75 - q25)


def _engine() -> str:
    engines = torch.backends.quantized.supported_engines
    return "x86" if "x86" in engines else "fbgemm" if "fbgemm" in engines else engines[-1]


@_quiet_int8
def layer_runner(layer: Layer, precision: str, batch: int = 1) -> Callable[[], Any]:
    """A zero-argument call that runs the layer once on a fixed input."""
    shape = (batch, layer.c_in, layer.h_in, layer.h_in)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g).contiguous(memory_format=torch.channels_last)
    args = (layer.c_in, layer.c_out, layer.kernel, layer.stride, layer.padding)
    if precision == "fp32":
        conv = nn.Conv2d(*args, groups=layer.groups, bias=True).eval().to(memory_format=torch.channels_last)
        frozen = frozen_script(conv, x)
        return lambda: frozen(x)
    if precision == "int8":
        import torch.ao.nn.quantized as nnq

        torch.backends.quantized.engine = _engine()
        qconv = nnq.Conv2d(*args, groups=layer.groups)
        qx = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)
        frozen = frozen_script(qconv, qx)
        return lambda: frozen(qx)
    raise ConfigError(f"unknown precision {precision!r}; choose from {list(PRECISIONS)}")


def frozen_script(module: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    """The module as it is deployed without Python: traced and frozen TorchScript (per-call Python
    overhead would otherwise dominate the tiny layers of a 28x28 network). TorchScript is deprecated
    in PyTorch 2.13 but still runs here without a compiler; torch.compile would need one per shape."""
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.freeze(torch.jit.trace(module.eval(), x))


@dataclass
class HostCPU:
    """A cost model for :func:`build_lut`: latency measured here, per layer shape (memoised)."""

    precision: str = "fp32"
    warmup: int = 5
    repeats: int = 25
    batch: int = 1
    threads: int = 0  # 0: PyTorch's default
    spreads: dict[tuple[int, ...], float] = field(default_factory=dict, repr=False)
    _cache: dict[tuple[int, ...], float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose from {list(PRECISIONS)}")
        if self.threads:
            torch.set_num_threads(self.threads)

    @property
    def hardware(self) -> str:
        return f"host-cpu-{self.precision}"

    @property
    def bits(self) -> tuple[int, ...] | None:
        """Bit-widths the host can run (None: all, as fp32 ignores them)."""
        return (8,) if self.precision == "int8" else None

    def table_config(self, space: SearchSpace) -> dict[str, Any]:
        import platform

        unsupported = []
        if self.bits is not None:
            unsupported = [[w, a] for w in space.bits for a in space.bits if (w, a) != (8, 8)]
        return {
            "precision": self.precision,
            "engine": _engine() if self.precision == "int8" else "aten",
            "threads": torch.get_num_threads(),
            "batch": self.batch,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "statistic": "median; spread = interquartile range",
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "energy_measured": False,
            "bits_ignored": self.precision == "fp32",
            "unsupported": unsupported,
        }

    def spread_summary(self) -> dict[str, float]:
        """Median and largest interquartile range over the measured shapes (ms)."""
        spread = np.array(list(self.spreads.values()) or [0.0])
        return {"median_spread_ms": float(np.median(spread)), "max_spread_ms": float(spread.max())}

    @_quiet_int8
    def layer_cost(self, layer: Layer, first: bool = False) -> tuple[float, float]:
        key = layer.shape
        if key not in self._cache:
            median, spread = time_call(layer_runner(layer, self.precision, self.batch), self.warmup, self.repeats)
            self._cache[key], self.spreads[key] = median, spread
        return self._cache[key], 0.0

    @_quiet_int8
    def network_cost(self, layers: list[Layer], first_is_input: bool = True) -> tuple[float, float]:
        return sum(self.layer_cost(layer)[0] for layer in layers), 0.0


# ---------------------------------------------------------------------- end-to-end check
@_quiet_int8
def deployed_subnet(space: SearchSpace, cand: Candidate, precision: str) -> nn.Module:
    """The candidate's network as it would be deployed: batch norm folded into the convs, eval mode,
    channels-last; for int8, quantized by PyTorch's FX flow (x86 engine, calibrated on random input)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from apqopt.supernet.network import ConvBN, Subnet

    net = Subnet(space, cand).eval()
    for module in list(net.modules()):
        if isinstance(module, ConvBN):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    net = net.to(memory_format=torch.channels_last)
    if precision == "fp32":
        return net
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = _engine()
    torch.backends.quantized.engine = engine
    x = torch.rand(1, space.image_channels, space.input_size, space.input_size)
    prepared = prepare_fx(net, get_default_qconfig_mapping(engine), (x,))
    with torch.inference_mode():
        prepared(x)
    return convert_fx(prepared)


def check_sums(
    space: SearchSpace | str,
    lut: Any,
    precision: str,
    n: int = 50,
    seed: int = 0,
    warmup: int = 5,
    repeats: int = 25,
    progress: bool = True,
) -> dict[str, Any]:
    """Time ``n`` random subnets end to end (batch 1) and compare with the table's sums."""
    from tqdm import tqdm

    space = get_space(space)
    if space.name != "fmnist":
        raise ConfigError(f"end-to-end networks are built for the 'fmnist' space only, not '{space.name}'")
    genes = space.sample(n, seed)
    if precision == "int8":
        genes[:, [space.block_gene(b, f) for b in range(space.n_blocks) for f in BIT_FIELDS]] = space.bits.index(8)
    table, _ = lut.price(space, genes)
    measured = []
    for cand in tqdm(space.to_candidates(genes), desc=f"end-to-end {precision}", disable=not progress):
        x = torch.rand(1, space.image_channels, space.input_size, space.input_size).contiguous(
            memory_format=torch.channels_last
        )
        net = frozen_script(deployed_subnet(space, cand, precision), x)
        measured.append(time_call(lambda net=net, x=x: net(x), warmup, repeats)[0])
    m = np.array(measured)
    rel = (table - m) / m
    return {
        "precision": precision,
        "subnets": n,
        "threads": torch.get_num_threads(),
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
        "mean_signed_rel_error": float(np.mean(rel)),
        "spearman": float(_spearman(table, m)),
        "measured_ms": {"min": float(m.min()), "median": float(np.median(m)), "max": float(m.max())},
        "pairs": [[float(a), float(b)] for a, b in zip(table, m)],
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


__all__ = ["PRECISIONS", "HostCPU", "check_sums", "deployed_subnet", "layer_runner", "time_call"]
