"""Evaluation and probes of trained ICL ensembles: errors on unseen in-domain and out-of-domain tasks,
attention concentration (Prop. 1), neuron embeddings (Prop. 2), W_O row pruning (Thm 3)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import shared_value
from theorylab.core.losses import hinge
from theorylab.core.losses import sign_error as error
from theorylab.core.rng import EnsembleRNG
from theorylab.shared.icl_evaluation import error_vs_length as _error_vs_length
from theorylab.shared.icl_evaluation import evaluate_prompts, same_pattern_mass
from theorylab.shared.icl_prompts import World
from theorylab.studies.icl.config import ICLConfig
from theorylab.studies.icl.model import forward


@torch.no_grad()
def evaluate(params: dict[str, torch.Tensor], cfgs: Sequence[ICLConfig], world: World, *, alpha_test=None,
             L: int | None = None, n: int | None = None, stream: tuple = ("eval",)) -> dict[str, torch.Tensor]:
    """Error, hinge loss and same-pattern attention mass [E] on fresh test prompts of `world`
    (shared.icl_evaluation draws them in fixed blocks keyed per model)."""
    attend_query = shared_value(cfgs, "attend_query")

    def score(p, pr):
        F, probes = forward(p, pr.C, pr.Q, attend_query, probes=True)
        return {"error": error(F, pr.z), "loss": hinge(F, pr.z),
                "attn_same": same_pattern_mass(probes["attn"], pr.ctx_pattern, pr.query_pattern)}

    D = world.relevant.shape[-1] + world.q.shape[0]
    return evaluate_prompts(params, cfgs, world, score, D, alpha_test=alpha_test, L=L, n=n, stream=stream)


def error_vs_length(params, cfgs, world, lengths: Sequence[int], alpha_test=None, n=None, stream=("curve",)):
    """{L: error [E]} for each test prompt length."""
    return _error_vs_length(evaluate, params, cfgs, world, lengths, alpha_test, n, stream)


def neuron_embeddings(params: dict[str, torch.Tensor], cfgs: Sequence[ICLConfig]) -> dict[str, torch.Tensor]:
    """Rows w_i of W_O W_V [E, m, D], split into feature part (first d_X) and label part (last d_Y):
    norms and angles to mu_bar (mean IDR pattern) and to q (section 1.7, probe 3)."""
    d_X, M1 = shared_value(cfgs, "d_X"), shared_value(cfgs, "M1")
    rows = params["W_O"] @ params["W_V"]  # [E, m, D]
    feat, lab = rows[..., :d_X], rows[..., d_X:]
    mu_bar = torch.zeros(d_X, device=rows.device)
    mu_bar[:M1] = 1.0 / M1
    q = torch.zeros(lab.shape[-1], device=rows.device)
    q[0] = 1.0

    def angle(v: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        cos = (v @ ref) / (v.norm(dim=-1) * ref.norm()).clamp_min(1e-12)
        return torch.arccos(cos.clamp(-1, 1))

    return {"feature_norm": feat.norm(dim=-1), "feature_angle": angle(feat, mu_bar),
            "label_norm": lab.norm(dim=-1), "label_angle": angle(lab, q), "a_sign": torch.sign(params["a"]),
            "row_norm": rows.norm(dim=-1)}


def prune_rows(params: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """Zero the rows of W_O where keep [E, m] is False (neuron pruning, Thm 3)."""
    return {**params, "W_O": params["W_O"] * keep[..., None].to(params["W_O"].dtype)}


def pruning_mask(params: dict[str, torch.Tensor], rate: float, how: str, rng: EnsembleRNG | None = None,
                 stream: tuple = ()) -> torch.Tensor:
    """keep [E, m]: remove round(rate m) rows of W_O, chosen by `how`: 'smallest' / 'largest' row norm
    (magnitude pruning), 'smallest_balanced' (smallest norms taken alternately from the a_i > 0 and a_i < 0
    rows, so both read-out signs lose as many), or 'random'."""
    E, m, _ = params["W_O"].shape
    k = int(round(rate * m))
    norms = params["W_O"].norm(dim=-1)
    if how == "random":
        assert rng is not None, "random pruning needs an rng"
        score = rng.uniform((m,), "prune", *stream).to(params["W_O"].device)
    elif how == "smallest_balanced":
        pos = params["a"] > 0
        rank_in_sign = torch.zeros_like(norms)
        for group in (pos, ~pos):  # rank by norm inside each sign group; equal ranks alternate groups
            masked = torch.where(group, norms, torch.inf)
            rank_in_sign = torch.where(group, masked.argsort(-1).argsort(-1).float(), rank_in_sign)
        score = rank_in_sign + norms / (norms.max() + 1) * 0.5
    elif how in ("smallest", "largest"):
        score = norms if how == "smallest" else -norms
    else:
        raise ValueError(f"pruning order must be smallest, smallest_balanced, largest or random (got {how!r})")
    order = torch.argsort(score, dim=-1)  # the first k are removed
    keep = torch.ones(E, m, dtype=torch.bool, device=params["W_O"].device)
    keep.scatter_(1, order[:, :k], False)
    return keep
