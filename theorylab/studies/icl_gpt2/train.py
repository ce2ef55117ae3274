"""What an ensemble of GPT-2 models trains on. task='icl' (here): hinge loss on the query read-out, AdamW (the spec's
GPT-2 optimiser, core.train.AdamW with per-model lr), fresh prompts every step; curves: per-layer attention on
same-pattern contexts (OOD probe prompts) and per-layer neuron label-embedding norms along training (Figs. 11-16);
graded on in-domain and out-of-domain test tasks. task='cot': cot_task.py. core.protocol runs the loop."""
from __future__ import annotations

from collections.abc import Sequence

import torch

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


def training(cfgs: Sequence, rng: EnsembleRNG, device: torch.device) -> Training:
    """The config's task: the ICL prompts (below) or the CoT task (cot_task.training)."""
    if shared_value(cfgs, "task") == "cot":
        from theorylab.studies.icl_gpt2.cot_task import training as cot_training
        return cot_training(cfgs, rng, device)
    params = init_params(cfgs, rng, device)
    world = seen_world(cfgs, device)
    alpha = scalar_tensor(cfgs, "alpha", device)
    B, L, steps, heads, d_X = (shared_value(cfgs, k) for k in ("B", "l_tr", "steps", "n_head", "d_X"))

    marks = set(curve_steps(steps, shared_value(cfgs, "curve_points")))

    def loss_fn(p, step):
        pr = sample_prompts(world, rng, alpha, B, L, "train", step)
        F = forward(p, pr.C, pr.Q, heads)
        out = {"loss": hinge(F, pr.z)}
        if step in marks:  # a curve: computed only where core's trainer records it
            out["error"] = error(F.detach(), pr.z)
        return out

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
