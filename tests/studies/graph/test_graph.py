"""Graph-transformer study: the data model's statistics (labels by the core-distance majority, tokens at the
right distances, nested labelled sets shared by variants), the three forwards against per-node references,
ensemble == alone, early config errors, every claim running per seed at tiny size and on a diverged seed;
the quick-size verdicts behind -m slow."""
import numpy as np
import pytest
import torch

import theorylab.studies.graph.train as train
from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError, make_config
from theorylab.core.ensemble import rng_for
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.graph.config import TINY, GraphConfig
from theorylab.studies.graph.data import UNREACHED, build_graph, graphs
from theorylab.studies.graph.model import forward, forward_reference, init_params, trainable

CPU = torch.device("cpu")
train_group = get_study("graph").train_group
CLAIM_IDS = {"fig_labels", "fig_iterations", "mech_attention", "mech_pe_core", "fig8_pe_sampling",
             "fig_real_planted", "fig_real_knn"}


def tiny(**kw):
    return GraphConfig(**{**TINY, **kw})


@pytest.mark.parametrize("z_m", [1, 2, 3])
def test_labels_are_the_core_majority_and_tokens_sit_at_their_distance(z_m):
    c = tiny(z_m=z_m, seed=3)
    g = build_graph(c)
    N = g.X.shape[0]
    kind = np.where(g.X[:, 0] > 0.5, 1, np.where(g.X[:, 1] > 0.5, -1, 0))  # read the patterns back
    assert np.array_equal(kind, g.kind) and abs(float((g.kind != 0).mean()) - c.p_d) < 0.2
    assert np.abs(g.X - np.eye(c.d)[np.argmax(g.X, 1)]).max() <= c.tau / np.sqrt(c.d) + 1e-6  # bounded noise
    for n in range(N):
        core = [s for s in range(N) if g.dist[n, s] == z_m]
        votes = sum(int(g.kind[s]) for s in core)
        assert g.y[n] == np.sign(votes)  # y = sign(#mu_+ - #mu_-) at distance exactly z_m; 0 = tied
    assert (g.dist == 0).sum() == N and g.dist.max() <= c.Z and (g.dist >= UNREACHED).all()
    for z in range(1, c.Z + 1):
        slots = slice(1 + (z - 1) * c.k, 1 + z * c.k)
        t, m = g.tok[:, slots], g.tok_mask[:, slots]
        assert (g.dist[np.arange(N)[:, None], t][m] == z).all()  # every sampled node is at distance z
        assert np.array_equal(m.sum(1), np.minimum((g.dist == z).sum(1), c.k))  # as many as exist, up to k
        assert all(len(set(t[n][m[n]])) == m[n].sum() for n in range(N))  # without replacement


def test_graph_is_shared_by_variants_and_nested_over_n_label():
    a = graphs([tiny(variant="gt", n_label=4), tiny(variant="gcn", n_label=16)], CPU)
    assert torch.equal(a.X[0], a.X[1]) and torch.equal(a.adj[0], a.adj[1]) and torch.equal(a.order[0], a.order[1])
    assert bool((a.labelled[0] <= a.labelled[1]).all()) and int(a.labelled[1].sum()) == 16
    assert not bool((a.labelled & a.test).any()) and bool((a.y[a.test] != 0).all())
    b = graphs([tiny(seed=1)], CPU)
    assert not torch.equal(a.adj[0], b.adj[0])  # another seed, another graph
    reg = build_graph(tiny())
    assert (reg.adj.sum(1) == 4).all() and (reg.adj == reg.adj.T).all()  # 4-regular, undirected


@pytest.mark.parametrize("deg", [3, 4, 6])
def test_default_tokens_cover_the_core_neighbourhood_of_a_regular_graph(deg):
    c = GraphConfig(**{**TINY, "k": 0, "deg": deg, "N": 80})
    g = build_graph(c)
    assert c.k_eff == deg * (deg - 1) and g.core_coverage(c.z_m) == 1.0
    assert build_graph(c.replace(k=2)).core_coverage(c.z_m) < 1.0  # a short sample misses part of the core


def test_token_rule_labels_are_the_majority_over_t_n():
    g = build_graph(tiny(label_rule="tokens"))
    votes = np.where(g.tok_mask, g.kind[g.tok], 0).sum(1)
    assert np.array_equal(g.y, np.sign(votes)) and (g.y != 0).mean() > 0.5


def test_paper_init_is_near_identity_without_trained_biases():
    from theorylab.studies.graph.model import trainable
    c = tiny()
    p = init_params([c], rng_for([c], CPU), CPU)
    d = c.d
    for i in range(3):  # W_Q, W_K, W_V within init_error of I (Frobenius, relative)
        assert float((p["attn.qkv.w"][0][:, i * d:(i + 1) * d] - torch.eye(d)).norm() / d ** 0.5) < 3 * c.init_error
    assert torch.equal(p["attn.proj.w"][0], torch.eye(d))
    assert not any(n.endswith(".b") for n in trainable([c])) and "attn.proj.w" not in trainable([c])
    assert "fc1.b" in trainable([tiny(biases=True)]) and "attn.proj.w" in trainable([tiny(init="gaussian")])


def test_pe_sampling_keeps_the_node_and_one_hop():
    g = graphs([tiny(hops=2)], CPU)
    assert g.tok.shape[-1] == 1 + TINY["k"] and bool((g.tok[..., 0] == torch.arange(g.tok.shape[1])).all())
    assert bool((g.tok_dist[..., 1:][g.tok_mask[..., 1:]] == 2).all())


@pytest.mark.parametrize("graph", ["karate", "les_miserables", "cancer_knn"])
def test_real_graphs_load_without_downloads(graph):
    g = build_graph(tiny(graph=graph))
    N = g.X.shape[0]
    assert N == {"karate": 34, "les_miserables": 77, "cancer_knn": 569}[graph] and g.n_valid > 10
    assert (g.adj == g.adj.T).all() and g.X.shape[1] == TINY.get("d", 16)


@pytest.mark.parametrize("variant", ["gt", "no_pe", "gcn"])
def test_forward_matches_the_per_node_reference(variant):
    cs = [tiny(seed=s, variant=variant, gcn_layers=2) for s in range(2)]
    rng = rng_for(cs, CPU)
    p = {k: v.double() for k, v in init_params(cs, rng, CPU).items()}
    if variant == "gt":
        p["attn.rel_bias"] = torch.randn_like(p["attn.rel_bias"])  # a non-zero PE is gathered by distance
    g = graphs(cs, CPU).double()
    nodes = g.order[:, :5]
    assert torch.allclose(forward(p, g, nodes, variant), forward_reference(p, g, nodes, variant), atol=1e-9)
    assert torch.allclose(forward(p, g, nodes, variant, fast=False), forward_reference(p, g, nodes, variant), atol=1e-9)


@pytest.mark.parametrize("graph", ["regular", "er", "les_miserables"])
@pytest.mark.parametrize("variant", ["gt", "no_pe", "gcn"])
def test_fast_forward_equals_the_plain_one_with_its_gradients(variant, graph):
    """The speed path (query row only; GCN over neighbour lists, last layer at the batch) against the plain
    one (full L x L attention read at row 0; dense normalized adjacency), float64: outputs, attention probes
    and every trained weight's gradient, on graphs with unequal degrees (er, a real graph: padded lists)."""
    cs = [tiny(seed=s, variant=variant, gcn_layers=3, graph=graph, n_label=8) for s in range(2)]
    p = {k: v.double() for k, v in init_params(cs, rng_for(cs, CPU), CPU).items()}
    p = {k: (v + 0.1 * torch.randn_like(v)).requires_grad_() for k, v in p.items()}  # off the init (b_z != 0)
    g = graphs(cs, CPU).double()
    nodes = g.order[:, :6]
    probes_fast, probes_plain = ({} if variant != "gcn" else None for _ in range(2))
    fast = forward(p, g, nodes, variant, probes_fast)
    plain = forward(p, g, nodes, variant, probes_plain, fast=False)
    torch.testing.assert_close(fast, plain, atol=1e-12, rtol=1e-10)
    if probes_fast is not None:
        torch.testing.assert_close(probes_fast["attn.map"][:, :, 0, 0], probes_plain["attn.map"][:, :, 0, 0],
                                   atol=1e-12, rtol=1e-10)
    names = [k for k in trainable(cs) if k in p]
    grads = [torch.autograd.grad((1 - f).clamp_min(0).sum(), [p[k] for k in names]) for f in (fast, plain)]
    for k, a, b in zip(names, *grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9, msg=k)


@pytest.mark.parametrize("variant", ["gt", "gcn"])
def test_training_on_the_fast_path_equals_the_plain_path(variant, monkeypatch):
    """Whole tiny runs (SGD steps, probes, grading) in float32: weights and metrics within 1e-5 relative. The plain
    run: one batch draw per step, the loss through autograd (no graph.fused), the plain forward everywhere."""
    import functools

    from theorylab.core.protocol import run_training
    cs = [tiny(seed=s, variant=variant) for s in range(2)]
    fast = train_group(cs, CPU, QUIET)
    monkeypatch.setattr(train, "forward", functools.partial(train.forward, fast=False))
    plain = run_training("graph", cs, train.training(cs, rng_for(cs, CPU), CPU, fast=False), QUIET)
    for k in fast.params:
        scale = float(plain.params[k].abs().max()) or 1.0
        assert float((fast.params[k] - plain.params[k]).abs().max()) <= 1e-5 * scale, k
    for a, b in zip(fast.metrics, plain.metrics):
        for k, v in b.items():
            if isinstance(v, float):
                assert a[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_no_pe_freezes_b_and_gt_moves_it():
    res = {v: train_group([tiny(variant=v)], CPU, QUIET) for v in ("gt", "no_pe")}
    assert float(res["no_pe"].params["attn.rel_bias"].abs().max()) == 0.0
    assert float(res["gt"].params["attn.rel_bias"].abs().max()) > 0.0


def test_ensemble_with_different_n_label_equals_alone():
    cs = [tiny(seed=0, n_label=4), tiny(seed=1, n_label=16), tiny(seed=0, n_label=8, z_m=1)]
    together = train_group(cs, CPU, QUIET)
    alone = train_group(cs[1:2], CPU, QUIET)
    for k in together.params:
        assert torch.allclose(together.params[k][1], alone.params[k][0], atol=1e-6), k
    assert together.metrics[1]["test_error"] == pytest.approx(alone.metrics[0]["test_error"], abs=1e-6)


@pytest.mark.parametrize("field,value", [("z_m", 4), ("hops", 0), ("hops", 5), ("d", 8), ("n_label", 400),
                                         ("variant", "gat"), ("graph", "cora"), ("p_d", 0.0), ("N", 7)])
def test_bad_config_names_field(field, value):
    with pytest.raises(ConfigError, match=field):
        make_config(GraphConfig, {field: value})


def test_n_label_beyond_a_real_graph_is_named():
    with pytest.raises(ValueError, match="n_label"):
        graphs([tiny(graph="florentine", n_label=12)], CPU)


def test_every_claim_runs_per_seed_at_tiny(claims_at):
    res = claims_at("graph", z_m=1, Z=2)
    assert set(res) == CLAIM_IDS
    for cid in ("fig_labels", "fig_iterations"):
        assert res[cid].claim.kind == "figure" and res[cid].outcome.control is not None
        assert res[cid].verdict != "agrees", res[cid].summary  # 20 steps learn nothing: no advantage to claim
    assert "sample_complexity" in res["fig_labels"].outcome.figures
    assert "no_pe_floor" in res["fig_labels"].outcome.numbers


def test_a_diverged_seed_fails_and_nothing_crashes(poison_seed, claims_at):
    poison_seed(train, "fc1.w")
    res = claims_at("graph", Z=2, z_m=1)
    for r in res.values():
        if r.outcome is not None:
            assert r.passed_seeds[1] is False and r.diverged == [1], r.claim.id


@pytest.mark.slow
def test_claims_quick_verdicts():
    res = {r.claim.id: r for r in run_claims(ClaimContext(get_study("graph"), "quick", 5, CPU))}
    assert res["fig_labels"].verdict == "agrees" and res["fig_iterations"].verdict == "agrees"
    assert res["mech_pe_core"].verdict == "holds" and res["fig8_pe_sampling"].verdict == "agrees"
    assert res["fig_labels"].control_discriminates and res["mech_pe_core"].control_discriminates


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["gt", "no_pe", "gcn"])
def test_on_cuda_the_fast_path_equals_the_plain_one_and_the_cpu(variant):
    cuda = torch.device("cuda")
    cs = [tiny(seed=s, variant=variant, gcn_layers=3, graph="er", n_label=8) for s in range(2)]
    p_cpu = {k: v.double() + 0.1 * torch.randn_like(v.double()) for k, v in init_params(cs, rng_for(cs, CPU), CPU).items()}
    p = {k: v.to(cuda).requires_grad_() for k, v in p_cpu.items()}
    g, g_cpu = graphs(cs, cuda).double(), graphs(cs, CPU).double()
    nodes = g_cpu.order[:, :6]
    fast, plain = forward(p, g, nodes.to(cuda), variant), forward(p, g, nodes.to(cuda), variant, fast=False)
    torch.testing.assert_close(fast, plain, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(fast.cpu(), forward(p_cpu, g_cpu, nodes, variant), atol=1e-12, rtol=1e-10)
    names = [k for k in trainable(cs) if k in p]
    grads = [torch.autograd.grad((1 - f).clamp_min(0).sum(), [p[k] for k in names]) for f in (fast, plain)]
    for k, a, b in zip(names, *grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9, msg=k)
