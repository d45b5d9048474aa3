"""The typed records of a comparison's report: what one run folder reports (`RunNumbers`), the
per-row statistics (`RowStats`), the paired tests (`PairedTest`) and the `Report` they form.
summary.json is the Report's serialisation; `tables` and `figure` render it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sympformer.compare.stats import Paired, Summary


@dataclass(frozen=True)
class RunNumbers:
    """What one run folder reports (status "diverged": the numbers of its last logged step)."""

    name: str
    label: str
    index: int
    """Seed index k (the run's seed is base seed + k)."""
    seed: int
    status: str
    """finished | diverged | unfinished."""
    params: int
    steps: int
    tokens: int
    wallclock_s: float
    """Cumulative seconds in the training loop at the last step (evaluations included)."""
    tokens_per_s: float
    last_val_loss: float
    """Validation loss at the last evaluation (the last step of a finished run)."""
    best_val_loss: float
    best_val_step: int | None
    unigram_entropy: float
    val_tokens: int
    """Tokens of the fixed validation set."""
    train_tokens: int
    """Tokens of the training split (epochs = tokens / train_tokens)."""


@dataclass(frozen=True)
class Column:
    key: str
    """Attribute of RunNumbers."""
    title: str
    decimals: int
    better: Callable[[Sequence[float]], float] | None
    """min or max: the best row is bold; None: not ranked."""


COLUMNS = (
    Column("params", "params", 0, None),
    Column("last_val_loss", "last val loss", 4, min),
    Column("best_val_loss", "best val loss", 4, min),
    Column("wallclock_s", "wall-clock (s)", 1, min),
    Column("tokens_per_s", "tokens/s", 0, max),
)
"""Table 1's columns: mean ± sd over the finished seeds of each row."""

TESTED = "last_val_loss"
"""The metric of the paired tests."""

EQUAL_STEPS, EQUAL_WALLCLOCK, MORE_STEPS = "equal steps", "equal wall-clock", "more steps"
"""Bases of a paired test: both rows trained for the same steps; a row against the reference
trained for the slowest row's wall-clock; the reference's wall-clock copy against itself."""


@dataclass(frozen=True)
class NotFinished:
    index: int
    status: str


@dataclass(frozen=True)
class RowStats:
    """One row of Table 1: its model, budget and per-column statistics over seeds."""

    label: str
    variant: str
    """The model variant's label (gpt for the automatic GPT rows, whose size differs)."""
    d_model: int
    mlp_hidden: int
    max_steps: int
    note: str
    seeds: int
    not_finished: list[NotFinished]
    metrics: dict[str, Summary]
    """Column key -> Summary over the finished seeds."""


@dataclass(frozen=True)
class PairedTest(Paired):
    """A paired test of TESTED: `row` against `other`, at equal steps or equal wall-clock."""

    row: str = ""
    other: str = ""
    basis: str = EQUAL_STEPS


@dataclass(frozen=True)
class Report:
    title: str
    reference: str
    rows: list[RowStats]
    tests: list[PairedTest]
    notes: list[str]

    def best(self) -> dict[str, set[str]]:
        """Column key -> labels whose mean is the best of the column (ties: all)."""
        out: dict[str, set[str]] = {}
        for c in COLUMNS:
            means = {r.label: r.metrics[c.key].mean for r in self.rows}
            finite = [m for m in means.values() if math.isfinite(m)]
            target = c.better(finite) if c.better is not None and finite else None
            out[c.key] = {label for label, m in means.items() if m == target}
        return out
