"""`sympformer flow`: the classical flow and every accelerated scheme on one demo problem at the
same budget of oracle calls (SPEC §5.1); writes flow.csv and flow.png, returns the summary table."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from sympformer.dynamics import SCHEMES, Damping, get_scheme
from sympformer.dynamics.flows import (
    CLASSICAL,
    H_GRID,
    PROBLEMS,
    Trace,
    best_trace,
)

KERNEL_PROBLEMS = {"linear": ("linear",), "softmax": ("softmax", "sphere")}
DEFAULT_CALLS = {"linear": 400, "softmax": 300, "sphere": 100}


@dataclass(frozen=True)
class FlowConfig:
    """One `sympformer flow` experiment; invalid values raise ValueError naming the field."""

    kernel: str = "linear"
    """linear (Stein flow, bilinear kernel) or softmax (W2-type flow with nonlinear mobility)."""
    problem: str | None = None
    """Demo problem: linear | softmax | sphere; default: the kernel's main problem."""
    schemes: tuple[str, ...] = tuple(SCHEMES)
    """Accelerated schemes to run (the classical flow always runs)."""
    particles: int | None = None
    """N; default: 256 (linear), 64 (softmax, sphere)."""
    dim: int | None = None
    """d; default: 10 (linear), 8 (softmax, sphere)."""
    calls: int | None = None
    """Budget of oracle calls K; default 400 (linear), 300 (softmax), 100 (sphere)."""
    seed: int = 0
    c_log: float = 3.0
    """Damping eta = c_log log t + c_lin t (3 is Nesterov's 3/t)."""
    c_lin: float = 0.0
    tol: float = 1e-2
    """Tolerance on the energy gap, relative to the initial gap, for the calls-to-tolerance
    table."""

    def __post_init__(self) -> None:
        if self.kernel not in KERNEL_PROBLEMS:
            raise ValueError(f"flow: kernel={self.kernel!r} is not one of {list(KERNEL_PROBLEMS)}")
        problem = self.problem or KERNEL_PROBLEMS[self.kernel][0]
        if problem not in KERNEL_PROBLEMS[self.kernel]:
            raise ValueError(
                f"flow: problem={problem!r} does not use the {self.kernel} kernel; "
                f"choose one of {list(KERNEL_PROBLEMS[self.kernel])}"
            )
        object.__setattr__(self, "problem", problem)
        object.__setattr__(self, "schemes", tuple(self.schemes))
        for name in self.schemes:
            get_scheme(name)
        for name in ("particles", "dim", "calls"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise ValueError(f"flow: {name}={value!r} must be a positive integer")
        if not (self.tol > 0 and self.c_log >= 0 and self.c_lin >= 0):
            raise ValueError("flow: tol must be > 0 and c_log, c_lin >= 0")

    @property
    def budget(self) -> int:
        return self.calls or DEFAULT_CALLS[self.problem]


def build_problem(cfg: FlowConfig):
    kwargs = {"seed": cfg.seed}
    if cfg.particles is not None:
        kwargs["n"] = cfg.particles
    if cfg.dim is not None:
        kwargs["d"] = cfg.dim
    return PROBLEMS[cfg.problem](**kwargs)


@dataclass(frozen=True)
class FlowResult:
    problem: str
    description: str
    tol: float  # absolute gap tolerance
    traces: list[Trace]  # classical first

    def rows(self) -> list[dict]:
        """One summary row per method: chosen h, calls to the tolerance, speed-up, final gap."""
        base = self.traces[0].calls_to(self.tol)
        out = []
        for tr in self.traces:
            calls = tr.calls_to(self.tol)
            speedup = base / calls if base is not None and calls else None
            out.append(
                {
                    "scheme": tr.scheme,
                    "h": tr.h,
                    "calls_to_tol": calls,
                    "speedup": speedup,
                    "final_gap": tr.final_gap,
                }
            )
        return out

    def table(self) -> str:
        lines = [
            f"{self.description}; tolerance: gap <= {self.tol:.3g}",
            f"{'scheme':<14} {'best h':>6} {'calls to tol':>12} {'speed-up':>9} {'final gap':>10}",
        ]
        for r in self.rows():
            calls = "not reached" if r["calls_to_tol"] is None else str(r["calls_to_tol"])
            speed = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
            lines.append(
                f"{r['scheme']:<14} {r['h']:>6g} {calls:>12} {speed:>9} {r['final_gap']:>10.2e}"
            )
        return "\n".join(lines)


def run_flow(cfg: FlowConfig) -> FlowResult:
    problem = build_problem(cfg)
    damping = Damping(cfg.c_log, cfg.c_lin)
    traces = [best_trace(problem, None, cfg.budget, damping, H_GRID)]
    traces += [best_trace(problem, SCHEMES[n], cfg.budget, damping, H_GRID) for n in cfg.schemes]
    tol = cfg.tol * abs(traces[0].gap[0])
    return FlowResult(cfg.problem, problem.description, tol, traces)


def write_flow(result: FlowResult, out: Path) -> None:
    """DIR/flow.csv (one row per method per step) and DIR/flow.png (gap vs oracle calls, log)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "flow.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scheme", "h", "oracle_calls", "energy_gap", "distance"])
        for tr in result.traces:
            for c, g, d in zip(tr.calls, tr.gap, tr.distance, strict=True):
                w.writerow([tr.scheme, tr.h, c, f"{g:.6e}", f"{d:.6e}"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for tr in result.traces:
        gaps = [g if math.isfinite(g) and g > 0 else float("nan") for g in tr.gap]
        style = {"color": "black", "linewidth": 2.2} if tr.scheme == CLASSICAL else {}
        ax.plot(tr.calls, gaps, label=f"{tr.scheme} (h={tr.h:g})", **style)
    ax.axhline(result.tol, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("oracle calls (attention evaluations)")
    ax.set_ylabel("energy gap")
    ax.set_title(result.description, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "flow.png", dpi=120)
    plt.close(fig)


def check_writable(out: Path) -> None:
    """Fails early (before minutes of work) if ``out`` cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to --out {str(out)!r}: {err.strerror or err}") from None


def flow_experiment(cfg: FlowConfig, out: Path) -> FlowResult:
    check_writable(out)
    result = run_flow(cfg)
    write_flow(result, out)
    return result
