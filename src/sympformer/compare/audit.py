"""`sympformer audit`: every arch x scheme checked for the properties a user must be able to trust.

Per configuration: future-token leakage (logits before a cut under a changed suffix), cached
decoding against the full forward, finiteness of loss and gradients at init and after a few training
steps on random tokens, and the parameter count. A failed check marks the row FAIL; the command
exits non-zero."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sympformer.model import ModelConfig, Variant, build_model, grid

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
LEAK_TOL = {"float64": 1e-10, "float32": 1e-5, "bfloat16": 1e-5}
CACHE_TOL = {"float64": 1e-10, "float32": 1e-4, "bfloat16": 0.25}


@dataclass(frozen=True)
class AuditRow:
    model: str
    params: int
    leak: float  # max |Δ logit| at positions before the cut
    cache: float  # max |cached - full| logits
    finite_init: bool
    finite_trained: bool
    dtype: str

    @property
    def ok(self) -> bool:
        return (
            self.leak <= LEAK_TOL[self.dtype]
            and self.cache <= CACHE_TOL[self.dtype]
            and self.finite_init
            and self.finite_trained
        )


AUDIT_MODEL = ModelConfig(vocab_size=97, n_layer=3, n_head=2, d_model=32, block_size=64)
"""The small model every variant is audited on."""


def audit_configs(
    archs: list[str] | None = None,
    schemes: list[str] | None = None,
    base: ModelConfig | None = None,
) -> list[ModelConfig]:
    """Every (selected) arch x scheme (`model.variant.grid`) on a small model."""
    return [v.model(base or AUDIT_MODEL) for v in grid(archs, schemes)]


def _forward(model, idx, dtype: str, **kw):
    if dtype == "bfloat16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(idx, **kw)
    return model(idx, **kw)


def _finite_steps(model, cfg: ModelConfig, dtype: str, steps: int, gen: torch.Generator) -> bool:
    opt = torch.optim.AdamW(
        [dict(g, lr=1e-3 * g.pop("lr_mult")) for g in model.param_groups(0.1, 100.0)]
    )
    for _ in range(steps):
        idx = torch.randint(cfg.vocab_size, (4, cfg.block_size + 1), generator=gen)
        _, loss = _forward(model, idx[:, :-1], dtype, targets=idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        grads_ok = all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        if not (math.isfinite(loss.item()) and grads_ok):
            return False
        opt.step()
    return True


def audit_one(
    cfg: ModelConfig, dtype: str = "float32", train_steps: int = 5, seed: int = 0
) -> AuditRow:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(cfg)
    if dtype == "float64":
        model = model.double()
    n_tok = cfg.block_size
    idx = torch.randint(cfg.vocab_size, (2, n_tok), generator=gen)
    model.eval()
    with torch.no_grad():
        full, loss = _forward(model, idx[:, :-1], dtype, targets=idx[:, 1:])
        leak = 0.0
        for cut in (1, n_tok // 2, n_tok - 2):
            alt = idx[:, :-1].clone()
            alt[:, cut:] = torch.randint(cfg.vocab_size, alt[:, cut:].shape, generator=gen)
            other, _ = _forward(model, alt, dtype)
            leak = max(leak, float((other[:, :cut] - full[:, :cut]).abs().max()))
        cache = model.new_cache()
        parts = [_forward(model, idx[:, : n_tok // 2], dtype, cache=cache)[0]]
        parts += [
            _forward(model, idx[:, i : i + 1], dtype, cache=cache)[0]
            for i in range(n_tok // 2, n_tok - 1)
        ]
        cache_err = float((torch.cat(parts, 1).float() - full.float()).abs().max())
    finite_init = bool(torch.isfinite(full).all()) and math.isfinite(loss.item())
    model.train()
    finite_trained = _finite_steps(model, cfg, dtype, train_steps, gen)
    return AuditRow(
        str(Variant.of(cfg)),
        model.num_params(),
        leak,
        cache_err,
        finite_init,
        finite_trained,
        dtype,
    )


def format_table(rows: list[AuditRow]) -> str:
    head = f"{'model':<26} {'params':>9} {'leak':>9} {'cache':>9} {'init':>5} {'train':>5}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.model:<26} {r.params:>9,} {r.leak:>9.1e} {r.cache:>9.1e} "
            f"{'ok' if r.finite_init else 'NaN':>5} {'ok' if r.finite_trained else 'NaN':>5}  "
            f"{'ok' if r.ok else 'FAIL'}"
        )
    n_bad = sum(not r.ok for r in rows)
    lines.append(f"{len(rows) - n_bad} passed, {n_bad} failed ({rows[0].dtype if rows else ''})")
    return "\n".join(lines)
