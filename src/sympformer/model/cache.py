"""KV + velocity cache for decoding: one `Tape` per layer (SPEC §7, "KV-cache with velocity").

The momentum, time and multistep history of a decoded token are computed through depth like its
position, so nothing token-local is cached; only what later tokens read from the prefix: keys (and
the ratios r̄_j) for softmax attention, the running prefix states for linear attention."""

from __future__ import annotations

from sympformer.dynamics import Tape


class Cache:
    """Prefix memory of every layer. ``offset`` tokens are processed; ``capacity`` is the
    context."""

    def __init__(self, n_layer: int, capacity: int):
        self.tapes = [Tape(capacity) for _ in range(n_layer)]
        self.capacity = capacity

    @property
    def offset(self) -> int:
        return self.tapes[0].offset

    def advance(self, n_tokens: int) -> None:
        for tape in self.tapes:
            tape.advance(n_tokens)
