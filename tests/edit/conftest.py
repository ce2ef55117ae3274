import pytest
import torch


def _state(seed: int, shapes: dict[str, tuple[int, ...]], dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g).to(dtype) for k, s in shapes.items()}


SHAPES = {"emb.weight": (10, 4), "layers.0.attn.weight": (6, 4), "layers.0.attn.bias": (6,),
          "layers.1.mlp.weight": (8, 6), "layers.1.mlp.bias": (8,), "head.weight": (3, 8)}


@pytest.fixture
def base():
    return _state(0, SHAPES)


@pytest.fixture
def make_state():
    return _state
