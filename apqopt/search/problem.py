"""One search problem that every searcher sees: objectives, constraints and vectorised evaluation.

Why: comparisons between searchers are only fair when they price candidates the same way. A
:class:`Problem` is only the *definition* (as in pymoo): the space, the accuracy predictor, the
hardware table, objectives and constraint limits. It is frozen and keeps no run state; ``evaluate``
prices a whole batch (one predictor call, one gathered LUT sum). Counting evaluations against a budget
is the job of :class:`apqopt.search.base.Run`, one per searcher run. Hardware cost alone
(:meth:`Problem.cost`) is free: the table is known to every searcher, as in APQ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apqopt.errors import ApqoptError, ConfigError
from apqopt.evaluation import Evaluation
from apqopt.hardware.lut import COSTS, LUT, UNITS, MissingEntryError, apq_key, load_shipped
from apqopt.space import BIT_FIELDS, BLOCK_GENES, Candidate, SearchSpace, get_space


class InfeasibleError(ApqoptError, ValueError):
    """A constraint no candidate of the space can meet."""


class BudgetExhaustedError(ApqoptError, RuntimeError):
    """A run's evaluation budget is spent."""


# how far outside its training data (in ranges of a summary feature) a prediction is flagged: the one
# refinement pick beyond it was 10.7 points off; none of the 200 held-out networks comes near it
OUTSIDE_MARGIN = 0.25


def _predict_owner(predictor: Any) -> Any:
    """The ``AccuracyPredictor`` behind ``predictor`` (``pred.predict`` given where ``pred`` was meant is
    the same thing), or ``predictor`` itself (a plain function)."""
    owner = getattr(predictor, "__self__", None)
    if getattr(predictor, "__name__", "") == "predict" and callable(getattr(owner, "predict_genes", None)):
        return owner
    return predictor


def _predict_fn(predictor: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A gene-matrix -> accuracy function from a fitted ``AccuracyPredictor`` or a plain function."""
    predictor = _predict_owner(predictor)
    fn = getattr(predictor, "predict_genes", None)
    return fn if callable(fn) else predictor


class Limits(dict):  # type: ignore[type-arg]
    """A problem's cost limits, read-only: they decide every result, so changing them on a made Problem
    (``problem.constraints["latency"] = 0.3``) would give results that no recorded setting explains."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a Problem's constraints are read-only; make a new Problem (dataclasses.replace)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # pickled and copied as a whole, never item by item
        return (Limits, (dict(self),))


@dataclass(frozen=True, eq=False)
class Problem:
    """Maximise predicted accuracy, minimise the chosen hardware costs, subject to cost limits.

    ``predictor``: a fitted :class:`~apqopt.predictor.AccuracyPredictor`, or any function from a gene
    matrix to accuracies; ``constraints`` maps "latency"/"energy" to an upper limit (ms / mJ);
    ``fixed``: per gene, the value of a fixed gene and -1 where free (see :meth:`restricted_to`).
    """

    space: SearchSpace
    predictor: Any
    lut: LUT
    objectives: tuple[str, ...] = ("latency",)
    constraints: Mapping[str, float] = field(default_factory=dict)
    fixed: np.ndarray | None = None
    allow_missing: bool = False  # price candidates a table lacks as infeasible instead of refusing the table
    pessimism: float = 0.0  # kappa: optimise mean - kappa * std of a calibrated ensemble (0: the mean)
    spec: Any = field(default=None, repr=False)  # the ProblemSpec it was built from (None: made from objects)

    def __post_init__(self) -> None:
        object.__setattr__(self, "space", get_space(self.space))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "constraints", Limits(self.constraints))
        for name in (*self.objectives, *self.constraints):
            if name not in COSTS:
                raise ConfigError(f"unknown cost '{name}'; choose from {list(COSTS)}")
        if len(set(self.objectives)) != len(self.objectives):  # one cost twice: a degenerate front
            raise ConfigError(f"objectives must be distinct, got {list(self.objectives)}")
        for name, limit in self.constraints.items():
            if not isinstance(limit, int | float) or isinstance(limit, bool) or not np.isfinite(limit) or limit <= 0:
                raise ConfigError(f"{name} limit must be a finite positive number, got {limit!r}")
        if (
            isinstance(self.pessimism, bool)
            or not isinstance(self.pessimism, int | float)
            or not (np.isfinite(self.pessimism) and self.pessimism >= 0)
        ):
            raise ConfigError(f"pessimism must be a finite number >= 0, got {self.pessimism!r}")
        if self.pessimism and getattr(_predict_owner(self.predictor), "members", 1) < 2:
            raise ConfigError(
                "pessimism needs a predictor that knows its spread: an AccuracyPredictor ensemble (members >= 2)"
            )
        if self.lut.config.get("energy_measured") is False and "energy" in (*self.objectives, *self.constraints):
            raise ConfigError(
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
    def default(cls, space: str, predictor: Any, **kw: Any) -> Problem:
        """A problem on the space's shipped BitFusion table."""
        return cls(get_space(space), predictor, load_shipped(space), **kw)

    # ------------------------------------------------------------------ costs
    def min_cost(self) -> dict[str, float]:
        """The exact minimum latency and energy over the space (blocks are priced independently)."""
        sp = self.space
        return self._least_over_depths(self.lut.block_minimums(sp), [s.depths for s in sp.stages])

    def _least_over_depths(self, block_min: np.ndarray, depths: list[Sequence[int]]) -> dict[str, float]:
        """Head + tail + per stage the cheapest of its allowed depths, from each block's least (latency,
        energy): blocks add up, so the least of a stage at depth d is the sum of its first d blocks'."""
        total, b0 = np.zeros(2), 0
        for stage, allowed in zip(self.space.stages, depths):
            csum = np.cumsum(block_min[b0 : b0 + stage.max_depth], axis=0)
            total += np.min([csum[d - 1] for d in allowed], axis=0)
            b0 += stage.max_depth
        return {name: float(total[m] + self.lut.head[m] + self.lut.tail[m]) for m, name in enumerate(COSTS)}

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
        return dataclasses.replace(self, fixed=fixed)

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

    def sample_cheap(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Rows biased towards cheap candidates: each row draws a scale u ~ U(0, 1) and every gene uniformly
        from its first ceil(u x choices) choices (choices are ordered from cheap to dear: depths, kernels,
        widths, bits). Where a tight limit leaves almost no uniform sample feasible, these still reach it."""
        card = self.space.cardinalities
        u = rng.random((n, 1))
        top = np.maximum(1, np.ceil(u * card)).astype(np.int64)
        return self.apply_fixed(np.floor(rng.random((n, len(card))) * top).astype(np.int64))

    def _min_cost_fixed(self) -> dict[str, float]:
        """The exact least latency and energy under the fixed genes: each block's cheapest allowed (kernel,
        width, pointwise pair, depthwise pair), each stage's best allowed depth. Not "every free gene at its
        first choice": on BitFusion a 4-bit layer can take more energy than an 8-bit one."""
        sp = self.space
        lo, hi = self.gene_bounds()
        box = [slice(a, b + 1) for a, b in zip(lo, hi)]  # the allowed choices of every gene
        block_min = np.zeros((sp.n_blocks, 2))
        for b, (pw, dw) in enumerate(self.lut.block_parts(sp)):
            k, m, pw_w, pw_a, dw_w, dw_a = (box[sp.block_gene(b, g)] for g in BLOCK_GENES)
            pw_least = np.nan_to_num(pw[m, pw_w, pw_a], nan=np.inf).min(axis=(1, 2))  # (middles, 2)
            dw_least = np.nan_to_num(dw[k, m, dw_w, dw_a], nan=np.inf).min(axis=(2, 3))  # (kernels, middles, 2)
            block_min[b] = (pw_least[None] + dw_least).min(axis=(0, 1))
        depths = [[sp.stages[s].depths[i] for i in range(lo[s], hi[s] + 1)] for s in range(sp.n_stages)]
        return self._least_over_depths(block_min, depths)

    def cost(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(latency, energy, violation) without spending budget; missing LUT entries are infeasible."""
        genes = self.apply_fixed(genes)
        lat, en = self.lut.price(self.space, genes, on_missing="infeasible")
        viol = np.zeros(len(lat))
        for name, limit in self.constraints.items():
            viol += np.maximum(0.0, {"latency": lat, "energy": en}[name] - limit)
        return lat, en, viol

    # ------------------------------------------------------------------ evaluation
    def predict(self, genes: np.ndarray) -> np.ndarray:
        """Predicted accuracy of a gene matrix (no hardware cost); with ``pessimism`` kappa, the pessimistic
        ``mean - kappa * std`` that searches then optimise: a surrogate-driven search goes where the surrogate
        is most optimistic, and so most wrong; the calibrated spread makes those places cost accuracy."""
        genes = self.apply_fixed(genes)
        if not self.pessimism:
            return np.asarray(_predict_fn(self.predictor)(genes), dtype=np.float64)
        mean, std = _predict_owner(self.predictor).predict_genes(genes, return_std=True)
        return np.asarray(mean, dtype=np.float64) - self.pessimism * np.asarray(std, dtype=np.float64)

    def outside_data(self, genes: np.ndarray, margin: float = OUTSIDE_MARGIN) -> np.ndarray:
        """Per row, whether the predictor extrapolates there: more than ``margin`` of a feature's training
        range outside the networks it was fitted on (:meth:`AccuracyPredictor.extrapolation`). All False
        for a predictor that cannot tell (a plain function)."""
        owner = _predict_owner(self.predictor)
        check = getattr(owner, "extrapolation", None)
        genes = self.apply_fixed(np.asarray(genes))
        if not callable(check):
            return np.zeros(len(genes), dtype=bool)
        return np.asarray(check(genes)) > margin

    def evaluate(self, genes: np.ndarray) -> Evaluation:
        """Predict and price a batch (validated; fixed genes applied)."""
        genes = self.apply_fixed(self.space.validate_matrix(genes))
        lat, en, viol = self.cost(genes)
        return Evaluation(genes, self.predict(genes), lat, en, viol)

    def objective_matrix(self, ev: Evaluation) -> np.ndarray:
        """Minimisation form: [-accuracy, cost objectives...]."""
        return np.column_stack([-ev.accuracy, *(ev.cost(o) for o in self.objectives)])

    def constraint_matrix(self, ev: Evaluation) -> np.ndarray:
        """G <= 0 form: cost - limit per constraint."""
        cols = [ev.cost(name) - limit for name, limit in self.constraints.items()]
        return np.column_stack(cols) if cols else np.zeros((len(ev), 0))
