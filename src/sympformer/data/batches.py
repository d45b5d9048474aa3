"""Training and validation batches of next-token blocks, drawn from a memory-mapped token array.

A block is block_size + 1 consecutive tokens: x is its first block_size tokens, y its last
block_size (x shifted by one). Training blocks do not overlap within an epoch (YuriiFormer,
Appendix A.2).
"""

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sympformer.check import is_int, positive_int
from sympformer.data.errors import DataError

Batch = tuple[Tensor, Tensor]
"""(x, y), both int64 (B, T), y[:, t] = the token after x[:, t]."""


class TrainBatches:
    """Endless, deterministic, resumable training batches; an iterator of (x, y), each (B, T) int64.

    Epoch e cuts the tokens into non-overlapping blocks starting at a random offset in
    [0, block_size) and visits them in a random order, both drawn from default_rng([seed, e]).
    Under DDP, rank r of world_size takes every world_size-th block of that order, starting at r;
    each rank gets the same number of blocks per epoch (the remainder is dropped), so the ranks'
    shards are disjoint and their epochs end together. A batch may span the end of an epoch.

    Args:
        tokens: token ids (N,), typically a read-only `np.memmap`; only batch rows are read.
        block_size: T, the context length.
        batch_size: B, blocks per batch on this rank.
        seed: seed of the offsets and orders; same seed, same batches.
        rank: this process's rank, in [0, world_size).
        world_size: number of data-parallel processes.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        for name, value in (("block_size", block_size), ("batch_size", batch_size),
                            ("world_size", world_size)):  # fmt: skip
            positive_int(name, value)
        if not is_int(rank) or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank!r} must be an integer in [0, world_size={world_size})")
        if not is_int(seed):
            raise ValueError(f"seed={seed!r} must be an integer")
        check_fits(tokens, block_size)
        worst = (len(tokens) - 1 - self.max_offset(len(tokens), block_size)) // block_size
        if worst < world_size:
            raise DataError(
                f"{len(tokens)} tokens give {worst} blocks of {block_size} per epoch, fewer than "
                f"world_size={world_size}; use more data or a smaller block size"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        """Current epoch (0-based); equal on every rank."""
        self.position = 0
        """Blocks this rank has taken from the current epoch."""
        self.blocks_seen = 0
        """Blocks this rank has yielded since the start (across resumes)."""
        self._layout: tuple[int, np.ndarray] | None = None

    @staticmethod
    def max_offset(n_tokens: int, block_size: int) -> int:
        """Largest epoch offset: below block_size, and leaving room for one block."""
        return min(block_size - 1, n_tokens - 1 - block_size)

    @property
    def tokens_seen(self) -> int:
        """Input tokens this rank has yielded (blocks_seen * block_size); x world_size for all."""
        return self.blocks_seen * self.block_size

    def starts(self, epoch: int) -> np.ndarray:
        """First token of each block of this rank in `epoch`, in visiting order (n_blocks,)."""
        if self._layout is None or self._layout[0] != epoch:
            n = len(self.tokens)
            rng = np.random.default_rng([self.seed, epoch])
            offset = int(rng.integers(0, self.max_offset(n, self.block_size) + 1))
            n_blocks = (n - 1 - offset) // self.block_size
            order = rng.permutation(n_blocks)[: n_blocks // self.world_size * self.world_size]
            self._layout = (epoch, offset + order[self.rank :: self.world_size] * self.block_size)
        return self._layout[1]

    def __iter__(self) -> "TrainBatches":
        return self

    def __next__(self) -> Batch:
        picked = []
        need = self.batch_size
        while need:
            starts = self.starts(self.epoch)
            take = starts[self.position : self.position + need]
            picked.append(take)
            need -= len(take)
            self.position += len(take)
            if self.position == len(starts):
                self.epoch, self.position = self.epoch + 1, 0
        self.blocks_seen += self.batch_size
        return gather(self.tokens, np.concatenate(picked), self.block_size)

    def state_dict(self) -> dict[str, Any]:
        """Where the iterator stands, plus what must match on resume; identical on every rank."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "blocks_seen": self.blocks_seen,
            "seed": self.seed,
            "block_size": self.block_size,
            "world_size": self.world_size,
            "n_tokens": len(self.tokens),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` was taken: the next batch is the one that would have come.

        Raises:
            ValueError: the state was taken with another seed, block size, world size or data.
        """
        mine = self.state_dict()
        for name in ("seed", "block_size", "world_size", "n_tokens"):
            if state.get(name) != mine[name]:
                raise ValueError(
                    f"cannot resume batches: the saved state has {name}={state.get(name)!r}, "
                    f"this iterator {name}={mine[name]!r}"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.blocks_seen = int(state["blocks_seen"])


def val_batches(
    tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int, seed: int
) -> list[Batch]:
    """A fixed validation set: the same batches on every call with the same arguments.

    The blocks are a seeded random subset (without replacement) of the non-overlapping blocks at
    offset 0, in token order. If fewer than n_batches * batch_size blocks exist, as many full
    batches as fit are returned, or a single smaller batch if not even one full batch fits.

    Args:
        tokens: token ids (N,).
        block_size: T.
        batch_size: B.
        n_batches: number of batches wanted.
        seed: seed of the block choice.

    Returns:
        At most n_batches batches (x, y), each (B, T) int64 (the last variant above: (N_blocks, T)).

    Raises:
        DataError: not even one block of block_size + 1 tokens fits.
    """
    for name, value in (("block_size", block_size), ("batch_size", batch_size),
                        ("n_batches", n_batches)):  # fmt: skip
        positive_int(name, value)
    check_fits(tokens, block_size)
    available = (len(tokens) - 1) // block_size
    count = n_batches * batch_size
    if count > available:
        count = available // batch_size * batch_size or available
    chosen = np.sort(np.random.default_rng(seed).choice(available, size=count, replace=False))
    starts = chosen * block_size
    return [
        gather(tokens, starts[i : i + batch_size], block_size) for i in range(0, count, batch_size)
    ]


def gather(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> Batch:
    """x, y (len(starts), T) int64 for blocks beginning at `starts`; reads only those tokens."""
    rows = np.stack([tokens[s : s + block_size + 1] for s in starts]).astype(np.int64)  # (B, T+1)
    rows_t = torch.from_numpy(rows)
    return rows_t[:, :-1].contiguous(), rows_t[:, 1:].contiguous()  # (B, T) each


def check_fits(tokens: np.ndarray, block_size: int) -> None:
    """DataError unless `tokens` is 1-D and holds one block of block_size + 1 tokens."""
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
    if block_size + 1 > len(tokens):
        raise DataError(
            f"{len(tokens)} tokens are fewer than one block needs (block_size + 1 = "
            f"{block_size + 1}); use more data or a smaller block size"
        )
