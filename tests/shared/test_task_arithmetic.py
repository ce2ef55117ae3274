"""The task-arithmetic experiment written once (shared.task_arithmetic): merges, region (8), grid evaluation, the
lambda-grid validation, and NaN guarding."""
import math

import pytest
import torch

from theorylab.shared.task_arithmetic import (Experiment, check_lambda_grid, evaluate_grid, guard_finite, in_region8, lam_grid,
                                       lwptv_table, nearest, plane_lambdas, region8, seed_argbest)
from theorylab.edit import TaskVector
from typer.testing import CliRunner

from theorylab.cli import app

E = 3


def _toy(seed: int = 0) -> Experiment:
    """A linear model f(x) = x . w (w [E, 4]), a fixed scale s [E], two tasks, one test set per task."""
    g = torch.Generator().manual_seed(seed)
    base = {"blocks.0.w": torch.randn(E, 4, generator=g), "blocks.1.b": torch.randn(E, 2, generator=g)}
    ft = {t: {k: v + torch.randn(v.shape, generator=g) for k, v in base.items()} for t in ("A", "B")}
    tests = {t: {"X": torch.randn(E, 50, 4, generator=g), "y": torch.randn(E, 50, generator=g).sign()} for t in ("A", "B")}

    def metric(w, test):  # weights [G, E, ...], the fixed s [E]
        f = (test["X"] * w["blocks.0.w"][..., None, :]).sum(-1) * w["s"][:, None] + w["blocks.1.b"][..., :1]
        err = (~(test["y"] * f > 0)).float().mean(-1)
        return {"error": err, "acc": 1 - err, "f_mean": f.mean(-1)}

    return Experiment.from_weights(base, ft, tests, metric, {"s": torch.ones(E) * 2}, point_elements=E * 50 * 4)


def test_merged_weights_are_psi0_plus_sum_of_lambda_tau():
    ex = _toy()
    coefs = torch.tensor([[1.0, 0.0], [0.5, -2.0], [0.0, 0.0], [3.0, 1.5]])
    w = ex.merged(("A", "B"), coefs)
    for g, (l1, l2) in enumerate(coefs.tolist()):
        for k, b in ex.base.items():
            by_hand = b + l1 * ex.tvs["A"][k] + l2 * ex.tvs["B"][k]
            torch.testing.assert_close(w[k][g], by_hand)
    assert torch.equal(w["s"], ex.fixed["s"])  # untouched by the task vectors, no grid axis
    assert torch.equal(w["blocks.0.w"][2], ex.base["blocks.0.w"])  # lambda = 0: exactly Psi0


def test_task_vectors_are_finetuned_minus_base():
    ex = _toy()
    w = ex.merged(("A",), torch.ones(1, 1))
    tv = TaskVector(ex.base, {k: w[k][0] for k in ex.base})
    for k in ex.base:
        torch.testing.assert_close(tv[k], ex.tvs["A"][k])


def test_region8_hand_example():
    gam = torch.tensor([0.8, -0.6])
    pts = torch.tensor([[2.0, 0.5], [2.0, -1.0], [2.5, 0.0], [0.5, 0.0], [1.5, 0.0], [2.0, 1.5]])
    # gamma (0.8, -0.6): (2, .5): 8a 1.3, 8b 1.46, 8c 0.2 -> in; (2, -1): 8b 0.92 < 1.2 -> out; (2.5, 0): 8c 0.25 > 0.2
    # -> out; (0.5, 0): 8a 0.4 -> out; (1.5, 0): 8a 1.2, 8b 0.96 -> out; (2, 1.5): 8a 0.7 -> out
    assert in_region8(pts, gam, beta=0.1, c=0.2).tolist() == [True, False, False, False, False, False]
    per_model = in_region8(pts, torch.stack([gam, torch.tensor([0.6, 0.8])]), beta=0.1, c=0.2)  # [G, E]
    assert per_model.shape == (6, 2) and per_model[:, 0].tolist() == [True, False, False, False, False, False]
    # gamma (0.6, 0.8): (2, .5): 8b 1.04 -> out; (2, 1.5): 8a 2.4, 8b 1.68, 8c 0.2 -> in
    assert per_model[:, 1].tolist() == [False, False, False, False, False, True]
    lams = [0.0, 1.0, 2.0]
    r = region8(lams, gam, 0.1, 0.2)
    assert r.shape == (9,) and r.tolist() == in_region8(plane_lambdas(lams, lams), gam, 0.1, 0.2).tolist()


@pytest.mark.parametrize("max_elements", [1, 600, 10_000, 1 << 30])
def test_evaluate_grid_does_not_depend_on_the_chunk_size(max_elements):
    ex = _toy()
    coefs = plane_lambdas(lam_grid(0.5, -1, 1), lam_grid(0.5, -1, 1))  # 25 points
    ref = evaluate_grid(ex, ("A", "B"), coefs, ("A", "B"), max_elements=1 << 30)
    out = evaluate_grid(ex, ("A", "B"), coefs, ("A", "B"), max_elements=max_elements)
    for q in ("A", "B"):
        for k in ("error", "f_mean"):
            assert torch.equal(out[q][k], ref[q][k]), (q, k)
    assert ref["A"]["error"].shape == (25, E)
    # one grid point evaluated alone gives the same number
    one = evaluate_grid(ex, ("A", "B"), coefs[7:8], ("B",))["B"]["f_mean"]
    torch.testing.assert_close(one[0], ref["B"]["f_mean"][7])


def test_subset_and_edits_keep_the_models_apart():
    ex = _toy()
    sub = ex.subset([2, 0])
    coefs = torch.tensor([[1.0, 1.0]])
    full = evaluate_grid(ex, ("A", "B"), coefs, ("A",))["A"]["f_mean"]
    part = evaluate_grid(sub, ("A", "B"), coefs, ("A",))["A"]["f_mean"]
    assert torch.equal(part[0], full[0, [2, 0]])
    zeroed = ex.map_tvs(lambda t, tv: {k: v * 0 for k, v in tv.items()})
    assert torch.equal(zeroed.merged(("A", "B"), coefs)["blocks.0.w"][0], ex.base["blocks.0.w"])


def test_nan_weights_give_errors_not_exceptions():
    ex = _toy()
    ex.tvs["A"].vector["blocks.0.w"][1, 0] = float("nan")
    r = evaluate_grid(ex, ("A", "B"), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), ("A",))["A"]
    assert r["error"][0, 1] == 1.0 and r["acc"][0, 1] == 0.0  # the NaN model is wrong everywhere
    assert bool(torch.isfinite(r["error"]).all())
    assert seed_argbest(torch.tensor([[float("nan"), 0.2], [0.1, 0.3]])).tolist() == [1, 1]  # NaN never wins
    from theorylab.edit import low_rank
    x = torch.randn(E, 5, 4)
    x[1, 2, 3] = float("nan")
    lr = guard_finite(lambda v: low_rank(v, rank=1, model_axis=True), x)
    assert bool(lr[1].isnan().all())
    assert torch.allclose(lr[0], low_rank(x[0], rank=1), atol=1e-6) and torch.allclose(lr[2], low_rank(x[2], rank=1), atol=1e-6)


def test_lambda_grid_is_validated():
    check_lambda_grid(0.2, -2.0, 3.0, (-1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="lam_lo.*lam_hi|one point"):
        check_lambda_grid(0.2, 0.0, 0.0, (0.0, 1.0))  # a one-point grid
    with pytest.raises(ValueError, match="'lam_hi'"):
        check_lambda_grid(0.2, -2.0, 0.6, (-1.0, 0.0, 1.0))  # misses 1 = Psi*_T1
    with pytest.raises(ValueError, match="'lam_lo'"):
        check_lambda_grid(0.2, -1.9, 3.0, (0.0,))  # 0 is not on the grid
    with pytest.raises(ValueError, match="'lam_step'"):
        check_lambda_grid(0.3, -2.0, 3.0, (0.0,), ("lam_step", None, None))
    assert nearest(lam_grid(0.25), 0.5) == 10 and lam_grid(0.5, -1, 1) == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_lwptv_table_rows_and_matched_shrink():
    ex = _toy()
    tab = lwptv_table(ex, ("A", "B"), ("A", "B"), "B", lambda m: m["acc"], ratio=0.5, scores=("relative_update",))
    names = [r["merge"] for r in tab["rows"]]
    assert names[0].startswith("task arithmetic") and "LwPTV" in names[1] and "shrink" in names[2]
    per = tab["per_model"]
    ta = evaluate_grid(ex, ("A", "B"), torch.ones(1, 2), ("A", "B"))
    torch.testing.assert_close(per[names[0]]["T1"], ta["A"]["acc"][0])
    # ratio 0.5 of two blocks: every model prunes exactly one block per task, so the shares add up to 100%
    import re
    for task in tab["rows"][1]["pruned"].split("; "):
        assert sum(map(int, re.findall(r"(\d+)%", task))) == 100, task
    assert "|" in tab["markdown"]
    s = per[names[2]]["s"]
    assert bool(((s >= 0) & (s <= 1)).all()) and not math.isnan(float(per[names[2]]["ID"].sum()))


def test_a_step_too_small_for_any_grid_is_named_not_an_overflow():
    for step in (1e-320, 1e-6):  # 1e-320: the grid ends divided by it overflow to inf
        with pytest.raises(ValueError, match="'lam_step'.*10,000 points"):
            check_lambda_grid(step, -2.0, 3.0, (0.0, 1.0))
    res = CliRunner().invoke(app, ["check", "colored_digits", "--set", "lam_step=1e-320"])
    assert res.exit_code == 2 and "lam_step" in res.output and "Traceback" not in res.output
