"""Fixtures shared by the trainer tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Torch on one thread in the test process: with the cores also busy (Ray actors, the reward
    service, other jobs), two OpenMP threads spin-wait on each other and a tiny learner update
    measured 30-60x slower than on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
