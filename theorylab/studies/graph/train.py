"""What an ensemble of graph transformers trains on: SGD on the hinge loss over the labelled nodes (section 2.3):
each step draws B labelled nodes per model with replacement (n_label may differ between the models of one
ensemble). At every checkpoint the probes
record the test error on the unlabelled untied nodes, b_0..b_Z and the attention statistics.

A cell's stored weights are the trained ones plus "a"; its metrics: train/test error, the final b_z, and the
attention statistics of the trained and the untrained model; its curves: those along training.
core.protocol runs the loop.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.batch import gather_rows, take_rows
from theorylab.core.ensemble import expand_to, scalar_tensor, shared_value
from theorylab.core.losses import hinge, sign_error
from theorylab.core.protocol import Training
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.graph.config import GraphConfig
from theorylab.studies.graph.data import GraphBatch, graphs
from theorylab.studies.graph.fused import Tokens, held, hinge_loss
from theorylab.studies.graph.model import forward, init_params, trainable

EVAL_NODES = 512  # nodes per evaluation chunk (bounds the [E, n, L, L] attention map)


def evaluate(params: dict[str, torch.Tensor], g: GraphBatch, variant: str) -> dict[str, torch.Tensor]:
    """Over every node (chunked): test and train error [E], and for attention variants the query's attention
    mass on the class-relevant tokens (distance z_m, discriminative), on the label-consistent ones among them,
    on the core distance, and the effective number of attended tokens exp(entropy), means over test nodes."""
    E, N = g.y.shape
    f = torch.empty(E, N, device=g.X.device)
    stats = {k: torch.zeros(E, N, device=g.X.device) for k in ("relevant", "consistent", "core", "eff")}
    with torch.no_grad():
        for start in range(0, N, EVAL_NODES):
            nodes = torch.arange(start, min(N, start + EVAL_NODES), device=g.X.device).expand(E, -1)
            probes: dict = {} if variant != "gcn" else None
            f[:, nodes[0]] = forward(params, g, nodes, variant, probes)
            if probes is None:
                continue
            A = probes["attn.map"][:, :, 0, 0, :]  # query row of the one head                  [E, n, L]
            tok = g.tok[:, nodes[0]]
            kind = gather_rows(g.kind, tok.flatten(1)).view_as(tok)  # kind of each token      [E, n, L]
            at_core = (g.tok_dist[:, nodes[0]] == g.z_m[:, None, None]) & g.tok_mask[:, nodes[0]]
            y = g.y[:, nodes[0]]
            stats["relevant"][:, nodes[0]] = (A * (at_core & (kind != 0))).sum(-1)
            stats["consistent"][:, nodes[0]] = (A * (at_core & (kind == y[..., None].long()))).sum(-1)
            stats["core"][:, nodes[0]] = (A * at_core).sum(-1)
            stats["eff"][:, nodes[0]] = torch.exp(-(A * torch.log(A.clamp_min(1e-30))).sum(-1))
    out = {"test_error": _masked_error(f, g.y, g.test), "train_error": _masked_error(f, g.y, g.labelled)}
    if variant != "gcn":
        w = g.test.float() / g.test.sum(1, keepdim=True).clamp_min(1)
        out.update({f"attn_{k}": (v * w).sum(1) for k, v in stats.items()})
    return out


def _masked_error(f: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    wrong = (~(y * f > 0)).float()  # a non-finite prediction is an error
    return (wrong * mask).sum(1) / mask.sum(1).clamp_min(1)


def b_values(params: dict[str, torch.Tensor], Z: int, E: int, device) -> dict[str, torch.Tensor]:
    table = params.get("attn.rel_bias")
    return {f"b{z}": (table[:, z, 0] if table is not None else torch.zeros(E, device=device)) for z in range(Z + 1)}


DRAW_STEPS = 64  # the batch draws of this many steps are made at once (the same numbers as one step at a time)


def batch_sampler(g: GraphBatch, rng: EnsembleRNG, B: int, steps: int, at_once: bool = True):
    """step -> (nodes [E, B], labels [E, B], rows [E B]): B labelled nodes per model, uniform with replacement (the
    labelled set is the first n_label of each model's order), drawn from the stream ("batch", step); rows: the
    nodes as rows of the flattened [E N, ...] node tables (e N + node). at_once draws DRAW_STEPS steps' nodes in
    one go (EnsembleRNG.uniform_streams: the same numbers bit for bit, with a handful of ops for 64 steps instead
    of ~25 per step); False: one draw per step, the plain form."""
    E, N = g.y.shape
    n_label = g.n_label.to(torch.float32)  # float32 u x n_label, as u * n_label (long) computes it
    offset = torch.arange(E, device=g.X.device) * N
    window: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def pick(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nodes = take_rows(g.order, torch.floor(u * expand_to(n_label, u)).long())  # labelled = the order's prefix
        return nodes, take_rows(g.y, nodes), nodes + expand_to(offset, nodes)

    def draw(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not at_once:
            nodes, y, rows = pick(rng.uniform((B,), "batch", step).to(g.X.device))
            return nodes, y, rows.flatten()
        first = step - step % DRAW_STEPS
        if first not in window:
            window.clear()
            last = min(first + DRAW_STEPS, steps + 1)
            nodes, y, rows = pick(rng.uniform_streams([("batch", s) for s in range(first, last)], B).to(g.X.device))
            window[first] = nodes, y, rows.transpose(0, 1).contiguous()  # rows step-major: one step's is contiguous
        nodes, y, rows = window[first]
        j = step - first
        return nodes[:, j], y[:, j], rows[j].view(-1)

    return draw


def training(cfgs: Sequence[GraphConfig], rng: EnsembleRNG, device: torch.device, fast: bool = True) -> Training:
    """fast: the attention variants' loss and gradient by graph.fused (hand-written backward, 14 + 20 ops) and the
    batch draws of 64 steps at once; False: model.forward's fast path through autograd and one draw per step, the
    plain step that the fast one is tested equal to (tests/studies/graph/test_graph_fused.py)."""
    E = len(cfgs)
    g = graphs(cfgs, device)
    params = init_params(cfgs, rng, device)
    variant, B, steps, Z = (shared_value(cfgs, f) for f in ("variant", "B", "steps", "Z"))
    untrained = evaluate(params, g, variant)
    batch = batch_sampler(g, rng, B, steps, at_once=fast)
    # the step draws labelled nodes only (the first n_label of each model's order): Tokens keeps their rows
    tokens = Tokens(g, variant, g.order[:, : int(g.n_label.max())]) if fast and variant != "gcn" else None
    left_out = held(params, trainable(cfgs)) if tokens is not None else frozenset()

    def loss_fn(p, step):
        nodes, y, rows = batch(step)
        if tokens is not None:
            loss, f = hinge_loss(p, g, rows, y, tokens, left_out)
            return {"loss": loss, "batch_error": sign_error(f, y)}
        f = forward(p, g, nodes, variant)
        return {"loss": hinge(f, y), "batch_error": sign_error(f, y)}

    def probe_fn(p, step):
        return {**evaluate(p, g, variant), **b_values(p, Z, E, device)}

    def grade(res):
        final = {k: v[-1] for k, v in res.curves.items() if k != "batch_error"}  # the last probes
        final.update({f"untrained_{k}": v for k, v in untrained.items()})
        final["n_test"] = g.test.sum(1).float()
        return final

    return Training(params, trainable(cfgs), loss_fn, scalar_tensor(cfgs, "lr", device), steps, grade,
                    what=f"SGD steps ({variant})", probes=probe_fn, curve_points=shared_value(cfgs, "curve_points"))
