"""Who wins, and how sure: paired comparisons of searchers over seeds.

Why: with a handful of seeds, a table of means orders searchers whether or not the order would
survive another seed. Runs of two searchers with the same seed share the seed's random start, so
each seed gives one paired difference. The verdict uses a paired t-test over the seeds (two-sided,
``alpha`` 0.05) and reports the mean difference with that test's own 95% interval (mean ± t·sd/√n), so
the interval excludes zero exactly when p < 0.05: one procedure, never a p value and an interval that
disagree. "A > B" is said only when the test separates them; otherwise "not separable with N seeds".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Verdict:
    a: str
    b: str
    metric: str
    n: int
    mean_diff: float  # mean over seeds of a - b
    ci: tuple[float, float]  # the paired t-test's 95% interval of the mean difference
    p: float  # paired t-test, two-sided (1.0 when every difference is zero)
    separable: bool

    def line(self) -> str:
        if not self.separable:
            return (
                f"{self.a} and {self.b} are not separable with {self.n} seeds "
                f"({self.metric} difference {self.mean_diff:+.4g}, paired t-test 95% CI "
                f"[{self.ci[0]:+.4g}, {self.ci[1]:+.4g}], p = {self.p:.2g})"
            )
        hi, lo = (self.a, self.b) if self.mean_diff > 0 else (self.b, self.a)
        return (
            f"{hi} > {lo} (p = {self.p:.2g}, paired t-test over {self.n} seeds; {self.metric} difference "
            f"{abs(self.mean_diff):.4g}, 95% CI [{self.ci[0]:+.4g}, {self.ci[1]:+.4g}] for {self.a} - {self.b})"
        )


def paired_verdict(
    a: str,
    a_by_seed: dict[int, float],
    b: str,
    b_by_seed: dict[int, float],
    metric: str = "HV",
    alpha: float = 0.05,
) -> Verdict:
    """Compare two searchers on the seeds both ran (higher is better)."""
    seeds = sorted(set(a_by_seed) & set(b_by_seed))
    d = np.array([a_by_seed[s] - b_by_seed[s] for s in seeds], dtype=np.float64)
    n = len(d)
    if n == 0:
        return Verdict(a, b, metric, 0, float("nan"), (float("nan"), float("nan")), 1.0, False)
    mean = float(d.mean())
    if n < 2 or np.allclose(d, d[0]):  # no spread: a t-test is undefined; identical runs are a tie
        p = 1.0 if np.allclose(d, 0) or n < 2 else 0.0
        ci = (mean, mean) if n >= 2 else (float("-inf"), float("inf"))
    else:
        res = stats.ttest_rel([a_by_seed[s] for s in seeds], [b_by_seed[s] for s in seeds])
        p = float(res.pvalue)
        low, high = res.confidence_interval(1 - alpha)
        ci = (float(low), float(high))
    return Verdict(a, b, metric, n, mean, ci, p, bool(p < alpha and n >= 2))


def all_verdicts(by_searcher: dict[str, dict[int, float]], metric: str = "HV") -> list[Verdict]:
    """Every pair of searchers, in the order given (best first if the caller sorted them)."""
    names = list(by_searcher)
    return [
        paired_verdict(x, by_searcher[x], y, by_searcher[y], metric)
        for i, x in enumerate(names)
        for y in names[i + 1 :]
    ]
