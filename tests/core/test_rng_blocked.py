"""EnsembleRNG.uniform_blocked draws uniform's numbers bit for bit, at any block size and across the int64 wrap."""
import pytest
import torch

from theorylab.core.rng import EnsembleRNG


@pytest.mark.parametrize("shape,block", [((7, 300), 64), ((3, 5, 11), 16), ((1000,), 1000), ((10,), 64), ((4097,), 4096)])
def test_blocked_uniform_is_uniform_bit_for_bit(shape, block):
    rng = EnsembleRNG([0, 12345, 2**62 - 1])
    a = rng.uniform_blocked(shape, "noise", 3, block=block)
    b = rng.uniform(shape, "noise", 3)
    assert a.shape == b.shape == (3, *shape) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, rng.uniform(shape, "noise", 4))  # a different stream differs
