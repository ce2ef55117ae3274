"""The ViT training step and probes in slices of models equal the whole-ensemble ones bit for bit: fresh samples
and a training pool, each sparsification kind (the attention score reads the current weights), digits; final
weights, every curve (probes included) and the graded metrics."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.study import get_study
from theorylab.studies.vit.train import models_per_slice, training

CPU = torch.device("cpu")


def _run(cfgs, chunk, device=CPU):
    tr = training(cfgs, rng_for(cfgs, device), device, chunk=chunk)
    res = tr.train()
    return res, tr.grade(res)


@pytest.mark.parametrize("over", [{}, {"n_train": 8}, {"sparsify": "attention"}, {"sparsify": "random", "n_train": 8},
                                  {"sparsify": "norm", "m": 64}, {"data": "digits", "n_train": 16}])
def test_sliced_step_and_probes_equal_whole_ensemble(over):
    s = get_study("vit")
    cfgs = s.seed_configs("quick", 5, **{**s.tiny, "steps": 8, **over})
    if over.get("n_train"):  # per-model training-set sizes, as the phase diagram's cells
        cfgs = [c.replace(n_train=c.n_train + i) for i, c in enumerate(cfgs)]
    whole, graded = _run(cfgs, len(cfgs))
    for chunk in (1, 2):
        res, g = _run(cfgs, chunk)
        assert all(torch.equal(res.params[k], whole.params[k]) for k in whole.params)
        assert res.curves.keys() == whole.curves.keys()
        assert all(torch.equal(res.curves[k], whole.curves[k]) for k in whole.curves)
        assert all(torch.equal(g[k], graded[k]) for k in graded)


def test_slices_only_on_cpu():
    s = get_study("vit")
    cfgs = s.seed_configs("quick", 64, m=200)
    assert 1 <= models_per_slice(cfgs, CPU, 16) < 64
    assert models_per_slice(cfgs, torch.device("cuda"), 16) == 64


@pytest.mark.gpu
def test_cuda_step_equals_cpu_step():
    s = get_study("vit")
    cfgs = s.seed_configs("quick", 3, **{**s.tiny, "steps": 6, "n_train": 8})
    cpu, _ = _run(cfgs, None)
    gpu, _ = _run(cfgs, None, torch.device("cuda"))
    for k in cpu.params:
        assert torch.allclose(gpu.params[k].cpu(), cpu.params[k], rtol=1e-4, atol=1e-5)
