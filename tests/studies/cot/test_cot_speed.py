"""The speed paths of the cot study equal the plain ones: training batches as pattern indices (forward_columns) against
the built [E, B, N, 2 d_X] context (forward), on the forward, the gradient and a few training steps."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import SGD, train_ensemble
from theorylab.shared.cot_reasoning import training_columns, training_prompts
from theorylab.studies.cot.config import CoTConfig
from theorylab.studies.cot.model import forward, forward_columns, half_squared_loss, init_params

dev = torch.device("cpu")


def _params(cfgs, dtype):
    params = init_params(cfgs, dev)
    rng = EnsembleRNG(list(range(len(cfgs))))
    for k in ("W_Q", "W_K", "W_V"):  # away from the symmetric init so every term matters
        params[k] = params[k] + 0.5 * rng.normal(tuple(params[k].shape[1:]), "perturb", k)
    return {k: v.to(dtype).requires_grad_(True) for k, v in params.items()}


def _both(cfgs, B, step, dtype):
    rng = rng_for(cfgs, dev)
    pr = training_prompts(cfgs, rng, B, "train", step)
    cols = training_columns(cfgs, rng, B, "train", step)
    return pr, cols


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("K,l", [(3, 5), (1, 4), (4, 2)])
def test_index_batches_are_the_built_prompts_and_give_the_same_forward_and_gradient(dtype, tol, K, l):
    cfgs = [CoTConfig(seed=s, d_X=16, M=5, K=K, l_tr=l) for s in range(3)]
    params = _params(cfgs, dtype)
    pr, cols = _both(cfgs, 7, 4, dtype)
    assert torch.equal(pr.target, cols.target) and torch.equal(pr.mask, cols.mask) and torch.equal(pr.Q, cols.Q)
    assert torch.equal(pr.col_step, cols.col_step)
    cols.patterns, cols.pos, cols.Q = cols.patterns.to(dtype), cols.pos.to(dtype), cols.Q.to(dtype)
    F = forward(params, pr.C.to(dtype), pr.mask, pr.Q.to(dtype))
    F_fast = forward_columns(params, cols)
    assert F.abs().max() > 1e-3
    torch.testing.assert_close(F_fast, F, rtol=tol, atol=tol)
    z = torch.randn(F.shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    grads = torch.autograd.grad(half_squared_loss(F, z).sum(), list(params.values()))
    grads_fast = torch.autograd.grad(half_squared_loss(F_fast, z).sum(), list(params.values()))
    for g, gf in zip(grads, grads_fast):
        assert g.abs().max() > 0
        torch.testing.assert_close(gf, g, rtol=tol, atol=tol * float(g.abs().max()))


def test_a_few_sgd_steps_on_index_batches_match_the_built_prompts():
    cfgs = [CoTConfig(seed=s, d_X=16, M=5, K=3, l_tr=6, train_W_V=True) for s in range(2)]
    params = {k: v.detach() for k, v in _params(cfgs, torch.float64).items()}
    rng = rng_for(cfgs, dev)

    def plain(p, step):
        pr, patterns = training_prompts(cfgs, rng, 8, "train", step, with_patterns=True)
        z = torch.gather(patterns, 1, pr.target[..., None].expand(-1, -1, 16)).double()
        return {"loss": half_squared_loss(forward(p, pr.C.double(), pr.mask, pr.Q.double()), z)}

    def fast(p, step):
        cols = training_columns(cfgs, rng, 8, "train", step)
        cols.patterns, cols.pos, cols.Q = cols.patterns.double(), cols.pos.double(), cols.Q.double()
        z = torch.gather(cols.patterns, 1, cols.target[..., None].expand(-1, -1, 16))
        return {"loss": half_squared_loss(forward_columns(p, cols), z)}

    lr = torch.full((2,), 0.5, dtype=torch.float64)
    a = train_ensemble(params, ["W_Q", "W_K", "W_V"], plain, lr, 5, optimizer=SGD(), curve_points=5)
    b = train_ensemble(params, ["W_Q", "W_K", "W_V"], fast, lr, 5, optimizer=SGD(), curve_points=5)
    for k in params:
        assert not torch.equal(a.params[k], params[k])
        torch.testing.assert_close(b.params[k], a.params[k], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.curves["loss"], a.curves["loss"], rtol=1e-6, atol=0)  # curves are stored as float32


@pytest.mark.parametrize("l", [0, 1, 6])
def test_steps_and_icl_read_from_the_tokens_equal_the_built_prompts(l):
    from theorylab.shared.cot_reasoning import eval_reasoning, icl_prompts, step_prompts
    from theorylab.studies.cot.evaluate import cot_decode, icl_decode
    from theorylab.studies.cot.model import forward_icl, forward_step

    cfgs = [CoTConfig(seed=s, d_X=16, M=5, K=3) for s in range(2)]
    params = {k: v.double() for k, v in _params(cfgs, torch.float32).items()}
    r = eval_reasoning(cfgs, rng_for(cfgs, dev), 9, l, "t")
    r.tokens, r.query_tokens, r.pos, r.patterns = (t.double() for t in (r.tokens, r.query_tokens, r.pos, r.patterns))
    qt = r.query_tokens[:, :, :3].flip(1)  # another chain than the truth: what greedy decoding feeds back
    for k in (1, 2, 3):
        pr = step_prompts(r, k, qt)
        F = forward(params, pr.C.double(), pr.mask, pr.Q.double())
        torch.testing.assert_close(forward_step(params, r, k, qt), F, rtol=1e-12, atol=1e-12)
        assert l == 0 and k == 1 or F.abs().max() > 1e-3
    pr = icl_prompts(r)
    torch.testing.assert_close(forward_icl(params, r), forward(params, pr.C.double(), pr.mask, pr.Q.double()),
                               rtol=1e-12, atol=1e-12)
    params32, r32 = _params(cfgs, torch.float32), eval_reasoning(cfgs, rng_for(cfgs, dev), 9, l, "t")
    with torch.no_grad():  # decoding as evaluate runs it (float32): the same outputs either way
        assert torch.equal(cot_decode(params32, r32), cot_decode(params32, r32, fast=False))
        assert torch.equal(icl_decode(params32, r32), icl_decode(params32, r32, fast=False))


@pytest.mark.gpu
def test_speed_paths_on_cuda_equal_the_plain_ones_and_the_cpu_noise():
    from theorylab.shared.cot_reasoning import eval_reasoning, step_prompts
    from theorylab.studies.cot.model import forward_step

    cuda = torch.device("cuda")
    cfgs = [CoTConfig(seed=s, d_X=16, M=5, K=3, l_tr=6) for s in range(2)]
    params = {k: v.detach().to(cuda) for k, v in _params(cfgs, torch.float32).items()}
    rng = rng_for(cfgs, cuda)
    pr, cols = training_prompts(cfgs, rng, 8, "train", 1), training_columns(cfgs, rng, 8, "train", 1)
    torch.testing.assert_close(forward_columns(params, cols), forward(params, pr.C, pr.mask, pr.Q), rtol=1e-5, atol=1e-5)
    r = eval_reasoning(cfgs, rng, 8, 6, "t")
    torch.testing.assert_close(r.tokens.cpu(), eval_reasoning(cfgs, rng_for(cfgs, dev), 8, 6, "t").tokens,
                               rtol=1e-6, atol=1e-6)  # the same noise (uniform_blocked on the device)
    p2 = step_prompts(r, 2)
    torch.testing.assert_close(forward_step(params, r, 2, r.query_tokens[:, :, :3]), forward(params, p2.C, p2.mask, p2.Q),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"K": 1}, {"K": 4, "l_tr": 2}, {"K": 2, "l_tr": 1, "M": 5, "d_X": 12}])
def test_basis_batches_are_the_index_batches_and_forward_basis_is_forward_columns_bit_for_bit(kw):
    from theorylab.shared.cot_reasoning import training_basis
    from theorylab.studies.cot.model import forward_basis

    cfgs = [CoTConfig(seed=s, **kw) for s in range(3)]
    p32 = {k: v.detach() for k, v in _params(cfgs, torch.float32).items()}
    p32["W_V"] = init_params(cfgs, dev)["W_V"]  # frozen [0, I]: forward_basis's premise
    rng = rng_for(cfgs, dev)
    for step in range(2):
        cols, basis = training_columns(cfgs, rng, 16, "train", step), training_basis(cfgs, rng, 16, "train", step)
        M, d_X = cols.patterns.shape[1:]
        n_ex = cols.in_ids.shape[2] - basis.valid.shape[2]
        assert torch.equal(basis.Q, cols.Q) and torch.equal(basis.target, cols.target)
        assert torch.equal(basis.patterns, cols.patterns) and torch.equal(basis.pos_w, M + cols.col_step)
        assert torch.equal(basis.valid, cols.mask[..., n_ex:]) and bool(cols.mask[..., :n_ex].all())
        present = cols.mask  # absent prefix columns' indices are read and masked, never used
        assert torch.equal(basis.in_w[present], cols.in_ids[present])
        assert torch.equal(basis.out_w[present], cols.out_ids[present] + d_X)
        out = []
        for fwd, batch in ((forward_columns, cols), (forward_basis, basis)):
            p = {k: v.clone().requires_grad_(k != "W_V") for k, v in p32.items()}
            F = fwd(p, batch)
            loss = half_squared_loss(F, torch.gather(batch.patterns, 1, batch.target[..., None].expand(-1, -1, d_X)))
            out.append((F, loss, *torch.autograd.grad(loss.sum(), [p["W_Q"], p["W_K"]])))
        assert out[0][0].abs().max() > 1e-3 and out[0][2].abs().max() > 0
        for a, b in zip(*out):
            assert torch.equal(a, b)  # bit for bit: every skipped term is an exact zero


def test_training_on_basis_batches_is_training_on_index_batches_bit_for_bit():
    from theorylab.shared.cot_reasoning import training_basis
    from theorylab.studies.cot.model import forward_basis

    cfgs = [CoTConfig(seed=s, K=3, l_tr=6) for s in range(2)]
    params = {k: v.detach() for k, v in _params(cfgs, torch.float32).items()}
    params["W_V"] = init_params(cfgs, dev)["W_V"]

    def run(batch, fwd):
        rng = rng_for(cfgs, dev)

        def loss(p, step):
            cols = batch(cfgs, rng, 8, "train", step)
            z = torch.gather(cols.patterns, 1, cols.target[..., None].expand(-1, -1, cols.patterns.shape[2]))
            return {"loss": half_squared_loss(fwd(p, cols), z)}
        return train_ensemble(params, ["W_Q", "W_K"], loss, torch.full((2,), 1.0), 5, optimizer=SGD(), curve_points=5)

    a, b = run(training_columns, forward_columns), run(training_basis, forward_basis)
    for k in ("W_Q", "W_K"):
        assert not torch.equal(a.params[k], params[k]) and torch.equal(b.params[k], a.params[k])
    assert torch.equal(b.curves["loss"], a.curves["loss"])
