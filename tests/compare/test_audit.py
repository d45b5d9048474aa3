"""`sympformer audit`: passes on every arch x scheme and fails on a model that leaks."""

import dataclasses

import pytest

from sympformer.compare import audit
from sympformer.model import ModelConfig

SMALL = ModelConfig(vocab_size=53, n_layer=2, n_head=2, d_model=16, block_size=24)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_audit_passes_for_every_arch_and_scheme(dtype):
    rows = [audit.audit_one(c, dtype, train_steps=2) for c in audit.AuditConfig().models(SMALL)]
    assert len(rows) == 3 + 2 * 8
    assert all(r.ok for r in rows), audit.format_table(rows)
    assert audit.format_table(rows).endswith(f"19 passed, 0 failed ({dtype})")


def test_audit_catches_a_leaking_oracle(monkeypatch):
    from sympformer.model import attention

    original = attention.SoftmaxOracleModule.oracle

    def leaky(self, tape):
        return dataclasses.replace(original(self, tape), causal=False)

    monkeypatch.setattr(attention.SoftmaxOracleModule, "oracle", leaky)
    (cfg,) = audit.AuditConfig(archs=("symp",), schemes=("presymp_euler",)).models(SMALL)
    row = audit.audit_one(cfg, "float32", train_steps=1)
    assert row.leak > 1e-3
    assert not row.ok
    assert "FAIL" in audit.format_table([row])


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown arch 'bert'"):
        audit.AuditConfig(archs=("bert",))
    with pytest.raises(ValueError, match="unknown integrator 'rk4'"):
        audit.AuditConfig(schemes="rk4")
    with pytest.raises(ValueError, match="variant 'symp\\+drift=none'"):
        audit.AuditConfig(variants="symp+drift=none")


def test_named_variants_are_audited_alone_or_with_the_grid():
    only = audit.AuditConfig(variants="symp:plain_euler+drift=identity+force=attention")
    (cfg,) = only.models(SMALL)
    assert (cfg.scheme, cfg.drift, cfg.force) == ("plain_euler", "identity", "attention")
    both = audit.AuditConfig(archs="gpt", variants="symp+mlp_step=nesterov").models(SMALL)
    assert [(c.arch, c.mlp_step) for c in both] == [("gpt", None), ("symp", "nesterov")]
    row = audit.audit_one(cfg, "float64", train_steps=1)
    assert row.ok, audit.format_table([row])
