"""DQN study config (Zhang, Li, Wang, Liu, Chen, Lu, Liu, Murugesan, Chaudhury; NeurIPS 2023, arXiv 2310.16173).

Everything in ../shared/papers/vit_gt_mamba_gmm_dqn_pcas.md section 5 beyond the abstract is [D]: the
environments, the network, the replay and epsilon schedules are proposed defaults, hence all parameters here.

Defaults: a chain of n = 8 states (start at the left end, reward 1 on entering the right end, which is terminal),
slip 0.1 (the agent's action is replaced by a uniformly random one with this probability), gamma 0.9; a Q-network
with one ReLU hidden layer of width m = 32 on one-hot state features, one output per action; each outer iteration
collects walkers x collect_steps transitions with the eps_t-greedy policy, freezes the target network, and runs
`steps` SGD steps (batch B, learning rate lr) on the mean-square Bellman error over replay samples;
eps_t = max(eps_min, eps0 * eps_decay^t).
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig


class DQNConfig(StudyConfig):
    study: ClassVar[str] = "dqn"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset({"seed", "lr", "eps0", "eps_decay", "eps_min", "radius"})
    # common random numbers: cells of one seed that differ only in the exploration schedule, the initial distance or
    # the target refresh share phi, omega*, the direction of omega_0 - omega* and every exploration draw
    swept_fields: ClassVar[frozenset[str]] = frozenset({"eps0", "eps_decay", "eps_min", "radius", "target_update"})

    seed: int = Field(0, ge=0, lt=2**62, description="seed; every random stream derives from the config hash")
    # the MDP (section 5.3 [D])
    env: Literal["chain", "grid"] = Field("chain", description="chain of n states, or an n x n gridworld [D]")
    n: int = Field(8, ge=3, le=64, description="chain length, or the gridworld's side [D]")
    slip: float = Field(0.1, ge=0, lt=1, description="probability that the action is replaced by a random one [D]")
    gamma: float = Field(0.9, gt=0, lt=1, description="discount factor (spec: 0.9) [D]")
    episode_len: int = Field(40, ge=1, le=100_000, description="a walker restarts at the start state after this "
                             "many steps, or on reaching the goal [D]")
    # the Q-network
    features: Literal["onehot", "random"] = Field("onehot", description="state features phi(s): one-hot, or "
                                                  "Gaussian N(0, I/d_feat) per state (drawn per seed) [D]")
    d_feat: int = Field(16, ge=1, le=4096, description="feature dimension when features = random [D]")
    m: int = Field(32, ge=1, le=4096, description="hidden ReLU width (spec: 64) [D]")
    # DQN (section 5.1 [M/I]); steps = SGD steps per outer iteration
    T: int = Field(30, ge=2, le=100_000, description="outer iterations (target refreshes) [D; spec 50]")
    steps: int = Field(40, ge=1, le=1_000_000, description="SGD steps per outer iteration [D; spec 200]")
    B: int = Field(32, ge=1, le=1 << 16, description="replay mini-batch size [D; spec 64]")
    lr: float = Field(0.1, gt=0, le=100, description="SGD learning rate [D]")
    walkers: int = Field(8, ge=1, le=4096, description="environment copies per model [D]")
    collect_steps: int = Field(8, ge=1, le=100_000, description="epsilon-greedy steps per walker per outer iteration [D]")
    buffer: int = Field(2000, ge=1, le=1 << 22, description="replay buffer capacity (transitions) [D; spec 10k]")
    target_update: Literal["every_iter", "never"] = Field("every_iter", description="refresh the target network at "
                                                          "each outer iteration (DQN), or never (a control)")
    # exploration: eps_t = max(eps_min, eps0 * eps_decay^t)
    eps0: float = Field(1.0, ge=0, le=1, description="initial epsilon [D]")
    eps_decay: float = Field(0.9, gt=0, le=1, description="epsilon decay per outer iteration (1: constant) [D; spec 0.9]")
    eps_min: float = Field(0.0, ge=0, le=1, description="epsilon floor [D]")
    # initial network
    init: Literal["random", "perturbed"] = Field("perturbed", description="omega_0: omega* + radius x a random "
                                                 "direction (per tensor, relative to ||omega*||; the theorem is local), "
                                                 "or the usual random init")
    radius: float = Field(0.5, ge=0, le=100, description="relative distance ||omega_0 - omega*|| / ||omega*|| per "
                          "tensor when init = perturbed")
    fit_steps: int = Field(400, ge=1, le=1_000_000, description="Adam steps fitting omega* to Q* (realizability)")
    # the epsilon-level experiment (claims thm_eps_region, thm_eps_rate): constant epsilon, init = perturbed
    eps_levels: tuple[float, float] = Field((0.1, 0.6), description="(smaller, larger) constant epsilon compared "
                                            "[D; spec: 0.05 .. 0.5]")
    radii: tuple[float, ...] = Field((0.5, 1.0, 2.0, 4.0, 8.0), description="relative initial distances "
                                     "||omega_0 - omega*|| / ||omega*|| swept, increasing [D]")
    curve_points: int = Field(2, ge=2, le=10_000, description="unused: the curve has one point per outer iteration")

    @model_validator(mode="after")
    def _consistent(self) -> "DQNConfig":
        if self.env == "grid" and self.n > 16:
            raise ValueError(f"field 'n': a gridworld side must be <= 16 (got {self.n})")
        if self.eps_min > self.eps0:
            raise ValueError(f"field 'eps_min' must be <= eps0 = {self.eps0} (got {self.eps_min})")
        lo, hi = self.eps_levels
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"field 'eps_levels' must be (smaller, larger) in [0, 1] (got {self.eps_levels})")
        if not self.radii or any(r <= 0 for r in self.radii) or list(self.radii) != sorted(set(self.radii)):
            raise ValueError(f"field 'radii' must be positive and strictly increasing (got {self.radii})")
        return self

    @property
    def S(self) -> int:
        return self.n if self.env == "chain" else self.n * self.n

    @property
    def A(self) -> int:
        return 2 if self.env == "chain" else 4

    @property
    def d(self) -> int:
        return self.S if self.features == "onehot" else self.d_feat


TINY = {"T": 6, "steps": 10, "fit_steps": 50, "walkers": 4, "collect_steps": 4, "buffer": 200}
QUICK: dict = {}
FULL = {"m": 64, "T": 50, "steps": 200, "B": 64, "buffer": 10_000, "walkers": 16, "lr": 0.05}
