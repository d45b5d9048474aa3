"""Prefix memory for incremental (KV-cache) decoding.

With prefix normalisation (1/i, SPEC §6.2) every per-token quantity an oracle derives from the
prefix (keys, the ratios r̄_j, the running linear-attention state) is frozen once its token is
processed. A :class:`Tape` stores these quantities for one layer, one *slot* per quantity, in the
order the integrator asks for them. The forward pass of a chunk replays the same calls in the same
order, so slot ``n`` always holds the same quantity; no scheme needs to know that decoding exists.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Tape:
    """Per-layer prefix memory. ``offset`` is the number of tokens processed before the current
    chunk.

    Slots are preallocated to ``capacity`` tokens on first use, so appending a decoded token costs
    O(size of one token), not a copy of the whole prefix."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.offset = 0
        self._slots: list[list] = []  # [buffer (B, H, capacity, D), length] or [state tensor]
        self._cursor = 0

    def rewind(self) -> None:
        """Start replaying the slots for a new chunk of tokens (called at the start of a layer)."""
        self._cursor = 0

    def _next(self) -> list | None:
        slot = self._slots[self._cursor] if self._cursor < len(self._slots) else None
        self._cursor += 1
        return slot

    def cat(self, new: Tensor) -> Tensor:
        """Per-token quantity: returns ``cat(past, new)`` along dim -2 and remembers it.

        Args:
            new: (B, H, L, D) values of the L new tokens.
        Returns:
            (B, H, offset + L, D) values of every token so far.
        """
        slot = self._next()
        n_new = new.shape[-2]
        if slot is None:
            shape = (*new.shape[:-2], self.capacity, new.shape[-1])
            buf = torch.empty(shape, dtype=new.dtype, device=new.device)
            slot = [buf, 0]
            self._slots.append(slot)
        buf, n = slot
        if n + n_new > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} tokens; {n + n_new} were asked")
        buf[..., n : n + n_new, :] = new.detach()
        slot[1] = n + n_new
        if n == 0:
            return new  # keeps the autograd graph of a prefill intact
        return buf[..., : n + n_new, :]

    def carry(self) -> Tensor | None:
        """Running prefix-sum state of the next slot (``None`` before the first token)."""
        slot = self._slots[self._cursor] if self._cursor < len(self._slots) else None
        return None if slot is None else slot[0]

    def store(self, total: Tensor) -> None:
        """Replaces the state read by :meth:`carry` with ``total`` and moves to the next slot."""
        if self._cursor < len(self._slots):
            self._slots[self._cursor] = [total.detach()]
        else:
            self._slots.append([total.detach()])
        self._cursor += 1

    def advance(self, n_tokens: int) -> None:
        """Marks ``n_tokens`` more tokens as processed (called once per chunk, after the last
        layer)."""
        self.offset += n_tokens
