"""The verdict rule: per-seed passes -> holds / fails / inconclusive, controls, intervals, seeds to settle."""
import math

import pytest

from theorylab.core.claims import Claim, ClaimResult, Control, Outcome, exit_code
from theorylab.core.verdict import interval, seeds_to_settle, verdict_word


def test_verdict_words_by_kind_and_pass_share():
    assert verdict_word("theorem", [True] * 5) == "holds"
    assert verdict_word("theorem", [True] * 4 + [False]) == "holds"  # one seed in five may disagree
    assert verdict_word("mechanism", [True] * 3 + [False] * 2) == "inconclusive"
    assert verdict_word("theorem", [False] * 5) == "fails"
    assert verdict_word("figure", [True] * 5) == "agrees" and verdict_word("figure", [False] * 5) == "differs"
    assert verdict_word("theorem", []) == "inconclusive"


def test_seeds_to_settle_grows_as_the_pass_rate_nears_one_half():
    assert seeds_to_settle(3, 5) > seeds_to_settle(4, 5) >= 5
    assert seeds_to_settle(2, 4) is None  # exactly half: no number of seeds settles it


def test_interval_drops_non_finite_values():
    iv = interval([1.0, 2.0, 3.0, float("nan")])
    assert iv["n"] == 3 and iv["mean"] == 2.0 and iv["lo"] < 2.0 < iv["hi"]
    assert interval([])["mean"] is None


def _result(per_seed, control=None, diverged=()):
    claim = Claim("c", "Thm 0", "theorem", "s", lambda ctx: None)
    o = Outcome(per_seed, "key", [0.1] * len(per_seed), "crit", "sum", control=control)
    return ClaimResult(claim, o, 0.0, list(range(len(per_seed))), diverged=list(diverged))


def test_a_control_that_passes_too_makes_the_check_inconclusive():
    assert _result([True] * 5, Control("untrained", [False] * 5)).verdict == "holds"
    r = _result([True] * 5, Control("untrained", [True] * 5))
    assert r.verdict == "inconclusive" and "does not discriminate" in r.summary


def test_diverged_seeds_count_as_failing():
    r = _result([True] * 5, diverged=[0, 1])
    assert r.passed_seeds == [False, False, True, True, True] and r.verdict == "inconclusive"
    assert "diverged" in r.summary and not math.isnan(r.interval["mean"])


@pytest.mark.parametrize("verdicts,code", [(["holds", "agrees"], 0), (["holds", "fails"], 1),
                                           (["inconclusive", "holds"], 3), (["ERROR"], 3), (["differs", "ERROR"], 1)])
def test_exit_codes(verdicts, code):
    assert exit_code(verdicts) == code


def test_the_boundary_counts_are_exact():
    from theorylab.core.verdict import verdict_word

    assert verdict_word("theorem", [True] + [False] * 4) == "fails"  # 1/5 passing is 4/5 failing
    assert verdict_word("figure", [True] * 2 + [False] * 8) == "differs"
    assert verdict_word("theorem", [True] * 4 + [False]) == "holds"
    assert verdict_word("theorem", [True] * 2 + [False] * 3) == "inconclusive"


def test_a_control_passing_on_one_seed_in_five_still_discriminates():
    from theorylab.core.claims import Claim, ClaimResult, Control, Outcome

    claim = Claim("c", "Thm", "theorem", "s", lambda ctx: None)
    out = Outcome([True] * 5, "k", [0.0] * 5, "crit", "sum", control=Control("ctl", [True] + [False] * 4))
    res = ClaimResult(claim, out, 0.0, seeds=list(range(5)))
    assert res.control_discriminates and res.verdict == "holds"
