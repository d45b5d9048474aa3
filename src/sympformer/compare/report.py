"""The report of a comparison (SPEC §9): numbers read from the run folders, a typed `Report`
(per-row statistics over seeds and the paired tests), written as Table 1 (results.md,
results.tex, see `tables`), Figure 2 (curves.png, see `figure`) and summary.json (the Report's
serialisation).

Every number comes from the run folders `fit` wrote (config.json, run.json, metrics.csv), so a
report can be regenerated at any time without training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import sympformer
from sympformer.compare.figure import plot_curves
from sympformer.compare.plan import FORMAT, WALLCLOCK, CompareConfig, Row
from sympformer.compare.records import (
    COLUMNS,
    EQUAL_STEPS,
    EQUAL_WALLCLOCK,
    MORE_STEPS,
    TESTED,
    NotFinished,
    PairedTest,
    Report,
    RowStats,
    RunNumbers,
)
from sympformer.compare.stats import critical_effect, paired_test, summarize
from sympformer.compare.tables import latex, markdown
from sympformer.files import atomic_write_text
from sympformer.model import Variant
from sympformer.train import RunRecord, load_run_config, read_metrics
from sympformer.train.run_dir import METRICS_CSV

RESULTS_MD, RESULTS_TEX = "results.md", "results.tex"
CURVES_PNG, SUMMARY_JSON = "curves.png", "summary.json"

DIVERGED = "diverged.txt"
"""Written into a run folder whose training stopped with DivergenceError: the run is final (a
later call does not retry it; delete the file to retry) and the report leaves it out."""


def _cell(row: dict[str, str], column: str) -> float:
    cell = row.get(column, "")
    return float(cell) if cell != "" else math.nan


def read_run(run_dir: Path, label: str, index: int) -> RunNumbers:
    """The numbers of one run folder.

    Raises:
        ValueError: the folder holds no (readable) run or no logged step.
    """
    cfg = load_run_config(run_dir)
    record = RunRecord.load(run_dir)
    rows = read_metrics(run_dir / METRICS_CSV)
    if not rows:
        raise ValueError(f"{run_dir / METRICS_CSV} has no logged step")
    last = rows[-1]
    steps = int(last["step"]) + 1
    vals = [(int(r["step"]), _cell(r, "val_loss")) for r in rows if r.get("val_loss", "") != ""]
    finite = [(s, v) for s, v in vals if math.isfinite(v)]
    best_step, best = min(finite, key=lambda sv: sv[1]) if finite else (None, math.nan)
    if (run_dir / DIVERGED).is_file():
        status = "diverged"
    else:
        status = "finished" if steps >= cfg.train.max_steps else "unfinished"
    wallclock = _cell(last, "time_s")
    tokens = int(last["tokens"])
    return RunNumbers(
        name=run_dir.name,
        label=label,
        index=index,
        seed=cfg.train.seed,
        status=status,
        params=record.parameters,
        steps=steps,
        tokens=tokens,
        wallclock_s=wallclock,
        tokens_per_s=tokens / wallclock if wallclock > 0 else math.nan,
        last_val_loss=vals[-1][1] if vals else math.nan,
        best_val_loss=best,
        best_val_step=best_step,
        unigram_entropy=record.unigram_entropy_val,
        val_tokens=record.data.val_eval_tokens,
        train_tokens=record.data.train_tokens,
    )


def read_runs(runs_dir: Path, runs: Sequence[tuple[str, int, str]]) -> list[RunNumbers]:
    """`read_run` of each (label, seed index, folder name) under `runs_dir`."""
    return [read_run(runs_dir / name, label, index) for label, index, name in runs]


# -------------------------------------------------------------------------------------------------
# The report


def row_stats(rows: Sequence[Row], numbers: Sequence[RunNumbers], seeds: int) -> list[RowStats]:
    """Per row: the model, budget, note, the Summary of every column over its finished seeds and
    the seeds that did not finish."""
    out = []
    for r in rows:
        mine = [n for n in numbers if n.label == r.label]
        done = [n for n in mine if n.status == "finished"]
        out.append(
            RowStats(
                label=r.label,
                variant=str(Variant.of(r.model)),
                d_model=r.model.d_model,
                mlp_hidden=r.model.mlp_width,
                max_steps=r.max_steps,
                note=r.note,
                seeds=seeds,
                not_finished=[NotFinished(n.index, n.status) for n in mine if n not in done],
                metrics={
                    c.key: summarize({n.index: float(getattr(n, c.key)) for n in done})
                    for c in COLUMNS
                },
            )
        )
    return out


def planned_tests(cfg: CompareConfig, labels: Sequence[str]) -> list[tuple[str, str, str]]:
    """(row, other, basis) of every paired test: each row against the reference (equal steps),
    against the reference's wall-clock copy (equal wall-clock), then the config's extra pairs."""
    ref, wall = cfg.reference, f"{cfg.reference}{WALLCLOCK}"
    tests = [(label, ref, EQUAL_STEPS) for label in labels if label not in (ref, wall)]
    if wall in labels:
        tests.append((wall, ref, MORE_STEPS))
        tests += [(label, wall, EQUAL_WALLCLOCK) for label in labels if label not in (ref, wall)]
    tests += [(a, b, EQUAL_STEPS) for a, b in cfg.tests() if a in labels and b in labels]
    return tests


def paired_tests(cfg: CompareConfig, table: Sequence[RowStats]) -> list[PairedTest]:
    values = {r.label: r.metrics[TESTED].values for r in table}
    return [
        PairedTest(
            **dataclasses.asdict(paired_test(values[a], values[b])), row=a, other=b, basis=basis
        )  # fmt: skip
        for a, b, basis in planned_tests(cfg, list(values))
    ]


def notes(
    cfg: CompareConfig,
    table: Sequence[RowStats],
    tokens_per_step: int,
    val_tokens: int,
    train_tokens: int,
    jobs: int,
    threads: int,
) -> list[str]:
    """The table notes (plain text; the Markdown and LaTeX files format them)."""
    b = cfg.base
    seeds = ", ".join(str(s) for s in cfg.seed_values)
    critical = critical_effect(cfg.seeds)
    out = [
        f"Mean ± sd (sample sd, ddof 1) over {cfg.seeds} seed(s) ({seeds}); seed k of every row "
        "has the same initial-weight seed and the same training batches.",
        f"Budget: {b.train.max_steps} optimizer steps x {tokens_per_step:,} tokens = "
        f"{b.train.max_steps * tokens_per_step:,} training tokens per run "
        f"({b.train.max_steps * tokens_per_step / max(train_tokens, 1):.2f} epochs of "
        f"{train_tokens:,}); validation loss on "
        f"the same fixed {val_tokens:,} tokens every {b.train.eval_every} steps and at the last "
        "step; last = the last step's evaluation, best = the lowest evaluation.",
        f"Data: {b.data.dataset}, tokenizer {b.data.tokenizer}; model {b.model.n_layer} layers, "
        f"{b.model.n_head} heads, width {b.model.d_model}, context {b.model.block_size}; "
        f"preset {b.preset}.",
        f"Wall-clock: seconds in the training loop (evaluations and checkpoints included); "
        f"{jobs} run(s) side by side with {threads} thread(s) each on {platform.machine()} "
        f"({os.cpu_count()} CPUs); tokens/s = training tokens / wall-clock.",
        "Bold: the best mean per column (lowest loss and wall-clock, highest tokens/s); "
        "parameter counts are not ranked.",
        f"Paired tests: scipy.stats.ttest_rel of the last validation loss, paired by seed "
        f"(two-sided); diff = row - other, negative favours the row; equal steps: both trained "
        f"for the same steps; equal wall-clock: against {cfg.reference}{WALLCLOCK}. With "
        f"{cfg.seeds} seeds the test has little power: p < 0.05 needs a mean difference above "
        f"{'–' if math.isnan(critical) else f'{critical:.2f}'} sd of the paired differences, "
        "and a non-significant p is no evidence of equality (SPEC §9.2: seed sd ≈ 0.04 nats at "
        "this model size).",
    ]
    for r in table:
        if r.note:
            out.append(f"{r.label}: {r.note}.")
        for miss in r.not_finished:
            out.append(f"{r.label} seed {miss.index}: {miss.status}, left out of the statistics.")
    return out


def build_report(
    cfg: CompareConfig, rows: Sequence[Row], numbers: Sequence[RunNumbers], jobs: int, threads: int
) -> Report:
    table = row_stats(rows, numbers, cfg.seeds)
    b = cfg.base
    tokens_per_step = b.train.batch_size * b.train.grad_accum * b.model.block_size
    val_tokens = max((n.val_tokens for n in numbers), default=0)
    train_tokens = max((n.train_tokens for n in numbers), default=0)
    title = (
        f"Table 1: {b.data.dataset} ({b.data.tokenizer}), {b.train.max_steps} steps, "
        f"{cfg.seeds} seed(s)"
    )
    note_lines = notes(cfg, table, tokens_per_step, val_tokens, train_tokens, jobs, threads)
    return Report(title, cfg.reference, table, paired_tests(cfg, table), note_lines)


# -------------------------------------------------------------------------------------------------
# Writing


def _finite(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null; int keys stay strings in JSON anyway."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def machine() -> dict[str, Any]:
    """Where the comparison ran (wall-clock depends on it)."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "sympformer": sympformer.__version__,
    }


def write_reports(
    out: Path,
    runs_dir: Path,
    cfg: CompareConfig,
    rows: Sequence[Row],
    numbers: Sequence[RunNumbers],
    command: str,
    equivalent: str,
    jobs: int,
    threads: int,
) -> dict[str, Any]:
    """Write results.md, results.tex, curves.png and summary.json into `out` (run folders in
    `runs_dir`); returns the summary (as written, NaN as None)."""
    report = build_report(cfg, rows, numbers, jobs, threads)
    b = cfg.base
    atomic_write_text(out / RESULTS_MD, markdown(report, COLUMNS))
    atomic_write_text(out / RESULTS_TEX, latex(report, COLUMNS))
    plot_curves(
        runs_dir, report.rows, numbers, out / CURVES_PNG,
        f"Figure 2: {b.data.dataset}, {b.model.n_layer}L/{b.model.n_head}H/{b.model.d_model}d, "
        f"{cfg.seeds} seed(s)",
    )  # fmt: skip
    summary = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": command,
        "equivalent_command": equivalent,
        "machine": machine(),
        "jobs": jobs,
        "threads_per_run": threads,
        "config": cfg.to_dict(),
        "tokens_per_step": b.train.batch_size * b.train.grad_accum * b.model.block_size,
        "columns": {c.key: c.title for c in COLUMNS},
        "tested_metric": TESTED,
        **dataclasses.asdict(report),
        "runs": [dataclasses.asdict(n) for n in numbers],
        "files": [RESULTS_MD, RESULTS_TEX, CURVES_PNG, SUMMARY_JSON],
    }
    summary = _finite(summary)
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    return summary
