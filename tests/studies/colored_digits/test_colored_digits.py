"""Colored-digits study: data statistics, the ViT ensemble against models trained alone and against a
torch.nn reference, the frozen head, the lambda = 0 merge, config validation, and every claim per seed at the
tiny config, at a non-default config and with a diverged seed (quick size behind -m slow)."""
import math

import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError, make_config
from theorylab.core.ensemble import rng_for
from theorylab.shared.task_arithmetic import evaluate_grid
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.colored_digits.config import TINY, ColoredDigitsConfig
from theorylab.shared.colored_digits import digits, task_data
from theorylab.studies.colored_digits.evaluate import experiment, regress_gammas
from theorylab.studies.colored_digits.model import body_keys, init_params, logits
from theorylab.studies.colored_digits.train import task_key

CPU = torch.device("cpu")
CLAIM_IDS = {"alpha_hat_order", "multitask_lambda", "unlearning", "fig24_ood", "thm6_region", "lwptv_ood"}


def cfgs(n=3, **kw):
    return [ColoredDigitsConfig(seed=s, **kw) for s in range(n)]


def test_split_fixed_and_disjoint():
    d = digits(4)
    (xtr, ytr), (xte, yte) = d["train"], d["test"]
    assert (len(ytr), len(yte)) == (1347, 450)
    assert float(xtr.max()) <= 1.0 and float(xtr.min()) >= 0.0
    # no test image appears in the training set (rows compared exactly)
    tr = {tuple(r.tolist()) for r in xtr.flatten(1)}
    assert sum(tuple(r.tolist()) in tr for r in xte.flatten(1)) <= 2  # load_digits has a couple of exact duplicates
    assert abs(float((ytr % 2 == 1).float().mean()) - 0.5) < 0.03 and abs(float((yte % 2 == 1).float().mean()) - 0.5) < 0.03


@pytest.mark.parametrize("p", [0.95, 0.5, 0.9, 0.05, 0.45])
def test_colour_agreement_matches_p(p):
    cs = cfgs(5)
    td = task_data(cs, "train", p, CPU)  # 5 x 1347 draws
    agree = (td.red == (td.y > 0)).float().mean()
    assert abs(float(agree) - p) < 4 * math.sqrt(p * (1 - p) / td.red.numel()) + 1e-3
    # the image sits in the channel of its colour (red = channel 0)
    mass = td.X.clamp_min(0).sum((-1, -2))  # [E, N, 2] (noise is zero-mean; digit mass dominates)
    assert bool(((mass[..., 0] > mass[..., 1]) == td.red).float().mean() > 0.99)
    # reproducible: same configs -> same colours; another seed -> other colours
    assert torch.equal(task_data(cs, "train", p, CPU).red, td.red)
    if 0 < p < 1:
        assert not torch.equal(td.red[0], td.red[1])


def test_leading_grid_axis_broadcasts():
    cs = cfgs(2)
    p = init_params(cs, rng_for(cs, CPU), CPU)
    X = task_data(cs, "test", 0.9, CPU).X[:, :7]
    body = {k: p[k] for k in body_keys(p)}
    grid = {k: torch.stack([v, 0.5 * v]) for k, v in body.items()}  # [2, E, ...]
    out = logits(grid, p["head.w"], X, 2, 2)
    assert out.shape == (2, 2, 7, 2)
    assert torch.allclose(out[1], logits({k: 0.5 * v for k, v in body.items()}, p["head.w"], X, 2, 2), atol=1e-5)


def test_ensemble_equals_alone_and_head_frozen():
    cs = cfgs(3, **TINY)
    together = get_study("colored_digits").train_group(cs, CPU, QUIET).params
    alone = get_study("colored_digits").train_group(cs[1:2], CPU, QUIET).params
    assert set(together) == set(alone)
    for k in together:
        assert torch.allclose(together[k][1], alone[k][0], atol=1e-5), k
    # the head is drawn once from head_seed: identical across seeds, equal to its init, never fine-tuned
    head = together["psi0/head.w"]
    assert torch.equal(head[0], head[2])
    assert torch.equal(head, init_params(cs, rng_for(cs, CPU), CPU)["head.w"])
    assert not any(k.startswith("ft/") and "head" in k for k in together)
    # fine-tuning did move the body
    p = cs[0].p_T1
    assert not torch.equal(together[task_key(p) + "blocks.0.attn.qkv.w"], together["psi0/blocks.0.attn.qkv.w"])


def test_lambda_zero_merge_is_psi0_plus_dpsi_t1():
    cs = cfgs(2, **TINY)
    params = get_study("colored_digits").train_group(cs, CPU, QUIET).params
    ex = experiment(cs, params, CPU)
    p1, p2 = cs[0].p_T1, cs[0].p_contradictory
    w = ex.merged((p1, p2), torch.tensor([[1.0, 0.0]]))
    ref = ex.tvs[p1].apply_to(ex.base)
    for k in ref:
        assert torch.equal(w[k][0], ref[k]), k
        assert torch.allclose(w[k][0], params[task_key(p1) + k], atol=1e-6), k
    acc = evaluate_grid(ex, (p1, p2), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), (p1,))[p1]["acc"]
    assert acc.shape == (2, 2) and bool(((acc >= 0) & (acc <= 1)).all())
    # the merge at (1, 0) scores exactly as the fine-tuned model itself
    own = logits({k: params[task_key(p1) + k] for k in ref}, params["psi0/head.w"], ex.tests[p1]["X"], 2, 2)
    assert torch.equal(acc[0], (own.argmax(-1) == (ex.tests[p1]["y"] > 0).long()).float().mean(-1))


def test_gammas_recover_a_known_combination_and_survive_nan():
    from theorylab.edit import TaskVector
    g = torch.Generator().manual_seed(0)
    a, b = ({"w": torch.randn(3, 40, generator=g)} for _ in range(2))
    t = {"w": 0.8 * a["w"] - 0.6 * b["w"]}
    t["w"][2, 0] = float("nan")
    gam, r2 = regress_gammas(TaskVector(vector=t), TaskVector(vector=a), TaskVector(vector=b))
    assert torch.allclose(gam[:2], torch.tensor([[0.8, -0.6]] * 2), atol=1e-5) and bool((r2[:2] > 0.999).all())
    assert bool(gam[2].isnan().all())


@pytest.mark.parametrize("field,value", [("patch", 3), ("width", 33), ("p_T1", 1.5), ("lr", 0.0), ("pretrain_task", "jigsaw"),
                                         ("lam_lo", -1.9), ("lam_hi", 0.6), ("lam_lo", 0.0)])
def test_bad_config_names_field(field, value):
    with pytest.raises(ConfigError, match=field):
        make_config(ColoredDigitsConfig, {field: value})


def test_one_point_lambda_grid_is_rejected():
    with pytest.raises(ConfigError, match="lam_lo.*lam_hi"):
        make_config(ColoredDigitsConfig, {"lam_lo": 0.0, "lam_hi": 0.0})


def _check_outcomes(res, seeds):
    tables = {k: t for r in res.values() for k, t in r.outcome.numbers.get("tables", {}).items()}
    assert any("Fig. 23" in k for k in tables) and any("Fig. 24" in k for k in tables) and any("LwPTV" in k for k in tables)
    t = res["multitask_lambda"].outcome.numbers["table"]
    for kind in ("irrelevant", "aligned", "contradictory"):
        for mode in ("multi-task", "unlearning"):
            v = t[kind][mode]
            assert 0 <= v["T1"] <= 1 and 0 <= v["T2"] <= 1 and len(v["per_seed_lambda"]) == seeds
        assert all(-1 <= a <= 1 for a in t[kind]["alpha_hat"])
    o = res["fig24_ood"].outcome
    assert all(math.isfinite(x) for g in o.numbers["gamma"] for x in g) and all(0 <= a <= 1 for a in o.numbers["best_acc"])
    assert "ood_heatmap" in o.figures and "acc_vs_lambda" in res["unlearning"].outcome.figures
    assert res["thm6_region"].claim.kind == "figure" and res["thm6_region"].outcome.control is not None  # a converse: figure
    assert all(0 <= x <= 1 for r in res["lwptv_ood"].outcome.numbers["rows"] for x in r["OOD"])


def test_claims_end_to_end_tiny(tmp_path, claims_at):
    res = claims_at("colored_digits")
    _check_outcomes(res, 2)
    from theorylab.core.report import write_report
    rows = [{"claim": r.claim.id, "theorem": r.claim.theorem, "statement": r.claim.statement, "verdict": r.verdict,
             "summary": r.summary, "numbers": r.outcome.numbers, "figures": r.outcome.figures, "seconds": r.seconds}
            for r in res.values()]
    path = write_report(get_study("colored_digits"), rows, tmp_path, {"size": "quick", "seeds": 2, "machine": "test"})
    assert (tmp_path / "ood_heatmap.png").exists() and "Fig. 23" in path.read_text()


def test_claims_run_at_a_non_default_config(claims_at):
    _check_outcomes(claims_at("colored_digits", patch=4, width=16, heads=4, depth=1, mlp=32, lam_lo=-1.0, lam_hi=2.0, lam_step=0.5,
                         ood_p_target=0.45), 2)


def test_a_diverged_seed_fails_every_claim_without_crashing(poison_seed, claims_at):
    import theorylab.studies.colored_digits.train as train

    poison_seed(train, "patch.w")
    for r in claims_at("colored_digits").values():
        assert r.diverged == [1] and r.passed_seeds[1] is False, r.claim.id


@pytest.mark.slow
def test_claims_quick_size():
    ctx = ClaimContext(get_study("colored_digits"), "quick", 5, CPU)
    res = {r.claim.id: r for r in run_claims(ctx)}
    assert all(r.error is None for r in res.values())
    _check_outcomes(res, 5)


def test_rotation_pretraining_targets_are_the_applied_turns():
    """pretrain_task=rotation: the 4-way target is the number of quarter turns actually applied."""
    from theorylab.core.progress import QUIET
    from theorylab.studies.colored_digits.train import pretrain

    cfgs = [ColoredDigitsConfig(seed=s, pretrain_task="rotation", pretrain_steps=30, curve_points=3) for s in range(2)]
    curves = pretrain(cfgs, rng_for(cfgs, "cpu"), torch.device("cpu")).curves
    assert curves["loss"].shape[1] == 2
    assert float(curves["loss"][-1].mean()) < 1.2 < float(torch.log(torch.tensor(4.0)))  # below chance CE ln 4


def test_a_diverging_model_is_recorded_and_spares_the_others(monkeypatch):
    import theorylab.studies.colored_digits.train as train
    from theorylab.core.progress import QUIET

    cfgs = [ColoredDigitsConfig(seed=s, pretrain_steps=5, steps=3, curve_points=2) for s in range(2)]
    train_group = get_study("colored_digits").train_group
    alone = train_group(cfgs[:1], torch.device("cpu"), QUIET)
    init = train.init_params

    def poisoned(cfgs, rng, device):  # model 1 starts with a NaN weight
        p = init(cfgs, rng, device)
        if len(cfgs) == 2:
            p["patch.w"][1, 0, 0] = float("nan")
        return p

    monkeypatch.setattr(train, "init_params", poisoned)
    res = train_group(cfgs, torch.device("cpu"), QUIET)
    assert res.status == ["done", "diverged"] and alone.status == ["done"]
    for k, v in alone.params.items():
        torch.testing.assert_close(res.params[k][0], v[0], atol=1e-5, rtol=0)
