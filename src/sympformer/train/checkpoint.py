"""Atomic training checkpoints: weights, optimizer, RNG, data position and progress.

Layout inside a run folder::

    checkpoints/
      step-000200-1a2b3c/     one complete checkpoint (never modified after its rename)
        config.json           ModelConfig     } LanguageModel.save_pretrained: the folder loads
        model.safetensors     weights         } with LanguageModel.from_pretrained
        optimizer.pt          AdamW state_dict (torch.save)
        rng.pt                torch / CUDA / numpy / python RNG states
        tokenizer/            what Tokenizer.save wrote (bpe: tokenizer.json), for decoding
        state.json            progress, data iterator, experiment config, sha256 of every file;
                              written last
      latest -> step-000200-1a2b3c     relative symlinks, swapped atomically
      best -> step-000100-4d5e6f

A checkpoint is built in a hidden ``.tmp`` folder, every file fsynced, then renamed into place and
only then linked, so a crash at any moment leaves `latest` pointing at a complete checkpoint (or
absent before the first). Folders no link points to are removed after each save.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sympformer.data import Tokenizer, load_tokenizer, tokenizer_info
from sympformer.data.packaged import file_sha256
from sympformer.model import CheckpointError, LanguageModel
from sympformer.model.lm import CONFIG_FILE, WEIGHTS_FILE, first_line
from sympformer.train.config import ExperimentConfig

FORMAT = 1
"""Checkpoint format; bump when the layout or state.json changes."""

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
TOKENIZER_DIR = "tokenizer"
LABELS = ("latest", "best")


@dataclass
class Progress:
    """The loop's counters: everything besides tensors that a resume must restore."""

    step: int = 0
    """Optimizer steps completed (the next step to run)."""
    tokens: int = 0
    """Training tokens consumed by all processes."""
    elapsed: float = 0.0
    """Wall-clock seconds spent in the training loop, summed over resumes."""
    best_val_loss: float | None = None
    best_step: int | None = None
    last_val_loss: float | None = None
    last_val_step: int | None = None
    skipped: int = 0
    """Optimizer steps skipped for a non-finite loss or gradient."""
    consecutive_skips: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    """TrainBatches.state_dict()."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint folder (see `open_checkpoint`)."""

    path: Path
    progress: Progress
    config: ExperimentConfig
    tokenizer: dict[str, Any]
    """name, fingerprint, vocab_size, eot_id."""
    world_size: int

    def load_model(self, model: nn.Module, device: torch.device | str = "cpu") -> None:
        """Copy the weights into `model` (strict: every tensor must fit)."""
        reference = LanguageModel.from_pretrained(self.path, device=str(device))
        try:
            model.load_state_dict(reference.state_dict(), strict=True)
        except RuntimeError as err:
            raise CheckpointError(
                f"{self.path} does not fit this model: {first_line(err)}"
            ) from None

    def load_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        state = _torch_load(self.path / OPTIMIZER_FILE)
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(
                f"{self.path / OPTIMIZER_FILE} does not fit this optimizer: {first_line(err)}"
            ) from None

    def restore_rng(self) -> None:
        set_rng_state(_torch_load(self.path / RNG_FILE))

    def load_tokenizer(self) -> Tokenizer:
        tok = load_tokenizer(self.tokenizer["name"], self.path / TOKENIZER_DIR)
        if tok.fingerprint != self.tokenizer["fingerprint"]:
            raise CheckpointError(f"the tokenizer in {self.path} differs from its {STATE_FILE}")
        return tok


def rng_state() -> dict[str, Any]:
    """Every RNG the run touches, in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (global RNG)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(
    run_dir: Path,
    labels: list[str],
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    config: ExperimentConfig,
    tokenizer: Tokenizer,
    world_size: int = 1,
) -> Path:
    """Write one checkpoint atomically and point each of `labels` ("latest", "best") at it.

    Returns:
        The new checkpoint folder.
    """
    bad = set(labels) - set(LABELS)
    if bad or not labels:
        raise ValueError(f"checkpoint labels must be a non-empty subset of {LABELS}, got {labels}")
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{progress.step:06d}-{uuid.uuid4().hex[:6]}"
    tmp = root / f".{name}.tmp"
    tmp.mkdir()
    try:
        model.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(rng_state(), tmp / RNG_FILE)
        (tmp / TOKENIZER_DIR).mkdir()
        tokenizer.save(tmp / TOKENIZER_DIR)
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            _fsync(path)
            files[path.relative_to(tmp).as_posix()] = file_sha256(path)
        state = {
            "format": FORMAT,
            "progress": asdict(progress),
            "config": config.to_dict(),
            "tokenizer": tokenizer_info(tokenizer),
            "world_size": world_size,
            "torch": torch.__version__,
            "files": files,
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
        _fsync(tmp / STATE_FILE)
        _fsync(tmp)
        final = root / name
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(root)
    for label in labels:
        link_tmp = root / f".{label}.{uuid.uuid4().hex}.tmp"
        os.symlink(name, link_tmp)
        os.replace(link_tmp, root / label)  # atomic: readers see the old or the new target
    _fsync(root)
    prune(root)
    return final


def prune(root: Path) -> None:
    """Remove checkpoint folders no label points to, and leftovers of interrupted saves."""
    keep = {os.readlink(root / label) for label in LABELS if (root / label).is_symlink()}
    for path in root.iterdir():
        if path.name in LABELS or path.name in keep:
            continue
        if path.name.startswith(("step-", ".step-", ".trash-")) or path.name.endswith(".tmp"):
            if path.is_symlink() or path.is_file():
                path.unlink()
                continue
            trash = root / f".trash-{uuid.uuid4().hex}"
            os.rename(path, trash)  # invisible as a checkpoint before the slow delete starts
            shutil.rmtree(trash, ignore_errors=True)


def find_checkpoint(path: Path, which: str = "latest") -> Path | None:
    """The checkpoint folder for `path`: a checkpoint folder itself, a run folder (its
    checkpoints/<which>) or a checkpoints folder (its <which>); None if there is none yet."""
    if which not in LABELS:
        raise ValueError(f"which={which!r} must be one of {list(LABELS)}")
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    for root in (path / CHECKPOINTS, path):
        link = root / which
        if link.is_symlink() or link.exists():
            if not link.exists():
                raise CheckpointError(f"{link} points to a missing folder")
            return link.resolve()
    return None


def open_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder and verify every file against the sha256 in its state.json.

    Raises:
        CheckpointError: missing or malformed state.json, another format, a missing or changed
            file, or a config that does not validate.
    """
    path = Path(path)
    state_path = path / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(f"{path} is not a training checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(state_path.read_text())
        if state.get("format") != FORMAT:
            raise CheckpointError(
                f"{state_path} has format {state.get('format')!r}, this version reads {FORMAT}"
            )
        for name, digest in state["files"].items():
            file = path / name
            if not file.is_file():
                raise CheckpointError(f"{file} is missing; the checkpoint is incomplete")
            if file_sha256(file) != digest:
                raise CheckpointError(f"{file} is corrupt (its sha256 differs from {STATE_FILE})")
        for required in (CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, RNG_FILE):
            if required not in state["files"]:
                raise CheckpointError(f"{state_path} lists no {required}")
        config = ExperimentConfig.from_dict(state["config"])
        progress = Progress(**state["progress"])
        tokenizer = dict(state["tokenizer"])
        world_size = int(state["world_size"])
    except CheckpointError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{state_path} is malformed ({first_line(err)})") from None
    return Checkpoint(path, progress, config, tokenizer, world_size)


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged pickle or zip
        raise CheckpointError(f"{path} cannot be read: {first_line(err)}") from None


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
