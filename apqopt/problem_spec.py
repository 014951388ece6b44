"""A search problem as data: what the CLI, live studies, recorded runs and their attributes share.

Why: a :class:`~apqopt.search.problem.Problem` holds loaded objects (a predictor, a table); what a
command, a live study's workers on other machines and a study's attributes need is the *description*
those objects came from -- the space, the costs and their limits, and which predictor and table files.
One :class:`ProblemSpec` spells it once, serialises it (``to_dict``/``from_dict``), fingerprints it
(``digest``) and builds the Problem (``build``). Loading files is done here, not in ``search/``, so the
searchers stay free of torch and of file formats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apqopt.errors import ConfigError
from apqopt.hardware.lut import COSTS, LUT, load_shipped
from apqopt.search.problem import Problem
from apqopt.space import Candidate, get_space


@dataclass(frozen=True)
class ProblemSpec:
    """The description of a Problem (file paths as given; None: the space's shipped predictor/table).

    ``architecture``: a candidate (its dict) whose architecture is fixed, only its bits searched;
    ``apq_checkpoint``: APQ's released ``acc_quant.pt`` instead of an apqopt predictor."""

    space: str = "fmnist"
    objectives: tuple[str, ...] = ("latency",)
    latency: float | None = None
    energy: float | None = None
    predictor: str | None = None
    apq_checkpoint: str | None = None
    lut: str | None = None
    architecture: Mapping[str, Any] | None = None
    allow_missing: bool = False
    pessimism: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", tuple(self.objectives))
        for name in ("predictor", "apq_checkpoint", "lut"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value in (None, "") else str(value))
        if self.architecture is not None:
            arch = self.architecture
            object.__setattr__(self, "architecture", arch.to_dict() if isinstance(arch, Candidate) else dict(arch))
        if self.predictor and self.apq_checkpoint:
            raise ConfigError("predictor (--predictor) and apq_checkpoint (--apq-checkpoint) both given: use one")
        for name in self.objectives:
            if name not in COSTS:
                raise ConfigError(f"unknown cost '{name}'; choose from {list(COSTS)}")

    @property
    def constraints(self) -> dict[str, float]:
        """The cost limits that are set, in the costs' order."""
        return {k: v for k, v in (("latency", self.latency), ("energy", self.energy)) if v is not None}

    # ------------------------------------------------------------------ data
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["objectives"] = list(self.objectives)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProblemSpec:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"problem spec: unknown field(s) {sorted(unknown)}")
        return cls(**{**d, "objectives": tuple(d.get("objectives", ("latency",)))})

    def digest(self) -> str:
        """A short fingerprint of the description (equal specs, equal digests)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ objects
    def build(self) -> Problem:
        """The Problem: the space's shipped predictor and table unless files are named."""
        from apqopt.predictor import AccuracyPredictor  # torch: loaded only when a problem is built
        from apqopt.shipped import predictor_path

        sp = get_space(self.space)
        if self.apq_checkpoint:
            pred = AccuracyPredictor.from_apq_checkpoint(self.apq_checkpoint, space=sp.name)
        else:
            path = Path(self.predictor) if self.predictor else predictor_path(sp.name)
            if not path.exists():
                raise ConfigError(
                    f"no accuracy predictor at {path}; train one with `apqopt predictor train` "
                    "or pass a predictor file / APQ's acc_quant.pt"
                )
            pred = AccuracyPredictor.load(path, space=sp.name)
        table = LUT.load(self.lut) if self.lut else load_shipped(sp.name)
        problem = Problem(
            sp,
            pred,
            table,
            self.objectives,
            self.constraints,
            allow_missing=self.allow_missing,
            pessimism=self.pessimism,
            spec=self,
        )
        if self.architecture is None:
            return problem
        return problem.restricted_to(Candidate.from_dict(dict(self.architecture), sp))


def load_problem(space: str = "fmnist", **kwargs: Any) -> Problem:
    """``ProblemSpec(space, **kwargs).build()``: a Problem from names and files, e.g.
    ``load_problem("fmnist", latency=0.5)`` (the shipped predictor and BitFusion table)."""
    return ProblemSpec(space, **kwargs).build()


__all__ = ["ProblemSpec", "load_problem"]
