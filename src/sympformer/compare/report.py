"""The report of a comparison (SPEC §9): numbers read from the run folders, statistics over seeds,
Table 1 (results.md, results.tex), Figure 2 (curves.png) and summary.json.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import stats

import sympformer
from sympformer.files import atomic_write, atomic_write_text
from sympformer.train import load_run_config, read_metrics
from sympformer.train.loop import METRICS_CSV, RUN_JSON
from sympformer.train.metrics import finite_values

if TYPE_CHECKING:
    from sympformer.compare.runner import CompareConfig, Row

RESULTS_MD, RESULTS_TEX = "results.md", "results.tex"
CURVES_PNG, SUMMARY_JSON = "curves.png", "summary.json"

FORMAT = 1
"""Format of compare.json and summary.json."""

BASELINE = "gpt"
"""The row every paired test compares against."""

DIVERGED = "diverged.txt"
"""Written into a run folder whose training stopped with DivergenceError: the run is final (a
later call does not retry it; delete the file to retry) and the report leaves it out."""


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


def _cell(row: dict[str, str], column: str) -> float:
    cell = row.get(column, "")
    return float(cell) if cell != "" else math.nan


def read_run(run_dir: Path, label: str, index: int) -> RunNumbers:
    """The numbers of one run folder.

    Raises:
        ValueError: the folder holds no (readable) run or no logged step.
    """
    cfg = load_run_config(run_dir)
    info = json.loads((run_dir / RUN_JSON).read_text())
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
        params=int(info["parameters"]),
        steps=steps,
        tokens=tokens,
        wallclock_s=wallclock,
        tokens_per_s=tokens / wallclock if wallclock > 0 else math.nan,
        last_val_loss=vals[-1][1] if vals else math.nan,
        best_val_loss=best,
        best_val_step=best_step,
        unigram_entropy=float(info.get("unigram_entropy_val", math.nan)),
        val_tokens=int(info["data"]["val_eval_tokens"]),
        train_tokens=int(info["data"]["train_tokens"]),
    )


def read_runs(runs_dir: Path, runs: Sequence[tuple[str, int, str]]) -> list[RunNumbers]:
    """`read_run` of each (label, seed index, folder name) under `runs_dir`."""
    return [read_run(runs_dir / name, label, index) for label, index, name in runs]


# -------------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Stat:
    """Mean and sample sd (ddof 1; NaN for one value) over seeds."""

    mean: float
    sd: float
    n: int


def describe(values: Sequence[float]) -> Stat:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return Stat(math.nan, math.nan, 0)
    sd = float(np.std(a, ddof=1)) if a.size > 1 else math.nan
    return Stat(float(np.mean(a)), sd, int(a.size))


@dataclass(frozen=True)
class Paired:
    """Paired t-test of a row against gpt over the seeds both finished (scipy.stats.ttest_rel)."""

    n: int
    mean_diff: float
    """Mean of (row - gpt) over seeds."""
    sd_diff: float
    """Sample sd (ddof 1) of the differences."""
    t: float
    p: float
    """Two-sided p-value."""


def paired_test(row: dict[int, float], baseline: dict[int, float]) -> Paired:
    """Pair by seed index; NaN statistics with fewer than two pairs."""
    seeds = sorted(set(row) & set(baseline))
    a = np.array([row[k] for k in seeds], dtype=np.float64)
    b = np.array([baseline[k] for k in seeds], dtype=np.float64)
    d = a - b
    if len(seeds) < 2:
        mean = float(d.mean()) if len(seeds) else math.nan
        return Paired(len(seeds), mean, math.nan, math.nan, math.nan)
    if np.all(d == d[0]):  # constant differences: ttest_rel would divide by zero
        t = math.nan if d[0] == 0 else math.copysign(math.inf, d[0])
        return Paired(len(seeds), float(d.mean()), 0.0, t, math.nan if d[0] == 0 else 0.0)
    result = stats.ttest_rel(a, b)
    return Paired(
        len(seeds), float(d.mean()), float(np.std(d, ddof=1)), float(result.statistic),
        float(result.pvalue),
    )  # fmt: skip


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


def row_stats(
    rows: Sequence[Row], numbers: Sequence[RunNumbers], seeds: int
) -> list[dict[str, Any]]:
    """Per row: label, model, steps, note, per-seed values and Stat of every column, the paired
    test of TESTED against gpt (None for gpt), and the seeds that did not finish."""
    finished = [n for n in numbers if n.status == "finished"]
    by_label = {r.label: [n for n in finished if n.label == r.label] for r in rows}
    base = {n.index: getattr(n, TESTED) for n in by_label.get(BASELINE, [])}
    out = []
    for r in rows:
        mine = by_label[r.label]
        metrics = {}
        for c in COLUMNS:
            values = {n.index: float(getattr(n, c.key)) for n in mine}
            s = describe(list(values.values()))
            metrics[c.key] = {"mean": s.mean, "sd": s.sd, "n": s.n, "values": values}
        paired = None
        if r.label != BASELINE:
            paired = dataclasses.asdict(
                paired_test({n.index: getattr(n, TESTED) for n in mine}, base)
            )
        missing = [
            {"index": n.index, "status": n.status}
            for n in numbers
            if n.label == r.label and n.status != "finished"
        ]
        out.append(
            {
                "label": r.label,
                "arch": r.model.arch,
                "scheme": r.model.scheme,
                "velocity_init": r.model.velocity_init,
                "d_model": r.model.d_model,
                "mlp_hidden": r.model.mlp_width,
                "max_steps": r.max_steps,
                "note": r.note,
                "seeds": seeds,
                "not_finished": missing,
                "metrics": metrics,
                "paired_vs_gpt": paired,
            }
        )
    return out


def best_rows(table: Sequence[dict[str, Any]]) -> dict[str, set[str]]:
    """Column key -> labels whose mean is the best of the column (ties: all)."""
    best: dict[str, set[str]] = {}
    for c in COLUMNS:
        means = {r["label"]: r["metrics"][c.key]["mean"] for r in table}
        finite = [m for m in means.values() if math.isfinite(m)]
        if c.better is None or not finite:
            best[c.key] = set()
            continue
        target = c.better(finite)
        best[c.key] = {label for label, m in means.items() if m == target}
    return best


# -------------------------------------------------------------------------------------------------
# Formatting


def _number(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:,.{decimals}f}" if decimals == 0 else f"{value:.{decimals}f}"


def _entry(m: dict[str, Any], c: Column) -> tuple[str, str]:
    """(mean, sd) texts of one cell; sd empty when it is zero for every seed (params)."""
    mean = _number(m["mean"], c.decimals)
    if c.key == "params" and (m["sd"] == 0 or m["n"] == 1):
        return mean, ""
    return mean, _number(m["sd"], c.decimals)


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}"


def _signed(value: float, decimals: int = 4) -> str:
    return "–" if not math.isfinite(value) else f"{value:+.{decimals}f}"


def _critical(n: int) -> str:
    """|mean diff| / sd of the differences that a two-sided paired t-test with n pairs needs for
    p < 0.05: t_{0.975, n-1} / sqrt(n)."""
    return "–" if n < 2 else f"{stats.t.ppf(0.975, n - 1) / math.sqrt(n):.2f}"


def notes(
    cfg: CompareConfig,
    table: Sequence[dict[str, Any]],
    tokens_per_step: int,
    val_tokens: int,
    train_tokens: int,
    jobs: int,
    threads: int,
) -> list[str]:
    """The table notes (plain text; the Markdown and LaTeX files format them)."""
    b = cfg.base
    seeds = ", ".join(str(s) for s in cfg.seed_values)
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
        f"Paired tests: scipy.stats.ttest_rel of the last validation loss of each row against "
        f"gpt, paired by seed (two-sided); diff = row - gpt, negative favours the row. With "
        f"{cfg.seeds} seeds the test has little power: p < 0.05 needs a mean difference above "
        f"{_critical(cfg.seeds)} sd of the paired differences, and a non-significant p is no "
        "evidence of equality (SPEC §9.2: seed sd ≈ 0.04 nats at this model size).",
    ]
    for r in table:
        if r["note"]:
            out.append(f"{r['label']}: {r['note']}.")
        for miss in r["not_finished"]:
            out.append(
                f"{r['label']} seed {miss['index']}: {miss['status']}, left out of the statistics."
            )
    return out


def markdown(table: Sequence[dict[str, Any]], note_lines: Sequence[str], title: str) -> str:
    """results.md: Table 1, the paired tests and the notes."""
    best = best_rows(table)
    head = "| row | " + " | ".join(c.title for c in COLUMNS) + " |"
    lines = [f"# {title}", "", head, "|---|" + "---:|" * len(COLUMNS)]
    for r in table:
        cells = []
        for c in COLUMNS:
            mean, sd = _entry(r["metrics"][c.key], c)
            text = f"{mean} ± {sd}" if sd else mean
            cells.append(f"**{text}**" if r["label"] in best[c.key] else text)
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Paired tests against gpt (last validation loss)",
        "",
        "| row | mean diff (row - gpt) | sd of diff | t | p | seeds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        t = r["paired_vs_gpt"]
        if t is not None:
            lines.append(
                f"| {r['label']} | {_signed(t['mean_diff'])} | {_number(t['sd_diff'], 4)} | "
                f"{_signed(t['t'], 2)} | {_p(t['p'])} | {t['n']} |"
            )
    lines += ["", "Notes:", ""] + [f"- {n}" for n in note_lines]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                 ("#", r"\#"), ("±", r"$\pm$"), ("≈", r"$\approx$"), ("§", r"\S{}")):  # fmt: skip
        text = text.replace(a, b)
    return text


def latex(table: Sequence[dict[str, Any]], note_lines: Sequence[str], title: str) -> str:
    """results.tex: a `table` float (needs booktabs) with Table 1, the paired tests and notes."""
    best = best_rows(table)
    lines = [
        "% Generated by `sympformer compare`; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_tex(title)}}}",
        "\\label{tab:compare}",
        "\\begin{tabular}{l" + "r" * len(COLUMNS) + "}",
        "\\toprule",
        "Model & " + " & ".join(_tex(c.title) for c in COLUMNS) + " \\\\",
        "\\midrule",
    ]
    for r in table:
        cells = []
        for c in COLUMNS:
            mean, sd = _entry(r["metrics"][c.key], c)
            mean = mean.replace(",", "{,}")
            body = f"{mean} \\pm {sd.replace(',', '{,}')}" if sd else mean
            bold = r["label"] in best[c.key]
            cells.append(f"$\\mathbf{{{body}}}$" if bold else f"${body}$")
        lines.append(f"{_tex(r['label'])} & " + " & ".join(cells) + " \\\\")
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        "",
        "\\medskip",
        "\\begin{tabular}{lrrrrr}",
        "\\toprule",
        "Paired vs.\\ gpt & mean diff & sd of diff & $t$ & $p$ & seeds \\\\",
        "\\midrule",
    ]
    for r in table:
        t = r["paired_vs_gpt"]
        if t is not None:
            cells = [_signed(t["mean_diff"]), _number(t["sd_diff"], 4), _signed(t["t"], 2),
                     _p(t["p"]), str(t["n"])]  # fmt: skip
            lines.append(
                f"{_tex(r['label'])} & "
                + " & ".join(f"${x}$" if x != "–" else "--" for x in cells)
                + " \\\\"
            )
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        "",
        "\\smallskip",
        "\\parbox{\\linewidth}{\\footnotesize",
        *[_tex(n) + r"\\" for n in note_lines],
        "}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------------
# Figure 2


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
    table: Sequence[dict[str, Any]],
    numbers: Sequence[RunNumbers],
    png: Path,
    title: str,
) -> None:
    """Figure 2: training (lines, trailing mean, see SMOOTHING) and validation (circles) loss
    against step and against wall-clock; per row the mean over its finished seeds with a min-max
    band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    colours = [f"C{i % 10}" for i in range(len(table))]
    lows, highs, windows = [], [], set()
    entropy = [n.unigram_entropy for n in numbers if math.isfinite(n.unigram_entropy)]
    for colour, r in zip(colours, table, strict=True):
        metrics = [
            read_metrics(runs_dir / n.name / METRICS_CSV)
            for n in numbers
            if n.label == r["label"] and n.status == "finished"
        ]
        if not metrics:
            continue
        times = [_series(m, "time_s") for m in metrics]
        window = max(1, round(r["max_steps"] / SMOOTHING))
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
                    label = r["label"] if ax is by_step else None
                    ax.plot(x, mean, color=colour, lw=0.9, label=label)
                    ax.fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
                else:  # few points: min-max as error bars, not a band
                    yerr = np.stack([mean - lo, hi - mean])
                    ax.errorbar(
                        x, mean, yerr=yerr, fmt="o", color=colour, ms=4, mfc="white", mew=1.2,
                        capsize=2, lw=0.8,
                    )  # fmt: skip
            lows.append(float(lo.min()))
            late = steps >= 0.1 * r["max_steps"]
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
        f"lines: training{smoothing}; circles: validation; mean over seeds, min-max", fontsize=9
    )
    by_time.set_title(
        "x: mean wall-clock over seeds at each step"
        + (f"; dashed: val unigram entropy {entropy[0]:.3f}" if entropy else ""),
        fontsize=9,
    )
    by_step.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))


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
    table = row_stats(rows, numbers, cfg.seeds)
    b = cfg.base
    tokens_per_step = b.train.batch_size * b.train.grad_accum * b.model.block_size
    val_tokens = max((n.val_tokens for n in numbers), default=0)
    train_tokens = max((n.train_tokens for n in numbers), default=0)
    note_lines = notes(cfg, table, tokens_per_step, val_tokens, train_tokens, jobs, threads)
    title = (
        f"Table 1: {b.data.dataset} ({b.data.tokenizer}), {b.train.max_steps} steps, "
        f"{cfg.seeds} seed(s)"
    )
    atomic_write_text(out / RESULTS_MD, markdown(table, note_lines, title))
    atomic_write_text(out / RESULTS_TEX, latex(table, note_lines, title))
    plot_curves(
        runs_dir, table, numbers, out / CURVES_PNG,
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
        "tokens_per_step": tokens_per_step,
        "columns": {c.key: c.title for c in COLUMNS},
        "tested_metric": TESTED,
        "rows": table,
        "runs": [dataclasses.asdict(n) for n in numbers],
        "notes": note_lines,
        "files": [RESULTS_MD, RESULTS_TEX, CURVES_PNG, SUMMARY_JSON],
    }
    summary = _finite(summary)
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    return summary
