"""Runs a flow study: every problem instance of a `FlowStudyConfig` (and, with the control, its
continuous-time ratio) in this process or in `jobs` spawned processes, with a progress bar, then
writes the report. Deterministic: results do not depend on `jobs` or on the order tasks finish."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sympformer.compare.flow import FlowStudyConfig, MethodResult, run_task
from sympformer.compare.flow_control import ControlRatio, control_ratios
from sympformer.compare.flow_report import write_report
from sympformer.compare.flow_stats import Cell

THREADS = 1
"""Torch threads per process: the problems are tiny, so per-step overhead dominates and more
threads only contend (measured slower with 2)."""


def check_writable(out: Path) -> None:
    """Fails early (before minutes of work) if ``out`` cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to --out {str(out)!r}: {err.strerror or err}") from None


Job = tuple[Callable[..., Any], tuple]
"""A picklable task: a module-level function and its arguments."""


def _run(indexed: tuple[int, Job]) -> tuple[int, Any]:
    i, (fn, args) = indexed
    return i, fn(*args)


def _init_worker() -> None:
    torch.set_num_threads(THREADS)


def _results(jobs_list: Sequence[Job], jobs: int, progress: bool) -> Iterator[tuple[int, Any]]:
    """(index, result) of every job as it finishes; in `jobs` spawned processes if jobs > 1."""
    indexed = list(enumerate(jobs_list))
    with tqdm(total=len(indexed), desc="flow study", unit="task", disable=not progress) as bar:
        if jobs == 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(THREADS)
            try:
                for item in indexed:
                    yield _run(item)
                    bar.update()
            finally:
                torch.set_num_threads(threads)
        else:
            context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
            with context.Pool(jobs, initializer=_init_worker) as pool:
                for result in pool.imap_unordered(_run, indexed):
                    yield result
                    bar.update()


@dataclass(frozen=True)
class Study:
    results: list[MethodResult]
    control: list[ControlRatio]
    cells: list[Cell]
    wall_seconds: float


def run_study(cfg: FlowStudyConfig, out: Path, jobs: int = 1, progress: bool = True) -> Study:
    """Runs every task of ``cfg`` (with the control: its continuous-time ratio per ε, from the
    authors' initial states and from the study's seeds) and writes the report into ``out``
    (checked writable first)."""
    if jobs < 1:
        raise ValueError(f"flow: jobs={jobs} must be >= 1")
    check_writable(out)
    start = time.perf_counter()
    control_jobs: list[Job] = []
    if "control" in cfg.problems:  # the slowest tasks: first
        control_jobs = [(control_ratios, (eps, cfg.seeds)) for eps in cfg.eps]
    task_jobs: list[Job] = [(run_task, (task,)) for task in cfg.tasks()]
    outputs: dict[int, Any] = dict(_results([*control_jobs, *task_jobs], jobs, progress))
    ordered = [outputs[i] for i in range(len(outputs))]
    control = [c for part in ordered[: len(control_jobs)] for c in part]
    results = [r for part in ordered[len(control_jobs) :] for r in part]
    wall = time.perf_counter() - start
    cells = write_report(out, cfg, results, control, cfg.command(out, jobs), wall, jobs)
    return Study(results, control, cells, wall)
