"""The language model: embed -> blocks (steps of a flow) -> tied head. Reads top to bottom::

x = tok_emb[idx] + pos_emb[pos]                          # (B, T, C) positions
p = 0 | vel_tok_emb[idx] + vel_pos_emb[pos]              # (B, T, C) momenta (velocity_init)
t = t0 = 1                                               # 0-d tensor: no host sync
for block in blocks:
    x, p, t = block(x, p, t)                             # one step of the flow per layer
logits = LN_f(x) @ tok_emb.T                             # (B, T, V)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from sympformer.dynamics import State
from sympformer.files import atomic_write, atomic_write_text
from sympformer.model.attention import INIT_STD, ClassicalAttention, Scalar, _OracleModule
from sympformer.model.blocks import BLOCKS, MLP
from sympformer.model.cache import Cache
from sympformer.model.config import ModelConfig
from sympformer.model.variant import Variant

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class CheckpointError(ValueError):
    """A model folder that is missing, corrupt or does not match its config."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name if the message is empty), for
    one-line errors built from a library's multi-line one."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class LanguageModel(nn.Module):
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of storing them (per block,
    `torch.utils.checkpoint`): training memory ~ one block's activations plus each block's input
    state, for about one more forward pass of compute. Gradients are unchanged. Only where
    gradients are recorded and no decoding cache is used. Set it on the model:
    ``model.activation_checkpointing = True``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.d_model
        self.tok_emb = nn.Embedding(cfg.padded_vocab, c)
        self.pos_emb = nn.Embedding(cfg.block_size, c)
        if cfg.velocity_init == "learned":
            self.vel_tok_emb = nn.Embedding(cfg.padded_vocab, c)
            self.vel_pos_emb = nn.Embedding(cfg.block_size, c)
        else:
            self.vel_tok_emb = self.vel_pos_emb = None
        self.blocks = nn.ModuleList(BLOCKS[cfg.spec.family](cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(c, bias=False)
        self.register_buffer("t0", torch.tensor(1.0), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02²) for every Linear and Embedding; then, and only then, the special inits:
        residual output maps scaled by 1/sqrt(2L) (GPT-2), orthonormal metric factors W_O."""
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=INIT_STD)
        for m in self.modules():
            if isinstance(m, ClassicalAttention | MLP):
                nn.init.normal_(m.proj.weight, std=INIT_STD / math.sqrt(2 * self.cfg.n_layer))
            if isinstance(m, _OracleModule):
                m.reset_special(self.cfg.n_layer)

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, cache: Cache | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) int64 -> logits (B, T, V) and the mean cross-entropy if ``targets`` (B, T)
        given (-1 is ignored). With a ``cache``, idx continues the cached prefix."""
        offset = 0 if cache is None else cache.offset
        n_tok = idx.shape[1]
        if offset + n_tok > self.cfg.block_size:
            raise ValueError(
                f"sequence of {offset + n_tok} tokens exceeds the context "
                f"block_size={self.cfg.block_size}"
            )
        pos = torch.arange(offset, offset + n_tok, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        if self.vel_tok_emb is not None:
            p = self.vel_tok_emb(idx) + self.vel_pos_emb(pos)
        else:
            p = torch.zeros_like(x)
        s = State(x, p, self.t0)
        recompute = self.activation_checkpointing and cache is None and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            tape = None
            if cache is not None:
                tape = cache.tapes[i]
                tape.rewind()
            if recompute:
                s = checkpoint(block, s, use_reentrant=False)
            else:
                s = block(s, tape)
        if cache is not None:
            cache.advance(n_tok)
        logits = (self.ln_f(s.x) @ self.tok_emb.weight.mT)[..., : self.cfg.vocab_size]  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        return logits, loss

    def new_cache(self) -> Cache:
        return Cache(self.cfg.n_layer, self.cfg.block_size)

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Samples ``max_new_tokens`` continuations of idx (B, T) -> (B, T + max_new_tokens).

        temperature 0 is greedy decoding. With the cache each new token costs one token's forward
        (plus the attention read of the prefix). When the context is full the window jumps forward,
        keeping its last half (positions are absolute, so the cache is rebuilt); the uncached path
        uses the same windows, so both give the same tokens."""
        if idx.shape[1] > self.cfg.block_size:
            raise ValueError(
                f"prompt of {idx.shape[1]} tokens exceeds the context "
                f"block_size={self.cfg.block_size}"
            )
        if idx.shape[1] == 0:
            raise ValueError("the prompt is empty: give at least one token")
        start, cache = 0, None
        for _ in range(max_new_tokens):
            if idx.shape[1] - start > self.cfg.block_size:
                start, cache = idx.shape[1] - self.cfg.block_size // 2, None
            if not use_cache:
                logits, _ = self(idx[:, start:])
            elif cache is None:
                cache = self.new_cache()
                logits, _ = self(idx[:, start:], cache=cache)
            else:
                logits, _ = self(idx[:, -1:], cache=cache)
            idx = torch.cat(
                [idx, self._sample(logits[:, -1], temperature, top_k, generator)], dim=1
            )
        return idx

    @staticmethod
    def _sample(
        logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
    ) -> Tensor:
        """Next token (B, 1) from the last logits (B, V)."""
        if temperature == 0:
            return logits.argmax(-1, keepdim=True)
        logits = logits.float() / temperature
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1, generator=generator)

    def num_params(self, trainable: bool = True) -> int:
        """Parameter count, each tensor once (the head is tied to the token embedding)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)

    def param_groups(self, weight_decay: float = 0.1, scalar_lr_mult: float = 100.0) -> list[dict]:
        """AdamW groups: matrices with weight decay; norms, biases, embeddings without; the learned
        per-layer scalars (the ``raw`` parameters of `Scalar` modules) in their own group at
        ``scalar_lr_mult`` x LR. Each group has an ``lr_mult`` the training loop multiplies the
        scheduled LR by."""
        groups = {
            "decay": {"params": [], "weight_decay": weight_decay, "lr_mult": 1.0},
            "no_decay": {"params": [], "weight_decay": 0.0, "lr_mult": 1.0},
            "scalars": {"params": [], "weight_decay": 0.0, "lr_mult": scalar_lr_mult},
        }
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        for name, p in self.named_parameters():
            if name.endswith(".raw"):
                groups["scalars"]["params"].append(p)
            elif p.dim() >= 2 and id(p) not in embeddings:
                groups["decay"]["params"].append(p)
            else:
                groups["no_decay"]["params"].append(p)
        return [dict(g, name=k) for k, g in groups.items() if g["params"]]

    @torch.no_grad()
    def scalars(self) -> dict[str, float]:
        """The learned per-layer scalars after their maps, e.g. {"blocks.0.h": 0.31, ...}, for
        logging (one host sync for all of them: call at log intervals only). Vectors (metric
        scales) report their mean."""
        named = [(name, m) for name, m in self.named_modules() if isinstance(m, Scalar)]
        if not named:
            return {}
        values = torch.stack([m().float().mean() for _, m in named]).tolist()
        return dict(zip([name for name, _ in named], values, strict=True))

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Writes config.json and model.safetensors (Hugging Face style), each atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = json.dumps(dataclasses.asdict(self.cfg), indent=2)
        atomic_write_text(folder / CONFIG_FILE, cfg)
        atomic_write(folder / WEIGHTS_FILE, lambda f: save_model(self, f))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu") -> LanguageModel:
        """Rebuilds the config (validated again) and loads the weights strictly."""
        folder = Path(folder)
        cfg = load_config(folder)
        model = cls(cfg)
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise CheckpointError(f"{weights} not found")
        try:
            load_model(model, weights, strict=True, device=device)
        except (SafetensorError, RuntimeError, OSError, ValueError) as err:
            raise CheckpointError(
                f"{weights} does not fit {folder / CONFIG_FILE}: {first_line(err)}"
            ) from None
        return model.to(device)


def load_config(folder: Path) -> ModelConfig:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found (is {folder} a model folder?)")
    try:
        fields = json.loads(path.read_text())
        return ModelConfig(**fields)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    except TypeError as err:
        raise CheckpointError(f"{path} has unknown or missing fields: {err}") from None


def build_model(cfg: ModelConfig) -> LanguageModel:
    return LanguageModel(cfg)


def count_params(cfg: ModelConfig) -> int:
    """Parameter count of ``cfg`` without allocating memory (built on the meta device)."""
    with torch.device("meta"):
        return LanguageModel(cfg).num_params()


def matched_gpt(target: int, like: ModelConfig, arch: str = "gpt") -> ModelConfig:
    """A baseline ``arch`` with about ``target`` parameters, other fields as in ``like``.

    The widest width (a multiple of n_head) not above the target, then the MLP width that closes
    the gap: the fair control for variants with more parameters (e.g. a learned velocity embedding).
    """
    base = Variant(arch).model(like, mlp_hidden=None)
    widths = [w for w in range(like.n_head, 16 * like.d_model + 1, like.n_head)]
    fits = [w for w in widths if count_params(dataclasses.replace(base, d_model=w)) <= target]
    cfg = dataclasses.replace(base, d_model=max(fits) if fits else like.n_head)
    per_unit = count_params(dataclasses.replace(cfg, mlp_hidden=cfg.mlp_width + 1)) - count_params(
        cfg
    )
    extra = round((target - count_params(cfg)) / per_unit)
    return dataclasses.replace(cfg, mlp_hidden=max(1, cfg.mlp_width + extra))
