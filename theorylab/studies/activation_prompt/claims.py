"""Claims of the activation-prompt paper on the kit (core.claims, core.contract). Every claim reads the CNN and the
ViT trained through the store (same seeds, each its own config with arch set); all are figure claims: the paper's
statements here are empirical ([R] qualitative, [M] for the layer preference). The AP-norm identity (spec 3.3) is exact
algebra, so it is a unit test (tests/studies/activation_prompt), not a claim.

"Beats" means a larger test accuracy on the same seed (no margin; the interval over seeds is printed).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import Above, AtLeast, Below, Criterion, Measurement
from theorylab.studies.activation_prompt.model import n_layers


def _runs(ctx: ClaimContext) -> dict[str, tuple[list, list]]:
    def compute():
        out = {}
        for arch in ("cnn", "vit"):
            cfgs = ctx.configs(arch=arch)
            _, cells = ctx.trained(cfgs)
            out[arch] = (cfgs, [c.metrics for c in cells])
        return out

    return ctx.memo("ap-runs", compute)


def best_layer(m: dict, L: int, prefix: str = "ap") -> int:
    """The AP layer with the best validation accuracy (ties: the shallowest)."""
    vals = [m[f"val_{prefix}{l}"] for l in range(1, L + 1)]
    return int(np.argmax(vals)) + 1


def measure_ap_beats_vp(ctx: ClaimContext, arm: str) -> Measurement:
    runs = _runs(ctx)
    gaps, shared_gaps, nums = [], [], {}
    for i in range(len(runs["cnn"][0])):
        gap_i, sgap_i = [], []
        for arch, (cfgs, ms) in runs.items():
            m, L = ms[i], n_layers(cfgs[0])
            l, ls = best_layer(m, L), best_layer(m, L, "aps")
            gap_i.append(m[f"test_ap{l}"] - m["test_vp"])
            sgap_i.append(m[f"test_aps{ls}"] - m["test_vp"])
            nums.setdefault(arch, []).append({"vp": m["test_vp"], "ap": m[f"test_ap{l}"], "ap_layer": l,
                                              "aps": m[f"test_aps{ls}"], "aps_layer": ls, "linear": m["test_linear"]})
        gaps.append(min(gap_i))
        shared_gaps.append(min(sgap_i))
    mean = {a: {k: float(np.mean([r[k] for r in v])) for k in ("vp", "ap", "aps", "linear")} for a, v in nums.items()}
    return Measurement({"gap": gaps, "shared_gap": shared_gaps},
                       "test accuracy VP / AP / shared AP / linear probe: " + "; ".join(
                           f"{a} {v['vp']:.3f} / {v['ap']:.3f} / {v['aps']:.3f} / {v['linear']:.3f}"
                           for a, v in mean.items()),
                       {"by_arch": nums}, {"accuracy_by_layer": _layer_curves(runs)})


def _layer_curves(runs) -> dict:
    out = {}
    for arch, (cfgs, ms) in runs.items():
        L = n_layers(cfgs[0])
        out[arch] = {"depth": [l / L for l in range(0, L + 1)],
                     "ap": [float(np.mean([m["test_vp" if l == 0 else f"test_ap{l}"] for m in ms])) for l in range(L + 1)],
                     "aps": [float(np.mean([m[f"test_aps{l}"] for m in ms])) for l in range(1, L + 1)],
                     "ap_std": [float(np.std([m["test_vp" if l == 0 else f"test_ap{l}"] for m in ms]))
                                for l in range(L + 1)],
                     "aps_std": [float(np.std([m[f"test_aps{l}"] for m in ms])) for l in range(1, L + 1)],
                     "norm": float(np.mean([m["test_norm"] for m in ms])),
                     "full": float(np.mean([m["test_full"] for m in ms])),
                     "linear": float(np.mean([m["test_linear"] for m in ms]))}
    return out


def measure_best_layer(ctx: ClaimContext, arm: str) -> Measurement:
    runs = _runs(ctx)
    (cc, cm), (vc, vm) = runs["cnn"], runs["vit"]
    Lc, Lv = n_layers(cc[0]), n_layers(vc[0])
    depth_c = [best_layer(m, Lc) / Lc for m in cm]
    depth_v = [best_layer(m, Lv) / Lv for m in vm]
    return Measurement({"depth_lead": [c - v for c, v in zip(depth_c, depth_v)]},
                       f"best relative depth CNN {np.mean(depth_c):.2f}, ViT {np.mean(depth_v):.2f}",
                       {"cnn": depth_c, "vit": depth_v}, {"accuracy_by_layer": _layer_curves(runs)})


def measure_global_features(ctx: ClaimContext, arm: str) -> Measurement:
    runs = _runs(ctx)
    (cc, cm), (vc, vm) = runs["cnn"], runs["vit"]
    Lc, Lv = n_layers(cc[0]), n_layers(vc[0])
    curves = {"cnn": [float(np.mean([m[f"global_{l}"] for m in cm])) for l in range(1, Lc + 1)],
              "vit": [float(np.mean([m[f"global_{l}"] for m in vm])) for l in range(1, Lv + 1)]}
    return Measurement(
        {"vit_lead": [v["global_1"] - c["global_1"] for c, v in zip(cm, vm)],
         "cnn_rise": [c[f"global_{Lc}"] - c["global_1"] for c in cm]},
        f"G_l by layer: CNN {', '.join(f'{x:.2f}' for x in curves['cnn'])}; ViT "
        f"{', '.join(f'{x:.2f}' for x in curves['vit'])}", curves, {"global_features": {**curves, "std": {
            "cnn": [float(np.std([m[f"global_{l}"] for m in cm])) for l in range(1, Lc + 1)],
            "vit": [float(np.std([m[f"global_{l}"] for m in vm])) for l in range(1, Lv + 1)]}}})


def _backward_costs(ctx: ClaimContext, arch: str) -> dict:
    """Per method on seed 0's backbone: trainable parameters, bytes autograd saves for backward, ms per step and
    inference images/s. The bytes depend only on the shapes and the prompt's layer (not on the weights), so one
    backbone measures them for every seed; times are this machine's."""
    from theorylab.studies.activation_prompt.model import forward
    from theorylab.studies.activation_prompt.train import method_params

    def compute():
        cfgs = ctx.configs(arch=arch)
        params, _ = ctx.trained(cfgs[:1])
        cfg = cfgs[0]
        dev = params["head.w"].device
        backbone = dict(params)
        backbone.update({"thead.w": torch.zeros(1, *params["head.w"].shape[1:], device=dev),
                         "thead.b": torch.zeros(1, 10, device=dev)})
        X = torch.rand(1, cfg.B, 1, 8, 8, device=dev)
        y = torch.zeros(1, cfg.B, dtype=torch.long, device=dev)
        rows = {}
        for method in ["linear", "vp", *[f"ap{l}" for l in range(1, n_layers(cfg) + 1)], "norm", "full"]:
            p, trainable = method_params(cfg, method, backbone)
            p = {k: (v.detach().clone().requires_grad_(k in trainable)) for k, v in p.items()}
            saved = [0]

            def pack(t, saved=saved):
                saved[0] += t.numel() * t.element_size()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                torch.nn.functional.cross_entropy(forward(p, X, cfg)[0], y[0])
            t0 = time.perf_counter()
            for _ in range(5):
                loss = torch.nn.functional.cross_entropy(forward(p, X, cfg)[0], y[0])
                torch.autograd.grad(loss, [p[k] for k in trainable])
            step_ms = (time.perf_counter() - t0) / 5 * 1e3
            with torch.no_grad():
                big = X[:, :1].expand(1, 256, 1, 8, 8).contiguous()
                t0 = time.perf_counter()
                forward(p, big, cfg)
                thr = 256 / (time.perf_counter() - t0)
            rows[method] = {"params": int(sum(p[k].numel() for k in trainable)), "saved_bytes": saved[0],
                            "ms_per_step": step_ms, "images_per_s": thr}
        return rows
    return ctx.memo(f"ap:costs:{arch}", compute)


def measure_efficiency(ctx: ClaimContext, arm: str) -> Measurement:
    """Each seed's own AP (at the CNN layer its validation images chose) against VP: backward bytes. The seeds differ
    only through the chosen layer (bytes are a function of the shapes); the deepest layer's ratio is reported."""
    cnn = _backward_costs(ctx, "cnn")
    vit = _backward_costs(ctx, "vit")
    cfgs, ms = _runs(ctx)["cnn"]
    L = n_layers(cfgs[0])
    layers = [best_layer(m, L) for m in ms]
    ratio = [cnn[f"ap{l}"]["saved_bytes"] / cnn["vp"]["saved_bytes"] for l in layers]
    deepest = cnn[f"ap{L}"]["saved_bytes"] / cnn["vp"]["saved_bytes"]
    return Measurement(
        {"bytes_ratio": ratio},
        f"chosen CNN AP layer per seed {layers} of {L}; CNN saved bytes VP {cnn['vp']['saved_bytes']:,} vs AP{L} "
        f"{cnn[f'ap{L}']['saved_bytes']:,} (ratio {deepest:.3f}); ms/step VP {cnn['vp']['ms_per_step']:.1f} vs AP{L} "
        f"{cnn[f'ap{L}']['ms_per_step']:.1f} (this machine, not graded)",
        {"chosen_layer": layers, "deepest_ratio": deepest, "cnn": cnn, "vit": vit})


def measure_ap_vs_norm(ctx: ClaimContext, arm: str) -> Measurement:
    runs = _runs(ctx)
    gaps = []
    for i in range(len(runs["cnn"][0])):
        gaps.append(min(ms[i][f"test_ap{best_layer(ms[i], n_layers(cfgs[0]))}"] - ms[i]["test_norm"]
                        for cfgs, ms in runs.values()))
    return Measurement({"gap": gaps}, f"gap {np.mean(gaps):+.3f}")


CLAIMS = [
    Claim("fig_ap_beats_vp", "Sec. 5 / spec 3.5", "figure", "AP beats VP (also with no more parameters than VP)",
          seeds=5, measure=measure_ap_beats_vp,
          criterion=Criterion(Above("gap", 0.0, "smaller over the two backbones of AP's test accuracy (layer chosen on "
                                    "held-out target images) minus VP's"),
                              Above("shared_gap", 0.0, "the same for the shared prompt (fewer parameters than VP)"))),
    Claim("fig_best_layer", "Sec. 4 / spec 3.4 [M]", "figure", "the best AP layer is deeper in a CNN than in a ViT",
          seeds=5, measure=measure_best_layer,
          criterion=Criterion(Above("depth_lead", 0.0, "relative depth of the CNN's best AP layer (chosen on held-out "
                                    "target images) minus the ViT's"))),
    Claim("fig_global_features", "spec 3.4", "figure", "CNN features become global with depth, ViT's after block 1",
          seeds=5, measure=measure_global_features,
          criterion=Criterion(Above("vit_lead", 0.0, "global share G at the first layer, ViT minus CNN"),
                              Above("cnn_rise", 0.0, "the CNN's G at its last layer minus at its first"))),
    Claim("fig_ap_efficiency", "spec 3.5", "figure", "AP (at the CNN layer each seed chooses) needs less backward "
          "memory than VP; bytes depend only on shapes, so seeds differ only through the chosen layer",
          seeds=5, measure=measure_efficiency,
          criterion=Criterion(Below("bytes_ratio", 1.0, "bytes autograd saves for backward, CNN AP at the seed's chosen "
                                    "layer / VP"))),
    Claim("fig_ap_vs_norm", "spec 3.5 [M]", "figure", "AP is at least as accurate as norm tuning", seeds=5,
          measure=measure_ap_vs_norm,
          criterion=Criterion(AtLeast("gap", 0.0, "smaller over the two backbones of AP's test accuracy (chosen layer) "
                                      "minus norm tuning's"))),
]
