"""OHQ's integer program: optimal against brute force, budgets respected, infeasible budgets named."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.search.ilp import OperatorCosts, solve
from apqopt.search.problem import InfeasibleError


def test_matches_brute_force_on_small_architecture() -> None:
    sp, lut = get_space("fmnist"), load_shipped("fmnist")
    cand = sp.smallest()
    full = OperatorCosts.from_lut(cand, lut)
    ops = 4  # brute force over the first 4 operators (9^4 policies); the rest fixed at choice 8 (W8A8)
    rng = np.random.default_rng(0)
    sens = rng.random(full.latency.shape)
    rest_lat = full.latency[ops:, 8].sum()
    budget = full.fixed[0] + rest_lat + np.quantile(full.latency[:ops].sum(axis=0), 0.4) * 1.0
    sub = OperatorCosts(cand, full.choices, full.latency[:ops], full.energy[:ops], (full.fixed[0] + rest_lat, 0.0))
    picks = solve(sens[:ops], sub, {"latency": budget})
    best = min(
        (sum(sens[i, c] for i, c in enumerate(combo)), combo)
        for combo in itertools.product(range(9), repeat=ops)
        if full.fixed[0] + rest_lat + sum(full.latency[i, c] for i, c in enumerate(combo)) <= budget
    )
    assert sum(sens[i, c] for i, c in enumerate(picks)) == pytest.approx(best[0])


def test_apq_mbv2_policy_under_one_second_and_feasible() -> None:
    sp, lut = get_space("apq-mbv2"), load_shipped("apq-mbv2")
    cand = sp.uniform(kernel=5, middle=-1)
    costs = OperatorCosts.from_lut(cand, lut)
    sens = np.random.default_rng(1).random(costs.latency.shape) / np.array([b + a for b, a in costs.choices])
    t0 = time.perf_counter()
    picks = solve(sens, costs, {"latency": 14.0, "energy": 16.0})  # both binding: least 10.6 ms, 14.4 mJ
    assert time.perf_counter() - t0 < 1.0
    policy = costs.policy(picks)
    cost = lut.price_candidate(policy)
    assert cost.latency <= 14.0 + 1e-9 and cost.energy <= 16.0 + 1e-9
    assert [(b.kernel, b.middle) for b in policy.blocks] == [(b.kernel, b.middle) for b in cand.blocks]
    with pytest.raises(InfeasibleError, match=r"latency <= 1.0 ms is infeasible for this architecture: the cheapest"):
        solve(sens, costs, {"latency": 1.0})
