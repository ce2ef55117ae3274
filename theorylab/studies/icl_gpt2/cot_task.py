"""The CoT task on the GPT-2 backbone (task='cot', handed here by train.training; spec section 2.5 C9): the cot
study's prompts (shared.cot_reasoning), one column per token, a d_X read-out at the query token, half squared loss,
AdamW; CoT inference by greedy step-by-step decoding, ICL inference as one step without intermediate steps
(section 2.4)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.batch import gather_rows
from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value
from theorylab.core.evaluate import mean_over_blocks
from theorylab.core.protocol import Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import AdamW, curve_steps
from theorylab.shared.cot_reasoning import Reasoning, eval_reasoning, icl_prompts, step_prompts, training_prompts
from theorylab.studies.icl_gpt2.model import forward, init_params

TEST_FIELDS = ("alpha_test", "p_correct", "rho", "noise", "overlap")


def decode(F: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """v = argmin_u 1/2 |F - u|^2 over the patterns: F [E, B, d_X], patterns [E, M, d_X] -> [E, B]; non-finite -> -1."""
    v = torch.cdist(F, patterns).argmin(-1)
    return torch.where(torch.isfinite(F).all(-1), v, -1)


def cot_decode(params, r: Reasoning, heads: int) -> torch.Tensor:
    """Greedy CoT: v [E, B, K], each v_k (clean pattern) fed back as the next query input."""
    K = r.tokens.shape[3] - 1
    qt, qi = r.query_tokens[:, :, :K].clone(), r.query_ids[:, :, :K].clone()
    out = []
    for k in range(1, K + 1):
        pr = step_prompts(r, k, qt, qi)
        v = decode(forward(params, pr.C, pr.Q, heads, mask=pr.mask), r.patterns)
        out.append(v)
        if k < K:
            qi[:, :, k] = v.clamp_min(0)  # a non-finite output (-1) feeds back pattern 0
            qt[:, :, k] = gather_rows(r.patterns, qi[:, :, k])  # v_k, clean
    return torch.stack(out, -1)


def icl_decode(params, r: Reasoning, heads: int) -> torch.Tensor:
    pr = icl_prompts(r)
    return decode(forward(params, pr.C, pr.Q, heads, mask=pr.mask), r.patterns)


@torch.no_grad()
def evaluate(params, cfgs: Sequence, L: int, *, n: int | None = None, stream: tuple = ("eval",),
             **overrides) -> dict[str, torch.Tensor]:
    """[E] each on n fresh test prompts with L examples: cot (mean over steps of 1[v_k != z_k]), icl (1[v != z_K])."""
    E = len(cfgs)
    dev = params["wpe"].device
    n = n or shared_value(cfgs, "n_test")
    heads, K, D = shared_value(cfgs, "n_head"), shared_value(cfgs, "K"), shared_value(cfgs, "n_embd")
    rng = rng_for(cfgs, dev)
    tensors = {k: torch.as_tensor(v, dtype=torch.float32, device=dev).expand(E) for k, v in overrides.items()
               if k in TEST_FIELDS}
    rest = {k: v for k, v in overrides.items() if k not in TEST_FIELDS}

    def block(models: slice, i: int, count: int) -> dict[str, torch.Tensor]:
        r = eval_reasoning(cfgs[models], rng.subset(models), count, L, *stream, L, i,
                           **{k: v[models] for k, v in tensors.items()}, **rest)
        p = {k: v[models] for k, v in params.items()}
        wrong = (cot_decode(p, r, heads) != r.query_ids[:, :, 1:]).float()  # [e, B, K]
        icl = (icl_decode(p, r, heads) != r.query_ids[:, :, K]).float()
        return {"cot": wrong.mean((-1, -2)), "icl": icl.mean(-1)}

    return mean_over_blocks(E, n, (L + 1) * K * D * 16, block)


def training(cfgs: Sequence, rng: EnsembleRNG, device: torch.device) -> Training:
    """task='cot': fresh CoT training prompts each step, half squared loss on the step's target pattern, AdamW;
    graded by CoT and ICL inference at l_ts examples."""
    params = init_params(cfgs, rng, device)
    B, steps, heads = (shared_value(cfgs, k) for k in ("B", "steps", "n_head"))

    marks = set(curve_steps(steps, shared_value(cfgs, "curve_points")))

    def loss_fn(p, step):
        pr, patterns = training_prompts(cfgs, rng, B, "train", step, with_patterns=True)
        F = forward(p, pr.C, pr.Q, heads, mask=pr.mask)  # [E, B, d_X]
        z = gather_rows(patterns, pr.target)  # z_k                                              [E, B, d_X]
        out = {"loss": 0.5 * ((F - z) ** 2).sum(-1).mean(-1)}
        if step in marks:  # a curve: computed only where core's trainer records it
            out["error"] = (decode(F.detach(), patterns) != pr.target).float().mean(-1)
        return out

    def grade(res):
        ev = evaluate(res.params, cfgs, shared_value(cfgs, "l_ts"), stream=("final",))
        return {"cot_error": ev["cot"], "icl_error": ev["icl"]}

    return Training(params, list(params), loss_fn, scalar_tensor(cfgs, "lr", device), steps, grade,
                    what="AdamW steps (CoT task)", optimizer=AdamW(weight_decay=shared_value(cfgs, "weight_decay")),
                    curve_points=shared_value(cfgs, "curve_points"))
