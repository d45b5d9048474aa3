import dataclasses
import shutil
import time

import pytest

from sympformer.train import compile as compile_module
from sympformer.train import fit, read_metrics
from sympformer.train import loop as loop_module
from sympformer.train.compile import CompileDecision, decide, should_compile
from sympformer.train.run_dir import RunRecord
from tests.train.helpers import tiny_config


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path, text_file, cache_dir):
    """torch.compile on CPU (about a minute of C++ compilation) gives the eager losses."""
    cfg = tiny_config(text_file, cache_dir, max_steps=3, eval_every=2)
    fit(cfg, out=tmp_path / "eager")
    fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=True)),
        out=tmp_path / "compiled")  # fmt: skip
    eager, compiled = (read_metrics(tmp_path / x / "metrics.csv") for x in ("eager", "compiled"))
    record = RunRecord.load(tmp_path / "compiled").compile
    assert record.enabled
    assert record.requested == "true"
    assert record.warmup_s > 0
    for a, b in zip(eager, compiled, strict=True):
        for col in ("train_loss", "val_loss", "grad_norm"):
            if a[col]:
                assert float(b[col]) == pytest.approx(float(a[col]), rel=1e-4), col


def test_compiling_pays_exactly_when_the_saved_time_exceeds_the_warm_up():
    # 1000 steps x 0.1 s at 1.25x save 20 s
    assert should_compile(1000, 0.1, warmup_seconds=19.0, speedup=1.25)
    assert not should_compile(1000, 0.1, warmup_seconds=21.0, speedup=1.25)
    assert not should_compile(10**6, 1.0, warmup_seconds=1.0, speedup=1.0)  # no speed-up, no pay


def test_forced_settings_win_and_auto_says_why(monkeypatch):
    assert decide(True, "cpu", 1, 0.01) == CompileDecision(True, "train.compile=true (forced)")
    assert not decide(False, "cpu", 10**6, 1.0).enabled
    monkeypatch.setattr(compile_module, "toolchain_ok", lambda device_type: True)
    long_run, short_run = decide("auto", "cpu", 10**5, 0.5), decide("auto", "cpu", 10, 0.5)
    assert long_run.enabled
    assert "repays" in long_run.reason
    assert not short_run.enabled
    assert "would not repay" in short_run.reason
    monkeypatch.setattr(compile_module, "toolchain_ok", lambda device_type: False)
    assert decide("auto", "cpu", 10**5, 0.5) == CompileDecision(
        False, "auto: no working compile toolchain for cpu"
    )
    with pytest.raises(ValueError, match="not one of true, false, auto"):
        decide("sometimes", "cpu", 1, 1.0)


def test_the_toolchain_probe_fails_cleanly_without_a_compiler(monkeypatch):
    compile_module.toolchain_ok.cache_clear()
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    try:
        assert compile_module.cpp_compiler() is None
        assert compile_module.toolchain_ok("cpu") is False
        assert compile_module.toolchain_ok("mps") is False
    finally:
        compile_module.toolchain_ok.cache_clear()


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_the_toolchain_probe_finds_a_working_compiler(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    compile_module.toolchain_ok.cache_clear()
    start = time.perf_counter()
    assert compile_module.toolchain_ok("cpu") is True
    assert time.perf_counter() - start < 30  # about 0.2 s on an idle machine


@pytest.mark.parametrize("toolchain", [False, True])
def test_auto_compile_decides_prints_and_records_the_reason(
    toolchain, tmp_path, text_file, cache_dir, monkeypatch, capsys
):
    """train.compile=auto: without a toolchain it stays eager; with one, a run of a few cheap steps
    does not repay the warm-up. Either way the decision and its reason are printed and written to
    run.json, and nothing is compiled (no warm-up)."""
    monkeypatch.setattr(compile_module, "toolchain_ok", lambda device_type: toolchain)
    monkeypatch.setattr(loop_module, "toolchain_ok", lambda device_type: toolchain)
    cfg = tiny_config(text_file, cache_dir, max_steps=2, compile="auto")
    fit(cfg, out=tmp_path / "r")
    record = RunRecord.load(tmp_path / "r").compile
    assert record.requested == "auto"
    assert record.enabled is False
    assert record.warmup_s is None
    expected = "2 steps x" if toolchain else "no working compile toolchain"
    assert expected in record.reason
    assert f"compile: off ({record.reason})" in capsys.readouterr().out
