"""theorylab merge against mergekit itself (skipped when mergekit is not importable; CI does not install it).

Run: python3 -m venv --system-site-packages /work/venv-mk && /work/venv-mk/bin/pip install --no-deps mergekit==0.1.5 immutables
     /work/venv-mk/bin/python -m pytest tests/hf/test_mergekit_compat.py
benchmarks/mergekit_compare.py runs the full table (every method and parameter, three architectures).
"""
import math

import pytest
import torch

mergekit_merge = pytest.importorskip("mergekit.merge")
from mergekit.config import MergeConfiguration  # noqa: E402
from mergekit.options import MergeOptions  # noqa: E402

from theorylab.hf import load_state_dict, merge_checkpoints, parse_config  # noqa: E402


def _both(cfg: dict, tmp_path, name: str):
    mergekit_merge.run_merge(MergeConfiguration.model_validate(cfg), str(tmp_path / f"{name}-mk"),
                             MergeOptions(copy_tokenizer=False))
    merge_checkpoints(parse_config(cfg), tmp_path / f"{name}-tl", progress=False)
    return load_state_dict(tmp_path / f"{name}-tl"), load_state_dict(tmp_path / f"{name}-mk")


def _cfg(paths, method, per_model, params=None):
    models = [{"model": str(paths["base"])}] + [
        {"model": str(paths[f"ft{t}"])} | ({"parameters": p} if p else {}) for t, p in enumerate(per_model)]
    return {"merge_method": method, "base_model": str(paths["base"]), "models": models, "dtype": "float32",
            **({"parameters": params} if params else {})}


CASES = [
    ("linear", [{"weight": 1.0}, {"weight": 0.5}], {"weight": 1.0}),
    ("task_arithmetic", [{"weight": 1.0}, {"weight": -0.4}], {"lambda": 0.7}),
    ("ties", [{"weight": 1.0, "density": 0.5}, {"weight": 0.6, "density": 0.3}], {"rescale": True}),
    ("breadcrumbs_ties", [{"weight": 1.0, "density": 0.6}, {"weight": 0.6, "density": 0.5}], {"gamma": 0.05}),
    ("sce", [None, None], {"select_topk": 0.5}),
    ("model_stock", [None, None], {"filter_wise": True}),
    ("slerp", [None], {"t": [0.0, 1.0]}),
    ("nuslerp", [{"weight": 0.3}, {"weight": 0.7}], {"nuslerp_row_wise": True, "nuslerp_flatten": False}),
    ("multislerp", [{"weight": 0.3}, {"weight": 0.7}], None),
    ("karcher", [None, None], None),
    ("nearswap", [None], {"t": 0.01}),
]


@pytest.mark.parametrize("method, per_model, params", CASES, ids=[c[0] for c in CASES])
def test_deterministic_methods_give_mergekits_tensors(method, per_model, params, family, tmp_path):
    ours, theirs = _both(_cfg(family("llama"), method, per_model, params), tmp_path, method)
    assert set(ours) == set(theirs)
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) <= 1e-6


def test_dare_linear_keep_rate_and_l1_rescale_agree_with_mergekit(family, tmp_path):
    paths = family("llama")
    ours, theirs = _both(_cfg(paths, "dare_linear", [{"weight": 1.0, "density": 0.3}]), tmp_path, "dare")
    base, ft = load_state_dict(paths["base"]), load_state_dict(paths["ft0"])
    names = [k for k, v in base.items() if v.dim() == 2]
    n = sum(base[k].numel() for k in names)
    rates = [sum(int(((m[k] - base[k]) != 0).sum()) for k in names) / n for m in (ours, theirs)]
    for r in rates:  # each against the definition
        assert abs(r - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    for m in (ours, theirs):  # mergekit's rescale: every tensor keeps the L1 norm of its task vector
        for k in names:
            torch.testing.assert_close((m[k] - base[k]).abs().sum(), (ft[k] - base[k]).abs().sum(), rtol=1e-4, atol=0)
