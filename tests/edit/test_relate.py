import pytest
import torch

from theorylab.edit import output_similarity, recommend, search_lambda, search_lambda_for_pair, task_vector_cosines


def test_cosines_per_layer_and_overall():
    a = {"layers.0.w": torch.tensor([1.0, 0.0]), "layers.1.w": torch.tensor([1.0, 1.0]), "emb": torch.tensor([2.0])}
    b = {"layers.0.w": torch.tensor([0.0, 3.0]), "layers.1.w": torch.tensor([-2.0, -2.0]), "emb": torch.tensor([1.0])}
    cos = task_vector_cosines(a, b)
    assert cos["layer 0"] == pytest.approx(0.0) and cos["layer 1"] == pytest.approx(-1.0)
    assert cos["other"] == pytest.approx(1.0)
    assert cos["overall"] == pytest.approx((0 - 4 + 2) / (7**0.5 * 18**0.5))


def test_output_similarity_centres_on_the_base():
    base = torch.randn(20, 5) * 10
    da, db = torch.randn(20, 5), torch.randn(20, 5)
    assert output_similarity(base + da, base - da, base) == pytest.approx(-1.0)
    assert output_similarity(base + da, base - da) > 0.5  # raw cosine is dominated by the shared base
    assert abs(output_similarity(base + da, base + db, base)) < 0.5


def test_recommendation_follows_theorem_regimes():
    aligned, irr, contra = recommend(0.6), recommend(0.0), recommend(-0.5)
    assert aligned.relation == "aligned" and aligned.add_lambda[0] == pytest.approx(0.4) and aligned.negate_lambda is None
    assert irr.add_lambda[0] >= 1.0 and irr.negate_lambda[1] < 0
    assert contra.add_lambda is None and contra.negate_lambda[0] < 0 <= contra.negate_lambda[1]
    assert recommend(-0.9).negate_lambda[0] > recommend(-0.6).negate_lambda[0]  # range shrinks as |alpha| grows
    with pytest.raises(ValueError, match="alpha"):
        recommend(1.5)


def test_lambda_search_finds_best_coefficient():
    base = {"w": torch.zeros(3)}
    tv_a, tv_b = {"w": torch.tensor([1.0, 0.0, 0.0])}, {"w": torch.tensor([0.0, 1.0, 0.0])}
    target = torch.tensor([1.0, 0.7, 0.0])
    res = search_lambda_for_pair(base, tv_a, tv_b, lambda sd: -float((sd["w"] - target).norm()),
                                 lambdas=[0.0, 0.35, 0.7, 1.05])
    assert res.best_lambda == pytest.approx(0.7) and len(res.scores) == 4
    assert search_lambda(lambda l: -(l - 2) ** 2, [0, 1, 2, 3]).best_lambda == 2
    # irrelevant pair, default grid spans the recommended addition range [1, 1.5]
    res = search_lambda_for_pair(base, tv_a, tv_b, lambda sd: float(sd["w"][1]))
    assert res.best_lambda == pytest.approx(1.5)


def test_coefficient_grids_and_region8():
    from theorylab.edit.coefficients import lam_grid, pair_lambdas, plane_lambdas, region8

    lams = lam_grid(0.5)
    assert lams[0] == -2.0 and lams[-1] == 3.0 and len(lams) == 11
    assert pair_lambdas([0.5]).tolist() == [[1.0, 0.5]]
    plane = plane_lambdas(lams, lams)
    assert plane.shape == (121, 2) and plane[1].tolist() == [-2.0, -1.5]
    inside = region8(lams, torch.tensor([0.8, -0.6]), beta=0.1, c=0.2)
    for (l1, l2), ok in zip(plane.tolist(), inside.tolist()):  # (8a), (8b), (8c) by hand
        expect = 0.8 * l1 - 0.6 * l2 >= 1.2 and 0.64 * l1 + 0.36 * l2 >= 1.2 and max(abs(l1), abs(l2)) * 0.1 <= 0.2
        assert ok == expect, (l1, l2)
    assert inside.any() and not inside.all()


@pytest.mark.parametrize("b, match", [(torch.zeros(2), "second task vector is zero"),
                                      (torch.tensor([float("nan"), 1.0]), "second task vector has NaN")])
def test_cosines_refuse_a_zero_or_non_finite_task_vector(b, match):
    with pytest.raises(ValueError, match=match):
        task_vector_cosines({"layers.0.w": torch.tensor([1.0, 2.0])}, {"layers.0.w": b})
