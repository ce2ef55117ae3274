"""Group-imbalance study: the teacher, exact group counts and group statistics, labels from the teacher, the
network against a per-sample reference, the digits splits with a noisy minority, config errors, and every claim
running at the tiny config."""
import pytest
import torch

from theorylab.core.config import ConfigError
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.group_imbalance.config import GroupImbalanceConfig
from theorylab.studies.group_imbalance.data import digits_splits, gmm_test, gmm_train, teacher
from theorylab.studies.group_imbalance.model import cross_entropy, forward, forward_reference, init_params

CPU = torch.device("cpu")


def cfgs(**kw):
    return [GroupImbalanceConfig(seed=s, **kw) for s in range(3)]


def test_teacher_norm_and_local_init():
    cs = cfgs(K=3, teacher_scale=2.0)
    W = teacher(cs, CPU)
    assert W.shape == (3, 5, 3) and torch.allclose(W.flatten(1).norm(dim=-1), torch.full((3,), 2.0))
    W0 = init_params(cs, W, CPU)["W"]
    assert torch.allclose((W0 - W).flatten(1).norm(dim=-1) / 2.0, torch.full((3,), 0.1), atol=1e-6)


def test_default_is_the_papers_k3_with_a_unit_norm_teacher():
    cfg = get_study("group_imbalance").config("quick")
    assert cfg.K == 3
    W = teacher([cfg.replace(seed=s) for s in range(4)], CPU)
    assert W.shape == (4, 5, 3)
    torch.testing.assert_close(W.flatten(1).norm(dim=-1), torch.ones(4))
    assert float((W[:, :, 0] - W[:, :, 1]).abs().min()) > 0  # K distinct neurons, not one copied


def test_k3_cross_entropy_gradient_matches_the_formula_and_finite_differences():
    """dL/dw_j = -(1/n) sum_i (y_i - H_i) / (H_i (1 - H_i)) (1/K) sigmoid'(w_j^T x_i) x_i for H = mean_j sigmoid,
    checked against autograd (what GD uses) and a central difference, in float64."""
    g = torch.Generator().manual_seed(4)
    E, n, D, K = 2, 40, 5, 3
    W = (0.7 * torch.randn(E, D, K, generator=g, dtype=torch.float64)).requires_grad_(True)
    X = torch.randn(E, n, D, generator=g, dtype=torch.float64)
    y = (torch.rand(E, n, generator=g, dtype=torch.float64) < 0.5).double()
    auto, = torch.autograd.grad(cross_entropy(forward({"W": W}, X), y).sum(), W)
    with torch.no_grad():
        S = torch.sigmoid(X @ W)  # [E, n, K]
        H = S.mean(-1)
        r = (y - H) / (H * (1 - H))  # [E, n]
        formula = -torch.einsum("en,enk,end->edk", r, S * (1 - S) / K, X) / n
    torch.testing.assert_close(auto, formula, rtol=1e-10, atol=1e-12)
    h = 1e-6
    for idx in ((0, 0, 0), (1, 3, 2), (0, 4, 1)):
        Wp, Wm = W.detach().clone(), W.detach().clone()
        Wp[idx] += h
        Wm[idx] -= h
        loss = lambda A: cross_entropy(forward({"W": A}, X), y)[idx[0]]  # noqa: E731
        fd = (loss(Wp) - loss(Wm)) / (2 * h)
        assert abs(float(fd) - float(auto[idx])) < 1e-7


@pytest.mark.parametrize("K", [1, 3])
def test_k_is_honoured_end_to_end_at_tiny_size(K):
    """--set K reaches the teacher, the learner and the stored cells of every claim's sweep."""
    from theorylab.core.claims import ClaimContext, run_claims

    s = get_study("group_imbalance")
    ctx = ClaimContext(s, "quick", 1, CPU, overrides={**s.tiny, "K": K})
    res = run_claims(ctx, only=["fig_covariance", "fig_minority"])
    assert all(r.error is None for r in res)
    groups = [v for k, v in ctx.cache.items() if k.startswith("trained:")]
    assert groups
    for params, cells in groups:
        assert params["W"].shape[-1] == K and params["W_star"].shape[-1] == K
        assert all(c.config["K"] == K for c in cells)
        torch.testing.assert_close(params["W_star"].flatten(1).norm(dim=-1), torch.ones(len(cells)))
        assert all(0 <= c.metrics["grad_ratio"] < float("inf") for c in cells)


def test_groups_counts_statistics_and_labels():
    cs = [GroupImbalanceConfig(seed=0, lam2=l, N=4000, mu1=1.0, mu2=-2.0, sigma1=0.5, sigma2=3.0) for l in (0.1, 0.3)]
    W = teacher(cs, CPU)
    tr = gmm_train(cs, W, CPU)
    assert tr.g.sum(-1).tolist() == [400, 1200]
    x1, x2 = tr.X[1][tr.g[1] == 0], tr.X[1][tr.g[1] == 1]
    assert torch.allclose(x1.mean(0), torch.ones(5), atol=0.05) and torch.allclose(x2.mean(0), -2 * torch.ones(5), atol=0.25)
    assert abs(float(x1.std(0).mean()) - 0.5) < 0.02 and abs(float(x2.std(0).mean()) - 3.0) < 0.1
    te = gmm_test(cs, W, CPU)
    assert abs(float(te.y.mean() - te.p.mean())) < 0.02  # y ~ Bernoulli(H(W*, x))


def test_network_matches_per_sample_formula():
    p = {"W": torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(1))}
    X = torch.randn(3, 7, 5)
    assert torch.allclose(forward(p, X), forward_reference(p, X), atol=1e-6)


def test_digits_minority_is_noisier():
    cs = [GroupImbalanceConfig(seed=0, dataset="digits", d=8, N=300, lam2=0.4, noise2=2.0, n_test=200)]
    tr, te = digits_splits(cs, CPU)
    assert tr.X.shape == (1, 300, 9) and int(tr.g.sum()) == 120 and te.X.shape == (1, 400, 9)
    assert bool((tr.X[..., -1] == 1).all())
    v_maj, v_min = tr.X[0][tr.g[0] == 0, :-1].var(0).mean(), tr.X[0][tr.g[0] == 1, :-1].var(0).mean()
    assert float(v_min) > float(v_maj) + 2.0


@pytest.mark.parametrize("bad,field", [({"sigma_grid": (1.0, 0.1, 3.0)}, "sigma_grid"), ({"lam2": 1.5}, "lam2"),
                                       ({"sigma1": 0}, "sigma1")])
def test_bad_config_names_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        get_study("group_imbalance").config("quick", **bad)


def test_gd_lowers_the_training_loss():
    res = get_study("group_imbalance").train_group(cfgs(N=200, steps=50, n_test=100), CPU, QUIET)
    for c in res.curves:
        assert c["loss"][-1] < c["loss"][0]
    assert res.status == ["done"] * 3


def test_every_claim_runs_at_the_tiny_config(claims_at):
    res = claims_at("group_imbalance")
    for name in ("fig_covariance", "fig_means", "fig_minority"):
        c = res[name].outcome.control
        assert c is not None and len(c.values) == 2
        assert c.values != res[name].outcome.values  # measured on its own arm, not a copy or a literal


def test_cells_of_one_seed_share_teacher_init_and_draws_across_swept_fields():
    """Common random numbers: lam2, sigma, mu and N cells of one seed have one teacher W*, one initialisation and
    the same standard-normal draws (x = mu + sigma z), so a sweep compares the swept quantity only."""
    base = GroupImbalanceConfig(seed=3, N=200)
    moved = [base.replace(lam2=0.1), base.replace(sigma1=5.0, mu1=2.0), base.replace(N=400)]
    W = teacher([base], CPU)
    for c in moved:
        assert c.world_hash == base.world_hash and c.hash != base.hash
        torch.testing.assert_close(teacher([c], CPU), W)
        torch.testing.assert_close(init_params([c], teacher([c], CPU), CPU)["W"], init_params([base], W, CPU)["W"])
    a, b = gmm_train([base], W, CPU), gmm_train([moved[1]], W, CPU)
    maj = base.N - round(base.lam2 * base.N)
    z_a = (a.X[0, -maj:] - base.mu1) / base.sigma1  # the majority rows: group 1 in both configs
    z_b = (b.X[0, -maj:] - 2.0) / 5.0
    torch.testing.assert_close(z_a, z_b, atol=1e-5, rtol=1e-5)
    bigger = gmm_train([moved[2]], W, CPU)
    assert torch.equal(bigger.X[0, :100], gmm_train([base], W, CPU).X[0, :100])  # N is prefix-consistent


def test_shuffled_labels_keep_inputs_and_label_counts():
    base = GroupImbalanceConfig(seed=1, N=300)
    W = teacher([base], CPU)
    a, b = gmm_train([base], W, CPU), gmm_train([base.replace(labels="shuffled")], W, CPU)
    assert torch.equal(a.X, b.X) and a.y.sum() == b.y.sum() and not torch.equal(a.y, b.y)


@pytest.mark.slow
@pytest.mark.parametrize("K,verdicts", [
    (3, {"fig_covariance": "differs", "fig_means": "inconclusive", "fig_minority": "differs",
         "fig_digits": "inconclusive"}),
    (1, {"fig_covariance": "inconclusive", "fig_means": "agrees", "fig_minority": "differs",
         "fig_digits": "inconclusive"})])
def test_claims_quick_verdicts(K, verdicts):
    """Measured at quick size, 5 seeds, with the curvature step rule (docs page, issue 23). K = 3 (the default): the
    error falls with sigma1 over the whole grid (no interior minimum) and the large-variance minority's excess falls
    with its fraction. K = 1: the sigma1 = 25 error drops to the sigma1 = 5 level once GD converges there (no right
    arm: inconclusive), the means comparison agrees with its shuffled control at 1/5, and the minority's excess
    falls with its fraction on every seed (before, the rise came from lr 0.5 above 2 / lambda_max)."""
    from theorylab.core.claims import ClaimContext, run_claims

    ctx = ClaimContext(get_study("group_imbalance"), "quick", 5, CPU, overrides={"K": K})
    res = {r.claim.id: r for r in run_claims(ctx)}
    assert {k: r.verdict for k, r in res.items()} == verdicts
    assert not any(res["fig_minority"].outcome.control.per_seed)


def test_minority_control_says_when_it_is_the_main_arm(monkeypatch):
    """At K = 3 the covariance sweep's best sigma1 can be sigma2_out itself; the control must say it is no contrast."""
    from theorylab.core.claims import ClaimContext, run_claims
    from theorylab.studies.group_imbalance import claims

    s = get_study("group_imbalance")
    monkeypatch.setattr(claims, "_medium_sigma", lambda ctx: ctx.configs()[0].sigma2_out)
    ctx = ClaimContext(s, "quick", 1, CPU, overrides=dict(s.tiny))
    res, = run_claims(ctx, only=["fig_minority"])
    assert res.error is None
    assert "this control is the main arm" in res.outcome.control.summary
    assert "main arm" not in res.outcome.summary.split("control")[0]


# ---- the step-size rule (issue 23) ----


def _explicit_hessian_top(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[E] the largest |eigenvalue| (and, beside it, the largest eigenvalue) of the training loss's Hessian, built
    entry by entry by autograd.functional.hessian one model at a time, in float64."""
    tops = []
    for e in range(W.shape[0]):
        f = lambda v: cross_entropy(forward({"W": v.reshape(1, *W.shape[1:])}, X[e:e + 1].double()),  # noqa: E731
                                    y[e:e + 1].double())[0]
        ev = torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, W[e].double().flatten()))
        tops.append((ev.abs().max(), ev.max()))
    return torch.tensor(tops, dtype=torch.float64)


def test_top_curvature_matches_an_explicit_hessian_in_float64():
    from theorylab.studies.group_imbalance.model import top_curvature

    g = torch.Generator().manual_seed(7)
    E, n, D, K = 3, 60, 4, 2
    X = 2.0 * torch.randn(E, n, D, generator=g, dtype=torch.float64)
    W = torch.randn(E, D, K, generator=g, dtype=torch.float64)
    y = (torch.rand(E, n, generator=g, dtype=torch.float64) < torch.sigmoid(X @ W).mean(-1)).double()
    exact = _explicit_hessian_top(W, X, y)
    torch.testing.assert_close(top_curvature(W, X, y, iters=200), exact[:, 0], rtol=1e-8, atol=0)
    assert bool((exact[:, 0] >= exact[:, 1]).all())  # the |eigenvalue| bounds the largest eigenvalue


@pytest.mark.parametrize("K,lr", [(1, 0.5), (3, 0.5), (1, 100.0)])
def test_curvature_rule_steps_at_most_one_over_the_hessians_top_eigenvalue(K, lr):
    """lr_used = min(lr, 1 / curvature0) and curvature0 is the top |eigenvalue| of an explicit Hessian at W0, so
    lr_used <= 1 / lambda_max; a low-curvature cell keeps the cap lr, a sigma = 25 cell gets a smaller step."""
    from theorylab.studies.group_imbalance.train import training

    cs = [GroupImbalanceConfig(seed=s, K=K, lr=lr, N=300, sigma1=sg, steps=5, n_test=50, curve_points=2)
          for s in (0, 1) for sg in (0.2, 25.0)]
    W_star = teacher(cs, CPU)
    tr_set = gmm_train(cs, W_star, CPU)
    exact = _explicit_hessian_top(init_params(cs, W_star, CPU)["W"], tr_set.X, tr_set.y)[:, 0]
    res = get_study("group_imbalance").train_group(cs, CPU, QUIET)
    lr_used = torch.tensor([m["lr_used"] for m in res.metrics], dtype=torch.float64)
    curv0 = torch.tensor([m["curvature0"] for m in res.metrics], dtype=torch.float64)
    torch.testing.assert_close(curv0, exact, rtol=1e-4, atol=0)
    assert bool((lr_used * exact <= 1 + 1e-4).all())
    torch.testing.assert_close(lr_used, torch.minimum(torch.full_like(curv0, lr), 1 / curv0), rtol=1e-6, atol=0)
    torch.testing.assert_close(training(cs, None, CPU).lr.double(), lr_used, rtol=1e-6, atol=0)  # what GD used
    big = torch.tensor([c.sigma1 == 25.0 for c in cs])
    assert bool((lr_used[big] < lr).all())
    if lr == 0.5:
        assert bool((lr_used[~big] == lr).all())
        if K == 1:
            assert bool((exact[big] > 2 / lr).all())  # the cells the rule exists for: 0.5 is past 2 / lambda_max


def test_fixed_rule_is_the_old_gd_on_the_old_world():
    """lr_rule = fixed: the world hash is the one computed without the field (a swept field: same teacher, init
    and samples as before issue 23 and as the curvature rule), and training is plain GD with the one lr,
    reproduced by a hand-written loop (to float32 rounding)."""
    import hashlib
    import json

    from theorylab.studies.group_imbalance.train import training

    cs = [GroupImbalanceConfig(seed=s, K=3, N=120, sigma1=sg, steps=15, n_test=50, curve_points=3, lr_rule="fixed")
          for s in (0, 1) for sg in (1.0, 25.0)]
    for c in cs:
        kept = {k: v for k, v in c.model_dump(mode="json").items() if k not in c.swept_fields and k != "lr_rule"}
        before = hashlib.sha256(json.dumps({"study": c.study, "world": kept}, sort_keys=True,
                                           separators=(",", ":")).encode()).hexdigest()
        assert c.world_hash == before == c.replace(lr_rule="curvature").world_hash
    res = get_study("group_imbalance").train_group(cs, CPU, QUIET)
    W_star = teacher(cs, CPU)
    tr_set = gmm_train(cs, W_star, CPU)
    W = init_params(cs, W_star, CPU)["W"]
    for _ in range(cs[0].steps):
        W = W.detach().requires_grad_(True)
        g, = torch.autograd.grad(cross_entropy(forward({"W": W}, tr_set.X), tr_set.y).sum(), W)
        W = W.detach() - 0.5 * g
    # the study trains through model.TrainLoss, the same loss in another layout (rounding differs: test_gi_speed_path)
    torch.testing.assert_close(res.params["W"], W, rtol=1e-5, atol=1e-7)
    assert [m["lr_used"] for m in res.metrics] == [0.5] * 4
    assert not torch.equal(training([c.replace(lr_rule="curvature") for c in cs], None, CPU).lr,
                           training(cs, None, CPU).lr)  # the rule does move a sigma = 25 cell's step


def test_curvature_rule_makes_the_sigma25_loss_monotone_where_lr_05_cycles():
    """K = 1, sigma1 = 25 (the cell where lr 0.5 > 2 / lambda_max): with lr_rule = fixed the training loss, recorded
    at every step, rises on many steps and ends above its start; with the curvature rule it never rises."""
    base = GroupImbalanceConfig(seed=0, K=1, N=400, sigma1=25.0, steps=60, n_test=50, curve_points=60)
    rises = {}
    for rule in ("fixed", "curvature"):
        res = get_study("group_imbalance").train_group([base.replace(lr_rule=rule, seed=s) for s in (0, 1)], CPU,
                                                       QUIET)
        for e, c in enumerate(res.curves):
            L = torch.tensor(c["loss"], dtype=torch.float64)
            assert len(L) == base.steps + 1
            rises[rule, e] = (int((L[1:] > L[:-1] * (1 + 1e-6)).sum()), float(L[-1] / L[0]))
    for e in (0, 1):
        assert rises["fixed", e][0] >= 10 and rises["fixed", e][1] > 1
        assert rises["curvature", e][0] == 0 and rises["curvature", e][1] < 1
