"""`sympformer compare`: train model variants x seeds on identical data, token budget and
validation batches, then write the paper's Table 1 and Figure 2 (SPEC §9; see `report`).

Comparison folder DIR::

    compare.json            the comparison config; a later call with another one is refused,
                            except that it may add rows
    wallclock.json          gpt-wallclock's step count, chosen once from measured wall-clock
    runs/<label>-seed<k>/   one `fit` run folder per row and seed (":" of a label becomes "-")
    logs/<run>.log          output of the runs trained in worker processes (jobs > 1)
    results.md, results.tex, curves.png, summary.json   the report, rewritten on every call

Seed k of every row trains with seed `base.train.seed + k`: the same initial-weight seed and the
same batch order for every model (a paired design); validation is one fixed set of batches
(`TrainConfig.val_seed`). A call on an existing DIR skips finished runs, resumes interrupted ones
from their latest checkpoint and regenerates the report, so an interrupted comparison is
continued by repeating its command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as connection_wait
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from sympformer.compare.report import BASELINE, DIVERGED, FORMAT, read_runs, write_reports
from sympformer.data import prepare
from sympformer.data.config import is_int
from sympformer.model import ModelConfig, count_params, matched_gpt
from sympformer.model.variant import Variant
from sympformer.train import (
    RESUMABLE_FIELDS,
    DivergenceError,
    ExperimentConfig,
    RunError,
    find_checkpoint,
    fit,
    load_run_config,
    open_checkpoint,
    preset_config,
)
from sympformer.train.config import config_differences
from sympformer.train.loop import (
    LOSS_PNG,
    SAMPLES_TXT,
    USER_ERRORS,
    holds_run,
    with_absolute_paths,
)

COMPARE_JSON, WALLCLOCK_JSON, LOCK = "compare.json", "wallclock.json", ".lock"
RUNS_DIR, LOGS_DIR = "runs", "logs"
MATCHED, WALLCLOCK = "gpt-matched", "gpt-wallclock"
"""Row labels of the two automatic GPT controls (BASELINE, gpt, is the reference row)."""

MATCH_TOLERANCE = 0.02
"""gpt-matched must have a parameter count within this fraction of the largest variant's."""

DEFAULT_COMPARE_PRESET = "compare-cpu"

COMPARABLE_FIELDS = RESUMABLE_FIELDS - {"train.max_steps", "preset"}
"""Config fields ignored when a call is checked against DIR/compare.json (they change neither
the data, the model nor the budget; e.g. train.device, train.progress, data.cache_dir)."""


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


def run_slug(label: str) -> str:
    """A row label as a folder name (`Variant.slug`; the automatic GPT rows keep their label)."""
    return label if label in (MATCHED, WALLCLOCK) else Variant.parse(label).slug


@dataclass(frozen=True)
class CompareConfig:
    """What a comparison trains: rows x seeds, all from one base experiment config."""

    runs: tuple[str, ...] = ("gpt", "yurii", "symp:presymp_euler", "symp_linear:presymp_euler")
    """Variants, each "arch" or "arch:scheme" (a comma-separated string is accepted); normalised to
    row labels. The baseline gpt is always trained (added first if missing)."""
    seeds: int = 3
    """Seeds per row: seed k (0-based) trains with base.train.seed + k for every row."""
    base: ExperimentConfig = field(default_factory=lambda: preset_config(DEFAULT_COMPARE_PRESET))
    """Data, model size and training settings shared by every run (arch and scheme are replaced
    per row)."""
    matched_gpt: bool = True
    """Add gpt-matched: a GPT whose width and MLP width give the parameter count of the largest
    variant (within 2 %)."""
    wallclock_matched: bool = False
    """Add gpt-wallclock: a GPT trained for more steps, so that its wall-clock matches the slowest
    row's mean (measured in this comparison, see `wallclock_plan`)."""

    def __post_init__(self) -> None:
        runs = self.runs.split(",") if isinstance(self.runs, str) else self.runs
        if not isinstance(runs, Sequence) or not all(isinstance(r, str) for r in runs):
            raise ValueError(f"CompareConfig.runs={self.runs!r} must be a list of strings")
        entries = [r for r in runs if r.strip()]
        if not entries:
            raise ValueError(f"CompareConfig.runs={self.runs!r} names no run (e.g. 'gpt,yurii')")
        labels = [parse_run(r) for r in entries]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"CompareConfig.runs names {duplicates} more than once")
        if BASELINE not in labels:
            labels.insert(0, BASELINE)  # the reference of every paired test
        object.__setattr__(self, "runs", tuple(labels))
        if not is_int(self.seeds) or self.seeds < 1:
            raise ValueError(f"CompareConfig.seeds={self.seeds!r} must be a positive integer")
        if not isinstance(self.base, ExperimentConfig):
            raise ValueError("CompareConfig.base must be an ExperimentConfig")
        for name in ("matched_gpt", "wallclock_matched"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CompareConfig.{name}={getattr(self, name)!r} must be a boolean")
        for label in labels:
            self.variant_model(label)  # an impossible combination fails now, before training

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

    def to_dict(self) -> dict[str, Any]:
        """What compare.json holds (paths made absolute, as `fit` saves them)."""
        return {
            "format": FORMAT,
            "runs": list(self.runs),
            "seeds": self.seeds,
            "matched_gpt": self.matched_gpt,
            "wallclock_matched": self.wallclock_matched,
            "base": with_absolute_paths(self.base).to_dict(),
        }

    def command(self, out: Path) -> str:
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
    """How the row was derived (matched rows)."""


@dataclass(frozen=True)
class Run:
    """One training run: row `label` with seed index `index`."""

    label: str
    index: int
    cfg: ExperimentConfig

    @property
    def name(self) -> str:
        """Folder name under DIR/runs."""
        return f"{run_slug(self.label)}-seed{self.index}"


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
            runs.append(Run(row.label, k, dataclasses.replace(base, model=row.model, train=train)))
    return runs


@dataclass(frozen=True)
class WallclockPlan:
    """How many steps gpt-wallclock trains: the slowest row's mean wall-clock divided by gpt's
    mean seconds per step (both measured in this comparison, evaluations included), rounded up,
    and never fewer than the other rows' steps."""

    steps: int
    reference: str
    """Label of the slowest row."""
    reference_seconds: float
    """Its mean wall-clock over seeds."""
    gpt_seconds_per_step: float
    """Mean over gpt's seeds of wall-clock / steps."""

    def note(self, max_steps: int) -> str:
        steps = (
            f"trained for {self.steps} steps instead of {max_steps}"
            if self.steps > max_steps
            else f"trained for the same {max_steps} steps (no row is slower than gpt)"
        )
        return (
            f"GPT {steps}: ceil(mean wall-clock of the slowest row {self.reference}, "
            f"{self.reference_seconds:.1f} s, / gpt's mean {self.gpt_seconds_per_step:.4f} s per "
            "step), both measured in this comparison"
        )


def wallclock_plan(wallclock: dict[str, list[float]], gpt_steps: int) -> WallclockPlan:
    """The plan from measured wall-clock seconds per row label (one value per finished seed).

    Raises:
        ValueError: gpt has no finished run to measure.
    """
    gpt = wallclock.get(BASELINE, [])
    others = {label: v for label, v in wallclock.items() if label != BASELINE and v}
    if not gpt:
        raise ValueError("gpt-wallclock needs a finished gpt run to measure its seconds per step")
    means = {label: sum(v) / len(v) for label, v in others.items()} or {
        BASELINE: sum(gpt) / len(gpt)
    }
    reference = max(means, key=means.__getitem__)
    per_step = sum(s / gpt_steps for s in gpt) / len(gpt)
    steps = max(gpt_steps, math.ceil(means[reference] / per_step))
    return WallclockPlan(steps, reference, means[reference], per_step)


# -------------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class Task:
    """What a worker needs to train one run (picklable: sent to spawned processes)."""

    name: str
    cfg: ExperimentConfig
    run_dir: Path
    resume: bool
    threads: int
    log: Path | None
    """Append the run's output here (worker processes); None: this process's stdout."""


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str
    """finished | diverged | stopped (TrainConfig.stop_after)."""
    elapsed: float
    final_val_loss: float | None
    message: str = ""


def train_task(task: Task) -> Outcome:
    """Train (or resume) one run with `task.threads` intra-op threads; DivergenceError is
    recorded in the run folder (DIVERGED) and reported, not raised."""
    previous = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    try:
        result = fit(
            task.cfg,
            out=None if task.resume else task.run_dir,
            resume=task.run_dir if task.resume else None,
        )
    except DivergenceError as err:
        (task.run_dir / DIVERGED).write_text(f"{err}\n")
        return Outcome(task.name, "diverged", math.nan, None, str(err))
    finally:
        torch.set_num_threads(previous)
    status = "finished" if result.finished else "stopped"
    return Outcome(task.name, status, result.elapsed, result.final_val_loss)


def _worker(task: Task, conn: Connection) -> None:
    """Entry point of a spawned run process: output to the task's log, then `train_task`; sends
    ("ok", Outcome) or ("error", is a user error, message) back; the traceback goes to the log."""
    _die_with_parent()
    log = task.log if task.log is not None else Path(os.devnull)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            conn.send(("ok", train_task(task)))
        except KeyboardInterrupt:
            return  # Ctrl-C reaches every process of the terminal; the parent reports it
        except Exception as err:
            traceback.print_exc()
            conn.send(("error", isinstance(err, USER_ERRORS), f"{type(err).__name__}: {err}"))
        finally:
            conn.close()


PR_SET_PDEATHSIG = 1
"""prctl option (Linux): the signal the kernel sends a process when its parent dies."""


def _die_with_parent() -> None:
    """On Linux, have the kernel end this run process when the comparison's process dies, even
    by SIGKILL: an orphaned run would train on unattended and race a repeated command for its
    folder. Elsewhere a no-op (the parent still terminates its runs on errors, Ctrl-C, SIGTERM)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl
        os._exit(1)


def run_state(run: Run, run_dir: Path) -> str:
    """new (nothing trained), partial (resumable), finished or diverged.

    Raises:
        RunError: the folder holds a run of another config.
    """
    if not holds_run(run_dir):
        return "new"
    saved = load_run_config(run_dir)
    diffs = config_differences(saved, run.cfg, COMPARABLE_FIELDS | {"preset"})
    if diffs:
        key, old, new = diffs[0]
        raise RunError(f"{run_dir} holds a run with {key}={old!r}, this comparison asks {new!r}")
    if (run_dir / DIVERGED).is_file():
        return "diverged"
    ckpt = find_checkpoint(run_dir, "latest")
    if ckpt is None or open_checkpoint(ckpt).progress.step < run.cfg.train.max_steps:
        return "partial"
    ends = [LOSS_PNG] + ([SAMPLES_TXT] if run.cfg.train.samples else [])
    # the last checkpoint comes before loss.png and samples.txt: resuming writes them
    return "finished" if all((run_dir / f).is_file() for f in ends) else "partial"


def default_threads(jobs: int) -> int:
    """Intra-op threads per run: the usable cores shared by `jobs` runs side by side."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // jobs)


def execute(
    runs: Sequence[Run],
    out: Path,
    jobs: int,
    threads: int,
    echo: Callable[[str], None],
) -> dict[str, str]:
    """Train the runs that are not finished: side by side in `jobs` spawned processes (each
    logging to DIR/logs/<run>.log, without progress bar), or here when jobs is 1.

    Returns:
        run name -> state after this call (finished, diverged; stopped with train.stop_after).
    """
    states = {r.name: run_state(r, out / RUNS_DIR / r.name) for r in runs}
    pending = [r for r in runs if states[r.name] in ("new", "partial")]
    done = len(runs) - len(pending)
    if done:
        echo(f"compare: {done} of {len(runs)} runs already done, {len(pending)} to train")
    tasks = []
    for r in pending:
        cfg = r.cfg
        if jobs > 1:  # tqdm bars of parallel runs would interleave
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False))
        log = out / LOGS_DIR / f"{r.name}.log" if jobs > 1 else None
        resume = states[r.name] == "partial"
        tasks.append(Task(r.name, cfg, out / RUNS_DIR / r.name, resume, threads, log))

    def report(k: int, o: Outcome) -> None:
        states[o.name] = o.status
        val = "n/a" if o.final_val_loss is None else f"{o.final_val_loss:.4f}"
        detail = o.message if o.status == "diverged" else f"val loss {val} after {o.elapsed:.1f} s"
        echo(f"compare: [{k}/{len(tasks)}] {o.name} {o.status}: {detail}")

    if jobs == 1:
        for k, task in enumerate(tasks, 1):
            echo(
                f"compare: [{k}/{len(tasks)}] {'resuming' if task.resume else 'training'} "
                f"{task.name}"
            )
            report(k, train_task(task))
        return states
    if tasks:
        resumed = sum(t.resume for t in tasks)
        echo(
            f"compare: training {len(tasks)} runs ({resumed} resumed), {min(jobs, len(tasks))} "
            f"at a time with {threads} thread(s) each; logs in {out / LOGS_DIR}"
        )
        for k, outcome in enumerate(_run_in_processes(tasks, jobs), 1):
            report(k, outcome)
    return states


def _run_in_processes(tasks: Sequence[Task], jobs: int) -> Iterator[Outcome]:
    """Train each task in its own spawned process, `jobs` at a time; yields outcomes as runs end.

    An error in a run, Ctrl-C or SIGTERM terminates the other run processes (checkpoints are
    atomic: a repeated command resumes them) and raises: RunError for a user error, else
    RuntimeError naming the run and its log.
    """
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    queue = list(tasks)
    live: dict[Any, tuple[multiprocessing.process.BaseProcess, Connection, Task]] = {}
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if in_main_thread:  # `kill` of this process stops the runs too, not only the bookkeeping
        signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        while queue or live:
            while queue and len(live) < jobs:
                task = queue.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_worker, args=(task, send), name=task.name)
                process.start()
                send.close()  # the child holds its own copy
                live[process.sentinel] = (process, receive, task)
            for sentinel in connection_wait(list(live)):
                process, receive, task = live.pop(sentinel)
                message = receive.recv() if receive.poll() else None
                receive.close()
                process.join()
                yield _outcome(task, message, process.exitcode)
    finally:
        for process, _, _ in live.values():
            process.terminate()
        for process, receive, _ in live.values():
            process.join()
            receive.close()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _outcome(task: Task, message: tuple | None, exitcode: int | None) -> Outcome:
    """The Outcome a run process sent, or the error it reported (raised)."""
    if message is not None and message[0] == "ok":
        return message[1]
    if message is None:
        raise RuntimeError(
            f"run {task.name}: its process ended with exit code {exitcode}; see {task.log}"
        )
    _, user_error, text = message
    if user_error:
        raise RunError(f"run {task.name}: {text}")
    raise RuntimeError(f"run {task.name} failed with {text}; see {task.log}")


def _raise_system_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


# -------------------------------------------------------------------------------------------------
# The comparison


def check_folder(cfg: CompareConfig, out: Path) -> None:
    """Refuse a folder that is not empty and holds no comparison, or holds another one."""
    path = out / COMPARE_JSON
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} exists and is not a folder")
    if not path.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise RunError(f"--out {out} is not empty and holds no comparison ({COMPARE_JSON})")
        return
    try:
        saved = json.loads(path.read_text())
        saved_cfg = CompareConfig(
            runs=tuple(saved["runs"]),
            seeds=saved["seeds"],
            base=ExperimentConfig.from_dict(saved["base"]),
            matched_gpt=saved["matched_gpt"],
            wallclock_matched=saved["wallclock_matched"],
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise RunError(f"{path} is not a valid comparison config: {err}") from None
    for name in ("runs", "seeds", "matched_gpt", "wallclock_matched"):
        old, new = getattr(saved_cfg, name), getattr(cfg, name)
        # runs: new rows may be added (they pair with the seeds already trained); order is only
        # the table's
        if (not set(old) <= set(new)) if name == "runs" else (old != new):
            raise RunError(
                f"{out} holds another comparison: it has {name}={_show(old)}, this call asks "
                f"{_show(new)}; repeat its command (rows may be added) or choose another --out"
            )
    asked = with_absolute_paths(cfg.base)
    diffs = config_differences(saved_cfg.base, asked, COMPARABLE_FIELDS)
    if diffs:
        key, old, new = diffs[0]
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise RunError(
            f"{out} holds another comparison: it has {key}={old!r}, this call asks {new!r}{more}; "
            "repeat its command or choose another --out"
        )


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else repr(value)


def run_comparison(
    cfg: CompareConfig,
    out: str | os.PathLike,
    jobs: int = 1,
    threads: int | None = None,
    command: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every row x seed of `cfg` into `out` (skipping finished runs, resuming interrupted
    ones), then write results.md, results.tex, curves.png and summary.json.

    Args:
        cfg: the comparison.
        out: the comparison folder DIR (created; a folder holding another comparison is refused).
        jobs: runs trained side by side in separate processes.
        threads: intra-op threads per run; default: cores // jobs. Per-run metrics are identical
            for any `jobs` at the same thread count; another thread count changes the float
            summation order of some kernels (differences of a few ulp that training may grow).
        command: the command line to record in summary.json (default: sys.argv).
        echo: progress messages (default: print).

    Returns:
        The contents of summary.json.

    Raises:
        ValueError: bad arguments, data or folders (RunError, DataError, ...), before any
            training where possible; a worker's error names its run.
    """
    echo = echo or _print
    if not is_int(jobs) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a positive integer")
    if threads is not None and (not is_int(threads) or threads < 1):
        raise ValueError(f"threads={threads!r} must be a positive integer")
    threads = threads or default_threads(jobs)
    out = Path(out)
    check_folder(cfg, out)
    base = cfg.base
    corpus = prepare(base.data, base.model.block_size)  # once here, before workers read it
    rows = plan_rows(cfg, corpus.vocab_size)
    runs = plan_runs(cfg, rows)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        (out / COMPARE_JSON).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        echo(
            f"compare: {len(rows)} rows ({', '.join(r.label for r in rows)}) x {cfg.seeds} seeds"
            f"{' + gpt-wallclock' if cfg.wallclock_matched else ''} in {out}"
        )
        execute(runs, out, jobs, threads, echo)
        if cfg.wallclock_matched:
            plan = _wallclock(cfg, out, runs)
            model = next(r.model for r in rows if r.label == BASELINE)
            row = Row(WALLCLOCK, model, plan.steps, plan.note(base.train.max_steps))
            rows.append(row)
            extra = plan_runs(cfg, [row])
            execute(extra, out, jobs, threads, echo)
            runs += extra
        numbers = read_runs(out / RUNS_DIR, [(r.label, r.index, r.name) for r in runs])
        summary = write_reports(
            out,
            out / RUNS_DIR,
            cfg,
            rows,
            numbers,
            command=command or " ".join(sys.argv),
            equivalent=cfg.command(out),
            jobs=jobs,
            threads=threads,
        )
    echo(f"compare: wrote {', '.join(str(out / f) for f in summary['files'])}")
    return summary


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on DIR/.lock (POSIX flock; released when this process ends): two
    calls on one folder at a time would train the same runs into the same folders.

    Raises:
        RunError: another process holds the lock.
    """
    if fcntl is None:  # no flock (Windows): unguarded
        yield
        return
    with open(out / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            raise RunError(
                f"another `sympformer compare` (process {pid}) is working in {out}; wait for it "
                "to end or stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


def _wallclock(cfg: CompareConfig, out: Path, runs: Sequence[Run]) -> WallclockPlan:
    """The saved plan, else one measured from the finished runs (and saved)."""
    path = out / WALLCLOCK_JSON
    if path.is_file():
        try:
            return WallclockPlan(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise RunError(f"{path} is not a valid wall-clock plan: {err}") from None
    measured: dict[str, list[float]] = {}
    for n in read_runs(out / RUNS_DIR, [(r.label, r.index, r.name) for r in runs]):
        if n.status == "finished":
            measured.setdefault(n.label, []).append(n.wallclock_s)
    plan = wallclock_plan(measured, cfg.base.train.max_steps)
    path.write_text(json.dumps(dataclasses.asdict(plan), indent=2) + "\n")
    return plan


def _print(text: str) -> None:
    print(text, flush=True)
