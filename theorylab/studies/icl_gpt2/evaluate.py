"""Evaluation of trained GPT-2 ensembles on the ICL prompts: error and hinge loss on unseen in-domain and
out-of-domain tasks, per-layer attention on same-pattern contexts (Figs. 11-13), MLP-neuron pruning (Figs. 19-20)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value
from theorylab.core.evaluate import mean_over_blocks
from theorylab.core.losses import hinge
from theorylab.core.losses import sign_error as error
from theorylab.core.rng import EnsembleRNG
from theorylab.shared.icl_prompts import World, in_domain_world, out_of_domain_world, sample_prompts, split_tasks
from theorylab.studies.icl_gpt2.model import forward, neuron_embeddings, prune_neurons


def id_world(cfgs: Sequence, device) -> World:
    """In-domain test tasks: the unseen ones if the config holds some out, else the training tasks (fresh prompts)."""
    train, unseen = split_tasks(cfgs[0])
    return in_domain_world(cfgs, device, unseen or train)


def seen_world(cfgs: Sequence, device) -> World:
    return in_domain_world(cfgs, device, split_tasks(cfgs[0])[0])


def ood_world(cfgs: Sequence, device, S1: float | None = None) -> World:
    S1t = None if S1 is None else torch.as_tensor(S1, dtype=torch.float32).expand(len(cfgs))
    return out_of_domain_world(cfgs, rng_for(cfgs, device), device, S1t)


def same_pattern_mass(attn: torch.Tensor, ctx_pattern: torch.Tensor, query_pattern: torch.Tensor) -> torch.Tensor:
    """The query row [E, B, H, L+1] of one layer -> [E]: attention on contexts sharing the query's relevant
    pattern, summed over those contexts, averaged over heads and prompts (spec 1.7, per layer for GPT-2)."""
    L = ctx_pattern.shape[-1]
    same = (ctx_pattern == query_pattern[..., None]).float()[:, :, None, :]  # [E, B, 1, L]
    return (attn[..., :L] * same).sum(-1).mean((-1, -2))


@torch.no_grad()
def evaluate(params: dict[str, torch.Tensor], cfgs: Sequence, world: World, *, alpha_test=None,
             L: int | None = None, n: int | None = None, stream: tuple = ("eval",)) -> dict[str, torch.Tensor]:
    """error, loss and attn_same.{l} [E] on fresh prompts of `world`, drawn in fixed blocks keyed per model
    (a model's numbers do not depend on the ensemble it is evaluated in)."""
    E = len(cfgs)
    dev = world.relevant.device
    L = L or shared_value(cfgs, "l_ts")
    n = n or shared_value(cfgs, "n_test")
    heads = shared_value(cfgs, "n_head")
    if alpha_test is None:
        alpha_test = scalar_tensor(cfgs, "alpha_test", dev)
    alpha_test = torch.as_tensor(alpha_test, dtype=torch.float32, device=dev).expand(E)
    rng = rng_for(cfgs, dev)
    width = shared_value(cfgs, "n_embd") * (4 + shared_value(cfgs, "n_inner_mult")) * shared_value(cfgs, "n_layer")

    def block(models: slice, i: int, count: int) -> dict[str, torch.Tensor]:
        pr = sample_prompts(world.subset(models), rng.subset(models), alpha_test[models], count, L, *stream, L, i)
        F, probes = forward({k: v[models] for k, v in params.items()}, pr.C, pr.Q, heads, probes=True)
        out = {"error": error(F, pr.z), "loss": hinge(F, pr.z)}
        for k, v in probes.items():
            if k.startswith("attn."):
                out[f"attn_same.{k[5:]}"] = same_pattern_mass(v, pr.ctx_pattern, pr.query_pattern)
        return out

    return mean_over_blocks(E, n, (L + 1) * width, block)


def error_vs_length(params, cfgs, world, lengths: Sequence[int], alpha_test=None, n=None, stream=("curve",)):
    """{L: error [E]} for each test prompt length."""
    return {L: evaluate(params, cfgs, world, alpha_test=alpha_test, L=L, n=n, stream=stream)["error"] for L in lengths}


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
