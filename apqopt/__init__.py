"""apqopt: hardware-aware joint search of architecture, channel pruning and mixed precision (APQ)."""

from apqopt.space import Block, Candidate, InvalidCandidateError, Layer, SearchSpace, Stage, get_space, space_names

__all__ = [
    "Block",
    "Candidate",
    "InvalidCandidateError",
    "Layer",
    "SearchSpace",
    "Stage",
    "get_space",
    "space_names",
]
__version__ = "0.1.0"
