"""scikit-learn's shipped 8x8 digits (1797 images, pixels / 16 in [0, 1]); a fixed split (image i is a test image
iff i % test_every == 0); the source task is digit identity on the original images; the target task is digit
identity on transformed images, learnt through a new head from a seed's own n_target labelled images, of which
n_val are held out to choose the activation-prompt layer."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from theorylab.core.batch import Examples
from theorylab.core.rng import EnsembleRNG
from theorylab.shared.colored_digits import digits as colored_digits_split


@lru_cache(maxsize=4)
def digits(test_every: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """split -> (images [N, 1, 8, 8] in [0, 1], digit [N]): colored_digits' split, with a channel axis."""
    return {k: (img[:, None], y) for k, (img, y) in colored_digits_split(test_every).items()}


@dataclass
class Labelled(Examples):
    """Each model's labelled images: X [E, n, 1, 8, 8], y [E, n]."""
    X: torch.Tensor
    y: torch.Tensor


def transform(img: torch.Tensor, how: str) -> torch.Tensor:
    """The target domain: [..., 1, 8, 8] -> the same shape."""
    if "rot90" in how:
        img = torch.rot90(img, 1, dims=(-2, -1))
    if "invert" in how:
        img = 1.0 - img
    if how == "flip":
        img = torch.flip(img, dims=(-1,))
    return img


def target_split(rng: EnsembleRNG, test_every: int, how: str, n_target: int, n_val: int, device):
    """Each model's own labelled target subset: (train X [E, n, 1, 8, 8], y [E, n]), (val X, y), and the shared
    test set (X [M, 1, 8, 8], y [M]), all transformed."""
    X, y = digits(test_every)["train"]
    perm = rng.permutation(len(y), "target subset")  # [E, N]
    take = perm[:, : n_target + n_val]
    Xs, ys = transform(X, how)[take].to(device), y[take].to(device)
    Xt, yt = digits(test_every)["test"]
    return ((Xs[:, :n_target], ys[:, :n_target]), (Xs[:, n_target:], ys[:, n_target:]),
            (transform(Xt, how).to(device), yt.to(device)))
