"""ModelConfig: one frozen, validated dataclass; each variant of the paper is one field."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from sympformer import check
from sympformer.dynamics import Integrator, get_scheme


@dataclass(frozen=True)
class ArchSpec:
    family: str  # "euler" (GPT residual), "nesterov" (YuriiFormer) or "hamiltonian" (SympFormer)
    kernel: str  # "softmax" or "linear"
    description: str
    h_init: Callable[[Integrator | None], float] | None = None
    """Initial learned step given the scheme (SPEC §7); None: the arch learns no step."""

    @property
    def accelerated(self) -> bool:
        return self.family == "hamiltonian"


def _scheme_step(scheme: Integrator | None) -> float:
    return scheme.h_init


def _linear_step(scheme: Integrator | None) -> float:
    """Linear accelerated models: 0.01, except a learned retention (plain_euler) steps like
    linear GPT (1.0)."""
    return 1.0 if "retention" in scheme.reads else 0.01


ARCHS: dict[str, ArchSpec] = {
    "gpt": ArchSpec("euler", "softmax", "GPT: explicit Euler of softmax attention, h = 1"),
    "gpt_linear": ArchSpec(
        "euler", "linear", "linear-attention GPT: Euler, learned h", lambda _: 1.0
    ),
    "yurii": ArchSpec("nesterov", "softmax", "YuriiFormer: Nesterov per Lie-Trotter sub-step"),
    "symp": ArchSpec(
        "hamiltonian", "softmax", "SympFormer: accelerated softmax attention", _scheme_step
    ),
    "symp_linear": ArchSpec(
        "hamiltonian", "linear", "SympFormer: accelerated linear attention", _linear_step
    ),
}

VelocityInit = Literal["auto", "zero", "learned"]
MomentumNorm = Literal["none", "end"]
Drift = Literal["metric", "identity"]
Force = Literal["hamiltonian", "potential", "attention"]
DampingKind = Literal["schedule", "constant"]
MlpStep = Literal["euler", "nesterov"]
INGREDIENTS: dict[str, tuple[str, ...]] = {
    "drift": get_args(Drift),
    "force": get_args(Force),
    "damping": get_args(DampingKind),
    "mlp_step": get_args(MlpStep),
}
"""The ingredients that take SympFormer apart (issue 14; SPEC §5 "Relations"): field -> values,
the first value the accelerated archs' default. Other archs leave them None."""

STEP_BOUNDS = (1e-4, 4.0)
"""Guard on every learned step h: above 0 (v_att divides by h) and below the flows' stable range."""
DAMPING_BOUNDS = (0.0, 20.0)
"""Guard on c_log and c_lin: an explicit friction step is unstable once h·α nears 1."""


@dataclass(frozen=True)
class ModelConfig:
    """A language model of the family: GPT, linear GPT, YuriiFormer or SympFormer (SPEC §7)."""

    arch: str = "symp"
    """One of ARCHS: gpt | gpt_linear | yurii | symp | symp_linear."""
    scheme: str | None = None
    """Integrator key of sympformer.dynamics.SCHEMES (symp, symp_linear; default presymp_euler)."""
    vocab_size: int = 4096
    """Tokens the tokenizer produces; embeddings are padded to a multiple of 64."""
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 64
    block_size: int = 128
    """Longest context (learned position embeddings)."""
    mlp_hidden: int | None = None
    """MLP width (GELU, no bias); None: 4 * d_model."""
    velocity_init: VelocityInit = "auto"
    """Initial velocity: zero | learned (token + position velocity embedding, YuriiFormer style) |
    auto (learned for yurii, zero otherwise)."""
    h_init: float | None = None
    """Initial step h per layer; None: SPEC §7 (0.3 first-order schemes, 0.01 for ab2/etd_ab2/tao/
    strang and linear accelerated schemes, 1.0 for linear plain_euler and gpt_linear)."""
    untied_steps: bool = False
    """Separate learned h_X (drift, time) and h_Y (kick); default one h per layer."""
    c_log_init: float = 3.0
    """Damping eta(t) = c_log log t + c_lin t: c_log starts at Nesterov's 3."""
    c_lin_init: float = 1e-4
    nu_init: float = 1.0
    """Potential weight nu of the softmax Hamiltonian (learned, positive)."""
    lookahead: bool = True
    """Oracle look-ahead: the kernel is evaluated at LN(X + mu_la Y)."""
    lookahead_init: float = 1e-3
    mlp_lookahead: bool = True
    """MLP sub-step evaluated at X + mu v_att (v_att the attention step's velocity)."""
    mlp_lookahead_init: float = 0.9
    mlp_gain_init: float = 1.0
    momentum_norm: MomentumNorm = "end"
    """none | end: a LayerNorm on the momentum after each attention step (not in the last layer)."""
    qk_tied: bool = False
    """W_K = W_Q, making every A_h symmetric positive semi-definite as the theory assumes."""
    retention_init: float = 0.9
    """plain_euler's learned momentum retention a."""
    xi_init: float = 0.5
    """tao/strang binding xi = theta_max sigmoid(.) / (2h), sigmoid(.) starting here."""
    theta_max: float = 1.0
    drift: Drift | None = None
    """Accelerated archs: how positions move. metric (default): through the mobility, F = B_h Y / z̄
    (symp) or the Stein kernel, F_i = (1/i) Σ_j k(X_i, X_j) Π Y_j (symp_linear); identity:
    Euclidean kinetic energy, F = Y (YuriiFormer, heavy ball)."""
    force: Force | None = None
    """Accelerated archs: the kick. hamiltonian (default): G = -∂H/∂X in closed form, kinetic
    (metric-variation) and potential terms; potential: G(X, 0), the potential terms only (symp:
    ν z̄_i ā_i, keys through W_Q); attention: the classical attention field Γ(x̂) with a value
    matrix (softmax or linear, as in GPT). drift=identity with force=attention is heavy ball."""
    damping: DampingKind | None = None
    """Accelerated archs: schedule (default): η(t) = c_log log t + c_lin t, both learned; constant:
    a learned constant rate α = c (retention e^(-c h) per step, starting at retention_init)."""
    mlp_step: MlpStep | None = None
    """Accelerated archs: euler (default): X <- X + γ MLP(LN(X + μ v_att)), the look-ahead Euler
    sub-step (mlp_lookahead); nesterov: YuriiFormer's Nesterov sub-step on the momentum,
    x_in = X + μ Y, Y <- LN(β Y + γ MLP(LN x_in)), X <- X + Y."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(
                f"ModelConfig.arch={self.arch!r} is unknown; choose one of {list(ARCHS)}"
            )
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "block_size"):
            check.positive_int(f"ModelConfig.{name}", getattr(self, name))
        check.positive_int("ModelConfig.mlp_hidden", self.mlp_hidden, optional=True)
        if self.d_model % self.n_head:
            raise ValueError(
                f"ModelConfig.d_model={self.d_model} is not divisible by n_head={self.n_head}"
            )
        spec = ARCHS[self.arch]
        if spec.accelerated:
            if self.scheme is None:
                object.__setattr__(self, "scheme", "presymp_euler")
            try:
                get_scheme(self.scheme)
            except ValueError as err:
                raise ValueError(f"ModelConfig.scheme: {err}") from None
        elif self.scheme is not None:
            raise ValueError(
                f"ModelConfig.scheme={self.scheme!r} does not apply to arch={self.arch!r}; "
                "schemes select the integrator of the accelerated archs symp and symp_linear"
            )
        self._check_ingredients(spec)
        check.choice("ModelConfig.velocity_init", self.velocity_init, get_args(VelocityInit))
        if self.velocity_init == "auto":
            object.__setattr__(self, "velocity_init", "learned" if self.arch == "yurii" else "zero")
        if self.velocity_init == "learned" and spec.family == "euler":
            raise ValueError(
                f"ModelConfig.velocity_init='learned': arch={self.arch!r} has no velocity"
            )
        check.choice("ModelConfig.momentum_norm", self.momentum_norm, get_args(MomentumNorm))
        for name in ("nu_init", "mlp_gain_init", "theta_max"):
            check.positive(f"ModelConfig.{name}", getattr(self, name))
        for name in ("c_log_init", "c_lin_init"):  # positive: softplus has no inverse at 0
            check.number(f"ModelConfig.{name}", getattr(self, name), 0, DAMPING_BOUNDS[1],
                         open_low=True)  # fmt: skip
        check.positive("ModelConfig.h_init", self.h_init, optional=True)
        check.number("ModelConfig.h_init", self.h_init, *STEP_BOUNDS, optional=True)
        for name in ("lookahead_init", "mlp_lookahead_init", "retention_init", "xi_init"):
            check.number(f"ModelConfig.{name}", getattr(self, name), 0, 1, open_low=True,
                         open_high=True)  # fmt: skip
        for name in ("untied_steps", "lookahead", "mlp_lookahead", "qk_tied"):
            check.boolean(f"ModelConfig.{name}", getattr(self, name))

    def _check_ingredients(self, spec: ArchSpec) -> None:
        for name, allowed in INGREDIENTS.items():
            value = getattr(self, name)
            if not spec.accelerated:
                if value is not None:
                    raise ValueError(
                        f"ModelConfig.{name}={value!r} does not apply to arch={self.arch!r}; "
                        "the ingredients take the accelerated archs symp and symp_linear apart"
                    )
                continue
            if value is None:
                object.__setattr__(self, name, allowed[0])
            else:
                check.choice(f"ModelConfig.{name}", value, allowed)
        if not spec.accelerated:
            return
        if self.damping == "constant" and "retention" in get_scheme(self.scheme).reads:
            raise ValueError(
                f"ModelConfig.damping='constant' does not apply to scheme={self.scheme!r}: its "
                "learned retention already is a constant damping"
            )
        if spec.kernel == "linear" and self.drift == "identity" and self.force == "potential":
            raise ValueError(
                "ModelConfig.force='potential' with drift='identity' leaves symp_linear without "
                "attention (its potential force -∇W is token-local); choose another force or drift"
            )

    @property
    def spec(self) -> ArchSpec:
        return ARCHS[self.arch]

    @property
    def accelerated(self) -> bool:
        return self.spec.accelerated

    @property
    def mlp_width(self) -> int:
        return 4 * self.d_model if self.mlp_hidden is None else self.mlp_hidden

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def padded_vocab(self) -> int:
        """Vocabulary rounded up to a multiple of 64 (50,257 -> 50,304) for efficient matmuls."""
        return 64 * math.ceil(self.vocab_size / 64)

    @property
    def step_init(self) -> float:
        """Initial h: h_init if given, else the arch's rule for the scheme (SPEC §7 table)."""
        if self.h_init is not None:
            return self.h_init
        return self.spec.h_init(get_scheme(self.scheme) if self.scheme else None)
