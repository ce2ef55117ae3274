"""Counter-based random numbers for ensembles.

Every model in an ensemble owns a 63-bit key derived from its config hash. A draw is a pure function
of (key, stream name, element index): a model's numbers do not depend on which other models it is
batched with, on the ensemble size, on the device, or on the order of earlier draws. This is what
makes "a cell gives the same result alone, in a batch of 4096, or after a resume" true by
construction rather than by care.

The hash is SplitMix64's finaliser on int64 tensors (wrap-around multiplication, logical shifts
emulated with masks), so it runs as plain tensor ops on CPU and CUDA.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as signed int64
_M1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_M2 = -7723592293110705685  # 0x94D049BB133111EB


def _mix_(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser, in place: x ^= x >>> 30; x *= M1; x ^= x >>> 27; x *= M2; x ^= x >>> 31.
    One scratch buffer and no other allocation: at the sampler's sizes allocation and page faults, not
    arithmetic, are most of the cost (bit-identical to the plain expression; tests/core/test_rng.py)."""
    t = x >> 30
    t &= (1 << 34) - 1  # >> is arithmetic on int64: the mask makes it logical
    x ^= t
    x *= _M1
    torch.bitwise_right_shift(x, 27, out=t)
    t &= (1 << 37) - 1
    x ^= t
    x *= _M2
    torch.bitwise_right_shift(x, 31, out=t)
    t &= (1 << 33) - 1
    x ^= t
    return x


def _mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on a copy of x."""
    return _mix_(x.clone())


def _top53_(bits: torch.Tensor) -> torch.Tensor:
    """Hashed int64 bits -> their top 53 bits k in [0, 2^53), in place: exact in float64; a uniform is k 2^-53."""
    bits >>= 11
    bits &= (1 << 53) - 1
    return bits


def _unit(bits: torch.Tensor, dtype) -> torch.Tensor:
    """Hashed int64 bits -> uniform on [0, 1) in dtype, in place: the top 53 bits over 2^53, kept below 1."""
    bits = _top53_(bits)
    # k < 2^53 is exact in float64, so k -> float32 rounds the same real number once, as k -> float64 ->
    # float32 does; scaling by 2^-53 is exact in both. Narrower types overflow or round twice: via float64.
    u = bits.to(dtype if dtype in (torch.float32, torch.float64) else torch.float64)
    u *= 2.0**-53
    u = u.to(dtype)
    return u.clamp_(max=1.0 - torch.finfo(dtype).eps)


_COUNTERS: dict[tuple[int, str], torch.Tensor] = {}  # (n, device) -> GOLDEN * [1, ..., n], the Weyl sequence


def weyl_sequence(n: int, device: torch.device) -> torch.Tensor:
    """[n] int64: (i + 1) * GOLDEN (wrapping), the counters of a draw of n numbers, cached per size. Compiled code
    takes it as an input (EnsembleRNG(weyl=...)): computed inside a graph, inductor folds the product into its
    int64 index maths and overflows."""
    key = (n, str(device))
    c = _COUNTERS.get(key)
    if c is None:
        c = torch.arange(1, n + 1, device=device, dtype=torch.int64) * _GOLDEN
        if n <= 1 << 22:  # bounded: at most 64 sizes of at most 32 MiB each
            if len(_COUNTERS) >= 64:
                _COUNTERS.clear()
            _COUNTERS[key] = c
    return c


def stream_id(*parts: object) -> int:
    """A stable signed 64-bit integer naming a stream, e.g. stream_id("train", step, "kappa")."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def stream_ids(*names: tuple, device: torch.device | str = "cpu") -> torch.Tensor:
    """[len(names)] int64: stream_id(*name) of each name. A draw given one of these as its whole stream (a 0-d
    tensor) draws the same numbers as one given the name, and needs no Python hashing: compiled code uses them."""
    return torch.tensor([stream_id(*name) for name in names], dtype=torch.int64, device=device)


def key_from_hash(config_hash: str) -> int:
    return int(config_hash[:15], 16)


class EnsembleRNG:
    """Independent random streams for E models. keys: one int per model."""

    def __init__(self, keys: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu",
                 weyl: Sequence[torch.Tensor] = ()):
        """weyl: Weyl sequences (weyl_sequence(n)) to use for draws of n numbers; compiled code passes them in,
        since a graph that read the module's cache would be recompiled whenever the cache changed."""
        self.keys = torch.as_tensor(keys, dtype=torch.int64, device=device).reshape(-1)  # [E]
        self.device = self.keys.device
        self.weyl = tuple(weyl)

    @property
    def E(self) -> int:
        return self.keys.numel()

    def subset(self, index: slice | torch.Tensor | Sequence[int]) -> "EnsembleRNG":
        """The streams of some models (same numbers as they draw inside the full ensemble)."""
        if isinstance(index, slice):
            return EnsembleRNG(self.keys[index], self.device)
        return EnsembleRNG(self.keys[torch.as_tensor(index, device=self.device)], self.device)

    def _bits(self, shape: Sequence[int], stream: tuple) -> torch.Tensor:
        n = math.prod(shape)
        resolved = len(stream) == 1 and isinstance(stream[0], torch.Tensor)  # an id from stream_ids
        base = _mix_(_mix(self.keys) ^ (stream[0] if resolved else stream_id(*stream)))  # [E]
        counter = next((w for w in self.weyl if w.shape[0] == n), None)
        counter = weyl_sequence(n, self.device) if counter is None else counter
        return _mix_(base[:, None] + counter).reshape(self.E, *shape)

    def uniform(self, shape: Sequence[int], *stream: object, dtype=torch.float32) -> torch.Tensor:
        """[E, *shape] uniform on [0, 1): the top 53 bits over 2^53, rounded to dtype (then kept below 1)."""
        return _unit(self._bits(shape, stream), dtype)

    def argsort_uniform(self, shape: Sequence[int], *stream: object) -> torch.Tensor:
        """[E, *shape] int64: torch.argsort(uniform(shape, *stream, dtype=torch.float64), dim=-1) (a random permutation
        per row), the same indices bit for bit (tests/core/test_rng.py), sorted on the 53-bit integers k the uniforms
        are made of: k -> k 2^-53 is increasing and exact, and uniform's clamp below 1 merges k = 2^53 - 1 into
        2^53 - 2, done here on the integers. Integer keys skip the float conversion and sort faster (the cot study
        draws a permutation per prompt: its tasks sigma and example order)."""
        k = _top53_(self._bits(shape, stream))
        return torch.argsort(k.clamp_(max=(1 << 53) - 2), dim=-1)

    def uniform_blocked(self, shape: Sequence[int], *stream: object, block: int = 1 << 15) -> torch.Tensor:
        """uniform(shape, *stream) in float32, the same numbers bit for bit (tests/core/test_rng_blocked.py), computed
        in blocks of `block` counters: the hash's ~18 passes then run over a cache-sized buffer instead of streaming
        an [E, n] int64 array through memory 18 times (2.5x faster for the cot study's test-token noise, 32M numbers
        a call; no allocation per block)."""
        n = math.prod(shape)
        if self.weyl or n <= block:
            return self.uniform(shape, *stream)
        base = _mix_(_mix(self.keys) ^ stream_id(*stream))  # [E]
        first = weyl_sequence(block, self.device)  # counters (i + 1) GOLDEN of the first block
        out = torch.empty(self.E, n, device=self.device)
        x = torch.empty(self.E, block, dtype=torch.int64, device=self.device)
        for start in range(0, n, block):
            m = min(block, n - start)
            shift = torch.tensor(start, dtype=torch.int64, device=self.device) * _GOLDEN  # wraps as the counters do
            torch.add(base[:, None], first[:m] + shift, out=x[:, :m])  # key + (start + i + 1) GOLDEN
            bits = _top53_(_mix_(x[:, :m]))
            u = out[:, start : start + m]
            u.copy_(bits)  # k < 2^53 -> float32: rounded once, as uniform does
            u *= 2.0**-53
        return out.clamp_(max=1.0 - torch.finfo(torch.float32).eps).reshape(self.E, *shape)

    def uniform_streams(self, streams: Sequence[tuple], n: int, dtype=torch.float32) -> torch.Tensor:
        """[E, len(streams), n]: uniform((n,), *stream, dtype=dtype) for every stream, in one draw (e.g. the batch
        draws of many steps at once). A draw is a pure function of (model key, stream, element), so hashing the
        streams side by side gives the same numbers bit for bit (tests/core/test_rng.py) with a handful of tensor
        ops instead of about twenty per stream. The steps are uniform()'s."""
        ids = torch.tensor([stream_id(*st) for st in streams], dtype=torch.int64, device=self.device)
        base = _mix_(_mix(self.keys)[:, None] ^ ids)  # [E, S] each stream's base, as _bits
        return _unit(_mix_(base[:, :, None] + weyl_sequence(n, self.device)), dtype)  # [E, S, n]

    def normal(self, shape: Sequence[int], *stream: object, dtype=torch.float32) -> torch.Tensor:
        """[E, *shape] standard normal (Box-Muller on two independent uniform streams)."""
        u1 = 1.0 - self.uniform(shape, *stream, "u1", dtype=torch.float64)  # (0, 1]
        u2 = self.uniform(shape, *stream, "u2", dtype=torch.float64)
        return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).to(dtype)

    def randint(self, high: int | torch.Tensor, shape: Sequence[int], *stream: object) -> torch.Tensor:
        """[E, *shape] integers in [0, high); high may be a per-model tensor broadcastable to it."""
        u = self.uniform(shape, *stream, dtype=torch.float64)
        return torch.floor(u * high).long()

    def sign(self, shape: Sequence[int], *stream: object, dtype=torch.float32) -> torch.Tensor:
        return torch.where(self.uniform(shape, *stream) < 0.5, -1.0, 1.0).to(dtype)

    def permutation(self, n: int, *stream: object) -> torch.Tensor:
        """[E, n] an independent random permutation per model."""
        return torch.argsort(self.uniform((n,), *stream, dtype=torch.float64), dim=-1)

    def orthogonal(self, n: int, *stream: object, dtype=torch.float32) -> torch.Tensor:
        """[E, n, n] Haar-random orthogonal matrices (QR of a Gaussian with the sign fix)."""
        g = self.normal((n, n), *stream, dtype=torch.float64)
        q, r = torch.linalg.qr(g)
        return (q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]).to(dtype)
