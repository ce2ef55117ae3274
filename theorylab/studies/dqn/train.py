"""DQN with a target network and experience replay, epsilon-greedy with a decaying schedule (section 5.1 [M/I]),
for E models at once: each model has its own walkers, replay buffer, network and target network, all tensors
with a leading E axis.

For outer iteration t = 0 .. T-1:
  1. collect walkers x collect_steps transitions with the eps_t-greedy policy of Q(.; omega_t) into the buffer;
  2. freeze the target omega_t; run `steps` SGD steps on the mean-square Bellman error
         (Q(s, a; omega) - r - gamma (1 - done) max_a' Q(s', a'; omega_t))^2     over replay samples;
  3. omega_{t+1} = the result; eps_{t+1} = max(eps_min, eps0 eps_decay^(t+1)).
The error ||Q_t - Q*||_inf (over non-terminal state-actions; Q* by value iteration) is recorded at every t.

The T iterations are one Training of T x `steps` SGD steps (core.protocol runs the loop): the first loss of an
iteration (step t x steps) collects and freezes the target before its mini-batch, and the curves' checkpoints fall
on the iteration boundaries (curve_points = T), where the probes record the errors of omega_t.

omega* (realizability): the same network fitted to Q* by Adam (full batch, `fit_steps`); init = perturbed starts
from omega* + radius ||omega*_k|| u_k / ||u_k|| for every tensor k (u_k Gaussian, drawn per model).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from theorylab.core.batch import Examples, gather_rows
from theorylab.core.ensemble import expand_to, scalar_tensor, shared_value
from theorylab.core.protocol import Graded, Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import SGD, AdamW, train_ensemble
from theorylab.studies.dqn.config import DQNConfig
from theorylab.studies.dqn.fused import bellman_loss, bellman_loss_and_grad
from theorylab.studies.dqn.mdp import MDP, features, make_mdp, step, value_iteration
from theorylab.studies.dqn.model import TRAINABLE, init_params, q_table, q_values

FIT_LR = 0.01


@dataclass
class Replay(Examples):
    """Each model's replay buffer: transitions (s, a, r, s', done), [E, C] each (C = capacity)."""
    s: torch.Tensor
    a: torch.Tensor
    r: torch.Tensor
    s2: torch.Tensor
    done: torch.Tensor

    @classmethod
    def empty(cls, E: int, C: int, device) -> "Replay":
        idx = lambda: torch.zeros(E, C, dtype=torch.long, device=device)  # noqa: E731
        return cls(idx(), idx(), torch.zeros(E, C, device=device), idx(), torch.zeros(E, C, device=device))

    def write(self, at: torch.Tensor, **transitions: torch.Tensor) -> None:
        """Stores transitions [E, W] in slots at [W] (in place)."""
        for name, v in transitions.items():
            getattr(self, name)[:, at] = v


def model_steps(cfg: DQNConfig) -> int:
    return cfg.T * cfg.steps


def q_star(cfgs: Sequence[DQNConfig], device) -> tuple[MDP, torch.Tensor]:
    """The MDP and Q* [S, A] (float32 on device)."""
    mdp = make_mdp(cfgs)
    return mdp, value_iteration(mdp).float().to(device)


def q_error(p: dict[str, torch.Tensor], phi: torch.Tensor, Qs: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """||Q(.; omega) - Q*||_inf over non-terminal state-actions: [E] (NaN stays NaN)."""
    with torch.no_grad():
        diff = (q_table(p, phi) - Qs)[:, live]  # [E, S_live, A]
        return torch.where(torch.isfinite(diff), diff.abs(), torch.nan).flatten(1).max(1).values


def q_error_optimal(p: dict[str, torch.Tensor], phi: torch.Tensor, Qs: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """max over non-terminal s of |Q(s, a*(s); omega) - Q*(s, a*(s))|, a*(s) = argmax_a Q*(s, a): [E]. The error on
    the actions an optimal policy takes: a larger epsilon cannot lower it merely by visiting actions it never needs."""
    with torch.no_grad():
        best = Qs.argmax(1)  # a*(s)                                                                    [S]
        diff = (q_table(p, phi).gather(2, best.expand(phi.shape[0], -1)[..., None])[..., 0]
                - Qs.gather(1, best[:, None])[:, 0])[:, live]  # [E, S_live]
        return torch.where(torch.isfinite(diff), diff.abs(), torch.nan).max(1).values


def fit_star(cfgs, rng, phi, Qs, live, device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """omega* [E, ...]: Adam on sum over non-terminal (s, a) of (Q(s, a; omega) - Q*(s, a))^2 / count."""
    A, m = cfgs[0].A, shared_value(cfgs, "m")
    p0 = init_params(rng, phi.shape[-1], m, A)

    def loss_fn(p, _):
        return {"loss": ((q_table(p, phi) - Qs)[:, live] ** 2).flatten(1).mean(1)}

    lr = torch.full((len(cfgs),), FIT_LR, device=device)
    res = train_ensemble(p0, TRAINABLE, loss_fn, lr, shared_value(cfgs, "fit_steps"), optimizer=AdamW(weight_decay=0.0),
                         curve_points=2)
    return res.params, q_error(res.params, phi, Qs, live)


def initial(cfgs, rng, star: dict[str, torch.Tensor], phi, device) -> dict[str, torch.Tensor]:
    if shared_value(cfgs, "init") == "random":
        return init_params(rng, phi.shape[-1], shared_value(cfgs, "m"), cfgs[0].A)
    radius = scalar_tensor(cfgs, "radius", device)  # [E]
    out = {}
    for k, w in star.items():
        u = rng.normal(tuple(w.shape[1:]), "perturb", k).to(device)  # [E, ...]
        scale = radius * w.flatten(1).norm(dim=1) / u.flatten(1).norm(dim=1).clamp_min(1e-12)  # [E]
        out[k] = w + expand_to(scale, u) * u
    return out


def uniform_streams(rng: EnsembleRNG, streams: Sequence[tuple], n: int, dtype=torch.float64) -> torch.Tensor:
    """[E, len(streams), n]: rng.uniform((n,), *stream, dtype=dtype) for every stream, in one draw
    (EnsembleRNG.uniform_streams; float64 by default, as randint draws)."""
    return rng.uniform_streams(streams, n, dtype)


def replay_draws(rng: EnsembleRNG, filled: int, B: int, t: int, n: int) -> torch.Tensor:
    """[E, n, B]: rng.randint(filled, (B,), "replay", t, j) for j = 0 .. n-1 (an iteration's mini-batches)."""
    return torch.floor(uniform_streams(rng, [("replay", t, j) for j in range(n)], B) * filled).long()


def training(cfgs: Sequence[DQNConfig], rng: EnsembleRNG, device: torch.device, fast: bool = True) -> Training:
    """fast: each iteration's replay indices drawn at its start (replay_draws) and every step's Bellman targets and
    (s, a) gathered then (the target is frozen for the iteration); the loss and its gradient by fused.BellmanLoss,
    over the Q-table of every state when there are no more states than a mini-batch's samples (else over the
    batch's states); False: the plain step, one draw, gather and autograd forward per SGD step, that the fast one is
    tested equal to."""
    E = len(cfgs)
    T, W, K, C, B = (shared_value(cfgs, k) for k in ("T", "walkers", "collect_steps", "buffer", "B"))
    n_sgd, gamma, slip, ep_len = (shared_value(cfgs, k) for k in ("steps", "gamma", "slip", "episode_len"))
    A = cfgs[0].A
    # the rng is keyed by world_hash: cells that differ only in epsilon, radius or the target refresh
    # (DQNConfig.swept_fields) share phi, omega*, the direction of omega_0 - omega* and every exploration draw
    mdp, Qs = q_star(cfgs, device)
    live = ~mdp.terminal.to(device)
    phi = features(cfgs, rng, device)  # [E, S, d]
    star, fit_err = fit_star(cfgs, rng, phi, Qs, live, device)
    p0 = initial(cfgs, rng, star, phi, device)
    eps0, decay, eps_min = (scalar_tensor(cfgs, k, device) for k in ("eps0", "eps_decay", "eps_min"))
    eps = [torch.maximum(eps_min, eps0 * decay**t) for t in range(T)]  # eps_t                     T x [E]
    refresh = shared_value(cfgs, "target_update") == "every_iter"
    # walkers and replay buffer, per model; carried from one iteration to the next
    s = torch.full((E, W), mdp.start, dtype=torch.long, device=device)
    age = torch.zeros(E, W, dtype=torch.long, device=device)
    replay = Replay.empty(E, C, device)
    ptr = filled = 0
    v_tgt = torch.empty(0)  # max_a' Q(s', a'; target) for every state [E, S], frozen per iteration
    # fast path, per iteration: each step's mini-batch [E, B] (j = 0 .. steps) as its Bellman targets, the entries of
    # Q^T it reads (a S + s of the Q-table, or a B + b of the batch's rows: fused.BellmanLoss) and its states
    y_steps = q_steps = s_steps = ()
    by_table = fast and mdp.S <= B  # Q(s, a) from the whole Q-table [E, S, A]: fewer rows than the mini-batch

    next_state, terminal = mdp.next_state.to(device), mdp.terminal.to(device)

    @torch.no_grad()
    def begin_iteration(p, t: int) -> None:
        """1. collect with the eps_t-greedy policy of Q(.; omega_t); 2. freeze the target."""
        nonlocal s, age, ptr, filled, v_tgt, y_steps, q_steps, s_steps
        if fast:
            table = collect_at_once(p, t)
            v_tgt = (table if refresh else q_table(p0, phi)).max(-1).values  # [E, S]
        else:
            for k in range(K):
                greedy = q_values(p, gather_rows(phi, s)).argmax(-1)  # [E, W]
                draw = (rng.uniform((W,), "explore", t, k).to(device), rng.randint(A, (W,), "random_action", t, k).to(device),
                        rng.uniform((W,), "slip", t, k).to(device), rng.randint(A, (W,), "slip_action", t, k).to(device))
                explore = draw[0] < eps[t][:, None]
                a = torch.where(explore, draw[1], greedy)
                s2, r, done = step(mdp, s, a, draw[2], draw[3], slip)
                replay.write((ptr + torch.arange(W, device=device)) % C, s=s, a=a, r=r, s2=s2, done=done.float())
                ptr, filled = (ptr + W) % C, min(filled + W, C)
                age = age + 1
                restart = done | (age >= ep_len)
                s = torch.where(restart, torch.full_like(s2, mdp.start), s2)
                age = torch.where(restart, torch.zeros_like(age), age)
            v_tgt = q_table(p if refresh else p0, phi).max(-1).values  # [E, S]
            return
        # the buffer and the target stay fixed until the next iteration: every step's mini-batch at once
        draws = replay_draws(rng, filled, B, t, n_sgd + 1).to(device).flatten(1)  # [E, (steps + 1) B]
        # the draws read the filled slots 0 .. filled-1 only: per-slot numbers are computed there (the same ones)
        r, done, s2 = (x[:, :filled] for x in (replay.r, replay.done, replay.s2))
        y_all = r + gamma * (1 - done) * torch.gather(v_tgt, 1, s2)  # [E, filled]
        per_step = lambda x: x.view(E, n_sgd + 1, B).unbind(1)  # noqa: E731  [E, B] for each step j
        y_steps = per_step(torch.gather(y_all, 1, draws))
        if by_table:  # each slot's entry a S + s of Q^T, then one gather for the draws
            q_steps = per_step(torch.gather(replay.a[:, :filled] * mdp.S + replay.s[:, :filled], 1, draws))
        else:
            s_steps = per_step(torch.gather(replay.s, 1, draws))
            a_draw = torch.gather(replay.a, 1, draws).view(E, n_sgd + 1, B)
            q_steps = (a_draw * B + torch.arange(B, device=device)).unbind(1)  # entry a B + b of the batch's Q^T

    def collect_at_once(p, t: int) -> torch.Tensor:
        """The plain loop's K collection steps with its numbers: the draws of the iteration at once (two hashes
        for the four streams), the greedy actions read from the Q-table of every state (omega_t is fixed while it
        collects; the table is the target's too), and the K W transitions written to the buffer in one go (the
        last C of them when they wrap around it, as the plain loop's later writes overwrite its earlier ones).
        Returns the Q-table [E, S, A]."""
        nonlocal s, age, ptr, filled
        table = q_table(p, phi)
        greedy_all = table.argmax(-1)  # [E, S]
        u = uniform_streams(rng, [(name, t, k) for name in ("explore", "slip") for k in range(K)], W, torch.float32)
        acts = torch.floor(uniform_streams(rng, [(name, t, k) for name in ("random_action", "slip_action")
                                                 for k in range(K)], W) * A).long()
        explore = (u[:, :K] < eps[t][:, None, None]).unbind(1)  # [E, W] per collect step
        slipped = (u[:, K:] < slip).unbind(1)
        a_random, a_slip = acts.to(device)[:, :K].unbind(1), acts.to(device)[:, K:].unbind(1)
        seen = {"s": [], "a": [], "s2": [], "done": []}
        for k in range(K):
            a = torch.where(explore[k], a_random[k], torch.gather(greedy_all, 1, s))
            s2 = next_state[s, torch.where(slipped[k], a_slip[k], a)]  # mdp.step: the slip replaces the action
            done = terminal[s2]
            for name, v in zip(seen, (s, a, s2, done)):
                seen[name].append(v)
            age = age + 1
            restart = done | (age >= ep_len)
            s = torch.where(restart, mdp.start, s2)
            age = torch.where(restart, 0, age)
        n, keep = K * W, min(K * W, C)
        at = (ptr + torch.arange(n - keep, n, device=device)) % C
        new = {name: torch.stack(v, 1).flatten(1)[:, n - keep:] for name, v in seen.items()}  # [E, keep]
        done = new.pop("done").float()
        replay.write(at, **new, r=done, done=done)
        ptr, filled = (ptr + n) % C, min(filled + n, C)
        return table

    def batch_at(params, global_step) -> tuple[int, int]:
        """(t, j): the step's iteration and its SGD step within it; an iteration begins at j = 0."""
        t, j = divmod(global_step, n_sgd)
        if t == T:  # after the last SGD step: a fresh mini-batch of the last iteration (the final loss)
            t, j = T - 1, n_sgd
        if j == 0:
            begin_iteration(params, t)
        return t, j

    def loss_fn(params, global_step):
        t, j = batch_at(params, global_step)
        if fast:  # Q of every state (or of the batch's states), its entries (s, a) read: fused.BellmanLoss
            rows = phi if by_table else gather_rows(phi, s_steps[j])  # [E, S or B, d]
            return {"loss": bellman_loss(params, rows, q_steps[j], y_steps[j])}
        batch = replay.rows(rng.randint(filled, (B,), "replay", t, j).to(device))  # uniform over the filled [E, B]
        y = batch.r + gamma * (1 - batch.done) * torch.gather(v_tgt, 1, batch.s2)  # Bellman target      [E, B]
        q = torch.gather(q_values(params, gather_rows(phi, batch.s)), 2, batch.a[..., None])[..., 0]  # Q(s, a) [E, B]
        return {"loss": ((q - y) ** 2).mean(-1)}  # MSBE on the mini-batch                                [E]

    # one-hot features read by the whole Q-table: the rows X are the identity (fused.bellman_forward)
    identity_rows = by_table and shared_value(cfgs, "features") == "onehot"

    def grad_fn(params, global_step):
        """loss_fn's fast step with its gradient by hand, for core's trainer (no autograd: core.train.GradFn)."""
        _, j = batch_at(params, global_step)
        rows = phi if by_table else gather_rows(phi, s_steps[j])
        loss, backward = bellman_loss_and_grad(params, rows, q_steps[j], y_steps[j], identity_rows)
        return {"loss": loss}, backward

    def probes(p, global_step):
        """At iteration boundaries: the errors of omega_t (t = 0 .. T) and the eps_t it collects with (t < T)."""
        t = global_step // n_sgd
        out = {"iter": torch.full((E,), float(t)), "q_err": q_error(p, phi, Qs, live),
               "q_err_opt": q_error_optimal(p, phi, Qs, live)}
        return {**out, "eps": eps[t]} if t < T else out

    def grade(res) -> Graded:
        err, err_opt = res.curves["q_err"].T, res.curves["q_err_opt"].T  # [E, T+1]
        qmax = Qs[live].abs().max().item()
        metrics = {"q_err0": err[:, 0], "q_err_final": err[:, -1], "q_err_rel_final": err[:, -1] / qmax,
                   "q_err_opt0": err_opt[:, 0], "q_err_opt_final": err_opt[:, -1],
                   "qstar_max": torch.full((E,), qmax), "fit_err": fit_err.cpu()}
        return Graded(metrics, {**res.params, **{f"star.{k}": v for k, v in star.items()}})

    return Training(p0, TRAINABLE, loss_fn, scalar_tensor(cfgs, "lr", device), T * n_sgd, grade,
                    what=f"SGD steps ({T} iterations)", optimizer=SGD(), probes=probes, curve_points=T,
                    grad=grad_fn if fast else None)
