"""nn.Modules of the model family: they own the weights and call `sympformer.dynamics`."""

from sympformer.model.cache import Cache
from sympformer.model.config import ARCHS, INGREDIENTS, ModelConfig
from sympformer.model.lm import (
    CheckpointError,
    LanguageModel,
    build_model,
    count_params,
    load_config,
    matched_gpt,
)
from sympformer.model.variant import Variant, grid

__all__ = [
    "ARCHS",
    "INGREDIENTS",
    "Cache",
    "CheckpointError",
    "LanguageModel",
    "ModelConfig",
    "Variant",
    "build_model",
    "count_params",
    "grid",
    "load_config",
    "matched_gpt",
]
