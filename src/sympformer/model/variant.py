"""A model variant: the fields that tell the family's models apart, with one spelling.

A :class:`Variant` is (arch, scheme, velocity initialisation, the ingredients of
`config.INGREDIENTS`). Its label is the one spelling used by the CLI, comparisons, audits,
benchmarks, tests and run-folder names::

    arch[:scheme][/velocity][+name=value ...]

    gpt                                   the baselines take no scheme or ingredient
    symp:presymp_euler                    scheme shown for the accelerated archs
    symp:presymp_euler/learned            velocity shown when it differs from the arch's own
    symp:plain_euler+drift=identity+force=attention   ingredients shown when not the default

`Variant.parse` reads a label (a missing scheme is the arch's default: "symp" is
"symp:presymp_euler"); validation is `ModelConfig`'s, so a variant is valid exactly when a model
with it can be built, and errors name the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from sympformer.dynamics import SCHEMES, get_scheme
from sympformer.model.config import ARCHS, INGREDIENTS, ModelConfig

VELOCITY_SEP, INGREDIENT_SEP = "/", "+"
FIELDS = ("arch", "scheme", "velocity_init", *INGREDIENTS)
"""The ModelConfig fields a variant sets; every other field comes from a base config."""


@dataclass(frozen=True)
class Variant:
    """One model of the family, resolved: ``Variant("symp")`` has scheme presymp_euler, velocity
    zero and the default ingredients. Build one with the fields, `parse` a label or take `of` a
    ModelConfig; `model` applies it to a base config."""

    arch: str = "symp"
    scheme: str | None = None
    velocity_init: str = "auto"
    drift: str | None = None
    force: str | None = None
    damping: str | None = None
    mlp_step: str | None = None

    def __post_init__(self) -> None:
        resolved = self.model(ModelConfig())  # ModelConfig validates and fills in the defaults
        for name in FIELDS:
            object.__setattr__(self, name, getattr(resolved, name))

    def model(self, base: ModelConfig, **overrides) -> ModelConfig:
        """``base`` with this variant's fields (and ``overrides``), validated."""
        fields = {name: getattr(self, name) for name in FIELDS}
        return dataclasses.replace(base, **fields, **overrides)

    @classmethod
    def of(cls, cfg: ModelConfig) -> Variant:
        return cls(**{name: getattr(cfg, name) for name in FIELDS})

    @classmethod
    def parse(cls, text: str) -> Variant:
        """The variant a label names (module docstring); ValueError naming the label otherwise."""
        label = text.strip()
        head, *options = (part.strip() for part in label.split(INGREDIENT_SEP))
        head, slash, velocity = (part.strip() for part in head.partition(VELOCITY_SEP))
        arch, colon, scheme = (part.strip() for part in head.partition(":"))
        fields: dict[str, str | None] = {"arch": arch, "scheme": scheme or None}
        try:
            if arch not in ARCHS:
                raise ValueError(f"unknown arch {arch!r}; choose one of {list(ARCHS)}")
            if colon and not scheme:
                raise ValueError("empty scheme after ':'")
            if slash:
                fields["velocity_init"] = velocity
            for option in options:
                name, eq, value = (part.strip() for part in option.partition("="))
                if name not in INGREDIENTS or not eq:
                    raise ValueError(
                        f"{option!r} is not name=value with a name of {list(INGREDIENTS)}"
                    )
                fields[name] = value
            return cls(**fields)
        except ValueError as err:
            raise ValueError(f"variant {label!r}: {err}") from None

    @property
    def default(self) -> Variant:
        """The arch's default variant with this scheme (what the label leaves out)."""
        return Variant(self.arch, self.scheme)

    def __str__(self) -> str:
        label = self.arch if self.scheme is None else f"{self.arch}:{self.scheme}"
        default = self.default
        if self.velocity_init != default.velocity_init:
            label += f"{VELOCITY_SEP}{self.velocity_init}"
        for name in INGREDIENTS:
            if getattr(self, name) != getattr(default, name):
                label += f"{INGREDIENT_SEP}{name}={getattr(self, name)}"
        return label

    @property
    def slug(self) -> str:
        """The label as a folder name: every separator becomes "-" (unambiguous: no name or
        value contains "-")."""
        out = str(self)
        for sep in (":", VELOCITY_SEP, INGREDIENT_SEP, "="):
            out = out.replace(sep, "-")
        return out

    @property
    def accelerated(self) -> bool:
        return ARCHS[self.arch].accelerated


def grid(archs: Iterable[str] | None = None, schemes: Iterable[str] | None = None) -> list[Variant]:
    """Every arch (or those in ``archs``) with its default ingredients: the baselines once, the
    accelerated archs with every scheme (or those in ``schemes``). Unknown names raise."""
    archs, schemes = list(archs or ARCHS), list(schemes or SCHEMES)
    for name in archs:
        if name not in ARCHS:
            raise ValueError(f"unknown arch {name!r}; choose one of {list(ARCHS)}")
    for name in schemes:
        get_scheme(name)
    return [
        Variant(arch, scheme)
        for arch in ARCHS
        if arch in archs
        for scheme in (schemes if ARCHS[arch].accelerated else [None])
    ]
