import torch

from theorylab.core.rng import EnsembleRNG


def test_a_models_stream_does_not_depend_on_its_batch():
    alone = EnsembleRNG([123])
    batched = EnsembleRNG([7, 123, 99, 5])
    for draw in ("uniform", "normal"):
        x = getattr(alone, draw)((3, 5), "s", 1)
        y = getattr(batched, draw)((3, 5), "s", 1)
        assert torch.equal(x[0], y[1])
    assert torch.equal(alone.permutation(10, "p")[0], batched.permutation(10, "p")[1])


def test_streams_and_keys_differ():
    r = EnsembleRNG([1, 2])
    a, b = r.uniform((1000,), "a"), r.uniform((1000,), "b")
    assert not torch.equal(a, b) and not torch.equal(a[0], a[1])


def test_distributions():
    r = EnsembleRNG(list(range(4)))
    u = r.uniform((20000,), "u")
    assert u.min() >= 0 and u.max() < 1 and abs(float(u.mean()) - 0.5) < 0.01
    n = r.normal((20000,), "n")
    assert abs(float(n.mean())) < 0.03 and abs(float(n.std()) - 1) < 0.03
    k = r.randint(6, (6000,), "k")
    counts = torch.bincount(k.flatten(), minlength=6).float() / k.numel()
    assert k.min() == 0 and k.max() == 5 and (counts - 1 / 6).abs().max() < 0.02
    assert (r.permutation(7, "p").sort(dim=-1).values == torch.arange(7)).all()
    q = r.orthogonal(5, "o")
    assert torch.allclose(q @ q.transpose(1, 2), torch.eye(5).expand(4, 5, 5), atol=1e-5)
