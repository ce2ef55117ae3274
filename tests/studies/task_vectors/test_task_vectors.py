"""Task-vector study: data statistics, eq. (7) against a per-example implementation, ensemble == alone,
early config errors, and the claims' verdicts at quick size."""
import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError, make_config
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.task_vectors.config import TaskVectorConfig
from theorylab.studies.task_vectors.data import ood_gammas, rng_for, sample, task_pattern
from theorylab.studies.task_vectors.model import forward, forward_reference, init_params
from theorylab.studies.task_vectors.train import train_group


def cfgs(**kw):
    return [TaskVectorConfig(seed=s, **kw) for s in range(3)]


@pytest.mark.parametrize("alpha", [-0.6, 0.0, 0.35, 0.6])
def test_exact_alpha_and_labels(alpha):
    cs = cfgs(alpha=alpha, noise=0.0)
    mu1, mu2 = task_pattern(cs, "T1", "cpu"), task_pattern(cs, "T2", "cpu")
    assert torch.allclose((mu1 * mu2).sum(-1), torch.full((3,), alpha), atol=1e-6)
    assert torch.allclose(mu2.norm(dim=-1), torch.ones(3), atol=1e-6)
    b = sample(cs, mu2, rng_for(cs, "cpu"), 4000, "t")
    assert abs(float(b.y.mean())) < 0.05  # balanced labels
    n_pos, n_neg = (b.kind == 1).sum(-1), (b.kind == -1).sum(-1)
    assert bool((n_pos > n_neg).all()) and bool((n_pos >= 2).all()) and bool((n_pos <= 3).all())
    proj = b.X @ mu2[:, None, :, None]  # [E, B, P, 1]: +-1 on mu tokens, 0 on irrelevant ones
    counts = (proj[..., 0] > 0.5).sum(-1) - (proj[..., 0] < -0.5).sum(-1)
    assert torch.equal(torch.sign(counts).float(), b.y)  # y = +1 iff mu tokens outnumber -mu tokens


def test_ood_pattern_gammas():
    cs = cfgs(gamma1=0.6, gamma2=0.6, kappa=0.53)
    g = ood_gammas(cs, "cpu")
    assert torch.allclose(g.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.allclose(g[0], torch.tensor([0.6, 0.6, 0.53]) / (0.6**2 * 2 + 0.53**2) ** 0.5, atol=1e-6)


def test_model_matches_per_example_eq7():
    cs = cfgs(noise=0.05, w_init=0.5, v_init=0.5)
    rng = rng_for(cs, "cpu")
    p = {k: v.double() for k, v in init_params(cs, rng, "cpu").items()}
    b = sample(cs, task_pattern(cs, "T2", "cpu"), rng, 6, "ref")
    X = b.X.double()
    assert torch.allclose(forward(p, X), forward_reference(p, X), atol=1e-5)
    grid = {k: torch.stack([v, 2 * v]) for k, v in p.items()}  # a leading lambda axis broadcasts
    assert torch.allclose(forward(grid, X)[1], forward({k: 2 * v for k, v in p.items()}, X), atol=1e-5)


def test_ensemble_equals_alone():
    cs = [TaskVectorConfig(seed=s, alpha=a, steps=5) for s, a in ((0, 0.0), (1, 0.6), (2, -0.6))]
    together = train_group(cs, torch.device("cpu"), QUIET).params
    alone = train_group(cs[1:2], torch.device("cpu"), QUIET).params
    for k in together:
        assert torch.allclose(together[k][1], alone[k][0], atol=1e-6), k


@pytest.mark.parametrize("field,value", [("alpha", 1.0), ("n_hash_max", 2), ("m", 31), ("P", 3), ("lr", -1.0)])
def test_bad_config_names_field(field, value):
    with pytest.raises(ConfigError, match=field):
        make_config(TaskVectorConfig, {field: value})


def test_claims_quick_verdicts():
    ctx = ClaimContext(get_study("task_vectors"), "quick", 5, torch.device("cpu"))
    res = {r.claim.id: r for r in run_claims(ctx)}
    assert all(r.outcome is not None for r in res.values()), {k: r.error for k, r in res.items()}
    verdicts = {k: r.passed for k, r in res.items()}
    # measured at quick size (see the closing note): the sufficient conditions of Thms 4-6 hold; the
    # "below the line T2 fails" part of Thm 4 misses its 0.25 bar (0.23); rank-1 and row pruning change outcomes.
    assert verdicts == {"thm4_multitask": False, "thm5_unlearning": True, "thm6_ood": True,
                        "cor1_low_rank": False, "cor2_sparse": False}
    n4 = res["thm4_multitask"].outcome.numbers["by_alpha"]
    assert n4["0.0"]["above_ok"] and n4["0.6"]["above_ok"]
    n6 = res["thm6_ood"].outcome.numbers
    assert n6["precision"] >= 0.9 and "LwPTV" in next(iter(n6["tables"]))
