"""The CoT data model (../shared/papers/icl_cot_lowrank.md section 2.1), self-contained and ensemble-first.

Other studies (the multi-layer GPT-2 one) import this module only. Every function takes a list of configs
`cfgs` (one per model; any object with the fields of `CoTDataConfig`), an `EnsembleRNG` (core.rng: one
counter-based stream per model, so a model's prompts do not depend on its ensemble) and stream names.

Geometry (d_X-dimensional tokens, 2 d_X-dimensional columns):
- TRR patterns mu_j = e_j, j < M (training); TSR patterns mu'_j = sqrt(1-s^2) (R mu)_j + s e_{M+K+j} with a
  random orthogonal R inside span{mu} per model (testing, s = `overlap`), plus noise of norm `noise` in a
  random direction orthogonal to the positional coordinates.
- Positional encodings c_j = (e_{M+j}; 0), j < K, added to the input half of a column at step j (period K).
- A reasoning example is K+1 tokens y_0 = x, y_1, ..., y_K; its K columns are (y_j + c_j; y_{j+1}).
- A prompt at step k (1 <= k <= K, predicting z_k): the example columns, then the query's k-1 earlier
  columns (z_j + c_j; z_{j+1}), j < k-1, then the query column p_query = (z_{k-1} + c_{k-1}; 0).

Tensors are laid out as `Prompts` below: contexts C [E, B, N, 2 d_X] with N = l K + (K-1) (the l examples'
columns, example-major, then K-1 query-prefix slots, of which the first k-1 are valid: `mask`), and the query
column Q [E, B, 2 d_X]. A model attends over the valid columns of C only (eq. of section 2.2).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG

Wrong = Literal["scatter", "converge"]


class CoTDataConfig(StudyConfig):
    """The data-model fields (paper symbols; [D] defaults are parameters). A study's config subclasses it."""
    study: ClassVar[str] = "cot_data"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset(
        {"seed", "alpha", "alpha_test", "noise", "p_correct", "rho", "overlap"})

    seed: int = Field(0, ge=0, lt=2**62, description="seed; every random stream derives from the config hash")
    d_X: int = Field(32, ge=4, le=4096, description="token dimension; >= M + K (>= 2M + K with overlap > 0) [D]")
    M: int = Field(10, ge=3, le=1024, description="number of TRR (and TSR, M' = M) patterns [D]")
    K: int = Field(3, ge=1, le=32, description="reasoning steps per task [I/D]")
    alpha: float = Field(0.6, gt=0, le=1, description="fraction of training examples whose input is the query's pattern")
    l_tr: int = Field(20, ge=1, le=4096, description="reasoning examples per training prompt [D]")
    alpha_test: float = Field(0.8, gt=0, le=1, description="alpha': fraction of test examples whose input is the query's TSR pattern")
    noise: float = Field(0.1, ge=0, le=10, description="norm of the additive noise on every test token [D]")
    overlap: float = Field(0.0, ge=0, le=0.5, description="s: TSR component outside span{TRR} [D]")
    p_correct: float = Field(0.7, gt=0, le=1, description="A^f_k: probability of the correct step (tau^f = p^K) [D family]")
    rho: float = Field(0.6, gt=0, le=1, description="requested primacy: the runner-up step has probability "
                       "min(p (1 - rho), 1 - p); the rest is spread evenly over the other M'-2 patterns [D family]")
    wrong_targets: Wrong = Field("scatter", description="Condition 1 knob: 'scatter' (each step's runner-up is a random "
                                 "other pattern: Condition 1 holds) or 'converge' (runner-ups lead to one decoy chain: "
                                 "Condition 1 fails when K q > p)")

    @model_validator(mode="after")
    def _consistent_data(self) -> "CoTDataConfig":
        need = self.M + self.K + (self.M if self.overlap > 0 else 0)
        if self.d_X < need:
            raise ValueError(f"field 'd_X' must be >= M + K{' + M (overlap > 0)' if self.overlap > 0 else ''} = {need} "
                             f"(got {self.d_X})")
        q, r = runner_up(self.p_correct, self.rho, self.M)
        if r > q + 1e-9:
            raise ValueError(f"field 'rho' too large for p_correct={self.p_correct}: the runner-up probability {q:.4f} "
                             f"falls below the rest's {r:.4f} per pattern (lower rho or raise p_correct)")
        return self


def runner_up(p: float, rho: float, M: int) -> tuple[float, float]:
    """(q, r): runner-up probability q = min(p (1 - rho), 1 - p) and the rest's r per pattern."""
    q = min(p * (1 - rho), 1 - p)
    return q, (1 - p - q) / max(M - 2, 1)


@dataclass
class Prompts:
    """One batch of prompts at one reasoning step (shapes with E models, B prompts, N = l K + K - 1)."""
    C: torch.Tensor  # [E, B, N, 2 d_X] context columns (examples, then the query's earlier steps)
    mask: torch.Tensor  # [E, B, N] bool: column present (query-prefix slots beyond k-1 are absent)
    Q: torch.Tensor  # [E, B, 2 d_X] query column (z_{k-1} + c_{k-1}; 0)
    target: torch.Tensor  # [E, B] pattern index of the label z_k
    col_step: torch.Tensor  # [N] step j (position mod K) of each column
    col_pattern: torch.Tensor  # [E, B, N] pattern index in each column's input half (-1: none)
    query_pattern: torch.Tensor  # [E, B] pattern index of z_{k-1}
    k: torch.Tensor  # [E, B] the step being predicted (1..K)


@dataclass
class Reasoning:
    """A batch of K-step reasoning prompts before they are cut into steps (section 2.1)."""
    tokens: torch.Tensor  # [E, B, l, K+1, d_X] example tokens y_{i,0..K} (noisy at test)
    ids: torch.Tensor  # [E, B, l, K+1] their pattern indices
    query_tokens: torch.Tensor  # [E, B, K+1, d_X] the query chain z_0..z_K (z_0 noisy at test, the rest clean)
    query_ids: torch.Tensor  # [E, B, K+1] the correct chain's pattern indices
    patterns: torch.Tensor  # [E, M, d_X] the clean patterns (TRR or TSR): the decoding set Y
    pos: torch.Tensor  # [K, d_X] positional encodings c_j (input half)
    A: torch.Tensor | None = None  # [E, B, K, M, M] step-wise transition matrices (test), None for training


def trr_patterns(cfgs: Sequence[CoTDataConfig], device) -> torch.Tensor:
    """[E, M, d_X]: mu_j = e_j."""
    M, d_X = shared_value(cfgs, "M"), shared_value(cfgs, "d_X")
    return torch.eye(M, d_X, device=device).expand(len(cfgs), M, d_X).clone()


def tsr_patterns(cfgs: Sequence[CoTDataConfig], rng: EnsembleRNG, device, overlap: torch.Tensor | None = None) -> torch.Tensor:
    """[E, M, d_X]: mu'_j = sqrt(1-s^2) (R mu)_j + s e_{M+K+j}, R [E, M, M] Haar-orthogonal per model."""
    M, K, d_X = (shared_value(cfgs, k) for k in ("M", "K", "d_X"))
    s = scalar_tensor(cfgs, "overlap", device) if overlap is None else overlap.to(device)
    R = rng.orthogonal(M, "tsr_rotation").to(device)  # [E, M, M]
    out = torch.zeros(len(cfgs), M, d_X, device=device)
    out[..., :M] = torch.sqrt(1 - s**2)[:, None, None] * R
    if bool((s > 0).any()):
        out[..., M + K : 2 * M + K] = s[:, None, None] * torch.eye(M, device=device)
    return out


def positions(cfgs: Sequence[CoTDataConfig], device) -> torch.Tensor:
    """[K, d_X]: c_j = e_{M+j} (orthogonal to every TRR and TSR pattern)."""
    M, K, d_X = (shared_value(cfgs, k) for k in ("M", "K", "d_X"))
    return torch.eye(d_X, device=device)[M : M + K]


def _rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """table [E, P, d], ids [E, ...] -> [E, ..., d]."""
    E, P, d = table.shape
    flat = ids.reshape(E, -1) + torch.arange(E, device=ids.device)[:, None] * P
    return table.reshape(E * P, d)[flat].reshape(*ids.shape, d)


def _inputs(rng: EnsembleRNG, alpha: torch.Tensor, M: int, B: int, l: int, *stream) -> tuple[torch.Tensor, torch.Tensor]:
    """(query input ids [E, B], example input ids [E, B, l]): round(alpha l) examples share the query's pattern,
    the others draw uniformly among the other M-1; the example order is shuffled."""
    dev = alpha.device
    xq = rng.randint(M, (B,), *stream, "xq").to(dev)
    other = rng.randint(M - 1, (B, l), *stream, "other").to(dev)
    other = other + (other >= xq[..., None]).long()
    n_same = torch.round(alpha * l).long()[:, None, None]  # [E, 1, 1]
    order = rng.argsort_uniform((B, l), *stream, "order").to(dev)  # shuffle: argsort of the stream's uniforms
    same = order < n_same  # example i shares the query's pattern iff its shuffled rank < n_same
    x = torch.where(same, xq[..., None], other)
    return xq, x


def random_tasks(rng: EnsembleRNG, M: int, K: int, B: int, *stream, device=None) -> torch.Tensor:
    """sigma [E, B, K, M]: step k maps pattern j to sigma[..., k, j]; uniform random permutations."""
    return rng.argsort_uniform((B, K, M), *stream, "sigma").to(device or rng.device)  # argsort of uniforms


def correct_chain(sigma: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """sigma [E, B, K, M], start [E, B, ...] -> [E, B, ..., K+1]: the correct chain start, sigma_1(start), ..."""
    K = sigma.shape[2]
    out = [start]
    for k in range(K):
        s = sigma[:, :, k]  # [E, B, M]
        cur = out[-1]
        out.append(torch.gather(s, 2, cur.reshape(*s.shape[:2], -1)).reshape(cur.shape))
    return torch.stack(out, dim=-1)


def training_reasoning(cfgs: Sequence[CoTDataConfig], rng: EnsembleRNG, B: int, *stream,
                       alpha: torch.Tensor | None = None, l: int | None = None) -> Reasoning:
    """Training prompts (section 2.1): TRR tokens without noise, a fresh random-permutation task per prompt,
    every example and the query follow it without error."""
    ids, qids, patterns = _training_ids(cfgs, rng, B, *stream, alpha=alpha, l=l)
    return Reasoning(_rows(patterns, ids), ids, _rows(patterns, qids), qids, patterns, positions(cfgs, rng.device))


def _training_ids(cfgs: Sequence[CoTDataConfig], rng: EnsembleRNG, B: int, *stream, alpha: torch.Tensor | None = None,
                  l: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random part of training_reasoning: (example ids [E, B, l, K+1], query ids [E, B, K+1], TRR patterns)."""
    dev = rng.device
    M, K = shared_value(cfgs, "M"), shared_value(cfgs, "K")
    l = l if l is not None else shared_value(cfgs, "l_tr")
    alpha = scalar_tensor(cfgs, "alpha", dev) if alpha is None else alpha.to(dev)
    patterns = trr_patterns(cfgs, dev)
    sigma = random_tasks(rng, M, K, B, *stream, device=dev)
    xq, x = _inputs(rng, alpha, M, B, l, *stream)
    return correct_chain(sigma, x), correct_chain(sigma, xq), patterns  # [E, B, l, K+1], [E, B, K+1]


def transition_matrices(sigma: torch.Tensor, p: torch.Tensor, rho: torch.Tensor, wrong: Wrong,
                        rng: EnsembleRNG, *stream) -> torch.Tensor:
    """A [E, B, K, M, M] (row-stochastic) of the section-2.1 family: the correct step sigma_k(j) has probability p,
    a runner-up w_k(j) has q = min(p (1-rho), 1-p), the other M-2 patterns share the rest evenly.
    Runner-ups lead onto other correct chains: with C_k = sigma_k o ... o sigma_1 and psi a random cyclic
    derangement (one M-cycle) per prompt, w_k(C_{k-1}(i)) = C_k(psi^{s_k}(i)), so a path that errs at the steps
    in S ends on the correct chain of psi^{sum_{k in S} s_k}(i).
    scatter: s_k = k; the K single-error paths end at K different patterns, and Condition 1 holds while
      p^K exceeds the largest sum of such path masses (e.g. p = 0.7, q = 0.28, K = 3: 0.343 > 0.19);
    converge: s_k = 1; every single-error path ends at the same decoy psi(i), which collects K q p^{K-1} against
      the correct p^K, so Condition 1 fails once K q > p (the 2 x 2 example of the slides, generalised)."""
    E, B, K, M = sigma.shape
    dev = sigma.device
    if wrong not in ("scatter", "converge"):
        raise ValueError(f"wrong_targets must be 'scatter' or 'converge' (got {wrong!r})")
    perm = rng.argsort_uniform((B, M), *stream, "psi").to(dev)  # [E, B, M] argsort of the stream's uniforms
    inv = torch.argsort(perm, dim=-1)
    C = correct_chain(sigma, torch.arange(M, device=dev).expand(E, B, M))  # [E, B, M, K+1]: C_k(i)
    w = torch.empty_like(sigma)
    for k in range(K):
        shift = k + 1 if wrong == "scatter" else 1
        target = torch.gather(perm, -1, (inv + shift) % M)  # psi^shift(i) = perm[inv[i] + shift]
        w[:, :, k].scatter_(-1, C[..., k], torch.gather(C[..., k + 1], -1, target))
    q = torch.minimum(p * (1 - rho), 1 - p)  # [E]
    r = (1 - p - q) / max(M - 2, 1)
    A = r[:, None, None, None, None].expand(E, B, K, M, M).clone()
    A.scatter_(-1, w[..., None], q[:, None, None, None, None].expand(E, B, K, M, 1))
    A.scatter_(-1, sigma[..., None], p[:, None, None, None, None].expand(E, B, K, M, 1))
    return A


def transition_stats(A: torch.Tensor, sigma: torch.Tensor) -> dict[str, torch.Tensor]:
    """Section 2.1's quantities, per prompt [E, B]: tau^f (min over starts of the correct K-step trajectory's
    probability), rho^f (min over steps and rows of (correct - best wrong) / correct), tau_o^f = min_i max_j B[i, j],
    rho_o^f (the same primacy on B^f = A_1 ... A_K, negative where Condition 1 fails), condition1 (bool)."""
    E, Bn, K, M, _ = A.shape
    start = torch.arange(M, device=A.device).expand(E, Bn, M)
    chain = correct_chain(sigma, start)  # [E, B, M, K+1]
    step_p = torch.stack([torch.gather(torch.gather(A[:, :, k], 2, chain[..., k : k + 1].expand(-1, -1, -1, M)), -1,
                                       chain[..., k + 1 : k + 2])[..., 0] for k in range(K)], -1)  # A_k[c_{k-1}(i), c_k(i)]   [E, B, M, K]
    tau = step_p.prod(-1).min(-1).values

    def primacy(mat: torch.Tensor, right: torch.Tensor) -> torch.Tensor:  # mat [..., M, M], right [..., M]
        good = torch.gather(mat, -1, right[..., None])[..., 0]
        other = mat.scatter(-1, right[..., None], float("-inf")).max(-1).values
        return (good - other) / good

    rho = torch.stack([primacy(A[:, :, k], sigma[:, :, k]) for k in range(K)], -1).min(-1).values.min(-1).values
    Bf = A[:, :, 0]
    for k in range(1, K):
        Bf = Bf @ A[:, :, k]
    rho_o = primacy(Bf, chain[..., K])  # [E, B, M]
    return {"tau": tau, "rho": rho, "tau_o": Bf.max(-1).values.min(-1).values, "rho_o": rho_o.min(-1).values,
            "condition1": (rho_o > 0).all(-1), "B": Bf}


def _noise(rng: EnsembleRNG, shape: tuple, scale: torch.Tensor, pos_cols: slice, d_X: int, *stream) -> torch.Tensor:
    """[E, *shape, d_X]: vectors of norm `scale`, orthogonal to the positional coordinates, in the direction of a
    uniform draw from the cube [-1, 1]^d (bounded noise [D]; cheaper than a Gaussian draw with this generator)."""
    # in place on one buffer (the same operations in the same order as 2 u - 1, / norm, * scale: the same numbers);
    # fresh [E, B, l, K+1, d_X] temporaries cost a page fault per 4 KiB each
    g = rng.uniform_blocked((*shape, d_X), *stream, "noise").to(scale.device)  # uniform's numbers, faster
    g.mul_(2).sub_(1)
    g[..., pos_cols] = 0
    g.div_(g.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return g.mul_(scale.reshape(-1, *([1] * (len(shape) + 1))))


def eval_reasoning(cfgs: Sequence[CoTDataConfig], rng: EnsembleRNG, B: int, l: int, *stream,
                   alpha_test: torch.Tensor | None = None, p_correct: torch.Tensor | None = None,
                   rho: torch.Tensor | None = None, wrong: Wrong | None = None, noise: torch.Tensor | None = None,
                   overlap: torch.Tensor | None = None) -> Reasoning:
    """Test prompts on unseen tasks over the TSR patterns (section 2.1): a fresh random task (sigma) per prompt,
    context steps drawn from its transition matrices A^f_k (noisy / wrong steps), the query's chain correct.
    Every token carries noise; the keyword arguments ([E] tensors) override the configs' test fields."""
    dev = rng.device
    M, K, d_X = (shared_value(cfgs, k) for k in ("M", "K", "d_X"))
    val = lambda x, name: scalar_tensor(cfgs, name, dev) if x is None else torch.as_tensor(x, dtype=torch.float32, device=dev).expand(len(cfgs))  # noqa: E731
    alpha_test, p_correct, rho = val(alpha_test, "alpha_test"), val(p_correct, "p_correct"), val(rho, "rho")
    noise, overlap = val(noise, "noise"), val(overlap, "overlap")
    wrong = wrong or shared_value(cfgs, "wrong_targets")
    patterns = tsr_patterns(cfgs, rng, dev, overlap)
    sigma = random_tasks(rng, M, K, B, *stream, device=dev)
    A = transition_matrices(sigma, p_correct, rho, wrong, rng, *stream)
    xq, x = _inputs(rng, alpha_test, M, B, l, *stream)
    ids = [x]
    for k in range(K):  # y_{i,k} ~ A_k[y_{i,k-1}, .] by inverse CDF
        rows = torch.gather(A[:, :, k], 2, ids[-1][..., None].expand(-1, -1, -1, M))  # [E, B, l, M]
        u = rng.uniform((B, l), *stream, "step", k).to(dev)[..., None]
        ids.append((rows.cumsum(-1) < u).sum(-1).clamp_max(M - 1))
    ids = torch.stack(ids, -1)  # [E, B, l, K+1]
    qids = correct_chain(sigma, xq)  # the ground truth follows the correct (argmax) path
    pos_cols = slice(M, M + K)
    tokens = _rows(patterns, ids) + _noise(rng, (B, l, K + 1), noise, pos_cols, d_X, *stream, "ctx")
    qtok = _rows(patterns, qids)
    qtok[:, :, 0] += _noise(rng, (B,), noise, pos_cols, d_X, *stream, "query")
    return Reasoning(tokens, ids, qtok, qids, patterns, positions(cfgs, dev), A)


def step_prompts(r: Reasoning, k: int | torch.Tensor, query_tokens: torch.Tensor | None = None,
                 query_ids: torch.Tensor | None = None) -> Prompts:
    """The prompt predicting step k (int, or [E, B] per prompt) of CoT: all example columns, the query's first
    k-1 columns and the query column. query_tokens [E, B, K, d_X] / query_ids [E, B, K] replace the query chain
    z_0..z_{K-1} (greedy decoding feeds its own outputs back); entries from index k on are not read."""
    E, B, l, K1, d_X = r.tokens.shape
    K = K1 - 1
    dev = r.tokens.device
    qt = r.query_tokens[:, :, :K] if query_tokens is None else query_tokens
    qi = r.query_ids[:, :, :K] if query_ids is None else query_ids
    k = torch.as_tensor(k, device=dev).expand(E, B).long()
    pos = r.pos  # [K, d_X]
    C = torch.empty(E, B, l * K + K - 1, 2 * d_X, device=dev)  # written in place (one copy of the examples)
    ex = C[:, :, : l * K].view(E, B, l, K, 2 * d_X)
    torch.add(r.tokens[:, :, :, :K], pos, out=ex[..., :d_X])  # (y_j + c_j; y_{j+1})
    ex[..., d_X:] = r.tokens[:, :, :, 1:]
    valid = torch.arange(K - 1, device=dev) < (k - 1)[..., None]  # [E, B, K-1]
    prefix = C[:, :, l * K :]  # (z_j + c_j; z_{j+1}), j < K-1, zero where absent
    prefix[..., :d_X] = (qt[:, :, : K - 1] + pos[: K - 1]) * valid[..., None]
    prefix[..., d_X:] = qt[:, :, 1:K] * valid[..., None]
    last = torch.gather(qt, 2, (k - 1)[..., None, None].expand(-1, -1, 1, d_X))[:, :, 0]  # z_{k-1}
    Q = torch.cat([last + pos[k - 1], torch.zeros_like(last)], -1)
    mask = torch.cat([torch.ones(E, B, l * K, dtype=torch.bool, device=dev), valid], 2)
    col_step = torch.cat([torch.arange(K, device=dev).repeat(l), torch.arange(K - 1, device=dev)])
    col_pattern = torch.cat([r.ids[:, :, :, :K].reshape(E, B, l * K), torch.where(valid, qi[:, :, : K - 1], -1)], 2)
    return Prompts(C, mask, Q, torch.gather(r.query_ids, 2, k[..., None])[..., 0], col_step, col_pattern,
                   torch.gather(qi, 2, (k - 1)[..., None])[..., 0], k)


def icl_prompts(r: Reasoning) -> Prompts:
    """ICL inference (section 2.4): each example is K columns, the first (x_i + c_0; y_{i,K}), the others
    (c_j; 0); no intermediate steps; the query column (z_0 + c_0; 0); the label is z_K."""
    E, B, l, K1, d_X = r.tokens.shape
    K = K1 - 1
    dev = r.tokens.device
    ex = torch.zeros(E, B, l, K, 2 * d_X, device=dev)
    ex[..., :d_X] = r.pos
    ex[:, :, :, 0, :d_X] += r.tokens[:, :, :, 0]
    ex[:, :, :, 0, d_X:] = r.tokens[:, :, :, K]
    C = torch.cat([ex.reshape(E, B, l * K, 2 * d_X), torch.zeros(E, B, K - 1, 2 * d_X, device=dev)], 2)
    mask = torch.cat([torch.ones(E, B, l * K, dtype=torch.bool, device=dev),
                      torch.zeros(E, B, K - 1, dtype=torch.bool, device=dev)], 2)
    Q = torch.cat([r.query_tokens[:, :, 0] + r.pos[0], torch.zeros(E, B, d_X, device=dev)], -1)
    col_step = torch.cat([torch.arange(K, device=dev).repeat(l), torch.arange(K - 1, device=dev)])
    col_pattern = torch.full((E, B, l, K), -1, dtype=torch.long, device=dev)
    col_pattern[..., 0] = r.ids[:, :, :, 0]
    col_pattern = torch.cat([col_pattern.reshape(E, B, l * K), torch.full((E, B, K - 1), -1, device=dev)], 2)
    return Prompts(C, mask, Q, r.query_ids[:, :, K], col_step, col_pattern, r.query_ids[:, :, 0],
                   torch.full((E, B), K, device=dev))


def training_prompts(cfgs: Sequence[CoTDataConfig], rng: EnsembleRNG, B: int, *stream,
                     alpha: torch.Tensor | None = None, with_patterns: bool = False):
    """A training batch (section 2.1): step k ~ Uniform{1..K} per prompt, label z_k.
    Returns Prompts, or (Prompts, TRR patterns [E, M, d_X]) with with_patterns=True."""
    r = training_reasoning(cfgs, rng, B, *stream, alpha=alpha)
    k = rng.randint(shared_value(cfgs, "K"), (B,), *stream, "k").to(rng.device) + 1
    pr = step_prompts(r, k)
    return (pr, r.patterns) if with_patterns else pr


@dataclass
class ColumnIds:
    """Noise-free prompts at one step as pattern indices, never written out as columns: column n of the context is
    (patterns[in_ids[n]] + pos[col_step[n]]; patterns[out_ids[n]]), present where mask is True (absent columns
    carry index 0). A training batch is this: its tokens are clean TRR patterns, so a model can read the columns
    through M-long tables instead of an [E, B, N, 2 d_X] context (cot.model.forward_columns)."""
    in_ids: torch.Tensor  # [E, B, N] pattern index of each column's input half
    out_ids: torch.Tensor  # [E, B, N] pattern index of each column's output half
    col_step: torch.Tensor  # [N] positional encoding (step j) added to the input half
    mask: torch.Tensor  # [E, B, N] bool: column present
    Q: torch.Tensor  # [E, B, 2 d_X] query column (z_{k-1} + c_{k-1}; 0)
    target: torch.Tensor  # [E, B] pattern index of the label z_k
    patterns: torch.Tensor  # [E, M, d_X]
    pos: torch.Tensor  # [K, d_X]


def step_columns(ids: torch.Tensor, qids: torch.Tensor, k: torch.Tensor, patterns: torch.Tensor,
                 pos: torch.Tensor) -> ColumnIds:
    """step_prompts on clean tokens, as indices: the same columns, mask and query (the same numbers)."""
    E, B, l, K1 = ids.shape
    K = K1 - 1
    dev = ids.device
    valid = torch.arange(K - 1, device=dev) < (k - 1)[..., None]  # [E, B, K-1]
    in_ids = torch.cat([ids[..., :K].reshape(E, B, l * K), torch.where(valid, qids[:, :, : K - 1], 0)], 2)
    out_ids = torch.cat([ids[..., 1:].reshape(E, B, l * K), torch.where(valid, qids[:, :, 1:K], 0)], 2)
    col_step = torch.cat([torch.arange(K, device=dev).repeat(l), torch.arange(K - 1, device=dev)])
    mask = torch.cat([torch.ones(E, B, l * K, dtype=torch.bool, device=dev), valid], 2)
    last = _rows(patterns, torch.gather(qids, 2, (k - 1)[..., None])[..., 0])  # z_{k-1}     [E, B, d_X]
    Q = torch.cat([last + pos[k - 1], torch.zeros_like(last)], -1)
    return ColumnIds(in_ids, out_ids, col_step, mask, Q, torch.gather(qids, 2, k[..., None])[..., 0], patterns, pos)


def training_columns(cfgs: Sequence[CoTDataConfig], rng: EnsembleRNG, B: int, *stream,
                     alpha: torch.Tensor | None = None) -> ColumnIds:
    """training_prompts (the same draws, the same prompts) as indices: no [E, B, N, 2 d_X] context is built."""
    ids, qids, patterns = _training_ids(cfgs, rng, B, *stream, alpha=alpha)
    k = rng.randint(shared_value(cfgs, "K"), (B,), *stream, "k").to(rng.device) + 1
    return step_columns(ids, qids, k, patterns, positions(cfgs, rng.device))


@dataclass
class BasisColumns:
    """A training batch (training_columns' prompts, the same draws) laid out for cot.model.forward_basis: training
    tokens are the standard basis (mu_j = e_j, c_j = e_{M+j}), so a column's score (W_K p_i)^T w is three entries of
    w = W_K^T W_Q p_query, at in_id, M + step and d_X + out_id: the batch holds those indices into w, each part
    contiguous (a gather in a strided layout costs several times a contiguous one). Absent query-prefix columns
    (valid False) hold indices that are read and then masked."""
    in_w: torch.Tensor  # [E, B, N] in_id: index of the column's input pattern entry in w
    pos_w: torch.Tensor  # [N] M + col_step: its position entry
    out_w: torch.Tensor  # [E, B, N] d_X + out_id: its output pattern entry
    valid: torch.Tensor  # [E, B, K-1] bool: query-prefix column j is present (j < k-1)
    Q: torch.Tensor  # [E, B, 2 d_X] query column (z_{k-1} + c_{k-1}; 0) = e_{z_{k-1}} + e_{M+k-1}
    target: torch.Tensor  # [E, B] pattern index of the label z_k
    patterns: torch.Tensor  # [E, M, d_X] the TRR patterns (decoding set)


def training_basis(cfgs: Sequence[CoTDataConfig], rng: EnsembleRNG, B: int, *stream,
                   alpha: torch.Tensor | None = None) -> BasisColumns:
    """training_columns (the same draws, the same prompts: tests/studies/cot/test_cot_speed.py) as BasisColumns.
    The chains are read from composed-task tables C_j = sigma_j o ... o sigma_1 ([E, B, K+1, M], K small gathers),
    one gather per part for every column, instead of stacking chains and concatenating columns: the integer work of
    a batch in a few contiguous passes (the batch was half of the training step)."""
    dev = rng.device
    M, K, d_X = (shared_value(cfgs, k) for k in ("M", "K", "d_X"))
    l = shared_value(cfgs, "l_tr")
    alpha = scalar_tensor(cfgs, "alpha", dev) if alpha is None else alpha.to(dev)
    sigma = random_tasks(rng, M, K, B, *stream, device=dev)  # [E, B, K, M]
    xq, x = _inputs(rng, alpha, M, B, l, *stream)  # [E, B], [E, B, l]
    k = rng.randint(K, (B,), *stream, "k").to(dev) + 1  # [E, B]
    E = sigma.shape[0]
    chain = torch.empty(E, B, K + 1, M, dtype=torch.long, device=dev)  # C_j(v) = sigma_j(C_{j-1}(v)), C_0(v) = v
    chain[:, :, 0] = torch.arange(M, device=dev)
    for j in range(K):
        chain[:, :, j + 1] = torch.gather(sigma[:, :, j], 2, chain[:, :, j])
    chain = chain.view(E, B, (K + 1) * M)
    N = l * K + K - 1
    step = torch.arange(K, device=dev).repeat(l + 1)[:N]  # column n's step j: examples, then the query's prefix
    starts = torch.cat([x, xq[..., None]], 2).repeat_interleave(K, dim=2)[..., :N]  # each column's chain start
    idx = starts + step * M  # C_j(start) sits at j M + start                                         [E, B, N]
    in_w = torch.gather(chain, 2, idx)
    out_w = torch.gather(chain + d_X, 2, idx.add_(M))  # C_{j+1}(start), in w's output half
    valid = torch.arange(K - 1, device=dev) < (k - 1)[..., None]  # [E, B, K-1]
    ends = torch.gather(chain, 2, torch.stack([k - 1, k], -1) * M + xq[..., None])  # z_{k-1}, z_k    [E, B, 2]
    Q_ids = torch.stack([ends[..., 0], M - 1 + k], -1)  # e_{z_{k-1}} + e_{M+k-1}: trr_patterns' row + positions' row
    Q = torch.zeros(E, B, 2 * d_X, device=dev).scatter_(2, Q_ids, 1.0)
    return BasisColumns(in_w, M + step, out_w, valid, Q, ends[..., 1], trr_patterns(cfgs, dev))
