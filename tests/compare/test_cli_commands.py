"""The `flow` and `audit` subcommands through the real CLI entry point."""

import pytest

from sympformer.cli import main


def test_flow_command_prints_the_table_and_writes_files(tmp_path, capsys):
    main(
        [
            "flow",
            "--kernel",
            "linear",
            "--calls",
            "20",
            "--particles",
            "32",
            "--schemes",
            "presymp_euler,ab2",
            "--c-log",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "classical" in out
    assert "presymp_euler" in out
    assert "tao" not in out
    assert (tmp_path / "flow.csv").is_file()
    assert (tmp_path / "flow.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flow", "--kernel", "rbf"], "kernel='rbf'"),
        (["flow", "--schemes", "rk4"], "unknown integrator 'rk4'"),
        (["flow", "--particles", "0"], "particles=0"),
        (["flow", "--calls", "-1"], "calls=-1"),
        (["audit", "--dtype", "float16"], 'Parser key "dtype"'),
        (["audit", "--archs", "bert"], "unknown arch 'bert'"),
        (["audit", "--schemes", ","], "empty list"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_code_2(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, *(["--out", str(tmp_path / "o")] if args[0] == "flow" else [])])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ")
    assert message in err


def test_flow_refuses_an_unwritable_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        main(["flow", "--calls", "4", "--out", str(tmp_path / "file" / "sub")])
    assert "cannot write to --out" in capsys.readouterr().err


def test_audit_command_passes_on_a_subset(capsys):
    main(["audit", "--archs", "gpt_linear,symp_linear", "--schemes", "tao", "--train-steps", "1"])
    assert "2 passed, 0 failed (float32)" in capsys.readouterr().out
