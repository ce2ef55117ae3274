"""The paper's theory testbed (spec 3.4 "toy theory testbed"): local vs global features and the sample complexity of
an activation prompt (AP) against a visual prompt (VP, a prompt at the input).

Data model (per world: seed and every field except tb_n). Patterns are the columns of a random orthogonal d x d
matrix Q: mu = Q[:, 0] carries the label, nu_1..nu_{d-1} = Q[:, 1:] are label-irrelevant. A sample has P tokens
x_p in R^d and a label y = +-1; a random set S of k = max(1, round(alpha P)) tokens carries the label pattern, the
others one irrelevant pattern each (uniform j, random sign); every token gets Gaussian noise:

    x_p = a y mu + sigma eps_p           (p in S)
    x_p = a s_p nu_{j_p} + sigma eps_p   (p not in S)

Two frozen two-layer backbones, "pre-trained" pattern detectors that are blind to a pattern's sign, with
phi(t) = softplus(beta t) / beta (a smooth ReLU, so a prompt always has a gradient):

    layer 1 (both):   h1_p = phi([Q^T x_p ; -Q^T x_p] - tau)        one detector per pattern and sign   [2d]
    global only:      h1_p <- mean_q h1_q                           uniform attention: every token the same
    layer 2 (both):   h2_p[j] = phi(h1_p[j+]) + phi(h1_p[j-])       "pattern j present, either sign"    [d]
    head:             logit = w . mean_p h2_p + b

The local backbone (CNN-like: every feature from its own token) becomes global only at the mean pool; the global
one (ViT-like) from layer 1 on. Both are invariant to y -> -y by construction, so the head alone (linear probing)
is at chance and the label is readable only once a prompt breaks the sign symmetry before layer 2:

    VP     delta_0 [P, d]   added to x_p                      (layer 0)
    AP1    delta_1 [P, 2d]  added to h1_p (after the mixing)  (layer 1)
    AP2    a prompt on h2 before the mean pool is a bias of the head (mean_p (h2_p + delta) = mean_p h2_p + mean
           delta): it is linear probing, so it is not trained as a separate arm (the digit CNN's last layer too).

Every arm (backbone x {linear, vp, ap1}) trains from the same start (the prompts at 0; the head at one small
random draw per model, shared by every arm, which moves the head off the symmetric point) on the same n = tb_n
samples (full batch, Adam), as one Training: each arm its own weights "{backbone}_{method}/{name}".
Training sets are nested across tb_n (a swept field: the first n samples of one world's stream).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from theorylab.core.losses import logistic, sign_error
from theorylab.core.protocol import Graded, Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import AdamW
from theorylab.studies.activation_prompt.config import APConfig

BACKBONES = ("local", "global")
METHODS = ("linear", "vp", "ap1")
ARMS = tuple(f"{b}_{m}" for b in BACKBONES for m in METHODS)
HEAD = ("w", "b")


def n_label_tokens(cfg: APConfig) -> int:
    return max(1, round(cfg.tb_alpha * cfg.tb_tokens))


def n_grid(cfg: APConfig) -> list[int]:
    """The training-set sizes the sample-complexity claims sweep: tb_n_min, doubling, up to tb_n_max."""
    out, n = [], cfg.tb_n_min
    while n <= cfg.tb_n_max:
        out.append(n)
        n *= 2
    return out


def sample(rng: EnsembleRNG, cfg: APConfig, n: int, split: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(X [E, n, P, d], y [E, n] in {-1, +1}) of each model's world; the first m of n samples equal a draw of m."""
    P, d, k = cfg.tb_tokens, cfg.tb_dim, n_label_tokens(cfg)
    Q = rng.orthogonal(d, "testbed", "patterns").to(device)  # [E, d, d]
    y = rng.sign((n,), "testbed", split, "y").to(device)  # [E, n]
    label_token = rng.uniform((n, P), "testbed", split, "positions").argsort(-1).argsort(-1).to(device) < k
    j = 1 + rng.randint(d - 1, (n, P), "testbed", split, "pattern").to(device)  # irrelevant pattern per token
    s = rng.sign((n, P), "testbed", split, "sign").to(device)
    coef = torch.where(label_token, y[..., None], s)  # [E, n, P]
    which = torch.where(label_token, torch.zeros_like(j), j)
    patterns = torch.gather(Q.transpose(1, 2)[:, None].expand(-1, n, -1, -1), 2,
                            which[..., None].expand(-1, -1, -1, d))  # [E, n, P, d]: row `which` of Q^T
    noise = rng.normal((n, P, d), "testbed", split, "noise").to(device)
    return cfg.tb_signal * coef[..., None] * patterns + cfg.tb_noise * noise, y


def phi(t: torch.Tensor, beta: float) -> torch.Tensor:
    return F.softplus(beta * t) / beta


def layer1(p: dict, X: torch.Tensor, cfg: APConfig, backbone: str) -> torch.Tensor:
    """h1 [E, n, P, 2d] (mixed over tokens for the global backbone), before any layer-1 prompt."""
    a = X @ p["tb.Q"][:, None]  # [E, n, P, d]: the projection of each token on each pattern
    h1 = phi(torch.cat([a, -a], -1) - cfg.tb_tau, cfg.tb_sharp)
    return h1.mean(2, keepdim=True).expand_as(h1) if backbone == "global" else h1


def forward(p: dict, X: torch.Tensor, cfg: APConfig, backbone: str, acts: list | None = None) -> torch.Tensor:
    """X [E, n, P, d] -> logits [E, n]. p holds tb.Q, the head (w, b) and the prompts vp [E, P, d] / ap1
    [E, P, 2d] when present. acts: if a list, h1 and h2 are appended."""
    if "vp" in p:
        X = X + p["vp"][:, None]
    h1 = layer1(p, X, cfg, backbone)
    if "ap1" in p:
        h1 = h1 + p["ap1"][:, None]
    d = cfg.tb_dim
    h2 = phi(h1[..., :d], cfg.tb_sharp) + phi(h1[..., d:], cfg.tb_sharp)  # [E, n, P, d]
    if acts is not None:
        acts += [h1, h2]
    return (h2.mean(2) * p["w"][:, None]).sum(-1) + p["b"]  # b [E, 1]


def reference_forward(p: dict, X: torch.Tensor, cfg: APConfig, backbone: str, e: int) -> torch.Tensor:
    """Model e, one sample and one token at a time (the per-example reference of `forward`): logits [n]."""
    Q, d, out = p["tb.Q"][e], cfg.tb_dim, []
    for x in X[e]:  # [P, d]
        x = x + p["vp"][e] if "vp" in p else x
        h1 = torch.stack([phi(torch.cat([Q.T @ t, -(Q.T @ t)]) - cfg.tb_tau, cfg.tb_sharp) for t in x])  # [P, 2d]
        h1 = h1.mean(0).repeat(len(x), 1) if backbone == "global" else h1
        h1 = h1 + p["ap1"][e] if "ap1" in p else h1
        z = torch.stack([phi(h[:d], cfg.tb_sharp) + phi(h[d:], cfg.tb_sharp) for h in h1]).mean(0)
        out.append(z @ p["w"][e] + p["b"][e, 0])
    return torch.stack(out)


def global_share(h: torch.Tensor) -> torch.Tensor:
    """G = ||mean over tokens||^2 / mean over tokens ||h_p||^2, averaged over samples: h [E, n, P, D] -> [E]."""
    return ((h.mean(2) ** 2).sum(-1) / (h**2).sum(-1).mean(-1).clamp_min(1e-12)).mean(-1)


def arm_weights(p: dict, arm: str) -> dict[str, torch.Tensor]:
    """The frozen backbone with arm's trained head and prompt."""
    prefix = f"{arm}/"
    return {"tb.Q": p["tb.Q"], **{k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}}


def training(cfgs: Sequence[APConfig], rng: EnsembleRNG, device) -> Training:
    cfg, E = cfgs[0], len(cfgs)
    P, d = cfg.tb_tokens, cfg.tb_dim
    X, y = sample(rng, cfg, cfg.tb_n, "train", device)
    Xt, yt = sample(rng, cfg, cfg.tb_test, "test", device)
    w0 = 0.1 * rng.normal((d,), "testbed", "head init").to(device) / d**0.5
    params = {"tb.Q": rng.orthogonal(d, "testbed", "patterns").to(device)}
    for arm in ARMS:
        params.update({f"{arm}/w": w0.clone(), f"{arm}/b": torch.zeros(E, 1, device=device)})
        method = arm.split("_")[1]
        if method == "vp":
            params[f"{arm}/vp"] = torch.zeros(E, P, d, device=device)
        if method == "ap1":
            params[f"{arm}/ap1"] = torch.zeros(E, P, 2 * d, device=device)
    trainable = [k for k in params if "/" in k]

    def loss_fn(p, step):
        out = {f"loss_{arm}": logistic(forward(arm_weights(p, arm), X, cfg, arm.split("_")[0]), y) for arm in ARMS}
        return {"loss": sum(out.values()), **out}

    def grade(res) -> Graded:
        metrics: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for arm in ARMS:
                backbone = arm.split("_")[0]
                q = arm_weights(res.params, arm)
                metrics[f"tb_test_acc_{arm}"] = 1.0 - sign_error(forward(q, Xt, cfg, backbone), yt)
                metrics[f"tb_train_acc_{arm}"] = 1.0 - sign_error(forward(q, X, cfg, backbone), y)
            for backbone in BACKBONES:  # how global each layer's features are, on the test inputs (spec 3.4)
                acts: list = []
                forward(arm_weights(res.params, f"{backbone}_linear"), Xt[:, :500], cfg, backbone, acts)
                metrics[f"tb_global_1_{backbone}"] = global_share(acts[0])
                metrics[f"tb_global_2_{backbone}"] = global_share(acts[1])
        return Graded(metrics)

    return Training(params, trainable, loss_fn, torch.full((E,), cfg.tb_lr, device=device), cfg.tb_steps, grade,
                    what=f"Adam steps ({len(ARMS)} testbed arms, n = {cfg.tb_n})", optimizer=AdamW(0.0),
                    curve_points=cfg.curve_points)
