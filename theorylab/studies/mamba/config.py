"""Mamba study config (Shandirasegaran, Li, Zhang, Wang, Zhang; ICLR 2026, arXiv 2602.12499).

Paper symbols as field names. What ../shared/papers/vit_gt_mamba_gmm_dqn_pcas.md section 3 tags [I] or [D]
(the forward pass, the locality construction, every default) is a field, so a user holding the paper's exact
value can set it.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig, _digest


class MambaConfig(StudyConfig):
    study: ClassVar[str] = "mamba"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset(
        {"seed", "lr", "alpha_r", "alpha_c", "tau", "n_train", "v_init", "w_init"})
    # common random numbers: the claims sweep these with the patterns, the initialisation and the uniform draws
    # behind every sequence fixed (a sweep cell changes counts, distances, the noise scale or N, not the draws)
    # (lr and optimizer: the baseline-tuning grid of fig_ssm_vs_transformer, whose candidates of one seed train on
    # the same draws and start from the same weights)
    swept_fields: ClassVar[frozenset[str]] = frozenset(
        {"alpha_r", "alpha_c", "tau", "dl_near", "n_train", "train_gate", "lr", "optimizer"})

    seed: int = Field(0, ge=0, lt=2**62, description="seed; every random stream derives from the world hash (the "
                      "config less its swept fields)")
    # model (section 3.2)
    arch: Literal["ssm", "transformer"] = Field(
        "ssm", description="ssm: the selective SSM of section 3.2; transformer: one-layer softmax baseline, same MLP")
    gain: Literal["sigmoid", "softplus"] = Field(
        "sigmoid", description="input gain of the scan: sigmoid = the gate form h_l = (1-g_l) h_{l-1} + g_l W_B x_l "
        "[I]; softplus = the S6 form exp(-Delta_l) h_{l-1} + Delta_l W_B x_l, Delta_l = softplus(w^T x_l) [I]")
    bc: Literal["identity", "random"] = Field(
        "identity", description="frozen W_B^(0), W_C^(0): identity [D], or N(0, 1/d) entries [D]")
    pool: Literal["auto", "mean", "last"] = Field(
        "auto", description="read-out: mean = the mean over positions of the MLP on every state (the (1/L) sum of "
        "this group's models) [I]; last = the MLP on the last state h_L [I]; auto = mean for majority voting, last "
        "for locality (the (1/2)^dl factors of the locality bound are the last state's token weights at w = 0)")
    m: int = Field(64, ge=2, le=65536, description="MLP width; the theorems assume m >= d^2 [R] (the default "
                   "m = d^2 = 64; the claims are not applicable below it)")
    a_scale: Literal["1/m", "1/sqrt(m)"] = Field("1/m", description="fixed output layer a_i = +-a_scale [D]")
    v_init: float = Field(1.0, ge=0, le=10, description="MLP rows v_i ~ N(0, v_init^2/d) [D]")
    w_init: float = Field(0.0, ge=0, le=10, description="gating vector w ~ N(0, w_init^2/d); 0: w = 0, g_l = 1/2 [I]")
    train_gate: bool = Field(
        True, description="train the gating vector w [R]; False: w stays at its init (at w = 0 the scan's fixed "
        "(1/2)^k token weights alone, only the MLP learns: the claims' control arm)")
    tf_pos: Literal["learned", "none"] = Field(
        "learned", description="transformer baseline: learned absolute positions added to the tokens, or none [D]")
    # data model (section 3.1)
    regime: Literal["majority", "locality"] = Field(
        "majority", description="majority voting, or locality-structured sequences [R]")
    d: int = Field(8, ge=4, le=4096, description="token dimension [D: the spec's 16 needs m >= 256, which trains "
                   "about 5x slower with the mean read-out; 8 keeps m = d^2 = 64 and M = 8 patterns]")
    M: int = Field(8, ge=3, le=4096, description="patterns: o_+ = e_1, o_- = e_2, M-2 irrelevant nu_j [D]")
    L: int = Field(20, ge=2, le=4096, description="sequence length [D]")
    alpha_r: float = Field(0.3, gt=0, le=1, description="majority: fraction of label-consistent tokens o_y [R]")
    alpha_c: float = Field(0.1, ge=0, lt=1, description="majority: fraction of confusing tokens o_-y [R]")
    dl_near: int = Field(2, ge=1, le=4096, description="locality: distance from the end of o_y (1 = last token) [I]")
    dl_far: int = Field(6, ge=2, le=4096, description="locality: distance from the end of o_-y [I]")
    tau: float = Field(0.0625, ge=0, le=10, description="token noise N(0, tau^2 I_d); the theory asks tau = O(1/d) [R]; "
                       "default 0.5/d [D]")
    irrelevant_sign: Literal["random", "plus"] = Field(
        "random", description="irrelevant tokens +-nu_j with a random sign (zero mean), or +nu_j [D]")
    # training (GD on N samples)
    loss: Literal["hinge", "logistic"] = Field("hinge", description="training loss [D]")
    lr: float = Field(1.0, gt=0, le=1e5, description="step size: GD's eta (1 is calibrated for a_i = +-1/m) [D], or "
                    "Adam's lr")
    optimizer: Literal["gd", "adam"] = Field(
        "gd", description="gd: plain (full-batch) gradient descent, the paper's [R]; adam: Adam (AdamW, no weight "
        "decay), the optimizer a transformer baseline is usually trained with [D]")
    steps: int = Field(200, ge=1, le=10_000_000, description="GD iterations T [D]")
    B: int = Field(0, ge=0, le=1 << 20, description="0: full-batch GD on the N samples [R]; B > 0: SGD minibatches")
    n_train: int = Field(128, ge=1, le=1 << 20, description="training samples N (an ensemble scalar, <= n_pool)")
    n_pool: int = Field(128, ge=1, le=1 << 20, description="samples drawn per model; the first N are used (shape)")
    n_test: int = Field(1000, ge=10, le=1 << 22, description="fresh test sequences per evaluation [R: 1,000]")
    n_probe: int = Field(500, ge=10, le=1 << 20, description="fixed test sequences scored along training")
    curve_points: int = Field(100, ge=2, le=10_000, description="checkpoints recorded along training")

    @model_validator(mode="after")
    def _consistent(self) -> "MambaConfig":
        if self.M > self.d:
            raise ValueError(f"field 'M' must be <= d = {self.d}: the patterns are orthonormal (got {self.M})")
        if self.n_train > self.n_pool:
            raise ValueError(f"field 'n_train' must be <= n_pool = {self.n_pool} (got {self.n_train})")
        if self.alpha_c >= self.alpha_r:
            raise ValueError(f"field 'alpha_c' must be < alpha_r = {self.alpha_r}: the label is the majority (got {self.alpha_c})")
        if round(self.alpha_r * self.L) + round(self.alpha_c * self.L) > self.L:
            raise ValueError(f"fields 'alpha_r' + 'alpha_c' place more than L = {self.L} relevant tokens")
        if round(self.alpha_r * self.L) <= round(self.alpha_c * self.L):
            raise ValueError(f"field 'alpha_r': round(alpha_r L) must exceed round(alpha_c L) (L = {self.L})")
        if not self.dl_near < self.dl_far <= self.L:
            raise ValueError(f"field 'dl_far' must satisfy dl_near < dl_far <= L = {self.L} (got {self.dl_near}, {self.dl_far})")
        return self

    @property
    def world_hash(self) -> str:
        """core's world key (the config less its swept fields), except that lr enters at its default value
        instead of being dropped: lr and optimizer became swept fields after every other claim was measured
        (issue 23), and this keeps the draws of every cell at the default lr, i.e. every cell measured before,
        what they were. Cells differing only in lr or optimizer still share their world."""
        kept = {k: v for k, v in self.model_dump(mode="json").items() if k not in self.swept_fields}
        kept["lr"] = type(self).model_fields["lr"].default
        return _digest({"study": self.study, "world": kept})

    @property
    def readout(self) -> str:
        if self.pool != "auto":
            return self.pool
        return "mean" if self.regime == "majority" else "last"

    @property
    def n_r(self) -> int:
        return round(self.alpha_r * self.L)

    @property
    def n_c(self) -> int:
        return round(self.alpha_c * self.L)

    @property
    def signal(self) -> float:
        """The effective signal the bounds scale with: alpha_r - alpha_c (majority), or
        (1/2)^dl_near - (1/2)^dl_far (locality) [R TL;DR]."""
        if self.regime == "majority":
            return (self.n_r - self.n_c) / self.L
        return 0.5**self.dl_near - 0.5**self.dl_far


QUICK: dict = {}  # the defaults are the quick size
FULL = {"n_pool": 1024, "n_train": 1024, "steps": 1000, "n_test": 4000, "curve_points": 200, "m": 256}
TINY = {"steps": 12, "n_pool": 32, "n_train": 32, "n_test": 100, "n_probe": 50, "curve_points": 4, "m": 16, "d": 4,
        "M": 4}  # m = d^2: the claims' width hypothesis holds at the tiny size too
# `theorylab bench mamba`: the reference step (d = 16 as in the spec, full-batch GD on 128 sequences)
BENCH = {"L": 20, "d": 16, "m": 64, "n_pool": 128, "n_train": 128}
