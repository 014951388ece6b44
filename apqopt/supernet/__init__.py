"""The measured half: data, the elastic supernet, its training, quantization and measurement.

``load_ofa_supernet`` (APQ's ImageNet supernet) is importable from here; loaded on first use, so that
importing a submodule costs only that submodule.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "load_ofa_supernet":
        from apqopt.supernet.ofa import load_ofa_supernet

        return load_ofa_supernet
    raise AttributeError(f"module 'apqopt.supernet' has no attribute {name!r}")


__all__ = ["load_ofa_supernet"]
