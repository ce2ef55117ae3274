"""Fixtures every test folder may use."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, two OpenMP threads per process under load
    spin-wait and run tens of times slower; results do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
