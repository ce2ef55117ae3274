import torch

from theorylab.core.progress import QUIET
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.icl.config import ICLConfig
from theorylab.shared.icl_prompts import in_domain_world, sample_prompts, split_tasks
from theorylab.core.ensemble import rng_for
from theorylab.studies.icl.evaluate import pruning_mask
from theorylab.studies.icl.model import forward, forward_reference, init_params
from theorylab.core.study import get_study

train_group = get_study("icl").train_group

dev = torch.device("cpu")


def _random_setup(E=3, B=4, L=6):
    cfgs = [ICLConfig(seed=s, m=8) for s in range(E)]
    rng = EnsembleRNG(list(range(E)))
    params = init_params(cfgs, rng, dev)
    for k in ("W_Q", "W_K", "W_V", "W_O"):  # move away from the symmetric init so every term matters
        params[k] = params[k] + 0.3 * rng.normal(tuple(params[k].shape[1:]), "perturb", k)
    world = in_domain_world(cfgs, dev, split_tasks(cfgs[0])[0])
    pr = sample_prompts(world, rng, torch.full((E,), 0.8), B, L, "t")
    return params, pr


def test_batched_forward_equals_per_example_eq1():
    params, pr = _random_setup()
    F = forward(params, pr.C, pr.Q)
    ref = forward_reference(params, pr.C, pr.Q)
    assert torch.allclose(F, ref, atol=1e-5, rtol=1e-5)
    assert F.abs().max() > 1e-3  # not trivially zero


def test_probes_have_documented_shapes():
    params, pr = _random_setup(E=2, B=5, L=7)
    F, probes = forward(params, pr.C, pr.Q, probes=True)
    assert probes["attn"].shape == (2, 5, 7) and torch.allclose(probes["attn"].sum(-1), torch.ones(2, 5))
    assert probes["preact"].shape == (2, 5, 8) and probes["hidden"].shape == (2, 5, 40) and F.shape == (2, 5)
    _, with_query = forward(params, pr.C, pr.Q, attend_query=True, probes=True)
    assert with_query["attn"].shape == (2, 5, 8)


def test_a_model_trained_in_an_ensemble_of_64_matches_it_trained_alone():
    cfgs = [ICLConfig(seed=s, steps=150, n_test=100, curve_points=5) for s in range(64)]
    big = train_group(cfgs, dev, QUIET)
    alone = train_group([cfgs[41]], dev, QUIET)
    for k, v in big.params.items():
        assert torch.allclose(v[41], alone.params[k][0], atol=1e-5), k
    for k, v in alone.metrics[0].items():
        assert abs(big.metrics[41][k] - v) <= 1e-5, k


def test_fixed_training_set_mode_trains():
    res = train_group([ICLConfig(steps=400, n_train=512, n_test=200)], dev, QUIET)
    assert res.status == ["done"] and res.metrics[0]["train_loss"] < 0.5


def test_pruning_masks_remove_exact_counts_by_norm():
    params, _ = _random_setup(E=2)
    norms = params["W_O"].norm(dim=-1)
    for how in ("smallest", "largest", "random"):
        keep = pruning_mask(params, 0.25, how, rng_for([ICLConfig(), ICLConfig(seed=1)], dev))
        assert (keep.sum(-1) == 6).all()
    keep = pruning_mask(params, 0.25, "smallest")
    assert (norms[~keep].reshape(2, 2).max(-1).values <= norms[keep].reshape(2, 6).min(-1).values).all()


def test_the_hand_written_gradient_of_eq1_is_autograds():
    from theorylab.studies.icl.eq1_fast import Eq1
    from theorylab.studies.icl.model import forward_equation

    params, pr = _random_setup(E=2, B=3, L=5)
    p64 = {k: v.double().requires_grad_(True) for k, v in params.items()}
    C, Q = pr.C.double().requires_grad_(True), pr.Q.double().requires_grad_(True)
    names = ("W_Q", "W_K", "W_V", "W_O", "a")
    assert torch.autograd.gradcheck(lambda *x: Eq1.apply(*x), [p64[k] for k in names] + [C, Q])
    # float32, the training precision: the same gradients as autograd through the einsum form
    p32 = {k: v.clone().requires_grad_(k != "a") for k, v in params.items()}
    F = forward(p32, pr.C, pr.Q)
    ref = forward_equation(p32, pr.C, pr.Q)
    assert torch.allclose(F, ref, atol=1e-6)
    w = torch.randn_like(F)
    mine = torch.autograd.grad((F * w).sum(), [p32[k] for k in names[:4]])
    theirs = torch.autograd.grad((ref * w).sum(), [p32[k] for k in names[:4]])
    for k, g, h in zip(names, mine, theirs):
        assert torch.allclose(g, h, atol=1e-5, rtol=1e-4), k


def test_training_with_the_fast_step_stays_within_1e5_of_the_einsum_autograd_step():
    """Issue 17's contract: the fast path's numbers are the eager reference's within 1e-5."""
    import theorylab.studies.icl.train as icl_train
    from theorylab.studies.icl.model import forward_equation

    cfgs = [ICLConfig(seed=s, steps=300, n_test=200, curve_points=3) for s in range(4)]
    fast = train_group(cfgs, dev, QUIET)
    original = icl_train.forward
    icl_train.forward = lambda p, C, Q, attend_query=False, probes=False: (
        original(p, C, Q, attend_query, probes) if probes else forward_equation(p, C, Q))
    try:
        reference = train_group(cfgs, dev, QUIET)
    finally:
        icl_train.forward = original
    for k, v in fast.params.items():
        assert (v - reference.params[k]).abs().max() <= 1e-5, k
    start = init_params(cfgs, EnsembleRNG(list(range(4))), dev)["W_Q"]  # delta * I whatever the keys
    assert (fast.params["W_Q"] - start).abs().max() > 1e-3  # it did train
