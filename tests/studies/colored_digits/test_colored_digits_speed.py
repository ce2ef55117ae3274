"""The pre-training and fine-tuning steps in slices of models (core.chunked) equal the whole-ensemble steps."""
from __future__ import annotations

import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.study import get_study
from theorylab.core.train import train_ensemble
from theorylab.studies.colored_digits.config import TINY
from theorylab.studies.colored_digits.train import models_per_slice, training

CPU = torch.device("cpu")


@pytest.mark.parametrize("task", ["digit", "rotation"])
def test_sliced_steps_train_the_weights_of_the_whole_ensemble(task):
    s = get_study("colored_digits")
    cfgs = s.seed_configs("quick", 5, **{**TINY, "pretrain_task": task})
    runs = {}
    for chunk in (1000, 2):  # the whole ensemble at once; slices of 2 (and one of 3: no slice of one model)
        tr = training(cfgs, rng_for(cfgs, CPU), CPU, chunk=chunk)
        res = train_ensemble(tr.params, list(tr.trainable), tr.loss, tr.lr, 3, optimizer=tr.optimizer, curve_points=1)
        runs[chunk] = (tr.earlier["pretrain"], res)
    (pre_a, ft_a), (pre_b, ft_b) = runs[1000], runs[2]
    for a, b in ((pre_a, pre_b), (ft_a, ft_b)):
        for k in a.params:
            torch.testing.assert_close(b.params[k], a.params[k], rtol=1e-6, atol=1e-7, msg=k)
        for k in a.curves:
            torch.testing.assert_close(b.curves[k], a.curves[k], rtol=1e-6, atol=1e-7, msg=k)


def test_a_slice_keeps_its_largest_activation_near_a_core_cache_and_a_gpu_takes_all():
    cfg = get_study("colored_digits").config("quick")
    per_model = cfg.B * (8 // cfg.patch) ** 2 * max(cfg.width, cfg.mlp)
    k = models_per_slice(cfg, 256, CPU)
    assert 1 <= k < 256 and k * per_model <= 1 << 19
    assert models_per_slice(cfg, 256, torch.device("cuda")) == 256
