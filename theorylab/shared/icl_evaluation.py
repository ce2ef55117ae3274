"""Evaluation on the ICL prompts (shared.icl_prompts), written once for every model trained on them (the one-layer
Transformer of `icl`, the GPT-2 of `icl_gpt2`): the test worlds, the same-pattern attention mass, and the
block-by-block evaluation of fresh test prompts. A model enters as a `score` function
    score(params, prompts) -> {name: [E]}
on a slice of the ensemble's models and one block of prompts."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value
from theorylab.core.evaluate import mean_over_blocks
from theorylab.shared.icl_prompts import Prompts, World, in_domain_world, out_of_domain_world, sample_prompts, split_tasks

Score = Callable[[dict[str, torch.Tensor], Prompts], dict[str, torch.Tensor]]


def seen_world(cfgs: Sequence, device) -> World:
    """The training tasks (fresh prompts of them: the model's own error eps_hat)."""
    return in_domain_world(cfgs, device, split_tasks(cfgs[0])[0])


def unseen_world(cfgs: Sequence, device) -> World:
    """The in-domain tasks held out of training."""
    return in_domain_world(cfgs, device, split_tasks(cfgs[0])[1])


def id_world(cfgs: Sequence, device) -> World:
    """In-domain test tasks: the unseen ones if the config holds some out, else the training tasks (fresh prompts)."""
    train, unseen = split_tasks(cfgs[0])
    return in_domain_world(cfgs, device, unseen or train)


def ood_world(cfgs: Sequence, device, S1: float | torch.Tensor | None = None) -> World:
    S1t = None if S1 is None else torch.as_tensor(S1, dtype=torch.float32).expand(len(cfgs))
    return out_of_domain_world(cfgs, rng_for(cfgs, device), device, S1t)


def same_pattern_mass(attn: torch.Tensor, ctx_pattern: torch.Tensor, query_pattern: torch.Tensor) -> torch.Tensor:
    """The query's attention row [E, B, ..., L(+1)] (any head axes between) -> [E]: its mass on the contexts sharing
    the query's relevant pattern, summed over those contexts, averaged over prompts and heads (spec 1.7)."""
    E, B, L = ctx_pattern.shape
    same = (ctx_pattern == query_pattern[..., None]).float()  # [E, B, L]
    same = same.reshape(E, B, *([1] * (attn.dim() - 3)), L)
    return (attn[..., :L] * same).sum(-1).flatten(1).mean(1)


@torch.no_grad()
def evaluate_prompts(params: dict[str, torch.Tensor], cfgs: Sequence, world: World, score: Score,
                     elements_per_position: int, *, alpha_test=None, L: int | None = None, n: int | None = None,
                     stream: tuple = ("eval",)) -> dict[str, torch.Tensor]:
    """Means [E] of score's values over n fresh test prompts of `world` (length L, context share alpha_test),
    drawn in fixed blocks keyed per model: a model's numbers do not depend on the ensemble it is evaluated in.
    elements_per_position: floats of the widest activation per prompt position (sizes the blocks only)."""
    E = len(cfgs)
    dev = world.relevant.device
    L = L or shared_value(cfgs, "l_ts")
    n = n or shared_value(cfgs, "n_test")
    if alpha_test is None:
        alpha_test = scalar_tensor(cfgs, "alpha_test", dev)
    alpha_test = torch.as_tensor(alpha_test, dtype=torch.float32, device=dev).expand(E)
    rng = rng_for(cfgs, dev)
    last = None  # the previous block's prompts: the next block of the same shape is written into their memory

    def block(models: slice, i: int, count: int) -> dict[str, torch.Tensor]:
        nonlocal last
        pr = last = sample_prompts(world.subset(models), rng.subset(models), alpha_test[models], count, L, *stream,
                                   L, i, reuse=last)
        return score({k: v[models] for k, v in params.items()}, pr)

    return mean_over_blocks(E, n, (L + 1) * elements_per_position, block)


def error_vs_length(evaluate: Callable[..., dict[str, torch.Tensor]], params, cfgs, world, lengths: Sequence[int],
                    alpha_test=None, n=None, stream=("curve",)) -> dict[int, torch.Tensor]:
    """{L: error [E]} for each test prompt length, with a study's evaluate(params, cfgs, world, ...)."""
    return {L: evaluate(params, cfgs, world, alpha_test=alpha_test, L=L, n=n, stream=stream)["error"] for L in lengths}
