"""The GPT-2 model on the ICL prompts: its score (error, hinge loss, per-layer same-pattern attention, Figs. 11-13)
for the shared evaluation loop (shared.icl_evaluation, also icl's), and MLP-neuron pruning (Figs. 19-20)."""
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
from theorylab.studies.icl_gpt2.model import forward, neuron_embeddings, prune_neurons


@torch.no_grad()
def evaluate(params: dict[str, torch.Tensor], cfgs: Sequence, world: World, *, alpha_test=None,
             L: int | None = None, n: int | None = None, stream: tuple = ("eval",)) -> dict[str, torch.Tensor]:
    """error, loss and attn_same.{l} (per layer, head mean) [E] on fresh prompts of `world`
    (shared.icl_evaluation draws them in fixed blocks keyed per model)."""
    heads = shared_value(cfgs, "n_head")

    def score(p, pr):
        F, probes = forward(p, pr.C, pr.Q, heads, probes=True)
        out = {"error": error(F, pr.z), "loss": hinge(F, pr.z)}
        for k, v in probes.items():
            if k.startswith("attn."):
                out[f"attn_same.{k[5:]}"] = same_pattern_mass(v, pr.ctx_pattern, pr.query_pattern)
        return out

    width = shared_value(cfgs, "n_embd") * (4 + shared_value(cfgs, "n_inner_mult")) * shared_value(cfgs, "n_layer")
    return evaluate_prompts(params, cfgs, world, score, width, alpha_test=alpha_test, L=L, n=n, stream=stream)


def error_vs_length(params, cfgs, world, lengths: Sequence[int], alpha_test=None, n=None, stream=("curve",)):
    """{L: error [E]} for each test prompt length."""
    return _error_vs_length(evaluate, params, cfgs, world, lengths, alpha_test, n, stream)


def pruning_masks(params: dict[str, torch.Tensor], d_X: int, rate: float, how: str, rng: EnsembleRNG | None = None,
                  stream: tuple = ()) -> list[torch.Tensor]:
    """keep [E, m] per layer: remove round(rate m) MLP neurons of every layer, those with the smallest ('smallest')
    or largest ('largest') input-weight norm |(W_1)_{:, i}| (a row of W_O, Fig. 19), or uniformly at random."""
    masks = []
    for l, emb in enumerate(neuron_embeddings(params, d_X)):
        norms = emb["in_norm"]  # [E, m]
        E, m = norms.shape
        k = int(round(rate * m))
        if how == "random":
            assert rng is not None, "random pruning needs an rng"
            score = rng.uniform((m,), "prune", l, *stream).to(norms.device)
        elif how in ("smallest", "largest"):
            score = norms if how == "smallest" else -norms
        else:
            raise ValueError(f"pruning order must be smallest, largest or random (got {how!r})")
        order = torch.argsort(score, dim=-1)  # the first k are removed
        keep = torch.ones(E, m, dtype=torch.bool, device=norms.device)
        keep.scatter_(1, order[:, :k], False)
        masks.append(keep)
    return masks


def pruned(params, d_X: int, rate: float, how: str, rng=None, stream=()) -> dict[str, torch.Tensor]:
    return prune_neurons(params, pruning_masks(params, d_X, rate, how, rng, stream))
