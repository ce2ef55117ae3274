"""The one-layer attention-only model against a per-example reference; decoding; training moves the attention."""
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.progress import QUIET
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.cot.config import CoTConfig
from theorylab.shared.cot_reasoning import eval_reasoning, icl_prompts, step_prompts
from theorylab.studies.cot.evaluate import attention_by_category, cot_decode
from theorylab.studies.cot.model import decode, forward, forward_reference, init_params
from theorylab.core.study import get_study

dev = torch.device("cpu")


def _setup(E=2, B=3, l=4):
    cfgs = [CoTConfig(seed=s, d_X=16, M=5, K=3) for s in range(E)]
    params = init_params(cfgs, dev)
    rng = EnsembleRNG(list(range(E)))
    for k in ("W_Q", "W_K", "W_V"):  # away from the symmetric init so every term matters
        params[k] = params[k] + 0.5 * rng.normal(tuple(params[k].shape[1:]), "perturb", k)
    return cfgs, params, eval_reasoning(cfgs, rng_for(cfgs, dev), B, l, "t")


def test_batched_forward_equals_the_per_example_sum_at_every_step_and_for_icl():
    cfgs, params, r = _setup()
    for pr in [step_prompts(r, k) for k in (1, 2, 3)] + [icl_prompts(r)]:
        F = forward(params, pr.C, pr.mask, pr.Q)
        torch.testing.assert_close(F, forward_reference(params, pr.C, pr.mask, pr.Q), atol=1e-5, rtol=1e-5)
        assert F.shape == (2, 3, 16) and F.abs().max() > 1e-3


def test_a_prompt_without_columns_outputs_zero_and_probes_sum_to_one():
    cfgs, params, r = _setup(l=0)
    pr = step_prompts(r, 1)
    assert pr.C.shape[2] == 2 and not pr.mask.any()
    F, probes = forward(params, pr.C, pr.mask, pr.Q, probes=True)
    assert torch.equal(F, torch.zeros_like(F)) and torch.isfinite(probes["attn"]).all()
    pr = step_prompts(eval_reasoning(cfgs, rng_for(cfgs, dev), 3, 4, "u"), 2)
    _, probes = forward(params, pr.C, pr.mask, pr.Q, probes=True)
    torch.testing.assert_close(probes["attn"].sum(-1), torch.ones(2, 3))
    assert (probes["attn"][~pr.mask] == 0).all()


def test_decoding_picks_the_nearest_pattern_and_never_scores_nan():
    patterns = torch.eye(4, 6).expand(1, 4, 6)
    F = torch.tensor([[[0.1, 0.9, 0, 0, 0, 0], [0.0, 0.0, 0.3, 0.2, 0, 0], [float("nan")] * 6]])
    assert decode(F, patterns).tolist() == [[1, 2, -1]]


def test_training_concentrates_attention_and_cot_decoding_improves():
    cfgs = [CoTConfig(seed=s, steps=120, B=64, n_test=50, l_ts=10, curve_points=3) for s in range(2)]
    res = get_study("cot").train_group(cfgs, dev, QUIET)
    assert res.status == ["done", "done"]
    r = eval_reasoning(cfgs, rng_for(cfgs, dev), 100, 20, "x")
    before = attention_by_category(init_params(cfgs, dev), r)[..., 0].mean(1)
    after = attention_by_category(res.params, r)[..., 0].mean(1)
    assert (after > before + 0.2).all()
    err = lambda p: (cot_decode(p, r) != r.query_ids[:, :, 1:]).float().mean((1, 2))  # noqa: E731
    assert (err(res.params) < 0.5 * err(init_params(cfgs, dev))).all()
