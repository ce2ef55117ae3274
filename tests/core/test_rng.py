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


def test_the_hash_is_splitmix64s_finaliser_bit_for_bit():
    from theorylab.core.rng import _mix

    xs = [0, 1, -1, 2**62 + 12345, -(2**63), 2**63 - 1, 0x9E3779B97F4A7C15 - 2**64]
    x = torch.tensor(xs, dtype=torch.int64)
    before = x.clone()
    got = _mix(x)
    assert torch.equal(x, before)  # the input is not written
    for v, g in zip(xs, got.tolist()):
        assert g & ((1 << 64) - 1) == _splitmix(v & ((1 << 64) - 1))


def _splitmix(v: int) -> int:  # SplitMix64's finaliser on unsigned 64-bit Python ints
    mask = (1 << 64) - 1
    v ^= v >> 30
    v = (v * 0xBF58476D1CE4E5B9) & mask
    v ^= v >> 27
    v = (v * 0x94D049BB133111EB) & mask
    return v ^ (v >> 31)


def _uniform_reference(key: int, sid: int, n: int) -> list[float]:
    """The documented stream in pure Python: counter i of stream sid of a model with key `key` is
    mix(mix(mix(key) ^ sid) + (i + 1) * GOLDEN); its top 53 bits over 2^53 are the uniform number."""
    mask = (1 << 64) - 1
    base = _splitmix(_splitmix(key & mask) ^ (sid & mask))
    return [(_splitmix((base + (i + 1) * 0x9E3779B97F4A7C15) & mask) >> 11) * 2.0**-53 for i in range(n)]


def test_uniform_draws_are_the_documented_stream_in_every_dtype():
    import numpy as np

    from theorylab.core.rng import stream_id

    keys = [0, 7, -3, 2**62 + 99]
    r = EnsembleRNG(keys)
    for stream in (("a",), ("train", 3, "kappa")):
        ref = torch.tensor([_uniform_reference(k, stream_id(*stream), 257) for k in keys], dtype=torch.float64)
        assert torch.equal(r.uniform((257,), *stream, dtype=torch.float64), ref.clamp(max=1 - 2.0**-52))
        # float32: the same real number rounded once (numpy's float64 -> float32 cast), then kept below 1
        ref32 = torch.from_numpy(ref.numpy().astype(np.float32)).clamp(max=1 - 2.0**-23)
        assert torch.equal(r.uniform((257,), *stream), ref32)
        for dt in (torch.float16, torch.bfloat16):
            assert torch.equal(r.uniform((257,), *stream, dtype=dt), ref.to(dt).clamp(max=1 - torch.finfo(dt).eps))


def test_a_resolved_stream_id_draws_the_named_streams_numbers():
    from theorylab.core.rng import stream_ids

    r = EnsembleRNG([11, 12, 13])
    ids = stream_ids(("x", 1), ("y",))
    assert torch.equal(r.uniform((4, 5), ids[0]), r.uniform((4, 5), "x", 1))
    assert torch.equal(r.randint(9, (6,), ids[1]), r.randint(9, (6,), "y"))
    assert torch.equal(r.sign((3,), ids[1]), r.sign((3,), "y"))


def test_uniform_streams_equal_one_draw_per_stream_bit_for_bit():
    r = EnsembleRNG([3, 1 << 40, 12345])
    streams = [("batch", step) for step in range(7)] + [("replay", 2, 5)]
    for dtype in (torch.float32, torch.float64, torch.float16):
        at_once = r.uniform_streams(streams, 9, dtype)
        assert at_once.shape == (3, len(streams), 9) and at_once.dtype == dtype
        assert torch.equal(at_once, torch.stack([r.uniform((9,), *st, dtype=dtype) for st in streams], 1))


def test_argsort_uniform_is_the_argsort_of_the_float64_uniforms_bit_for_bit():
    r = EnsembleRNG([3, 1 << 40, 12345])
    for shape in [(10,), (50, 3, 10), (40, 20), (1,)]:
        got = r.argsort_uniform(shape, "perm", shape)
        assert got.shape == (3, *shape) and got.dtype == torch.int64
        assert torch.equal(got, torch.argsort(r.uniform(shape, "perm", shape, dtype=torch.float64), dim=-1))
        assert torch.equal(got.sort(-1).values, torch.arange(shape[-1]).expand_as(got))  # permutations
    # the one key the float64 clamp changes: k = 2^53 - 1 sorts as 2^53 - 2 (a tie), as the uniforms do
    top = torch.tensor([(1 << 53) - 2, (1 << 53) - 1, 5], dtype=torch.int64)
    u = top.double() * 2.0**-53
    assert torch.equal(torch.argsort(top.clamp(max=(1 << 53) - 2)), torch.argsort(u.clamp(max=1 - torch.finfo(torch.float64).eps)))
