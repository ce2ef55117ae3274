"""Every study's CUDA path, the contract of test_conformance on a GPU (run with `pytest -m gpu`; CI has none).

On CUDA: an ensemble trains what each model trains alone, the forward equals the per-example reference, the
weights the CPU trained give the CPU's forward, and the bare training step the benchmark times runs. Training
itself is compared with the CPU's only through the forward: kernels round differently on the two devices and a
hinge loss can turn a rounding difference into a different step, so equal weights after training are not promised.
"""
from __future__ import annotations

import pytest
import torch

from theorylab.core.bench import train_seconds
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study, study_names

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CPU = torch.device("cpu")
CUDA = torch.device("cuda")
STUDIES = study_names()


def tiny_configs(name: str, seeds: int):
    s = get_study(name)
    return s, s.seed_configs("quick", seeds, **s.tiny)


@pytest.mark.parametrize("name", STUDIES)
def test_on_cuda_an_ensemble_trains_what_each_model_trains_alone(name):
    s, cfgs = tiny_configs(name, 3)
    together = s.train_group(cfgs, CUDA, QUIET)
    alone = s.train_group([cfgs[1]], CUDA, QUIET)
    assert together.status == ["done"] * 3
    for k, v in alone.params.items():
        torch.testing.assert_close(together.params[k][1].cpu(), v[0].cpu(), atol=1e-4, rtol=1e-4, msg=f"weights {k}")
    for k, v in alone.metrics[0].items():
        assert together.metrics[1][k] == pytest.approx(v, abs=1e-4), f"metric {k}"


@pytest.mark.parametrize("name", STUDIES)
def test_on_cuda_the_forward_equals_the_reference_and_the_cpu(name):
    s, cfgs = tiny_configs(name, 2)
    trained = s.train_group(cfgs, CPU, QUIET).params
    on_gpu = {k: v.to(CUDA) for k, v in trained.items()}
    assert s.forward_check(cfgs, on_gpu, CUDA) <= 1e-3
    assert s.forward_check(cfgs, trained, CPU) <= 1e-4


@pytest.mark.parametrize("name", STUDIES)
def test_on_cuda_the_benchmarked_training_step_runs(name):
    s = get_study(name)
    if "steps" not in type(s.config("quick")).model_fields:
        pytest.skip(f"{name} trains nothing (it indexes and scores)")
    base = s.config("quick", **{**s.tiny, **s.bench_config})
    seconds, model_steps = train_seconds(s, [base.replace(seed=i) for i in range(2)], CUDA, 3)
    assert seconds > 0 and model_steps > 0
