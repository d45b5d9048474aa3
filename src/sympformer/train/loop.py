"""The training loop: `fit(config, out, resume)` trains one model and fills its run folder.

Per optimizer step: grad_accum micro-batches per process (gradients synchronised across processes
only on the last one), global-norm clipping, one host sync to read the loss and the gradient norm
(a non-finite one skips the update), AdamW with the scheduled LR per parameter group. Evaluation
uses one fixed set of validation batches; checkpoints are atomic (see `checkpoint`), and a resumed
run continues with metrics identical to an uninterrupted one (all columns but wall-clock).

Run folder::

    config.json     the resolved ExperimentConfig (a valid --config file)
    run.json        metadata: versions, device, processes, parameters, tokenizer, data, entropy
    metrics.csv     one row per logged step (see metrics.BASE_COLUMNS) + the learned scalars
    tokenizer/      the tokenizer, so sampling needs no data cache
    checkpoints/    latest, best (symlinks) -> step-NNNNNN-xxxxxx/
    loss.png, samples.txt   written at the end
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import sympformer
from sympformer.data import Corpus, TrainBatches, prepare, tokenizer_info, val_batches
from sympformer.files import atomic_write_text
from sympformer.model import CheckpointError, LanguageModel, Variant
from sympformer.train.checkpoint import (
    CHECKPOINTS,
    LABELS,
    TOKENIZER_DIR,
    Checkpoint,
    Progress,
    find_checkpoint,
    open_checkpoint,
    save_checkpoint,
)
from sympformer.train.config import RESUMABLE_FIELDS, ExperimentConfig, config_differences
from sympformer.train.distributed import Dist, init_distributed, shutdown
from sympformer.train.metrics import MetricsLog, plot_losses
from sympformer.train.optim import build_optimizer, lr_at, set_lr

CONFIG_JSON, RUN_JSON, METRICS_CSV = "config.json", "run.json", "metrics.csv"
LOSS_PNG, SAMPLES_TXT = "loss.png", "samples.txt"
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
"""Errors caused by inputs (bad config, data, folders): reported on one line by the CLI."""


class RunError(ValueError):
    """A run folder that cannot be used: missing, already holding a run, or another config."""


class DivergenceError(RuntimeError):
    """Training stopped: too many consecutive steps with a non-finite loss or gradient."""


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    steps: int
    """Optimizer steps completed."""
    tokens: int
    elapsed: float
    """Seconds in the training loop (evaluations and checkpoints included), over all resumes."""
    final_val_loss: float | None
    best_val_loss: float | None
    unigram_entropy: float
    """Entropy (nats/token) of the validation tokens' unigram distribution."""
    skipped: int
    finished: bool
    """False if the run stopped early (TrainConfig.stop_after)."""

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.elapsed if self.elapsed > 0 else float("nan")


def fit(
    cfg: ExperimentConfig,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
) -> RunResult:
    """Train `cfg` into the run folder `out` (default runs/<arch>-<scheme>-<time>), or continue
    the run in folder `resume` (whose config.json must equal `cfg` up to RESUMABLE_FIELDS).

    Under torchrun every process calls this; rank 0 writes the files.

    Raises:
        ValueError: bad config, data or folder (RunError, DataError, CheckpointError, ...).
        OSError: a folder that cannot be written.
        DivergenceError: max_skips consecutive non-finite steps (the last checkpoint is kept).
    """
    d = init_distributed(cfg.train.device)
    try:
        result = Trainer(cfg, d, out, resume).run()
        # rank 0 still writes the plot and samples: a rank that tore its gloo group down and
        # exited meanwhile could abort ("terminate called without an active exception")
        d.barrier()
        return result
    finally:
        shutdown(d)


def default_run_dir(cfg: ExperimentConfig, root: Path = Path("runs")) -> Path:
    """runs/<variant slug>-<YYYYmmdd-HHMMSS>, with a suffix if that exists already."""
    base = root / f"{Variant.of(cfg.model).slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in (CONFIG_JSON, METRICS_CSV, CHECKPOINTS))


def load_run_config(run_dir: Path) -> ExperimentConfig:
    """The ExperimentConfig in a run folder's config.json (validated again)."""
    path = Path(run_dir) / CONFIG_JSON
    try:
        return ExperimentConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
        raise RunError(f"{path} is not a valid run config: {err}") from None


def with_absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` with data.path and data.cache_dir made absolute (user folders expanded)."""
    changes = {
        name: str(Path(value).expanduser().absolute())
        for name in ("path", "cache_dir")
        if (value := getattr(cfg.data, name)) is not None
    }
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))


def _choose_run_dir(cfg: ExperimentConfig, out: Path | None, resume: Path | None) -> Path:
    """Checks only (nothing is written): the folder to use, refusing unsafe ones."""
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
    saved = load_run_config(resume)
    _refuse_differences(
        saved, cfg, RESUMABLE_FIELDS | {"model.vocab_size"}, f"cannot resume {resume}: it was"
    )
    return resume


def _refuse_differences(
    saved: ExperimentConfig, asked: ExperimentConfig, ignore: frozenset[str], what: str
) -> None:
    diffs = config_differences(saved, asked, ignore)
    if diffs:
        key, old, new = diffs[0]
        more = f" (and {len(diffs) - 1} more differences)" if len(diffs) > 1 else ""
        raise RunError(f"{what} trained with {key}={old!r}, this run asks {key}={new!r}{more}")


class Trainer:
    """One run: `__init__` checks and loads everything (writes nothing), `run` trains."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        d: Dist,
        out: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None,
    ) -> None:
        self.d = d
        cfg = with_absolute_paths(cfg)  # a resume from another folder finds the same files
        tc = cfg.train
        out_path = None if out is None else Path(out)
        resume_path = None if resume is None else Path(resume)
        self.run_dir: Path = d.main_only(
            lambda: _choose_run_dir(cfg, out_path, resume_path), USER_ERRORS
        )
        self.resuming = resume is not None
        self.corpus: Corpus = d.main_first(
            lambda: prepare(cfg.data, cfg.model.block_size), USER_ERRORS
        )
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, vocab_size=self.corpus.vocab_size)
        )
        self.cfg = cfg
        self.tokenizer = self.corpus.tokenizer

        self.ckpt: Checkpoint | None = None
        if self.resuming:
            saved = load_run_config(self.run_dir)
            if saved.model.vocab_size != cfg.model.vocab_size:
                raise RunError(
                    f"cannot resume {self.run_dir}: its vocabulary has {saved.model.vocab_size} "
                    f"tokens, the token cache's tokenizer {cfg.model.vocab_size}"
                )
            path = find_checkpoint(self.run_dir, "latest")
            if path is not None:
                self.ckpt = self._open_matching(path, saved)

        # Same seed, same initial weights and RNG streams (data order has its own seed).
        random.seed(tc.seed)
        np.random.seed(tc.seed)  # noqa: NPY002 (seeds code that uses the legacy global RNG)
        torch.manual_seed(tc.seed)
        self.device = d.device
        self.model = LanguageModel(cfg.model).to(self.device)
        self.optimizer = build_optimizer(self.model, tc)
        block = cfg.model.block_size
        self.batches = TrainBatches(
            self.corpus.train, block, tc.batch_size, tc.seed, d.rank, d.world_size
        )
        val = val_batches(self.corpus.val, block, tc.batch_size, tc.eval_batches, tc.val_seed)
        self.val_count = len(val)
        self.my_val = val[d.rank :: d.world_size]  # each process evaluates its share
        self.prompt = self._sample_prompt()
        self.progress = Progress()
        if self.ckpt is not None:
            self.ckpt.load_model(self.model, self.device)
            self.ckpt.load_optimizer(self.optimizer)
            try:
                self.batches.load_state_dict(self.ckpt.progress.data)
            except ValueError as err:
                raise CheckpointError(f"{self.ckpt.path}: {err}") from None
            self.progress = dataclasses.replace(self.ckpt.progress)
        self.scalar_names = list(self.model.scalars())  # host sync: once, for the columns
        self.entropy = self.corpus.unigram_entropy("val")
        self.tokens_per_step = tc.batch_size * tc.grad_accum * d.world_size * block
        self.metrics: MetricsLog | None = None

    def _open_matching(self, path: Path, saved: ExperimentConfig) -> Checkpoint:
        ckpt = open_checkpoint(path)
        diffs = config_differences(ckpt.config, saved, RESUMABLE_FIELDS)
        if diffs:
            key, theirs, ours = diffs[0]
            raise CheckpointError(
                f"checkpoint {path} belongs to another config: {key}={theirs!r} there, "
                f"{key}={ours!r} in {self.run_dir / CONFIG_JSON}"
            )
        if ckpt.tokenizer["fingerprint"] != self.tokenizer.fingerprint:
            raise CheckpointError(
                f"checkpoint {path} was trained with another tokenizer than the token cache's "
                f"({self.corpus.path})"
            )
        if ckpt.world_size != self.d.world_size:
            raise CheckpointError(
                f"checkpoint {path} was written by {ckpt.world_size} process(es); resume it "
                f"with the same number, not {self.d.world_size}"
            )
        return ckpt

    def _sample_prompt(self) -> list[int]:
        tc = self.cfg.train
        ids = self.tokenizer.encode(tc.sample_prompt) if tc.sample_prompt else []
        ids = [self.tokenizer.eot_id, *ids]  # samples start a new document
        if tc.samples and len(ids) > self.cfg.model.block_size:
            raise ValueError(
                f"TrainConfig.sample_prompt is {len(ids)} tokens, longer than the context "
                f"block_size={self.cfg.model.block_size}"
            )
        return ids

    # ---------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        if self.d.is_main:
            self._write_run_files()
        if self.ckpt is not None:
            self.ckpt.restore_rng()
        train_model, fwd_model = self._wrap()
        try:
            self._loop(train_model, fwd_model)
        finally:
            if self.metrics is not None:
                self.metrics.close()
        p = self.progress
        finished = p.step >= self.cfg.train.max_steps
        if self.d.is_main:
            self._report(finished)
        return RunResult(
            run_dir=self.run_dir,
            steps=p.step,
            tokens=p.tokens,
            elapsed=p.elapsed,
            final_val_loss=p.last_val_loss,
            best_val_loss=p.best_val_loss,
            unigram_entropy=self.entropy,
            skipped=p.skipped,
            finished=finished,
        )

    def _write_run_files(self) -> None:
        run_dir = self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        # stop_after applies to one invocation: a later --resume runs on unless asked again
        saved = dataclasses.replace(
            self.cfg, train=dataclasses.replace(self.cfg.train, stop_after=None)
        )
        _atomic_json(run_dir / CONFIG_JSON, saved.to_dict())
        info_path = run_dir / RUN_JSON
        if self.resuming and info_path.is_file():
            info = json.loads(info_path.read_text())
            info.setdefault("resumes", []).append(
                {"at_step": self.progress.step, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            )
        else:
            info = self._run_info()
        _atomic_json(info_path, info)
        (run_dir / TOKENIZER_DIR).mkdir(exist_ok=True)
        self.tokenizer.save(run_dir / TOKENIZER_DIR)
        self.metrics = MetricsLog(run_dir / METRICS_CSV, self.scalar_names)
        self.metrics.start(self.progress.step if self.resuming else None)

    def _run_info(self) -> dict[str, Any]:
        c = self.corpus
        return {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": sys.argv,
            "versions": {
                "sympformer": sympformer.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "device": str(self.device),
            "world_size": self.d.world_size,
            "parameters": self.model.num_params(),
            "tokens_per_step": self.tokens_per_step,
            "tokenizer": tokenizer_info(self.tokenizer),
            "data": {
                "cache": str(c.path),
                "source": c.manifest["source"],
                "train_tokens": len(c.train),
                "val_tokens": len(c.val),
                "val_eval_tokens": self.val_count
                * self.cfg.train.batch_size
                * self.cfg.model.block_size,
            },
            "unigram_entropy_val": self.entropy,
        }

    def _wrap(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(module the training forward runs through, module evaluation runs through)."""
        fwd: torch.nn.Module = self.model
        if self.cfg.train.compile:
            fwd = torch.compile(self.model)
        train = fwd
        if self.d.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train = DistributedDataParallel(fwd, device_ids=ids)
        return train, fwd

    def _autocast(self) -> contextlib.AbstractContextManager:
        tc = self.cfg.train
        return torch.autocast(
            self.device.type, dtype=tc.autocast_dtype, enabled=tc.dtype != "float32"
        )

    # ---------------------------------------------------------------------------------------------
    def _loop(self, train_model: torch.nn.Module, fwd_model: torch.nn.Module) -> None:
        tc, p, d = self.cfg.train, self.progress, self.d
        last = tc.max_steps - 1
        stop = tc.max_steps if tc.stop_after is None else min(tc.max_steps, tc.stop_after)
        if d.is_main:
            self._announce(stop)
        clock, elapsed0 = time.perf_counter(), p.elapsed
        bar = tqdm(
            total=tc.max_steps,
            initial=p.step,
            desc=self.run_dir.name,
            unit="step",
            dynamic_ncols=True,
            disable=not (tc.progress and d.is_main),
        )
        try:
            for step in range(p.step, stop):
                lr = lr_at(step, tc)
                set_lr(self.optimizer, lr)
                train_loss, grad_norm = self._train_step(train_model)
                finite = math.isfinite(train_loss) and math.isfinite(grad_norm)
                if finite:
                    self.optimizer.step()
                    p.consecutive_skips = 0
                else:
                    p.skipped += 1
                    p.consecutive_skips += 1
                self.optimizer.zero_grad(set_to_none=True)
                p.step, p.tokens = step + 1, p.tokens + self.tokens_per_step
                p.data = self.batches.state_dict()

                val = None
                if step % tc.eval_every == 0 or step == last:
                    val = self._evaluate(fwd_model)
                    p.last_val_loss, p.last_val_step = val, step
                labels = []
                if finite:  # a skipped step never overwrites the last good checkpoint
                    if val is not None and math.isfinite(val):
                        if p.best_val_loss is None or val < p.best_val_loss:
                            p.best_val_loss, p.best_step = val, step
                            labels.append("best")
                    if (step + 1) % tc.ckpt_every == 0 or step == last or step + 1 == stop:
                        labels.append("latest")
                p.elapsed = elapsed0 + time.perf_counter() - clock

                if self.metrics is not None and (
                    step % tc.log_every == 0
                    or step == last
                    or val is not None
                    or labels
                    or not finite
                ):
                    row = {
                        "step": step,
                        "tokens": p.tokens,
                        "time_s": round(p.elapsed, 3),
                        "lr": lr,
                        "train_loss": train_loss,
                        "val_loss": val,
                        "grad_norm": grad_norm,
                        "skipped": p.skipped,
                    }
                    row.update(self.model.scalars())  # host sync: at logged steps only
                    self.metrics.append(row)
                if labels and d.is_main:
                    self.metrics.sync()
                    save_checkpoint(
                        self.run_dir,
                        labels,
                        self.model,
                        self.optimizer,
                        p,
                        self.cfg,
                        self.tokenizer,
                        d.world_size,
                    )
                bar.set_postfix(
                    loss=f"{train_loss:.4f}",
                    val="-" if p.last_val_loss is None else f"{p.last_val_loss:.4f}",
                    refresh=False,
                )
                bar.update()
                if p.consecutive_skips >= tc.max_skips:
                    first = step - p.consecutive_skips + 1
                    latest = self.run_dir / CHECKPOINTS / "latest"
                    kept = f"; the last good checkpoint is {latest}" if latest.exists() else ""
                    raise DivergenceError(
                        f"stopped: steps {first}..{step} had a non-finite loss or gradient "
                        f"({tc.max_skips} in a row, TrainConfig.max_skips){kept}"
                    )
        finally:
            bar.close()

    def _train_step(self, train_model: torch.nn.Module) -> tuple[float, float]:
        """Forward/backward of grad_accum micro-batches; returns (mean loss over all processes,
        global gradient norm before clipping)."""
        tc = self.cfg.train
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(tc.grad_accum):
            x, y = next(self.batches)
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            last_micro = micro == tc.grad_accum - 1
            no_sync = (
                train_model.no_sync()  # gradients are all-reduced on the last micro-step only
                if isinstance(train_model, DistributedDataParallel) and not last_micro
                else contextlib.nullcontext()
            )
            with no_sync:
                with self._autocast():
                    _, loss = train_model(x, y)
                (loss / tc.grad_accum).backward()
            loss_sum += loss.detach()
        max_norm = tc.grad_clip if tc.grad_clip is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        loss_mean = self.d.all_reduce_sum(loss_sum) / (tc.grad_accum * self.d.world_size)
        both = torch.stack([loss_mean, norm.to(loss_mean.dtype)])
        loss_value, norm_value = both.tolist()  # host sync: one per step, decides the update
        return loss_value, norm_value

    @torch.no_grad()
    def _evaluate(self, fwd_model: torch.nn.Module) -> float:
        """Mean loss over the fixed validation batches (each process takes its share)."""
        self.model.eval()
        total = torch.zeros((), device=self.device)
        with self._autocast():
            for x, y in self.my_val:
                _, loss = fwd_model(x.to(self.device), y.to(self.device))
                total += loss
        self.model.train()
        return float(self.d.all_reduce_sum(total)) / self.val_count  # host sync

    # ---------------------------------------------------------------------------------------------
    def _announce(self, stop: int) -> None:
        tc, m = self.cfg.train, self.cfg.model
        name = Variant.of(m)
        start = f"resuming at step {self.progress.step}" if self.resuming else "new run"
        print(
            f"sympformer: {name}, {self.model.num_params():,} parameters, "
            f"{self.tokens_per_step:,} tokens/step ({tc.batch_size} x {tc.grad_accum} x "
            f"{self.d.world_size} x {m.block_size}), steps {self.progress.step}..{stop - 1} of "
            f"{tc.max_steps} on {self.device} ({tc.dtype}); {start} in {self.run_dir}",
            flush=True,
        )

    def _report(self, finished: bool) -> None:
        p = self.progress
        if not finished:
            print(
                f"stopped after step {p.step - 1} (TrainConfig.stop_after); continue with "
                f"--resume {self.run_dir}",
                flush=True,
            )
            return
        plot_losses(
            self.run_dir / METRICS_CSV,
            self.run_dir / LOSS_PNG,
            title=f"{self.run_dir.name}: {Variant.of(self.cfg.model)}",
            baseline=self.entropy,
        )
        texts = self._samples()
        if texts:
            body = "".join(f"--- sample {i + 1} ---\n{t}\n" for i, t in enumerate(texts))
            (self.run_dir / SAMPLES_TXT).write_text(body)
            print(body, end="", flush=True)
        final = "n/a" if p.last_val_loss is None else f"{p.last_val_loss:.4f}"
        best = "n/a" if p.best_val_loss is None else f"{p.best_val_loss:.4f} at step {p.best_step}"
        rate = p.tokens / p.elapsed if p.elapsed > 0 else float("nan")
        outputs = [METRICS_CSV, LOSS_PNG, *([SAMPLES_TXT] if texts else [])]
        links = [f"{CHECKPOINTS}/{x}" for x in LABELS if (self.run_dir / CHECKPOINTS / x).exists()]
        print(
            f"final val loss {final} (best {best}); unigram entropy of the val tokens "
            f"{self.entropy:.4f} nats\n"
            f"{p.step} steps, {p.tokens:,} tokens ({self.corpus.epochs(p.tokens):.2f} epochs) in "
            f"{p.elapsed:.1f} s: {rate:,.0f} tokens/s; {p.skipped} skipped steps\n"
            f"run folder {self.run_dir}: {', '.join(outputs + links)}",
            flush=True,
        )

    @torch.no_grad()
    def _samples(self) -> list[str]:
        tc = self.cfg.train
        if tc.samples == 0:
            return []
        self.model.eval()
        generator = torch.Generator(self.device).manual_seed(tc.seed)
        idx = torch.tensor([self.prompt] * tc.samples, device=self.device)  # (S, T0)
        with self._autocast():
            out = self.model.generate(
                idx, tc.sample_tokens, tc.temperature, tc.top_k, generator=generator
            )
        self.model.train()
        return [self.tokenizer.decode(row[1:]) for row in out.tolist()]  # without the leading EOT


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
