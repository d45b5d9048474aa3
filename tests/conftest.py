import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state (torch and numpy's legacy global)."""
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (seeds code that uses the legacy global RNG)


@pytest.fixture
def one_thread():
    """One torch thread for the tiny float64 flow problems, whose cost is per-step overhead: a
    second thread only contends (the linear acceleration test took 4 s with one thread and 366 s
    with two on this project's shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
