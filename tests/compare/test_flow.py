"""`sympformer flow`: the comparison protocol, the paper's claim on the linear problem, the
authors' positive control, the statistics over seeds and the study's files."""

import csv
import dataclasses
import json
import math

import pytest
import torch

from sympformer.compare import flow_control
from sympformer.compare.flow import (
    CLASSICAL,
    GAP_AT_K,
    H_GRID,
    METRICS,
    ROUND_OFF,
    FlowStudyConfig,
    Instance,
    calls_to,
    choose,
    gap_histories,
)
from sympformer.compare.flow_control import authors_initial_positions, control_ratio
from sympformer.compare.flow_report import FILES
from sympformer.compare.flow_stats import calls_stat, gap_stat, quartiles
from sympformer.compare.flow_study import run_study
from sympformer.dynamics import SCHEMES
from sympformer.dynamics.flows import linear_problem
from tests.dynamics.helpers import Mutated

GRID = torch.tensor(H_GRID, dtype=torch.float64)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: see conftest


def _linear_ratio(seed, oracle=None):
    """Classical gap / presymp_euler gap after 400 calls on the linear problem (κ = 100,
    c_log = 3), each at its best step of the grid; ``oracle`` replaces the accelerated flow's."""
    problem = linear_problem(seed=seed)
    with torch.inference_mode():
        classical = gap_histories(problem, None, GRID, 0.0, 0.0, 400)[-1].min()
        if oracle is not None:
            problem = dataclasses.replace(problem, oracle=oracle(problem.oracle))
        scheme = gap_histories(problem, SCHEMES["presymp_euler"], GRID, 3.0, 0.0, 400)
    return float(classical / scheme[-1].min())


def test_accelerated_linear_flow_is_100x_closer_after_400_calls():
    """The paper's claim on the linear problem (SPEC §5.1: ≈ 236x on seed 0, 243-251x on seeds
    1-3): at a fixed budget, each method at its best step, on every seed."""
    assert all(_linear_ratio(seed) >= 100 for seed in (0, 1, 2))


def test_the_acceleration_check_fails_when_the_force_points_the_wrong_way():
    """Negative control: with G's sign flipped the accelerated flow diverges at every step.
    Subtler wrong forces still accelerate (measured on seed 0: kinetic terms removed 158x,
    flipped 119x, G doubled 959x, F doubled 377x), so the claim is no force check: the energy
    tests in tests/dynamics are."""
    assert not _linear_ratio(0, lambda o: Mutated(o, "flip_force")) >= 100


CONTROL = 6.36
"""The authors' figure: gradient flow 310.9 vs damped Hamiltonian 48.9 (SPEC §5.1)."""


def _control(oracle=None):
    """The continuous-time control ratio at ε = 0.2 from the authors' five initial states (RK4
    step 0.5: the interpolated settling times agree with step 0.05 to 4 digits)."""
    if oracle is None:
        return control_ratio(0.2, authors_initial_positions(), "authors", dt=0.5, horizon=400.0)
    patched = pytest.MonkeyPatch()
    build = flow_control.control_problem
    patched.setattr(
        flow_control,
        "control_problem",
        lambda eps: dataclasses.replace(build(eps), oracle=oracle(build(eps).oracle)),
    )
    try:
        return _control()
    finally:
        patched.undo()


def test_positive_control_reproduces_the_authors_ratio():
    result = _control()
    assert result.ratio == pytest.approx(CONTROL, abs=0.05)
    assert sum(result.gradient) / 5 == pytest.approx(310.9, abs=0.5)
    assert sum(result.hamiltonian) / 5 == pytest.approx(48.9, abs=0.2)


@pytest.mark.parametrize("mutation", ["double_force", "double_velocity", "flip_force"])
def test_positive_control_fails_for_a_wrong_force(mutation):
    """Negative controls (measured 4.37, 4.37, not finite). At ε = 0.2 the kinetic terms are too
    small to move the ratio (6.359 without them, 6.367 flipped): the energy tests catch those."""
    ratio = _control(lambda o: Mutated(o, mutation)).ratio
    assert not ratio == pytest.approx(CONTROL, abs=0.05), ratio


def test_settling_time_is_interpolated_and_sustained():
    ratios = torch.tensor(
        [[1.0, 1.0], [1e-2, 1e-4], [1e-4, 1e-2], [1e-5, 1e-5]], dtype=torch.float64
    )
    t = flow_control.settling_times(ratios, dt=0.5)
    assert t[0] == pytest.approx(0.5 * (1 + 0.5))  # log-midway from 1e-2 to 1e-4
    assert t[1] == pytest.approx(0.5 * (2 + 1 / 3))  # dips below at 0.5 but comes back


# ------------------------------------------------------------------------------------------------
# The protocol: one grid, the best step per metric


def test_best_step_is_chosen_per_metric_with_censoring():
    """Step 0 is fast then flat, step 1 slow but deepest, step 2 diverges: the gap at K picks
    step 1, calls to 1e-2 step 0, and nobody reaches 1e-6."""
    n = len(H_GRID)
    gaps = torch.full((5, n), 1.0, dtype=torch.float64)
    gaps[:, 0] = torch.tensor([1, 1e-3, 1e-3, 1e-3, 1e-3], dtype=torch.float64)
    gaps[:, 1] = torch.tensor([1, 0.5, 1e-1, 1e-5, 1e-5], dtype=torch.float64)
    gaps[:, 2] = torch.tensor([1, 10, math.inf, math.inf, math.inf], dtype=torch.float64)
    result = choose(Instance("linear", 100.0, 3.0, None, 0), "tao", gaps, 4, 16)
    best = {c.metric: (c.h, c.value) for c in result.choices}
    assert best[GAP_AT_K] == (H_GRID[1], 1e-5)
    assert best["calls_1e-2"] == (H_GRID[0], 4)  # the first step (4 calls: a four-call scheme)
    assert best["calls_1e-4"] == (H_GRID[1], 12)
    assert best["calls_1e-6"] == (None, None)
    assert result.curve[0] == (0, 1.0)
    assert result.curve[-1] == (16, 1e-5)


def test_a_tolerance_counts_as_reached_only_if_the_gap_stays_below_it():
    gaps = torch.tensor([1, 1e-3, 0.5, 1e-3, 1e-4, 1e-5], dtype=torch.float64)
    assert calls_to(gaps, 1e-2, 1) == 3  # the dip at 1 call does not count
    assert calls_to(gaps, 1e-4, 4) == 16
    assert calls_to(gaps, 1e-6, 1) is None


def test_round_off_gaps_tie_and_go_to_the_faster_run():
    gaps = torch.full((4, len(H_GRID)), 1.0, dtype=torch.float64)
    gaps[:, 3] = torch.tensor([1, 1e-3, -1e-17, 1e-20], dtype=torch.float64)  # round-off later
    gaps[:, 5] = torch.tensor([1, 1e-16, 0.0, 1e-18], dtype=torch.float64)  # earlier
    result = choose(Instance("sphere", None, 3.0, None, 0), "ab2", gaps, 1, 3)
    assert result.choices[0].h == H_GRID[5]
    assert result.choices[0].value == ROUND_OFF


def test_diverged_runs_are_inf_and_leave_the_batch():
    problem = linear_problem(seed=0, n=16, d=4)
    with torch.inference_mode():
        gaps = gap_histories(problem, SCHEMES["ab2"], torch.tensor([0.1, 50.0]), 3.0, 0.0, 30)
    assert torch.isfinite(gaps[:, 0]).all()
    assert gaps[0, 1] == 1.0
    assert torch.isinf(gaps[-1, 1])
    every_step_diverged = torch.full((3, len(H_GRID)), math.inf, dtype=torch.float64)
    every_step_diverged[0] = 1.0
    result = choose(Instance("linear", 10.0, 1.0, None, 0), "strang", every_step_diverged, 4, 8)
    assert (result.choices[0].h, result.choices[0].value) == (None, math.inf)


# ------------------------------------------------------------------------------------------------
# Statistics over seeds


def test_quartiles_interpolate_and_keep_infinities():
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([1.0, 2.0, math.inf]) == (1.5, 2.0, math.inf)
    assert all(math.isnan(q) for q in quartiles([]))


def test_gap_stat_counts_wins_ties_and_tests_the_log_gaps():
    classical = [1e-3] * 8
    stat = gap_stat(classical, [1e-5] * 7 + [1e-3])  # the last pair ties
    assert (stat.n, stat.wins, stat.ties) == (8, 7, 1)
    assert stat.median == pytest.approx(100.0)
    assert stat.p == pytest.approx(2 / 2**7)  # exact two-sided p with 7 untied pairs
    tied = gap_stat([ROUND_OFF] * 3, [ROUND_OFF] * 3)
    assert math.isnan(tied.p)
    assert "untied" in tied.note
    diverged = gap_stat([1e-3, 1e-3], [math.inf, 1e-4])
    assert (diverged.wins, diverged.median) == (1, 5.0)  # ratios 0 (diverged) and 10


def test_calls_stat_never_invents_censored_values():
    stat = calls_stat([100, None, 50, None], [10, 20, None, None])
    assert (stat.both, stat.median) == (1, 10.0)  # only the pair where both reached it
    assert (stat.wins, stat.losses, stat.ties) == (2, 1, 0)
    assert (stat.censored_classical, stat.censored_scheme) == (2, 2)


# ------------------------------------------------------------------------------------------------
# The study's configuration and files


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": 0}, "FlowStudyConfig.seeds=0 must be"),
        ({"seeds": ()}, "FlowStudyConfig.seeds=()"),
        ({"seeds": (1, 1)}, "repeats a seed"),
        ({"kappa": (-10.0,)}, "FlowStudyConfig.kappa=(-10.0,)"),
        ({"kappa": ()}, "FlowStudyConfig.kappa=()"),
        ({"c_log": (math.nan,)}, "FlowStudyConfig.c_log"),
        ({"eps": ("x",)}, "FlowStudyConfig.eps=('x',)"),
        ({"c_lin": -1.0}, "FlowStudyConfig.c_lin=-1.0 must be a number >= 0"),
        ({"problems": ("rbf",)}, "FlowStudyConfig.problems=('rbf',)"),
        ({"schemes": ("rk4",)}, "unknown integrator 'rk4'"),
        ({"calls": 10_001}, "FlowStudyConfig.calls=10001 must be in 1..10000"),
    ],
)
def test_bad_study_config_is_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        FlowStudyConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_study_grid_and_command():
    cfg = FlowStudyConfig(
        problems=("linear", "control", "sphere"), kappa=(10, 1000), c_log=(1, 3), eps=(0, 0.2),
        seeds=3,
    )  # fmt: skip
    tasks = cfg.tasks()
    assert len(tasks) == 2 * 3 + 2 * 3 + 3  # linear κ x seeds, control ε x seeds, sphere seeds
    assert {t.c_logs for t in tasks if t.problem == "control"} == {()}  # its own damping
    assert cfg.seeds == (0, 1, 2)
    assert cfg.command("o").startswith("sympformer flow --problem linear,control,sphere --kappa")
    assert FlowStudyConfig(seeds=(5,)).command("o").split("--seeds ")[1].startswith("5, ")


def _read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_study_writes_every_file(tmp_path, monkeypatch):
    monkeypatch.setattr(flow_control, "DT", 0.5)  # the continuous control, coarse and short
    monkeypatch.setattr(flow_control, "HORIZON", 60.0)
    cfg = FlowStudyConfig(
        problems=("control", "sphere"), eps=(0.0, 0.2), seeds=2, calls=12,
        schemes=("presymp_euler", "tao"),
    )  # fmt: skip
    study = run_study(cfg, tmp_path / "study", progress=False)
    out = tmp_path / "study"
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    with open(out / "instances.csv") as f:
        assert f.readline().strip() == "problem,kappa,c_log,eps,seed,scheme,metric,h,value"
    rows = _read(out / "instances.csv")
    assert len(rows) == (2 * 2 + 2) * 3 * len(METRICS)  # (control ε x seeds + sphere seeds) ...
    for r in rows:
        assert r["metric"] in METRICS
        assert r["value"] != "" or r["h"] == ""  # censored: neither
        if r["metric"] == GAP_AT_K:
            assert float(r["value"]) >= ROUND_OFF
    control = [r for r in rows if r["problem"] == "control"]
    expected = {("100", "0", "0"), ("100", "0", "0.2")}
    assert {(r["kappa"], r["c_log"], r["eps"]) for r in control} == expected
    assert {r["kappa"] + r["eps"] for r in rows if r["problem"] == "sphere"} == {""}
    curves = _read(out / "curves.csv")
    assert {r["seed"] for r in curves} == {"0"}  # the first seed's curves
    tao = [int(r["calls"]) for r in curves if r["scheme"] == "tao" and r["problem"] == "sphere"]
    assert (tao[0], tao[-1]) == (0, 12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["seeds"] == [0, 1]
    assert {c["scheme"] for c in summary["cells"]} == {"presymp_euler", "tao"}
    assert len(summary["control"]) == 2 * 2  # per ε: the authors' states and the study's seeds
    md = (out / "summary.md").read_text()
    assert "## control (K = 12)" in md
    assert "## sphere (K = 12)" in md
    assert len(study.cells) == (2 + 1) * 2
    assert CLASSICAL not in {c.scheme for c in study.cells}
    for png in ("ratio_vs_kappa.png", "gap_vs_calls.png"):
        assert (out / png).stat().st_size > 5_000


def test_study_does_not_depend_on_the_number_of_processes(tmp_path):
    cfg = FlowStudyConfig(problems=("sphere",), seeds=2, calls=8, schemes=("etd_ab2",))
    run_study(cfg, tmp_path / "one", progress=False)
    run_study(cfg, tmp_path / "two", jobs=2, progress=False)
    for name in ("instances.csv", "curves.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_unwritable_output_folder_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works as root too, unlike chmod
    with pytest.raises(ValueError, match="cannot write to --out"):
        run_study(FlowStudyConfig(calls=4, seeds=1), blocker / "sub")
