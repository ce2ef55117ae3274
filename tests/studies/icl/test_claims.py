"""The ICL claims at quick size: 5 seeds trained once as one ensemble, every claim evaluated per seed."""
import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.study import get_study


@pytest.fixture(scope="module")
def results():
    ctx = ClaimContext(get_study("icl"), "quick", 5, torch.device("cpu"))
    return {r.claim.id: r for r in run_claims(ctx)}


def test_every_claim_runs_and_reports_per_seed(results):
    for r in results.values():
        assert r.error is None, r.error
        assert len(r.passed_seeds) == 5 and r.interval["n"] >= 1


@pytest.mark.parametrize("claim", ["thm1_in_domain", "prop1_attention"])
def test_robust_claims_hold_at_quick_size(results, claim):
    assert results[claim].verdict == "holds", results[claim].summary


def test_theorem_claims_carry_a_control_that_fails_where_it_should(results):
    r = results["thm1_in_domain"]
    assert r.outcome.control is not None and r.control_discriminates  # the untrained model is not O(eps)
    assert results["thm2_ood"].control_discriminates  # S1 < 1 is worse than the bound


def test_claim_numbers_are_consistent(results):
    s1 = results["thm2_ood"].outcome.numbers["ood_error_by_S1"]
    assert sum(s1["0.2"]) > sum(s1["1.4"])  # the S1 effect is real, not a threshold artefact
    need = results["length_vs_alpha_test"].outcome.numbers["needed_length"]
    assert sum(need["1.0"]) < sum(need["0.6"])
    assert set(results["fig_pruning"].outcome.figures) == {"pruning"}
    assert set(results["thm2_ood"].outcome.numbers["threshold_S1_by_ood_mix"]) == {"0.5", "0.7", "0.9"}


def test_an_untrained_model_fails_the_claims():
    """The checks can fail: with 3 SGD steps nothing is learned and the verdicts say so."""
    ctx = ClaimContext(get_study("icl"), "quick", 2, torch.device("cpu"), overrides={"steps": 3, "n_test": 200})
    res = {r.claim.id: r for r in run_claims(ctx, ["thm1_in_domain", "prop1_attention"])}
    assert res["thm1_in_domain"].verdict in ("fails", "inconclusive") and res["prop1_attention"].verdict == "fails"
