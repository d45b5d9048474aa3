"""TrainConfig (optimisation and run), ExperimentConfig (model + data + train) and the presets.

A preset is a YAML file in sympformer/configs/ with the fields it sets in the three sections; the
CLI feeds it to jsonargparse as the first config, so a config file and explicit flags override it
(preset < file < flags).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from sympformer import check
from sympformer.data import DataConfig
from sympformer.model import ModelConfig

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Autocast dtypes of `TrainConfig.dtype` (float32: no autocast)."""

RESUMABLE_FIELDS = frozenset(
    {
        "train.max_steps",
        "train.stop_after",
        "train.device",
        "train.compile",
        "train.activation_checkpointing",
        "train.log_every",
        "train.ckpt_every",
        "train.max_skips",
        "train.progress",
        "train.samples",
        "train.sample_tokens",
        "train.sample_prompt",
        "train.temperature",
        "train.top_k",
        "data.cache_dir",
        "preset",
    }
)
"""Dotted fields a resumed run may change; any other difference from the run's config.json is
refused (the loss curve would no longer be the one the checkpoint belongs to)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, evaluation, checkpointing and run settings of one training run."""

    seed: int = 1337
    """Seeds torch, numpy, random and the training data order."""
    max_steps: int = 500
    """Optimizer steps, numbered 0 .. max_steps - 1 (SPEC §9.1: 1001 = steps 0..1000)."""
    batch_size: int = 32
    """Micro-batch: sequences per forward/backward on each process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step on each process (global batch = batch_size x grad_accum x
    world_size sequences)."""
    lr: float = 1e-3
    """Peak learning rate."""
    warmup_steps: int = 50
    """Linear warm-up: step s < warmup_steps gets lr (s + 1) / warmup_steps (never 0)."""
    min_lr_ratio: float = 0.1
    """Cosine decay from lr after the warm-up to min_lr_ratio x lr at the last step."""
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    """AdamW weight decay of the decayed group (see LanguageModel.param_groups)."""
    scalar_lr_mult: float = 100.0
    """LR multiplier of the learned per-layer scalars (h, c_log, c_lin, nu, ...)."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value; None: no clipping (the norm is still logged)."""
    eval_every: int = 50
    """Evaluate after steps 0, eval_every, 2 eval_every, ... and after the last step."""
    eval_batches: int = 12
    """Validation micro-batches (a fixed set: the same at every evaluation and in every run)."""
    val_seed: int = 0
    """Seed choosing the fixed validation blocks (independent of `seed`, so runs with different
    seeds are evaluated on the same tokens)."""
    log_every: int = 1
    """Write a metrics.csv row every log_every steps (also at evaluations, skips and the end)."""
    ckpt_every: int = 100
    """Write the `latest` checkpoint every ckpt_every steps and at the end."""
    max_skips: int = 5
    """Stop after this many consecutive steps with a non-finite loss or gradient."""
    stop_after: int | None = None
    """Stop after this many steps (checkpoint written) as if interrupted; --resume continues.
    For time-sliced jobs and tests; None: run to max_steps."""
    device: str = "auto"
    """auto (cuda if available, else cpu), cpu, cuda, cuda:N, mps."""
    dtype: str = "float32"
    """float32, or bfloat16: autocast of forward passes (weights and optimizer stay float32)."""
    compile: bool | Literal["auto"] = "auto"
    """torch.compile the model: auto (on when a compile toolchain works and the run is long
    enough to repay the warm-up, see train.compile), true or false. The decision and the warm-up
    are printed and recorded in run.json; tokens/s excludes the warm-up."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of storing them: less
    memory at long contexts for about one more forward pass; the same gradients."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0 only)."""
    samples: int = 2
    """Texts sampled at the end (printed and saved to samples.txt); 0: none."""
    sample_tokens: int = 200
    """New tokens per sample."""
    sample_prompt: str = ""
    """Prompt of the end-of-run samples; empty: start a new document (<|endoftext|>)."""
    temperature: float = 0.8
    """Sampling temperature (0: greedy)."""
    top_k: int | None = 50
    """Sample among the top_k most likely tokens; None: all."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "eval_every", "eval_batches",
                     "log_every", "ckpt_every", "max_skips"):  # fmt: skip
            check.positive_int(f"TrainConfig.{name}", getattr(self, name))
        for name in ("seed", "val_seed", "warmup_steps", "samples", "sample_tokens"):
            check.integer(f"TrainConfig.{name}", getattr(self, name), 0)
        check.positive_int("TrainConfig.stop_after", self.stop_after, optional=True)
        check.positive_int("TrainConfig.top_k", self.top_k, optional=True)
        for name in ("lr", "eps"):
            check.positive(f"TrainConfig.{name}", getattr(self, name))
        check.positive("TrainConfig.grad_clip", self.grad_clip, optional=True)
        for name in ("weight_decay", "scalar_lr_mult", "temperature"):
            check.number(f"TrainConfig.{name}", getattr(self, name), 0)
        check.number("TrainConfig.min_lr_ratio", self.min_lr_ratio, 0, 1)
        for name in ("beta1", "beta2"):
            check.number(f"TrainConfig.{name}", getattr(self, name), 0, 1, open_high=True)
        check.choice("TrainConfig.dtype", self.dtype, DTYPES)
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(
                    f"TrainConfig.device={self.device!r} is not a device (auto, cpu, cuda, cuda:N)"
                ) from None
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ValueError(f"TrainConfig.compile={self.compile!r} must be true, false or auto")
        for name in ("progress", "activation_checkpointing"):
            check.boolean(f"TrainConfig.{name}", getattr(self, name))
        if not isinstance(self.sample_prompt, str):
            raise ValueError(f"TrainConfig.sample_prompt={self.sample_prompt!r} must be a string")

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    @property
    def autocast_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run depends on: model, data and training settings.

    `config.json` of a run folder is `to_dict()` of this; `from_dict` rebuilds it, so every
    section is validated again."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None
    """Name of the preset the config started from (a label; the sections hold every value)."""

    def __post_init__(self) -> None:
        for name, kind in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"ExperimentConfig.{name} must be a {kind.__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        """Inverse of `to_dict`; ValueError for unknown sections or fields."""
        if not isinstance(d, dict):
            raise ValueError(f"an experiment config must be a mapping, got {type(d).__name__}")
        unknown = set(d) - {"preset", "model", "data", "train"}
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}")
        sections = {}
        for name, kind in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
            values = d.get(name, {})
            names = {f.name for f in dataclasses.fields(kind)}
            bad = set(values) - names
            if bad:
                raise ValueError(f"unknown field(s) {sorted(bad)} in config section {name!r}")
            sections[name] = kind(**values)
        return cls(preset=d.get("preset"), **sections)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}."""
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(
    a: ExperimentConfig, b: ExperimentConfig, ignore: frozenset[str] = frozenset()
) -> list[tuple[str, Any, Any]]:
    """(dotted field, value in a, value in b) for every field that differs, except `ignore`."""
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return [
        (k, fa.get(k), fb.get(k))
        for k in sorted(fa | fb)
        if k not in ignore and fa.get(k) != fb.get(k)
    ]


def _defaults(kind: type) -> dict[str, Any]:
    """The declared field defaults (not a built instance's resolved values: scheme stays None)."""
    return {f.name: f.default for f in dataclasses.fields(kind)}


def expand_preset(name: str, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A full preset from the fields it sets: every other field at its declared default."""
    kinds = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
    unknown_sections = set(overrides) - set(kinds)
    if unknown_sections:
        raise ValueError(f"preset {name!r} has unknown sections {sorted(unknown_sections)}")
    full: dict[str, Any] = {"preset": name}
    for section, kind in kinds.items():
        values = overrides.get(section, {})
        unknown = set(values) - set(_defaults(kind))
        if unknown:
            raise ValueError(
                f"preset {name!r} sets unknown {kind.__name__} fields {sorted(unknown)}"
            )
        full[section] = _defaults(kind) | values
    return full


PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"
"""The presets: sympformer/configs/<name>.yaml, each with the fields it sets (all others keep
their defaults). A preset file is also a valid --config file."""


def _load_presets() -> dict[str, dict[str, Any]]:
    presets = {}
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        name = data.pop("preset", None)
        if name != path.stem:
            raise ValueError(f"{path} must say `preset: {path.stem}`")
        presets[name] = expand_preset(name, data)
    return presets


PRESETS: dict[str, dict[str, Any]] = _load_presets()
"""Preset name -> {"preset", "model", "data", "train"} with every field set."""

DEFAULT_PRESET = "quick"


def preset_dict(name: str) -> dict[str, Any]:
    """A deep copy of preset `name`; ValueError listing the presets if unknown."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return {k: dict(v) if isinstance(v, dict) else v for k, v in PRESETS[name].items()}


def preset_config(name: str, **overrides: dict[str, Any]) -> ExperimentConfig:
    """The ExperimentConfig of preset `name`, with per-section overrides, e.g.
    ``preset_config("smoke", train={"max_steps": 8})``."""
    d = preset_dict(name)
    for section, values in overrides.items():
        if section not in ("model", "data", "train"):
            raise ValueError(f"unknown config section {section!r}")
        d[section] = d[section] | values
    return ExperimentConfig.from_dict(d)
