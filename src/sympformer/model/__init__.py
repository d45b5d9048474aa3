"""nn.Modules of the model family: they own the weights and call `sympformer.dynamics`."""

from sympformer.model.cache import Cache
from sympformer.model.config import ARCHS, ModelConfig
from sympformer.model.lm import (
    CheckpointError,
    LanguageModel,
    build_model,
    count_params,
    load_config,
    matched_gpt,
)

__all__ = [
    "ARCHS",
    "Cache",
    "CheckpointError",
    "LanguageModel",
    "ModelConfig",
    "build_model",
    "count_params",
    "load_config",
    "matched_gpt",
]
