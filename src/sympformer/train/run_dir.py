"""The run folder: its files, its typed record (run.json), and the rules for choosing one.

A run folder holds one training run::

    config.json     the resolved ExperimentConfig (a valid --config file)
    run.json        the RunRecord: versions, device, processes, parameters, tokenizer, data,
                    entropy, the compile decision, resumes
    metrics.csv     one row per logged step (see `metrics`)
    tokenizer/      the tokenizer, so sampling needs no data cache
    checkpoints/    latest, best -> step-NNNNNN-xxxxxx/ (see `checkpoint`)
    loss.png, samples.txt   written at the end

Everything that reads or chooses run folders (the training loop, `sympformer compare`, the CLI)
goes through this module; `refuse_differences` is the one place that turns "this folder was made
with another config" into a one-line error.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sympformer.files import atomic_write_text
from sympformer.model import Variant
from sympformer.train.checkpoint import CHECKPOINTS, TOKENIZER_DIR
from sympformer.train.config import ExperimentConfig, config_differences

CONFIG_JSON, RUN_JSON, METRICS_CSV = "config.json", "run.json", "metrics.csv"
LOSS_PNG, SAMPLES_TXT = "loss.png", "samples.txt"
__all__ = ["CHECKPOINTS", "TOKENIZER_DIR"]  # re-exported: the folder's other names


class RunError(ValueError):
    """A run folder that cannot be used: missing, already holding a run, or another config."""


@dataclass(frozen=True)
class DataRecord:
    cache: str
    """Token cache folder."""
    source: str
    train_tokens: int
    val_tokens: int
    val_eval_tokens: int
    """Tokens of the fixed validation batches."""


@dataclass(frozen=True)
class CompileRecord:
    requested: str
    """TrainConfig.compile as asked: auto, true or false."""
    enabled: bool
    reason: str
    """Why (auto: the toolchain check and the estimated pay-off)."""
    warmup_s: float | None = None
    """Seconds of the compile warm-up (the training and evaluation graphs, compiled before the
    first step of the invocation; excluded from tokens/s)."""


@dataclass(frozen=True)
class Resume:
    at_step: int
    time: str
    compile: CompileRecord | None = None
    """This invocation's compile decision."""


@dataclass(frozen=True)
class RunRecord:
    """run.json: what a run was, beyond its config."""

    created: str
    command: list[str]
    versions: dict[str, str]
    device: str
    world_size: int
    parameters: int
    tokens_per_step: int
    tokenizer: dict[str, Any]
    data: DataRecord
    unigram_entropy_val: float
    """Entropy (nats/token) of the validation tokens' unigram distribution."""
    compile: CompileRecord | None = None
    resumes: tuple[Resume, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        d = dict(d)
        d["data"] = DataRecord(**d["data"])
        d["compile"] = CompileRecord(**d["compile"]) if d.get("compile") else None
        d["resumes"] = tuple(
            Resume(**{**r, "compile": CompileRecord(**r["compile"]) if r.get("compile") else None})
            for r in d.get("resumes", ())
        )
        return cls(**d)

    def save(self, run_dir: Path) -> None:
        atomic_write_text(run_dir / RUN_JSON, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        path = Path(run_dir) / RUN_JSON
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise RunError(f"{path} is not a valid run record: {err}") from None


def holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in (CONFIG_JSON, METRICS_CSV, CHECKPOINTS))


def default_run_dir(cfg: ExperimentConfig, root: Path = Path("runs")) -> Path:
    """runs/<variant slug>-<YYYYmmdd-HHMMSS>, with a suffix if that exists already."""
    base = root / f"{Variant.of(cfg.model).slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def load_run_config(run_dir: Path) -> ExperimentConfig:
    """The ExperimentConfig in a run folder's config.json (validated again)."""
    path = Path(run_dir) / CONFIG_JSON
    try:
        return ExperimentConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
        raise RunError(f"{path} is not a valid run config: {err}") from None


def save_run_config(run_dir: Path, cfg: ExperimentConfig) -> None:
    atomic_write_text(run_dir / CONFIG_JSON, json.dumps(cfg.to_dict(), indent=2) + "\n")


def with_absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` with data.path and data.cache_dir made absolute (user folders expanded)."""
    changes = {
        name: str(Path(value).expanduser().absolute())
        for name in ("path", "cache_dir")
        if (value := getattr(cfg.data, name)) is not None
    }
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))


def refuse_differences(
    old: ExperimentConfig,
    new: ExperimentConfig,
    ignore: frozenset[str],
    what: str,
    asker: str = "this run",
    hint: str = "",
    error: type[ValueError] = RunError,
) -> None:
    """Raise ``error`` with one line naming the first field in which ``old`` (what a folder or
    checkpoint was made with) and ``new`` (what is asked now) differ, ignoring ``ignore``:
    "<what>: it has <key>=<old>, <asker> asks <key>=<new> (and N more differences)<hint>"."""
    diffs = config_differences(old, new, ignore)
    if not diffs:
        return
    key, before, after = diffs[0]
    more = f" (and {len(diffs) - 1} more differences)" if len(diffs) > 1 else ""
    raise error(f"{what}: it has {key}={before!r}, {asker} asks {key}={after!r}{more}{hint}")


def choose_run_dir(
    cfg: ExperimentConfig, out: Path | None, resume: Path | None, resumable: frozenset[str]
) -> Path:
    """Checks only (nothing is written): the folder to use, refusing unsafe ones. A resumed
    folder's config may differ from ``cfg`` only in the ``resumable`` fields."""
    if resume is None:
        run_dir = out if out is not None else default_run_dir(cfg)
        if run_dir.exists() and not run_dir.is_dir():
            raise RunError(f"output folder {run_dir} exists and is not a folder")
        if run_dir.is_dir() and holds_run(run_dir):
            raise RunError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                "or choose another --out"
            )
        return run_dir
    if out is not None and out.resolve() != resume.resolve():
        raise RunError(f"--out {out} and --resume {resume} name different folders")
    if not resume.is_dir():
        raise RunError(f"cannot resume: run folder {resume} does not exist")
    if not (resume / CONFIG_JSON).is_file():
        raise RunError(f"cannot resume: {resume} holds no run (no {CONFIG_JSON})")
    refuse_differences(load_run_config(resume), cfg, resumable, f"cannot resume {resume}")
    return resume
