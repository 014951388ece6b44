"""OHQ's bit allocation as an exact multiple-choice integer linear program.

Why exact: with per-operator sensitivities and per-operator costs from a lookup table, choosing one
bit pair per operator under a latency/energy budget is a multiple-choice knapsack. HiGHS (through
``scipy.optimize.milp``) solves it to optimality in milliseconds for apq-mbv2's 42 operators.

Operators of a fixed architecture: each block's pointwise pair (expand + project, sharing
``pw_w``/``pw_a``) and its depthwise conv (``dw_w``/``dw_a``); a choice is a (W bits, A bits) pair.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from apqopt.errors import ConfigError
from apqopt.hardware.lut import COSTS, LUT, UNITS
from apqopt.search.problem import InfeasibleError
from apqopt.space import BIT_FIELDS, Block, Candidate, get_space


@dataclass(frozen=True)
class OperatorCosts:
    """Per operator (2 per block: pw, dw) and per (w, a) choice: latency and energy; plus fixed cost."""

    candidate: Candidate
    choices: tuple[tuple[int, int], ...]
    latency: np.ndarray  # (n_ops, n_choices)
    energy: np.ndarray
    fixed: tuple[float, float]  # head + tail

    def cost(self, name: str) -> np.ndarray:
        return self.latency if name == "latency" else self.energy

    @classmethod
    def from_lut(cls, cand: Candidate, lut: LUT) -> OperatorCosts:
        space = get_space(cand.space)
        choices = tuple((w, a) for w in space.bits for a in space.bits)
        lat, en = [], []
        for b, blk in space.active_blocks(cand):
            pw_l, pw_e, dw_l, dw_e = [], [], [], []
            for w, a in choices:
                layers = space.block_layers(b, blk.kernel, blk.middle, (w, a), (w, a))
                exp, dwl, proj = (lut.lookup(x) for x in layers)
                pw_l.append(exp[0] + proj[0])
                pw_e.append(exp[1] + proj[1])
                dw_l.append(dwl[0])
                dw_e.append(dwl[1])
            lat += [pw_l, dw_l]
            en += [pw_e, dw_e]
        return cls(cand, choices, np.array(lat), np.array(en), (lut.head[0] + lut.tail[0], lut.head[1] + lut.tail[1]))

    def policy(self, picks: np.ndarray) -> Candidate:
        """The candidate with operator i set to choice picks[i]."""
        blocks = []
        for b, blk in enumerate(self.candidate.blocks):
            pw, dw = self.choices[picks[2 * b]], self.choices[picks[2 * b + 1]]
            blocks.append(Block(blk.kernel, blk.middle, *pw, *dw))
        it = iter(blocks)
        return get_space(self.candidate.space).candidate(tuple(next(it) for _ in s) for s in self.candidate.stages)


def solve(
    sensitivity: np.ndarray, costs: OperatorCosts, budgets: dict[str, float], allowed: np.ndarray | None = None
) -> np.ndarray:
    """Minimise total sensitivity with one choice per operator and each cost <= its budget.

    ``allowed`` (n_ops, n_choices, bool) leaves choices out (fixed genes, precisions a table lacks);
    choices with a non-finite cost or sensitivity are always left out. Returns the chosen choice index
    per operator; raises :class:`InfeasibleError` naming the minimum achievable cost when a budget
    cannot be met.
    """
    n_ops, n_ch = sensitivity.shape
    if (n_ops, n_ch) != costs.latency.shape:
        raise ConfigError(f"sensitivity is {sensitivity.shape}, costs are {costs.latency.shape}")
    ok = np.isfinite(sensitivity) & np.isfinite(costs.latency) & np.isfinite(costs.energy)
    if allowed is not None:
        ok &= np.asarray(allowed, dtype=bool)
    if not ok.any(axis=1).all():
        raise InfeasibleError(f"operator {int(np.flatnonzero(~ok.any(axis=1))[0])} has no allowed choice")
    sensitivity = np.where(ok, sensitivity, np.inf)  # never chosen, never dominating
    for name in budgets:
        if name not in COSTS:
            raise ConfigError(f"unknown budget '{name}'; choose from {list(COSTS)}")
        fixed = costs.fixed[COSTS.index(name)]
        least = fixed + np.where(ok, costs.cost(name), np.inf).min(axis=1).sum()
        if budgets[name] < least:
            raise InfeasibleError(
                f"{name} <= {budgets[name]} {UNITS[name]} is infeasible for this architecture: "
                f"the cheapest policy needs {least:.4f} {UNITS[name]}"
            )
    # Drop dominated choices first (another choice of the operator is no worse in sensitivity and in every
    # budgeted cost, and better in one): the optimum keeps its value, and HiGHS gets a program a third the
    # size -- faster, and without the numerically hard near-ties where it prints a stray repair line.
    names = list(budgets)
    keep = _undominated(sensitivity, [np.where(ok, costs.cost(n), np.inf) for n in names]) & ok
    cols = [np.flatnonzero(k) for k in keep]
    owner = np.concatenate([np.full(len(ci), i) for i, ci in enumerate(cols)])
    flat = np.concatenate(cols)
    c = sensitivity[owner, flat]
    one_each = (owner[None, :] == np.arange(n_ops)[:, None]).astype(float)
    cons = [LinearConstraint(one_each, 1, 1)]
    for name in names:
        row = costs.cost(name)[owner, flat]
        cons.append(LinearConstraint(row[None, :], -np.inf, budgets[name] - costs.fixed[COSTS.index(name)]))
    with _quiet_c_stdout():
        res = milp(c, constraints=cons, integrality=np.ones_like(c), bounds=Bounds(0, 1))
    if res.status != 0 or res.x is None:
        raise InfeasibleError(f"the integer program found no solution: {res.message}")
    chosen = np.round(res.x) > 0.5
    picks = np.zeros(n_ops, dtype=np.int64)
    picks[owner[chosen]] = flat[chosen]
    return picks


@contextmanager
def _quiet_c_stdout() -> Iterator[None]:
    """HiGHS (scipy 1.17's) writes a stray debug line to the C-level stdout on some solves, whatever its
    options (ERGO-Code/HiGHS#2783); hide file descriptor 1 for the milliseconds of one solve."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real descriptor (a notebook, a captured stream)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _undominated(sens: np.ndarray, costs: list[np.ndarray]) -> np.ndarray:
    """(n_ops, n_choices) bool: choices no other choice of the same operator dominates (ties keep the first)."""
    v = np.stack([sens, *costs], axis=-1)  # (ops, choices, criteria)
    a, b = v[:, :, None, :], v[:, None, :, :]  # a: the choice judged, b: a rival
    le = (b <= a).all(-1)
    lt = (b < a).any(-1)
    n = sens.shape[1]
    earlier_equal = (b == a).all(-1) & (np.arange(n)[None, :] < np.arange(n)[:, None])[None]
    return ~((le & lt) | earlier_equal).any(axis=2)


__all__ = ["BIT_FIELDS", "OperatorCosts", "solve"]
