"""ICL study config (Li et al., ICML 2024). Paper symbols as field names; [D] defaults are parameters.

Defaults follow ../shared/papers/icl_cot_lowrank.md section 1; where the spec's default does not learn
(lr 0.1 with a +-1/m read-out), the calibration note's measured values are used (lr 5, 4,000 steps,
fresh prompts each step).
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig


class ICLConfig(StudyConfig):
    study: ClassVar[str] = "icl"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset(
        {"seed", "lr", "alpha", "kappa", "beta", "delta", "v_init", "xi", "alpha_test", "S1", "ood_mix"})
    # common random numbers: Thm 2 and the alpha' figure sweep S1 and alpha' on one trained model (they only change
    # the test prompts), so cells differing only in them share every random stream: the same training, other tests
    # (the theorem map `theorylab map icl` sweeps them as cells)
    swept_fields: ClassVar[frozenset[str]] = frozenset({"S1", "alpha_test"})

    seed: int = Field(0, ge=0, description="seed; every random stream derives from the config hash")
    # data model (section 1.1)
    M1: int = Field(6, ge=3, le=256, description="number of in-domain-relevant (IDR) patterns [S]")
    M2: int = Field(24, ge=1, le=4096, description="number of in-domain-irrelevant (IDI) patterns [S]")
    d_X: int = Field(30, ge=3, le=8192, description="feature dimension; >= M1 + M2 [I/D]")
    d_Y: int = Field(10, ge=1, le=8192, description="label-embedding dimension [D]")
    beta: float = Field(1.0, gt=0, le=100, description="norm of the IDR patterns [M/D]")
    kappa: float = Field(0.4, ge=0, lt=1, description="noise scale: x = mu + k nu, k ~ U[-kappa, kappa] [I/D]")
    alpha: float = Field(0.8, gt=0, le=1, description="fraction of training contexts sharing the query's task patterns [S]")
    l_tr: int = Field(20, ge=1, le=4096, description="training prompt length [S]")
    train_task_offsets: tuple[int, ...] | None = Field(
        None, description="T_tr = {(a,b): b-a mod M1 in offsets}; default (1, M1-1, M1/2): 18 of 30 tasks for M1=6 [D]")
    # model (section 1.2)
    m: int = Field(64, ge=2, le=65536, description="MLP width (rows of W_O) [D]")
    delta: float = Field(0.4, ge=0, le=10, description="W_Q = W_K = delta * I at init [I]")
    v_init: float = Field(0.4, ge=0, le=10, description="W_V = v_init * I at init [D]")
    xi: float = Field(0.01, ge=0, le=10, description="W_O ~ N(0, xi^2) at init [D]")
    attend_query: bool = Field(False, description="include the query column in the softmax (cartoon) [D: no]")
    # training (section 1.3)
    lr: float = Field(5.0, gt=0, le=1e4, description="SGD learning rate (calibrated: 0.1 learns nothing) [D]")
    B: int = Field(64, ge=1, le=1 << 20, description="batch size [D]")
    steps: int = Field(4000, ge=1, le=10_000_000, description="SGD steps [D, calibrated]")
    n_train: int = Field(0, ge=0, le=10_000_000, description="0: fresh prompts every step; N: a fixed set of N prompts [D]")
    # evaluation (section 1.1, 1.5)
    alpha_test: float = Field(0.8, gt=0, le=1, description="alpha' of test prompts")
    l_ts: int = Field(20, ge=1, le=4096, description="test prompt length for the headline errors")
    n_test: int = Field(2000, ge=10, le=1 << 22, description="test prompts per evaluation [D]")
    M1_ood: int = Field(3, ge=3, le=128, description="number of out-of-domain relevant (ODR) patterns [S]; >= 3: a "
                        "context whose pattern is neither of its task's two needs a third")
    S1: float = Field(1.3, gt=0, le=100, description="sum of IDR coefficients of each ODR pattern")
    ood_construction: Literal["literal", "unit"] = Field(
        "literal", description="literal: mu'_j = S1 (c mu_a + (1-c) mu_b), not renormalised (calibration); "
        "unit: orthonormal c1, c2 = (S1 +- sqrt(2 - S1^2))/2, needs S1 <= sqrt(2)")
    ood_mix: float = Field(0.7, ge=0, le=1, description="c in the literal ODR construction [D]")
    curve_points: int = Field(40, ge=2, le=10_000, description="checkpoints recorded along training")

    @model_validator(mode="after")
    def _consistent(self) -> "ICLConfig":
        if self.d_X < self.M1 + self.M2:
            raise ValueError(f"field 'd_X' must be >= M1 + M2 = {self.M1 + self.M2} (got {self.d_X})")
        if 2 * self.M1_ood > self.M1:
            raise ValueError(f"field 'M1_ood' must be <= M1/2 = {self.M1 // 2}: each ODR pattern mixes two IDR patterns, "
                             f"and M1_ood >= 3, so M1 >= 6 (got M1_ood={self.M1_ood}, M1={self.M1})")
        if self.ood_construction == "unit" and self.S1 > 2**0.5:
            raise ValueError(f"field 'S1' must be <= sqrt(2) with ood_construction='unit' (got {self.S1})")
        if self.train_task_offsets is not None and not self.train_task_offsets:
            raise ValueError("field 'train_task_offsets' must name at least one offset in [1, M1-1] (got an empty list)")
        if len(self.task_offsets) >= self.M1 - 1:
            raise ValueError(f"field 'train_task_offsets' must leave an offset in [1, {self.M1 - 1}] unused: the "
                             f"claims test on unseen tasks (got {self.task_offsets})")
        for off in self.task_offsets:
            if not 1 <= off <= self.M1 - 1:
                raise ValueError(f"field 'train_task_offsets' entries must be in [1, M1-1] = [1, {self.M1 - 1}] (got {off})")
        return self

    @property
    def task_offsets(self) -> tuple[int, ...]:
        if self.train_task_offsets is not None:
            return tuple(sorted(set(self.train_task_offsets)))
        return tuple(sorted({1, self.M1 - 1, self.M1 // 2}))

    @property
    def d(self) -> int:
        return self.d_X + self.d_Y


QUICK = {}  # the defaults are the quick size: 5 seeds in well under a minute on 2 CPU cores
FULL = {"steps": 8000, "n_test": 10000, "curve_points": 100}
