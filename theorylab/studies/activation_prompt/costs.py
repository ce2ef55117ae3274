"""The cost of each adaptation method on one backbone (spec 3.5 "efficiency"): trainable parameters, the bytes
autograd saves for backward in one step, ms per step and inference images/s.

The bytes are a function of the shapes and of where the prompt sits, not of the weights or the seed: one
measurement per backbone and layer says everything, so they are checked by a unit test
(tests/studies/activation_prompt) and reported once, never graded over seeds as if they varied. Times are this
machine's and only printed.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from theorylab.studies.activation_prompt.config import APConfig
from theorylab.studies.activation_prompt.model import forward, n_layers


def cost_methods(cfg: APConfig) -> list[str]:
    return ["linear", "vp", *[f"ap{l}" for l in range(1, n_layers(cfg) + 1)], "norm", "full"]


def method_costs(cfg: APConfig, backbone: dict[str, torch.Tensor], timed: bool = True) -> dict[str, dict]:
    """method -> {params, saved_bytes, ms_per_step, images_per_s} on model 0 of `backbone` at batch cfg.B."""
    from theorylab.studies.activation_prompt.train import method_params

    dev = next(iter(backbone.values())).device
    one = {k: v[:1] for k, v in backbone.items() if not k.startswith("thead")}
    feat = cfg.channels if cfg.arch == "cnn" else cfg.width
    one.update({"thead.w": torch.zeros(1, feat, 10, device=dev), "thead.b": torch.zeros(1, 10, device=dev)})
    X = torch.rand(1, cfg.B, 1, 8, 8, device=dev)
    y = torch.zeros(1, cfg.B, dtype=torch.long, device=dev)
    rows = {}
    for method in cost_methods(cfg):
        p, trainable = method_params(cfg, method, one)
        p = {k: v.detach().clone().requires_grad_(k in trainable) for k, v in p.items()}
        saved = [0]

        def pack(t, saved=saved):
            saved[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            F.cross_entropy(forward(p, X, cfg)[0], y[0])
        row = {"params": int(sum(p[k].numel() for k in trainable)), "saved_bytes": saved[0]}
        if timed:
            t0 = time.perf_counter()
            for _ in range(5):
                loss = F.cross_entropy(forward(p, X, cfg)[0], y[0])
                torch.autograd.grad(loss, [p[k] for k in trainable])
            row["ms_per_step"] = (time.perf_counter() - t0) / 5 * 1e3
            with torch.no_grad():
                big = X[:, :1].expand(1, 256, 1, 8, 8).contiguous()
                t0 = time.perf_counter()
                forward(p, big, cfg)
                row["images_per_s"] = 256 / (time.perf_counter() - t0)
        rows[method] = row
    return rows
