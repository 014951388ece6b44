"""Search spaces and candidates: one typed, validated object per preset.

Why this module exists: once-for-all and APQ keep their space in scattered dicts and magic
indices. Here a :class:`SearchSpace` is the single source of truth. It knows its stages and
blocks, encodes candidates into APQ's one-hot vectors and back, samples them (vectorised, as
integer *gene matrices*), and lists the layers a cost model prices. Variation operators live in
:mod:`apqopt.search.operators`, APQ's spec dicts in :mod:`apqopt.interop.apq`.

Two representations are used, each for what it is good at:

* :class:`Candidate` -- the user-facing object: per stage, the active blocks with their kernel,
  middle (expanded) channels and the four bit-widths. It is built and validated by its space
  (:meth:`SearchSpace.candidate`) and serialises to JSON.
* the *gene matrix* -- an ``(N, n_genes)`` integer matrix of choice indices: one depth gene per
  stage, then six genes per block (kernel, middle, pw_w, pw_a, dw_w, dw_a). Genes of blocks beyond
  a stage's depth are dormant: they are kept (evolution can revive them) but ignored by encoding
  and pricing. Searchers work on this form because it makes batches of 100k cheap.
"""

from __future__ import annotations

import functools
import json
import math
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from apqopt.errors import ApqoptError

BLOCK_GENES: tuple[str, ...] = ("kernel", "middle", "pw_w", "pw_a", "dw_w", "dw_a")
BIT_FIELDS: tuple[str, ...] = ("pw_w", "pw_a", "dw_w", "dw_a")


class InvalidCandidateError(ApqoptError, ValueError):
    """A candidate, gene matrix or encoding that does not belong to its space."""


class SpaceFileError(ApqoptError, ValueError):
    """A space description (file or dict) with a missing, unknown or bad key."""


@dataclass(frozen=True)
class Layer:
    """One convolution as a cost model sees it (APQ's LUT key plus bit-widths)."""

    name: str
    c_in: int
    c_out: int
    h_in: int
    kernel: int
    stride: int
    padding: int
    groups: int
    w_bits: int = 8
    a_bits: int = 8

    @property
    def shape(self) -> tuple[int, int, int, int, int, int, int]:
        """APQ's key order: (C_in, C_out, H_in, k, stride, padding, groups)."""
        return (self.c_in, self.c_out, self.h_in, self.kernel, self.stride, self.padding, self.groups)

    @property
    def h_out(self) -> int:
        return (self.h_in + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def macs(self) -> int:
        return self.h_out * self.h_out * self.c_out * (self.c_in // self.groups) * self.kernel**2


@dataclass(frozen=True)
class Block:
    """Choices of one active MBConv block: kernel, middle channels, and four bit-widths."""

    kernel: int
    middle: int
    pw_w: int = 8
    pw_a: int = 8
    dw_w: int = 8
    dw_a: int = 8


@dataclass(frozen=True)
class Stage:
    """A stage: output channels, stride of its first block, allowed depths."""

    c_out: int
    stride: int
    depths: tuple[int, ...]

    @property
    def max_depth(self) -> int:
        return max(self.depths)


@dataclass(frozen=True)
class Candidate:
    """An architecture plus its quantization policy, validated against its space."""

    space: str
    stages: tuple[tuple[Block, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(tuple(s) for s in self.stages))

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(b for s in self.stages for b in s)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "stages": [[asdict(b) for b in s] for s in self.stages]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], space: SearchSpace | None = None) -> Candidate:
        """Read and validate a candidate; its space is ``space`` or the preset its ``"space"`` key names."""
        if not isinstance(data, dict) or "space" not in data or "stages" not in data:
            raise InvalidCandidateError("candidate JSON needs keys 'space' and 'stages'")
        if space is None:
            if not isinstance(data["space"], str) or (data["space"] not in PRESETS and data["space"] not in _LOADED):
                raise InvalidCandidateError(
                    f"unknown space {data['space']!r}; known: {sorted(PRESETS)}, read this run: {sorted(_LOADED)}"
                )
            space = get_space(data["space"])
        elif data["space"] != space.name:
            raise InvalidCandidateError(f"candidate is of space {data['space']!r}, expected {space.name!r}")
        if not isinstance(data["stages"], list):
            raise InvalidCandidateError("'stages' must be a list of stages, each a list of blocks")
        stages = []
        for si, stage in enumerate(data["stages"]):
            if not isinstance(stage, list):
                raise InvalidCandidateError(f"stage {si}: expected a list of blocks, got {type(stage).__name__}")
            blocks = []
            for bi, blk in enumerate(stage):
                if not isinstance(blk, dict) or not {"kernel", "middle"} <= set(blk) <= set(BLOCK_GENES):
                    got = sorted(map(str, blk)) if isinstance(blk, dict) else type(blk).__name__
                    raise InvalidCandidateError(
                        f"stage {si} block {bi}: expected keys kernel, middle and optionally the bits "
                        f"{list(BLOCK_GENES)[2:]} (default 8), got {got}"
                    )
                wrong = {k: v for k, v in blk.items() if type(v) is not int}
                if wrong:
                    raise InvalidCandidateError(f"stage {si} block {bi}: values must be integers, got {wrong}")
                blocks.append(Block(**blk))
            stages.append(tuple(blocks))
        return space.candidate(tuple(stages))

    @classmethod
    def from_json(cls, text: str, space: SearchSpace | None = None) -> Candidate:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidCandidateError(f"candidate is not valid JSON: {exc}") from exc
        except (RecursionError, ValueError) as exc:  # nested past the stack; an integer of over 4,300 digits
            raise InvalidCandidateError(f"candidate is not usable JSON: {str(exc).splitlines()[0][:120]}") from None
        return cls.from_dict(data, space)


def _steps_of_8(c_in: int, lo: float, hi: float) -> tuple[int, ...]:
    return tuple(range(int(lo * c_in), int(hi * c_in) + 1, 8))


@dataclass(frozen=True)
class SearchSpace:
    """A MobileNetV2-style space of MBConv blocks with per-block mixed precision.

    ``head`` and ``tail`` are the fixed layers a table prices as its ``head``/``tail`` constants;
    ``unpriced`` are fixed layers that exist in the network (and count in MACs) but that the table
    convention leaves out -- for apq-mbv2, APQ's table prices only the first conv as head and the
    1x1 conv as tail, so the fixed MBConv 32->16 and the classifier are ``unpriced``. They are the
    same for every candidate, so they shift costs by a constant and never change a ranking.

    ``middle_ratios`` gives the middle (expanded) channel choices as multiples of each block's input
    channels; ``middle_steps`` = (lo, hi) instead gives every multiple of 8 from lo*C_in to hi*C_in
    (APQ's pruning dimension).
    """

    name: str
    input_size: int
    image_channels: int
    num_classes: int
    stem_channels: int
    stages: tuple[Stage, ...]
    head: tuple[Layer, ...]
    tail: tuple[Layer, ...]
    unpriced: tuple[Layer, ...] = ()
    kernels: tuple[int, ...] = (3, 5, 7)
    bits: tuple[int, ...] = (4, 6, 8)
    middle_ratios: tuple[float, ...] | None = None
    middle_steps: tuple[float, float] | None = None
    description: str = field(default="", compare=False)

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything that shapes the space (its description as stored, prose left out): what
        caches of per-space work are keyed by, so two spaces that share a name never share a table."""
        import hashlib

        shape = {k: v for k, v in space_to_dict(self).items() if k != "description"}
        text = json.dumps(shape, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ structure
    @cached_property
    def n_stages(self) -> int:
        return len(self.stages)

    @cached_property
    def n_blocks(self) -> int:
        return sum(s.max_depth for s in self.stages)

    @cached_property
    def block_stage(self) -> np.ndarray:
        return np.array([si for si, s in enumerate(self.stages) for _ in range(s.max_depth)])

    @cached_property
    def block_pos(self) -> np.ndarray:
        """Index of each block inside its stage (block is active iff pos < depth)."""
        return np.array([j for s in self.stages for j in range(s.max_depth)])

    @cached_property
    def block_io(self) -> tuple[tuple[int, int, int, int], ...]:
        """Per block: (C_in, C_out, H_in, stride)."""
        out, c_in, h = [], self.stem_channels, self.head_output_size
        for s in self.stages:
            for j in range(s.max_depth):
                stride = s.stride if j == 0 else 1
                out.append((c_in, s.c_out, h, stride))
                c_in = s.c_out
                if stride > 1:
                    h = (h - 1) // stride + 1
        return tuple(out)

    @cached_property
    def head_output_size(self) -> int:
        """Spatial size entering stage 0 (the head's layers run in sequence)."""
        h = self.input_size
        for layer in (*self.head, *self.unpriced):
            if layer.h_in == h:
                h = layer.h_out
        return h

    @cached_property
    def middle_choices(self) -> tuple[tuple[int, ...], ...]:
        out = []
        for c_in, _, _, _ in self.block_io:
            if self.middle_steps is not None:
                out.append(_steps_of_8(c_in, *self.middle_steps))
            else:
                assert self.middle_ratios is not None
                out.append(tuple(round(r * c_in) for r in self.middle_ratios))
        return tuple(out)

    @cached_property
    def cardinalities(self) -> np.ndarray:
        """Number of choices of every gene (depth genes first, then six per block)."""
        card = [len(s.depths) for s in self.stages]
        nk, nb = len(self.kernels), len(self.bits)
        for b in range(self.n_blocks):
            card += [nk, len(self.middle_choices[b]), nb, nb, nb, nb]
        return np.array(card, dtype=np.int64)

    @property
    def n_genes(self) -> int:
        return int(self.cardinalities.size)

    def gene_names(self) -> list[str]:
        names = [f"depth_{s}" for s in range(self.n_stages)]
        for b in range(self.n_blocks):
            names += [f"b{b}_{g}" for g in BLOCK_GENES]
        return names

    def gene_values(self, gene: int) -> tuple[int, ...]:
        """The values behind the choice indices of one gene."""
        if gene < self.n_stages:
            return self.stages[gene].depths
        b, g = divmod(gene - self.n_stages, len(BLOCK_GENES))
        if g == 0:
            return self.kernels
        if g == 1:
            return self.middle_choices[b]
        return self.bits

    def block_gene(self, block: int, name: str) -> int:
        """Column of a block's gene in the gene matrix."""
        return self.n_stages + block * len(BLOCK_GENES) + BLOCK_GENES.index(name)

    def size(self) -> float:
        """Number of distinct candidates (a float: it overflows int64)."""
        total = 1.0
        per_block = [
            len(self.kernels) * len(self.middle_choices[b]) * len(self.bits) ** 4 for b in range(self.n_blocks)
        ]
        start = 0
        for s in self.stages:
            total *= sum(float(np.prod(per_block[start : start + d])) for d in s.depths)
            start += s.max_depth
        return total

    # ------------------------------------------------------------------ encoding layout
    @cached_property
    def _offsets(self) -> dict[str, np.ndarray]:
        nb, nk, nbit = self.n_blocks, len(self.kernels), len(self.bits)
        kernel = np.arange(nb) * nk
        mid_sizes = np.array([len(m) for m in self.middle_choices])
        middle = nb * nk + np.concatenate([[0], np.cumsum(mid_sizes)[:-1]])
        arch = int(nb * nk + mid_sizes.sum())
        offs = {"kernel": kernel, "middle": middle}
        for f, name in enumerate(BIT_FIELDS):
            offs[name] = arch + f * nb * nbit + np.arange(nb) * nbit
        return offs

    @property
    def arch_width(self) -> int:
        """Width of the architecture part of the encoding (what the fp predictor reads)."""
        return int(self.n_blocks * len(self.kernels) + sum(len(m) for m in self.middle_choices))

    @property
    def bits_width(self) -> int:
        return self.n_blocks * len(BIT_FIELDS) * len(self.bits)

    @property
    def encoding_width(self) -> int:
        return self.arch_width + self.bits_width

    # ------------------------------------------------------------------ validation
    def allowed_error(self, what: str, where: str, value: Any, allowed: Sequence[Any]) -> InvalidCandidateError:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}... ({len(repr(value)):,} characters)"
        return InvalidCandidateError(
            f"space '{self.name}': {where}: {what}={shown} is not allowed; allowed values: {list(allowed)}"
        )

    def candidate(self, stages: Iterable[Iterable[Block]]) -> Candidate:
        """A validated candidate of this space (the way candidates are built)."""
        cand = Candidate(self.name, tuple(tuple(st) for st in stages))
        self.validate(cand)
        return cand

    def validate(self, cand: Candidate) -> None:
        """Raise :class:`InvalidCandidateError` naming the field, block and allowed values."""
        if cand.space != self.name:
            raise InvalidCandidateError(f"candidate belongs to space '{cand.space}', not '{self.name}'")
        if len(cand.stages) != self.n_stages:
            raise InvalidCandidateError(f"space '{self.name}': expected {self.n_stages} stages, got {len(cand.stages)}")
        b0 = 0
        for si, (stage, blocks) in enumerate(zip(self.stages, cand.stages)):
            if len(blocks) not in stage.depths:
                raise self.allowed_error("depth", f"stage {si}", len(blocks), stage.depths)
            for j, blk in enumerate(blocks):
                b = b0 + j
                where = f"stage {si} block {b}"
                if not isinstance(blk, Block):
                    raise InvalidCandidateError(f"space '{self.name}': {where}: expected a Block, got {blk!r}")
                if blk.kernel not in self.kernels:
                    raise self.allowed_error("kernel", where, blk.kernel, self.kernels)
                if blk.middle not in self.middle_choices[b]:
                    raise self.allowed_error("middle", where, blk.middle, self.middle_choices[b])
                for f in BIT_FIELDS:
                    if getattr(blk, f) not in self.bits:
                        raise self.allowed_error(f, where, getattr(blk, f), self.bits)
            b0 += stage.max_depth

    def validate_matrix(self, genes: np.ndarray) -> np.ndarray:
        """Check a gene matrix's shape and ranges; returns it as int64 (N, n_genes)."""
        arr = np.asarray(genes)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_genes:
            raise InvalidCandidateError(
                f"space '{self.name}': gene matrix must be (N, {self.n_genes}), got shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.integer) and (
            not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr))
        ):
            raise InvalidCandidateError(f"space '{self.name}': gene matrix must hold whole numbers")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or (arr >= self.cardinalities).any()):
            bad = (arr < 0) | (arr >= self.cardinalities)
            row, col = map(int, np.argwhere(bad)[0])
            raise InvalidCandidateError(
                f"space '{self.name}': row {row}, gene '{self.gene_names()[col]}': index {arr[row, col]} "
                f"out of range 0..{self.cardinalities[col] - 1} (values {list(self.gene_values(col))})"
            )
        return arr

    # ------------------------------------------------------------------ genes <-> candidates
    def active(self, genes: np.ndarray) -> np.ndarray:
        """(N, n_blocks) bool: which blocks the depth genes switch on."""
        depth_vals = self.depth_values(genes)
        return self.block_pos[None, :] < depth_vals[:, self.block_stage]

    @cached_property
    def _depth_table(self) -> np.ndarray:
        table = np.zeros((self.n_stages, max(len(s.depths) for s in self.stages)), dtype=np.int64)
        for si, s in enumerate(self.stages):
            table[si, : len(s.depths)] = s.depths
        return table

    def depth_values(self, genes: np.ndarray) -> np.ndarray:
        return self._depth_table[np.arange(self.n_stages)[None, :], genes[:, : self.n_stages]]

    def block_genes(self, genes: np.ndarray) -> np.ndarray:
        """(N, n_blocks, 6) view of the per-block genes."""
        return genes[:, self.n_stages :].reshape(genes.shape[0], self.n_blocks, len(BLOCK_GENES))

    def to_candidates(self, genes: np.ndarray) -> list[Candidate]:
        genes = self.validate_matrix(genes)
        act = self.active(genes)
        bg = self.block_genes(genes)
        out = []
        for n in range(genes.shape[0]):
            stages, b0 = [], 0
            for s in self.stages:
                blocks = []
                for b in range(b0, b0 + s.max_depth):
                    if act[n, b]:
                        g = bg[n, b]
                        bits = [self.bits[i] for i in g[2:]]
                        blocks.append(Block(self.kernels[g[0]], self.middle_choices[b][g[1]], *bits))
                stages.append(tuple(blocks))
                b0 += s.max_depth
            out.append(Candidate(self.name, tuple(stages)))
        return out

    def from_candidates(self, cands: Iterable[Candidate]) -> np.ndarray:
        """Gene matrix of candidates; genes of inactive blocks are set to choice 0."""
        rows = []
        for cand in cands:
            self.validate(cand)
            row = [s.depths.index(len(blocks)) for s, blocks in zip(self.stages, cand.stages)]
            b0 = 0
            for s, blocks in zip(self.stages, cand.stages):
                for j in range(s.max_depth):
                    if j < len(blocks):
                        blk = blocks[j]
                        row += [self.kernels.index(blk.kernel), self.middle_choices[b0 + j].index(blk.middle)]
                        row += [self.bits.index(getattr(blk, f)) for f in BIT_FIELDS]
                    else:
                        row += [0] * len(BLOCK_GENES)
                b0 += s.max_depth
            rows.append(row)
        return np.array(rows, dtype=np.int64).reshape(-1, self.n_genes)

    def canonical(self, genes: np.ndarray) -> np.ndarray:
        """Zero the dormant genes, so equal candidates have equal rows."""
        genes = np.array(genes, dtype=np.int64)
        bg = self.block_genes(genes)
        bg[~self.active(genes)] = 0
        return genes

    # ------------------------------------------------------------------ one-hot encoding
    def encode(self, genes: np.ndarray, bits: bool = True) -> np.ndarray:
        """APQ's one-hot encoding, float32 (N, width); inactive blocks are all zeros.

        Layout: kernel one-hots of all blocks, middle-channel one-hots of all blocks (together the
        architecture part), then bit one-hots per field in the order pw_w, pw_a, dw_w, dw_a.
        ``bits=False`` returns only the architecture part (the full-precision predictor's input).
        """
        genes = self.validate_matrix(genes)
        n = genes.shape[0]
        width = self.encoding_width if bits else self.arch_width
        out = np.zeros((n, width), dtype=np.float32)
        act = self.active(genes)
        bg = self.block_genes(genes)
        rows, blocks = np.nonzero(act)
        names = ["kernel", "middle", *BIT_FIELDS] if bits else ["kernel", "middle"]
        for name in names:
            g = BLOCK_GENES.index(name)
            out[rows, self._offsets[name][blocks] + bg[rows, blocks, g]] = 1.0
        return out

    def encode_hot(self, genes: np.ndarray, bits: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where :meth:`encode`'s ones are, row by row, without the zeros: (architecture columns, bit columns
        counted from the start of the bit part, number of active blocks per row). Each active block gives
        two architecture columns and four bit columns, rows in order. Why: a predictor's first layer on a
        one-hot row is the sum of the weight columns of its ones (a few dozen of hundreds), so reading
        them directly halves the cost of predicting a batch."""
        genes = self.validate_matrix(genes)
        act = self.active(genes)
        bg = self.block_genes(genes)
        rows, blocks = np.nonzero(act)

        def cols(names: tuple[str, ...], base: int) -> np.ndarray:
            per = [self._offsets[n][blocks] + bg[rows, blocks, BLOCK_GENES.index(n)] - base for n in names]
            return np.stack(per, axis=1).ravel() if per else np.zeros(0, dtype=np.int64)

        arch = cols(("kernel", "middle"), 0)
        bit = cols(tuple(BIT_FIELDS), self.arch_width) if bits else np.zeros(0, dtype=np.int64)
        return arch, bit, act.sum(axis=1)

    def decode(self, encoding: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`encode` (full width); dormant genes come back as 0."""
        enc = np.asarray(encoding)
        if enc.ndim == 1:
            enc = enc[None, :]
        if enc.shape[1] != self.encoding_width:
            raise InvalidCandidateError(
                f"space '{self.name}': encoding must be {self.encoding_width} wide, got {enc.shape[1]}"
            )
        if not np.all((enc == 0) | (enc == 1)):
            raise InvalidCandidateError(f"space '{self.name}': encoding must be one-hot (0/1 values)")
        n = enc.shape[0]
        genes = np.zeros((n, self.n_genes), dtype=np.int64)
        present = np.zeros((n, self.n_blocks), dtype=bool)
        for name in ("kernel", "middle", *BIT_FIELDS):
            for b in range(self.n_blocks):
                size = self.cardinalities[self.block_gene(b, name)]
                seg = enc[:, self._offsets[name][b] : self._offsets[name][b] + size]
                hot = seg.sum(axis=1)
                if name == "kernel":
                    present[:, b] = hot == 1
                if np.any(hot > 1) or np.any((hot == 1) != present[:, b]):
                    row = int(np.nonzero((hot > 1) | ((hot == 1) != present[:, b]))[0][0])
                    raise InvalidCandidateError(
                        f"space '{self.name}': row {row}, block {b}: '{name}' one-hot is malformed"
                    )
                genes[:, self.block_gene(b, name)] = seg.argmax(axis=1)
        b0 = 0
        for si, s in enumerate(self.stages):
            depth = present[:, b0 : b0 + s.max_depth].sum(axis=1)
            prefix = present[:, b0 : b0 + s.max_depth].cumsum(axis=1) == np.arange(1, s.max_depth + 1)
            ok_prefix = (prefix | ~present[:, b0 : b0 + s.max_depth]).all(axis=1)
            ok = np.isin(depth, s.depths) & ok_prefix
            if not ok.all():
                row = int(np.nonzero(~ok)[0][0])
                raise InvalidCandidateError(
                    f"space '{self.name}': row {row}, stage {si}: active blocks do not form an allowed "
                    f"depth {list(s.depths)}"
                )
            genes[:, si] = np.searchsorted(np.array(s.depths), depth)
            b0 += s.max_depth
        return genes

    # ------------------------------------------------------------------ sampling and variation
    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Uniformly sample n gene rows (each gene independently uniform)."""
        rng = np.random.default_rng(rng)
        return rng.integers(0, self.cardinalities, size=(n, self.n_genes), dtype=np.int64)

    # ------------------------------------------------------------------ layers
    def summary(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """A handful of readable features per row (depth, mean kernel and width, bits overall and per stage,
        share of layers at the lowest weight bits), averaged over active blocks only: what importance and
        parallel-coordinate views show instead of 125 raw genes, most of them dormant in any one network."""
        genes = np.asarray(genes)
        act = self.active(genes)
        bg = self.block_genes(genes)
        widths = np.zeros((self.n_blocks, max(len(m) for m in self.middle_choices)))
        for b, choices in enumerate(self.middle_choices):
            widths[b, : len(choices)] = np.asarray(choices) / max(choices)
        bits = np.asarray(self.bits, dtype=np.float64)

        def mean(values: np.ndarray, mask: np.ndarray = act) -> np.ndarray:
            return np.where(mask, values, 0).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)

        w = bits[bg[..., [BLOCK_GENES.index("pw_w"), BLOCK_GENES.index("dw_w")]]].mean(axis=2)
        a = bits[bg[..., [BLOCK_GENES.index("pw_a"), BLOCK_GENES.index("dw_a")]]].mean(axis=2)
        low = (bg[..., [BLOCK_GENES.index("pw_w"), BLOCK_GENES.index("dw_w")]] == 0).mean(axis=2)
        out = {
            "depth": act.sum(axis=1).astype(np.float64),
            "kernel": mean(np.asarray(self.kernels, dtype=np.float64)[bg[..., 0]]),
            "width": mean(widths[np.arange(self.n_blocks)[None, :], bg[..., 1]]),
            "w_bits": mean(w),
            "a_bits": mean(a),
            f"share_w{int(bits[0])}": mean(low),
        }
        for si in range(self.n_stages):
            in_stage = act & (self.block_stage == si)[None, :]
            out[f"s{si}_w_bits"] = np.where(in_stage.any(axis=1), mean(w, in_stage), np.nan)
        return out

    def block_layers(self, b: int, kernel: int, middle: int, pw: tuple[int, int], dw: tuple[int, int]) -> list[Layer]:
        """The three convolutions of block b: expand, depthwise, project."""
        c_in, c_out, h, stride = self.block_io[b]
        h_dw_out = (h - 1) // stride + 1
        return [
            Layer(f"b{b}_expand", c_in, middle, h, 1, 1, 0, 1, *pw),
            Layer(f"b{b}_dw", middle, middle, h, kernel, stride, kernel // 2, middle, *dw),
            Layer(f"b{b}_project", middle, c_out, h_dw_out, 1, 1, 0, 1, *pw),
        ]

    def active_blocks(self, cand: Candidate) -> Iterator[tuple[int, Block]]:
        """(block index in the space, its choices) for every active block of a candidate, in order."""
        b0 = 0
        for s, blocks in zip(self.stages, cand.stages):
            for j, blk in enumerate(blocks):
                yield b0 + j, blk
            b0 += s.max_depth

    def layers(self, cand: Candidate) -> list[Layer]:
        """Searchable layers of a candidate (head and tail are fixed; see ``head``/``tail``)."""
        self.validate(cand)
        out: list[Layer] = []
        for b, blk in self.active_blocks(cand):
            out += self.block_layers(b, blk.kernel, blk.middle, (blk.pw_w, blk.pw_a), (blk.dw_w, blk.dw_a))
        return out

    def macs(self, cand: Candidate) -> int:
        """Multiply-accumulates per image, head and tail included."""
        return sum(layer.macs for layer in (*self.head, *self.unpriced, *self.layers(cand), *self.tail))

    def layer_shapes(self) -> list[tuple[int, int, int, int, int, int, int]]:
        """Every distinct searchable layer shape this space can produce (for building tables)."""
        shapes = set()
        for b in range(self.n_blocks):
            for k in self.kernels:
                for m in self.middle_choices[b]:
                    shapes.update(layer.shape for layer in self.block_layers(b, k, m, (8, 8), (8, 8)))
        return sorted(shapes)

    def uniform(
        self, depths: Sequence[int] | None = None, kernel: int | None = None, middle: int = -1, bits: int | None = None
    ) -> Candidate:
        """A candidate with the same choices everywhere: ``middle`` indexes each block's middle choices
        (-1 = widest); defaults give the largest network at the widest bit-width."""
        depths = depths or [s.max_depth for s in self.stages]
        kernel = kernel or max(self.kernels)
        bits = bits or max(self.bits)
        stages, b0 = [], 0
        for s, d in zip(self.stages, depths):
            stages.append(tuple(Block(kernel, self.middle_choices[b0 + j][middle], *[bits] * 4) for j in range(d)))
            b0 += s.max_depth
        return self.candidate(stages)

    def smallest(self, bits: int | None = None) -> Candidate:
        return self.uniform([min(s.depths) for s in self.stages], min(self.kernels), 0, bits or min(self.bits))

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (for `apqopt space show`)."""
        return {
            "name": self.name,
            "description": self.description,
            "input_size": self.input_size,
            "stages": [asdict(s) for s in self.stages],
            "blocks": self.n_blocks,
            "kernels": list(self.kernels),
            "bits": list(self.bits),
            "middle_choices_per_block": [len(m) for m in self.middle_choices],
            "genes": self.n_genes,
            "encoding_width": {"arch": self.arch_width, "bits": self.bits_width, "total": self.encoding_width},
            "layer_shapes": len(self.layer_shapes()),
            "size": f"{self.size():.3e}",
        }


# ---------------------------------------------------------------------- description files
# A space is data, so users describe theirs in a small TOML (or JSON) file, and the presets are such files
# (apqopt/assets/spaces/). Every key is checked where it is read: a bad file gets one error naming the file
# and the key (``my.toml: stages[2].stride: must be a positive integer``).
#
# Layout (TOML)::
#
#     name = "my-space"             # what candidates and studies call it
#     description = "..."           # optional
#     input_size = 32               # square input resolution
#     image_channels = 3
#     num_classes = 10
#     stem_channels = 16            # channels entering the first stage
#     kernels = [3, 5, 7]           # depthwise kernel choices
#     bits = [4, 6, 8]              # bit-width choices of every operator (pw/dw weights and activations)
#     middle_ratios = [3, 4, 6]     # expanded channels as multiples of C_in ...
#     # middle_steps = [4.0, 6.0]   # ... or every multiple of 8 from 4x to 6x C_in (APQ's pruning)
#
#     [[stages]]                    # one table per stage, in order
#     c_out = 16
#     stride = 1
#     depths = [2, 3, 4]
#
#     [[head]]                      # fixed layers priced as the table's head constant (also [[tail]],
#     name = "head_conv"            # and [[unpriced]] for fixed layers the table convention leaves out)
#     c_in = 3
#     c_out = 16
#     h_in = 32
#     kernel = 3
#     stride = 2
#     padding = 1
#     groups = 1

_TOP = {
    "name": str,
    "description": str,
    "input_size": int,
    "image_channels": int,
    "num_classes": int,
    "stem_channels": int,
    "kernels": list,
    "bits": list,
    "middle_ratios": list,
    "middle_steps": list,
    "stages": list,
    "head": list,
    "tail": list,
    "unpriced": list,
}
_OPTIONAL = {"description", "middle_ratios", "middle_steps", "unpriced"}
_LAYER = ("name", "c_in", "c_out", "h_in", "kernel", "stride", "padding", "groups")
_STAGE = ("c_out", "stride", "depths")


def is_space_file(text: str) -> bool:
    """Whether a ``--space`` value names a file rather than a preset."""
    return text.endswith((".toml", ".json")) or "/" in text or "\\" in text


def read_space(path: str | Path) -> SearchSpace:
    """The space a TOML or JSON file describes; errors name the file and the key."""
    from apqopt.errors import ConfigError
    from apqopt.fileio import read_bytes

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise SpaceFileError(f"{path}: space file not found")
    try:
        raw = read_bytes(path, "a space file", limit=1 << 20)
    except ConfigError as exc:
        raise SpaceFileError(str(exc)) from None
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise SpaceFileError(f"{path}: not a TOML/JSON space file ({str(e).splitlines()[0]})") from None
    except (RecursionError, ValueError) as e:  # nesting deeper than Python's stack; a 4,300-digit number
        raise SpaceFileError(f"{path}: not a space file ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise SpaceFileError(f"{path}: a space file holds one table of keys")
    return space_from_dict(data, str(path))


MAX_SIZE = 65_536  # the largest count a space file may give (classes, channels, pixels, depths, ...)


def space_from_dict(data: dict[str, Any], where: str = "space") -> SearchSpace:
    """Check every key of a space description and build the space."""

    def fail(key: str, msg: str) -> SpaceFileError:
        return SpaceFileError(f"{where}: {key}: {msg}")

    unknown = sorted(set(data) - set(_TOP))
    if unknown:
        raise fail(unknown[0], f"unknown key; known: {sorted(_TOP)}")
    for key in _TOP:
        if key not in data and key not in _OPTIONAL:
            raise fail(key, "missing")
        if key in data and not isinstance(data[key], _TOP[key]):
            raise fail(key, f"must be a {_TOP[key].__name__}, got {data[key]!r}")

    def pos_int(key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise fail(key, f"must be a positive integer, got {v!r}")
        if v > MAX_SIZE:  # channels, classes, pixels: 10**10 classes asked a supernet for 10 TB
            raise fail(key, f"must be at most {MAX_SIZE:,}, got {v:,}")
        return v

    def int_list(key: str, v: Any) -> tuple[int, ...]:
        if not isinstance(v, list) or not v:
            raise fail(key, f"must be a non-empty list of positive integers, got {v!r}")
        out = tuple(pos_int(f"{key}[{i}]", x) for i, x in enumerate(v))
        if list(out) != sorted(set(out)):
            raise fail(key, f"must be increasing without repeats (cheap to dear), got {list(out)}")
        return out

    def layers(key: str) -> tuple[Layer, ...]:
        out = []
        for i, t in enumerate(data.get(key, [])):
            at = f"{key}[{i}]"
            if not isinstance(t, dict):
                raise fail(at, "must be a table of layer keys")
            extra = sorted(set(t) - set(_LAYER))
            if extra or "name" not in t or not isinstance(t["name"], str):
                raise fail(f"{at}.{extra[0] if extra else 'name'}", f"layer keys are {list(_LAYER)}")
            for k in _LAYER[1:]:
                if k not in t:
                    raise fail(f"{at}.{k}", "missing")
                if k == "padding":
                    if isinstance(t[k], bool) or not isinstance(t[k], int) or t[k] < 0:
                        raise fail(f"{at}.{k}", f"must be a whole number >= 0, got {t[k]!r}")
                else:
                    pos_int(f"{at}.{k}", t[k])
            out.append(Layer(*(t[k] for k in _LAYER)))
        return tuple(out)

    stages = []
    if not data["stages"]:
        raise fail("stages", "at least one stage is needed")
    for i, t in enumerate(data["stages"]):
        at = f"stages[{i}]"
        if not isinstance(t, dict) or sorted(t) != sorted(_STAGE):
            raise fail(at, f"a stage has exactly the keys {list(_STAGE)}")
        stages.append(
            Stage(
                pos_int(f"{at}.c_out", t["c_out"]),
                pos_int(f"{at}.stride", t["stride"]),
                int_list(f"{at}.depths", t["depths"]),
            )
        )
    for x in int_list("kernels", data["kernels"]):
        if x % 2 == 0:
            raise fail("kernels", f"kernels must be odd (same padding), got {x}")
    bits = int_list("bits", data["bits"])
    if any(b > 32 for b in bits):
        raise fail("bits", f"bit-widths go up to 32, got {list(bits)}")
    ratios, steps = data.get("middle_ratios"), data.get("middle_steps")
    if (ratios is None) == (steps is None):
        raise fail("middle_ratios", "give exactly one of middle_ratios and middle_steps")
    key, vals = ("middle_ratios", ratios) if ratios is not None else ("middle_steps", steps)
    for j, x in enumerate(vals):
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or x <= 0:
            raise fail(f"{key}[{j}]", f"must be a positive number, got {x!r}")
    if steps is not None and (len(steps) != 2 or steps[0] > steps[1]):
        raise fail("middle_steps", f"must be [low, high] multiples of C_in, got {steps}")
    if ratios is not None and list(ratios) != sorted(set(ratios)):
        raise fail("middle_ratios", f"must be increasing without repeats, got {ratios}")
    head, tail = layers("head"), layers("tail")
    if not head or not tail:
        raise fail("head" if not head else "tail", "at least one layer is needed (the table's constant)")
    space = SearchSpace(
        name=data["name"],
        input_size=pos_int("input_size", data["input_size"]),
        image_channels=pos_int("image_channels", data["image_channels"]),
        num_classes=pos_int("num_classes", data["num_classes"]),
        stem_channels=pos_int("stem_channels", data["stem_channels"]),
        stages=tuple(stages),
        head=head,
        tail=tail,
        unpriced=layers("unpriced"),
        kernels=tuple(data["kernels"]),
        bits=bits,
        middle_ratios=tuple(float(x) for x in ratios) if ratios is not None else None,
        middle_steps=(float(steps[0]), float(steps[1])) if steps is not None else None,
        description=data.get("description", ""),
    )
    if not space.name or not all(c.isalnum() or c in "-_." for c in space.name):
        raise fail("name", f"letters, digits, '-', '_' and '.' only, got {space.name!r}")
    if head[0].c_in != space.image_channels or head[0].h_in != space.input_size:
        raise fail("head[0]", "the first head layer must read the image (c_in = image_channels, h_in = input_size)")
    if space.head_output_size < 1:
        raise fail("head", "the head shrinks the image to nothing")
    for b, m in enumerate(space.middle_choices):
        if not m or min(m) < 1:
            raise fail(key, f"block {b} gets no middle channel choice (C_in {space.block_io[b][0]})")
    if tail[0].c_in != stages[-1].c_out:
        raise fail("tail[0].c_in", f"must equal the last stage's c_out ({stages[-1].c_out}), got {tail[0].c_in}")
    return space


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    """The description a space was built from (what :func:`space_from_dict` reads back)."""
    out: dict[str, Any] = {
        "name": space.name,
        "description": space.description,
        "input_size": space.input_size,
        "image_channels": space.image_channels,
        "num_classes": space.num_classes,
        "stem_channels": space.stem_channels,
        "kernels": list(space.kernels),
        "bits": list(space.bits),
    }
    if space.middle_ratios is not None:
        out["middle_ratios"] = list(space.middle_ratios)
    else:
        out["middle_steps"] = list(space.middle_steps or ())
    out["stages"] = [{"c_out": s.c_out, "stride": s.stride, "depths": list(s.depths)} for s in space.stages]
    for key in ("head", "tail", "unpriced"):
        rows = getattr(space, key)
        if rows or key != "unpriced":
            out[key] = [{k: getattr(x, k) for k in _LAYER} for x in rows]
    return out


def space_to_toml(space: SearchSpace) -> str:
    """The space as a TOML file (the layout above), e.g. to start one's own from a preset."""

    def val(v: Any) -> str:
        return json.dumps(v)  # strings, numbers and flat lists read the same in TOML

    d = space_to_dict(space)
    lines = [f"{k} = {val(v)}" for k, v in d.items() if not (isinstance(v, list) and v and isinstance(v[0], dict))]
    for key in ("stages", "head", "tail", "unpriced"):
        for t in d.get(key, []):
            lines += ["", f"[[{key}]]", *(f"{k} = {val(v)}" for k, v in t.items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- presets and files
# The preset spaces are files shipped in the package (apqopt/assets/spaces/NAME.toml), read by the same
# reader as a user's own (the description files above); listed here, not registered.
PRESETS: tuple[str, ...] = ("apq-mbv2", "fmnist")
_LOADED: dict[str, SearchSpace] = {}  # spaces read from users' files (or built in Python) this process


@functools.cache
def _preset(name: str) -> SearchSpace:
    from importlib.resources import files

    text = (files("apqopt") / "assets" / "spaces" / f"{name}.toml").read_text(encoding="utf-8")
    return space_from_dict(tomllib.loads(text), f"{name}.toml")


def _register(space: SearchSpace, where: str) -> SearchSpace:
    """Make a non-preset space findable by name (candidates and studies name their space)."""
    known = _preset(space.name) if space.name in PRESETS else _LOADED.get(space.name)
    if known is not None and known != space:
        raise InvalidCandidateError(
            f"{where}: space name {space.name!r} is already taken by a different space; rename it"
        )
    if known is None:
        _LOADED[space.name] = space
    return known or space


def get_space(name: str | SearchSpace) -> SearchSpace:
    """A space by preset name, by the name of one already read, or from a TOML/JSON file (see
    the description files below); a :class:`SearchSpace` passes through (and becomes findable by name)."""
    if isinstance(name, SearchSpace):  # one space per name: a different one under a taken name is refused
        return _register(name, "space")
    if name in PRESETS:
        return _preset(name)
    if name in _LOADED:
        return _LOADED[name]
    if is_space_file(name):
        return _register(read_space(name), name)
    raise InvalidCandidateError(f"unknown space {name!r}; presets: {list(PRESETS)} (or a .toml/.json space file)")


def carried(space: SearchSpace) -> dict[str, Any]:
    """What a file or study must carry so that any process rebuilds its space without the space file:
    nothing for a preset (its name), else ``{"space_def": description}``."""
    return {} if space.name in PRESETS else {"space_def": space_to_dict(space)}


def adopt(holder: dict[str, Any], where: str) -> None:
    """Make the space a file or study carries (see :func:`carried`) findable by its name."""
    if holder.get("space_def"):
        get_space(space_from_dict(dict(holder["space_def"]), where))


def space_names() -> list[str]:
    """The preset spaces (shipped with tables, predictors and, for fmnist, a supernet)."""
    return sorted(PRESETS)
