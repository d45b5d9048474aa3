"""Tiny configurations covering every arch x scheme, every value of every ingredient (on both
accelerated kernels, alone and in the combinations the ingredient study uses), plus the flags that
change the forward pass."""

import dataclasses

from sympformer import ModelConfig
from sympformer.model.variant import Variant, grid

TINY = {"vocab_size": 61, "n_layer": 2, "n_head": 2, "d_model": 16, "block_size": 48}
TINY_MODEL = ModelConfig(**TINY)

INGREDIENT_VARIANTS = [
    f"{arch}:{rest}"
    for arch in ("symp", "symp_linear")
    for rest in (
        "presymp_euler+drift=identity",
        "presymp_euler+force=potential",
        "presymp_euler+force=attention",
        "presymp_euler+damping=constant",
        "presymp_euler+mlp_step=nesterov",
        "plain_euler+drift=identity+force=attention",  # heavy ball
        "presymp_euler/learned+drift=identity+force=attention+damping=constant+mlp_step=nesterov",
        "tao+drift=identity+force=attention",
        "ab2+force=potential+mlp_step=nesterov",
        "damped_euler+drift=identity+force=attention",  # last layer: no attention at all
        "etd_ab2+damping=constant",
    )
]
"""Labels of the ingredient configurations (model.variant grammar)."""


def _all():
    cfgs = [v.model(TINY_MODEL) for v in grid()]
    cfgs += [Variant.parse(label).model(TINY_MODEL) for label in INGREDIENT_VARIANTS]
    base = ModelConfig(arch="symp", **TINY)
    cfgs += [
        dataclasses.replace(base, velocity_init="learned"),
        dataclasses.replace(base, scheme="tao", velocity_init="learned"),
        dataclasses.replace(base, scheme="ab2", untied_steps=True, qk_tied=True),
        dataclasses.replace(base, momentum_norm="none", lookahead=False, mlp_lookahead=False),
        dataclasses.replace(base, mlp_step="nesterov", mlp_lookahead=False, momentum_norm="none"),
        ModelConfig(arch="symp_linear", velocity_init="learned", **TINY),
        ModelConfig(arch="yurii", velocity_init="zero", **TINY),
    ]
    return cfgs


CONFIGS = _all()


def cfg_id(cfg: ModelConfig) -> str:
    """The variant's label, then the other fields that differ from the tiny default."""
    variant = Variant.of(cfg)
    default = variant.model(TINY_MODEL)
    parts = [str(variant)]
    parts += [
        f"{f.name}={getattr(cfg, f.name)}"
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != getattr(default, f.name)
    ]
    return "-".join(parts)
