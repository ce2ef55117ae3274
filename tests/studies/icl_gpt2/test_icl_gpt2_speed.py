"""The speed path of icl_gpt2 equals the plain one: the last layer computed for the query token only
(forward(query_only=True), core.nn.attention_query at query -1) against every token, on the forward, the probes, the
gradient and a few AdamW steps, for the ICL prompts and the CoT prompts (absent columns masked)."""
import pytest
import torch

from theorylab.core import nn
from theorylab.core.ensemble import rng_for, scalar_tensor
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import AdamW, train_ensemble
from theorylab.shared.cot_reasoning import eval_reasoning, step_prompts
from theorylab.shared.icl_evaluation import seen_world
from theorylab.shared.icl_prompts import sample_prompts
from theorylab.studies.icl_gpt2.config import ICLGPT2Config
from theorylab.studies.icl_gpt2.model import forward, init_params

dev = torch.device("cpu")


def _prompts(cfgs, task, B=6):
    rng = rng_for(cfgs, dev)
    if task == "icl":
        pr = sample_prompts(seen_world(cfgs, dev), rng, scalar_tensor(cfgs, "alpha", dev), B, cfgs[0].l_tr, "t")
        return pr.C, pr.Q, None
    pr = step_prompts(eval_reasoning(cfgs, rng, B, cfgs[0].l_tr, "t"), 2)
    return pr.C, pr.Q, pr.mask


def _cfgs(task, layers):
    extra = {"task": "cot", "M2": 10, "d_X": 16, "M": 5, "K": 3} if task == "cot" else {}
    return [ICLGPT2Config(seed=s, n_layer=layers, n_embd=16, n_head=2, l_tr=5, l_ts=5, **extra) for s in range(3)]


def _params(cfgs, dtype):
    params = init_params(cfgs, rng_for(cfgs, dev), dev)
    rng = EnsembleRNG([7, 8, 9])  # weights away from GPT-2's small init so every path matters
    return {k: (v + 0.3 * rng.normal(tuple(v.shape[1:]), "perturb", k)).to(dtype) for k, v in params.items()}


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("task,layers", [("icl", 1), ("icl", 3), ("cot", 2)])
def test_query_only_last_layer_equals_every_token_forward_probes_and_gradient(dtype, tol, task, layers):
    cfgs = _cfgs(task, layers)
    params = {k: v.requires_grad_(True) for k, v in _params(cfgs, dtype).items()}
    C, Q, mask = _prompts(cfgs, task)
    C, Q = C.to(dtype), Q.to(dtype)
    F, pb = forward(params, C, Q, 2, probes=True, mask=mask, query_only=False)
    F_fast, pb_fast = forward(params, C, Q, 2, probes=True, mask=mask)
    assert F.abs().max() > 1e-3
    torch.testing.assert_close(F_fast, F, rtol=tol, atol=tol)
    assert pb.keys() == pb_fast.keys()
    for k in pb:
        torch.testing.assert_close(pb_fast[k], pb[k], rtol=tol, atol=tol)
    grads = torch.autograd.grad((F ** 2).sum(), list(params.values()))
    grads_fast = torch.autograd.grad((F_fast ** 2).sum(), list(params.values()))
    for g, gf in zip(grads, grads_fast):
        torch.testing.assert_close(gf, g, rtol=tol, atol=tol * max(float(g.abs().max()), 1e-30))


def test_attention_at_the_last_query_is_the_last_row_of_causal_attention_with_a_key_mask():
    rng = EnsembleRNG([1, 2])
    p = nn.init_attention(rng, "a", 8, 2)
    p["a.qkv.b"] = 0.1 * rng.normal((24,), "b")
    x = rng.normal((3, 5, 8), "x").double()
    p = {k: v.double() for k, v in p.items()}
    keys = torch.ones(2, 3, 5, dtype=torch.bool)
    keys[0, 1, 2] = False
    full = nn.attention(x, p, "a", 2, causal=True, key_mask=keys, key_bias=False)
    last = nn.attention_query(x, p, "a", 2, query=-1, key_mask=keys, key_bias=False)[..., None, :]
    torch.testing.assert_close(last, full[..., -1:, :], rtol=1e-12, atol=1e-12)


def test_a_few_adamw_steps_with_the_query_only_layer_match_the_plain_forward():
    cfgs = _cfgs("icl", 2)
    params = _params(cfgs, torch.float64)
    C, Q, _ = _prompts(cfgs, "icl", B=8)
    C, Q = C.double(), Q.double()
    z = torch.sign(C[..., 0, -1] + 0.5)  # any fixed labels

    def loss(query_only):
        return lambda p, step: {"loss": torch.relu(1 - z * forward(p, C, Q, 2, query_only=query_only)).mean(-1)}

    lr = torch.full((3,), 1e-2, dtype=torch.float64)
    a = train_ensemble(params, list(params), loss(False), lr, 4, optimizer=AdamW(weight_decay=0.0), curve_points=4)
    b = train_ensemble(params, list(params), loss(True), lr, 4, optimizer=AdamW(weight_decay=0.0), curve_points=4)
    moved = 0
    for k in params:
        moved += not torch.equal(a.params[k], params[k])
        torch.testing.assert_close(b.params[k], a.params[k], rtol=1e-9, atol=1e-9)
    assert moved > len(params) // 2


@pytest.mark.gpu
def test_query_only_last_layer_on_cuda_equals_every_token():
    cfgs = _cfgs("cot", 2)
    cuda = torch.device("cuda")
    params = {k: v.to(cuda) for k, v in _params(cfgs, torch.float32).items()}
    C, Q, mask = (t.to(cuda) for t in _prompts(cfgs, "cot"))
    F, pb = forward(params, C, Q, 2, probes=True, mask=mask, query_only=False)
    F_fast, pb_fast = forward(params, C, Q, 2, probes=True, mask=mask)
    torch.testing.assert_close(F_fast, F, rtol=1e-5, atol=1e-5)
    for k in pb:
        torch.testing.assert_close(pb_fast[k], pb[k], rtol=1e-5, atol=1e-5)


def test_sliced_training_step_equals_whole_ensemble_bit_for_bit():
    """training(chunk=k): the step a few models at a time (core.chunked) gives the whole-ensemble weights and
    curves exactly (AdamW, a checkpoint with the error curve and the probes)."""
    from theorylab.core.study import get_study
    from theorylab.studies.icl_gpt2.train import models_per_slice, training

    s = get_study("icl_gpt2")
    cfgs = s.seed_configs("quick", 5, **{**s.tiny, "steps": 4, "curve_points": 2})
    runs = {}
    for chunk in (len(cfgs), 1, 2):
        tr = training(cfgs, rng_for(cfgs, dev), dev, chunk=chunk)
        runs[chunk] = tr.train()
    whole = runs[len(cfgs)]
    for chunk in (1, 2):
        assert all(torch.equal(runs[chunk].params[k], whole.params[k]) for k in whole.params)
        assert runs[chunk].curves.keys() == whole.curves.keys() and "error" in whole.curves
        assert all(torch.equal(runs[chunk].curves[k], whole.curves[k]) for k in whole.curves)
    assert 1 <= models_per_slice(s.seed_configs("quick", 64), dev) < 64
    assert models_per_slice(s.seed_configs("quick", 64), torch.device("cuda")) == 64
