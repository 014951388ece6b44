"""A supernet-wide sensitivity table: OHQ's MQE generalised from one network to every block choice.

Why: OHQ measures, for one fixed network, how much quantizing each operator alone hurts (KL divergence
of the output, :mod:`apqopt.supernet.mqe`). A joint search meets thousands of architectures, too many
to measure each. This table holds one value per (block position, kernel, middle width, operator,
(W, A) bits), measured once on the supernet, so any architecture's per-operator sensitivities are a
lookup -- what the multiple-choice ILP (:mod:`apqopt.search.ilp`) needs per architecture.

How it is measured (:func:`apqopt.supernet.mqe.measure_table`): every block position's cells (kernel x
width) are covered by a Latin design of full-depth architectures -- architecture j gives block b cell ``perm_b[j]``, a
random permutation per block, so every cell is measured once per replicate, each time among random
neighbours -- and each architecture gets a plain MQE pass (synthetic inputs by default, as OHQ). The
approximation, said plainly: a block's sensitivity is taken as independent of its neighbours and of
the stage depths (measured at full depth). Each architecture's MQE is cached, so a killed measurement
resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apqopt.errors import ConfigError
from apqopt.fileio import atomic_write, read_text
from apqopt.space import Block, Candidate, SearchSpace, get_space

FORMAT = "apqopt-sensitivity-table/1"
OPERATORS = ("pw", "dw")  # per block: the pointwise pair (expand + project) and the depthwise conv


@dataclass(frozen=True)
class SensitivityTable:
    """``values[b, kernel, middle, op, choice]``: KL(fp || one operator quantized), NaN where block b has
    fewer middle choices than the widest block; ``choices`` are (W, A) pairs in OHQ's order."""

    space: str
    values: np.ndarray
    choices: tuple[tuple[int, int], ...]
    meta: dict[str, Any]

    def for_candidate(self, cand: Candidate) -> np.ndarray:
        """(2 x active blocks, choices): the ILP's sensitivity matrix, in :class:`OperatorCosts` order."""
        sp = get_space(self.space)
        rows = []
        for b, blk in sp.active_blocks(cand):
            k, m = sp.kernels.index(blk.kernel), sp.middle_choices[b].index(blk.middle)
            rows += [self.values[b, k, m, 0], self.values[b, k, m, 1]]
        return np.array(rows)

    def save(self, path: str | Path) -> Path:
        """Atomically, as JSON (a table is data: loading it runs no code)."""
        doc = {
            "format": FORMAT,
            "space": self.space,
            "choices": [list(c) for c in self.choices],
            "shape": list(self.values.shape),
            "meta": self.meta,
            "values": [None if not np.isfinite(v) else float(v) for v in self.values.ravel()],
        }
        return atomic_write(path, json.dumps(doc) + "\n")

    @classmethod
    def load(cls, path: str | Path, space: str | None = None) -> SensitivityTable:
        """Read a table; a wrong format, shape or space is one error naming the file."""
        text = read_text(path, "a sensitivity table")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not a sensitivity table (line {e.lineno}: {e.msg})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a sensitivity table (format is not {FORMAT!r})")
        if space is not None and doc["space"] != get_space(space).name:
            raise ConfigError(f"{path}: a table of space '{doc['space']}', not '{get_space(space).name}'")
        sp = get_space(doc["space"])
        shape = tuple(doc["shape"])
        want = table_shape(sp, len(doc["choices"]))
        if shape != want or len(doc["values"]) != int(np.prod(shape)):
            raise ConfigError(f"{path}: shape {list(shape)} does not fit space '{sp.name}' (expected {list(want)})")
        values = np.array([np.nan if v is None else v for v in doc["values"]], dtype=float).reshape(shape)
        return cls(sp.name, values, tuple(tuple(c) for c in doc["choices"]), doc.get("meta", {}))


def table_shape(sp: SearchSpace, n_choices: int) -> tuple[int, ...]:
    widest = max(len(m) for m in sp.middle_choices)
    return (sp.n_blocks, len(sp.kernels), widest, len(OPERATORS), n_choices)


def design(sp: SearchSpace, replicates: int, seed: int) -> list[Candidate]:
    """The Latin design: full-depth architectures that together give every (block, kernel, width) cell
    ``replicates`` measurements, each among random neighbours (bits at the widest: MQE sets them)."""
    rng = np.random.default_rng(seed)
    cells = [[(k, m) for k in sp.kernels for m in sp.middle_choices[b]] for b in range(sp.n_blocks)]
    n = max(len(c) for c in cells)
    hi = max(sp.bits)
    out = []
    for _ in range(replicates):
        # block b walks a random permutation of its cells; a block with fewer cells repeats random ones
        order = [np.concatenate([rng.permutation(len(c)), rng.integers(0, len(c), n - len(c))]) for c in cells]
        for j in range(n):
            stages, b0 = [], 0
            for s in sp.stages:
                stages.append(tuple(Block(*cells[b][order[b][j]], hi, hi, hi, hi) for b in range(b0, b0 + s.max_depth)))
                b0 += s.max_depth
            out.append(sp.candidate(stages))
    return out


__all__ = ["OPERATORS", "SensitivityTable", "design", "table_shape"]
