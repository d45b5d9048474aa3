"""`sympformer compare`: train the planned runs (`plan`) side by side (`pool`) into one folder and
write the report (`report`).

Comparison folder DIR::

    compare.json            the comparison config; a later call with another one is refused,
                            except that it may add rows
    wallclock.json          the wall-clock row's step count, chosen once from measured wall-clock
    runs/<row>-seed<k>/     one `fit` run folder per row and seed (the row's `Variant.slug`)
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
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from sympformer.check import positive_int
from sympformer.compare.plan import (
    COMPARABLE_FIELDS,
    WALLCLOCK,
    CompareConfig,
    Run,
    WallclockPlan,
    plan_rows,
    plan_runs,
    wallclock_plan,
    wallclock_row,
)
from sympformer.compare.pool import Job, JobError, run_jobs
from sympformer.compare.report import DIVERGED, read_runs, write_reports
from sympformer.files import atomic_write_text
from sympformer.train import (
    USER_ERRORS,
    DivergenceError,
    ExperimentConfig,
    RunError,
    find_checkpoint,
    fit,
    holds_run,
    load_run_config,
    open_checkpoint,
    prepare_corpus,
    refuse_differences,
    with_absolute_paths,
)
from sympformer.train.run_dir import LOSS_PNG, SAMPLES_TXT

COMPARE_JSON, WALLCLOCK_JSON, LOCK = "compare.json", "wallclock.json", ".lock"
RUNS_DIR, LOGS_DIR = "runs", "logs"


@dataclass(frozen=True)
class Task:
    """What a worker needs to train one run (picklable: sent to spawned processes)."""

    name: str
    cfg: ExperimentConfig
    run_dir: Path
    resume: bool
    threads: int


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


def run_state(run: Run, run_dir: Path) -> str:
    """new (nothing trained), partial (resumable), finished or diverged.

    Raises:
        RunError: the folder holds a run of another config.
    """
    if not holds_run(run_dir):
        return "new"
    refuse_differences(load_run_config(run_dir), run.cfg, COMPARABLE_FIELDS | {"preset"},
                       f"{run_dir} holds another run", asker="this comparison")  # fmt: skip
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
    runs: Sequence[Run], out: Path, jobs: int, threads: int, echo: Callable[[str], None]
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
        tasks.append(Task(r.name, cfg, out / RUNS_DIR / r.name, states[r.name] == "partial",
                          threads))  # fmt: skip

    def report(k: int, o: Outcome) -> None:
        states[o.name] = o.status
        val = "n/a" if o.final_val_loss is None else f"{o.final_val_loss:.4f}"
        detail = o.message if o.status == "diverged" else f"val loss {val} after {o.elapsed:.1f} s"
        echo(f"compare: [{k}/{len(tasks)}] {o.name} {o.status}: {detail}")

    if jobs == 1:
        for k, task in enumerate(tasks, 1):
            verb = "resuming" if task.resume else "training"
            echo(f"compare: [{k}/{len(tasks)}] {verb} {task.name}")
            report(k, train_task(task))
        return states
    if tasks:
        resumed = sum(t.resume for t in tasks)
        echo(
            f"compare: training {len(tasks)} runs ({resumed} resumed), {min(jobs, len(tasks))} "
            f"at a time with {threads} thread(s) each; logs in {out / LOGS_DIR}"
        )
        work = [Job(f"run {t.name}", train_task, t, out / LOGS_DIR / f"{t.name}.log")
                for t in tasks]  # fmt: skip
        try:
            for k, (_, outcome) in enumerate(run_jobs(work, jobs, USER_ERRORS), 1):
                report(k, outcome)
        except JobError as err:
            if err.user_error:
                raise RunError(str(err)) from None
            raise
    return states


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
        saved = CompareConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise RunError(f"{path} is not a valid comparison config: {err}") from None
    hint = "; repeat its command (rows may be added) or choose another --out"
    for name in ("runs", "seeds", "matched_gpt", "wallclock_matched", "reference"):
        old, new = getattr(saved, name), getattr(cfg, name)
        # runs: new rows may be added (they pair with the seeds already trained); order is only
        # the table's
        if (not set(old) <= set(new)) if name == "runs" else (old != new):
            raise RunError(
                f"{out} holds another comparison: it has {name}={_show(old)}, this call asks "
                f"{_show(new)}{hint}"
            )
    refuse_differences(saved.base, with_absolute_paths(cfg.base), COMPARABLE_FIELDS,
                       f"{out} holds another comparison", asker="this call", hint=hint)  # fmt: skip


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
    positive_int("jobs", jobs)
    positive_int("threads", threads, optional=True)
    threads = threads or default_threads(jobs)
    out = Path(out)
    check_folder(cfg, out)
    corpus = prepare_corpus(cfg.base)  # once here, before workers read it
    rows = plan_rows(cfg, corpus.vocab_size)
    runs = plan_runs(cfg, rows)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        atomic_write_text(out / COMPARE_JSON, json.dumps(cfg.to_dict(), indent=2) + "\n")
        wall = f" + {cfg.reference}{WALLCLOCK}" if cfg.wallclock_matched else ""
        echo(
            f"compare: {len(rows)} rows ({', '.join(r.label for r in rows)}) x {cfg.seeds} seeds"
            f"{wall} in {out}"
        )
        execute(runs, out, jobs, threads, echo)
        if cfg.wallclock_matched:
            row = wallclock_row(rows, cfg.reference, _wallclock(cfg, out, runs))
            rows.append(row)
            extra = plan_runs(cfg, [row])
            execute(extra, out, jobs, threads, echo)
            runs += extra
        numbers = read_runs(out / RUNS_DIR, [(r.label, r.index, r.name) for r in runs])
        summary = write_reports(
            out, out / RUNS_DIR, cfg, rows, numbers, command=command or " ".join(sys.argv),
            equivalent=cfg.command(out), jobs=jobs, threads=threads,
        )  # fmt: skip
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
    plan = wallclock_plan(measured, cfg.base.train.max_steps, cfg.reference)
    atomic_write_text(path, json.dumps(dataclasses.asdict(plan), indent=2) + "\n")
    return plan


def _print(text: str) -> None:
    print(text, flush=True)
