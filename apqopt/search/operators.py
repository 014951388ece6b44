"""Variation operators on gene matrices (APQ §4), vectorised over whole batches.

Why apart from the space: the space says what a candidate is; how a searcher moves between
candidates is the searcher's business, and users' own algorithms (pymoo, DEAP, ...) can reuse these.
"""

from __future__ import annotations

import numpy as np

from apqopt.space import BLOCK_GENES, SearchSpace


def mutate(
    space: SearchSpace, genes: np.ndarray, prob: float = 0.1, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """APQ §4 mutation: each stage's depth, and each block's choices as a group, re-sampled with prob."""
    rng = np.random.default_rng(rng)
    genes = np.array(genes, dtype=np.int64)
    n = genes.shape[0]
    fresh = space.sample(n, rng)
    depth_hit = rng.random((n, space.n_stages)) < prob
    block_hit = np.repeat(rng.random((n, space.n_blocks)) < prob, len(BLOCK_GENES), axis=1)
    mask = np.concatenate([depth_hit, block_hit], axis=1)
    return np.where(mask, fresh, genes)


def crossover(
    space: SearchSpace, a: np.ndarray, b: np.ndarray, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """APQ §4 crossover: each stage depth and each block (all its genes) from either parent."""
    rng = np.random.default_rng(rng)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    n = a.shape[0]
    pick_depth = rng.random((n, space.n_stages)) < 0.5
    pick_block = np.repeat(rng.random((n, space.n_blocks)) < 0.5, len(BLOCK_GENES), axis=1)
    return np.where(np.concatenate([pick_depth, pick_block], axis=1), a, b)
