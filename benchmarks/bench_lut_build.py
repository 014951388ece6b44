"""Build the full apq-mbv2 BitFusion table (779 shapes x 9 bit pairs) from cold caches, with 1 and 2
worker processes, and the fmnist table, in one run. Target: <= 60 s on this 2-core machine.

Run: python benchmarks/bench_lut_build.py
"""

from __future__ import annotations

import time

from _common import write

from apqopt.hardware.bitfusion import BitFusion, dense_conv_cost
from apqopt.hardware.build import build_lut
from apqopt.hardware.lut import load_shipped


def timed(space: str, workers: int) -> tuple[float, int, bool]:
    dense_conv_cost.cache_clear()
    t0 = time.perf_counter()
    lut = build_lut(space, BitFusion(), workers=workers, progress=False)
    dt = time.perf_counter() - t0
    same = lut.entries == load_shipped(space).entries
    return dt, len(lut), same


def main() -> None:
    rows = [["table", "workers", "entries", "seconds", "entries/s", "equals shipped"]]
    data = {}
    for space, workers in (("apq-mbv2", 1), ("apq-mbv2", 2), ("fmnist", 1)):
        dt, n, same = timed(space, workers)
        data[f"{space}_w{workers}"] = {"seconds": dt, "entries": n, "equals_shipped": same}
        rows.append([space, workers, n, f"{dt:.2f}", f"{n / dt:,.0f}", same])
    speedup = data["apq-mbv2_w1"]["seconds"] / data["apq-mbv2_w2"]["seconds"]
    data["two_worker_speedup"] = speedup
    data["target_s"] = 60
    write(
        "lut_build",
        data,
        rows,
        notes=f"2 workers vs 1: {speedup:.2f}x. Each layer's search covers every power-of-two tiling x all "
        "120 loop orders as one numpy array; repeated depthwise group shapes are cached.",
    )


if __name__ == "__main__":
    main()
