"""Claims of the activation-prompt paper on the kit (core.claims, core.contract).

The digit claims read the CNN and the ViT trained through the store (same seeds, each its own config with arch
set); they are figure claims: the paper's statements here are empirical ([R] qualitative, [M] for the layer
preference). Two things are not claims, on purpose:
- the AP-norm identity (spec 3.3) is exact algebra: a unit test (tests/studies/activation_prompt);
- the backward-memory saving of AP (spec 3.5) is a function of the shapes alone (costs.py): a unit test over every
  insertion depth, and one reported measurement (fig_ap_beats_vp's numbers), never "5/5 seeds".
The CNN's deepest insertion point (the last block's output, right before the global average pool) is a head bias:
mean_pool(h + delta) = mean_pool(h) + mean(delta), so logits = W mean_pool(h) + (W mean(delta) + b): AP there is
linear probing with the head's bias reparametrised (unit test). It is trained and drawn, but never chosen as "the
AP layer" (ap_layers). The ViT's last block feeds a LayerNorm, which is not additive, so all its blocks count.

The theory testbed (spec 3.4: its own data model and local/global backbones, testbed.py) has its claims in
testbed_claims.py, appended to CLAIMS.

"Beats" means a larger test accuracy on the same seed (no margin; the interval over seeds is printed).
"""
from __future__ import annotations

import numpy as np

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import Above, AtLeast, Criterion, Measurement
from theorylab.studies.activation_prompt.config import APConfig
from theorylab.studies.activation_prompt.model import n_layers
from theorylab.studies.activation_prompt.testbed_claims import TESTBED_CLAIMS


def _runs(ctx: ClaimContext) -> dict[str, tuple[list, list]]:
    def compute():
        out = {}
        for arch in ("cnn", "vit"):
            cfgs = ctx.configs(arch=arch, part="digits")
            _, cells = ctx.trained(cfgs)
            out[arch] = (cfgs, [c.metrics for c in cells])
        return out

    return ctx.memo("ap-runs", compute)


def head_bias_layer(cfg: APConfig) -> int | None:
    """The insertion point where an additive prompt is exactly a bias of the linear head (CNN: the last block's
    output, mean-pooled straight into the head); None for the ViT (its last block feeds a LayerNorm)."""
    return n_layers(cfg) if cfg.arch == "cnn" else None


def ap_layers(cfg: APConfig) -> list[int]:
    """The layers AP is chosen from: every insertion point after the input, less the head-bias one."""
    return [l for l in range(1, n_layers(cfg) + 1) if l != head_bias_layer(cfg)]


def best_layer(m: dict, cfg: APConfig, prefix: str = "ap") -> int:
    """The AP layer with the best validation accuracy among ap_layers (ties: the shallowest)."""
    layers = ap_layers(cfg)
    return layers[int(np.argmax([m[f"val_{prefix}{l}"] for l in layers]))]


def _costs(ctx: ClaimContext) -> dict:
    """Each backbone's per-method costs, measured once on seed 0's backbone (the bytes depend on shapes only)."""
    from theorylab.studies.activation_prompt.costs import method_costs

    def compute():
        out = {}
        for arch in ("cnn", "vit"):
            cfgs = ctx.configs(arch=arch, part="digits")
            params, _ = ctx.trained(cfgs[:1])
            out[arch] = method_costs(cfgs[0], params)
        return out

    return ctx.memo("ap:costs", compute)


def measure_ap_beats_vp(ctx: ClaimContext, arm: str) -> Measurement:
    runs = _runs(ctx)
    gaps, shared_gaps, nums = [], [], {}
    for i in range(len(runs["cnn"][0])):
        gap_i, sgap_i = [], []
        for arch, (cfgs, ms) in runs.items():
            m = ms[i]
            l, ls = best_layer(m, cfgs[0]), best_layer(m, cfgs[0], "aps")
            gap_i.append(m[f"test_ap{l}"] - m["test_vp"])
            sgap_i.append(m[f"test_aps{ls}"] - m["test_vp"])
            nums.setdefault(arch, []).append({"vp": m["test_vp"], "ap": m[f"test_ap{l}"], "ap_layer": l,
                                              "aps": m[f"test_aps{ls}"], "aps_layer": ls, "linear": m["test_linear"]})
        gaps.append(min(gap_i))
        shared_gaps.append(min(sgap_i))
    mean = {a: {k: float(np.mean([r[k] for r in v])) for k in ("vp", "ap", "aps", "linear")} for a, v in nums.items()}
    cfg_c, ms_c = runs["cnn"][0][0], runs["cnn"][1]
    hb = head_bias_layer(cfg_c)
    hb_acc = float(np.mean([m[f"test_ap{hb}"] for m in ms_c]))
    costs = _costs(ctx)
    cnn = costs["cnn"]
    bytes_by_layer = {a: {"depth": [l / n_layers(runs[a][0][0]) for l in range(n_layers(runs[a][0][0]) + 1)],
                          "saved_bytes": [c["vp" if l == 0 else f"ap{l}"]["saved_bytes"]
                                          for l in range(n_layers(runs[a][0][0]) + 1)],
                          "head_bias_layer": head_bias_layer(runs[a][0][0])} for a, c in costs.items()}
    deepest = max(ap_layers(cfg_c))
    return Measurement(
        {"gap": gaps, "shared_gap": shared_gaps},
        "test accuracy VP / AP / shared AP / linear probe: " + "; ".join(
            f"{a} {v['vp']:.3f} / {v['ap']:.3f} / {v['aps']:.3f} / {v['linear']:.3f}" for a, v in mean.items())
        + f"; CNN AP at layer {hb} (a head bias, never chosen) {hb_acc:.3f} vs linear probe {mean['cnn']['linear']:.3f}"
        + f"; backward bytes (one deterministic measurement, not graded) CNN VP {cnn['vp']['saved_bytes']:,}, "
          f"AP{deepest} {cnn[f'ap{deepest}']['saved_bytes']:,} "
          f"({cnn[f'ap{deepest}']['saved_bytes'] / cnn['vp']['saved_bytes']:.3f}x)",
        {"by_arch": nums, "head_bias_layer_acc": {"cnn": hb_acc}, "costs_one_measurement": costs},
        {"accuracy_by_layer": _layer_curves(runs), "backward_bytes_by_layer": bytes_by_layer})


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
                     "linear": float(np.mean([m["test_linear"] for m in ms])),
                     "head_bias_layer": head_bias_layer(cfgs[0])}
    return out


def measure_best_layer(ctx: ClaimContext, arm: str) -> Measurement:
    runs = _runs(ctx)
    (cc, cm), (vc, vm) = runs["cnn"], runs["vit"]
    Lc, Lv = n_layers(cc[0]), n_layers(vc[0])
    depth_c = [best_layer(m, cc[0]) / Lc for m in cm]
    depth_v = [best_layer(m, vc[0]) / Lv for m in vm]
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


def measure_ap_vs_norm(ctx: ClaimContext, arm: str) -> Measurement:
    runs = _runs(ctx)
    gaps = []
    for i in range(len(runs["cnn"][0])):
        gaps.append(min(ms[i][f"test_ap{best_layer(ms[i], cfgs[0])}"] - ms[i]["test_norm"]
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
    Claim("fig_ap_vs_norm", "spec 3.5 [M]", "figure", "AP is at least as accurate as norm tuning", seeds=5,
          measure=measure_ap_vs_norm,
          criterion=Criterion(AtLeast("gap", 0.0, "smaller over the two backbones of AP's test accuracy (chosen layer) "
                                      "minus norm tuning's"))),
    *TESTBED_CLAIMS,
]
