import pytest
import torch

from theorylab.edit import TaskVector
from tests.edit.conftest import SHAPES, _state


def _pair(seed=1):
    base = _state(0, SHAPES)
    base["pos_ids"] = torch.arange(5)
    ft = {k: v + 0.1 * _state(seed, SHAPES).get(k, 0) if v.is_floating_point() else v.clone() for k, v in base.items()}
    return base, ft


def test_delta_skips_integer_buffers_and_applies_back():
    base, ft = _pair()
    tv = TaskVector(base, ft)
    assert "pos_ids" not in tv and len(tv) == len(SHAPES)
    out = tv.apply_to(base, 1.0)
    for k in SHAPES:
        torch.testing.assert_close(out[k], ft[k])
    assert torch.equal(out["pos_ids"], base["pos_ids"])


def test_arithmetic_matches_elementwise_definition():
    base, ft1 = _pair(1)
    _, ft2 = _pair(2)
    a, b = TaskVector(base, ft1), TaskVector(base, ft2)
    combos = {"add": (a + b, lambda x, y: x + y), "sub": (a - b, lambda x, y: x - y), "neg": (-a, lambda x, y: -x),
              "lmul": (2.5 * a, lambda x, y: 2.5 * x), "rmul": (a * -0.5, lambda x, y: -0.5 * x),
              "sum": (sum([a, b, a]), lambda x, y: 2 * x + y), "zero": (0 + a, lambda x, y: x)}
    for label, (tv, fn) in combos.items():
        for k in SHAPES:
            torch.testing.assert_close(tv[k], fn(a[k], b[k]), msg=label)


def test_coef_zero_gives_base_bit_for_bit_even_with_negative_zero():
    base, ft = _pair()
    base["layers.0.attn.bias"][0] = -0.0
    out = TaskVector(base, ft).apply_to(base, 0.0)
    for k in base:
        assert torch.equal(out[k], base[k])
    assert torch.signbit(out["layers.0.attn.bias"][0])


def test_mismatched_keys_and_shapes_name_the_tensor():
    base, ft = _pair()
    del ft["head.weight"]
    with pytest.raises(ValueError, match="head.weight"):
        TaskVector(base, ft)
    base, ft = _pair()
    ft["layers.1.mlp.bias"] = torch.zeros(9)
    with pytest.raises(ValueError, match="layers.1.mlp.bias"):
        TaskVector(base, ft)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_dtype_kept_and_delta_exact(dtype):
    base = _state(0, SHAPES, dtype)
    ft = {k: (v.float() + 0.01).to(dtype) for k, v in base.items()}
    tv = TaskVector(base, ft)
    assert all(v.dtype == torch.float32 for v in tv.values())
    out = tv.apply_to(base, 1.0)
    for k in base:
        assert out[k].dtype == dtype
        assert torch.equal(out[k], ft[k])  # fp32 delta of two half values reconstructs ft exactly
