"""The data model of section 2.1 on one graph per model, batched over models [E].

Everything here is a pure function of a model's data fields (config.DATA_FIELDS, hashed): the graph, the
features, the labels, the token samples T^n and the labelled order do not depend on the variant, on n_label
(the labelled sets are nested prefixes of one order) or on the ensemble a model trains in. Graph building
is numpy / networkx / scipy per model and cached; the tensors are stacked [E, ...] afterwards.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from theorylab.core import nn
from theorylab.core.batch import take_rows
from theorylab.core.ensemble import shared_value
from theorylab.studies.graph.config import DATA_FIELDS, PLANTED, GraphConfig, tokens_per_distance

UNREACHED = -1  # distance of a node farther than Z hops (or in another component)


@dataclass
class Graph:
    """One model's graph (numpy)."""
    X: np.ndarray  # [N, d] node features
    y: np.ndarray  # [N] labels +-1; 0: tied (discarded)
    kind: np.ndarray  # [N] +1 mu_+, -1 mu_-, 0 non-discriminative (real features: 0)
    adj: np.ndarray  # [N, N] 0/1 symmetric, no self loops
    dist: np.ndarray  # [N, N] hop distance, UNREACHED beyond Z
    tok: np.ndarray  # [N, 1 + Z k] node of each token: itself, then k slots per distance 1..Z
    tok_mask: np.ndarray  # [N, 1 + Z k] slot filled
    order: np.ndarray  # [N] untied nodes first, in random order (labelled = prefix), then tied ones
    n_valid: int  # untied nodes

    def core_coverage(self, z_m: int) -> float:
        """Share of the (node, distance-z_m node) pairs whose second node is in the first's T^n."""
        core = self.dist == z_m
        hit = np.zeros_like(core)
        rows = np.repeat(np.arange(len(self.tok)), self.tok.shape[1])
        hit[rows[self.tok_mask.ravel()], self.tok.ravel()[self.tok_mask.ravel()]] = True
        return float((hit & core).sum() / max(1, core.sum()))


@dataclass
class GraphBatch:
    """The ensemble's graphs, stacked."""
    X: torch.Tensor  # [E, N, d]
    y: torch.Tensor  # [E, N]
    kind: torch.Tensor  # [E, N]
    adj: torch.Tensor  # [E, N, N] float
    tok: torch.Tensor  # [E, N, L] long
    tok_dist: torch.Tensor  # [E, N, L] long: distance of each token to its query (0..Z)
    tok_mask: torch.Tensor  # [E, N, L] bool
    labelled: torch.Tensor  # [E, N] bool
    test: torch.Tensor  # [E, N] bool
    order: torch.Tensor  # [E, N] long
    n_label: torch.Tensor  # [E] long
    z_m: torch.Tensor  # [E] long
    nbr: torch.Tensor  # [E, N, K] long: the nonzeros of D^-1/2 (A + I) D^-1/2, row by row (core.nn.neighbour_lists)
    nbr_w: torch.Tensor  # [E, N, K] their weights (0: padding; K = the largest degree + 1 in the ensemble)
    # [E, N, d, L] x_s for s in T^n, row n, stored transposed (attention variants; None for gcn): a step reads B
    # whole rows of it instead of gathering B L feature vectors one by one (2x faster; E N L d floats, 95 MB at full
    # size, E = 20); transposed, every product over the tokens is a row vector times a contiguous matrix (fused.py)
    x_tok_t: torch.Tensor | None = None
    ax: torch.Tensor | None = None  # [E, N, d] A_hat X, the GCN's first aggregation (data: computed once)

    @property
    def E(self) -> int:
        return self.X.shape[0]

    def double(self) -> "GraphBatch":
        """Features, adjacency and neighbour weights in float64 (the references' precision)."""
        adj, X = self.adj.double(), self.X.double()
        nbr_w = nn.neighbour_lists(adj, self.nbr.shape[-1])[1]
        return GraphBatch(**{**self.__dict__, "X": X, "adj": adj, "nbr_w": nbr_w,
                             "x_tok_t": None if self.x_tok_t is None else self.x_tok_t.double(),
                             "ax": None if self.ax is None else nn.neighbour_sum(X, self.nbr, nbr_w)})


def data_key(cfg: GraphConfig) -> tuple:
    """The data fields' values: what a model's graph, features, labels and samples depend on."""
    return tuple(getattr(cfg, f) for f in DATA_FIELDS)


def data_seed(key: tuple) -> int:
    fields = dict(zip(DATA_FIELDS, key))
    return int(hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:15], 16)


def _topology(cfg: GraphConfig, rng: np.random.Generator):
    """Adjacency [N, N] (0/1) and, for the scikit-learn graphs, (features [N, d], labels [N])."""
    import networkx as nx

    if cfg.graph == "regular":
        g = nx.random_regular_graph(cfg.deg, cfg.N, seed=int(rng.integers(2**31)))
    elif cfg.graph == "er":
        g = nx.gnp_random_graph(cfg.N, cfg.deg / (cfg.N - 1), seed=int(rng.integers(2**31)))
    elif cfg.graph in PLANTED:
        g = {"karate": nx.karate_club_graph, "les_miserables": nx.les_miserables_graph,
             "florentine": nx.florentine_families_graph}[cfg.graph]()
        g = nx.convert_node_labels_to_integers(g, ordering="sorted")
    else:
        return _knn(cfg)
    adj = nx.to_numpy_array(g, nodelist=range(g.number_of_nodes()), weight=None)
    return (adj > 0).astype(np.float32), None


@functools.lru_cache(maxsize=8)
def _knn_cached(graph: str, knn: int, d: int):
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.neighbors import kneighbors_graph

    if graph == "digits_knn":
        data = load_digits()
        y = np.where(data.target >= 5, 1.0, -1.0)
    else:
        data = load_breast_cancer()
        y = np.where(data.target == 0, 1.0, -1.0)  # malignant = +1
    raw = data.data.astype(np.float64)
    z = (raw - raw.mean(0)) / np.maximum(raw.std(0), 1e-9)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    X = z @ vt[:d].T  # first d principal components                                     [N, d]
    X = X / np.linalg.norm(X, axis=1).mean()  # mean feature norm 1, as the synthetic patterns
    A = kneighbors_graph(z, knn, mode="connectivity").toarray()
    adj = ((A + A.T) > 0).astype(np.float32)  # symmetric k-NN graph
    return adj, (X.astype(np.float32), y.astype(np.float32))


def _knn(cfg: GraphConfig):
    if cfg.d > (64 if cfg.graph == "digits_knn" else 30):
        raise ValueError(f"field 'd' must be <= the data set's feature count for graph {cfg.graph} (got {cfg.d})")
    return _knn_cached(cfg.graph, cfg.knn, cfg.d)


def distances(adj: np.ndarray, Z: int) -> np.ndarray:
    """[N, N] shortest-path hop distance, UNREACHED beyond Z (breadth-first search, scipy)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    D = shortest_path(csr_matrix(adj), method="D", unweighted=True)
    return np.where(D <= Z, D, UNREACHED).astype(np.int64)


def features(cfg: GraphConfig, N: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Planted features [N, d] and kind [N]: mu_+ = e_0 / mu_- = e_1 with prob p_d (1/2 each), else nu_j = e_{2+j}
    for a uniform j < M; plus tau u, u uniform in [-1, 1]^d / sqrt(d)."""
    disc = rng.random(N) < cfg.p_d
    sign = np.where(rng.random(N) < 0.5, 1, -1)
    j = rng.integers(cfg.M, size=N)
    kind = np.where(disc, sign, 0)
    pattern = np.where(disc, np.where(sign > 0, 0, 1), 2 + j)
    X = np.eye(cfg.d, dtype=np.float32)[pattern]
    X += cfg.tau * rng.uniform(-1, 1, size=X.shape).astype(np.float32) / np.sqrt(cfg.d)
    return X, kind


def core_labels(kind: np.ndarray, dist: np.ndarray, z_m: int) -> np.ndarray:
    """y_n = sign(#mu_+ - #mu_-) over the nodes at distance exactly z_m; 0 on a tie (section 2.1, step 3)."""
    core = (dist == z_m).astype(np.int64)  # [N, N]
    return np.sign(core @ (kind == 1).astype(np.int64) - core @ (kind == -1).astype(np.int64)).astype(np.float32)


def token_labels(kind: np.ndarray, tok: np.ndarray, tok_mask: np.ndarray) -> np.ndarray:
    """y_n = sign(#mu_+ - #mu_-) over all of T^n (itself and every sampled node): a rule with no core distance,
    which attention without PE represents (uniform attention's mean feature has that sign); 0 on a tie."""
    k = np.where(tok_mask, kind[tok], 0)
    return np.sign(k.sum(1)).astype(np.float32)


def sample_tokens(dist: np.ndarray, Z: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """T^n: the node itself, then up to k nodes drawn uniformly without replacement at each distance 1..Z."""
    N = dist.shape[0]
    tok, mask = [np.arange(N)[:, None]], [np.ones((N, 1), bool)]
    for z in range(1, Z + 1):
        keys = np.where(dist == z, rng.random((N, N)), np.inf)
        kk = min(k, N)
        idx = np.argpartition(keys, kk - 1, axis=1)[:, :kk] if kk < N else np.argsort(keys, axis=1)
        idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(keys, idx, 1), axis=1), 1)
        ok = np.isfinite(np.take_along_axis(keys, idx, 1))
        if kk < k:
            idx = np.pad(idx, ((0, 0), (0, k - kk)))
            ok = np.pad(ok, ((0, 0), (0, k - kk)))
        tok.append(np.where(ok, idx, 0))
        mask.append(ok)
    return np.concatenate(tok, 1), np.concatenate(mask, 1)


def build_graph(cfg: GraphConfig) -> Graph:
    """One model's graph from its data fields (cached by their values)."""
    return _build(data_key(cfg))


@functools.lru_cache(maxsize=256)
def _build(key: tuple) -> Graph:
    cfg = SimpleNamespace(**dict(zip(DATA_FIELDS, key)))
    rng = np.random.default_rng(data_seed(key))
    adj, native = _topology(cfg, rng)
    N = adj.shape[0]
    dist = distances(adj, cfg.Z)
    if native is None:
        X, kind = features(cfg, N, rng)
        y = core_labels(kind, dist, cfg.z_m)
    else:
        (X, y), kind = native, np.zeros(N, dtype=np.int64)
    if cfg.label_rule == "random":  # hypothesis false: labels independent of every neighbourhood
        y = np.where(rng.random(N) < 0.5, 1.0, -1.0).astype(np.float32) * (y != 0)
    tok, tok_mask = sample_tokens(dist, cfg.Z, tokens_per_distance(cfg.k, cfg.deg, cfg.z_m), rng)
    if cfg.label_rule == "tokens" and native is None:
        y = token_labels(kind, tok, tok_mask)
    valid = np.flatnonzero(y != 0)
    order = np.concatenate([rng.permutation(valid), np.flatnonzero(y == 0)])
    return Graph(X, y, kind, adj, dist, tok, tok_mask, order, len(valid))


def slots(cfgs: Sequence[GraphConfig], z: int) -> int:
    """Token slots at distance z that a node can fill: k, or on a deg-regular graph at most its distance-z shell
    deg (deg-1)^(z-1) (the rest are empty for every node; dropping them changes no number, only the work:
    37 -> 29 tokens at the defaults). A function of the config, so a model alone has the ensemble's slots."""
    k, deg = shared_value(cfgs, "k_eff"), shared_value(cfgs, "deg")
    return min(k, deg * max(1, deg - 1) ** (z - 1)) if shared_value(cfgs, "graph") == "regular" else k


def graphs(cfgs: Sequence[GraphConfig], device) -> GraphBatch:
    """The ensemble's graphs [E, ...]; T^n restricted to distance `hops` when hops >= 1, without the slots no node
    can fill (`slots`)."""
    gs = [build_graph(c) for c in cfgs]
    Ns = {g.X.shape[0] for g in gs}
    if len(Ns) != 1:
        raise ValueError(f"graphs of one ensemble differ in size ({sorted(Ns)})")
    N = Ns.pop()
    hops, k, Z = shared_value(cfgs, "hops"), shared_value(cfgs, "k_eff"), shared_value(cfgs, "Z")
    keep = [0] + [1 + (z - 1) * k + j for z in (range(1, Z + 1) if hops < 0 else [hops]) for j in range(slots(cfgs, z))]
    # row-major: numpy's column selections come back column-major, and every step reads rows of them
    t = lambda a, dt=None: torch.as_tensor(np.stack(a), dtype=dt, device=device).contiguous()  # noqa: E731
    tok = t([g.tok[:, keep] for g in gs], torch.long)
    dist = t([g.dist for g in gs], torch.long)
    tok_dist = torch.gather(dist, 2, tok).clamp_min(0)  # [E, N, L]; masked slots point at node 0 (value unused)
    labelled = torch.zeros(len(gs), N, dtype=torch.bool, device=device)
    test = torch.zeros_like(labelled)
    for e, (c, g) in enumerate(zip(cfgs, gs)):
        if c.n_label > g.n_valid - 1:
            raise ValueError(f"field 'n_label' must be < the {g.n_valid} untied nodes of graph {c.graph} "
                             f"(got {c.n_label})")
        labelled[e, torch.as_tensor(g.order[:c.n_label])] = True
        test[e, torch.as_tensor(g.order[c.n_label:g.n_valid])] = True
    adj = t([g.adj for g in gs], torch.float32)
    X = t([g.X for g in gs], torch.float32)
    x_tok_t = take_rows(X, tok).transpose(-1, -2).contiguous() if any(c.variant != "gcn" for c in cfgs) else None
    nbr, nbr_w = nn.neighbour_lists(adj)
    ax = nn.neighbour_sum(X, nbr, nbr_w) if any(c.variant == "gcn" for c in cfgs) else None
    return GraphBatch(X, t([g.y for g in gs], torch.float32),
                      t([g.kind for g in gs], torch.long), adj, tok, tok_dist,
                      t([g.tok_mask[:, keep] for g in gs], torch.bool), labelled, test,
                      t([g.order for g in gs], torch.long),
                      torch.tensor([c.n_label for c in cfgs], device=device),
                      torch.tensor([c.z_m for c in cfgs], device=device), nbr, nbr_w, x_tok_t, ax)
