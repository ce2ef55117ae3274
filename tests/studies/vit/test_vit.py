"""The shallow-ViT study: data statistics, the forward against eq. (1) per example, sparsification masks, ensemble
invariance of the N sweep, bad input, and claims at a tiny config."""
import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError
from theorylab.core.ensemble import rng_for
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.vit.config import TINY, ViTConfig
from theorylab.studies.vit.data import CONFUSION, IRRELEVANT, RELEVANT, SPURIOUS, digits, synthetic
from theorylab.studies.vit.model import forward, forward_reference, init_params, keep_mask

dev = torch.device("cpu")
train_group = get_study("vit").train_group


def test_synthetic_tokens_follow_the_data_model():
    cfgs = [ViTConfig(alpha_star=a, seed=s, alpha_sp=0.1, noisy_frac=0.2, tau=0.3, tau_big=2.0, L=40)
            for a, s in ((0.2, 0), (0.3, 1))]
    b = synthetic(cfgs, rng_for(cfgs, dev), 400, "t")
    for e, c in enumerate(cfgs):
        n_star, n_conf, n_sp = c.counts()
        assert ((b.role[e] == RELEVANT).sum(-1) == n_star).all() and ((b.role[e] == CONFUSION).sum(-1) == n_conf).all()
        assert ((b.role[e] == SPURIOUS).sum(-1) == n_sp).all() and (b.noisy[e].sum(-1) == 8).all()
    clean = torch.nn.functional.one_hot(b.X.argmax(-1), b.X.shape[-1]).float()  # tau < 1/2: nearest pattern
    z = (b.X - clean).norm(dim=-1)
    assert (z[~b.noisy] <= 0.3 + 1e-5).all() and (z[b.noisy] <= 2.0 + 1e-5).all() and z[b.noisy].mean() > 0.5
    # majority vote: mu_1 = e_1 tokens outnumber mu_2 tokens exactly when y = +1 (noise-free roles)
    mu1 = ((b.role == RELEVANT) & (b.y[..., None] > 0)) | ((b.role == CONFUSION) & (b.y[..., None] < 0))
    mu2 = ((b.role == RELEVANT) & (b.y[..., None] < 0)) | ((b.role == CONFUSION) & (b.y[..., None] > 0))
    assert torch.equal(mu1.sum(-1) > mu2.sum(-1), b.y > 0)
    # spurious tokens: nu_1 (e_3) with y = +1 with probability p_sp = 0.9 in training, 0.5 at test
    sp = b.role == SPURIOUS
    agree = ((b.X.argmax(-1) == 2) == (b.y[..., None] > 0))[sp & ~b.noisy].float().mean()
    assert 0.85 < agree < 0.95
    t = synthetic(cfgs, rng_for(cfgs, dev), 400, "t", test=True)
    agree_t = ((t.X.argmax(-1) == 2) == (t.y[..., None] > 0))[(t.role == SPURIOUS) & ~t.noisy].float().mean()
    assert 0.4 < agree_t < 0.6
    assert set(b.X.argmax(-1)[(b.role == IRRELEVANT) & ~b.noisy].unique().tolist()) <= set(range(4, 10))


def test_digit_tokens_carry_pasted_markers():
    cfgs = [ViTConfig(data="digits", n_paste=3, p_sp=1.0)]
    b = digits(cfgs, rng_for(cfgs, dev), torch.arange(50)[None], "train", "t")
    assert b.X.shape == (1, 50, 16, 20) and ((b.role == SPURIOUS).sum(-1) == 3).all()
    assert torch.equal(b.X[..., 4:], torch.eye(16).expand(1, 50, 16, 16))  # one-hot positions
    marker = b.X[..., :4][b.role == SPURIOUS].view(1, 50, 3, 4)[:, :, 0]
    assert torch.equal(marker[..., 0] == 1, b.y > 0)  # p_sp = 1: the marker names the label


def _random_params(cfgs):
    rng = rng_for(cfgs, dev)
    p = init_params(cfgs, rng, dev)
    return {k: v + 0.3 * rng.normal(tuple(v.shape[1:]), "perturb", k) if k != "a" else v for k, v in p.items()}


@pytest.mark.parametrize("how", ["none", "irrelevant", "random", "attention"])
def test_forward_equals_eq1_per_example(how):
    cfgs = [ViTConfig(seed=s, m=6, L=10, sparsify=how, drop_frac=0.3) for s in range(2)]
    p, rng = _random_params(cfgs), rng_for(cfgs, dev)
    b = synthetic(cfgs, rng, 3, "f")
    keep = keep_mask(p, b, cfgs, rng, "f")
    F = forward(p, b.X, keep)
    assert torch.allclose(F, forward_reference(p, b.X, keep), atol=1e-5) and F.abs().max() > 1e-4
    if how != "none":
        assert (keep.sum(-1) == 7).all()


def test_oracles_drop_the_right_tokens():
    cfgs = [ViTConfig(L=20, noisy_frac=0.2, alpha_sp=0.1, sparsify=how, drop_frac=0.1) for how in ("noisy",)]
    rng = rng_for(cfgs, dev)
    b = synthetic(cfgs, rng, 50, "o")
    keep = keep_mask(init_params(cfgs, rng, dev), b, cfgs, rng, "o")
    assert not (keep & b.noisy).all(-1).any() and (b.noisy & ~keep).sum() == 50 * 2
    c = [cfgs[0].replace(sparsify="spurious")]
    assert torch.equal(~keep_mask(None, b, c, rng, "o"), b.role == SPURIOUS)
    c = [cfgs[0].replace(sparsify="irrelevant", drop_frac=0.5)]
    assert ((b.role[~keep_mask(None, b, c, rng, "o")]) == IRRELEVANT).all()


def test_the_random_control_always_keeps_a_relevant_token():
    """Dropping half the tokens at random would remove every relevant token of ~5% of the examples (C(20,4)/C(40,4)
    at alpha_* = 0.1, L = 40), making zero test error impossible for the control; it keeps one relevant token."""
    cfgs = [ViTConfig(L=40, alpha_star=0.1, sparsify="random", drop_frac=0.5)]
    rng = rng_for(cfgs, dev)
    b = synthetic(cfgs, rng, 2000, "r")
    keep = keep_mask(None, b, cfgs, rng, "r")
    rel_kept = (keep & (b.role == RELEVANT)).sum(-1)
    assert (rel_kept >= 1).all() and (keep.sum(-1) == 20).all()
    assert (rel_kept < 4).float().mean() > 0.5  # otherwise random: most examples lose some relevant tokens


def test_theorem_claims_are_not_applicable_past_the_small_noise_hypothesis():
    s = get_study("vit")
    ctx = ClaimContext(s, "quick", 2, dev, overrides={**s.tiny, "tau": 1.0})
    for r in run_claims(ctx, ["thm1_samples", "thm_sparsify_irrelevant"]):
        assert r.verdict == "inconclusive" and "small noise" in r.not_applicable, r.claim.id


def test_a_cell_of_the_N_sweep_trains_the_same_in_an_ensemble_as_alone():
    base = ViTConfig(**{**TINY, "n_train": 0})
    cfgs = [base.replace(n_train=N, alpha_star=a) for N, a in ((4, 0.2), (16, 0.3), (8, 0.25))]
    big, alone = train_group(cfgs, dev, QUIET), train_group([cfgs[0]], dev, QUIET)
    for k, v in alone.params.items():
        assert torch.allclose(big.params[k][0], v[0], atol=1e-5), k
    assert big.metrics[0]["test_error"] == pytest.approx(alone.metrics[0]["test_error"], abs=1e-6)


@pytest.mark.parametrize("bad, field", [({"d": 5}, "d"), ({"conf_ratio": 0.9, "alpha_star": 0.1}, "conf_ratio"),
                                        ({"alpha_star": 0.001}, "alpha_star"), ({"sparsify": "bogus"}, "sparsify"),
                                        ({"data": "digits", "digit_neg": 3}, "digit_neg")])
def test_bad_input_names_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        get_study("vit").config("quick", **bad)


def test_claims_at_tiny_size_say_something_sensible():
    s = get_study("vit")
    ctx = ClaimContext(s, "quick", 2, dev, overrides={**s.tiny, "steps": 1})
    res = {r.claim.id: r for r in run_claims(ctx, ["prop2_attention", "thm1_samples"])}
    assert res["prop2_attention"].verdict == "fails"  # one step concentrates nothing
    assert res["thm1_samples"].verdict != "holds"
    ctx = ClaimContext(s, "quick", 2, dev, overrides={**s.tiny, "conf_ratio": 0.6})
    (r,) = run_claims(ctx, ["thm1_samples"])
    assert r.verdict == "inconclusive" and "alpha_#" in r.not_applicable  # Thm 1's hypothesis fails: no assertion


@pytest.mark.slow
def test_claims_quick_verdicts():
    """The verdicts measured at quick size, 5 seeds, tau = 0.5 (study note, /work/results/after/vit.json)."""
    res = {r.claim.id: r for r in run_claims(ClaimContext(get_study("vit"), "quick", 5, dev))}
    assert {k: r.verdict for k, r in res.items()} == {
        "thm1_samples": "inconclusive", "thm1_iterations": "inconclusive", "prop2_attention": "fails",
        "thm_sparsify_irrelevant": "inconclusive", "thm_sparsify_noisy": "inconclusive", "fig_spurious": "agrees",
        "fig_spurious_digits": "agrees"}
    assert res["thm_sparsify_noisy"].control_discriminates
    assert not res["thm_sparsify_irrelevant"].control_discriminates  # random drop with a relevant token kept passes
