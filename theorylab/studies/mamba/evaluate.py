"""Test error of trained ensembles, and the gate / attention probes of section 3.5."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from theorylab.core.ensemble import rng_for, shared_value
from theorylab.core.evaluate import mean_over_blocks
from theorylab.core.losses import sign_error
from theorylab.studies.mamba.config import MambaConfig
from theorylab.studies.mamba.data import CONFUSING, IRRELEVANT, RELEVANT, Batch, sample
from theorylab.studies.mamba.model import forward, forward_probed


def per_sample_loss(F_: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """[E, B] -> [E, B]: hinge max(0, 1 - yF) or logistic log(1 + exp(-yF))."""
    return torch.clamp(1 - y * F_, min=0) if loss == "hinge" else F.softplus(-y * F_)


def kind_mean(values: torch.Tensor, kind: torch.Tensor, which: int) -> torch.Tensor:
    """[E, B, L] values averaged over the tokens of one kind -> [E] (NaN-free: 0 where a kind is absent)."""
    sel = (kind == which).float()
    return (values * sel).sum((1, 2)) / sel.sum((1, 2)).clamp_min(1)


def gate_probes(params: dict[str, torch.Tensor], batch: Batch, cfg: MambaConfig,
                probes: dict | None = None) -> dict[str, torch.Tensor]:
    """Per model [E]: the gating vector's projections on o_+, o_-, the largest |projection| on an irrelevant
    pattern, its norm; the gate g_l and the token weight c_l in h_L by token kind (SSM); the last position's
    attention mass by token kind (transformer). probes: what a forward pass on batch.X wrote (None: run one)."""
    if probes is None:
        probes = {}
        forward(params, batch.X, cfg, probes)
    out = {}
    if cfg.arch == "ssm":
        w = params["w"].detach().clone()  # [E, d]; o_+ = e_1, o_- = e_2, nu_j = e_{3..M}. A copy: the trainer
        # records probes without copying, and a view of w would follow the in-place updates
        out.update({"w_o_plus": w[:, 0], "w_o_minus": w[:, 1], "w_irrelevant_max": w[:, 2 : cfg.M].abs().amax(-1),
                    "w_norm": w.norm(dim=-1)})
        weights, gates = probes["c"], probes["gate"]
        for name, k in (("relevant", RELEVANT), ("confusing", CONFUSING), ("irrelevant", IRRELEVANT)):
            out[f"gate_{name}"] = kind_mean(gates, batch.kind, k)
            out[f"weight_{name}"] = kind_mean(weights, batch.kind, k)
    else:
        att = probes["attn.map"][:, :, 0, -1, :]  # the last position's attention over tokens [E, B, L]
        for name, k in (("relevant", RELEVANT), ("confusing", CONFUSING), ("irrelevant", IRRELEVANT)):
            out[f"weight_{name}"] = kind_mean(att, batch.kind, k)
    return out


@torch.no_grad()
def probe_values(params: dict[str, torch.Tensor], batch: Batch, cfg: MambaConfig,
                 fast: bool = True) -> dict[str, torch.Tensor]:
    """What training records at every curve checkpoint on the fixed probe set: probe_error and the gate probes
    [E]. fast (the default): one pass (model.forward_probed, with the fused read-out); False: the plain form, one
    forward for the error and another with probes (tests: equal)."""
    if fast:
        f, probes = forward_probed(params, batch.X, cfg)
        return {"probe_error": sign_error(f, batch.y), **gate_probes(params, batch, cfg, probes)}
    return {"probe_error": sign_error(forward(params, batch.X, cfg), batch.y), **gate_probes(params, batch, cfg)}


@torch.no_grad()
def evaluate(params: dict[str, torch.Tensor], cfgs: Sequence[MambaConfig], *, n: int | None = None,
             stream: tuple = ("test",), changes: dict | None = None) -> dict[str, torch.Tensor]:
    """Test error and loss [E] on fresh sequences (in fixed blocks keyed per model); `changes` alters the data
    fields (e.g. another alpha or tau) of the test distribution."""
    if changes:
        cfgs = [c.replace(**changes) for c in cfgs]
    n = n or shared_value(cfgs, "n_test")
    rng = rng_for(cfgs, params["V"].device)
    cfg = cfgs[0]
    per = cfg.L * cfg.d * 4

    def block(models: slice, i: int, count: int) -> dict[str, torch.Tensor]:
        b = sample(cfgs[models], rng.subset(models), count, *stream, i)
        f = forward({k: v[models] for k, v in params.items()}, b.X, cfg)
        return {"error": sign_error(f, b.y), "loss": per_sample_loss(f, b.y, cfg.loss).mean(-1)}

    return mean_over_blocks(len(cfgs), n, per, block)
