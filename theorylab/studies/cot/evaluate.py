"""CoT and ICL inference (section 2.4) and the attention probes (section 2.7) on trained ensembles.

Test prompts are drawn in fixed blocks keyed per model (core.evaluate.mean_over_blocks): a model's numbers
do not depend on the ensemble it is evaluated in. Test-field overrides (alpha_test, p_correct, rho, noise,
overlap: floats or [E] tensors; wrong: 'scatter' / 'converge') change the test prompts only.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.batch import gather_rows
from theorylab.core.ensemble import rng_for, shared_value
from theorylab.core.evaluate import mean_over_blocks
from theorylab.shared.cot_reasoning import Prompts, Reasoning, eval_reasoning, icl_prompts, step_prompts
from theorylab.studies.cot.model import decode, forward, forward_icl, forward_step

CATEGORIES = ("same TSR, same step", "same TSR, diff. step", "diff. TSR, same step", "diff. TSR, diff. step")
TEST_FIELDS = ("alpha_test", "p_correct", "rho", "noise", "overlap")


def _slice(overrides: dict, models: slice, E: int) -> dict:
    out = {}
    for k, v in overrides.items():
        if k in TEST_FIELDS and v is not None:
            out[k] = torch.as_tensor(v, dtype=torch.float32).expand(E)[models]
        elif v is not None:
            out[k] = v
    return out


def cot_decode(params: dict[str, torch.Tensor], r: Reasoning, fast: bool = True) -> torch.Tensor:
    """Greedy step-by-step decoding: v [E, B, K] (each v_k fed back as the next query input, clean).
    fast: each step read from the tokens (model.forward_step, no context written; 3x faster at l = 100); False: the
    built step prompts through forward. Equal within float rounding (tests/studies/cot/test_cot_speed.py)."""
    K = r.tokens.shape[3] - 1
    qt, qi = r.query_tokens[:, :, :K].clone(), r.query_ids[:, :, :K].clone()
    out = []
    for k in range(1, K + 1):
        if fast:
            F = forward_step(params, r, k, qt)
        else:
            pr = step_prompts(r, k, qt, qi)
            F = forward(params, pr.C, pr.mask, pr.Q)
        v = decode(F, r.patterns)
        out.append(v)
        if k < K:
            safe = v.clamp_min(0)
            qi[:, :, k] = safe
            qt[:, :, k] = gather_rows(r.patterns, safe)  # v_k, clean
    return torch.stack(out, -1)


def icl_decode(params: dict[str, torch.Tensor], r: Reasoning, fast: bool = True) -> torch.Tensor:
    """One greedy output per query from the ICL prompt (no intermediate steps): v [E, B]. fast: read from the
    tokens (model.forward_icl); False: the built ICL prompts through forward (equal within float rounding)."""
    if fast:
        return decode(forward_icl(params, r), r.patterns)
    pr = icl_prompts(r)
    return decode(forward(params, pr.C, pr.mask, pr.Q), r.patterns)


def category_mass(attn: torch.Tensor, pr: Prompts) -> torch.Tensor:
    """attn [E, B, N] -> [E, 4]: mean attention mass on the four CATEGORIES (same/diff. input pattern as the
    query's current input z_{k-1}, same/diff. step as the query column)."""
    same_step = pr.col_step[None, None, :] == (pr.k - 1)[..., None]  # [E, B, N]
    same_pat = pr.col_pattern == pr.query_pattern[..., None]
    cats = [same_pat & same_step, same_pat & ~same_step, ~same_pat & same_step, ~same_pat & ~same_step]
    return torch.stack([(attn * c).sum(-1).mean(-1) for c in cats], -1)


@torch.no_grad()
def attention_by_category(params: dict[str, torch.Tensor], r: Reasoning) -> torch.Tensor:
    """[E, K, 4]: attention mass by category at each step k (teacher-forced query chain)."""
    K = r.tokens.shape[3] - 1
    out = []
    for k in range(1, K + 1):
        pr = step_prompts(r, k)
        _, pb = forward(params, pr.C, pr.mask, pr.Q, probes=True)
        out.append(category_mass(pb["attn"], pr))
    return torch.stack(out, 1)


@torch.no_grad()
def evaluate(params: dict[str, torch.Tensor], cfgs: Sequence, L: int, *, n: int | None = None,
             stream: tuple = ("eval",), attention: bool = False, **overrides) -> dict[str, torch.Tensor]:
    """[E] each: CoT error (mean over steps of 1[v_k != z_k]), its last-step error, ICL error (1[v != z_K]),
    and (attention=True) the attention mass on 'same TSR, same step' columns, on n fresh test prompts with l = L examples."""
    E = len(cfgs)
    dev = params["W_Q"].device
    n = n or shared_value(cfgs, "n_test")
    K, d_X = shared_value(cfgs, "K"), shared_value(cfgs, "d_X")
    rng = rng_for(cfgs, dev)

    def block(models: slice, i: int, count: int) -> dict[str, torch.Tensor]:
        sub = [c for c in cfgs[models]]
        r = eval_reasoning(sub, rng.subset(models), count, L, *stream, L, i, **_slice(overrides, models, E))
        p = {k: v[models] for k, v in params.items()}
        v = cot_decode(p, r)
        wrong = (v != r.query_ids[:, :, 1:]).float()  # [e, B, K]
        icl = (icl_decode(p, r) != r.query_ids[:, :, K]).float()
        out = {"cot": wrong.mean((-1, -2)), "cot_last": wrong[..., -1].mean(-1), "icl": icl.mean(-1)}
        if attention:
            out["attn_same_same"] = attention_by_category(p, r)[..., 0].mean(-1)
        return out

    return mean_over_blocks(E, n, (L + 1) * K * 2 * d_X * 4, block)


def error_vs_length(params, cfgs, lengths: Sequence[int], *, n=None, stream=("curve",), **overrides):
    """{L: evaluate(...)} for each number of context examples."""
    return {L: evaluate(params, cfgs, L, n=n, stream=stream, **overrides) for L in lengths}


def wk_wq_blocks(params: dict[str, torch.Tensor], M: int, K: int) -> dict[str, torch.Tensor]:
    """[E] each: the positional and pattern blocks of W = W_K^T W_Q (input half x input half), as contrasts:
    positional = mean diag - mean off-diag of W[c, c'] (same step preferred), pattern = the same on W[mu, mu']."""
    W = params["W_K"].transpose(-1, -2) @ params["W_Q"]  # [E, 2 d_X, 2 d_X]

    def contrast(block: torch.Tensor) -> torch.Tensor:
        n = block.shape[-1]
        diag = torch.diagonal(block, dim1=-2, dim2=-1).mean(-1)
        off = (block.sum((-1, -2)) - diag * n) / max(n * n - n, 1)
        return diag - off

    return {"positional": contrast(W[:, M : M + K, M : M + K]), "pattern": contrast(W[:, :M, :M])}
