"""Training an ensemble of ICL models (section 1.3): hinge loss, plain SGD, fresh or fixed prompts."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult, group_result
from theorylab.core.train import train_ensemble
from theorylab.studies.icl.config import ICLConfig
from theorylab.shared.icl_prompts import Prompts, compile_sampler, in_domain_world, sample_prompts, split_tasks
from theorylab.shared.icl_evaluation import ood_world, same_pattern_mass, unseen_world
from theorylab.studies.icl.evaluate import evaluate
from theorylab.core.losses import hinge
from theorylab.core.losses import sign_error as error
from theorylab.studies.icl.model import TRAINABLE, forward, init_params

PROBE_PROMPTS = 256  # prompts used to track attention concentration along training


def bytes_per_model(cfg: ICLConfig) -> int:
    """Rough peak memory of one model in training (prompts, activations, grads), for auto-chunking."""
    prompt = cfg.B * (cfg.l_tr + 1) * cfg.d * 4
    pool = cfg.n_train * (cfg.l_tr + 1) * cfg.d * 4
    weights = (3 * cfg.d * cfg.d + cfg.m * cfg.d) * 4
    return 12 * prompt + pool + 6 * weights + cfg.B * cfg.m * 4 * 4


def _subset(p: Prompts, idx: torch.Tensor) -> Prompts:
    take = lambda t: torch.gather(t, 1, idx.reshape(*idx.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:]))
    return Prompts(*(take(t) for t in (p.C, p.Q, p.z, p.ctx_pattern, p.query_pattern, p.task)))


def train_group(cfgs: Sequence[ICLConfig], device: torch.device, bars: Bars) -> GroupResult:
    E = len(cfgs)
    rng = rng_for(cfgs, device)
    params = init_params(cfgs, rng, device)
    world = in_domain_world(cfgs, device, split_tasks(cfgs[0])[0])
    alpha, lr = scalar_tensor(cfgs, "alpha", device), scalar_tensor(cfgs, "lr", device)
    B, L, steps, n_train = (shared_value(cfgs, k) for k in ("B", "l_tr", "steps", "n_train"))
    attend_query = shared_value(cfgs, "attend_query")
    pool = sample_prompts(world, rng, alpha, n_train, L, "pool") if n_train else None

    last: Prompts | None = None  # the previous batch: its buffers take the next one (nothing else reads them)
    compiled = pool is None and compile_sampler(E, B, L, steps)  # same prompts either way (core/fast.py)

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

    with bars.task(f"icl: {E} model(s) x {steps} SGD steps", steps, models=E) as advance:
        res = train_ensemble(params, TRAINABLE, loss_fn, lr, steps, probe_fn=probe_fn,
                             curve_points=shared_value(cfgs, "curve_points"), on_step=advance)

    id_eval = evaluate(res.params, cfgs, unseen_world(cfgs, device), stream=("final", "id"))
    ood_eval = evaluate(res.params, cfgs, ood_world(cfgs, device), stream=("final", "ood"))
    metrics = {**{f"id_{k}": id_eval[k] for k in ("error", "loss")}, **{f"ood_{k}": ood_eval[k] for k in ("error", "loss")},
               "attn_same_id": id_eval["attn_same"], "attn_same_ood": ood_eval["attn_same"],
               "train_loss": res.curves["loss"][-1]}
    return group_result(res.params, metrics, [res.model_curves(e) for e in range(E)], res.diverged_at, res.seconds)
