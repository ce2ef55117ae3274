"""Colored-digits config: the Colored-MNIST experiment of Li et al. (ICLR 2025, Sec. 5 / seed Figs. 23-24),
scaled to scikit-learn's 8x8 digits and a small ViT. [D] marks defaults proposed where the paper's value
was not recovered (../shared/papers/taskvec_lwptv_ap_diffusion.md, section 1.7); all are fields.

A task is one colour-label agreement p = P(colour agrees with the parity label), "agrees" meaning
odd -> red and even -> green. Tasks with equal p are the same task (same coloured images, one fine-tune).
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig
from theorylab.shared.task_arithmetic import check_lambda_grid

LAM_NEEDS = (-1.0, 0.0, 1.0)  # Psi*_T (0 and 1) and negation down to -1 (unlearning, lambda2 < 0 of Fig. 24)

_P = dict(ge=0.0, le=1.0)


class ColoredDigitsConfig(StudyConfig):
    study: ClassVar[str] = "colored_digits"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset({"seed"})

    seed: int = Field(0, ge=0, description="seed; colours, noise, init and batches derive from the config hash")
    # task construction presets (section 1.7) [D]
    p_T1: float = Field(0.95, **_P, description="T1 colour-label agreement [D]")
    p_irrelevant: float = Field(0.50, **_P, description="irrelevant T2: colour uninformative [D]")
    p_aligned: float = Field(0.90, **_P, description="aligned T2 [D]")
    p_contradictory: float = Field(0.05, **_P, description="contradictory T2 (odd -> green) [D]")
    ood_p_T1: float = Field(0.50, **_P, description="OOD experiment: T1 = shape-only task [D]")
    ood_p_T2: float = Field(0.95, **_P, description="OOD experiment: T2 = colour task [D]")
    ood_p_target: float = Field(0.25, **_P, description="OOD target T': parity with 75% of the colours flipped; "
                                "calibrated on the measured gamma (see below) [D; spec 0.45]")
    # data
    test_every: int = Field(4, ge=2, le=100, description="split: sample i of load_digits() is test iff i % test_every == 0")
    noise: float = Field(0.15, ge=0, le=10, description="pixel noise std (pixels in [0, 1]), one draw per image and seed, "
                         "both channels; makes shape harder (see QUICK) [D]")
    # model: a small ViT, frozen shared 2-way head
    patch: int = Field(2, ge=1, le=8, description="patch side (2 -> 16 tokens of 2x2x2 values)")
    width: int = Field(32, ge=4, le=1024, description="token width D")
    depth: int = Field(2, ge=1, le=12, description="transformer blocks")
    heads: int = Field(2, ge=1, le=16, description="attention heads")
    mlp: int = Field(64, ge=4, le=4096, description="MLP hidden width")
    head_seed: int = Field(0, ge=0, description="the frozen 2-way head is drawn once from this seed (same for all models)")
    # pre-training Psi0: 10-way digit identity on randomly coloured images (separate head, discarded)
    pretrain_task: Literal["digit", "rotation"] = Field(
        "digit", description="proxy pre-training task: 'digit' (10-way identity) or 'rotation' (4-way: which multiple "
        "of 90 degrees the image was rotated by; generic shape features without digit labels, closer to an "
        "ImageNet backbone that knows nothing of parity) [D]")
    pretrain_steps: int = Field(300, ge=0, le=1_000_000, description="AdamW steps of the proxy pre-training [D]")
    pretrain_lr: float = Field(3e-3, gt=0, le=1.0, description="pre-training learning rate [D]")
    # fine-tuning per task from Psi0, head frozen
    steps: int = Field(21, ge=1, le=1_000_000, description="fine-tuning AdamW steps per task: one epoch of the 1,347 "
                       "training images at B = 64, as the paper's 1-epoch recipe [D]")
    lr: float = Field(1e-3, gt=0, le=1.0, description="fine-tuning learning rate [D]")
    weight_decay: float = Field(0.1, ge=0, le=10, description="AdamW weight decay (paper recipe 0.1)")
    B: int = Field(64, ge=1, le=1 << 16, description="batch size (with replacement from the training split)")
    # evaluation
    lam_step: float = Field(0.2, gt=0, le=1, description="step of the lambda grids over [lam_lo, lam_hi] (paper: 0.2)")
    lam_lo: float = Field(-2.0, ge=-10, le=0, description="lambda grid start (paper: -2)")
    lam_hi: float = Field(3.0, ge=0, le=10, description="lambda grid end (paper: 3)")
    curve_points: int = Field(20, ge=2, le=10_000, description="checkpoints recorded along training")

    @model_validator(mode="after")
    def _consistent(self) -> "ColoredDigitsConfig":
        if 8 % self.patch:
            raise ValueError(f"field 'patch' must divide 8 (got {self.patch})")
        if self.width % self.heads:
            raise ValueError(f"field 'width' must be a multiple of heads = {self.heads} (got {self.width})")
        check_lambda_grid(self.lam_step, self.lam_lo, self.lam_hi, LAM_NEEDS)
        return self

    @property
    def task_ps(self) -> list[float]:
        """The distinct tasks to fine-tune (by colour agreement p), in a fixed order."""
        ps = [self.p_T1, self.p_irrelevant, self.p_aligned, self.p_contradictory, self.ood_p_T1, self.ood_p_T2,
              self.ood_p_target]
        return list(dict.fromkeys(ps))


# Calibration (done once, on the mean of seeds 0-4, looking only at fine-tuned own-task test accuracy, never at
# a claim): noise 0 lets the p = 0.95 model learn shape too (97% own task, 79% on the colour-free task); noise
# 0.5 destroys shape (pre-training 35%, shape-only task 69%); noise 0.25 / 40 steps gives 94.5% and 83% (shape);
# noise 0.15 / 20 steps gave 95.8% (T1), 92.7% (aligned), 96.3% (contradictory), 86% (shape-only), with the p = 0.95
# model at 64% on colour-free images (a mostly-colour read-out). Adopted with 21 steps (one epoch); the adopted
# defaults measure 94.7% (T1), 92.8% (aligned), 95.2% (contradictory), 86.7% (shape-only p = 0.5).
# Calibration of T' (issue 9; done once on seeds 0-4 of the defaults, looking only at the measured gamma, never at a
# claim): gamma = per-model least squares of dPsi_T' on (dPsi_T1, dPsi_T2) (evaluate.regress_gammas). The spec's
# p' = 0.45 gives gamma (0.83, +0.09), not the paper's (0.79, -0.64): our colour model also reads shape. Rule fixed
# before looking: the largest p' in {0.45, 0.40, ..., 0.05} whose gamma2 < 0 on every one of the 5 seeds. Measured
# mean gamma2 by p': 0.45 +0.091, 0.40 +0.006, 0.35 -0.038 (one seed +0.010), 0.30 -0.072 (one seed +0.027),
# 0.25 -0.111 (all 5 < 0; gamma1 0.888, R^2 0.67), 0.20 -0.136, 0.15 -0.229, 0.10 -0.239, 0.05 -0.293. Adopted: 0.25.
# Changing the default changes every config hash, hence every random draw of seeds 0-4: with p' = 0.25 as the default
# the quick run measures gamma (0.893, -0.098), gamma2 per seed +0.027, -0.045, -0.194, -0.071, -0.209 (4 of 5 < 0).
TINY = {"pretrain_steps": 4, "steps": 3, "B": 16, "lam_step": 1.0, "curve_points": 2}  # ~1-2 s: conformance tests
QUICK: dict = {}
FULL = {"lam_step": 0.1, "curve_points": 60}  # same models; finer lambda grids (the paper's step is 0.2)
