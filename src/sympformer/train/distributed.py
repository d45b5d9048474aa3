"""Data-parallel training under torchrun: process group set-up and the few collectives we need.

Launch with ``torchrun --nproc_per_node N -m sympformer.cli train ...``: torchrun sets RANK,
WORLD_SIZE and LOCAL_RANK; gloo on CPU, nccl on CUDA. Without torchrun everything is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class RemoteError(ValueError):
    """A user error raised on another rank (its message, re-raised here so every rank stops)."""


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of `t` over ranks (in place; `t` itself when alone)."""
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (a picklable object)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def main_only(self, fn: Callable[[], T], errors: tuple[type[BaseException], ...]) -> T:
        """Run `fn` on rank 0 only and return its (picklable) result on every rank. A user error
        on rank 0 stops every rank: rank 0 re-raises it, the others raise RemoteError."""
        if not self.enabled:
            return fn()
        failure = result = None
        if self.is_main:
            try:
                result = fn()
            except errors as err:
                failure = err
        ok, payload = self.broadcast((True, result) if failure is None else (False, str(failure)))
        if failure is not None:
            raise failure
        if not ok:
            raise RemoteError(payload)
        return payload

    def main_first(self, fn: Callable[[], T], errors: tuple[type[BaseException], ...]) -> T:
        """Run `fn` on rank 0, then on the other ranks (e.g. to build a cache once)."""
        if not self.enabled:
            return fn()
        kept: list[T] = []
        self.main_only(lambda: kept.append(fn()), errors)  # rank 0's result stays on rank 0
        return kept[0] if self.is_main else fn()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """ "auto" -> cuda (this process's GPU) if available, else cpu; "cuda" -> cuda:local_rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"TrainConfig.device={name!r}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_name: str) -> Dist:
    """Join the torchrun job (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return Dist(rank, world_size, local_rank, device)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
