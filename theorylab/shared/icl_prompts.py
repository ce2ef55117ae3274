"""The ICL data model (section 1.1): patterns, tasks, prompts. Everything is batched over models [E].

A prompt is contexts C [E, B, L, D] with columns p_i = (x_i; y_i) and a query Q [E, B, D] = (x_q; 0),
with label z [E, B] in {-1, +1}. x = mu + kappa nu; y = +-q.
"""
from __future__ import annotations

from collections.abc import Sequence
import functools
from dataclasses import dataclass

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.fast import CompiledOrEager, worth_compiling
from theorylab.core.rng import EnsembleRNG, stream_ids, weyl_sequence
from theorylab.core.config import StudyConfig as ICLConfig  # any config with the ICL data fields (icl, icl_gpt2)


@dataclass
class Prompts:
    C: torch.Tensor  # [E, B, L, D] context columns
    Q: torch.Tensor  # [E, B, D] query column
    z: torch.Tensor  # [E, B] query label in {-1, +1}
    ctx_pattern: torch.Tensor  # [E, B, L] index of each context's relevant pattern
    query_pattern: torch.Tensor  # [E, B]
    task: torch.Tensor  # [E, B, 2] the prompt's pattern pair (a, b)


@dataclass
class World:
    """The fixed objects of a data model: pattern sets, tasks, label embedding (per model)."""
    relevant: torch.Tensor  # [E, P, d_X] relevant patterns (IDR or ODR)
    irrelevant: torch.Tensor  # [E, M2, d_X] irrelevant patterns (IDI or ODI)
    tasks: torch.Tensor  # [T, 2] ordered pattern pairs (a, b): +1 on a, -1 on b
    q: torch.Tensor  # [d_Y] label embedding
    kappa: torch.Tensor  # [E]

    def __post_init__(self) -> None:
        self.relevant_basis = _scaled_basis(self.relevant)
        self.irrelevant_basis = _scaled_basis(self.irrelevant)
        label = _scaled_basis(self.q[None, None]) if self.q.numel() else None
        self.label_basis = None if label is None else (int(label[0]), float(label[1]))  # q = value * e_col

    def subset(self, models: slice) -> "World":
        return World(self.relevant[models], self.irrelevant[models], self.tasks, self.q, self.kappa[models])


def _scaled_basis(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """table [E, P, d] -> (column [E, P], value [E, P]) when every row is value * e_column (the in-domain
    patterns are), else None. Prompts are then written by scatter instead of row lookups (same numbers)."""
    nonzero = table != 0
    if bool((nonzero.sum(-1) > 1).any()):
        return None
    col = nonzero.float().argmax(-1)  # an all-zero row maps to column 0 with value 0
    return col, torch.gather(table, -1, col[..., None])[..., 0]


def all_tasks(P: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(P) for b in range(P) if a != b]


def split_tasks(cfg: ICLConfig) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(T_tr, unseen in-domain test tasks)."""
    train = [(a, b) for a, b in all_tasks(cfg.M1) if (b - a) % cfg.M1 in cfg.task_offsets]
    test = [t for t in all_tasks(cfg.M1) if t not in train]
    return train, test


def idr_patterns(cfgs: Sequence[ICLConfig], device) -> torch.Tensor:
    """[E, M1, d_X]: mu_j = beta e_j."""
    M1, d_X = shared_value(cfgs, "M1"), shared_value(cfgs, "d_X")
    beta = scalar_tensor(cfgs, "beta", device)
    return beta[:, None, None] * torch.eye(M1, d_X, device=device).expand(len(cfgs), M1, d_X)


def idi_patterns(cfgs: Sequence[ICLConfig], device) -> torch.Tensor:
    """[E, M2, d_X]: nu_k = e_{M1+k}, orthogonal to every IDR pattern."""
    M1, M2, d_X = (shared_value(cfgs, k) for k in ("M1", "M2", "d_X"))
    eye = torch.eye(d_X, device=device)[M1 : M1 + M2]
    return eye.expand(len(cfgs), M2, d_X).clone()


def odr_patterns(cfgs: Sequence[ICLConfig], S1: torch.Tensor, device) -> torch.Tensor:
    """[E, M1_ood, d_X]: mu'_j combines IDR patterns mu_{2j}, mu_{2j+1} with coefficients summing to S1.

    literal: S1 (c mu_a + (1-c) mu_b), not renormalised (the calibration note: only this makes S1 matter);
    unit: c1, c2 = (S1 +- sqrt(2 - S1^2)) / 2, orthonormal for every S1 <= sqrt(2)."""
    M1_ood = shared_value(cfgs, "M1_ood")
    construction = shared_value(cfgs, "ood_construction")
    mu = idr_patterns(cfgs, device)
    if construction == "literal":
        c = scalar_tensor(cfgs, "ood_mix", device)
        c1, c2 = S1 * c, S1 * (1 - c)
    else:
        root = torch.sqrt(torch.clamp(2 - S1**2, min=0))
        c1, c2 = (S1 + root) / 2, (S1 - root) / 2
    return c1[:, None, None] * mu[:, 0 : 2 * M1_ood : 2] + c2[:, None, None] * mu[:, 1 : 2 * M1_ood : 2]


def odi_patterns(cfgs: Sequence[ICLConfig], rng: EnsembleRNG, device) -> torch.Tensor:
    """[E, M2, d_X]: nu'_k = R nu_k with a random orthogonal R inside span{nu} (so ODI in span(IDI))."""
    R = rng.orthogonal(shared_value(cfgs, "M2"), "odi_rotation").to(device)  # [E, M2, M2]
    return torch.einsum("ekj,ejd->ekd", R, idi_patterns(cfgs, device))


def label_embedding(cfgs: Sequence[ICLConfig], device) -> torch.Tensor:
    q = torch.zeros(shared_value(cfgs, "d_Y"), device=device)
    q[0] = 1.0
    return q


def in_domain_world(cfgs: Sequence[ICLConfig], device, tasks: list[tuple[int, int]]) -> World:
    return World(idr_patterns(cfgs, device), idi_patterns(cfgs, device),
                 torch.tensor(tasks, device=device), label_embedding(cfgs, device),
                 scalar_tensor(cfgs, "kappa", device))


def out_of_domain_world(cfgs: Sequence[ICLConfig], rng: EnsembleRNG, device, S1: torch.Tensor | None = None) -> World:
    S1 = scalar_tensor(cfgs, "S1", device) if S1 is None else S1.to(device)
    return World(odr_patterns(cfgs, S1, device), odi_patterns(cfgs, rng, device),
                 torch.tensor(all_tasks(shared_value(cfgs, "M1_ood")), device=device),
                 label_embedding(cfgs, device), scalar_tensor(cfgs, "kappa", device))


def _rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table [E, P, d], index [E, ...] -> [E, N, d]: per-model row lookup through one flat index_select
    (several times faster on CPU than gather with an expanded index, or than advanced indexing; same values)."""
    E, P, d = table.shape
    flat = index.reshape(E, -1) + torch.arange(0, E * P, P, device=index.device)[:, None]
    return table.reshape(E * P, d).index_select(0, flat.view(-1)).view(E, -1, d)


# the sampler's named draws, in the order _prompts_from reads their ids
_DRAWS = (("task",), ("which",), ("other",), ("coin",), ("query",), ("ctx", "nu"), ("ctx", "kappa"),
          ("query", "nu"), ("query", "kappa"))


def sample_prompts(world: World, rng: EnsembleRNG, alpha: torch.Tensor, B: int, L: int, *stream,
                   reuse: Prompts | None = None, compiled: bool = False) -> Prompts:
    """Prompts for tasks drawn uniformly from world.tasks (slide 18): each context's relevant pattern is
    a or b with probability alpha/2 each, otherwise one of the other patterns uniformly; labels are
    +1 on a, -1 on b, and a fresh fair coin elsewhere. The query's pattern is a or b, equally likely.

    reuse: earlier Prompts of the same shapes that nothing reads any more (a training loop's last batch): the
    new C and Q are written into their memory. A fresh [E, B, L, D] buffer costs a page fault per 4 KiB, which
    was half the sampler's time at E = 64.
    compiled: make the random choices in a torch.compile'd graph (a few fused loops instead of ~150 tensor
    operations; about 14x faster on CPU). Integer hashing and the two float products round the same way
    there, so the prompts are bit-identical (tests/studies/icl/test_icl_data.py)."""
    E, _, d_X = world.relevant.shape
    dev = world.relevant.device
    D = d_X + world.q.shape[0]

    def buffer(old: torch.Tensor | None, *shape: int) -> torch.Tensor:
        if old is not None and old.shape == shape and old.device == dev and old.dtype == torch.float32 \
                and old.is_contiguous():
            return old
        return torch.empty(*shape, device=dev)

    ids = stream_ids(*((*stream, *name) for name in _DRAWS), device=dev)
    draw = compiled_draws() if compiled else _draws
    basis = None if world.relevant_basis is None or world.irrelevant_basis is None else \
        (*world.relevant_basis, *world.irrelevant_basis)
    task, pat, y, q_pat, z, ctx, query = draw(rng.keys.to(dev), ids, world.tasks, alpha, world.kappa,
                                              world.relevant.shape[1], world.irrelevant.shape[1], B, L, basis,
                                              (weyl_sequence(B, dev), weyl_sequence(B * L, dev)))
    C = buffer(reuse and reuse.C, E, B, L, D)  # p_i = (x_i; y_i)
    Q = buffer(reuse and reuse.Q, E, B, D)  # p_query = (x_q; 0)
    if compiled and basis is not None:  # one streaming pass per buffer (scatters touch C's memory 3 more times)
        q_full = torch.cat([torch.zeros(d_X, device=dev), world.q])  # (0; q)
        write = compiled_columns()
        write(C, *ctx, y, q_full)
        write(Q.view(E, B, 1, D), *query, torch.zeros_like(z)[..., None], q_full)
        return Prompts(C, Q, z, pat, q_pat, task)
    _write_x(C.zero_(), world, ctx)
    if world.label_basis is not None:  # q = value * e_col: one column carries the label
        col, value = world.label_basis
        C[..., d_X + col].copy_(y * value)
    else:
        C[..., d_X:].copy_(y[..., None] * world.q)
    _write_x(Q.zero_().view(E, B, 1, D), world, query)
    return Prompts(C, Q, z, pat, q_pat, task)


def _draws(keys: torch.Tensor, ids: torch.Tensor, tasks: torch.Tensor, alpha: torch.Tensor, kappa: torch.Tensor,
           P: int, M2: int, B: int, L: int, basis: tuple[torch.Tensor, ...] | None,
           weyl: tuple[torch.Tensor, ...] = ()) -> tuple:
    """Every random choice of a batch, on tensors only (torch.compile traces it into a few fused loops):
    task [E, B, 2], context patterns and labels [E, B, L], query pattern and label [E, B], and for the contexts
    and the query what _write_x needs to write x = mu_pattern + kappa nu: with basis patterns (basis = the
    columns and values of mu and nu) the column and value of each term, otherwise (pattern, nu index, kappa).
    weyl: the RNG's counters for draws of B and B * L numbers (see EnsembleRNG)."""
    rng = EnsembleRNG(keys, keys.device, weyl)
    E = keys.shape[0]
    id_task, id_which, id_other, id_coin, id_query, id_ctx_nu, id_ctx_kappa, id_query_nu, id_query_kappa = ids
    task = tasks.index_select(0, rng.randint(tasks.shape[0], (B,), id_task).view(-1)).view(E, B, 2)
    a, b = task[..., 0], task[..., 1]
    u = rng.uniform((B, L), id_which)
    al = alpha[:, None, None]
    other = rng.randint(max(P - 2, 1), (B, L), id_other)  # a pattern other than a and b:
    other += other >= torch.minimum(a, b)[..., None]
    other += other >= torch.maximum(a, b)[..., None]
    pat = torch.where(u < al / 2, a[..., None], torch.where(u < al, b[..., None], other))  # [E, B, L]
    coin = rng.sign((B, L), id_coin)
    y = torch.where(pat == a[..., None], 1.0, torch.where(pat == b[..., None], -1.0, coin))  # [E, B, L]
    q_is_a = rng.uniform((B,), id_query) < 0.5
    q_pat = torch.where(q_is_a, a, b)
    z = torch.where(q_is_a, 1.0, -1.0)

    def noise(patterns: torch.Tensor, id_nu, id_kappa) -> tuple[torch.Tensor, ...]:  # [E, B, n] each
        n = patterns.shape[-1]
        nu = rng.randint(M2, (B, n), id_nu)
        kap = rng.uniform((B, n), id_kappa).mul_(2).sub_(1).mul_(kappa[:, None, None])
        if basis is None:
            return patterns, nu, kap
        mu_col, mu_val, nu_col, nu_val = basis
        pats, nus = patterns.reshape(E, -1), nu.view(E, -1)
        return (mu_col.gather(1, pats), mu_val.gather(1, pats), nu_col.gather(1, nus),
                kap.view(E, -1) * nu_val.gather(1, nus))  # [E, B*n] each

    return (task, pat, y, q_pat, z, noise(pat, id_ctx_nu, id_ctx_kappa),
            noise(q_pat[..., None], id_query_nu, id_query_kappa))


def _write_x(out: torch.Tensor, world: World, parts: tuple[torch.Tensor, ...]) -> None:
    """Writes x = mu_pattern + kappa nu into out[..., :d_X] from what _draws returned; out [E, B, n, D] is zero."""
    E, B, n, D = out.shape
    if world.relevant_basis is not None and world.irrelevant_basis is not None:
        mu_col, mu_val, nu_col, nu_term = (t[..., None] for t in parts)  # [E, B*n, 1]
        flat = out.view(E, B * n, D)
        flat.scatter_(-1, mu_col, mu_val)
        flat.scatter_add_(-1, nu_col, nu_term)  # adds: nu may share mu's column
        return
    patterns, nu, kap = parts
    d_X = world.relevant.shape[-1]
    x = torch.addcmul(_rows(world.relevant, patterns), kap.reshape(E, -1, 1), _rows(world.irrelevant, nu))
    out[..., :d_X] = x.reshape(E, B, n, d_X)


def _write_columns(out: torch.Tensor, mu_col, mu_val, nu_col, nu_term, y, q_full) -> None:
    """out [E, B, n, D] = mu_val e_mu_col + nu_term e_nu_col + y (0; q), written whole in one pass (compiled):
    the same numbers as zeroing out and scattering (_write_x), where the two columns may coincide."""
    E, B, n, D = out.shape
    col = torch.arange(D, device=out.device)
    mu_col, mu_val, nu_col, nu_term = (t.view(E, B, n, 1) for t in (mu_col, mu_val, nu_col, nu_term))
    x = torch.where(col == mu_col, mu_val, 0.0) + torch.where(col == nu_col, nu_term, 0.0)
    out.copy_(x + y.view(E, B, n, 1) * q_full)


@functools.cache
def compiled_columns() -> CompiledOrEager:
    return CompiledOrEager(_write_columns, "the ICL prompt writer")


@functools.cache
def compiled_draws() -> CompiledOrEager:
    return CompiledOrEager(_draws, "the ICL prompt sampler")


# eager seconds per context drawn, measured on the 2-core CPU (E = 64, B = 64, L = 20: ~9 ms per 82k contexts)
EAGER_SECONDS_PER_CONTEXT = 1.1e-7


def compile_sampler(E: int, B: int, L: int, steps: int) -> bool:
    """Whether a run drawing `steps` batches of [E, B, L] contexts should compile the sampler (core/fast.py)."""
    return worth_compiling(EAGER_SECONDS_PER_CONTEXT * E * B * L * steps)
