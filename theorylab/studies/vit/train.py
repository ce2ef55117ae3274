"""What an ensemble of shallow ViTs trains on (section 1.3): hinge loss, plain SGD on minibatches of B examples drawn
from each model's N training examples (or fresh examples when n_train = 0), sparsification applied to every batch.

Curves at each checkpoint, on a fixed probe set of fresh test examples: probe_error, probe_loss, attn_rel (the
summed attention of label-relevant query tokens on label-relevant keys, Prop. 2) and attn_sp (the attention mass on
spurious tokens). Metrics: test_error / test_loss on n_test fresh examples, train_loss / train_error on the
model's own N examples, attn_rel at the end.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.batch import take_rows
from theorylab.core.chunked import chunked_loss
from theorylab.core.chunked import models_per_slice as cache_models
from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value
from theorylab.core.evaluate import mean_over_blocks
from theorylab.core.losses import hinge, sign_error
from theorylab.core.protocol import Training
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.vit.config import ViTConfig
from theorylab.studies.vit.data import RELEVANT, SPURIOUS, Batch, synthetic, test_batch, training_pool
from theorylab.studies.vit.model import TRAINABLE, forward, forward_fast, init_params, keep_mask


def relevant_attention(attn: torch.Tensor, batch: Batch, keep: torch.Tensor | None) -> torch.Tensor:
    """[E, B, L, L] -> [E]: mean over label-relevant (kept) queries l of sum_{s in S_*} attn(l, s) (0 if none)."""
    rel = batch.role == RELEVANT
    if keep is not None:
        rel = rel & keep
    mass = (attn * rel[:, :, None, :]).sum(-1)  # [E, B, L] attention of query l on S_*
    q = rel.float()
    return (mass * q).sum((1, 2)) / q.sum((1, 2)).clamp_min(1)


def spurious_attention(attn: torch.Tensor, batch: Batch, keep: torch.Tensor | None) -> torch.Tensor:
    """[E]: mean over kept queries of the attention mass on spurious tokens."""
    q = torch.ones_like(batch.role, dtype=attn.dtype) if keep is None else keep.to(attn.dtype)
    mass = (attn * (batch.role == SPURIOUS)[:, :, None, :]).sum(-1)
    return (mass * q).sum((1, 2)) / q.sum((1, 2)).clamp_min(1)


def scores(params, batch: Batch, cfgs, rng: EnsembleRNG, *stream) -> dict[str, torch.Tensor]:
    keep = keep_mask(params, batch, cfgs, rng, *stream)
    F, pb = forward(params, batch.X, keep, probes=True)
    return {"error": sign_error(F, batch.y), "loss": hinge(F, batch.y),
            "attn_rel": relevant_attention(pb["attn"], batch, keep), "attn_sp": spurious_attention(pb["attn"], batch, keep)}


@torch.no_grad()
def evaluate(params: dict[str, torch.Tensor], cfgs: Sequence[ViTConfig], stream: tuple = ("test",),
             n: int | None = None) -> dict[str, torch.Tensor]:
    """error, hinge loss, attn_rel, attn_sp [E] on n fresh test examples (blocks keyed per model)."""
    rng = rng_for(cfgs, params["W_O"].device)
    c = cfgs[0]

    def block(models: slice, i: int, count: int):
        sub = list(cfgs[models])
        r = rng.subset(models)
        batch = test_batch(sub, r, i, count, *stream)
        return scores({k: v[models] for k, v in params.items()}, batch, sub, r, *stream, i)

    return mean_over_blocks(len(cfgs), n or shared_value(cfgs, "n_test"), c.tokens * (c.tokens + c.m + 2 * c.dim), block)


def models_per_slice(cfgs: Sequence[ViTConfig], device: torch.device, examples: int) -> int:
    """Models per slice of the training step and the probes (core.chunked): on a CPU as many as keep the largest
    activation of `examples` examples per model ([., L, m] after W_O, or the [., L, L] attention) near one core's
    cache; elsewhere all at once."""
    c = cfgs[0]
    return cache_models(examples * c.tokens * max(c.tokens, shared_value(cfgs, "m")), len(cfgs), device)


def training(cfgs: Sequence[ViTConfig], rng: EnsembleRNG, device: torch.device, chunk: int | None = None,
             fast: bool = True) -> Training:
    """chunk: models per slice of the step (default models_per_slice; len(cfgs): the whole ensemble at once, the
    plain computation the sliced one is tested equal to). The data are drawn for the whole ensemble (vectorised,
    keyed per model), the forward and backward slice by slice. fast: the step's forward and backward through
    model.forward_fast (one autograd node, merged weight products); False: model.forward, the plain path it is
    tested equal to (within 1e-5 relative)."""
    E, B, steps, n_probe = len(cfgs), *(shared_value(cfgs, k) for k in ("B", "steps", "n_probe"))
    probe_chunk = models_per_slice(cfgs, device, n_probe) if chunk is None else chunk
    chunk = models_per_slice(cfgs, device, B) if chunk is None else chunk
    params = init_params(cfgs, rng, device)
    pool = training_pool(cfgs, rng)
    n_pool = torch.tensor([c.n_train or (pool.y.shape[1] if pool is not None else 0) for c in cfgs], device=device)
    probe = test_batch(cfgs, rng, 0, n_probe, "probe")

    def batch(step: int) -> Batch:
        if pool is None:
            return synthetic(cfgs, rng, B, "train", step)
        idx = rng.randint(n_pool[:, None], (B,), "minibatch", step).to(device)
        if fast:  # whole rows by index_select (core.batch.take_rows): the same values as gather, faster on CPU
            return Batch(*(take_rows(getattr(pool, k), idx) for k in ("X", "y", "role", "noisy")))
        return pool.rows(idx)

    def loss_fn(p, step):
        b = batch(step)

        def loss_of(q: dict[str, torch.Tensor], models: slice) -> dict[str, torch.Tensor]:
            sub = b if models == slice(0, E) else b.models(models)
            r = rng if models == slice(0, E) else rng.subset(models)  # the same streams as in the whole ensemble
            F = (forward_fast if fast else forward)(q, sub.X, keep_mask(q, sub, list(cfgs)[models], r, "train", step))
            return {"loss": hinge(F, sub.y), "error": sign_error(F, sub.y)}

        return chunked_loss(loss_of, p, E, chunk)

    def probe_fn(p, step):
        def probes_of(q: dict[str, torch.Tensor], models: slice) -> dict[str, torch.Tensor]:
            whole = models == slice(0, E)
            return scores(q, probe if whole else probe.models(models), list(cfgs)[models],
                          rng if whole else rng.subset(models), "probe")

        out = chunked_loss(probes_of, p, E, probe_chunk)  # the trainer calls the probes without gradients
        return {f"probe_{k}" if k in ("error", "loss") else k: v for k, v in out.items()}

    def grade(res):
        test = evaluate(res.params, cfgs)
        metrics = {"test_error": test["error"], "test_loss": test["loss"], "attn_rel": test["attn_rel"],
                   "attn_sp": test["attn_sp"]}
        if pool is not None:  # the model's own N training examples (the first n_train of the pool), not the last batch
            with torch.no_grad():
                s = keep_mask(res.params, pool, cfgs, rng, "train_eval")
                F = forward(res.params, pool.X, s)
            own = (torch.arange(pool.y.shape[1], device=device)[None] < n_pool[:, None]).float()  # [E, n_pool]
            metrics["train_loss"] = (torch.clamp(1 - pool.y * F, min=0) * own).sum(1) / own.sum(1)
            metrics["train_error"] = ((~(pool.y * F > 0)).float() * own).sum(1) / own.sum(1)
        return metrics

    return Training(params, TRAINABLE, loss_fn, scalar_tensor(cfgs, "lr", device), steps, grade, probes=probe_fn,
                    curve_points=shared_value(cfgs, "curve_points"))
