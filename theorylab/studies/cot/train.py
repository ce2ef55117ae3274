"""What an ensemble of CoT models trains on (section 2.3): squared loss, plain SGD, fresh training prompts each
step; probes along training: attention mass by category on test prompts, the W_K^T W_Q blocks (section 2.7);
graded by CoT and ICL inference on test prompts (section 2.4). core.protocol runs the loop."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.batch import gather_rows
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.protocol import Training
from theorylab.core.train import curve_steps
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.cot.config import CoTConfig
from theorylab.shared.cot_reasoning import eval_reasoning, training_basis, training_columns
from theorylab.studies.cot.evaluate import CATEGORIES, attention_by_category, evaluate, wk_wq_blocks
from theorylab.studies.cot.model import (decode, forward_basis, forward_columns, half_squared_loss, init_params,
                                         trainable)

PROBE_PROMPTS = 128  # test prompts (l = l_tr examples) on which the attention categories are tracked
CATEGORY_KEYS = ("attn_ss", "attn_sd", "attn_ds", "attn_dd")  # the CATEGORIES, in order


def training(cfgs: Sequence[CoTConfig], rng: EnsembleRNG, device: torch.device) -> Training:
    params = init_params(cfgs, device)
    steps, B, M, K, l_tr = (shared_value(cfgs, k) for k in ("steps", "B", "M", "K", "l_tr"))
    probe = eval_reasoning(cfgs, rng, PROBE_PROMPTS, l_tr, "probe")  # the default test world (TSR, noisy)
    marks = set(curve_steps(steps, shared_value(cfgs, "curve_points")))
    # W_V frozen at [0, I] (the default): training_basis + forward_basis, training_columns + forward_columns' numbers
    # bit for bit in a fraction of the time (tests/studies/cot/test_cot_speed.py; profile in docs/studies/cot.md)
    basis = not shared_value(cfgs, "train_W_V")
    batch, fwd = (training_basis, forward_basis) if basis else (training_columns, forward_columns)

    def loss_fn(p, step):
        # the batch as pattern indices (training tokens are clean patterns): forward_basis / forward_columns read
        # them through w or M-long tables; training_prompts + forward build the [E, B, N, 2 d_X] context for the
        # same numbers (tests/studies/cot/test_cot_speed.py), which took 95% of the step (docs/studies/cot.md)
        cols = batch(cfgs, rng, B, "train", step)
        F = fwd(p, cols)
        z = gather_rows(cols.patterns, cols.target)  # z_k                                       [E, B, d_X]
        out = {"loss": half_squared_loss(F, z)}
        if step in marks:  # a curve: computed only where core's trainer records it
            out["train_error"] = (decode(F.detach(), cols.patterns) != cols.target).float().mean(-1)
        return out

    def probe_fn(p, step):
        by_step = attention_by_category(p, probe)  # [E, K, 4]
        mass = by_step.mean(1)  # [E, 4], mean over steps
        blocks = wk_wq_blocks(p, M, K)
        return {**{key: mass[:, i] for i, key in enumerate(CATEGORY_KEYS)},
                **{f"attn_ss_step{k + 1}": v for k, v in enumerate(by_step[:, :, 0].T)},
                "block_positional": blocks["positional"], "block_pattern": blocks["pattern"]}

    def grade(res):
        ev = evaluate(res.params, cfgs, shared_value(cfgs, "l_ts"), stream=("final",), attention=True)
        return {"cot_error": ev["cot"], "icl_error": ev["icl"], "attn_same_same": ev["attn_same_same"],
                "train_error": res.curves["train_error"][-1]}

    return Training(params, trainable(cfgs), loss_fn, scalar_tensor(cfgs, "lr", device), steps, grade,
                    probes=probe_fn, curve_points=shared_value(cfgs, "curve_points"))


assert len(CATEGORY_KEYS) == len(CATEGORIES)
