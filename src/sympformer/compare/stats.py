"""Statistics over seeds: summaries and paired tests (scipy.stats), shared by the reports."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Summary:
    """Mean and sample sd (ddof 1; NaN for one value) over seeds, and the values by seed index."""

    mean: float
    sd: float
    n: int
    values: dict[int, float]


def summarize(values: Mapping[int, float]) -> Summary:
    a = np.asarray(list(values.values()), dtype=np.float64)
    if a.size == 0:
        return Summary(math.nan, math.nan, 0, {})
    sd = float(np.std(a, ddof=1)) if a.size > 1 else math.nan
    return Summary(float(np.mean(a)), sd, int(a.size), dict(values))


@dataclass(frozen=True)
class Paired:
    """Paired t-test of a row against another over the seeds both finished
    (scipy.stats.ttest_rel, two-sided)."""

    n: int
    mean_diff: float
    """Mean of (row - other) over seeds."""
    sd_diff: float
    """Sample sd (ddof 1) of the differences."""
    t: float
    p: float


def paired_test(row: Mapping[int, float], other: Mapping[int, float]) -> Paired:
    """Pair by seed index; NaN statistics with fewer than two pairs or constant differences of 0
    (constant non-zero differences: t = ±inf, p = 0)."""
    seeds = sorted(set(row) & set(other))
    d = np.array([row[k] - other[k] for k in seeds], dtype=np.float64)
    if len(seeds) < 2:
        return Paired(len(seeds), float(d.mean()) if len(seeds) else math.nan, *(math.nan,) * 3)
    if np.all(d == d[0]):  # ttest_rel would divide by zero
        t = math.nan if d[0] == 0 else math.copysign(math.inf, d[0])
        return Paired(len(seeds), float(d.mean()), 0.0, t, math.nan if d[0] == 0 else 0.0)
    a = np.array([row[k] for k in seeds], dtype=np.float64)
    b = np.array([other[k] for k in seeds], dtype=np.float64)
    result = stats.ttest_rel(a, b)
    return Paired(len(seeds), float(d.mean()), float(np.std(d, ddof=1)),
                  float(result.statistic), float(result.pvalue))  # fmt: skip


def critical_effect(n: int) -> float:
    """|mean diff| / sd of the differences that a two-sided paired t-test with n pairs needs for
    p < 0.05: t_{0.975, n-1} / sqrt(n) (NaN below two pairs)."""
    return math.nan if n < 2 else float(stats.t.ppf(0.975, n - 1) / math.sqrt(n))


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(25th, 50th, 75th) percentiles (numpy's linear interpolation); NaN when empty."""
    if not len(values):
        return (math.nan,) * 3
    q = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])
