"""A small process pool for long jobs: each job in its own spawned process, a few at a time.

Unlike `multiprocessing.Pool` it gives every job a fresh interpreter (torch's thread pools are not
fork-safe), sends each job's output to its own log file, ends the jobs when the parent ends (also
on SIGTERM and, on Linux, even when the parent is killed), and reports a job's exception as one
line naming the job.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as connection_wait
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class JobError(RuntimeError):
    """A job raised (or its process died). ``user_error``: the exception was one of the pool's
    user-error types (a bad input rather than a bug)."""

    def __init__(self, message: str, user_error: bool) -> None:
        super().__init__(message)
        self.user_error = user_error


@dataclass(frozen=True)
class Job(Generic[T]):
    """One job: ``fn(arg)`` in a child process, its output appended to ``log``."""

    name: str
    fn: Callable[[T], Any]
    """A module-level function (it is pickled by reference)."""
    arg: T
    log: Path | None


def run_jobs(
    jobs: Sequence[Job], workers: int, user_errors: tuple[type[BaseException], ...] = ()
) -> Iterator[tuple[Job, Any]]:
    """Run the jobs, ``workers`` at a time; yield (job, its return value) as jobs end.

    An error in a job, Ctrl-C or SIGTERM terminates the other job processes (SIGTERM: they may
    stop gracefully) and raises: JobError naming the job (its traceback is in its log).
    """
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    queue = list(jobs)
    live: dict[Any, tuple[multiprocessing.process.BaseProcess, Connection, Job]] = {}
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if in_main_thread:  # `kill` of this process stops the jobs too, not only the bookkeeping
        signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        while queue or live:
            while queue and len(live) < workers:
                job = queue.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(
                    target=_child, args=(job, send, user_errors), name=job.name
                )
                process.start()
                send.close()  # the child holds its own copy
                live[process.sentinel] = (process, receive, job)
            for sentinel in connection_wait(list(live)):
                process, receive, job = live.pop(sentinel)
                message = receive.poll() and receive.recv()
                receive.close()
                process.join()
                yield job, _result(job, message, process.exitcode)
    finally:
        for process, _, _ in live.values():
            process.terminate()  # SIGTERM: a training job checkpoints and exits
        for process, receive, _ in live.values():
            process.join()
            receive.close()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _child(job: Job, conn: Connection, user_errors: tuple[type[BaseException], ...]) -> None:
    """Entry point of a job process: output to the job's log, then ``job.fn(job.arg)``; sends
    ("ok", result) or ("error", is a user error, message) back; the traceback goes to the log."""
    _die_with_parent()
    log = job.log if job.log is not None else Path(os.devnull)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            conn.send(("ok", job.fn(job.arg)))
        except KeyboardInterrupt:
            return  # Ctrl-C reaches every process of the terminal; the parent reports it
        except Exception as err:
            if hasattr(err, "exit_code"):  # a graceful stop (e.g. on SIGTERM): its exit code
                print(err)
                sys.exit(err.exit_code)
            traceback.print_exc()
            conn.send(("error", isinstance(err, user_errors), f"{type(err).__name__}: {err}"))
        finally:
            conn.close()


def _result(job: Job, message: tuple | bool, exitcode: int | None) -> Any:
    """The value a job process sent, or the error it reported (raised)."""
    if message and message[0] == "ok":
        return message[1]
    if not message:
        raise JobError(
            f"{job.name}: its process ended with exit code {exitcode}; see {job.log}", False
        )
    _, user_error, text = message
    if user_error:
        raise JobError(f"{job.name}: {text}", True)
    raise JobError(f"{job.name} failed with {text}; see {job.log}", False)


PR_SET_PDEATHSIG = 1
"""prctl option (Linux): the signal the kernel sends a process when its parent dies."""


def _die_with_parent() -> None:
    """On Linux, have the kernel end this process when the pool's process dies, even by SIGKILL:
    an orphaned job would run on unattended and race a repeated command for its folder.
    Elsewhere a no-op (the parent still terminates its jobs on errors, Ctrl-C, SIGTERM)."""
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


def _raise_system_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
