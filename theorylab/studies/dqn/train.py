"""DQN with a target network and experience replay, epsilon-greedy with a decaying schedule (section 5.1 [M/I]),
for E models at once: each model has its own walkers, replay buffer, network and target network, all tensors
with a leading E axis.

For outer iteration t = 0 .. T-1:
  1. collect walkers x collect_steps transitions with the eps_t-greedy policy of Q(.; omega_t) into the buffer;
  2. freeze the target omega_t; run `steps` SGD steps on the mean-square Bellman error
         (Q(s, a; omega) - r - gamma (1 - done) max_a' Q(s', a'; omega_t))^2     over replay samples;
  3. omega_{t+1} = the result; eps_{t+1} = max(eps_min, eps0 eps_decay^(t+1)).
The error ||Q_t - Q*||_inf (over non-terminal state-actions; Q* by value iteration) is recorded at every t.

omega* (realizability): the same network fitted to Q* by Adam (full batch, `fit_steps`); init = perturbed starts
from omega* + radius ||omega*_k|| u_k / ||u_k|| for every tensor k (u_k Gaussian, drawn per model).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from theorylab.core.ensemble import expand_to, rng_for, scalar_tensor, shared_value
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult, group_result
from theorylab.core.train import SGD, AdamW, train_ensemble
from theorylab.studies.dqn.config import DQNConfig
from theorylab.studies.dqn.mdp import MDP, features, make_mdp, step, value_iteration
from theorylab.studies.dqn.model import TRAINABLE, init_params, q_table, q_values

FIT_LR = 0.01



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


def train_group(cfgs: Sequence[DQNConfig], device: torch.device, bars: Bars) -> GroupResult:
    t_start = time.perf_counter()
    E = len(cfgs)
    c0 = cfgs[0]
    T, W, K, C, B = (shared_value(cfgs, k) for k in ("T", "walkers", "collect_steps", "buffer", "B"))
    n_sgd, gamma, slip, ep_len = (shared_value(cfgs, k) for k in ("steps", "gamma", "slip", "episode_len"))
    S, A = c0.S, c0.A
    # keyed by world_hash: cells that differ only in epsilon, radius or the target refresh (DQNConfig.swept_fields)
    # share phi, omega*, the direction of omega_0 - omega* and every exploration draw (common random numbers)
    rng = rng_for(cfgs, device)
    mdp, Qs = q_star(cfgs, device)
    live = ~mdp.terminal.to(device)
    phi = features(cfgs, rng, device)  # [E, S, d]
    star, fit_err = fit_star(cfgs, rng, phi, Qs, live, device)
    p = initial(cfgs, rng, star, phi, device)
    p0 = {k: v.clone() for k, v in p.items()}
    eps0, decay, eps_min = (scalar_tensor(cfgs, k, device) for k in ("eps0", "eps_decay", "eps_min"))
    lr = scalar_tensor(cfgs, "lr", device)
    models = torch.arange(E, device=device)[:, None]  # [E, 1] row index for gathers
    # walkers and replay buffer, per model
    s = torch.full((E, W), mdp.start, dtype=torch.long, device=device)
    age = torch.zeros(E, W, dtype=torch.long, device=device)
    buf = {"s": torch.zeros(E, C, dtype=torch.long, device=device), "a": torch.zeros(E, C, dtype=torch.long, device=device),
           "r": torch.zeros(E, C, device=device), "s2": torch.zeros(E, C, dtype=torch.long, device=device),
           "done": torch.zeros(E, C, device=device)}
    ptr = filled = 0
    diverged = torch.full((E,), -1, dtype=torch.long)
    errs, errs_opt, epss = [q_error(p, phi, Qs, live)], [q_error_optimal(p, phi, Qs, live)], []
    with bars.task(f"dqn: {E} model(s) x {T} iterations x {n_sgd} SGD steps", T, models=E) as advance:
        for t in range(T):
            eps = torch.maximum(eps_min, eps0 * decay**t)  # eps_t                                       [E]
            epss.append(eps)
            with torch.no_grad():  # 1. collect with the eps_t-greedy policy of Q(.; omega_t)
                for k in range(K):
                    greedy = q_values(p, phi[models, s]).argmax(-1)  # [E, W]
                    explore = rng.uniform((W,), "explore", t, k).to(device) < eps[:, None]
                    a = torch.where(explore, rng.randint(A, (W,), "random_action", t, k).to(device), greedy)
                    s2, r, done = step(mdp, s, a, rng.uniform((W,), "slip", t, k).to(device),
                                       rng.randint(A, (W,), "slip_action", t, k).to(device), slip)
                    at = (ptr + torch.arange(W, device=device)) % C
                    for name, v in (("s", s), ("a", a), ("r", r), ("s2", s2), ("done", done.float())):
                        buf[name][:, at] = v
                    ptr, filled = (ptr + W) % C, min(filled + W, C)
                    age = age + 1
                    restart = done | (age >= ep_len)
                    s = torch.where(restart, torch.full_like(s2, mdp.start), s2)
                    age = torch.where(restart, torch.zeros_like(age), age)
            # 2. freeze the target: max_a' Q(s', a'; omega_t) for every state, once per iteration
            tgt = p if shared_value(cfgs, "target_update") == "every_iter" else p0
            with torch.no_grad():
                v_tgt = q_table(tgt, phi).max(-1).values  # [E, S]
            n_filled = filled

            def loss_fn(params, j, t=t, n_filled=n_filled, v_tgt=v_tgt):
                i = rng.randint(n_filled, (B,), "replay", t, j).to(device)  # [E, B] uniform over the buffer
                bs, ba, br, bs2, bd = (torch.gather(buf[k], 1, i) for k in ("s", "a", "r", "s2", "done"))
                y = br + gamma * (1 - bd) * torch.gather(v_tgt, 1, bs2)  # Bellman target              [E, B]
                q = torch.gather(q_values(params, phi[models, bs]), 2, ba[..., None])[..., 0]  # Q(s, a)  [E, B]
                return {"loss": ((q - y) ** 2).mean(-1)}  # MSBE on the mini-batch                      [E]

            alive = (diverged < 0).to(device)
            res = train_ensemble(p, TRAINABLE, loss_fn, lr * alive, n_sgd, optimizer=SGD(), curve_points=2)
            p = res.params  # 3. omega_{t+1}
            diverged = torch.where((diverged < 0) & (res.diverged_at >= 0), t * n_sgd + res.diverged_at, diverged)
            errs.append(q_error(p, phi, Qs, live))
            errs_opt.append(q_error_optimal(p, phi, Qs, live))
            advance(t + 1)
    err = torch.stack(errs, 1).cpu()  # [E, T+1]
    err_opt = torch.stack(errs_opt, 1).cpu()
    qmax = Qs[live].abs().max().item()
    metrics = {"q_err0": err[:, 0], "q_err_final": err[:, -1], "q_err_rel_final": err[:, -1] / qmax,
               "q_err_opt0": err_opt[:, 0], "q_err_opt_final": err_opt[:, -1],
               "qstar_max": torch.full((E,), qmax), "fit_err": fit_err.cpu()}
    eps_c = torch.stack(epss, 1).cpu()
    curves = [{"iter": list(range(T + 1)), "q_err": err[e].tolist(), "q_err_opt": err_opt[e].tolist(), "eps": eps_c[e].tolist()} for e in range(E)]
    out = {**p, **{f"star.{k}": v for k, v in star.items()}}
    return group_result(out, metrics, curves, diverged, time.perf_counter() - t_start)
