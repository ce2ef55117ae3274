"""The adaptation's speed path: the frozen layers before each method's prompt run once per step for all methods
(train.start_layer); its losses, gradients and a few training steps equal the plain path's (every method's whole
forward), for both backbones."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.train import train_ensemble
from theorylab.studies.activation_prompt.config import TINY, APConfig
from theorylab.studies.activation_prompt.model import init_params
from theorylab.studies.activation_prompt.train import adaptation, methods, start_layer


def _training(arch: str, shared_prefix: bool, device="cpu"):
    cfgs = [APConfig(arch=arch, seed=s, **{**TINY, "depth": 2}) for s in range(2)]
    rng = rng_for(cfgs, device)
    backbone = init_params(cfgs[0], rng, device)
    return adaptation(cfgs, rng, backbone, methods(cfgs[0]), device, shared_prefix=shared_prefix)


def test_start_layers():
    cfg = APConfig(**{**TINY, "depth": 2})
    assert [start_layer(cfg, m) for m in methods(cfg)] == [3, 0, 1, 2, 3, 1, 2, 3, 0, 0]


def _loss_and_grads(tr, step=3):
    torch.manual_seed(0)  # prompts and head away from 0, so every layer after a prompt matters
    p = {k: (v + 0.1 * torch.randn_like(v) if k in tr.trainable else v) for k, v in tr.params.items()}
    p = {k: (v.detach().clone().requires_grad_(k in tr.trainable)) for k, v in p.items()}
    out = tr.loss(p, step)
    grads = torch.autograd.grad(out["loss"].sum(), [p[k] for k in tr.trainable])
    return out, dict(zip(tr.trainable, grads))


@pytest.mark.parametrize("arch", ["cnn", "vit"])
def test_shared_prefix_equals_the_plain_path(arch):
    fast, plain = _training(arch, True), _training(arch, False)
    (out_f, g_f), (out_p, g_p) = _loss_and_grads(fast), _loss_and_grads(plain)
    assert out_f.keys() == out_p.keys() and g_f.keys() == g_p.keys()
    for k in out_p:
        torch.testing.assert_close(out_f[k], out_p[k], rtol=1e-6, atol=0)
    for k in g_p:
        torch.testing.assert_close(g_f[k], g_p[k], rtol=1e-5, atol=1e-7)
    runs = [train_ensemble(tr.params, list(tr.trainable), tr.loss, tr.lr, 4, optimizer=tr.optimizer, curve_points=2)
            for tr in (fast, plain)]
    for k in runs[1].params:
        torch.testing.assert_close(runs[0].params[k], runs[1].params[k], rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["cnn", "vit"])
def test_shared_prefix_equals_the_plain_path_cuda(arch):
    fast, plain = _training(arch, True, "cuda"), _training(arch, False, "cuda")
    (out_f, g_f), (out_p, g_p) = _loss_and_grads(fast), _loss_and_grads(plain)
    for k in out_p:
        torch.testing.assert_close(out_f[k], out_p[k], rtol=1e-5, atol=1e-6)
    for k in g_p:
        torch.testing.assert_close(g_f[k], g_p[k], rtol=1e-4, atol=1e-6)
