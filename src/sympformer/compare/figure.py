"""Figure 2 of a comparison: training and validation loss against step and wall-clock."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sympformer.compare.records import RowStats, RunNumbers
from sympformer.files import atomic_write
from sympformer.train import read_metrics
from sympformer.train.metrics import finite_values
from sympformer.train.run_dir import METRICS_CSV


def _series(rows: list[dict[str, str]], column: str) -> dict[int, float]:
    return dict(zip(*finite_values(rows, column), strict=True))


SMOOTHING = 40
"""Figure 2 draws the training loss as a trailing mean over max_steps / SMOOTHING steps: one
batch's loss is too noisy to tell rows apart (validation points are not smoothed)."""


def _trailing_mean(series: dict[int, float], window: int) -> dict[int, float]:
    """{step: mean of the values at this and the window - 1 previous logged steps}."""
    steps = sorted(series)
    total = np.cumsum([0.0] + [series[k] for k in steps])
    return {
        k: (total[i + 1] - total[max(0, i + 1 - window)]) / min(i + 1, window)
        for i, k in enumerate(steps)
    }


def _band(per_seed: Sequence[dict[int, float]]) -> tuple[np.ndarray, ...]:
    """(steps in every seed, mean, min, max) of per-seed {step: value}."""
    common = sorted(set.intersection(*(set(s) for s in per_seed))) if per_seed else []
    v = np.array([[s[k] for k in common] for s in per_seed], dtype=np.float64)
    if not common:
        return (np.zeros(0),) * 4
    return np.array(common), v.mean(axis=0), v.min(axis=0), v.max(axis=0)


def plot_curves(
    runs_dir: Path,
    table: Sequence[RowStats],
    numbers: Sequence[RunNumbers],
    png: Path,
    title: str,
) -> None:
    """Figure 2: training (lines, trailing mean, see SMOOTHING) and validation (circles) loss
    against step and against wall-clock; per row the mean over its finished seeds with a min-max
    band."""
    from matplotlib import cm
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = math.ceil(len(table) / 2) if len(table) > 4 else 1
    fig = Figure(figsize=(12, 4.8 + 0.2 * rows), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    # one distinct colour per row: the default cycle has 10, tab20 twice as many
    colours = [f"C{i}" if len(table) <= 10 else cm.tab20(i % 20) for i in range(len(table))]
    lows, highs, windows = [], [], set()
    entropy = [n.unigram_entropy for n in numbers if math.isfinite(n.unigram_entropy)]
    for colour, r in zip(colours, table, strict=True):
        metrics = [
            read_metrics(runs_dir / n.name / METRICS_CSV)
            for n in numbers
            if n.label == r.label and n.status == "finished"
        ]
        if not metrics:
            continue
        times = [_series(m, "time_s") for m in metrics]
        window = max(1, round(r.max_steps / SMOOTHING))
        windows.add(window)
        for column, style in (("train_loss", "line"), ("val_loss", "points")):
            series = [_series(m, column) for m in metrics]
            if style == "line":
                series = [_trailing_mean(one, window) for one in series]
            steps, mean, lo, hi = _band(series)
            if steps.size == 0:
                continue
            t = np.array([np.mean([s[k] for s in times]) for k in steps])
            for ax, x in ((by_step, steps), (by_time, t)):
                if style == "line":
                    label = r.label if ax is by_step else None
                    ax.plot(x, mean, color=colour, lw=0.9, label=label)
                    ax.fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
                else:  # few points: min-max as error bars, not a band
                    yerr = np.stack([mean - lo, hi - mean])
                    ax.errorbar(
                        x, mean, yerr=yerr, fmt="o", color=colour, ms=4, mfc="white", mew=1.2,
                        capsize=2, lw=0.8,
                    )  # fmt: skip
            lows.append(float(lo.min()))
            late = steps >= 0.1 * r.max_steps
            if late.any():
                highs.append(float(hi[late].max()))
    for ax, xlabel in ((by_step, "optimizer step"), (by_time, "wall-clock (s)")):
        if entropy:
            ax.axhline(entropy[0], ls="--", c="gray", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    if lows and highs:
        lo, hi = min(lows), max(highs)
        pad = 0.05 * (hi - lo) if hi > lo else 0.1
        by_step.set_ylim(lo - pad, hi + pad)  # the first 10 % of training would hide the rest
    by_step.set_ylabel("cross-entropy (nats/token)")
    smoothing = f", trailing mean of {'/'.join(map(str, sorted(windows)))} steps" if windows else ""
    by_step.set_title(
        f"lines: training{smoothing};\ncircles: validation; mean over seeds, min-max", fontsize=9
    )
    by_time.set_title(
        "x: mean wall-clock over seeds at each step"
        + (f";\ndashed: val unigram entropy {entropy[0]:.3f}" if entropy else ""),
        fontsize=9,
    )
    # below the axes: long variant labels would hide the curves
    fig.legend(loc="outside lower center", ncol=2 if len(table) > 4 else len(table), fontsize=8)
    fig.suptitle(title, fontsize=10)
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
