"""Fixtures shared by the trainer tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: the 2 shared cores are busy with other work, and one thread
    avoids OpenMP spin-waits. Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
