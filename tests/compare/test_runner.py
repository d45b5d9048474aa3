"""`sympformer compare`: run grid, resumable folder, matched GPT rows, statistics, reports, jobs."""

import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from scipy import stats

from sympformer.cli import main
from sympformer.compare.figure import _trailing_mean
from sympformer.compare.plan import (
    CompareConfig,
    parse_run,
    plan_rows,
    plan_runs,
    wallclock_plan,
)
from sympformer.compare.report import DIVERGED, planned_tests
from sympformer.compare.runner import run_comparison
from sympformer.model import count_params
from sympformer.train import fit, load_run_config, preset_config, read_metrics
from tests.train.helpers import rows_without_clock, snapshot, write_text

LABELS = ["gpt", "yurii", "gpt-matched", "gpt-wallclock"]
SEEDS = 2
SAME = ["--runs", "gpt,yurii", "--seeds", str(SEEDS), "--wallclock-matched", "true"]
"""The module comparison's arguments besides `args`: repeating them continues it."""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(text corpus, token cache root) shared by every comparison of this module."""
    root = tmp_path_factory.mktemp("compare-data")
    return write_text(root / "corpus.txt"), root / "cache"


def args(data, out, *extra) -> list[str]:
    """`sympformer compare` on the smoke preset with the module's corpus, one thread per run."""
    text, cache = data
    return [
        "compare", "--preset", "smoke", "--data", str(text), "--cache-dir", str(cache),
        "--threads", "1", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, data) -> Path:
    """gpt and yurii x 2 seeds, plus gpt-matched and gpt-wallclock: 8 smoke runs (do not modify:
    copy it with `copy_comparison`)."""
    out = tmp_path_factory.mktemp("comparison") / "cmp"
    main(args(data, out, *SAME))
    return out


def copy_comparison(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def vs_gpt(out: Path) -> dict[str, dict]:
    """Row label -> its paired test against gpt (summary.json's `tests`)."""
    return {t["row"]: t for t in summary(out)["tests"] if t["other"] == "gpt"}


def last_val(run_dir: Path) -> float:
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if r["val_loss"] != ""]
    return float(rows[-1]["val_loss"])


def mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.lstat().st_mtime_ns
        for p in folder.rglob("*")
        if not p.is_dir() or p.is_symlink()
    }


# ------------------------------------------------------------------------------------------------
# Validation: one clear line before any training


@pytest.mark.parametrize(
    ("entry", "label"),
    [
        ("gpt", "gpt"),
        ("symp", "symp:presymp_euler"),
        (" symp_linear : ab2 ", "symp_linear:ab2"),
        ("yurii", "yurii"),
        ("symp/learned", "symp:presymp_euler/learned"),
        ("symp_linear:ab2 / zero", "symp_linear:ab2"),  # the arch's default: no suffix
        ("yurii/learned", "yurii"),
        ("yurii/zero", "yurii/zero"),
        ("symp/auto", "symp:presymp_euler"),
        ("symp+drift=identity", "symp:presymp_euler+drift=identity"),
        (  # ingredients in canonical order, defaults dropped
            "symp:ab2/learned + mlp_step=nesterov + force=attention + drift=metric",
            "symp:ab2/learned+force=attention+mlp_step=nesterov",
        ),
        ("symp_linear+damping=schedule", "symp_linear:presymp_euler"),
    ],
)
def test_run_entries_become_labels(entry, label):
    assert parse_run(entry) == label
    assert parse_run(label) == label  # one spelling: a label parses to itself


def test_gpt_is_always_the_first_row():
    cfg = CompareConfig(runs="yurii,symp", seeds=1, base=preset_config("smoke"))
    assert cfg.runs == ("gpt", "yurii", "symp:presymp_euler")


@pytest.mark.parametrize(
    ("runs", "seeds", "message"),
    [
        ("bert", 3, "unknown arch 'bert'"),
        ("gpt:presymp_euler", 3, "scheme='presymp_euler' does not apply to arch='gpt'"),
        ("yurii:ab2", 3, "scheme='ab2' does not apply to arch='yurii'"),
        ("gpt+drift=identity", 3, "drift='identity' does not apply to arch='gpt'"),
        ("symp+drift=euclid", 3, "drift='euclid' is not one of"),
        ("symp+speed=fast", 3, "'speed=fast' is not name=value with a name of"),
        ("symp+drift", 3, "'drift' is not name=value"),
        ("symp:plain_euler+damping=constant", 3, "damping='constant' does not apply"),
        ("symp,symp+force=hamiltonian", 3, "more than once"),
        ("symp:rk4", 3, "unknown integrator 'rk4'"),
        ("symp:", 3, "empty scheme"),
        ("symp,symp:presymp_euler", 3, "more than once"),
        (",", 3, "names no run"),
        ("gpt,yurii", 0, "seeds=0"),
        ("gpt/learned", 3, "arch='gpt' has no velocity"),
        ("symp/fast", 3, "velocity_init='fast' is not one of"),
        ("symp,symp/zero", 3, "more than once"),
    ],
)
def test_bad_runs_and_seeds_are_refused(runs, seeds, message):
    with pytest.raises(ValueError, match=message):
        CompareConfig(runs=runs, seeds=seeds, base=preset_config("smoke"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runs", "gpt,bert"], "unknown arch 'bert'"),
        (["--runs", "gpt:presymp_euler"], "does not apply to arch='gpt'"),
        (["--runs", "gpt,symp+force=gravity"], "force='gravity' is not one of"),
        (["--runs", "symp:rk4"], "unknown integrator 'rk4'"),
        (["--runs", "gpt", "--seeds", "0"], "seeds=0"),
        (["--runs", "gpt", "--jobs", "0"], "jobs=0"),
        (["--runs", "gpt", "--preset", "tiny"], "unknown preset 'tiny'"),
    ],
)
def test_cli_bad_input_is_one_error_line_and_exit_code_2(data, tmp_path, capsys, extra, message):
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit) as exit_info:
        main(args(data, out, *extra))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ")
    assert message in err
    assert not out.exists()  # refused before anything was written or trained


# ------------------------------------------------------------------------------------------------
# The outputs


def test_comparison_writes_every_run_and_all_four_outputs(comparison):
    names = sorted(p.name for p in (comparison / "runs").iterdir())
    slugs = [label.replace(":", "-") for label in LABELS]
    assert names == sorted(f"{s}-seed{k}" for s in slugs for k in range(SEEDS))
    for name in names:
        assert (comparison / "runs" / name / "checkpoints" / "latest").exists()

    md = (comparison / "results.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| row | params | last val loss | best val loss | wall-clock")
    assert [line.split("|")[1].strip() for line in table[1 : 1 + len(LABELS)]] == LABELS
    assert (
        "With 2 seeds the test has little power: p < 0.05 needs a mean difference above 8.98 sd"
        in md
    )

    tex = (comparison / "results.tex").read_text()
    assert tex.count("\\begin{tabular}") == 2
    assert "\\mathbf{" in tex
    assert "gpt-matched &" in tex

    image = imread(comparison / "curves.png")
    assert image.ndim == 3
    assert image.shape[0] > 200
    assert image.shape[1] > 2 * image.shape[0] - 200  # two panels side by side

    s = summary(comparison)
    assert [r["label"] for r in s["rows"]] == LABELS
    assert len(s["runs"]) == len(LABELS) * SEEDS
    assert {"platform", "cpu_count", "torch"} <= set(s["machine"])
    assert s["machine"]["torch"] == torch.__version__
    assert s["command"] == " ".join(sys.argv)  # the command line that ran the comparison
    assert s["equivalent_command"].startswith("sympformer compare --runs gpt,yurii --seeds 2")


def test_seed_k_of_every_row_uses_the_same_seed_and_validation(comparison):
    for k in range(SEEDS):
        cfgs = [load_run_config(comparison / "runs" / f"{s}-seed{k}") for s in LABELS]
        assert {c.train.seed for c in cfgs} == {1337 + k}
        assert (
            len({(c.train.val_seed, c.train.eval_batches, c.train.batch_size) for c in cfgs}) == 1
        )
        assert len({json.dumps(dataclasses.asdict(c.data)) for c in cfgs}) == 1


def test_statistics_equal_scipy_on_the_run_folders(comparison):
    runs = comparison / "runs"
    gpt = [last_val(runs / f"gpt-seed{k}") for k in range(SEEDS)]
    rows = {r["label"]: r for r in summary(comparison)["rows"]}
    for label in LABELS:
        values = [last_val(runs / f"{label}-seed{k}") for k in range(SEEDS)]
        m = rows[label]["metrics"]["last_val_loss"]
        assert m["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert m["sd"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        best = [
            min(float(r["val_loss"]) for r in read_metrics(runs / f"{label}-seed{k}/metrics.csv")
                if r["val_loss"] != "")
            for k in range(SEEDS)
        ]  # fmt: skip
        assert rows[label]["metrics"]["best_val_loss"]["mean"] == pytest.approx(
            np.mean(best), rel=1e-12
        )
        paired = vs_gpt(comparison).get(label)
        if label == "gpt":
            assert paired is None
            continue
        d = np.subtract(values, gpt)
        assert paired["n"] == SEEDS
        assert paired["mean_diff"] == pytest.approx(d.mean(), rel=1e-12, abs=1e-15)
        if np.all(d == d[0]):  # gpt-wallclock may equal gpt: no test statistic
            assert paired["p"] is None
            continue
        test = stats.ttest_rel(values, gpt)
        assert paired["sd_diff"] == pytest.approx(np.std(d, ddof=1), rel=1e-12)
        assert paired["t"] == pytest.approx(test.statistic, rel=1e-12)
        assert paired["p"] == pytest.approx(test.pvalue, rel=1e-12)


def test_best_mean_of_each_ranked_column_is_bold(comparison):
    s = summary(comparison)
    md = (comparison / "results.md").read_text().splitlines()
    lines = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in md[4 : 4 + len(LABELS)]}
    ranked = (
        (1, "last_val_loss", min), (2, "best_val_loss", min), (3, "wallclock_s", min),
        (4, "tokens_per_s", max),
    )  # fmt: skip
    for col, key, pick in ranked:
        means = {r["label"]: r["metrics"][key]["mean"] for r in s["rows"]}
        best = pick(means.values())
        for label, cells in lines.items():
            assert ("**" in cells[col]) == (means[label] == best), (key, label)


def test_matched_gpt_is_within_two_percent_of_the_largest_variant(comparison):
    runs = comparison / "runs"
    params = {
        label: json.loads((runs / f"{label}-seed0" / "run.json").read_text())["parameters"]
        for label in LABELS
    }
    assert params["yurii"] > 1.1 * params["gpt"]  # a learned velocity embedding: a real gap
    assert abs(params["gpt-matched"] - params["yurii"]) <= 0.02 * params["yurii"]
    matched = load_run_config(runs / "gpt-matched-seed0").model
    gpt = load_run_config(runs / "gpt-seed0").model
    assert matched.arch == "gpt"
    assert (matched.n_layer, matched.n_head, matched.block_size) == (
        gpt.n_layer, gpt.n_head, gpt.block_size,
    )  # fmt: skip


def test_plan_matches_every_variant_within_two_percent():
    base = preset_config("compare-cpu")
    cfg = CompareConfig(runs="gpt,yurii,symp,symp_linear", seeds=3, base=base)
    rows = {r.label: r for r in plan_rows(cfg, 4096)}
    target = max(count_params(r.model) for label, r in rows.items() if label.startswith(("y", "s")))
    assert abs(count_params(rows["gpt-matched"].model) - target) <= 0.02 * target
    runs = plan_runs(cfg, list(rows.values()))
    assert len(runs) == 3 * 5
    assert len({r.name for r in runs}) == len(runs)


def test_wallclock_row_trains_the_measured_number_of_steps(comparison):
    runs = comparison / "runs"

    def clock(label, k):
        return float(read_metrics(runs / f"{label}-seed{k}/metrics.csv")[-1]["time_s"])

    max_steps = load_run_config(runs / "gpt-seed0").train.max_steps
    means = {label: np.mean([clock(label, k) for k in range(SEEDS)]) for label in LABELS[1:3]}
    per_step = np.mean([clock("gpt", k) / max_steps for k in range(SEEDS)])
    expected = max(max_steps, math.ceil(max(means.values()) / per_step))
    for k in range(SEEDS):
        assert load_run_config(runs / f"gpt-wallclock-seed{k}").train.max_steps == expected
    assert json.loads((comparison / "wallclock.json").read_text())["steps"] == expected


def test_wallclock_plan_divides_the_slowest_mean_by_gpts_seconds_per_step():
    plan = wallclock_plan({"gpt": [10.0, 12.0], "yurii": [30.0, 34.0], "symp": [20.0]}, 100)
    assert plan.reference == "yurii"
    assert plan.gpt_seconds_per_step == pytest.approx(0.11, rel=1e-12)
    assert plan.steps == math.ceil(32.0 / 0.11)
    assert wallclock_plan({"gpt": [10.0], "yurii": [5.0]}, 100).steps == 100  # never fewer
    with pytest.raises(ValueError, match="needs a finished gpt run"):
        wallclock_plan({"yurii": [5.0]}, 100)


# ------------------------------------------------------------------------------------------------
# Re-running: skip, resume, refuse


def test_rerun_skips_finished_runs_and_rewrites_the_report(comparison, data, tmp_path, capsys):
    out = copy_comparison(comparison, tmp_path / "cmp")
    before, times = snapshot(out / "runs"), mtimes(out / "runs")
    (out / "results.md").unlink()
    main(args(data, out, *SAME))
    printed = capsys.readouterr().out
    assert "6 of 6 runs already done, 0 to train" in printed
    assert "2 of 2 runs already done" in printed
    assert "compare: [" not in printed  # no run started
    assert snapshot(out / "runs") == before
    assert mtimes(out / "runs") == times
    assert (out / "results.md").read_text() == (comparison / "results.md").read_text()


def test_interrupted_run_is_resumed_to_the_same_metrics(comparison, data, tmp_path, capsys):
    out = copy_comparison(comparison, tmp_path / "cmp")
    name = "yurii-seed1"
    shutil.rmtree(out / "runs" / name)
    cfg = load_run_config(comparison / "runs" / name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the comparison trained it
    try:
        partial = fit(with_train(cfg, stop_after=7), out=out / "runs" / name)
    finally:
        torch.set_num_threads(threads)
    assert not partial.finished
    others = {p.name: snapshot(p) for p in (out / "runs").iterdir() if p.name != name}
    main(args(data, out, *SAME))
    printed = capsys.readouterr().out
    assert f"resuming {name}" in printed
    assert "5 of 6 runs already done, 1 to train" in printed
    assert rows_without_clock(out / "runs" / name) == rows_without_clock(comparison / "runs" / name)
    assert json.loads((out / "runs" / name / "run.json").read_text())["resumes"][0]["at_step"] == 7
    assert {p.name: snapshot(p) for p in (out / "runs").iterdir() if p.name != name} == others


def with_train(cfg, **train):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False, **train))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([*SAME, "--max-steps", "30"], "train.max_steps=20, this call asks train.max_steps=30"),
        ([*SAME, "--tokenizer", "bpe"], "it has data.tokenizer='bytes', this call asks"),
        ([*SAME, "--seed", "7"], "train.seed=1337"),
        (["--runs", "gpt", "--seeds", "2", "--wallclock-matched", "true"], "runs=gpt,yurii"),
        (["--runs", "gpt,yurii", "--seeds", "3", "--wallclock-matched", "true"], "seeds=2"),
        (["--runs", "gpt,yurii", "--seeds", "2"], "wallclock_matched=True"),
        ([*SAME, "--no-matched-gpt"], "matched_gpt=True"),
    ],
)
def test_another_comparison_in_the_folder_is_refused(
    comparison, data, tmp_path, capsys, extra, message
):
    out = copy_comparison(comparison, tmp_path / "cmp")
    before = snapshot(out)
    with pytest.raises(SystemExit) as exit_info:
        main(args(data, out, *extra))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1
    assert message in err
    assert snapshot(out) == before


def test_rows_added_to_a_comparison_pair_with_its_seeds(comparison, data, tmp_path, capsys):
    out = copy_comparison(comparison, tmp_path / "cmp")
    runs = out / "runs"
    before = {p.name: snapshot(p) for p in runs.iterdir()}
    main(args(data, out, "--runs", "gpt,yurii,symp/learned", *SAME[2:]))
    printed = capsys.readouterr().out
    assert "6 of 8 runs already done, 2 to train" in printed
    assert {p.name: snapshot(p) for p in runs.iterdir() if p.name in before} == before
    table = summary(out)["rows"]
    assert [r["label"] for r in table][:3] == ["gpt", "yurii", "symp:presymp_euler/learned"]
    for k in range(SEEDS):
        cfg = load_run_config(runs / f"symp-presymp_euler-learned-seed{k}")
        gpt = load_run_config(runs / f"gpt-seed{k}")
        assert (cfg.model.arch, cfg.model.velocity_init) == ("symp", "learned")
        assert cfg.train.seed == gpt.train.seed  # paired with the seeds already trained
    assert "symp:presymp_euler/learned" in (out / "results.md").read_text()


def test_a_folder_with_other_files_is_refused(data, tmp_path, capsys):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(args(data, tmp_path / "cmp", "--runs", "gpt"))
    assert "holds no comparison" in capsys.readouterr().err


def test_a_diverged_run_is_final_and_left_out_of_the_statistics(comparison, data, tmp_path):
    out = copy_comparison(comparison, tmp_path / "cmp")
    (out / "runs" / "yurii-seed1" / DIVERGED).write_text("stopped: steps 3..7 non-finite\n")
    before = snapshot(out / "runs")
    main(args(data, out, *SAME))
    assert snapshot(out / "runs") == before  # not retried
    rows = {r["label"]: r for r in summary(out)["rows"]}
    assert rows["yurii"]["metrics"]["last_val_loss"]["n"] == 1
    assert rows["yurii"]["metrics"]["last_val_loss"]["mean"] == last_val(out / "runs/yurii-seed0")
    assert vs_gpt(out)["yurii"]["n"] == 1
    assert rows["yurii"]["not_finished"] == [{"index": 1, "status": "diverged"}]
    assert "yurii seed 1: diverged" in (out / "results.md").read_text()


# ------------------------------------------------------------------------------------------------
# Jobs


def test_two_jobs_give_the_same_per_run_metrics_as_one(comparison, data, tmp_path):
    out = tmp_path / "cmp"
    text, cache = data
    base = preset_config("smoke", data={"path": str(text), "cache_dir": str(cache)})
    cfg = CompareConfig(runs="gpt,yurii", seeds=SEEDS, base=base, matched_gpt=False)
    messages = []
    run_comparison(cfg, out, jobs=2, threads=1, echo=messages.append)
    assert any("training 4 runs (0 resumed), 2 at a time with 1 thread(s)" in m for m in messages)
    for label in ("gpt", "yurii"):
        for k in range(SEEDS):
            name = f"{label}-seed{k}"
            assert rows_without_clock(out / "runs" / name) == rows_without_clock(
                comparison / "runs" / name
            )
            assert "final val loss" in (out / "logs" / f"{name}.log").read_text()


def test_an_error_in_a_run_process_is_one_line_naming_the_run(comparison, data, tmp_path, capsys):
    out = copy_comparison(comparison, tmp_path / "cmp")
    name = "yurii-seed1"
    shutil.rmtree(out / "runs" / name)
    partial = fit(
        with_train(load_run_config(comparison / "runs" / name), stop_after=5),
        out=out / "runs" / name,
    )
    assert not partial.finished
    metrics = out / "runs" / name / "metrics.csv"
    metrics.write_text(metrics.read_text().replace("grad_norm", "gradient_norm", 1))
    with pytest.raises(SystemExit) as exit_info:
        main(args(data, out, *SAME, "--jobs", "2"))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: run {name}: ValueError: {metrics} has other columns")
    assert "Traceback" in (out / "logs" / f"{name}.log").read_text()


def test_a_folder_in_use_by_another_comparison_is_refused(comparison, data, tmp_path, capsys):
    fcntl = pytest.importorskip("fcntl")
    out = copy_comparison(comparison, tmp_path / "cmp")
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running comparison holds it
        lock.write("4242\n")
        lock.flush()
        with pytest.raises(SystemExit) as exit_info:
            main(args(data, out, *SAME))
    assert exit_info.value.code == 2
    assert "another `sympformer compare` (process 4242) is working in" in capsys.readouterr().err
    main(args(data, out, *SAME))  # the lock is free again
    assert "6 of 6 runs already done" in capsys.readouterr().out


def test_trailing_mean_of_the_training_curve():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 200, 2)  # logged every other step: the window counts logged steps
    values = rng.normal(size=steps.size)
    smooth = _trailing_mean(dict(zip(steps.tolist(), values.tolist(), strict=True)), 7)
    got = np.array([smooth[k] for k in steps.tolist()])
    full = np.convolve(values, np.ones(7) / 7, mode="valid")
    np.testing.assert_allclose(got[6:], full, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[:6], np.cumsum(values[:6]) / np.arange(1, 7), atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Reference, chain and pairs


def test_planned_tests_cover_reference_wallclock_chain_and_pairs():
    base = preset_config("smoke")
    cfg = CompareConfig(
        runs="yurii,symp/learned,symp", seeds=2, base=base, reference="gpt-matched",
        wallclock_matched=True, chain="yurii,symp/learned,symp", pairs="symp vs gpt",
    )  # fmt: skip
    labels = list(cfg.row_labels())
    tests = planned_tests(cfg, labels)
    learned, zero = "symp:presymp_euler/learned", "symp:presymp_euler"
    others = ["gpt", "yurii", learned, zero]
    assert tests == (
        [(label, "gpt-matched", "equal steps") for label in others]
        + [("gpt-matched-wallclock", "gpt-matched", "more steps")]
        + [(label, "gpt-matched-wallclock", "equal wall-clock") for label in others]
        + [(learned, "yurii", "equal steps"), (zero, learned, "equal steps")]
        + [(zero, "gpt", "equal steps")]
    )
    with pytest.raises(ValueError, match="is not a row of this comparison"):
        CompareConfig(runs="yurii", seeds=2, base=base, chain="yurii,symp")
    with pytest.raises(ValueError, match="is not 'ROW vs OTHER'"):
        CompareConfig(runs="yurii", seeds=2, base=base, pairs="yurii,gpt")
    with pytest.raises(ValueError, match="needs matched_gpt=True"):
        CompareConfig(runs="yurii", seeds=2, base=base, reference="gpt-matched", matched_gpt=False)


def test_chain_and_pairs_are_tested_with_scipy_on_a_rerun(comparison, data, tmp_path):
    """Adding a chain and pairs to a finished comparison only rewrites its report."""
    out = copy_comparison(comparison, tmp_path / "cmp")
    before = snapshot(out / "runs")
    main(args(data, out, *SAME, "--chain", "gpt,yurii", "--pairs", "gpt-matched vs yurii"))
    assert snapshot(out / "runs") == before
    tests = {(t["row"], t["other"], t["basis"]): t for t in summary(out)["tests"]}
    for row, other in (("yurii", "gpt"), ("gpt-matched", "yurii")):
        a = [last_val(out / "runs" / f"{row}-seed{k}") for k in range(SEEDS)]
        b = [last_val(out / "runs" / f"{other}-seed{k}") for k in range(SEEDS)]
        t = tests[(row, other, "equal steps")]
        assert t["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)), rel=1e-12)
        assert t["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    walls = [t for t in summary(out)["tests"] if t["basis"] == "equal wall-clock"]
    assert {t["other"] for t in walls} == {"gpt-wallclock"}
    assert {t["row"] for t in walls} == {"yurii", "gpt-matched"}
    assert "| gpt-matched | yurii | equal steps |" in (out / "results.md").read_text()
