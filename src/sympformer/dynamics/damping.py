r"""Damping schedule of the accelerated flows (SPEC §4.1).

.. math::
    \eta(t) = c_{\log}\log(t/t_0) + c_{\rm lin}\,t,\qquad
    \alpha(t) = \eta'(t) = c_{\log}/t + c_{\rm lin},\qquad
    \sigma(t, h) = e^{-(\eta(t+h)-\eta(t))} = \Big(\tfrac{t}{t+h}\Big)^{c_{\log}} e^{-c_{\rm lin}h}.

Everything is a tensor operation: ``t`` and ``h`` are 0-d tensors (or broadcastable), never Python
floats read from the device, so no host sync happens inside a forward pass."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

ETA_MAX = 12.0
"""Clamp for every friction exponent :math:`\\Delta\\eta`: e^12 ≈ 1.6e5 keeps e^{±Δη} finite in
fp32/bf16."""


class Damping(NamedTuple):
    r"""Log-linear damping :math:`\eta(t) = c_{\log}\log(t/t_0) + c_{\rm lin} t`.

    Args:
        c_log: Nesterov-type coefficient (3 gives Nesterov's 3/t), 0-d tensor or float, >= 0.
        c_lin: heavy-ball coefficient (constant friction), 0-d tensor or float, >= 0.
        t0: reference time, > 0 (the language models start at t = t0 = 1).
        retention: ``plain_euler``'s momentum retention a (learned in the models); ``None`` binds
            :math:`a = \sigma(t, h)`, which makes ``plain_euler`` a consistent first-order scheme.
    """

    c_log: Tensor | float
    c_lin: Tensor | float
    t0: float = 1.0
    retention: Tensor | None = None

    def eta(self, t: Tensor) -> Tensor:
        r""":math:`\eta(t) = c_{\log}\log(t/t_0) + c_{\rm lin}t`."""
        return self.c_log * torch.log(t / self.t0) + self.c_lin * t

    def alpha(self, t: Tensor) -> Tensor:
        r"""Friction rate :math:`\alpha(t) = \eta'(t) = c_{\log}/t + c_{\rm lin}`."""
        return self.c_log / t + self.c_lin

    def delta_eta(self, t: Tensor, h: Tensor | float) -> Tensor:
        r""":math:`\Delta\eta = \eta(t+h) - \eta(t) = c_{\log}\,\mathrm{log1p}(h/t) + c_{\rm lin}h`,
        clamped to ``[-ETA_MAX, ETA_MAX]`` (written without cancellation, so accurate for small
        h)."""
        d = self.c_log * torch.log1p(h / t) + self.c_lin * h
        return F.hardtanh(d, -ETA_MAX, ETA_MAX)  # clamp, with a one-kernel backward

    def sigma(self, t: Tensor, h: Tensor | float) -> Tensor:
        r"""Exact friction factor over one step, :math:`\sigma(t,h) = e^{-\Delta\eta}`."""
        return torch.exp(-self.delta_eta(t, h))


NO_DAMPING = Damping(0.0, 0.0)
"""The conservative case: :math:`\\eta \\equiv 0`, :math:`\\sigma \\equiv 1`."""
