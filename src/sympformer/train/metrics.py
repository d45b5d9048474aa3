"""metrics.csv (one row per logged step) and loss.png.

Floats are written with `repr`, so equal values give equal bytes and a resumed run's rows can be
compared to an uninterrupted run's exactly. A blank cell means "not measured at this step".
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sympformer.files import atomic_write, atomic_write_text

BASE_COLUMNS = (
    "step",
    "tokens",
    "time_s",
    "lr",
    "train_loss",
    "val_loss",
    "grad_norm",
    "skipped",
)
"""The fixed columns; the model's learned scalars (LanguageModel.scalars()) follow."""

WALL_CLOCK_COLUMNS = ("time_s",)
"""Columns that differ between otherwise identical runs."""


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class MetricsLog:
    """Appends rows to metrics.csv, flushing each one (fsync on demand, before checkpoints)."""

    def __init__(self, path: Path, scalar_names: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = (*BASE_COLUMNS, *scalar_names)
        self._file: io.TextIOWrapper | None = None

    def start(self, keep_before_step: int | None) -> None:
        """Open for appending. None: a new file with just the header. Otherwise keep the rows of
        steps < keep_before_step (a resume drops what came after its checkpoint, and a row cut
        off by a crash), rewriting the file atomically."""
        header = ",".join(self.columns)
        if keep_before_step is None or not self.path.exists():
            kept: list[str] = []
        else:
            text = self.path.read_text()
            lines = text.split("\n")
            lines.pop()  # after the last "\n": empty, or a partial row of a killed process
            if not lines or lines[0] != header:
                raise ValueError(
                    f"{self.path} has other columns than this run writes; move it away to resume"
                )
            kept = [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) < keep_before_step]
        atomic_write_text(self.path, "\n".join([header, *kept]) + "\n")
        self._file = open(self.path, "a", newline="")  # kept open for the run

    def append(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"metrics row has unknown columns {sorted(unknown)}")
        assert self._file is not None, "MetricsLog.start() was not called"
        self._file.write(",".join(format_cell(row.get(c)) for c in self.columns) + "\n")
        self._file.flush()

    def sync(self) -> None:
        """Make the rows so far durable (called before each checkpoint)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv as dicts of strings (blank cells are "")."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def finite_values(rows: list[dict[str, str]], column: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows of `read_metrics` whose `column` is a finite number."""
    steps, values = [], []
    for row in rows:
        cell = row.get(column, "")
        if cell != "" and math.isfinite(float(cell)):
            steps.append(int(row["step"]))
            values.append(float(cell))
    return steps, values


def plot_losses(metrics: Path, png: Path, title: str = "", baseline: float | None = None) -> None:
    """Train and validation loss against step, written to `png` (matplotlib, no display);
    `baseline` (e.g. the unigram entropy) is drawn as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_metrics(metrics)
    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(*finite_values(rows, "train_loss"), lw=1, alpha=0.8, label="train")
    ax.plot(*finite_values(rows, "val_loss"), "o-", ms=4, label="validation")
    if baseline is not None:
        ax.axhline(baseline, ls="--", c="gray", lw=1, label=f"unigram entropy {baseline:.3f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
