"""Colored digits: scikit-learn's shipped 8x8 digits (1797 images, no download), coloured red or green.

- Split (fixed, documented): image i of `load_digits()` is a test image iff i % test_every == 0
  (default 4: 450 test, 1347 train); the two sets are disjoint.
- Pixels scaled to [0, 1]; label y = +1 for odd digits, -1 for even (class index (y + 1) / 2).
- Pixel noise: std `noise`, drawn once per (seed, image) from the counter-based RNG, added to both
  channels (part of the image, shared by every task of a seed).
- Colour, per (seed, task, split, image) independently: with probability p the colour agrees with the
  label (odd -> red = channel 0, even -> green = channel 1). Drawn from the config-hash RNG (core.rng),
  stream ("colour", split, p): tasks with the same p are the same coloured data set.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from theorylab.core.ensemble import rng_for, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.core.config import StudyConfig as ColoredDigitsConfig  # any config with the coloured-digits fields


@lru_cache(maxsize=4)
def digits(test_every: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """split -> (images [N, 8, 8] in [0, 1], digit [N] in 0..9); the fixed split above."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = torch.tensor(d.images, dtype=torch.float32) / 16.0
    digit = torch.tensor(d.target, dtype=torch.long)
    test = torch.arange(len(digit)) % test_every == 0
    return {"train": (img[~test], digit[~test]), "test": (img[test], digit[test])}


@dataclass
class Split:
    """One split for E models: clean images, the models' pixel noise, labels."""
    images: torch.Tensor  # [N, 8, 8] in [0, 1]
    noise: torch.Tensor | None  # [E, N, 2, 8, 8] (None when noise = 0)
    digit: torch.Tensor  # [N]
    y: torch.Tensor  # [N] in {-1, +1}: +1 odd

    def colours(self, rng: EnsembleRNG, split: str, p: float) -> torch.Tensor:
        """[E, N] bool, True = red. P(colour agrees with the label) = p; odd->red, even->green agree."""
        agree = rng.uniform((self.y.numel(),), "colour", split, float(p)).to(self.y.device) < p
        return agree == (self.y > 0)

    def painted(self, red: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Coloured noisy images [E, n, 2, 8, 8] for colours red [E, N]; idx [E, n] picks images (all if None)."""
        if idx is None:
            idx = torch.arange(self.y.numel(), device=red.device).expand(red.shape[0], -1)
        X = paint(self.images[idx], red.gather(1, idx))
        if self.noise is not None:
            X = X + self.noise[torch.arange(idx.shape[0], device=idx.device)[:, None], idx]
        return X


def load_split(cfgs: Sequence[ColoredDigitsConfig], split: str, device) -> Split:
    img, digit = (t.to(device) for t in digits(shared_value(cfgs, "test_every"))[split])
    sigma = shared_value(cfgs, "noise")
    noise = None
    if sigma > 0:
        noise = sigma * rng_for(cfgs, device).normal((img.shape[0], 2, 8, 8), "noise", split).to(device)
    return Split(img, noise, digit, torch.where(digit % 2 == 1, 1.0, -1.0).to(device))


def paint(images: torch.Tensor, red: torch.Tensor) -> torch.Tensor:
    """[..., 8, 8] images and [...] red masks -> [..., 2, 8, 8] (channel 0 red, channel 1 green)."""
    r = red[..., None, None].to(images.dtype)
    return torch.stack([images * r, images * (1 - r)], dim=-3)


@dataclass
class TaskData:
    """A coloured set of one task for E models."""
    X: torch.Tensor  # [E, N, 2, 8, 8]
    y: torch.Tensor  # [E, N] in {-1, +1}
    red: torch.Tensor  # [E, N] bool


def task_data(cfgs: Sequence[ColoredDigitsConfig], split: str, p: float, device) -> TaskData:
    s = load_split(cfgs, split, device)
    red = s.colours(rng_for(cfgs, device), split, p)
    return TaskData(s.painted(red), s.y.expand(len(cfgs), -1), red)
