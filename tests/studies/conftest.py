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
            if r.not_applicable is None:  # a theorem whose hypothesis fails at this run has no per-seed results
                assert len(r.passed_seeds) == seeds
        return res
    return run


@pytest.fixture
def poison_seed(monkeypatch):
    """poison_seed(train_module, tensor, seed): that seed's model starts with a NaN in `tensor` (the module's
    init_params is patched), so the study's own trainer must record it as diverged."""
    def apply(module, name: str, seed: int = 1) -> None:
        init = module.init_params

        def poisoned(cfgs, rng, device):
            p = init(cfgs, rng, device)
            for e, c in enumerate(cfgs):
                if c.seed == seed:
                    p[name][(e,) + (0,) * (p[name].dim() - 1)] = float("nan")
            return p

        monkeypatch.setattr(module, "init_params", poisoned)
    return apply
