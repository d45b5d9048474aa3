"""ModelConfig validates itself: a bad value fails at construction, one line naming the field."""

import re

import pytest

from sympformer import ARCHS, ModelConfig


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "bert"}, "ModelConfig.arch='bert' is unknown"),
        ({"arch": "gpt", "scheme": "ab2"}, "does not apply to arch='gpt'"),
        ({"arch": "symp", "scheme": "rk9"}, "unknown integrator 'rk9'"),
        ({"d_model": 30, "n_head": 4}, "d_model=30 is not divisible by n_head=4"),
        ({"n_layer": 0}, "ModelConfig.n_layer=0 must be a positive integer"),
        ({"block_size": -1}, "block_size=-1"),
        ({"vocab_size": 2.5}, "vocab_size=2.5"),
        ({"velocity_init": "random"}, "velocity_init='random' is not one of"),
        ({"arch": "gpt", "velocity_init": "learned"}, "has no velocity"),
        ({"momentum_norm": "each"}, "momentum_norm='each'"),
        ({"h_init": 0.0}, "h_init=0.0 must be a positive number"),
        ({"lookahead_init": 1.0}, "lookahead_init=1.0 must be a number in (0, 1)"),
        ({"c_log_init": 25.0}, "c_log_init=25.0 must be a number in (0, 20]"),
        ({"h_init": 9.0}, "h_init=9.0 must be a number in [0.0001, 4]"),
        ({"qk_tied": "yes"}, "qk_tied='yes' must be a boolean"),
    ],
)
def test_bad_values_raise_one_clear_line(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        ModelConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_defaults_resolve_once():
    assert ModelConfig(arch="symp").scheme == "presymp_euler"
    assert ModelConfig(arch="yurii").velocity_init == "learned"
    assert ModelConfig(arch="symp").velocity_init == "zero"
    assert ModelConfig(vocab_size=50257).padded_vocab == 50304
    assert set(ARCHS) == {"gpt", "gpt_linear", "yurii", "symp", "symp_linear"}
