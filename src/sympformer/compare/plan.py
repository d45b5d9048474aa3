"""What a comparison trains: its config, its rows and its runs (row x seed).

Rows are model variants (their labels are `Variant` labels, the one spelling of the package) plus
automatic GPT controls: `gpt` (always, the default reference), `gpt-matched` (a GPT with the
parameter count of the largest variant) and `<reference>-wallclock` (the reference row trained for
as many steps as the slowest row's wall-clock buys it, measured in the comparison).

Paired tests compare rows seed by seed: every row against the reference row (at equal steps),
every row against the wall-clock-matched reference (at equal wall-clock), and the pairs named by
``chain`` (consecutive rows of it) and ``pairs``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sympformer.check import positive_int
from sympformer.model import ModelConfig, Variant, count_params, matched_gpt
from sympformer.train import (
    RESUMABLE_FIELDS,
    ExperimentConfig,
    preset_config,
    with_absolute_paths,
)

BASELINE, MATCHED, WALLCLOCK = "gpt", "gpt-matched", "-wallclock"
"""Labels of the automatic rows: the GPT baseline, the parameter-matched GPT, and the suffix of
the reference's wall-clock-matched copy."""

MATCH_TOLERANCE = 0.02
"""gpt-matched must have a parameter count within this fraction of the largest variant's."""

DEFAULT_COMPARE_PRESET = "compare-cpu"
FORMAT = 2
"""Format of compare.json and summary.json (2: reference, chain, pairs; typed report)."""

COMPARABLE_FIELDS = RESUMABLE_FIELDS - {"train.max_steps", "preset"}
"""Config fields ignored when a call is checked against DIR/compare.json (they change neither
the data, the model nor the budget; e.g. train.device, train.progress, data.cache_dir)."""

PAIR_SEP = " vs "


def parse_run(entry: str) -> str:
    """The row label of one `--runs` entry: a model variant (`sympformer.model.variant`: "arch",
    "arch:scheme", then optionally "/zero" or "/learned" and "+ingredient=value" options), in its
    one spelling ("symp" is "symp:presymp_euler"; values equal to the arch's default are dropped).

    Raises:
        ValueError: an unknown arch, scheme, velocity or ingredient, or a combination the arch
            does not take.
    """
    try:
        return str(Variant.parse(entry))
    except ValueError as err:
        raise ValueError(f"CompareConfig.runs entry {entry.strip()!r}: {err}") from None


def _labels(value: str | Sequence[str], name: str, sep: str = ",") -> tuple[str, ...]:
    items = value.split(sep) if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(r, str) for r in items):
        raise ValueError(f"CompareConfig.{name}={value!r} must be a list of strings")
    return tuple(item.strip() for item in items if item.strip())


@dataclass(frozen=True)
class CompareConfig:
    """What a comparison trains and tests: rows x seeds, all from one base experiment config."""

    runs: tuple[str, ...] = ("gpt", "yurii", "symp:presymp_euler", "symp_linear:presymp_euler")
    """Variants (`Variant` labels; a comma-separated string is accepted), normalised to their one
    spelling. The baseline gpt is always trained (added first if missing)."""
    seeds: int = 3
    """Seeds per row: seed k (0-based) trains with base.train.seed + k for every row."""
    base: ExperimentConfig = field(default_factory=lambda: preset_config(DEFAULT_COMPARE_PRESET))
    """Data, model size and training settings shared by every run (the variant fields are
    replaced per row)."""
    matched_gpt: bool = True
    """Add gpt-matched: a GPT whose width and MLP width give the parameter count of the largest
    variant (within 2 %)."""
    wallclock_matched: bool = False
    """Add <reference>-wallclock: the reference row trained for more steps, so that its wall-clock
    matches the slowest row's mean (measured in this comparison, see `wallclock_plan`)."""
    reference: str = BASELINE
    """The row every row is tested against, and whose wall-clock-matched copy is trained: gpt,
    gpt-matched or a --runs label."""
    chain: tuple[str, ...] = ()
    """Rows in order (labels; a comma-separated string is accepted): each is also tested against
    the one before it, e.g. a chain of one-ingredient changes."""
    pairs: tuple[str, ...] = ()
    """More paired tests, each "ROW vs OTHER" (a ";"-separated string is accepted)."""

    def __post_init__(self) -> None:
        entries = _labels(self.runs, "runs")
        if not entries:
            raise ValueError(f"CompareConfig.runs={self.runs!r} names no run (e.g. 'gpt,yurii')")
        labels = [parse_run(r) for r in entries]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"CompareConfig.runs names {duplicates} more than once")
        if BASELINE not in labels:
            labels.insert(0, BASELINE)  # the reference of every paired test by default
        object.__setattr__(self, "runs", tuple(labels))
        positive_int("CompareConfig.seeds", self.seeds)
        if not isinstance(self.base, ExperimentConfig):
            raise ValueError("CompareConfig.base must be an ExperimentConfig")
        for name in ("matched_gpt", "wallclock_matched"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CompareConfig.{name}={getattr(self, name)!r} must be a boolean")
        reference = self.reference.strip() if isinstance(self.reference, str) else self.reference
        if reference != MATCHED:
            reference = self._known(reference, self.runs)
        elif not self.matched_gpt:
            raise ValueError("CompareConfig.reference='gpt-matched' needs matched_gpt=True")
        object.__setattr__(self, "reference", reference)
        rows = self.row_labels()
        pairs = []
        for text in _labels(self.pairs, "pairs", ";"):
            row, sep, other = text.partition(PAIR_SEP.strip())
            if not sep:
                raise ValueError(f"CompareConfig.pairs entry {text!r} is not 'ROW vs OTHER'")
            pairs.append(f"{self._known(row, rows)}{PAIR_SEP}{self._known(other, rows)}")
        object.__setattr__(self, "pairs", tuple(pairs))
        chain = tuple(self._known(label, rows) for label in _labels(self.chain, "chain"))
        object.__setattr__(self, "chain", chain)
        for label in labels:
            self.variant_model(label)  # an impossible combination fails now, before training

    def row_labels(self) -> tuple[str, ...]:
        """Every row the comparison can have (the automatic ones included)."""
        auto = (MATCHED,) if self.matched_gpt else ()
        wall = (f"{self.reference}{WALLCLOCK}",) if self.wallclock_matched else ()
        return (*self.runs, *auto, *wall)

    def _known(self, text: str, rows: Sequence[str]) -> str:
        """The row label `text` names (a label or any spelling of a variant among `rows`)."""
        if not isinstance(text, str):
            raise ValueError(f"CompareConfig: {text!r} is not a row label")
        text = text.strip()
        label = text if text in rows else parse_run(text)
        if label not in rows:
            raise ValueError(f"CompareConfig: {text!r} is not a row of this comparison {rows}")
        return label

    @property
    def seed_values(self) -> tuple[int, ...]:
        return tuple(self.base.train.seed + k for k in range(self.seeds))

    def variant_model(self, label: str, vocab_size: int | None = None) -> ModelConfig:
        """The ModelConfig of row `label` (see `parse_run`): the base model with this variant."""
        try:
            return Variant.parse(label).model(
                self.base.model, vocab_size=vocab_size or self.base.model.vocab_size
            )
        except ValueError as err:
            raise ValueError(f"CompareConfig.runs entry {label!r}: {err}") from None

    def tests(self) -> list[tuple[str, str]]:
        """The extra paired tests (row, other): the chain's consecutive rows, then `pairs`."""
        chained = list(zip(self.chain[1:], self.chain[:-1], strict=True))
        given = [tuple(p.split(PAIR_SEP)) for p in self.pairs]
        return [*chained, *(p for p in given if p not in chained)]

    def to_dict(self) -> dict[str, Any]:
        """What compare.json holds (paths made absolute, as `fit` saves them)."""
        return {
            "format": FORMAT,
            "runs": list(self.runs),
            "seeds": self.seeds,
            "matched_gpt": self.matched_gpt,
            "wallclock_matched": self.wallclock_matched,
            "reference": self.reference,
            "chain": list(self.chain),
            "pairs": list(self.pairs),
            "base": with_absolute_paths(self.base).to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareConfig:
        """Inverse of `to_dict` (format 1 files have no reference, chain or pairs)."""
        return cls(
            runs=tuple(d["runs"]),
            seeds=d["seeds"],
            base=ExperimentConfig.from_dict(d["base"]),
            matched_gpt=d["matched_gpt"],
            wallclock_matched=d["wallclock_matched"],
            reference=d.get("reference", BASELINE),
            chain=tuple(d.get("chain", ())),
            pairs=tuple(d.get("pairs", ())),
        )

    def command(self, out: Any) -> str:
        """An equivalent `sympformer compare` command line (fields the flags cannot set are in
        compare.json)."""
        b = self.base
        parts = [
            "sympformer compare",
            f"--runs {','.join(self.runs)}",
            f"--seeds {self.seeds}",
            f"--preset {b.preset}" if b.preset else "",
            f"--dataset {b.data.dataset}",
            f"--data {b.data.path}" if b.data.path else "",
            f"--tokenizer {b.data.tokenizer}",
            f"--max-steps {b.train.max_steps}",
            f"--seed {b.train.seed}",
            "" if self.matched_gpt else "--no-matched-gpt",
            "--wallclock-matched true" if self.wallclock_matched else "",
            f"--reference {self.reference}" if self.reference != BASELINE else "",
            f"--chain {','.join(self.chain)}" if self.chain else "",
            f"--pairs '{';'.join(self.pairs)}'" if self.pairs else "",
            f"--out {out}",
        ]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Row:
    """One line of Table 1: a model trained for `max_steps` steps with every seed."""

    label: str
    model: ModelConfig
    max_steps: int
    note: str = ""
    """How the row was derived (automatic rows)."""

    @property
    def slug(self) -> str:
        """Its folder name: the variant's slug (gpt-matched keeps its label)."""
        return row_slug(self.label)


def row_slug(label: str) -> str:
    if label.endswith(WALLCLOCK):
        return row_slug(label.removesuffix(WALLCLOCK)) + WALLCLOCK
    return label if label == MATCHED else Variant.parse(label).slug


@dataclass(frozen=True)
class Run:
    """One training run: row `row` with seed index `index`."""

    row: Row
    index: int
    cfg: ExperimentConfig

    @property
    def label(self) -> str:
        return self.row.label

    @property
    def name(self) -> str:
        """Folder name under DIR/runs."""
        return f"{self.row.slug}-seed{self.index}"


def plan_rows(cfg: CompareConfig, vocab_size: int) -> list[Row]:
    """The rows trained before any measurement: the `--runs` variants and gpt-matched.

    gpt-matched copies gpt's depth, heads and context and takes the width and MLP width that
    `matched_gpt` chooses for the parameter count of the largest non-baseline variant; it is
    left out when that is gpt itself (no variant is larger) or there is no variant.

    Raises:
        ValueError: no GPT within MATCH_TOLERANCE of the target exists.
    """
    max_steps = cfg.base.train.max_steps
    rows = [Row(label, cfg.variant_model(label, vocab_size), max_steps) for label in cfg.runs]
    variants = [r for r in rows if r.label != BASELINE]
    if not (cfg.matched_gpt and variants):
        return rows
    counts = {r.label: count_params(r.model) for r in variants}
    largest = max(counts, key=counts.__getitem__)
    target = counts[largest]
    gpt = next(r.model for r in rows if r.label == BASELINE)
    model = matched_gpt(target, gpt)
    params = count_params(model)
    if abs(params - target) > MATCH_TOLERANCE * target:
        raise ValueError(
            f"no GPT within {MATCH_TOLERANCE:.0%} of {largest}'s {target:,} parameters "
            f"(closest: {params:,}); use --matched-gpt false"
        )
    if model == gpt:
        return rows
    note = (
        f"GPT with d_model={model.d_model}, mlp_hidden={model.mlp_width}: {params:,} parameters, "
        f"{(params - target) / target:+.2%} vs the largest variant {largest} ({target:,})"
    )
    return [*rows, Row(MATCHED, model, max_steps, note)]


def plan_runs(cfg: CompareConfig, rows: Sequence[Row]) -> list[Run]:
    """Every (row, seed) as a Run; seed k of every row gets the same seed value. Ordered by seed,
    then row: the runs of one seed train close in time, so a drift in machine load spreads over
    all rows instead of one."""
    base = with_absolute_paths(cfg.base)  # as `fit` saves them in config.json
    runs = []
    for k, seed in enumerate(cfg.seed_values):
        for row in rows:
            train = dataclasses.replace(base.train, seed=seed, max_steps=row.max_steps)
            runs.append(Run(row, k, dataclasses.replace(base, model=row.model, train=train)))
    return runs


@dataclass(frozen=True)
class WallclockPlan:
    """How many steps the reference's wall-clock copy trains: the slowest row's mean wall-clock
    divided by the reference's mean seconds per step (both measured in this comparison,
    evaluations included), rounded up, and never fewer than the other rows' steps."""

    steps: int
    reference: str
    """Label of the slowest row."""
    reference_seconds: float
    """Its mean wall-clock over seeds."""
    gpt_seconds_per_step: float
    """Mean over the reference row's seeds of wall-clock / steps (named for format 1)."""

    def note(self, row: str, max_steps: int) -> str:
        steps = (
            f"trained for {self.steps} steps instead of {max_steps}"
            if self.steps > max_steps
            else f"trained for the same {max_steps} steps (no row is slower)"
        )
        return (
            f"{row} {steps}: ceil(mean wall-clock of the slowest row {self.reference}, "
            f"{self.reference_seconds:.1f} s, / its mean {self.gpt_seconds_per_step:.4f} s per "
            "step), both measured in this comparison"
        )


def wallclock_plan(
    wallclock: dict[str, list[float]], steps: int, reference: str = BASELINE
) -> WallclockPlan:
    """The plan from measured wall-clock seconds per row label (one value per finished seed).

    Raises:
        ValueError: the reference row has no finished run to measure.
    """
    ref = wallclock.get(reference, [])
    others = {label: v for label, v in wallclock.items() if label != reference and v}
    if not ref:
        raise ValueError(
            f"{reference}{WALLCLOCK} needs a finished {reference} run to measure its seconds "
            "per step"
        )
    means = {label: sum(v) / len(v) for label, v in others.items()} or {
        reference: sum(ref) / len(ref)
    }
    slowest = max(means, key=means.__getitem__)
    per_step = sum(s / steps for s in ref) / len(ref)
    return WallclockPlan(
        max(steps, math.ceil(means[slowest] / per_step)), slowest, means[slowest], per_step
    )


def wallclock_row(rows: Sequence[Row], reference: str, plan: WallclockPlan) -> Row:
    """The reference row trained for the plan's steps."""
    ref = next(r for r in rows if r.label == reference)
    label = f"{reference}{WALLCLOCK}"
    return Row(label, ref.model, plan.steps, plan.note(label, ref.max_steps))
