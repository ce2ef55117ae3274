"""The graph study's step speed path (issue 26): the hand-written loss and gradient (graph.fused) against autograd
through model.forward, the batch draws of many steps at once against one draw per step, and a few training steps
of the fast step against the plain one."""
import pytest
import torch

from theorylab.core.batch import take_rows
from theorylab.core.ensemble import rng_for
from theorylab.core.losses import hinge
from theorylab.core.train import train_ensemble
from theorylab.studies.graph.config import TINY, GraphConfig
from theorylab.studies.graph.data import graphs
from theorylab.studies.graph.fused import HingeLoss, Tokens, held, hinge_loss
from theorylab.studies.graph.model import forward, init_params, trainable
from theorylab.studies.graph.train import DRAW_STEPS, batch_sampler, training

CPU = torch.device("cpu")
SETTINGS = [("gt", {}), ("gt", {"biases": True}), ("gt", {"init": "gaussian", "biases": True}), ("gt", {"hops": 2}),
            ("gt", {"graph": "er", "k": 3}), ("no_pe", {}), ("no_pe", {"init": "gaussian", "biases": True})]


def models(variant, extra, dtype):
    cs = [GraphConfig(**{**TINY, "seed": s, "variant": variant, "n_label": 10 + s, **extra}) for s in range(3)]
    g = graphs(cs, CPU)
    p = init_params(cs, rng_for(cs, CPU), CPU)
    gen = torch.Generator().manual_seed(7)
    p = {k: (v + (0.3 * torch.randn(v.shape, generator=gen) if k != "a" else 0)) for k, v in p.items()}  # off the init
    if dtype == torch.float64:
        g, p = g.double(), {k: v.double() for k, v in p.items()}
    names = trainable(cs)
    return cs, g, {k: v.requires_grad_(k in names) for k, v in p.items()}, names


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("variant,extra", SETTINGS)
def test_fused_loss_and_gradients_equal_autograd_through_the_forward(variant, extra, dtype, tol):
    """Loss, f and every trained weight's gradient (per-model loss weights, as the trainer's masked sum gives):
    float64 within 1e-12, float32 within 1e-5 relative to the largest entry."""
    cs, g, p, names = models(variant, extra, dtype)
    nodes = g.order[:, :8]
    y = take_rows(g.y, nodes)
    weight = torch.tensor([1.0, 0.0, 2.5], dtype=dtype)  # a frozen model's loss enters with weight 0
    rows = (nodes + torch.arange(3)[:, None] * g.X.shape[1]).flatten()
    loss, f = hinge_loss(p, g, rows, y, Tokens(g, variant))
    for reference in (forward(p, g, nodes, variant, fast=False), forward(p, g, nodes, variant)):
        ref_loss = hinge(reference, y)
        torch.testing.assert_close(f, reference.detach(), rtol=tol, atol=tol)
        torch.testing.assert_close(loss, ref_loss, rtol=tol, atol=tol)
        got = torch.autograd.grad((loss * weight).sum(), [p[k] for k in names], retain_graph=True)
        want = torch.autograd.grad((ref_loss * weight).sum(), [p[k] for k in names])
        for k, a, b in zip(names, got, want):
            scale = float(b.abs().max()) or 1.0
            assert float((a - b).abs().max()) <= tol * scale, (k, float((a - b).abs().max()) / scale)
            assert float(a[1].abs().max()) == 0.0, k  # weight 0: no gradient at all


@pytest.mark.parametrize("variant,extra", [("gt", {}), ("gt", {"biases": True}), ("no_pe", {})])
def test_weights_held_at_identity_and_zero_are_left_out_without_changing_a_bit(variant, extra):
    """The paper init holds proj at I and the biases at 0 (not trained): held() names them, and the step without
    them gives the same loss, f and gradients bit for bit (x I + 0 = x); trained or moved weights are never held."""
    cs = [GraphConfig(**{**TINY, "seed": s, "variant": variant, **extra}) for s in range(3)]
    g = graphs(cs, CPU)
    names = trainable(cs)
    p = init_params(cs, rng_for(cs, CPU), CPU)
    gen = torch.Generator().manual_seed(3)
    p = {k: (v + 0.3 * torch.randn(v.shape, generator=gen) if k in names else v).requires_grad_(k in names)
         for k, v in p.items()}
    left_out = held(p, names)
    biases = {"attn.qkv.b", "attn.proj.b", "fc1.b"}
    assert left_out == {"attn.proj.w"} | (set() if extra.get("biases") else biases)
    assert not left_out & set(names)
    assert held({**p, "attn.proj.w": p["attn.proj.w"] * 1.5}, names) == left_out - {"attn.proj.w"}
    nodes = g.order[:, :8]
    y = take_rows(g.y, nodes)
    rows = (nodes + torch.arange(3)[:, None] * g.X.shape[1]).flatten()
    tokens = Tokens(g, variant)
    (l1, f1), (l2, f2) = hinge_loss(p, g, rows, y, tokens), hinge_loss(p, g, rows, y, tokens, left_out)
    assert torch.equal(l1, l2) and torch.equal(f1, f2)
    for k, a, b in zip(names, torch.autograd.grad(l1.sum(), [p[k] for k in names]),
                       torch.autograd.grad(l2.sum(), [p[k] for k in names])):
        assert torch.equal(a, b), k


def test_tokens_bias_by_slot_position_and_mask_the_empty_slots():
    """Tokens: each slot's distance is its position's wherever it is filled (the score bias gathers by slot),
    the mask is -inf exactly on empty slots, and a graph whose slots are all filled has no mask."""
    cs = [GraphConfig(**{**TINY, "seed": s, "graph": "er", "k": 3}) for s in range(3)]
    g = graphs(cs, CPU)
    t = Tokens(g, "gt")
    E, N, L = g.tok_dist.shape
    assert torch.equal(g.tok_dist[g.tok_mask], t.slot_dist.expand(E, N, L)[g.tok_mask])
    assert t.slot_dist.tolist() == [0] + [z for z in range(1, cs[0].Z + 1) for _ in range(3)]
    assert t.mask is not None and bool((~g.tok_mask).any())
    mask = t.mask.view(E, N, L)
    assert torch.equal(mask == -torch.inf, ~g.tok_mask) and bool((mask[g.tok_mask] == 0).all())
    filled = {"tok_mask": torch.ones_like(g.tok_mask), "tok_dist": t.slot_dist.expand(E, N, L)}
    full = g.__class__(**{**g.__dict__, **filled})
    assert Tokens(full, "gt").mask is None


def test_tokens_of_the_labelled_nodes_only_give_the_same_step_bit_for_bit():
    """The trainer's Tokens keep the labelled nodes' rows only (a table that stays in cache): the same loss, f and
    gradients bit for bit as the full tables, and a node that was not kept is refused, not read from a wrong row."""
    cs, g, p, names = models("gt", {"graph": "er", "k": 3}, torch.float32)
    kept = g.order[:, :10]
    nodes = kept[:, [3, 0, 9, 3]]
    y = take_rows(g.y, nodes)
    rows = (nodes + torch.arange(3)[:, None] * g.X.shape[1]).flatten()
    (l1, f1), (l2, f2) = hinge_loss(p, g, rows, y, Tokens(g, "gt")), hinge_loss(p, g, rows, y, Tokens(g, "gt", kept))
    assert torch.equal(l1, l2) and torch.equal(f1, f2)
    for k, a, b in zip(names, torch.autograd.grad(l1.sum(), [p[k] for k in names]),
                       torch.autograd.grad(l2.sum(), [p[k] for k in names])):
        assert torch.equal(a, b), k
    other = g.order[:, 10:11].expand(3, 4)
    with pytest.raises((IndexError, RuntimeError)):
        hinge_loss(p, g, (other + torch.arange(3)[:, None] * g.X.shape[1]).flatten(), y, Tokens(g, "gt", kept))


def test_batch_draws_at_once_equal_one_draw_per_step_bit_for_bit():
    cs = [GraphConfig(**{**TINY, "seed": s, "n_label": 5 + 3 * s}) for s in range(3)]
    g, steps = graphs(cs, CPU), DRAW_STEPS + 9
    at_once = batch_sampler(g, rng_for(cs, CPU), 7, steps)
    one_by_one = batch_sampler(g, rng_for(cs, CPU), 7, steps, at_once=False)
    for step in [0, 1, DRAW_STEPS - 1, DRAW_STEPS, steps, 3]:  # a window, the next, the last, back to the first
        (n1, y1, r1), (n2, y2, r2) = at_once(step), one_by_one(step)
        assert torch.equal(n1, n2) and torch.equal(y1, y2) and torch.equal(r1, r2)
        assert torch.equal(r1, (n1 + torch.arange(3)[:, None] * g.X.shape[1]).flatten())
        assert bool((g.labelled.gather(1, n1)).all())  # labelled nodes only


@pytest.mark.parametrize("variant,extra", [("gt", {}), ("no_pe", {"biases": True})])
def test_fast_training_steps_equal_the_plain_ones(variant, extra):
    """30 SGD steps of the fast step (fused loss, draws at once) against the plain one (autograd through
    model.forward, one draw per step), float32: weights and curves within 1e-5 relative."""
    cs = [GraphConfig(**{**TINY, "seed": s, "variant": variant, "steps": 30, "lr": 0.5 + s, **extra}) for s in range(3)]
    out = []
    for fast in (True, False):
        tr = training(cs, rng_for(cs, CPU), CPU, fast=fast)
        out.append(train_ensemble(tr.params, list(tr.trainable), tr.loss, tr.lr, tr.steps, optimizer=tr.optimizer,
                                  curve_points=10))
    fast, plain = out
    for k in plain.params:
        scale = float(plain.params[k].abs().max()) or 1.0
        assert float((fast.params[k] - plain.params[k]).abs().max()) <= 1e-5 * scale, k
    assert fast.curves.keys() == plain.curves.keys()
    torch.testing.assert_close(fast.curves["loss"], plain.curves["loss"], rtol=1e-5, atol=1e-6)
    assert not torch.equal(fast.params["fc1.w"], training(cs, rng_for(cs, CPU), CPU).params["fc1.w"])  # it trained


@pytest.mark.gpu
@pytest.mark.parametrize("variant,extra", [("gt", {}), ("no_pe", {"biases": True})])
def test_on_cuda_the_fused_loss_equals_autograd_and_the_cpu(variant, extra):
    cuda = torch.device("cuda")
    cs, g_cpu, p_cpu, names = models(variant, extra, torch.float64)
    g = graphs(cs, cuda).double()
    p = {k: v.detach().to(cuda).requires_grad_(k in names) for k, v in p_cpu.items()}
    nodes = g_cpu.order[:, :8]
    y = take_rows(g_cpu.y, nodes)
    rows = (nodes + torch.arange(3)[:, None] * g_cpu.X.shape[1]).flatten()
    loss, _ = hinge_loss(p, g, rows.to(cuda), y.to(cuda), Tokens(g, variant))
    ref = hinge(forward(p, g, nodes.to(cuda), variant, fast=False), y.to(cuda))
    cpu_loss, _ = hinge_loss(p_cpu, g_cpu, rows, y, Tokens(g_cpu, variant))
    torch.testing.assert_close(loss, ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(loss.cpu(), cpu_loss, atol=1e-12, rtol=1e-10)
    for k, a, b in zip(names, torch.autograd.grad(loss.sum(), [p[k] for k in names]),
                       torch.autograd.grad(ref.sum(), [p[k] for k in names])):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9, msg=k)
