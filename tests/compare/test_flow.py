"""`sympformer flow` experiment: files, table, fairness, bad input."""

import csv

import pytest

from sympformer.compare.flow import FlowConfig, flow_experiment


def test_flow_writes_csv_png_and_a_table(tmp_path):
    cfg = FlowConfig(kernel="softmax", schemes=("presymp_euler", "tao"), particles=16, calls=40)
    result = flow_experiment(cfg, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "flow.csv")))
    per_scheme = {
        s: [r for r in rows if r["scheme"] == s] for s in ("classical", "presymp_euler", "tao")
    }
    assert [len(v) for v in per_scheme.values()] == [41, 41, 11]  # tao: 4 calls per step
    assert [int(r["oracle_calls"]) for r in per_scheme["tao"]] == list(range(0, 41, 4))
    assert (tmp_path / "flow.png").stat().st_size > 10_000
    table = result.table()
    assert table.splitlines()[2].startswith("classical")
    assert "1.00x" in table
    # every method ran the same step grid and reports the best of it
    for tr in result.traces:
        assert tr.final_gap <= min(tr.gap[0], 1e300)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel": "rbf"}, "kernel='rbf' is not one of"),
        ({"kernel": "linear", "problem": "sphere"}, "does not use the linear kernel"),
        ({"schemes": ("rk4",)}, "unknown integrator 'rk4'"),
        ({"particles": 0}, "particles=0 must be a positive integer"),
        ({"calls": -5}, "calls=-5"),
        ({"tol": 0.0}, "tol must be > 0"),
    ],
)
def test_bad_flow_config_is_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlowConfig(**kwargs)


def test_unwritable_output_folder_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works as root too, unlike chmod
    with pytest.raises(ValueError, match="cannot write to --out"):
        flow_experiment(FlowConfig(calls=4), blocker / "sub")
