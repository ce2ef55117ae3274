import pytest
import torch

from theorylab.core.config import ConfigError, make_config
from theorylab.core.ensemble import rng_for
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.shared.icl_prompts import in_domain_world, sample_prompts, split_tasks
from theorylab.studies.icl_gpt2.config import ICLGPT2Config
from theorylab.studies.icl_gpt2.evaluate import pruning_masks
from theorylab.studies.icl_gpt2.model import forward, forward_reference, init_params, neuron_embeddings, prune_neurons

dev = torch.device("cpu")
SMALL = dict(n_layer=2, n_head=2, n_embd=16, l_tr=5, l_ts=5)


def _setup(E=2, B=3, L=5, **kw):
    cfgs = [ICLGPT2Config(seed=s, **{**SMALL, **kw}) for s in range(E)]
    rng = rng_for(cfgs, dev)
    params = init_params(cfgs, rng, dev)
    gen = torch.Generator().manual_seed(0)  # move away from init so every term (biases, LN gains) matters
    params = {k: v + 0.2 * torch.randn(v.shape, generator=gen) for k, v in params.items()}
    world = in_domain_world(cfgs, dev, split_tasks(cfgs[0])[0])
    pr = sample_prompts(world, rng, torch.full((E,), 0.8), B, L, "t")
    return cfgs, params, pr


def test_batched_forward_equals_the_token_by_token_reference():
    cfgs, params, pr = _setup()
    F = forward(params, pr.C, pr.Q, 2)
    assert torch.allclose(F, forward_reference(params, pr.C, pr.Q, 2), atol=1e-5, rtol=1e-5)
    assert F.abs().max() > 1e-2


def test_forward_equals_transformers_gpt2model():
    """The block is GPT-2's: the same weights in transformers' GPT2Model (its own key bias left random: softmax
    ignores it) give the same read-out to 1e-5, for every model of the ensemble and a shorter prompt too."""
    transformers = pytest.importorskip("transformers")
    cfgs, params, pr = _setup(E=2, B=3, L=4)
    c = cfgs[0]
    F = forward(params, pr.C, pr.Q, c.n_head)
    gcfg = transformers.GPT2Config(n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
                                   n_inner=c.n_inner_mult * c.n_embd, activation_function="gelu_new", resid_pdrop=0.0,
                                   embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, vocab_size=1)
    names = {"ln_1.w": "ln_1.weight", "ln_1.b": "ln_1.bias", "attn.qkv.w": "attn.c_attn.weight",
             "attn.qkv.b": "attn.c_attn.bias", "attn.proj.w": "attn.c_proj.weight", "attn.proj.b": "attn.c_proj.bias",
             "ln_2.w": "ln_2.weight", "ln_2.b": "ln_2.bias", "mlp.fc1.w": "mlp.c_fc.weight", "mlp.fc1.b": "mlp.c_fc.bias",
             "mlp.fc2.w": "mlp.c_proj.weight", "mlp.fc2.b": "mlp.c_proj.bias"}
    for e in range(2):
        g = transformers.GPT2Model(gcfg).eval()
        sd = {"wpe.weight": params["wpe"][e], "ln_f.weight": params["ln_f.w"][e], "ln_f.bias": params["ln_f.b"][e],
              "wte.weight": torch.zeros(1, c.n_embd)}
        for l in range(c.n_layer):
            sd.update({f"h.{l}.{theirs}": params[f"h.{l}.{ours}"][e] for ours, theirs in names.items()})
        g.load_state_dict(sd, strict=True)
        X = torch.cat([pr.C[e], pr.Q[e][:, None]], 1)  # [B, N, d]
        N, P = X.shape[1], c.n_positions
        with torch.no_grad():
            h = g(inputs_embeds=X @ params["read_in.w"][e] + params["read_in.b"][e],
                  position_ids=torch.arange(P - N, P).expand(X.shape[0], N)).last_hidden_state
        ref = (h[:, -1] @ params["read_out.w"][e] + params["read_out.b"][e])[:, 0]
        torch.testing.assert_close(F[e], ref, atol=1e-5, rtol=1e-5)


def test_probes_have_documented_shapes():
    cfgs, params, pr = _setup(E=2, B=4, L=5)
    F, probes = forward(params, pr.C, pr.Q, 2, probes=True)
    assert F.shape == (2, 4)
    for l in range(2):
        assert probes[f"attn.{l}"].shape == (2, 4, 2, 6)
        assert torch.allclose(probes[f"attn.{l}"].sum(-1), torch.ones(2, 4, 2))
        assert probes[f"mlp.{l}"].shape == (2, 4, 64)


def test_neuron_embeddings_and_pruning_remove_exact_counts_by_norm():
    cfgs, params, pr = _setup()
    emb = neuron_embeddings(params, cfgs[0].d_X)
    assert len(emb) == 2 and emb[0]["label_norm"].shape == (2, 64)
    assert torch.all(emb[0]["label_angle"] >= 0) and torch.all(emb[0]["label_angle"] <= torch.pi)
    keep = pruning_masks(params, cfgs[0].d_X, 0.25, "smallest")
    for l, k in enumerate(keep):
        assert int((~k).sum(1).unique()) == 16
        norms = emb[l]["in_norm"]
        assert torch.all(norms[~k].reshape(2, -1).max(1).values <= norms[k].reshape(2, -1).min(1).values)
    p = prune_neurons(params, keep)
    assert torch.all(p["h.1.mlp.fc2.w"][~keep[1]] == 0) and torch.equal(p["h.1.mlp.fc1.w"], params["h.1.mlp.fc1.w"])


def test_bad_fields_are_named():
    with pytest.raises(ConfigError, match="n_embd"):
        make_config(ICLGPT2Config, {"n_embd": 15, "n_head": 2})
    with pytest.raises(ConfigError, match="n_layer"):
        make_config(ICLGPT2Config, {"n_layer": 0})


def test_training_lowers_the_hinge_loss():
    cfgs = [ICLGPT2Config(seed=0, steps=150, n_test=64, B=32, curve_points=10, n_layer=1, n_embd=16, l_tr=8, l_ts=8)]
    res = get_study("icl_gpt2").train_group(cfgs, dev, QUIET)
    loss = res.curves[0]["loss"]  # per-batch hinge at 11 checkpoints
    assert res.status == ["done"] and sum(loss[-3:]) < 0.5 * sum(loss[:3])
    assert {"attn_same_ood.0", "label_norm_median.0"} <= set(res.curves[0])


def test_cot_task_forward_with_absent_columns_equals_the_reference():
    from theorylab.shared.cot_reasoning import eval_reasoning, icl_prompts, step_prompts
    cfgs = [ICLGPT2Config(seed=s, task="cot", n_layer=2, n_head=2, n_embd=16, l_tr=3, l_ts=3, K=3) for s in range(2)]
    rng = rng_for(cfgs, dev)
    gen = torch.Generator().manual_seed(1)
    params = {k: v + 0.2 * torch.randn(v.shape, generator=gen) for k, v in init_params(cfgs, rng, dev).items()}
    assert params["read_in.w"].shape == (2, 2 * cfgs[0].d_X, 16) and params["read_out.w"].shape == (2, 16, cfgs[0].d_X)
    r = eval_reasoning(cfgs, rng, 2, 3, "t")
    for pr in (step_prompts(r, 2), icl_prompts(r)):  # 1 of 2 prefix slots absent; both absent
        assert not bool(pr.mask.all())
        F = forward(params, pr.C, pr.Q, 2, mask=pr.mask)
        assert F.shape == (2, 2, cfgs[0].d_X)
        torch.testing.assert_close(F, forward_reference(params, pr.C, pr.Q, 2, pr.mask), atol=1e-5, rtol=1e-5)
        # an absent column's content never matters
        C2 = torch.where(pr.mask[..., None], pr.C, torch.randn(pr.C.shape, generator=gen))
        torch.testing.assert_close(forward(params, C2, pr.Q, 2, mask=pr.mask), F, atol=1e-6, rtol=1e-6)


def test_cot_fields_are_checked_only_for_the_cot_task():
    make_config(ICLGPT2Config, {"d_X": 30, "M": 40})  # icl: the CoT fields are unused
    with pytest.raises(ConfigError, match="d_X"):
        make_config(ICLGPT2Config, {"task": "cot", "M": 40})
