"""Two small backbones, ensemble-first (every weight [E, ...]), with an activation prompt (AP) at any layer.

Layers (spec 3.2): layer 0 is the input image, layer l >= 1 the output of the l-th stage:
    CNN:  stem = ReLU(BN(conv3x3(x)))  (layer 1),  block l: h = ReLU(h + BN(conv3x3(h)))  (layers 2..depth+1),
          mean pool -> linear head. Maps stay 8x8, so the receptive field grows by 2 pixels a layer and the
          features become global only deep in the network.
    ViT:  patches -> linear + pos, CLS prepended; block l: h += MHSA(LN1(h)); h += MLP(LN2(h))  (layers 1..depth),
          LN(CLS) -> linear head. Attention mixes every token from block 1 on.
Prompts live in the same dict as the weights:
    act.{l}    delta with the activation's shape at layer l, shared by all inputs   z_l <- z_l + delta   (AP; l=0: VP)
    acts.{l}   a channel (CNN) / token-shared (ViT) delta, broadcast over positions
    normap.{l} a channel / token-shared delta added right after block l's norm (BN / LN1): equals tuning its bias
BatchNorm uses batch statistics in pre-training and the recorded population statistics afterwards (spec: the
backbone is frozen in eval mode).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from theorylab.core import nn
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.activation_prompt.config import APConfig

EPS = 1e-5


def n_layers(cfg: APConfig) -> int:
    """Insertion points after the input: CNN stem + blocks, ViT blocks."""
    return cfg.depth + 1 if cfg.arch == "cnn" else cfg.depth


def act_shape(cfg: APConfig, layer: int) -> tuple[int, ...]:
    if layer == 0:
        return (1, 8, 8)
    if cfg.arch == "cnn":
        return (cfg.channels, 8, 8)
    return (1 + (8 // cfg.patch) ** 2, cfg.width)


def norm_names(cfg: APConfig) -> list[str]:
    if cfg.arch == "cnn":
        return ["stem.bn"] + [f"blocks.{l}.bn" for l in range(cfg.depth)]
    return [f"blocks.{l}.ln{i}" for l in range(cfg.depth) for i in (1, 2)] + ["norm"]


def init_params(cfg: APConfig, rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    E = rng.E
    ones = lambda d: torch.ones(E, d, device=device)  # noqa: E731
    zeros = lambda *s: torch.zeros(E, *s, device=device)  # noqa: E731
    if cfg.arch == "cnn":
        C = cfg.channels
        p = {"stem.w": rng.normal((C, 1, 3, 3), "init", "stem.w").to(device) / 3.0}
        for name in norm_names(cfg):
            p.update({f"{name}.w": ones(C), f"{name}.b": zeros(C), f"{name}.mean": zeros(C), f"{name}.var": ones(C)})
        for l in range(cfg.depth):
            p[f"blocks.{l}.conv.w"] = rng.normal((C, C, 3, 3), "init", f"blocks.{l}.conv.w").to(device) / math.sqrt(9 * C)
        D = C
    else:
        D, n = cfg.width, (8 // cfg.patch) ** 2
        p = {**nn.init_linear(rng, "patch", cfg.patch**2, D), "pos": 0.02 * rng.normal((n, D), "init", "pos"),
             "cls": 0.02 * rng.normal((1, D), "init", "cls")}
        for l in range(cfg.depth):
            b = f"blocks.{l}."
            p.update({**nn.init_layer_norm(rng, b + "ln1", D), **nn.init_attention(rng, b + "attn", D, cfg.heads),
                      **nn.init_layer_norm(rng, b + "ln2", D), **nn.init_mlp(rng, b + "mlp", D, 2 * D)})
        p.update(nn.init_layer_norm(rng, "norm", D))
        p = {k: v.to(device) for k, v in p.items()}
    p.update({k: v.to(device) for k, v in nn.init_linear(rng, "head", D, 10).items()})
    p.update({"thead.w": zeros(D, 10), "thead.b": zeros(10)})  # the target head starts at 0 for every method
    return p


def conv3x3(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [E, B, Ci, H, W], w [E, Co, Ci, 3, 3] -> [E, B, Co, H, W]: one grouped convolution for all E models."""
    E, B, Ci, H, W = x.shape
    y = F.conv2d(x.transpose(0, 1).reshape(B, E * Ci, H, W), w.reshape(-1, Ci, 3, 3), padding=1, groups=E)
    return y.reshape(B, E, -1, H, W).transpose(0, 1)


def batch_norm(x: torch.Tensor, p: dict, name: str, record: dict | None) -> torch.Tensor:
    """x [E, B, C, H, W]. record is None: the stored population statistics (eval mode); else batch statistics,
    written into record[name] = (mean [E, C], var [E, C])."""
    if record is None:
        mean, var = p[f"{name}.mean"], p[f"{name}.var"]
    else:
        mean, var = x.mean((1, 3, 4)), x.var((1, 3, 4), unbiased=False)
        record[name] = (mean.detach(), var.detach())
    c = lambda t: t[:, None, :, None, None]  # noqa: E731
    return (x - c(mean)) / torch.sqrt(c(var) + EPS) * c(p[f"{name}.w"]) + c(p[f"{name}.b"])


def _prompt(h: torch.Tensor, p: dict, layer: int, arch: str) -> torch.Tensor:
    if f"act.{layer}" in p:
        h = h + p[f"act.{layer}"][:, None]  # [E, 1, *activation]                      z_l + delta (spec 3.2)
    if f"acts.{layer}" in p:
        s = p[f"acts.{layer}"]
        h = h + (s[:, None, :, None, None] if arch == "cnn" else s[:, None, None, :])
    return h


def _norm_prompt(u: torch.Tensor, p: dict, block: int, arch: str) -> torch.Tensor:
    s = p.get(f"normap.{block}")
    if s is None:
        return u
    return u + (s[:, None, :, None, None] if arch == "cnn" else s[:, None, None, :])


def forward(p: dict, X: torch.Tensor, cfg: APConfig, head: str = "thead", record: dict | None = None,
            acts: list | None = None, start: int = 0) -> torch.Tensor:
    """X [E, B, 1, 8, 8] -> logits [E, B, 10]. acts: if a list, every layer's activation is appended.
    start: X is instead the (prompt-free) activation at layer `start` (as `acts` holds it), its prompt is added and
    the layers after it run: the same numbers as the whole forward when nothing before layer `start` differs."""
    keep = (lambda h: acts.append(h)) if acts is not None else (lambda h: None)  # noqa: E731
    h = _prompt(X, p, start, cfg.arch)  # layer 0: VP
    if cfg.arch == "cnn":
        if start == 0:
            h = _prompt(torch.relu(batch_norm(conv3x3(h, p["stem.w"]), p, "stem.bn", record)), p, 1, "cnn")
            keep(h)
        for l in range(max(start - 1, 0), cfg.depth):
            u = _norm_prompt(batch_norm(conv3x3(h, p[f"blocks.{l}.conv.w"]), p, f"blocks.{l}.bn", record), p, l, "cnn")
            h = _prompt(torch.relu(h + u), p, l + 2, "cnn")  # [E, B, C, 8, 8]
            keep(h)
        z = h.mean((-2, -1))  # [E, B, C]
    else:
        if start == 0:
            t = nn.linear(nn.patchify(h, cfg.patch), p, "patch") + p["pos"][:, None]  # [E, B, N, D]
            h = torch.cat([p["cls"][:, None].expand(-1, t.shape[1], -1, -1), t], dim=2)  # [E, B, 1+N, D]
        for l in range(start, cfg.depth):
            b = f"blocks.{l}."
            h = h + nn.attention(_norm_prompt(nn.layer_norm(h, p, b + "ln1"), p, l, "vit"), p, b + "attn", cfg.heads)
            h = _prompt(h + nn.mlp(nn.layer_norm(h, p, b + "ln2"), p, b + "mlp"), p, l + 1, "vit")
            keep(h)
        z = nn.layer_norm(h[:, :, 0], p, "norm", data_dims=1)  # CLS [E, B, D]
    return z @ p[f"{head}.w"] + p[f"{head}.b"][:, None]


def reference_forward(p: dict, X: torch.Tensor, cfg: APConfig, e: int) -> torch.Tensor:
    """Model e alone with torch.nn modules (eval-mode BN / LayerNorm / MultiheadAttention), prompts included."""
    q = {k: v[e] for k, v in p.items()}
    x = X[e]
    if "act.0" in q:
        x = x + q["act.0"]
    if cfg.arch == "cnn":
        def bn(u, name):
            return F.batch_norm(u, q[f"{name}.mean"], q[f"{name}.var"], q[f"{name}.w"], q[f"{name}.b"], False, 0.0, EPS)

        def add(h, layer):
            h = h + q[f"act.{layer}"] if f"act.{layer}" in q else h
            return h + q[f"acts.{layer}"][None, :, None, None] if f"acts.{layer}" in q else h

        h = add(torch.relu(bn(F.conv2d(x, q["stem.w"], padding=1), "stem.bn")), 1)
        for l in range(cfg.depth):
            u = bn(F.conv2d(h, q[f"blocks.{l}.conv.w"], padding=1), f"blocks.{l}.bn")
            u = u + q[f"normap.{l}"][None, :, None, None] if f"normap.{l}" in q else u
            h = add(torch.relu(h + u), l + 2)
        z = h.mean((-2, -1))
    else:
        D = cfg.width
        unfold = torch.nn.Unfold(cfg.patch, stride=cfg.patch)
        t = unfold(x).transpose(1, 2) @ q["patch.w"] + q["patch.b"] + q["pos"]
        h = torch.cat([q["cls"].expand(len(x), 1, D), t], dim=1)
        for l in range(cfg.depth):
            b = f"blocks.{l}."
            mha = torch.nn.MultiheadAttention(D, cfg.heads, batch_first=True)
            with torch.no_grad():
                mha.in_proj_weight.copy_(q[b + "attn.qkv.w"].T)
                mha.in_proj_bias.copy_(q[b + "attn.qkv.b"])
                mha.out_proj.weight.copy_(q[b + "attn.proj.w"].T)
                mha.out_proj.bias.copy_(q[b + "attn.proj.b"])
            a = F.layer_norm(h, (D,), q[b + "ln1.w"], q[b + "ln1.b"], EPS)
            a = a + q[f"normap.{l}"] if f"normap.{l}" in q else a
            h = h + mha(a, a, a, need_weights=False)[0]
            m = F.layer_norm(h, (D,), q[b + "ln2.w"], q[b + "ln2.b"], EPS)
            h = h + F.gelu(m @ q[b + "mlp.fc1.w"] + q[b + "mlp.fc1.b"]) @ q[b + "mlp.fc2.w"] + q[b + "mlp.fc2.b"]
            h = h + q[f"act.{l + 1}"] if f"act.{l + 1}" in q else h
            h = h + q[f"acts.{l + 1}"] if f"acts.{l + 1}" in q else h
        z = F.layer_norm(h[:, 0], (D,), q["norm.w"], q["norm.b"], EPS)
    return z @ q["thead.w"] + q["thead.b"]


def global_share(h: torch.Tensor, arch: str) -> torch.Tensor:
    """G_l = ||mean over positions||^2 / mean over positions ||a_pos||^2, averaged over images (spec 3.4): [E]."""
    a = h.flatten(-2).transpose(-1, -2) if arch == "cnn" else h  # [E, B, positions, features]
    return ((a.mean(-2) ** 2).sum(-1) / (a**2).sum(-1).mean(-1).clamp_min(1e-12)).mean(-1)


def check_forward(cfgs, params: dict[str, torch.Tensor], device) -> float:
    """max |forward - reference_forward| per model on random images, with random prompts at every layer, a shared
    prompt at every layer, one after the middle norm, and a random head (conformance)."""
    cfg, E = cfgs[0], len(cfgs)
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: (0.1 * torch.randn(*s, generator=g)).to(device)  # noqa: E731
    feat = cfg.channels if cfg.arch == "cnn" else cfg.width
    p = {k: v for k, v in params.items() if not k.startswith("thead")}
    p.update({"thead.w": rnd(E, feat, 10), "thead.b": rnd(E, 10), f"normap.{cfg.depth // 2}": rnd(E, feat)})
    for layer in range(n_layers(cfg) + 1):
        p[f"act.{layer}"] = rnd(E, *act_shape(cfg, layer))
        if layer:
            p[f"acts.{layer}"] = rnd(E, feat)
    X = torch.rand(E, 5, 1, 8, 8, generator=g).to(device)
    with torch.no_grad():
        got = forward(p, X, cfg)
        return max(float((got[e] - reference_forward(p, X, cfg, e)).abs().max()) for e in range(E))
