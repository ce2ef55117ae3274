"""The ViT written one model and one image at a time with torch.nn modules (nn.Linear, nn.LayerNorm,
nn.MultiheadAttention, nn.GELU, F.unfold), loaded from the ensemble's weights: the conformance test's
reference for model.logits. The key bias is loaded as stored (softmax ignores it)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from theorylab.studies.colored_digits.config import ColoredDigitsConfig


def _linear(w: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    """A stored weight [in, out] (used as x @ w) as nn.Linear (weight [out, in])."""
    lin = nn.Linear(*w.shape, bias=b is not None)
    lin.weight.data = w.T.clone()
    if b is not None:
        lin.bias.data = b.clone()
    return lin


def _norm(w: torch.Tensor, b: torch.Tensor) -> nn.LayerNorm:
    ln = nn.LayerNorm(w.shape[0])
    ln.weight.data, ln.bias.data = w.clone(), b.clone()
    return ln


@torch.no_grad()
def reference_logits(p: dict[str, torch.Tensor], X: torch.Tensor, cfg: ColoredDigitsConfig) -> torch.Tensor:
    """Parity logits [E, B, 2] for weights p [E, ...] and images X [E, B, 2, 8, 8], model by model, image by image."""
    E, B = X.shape[:2]
    out = torch.empty(E, B, 2, dtype=X.dtype)
    for e in range(E):
        w = {k: v[e] for k, v in p.items()}
        patch, pos = _linear(w["patch.w"], w["patch.b"]), w["pos"]
        blocks = []
        for l in range(cfg.depth):
            b = f"blocks.{l}."
            att = nn.MultiheadAttention(cfg.width, cfg.heads, batch_first=True)
            att.in_proj_weight.data = w[b + "attn.qkv.w"].T.clone()
            att.in_proj_bias.data = w[b + "attn.qkv.b"].clone()
            att.out_proj.weight.data = w[b + "attn.proj.w"].T.clone()
            att.out_proj.bias.data = w[b + "attn.proj.b"].clone()
            mlp = nn.Sequential(_linear(w[b + "mlp.fc1.w"], w[b + "mlp.fc1.b"]), nn.GELU(),
                                _linear(w[b + "mlp.fc2.w"], w[b + "mlp.fc2.b"]))
            blocks.append((_norm(w[b + "ln1.w"], w[b + "ln1.b"]), att, _norm(w[b + "ln2.w"], w[b + "ln2.b"]), mlp))
        norm, head = _norm(w["norm.w"], w["norm.b"]), _linear(w["head.w"], None)
        for i in range(B):
            tokens = F.unfold(X[e, i][None], cfg.patch, stride=cfg.patch)[0].T  # [N, 2 p p], row-major patches
            h = patch(tokens) + pos
            for ln1, att, ln2, mlp in blocks:
                x = ln1(h)[None]
                h = h + att(x, x, x, need_weights=False)[0][0]
                h = h + mlp(ln2(h))
            out[e, i] = head(norm(h.mean(0)))
    return out


def check_forward(cfgs: Sequence[ColoredDigitsConfig], params: dict[str, torch.Tensor], device) -> float:
    """max |model.logits - reference_logits| on 2 test images per model, for the fine-tuned body of task p_T1
    (the frozen head from Psi0)."""
    from theorylab.shared.colored_digits import task_data
    from theorylab.studies.colored_digits.model import logits
    from theorylab.studies.colored_digits.train import task_key

    cfg = cfgs[0]
    body = {k.removeprefix(task_key(cfg.p_T1)): v for k, v in params.items() if k.startswith(task_key(cfg.p_T1))}
    head = params["psi0/head.w"]
    X = task_data(cfgs, "test", cfg.p_T1, device).X[:, :2]
    ours = logits(body, head, X, cfg.patch, cfg.heads)
    ref = reference_logits({k: v.cpu() for k, v in {**body, "head.w": head}.items()}, X.cpu(), cfg)
    return float((ours.cpu() - ref).abs().max())
