"""Price 50,000 random apq-mbv2 candidates through the shipped BitFusion LUT: vectorised vs a
per-candidate Python loop over the same table, in the same run. Target: >= 500,000 candidates/s.

Run: python benchmarks/bench_lut_pricing.py
"""

from __future__ import annotations

import time

import numpy as np
from _common import write

from apqopt import get_space
from apqopt.hardware.lut import load_shipped

N, N_LOOP, REPEATS = 50_000, 2_000, 5


def main() -> None:
    space = get_space("apq-mbv2")
    lut = load_shipped("apq-mbv2")
    genes = space.sample(N, 0)
    t0 = time.perf_counter()
    lut.price(space, genes[:1])  # compile once per space (cached on the table)
    compile_s = time.perf_counter() - t0
    vec = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        lat, en = lut.price(space, genes)
        vec.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    lat_loop, en_loop = lut.price_loop(space, genes[:N_LOOP])
    loop_s = time.perf_counter() - t0
    assert np.allclose(lat[:N_LOOP], lat_loop) and np.allclose(en[:N_LOOP], en_loop)
    vec_rate = N / float(np.median(vec))
    loop_rate = N_LOOP / loop_s
    write(
        "lut_pricing",
        {
            "candidates": N,
            "vectorised_s_median": float(np.median(vec)),
            "vectorised_per_s": vec_rate,
            "compile_s": compile_s,
            "loop_candidates": N_LOOP,
            "loop_per_s": loop_rate,
            "speedup": vec_rate / loop_rate,
            "target_per_s": 500_000,
            "meets_target": vec_rate >= 500_000,
        },
        [
            ["method", "candidates", "seconds", "candidates/s"],
            ["vectorised `LUT.price` (median of 5)", N, f"{np.median(vec):.4f}", f"{vec_rate:,.0f}"],
            ["per-candidate loop `LUT.price_candidate`", N_LOOP, f"{loop_s:.3f}", f"{loop_rate:,.0f}"],
            ["ratio", "", "", f"{vec_rate / loop_rate:,.0f}x"],
        ],
        notes=f"One-off compile of the per-block tables: {compile_s * 1e3:.0f} ms. Target >= 500,000/s: "
        f"{'met' if vec_rate >= 500_000 else 'NOT met'}.",
    )


if __name__ == "__main__":
    main()
