"""One search problem that every searcher sees: objectives, constraints, a budget, vectorised evaluation.

Why: comparisons between searchers are only fair when they price candidates the same way and spend
the same budget. :class:`Problem` holds the space, the accuracy predictor and the hardware table;
``evaluate(genes)`` prices a whole batch (one predictor call, one gathered LUT sum), counts the
evaluations against the budget and keeps every evaluated candidate. Hardware cost alone
(:meth:`Problem.cost`) is free: the table is known to every searcher, as in APQ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from apqopt.hardware.lut import LUT, MissingEntryError, apq_key, load_shipped
from apqopt.space import BIT_FIELDS, Candidate, SearchSpace, get_space

COSTS = ("latency", "energy")
UNITS = {"latency": "ms", "energy": "mJ"}


class InfeasibleError(ValueError):
    """A constraint no candidate of the space can meet."""


class BudgetExhaustedError(RuntimeError):
    """The problem's evaluation budget is spent."""


@dataclass
class Evaluation:
    """A batch of evaluated candidates (rows aligned)."""

    genes: np.ndarray
    accuracy: np.ndarray
    latency: np.ndarray
    energy: np.ndarray
    violation: np.ndarray  # sum of positive constraint excesses (0 = feasible)

    @property
    def feasible(self) -> np.ndarray:
        return self.violation <= 0

    def __len__(self) -> int:
        return len(self.accuracy)

    def cost(self, name: str) -> np.ndarray:
        return self.latency if name == "latency" else self.energy

    @classmethod
    def concat(cls, parts: list[Evaluation]) -> Evaluation:
        if not parts:
            z = np.zeros(0)
            return cls(np.zeros((0, 0), dtype=np.int64), z, z, z, z)
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("genes", "accuracy", "latency", "energy", "violation")
            )
        )


@dataclass
class Problem:
    """Maximise predicted accuracy, minimise the chosen hardware costs, subject to cost limits.

    ``predictor`` maps a gene matrix to accuracies (e.g. ``AccuracyPredictor.predict_genes``);
    ``constraints`` maps "latency"/"energy" to an upper limit (ms / mJ).
    """

    space: SearchSpace
    predictor: Callable[[np.ndarray], np.ndarray]
    lut: LUT
    objectives: tuple[str, ...] = ("latency",)
    constraints: dict[str, float] = field(default_factory=dict)
    budget: int = 50_000
    n_evaluated: int = 0
    history: list[Evaluation] = field(default_factory=list)
    eval_seconds: float = 0.0
    fixed: np.ndarray | None = None  # (n_genes,): value of a fixed gene, -1 where free
    allow_missing: bool = False  # price candidates a table lacks as infeasible instead of refusing the table

    def __post_init__(self) -> None:
        self.space = get_space(self.space)
        for name in (*self.objectives, *self.constraints):
            if name not in COSTS:
                raise ValueError(f"unknown cost '{name}'; choose from {list(COSTS)}")
        if self.budget <= 0:
            raise ValueError(f"budget must be a positive number of evaluations, got {self.budget}")
        if self.lut.config.get("energy_measured") is False and "energy" in (*self.objectives, *self.constraints):
            raise ValueError(
                f"table '{self.lut.hardware}' measures latency only (energy_measured: false); "
                "use latency objectives and constraints with it"
            )
        if not self.allow_missing and not self.lut.covers(self.space):
            gaps = self.lut.missing(self.space)
            raise MissingEntryError(
                f"the table lacks {len(gaps)} layer x bits entries that space '{self.space.name}' needs, e.g. "
                f"{apq_key(gaps[0][:7], gaps[0][7], gaps[0][8])}; rebuild it (apqopt lut build) or pass "
                "allow_missing=True to treat such candidates as infeasible (e.g. precisions a host cannot run)"
            )
        mins = self.min_cost() if self.fixed is None else self._min_cost_fixed()
        for name, limit in self.constraints.items():
            if limit < mins[name]:
                raise InfeasibleError(
                    f"{name} <= {limit} {UNITS[name]} is infeasible: the cheapest candidate of space "
                    f"'{self.space.name}' on this table needs {mins[name]:.4f} {UNITS[name]}"
                )

    @classmethod
    def default(cls, space: str, predictor: Callable[[np.ndarray], np.ndarray], **kw: object) -> Problem:
        """A problem on the space's shipped BitFusion table."""
        return cls(get_space(space), predictor, load_shipped(space), **kw)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ costs
    def min_cost(self) -> dict[str, float]:
        """The exact minimum latency and energy over the space (blocks are priced independently)."""
        sp = self.space
        block_min = self.lut.block_minimums(sp)
        out = {}
        for m, name in enumerate(COSTS):
            total, b0 = 0.0, 0
            for s in sp.stages:
                csum = np.cumsum(block_min[b0 : b0 + s.max_depth, m])
                total += min(csum[d - 1] for d in s.depths)
                b0 += s.max_depth
            out[name] = float(total + self.lut.head[m] + self.lut.tail[m])
        return out

    # ------------------------------------------------------------------ fixed architecture
    def restricted_to(self, cand: Candidate) -> Problem:
        """The same problem over one architecture: only the bits of its active blocks stay free
        (how HAQ and OHQ are compared with the other searchers)."""
        sp = self.space
        row = sp.from_candidates([cand])[0]
        fixed = row.copy()
        act = sp.active(row[None])[0]
        for b in np.flatnonzero(act):
            for f in BIT_FIELDS:
                fixed[sp.block_gene(b, f)] = -1
        p = self.fresh()
        p.fixed = fixed
        p.__post_init__()
        return p

    @property
    def architecture(self) -> Candidate | None:
        """The fixed architecture (bits at their widest) of a restricted problem."""
        if self.fixed is None:
            return None
        row = np.where(self.fixed >= 0, self.fixed, len(self.space.bits) - 1)
        return self.space.to_candidates(row[None])[0]

    def gene_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive (low, high) choice index per gene; a fixed gene has low == high."""
        hi = self.space.cardinalities - 1
        if self.fixed is None:
            return np.zeros_like(hi), hi
        lo = np.where(self.fixed >= 0, self.fixed, 0)
        return lo, np.where(self.fixed >= 0, self.fixed, hi)

    def apply_fixed(self, genes: np.ndarray) -> np.ndarray:
        if self.fixed is None:
            return genes
        mask = self.fixed >= 0
        genes = np.array(genes, dtype=np.int64, copy=True)
        genes[:, mask] = self.fixed[mask]
        return genes

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.apply_fixed(self.space.sample(n, rng))

    def _min_cost_fixed(self) -> dict[str, float]:
        lowest = np.where(self.fixed >= 0, self.fixed, 0)  # 4-bit everywhere is the cheapest policy
        lat, en = self.lut.price(self.space, lowest[None], on_missing="infeasible")
        return {"latency": float(lat[0]), "energy": float(en[0])}

    def cost(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(latency, energy, violation) without spending budget; missing LUT entries are infeasible."""
        genes = self.apply_fixed(genes)
        lat, en = self.lut.price(self.space, genes, on_missing="infeasible")
        viol = np.zeros(len(lat))
        for name, limit in self.constraints.items():
            viol += np.maximum(0.0, (lat if name == "latency" else en) - limit)
        return lat, en, viol

    # ------------------------------------------------------------------ evaluation
    @property
    def remaining(self) -> int:
        return self.budget - self.n_evaluated

    def evaluate(self, genes: np.ndarray) -> Evaluation:
        """Predict and price a batch; only the first ``remaining`` rows are evaluated."""
        if self.remaining <= 0:
            raise BudgetExhaustedError(f"budget of {self.budget} evaluations is spent")
        genes = self.apply_fixed(self.space.validate_matrix(genes)[: self.remaining])
        t0 = time.perf_counter()
        lat, en, viol = self.cost(genes)
        acc = np.asarray(self.predictor(genes), dtype=np.float64)
        self.eval_seconds += time.perf_counter() - t0
        ev = Evaluation(genes, acc, lat, en, viol)
        self.n_evaluated += len(genes)
        self.history.append(ev)
        return ev

    def all_evaluated(self) -> Evaluation:
        return Evaluation.concat(self.history)

    def objective_matrix(self, ev: Evaluation) -> np.ndarray:
        """Minimisation form: [-accuracy, cost objectives...]."""
        return np.column_stack([-ev.accuracy, *(ev.cost(o) for o in self.objectives)])

    def constraint_matrix(self, ev: Evaluation) -> np.ndarray:
        """G <= 0 form: cost - limit per constraint."""
        cols = [ev.cost(name) - limit for name, limit in self.constraints.items()]
        return np.column_stack(cols) if cols else np.zeros((len(ev), 0))

    def fresh(self) -> Problem:
        """The same problem with its budget and history reset (one per searcher x seed)."""
        p = Problem(
            self.space,
            self.predictor,
            self.lut,
            self.objectives,
            dict(self.constraints),
            self.budget,
            allow_missing=self.allow_missing,
        )
        p.fixed = None if self.fixed is None else self.fixed.copy()
        return p
