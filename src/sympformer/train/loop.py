"""The training loop: `fit(config, out, resume)` trains one model and fills its run folder (see
`run_dir` for the folder's layout and rules).

One optimizer step, as `Trainer._loop` calls its duties in order:

1. `_optimizer_step` — grad_accum micro-batches per process (gradients synchronised across
   processes on the last one only), global-norm clipping, one all-reduce and one host sync for the
   loss, the gradient norm and the stop votes; AdamW with the scheduled LR, or a counted skip when
   the loss or gradient is not finite.
2. `_evaluate_if_due` — the fixed validation batches, every eval_every steps and at the end.
3. `_checkpoint_labels` — "best" on a new best validation loss, "latest" periodically, at the end
   and before a stop (never after a skipped step).
4. `_log` — a metrics.csv row (with the learned scalars).
5. `_save` — one atomic checkpoint for all labels.
6. `_check_divergence` — max_skips consecutive skips end the run.

A run stops early after the step in which SIGINT/SIGTERM arrived (`stop.StopRequest`; checkpoint
written, `TrainingInterrupted` raised) or after TrainConfig.stop_after steps. A resumed run
continues with metrics identical to an uninterrupted one (all columns but wall-clock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sympformer.model import CheckpointError, LanguageModel, Variant
from sympformer.train.checkpoint import (
    CHECKPOINTS,
    LABELS,
    TOKENIZER_DIR,
    Progress,
    save_checkpoint,
)
from sympformer.train.compile import (
    SPEEDUP,
    SPEEDUPS,
    CompileDecision,
    decide,
    eager_step_seconds,
    toolchain_ok,
    warm_up,
)
from sympformer.train.config import ExperimentConfig
from sympformer.train.distributed import Dist, init_distributed, shutdown
from sympformer.train.metrics import MetricsLog, plot_losses
from sympformer.train.optim import build_optimizer, lr_at, set_lr
from sympformer.train.run_dir import (
    LOSS_PNG,
    METRICS_CSV,
    RUN_JSON,
    SAMPLES_TXT,
    CompileRecord,
    Resume,
    RunRecord,
    save_run_config,
)
from sympformer.train.setup import RunData, new_run_record, open_run
from sympformer.train.stop import StopRequest, TrainingInterrupted


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
    """Train `cfg` into the run folder `out` (default runs/<variant>-<time>), or continue the run
    in folder `resume` (whose config.json must equal `cfg` up to RESUMABLE_FIELDS).

    Under torchrun every process calls this; rank 0 writes the files.

    Raises:
        ValueError: bad config, data or folder (RunError, DataError, CheckpointError, ...).
        OSError: a folder that cannot be written.
        DivergenceError: max_skips consecutive non-finite steps (the last checkpoint is kept).
        TrainingInterrupted: SIGINT or SIGTERM (after the step and its checkpoint).
    """
    d = init_distributed(cfg.train.device)
    try:
        with StopRequest() as stop:
            result = Trainer(cfg, d, out, resume, stop).run()
        # rank 0 still writes the plot and samples: a rank that tore its gloo group down and
        # exited meanwhile could abort ("terminate called without an active exception")
        d.barrier()
        return result
    finally:
        shutdown(d)


class StepResult(NamedTuple):
    lr: float
    loss: float
    grad_norm: float
    stop_signal: int | None

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


# -------------------------------------------------------------------------------------------------
# Training


class Trainer:
    """One run: `__init__` opens it (checks and loads; writes nothing), `run` trains."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        d: Dist,
        out: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None,
        stop: StopRequest | None = None,
    ) -> None:
        self.d, self.stop = d, stop or StopRequest()
        self.setup = open_run(
            cfg, d, None if out is None else Path(out), None if resume is None else Path(resume)
        )
        self.cfg = cfg = self.setup.cfg
        # Same seed, same initial weights and RNG streams (data order has its own seed).
        random.seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)  # noqa: NPY002 (seeds code that uses the legacy global RNG)
        torch.manual_seed(cfg.train.seed)
        self.model = LanguageModel(cfg.model).to(d.device)
        self.model.activation_checkpointing = cfg.train.activation_checkpointing
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.data = RunData.build(self.setup, d)
        self.progress = Progress()
        ckpt = self.setup.checkpoint
        if ckpt is not None:
            ckpt.load_model(self.model, d.device)
            ckpt.load_optimizer(self.optimizer)
            try:
                self.data.batches.load_state_dict(ckpt.progress.data)
            except ValueError as err:
                raise CheckpointError(f"{ckpt.path}: {err}") from None
            self.progress = dataclasses.replace(ckpt.progress)
        self.metrics: MetricsLog | None = None

    @property
    def run_dir(self) -> Path:
        return self.setup.run_dir

    @property
    def tokens_per_step(self) -> int:
        tc = self.cfg.train
        return tc.batch_size * tc.grad_accum * self.d.world_size * self.cfg.model.block_size

    def run(self) -> RunResult:
        tc, p = self.cfg.train, self.progress
        stop = tc.max_steps if tc.stop_after is None else min(tc.max_steps, tc.stop_after)
        decision = self.d.broadcast(self._decide_compile(stop - p.step))  # every rank alike
        if self.d.is_main:
            self._announce(stop, decision)
        train_model, fwd_model = self._wrap(decision.enabled)
        warmup = self._warm_up(train_model, fwd_model) if decision.enabled else None
        compiled = CompileRecord(str(tc.compile).lower(), decision.enabled, decision.reason, warmup)
        if self.d.is_main:
            self._write_run_files(compiled)
        if self.setup.checkpoint is not None:
            self.setup.checkpoint.restore_rng()
        bar = tqdm(total=tc.max_steps, initial=p.step, desc=self.run_dir.name, unit="step",
                   dynamic_ncols=True, disable=not (tc.progress and self.d.is_main))  # fmt: skip
        try:
            self._loop(train_model, fwd_model, stop, bar)
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()
        finished = p.step >= tc.max_steps
        entropy = self.setup.corpus.unigram_entropy("val")
        if self.d.is_main:
            self._report(finished, entropy)
        return RunResult(
            run_dir=self.run_dir,
            steps=p.step,
            tokens=p.tokens,
            elapsed=p.elapsed,
            final_val_loss=p.last_val_loss,
            best_val_loss=p.best_val_loss,
            unigram_entropy=entropy,
            skipped=p.skipped,
            finished=finished,
        )

    def _loop(self, train_model, fwd_model, stop: int, bar: tqdm) -> None:
        """Steps progress.step .. stop - 1 (see the module docstring for the duties)."""
        p = self.progress
        clock, elapsed0 = time.perf_counter(), p.elapsed
        for step in range(p.step, stop):
            result = self._optimizer_step(step, train_model)
            val = self._evaluate_if_due(step, fwd_model)
            last = step + 1 == stop or result.stop_signal is not None
            labels = self._checkpoint_labels(step, val, result.finite, last)
            p.elapsed = elapsed0 + time.perf_counter() - clock
            self._log(step, result, val, labels)
            self._save(labels)
            self._show(bar, result)
            self._check_divergence(step)
            if result.stop_signal is not None:
                self.d.barrier()  # every rank leaves after rank 0's checkpoint is written
                raise TrainingInterrupted(result.stop_signal, step, str(self.run_dir))

    # ---------------------------------------------------------------------------------------------
    # The duties of one step

    def _optimizer_step(self, step: int, train_model: torch.nn.Module) -> StepResult:
        """Forward/backward of grad_accum micro-batches, clipping, then AdamW or a skip."""
        tc, p = self.cfg.train, self.progress
        lr = lr_at(step, tc)
        set_lr(self.optimizer, lr)
        loss_sum = torch.zeros((), device=self.d.device)
        for micro in range(tc.grad_accum):
            x, y = (t.to(self.d.device, non_blocking=True) for t in next(self.data.batches))
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
        # one collective: the loss summed over processes and every process's stop votes
        reduced = self.d.all_reduce_sum(torch.cat([loss_sum[None], self.stop.votes(loss_sum)]))
        loss_mean = reduced[0] / (tc.grad_accum * self.d.world_size)
        values = torch.cat([loss_mean[None], norm[None].to(loss_mean.dtype), reduced[1:]])
        loss_value, norm_value, *votes = values.tolist()  # host sync: one per step
        result = StepResult(lr, loss_value, norm_value, StopRequest.decide(votes))
        if result.finite:
            self.optimizer.step()
            p.consecutive_skips = 0
        else:
            p.skipped += 1
            p.consecutive_skips += 1
        self.optimizer.zero_grad(set_to_none=True)
        p.step, p.tokens = step + 1, p.tokens + self.tokens_per_step
        p.data = self.data.batches.state_dict()
        return result

    def _evaluate_if_due(self, step: int, fwd_model: torch.nn.Module) -> float | None:
        tc = self.cfg.train
        if not (step % tc.eval_every == 0 or step == tc.max_steps - 1):
            return None
        val = self.evaluate(fwd_model, self.data.val)
        self.progress.last_val_loss, self.progress.last_val_step = val, step
        return val

    def _checkpoint_labels(self, step: int, val: float | None, finite: bool, last: bool):
        """ "best" and/or "latest"; none after a skipped step (it never overwrites the last good
        checkpoint)."""
        p, tc = self.progress, self.cfg.train
        labels = []
        if not finite:
            return labels
        if val is not None and math.isfinite(val):
            if p.best_val_loss is None or val < p.best_val_loss:
                p.best_val_loss, p.best_step = val, step
                labels.append("best")
        if (step + 1) % tc.ckpt_every == 0 or step == tc.max_steps - 1 or last:
            labels.append("latest")
        return labels

    def _log(self, step: int, r: StepResult, val: float | None, labels: list[str]) -> None:
        tc, p = self.cfg.train, self.progress
        due = step % tc.log_every == 0 or step == tc.max_steps - 1
        if self.metrics is None or not (due or val is not None or labels or not r.finite):
            return
        row = {"step": step, "tokens": p.tokens, "time_s": round(p.elapsed, 3), "lr": r.lr,
               "train_loss": r.loss, "val_loss": val, "grad_norm": r.grad_norm,
               "skipped": p.skipped}  # fmt: skip
        row.update(self.model.scalars())  # host sync: at logged steps only
        self.metrics.append(row)

    def _save(self, labels: list[str]) -> None:
        if not (labels and self.d.is_main):
            return
        self.metrics.sync()
        save_checkpoint(self.run_dir, labels, self.model, self.optimizer, self.progress,
                        self.cfg, self.setup.corpus.tokenizer, self.d.world_size)  # fmt: skip

    def _show(self, bar: tqdm, r: StepResult) -> None:
        val = self.progress.last_val_loss
        bar.set_postfix(loss=f"{r.loss:.4f}", val="-" if val is None else f"{val:.4f}",
                        refresh=False)  # fmt: skip
        bar.update()

    def _check_divergence(self, step: int) -> None:
        p, tc = self.progress, self.cfg.train
        if p.consecutive_skips < tc.max_skips:
            return
        first = step - p.consecutive_skips + 1
        latest = self.run_dir / CHECKPOINTS / "latest"
        kept = f"; the last good checkpoint is {latest}" if latest.exists() else ""
        raise DivergenceError(
            f"stopped: steps {first}..{step} had a non-finite loss or gradient "
            f"({tc.max_skips} in a row, TrainConfig.max_skips){kept}"
        )

    @torch.no_grad()
    def evaluate(self, fwd_model: torch.nn.Module, batches: list[tuple[Tensor, Tensor]]) -> float:
        """Mean loss over `batches` (this process's share of the fixed validation set), averaged
        over all processes' shares."""
        self.model.eval()
        total = torch.zeros((), device=self.d.device)
        with self._autocast():
            for x, y in batches:
                _, loss = fwd_model(x.to(self.d.device), y.to(self.d.device))
                total += loss
        self.model.train()
        return float(self.d.all_reduce_sum(total)) / self.data.val_count  # host sync

    # ---------------------------------------------------------------------------------------------
    # Set-up and reporting

    def _decide_compile(self, steps: int) -> CompileDecision:
        """train.compile: true/false as asked; auto from the toolchain and the estimated pay-off
        over ``steps`` (one eager step measured on a validation batch, only when it matters)."""
        setting, device = self.cfg.train.compile, self.d.device.type
        seconds = 0.0
        if setting == "auto" and steps > 0 and toolchain_ok(device):
            seconds = eager_step_seconds(self.model, self._probe_batch(), self._autocast)
            seconds *= self.cfg.train.grad_accum
        speedup = SPEEDUPS.get(self.cfg.model.arch, SPEEDUP)
        return decide(setting, device, steps, seconds, speedup=speedup)

    def _probe_batch(self) -> list[Tensor]:
        """The first validation batch on the device: what timing and warm-up passes run on."""
        return [t.to(self.d.device) for t in self.data.val[0]]

    def _warm_up(self, train_model: torch.nn.Module, fwd_model: torch.nn.Module) -> float:
        seconds = warm_up(self.model, train_model, fwd_model, self._probe_batch(), self._autocast)
        if self.d.is_main:
            print(f"compiled in {seconds:.1f} s (warm-up; not counted in tokens/s)", flush=True)
        return seconds

    def _wrap(self, compiled: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(module the training forward runs through, module evaluation runs through)."""
        fwd: torch.nn.Module = self.model
        if compiled:
            fwd = torch.compile(self.model)
        train = fwd
        if self.d.enabled:
            ids = [self.d.device.index] if self.d.device.type == "cuda" else None
            train = DistributedDataParallel(fwd, device_ids=ids)
        return train, fwd

    def _autocast(self) -> contextlib.AbstractContextManager:
        tc = self.cfg.train
        return torch.autocast(
            self.d.device.type, dtype=tc.autocast_dtype, enabled=tc.dtype != "float32"
        )

    def _write_run_files(self, compiled: CompileRecord) -> None:
        run_dir, tokenizer = self.run_dir, self.setup.corpus.tokenizer
        run_dir.mkdir(parents=True, exist_ok=True)
        # stop_after applies to one invocation: a later --resume runs on unless asked again
        save_run_config(run_dir, dataclasses.replace(
            self.cfg, train=dataclasses.replace(self.cfg.train, stop_after=None)))  # fmt: skip
        if self.setup.resuming and (run_dir / RUN_JSON).is_file():
            record = RunRecord.load(run_dir)
            now = Resume(self.progress.step, time.strftime("%Y-%m-%dT%H:%M:%S"), compiled)
            record = dataclasses.replace(record, resumes=(*record.resumes, now))
        else:
            record = new_run_record(
                self.setup, self.data, self.d, self.model.num_params(), compiled
            )
        record.save(run_dir)
        (run_dir / TOKENIZER_DIR).mkdir(exist_ok=True)
        tokenizer.save(run_dir / TOKENIZER_DIR)
        columns = list(self.model.scalars())  # host sync: once, for the columns
        self.metrics = MetricsLog(run_dir / METRICS_CSV, columns)
        self.metrics.start(self.progress.step if self.setup.resuming else None)

    def _announce(self, stop: int, decision: CompileDecision) -> None:
        tc, m = self.cfg.train, self.cfg.model
        start = f"resuming at step {self.progress.step}" if self.setup.resuming else "new run"
        print(
            f"sympformer: {Variant.of(m)}, {self.model.num_params():,} parameters, "
            f"{self.tokens_per_step:,} tokens/step ({tc.batch_size} x {tc.grad_accum} x "
            f"{self.d.world_size} x {m.block_size}), steps {self.progress.step}..{stop - 1} of "
            f"{tc.max_steps} on {self.d.device} ({tc.dtype}); {start} in {self.run_dir}\n"
            f"compile: {'on' if decision.enabled else 'off'} ({decision.reason})",
            flush=True,
        )

    def _report(self, finished: bool, entropy: float) -> None:
        p, corpus = self.progress, self.setup.corpus
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
            baseline=entropy,
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
            f"{entropy:.4f} nats\n"
            f"{p.step} steps, {p.tokens:,} tokens ({corpus.epochs(p.tokens):.2f} epochs) in "
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
        generator = torch.Generator(self.d.device).manual_seed(tc.seed)
        idx = torch.tensor([self.data.prompt] * tc.samples, device=self.d.device)  # (S, T0)
        with self._autocast():
            out = self.model.generate(
                idx, tc.sample_tokens, tc.temperature, tc.top_k, generator=generator
            )
        self.model.train()
        tokenizer = self.setup.corpus.tokenizer
        return [tokenizer.decode(row[1:]) for row in out.tolist()]  # without the leading EOT
