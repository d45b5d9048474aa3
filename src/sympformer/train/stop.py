"""A graceful stop on SIGINT (Ctrl-C) or SIGTERM (a scheduler's stop): the training loop finishes
the current step, writes a checkpoint atomically and raises `TrainingInterrupted`; the CLI exits
with 128 + the signal number, and `--resume` continues bit-exactly.

Under DDP every rank votes once per step (inside the step's one all-reduce), so all ranks stop
after the same step even when only one of them received the signal.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import torch

HANDLED = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop training gracefully, in the order of their votes."""


class TrainingInterrupted(Exception):
    """Training stopped on a signal after a checkpoint was written."""

    def __init__(self, signum: int, step: int, run_dir: str) -> None:
        self.signum, self.step = signum, step
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} after step {step} (checkpoint written); continue with "
            f"--resume {run_dir}"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """Records SIGINT/SIGTERM while installed (`with StopRequest() as stop:`) instead of raising;
    a second SIGINT aborts at once (the default handler is back after the first). Outside the main
    thread (signals cannot be handled there) it never fires."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in HANDLED:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        if signum == signal.SIGINT:  # Ctrl-C again: stop now
            signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT, signal.SIG_DFL))
        name = signal.Signals(signum).name
        print(f"\n{name}: stopping after this step (writing a checkpoint)", file=sys.stderr)

    def votes(self, like: torch.Tensor) -> torch.Tensor:
        """One 0/1 vote per HANDLED signal, (len(HANDLED),), summed across ranks by the loop."""
        return torch.tensor([float(self.signum == s) for s in HANDLED], device=like.device)

    @staticmethod
    def decide(votes: list[float]) -> int | None:
        """The signal all ranks stop for (the first HANDLED signal with a vote), or None."""
        return next((int(s) for s, v in zip(HANDLED, votes, strict=True) if v > 0), None)
