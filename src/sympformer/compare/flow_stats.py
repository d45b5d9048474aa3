"""Statistics of a flow study over seeds: per problem × κ × c_log × ε × scheme, the paired ratio
classical/scheme (> 1: the scheme is better) of the gap at K and of the calls to each tolerance.

Gap ratios: median and quartiles over seeds, wins (ratio > 1) and ties (equal gaps, e.g. both at
round-off), and a two-sided Wilcoxon signed-rank test on the paired log gaps (scipy.stats; zero
differences dropped). Calls ratios: censored values (tolerance not reached within K) are never
replaced by numbers: the quartiles are over the seeds where both methods reached the tolerance,
and wins/losses/censoring are counted separately."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sympformer.compare.flow import CLASSICAL, GAP_AT_K, METRICS, Instance, MethodResult

MIN_PAIRS = 6
"""Below this many untied pairs the two-sided Wilcoxon p-value cannot fall below 0.05."""


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) with linear interpolation, in the extended reals: a quartile between a
    finite value and +inf is +inf (NaN for an empty list)."""
    a = np.sort(np.asarray(values, dtype=np.float64))
    if a.size == 0:
        return math.nan, math.nan, math.nan
    out = []
    for q in (0.25, 0.5, 0.75):
        pos = q * (a.size - 1)
        lo, w = int(math.floor(pos)), pos - math.floor(pos)
        if w == 0 or a[lo] == a[lo + 1]:
            out.append(float(a[lo]))
        else:
            with np.errstate(invalid="ignore"):
                out.append(float(a[lo] + w * (a[lo + 1] - a[lo])))
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class GapStat:
    """Ratio classical gap / scheme gap at K over the seeds."""

    n: int
    q1: float
    median: float
    q3: float
    wins: int
    """Seeds where the scheme's gap is smaller."""
    ties: int
    p: float
    """Two-sided Wilcoxon signed-rank p on the paired log gaps; NaN when not computable."""
    note: str = ""


def gap_stat(classical: Sequence[float], scheme: Sequence[float]) -> GapStat:
    """Paired by position; gaps are >= round-off and may be +inf (diverged at every step)."""
    c, s = np.asarray(classical, dtype=np.float64), np.asarray(scheme, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(c == s, 1.0, c / s)  # inf/inf (both diverged) is a tie
        d = np.where(c == s, 0.0, np.log(c) - np.log(s))
    q1, med, q3 = quartiles(ratio)
    nonzero = int(np.count_nonzero(d))
    if nonzero < 2:
        p, note = math.nan, f"Wilcoxon needs >= 2 untied pairs, has {nonzero}"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
        note = "" if nonzero >= MIN_PAIRS else f"{nonzero} untied pairs: p >= 0.0625 by design"
    wins, ties = int(np.sum(ratio > 1)), int(np.sum(ratio == 1))
    return GapStat(int(c.size), q1, med, q3, wins, ties, p, note)


@dataclass(frozen=True)
class CallsStat:
    """Calls to one tolerance, classical vs scheme, with censoring kept explicit."""

    n: int
    both: int
    """Seeds where both reached the tolerance: the quartiles of classical/scheme are over these."""
    q1: float
    median: float
    q3: float
    wins: int
    """Scheme faster, or only the scheme reached the tolerance."""
    losses: int
    """Classical faster, or only the classical flow reached the tolerance."""
    ties: int
    """Both reached it with the same number of calls."""
    censored_classical: int
    censored_scheme: int


def calls_stat(classical: Sequence[float | None], scheme: Sequence[float | None]) -> CallsStat:
    """Paired by position; None = not reached within K (censored)."""
    pairs = list(zip(classical, scheme, strict=True))
    both = [(c, s) for c, s in pairs if c is not None and s is not None]
    q1, med, q3 = quartiles([c / s for c, s in both])
    wins = sum(1 for c, s in pairs if s is not None and (c is None or s < c))
    losses = sum(1 for c, s in pairs if c is not None and (s is None or c < s))
    ties = sum(1 for c, s in both if c == s)
    cens_c = sum(1 for c, _ in pairs if c is None)
    cens_s = sum(1 for _, s in pairs if s is None)
    return CallsStat(len(pairs), len(both), q1, med, q3, wins, losses, ties, cens_c, cens_s)


@dataclass(frozen=True)
class Cell:
    """One problem × κ × c_log × ε × scheme over its seeds."""

    problem: str
    kappa: float | None
    c_log: float
    eps: float | None
    scheme: str
    seeds: tuple[int, ...]
    gap: GapStat
    calls: dict[str, CallsStat]
    """Per calls metric (calls_1e-2, ...)."""
    h: dict[str, dict[float, int]]
    """Per metric: how often each step size was the best (censored runs left out)."""


def summarize(results: Sequence[MethodResult]) -> list[Cell]:
    """Cells in the order their instances and schemes first appear."""
    by_key: dict[tuple[Instance, str], MethodResult] = {(r.instance, r.scheme): r for r in results}
    groups: dict[tuple, list[Instance]] = {}
    schemes: dict[str, None] = {}
    for r in results:
        inst = r.instance
        key = (inst.problem, inst.kappa, inst.c_log, inst.eps)
        if inst not in groups.setdefault(key, []):
            groups[key].append(inst)
        if r.scheme != CLASSICAL:
            schemes[r.scheme] = None
    cells = []
    for key, instances in groups.items():
        for scheme in schemes:
            pairs = [
                (by_key[(i, CLASSICAL)], by_key[(i, scheme)])
                for i in instances
                if (i, scheme) in by_key and (i, CLASSICAL) in by_key
            ]
            if not pairs:
                continue
            values = {
                m: ([c.choices[k].value for c, _ in pairs], [s.choices[k].value for _, s in pairs])
                for k, m in enumerate(METRICS)
            }
            h_counts: dict[str, dict[float, int]] = {}
            for k, m in enumerate(METRICS):
                hs = [s.choices[k].h for _, s in pairs if s.choices[k].h is not None]
                h_counts[m] = {h: hs.count(h) for h in sorted(set(hs))}
            cells.append(
                Cell(
                    *key,
                    scheme,
                    tuple(c.instance.seed for c, _ in pairs),
                    gap_stat(*values[GAP_AT_K]),
                    {m: calls_stat(*values[m]) for m in METRICS[1:]},
                    h_counts,
                )
            )
    return cells
