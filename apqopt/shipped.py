"""Where the assets shipped inside the package live (tables, supernet weights, predictors, datasets).

Why one module: every command and searcher that falls back to "the shipped one" must agree on the
path, on every machine a live study's workers run on.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def asset_dir(space: str) -> Path:
    return ASSETS / space


def supernet_path(space: str) -> Path:
    return asset_dir(space) / "supernet.pt"


def predictor_path(space: str, kind: str = "quant") -> Path:
    """The shipped predictor: ``quant`` (quantization-aware, what searches use) or ``fp``."""
    return asset_dir(space) / "predictor" / f"{kind}.pt"


# The quantized datasets the shipped predictor learnt from, pooled (`apqopt predictor train --quant ...`,
# scripts/build-fmnist-assets.sh): a uniform draw and, since #32, a cost draw that reaches the cheap and
# dear ends where searches go. refine fine-tunes on the same pool; benchmarks leave these networks out.
QUANT_TRAINING = ("quant.jsonl", "quant_cost.jsonl")


def quant_training_paths(space: str) -> list[Path]:
    """The shipped predictor's quantized training datasets that ``space`` has (a dataset may be sharded)."""
    folder = asset_dir(space)
    return [folder / n for n in QUANT_TRAINING if any(folder.glob(f"{Path(n).stem}.*jsonl"))]


def sensitivity_path(space: str) -> Path:
    """The shipped supernet-wide sensitivity table (``joint-ilp``'s per-layer costs; `apqopt sensitivity`)."""
    return asset_dir(space) / "sensitivity.json"


def tables_dir() -> Path:
    """The shipped tables: the repository's top-level ``lut/`` folder, installed as ``apqopt.tables``."""
    return Path(str(resources.files("apqopt.tables")))


def lut_path(space: str, hardware: str = "bitfusion") -> Path:
    """The shipped lookup table of a space for a hardware model (built by `apqopt lut build`)."""
    return tables_dir() / f"{hardware}_{space}.csv"
