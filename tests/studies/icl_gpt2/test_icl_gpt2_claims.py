import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.study import get_study

CPU = torch.device("cpu")


def test_tiny_claims_give_sensible_outcomes():
    """At the tiny config the claims run (all of them: the conformance test); attention masses are shares, neuron-growth shares lie in [0, 1]."""
    s = get_study("icl_gpt2")
    ctx = ClaimContext(s, "quick", 2, CPU, overrides=dict(s.tiny))
    res = {r.claim.id: r for r in run_claims(ctx, ["fig_attention_layers", "fig_neuron_growth"])}
    assert all(r.verdict != "ERROR" for r in res.values()), {k: r.error for k, r in res.items()}
    att = res["fig_attention_layers"].outcome.numbers
    assert all(0 <= x <= 1 for row in att["start"] + att["end"] for x in row)
    assert all(0 <= x <= 1 for row in res["fig_neuron_growth"].outcome.numbers["share_grown"] for x in row)


def test_icl_figures_say_nothing_about_a_cot_base_config():
    s = get_study("icl_gpt2")
    ctx = ClaimContext(s, "quick", 1, CPU, overrides={**s.tiny, "task": "cot"})
    (r,) = run_claims(ctx, ["fig_ood_s1"])
    assert r.not_applicable and r.verdict == "inconclusive"
