"""`sympformer audit`: every arch x scheme checked for the properties a user must be able to trust.

Per configuration: future-token leakage (logits before a cut under a changed suffix), cached
decoding against the full forward, finiteness of loss and gradients at init and after a few training
steps on random tokens, and the parameter count. A failed check marks the row FAIL; the command
exits non-zero."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from sympformer import check
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


def _names(value: tuple[str, ...] | str | None, field: str) -> tuple[str, ...] | None:
    """A list of names; a comma-separated string is accepted; None stays None (all)."""
    if value is None:
        return None
    names = tuple(n.strip() for n in (value.split(",") if isinstance(value, str) else value))
    names = tuple(n for n in names if n)
    if not names:
        raise ValueError(f"AuditConfig.{field}={value!r} is an empty list: give names")
    return names


@dataclass(frozen=True)
class AuditConfig:
    """`sympformer audit`: check every arch x scheme (and any named variant) for the properties a
    user must be able to trust."""

    archs: tuple[str, ...] | None = None
    """Archs to audit (default: all)."""
    schemes: tuple[str, ...] | None = None
    """Schemes of the accelerated archs (default: all)."""
    variants: tuple[str, ...] | None = None
    """More variants by label, e.g. symp:plain_euler+drift=identity+force=attention."""
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"
    """float32, float64 or bfloat16 (autocast)."""
    train_steps: int = 5
    """AdamW steps on random tokens before the second finiteness check."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "archs", _names(self.archs, "archs"))
        object.__setattr__(self, "schemes", _names(self.schemes, "schemes"))
        object.__setattr__(self, "variants", _names(self.variants, "variants"))
        check.choice("AuditConfig.dtype", self.dtype, DTYPES)
        check.integer("AuditConfig.train_steps", self.train_steps, 0)
        self.models()  # unknown names fail now

    def models(self, base: ModelConfig = AUDIT_MODEL) -> list[ModelConfig]:
        """Every (selected) arch x scheme (`model.variant.grid`), then the named variants, on a
        small model; with only --variants given, just those."""
        named = [Variant.parse(label) for label in self.variants or ()]
        everything = bool(self.archs or self.schemes or not named)
        chosen = (grid(self.archs, self.schemes) if everything else []) + named
        return [v.model(base) for v in chosen]


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


def run_audit(cfg: AuditConfig, echo=print) -> list[AuditRow]:
    """Audit every model of `cfg`, echoing one line per model; the rows of the table."""
    rows = []
    for model in cfg.models():
        rows.append(audit_one(model, cfg.dtype, cfg.train_steps))
        echo(f"  {rows[-1].model}: {'ok' if rows[-1].ok else 'FAIL'}")
    return rows


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
