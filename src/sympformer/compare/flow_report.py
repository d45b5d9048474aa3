"""Files of a flow study: instances.csv (the best step and value per instance, method and metric),
curves.csv (relative gap vs oracle calls, first seed), summary.md and summary.json (the statistics
of `flow_stats`), ratio_vs_kappa.png and gap_vs_calls.png."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sympformer.compare.flow import (
    CLASSICAL,
    H_GRID,
    METRICS,
    READS,
    ROUND_OFF,
    THETA,
    FlowStudyConfig,
    MethodResult,
)
from sympformer.compare.flow_control import TOLERANCE, ControlRatio
from sympformer.compare.flow_stats import CallsStat, Cell, summarize
from sympformer.compare.report import machine
from sympformer.files import atomic_write, atomic_write_text

INSTANCES_CSV, CURVES_CSV = "instances.csv", "curves.csv"
SUMMARY_MD, SUMMARY_JSON = "summary.md", "summary.json"
RATIO_PNG, CURVES_PNG = "ratio_vs_kappa.png", "gap_vs_calls.png"
FILES = (INSTANCES_CSV, CURVES_CSV, SUMMARY_MD, SUMMARY_JSON, RATIO_PNG, CURVES_PNG)
FORMAT = 1
"""Format of summary.json."""

KEY_COLUMNS = ("problem", "kappa", "c_log", "eps", "seed", "scheme")
DPI = 80
"""Resolution of the figures (keeps each file of a committed study below 500 kB)."""


def _num(value: float | None) -> str:
    """A CSV cell: empty for None (censored, or a parameter the problem does not have)."""
    if value is None:
        return ""
    return f"{value:g}" if float(value).is_integer() or not math.isfinite(value) else f"{value:.6g}"


def _key(r: MethodResult) -> list[str]:
    i = r.instance
    return [i.problem, _num(i.kappa), _num(i.c_log), _num(i.eps), str(i.seed), r.scheme]


def write_instances(path: Path, results: Sequence[MethodResult]) -> None:
    """problem,kappa,c_log,eps,seed,scheme,metric,h,value: gap_at_K is the relative gap after K
    calls (>= ROUND_OFF; inf with no h: diverged at every step), calls_* the calls after which
    the relative gap stays <= the tolerance up to K (value and h empty: censored)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*KEY_COLUMNS, "metric", "h", "value"])
            for r in results:
                for c in r.choices:
                    value = "" if c.value is None else f"{c.value:.6e}"
                    if c.value is not None and c.metric != METRICS[0]:
                        value = str(int(c.value))
                    w.writerow([*_key(r), c.metric, _num(c.h), value])

    atomic_write(path, write)


def write_curves(path: Path, results: Sequence[MethodResult], seed: int) -> None:
    """problem,kappa,c_log,eps,seed,scheme,h,calls,gap: the relative gap (>= ROUND_OFF) after
    `calls` oracle calls of the step that is best for the gap at K, at the checkpoints of
    `flow.checkpoints`, for every instance of one ``seed`` (the one gap_vs_calls.png shows; all
    seeds would make the file several MB)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*KEY_COLUMNS, "h", "calls", "gap"])
            for r in (r for r in results if r.instance.seed == seed):
                h = _num(r.choices[0].h)
                for calls, gap in r.curve:
                    w.writerow([*_key(r), h, calls, f"{gap:.4e}"])

    atomic_write(path, write)


# ------------------------------------------------------------------------------------------------
# summary.md


def _r(x: float) -> str:
    """A ratio, three significant digits."""
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.3g}"


def _p(p: float) -> str:
    return "–" if math.isnan(p) else ("< 1e-3" if p < 1e-3 else f"{p:.3f}")


def _instance_label(cell: Cell) -> str:
    parts = []
    if cell.kappa is not None:
        parts.append(f"κ = {cell.kappa:g}")
    if cell.eps is not None:
        parts.append(f"ε = {cell.eps:g}")
    parts.append(f"c_log = {cell.c_log:g}")
    return ", ".join(parts)


def _best_h(counts: dict[float, int]) -> str:
    return ", ".join(f"{h:g}: {n}" for h, n in counts.items()) or "–"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def gap_table(cells: Sequence[Cell]) -> list[str]:
    header = ["instance", "scheme", "classical/scheme gap at K: median [quartiles]",
              "wins/seeds", "Wilcoxon p", "best h: seeds"]  # fmt: skip
    rows = []
    for c in cells:
        g = c.gap
        wins = f"{g.wins}/{g.n}" + (f" ({g.ties} tied)" if g.ties else "")
        rows.append([_instance_label(c), c.scheme, f"{_r(g.median)} [{_r(g.q1)}, {_r(g.q3)}]",
                     wins, _p(g.p), _best_h(c.h[METRICS[0]])])  # fmt: skip
    return _table(header, rows)


def _calls_entry(s: CallsStat) -> str:
    ratio = f"{_r(s.median)} [{_r(s.q1)}, {_r(s.q3)}] (n = {s.both})" if s.both else "–"
    return (
        f"{ratio}; {s.wins} W / {s.losses} L; censored {s.censored_classical} / {s.censored_scheme}"
    )


def calls_table(cells: Sequence[Cell]) -> list[str]:
    header = ["instance", "scheme", *(f"calls to {m.split('_')[1]}" for m in METRICS[1:])]
    rows = [[_instance_label(c), c.scheme, *(_calls_entry(c.calls[m]) for m in METRICS[1:])]
            for c in cells]  # fmt: skip
    return _table(header, rows)


def control_table(control: Sequence[ControlRatio]) -> list[str]:
    header = ["ε", "initial states", "RK4 step / horizon", "gradient flow: mean time",
              "damped Hamiltonian: mean time", "ratio"]  # fmt: skip
    rows = []
    for c in control:
        g, h = sum(c.gradient) / len(c.gradient), sum(c.hamiltonian) / len(c.hamiltonian)
        rows.append([f"{c.eps:g}", c.initial, f"{c.dt:g} / {c.horizon:g}", f"{g:.1f}",
                     f"{h:.1f}", f"**{c.ratio:.2f}x**"])  # fmt: skip
    return _table(header, rows)


@dataclass(frozen=True)
class Summary:
    """What summary.md and summary.json state about a study."""

    cfg: FlowStudyConfig
    cells: Sequence[Cell]
    control: Sequence[ControlRatio]
    command: str
    wall_seconds: float
    jobs: int


def markdown(summary: Summary) -> str:
    cfg, cells, control = summary.cfg, summary.cells, summary.control
    command, wall_seconds, jobs = summary.command, summary.wall_seconds, summary.jobs
    budgets = ", ".join(f"{p} K = {cfg.budget(p)}" for p in cfg.problems)
    seeds, m = cfg.seeds, machine()
    lines = [
        "# Flow study: accelerated schemes vs the classical flow at equal oracle calls",
        "",
        f"Command: `{command}`  ",
        f"Wall time: {wall_seconds:.0f} s with {jobs} process(es) on {m['machine']} "
        f"({m['cpu_count']} CPUs), Python {m['python']}, torch {m['torch']}.  ",
        f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}). Budgets: {budgets}.",
        "",
        "Protocol (SPEC §5.1): every method runs from rest at every step h of the grid "
        f"{{{', '.join(f'{h:g}' for h in H_GRID)}}} (four-call schemes `tao`/`strang`: 4 calls per "
        f"step, Tao binding angle {THETA:g} per step); a run whose relative gap exceeds 1e6 or is "
        "not finite counts as +inf. The best h is chosen per instance, method and metric. Gaps "
        f"are relative to the initial gap; below {ROUND_OFF:g} they are round-off and tie. "
        "Ratios are classical/scheme, so > 1 means the scheme is better. The Wilcoxon "
        "signed-rank test (two-sided, scipy.stats.wilcoxon, zero differences dropped) is on "
        "the paired log gaps at K. Calls: after which the relative gap stays below the tolerance "
        "up to K; censored = not within K, never replaced by a number: the quartiles are over "
        "the seeds where both methods reached it (n), W/L count the seeds where the scheme needs "
        "fewer/more calls (reaching it when the other does not counts), and censored gives "
        "classical / scheme.",
    ]
    for problem in cfg.problems:
        part = [c for c in cells if c.problem == problem]
        if not part:
            continue
        lines += ["", f"## {problem} (K = {cfg.budget(problem)})", "", "### Gap at K", ""]
        lines += gap_table(part)
        lines += ["", "### Calls to a relative tolerance", ""]
        lines += calls_table(part)
    if control:
        lines += [
            "",
            "## The authors' positive control in continuous time",
            "",
            f"Time after which the objective ratio W(X_t)/W(X_0) stays <= {TOLERANCE:g} "
            "(crossing interpolated in log ratio between RK4 samples), mean over the initial "
            "states; gradient flow vs damped Hamiltonian flow (heavy ball, α = 0.2), both by the "
            "package's RK4 with the package's oracle. The authors report 310.9 vs 48.9 (6.36x).",
            "",
        ]
        lines += control_table(control)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# summary.json


def _json_safe(obj: Any) -> Any:
    """NaN becomes null, ±inf the strings "inf"/"-inf" (JSON has neither)."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        return obj if math.isfinite(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def summary_dict(summary: Summary) -> dict[str, Any]:
    cfg = summary.cfg
    return _json_safe(
        {
            "format": FORMAT,
            "command": summary.command,
            "wall_seconds": summary.wall_seconds,
            "jobs": summary.jobs,
            "machine": machine(),
            "config": dataclasses.asdict(cfg),
            "budgets": {p: cfg.budget(p) for p in cfg.problems},
            "h_grid": list(H_GRID),
            "round_off": ROUND_OFF,
            "cells": [dataclasses.asdict(c) for c in summary.cells],
            "control": [{**dataclasses.asdict(c), "ratio": c.ratio} for c in summary.control],
            "files": list(FILES),
        }
    )


# ------------------------------------------------------------------------------------------------
# Figures


def _grid(panels: int) -> tuple[Any, Any, list[Any]]:
    """pyplot, a figure and its axes (row-major): up to three panels per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, rows = min(3, max(1, panels)), max(1, math.ceil(panels / 3))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    return plt, fig, list(axes.flat)


def _save(plt: Any, fig: Any, unused: Sequence[Any], path: Path) -> None:
    for ax in unused:
        ax.set_visible(False)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    plt.close(fig)


def _positive(x: float) -> float:
    """For log axes: NaN instead of 0 or ±inf (the point is left out)."""
    return x if math.isfinite(x) and x > 0 else math.nan


def plot_ratios(path: Path, cells: Sequence[Cell]) -> None:
    """Median classical/scheme gap ratio vs κ with the quartile band, one line per scheme; one
    panel per problem with a κ and c_log."""
    panels = sorted({(c.problem, c.c_log, c.eps) for c in cells if "kappa" in READS[c.problem]},
                    key=lambda k: (k[0], k[1], k[2] or 0.0))  # fmt: skip
    plt, fig, axes = _grid(len(panels))
    for ax, (problem, c_log, eps) in zip(axes, panels, strict=False):
        part = [c for c in cells if (c.problem, c.c_log, c.eps) == (problem, c_log, eps)]
        for scheme in dict.fromkeys(c.scheme for c in part):
            rows = sorted((c for c in part if c.scheme == scheme), key=lambda c: c.kappa)
            k = [c.kappa for c in rows]
            (line,) = ax.plot(k, [_positive(c.gap.median) for c in rows], marker="o", label=scheme)
            ax.fill_between(
                k, [_positive(c.gap.q1) for c in rows], [_positive(c.gap.q3) for c in rows],
                color=line.get_color(), alpha=0.15,
            )  # fmt: skip
        ax.axhline(1.0, color="black", linewidth=1, linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("condition number κ")
        ax.set_ylabel("classical gap / scheme gap at K")
        ax.set_title(f"{problem}, c_log = {c_log:g}", fontsize=9)
    if panels:
        axes[0].legend(fontsize=7)
    fig.suptitle(
        "Median and quartiles over seeds (> 1: the scheme is better; 0 = diverged at every step "
        "and ∞ are not drawn)", fontsize=10,
    )  # fmt: skip
    _save(plt, fig, axes[len(panels) :], path)


def representative(results: Sequence[MethodResult], cfg: FlowStudyConfig) -> list[tuple]:
    """The panels of gap_vs_calls.png: for every problem and κ/ε, the first seed at the c_log
    closest to 3 (the default; the control's own damping otherwise)."""
    first = cfg.seeds[0]
    keys: dict[tuple, float] = {}
    for r in results:
        i = r.instance
        if i.seed != first:
            continue
        key = (i.problem, i.kappa, i.eps)
        if key not in keys or abs(i.c_log - 3) < abs(keys[key] - 3):
            keys[key] = i.c_log
    return [(*key, c_log) for key, c_log in keys.items()]


def plot_curves(path: Path, results: Sequence[MethodResult], cfg: FlowStudyConfig) -> None:
    """Relative gap vs oracle calls for one seed per panel (`representative`), every method at
    its best step for the gap at K."""
    panels = representative(results, cfg)
    plt, fig, axes = _grid(len(panels))
    for ax, (problem, kappa, eps, c_log) in zip(axes, panels, strict=False):
        for r in results:
            i = r.instance
            if (i.problem, i.kappa, i.eps, i.c_log, i.seed) != (
                problem, kappa, eps, c_log, cfg.seeds[0],
            ):  # fmt: skip
                continue
            style = {"color": "black", "linewidth": 2.2} if r.scheme == CLASSICAL else {}
            calls, gaps = zip(*r.curve, strict=True)
            h = r.choices[0].h
            label = f"{r.scheme} ({'diverged' if h is None else f'h={h:g}'})"
            ax.plot(calls, [_positive(g) for g in gaps], label=label, **style)
        ax.set_yscale("log")
        ax.set_xlabel("oracle calls")
        ax.set_ylabel("relative energy gap")
        label = ", ".join(
            f"{n} = {v:g}" for n, v in (("κ", kappa), ("ε", eps), ("c_log", c_log)) if v is not None
        )
        ax.set_title(f"{problem}, {label}, seed {cfg.seeds[0]}", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    _save(plt, fig, axes[len(panels) :], path)


def write_report(
    out: Path,
    cfg: FlowStudyConfig,
    results: Sequence[MethodResult],
    control: Sequence[ControlRatio],
    command: str,
    wall_seconds: float,
    jobs: int,
) -> list[Cell]:
    """Every file of `FILES` into ``out``; returns the cells of the summary."""
    cells = summarize(results)
    write_instances(out / INSTANCES_CSV, results)
    write_curves(out / CURVES_CSV, results, cfg.seeds[0])
    summary = Summary(cfg, cells, control, command, wall_seconds, jobs)
    atomic_write_text(out / SUMMARY_MD, markdown(summary))
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary_dict(summary), indent=1) + "\n")
    plot_ratios(out / RATIO_PNG, cells)
    plot_curves(out / CURVES_PNG, results, cfg)
    return cells
