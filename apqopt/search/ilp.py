"""OHQ's bit allocation as an exact multiple-choice integer linear program.

Why exact: with per-operator sensitivities and per-operator costs from a lookup table, choosing one
bit pair per operator under a latency/energy budget is a multiple-choice knapsack. HiGHS (through
``scipy.optimize.milp``) solves it to optimality in milliseconds for apq-mbv2's 42 operators.

Operators of a fixed architecture: each block's pointwise pair (expand + project, sharing
``pw_w``/``pw_a``) and its depthwise conv (``dw_w``/``dw_a``); a choice is a (W bits, A bits) pair.
"""

from __future__ import annotations

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


def solve(sensitivity: np.ndarray, costs: OperatorCosts, budgets: dict[str, float]) -> np.ndarray:
    """Minimise total sensitivity with one choice per operator and each cost <= its budget.

    Returns the chosen choice index per operator; raises :class:`InfeasibleError` naming the
    minimum achievable cost when a budget cannot be met.
    """
    n_ops, n_ch = sensitivity.shape
    if (n_ops, n_ch) != costs.latency.shape:
        raise ConfigError(f"sensitivity is {sensitivity.shape}, costs are {costs.latency.shape}")
    for name in budgets:
        if name not in COSTS:
            raise ConfigError(f"unknown budget '{name}'; choose from {list(COSTS)}")
        fixed = costs.fixed[COSTS.index(name)]
        least = fixed + costs.cost(name).min(axis=1).sum()
        if budgets[name] < least:
            raise InfeasibleError(
                f"{name} <= {budgets[name]} {UNITS[name]} is infeasible for this architecture: "
                f"the cheapest policy needs {least:.4f} {UNITS[name]}"
            )
    c = sensitivity.ravel()
    one_each = np.kron(np.eye(n_ops), np.ones(n_ch))
    cons = [LinearConstraint(one_each, 1, 1)]
    for name, limit in budgets.items():
        cons.append(
            LinearConstraint(costs.cost(name).ravel()[None, :], -np.inf, limit - costs.fixed[COSTS.index(name)])
        )
    res = milp(c, constraints=cons, integrality=np.ones_like(c), bounds=Bounds(0, 1))
    if res.status != 0 or res.x is None:
        raise InfeasibleError(f"the integer program found no solution: {res.message}")
    return np.round(res.x).reshape(n_ops, n_ch).argmax(axis=1)


__all__ = ["BIT_FIELDS", "OperatorCosts", "solve"]
