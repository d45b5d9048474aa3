"""Tiny configurations covering every arch x scheme, plus the flags that change the forward pass."""

import dataclasses

from sympformer import ARCHS, ModelConfig
from sympformer.dynamics import SCHEMES

TINY = {"vocab_size": 61, "n_layer": 2, "n_head": 2, "d_model": 16, "block_size": 48}


def _all():
    cfgs = []
    for arch, spec in ARCHS.items():
        for scheme in sorted(SCHEMES) if spec.accelerated else [None]:
            cfgs.append(ModelConfig(arch=arch, scheme=scheme, **TINY))
    base = ModelConfig(arch="symp", **TINY)
    cfgs += [
        dataclasses.replace(base, velocity_init="learned"),
        dataclasses.replace(base, scheme="tao", velocity_init="learned"),
        dataclasses.replace(base, scheme="ab2", untied_steps=True, qk_tied=True),
        dataclasses.replace(base, momentum_norm="none", lookahead=False, mlp_lookahead=False),
        ModelConfig(arch="symp_linear", velocity_init="learned", **TINY),
        ModelConfig(arch="yurii", velocity_init="zero", **TINY),
    ]
    return cfgs


CONFIGS = _all()


def cfg_id(cfg: ModelConfig) -> str:
    parts = [cfg.arch] + ([cfg.scheme] if cfg.scheme else [])
    default = ModelConfig(arch=cfg.arch, scheme=cfg.scheme, **TINY)
    parts += [
        f"{f.name}={getattr(cfg, f.name)}"
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != getattr(default, f.name)
    ]
    return "-".join(parts)
