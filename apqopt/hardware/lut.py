"""Latency/energy lookup tables: one object, two file formats, vectorised pricing.

Why: searchers price hundreds of thousands of candidates, so a candidate's cost must be a gathered
sum, never a Python loop over layers. A :class:`LUT` maps a layer shape x (W bits, A bits) to
(latency ms, energy mJ) and adds fixed ``head``/``tail`` constants; :meth:`LUT.price` compiles, once
per space, a dense per-block table and then prices a gene matrix with two gathers and a sum.

Formats:

* apqopt CSV (``lut/*.csv``): ``#``-prefixed header lines naming the format version, hardware,
  its configuration (JSON), units and the command that made the table; then one row per entry.
* APQ's JSON (``lut/BitFusion_new.b1.dict`` in APQ's repository):
  ``"(C_in, C_out, H_in, k, stride, padding, groups)-W{w}A{a}" -> {"latency": ms, "energy": mJ}``
  plus ``"head"`` and ``"tail"``.

A missing entry is never a silent zero: pricing either raises :class:`MissingEntryError` naming the
layer and bits, or (``on_missing="infeasible"``) returns ``inf`` cost for that candidate.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from apqopt.errors import ApqoptError
from apqopt.shipped import lut_path as shipped_lut_path
from apqopt.space import BIT_FIELDS, Candidate, Layer, SearchSpace, get_space

Shape = tuple[int, int, int, int, int, int, int]
Key = tuple[int, int, int, int, int, int, int, int, int]  # shape + (w_bits, a_bits)
# The one units table: the costs a table holds, in column order, and their units (and trial attr names).
COSTS = ("latency", "energy")
UNITS = {"latency": "ms", "energy": "mJ"}
CSV_MAGIC = "# apqopt-lut v1"
CSV_END = "# end:"  # last line: "# end: N rows" (N = head + tail + layer rows)
CSV_COLUMNS = [
    "role",
    "c_in",
    "c_out",
    "h_in",
    "kernel",
    "stride",
    "padding",
    "groups",
    "w_bits",
    "a_bits",
    "latency_ms",
    "energy_mJ",
]
_APQ_KEY = re.compile(r"^\((\d+), ?(\d+), ?(\d+), ?(\d+), ?(\d+), ?(\d+), ?(\d+)\)-W(\d+)A(\d+)$")


class LUTError(ApqoptError, ValueError):
    """A lookup table that cannot be read or used."""


class LUTFormatError(LUTError):
    """A table file with a bad header, row or value; the message names file and line."""


class MissingEntryError(LUTError, KeyError):
    """A layer x bits the table does not cover."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass
class Cost:
    """A candidate's cost with its per-layer breakdown (for inspection, not for search loops)."""

    latency: float
    energy: float
    layers: list[tuple[Layer, float, float]]
    head: tuple[float, float]
    tail: tuple[float, float]


@dataclass
class _Compiled:
    """Per-block dense tables of one space, flattened: block b's table is indexed by its six genes
    (kernel, middle, pw_w, pw_a, dw_w, dw_a) and holds expand + depthwise + project cost. The last
    slot is a zero used by inactive blocks; NaN marks a missing entry."""

    latency: np.ndarray  # (total + 1,)
    energy: np.ndarray
    base: np.ndarray  # (n_blocks,) offset of each block's table
    strides: np.ndarray  # (n_blocks, 6) C-order strides of each block's table
    parts: list[tuple[np.ndarray, np.ndarray]]  # per block: the two sums each table adds (see block_parts)


@dataclass
class LUT:
    """Per-layer latency (ms) and energy (mJ) keyed by layer shape and bit pair."""

    hardware: str
    entries: dict[Key, tuple[float, float]] = field(default_factory=dict)
    head: tuple[float, float] = (0.0, 0.0)
    tail: tuple[float, float] = (0.0, 0.0)
    config: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    # per instance: init=False, so dataclasses.replace never carries a table's prices into a copy
    _compiled: dict[str, _Compiled] = field(default_factory=dict, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, layer: Layer) -> tuple[float, float]:
        key = (*layer.shape, layer.w_bits, layer.a_bits)
        try:
            return self.entries[key]
        except KeyError:
            raise MissingEntryError(
                f"LUT '{self.hardware}' has no entry for layer {layer.name} "
                f"{apq_key(layer.shape, layer.w_bits, layer.a_bits)}"
            ) from None

    def shapes(self) -> list[Shape]:
        return sorted({k[:7] for k in self.entries})

    def bit_pairs(self) -> list[tuple[int, int]]:
        return sorted({k[7:] for k in self.entries})

    def missing(self, space: SearchSpace | str) -> list[Key]:
        """Every layer x bit pair the space can produce that this table lacks (gap report)."""
        space = get_space(space)
        gaps = []
        for b in range(space.n_blocks):
            for k in space.kernels:
                for m in space.middle_choices[b]:
                    for wb in space.bits:
                        for ab in space.bits:
                            for layer in space.block_layers(b, k, m, (wb, ab), (wb, ab)):
                                key = (*layer.shape, wb, ab)
                                if key not in self.entries:
                                    gaps.append(key)
        return sorted(set(gaps))

    def covers(self, space: SearchSpace | str) -> bool:
        """Whether the table has every layer x bits the space can produce. Read off the compiled pricing
        arrays (NaN marks a gap; cached per space), so checking costs nothing beyond pricing itself."""
        comp = self._compile(get_space(space))
        return not (np.isnan(comp.latency).any() or np.isnan(comp.energy).any())

    # ------------------------------------------------------------------ pricing
    def _compile(self, space: SearchSpace) -> _Compiled:
        if space.fingerprint in self._compiled:  # keyed by content: a name can be reused for another space
            return self._compiled[space.fingerprint]
        nbits, nk = len(space.bits), len(space.kernels)
        flat_parts, parts, base, strides, off = [], [], [], [], 0
        nan = (math.nan, math.nan)
        for b in range(space.n_blocks):
            mids = space.middle_choices[b]
            pw = np.full((len(mids), nbits, nbits, 2), np.nan)
            dw = np.full((nk, len(mids), nbits, nbits, 2), np.nan)
            for mi, m in enumerate(mids):
                for wi, wb in enumerate(space.bits):
                    for ai, ab in enumerate(space.bits):
                        for ki, k in enumerate(space.kernels):
                            exp, dwl, proj = space.block_layers(b, k, m, (wb, ab), (wb, ab))
                            dw[ki, mi, wi, ai] = self.entries.get((*dwl.shape, wb, ab), nan)
                        e = self.entries.get((*exp.shape, wb, ab), nan)
                        p = self.entries.get((*proj.shape, wb, ab), nan)
                        pw[mi, wi, ai] = (e[0] + p[0], e[1] + p[1])
            table = (
                pw[None, :, :, :, None, None, :] + dw[:, :, None, None, :, :, :]
            )  # (k, mid, pw_w, pw_a, dw_w, dw_a, 2)
            flat_parts.append(table.reshape(-1, 2))
            parts.append((pw, dw))
            base.append(off)
            strides.append(np.array(table.strides[:6]) // table.strides[5])
            off += table.size // 2
        flat = np.concatenate([*flat_parts, np.zeros((1, 2))])
        comp = _Compiled(flat[:, 0].copy(), flat[:, 1].copy(), np.array(base), np.array(strides), parts)
        self._compiled[space.fingerprint] = comp
        return comp

    def block_parts(self, space: SearchSpace | str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per block of the space: its pointwise pair's (expand + project) cost indexed (middle, pw_w, pw_a,
        [latency, energy]) and its depthwise conv's indexed (kernel, middle, dw_w, dw_a, [latency, energy]),
        choice indices as in the gene matrix; NaN where the table lacks the entry. A block's cost is their
        sum, so per-operator allocation (``joint-ilp``) and least-cost bounds read them off directly."""
        return self._compile(get_space(space)).parts

    def block_minimums(self, space: SearchSpace | str) -> np.ndarray:
        """(n_blocks, 2): each block's cheapest latency and energy over all its choices (NaN-safe)."""
        space = get_space(space)
        comp = self._compile(space)
        ends = [*comp.base[1:], comp.latency.size - 1]
        return np.array([[np.nanmin(comp.latency[a:b]), np.nanmin(comp.energy[a:b])]
                         for a, b in zip(comp.base, ends)])  # fmt: skip

    def price(
        self,
        space: SearchSpace | str,
        genes: np.ndarray,
        on_missing: Literal["raise", "infeasible"] = "raise",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Latency (ms) and energy (mJ) of every row of a gene matrix, head and tail included.

        ``on_missing="raise"`` raises :class:`MissingEntryError` naming the first missing layer;
        ``"infeasible"`` gives such candidates ``inf`` latency and energy.
        """
        space = get_space(space)
        genes = space.validate_matrix(genes)
        comp = self._compile(space)
        idx = np.einsum("nbg,bg->nb", space.block_genes(genes), comp.strides) + comp.base
        idx = np.where(space.active(genes), idx, comp.latency.size - 1)
        total = np.stack([comp.latency[idx].sum(axis=1), comp.energy[idx].sum(axis=1)], axis=1)
        total += np.add(self.head, self.tail)
        bad = np.isnan(total[:, 0]) | np.isnan(total[:, 1])
        if bad.any():
            if on_missing == "raise":
                row = int(np.nonzero(bad)[0][0])
                cand = space.to_candidates(genes[row : row + 1])[0]
                for layer in space.layers(cand):
                    self.lookup(layer)  # raises with the layer's name and bits
            total[bad] = np.inf
        return total[:, 0], total[:, 1]

    def price_candidate(self, cand: Candidate) -> Cost:
        """Cost of one candidate with its per-layer breakdown; raises on a missing entry."""
        space = get_space(cand.space)
        rows = [(layer, *self.lookup(layer)) for layer in space.layers(cand)]
        lat = sum(r[1] for r in rows) + self.head[0] + self.tail[0]
        en = sum(r[2] for r in rows) + self.head[1] + self.tail[1]
        return Cost(lat, en, rows, self.head, self.tail)

    def price_loop(self, space: SearchSpace | str, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference per-candidate Python loop (what :meth:`price` is benchmarked and tested against)."""
        space = get_space(space)
        costs = [self.price_candidate(c) for c in space.to_candidates(genes)]
        return np.array([c.latency for c in costs]), np.array([c.energy for c in costs])

    # ------------------------------------------------------------------ CSV
    def to_csv(self) -> str:
        buf = io.StringIO()
        buf.write(f"{CSV_MAGIC}\n# hardware: {self.hardware}\n")
        buf.write(f"# config: {json.dumps(self.config, sort_keys=True)}\n")
        buf.write("# units: latency=ms energy=mJ\n")
        buf.write(f"# command: {self.command}\n")
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerow(["head", *[""] * 9, repr(self.head[0]), repr(self.head[1])])
        writer.writerow(["tail", *[""] * 9, repr(self.tail[0]), repr(self.tail[1])])
        for key in sorted(self.entries):
            lat, en = self.entries[key]
            writer.writerow(["layer", *key, repr(lat), repr(en)])
        buf.write(f"{CSV_END} {len(self.entries) + 2} rows\n")
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename): a crash never leaves half a table."""
        from apqopt.fileio import atomic_write

        path = Path(path)
        return atomic_write(path, self.to_apq_json() if path.suffix in (".dict", ".json") else self.to_csv())

    @classmethod
    def from_csv(cls, text: str, source: str = "<string>") -> LUT:
        lines = text.splitlines()
        while lines and not lines[-1].strip():  # blank lines after the end line are harmless
            lines.pop()
        if not lines or lines[0].strip() != CSV_MAGIC:
            raise LUTFormatError(
                f"{source}: line 1: expected '{CSV_MAGIC}', got {lines[0][:60]!r}" if lines else f"{source}: empty file"
            )
        meta: dict[str, str] = {}
        n = 1
        while n < len(lines) and lines[n].startswith("#"):
            name, _, value = lines[n][1:].partition(":")
            meta[name.strip()] = value.strip()
            n += 1
        for req in ("hardware", "config", "units"):
            if req not in meta:
                raise LUTFormatError(f"{source}: header lacks '# {req}: ...'")
        if meta["units"] != "latency=ms energy=mJ":
            raise LUTFormatError(f"{source}: units must be 'latency=ms energy=mJ', got {meta['units']!r}")
        try:
            config = json.loads(meta["config"])
        except json.JSONDecodeError as exc:
            raise LUTFormatError(f"{source}: header 'config' is not JSON: {exc}") from exc
        # The end line proves the file is whole: a cut can fall mid-number and still parse.
        end = lines[-1].strip() if len(lines) > n else ""
        if not end.startswith(CSV_END):
            raise LUTFormatError(f"{source}: no '{CSV_END} N rows' line at the end (file truncated?)")
        body = lines[n:-1]
        if end != f"{CSV_END} {len(body) - 1} rows":
            raise LUTFormatError(f"{source}: end line says {end[len(CSV_END) :].strip()!r} but {len(body) - 1} rows")
        reader = csv.reader(body)
        header = next(reader, None)
        if header != CSV_COLUMNS:
            raise LUTFormatError(f"{source}: line {n + 1}: expected columns {CSV_COLUMNS}, got {header}")
        lut = cls(hardware=meta["hardware"], config=config, command=meta.get("command", ""))
        seen: dict[Any, int] = {}
        for i, row in enumerate(reader, start=n + 2):
            if len(row) != len(CSV_COLUMNS):
                raise LUTFormatError(f"{source}: line {i}: expected {len(CSV_COLUMNS)} fields, got {len(row)}")
            try:
                value = (_finite(row[10]), _finite(row[11]))
                if row[0] not in ("layer", "head", "tail"):
                    raise ValueError(f"role must be layer/head/tail, got {row[0]!r}")
                key = row[0] if row[0] != "layer" else tuple(int(x) for x in row[1:10])
            except ValueError as exc:
                raise LUTFormatError(f"{source}: line {i}: {exc}") from exc
            if key in seen:  # two values for one entry: which one is right cannot be guessed
                raise LUTFormatError(f"{source}: line {i}: duplicate of the entry on line {seen[key]}")
            seen[key] = i
            if row[0] == "layer":
                lut.entries[key] = value  # type: ignore[index]
            else:
                setattr(lut, row[0], value)
        missing = {"head", "tail"} - set(seen)
        if missing:
            raise LUTFormatError(f"{source}: no {' or '.join(sorted(missing))} row (file truncated?)")
        return _measured(lut, source)

    # ------------------------------------------------------------------ APQ JSON
    def to_apq_json(self) -> str:
        data: dict[str, dict[str, float]] = {
            "head": {"latency": self.head[0], "energy": self.head[1]},
            "tail": {"latency": self.tail[0], "energy": self.tail[1]},
        }
        for key in sorted(self.entries):
            lat, en = self.entries[key]
            data[apq_key(key[:7], key[7], key[8])] = {"latency": lat, "energy": en}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_apq_json(cls, text: str, source: str = "<string>", hardware: str = "bitfusion-apq") -> LUT:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LUTFormatError(f"{source}: not valid JSON (truncated or corrupted?): {exc}") from exc
        if not isinstance(data, dict):
            raise LUTFormatError(f"{source}: APQ table must be a JSON object")
        lut = cls(hardware=hardware, config={"source": "APQ JSON"}, command=f"imported from {source}")
        for req in ("head", "tail"):
            if req not in data:
                raise LUTFormatError(f"{source}: APQ table has no '{req}' entry")
        for name, value in data.items():
            try:
                cost = (_finite(value["latency"]), _finite(value["energy"]))
            except (TypeError, KeyError, ValueError) as exc:
                raise LUTFormatError(f"{source}: entry {name!r} needs finite 'latency' and 'energy': {exc}") from exc
            if name in ("head", "tail"):
                setattr(lut, name, cost)
                continue
            m = _APQ_KEY.match(name)
            if not m:
                raise LUTFormatError(f"{source}: key {name!r} is not '(C_in, C_out, H_in, k, s, pad, groups)-WxAy'")
            lut.entries[tuple(int(g) for g in m.groups())] = cost  # type: ignore[index]
        return _measured(lut, source)

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LUT:
        """Read an apqopt CSV or an APQ JSON table (chosen by content)."""
        path = Path(path)
        if not path.exists():
            raise LUTError(f"LUT file not found: {path}")
        try:
            text = path.read_text()
        except UnicodeDecodeError as exc:
            raise LUTFormatError(f"{path}: not a text file (corrupted?): {exc}") from exc
        if text.lstrip().startswith("{"):
            return cls.from_apq_json(text, source=str(path))
        return cls.from_csv(text, source=str(path))


MAX_COST = 1e6  # ms or mJ for one layer (over a quarter of an hour): beyond, a unit or a file is wrong


def _finite(value: Any) -> float:
    x = float(value)
    if not math.isfinite(x) or not 0 <= x <= MAX_COST:
        raise ValueError(f"cost must be a number in 0..{MAX_COST:g} (ms or mJ per layer), got {value!r}")
    return x


def _measured(lut: LUT, source: str) -> LUT:
    """A table whose every layer takes no time prices every network at its head and tail: limits and
    fronts would mean nothing, and a search recorded on it would look fine."""
    if lut.entries and not any(lat > 0 for lat, _ in lut.entries.values()):
        raise LUTFormatError(f"{source}: every layer's latency is 0: not a measured table")
    return lut


def apq_key(shape: Iterable[int], w_bits: int, a_bits: int) -> str:
    """APQ's key string: '(C_in, C_out, H_in, k, s, pad, groups)-W{w}A{a}'."""
    return f"({', '.join(str(int(x)) for x in shape)})-W{w_bits}A{a_bits}"


def load_shipped(space: str, hardware: str = "bitfusion") -> LUT:
    """The table shipped with the package for a space (built by `apqopt lut build`)."""
    from apqopt.space import space_names

    if space not in space_names():
        raise LUTError(
            f"space '{space}' is not a preset, so no table is shipped for it: build one with "
            f"`apqopt lut build --space FILE --out TABLE.csv` and pass --lut TABLE.csv"
        )
    path = shipped_lut_path(space, hardware)
    if not path.exists():
        raise LUTError(
            f"no shipped LUT for space '{space}' and hardware '{hardware}' at {path}; "
            f"build one with: apqopt lut build --space {space} --hardware {hardware}"
        )
    return LUT.load(path)


__all__ = [
    "BIT_FIELDS",
    "COSTS",
    "LUT",
    "UNITS",
    "Cost",
    "LUTError",
    "LUTFormatError",
    "MissingEntryError",
    "apq_key",
    "load_shipped",
    "shipped_lut_path",
]
