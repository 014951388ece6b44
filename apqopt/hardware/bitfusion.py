"""BitFusion accelerator cost model (Sharma et al., ISCA 2018), as used by HAQ and APQ.

Why: APQ's, HAQ's and OHQ's claims are about hardware cost, and users ask how to build the table
for *their* accelerator. This is apqopt's own implementation of the authors' analytical simulator
(see ``../shared/reference/bitfusion-spec.md`` in the project's shared folder for every formula and
its source): a systolic array of Fusion Units whose BitBricks fuse at run time, so a layer runs
``pf = floor(pmax/max(a,pmin)) * floor(pmax/max(w,pmin))`` times faster than at 8x8 bits; a search
over power-of-two tilings and all 120 loop orders picks the fewest cycles (ties: least energy), with
DRAM traffic from promoting tiles into the double-buffered SRAMs.

The search is vectorised: for one layer all tilings x loop orders are one numpy array, so the whole
apq-mbv2 table (779 shapes x 9 bit pairs) builds in seconds, where the authors' Python simulator
needs minutes for a few hundred layers.

Three modes:

* ``"apq"`` (default) -- the form that reproduces APQ's released table: no padding of weight tiles to
  ``N*pf`` or of output tiles to ``M`` when sizing tiles and DRAM traffic.
* ``"apq-table"`` -- ``apq`` plus APQ's buffer layout: tiles are checked against the buffers as the
  array holds them (inputs and weights padded to ``N*pf`` rows, weights and outputs to ``M`` columns,
  a 6-bit operand in an 8-bit slot) while DRAM traffic stays in real bits. Reproduces APQ's released
  table's latencies (every checked entry within 1%; docs/hardware.md); the shipped apq-mbv2 table.
* ``"orig"`` -- the simulator as its authors wrote it.

Depthwise convolutions: the simulator has no groups, so (in both modes, as APQ's table implies) a
depthwise conv over C channels costs ``ceil(C/g)`` dense ``g x g`` convolutions with
``g = min(8*pf, C)``. The first layer of a network runs as im2col, as in the simulator.

Energy: core energy per busy cycle + SRAM bits x per-bit energy (CACTI, 45 nm) + DRAM bits x 15 pJ.
This matches the simulator's own energy (the reference CSV) to rounding. APQ's released table
reports about 1.14x more for pointwise layers and 1.36x for depthwise ones; no consistent rule
reproduces it, so apqopt does **not** imitate it: energies are the simulator's, and the docs and the
tests report the agreement with APQ's entries rather than hiding the gap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from itertools import permutations
from typing import Any, Literal

import numpy as np

from apqopt.errors import ConfigError
from apqopt.space import Layer

Mode = Literal["apq", "apq-table", "orig"]
MODES: tuple[str, ...] = ("apq", "apq-table", "orig")

# loops: B, OW, OH, IC, OC; which buffers each loop's index touches (act, wgt, out)
_DEPS = np.array(
    [
        [1, 0, 1],  # B
        [1, 0, 1],  # OW
        [1, 0, 1],  # OH
        [1, 1, 0],  # IC
        [0, 1, 1],  # OC
    ],
    dtype=bool,
)
_ORDERS = np.array(list(permutations(range(5))), dtype=np.int64)  # 120 x 5, outermost first


# What a real accelerator can be (simulating outside these gives numbers no chip has, or never ends:
# a 100000 x 100000 array, a 1e-300 MHz clock). Energies (pJ) default to (0, 1e6].
PHYSICAL: dict[str, tuple[float, float]] = {
    "rows": (1, 4096),
    "cols": (1, 4096),
    "pmax": (1, 32),
    "pmin": (1, 32),
    "clock_mhz": (1, 100_000),
    "dram_bits_per_cycle": (1, 65_536),
    "wbuf_kib": (1, 2**20),
    "ibuf_kib": (1, 2**20),
    "obuf_kib": (1, 2**20),
    "psum_bits": (1, 128),
    "batch": (1, 4096),
}


@dataclass(frozen=True)
class BitFusionConfig:
    """One BitFusion instance. Defaults are the authors' ``bf_e_conf.ini`` (the config APQ's table uses).

    Energies are per bit (SRAM, DRAM) or per busy cycle of the whole array (core), in picojoules.
    """

    name: str = "bf_e"
    rows: int = 16  # N: Fusion-Unit rows (reduction / input-channel dimension)
    cols: int = 32  # M: Fusion-Unit columns (output channels)
    pmax: int = 8  # widest operand a Fusion Unit handles natively
    pmin: int = 2  # BitBrick width
    clock_mhz: float = 500.0
    dram_bits_per_cycle: int = 192
    wbuf_kib: int = 64
    ibuf_kib: int = 32
    obuf_kib: int = 16
    psum_bits: int = 32
    batch: int = 1
    core_pj_per_cycle: float = 235.104  # 3,673,500 nW (4x4 synth) x 512/16 / 500 MHz
    wbuf_read_pj: float = 0.021366
    wbuf_write_pj: float = 0.028916
    ibuf_read_pj: float = 0.059474
    ibuf_write_pj: float = 0.113704
    obuf_read_pj: float = 0.033155
    obuf_write_pj: float = 0.073084
    dram_pj_per_bit: float = 15.0
    mode: Mode = "apq"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 100:
            raise ConfigError(f"BitFusionConfig.name must be a text of 1 to 100 characters, got {self.name!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("name", "mode"):
                continue
            integral = f.type in (int, "int")
            kind = int if integral else (int, float)
            if isinstance(v, bool) or not isinstance(v, kind) or not math.isfinite(v) or v <= 0:
                what = "a positive integer" if integral else "a positive finite number"
                raise ConfigError(f"BitFusionConfig.{f.name} must be {what}, got {v!r}")
            lo, hi = PHYSICAL.get(f.name, (0, 1e6))
            if not lo <= v <= hi:
                raise ConfigError(
                    f"BitFusionConfig.{f.name} = {v!r} is outside what an accelerator has ({lo:g}..{hi:g})"
                )
        if self.mode not in MODES:
            raise ConfigError(f"BitFusionConfig.mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.pmax % self.pmin:
            raise ConfigError(f"pmax ({self.pmax}) must be a multiple of pmin ({self.pmin})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BitFusionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown BitFusion config keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def with_(self, **changes: Any) -> BitFusionConfig:
        return replace(self, **changes)

    def perf_factor(self, w_bits: int, a_bits: int) -> int:
        """Speed-up over pmax x pmax: 6 bits run like 8, 4x4 is 4x, 2x2 is 16x."""
        return (self.pmax // max(a_bits, self.pmin)) * (self.pmax // max(w_bits, self.pmin))


@dataclass(frozen=True)
class ConvCost:
    """Cycles, energy (pJ) and traffic of one layer on the accelerator."""

    cycles: int
    compute_cycles: int
    stall_cycles: int
    dram_read_bits: int
    dram_write_bits: int
    core_pj: float
    sram_pj: float
    dram_pj: float

    @property
    def energy_pj(self) -> float:
        return self.core_pj + self.sram_pj + self.dram_pj

    def scaled(self, n: int) -> ConvCost:
        return ConvCost(*(getattr(self, f.name) * n for f in fields(self)))

    def __add__(self, other: ConvCost) -> ConvCost:
        return ConvCost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def _pow2_tiles(total: int, unit: int = 1) -> np.ndarray:
    """Tile sizes unit*2^i clipped to total, for i up to the first that covers it."""
    steps = max(0, math.ceil(math.log2(math.ceil(total / unit)))) if total > unit else 0
    return np.unique(np.minimum(unit * (1 << np.arange(steps + 1)), total))


def _cdiv(a: np.ndarray | int, b: np.ndarray | int) -> Any:
    return -(-a // b)


def _slot(bits: int, pmin: int) -> int:
    """Buffer bits one operand takes in ``apq-table`` mode: the next power of two (6 bits take 8)."""
    return max(pmin, 1 << (bits - 1).bit_length())


@lru_cache(maxsize=65536)
def dense_conv_cost(
    cfg: BitFusionConfig, K: int, O: int, S: int, IC: int, OC: int, w_bits: int, a_bits: int, im2col: bool
) -> ConvCost:
    """Best tiling and loop order of a dense conv (output O x O, kernel K, stride S)."""
    N, M, B = cfg.rows, cfg.cols, cfg.batch
    pf = cfg.perf_factor(w_bits, a_bits)
    pad = cfg.mode == "orig"
    np_ = N * pf

    b_t, o_t, ic_t = _pow2_tiles(B), _pow2_tiles(O), _pow2_tiles(IC)
    oc_t = _pow2_tiles(OC) if im2col else _pow2_tiles(OC, M)
    b, o, ic, oc = (x.ravel() for x in np.meshgrid(b_t, o_t, ic_t, oc_t, indexing="ij"))

    red = K * K * ic
    wgt = (_cdiv(red, np_) * np_ if pad else red) * oc * w_bits
    act = o * o * K * K * ic * b * a_bits if im2col else (K + (o - 1) * S) ** 2 * ic * b * a_bits
    oc_pad = _cdiv(oc, M) * M
    out = o * o * (oc_pad if pad else oc) * b * cfg.psum_bits
    if cfg.mode == "apq-table":  # buffer space in the array's layout, DRAM traffic in real bits
        red_pad = _cdiv(red, np_) * np_  # reduction rows of the array: N*pf
        act_room = o * o * red_pad if im2col else (K + (o - 1) * S) ** 2 * (_cdiv(ic, np_) * np_)
        held = np.stack(
            [
                act_room * b * _slot(a_bits, cfg.pmin),
                red_pad * oc_pad * _slot(w_bits, cfg.pmin),
                o * o * oc_pad * b * cfg.psum_bits,
            ]
        )
    else:
        held = np.stack([act, wgt, out])
    cap = np.array([cfg.ibuf_kib, cfg.wbuf_kib, cfg.obuf_kib]) * 8192 // 2  # act, wgt, out (bits, half)
    ok = (held <= cap[:, None]).all(axis=0)
    if not ok.any():
        raise ConfigError(f"no tiling fits the buffers for conv K={K} O={O} S={S} IC={IC} OC={OC}")
    b, o, ic, oc, red, wgt, act, out, oc_pad = (x[ok] for x in (b, o, ic, oc, red, wgt, act, out, oc_pad))
    held = held[:, ok]
    nums = np.stack([_cdiv(B, b), _cdiv(O, o), _cdiv(O, o), _cdiv(IC, ic), _cdiv(OC, oc)])  # (5, T)
    tiles = nums.prod(axis=0)

    if im2col:
        tile_compute = b * o * o * _cdiv(oc, M) * _cdiv(red, np_)
    else:
        tile_compute = b * _cdiv(oc, M) * o * o * K * K * _cdiv(ic, np_)
    compute = tiles * tile_compute  # (T,)

    # promotion of tiles into the half buffers, innermost loop first, for all 120 orders at once
    size = np.stack([act, wgt, out])[:, None, :].repeat(len(_ORDERS), axis=1)  # (3, 120, T): DRAM traffic
    room = held[:, None, :].repeat(len(_ORDERS), axis=1)  # the buffer space the same data takes
    best = size.copy()
    promote = np.ones_like(size, dtype=bool)
    for pos in range(4, -1, -1):
        loop = _ORDERS[:, pos]  # (120,)
        n = nums[loop]  # (120, T)
        dep = _DEPS[loop].T[:, :, None]  # (3, 120, 1)
        hold = promote & ~dep
        size = np.where(hold, size, size * n[None])
        room = np.where(hold, room, room * n[None])
        grown = promote & dep
        over = grown & (room > cap[:, None, None])
        best = np.where(grown & ~over, size, best)
        promote &= ~over
    act_f, wgt_f, out_f = size
    initial = best.sum(axis=0)
    final = best[2]
    w_if = cfg.dram_bits_per_cycle
    latency = _cdiv(initial, w_if) + _cdiv(final, w_if)
    dram_rd = act_f + wgt_f + out_f
    dram_wr = out_f
    middle = dram_rd + dram_wr - initial - final
    stall = np.maximum(0, _cdiv(middle, w_if) - compute[None]) + latency
    cycles = compute[None] + stall

    # SRAM accesses inside a tile: the cheapest of input/output/weight stationary (by a bit-count proxy)
    is_loop = oc_pad
    os_loop = (_cdiv(red, np_) * np_) if im2col else (_cdiv(ic, np_) * np_ * K * K)
    ws_loop = b * o * o
    pb = cfg.psum_bits
    e_is = os_loop * ws_loop * (a_bits + is_loop * (w_bits + pb))
    e_os = is_loop * ws_loop * (pb + os_loop * (a_bits + w_bits))
    e_ws = os_loop * is_loop * (w_bits + ws_loop * (a_bits + pb))
    macs_in = red * o * o * b  # K*K*ic*oh*ow*b
    use_is = e_is <= np.minimum(e_os, e_ws)
    use_os = ~use_is & (e_os <= e_ws)
    inner_act = tiles * macs_in * oc * a_bits  # identical for all three dataflows
    inner_wgt = np.where(use_is | use_os, tiles * macs_in * oc * w_bits, tiles * red * oc * w_bits)
    inner_out = np.where(use_os, tiles * oc * o * o * b * pb, tiles * macs_in * oc * pb)
    inner_act = np.where(use_is, tiles * macs_in * a_bits, inner_act)

    sram = (
        inner_wgt * cfg.wbuf_read_pj + inner_act * cfg.ibuf_read_pj + inner_out * (cfg.obuf_read_pj + cfg.obuf_write_pj)
    )[None] + (wgt_f * cfg.wbuf_write_pj + act_f * cfg.ibuf_write_pj + out_f * (cfg.obuf_read_pj + cfg.obuf_write_pj))
    core = compute[None] * cfg.core_pj_per_cycle
    dram = (dram_rd + dram_wr) * cfg.dram_pj_per_bit
    energy = core + sram + dram

    flat_c = cycles.ravel()
    cand = np.flatnonzero(flat_c == flat_c.min())
    i = cand[np.argmin(energy.ravel()[cand])]
    oi, ti = np.unravel_index(i, cycles.shape)
    return ConvCost(
        int(cycles[oi, ti]),
        int(compute[ti]),
        int(stall[oi, ti]),
        int(dram_rd[oi, ti]),
        int(dram_wr[oi, ti]),
        float(core[0, ti]),
        float(sram[oi, ti]),
        float(dram[oi, ti]),
    )


class BitFusion:
    """Prices layers on a BitFusion instance; ``layer_cost`` returns (latency ms, energy mJ)."""

    hardware = "bitfusion"

    def __init__(self, config: BitFusionConfig | None = None) -> None:
        self.config = config or BitFusionConfig()

    def conv_cost(self, layer: Layer, first: bool = False) -> ConvCost:
        """Detailed cost; ``first`` marks a network's first layer (run as im2col)."""
        cfg = self.config
        O = layer.h_out
        if layer.groups == 1:
            return dense_conv_cost(
                cfg, layer.kernel, O, layer.stride, layer.c_in, layer.c_out, layer.w_bits, layer.a_bits, first
            )
        if layer.groups != layer.c_in or layer.c_in != layer.c_out:
            raise ConfigError(f"{layer.name}: only dense and depthwise convolutions are modelled, got {layer}")
        g = min(8 * cfg.perf_factor(layer.w_bits, layer.a_bits), layer.c_in)
        one = dense_conv_cost(cfg, layer.kernel, O, layer.stride, g, g, layer.w_bits, layer.a_bits, False)
        return one.scaled(_cdiv(layer.c_in, g))

    def layer_cost(self, layer: Layer, first: bool = False) -> tuple[float, float]:
        c = self.conv_cost(layer, first)
        return c.cycles / (self.config.clock_mhz * 1e3), c.energy_pj * 1e-9

    def network_cost(self, layers: Iterable[Layer], first_is_input: bool = True) -> tuple[float, float]:
        """Sum over layers in order; the first runs as im2col when it reads the network input."""
        lat = en = 0.0
        for i, layer in enumerate(layers):
            dl, de = self.layer_cost(layer, first=first_is_input and i == 0)
            lat, en = lat + dl, en + de
        return lat, en
