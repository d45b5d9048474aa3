import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state (torch and numpy's legacy global)."""
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (seeds code that uses the legacy global RNG)
