"""The six ICL claims at quick size: 5 seeds trained once as one ensemble, every claim evaluated."""
import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.study import get_study


@pytest.fixture(scope="module")
def results():
    ctx = ClaimContext(get_study("icl"), "quick", 5, torch.device("cpu"))
    return {r.claim.id: r for r in run_claims(ctx)}


@pytest.mark.parametrize("claim", ["thm1_in_domain", "thm2_ood_s1", "length_vs_alpha_test", "prop1_attention",
                                   "thm3_pruning"])
def test_claim_holds_at_quick_size(results, claim):
    r = results[claim]
    assert r.error is None, r.error
    assert r.verdict == "holds", r.summary


def test_prop2_alignment_holds_while_the_strict_small_row_bound_is_reported(results):
    """Prop. 2's alignment parts hold on every large row. Its third part ("the rest stay near init") is
    checked a priori as: every small row <= 0.2 x the mean large row. Measured: a few neurons per seed
    sit in between (0.1-0.4 x), so the claim reports FAILS with that number rather than a loosened bound."""
    r = results["prop2_neurons"]
    n = r.outcome.numbers
    assert n["label_aligned"] >= 0.9 and n["feature_aligned"] >= 0.9 and n["label_dominates"] >= 0.9
    assert n["large_fraction"] >= 0.5
    assert r.passed == (n["small_over_large_norm"] <= 0.2)


def test_claim_numbers_are_consistent(results):
    thm2 = results["thm2_ood_s1"].outcome.numbers["ood_error_by_S1"]
    assert thm2["0.2"]["mean"] > thm2["1.4"]["mean"]  # the S1 effect is real, not a threshold artefact
    need = results["length_vs_alpha_test"].outcome.numbers["needed_length"]
    assert need["1.0"] < need["0.6"]
    assert set(results["thm3_pruning"].outcome.figures) == {"pruning"}


def test_an_untrained_model_fails_the_claims():
    """The checks can fail: with 3 SGD steps nothing is learned and the verdicts say so."""
    ctx = ClaimContext(get_study("icl"), "quick", 2, torch.device("cpu"), overrides={"steps": 3, "n_test": 200})
    res = {r.claim.id: r for r in run_claims(ctx, ["thm1_in_domain", "prop1_attention"])}
    assert res["thm1_in_domain"].verdict == "FAILS" and res["prop1_attention"].verdict == "FAILS"
