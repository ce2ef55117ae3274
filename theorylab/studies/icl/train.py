"""What an ensemble of ICL models trains on (section 1.3): hinge loss, plain SGD, fresh or fixed prompts;
graded on unseen in-domain and on out-of-domain tasks. core.protocol runs the loop."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.batch import gather_rows
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.protocol import Training
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.icl.config import ICLConfig
from theorylab.shared.icl_prompts import Prompts, compile_sampler, in_domain_world, sample_prompts, split_tasks
from theorylab.shared.icl_evaluation import ood_world, same_pattern_mass, unseen_world
from theorylab.studies.icl.evaluate import evaluate
from theorylab.core.losses import hinge
from theorylab.core.losses import sign_error as error
from theorylab.studies.icl.model import TRAINABLE, forward, init_params

PROBE_PROMPTS = 256  # prompts used to track attention concentration along training



def _subset(p: Prompts, idx: torch.Tensor) -> Prompts:
    return Prompts(*(gather_rows(t, idx) for t in (p.C, p.Q, p.z, p.ctx_pattern, p.query_pattern, p.task)))


def training(cfgs: Sequence[ICLConfig], rng: EnsembleRNG, device: torch.device) -> Training:
    params = init_params(cfgs, rng, device)
    world = in_domain_world(cfgs, device, split_tasks(cfgs[0])[0])
    alpha, lr = scalar_tensor(cfgs, "alpha", device), scalar_tensor(cfgs, "lr", device)
    B, L, steps, n_train = (shared_value(cfgs, k) for k in ("B", "l_tr", "steps", "n_train"))
    attend_query = shared_value(cfgs, "attend_query")
    pool = sample_prompts(world, rng, alpha, n_train, L, "pool") if n_train else None

    last: Prompts | None = None  # the previous batch: its buffers take the next one (nothing else reads them)
    compiled = pool is None and compile_sampler(len(cfgs), B, L, steps)  # same prompts either way (core/fast.py)

    def batch(step: int) -> Prompts:
        nonlocal last
        if pool is None:
            last = sample_prompts(world, rng, alpha, B, L, "train", step, reuse=last, compiled=compiled)
            return last
        return _subset(pool, rng.randint(n_train, (B,), "minibatch", step).to(device))

    def loss_fn(p, step):
        pr = batch(step)
        F = forward(p, pr.C, pr.Q, attend_query)
        return {"loss": hinge(F, pr.z), "error": error(F, pr.z)}

    # fixed probe prompts: attention concentration on unseen in-domain and on out-of-domain tasks (Prop. 1)
    alpha_test = scalar_tensor(cfgs, "alpha_test", device)
    probe_sets = {"id": sample_prompts(unseen_world(cfgs, device), rng, alpha_test, PROBE_PROMPTS, L, "probe", "id"),
                  "ood": sample_prompts(ood_world(cfgs, device), rng, alpha_test, PROBE_PROMPTS, L, "probe", "ood")}

    def probe_fn(p, step):
        out = {}
        for name, pr in probe_sets.items():
            _, pb = forward(p, pr.C, pr.Q, attend_query, probes=True)
            out[f"attn_same_{name}"] = same_pattern_mass(pb["attn"], pr.ctx_pattern, pr.query_pattern)
        pr = probe_sets["id"]
        u = torch.einsum("eij,ebj->ebi", p["W_Q"], pr.Q)  # W_Q p_query
        mu = torch.gather(world.relevant, 1, pr.query_pattern[..., None].expand(-1, -1, world.relevant.shape[-1]))
        out["qproj_norm"] = u.norm(dim=-1).mean(-1)
        out["qproj_on_pattern"] = (u[..., : mu.shape[-1]] * mu).sum(-1).div(mu.norm(dim=-1)).mean(-1)
        return out

    def grade(res):
        id_eval = evaluate(res.params, cfgs, unseen_world(cfgs, device), stream=("final", "id"))
        ood_eval = evaluate(res.params, cfgs, ood_world(cfgs, device), stream=("final", "ood"))
        return {**{f"id_{k}": id_eval[k] for k in ("error", "loss")}, **{f"ood_{k}": ood_eval[k] for k in ("error", "loss")},
                "attn_same_id": id_eval["attn_same"], "attn_same_ood": ood_eval["attn_same"]}

    return Training(params, TRAINABLE, loss_fn, lr, steps, grade, probes=probe_fn,
                    curve_points=shared_value(cfgs, "curve_points"))
