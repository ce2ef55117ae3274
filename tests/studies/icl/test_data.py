import shutil

import pytest
import torch

from theorylab.core.rng import EnsembleRNG
from theorylab.studies.icl.config import ICLConfig
from theorylab.shared.icl_prompts import (idi_patterns, idr_patterns, in_domain_world, odi_patterns, odr_patterns,
                                        sample_prompts, split_tasks)

dev = torch.device("cpu")


def test_patterns_are_orthonormal_and_ood_patterns_follow_the_spec():
    cfgs = [ICLConfig(S1=0.6), ICLConfig(S1=1.3, seed=3)]
    mu, nu = idr_patterns(cfgs, dev), idi_patterns(cfgs, dev)
    both = torch.cat([mu, nu], dim=1)  # [E, M1+M2, d_X]
    assert torch.allclose(both @ both.transpose(1, 2), torch.eye(30).expand(2, 30, 30))
    S1 = torch.tensor([0.6, 1.3])
    odr = odr_patterns(cfgs, S1, dev)  # literal construction: coefficients on mu sum to S1
    coef = odr @ mu.transpose(1, 2)  # [E, M1', M1]
    assert torch.allclose(coef.sum(-1), S1[:, None].expand(2, 3), atol=1e-6)
    assert torch.allclose(odr @ nu.transpose(1, 2), torch.zeros(2, 3, 24))
    odi = odi_patterns(cfgs, EnsembleRNG([1, 2]), dev)
    assert torch.allclose(odi @ odi.transpose(1, 2), torch.eye(24).expand(2, 24, 24), atol=1e-5)
    in_span = (odi @ nu.transpose(1, 2)) @ nu  # projection onto span{nu}
    assert torch.allclose(in_span, odi, atol=1e-5)
    unit = odr_patterns([ICLConfig(ood_construction="unit", S1=1.3)], torch.tensor([1.3]), dev)
    assert torch.allclose(unit @ unit.transpose(1, 2), torch.eye(3)[None], atol=1e-5)


def test_training_tasks_cover_every_pattern_and_label():
    train, test = split_tasks(ICLConfig())
    assert len(train) == 18 and len(test) == 12 and not set(train) & set(test)
    for j in range(6):
        assert sum(a == j for a, _ in train) == 3 and sum(b == j for _, b in train) == 3


def test_prompt_statistics_per_model_alpha():
    cfgs = [ICLConfig(alpha=0.3), ICLConfig(alpha=0.8, seed=1), ICLConfig(alpha=1.0, seed=2)]
    world = in_domain_world(cfgs, dev, split_tasks(cfgs[0])[0])
    alpha = torch.tensor([0.3, 0.8, 1.0])
    pr = sample_prompts(world, EnsembleRNG([11, 12, 13]), alpha, 4000, 20, "test")
    y = pr.C[..., 30]  # label slot (q = e_1 of the label part)
    x = pr.C[..., :30]
    a, b = pr.task[..., :1], pr.task[..., 1:]
    relevant = ((pr.ctx_pattern == a) | (pr.ctx_pattern == b)).float().mean((1, 2))
    assert torch.allclose(relevant, alpha, atol=0.01)  # fraction of contexts with the task's patterns ~ alpha
    q_pat = pr.query_pattern[..., None]
    assert torch.allclose((pr.ctx_pattern == q_pat).float().mean((1, 2)), alpha / 2, atol=0.01)
    irrelevant_labels = y[(pr.ctx_pattern != a) & (pr.ctx_pattern != b)]
    assert irrelevant_labels.mean().abs() < 0.03  # random, balanced labels on irrelevant contexts
    assert (pr.z == 1).float().mean().sub(0.5).abs() < 0.02  # query labels balanced
    assert ((y == 1) | (y == -1)).all()
    assert (y[pr.ctx_pattern == a] == 1).all() and (y[pr.ctx_pattern == b] == -1).all()
    assert (pr.z == torch.where(pr.query_pattern == pr.task[..., 0], 1.0, -1.0)).all()
    # x = mu + kappa nu with |kappa| <= 0.4: the relevant coordinate is exactly 1, the noise bounded
    mu_coord = torch.gather(x, -1, pr.ctx_pattern[..., None])[..., 0]
    assert torch.allclose(mu_coord, torch.ones_like(mu_coord))
    assert x[..., 6:].abs().max() <= 0.4 + 1e-6 and (x[..., 6:] != 0).sum(-1).le(1).all()
    assert (pr.Q[..., 30:] == 0).all()


def test_scatter_fast_path_writes_the_same_prompts_as_the_general_path():
    cfgs = [ICLConfig(kappa=0.3), ICLConfig(beta=2.0, seed=1)]
    world = in_domain_world(cfgs, dev, split_tasks(cfgs[0])[0])
    assert world.relevant_basis is not None and world.irrelevant_basis is not None
    alpha = torch.tensor([0.6, 0.9])
    fast = sample_prompts(world, EnsembleRNG([5, 6]), alpha, 64, 12, "train", 7)
    world.relevant_basis = world.irrelevant_basis = None  # forces the row-lookup path
    general = sample_prompts(world, EnsembleRNG([5, 6]), alpha, 64, 12, "train", 7)
    assert torch.equal(fast.C, general.C) and torch.equal(fast.Q, general.Q) and torch.equal(fast.z, general.z)


def _worlds(cfgs):
    from theorylab.shared.icl_evaluation import ood_world

    return {"in-domain": in_domain_world(cfgs, dev, split_tasks(cfgs[0])[0]), "out-of-domain": ood_world(cfgs, dev)}


def test_reused_buffers_and_the_label_column_write_the_same_prompts():
    cfgs = [ICLConfig(kappa=0.3), ICLConfig(seed=1, kappa=0.5)]
    alpha = torch.tensor([0.6, 0.9])
    for name, world in _worlds(cfgs).items():
        assert world.label_basis == (0, 1.0)
        last = None
        for step in range(3):
            fresh = sample_prompts(world, EnsembleRNG([5, 6]), alpha, 16, 9, "train", step)
            last = sample_prompts(world, EnsembleRNG([5, 6]), alpha, 16, 9, "train", step, reuse=last)
            assert torch.equal(fresh.C, last.C) and torch.equal(fresh.Q, last.Q), name
        world.label_basis = None  # forces the dense y q write
        dense = sample_prompts(world, EnsembleRNG([5, 6]), alpha, 16, 9, "train", 2)
        assert torch.equal(dense.C, last.C), name


def test_the_compiled_sampler_draws_bit_identical_prompts():
    """The default path of long runs (core/fast.py): torch.compile'd random choices, same bits as eager."""
    from theorylab.shared.icl_prompts import compiled_columns, compiled_draws

    cfgs = [ICLConfig(seed=s, kappa=0.2 + 0.1 * s) for s in range(3)]
    alpha = torch.tensor([0.5, 0.8, 1.0])
    for name, world in _worlds(cfgs).items():
        for E, (B, L) in ((3, (32, 20)),):  # each shape compiles once (static shapes)
            w = world.subset(slice(0, E))
            eager = sample_prompts(w, EnsembleRNG([5, 6, 7][:E]), alpha[:E], B, L, "train", 4)
            comp = sample_prompts(w, EnsembleRNG([5, 6, 7][:E]), alpha[:E], B, L, "train", 4, compiled=True)
            for field in ("C", "Q", "z", "ctx_pattern", "query_pattern", "task"):
                assert torch.equal(getattr(eager, field), getattr(comp, field)), (name, E, field)
    if shutil.which("g++") or shutil.which("c++"):  # it really compiled (else this compared eager with eager)
        assert compiled_draws().failed is None and compiled_columns().failed is None


@pytest.mark.gpu
def test_on_cuda_the_compiled_sampler_draws_the_cpu_prompts():
    cuda = torch.device("cuda")
    cfgs = [ICLConfig(seed=s) for s in range(3)]
    alpha = torch.tensor([0.5, 0.8, 1.0])
    cpu = sample_prompts(in_domain_world(cfgs, dev, split_tasks(cfgs[0])[0]), EnsembleRNG([5, 6, 7]), alpha, 32, 20, "t")
    gpu = sample_prompts(in_domain_world(cfgs, cuda, split_tasks(cfgs[0])[0]), EnsembleRNG([5, 6, 7], cuda),
                         alpha.to(cuda), 32, 20, "t", compiled=True)
    for field in ("C", "Q", "z", "ctx_pattern", "task"):
        assert torch.equal(getattr(cpu, field), getattr(gpu, field).cpu()), field
