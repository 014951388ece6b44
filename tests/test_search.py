"""Problem and searchers: budget, feasibility, seeding, pymoo/Optuna integration, beating random."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import optuna
import pytest
import torch

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.search.base import make_searcher, searcher_names
from apqopt.search.optuna_search import objective
from apqopt.search.problem import BudgetExhaustedError, InfeasibleError, Problem
from apqopt.search.pymoo_search import PymooProblem

SP = get_space("fmnist")
LUT = load_shipped("fmnist")
W = np.random.default_rng(0).normal(size=SP.encoding_width)


def capacity(genes: np.ndarray) -> np.ndarray:
    """A fixed, structured stand-in for a predictor (bigger and wider-bit nets score higher), so that
    searchers have something to find; the measured predictor is tested in test_predictor.py."""
    enc = SP.encode(genes)
    return (
        0.8
        + 0.002 * enc[:, : SP.arch_width] @ np.abs(W[: SP.arch_width])
        + 0.0005 * enc[:, SP.arch_width :] @ W[SP.arch_width :]
    )


def problem(budget: int = 1000, limit: float = 0.6) -> Problem:
    return Problem(SP, capacity, LUT, constraints={"latency": limit}, budget=budget)


def test_min_cost_is_a_tight_lower_bound() -> None:
    p = problem()
    mins = p.min_cost()
    lat, en = LUT.price(SP, SP.sample(20_000, 0))
    assert lat.min() >= mins["latency"] - 1e-12 and en.min() >= mins["energy"] - 1e-12
    with pytest.raises(
        InfeasibleError, match=r"latency <= 0.1 ms is infeasible: the cheapest candidate .* needs 0\.\d+"
    ):
        Problem(SP, capacity, LUT, constraints={"latency": 0.1})
    Problem(SP, capacity, LUT, constraints={"latency": mins["latency"] * 1.001})
    with pytest.raises(ValueError, match="unknown cost 'power'"):
        Problem(SP, capacity, LUT, constraints={"power": 1.0})


def test_budget_is_exact() -> None:
    p = problem(budget=150)
    ev = p.evaluate(SP.sample(100, 0))
    assert len(ev) == 100
    assert len(p.evaluate(SP.sample(100, 1))) == 50
    with pytest.raises(BudgetExhaustedError):
        p.evaluate(SP.sample(1, 2))


@pytest.mark.parametrize("name", ["random", "evolution", "pymoo-nsga2", "optuna-nsga2", "optuna-tpe"])
def test_searchers_spend_exact_budget_and_are_seeded(name: str) -> None:
    torch.set_num_threads(1)
    budget = 300 if name.startswith("optuna") else 1000
    r1 = make_searcher(name, seed=3).run(problem(budget))
    r2 = make_searcher(name, seed=3).run(problem(budget))
    assert len(r1.evaluated) == budget
    np.testing.assert_array_equal(r1.evaluated.genes, r2.evaluated.genes)
    assert r1.best() >= 0 and r1.evaluated.latency[r1.best()] <= 0.6


def test_evolution_is_elitist_and_beats_random() -> None:
    evo = make_searcher("evolution", seed=0).run(problem(3000))
    best = evo.notes["best_per_generation"]
    assert all(b2 >= b1 for b1, b2 in pairwise(best))
    assert evo.notes["generations"] == (3000 - 100) // 100
    rnd = make_searcher("random", seed=0).run(problem(3000))
    assert evo.evaluated.accuracy[evo.best()] > rnd.evaluated.accuracy[rnd.best()]


def test_pymoo_problem_is_usable_from_pymoo() -> None:
    pp = PymooProblem(problem(50))
    out = pp.evaluate(np.stack([SP.sample(1, i)[0] for i in range(10)]).astype(float), return_as_dictionary=True)
    assert out["F"].shape == (10, 2) and out["G"].shape == (10, 1)
    np.testing.assert_allclose(-out["F"][:, 0], capacity(np.stack([SP.sample(1, i)[0] for i in range(10)])))
    assert np.all(out["F"][:, 1] > 0)


def test_optuna_objective_and_both_constraint_forms() -> None:
    p = problem(20)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective(p), n_trials=20)
    t = study.trials[0]
    assert "constraints" in t.system_attrs and "constraints:latency" in t.system_attrs
    assert t.system_attrs["constraints"] == [t.system_attrs["constraints:latency"]]
    assert t.user_attrs["latency_ms"] == pytest.approx(t.values[1])
    assert p.n_evaluated == 20


def test_unknown_searcher() -> None:
    with pytest.raises(ValueError, match="unknown searcher 'hill'; known: "):
        make_searcher("hill")
    assert {"evolution", "random", "pymoo-nsga2", "optuna-nsga2", "optuna-tpe"} <= set(searcher_names())


def test_restricted_problem_searches_only_bits() -> None:
    arch = SP.uniform(kernel=5, middle=1)
    p = problem(400, limit=0.9).restricted_to(arch)
    assert [(b.kernel, b.middle) for b in p.architecture.blocks] == [(b.kernel, b.middle) for b in arch.blocks]
    for name in ("random", "evolution", "pymoo-nsga2"):
        res = make_searcher(name, seed=0).run(p.fresh())
        cands = SP.to_candidates(res.evaluated.genes[:50])
        assert all(
            [(b.kernel, b.middle) for b in c.blocks] == [(b.kernel, b.middle) for b in arch.blocks] for c in cands
        )
        assert len({tuple(r) for r in res.evaluated.genes}) > 10  # the bits do vary


def test_haq_respects_budget_and_learns_something() -> None:
    torch.set_num_threads(1)
    arch = SP.uniform(kernel=3, middle=0)
    p = problem(60, limit=0.5).restricted_to(arch)
    res = make_searcher("haq", seed=0, warmup=10, updates_per_episode=4, hidden=64).run(p)
    assert len(res.evaluated) == 60 and res.notes["episodes"] == 60
    assert res.evaluated.feasible.all()  # the budget is enforced after every episode
    assert res.notes["final_sigma"] == pytest.approx(0.5 * 0.99**50)
    with pytest.raises(ValueError, match="restricted_to"):
        make_searcher("haq").run(problem(5))


def test_ohq_sweeps_budgets_with_given_sensitivity() -> None:
    arch = SP.uniform(kernel=3, middle=0)
    p = problem(100, limit=0.6).restricted_to(arch)
    n_ops = 2 * sum(arch.depths)
    sens = np.tile(np.array([9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=float), (n_ops, 1))  # more bits, less damage
    res = make_searcher("ohq", sensitivity=sens, points=10).run(p)
    assert 1 <= len(res.evaluated) <= 10 and res.evaluated.feasible.all()
    assert res.notes["budgets_solved"] >= len(res.evaluated)
    # the loosest budget buys the most bits
    i = int(np.argmax(res.evaluated.latency))
    cand = SP.to_candidates(res.evaluated.genes[i : i + 1])[0]
    assert np.mean([b.pw_w + b.pw_a + b.dw_w + b.dw_a for b in cand.blocks]) > 4 * 4


@pytest.mark.slow
def test_haq_reward_from_measured_accuracy(shipped_supernet) -> None:  # type: ignore[no-untyped-def]
    """Opt-in: HAQ's reward from accuracy measured on the supernet (fp here, to keep the test short)."""
    from apqopt.supernet.collect import CollectConfig
    from apqopt.verify import measuring_predictor

    measured = measuring_predictor(shipped_supernet, CollectConfig(kind="fp", space="fmnist", eval_images=500))
    p = Problem(SP, measured, LUT, budget=2).restricted_to(SP.uniform((2, 2, 2, 2, 2), kernel=3, middle=0))
    res = make_searcher("haq", seed=0, warmup=1).run(p)
    assert len(res.evaluated) == 2 and (res.evaluated.accuracy > 0.5).all()
