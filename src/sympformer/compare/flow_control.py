"""The authors' positive control in continuous time (SPEC §5.1, their "E021"): how much sooner the
damped Hamiltonian flow than the gradient flow brings the objective ratio W(X_t)/W(X_0) below 1e-3
for good. Both flows are integrated by the package's RK4 with the package's oracle; the authors'
figure is gradient flow 310.9 vs damped Hamiltonian 48.9 (6.36x), mean over their five initial
states."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sympformer.dynamics.flows import (
    control_initial_positions,
    control_problem,
    gradient_flow_rhs,
    hamiltonian_rhs,
    rk4_step,
)

AUTHORS_SEEDS = (31001, 31002, 31003, 31004, 31005)
"""numpy.random.default_rng seeds of the authors' five initial states (N = 16, d = 2)."""

TOLERANCE = 1e-3
DT, HORIZON = 0.05, 500.0
"""The authors' RK4 step and horizon."""


def authors_initial_positions(n: int = 16, d: int = 2) -> Tensor:
    """The authors' five initial states, (5, N, d) float64: their standard normals, scaled by
    `control_initial_positions`."""
    z = np.stack([np.random.default_rng(s).standard_normal((n, d)) for s in AUTHORS_SEEDS])
    return control_initial_positions(torch.from_numpy(z))


def settling_times(ratios: Tensor, dt: float, tol: float = TOLERANCE) -> list[float]:
    """Per column of ``ratios`` (steps + 1, B) sampled every dt: the time after which the ratio
    stays <= tol up to the horizon, the crossing interpolated linearly in log ratio between the
    last sample above tol and the next (inf if the last sample is above tol)."""
    out = []
    for r in ratios.T.tolist():
        above = [i for i, v in enumerate(r) if not v <= tol]
        if not above:
            out.append(0.0)
        elif above[-1] == len(r) - 1:
            out.append(math.inf)
        else:
            i = above[-1]
            a, b = math.log(r[i]), math.log(max(r[i + 1], 1e-300))
            out.append(dt * (i + (a - math.log(tol)) / (a - b)))
    return out


@dataclass(frozen=True)
class ControlRatio:
    """Settling times (objective ratio <= tol for good) of both flows from the same states."""

    eps: float
    initial: str
    """Which initial states: the authors' five, or the study's seeds."""
    dt: float
    horizon: float
    gradient: list[float]
    hamiltonian: list[float]

    @property
    def ratio(self) -> float:
        """Mean gradient-flow time / mean damped-Hamiltonian time (the authors' statistic)."""
        gradient = sum(self.gradient) / len(self.gradient)
        return gradient / (sum(self.hamiltonian) / len(self.hamiltonian))  # inf / inf: NaN


def control_ratio(
    eps: float, x0: Tensor, initial: str, dt: float = DT, horizon: float = HORIZON
) -> ControlRatio:
    """RK4 (step dt, up to ``horizon``) of the gradient flow and of the damped Hamiltonian flow
    from rest, for the control with A = εI from the batch of initial positions x0 (B, N, d)."""
    with torch.inference_mode():
        problem = control_problem(eps)
        steps = round(horizon / dt)
        flows = {
            "gradient": (gradient_flow_rhs(problem.oracle), (x0,)),
            "hamiltonian": (hamiltonian_rhs(problem.oracle, problem.damping), (x0, x0 * 0)),
        }
        times = {}
        for name, (rhs, y) in flows.items():
            t = torch.tensor(problem.damping.t0, dtype=x0.dtype)
            objective = [problem.energy(y[0])]  # (B,) each
            for _ in range(steps):
                y, t = rk4_step(rhs, y, t, dt), t + dt
                objective.append(problem.energy(y[0]))
            w = torch.stack(objective)  # (steps + 1, B)
            times[name] = settling_times(w / w[0], dt)
    return ControlRatio(eps, initial, dt, horizon, times["gradient"], times["hamiltonian"])


def control_ratios(eps: float, seeds: Sequence[int]) -> list[ControlRatio]:
    """`control_ratio` from the authors' five initial states and from the study's ``seeds`` (one
    batch, the same RK4), in that order."""
    authors = authors_initial_positions()
    study = torch.cat([control_problem(eps, seed=s).x0 for s in seeds])  # (len(seeds), N, d)
    both = control_ratio(eps, torch.cat([authors, study]), "", DT, HORIZON)
    n = authors.shape[0]
    return [
        dataclasses.replace(both, initial=initial, gradient=both.gradient[part],
                            hamiltonian=both.hamiltonian[part])
        for initial, part in (("authors' 5", slice(0, n)),
                              (f"study seeds ({len(seeds)})", slice(n, None)))
    ]  # fmt: skip
