import torch

from theorylab.core.progress import QUIET
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.icl.config import ICLConfig
from theorylab.studies.icl.data import in_domain_world, sample_prompts, split_tasks
from theorylab.core.ensemble import rng_for
from theorylab.studies.icl.evaluate import pruning_mask
from theorylab.studies.icl.model import forward, forward_reference, init_params
from theorylab.studies.icl.train import train_group

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
