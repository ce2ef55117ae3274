"""Shallow-ViT study config (Li, Wang, Liu, Chen; ICLR 2023). Paper symbols as field names.

Defaults follow ../shared/papers/vit_gt_mamba_gmm_dqn_pcas.md section 1 ([D] tags there): M = d = 10 orthonormal
patterns, L = 50 tokens, tau = 0.1, alpha_# = alpha_* / 8, m = 200, sigma = delta = 0.1, batch 16, hinge loss, SGD.
The learning rate is calibrated (the spec's 0.05 is slow with a = +-1/sqrt(m)); QUICK shrinks the width, the test
set and the step count.

Token sparsification (`sparsify`) keeps L - round(drop_frac L) tokens per example, in training and at test time,
dropping the lowest-scored ones: an oracle that drops label-irrelevant tokens (`irrelevant`), the large-noise tokens
(`noisy`), the spurious-correlation tokens (`spurious`); or a score: `norm` (largest token norm first), `attention`
(least attention received, from the current model); `random` is the control.
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig

C_MAX = 1 / (2 * math.e)  # Thm 1: alpha_* >= alpha_# / c for some c in (0, 1/(2e))
# Thm 1's small-noise hypothesis, in the data model's own geometry: the patterns are orthonormal, sqrt(2) apart, so a
# noise bound tau < sqrt(2)/2 keeps every token nearer its own pattern than any other
TAU_SMALL = math.sqrt(2) / 2
SPARSIFY = ("none", "irrelevant", "noisy", "spurious", "random", "norm", "attention")


class ViTConfig(StudyConfig):
    study: ClassVar[str] = "vit"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset(
        {"seed", "lr", "alpha_star", "n_train", "tau", "tau_big", "sigma", "delta", "p_sp", "drop_frac"})
    # common random numbers: the cells a claim sweeps (alpha_*, N, the sparsification arms, the noisy and spurious
    # shares, the checkpoint count) share the seed's initialisation, token positions, noise and test examples
    swept_fields: ClassVar[frozenset[str]] = frozenset(
        {"alpha_star", "n_train", "sparsify", "drop_frac", "noisy_frac", "alpha_sp", "curve_points"})

    seed: int = Field(0, ge=0, description="seed; every random stream derives from the config hash")
    data: Literal["synthetic", "digits"] = Field(
        "synthetic", description="synthetic: the paper's pattern tokens; digits: scikit-learn's 8x8 digits as patch tokens")
    # synthetic data model (section 1.1)
    M: int = Field(10, ge=4, le=4096, description="number of patterns (2 discriminative, M-2 irrelevant) [R]")
    d: int = Field(20, ge=4, le=8192, description="token dimension; patterns e_1..e_M, needs d >= M (calibrated: 20, noise in every dimension) [D]")
    L: int = Field(40, ge=4, le=4096, description="tokens per example (calibrated: 40; alpha_* L tokens are relevant) [D]")
    alpha_star: float = Field(0.15, gt=0, le=1, description="fraction of label-relevant tokens alpha_* [R]")
    conf_ratio: float = Field(0.125, ge=0, lt=1, description="alpha_# / alpha_*: confusion tokens per relevant token [D: 1/8]")
    tau: float = Field(0.5, ge=0, le=10, description="token noise bound ||z|| <= tau; Thm 1 assumes small noise "
                       "(tau < sqrt(2)/2: every token nearer its own pattern; its claims are not applicable above). "
                       "At the spec's 0.1 every N >= 4 reaches zero test error for alpha_* >= 0.15 (no phase "
                       "boundary to measure); 1.0 was the calibrated value before the hypothesis was declared [R/D]")
    noisy_frac: float = Field(0.0, ge=0, lt=1, description="fraction of tokens with the large noise tau_big (E5 ii) [D]")
    tau_big: float = Field(3.0, ge=0, le=10, description="noise bound of the noisy tokens [D]")
    alpha_sp: float = Field(0.0, ge=0, lt=1, description="fraction of spurious tokens (nu_1 / nu_2 tied to the label) [I/D]")
    p_sp: float = Field(0.9, ge=0, le=1, description="training P(spurious token = nu_1 if y=+1, nu_2 if y=-1) [D]")
    p_sp_test: float = Field(0.5, ge=0, le=1, description="the same probability on test examples (0.5: independent) [D]")
    # digits (real images): patch tokens, spurious marker patches pasted with correlation p_sp
    digit_pos: int = Field(3, ge=0, le=9, description="digit of class +1 [D]")
    digit_neg: int = Field(8, ge=0, le=9, description="digit of class -1 [D]")
    n_paste: int = Field(3, ge=0, le=16, description="marker patches pasted per image (spurious tokens) [D]")
    test_every: int = Field(4, ge=2, le=100, description="image i of load_digits() is a test image iff i % test_every == 0")
    # model (section 1.2)
    m: int = Field(200, ge=2, le=65536, description="MLP width (rows of W_O) [D]")
    sigma: float = Field(0.1, ge=0, le=10, description="W_V(0) = I + sigma G / sqrt(d) [D]")
    delta: float = Field(0.1, ge=0, le=10, description="W_K(0), W_Q(0) = I + delta G / sqrt(d) [D]")
    # token sparsification (section 1.4 item 6), in training and at test
    sparsify: Literal["none", "irrelevant", "noisy", "spurious", "random", "norm", "attention"] = Field(
        "none", description="which tokens are dropped: an oracle (irrelevant / noisy / spurious), a score (norm / "
        "attention), or random (control)")
    drop_frac: float = Field(0.2, ge=0, lt=1, description="share of the L tokens dropped when sparsify != none [D]")
    # training (section 1.3)
    lr: float = Field(1.0, gt=0, le=1e4, description="SGD step eta (calibrated; the spec's 0.05 is slow with a = +-1/sqrt(m)) [D]")
    B: int = Field(16, ge=1, le=1 << 20, description="batch size [D]")
    steps: int = Field(2000, ge=1, le=10_000_000, description="SGD steps; hinge 0 on every example stops updates [D]")
    n_train: int = Field(0, ge=0, le=10_000_000, description="training samples N (0: fresh samples every step)")
    # sweeps of the claims (a claim trains each grid as one ensemble through the sweep engine)
    grid_alpha: tuple[float, ...] = Field((0.075, 0.1, 0.15, 0.2), description="alpha_* of the phase diagram and slopes")
    grid_N: tuple[int, ...] = Field((2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128),
                                    description="N of the phase diagram and the sparsification arms")
    grid_N_spurious: tuple[int, ...] = Field((8, 16, 32), description="N of the synthetic spurious-token figure")
    grid_N_digits: tuple[int, ...] = Field((16, 32, 64), description="N of the digits spurious-token figure")
    sparsify_alpha: float = Field(0.1, gt=0, le=1, description="alpha_* of the sparsification claims")
    iter_points: int = Field(150, ge=2, le=10_000, description="checkpoints of the iteration-count runs")
    # evaluation
    n_test: int = Field(1000, ge=10, le=1 << 22, description="fresh test samples [D]")
    n_probe: int = Field(256, ge=8, le=1 << 16, description="fixed test samples probed at each checkpoint")
    curve_points: int = Field(40, ge=2, le=10_000, description="checkpoints recorded along training")

    @model_validator(mode="after")
    def _consistent(self) -> "ViTConfig":
        if self.data == "synthetic":
            if self.d < self.M:
                raise ValueError(f"field 'd' must be >= M = {self.M} (orthonormal patterns; got {self.d})")
            n_star, n_conf, n_sp = self.counts()
            if n_star < 1:
                raise ValueError(f"field 'alpha_star' gives no label-relevant token at L = {self.L} (got {self.alpha_star})")
            if n_conf >= n_star:
                raise ValueError(f"field 'conf_ratio' must leave fewer confusion than relevant tokens (got {self.conf_ratio})")
            if n_star + n_conf + n_sp > self.L:
                raise ValueError(f"fields 'alpha_star', 'conf_ratio', 'alpha_sp' need more than L = {self.L} tokens")
            if n_sp and self.M < 5:
                raise ValueError(f"field 'M' must be >= 5 with spurious tokens (nu_1, nu_2 reserved; got {self.M})")
        elif self.digit_pos == self.digit_neg:
            raise ValueError(f"field 'digit_neg' must differ from digit_pos (got {self.digit_neg})")
        return self

    def counts(self, alpha_star: float | None = None) -> tuple[int, int, int]:
        """(n_*, n_#, n_sp): label-relevant, confusion and spurious tokens per example."""
        a = self.alpha_star if alpha_star is None else alpha_star
        n_star = round(a * self.L)
        return n_star, round(self.conf_ratio * n_star), round(self.alpha_sp * self.L)

    @property
    def tokens(self) -> int:
        return 16 if self.data == "digits" else self.L

    @property
    def dim(self) -> int:
        """Token dimension the model sees: d, or a 2x2 patch (4 pixels) + one-hot position (16) for digits."""
        return 20 if self.data == "digits" else self.d


QUICK = {"m": 32, "n_test": 500, "steps": 300, "curve_points": 20, "n_probe": 128}
FULL = {"m": 200, "n_test": 2000, "steps": 2000, "curve_points": 100, "iter_points": 1000,
        # not 0.125: at L = 40 it gives 5 relevant tokens and round(5/8) = 1 confusion token, 0.2 of them, above
        # Thm 1's alpha_# <= alpha_*/(2e) = 0.184 alpha_*; 0.175 gives 1 per 7 (tests/test_conformance.py)
        "grid_alpha": (0.05, 0.075, 0.1, 0.15, 0.175, 0.2, 0.25),
        "grid_N": (2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256)}
TINY = {"m": 8, "n_test": 100, "steps": 20, "curve_points": 4, "n_probe": 32, "L": 20, "iter_points": 10,
        "grid_alpha": (0.1, 0.2), "grid_N": (2, 8), "grid_N_spurious": (4,), "grid_N_digits": (8,)}
