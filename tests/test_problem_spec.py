"""One description of a search problem, shared by the CLI, live studies and recorded runs."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import optuna
import pytest

from apqopt.cli import main
from apqopt.errors import ConfigError
from apqopt.live import LiveSpec, load_spec
from apqopt.problem_spec import ProblemSpec, load_problem
from apqopt.record import study_record
from apqopt.search.problem import Problem
from apqopt.studies import open_storage


def test_a_spec_round_trips_and_builds_the_problem_it_describes() -> None:
    spec = ProblemSpec("fmnist", ("latency", "energy"), latency=0.5, pessimism=1.0)
    assert ProblemSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.digest() == ProblemSpec.from_dict(spec.to_dict()).digest() != ProblemSpec("fmnist").digest()
    problem = spec.build()
    assert problem.spec == spec and problem.objectives == ("latency", "energy") and problem.pessimism == 1.0
    assert dict(problem.constraints) == {"latency": 0.5}
    genes = problem.space.sample(20, 0)
    np.testing.assert_allclose(
        problem.predict(genes), load_problem("fmnist", latency=0.5, pessimism=1.0).predict(genes)
    )
    with pytest.raises(ConfigError, match="unknown field"):
        ProblemSpec.from_dict({"space": "fmnist", "latncy": 0.5})
    with pytest.raises(ConfigError, match="unknown cost"):
        ProblemSpec("fmnist", ("area",))


def test_a_problems_constraints_cannot_change_after_it_is_made() -> None:
    """A limit changed on a made Problem changed its results with no recorded setting to explain them."""
    problem = load_problem("fmnist", latency=0.5)
    with pytest.raises(TypeError, match="read-only"):
        problem.constraints["latency"] = 0.3  # type: ignore[index]
    with pytest.raises(TypeError, match="read-only"):
        problem.constraints.update(energy=1.0)  # type: ignore[attr-defined]
    other = dataclasses.replace(problem, constraints={"latency": 0.3})  # how to ask for another problem
    assert other.constraints == {"latency": 0.3} and problem.constraints == {"latency": 0.5}
    again = pickle.loads(pickle.dumps(problem.constraints))
    assert again == {"latency": 0.5} and json.loads(json.dumps(problem.constraints)) == {"latency": 0.5}
    assert isinstance(Problem(problem.space, problem.predictor, problem.lut).constraints, type(problem.constraints))


def test_the_cli_and_a_live_study_store_the_same_problem(tmp_path: Path) -> None:
    """`search` records the ProblemSpec of its options in the study; `search --live` stores the same
    description (kappa included) and its workers build their problem from it."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    common = ["--latency", "0.5", "--pessimism", "1.5", "--storage", url, "--quiet", "--seed", "0"]
    assert main(["search", "--searcher", "random", "--budget", "20", "--study", "rec", *common]) == 0
    live = ["search", "--searcher", "optuna-random", "--live", "--budget", "4", "--study", "live", *common]
    assert main(live) == 0
    store = open_storage(url)
    rec = study_record(optuna.load_study(study_name="rec", storage=store))
    live_study = optuna.load_study(study_name="live", storage=store)
    want = ProblemSpec("fmnist", latency=0.5, pessimism=1.5)
    assert ProblemSpec.from_dict(rec.problem or {}) == want
    assert ProblemSpec.from_dict(study_record(live_study).problem or {}) == want
    spec = load_spec(live_study)
    assert spec.problem_spec() == want and spec.problem_spec().build().pessimism == 1.5
    assert LiveSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ConfigError, match="--architecture"):
        LiveSpec.for_search(dataclasses.replace(want, architecture=want.build().space.smallest().to_dict()))
