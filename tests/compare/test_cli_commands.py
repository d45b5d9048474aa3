"""The `flow` and `audit` subcommands through the real CLI entry point."""

import pytest

from sympformer.cli import main


@pytest.mark.usefixtures("one_thread")
def test_flow_command_runs_a_study_and_prints_its_summary(tmp_path, capsys):
    main(
        [
            "flow",
            "--problem",
            "sphere",
            "--seeds",
            "0,3",
            "--c-log",
            "1,5",
            "--calls",
            "10",
            "--schemes",
            "presymp_euler,ab2",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert out.startswith("# Flow study")
    assert "| c_log = 5 | presymp_euler |" in out
    assert "| tao |" not in out
    rows = (tmp_path / "instances.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 * 3 * 4  # seeds x c_log x (classical + 2 schemes) x metrics
    assert {r.split(",")[4] for r in rows[1:]} == {"0", "3"}
    assert (tmp_path / "gap_vs_calls.png").is_file()


@pytest.mark.usefixtures("one_thread")
def test_one_seed_is_the_single_instance_of_old(tmp_path, capsys):
    main(["flow", "--problem", "softmax", "--seeds", "1", "--calls", "8", "--schemes", "tao",
          "--out", str(tmp_path)])  # fmt: skip
    assert "| κ = 100, c_log = 3 | tao | " in capsys.readouterr().out
    assert len((tmp_path / "instances.csv").read_text().splitlines()) == 1 + 2 * 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flow", "--seeds", "0"], "FlowStudyConfig.seeds=0"),
        (["flow", "--kappa=-10"], "FlowStudyConfig.kappa=(-10.0,)"),
        (["flow", "--kappa", ","], "FlowStudyConfig.kappa=() must be a non-empty list"),
        (["flow", "--c-log", "3,x"], "Parser key \"c_log\": Expected a <class 'float'>"),
        (["flow", "--problem", "rbf"], 'Parser key "problems"'),
        (["flow", "--schemes", "rk4"], "unknown integrator 'rk4'"),
        (["flow", "--calls", "10001"], "FlowStudyConfig.calls=10001 must be in 1..10000"),
        (["flow", "--jobs", "0"], "jobs=0"),
        (["flow", "--kernel", "linear"], "kernel"),
        (["audit", "--dtype", "float16"], 'Parser key "dtype"'),
        (["audit", "--archs", "bert"], "unknown arch 'bert'"),
        (["audit", "--schemes", ","], "empty list"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_code_2(args, message, capsys, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exit_info:
        main([*args, *(["--out", str(out)] if args[0] == "flow" else [])])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ")
    assert message in err
    assert not out.exists()  # nothing written


def test_flow_refuses_an_unwritable_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        main(["flow", "--calls", "4", "--seeds", "1", "--out", str(tmp_path / "file" / "sub")])
    assert "cannot write to --out" in capsys.readouterr().err


def test_audit_command_passes_on_a_subset(capsys):
    main(["audit", "--archs", "gpt_linear,symp_linear", "--schemes", "tao", "--train-steps", "1"])
    assert "2 passed, 0 failed (float32)" in capsys.readouterr().out
