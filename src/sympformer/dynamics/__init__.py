"""Pure mathematics of accelerated attention: damping, oracles, energies, integrators, flows.

Imports torch and math only (no parameters, no I/O); `sympformer.model` builds its blocks from these
functions, so the flow experiments and the language models compute the same thing."""

from sympformer.dynamics.damping import NO_DAMPING, Damping
from sympformer.dynamics.energies import linear_hamiltonian, softmax_hamiltonian
from sympformer.dynamics.integrators import (
    SCHEMES,
    Integrator,
    State,
    Steps,
    euler,
    get_scheme,
    gradient_flow_velocity,
    nesterov,
)
from sympformer.dynamics.kernels import linear_attention, softmax_attention
from sympformer.dynamics.memory import Tape
from sympformer.dynamics.oracles import LinearOracle, Oracle, QuadraticPotential, SoftmaxOracle

__all__ = [
    "NO_DAMPING",
    "SCHEMES",
    "Damping",
    "Integrator",
    "LinearOracle",
    "Oracle",
    "QuadraticPotential",
    "SoftmaxOracle",
    "State",
    "Steps",
    "Tape",
    "euler",
    "get_scheme",
    "gradient_flow_velocity",
    "linear_attention",
    "linear_hamiltonian",
    "nesterov",
    "softmax_attention",
    "softmax_hamiltonian",
]
