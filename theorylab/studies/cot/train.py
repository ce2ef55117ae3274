"""Training an ensemble of CoT models (section 2.3): squared loss, plain SGD, fresh training prompts each step;
probes along training: attention mass by category on test prompts, the W_K^T W_Q blocks (section 2.7)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult, group_result
from theorylab.core.train import train_ensemble
from theorylab.studies.cot.config import CoTConfig
from theorylab.shared.cot_reasoning import eval_reasoning, training_prompts
from theorylab.studies.cot.evaluate import CATEGORIES, attention_by_category, evaluate, wk_wq_blocks
from theorylab.studies.cot.model import decode, forward, half_squared_loss, init_params, trainable

PROBE_PROMPTS = 128  # test prompts (l = l_tr examples) on which the attention categories are tracked
CATEGORY_KEYS = ("attn_ss", "attn_sd", "attn_ds", "attn_dd")  # the CATEGORIES, in order



def train_loss_fn(cfgs: Sequence[CoTConfig], device):
    """loss_fn(params, step) of section 2.3 on fresh training prompts (shared with the bench)."""
    rng = rng_for(cfgs, device)
    B = shared_value(cfgs, "B")

    def loss_fn(p, step):
        pr, patterns = training_prompts(cfgs, rng, B, "train", step, with_patterns=True)
        F = forward(p, pr.C, pr.mask, pr.Q)
        z = torch.gather(patterns, 1, pr.target[..., None].expand(-1, -1, patterns.shape[-1]))  # [E, B, d_X]
        return {"loss": half_squared_loss(F, z), "train_error": (decode(F, patterns) != pr.target).float().mean(-1)}
    return loss_fn


def train_group(cfgs: Sequence[CoTConfig], device: torch.device, bars: Bars) -> GroupResult:
    E = len(cfgs)
    rng = rng_for(cfgs, device)
    params = init_params(cfgs, device)
    lr = scalar_tensor(cfgs, "lr", device)
    steps, M, K, l_tr = (shared_value(cfgs, k) for k in ("steps", "M", "K", "l_tr"))
    probe = eval_reasoning(cfgs, rng, PROBE_PROMPTS, l_tr, "probe")  # the default test world (TSR, noisy)

    def probe_fn(p, step):
        by_step = attention_by_category(p, probe)  # [E, K, 4]
        mass = by_step.mean(1)  # [E, 4], mean over steps
        blocks = wk_wq_blocks(p, M, K)
        return {**{key: mass[:, i] for i, key in enumerate(CATEGORY_KEYS)},
                **{f"attn_ss_step{k + 1}": v for k, v in enumerate(by_step[:, :, 0].T)},
                "block_positional": blocks["positional"], "block_pattern": blocks["pattern"]}

    with bars.task(f"cot: {E} model(s) x {steps} SGD steps", steps, models=E) as advance:
        res = train_ensemble(params, trainable(cfgs), train_loss_fn(cfgs, device), lr, steps, probe_fn=probe_fn,
                             curve_points=shared_value(cfgs, "curve_points"), on_step=advance)

    ev = evaluate(res.params, cfgs, shared_value(cfgs, "l_ts"), stream=("final",), attention=True)
    metrics = {"cot_error": ev["cot"], "icl_error": ev["icl"], "attn_same_same": ev["attn_same_same"],
               "train_loss": res.curves["loss"][-1], "train_error": res.curves["train_error"][-1]}
    return group_result(res.params, metrics, [res.model_curves(e) for e in range(E)], res.diverged_at, res.seconds)


assert len(CATEGORY_KEYS) == len(CATEGORIES)
