import dataclasses

import pytest

from sympformer.train import fit, read_metrics
from tests.train.helpers import tiny_config


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path, text_file, cache_dir):
    """torch.compile on CPU (about a minute of C++ compilation) gives the eager losses."""
    cfg = tiny_config(text_file, cache_dir, max_steps=3, eval_every=2)
    fit(cfg, out=tmp_path / "eager")
    fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=True)),
        out=tmp_path / "compiled")  # fmt: skip
    eager, compiled = (read_metrics(tmp_path / x / "metrics.csv") for x in ("eager", "compiled"))
    for a, b in zip(eager, compiled, strict=True):
        for col in ("train_loss", "val_loss", "grad_norm"):
            if a[col]:
                assert float(b[col]) == pytest.approx(float(a[col]), rel=1e-4), col
