"""SympFormer: accelerated attention blocks via inertial dynamics on density manifolds.

Public API: `ModelConfig`, `Variant`, `build_model`, `ARCHS`; the mathematics in
`sympformer.dynamics` (`SCHEMES`, oracles, flows); data in `sympformer.data`; training in
`sympformer.train`.
"""

from sympformer.model import ARCHS, ModelConfig, Variant, build_model

__all__ = ["ARCHS", "ModelConfig", "Variant", "build_model"]
__version__ = "0.1.0"
