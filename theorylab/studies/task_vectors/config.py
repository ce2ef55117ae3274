"""Task-vector study config (Li et al., ICLR 2025). Paper symbols as field names; [D] defaults are parameters.

Defaults follow ../shared/papers/calibration_task_vectors.md (the prototype whose single-task models reach
~0 error): d 16, P 10, m 32, a = +-1/m, 2-3 tokens y mu and 0-1 tokens -y mu, noise 0.05, Psi0 random
(W ~ 0.01 N, V ~ 0.1 N), SGD lr 2, batch 64, 1,500 steps. The spec's defaults (section 1.1-1.3 of
../shared/papers/taskvec_lwptv_ap_diffusion.md: d 64, M 24, P 20, a = +-1/sqrt(m)) stay reachable by --set.

Basis use: mu_T1 = e_0, mu_T2 = alpha e_0 + sqrt(1 - alpha^2) e_1, mu_perp = e_2, irrelevant patterns
v_j = e_{3..d-2}, and e_{d-1} is the pattern of the optional pre-training task (orthogonal to all).

Irrelevant tokens are +-v_j with a random sign by default (issue 9): with +v_j from a fixed set their mean
(1/M) sum_j v_j is a direction of norm M^-1/2 (0.29 at d 16) shared by every token of every task, against a
signal of a few mu tokens out of P; training then writes it into the task vectors (dW ~ +5.4 mu mu^T - 8.9
vbar vbar^T, rank 2) and the theorems' orthogonality hypothesis no longer describes what the model sees.
irrelevant_sign = "plus" keeps the old data model.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig
from theorylab.shared.task_arithmetic import check_lambda_grid

LAM_LO, LAM_HI = -2.0, 3.0  # the paper's search range
LAM_NEEDS = (-1.0, 0.0, 1.0, 2.0)  # Thm 5's range [-1, 0], Psi*_T (0 and 1), Thm 4's range end


class TaskVectorConfig(StudyConfig):
    study: ClassVar[str] = "task_vectors"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset(
        {"seed", "alpha", "lr", "noise", "w_init", "v_init", "gamma1", "gamma2", "kappa"})

    seed: int = Field(0, ge=0, description="seed; every random stream derives from the config hash")
    # data model (section 1.1)
    d: int = Field(16, ge=6, le=4096, description="token dimension; patterns use e_0..e_{d-1} [D calibration]")
    P: int = Field(10, ge=2, le=1024, description="tokens per sequence [D calibration]")
    n_star_min: int = Field(2, ge=1, le=1024, description="fewest tokens y*mu_T per sequence [D calibration]")
    n_star_max: int = Field(3, ge=1, le=1024, description="most tokens y*mu_T per sequence [D calibration]")
    n_hash_max: int = Field(1, ge=0, le=1024, description="most tokens -y*mu_T per sequence (drawn in 0..max) [D]")
    irrelevant_sign: Literal["random", "plus"] = Field(
        "random", description="irrelevant tokens: +-v_j with a random sign (zero mean) or +v_j (a shared mean direction) [D]")
    noise: float = Field(0.0, ge=0, le=10, description="token noise sigma: x += sigma N(0, I_d)/sqrt(d); spec default 0 [D]; "
                         "the calibration used 0.05 (slow on CPU: the counter-based normals cost ~1 us each)")
    alpha: float = Field(0.0, gt=-1, lt=1, description="task correlation alpha = mu_T1 . mu_T2 (set exactly)")
    gamma1: float = Field(0.79, ge=-10, le=10, description="OOD: mu_T' ~ gamma1 mu_T1 + gamma2 mu_T2 + kappa mu_perp [D]")
    gamma2: float = Field(-0.61, ge=-10, le=10, description="OOD coefficient on mu_T2 (before normalising) [D]")
    kappa: float = Field(0.0, ge=0, le=10, description="OOD coefficient on mu_perp (before normalising) [D]")
    # model, eq. (7)
    m: int = Field(32, ge=2, le=65536, description="rows of V (neurons) [D calibration]")
    a_scale: Literal["1/m", "1/sqrt(m)"] = Field("1/m", description="fixed read-out a_i = +-a_scale [D calibration]")
    w_init: float = Field(0.01, ge=0, le=10, description="Psi0: W ~ w_init N(0, 1) [D calibration]")
    v_init: float = Field(0.1, ge=0, le=10, description="Psi0: V ~ v_init N(0, 1) [D calibration]")
    pretrain_steps: int = Field(0, ge=0, le=1_000_000, description="0: Psi0 = random init (option A); N: "
                                "pre-train N steps on a task with pattern e_{d-1}, orthogonal to all (option B)")
    # fine-tuning (section 1.3)
    lr: float = Field(4.0, gt=0, le=1e4, description="SGD learning rate [D; calibration: 2 with 1,500 steps]")
    B: int = Field(64, ge=1, le=1 << 20, description="batch size (fresh sequences every step) [D]")
    steps: int = Field(500, ge=1, le=10_000_000, description="fine-tuning SGD steps per task [D; calibration: 1,500 at lr 2]")
    # evaluation
    n_test: int = Field(500, ge=10, le=1 << 22, description="test sequences per task")
    lam_step: float = Field(0.25, gt=0, le=1, description="step of the lambda grids over [-2, 3] (paper: search in "
                            "[-2, 3]); 1/lam_step must be an integer so the grid holds -1, 0, 1, 2")
    curve_points: int = Field(30, ge=2, le=10_000, description="checkpoints recorded along fine-tuning")

    @model_validator(mode="after")
    def _consistent(self) -> "TaskVectorConfig":
        if self.n_star_max < self.n_star_min:
            raise ValueError(f"field 'n_star_max' must be >= n_star_min = {self.n_star_min} (got {self.n_star_max})")
        if self.n_hash_max >= self.n_star_min:
            raise ValueError(f"field 'n_hash_max' must be < n_star_min = {self.n_star_min} so the label is decided "
                             f"by counting tokens (got {self.n_hash_max})")
        if self.n_star_max + self.n_hash_max > self.P:
            raise ValueError(f"field 'P' must be >= n_star_max + n_hash_max = {self.n_star_max + self.n_hash_max} (got {self.P})")
        if self.m % 2:
            raise ValueError(f"field 'm' must be even: half the neurons read out +a, half -a (got {self.m})")
        if self.gamma1 == 0 and self.gamma2 == 0:
            raise ValueError("fields 'gamma1', 'gamma2': not all gamma_i may be 0 (Thm 6)")
        check_lambda_grid(self.lam_step, LAM_LO, LAM_HI, LAM_NEEDS, ("lam_step", None, None))
        return self

    @property
    def M(self) -> int:
        """Number of irrelevant patterns e_3..e_{d-2}."""
        return self.d - 4


TINY = {"steps": 20, "n_test": 50, "B": 16, "lam_step": 1.0, "curve_points": 4}  # ~1 s: conformance tests
QUICK: dict = {}  # the defaults: lr 4 x 500 steps reaches fine-tuned hinge ~0.07 (0 error) in ~35 s for 15 cells on 2 CPU cores
FULL = {"steps": 1500, "lr": 2.0, "n_test": 4096, "lam_step": 0.1, "curve_points": 60}  # the calibration note's recipe
