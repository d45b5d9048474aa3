"""Training: configs and presets, the loop (`fit`), atomic checkpoints, metrics, DDP, sampling.

Imports `sympformer.model` and `sympformer.data`, never `compare` or `cli`.
"""

from sympformer.train.checkpoint import (
    Checkpoint,
    Progress,
    find_checkpoint,
    open_checkpoint,
    save_checkpoint,
)
from sympformer.train.config import (
    DEFAULT_PRESET,
    PRESETS,
    RESUMABLE_FIELDS,
    ExperimentConfig,
    TrainConfig,
    preset_config,
    preset_dict,
)
from sympformer.train.distributed import Dist, init_distributed
from sympformer.train.loop import DivergenceError, RunResult, fit
from sympformer.train.metrics import BASE_COLUMNS, MetricsLog, plot_losses, read_metrics
from sympformer.train.optim import build_optimizer, lr_at, set_lr
from sympformer.train.run_dir import (
    RunError,
    RunRecord,
    default_run_dir,
    holds_run,
    load_run_config,
    refuse_differences,
    with_absolute_paths,
)
from sympformer.train.sampling import encode_prompt, generate_text, load_for_sampling
from sympformer.train.setup import USER_ERRORS, prepare_corpus
from sympformer.train.stop import TrainingInterrupted

__all__ = [
    "BASE_COLUMNS",
    "USER_ERRORS",
    "DEFAULT_PRESET",
    "PRESETS",
    "RESUMABLE_FIELDS",
    "Checkpoint",
    "Dist",
    "DivergenceError",
    "ExperimentConfig",
    "MetricsLog",
    "Progress",
    "RunError",
    "RunRecord",
    "RunResult",
    "TrainConfig",
    "TrainingInterrupted",
    "build_optimizer",
    "default_run_dir",
    "encode_prompt",
    "find_checkpoint",
    "fit",
    "generate_text",
    "holds_run",
    "init_distributed",
    "load_for_sampling",
    "load_run_config",
    "lr_at",
    "open_checkpoint",
    "plot_losses",
    "preset_config",
    "prepare_corpus",
    "preset_dict",
    "read_metrics",
    "refuse_differences",
    "save_checkpoint",
    "set_lr",
    "with_absolute_paths",
]
