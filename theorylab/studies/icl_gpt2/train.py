"""Training an ensemble of GPT-2 ICL models: hinge loss on the query read-out, AdamW (the spec's GPT-2 optimiser,
core.train.AdamW with per-model lr), fresh prompts every step. Curves: per-layer attention on same-pattern contexts
(OOD probe prompts) and per-layer neuron label-embedding norms along training (Figs. 11-16)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value
from theorylab.core.losses import hinge
from theorylab.core.losses import sign_error as error
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult, group_result
from theorylab.core.train import AdamW, train_ensemble
from theorylab.shared.icl_prompts import sample_prompts
from theorylab.shared.icl_evaluation import id_world, ood_world, same_pattern_mass, seen_world
from theorylab.studies.icl_gpt2.evaluate import evaluate
from theorylab.studies.icl_gpt2.model import forward, init_params, neuron_embeddings, shapes

PROBE_PROMPTS = 256  # prompts used to track attention along training



def train_group(cfgs: Sequence, device: torch.device, bars: Bars) -> GroupResult:
    if shared_value(cfgs, "task") == "cot":
        from theorylab.studies.icl_gpt2.cot_task import train_group as train_cot
        return train_cot(cfgs, device, bars)
    E = len(cfgs)
    rng = rng_for(cfgs, device)
    params = init_params(cfgs, rng, device)
    world = seen_world(cfgs, device)
    alpha, lr = scalar_tensor(cfgs, "alpha", device), scalar_tensor(cfgs, "lr", device)
    B, L, steps, heads, d_X = (shared_value(cfgs, k) for k in ("B", "l_tr", "steps", "n_head", "d_X"))
    opt = AdamW(weight_decay=shared_value(cfgs, "weight_decay"))

    def loss_fn(p, step):
        pr = sample_prompts(world, rng, alpha, B, L, "train", step)
        F = forward(p, pr.C, pr.Q, heads)
        return {"loss": hinge(F, pr.z), "error": error(F, pr.z)}

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

    trainable = list(params)
    with bars.task(f"icl_gpt2: {E} model(s) x {steps} AdamW steps", steps, models=E) as advance:
        res = train_ensemble(params, trainable, loss_fn, lr, steps, optimizer=opt, probe_fn=probe_fn,
                             curve_points=shared_value(cfgs, "curve_points"), on_step=advance)

    id_eval = evaluate(res.params, cfgs, id_world(cfgs, device), stream=("final", "id"))
    ood_eval = evaluate(res.params, cfgs, ood_world(cfgs, device), stream=("final", "ood"))
    metrics = {**{f"id_{k}": id_eval[k] for k in ("error", "loss")}, **{f"ood_{k}": ood_eval[k] for k in ("error", "loss")},
               **{f"ood_{k}": v for k, v in ood_eval.items() if k.startswith("attn_same")},
               "train_loss": res.curves["loss"][-1]}
    return group_result(res.params, metrics, [res.model_curves(e) for e in range(E)], res.diverged_at, res.seconds)
