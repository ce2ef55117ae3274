"""Shared by the study tests: run every claim of a study at its tiny config plus overrides."""
import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.study import get_study


@pytest.fixture
def claims_at():
    def run(study: str, seeds: int = 2, **over) -> dict:
        s = get_study(study)
        ctx = ClaimContext(s, "quick", seeds, torch.device("cpu"), overrides={**s.tiny, **over})
        res = {r.claim.id: r for r in run_claims(ctx)}
        assert set(res) == {c.id for c in s.claims}
        for r in res.values():
            assert r.error is None, r.error
            assert len(r.passed_seeds) == seeds
        return res
    return run
