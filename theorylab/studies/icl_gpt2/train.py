"""What an ensemble of GPT-2 models trains on. task='icl' (here): hinge loss on the query read-out, AdamW (the spec's
GPT-2 optimiser, core.train.AdamW with per-model lr), fresh prompts every step; curves: per-layer attention on
same-pattern contexts (OOD probe prompts) and per-layer neuron label-embedding norms along training (Figs. 11-16);
graded on in-domain and out-of-domain test tasks. task='cot': cot_task.py. core.protocol runs the loop."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.chunked import chunked_loss
from theorylab.core.chunked import models_per_slice as cache_models
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.losses import hinge
from theorylab.core.losses import sign_error as error
from theorylab.core.protocol import Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import AdamW, curve_steps
from theorylab.shared.icl_prompts import sample_prompts
from theorylab.shared.icl_evaluation import id_world, ood_world, same_pattern_mass, seen_world
from theorylab.studies.icl_gpt2.evaluate import evaluate
from theorylab.studies.icl_gpt2.model import forward, init_params, neuron_embeddings

PROBE_PROMPTS = 256  # prompts used to track attention along training


def models_per_slice(cfgs: Sequence, device: torch.device) -> int:
    """Models per slice of the training step (core.chunked): on a CPU as many as keep the MLP's hidden layer
    [., B, L+1, m] near one core's cache; elsewhere all at once."""
    B, L, D, k = (shared_value(cfgs, f) for f in ("B", "l_tr", "n_embd", "n_inner_mult"))
    return cache_models(B * (L + 1) * k * D, len(cfgs), device)


def training(cfgs: Sequence, rng: EnsembleRNG, device: torch.device, chunk: int | None = None) -> Training:
    """The config's task: the ICL prompts (below) or the CoT task (cot_task.training). chunk: models per slice of
    the step (default models_per_slice; len(cfgs): the whole ensemble at once, the plain computation the sliced
    one is tested equal to, bit for bit). The profile at E = 64 (quick config, 1 thread): the whole ensemble's MLP
    layer [64, B (L+1), 4 D] is 44 MB, and its up-projection, bias, GELU and GELU backward, each a pass through
    main memory, took over half the step; a slice of a few models keeps it in cache."""
    if shared_value(cfgs, "task") == "cot":
        from theorylab.studies.icl_gpt2.cot_task import training as cot_training
        return cot_training(cfgs, rng, device)
    params = init_params(cfgs, rng, device)
    world = seen_world(cfgs, device)
    alpha = scalar_tensor(cfgs, "alpha", device)
    B, L, steps, heads, d_X = (shared_value(cfgs, k) for k in ("B", "l_tr", "steps", "n_head", "d_X"))

    marks = set(curve_steps(steps, shared_value(cfgs, "curve_points")))

    E = len(cfgs)
    chunk = models_per_slice(cfgs, device) if chunk is None else chunk

    def loss_fn(p, step):
        pr = sample_prompts(world, rng, alpha, B, L, "train", step)

        def loss_of(q: dict[str, torch.Tensor], models: slice) -> dict[str, torch.Tensor]:
            F = forward(q, pr.C[models], pr.Q[models], heads)
            out = {"loss": hinge(F, pr.z[models])}
            if step in marks:  # a curve: computed only where core's trainer records it
                out["error"] = error(F.detach(), pr.z[models])
            return out

        return chunked_loss(loss_of, p, E, chunk)

    alpha_test = scalar_tensor(cfgs, "alpha_test", device)
    probe = sample_prompts(ood_world(cfgs, device), rng, alpha_test, PROBE_PROMPTS, L, "probe", "ood")

    @torch.no_grad()
    def probe_fn(p, step):
        _, pb = forward(p, probe.C, probe.Q, heads, probes=True)
        out = {}
        for l, emb in enumerate(neuron_embeddings(p, d_X)):
            out[f"attn_same_ood.{l}"] = same_pattern_mass(pb[f"attn.{l}"], probe.ctx_pattern, probe.query_pattern)
            out[f"label_norm_median.{l}"] = emb["label_norm"].median(-1).values
        return out

    def grade(res):
        id_eval = evaluate(res.params, cfgs, id_world(cfgs, device), stream=("final", "id"))
        ood_eval = evaluate(res.params, cfgs, ood_world(cfgs, device), stream=("final", "ood"))
        return {**{f"id_{k}": id_eval[k] for k in ("error", "loss")},
                **{f"ood_{k}": ood_eval[k] for k in ("error", "loss")},
                **{f"ood_{k}": v for k, v in ood_eval.items() if k.startswith("attn_same")}}

    return Training(params, list(params), loss_fn, scalar_tensor(cfgs, "lr", device), steps, grade,
                    what="AdamW steps", optimizer=AdamW(weight_decay=shared_value(cfgs, "weight_decay")),
                    probes=probe_fn, curve_points=shared_value(cfgs, "curve_points"))
