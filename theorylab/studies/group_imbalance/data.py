"""Data of section 4.1, batched over models [E]: the two-group Gaussian mixture with teacher labels, and the
digits data set with a noisy minority group (section 4.4's transformed-subset protocol).

A training set holds exactly round(lam2 N) minority samples (group 2) and the rest from group 1; test sets hold
n_test samples of each group. Inputs X [E, n, D], labels y [E, n] in {0, 1}, groups g [E, n] in {0 (majority), 1}.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value


@dataclass
class Split:
    X: torch.Tensor  # [E, n, D]
    y: torch.Tensor  # [E, n] float 0/1
    g: torch.Tensor  # [E, n] group index: 0 majority, 1 minority
    p: torch.Tensor | None = None  # [E, n] P(y = 1 | x) under the teacher (GMM only)


def teacher_prob(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """H(W, x) = (1/K) sum_j sigmoid(w_j^T x): W [*, E, D, K], X [E, n, D] -> [*, E, n]."""
    return torch.sigmoid(X @ W).mean(-1)


def teacher(cfgs: Sequence, device) -> torch.Tensor:
    """[E, d, K] W* = teacher_scale G / ||G||_F, G Gaussian [R precursor code]."""
    d, K = shared_value(cfgs, "d"), shared_value(cfgs, "K")
    G = rng_for(cfgs, device).normal((d, K), "teacher").to(device)
    return shared_value(cfgs, "teacher_scale") * G / G.flatten(1).norm(dim=-1)[:, None, None]


def minority_count(cfgs: Sequence, device) -> torch.Tensor:
    """[E] round(lam2 N) minority samples in each training set."""
    return torch.round(scalar_tensor(cfgs, "lam2", device) * shared_value(cfgs, "N")).long()


def gmm_inputs(cfgs: Sequence, g: torch.Tensor, *stream, device) -> torch.Tensor:
    """x = mu_g 1_d + sigma_g z for group indices g [E, n]."""
    d = shared_value(cfgs, "d")
    mu = torch.stack([scalar_tensor(cfgs, "mu1", device), scalar_tensor(cfgs, "mu2", device)], -1)  # [E, 2]
    sd = torch.stack([scalar_tensor(cfgs, "sigma1", device), scalar_tensor(cfgs, "sigma2", device)], -1)
    z = rng_for(cfgs, device).normal((g.shape[1], d), *stream, "z").to(device)  # [E, n, d]
    return mu.gather(1, g)[..., None] + sd.gather(1, g)[..., None] * z


def gmm_split(cfgs: Sequence, W_star: torch.Tensor, g: torch.Tensor, *stream, device) -> Split:
    X = gmm_inputs(cfgs, g, *stream, device=device)
    p = teacher_prob(W_star, X)
    u = rng_for(cfgs, device).uniform((g.shape[1],), *stream, "y").to(device)
    return Split(X, (u < p).float(), g, p)


def gmm_train(cfgs: Sequence, W_star: torch.Tensor, device) -> Split:
    """The training set; labels = "shuffled" permutes its labels across samples (keeping their count), so they
    carry no information about x."""
    N = shared_value(cfgs, "N")
    g = (torch.arange(N, device=device)[None] < minority_count(cfgs, device)[:, None]).long()  # [E, N]
    split = gmm_split(cfgs, W_star, g, "train", device=device)
    if shared_value(cfgs, "labels") == "shuffled":
        perm = rng_for(cfgs, device).permutation(N, "train", "shuffle").to(device)
        split = Split(split.X, split.y.gather(1, perm), split.g, split.p)
    return split


def gmm_test(cfgs: Sequence, W_star: torch.Tensor, device) -> Split:
    n = shared_value(cfgs, "n_test")
    g = (torch.arange(2 * n, device=device) >= n).long().expand(len(cfgs), -1)
    return gmm_split(cfgs, W_star, g, "test", device=device)


# ---- digits (scikit-learn's bundled copy; no download) ----


@lru_cache(maxsize=4)
def digits_features(d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits: standardised pixels projected on the top-d principal components, rescaled to unit
    variance, plus a constant feature (a bias) -> X [1797, d + 1]; y = 1 for odd digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    X = torch.tensor(data.data, dtype=torch.float64)
    X = (X - X.mean(0)) / X.std(0).clamp_min(1e-6)
    _, _, Vt = torch.linalg.svd(X, full_matrices=False)
    Z = X @ Vt[:d].T
    Z = Z / Z.std(0)
    return torch.cat([Z, torch.ones(len(Z), 1, dtype=Z.dtype)], 1).float(), torch.tensor(data.target % 2).float()


def digits_splits(cfgs: Sequence, device) -> tuple[Split, Split]:
    """Per seed: a random 30% test split; the remaining pool halves into majority and minority candidates. The
    training set takes round(lam2 N) minority and N - round(lam2 N) majority samples; minority inputs (train and
    test) get noise2 N(0, I) added to their d principal-component features."""
    X, y = digits_features(shared_value(cfgs, "d"))
    X, y = X.to(device), y.to(device)
    M = X.shape[0]
    n_test = min(shared_value(cfgs, "n_test"), int(0.15 * M))
    N = shared_value(cfgs, "N")
    rng = rng_for(cfgs, device)
    perm = rng.permutation(M, "digits", "split").to(device)  # [E, M]
    test_idx = perm[:, : 2 * n_test]
    pool = perm[:, 2 * n_test :]
    half = pool.shape[1] // 2
    if N > half:
        raise ValueError(f"field 'N' must be <= {half} with dataset = digits (got {N})")
    n2 = minority_count(cfgs, device)
    slot = torch.arange(N, device=device)[None]
    g_train = (slot < n2[:, None]).long()  # [E, N]
    idx_train = torch.where(g_train == 1, pool[:, :N], pool[:, half : half + N])
    g_test = (torch.arange(2 * n_test, device=device) >= n_test).long().expand(len(cfgs), -1)
    noise2 = scalar_tensor(cfgs, "noise2", device)[:, None, None]

    def build(idx, g, stream):
        x = X[idx]  # [E, n, D]
        z = rng.normal((idx.shape[1], X.shape[1]), "digits", stream).to(device)
        z[..., -1] = 0  # the constant feature stays 1
        return Split(x + noise2 * g[..., None].float() * z, y[idx], g)

    return build(idx_train, g_train, "train"), build(test_idx, g_test, "test")
