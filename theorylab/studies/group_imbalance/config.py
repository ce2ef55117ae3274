"""Group-imbalance study config (Li, Zhang, Zhang, Wang, Liu, Chen; IEEE JSTSP 2024, arXiv 2403.07310).

Section 4 of ../shared/papers/vit_gt_mamba_gmm_dqn_pcas.md. Data: x ~ sum_l lambda_l N(mu_l, sigma_l^2 I_d), two
groups (group 1 the majority, group 2 the minority with fraction lam2 of the N training samples, exactly),
mu_l = mu_l 1_d; labels y ~ Bernoulli(H(W*, x)) from a teacher H(W, x) = (1/K) sum_j sigmoid(w_j^T x) with
W* = teacher_scale G / ||G||_F, G Gaussian [R precursor code: randn(d, K) rescaled to unit Frobenius norm].
Learner: the same network, empirical cross-entropy, full-batch GD
from the local initialisation W0 = W* + init_radius ||W*||_F U / ||U||_F [R precursor]. d = 5 follows the
precursor's sample-complexity grids [R]. K = 3 by default (the precursor's value, the paper's non-convex setting
[R]); K = 1 (logistic regression, the default before issue 23) stays a field and is reported beside.

Step size (issue 23): lr_rule = "curvature" (the default) gives every cell its own step, lr_used = min(lr, 1 /
lambda_max), lambda_max the largest |eigenvalue| of the training loss's Hessian at the initialisation W0 (power
iteration, model.top_curvature). GD on a quadratic converges for lr < 2 / lambda_max; the rule takes half of that,
a multiplier fixed before any claim ran with it, and leaves lr (0.5) where the cell allows it. The precursor's
40 / (sigma + 1)^2 is a curvature scaling of the same kind written in the data's variance. Why: with one lr 0.5 for
every cell, lambda_max at sigma = 25 is 6-8 at K = 1 (W0 and the minimiser), above 2 / 0.5 = 4, and GD sat in a
2-cycle with a training loss above its initial value (docs page). lr_rule = "fixed" keeps one step, lr, for every
cell (the behaviour before issue 23). lr_rule is a swept field: both rules train on the same world, and a config
with lr_rule = fixed draws exactly the teacher, init and samples it drew before the field existed.

Step count and the K = 3 conditioning (issue 23, measured on training loss and relative error before any claim was
run at K = 3; benchmarks/group_imbalance_k3_convergence.py, docs page): 2,000 steps, as at K = 1. Where the
minimiser is well conditioned (sigma1 = 5, 25 at N = 4,000: condition number 50-500) GD reaches it within 2,000
steps (training-loss gap <= 2e-5 of the initial gap at lr 0.5). Elsewhere (sigma1 <= 1, mu1 in {0, 4}) the
condition number is 2e3 to 6e12, the flat directions are those that tell the neurons apart, and the minimiser lies
at relative error 2.5 to 1e4 from W* (or at infinity): no step count reaches it, and more steps move the iterate
further from W* (relative error 0.8-1.1 at 2,000 steps, 2.3-2.8 at 10,000). The cells report grad_ratio =
||grad L(W_T)|| / ||grad L(W_0)|| so that non-convergence is visible.

dataset = "digits": scikit-learn's bundled 8x8 digits (binary task: odd vs even digit), standardised and reduced
to d principal components plus a constant feature; the minority group is a random subset whose inputs get extra
Gaussian noise of std noise2 (the spec's CIFAR protocol with pixel noise, on data that ships with a package).
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig


class GroupImbalanceConfig(StudyConfig):
    study: ClassVar[str] = "group_imbalance"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset(
        {"seed", "lr", "sigma1", "sigma2", "mu1", "mu2", "lam2", "noise2"})
    # common random numbers: cells of one seed that differ only in these share the teacher W*, the initialisation
    # and the standard-normal / uniform draws behind every sample (x = mu_g + sigma_g z, y = 1{u < H*(x)}), so a
    # sweep compares the swept quantity, not a redrawn world. N is prefix-consistent: a larger N adds samples.
    swept_fields: ClassVar[frozenset[str]] = frozenset(
        {"sigma1", "sigma2", "mu1", "mu2", "lam2", "N", "noise2", "labels", "lr_rule"})

    seed: int = Field(0, ge=0, lt=2**62, description="seed; every random stream derives from the world hash "
                      "(the config less its swept fields)")
    dataset: Literal["gmm", "digits"] = Field("gmm", description="the Gaussian mixture model or sklearn digits")
    # data model (section 4.1)
    d: int = Field(5, ge=1, le=64, description="input dimension (digits: principal components) [R precursor: 5]")
    K: int = Field(3, ge=1, le=64, description="hidden neurons of teacher and learner [R precursor: 3]; K = 1 "
                  "is logistic regression (the default before issue 23)")
    N: int = Field(1000, ge=4, le=1 << 20, description="training samples [D; precursor 1k-20k]")
    lam2: float = Field(0.5, ge=0, le=1, description="minority (group 2) fraction of the training set")
    mu1: float = Field(1.0, ge=-100, le=100, description="group 1 mean mu_1 = mu1 1_d [R precursor: +1]")
    mu2: float = Field(-1.0, ge=-100, le=100, description="group 2 mean mu_2 = mu2 1_d [R precursor: -1]")
    sigma1: float = Field(1.0, gt=0, le=1000, description="group 1 std: Sigma_1 = sigma1^2 I [R precursor: swept]")
    sigma2: float = Field(1.0, gt=0, le=1000, description="group 2 std: Sigma_2 = sigma2^2 I [R precursor: 1]")
    teacher_scale: float = Field(1.0, gt=0, le=100, description="||W*||_F: W* = teacher_scale G / ||G||_F, G Gaussian "
                                 "[R precursor: unit Frobenius norm]")
    labels: Literal["teacher", "shuffled"] = Field(
        "teacher", description="GMM training labels: from the teacher, or the same labels permuted across the "
        "training set (no information about x: the shape claims' control arm)")
    noise2: float = Field(1.0, ge=0, le=100, description="digits: std of the noise added to minority inputs [D]")
    # learner (section 4.2)
    init_radius: float = Field(0.1, ge=0, le=10, description="GMM: ||W0 - W*||_F / ||W*||_F; digits: W0 = "
                               "init_radius N(0, 1) [R precursor: 0.1]")
    lr: float = Field(0.5, gt=0, le=1000, description="GD step size (lr_rule = fixed) or its cap (lr_rule = "
                      "curvature) [D: 0.5; the precursor's 2 is unstable at sigma1 = 25 with K = 3]")
    lr_rule: Literal["curvature", "fixed"] = Field(
        "curvature", description="curvature: per cell lr_used = min(lr, 1 / the largest |eigenvalue| of the training "
        "loss's Hessian at W0), half the quadratic stability limit; fixed: lr_used = lr for every cell (before issue "
        "23's step rule)")
    steps: int = Field(2000, ge=1, le=10_000_000, description="full-batch GD iterations [D; precursor 10,000]")
    B: int = Field(1, ge=1, le=1, description="unused (full-batch GD)")
    curve_points: int = Field(20, ge=2, le=10_000, description="checkpoints recorded along training")
    # evaluation
    n_test: int = Field(2000, ge=10, le=1 << 20, description="test samples per group")
    sigma_grid: tuple[float, ...] = Field((0.04, 0.2, 1.0, 5.0, 25.0), min_length=3, max_length=32,
                                          description="sigma1 values of the covariance claim [R precursor: 0.04..25]")
    mu_grid: tuple[float, ...] = Field((0.0, 1.0, 2.0, 4.0), min_length=2, max_length=32,
                                       description="mu1 values of the means claim [R precursor: 0.5..7.5]")
    n_grid: tuple[int, ...] = Field((250, 1000, 4000), min_length=1, max_length=16,
                                    description="training-set sizes of the phase diagrams")
    lam_grid: tuple[float, ...] = Field((0.05, 0.1, 0.2, 0.3, 0.5), min_length=2, max_length=32,
                                        description="minority fractions of the imbalance claims [D spec 4.4]")

    sigma2_out: float = Field(25.0, gt=0, le=1000, description="minority std outside the medium regime (imbalance "
                              "claim) [D: the precursor's largest sigma; found by a scan, see the study note]")
    digits_d: int = Field(10, ge=1, le=63, description="digits: principal components used as features [D]")
    digits_N: int = Field(500, ge=4, le=600, description="digits: training samples [D]")
    noise_grid: tuple[float, ...] = Field((0.5, 3.0), min_length=2, max_length=8,
                                          description="digits: minority noise stds, medium then large [D]")

    @model_validator(mode="after")
    def _consistent(self) -> "GroupImbalanceConfig":
        for name in ("sigma_grid", "mu_grid", "n_grid", "lam_grid", "noise_grid"):
            v = getattr(self, name)
            if list(v) != sorted(set(v)):
                raise ValueError(f"field '{name}' must be increasing and distinct (got {v})")
        if not all(0 <= x <= 1 for x in self.lam_grid):
            raise ValueError(f"field 'lam_grid' must lie in [0, 1] (got {self.lam_grid})")
        if self.dataset == "digits" and self.d > 63:
            raise ValueError(f"field 'd' must be <= 63 with dataset = digits (got {self.d})")
        return self


TINY = {"N": 100, "steps": 20, "n_test": 100, "n_grid": (50, 100), "sigma_grid": (0.1, 1.0, 10.0),
        "mu_grid": (0.0, 4.0), "lam_grid": (0.1, 0.5), "curve_points": 4}
QUICK: dict = {}
FULL = {"steps": 10_000, "n_test": 20_000, "n_grid": (1000, 2000, 5000, 10_000, 20_000),
        "sigma_grid": tuple(round(10 ** (0.2 * j - 1.6), 4) for j in range(1, 16)),
        "mu_grid": tuple(0.5 * j for j in range(0, 16)), "curve_points": 50}
