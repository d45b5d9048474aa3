"""Opening a training run: the checks and loads before the first step (nothing is written).

`open_run` chooses the run folder (`run_dir` rules), prepares the corpus, fixes the vocabulary
from the tokenizer and finds the checkpoint a resume continues from; `RunData` builds this
process's batches and its share of the fixed validation set.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

import sympformer
from sympformer.data import Corpus, TrainBatches, prepare, tokenizer_info, val_batches
from sympformer.model import CheckpointError
from sympformer.train.checkpoint import Checkpoint, find_checkpoint, open_checkpoint
from sympformer.train.config import RESUMABLE_FIELDS, ExperimentConfig
from sympformer.train.distributed import Dist
from sympformer.train.run_dir import (
    CONFIG_JSON,
    CompileRecord,
    DataRecord,
    RunError,
    RunRecord,
    choose_run_dir,
    load_run_config,
    refuse_differences,
    with_absolute_paths,
)

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
"""Errors caused by inputs (bad config, data, folders): reported on one line by the CLI."""


def prepare_corpus(cfg: ExperimentConfig) -> Corpus:
    """The token cache of ``cfg.data`` for the model's context (built on first use)."""
    return prepare(cfg.data, cfg.model.block_size)


@dataclass(frozen=True)
class RunSetup:
    """A checked run: its folder, the config (vocabulary from the tokenizer), the corpus and the
    checkpoint to resume from (None for a new run or a resume before the first checkpoint)."""

    run_dir: Path
    cfg: ExperimentConfig
    corpus: Corpus
    checkpoint: Checkpoint | None
    resuming: bool


def open_run(cfg: ExperimentConfig, d: Dist, out: Path | None, resume: Path | None) -> RunSetup:
    cfg = with_absolute_paths(cfg)  # a resume from another folder finds the same files
    resumable = RESUMABLE_FIELDS | {"model.vocab_size"}
    run_dir = d.main_only(lambda: choose_run_dir(cfg, out, resume, resumable), USER_ERRORS)
    corpus = d.main_first(lambda: prepare_corpus(cfg), USER_ERRORS)
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, vocab_size=corpus.vocab_size)
    )
    checkpoint = None
    if resume is not None:
        saved = load_run_config(run_dir)
        if saved.model.vocab_size != cfg.model.vocab_size:
            raise RunError(
                f"cannot resume {run_dir}: its vocabulary has {saved.model.vocab_size} tokens, "
                f"the token cache's tokenizer {cfg.model.vocab_size}"
            )
        path = find_checkpoint(run_dir, "latest")
        if path is not None:
            checkpoint = _matching_checkpoint(path, saved, run_dir, corpus, d.world_size)
    return RunSetup(run_dir, cfg, corpus, checkpoint, resume is not None)


def _matching_checkpoint(
    path: Path, saved: ExperimentConfig, run_dir: Path, corpus: Corpus, world_size: int
) -> Checkpoint:
    """The checkpoint at `path`, refused unless it belongs to this run, tokenizer and DDP size."""
    ckpt = open_checkpoint(path)
    refuse_differences(
        ckpt.config, saved, RESUMABLE_FIELDS, f"checkpoint {path} belongs to another config",
        asker=str(run_dir / CONFIG_JSON), error=CheckpointError,
    )  # fmt: skip
    if ckpt.tokenizer["fingerprint"] != corpus.tokenizer.fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was trained with another tokenizer than the token cache's "
            f"({corpus.path})"
        )
    if ckpt.world_size != world_size:
        raise CheckpointError(
            f"checkpoint {path} was written by {ckpt.world_size} process(es); resume it "
            f"with the same number, not {world_size}"
        )
    return ckpt


@dataclass(frozen=True)
class RunData:
    """This process's training batches, its share of the fixed validation batches, and the prompt
    of the end-of-run samples."""

    batches: TrainBatches
    val: list[tuple[Tensor, Tensor]]
    val_count: int
    """Validation batches over all processes."""
    prompt: list[int]

    @classmethod
    def build(cls, setup: RunSetup, d: Dist) -> RunData:
        cfg, corpus = setup.cfg, setup.corpus
        tc, block = cfg.train, cfg.model.block_size
        batches = TrainBatches(corpus.train, block, tc.batch_size, tc.seed, d.rank, d.world_size)
        val = val_batches(corpus.val, block, tc.batch_size, tc.eval_batches, tc.val_seed)
        tok = corpus.tokenizer
        prompt = [tok.eot_id, *(tok.encode(tc.sample_prompt) if tc.sample_prompt else [])]
        if tc.samples and len(prompt) > block:  # samples start a new document (EOT first)
            raise ValueError(
                f"TrainConfig.sample_prompt is {len(prompt)} tokens, longer than the context "
                f"block_size={block}"
            )
        return cls(batches, val[d.rank :: d.world_size], len(val), prompt)


def new_run_record(
    setup: RunSetup, data: RunData, d: Dist, parameters: int, compiled: CompileRecord
) -> RunRecord:
    """run.json of a new run: versions, device, sizes, the data and the compile decision."""
    c, tc, m = setup.corpus, setup.cfg.train, setup.cfg.model
    return RunRecord(
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        command=sys.argv,
        versions={
            "sympformer": sympformer.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        device=str(d.device),
        world_size=d.world_size,
        parameters=parameters,
        tokens_per_step=tc.batch_size * tc.grad_accum * d.world_size * m.block_size,
        tokenizer=tokenizer_info(c.tokenizer),
        data=DataRecord(
            cache=str(c.path),
            source=c.manifest["source"],
            train_tokens=len(c.train),
            val_tokens=len(c.val),
            val_eval_tokens=data.val_count * tc.batch_size * m.block_size,
        ),
        unigram_entropy_val=c.unigram_entropy("val"),
        compile=compiled,
    )
