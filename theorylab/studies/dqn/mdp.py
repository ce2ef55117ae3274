"""The data model: small finite MDPs whose optimal Q is exact (value iteration), and the environment copies.

Chain (A = 2: left, right): states 0..n-1, start 0, goal n-1. Gridworld (A = 4: up, down, left, right): states
r * n + c, start 0 (top left), goal n*n - 1 (bottom right); a move into a wall stays. Entering the goal pays 1 and
ends the episode (the goal is terminal: Q*(goal, .) = 0). With probability `slip` the intended action is replaced by
a uniformly random one, so

    P(s' | s, a) = (1 - slip) 1[s' = N(s, a)] + (slip / A) sum_b 1[s' = N(s, b)]
    Q*(s, a) = sum_s' P(s' | s, a) (r(s') + gamma (1 - term(s')) max_a' Q*(s', a'))     (Bellman optimality)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from theorylab.core.ensemble import shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.dqn.config import DQNConfig


@dataclass
class MDP:
    next_state: torch.Tensor  # N(s, a) [S, A] long
    P: torch.Tensor  # P(s' | s, a) [S, A, S] float64
    reward: torch.Tensor  # r(s') [S]: 1 on the goal
    terminal: torch.Tensor  # [S] bool
    start: int
    gamma: float

    @property
    def S(self) -> int:
        return self.next_state.shape[0]

    @property
    def A(self) -> int:
        return self.next_state.shape[1]


def next_table(env: str, n: int) -> torch.Tensor:
    """N(s, a): the state an action leads to without slipping."""
    if env == "chain":
        s = torch.arange(n)
        return torch.stack([(s - 1).clamp_min(0), (s + 1).clamp_max(n - 1)], 1)  # left, right
    r, c = torch.arange(n * n) // n, torch.arange(n * n) % n
    moves = [((r - 1).clamp_min(0), c), ((r + 1).clamp_max(n - 1), c), (r, (c - 1).clamp_min(0)), (r, (c + 1).clamp_max(n - 1))]
    return torch.stack([rr * n + cc for rr, cc in moves], 1)  # up, down, left, right


def make_mdp(cfgs: Sequence[DQNConfig]) -> MDP:
    env, n = shared_value(cfgs, "env"), shared_value(cfgs, "n")
    slip, gamma = shared_value(cfgs, "slip"), shared_value(cfgs, "gamma")
    N = next_table(env, n)
    S, A = N.shape
    onehot = torch.nn.functional.one_hot(N, S).double()  # [S, A, S]
    P = (1 - slip) * onehot + slip * onehot.mean(1, keepdim=True)  # [S, A, S]
    terminal = torch.zeros(S, dtype=torch.bool)
    terminal[S - 1] = True
    reward = terminal.double()
    return MDP(N, P, reward, terminal, 0, gamma)


def value_iteration(mdp: MDP, tol: float = 1e-12, max_iter: int = 100_000) -> torch.Tensor:
    """Q* [S, A] (float64) by iterating the Bellman optimality operator to a fixed point; rows of terminal states 0."""
    Q = torch.zeros(mdp.S, mdp.A, dtype=torch.float64)
    cont = (~mdp.terminal).double()
    for _ in range(max_iter):
        V = Q.max(1).values * cont  # max_a' Q(s', a'), 0 after the goal                     [S]
        new = mdp.P @ (mdp.reward + mdp.gamma * V)  # Bellman optimality                           [S, A]
        new[mdp.terminal] = 0.0
        if (new - Q).abs().max() < tol:
            return new
        Q = new
    return Q


def features(cfgs: Sequence[DQNConfig], rng: EnsembleRNG, device) -> torch.Tensor:
    """phi(s) [E, S, d]: one-hot, or Gaussian N(0, I/d) rows drawn per model."""
    S, kind, d = cfgs[0].S, shared_value(cfgs, "features"), cfgs[0].d
    if kind == "onehot":
        return torch.eye(S, device=device).expand(len(cfgs), S, S).clone()
    return rng.normal((S, d), "features").to(device) / d**0.5


def step(mdp: MDP, s: torch.Tensor, a: torch.Tensor, u_slip: torch.Tensor, a_slip: torch.Tensor, slip: float):
    """One environment step for every walker: s, a [E, W] -> (s' [E, W], r [E, W], done [E, W]).
    u_slip [E, W] uniform decides a slip, a_slip [E, W] is the random replacement action."""
    taken = torch.where(u_slip < slip, a_slip, a)
    s2 = mdp.next_state.to(s.device)[s, taken]
    done = mdp.terminal.to(s.device)[s2]
    return s2, done.float(), done
