"""The CoT data model's statistics and layouts (section 2.1, 2.4)."""
import pytest
import torch

from theorylab.core.config import ConfigError, make_config
from theorylab.core.ensemble import rng_for
from theorylab.studies.cot.config import CoTConfig
from theorylab.shared.cot_reasoning import (eval_reasoning, icl_prompts, positions, random_tasks, step_prompts,
                                        training_prompts, training_reasoning, transition_matrices, transition_stats,
                                        trr_patterns, tsr_patterns)

dev = torch.device("cpu")
CFGS = [CoTConfig(seed=s) for s in range(2)]


def test_training_chains_follow_one_task_and_alpha_shares_the_query_input():
    rng = rng_for(CFGS, dev)
    r = training_reasoning(CFGS, rng, 64, "t")
    E, B, l, K1, d = r.tokens.shape
    assert (E, B, l, K1, d) == (2, 64, 20, 4, 32)
    # every example and the query follow the same permutation chain: equal inputs give equal chains
    same = r.ids[:, :, :, 0] == r.query_ids[:, :, None, 0]
    assert (same.sum(-1) == round(0.6 * 20)).all()  # round(alpha l_tr) examples share the query's pattern
    assert (r.ids[same] == r.query_ids[:, :, None].expand(-1, -1, l, -1)[same]).all()
    assert (r.ids[~same][:, 1:] != r.query_ids[:, :, None].expand(-1, -1, l, -1)[~same][:, 1:]).all()
    assert torch.equal(r.tokens, torch.eye(10, 32)[r.ids])  # TRR tokens, no noise


def test_step_prompt_layout():
    rng = rng_for(CFGS, dev)
    r = training_reasoning(CFGS, rng, 8, "t")
    pos = positions(CFGS, dev)
    for k in (1, 2, 3):
        pr = step_prompts(r, k)
        assert pr.C.shape == (2, 8, 20 * 3 + 2, 64) and pr.mask[..., 60:].sum(-1).eq(k - 1).all()
        z = r.query_tokens
        assert torch.equal(pr.Q, torch.cat([z[:, :, k - 1] + pos[k - 1], torch.zeros_like(z[:, :, 0])], -1))
        assert torch.equal(pr.target, r.query_ids[:, :, k])
        # example 1, step 2: (y_2 + c_2; y_3)
        assert torch.equal(pr.C[:, :, 3 + 2], torch.cat([r.tokens[:, :, 1, 2] + pos[2], r.tokens[:, :, 1, 3]], -1))
        if k == 3:  # the query's step-1 column (z_1 + c_1; z_2)
            assert torch.equal(pr.C[:, :, 61], torch.cat([z[:, :, 1] + pos[1], z[:, :, 2]], -1))
    pr = training_prompts(CFGS, rng, 500, "t2")
    counts = torch.bincount(pr.k.flatten(), minlength=4)[1:]
    assert counts.min() > 250  # k ~ Uniform{1..K}


def test_patterns_and_positions_are_orthonormal_and_tsr_in_span_of_trr():
    rng = rng_for(CFGS, dev)
    mu, mu2, pos = trr_patterns(CFGS, dev), tsr_patterns(CFGS, rng, dev), positions(CFGS, dev)
    torch.testing.assert_close(mu2 @ mu2.transpose(1, 2), torch.eye(10).expand(2, 10, 10), atol=1e-5, rtol=0)
    assert mu2[..., 10:].abs().max() < 1e-6  # overlap 0: inside span{TRR}
    assert (pos @ mu.transpose(1, 2)).abs().max() == 0 and (pos @ mu2.transpose(1, 2)).abs().max() == 0
    s = tsr_patterns([c.replace(overlap=0.3, d_X=32) for c in CFGS], rng, dev)
    torch.testing.assert_close(s.norm(dim=-1), torch.ones(2, 10))
    torch.testing.assert_close(s[..., 13:23].norm(dim=-1), torch.full((2, 10), 0.3))


def test_the_slides_worked_example():
    A = torch.tensor([[[0.6, 0.4], [0.4, 0.6]], [[0.4, 0.6], [0.8, 0.2]]])[None, None]
    sigma = torch.tensor([[0, 1], [1, 0]])[None, None]
    s = transition_stats(A, sigma)
    assert s["tau"].item() == pytest.approx(0.36) and s["tau_o"].item() == pytest.approx(0.56)
    assert not s["condition1"].item()
    torch.testing.assert_close(s["B"][0, 0], torch.tensor([[0.56, 0.44], [0.64, 0.36]]))


@pytest.mark.parametrize("p,rho", [(0.7, 0.6), (0.6, 0.5), (0.9, 0.6)])
def test_transition_family_hits_its_parameters_and_the_condition1_knob(p, rho):
    rng = rng_for(CFGS, dev)
    sigma = random_tasks(rng, 10, 3, 64, "s")
    P, R = torch.full((2,), p), torch.full((2,), rho)
    for wrong in ("scatter", "converge"):
        A = transition_matrices(sigma, P, R, wrong, rng, "s")
        torch.testing.assert_close(A.sum(-1), torch.ones_like(A[..., 0]))
        assert torch.equal(A.argmax(-1), sigma)
        s = transition_stats(A, sigma)
        torch.testing.assert_close(s["tau"], torch.full_like(s["tau"], p**3))
        q = min(p * (1 - rho), 1 - p)
        torch.testing.assert_close(s["rho"], torch.full_like(s["rho"], (p - q) / p))
        fails = wrong == "converge" and 3 * q > p
        assert bool(s["condition1"].all()) == (not fails) and bool(s["condition1"].any()) == (not fails)


def test_context_steps_are_drawn_from_the_transition_matrices():
    cfgs = [CoTConfig(seed=s, noise=0.0) for s in range(2)]
    r = eval_reasoning(cfgs, rng_for(cfgs, dev), 200, 30, "e")
    succ = torch.gather(r.A.argmax(-1)[:, :, None].expand(-1, -1, 30, -1, -1), -1,
                        r.ids[..., :-1, None])[..., 0]  # correct successor of each step's input
    frac = (r.ids[..., 1:] == succ).float().mean()
    assert abs(frac - 0.7) < 0.02  # p_correct
    sigma = r.A.argmax(-1)  # [E, B, K, M]
    for k in range(3):  # the query follows the correct (argmax) path
        assert torch.equal(r.query_ids[..., k + 1], torch.gather(sigma[:, :, k], 2, r.query_ids[..., k : k + 1])[..., 0])
    same = (r.ids[:, :, :, 0] == r.query_ids[:, :, None, 0]).float().sum(-1)
    assert (same == 24).all()  # round(alpha' l)


def test_test_tokens_carry_bounded_noise_off_the_positional_coordinates():
    cfgs = [CoTConfig(seed=s, noise=0.2) for s in range(2)]
    r = eval_reasoning(cfgs, rng_for(cfgs, dev), 16, 5, "e")
    noise = r.tokens - r.patterns[torch.arange(2)[:, None, None, None], r.ids]
    torch.testing.assert_close(noise.norm(dim=-1), torch.full(noise.shape[:-1], 0.2))
    assert noise[..., 10:13].abs().max() == 0


def test_icl_prompt_layout():
    r = eval_reasoning(CFGS, rng_for(CFGS, dev), 4, 6, "e")
    pr = icl_prompts(r)
    pos = positions(CFGS, dev)
    assert pr.C.shape == (2, 4, 6 * 3 + 2, 64) and not pr.mask[..., 18:].any()
    torch.testing.assert_close(pr.C[:, :, 3], torch.cat([r.tokens[:, :, 1, 0] + pos[0], r.tokens[:, :, 1, 3]], -1))
    torch.testing.assert_close(pr.C[:, :, 4], torch.cat([pos[1], torch.zeros(32)]).expand(2, 4, 64))
    assert torch.equal(pr.target, r.query_ids[:, :, 3])


def test_bad_configs_are_named():
    with pytest.raises(ConfigError, match="d_X"):
        make_config(CoTConfig, {"d_X": 12})
    with pytest.raises(ConfigError, match="rho"):
        make_config(CoTConfig, {"p_correct": 0.3, "rho": 0.9})
