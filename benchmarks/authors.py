"""The authors' models, built from a local copy of their code, to time them beside ours.

Their repository (ViktorAJStein/SympFormer) is not part of this project and nothing of it is
copied here: ``--authors DIR`` in `benchmarks.targets` points at a directory holding their
``model.py`` (e.g. a clone), which this module imports and calls through its public constructors
with the paper model's sizes (4 layers, 4 heads, width 64, context 128, vocabulary 512, no bias,
no dropout) and the hyper-parameters of their README's example command (step 0.3, learned
log-linear damping starting at c_log = 3, c_lin = 1e-4, clip 12, momentum LayerNorm at the end,
learned initial velocity). Their training step here: forward with targets (their models return
``(logits, loss)``), backward, and `torch.optim.AdamW` with PyTorch's defaults for the device.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import PAPER_MODEL, train_step

PRESYMP = {
    "h": 0.3,
    "t0": 1.0,
    "eta_mu": None,
    "eta_log_coef": None,
    "eta_lin_coef": None,
    "eta_log_init": 3.0,
    "eta_lin_init": 1e-4,
    "eta_learnable": True,
    "eta_mode": "loglin",
    "eta_init": None,
    "eta_clip": 12.0,
    "presymp_lnp": "end",
    "use_v0_init": True,
}
"""Keyword arguments of their SympFormer models (README example command)."""


def _import(directory: Path):
    path = Path(directory) / "model.py"
    if not path.is_file():
        raise SystemExit(f"error: --authors {directory}: no model.py there (a copy of their repo)")
    spec = importlib.util.spec_from_file_location("authors_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _complete(model: nn.Module, m) -> nn.Module:
    """Their ``DampedEulerAttention`` reads a (C, C) map ``c_B`` that one revision of their file
    (0028e4b) forgets to create; the revisions before and after create it (N(0, 0.02) after the
    model's init). Add it where it is missing so that the step runs; a no-op elsewhere."""
    for mod in model.modules():
        if isinstance(mod, m.DampedEulerAttention) and not hasattr(mod, "c_B"):
            c = mod.cfg.n_embd
            mod.c_B = nn.Linear(c, c, bias=False)
            nn.init.normal_(mod.c_B.weight, std=0.02)
    return model


def builders(directory: Path, context: int) -> dict[str, Callable[[], nn.Module]]:
    """Our label -> a function building their model of that architecture, with the sizes of
    `common.PAPER_MODEL` at ``context``. Their names (their training script's ``--arch``), in
    order: baseline, yurii_lt, presymp_euler, presymp_etd_ab2, lin_baseline, lin_presymp."""
    m = _import(directory)
    p = PAPER_MODEL
    cfg = lambda: m.ModelConfig(  # noqa: E731
        vocab_size=p.vocab_size, block_size=context, n_layer=p.n_layer, n_head=p.n_head,
        n_embd=p.d_model, dropout=0.0, bias=False,
    )  # fmt: skip
    softmax = dict(mlp_use_attn_vel=False, mlp_use_p_vel=False, no_mlp=False, lookahead=False)
    tao = dict(xi=1.0, r_thresh=1e-2, r_low=1e-4, xi_mult_up=1.25, xi_mult_down=0.5, xi_min=1e-4,
               xi_max=100.0, theta_max=1.0)  # fmt: skip
    return {
        "gpt": lambda: m.GPTModel(cfg(), no_mlp=False),
        "yurii": lambda: m.YuriiFormerModel(
            cfg(),
            use_v0_init=True,
            noise_eta=0.0,
            noise_gamma=0.55,
            noise_loc="v",
            restart_mode="none",
            restart_min_layer=1,
            no_mlp=False,
        ),  # fmt: skip
        "symp:presymp_euler": lambda: _complete(
            m.PresympModel(cfg(), attn_scheme="euler", **PRESYMP, **tao, **softmax), m
        ),
        "symp:etd_ab2": lambda: _complete(m.PresympModelETDAB2(cfg(), **PRESYMP, **softmax), m),
        "gpt_linear": lambda: m.LinAttnModel(cfg(), h=PRESYMP["h"], no_mlp=False),
        "symp_linear:presymp_euler": lambda: m.LinAttnPresympModel(
            cfg(), **PRESYMP, no_mlp=False, attn_cls="presymp"
        ),
    }


def their_step(model: nn.Module, batch: int):
    """`common.train_step` of their model with `torch.optim.AdamW` at PyTorch's defaults; exits
    with one line if its loss is not finite."""
    step = train_step(model, batch, optimizer=torch.optim.AdamW(model.parameters(), lr=3e-4))
    idx = torch.randint(model.cfg.vocab_size, (batch, model.cfg.block_size + 1))
    _, loss = model(idx[:, :-1].contiguous(), idx[:, 1:].contiguous())
    if not math.isfinite(loss.item()):
        raise SystemExit(f"error: their {type(model).__name__} gives a non-finite loss")
    return step
