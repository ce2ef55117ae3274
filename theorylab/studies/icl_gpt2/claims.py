"""The ICL paper's multi-layer (GPT-2) experiments as `figure` claims on the kit (core.claims, core.contract), graded
per seed. Spec section 1.5: E1 (OOD error vs S1, GPT-2; slide Fig. 18), E2 (error vs alpha', GPT-2; slide Fig. 19),
E5 (the 3-layer model's attention and neurons; slide Figs. 12-17). E7 and E8 (magnitude vs random pruning, pruning vs
alpha'; slide Figs. 22-23) are the ONE-LAYER model's figures (the `icl` study tests them there): the two pruning claims
here run the same experiments on GPT-2's MLP neurons, an extension the paper does not report. All claims share one
trained ensemble (the seeds of the base config); S1, alpha', l_ts and pruning only change the test prompts or zero
neurons: evaluated, not retrained.

References and constants (core.contract's, declared once there):
- eps_hat: the trained model's own error on fresh prompts of its training tasks, >= 3/n_test (the rule of three).
- TOL = 3/n_test: "non-increasing" allows a rise of at most TOL between neighbours.
- attention "rises": a layer's trained same-pattern mass closes >= CLOSE_GAP of its untrained gap to 1.
- neurons "align": >= ALIGNED_SHARE of the large neurons (label-part norm >= the layer's median) lie within
  ALIGN_ANGLE of sign(a_i) q.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.config import ConfigError
from theorylab.core.contract import (ALIGN_ANGLE, ALIGNED_SHARE, CLOSE_GAP, O_EPS, Above, AtLeast, Criterion, Holds,
                                     Hypothesis, Measurement, Reference, short)
from theorylab.core.ensemble import rng_for
from theorylab.core.measures import first_crossing, gap_closed, r4, zero_count_bound
from theorylab.shared.icl_evaluation import id_world, ood_world, seen_world
from theorylab.studies.icl_gpt2.evaluate import error_vs_length, evaluate, pruned
from theorylab.studies.icl_gpt2.model import init_params, neuron_embeddings

S1_GRID = (0.5, 0.7, 0.9, 1.1, 1.3)  # spec E1
ALPHA_TEST_GRID = (0.8, 0.9, 1.0)  # spec E2
PRUNE_RATES = (0.1, 0.2, 0.3, 0.4, 0.5)
PRUNE_ALPHAS = (0.6, 0.8, 1.0)  # spec E8
WIDE_ANGLE = math.pi / 4  # reported beside ALIGN_ANGLE (the old criterion's angle), never graded


def _base(ctx: ClaimContext):
    cfgs = ctx.configs()
    params, cells = ctx.trained(cfgs)
    return cfgs, params, cells


ICL_TASK = Hypothesis("the base config trains the ICL task (task = 'icl')",
                      lambda ctx: None if ctx.configs()[0].task == "icl" else "the base config has task='cot'")


def _eps_hat(ctx: ClaimContext) -> torch.Tensor:
    cfgs, params, _ = _base(ctx)
    err = evaluate(params, cfgs, seen_world(cfgs, ctx.device), stream=("claim", "seen"))["error"]
    return err.clamp_min(zero_count_bound(cfgs[0].n_test))


EPS_HAT = Reference("eps_hat", "the trained model's own error on fresh prompts of its training tasks, >= 3/n_test",
                    _eps_hat)


def _lengths(cfg) -> list[int]:
    return sorted(set(range(2, cfg.l_ts + 1, 2)) | {cfg.l_ts})


def measure_ood_s1(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs, params, _ = _base(ctx)
    tol = zero_count_bound(cfgs[0].n_test)
    lengths = _lengths(cfgs[0])
    curves = ctx.memo("icl_gpt2:ood_vs_len", lambda: {
        S1: error_vs_length(params, cfgs, ood_world(cfgs, ctx.device, S1), lengths, stream=("claim", "s1"))
        for S1 in S1_GRID})
    final = torch.stack([curves[s][lengths[-1]] for s in S1_GRID])  # [S, E] at l_ts
    below = [i for i, s in enumerate(S1_GRID) if s < 1]
    above = [i for i, s in enumerate(S1_GRID) if s >= 1]
    return Measurement(
        {"gap": final[below].min(0).values - final[above].max(0).values,
         "monotone": (final[1:] <= final[:-1] + tol).all(0)},
        f"l_ts {lengths[-1]}; mean error by S1: " + ", ".join(f"{s}: {r4(final[i].mean())}" for i, s in enumerate(S1_GRID)),
        {"ood_error_by_S1": {str(s): short(final[i]) for i, s in enumerate(S1_GRID)}},
        {"ood_error_vs_S1": {"lengths": lengths, "eps": float(ctx.reference(EPS_HAT).mean()), "curves": {
            f"S1={s}": [float(curves[s][L].mean()) for L in lengths] for s in S1_GRID}, "spread": {
            f"S1={s}": [float(curves[s][L].double().std()) for L in lengths] for s in S1_GRID}}})


def measure_alpha_test(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs, params, _ = _base(ctx)
    tol = zero_count_bound(cfgs[0].n_test)
    bound = O_EPS * ctx.reference(EPS_HAT)
    lengths = _lengths(cfgs[0])
    worlds = {"ood": ood_world(cfgs, ctx.device), "id": id_world(cfgs, ctx.device)}
    errs = {(w, a): torch.stack(list(error_vs_length(params, cfgs, world, lengths, alpha_test=a,
                                                     stream=("claim", "alpha", w)).values())).double()  # [L, E]
            for w, world in worlds.items() for a in ALPHA_TEST_GRID}
    area = torch.stack([errs[("ood", a)].mean(0) for a in ALPHA_TEST_GRID])  # [A, E] mean OOD error over lengths
    need = {}
    for a in ALPHA_TEST_GRID:  # shortest length with error <= O_EPS eps_hat (reported, not graded); None: not within l_ts
        first, censored = first_crossing(errs[("ood", a)] <= bound, lengths)
        need[str(a)] = [None if c else int(x) for x, c in zip(first.tolist(), censored.tolist())]
    return Measurement(
        {"drop": area[0] - area[-1], "ordered": (area[1:] <= area[:-1] + tol).all(0)},
        "mean OOD error over lengths by alpha': " + ", ".join(f"{a}: {r4(area[i].mean())}" for i, a in enumerate(ALPHA_TEST_GRID))
        + f"; at l_ts={lengths[-1]} ID / OOD: " + ", ".join(
            f"{a}: {r4(errs[('id', a)][-1].mean())} / {r4(errs[('ood', a)][-1].mean())}" for a in ALPHA_TEST_GRID)
        + f"; shortest length with OOD error <= {O_EPS:g} eps_hat (None = not within l_ts): {need}",
        {"mean_ood_error_by_alpha_test": {str(a): short(area[i]) for i, a in enumerate(ALPHA_TEST_GRID)},
         "needed_length": need},
        {"error_vs_alpha_test": {"lengths": lengths, "eps": float(ctx.reference(EPS_HAT).mean()), "curves": {
            f"{w} alpha'={a}": errs[(w, a)].mean(1).tolist() for w in worlds for a in ALPHA_TEST_GRID}, "spread": {
            f"{w} alpha'={a}": errs[(w, a)].std(1).tolist() for w in worlds for a in ALPHA_TEST_GRID}}})


def measure_attention_layers(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs, _, cells = _base(ctx)
    steps = cells[0].curves["step"]
    layers = cfgs[0].n_layer
    mass = np.array([[c.curves[f"attn_same_ood.{l}"] for l in range(layers)] for c in cells])  # [E, layers, T]
    start, end = mass[..., 0], mass[..., -1]
    closed = torch.stack([gap_closed(torch.tensor(start[:, l]), torch.tensor(end[:, l])) for l in range(layers)], 1)
    return Measurement(
        {"worst_gap_closed": closed.min(1).values},
        "; ".join(f"layer {l + 1}: {start[:, l].mean():.2f} -> {end[:, l].mean():.2f} (gap closed "
                  f"{float(closed[:, l].mean()):.2f})" for l in range(layers)),
        {"start": start.tolist(), "end": end.tolist(), "gap_closed": closed.tolist()},
        {"attention_layers": {"steps": steps, "mean": mass.mean(0).tolist(), "std": mass.std(0).tolist()}})


def _neurons(ctx: ClaimContext):
    cfgs, params, _ = _base(ctx)
    def compute():
        init = init_params(cfgs, rng_for(cfgs, ctx.device), ctx.device)
        return neuron_embeddings(init, cfgs[0].d_X), neuron_embeddings(params, cfgs[0].d_X)
    return ctx.memo("icl_gpt2:neurons", compute)


def _scatter(init, final) -> dict:
    pick = lambda e: {k: e[k][0].tolist() for k in ("label_norm", "label_angle", "a_sign")}  # noqa: E731
    return {"layers": [{"init": pick(i), "final": pick(f)} for i, f in zip(init, final)]}


def measure_neuron_growth(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs, _, cells = _base(ctx)
    init, final = _neurons(ctx)
    share = torch.stack([(f["label_norm"] > i["label_norm"]).float().mean(-1) for i, f in zip(init, final)], 1)  # [E, n]
    ratio = torch.stack([(f["label_norm"] / i["label_norm"].clamp_min(1e-12)).median(-1).values
                         for i, f in zip(init, final)], 1)
    curves = np.array([[c.curves[f"label_norm_median.{l}"] for l in range(cfgs[0].n_layer)] for c in cells])
    return Measurement(
        {"share_grown": share.min(1).values},
        "; ".join(f"layer {l + 1}: share grown {share[:, l].mean():.2f}, median growth x{ratio[:, l].mean():.2f}"
                  for l in range(share.shape[1])),
        {"share_grown": share.tolist(), "median_growth": ratio.tolist()},
        {"neuron_layers": {**_scatter(init, final), "steps": cells[0].curves["step"],
                           "median_norm": curves.mean(0).tolist(), "median_norm_std": curves.std(0).tolist()}})


def _aligned(layer, angle: float) -> torch.Tensor:
    """[E]: share of the large neurons (label norm >= the layer's median) within `angle` of sign(a_i) q."""
    ang = torch.where(layer["a_sign"] > 0, layer["label_angle"], math.pi - layer["label_angle"])
    large = layer["label_norm"] >= layer["label_norm"].median(-1, keepdim=True).values
    return ((ang <= angle) & large).sum(-1) / large.sum(-1).clamp_min(1)


def measure_neuron_angle(ctx: ClaimContext, arm: str) -> Measurement:
    init, final = _neurons(ctx)
    share = torch.stack([_aligned(f, ALIGN_ANGLE) for f in final], 1)  # [E, layers]
    share0 = torch.stack([_aligned(i, ALIGN_ANGLE) for i in init], 1)
    wide = torch.stack([_aligned(f, WIDE_ANGLE) for f in final], 1)
    return Measurement(
        {"best_aligned_share": share.max(1).values},
        "; ".join(f"layer {l + 1}: {share0[:, l].mean():.2f} (init) -> {share[:, l].mean():.2f} within pi/8 "
                  f"({wide[:, l].mean():.2f} within pi/4)" for l in range(share.shape[1])),
        {"aligned_share": share.tolist(), "aligned_share_init": share0.tolist(), "aligned_share_pi4": wide.tolist()})


def _pruning(ctx: ClaimContext):
    cfgs, params, _ = _base(ctx)
    d_X = cfgs[0].d_X

    def compute():
        rng = rng_for(cfgs, ctx.device)
        world = ood_world(cfgs, ctx.device)
        ev = lambda p, a=None: evaluate(p, cfgs, world, alpha_test=a, stream=("claim", "prune"))  # noqa: E731
        out = {"base": ev(params)}
        for how in ("smallest", "largest", "random"):
            out[how] = {R: ev(pruned(params, d_X, R, how, rng, (R,))) for R in PRUNE_RATES}
        out["alpha"] = {a: {R: ev(pruned(params, d_X, R, "smallest"), a)["error"] for R in (0.0, *PRUNE_RATES)}
                        for a in PRUNE_ALPHAS}
        norms = neuron_embeddings(params, d_X)[0]["in_norm"][0]
        out["sorted_norms"] = torch.sort(norms).values.tolist()
        return out
    return ctx.memo("icl_gpt2:pruning", compute)


def measure_pruning(ctx: ClaimContext, arm: str) -> Measurement:
    d = _pruning(ctx)
    loss = {how: torch.stack([d[how][R]["loss"] for R in PRUNE_RATES]) for how in ("smallest", "largest", "random")}
    err = {how: [r4(float(d[how][R]["error"].mean())) for R in PRUNE_RATES] for how in loss}
    mean = {how: short(v.mean(1)) for how, v in loss.items()}
    alpha = {str(a): [float(d["alpha"][a][R].mean()) for R in (0.0, *PRUNE_RATES)] for a in PRUNE_ALPHAS}
    return Measurement(
        {"min_margin": (loss["random"] - loss["smallest"]).min(0).values},
        f"unpruned OOD error {r4(d['base']['error'].mean())}; mean hinge by R: "
        + "; ".join(f"{k} {v}" for k, v in mean.items()) + "; mean error by R: " + "; ".join(f"{k} {v}" for k, v in err.items()),
        {"rates": list(PRUNE_RATES), "loss": mean, "error": err},
        {"pruning": {"rates": list(PRUNE_RATES), "loss": mean, "error": err, "base_error": float(d["base"]["error"].mean()),
                     "base_loss": float(d["base"]["loss"].mean()), "sorted_norms": d["sorted_norms"],
                     "alpha_rates": [0.0, *PRUNE_RATES], "alpha_error": alpha,
                     "error_std": {how: [float(d[how][R]["error"].double().std()) for R in PRUNE_RATES] for how in loss},
                     "alpha_error_std": {str(a): [float(d["alpha"][a][R].double().std()) for R in (0.0, *PRUNE_RATES)]
                                         for a in PRUNE_ALPHAS}}})


def measure_pruning_alpha(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs, _, _ = _base(ctx)
    tol = zero_count_bound(cfgs[0].n_test)
    d = _pruning(ctx)
    rates = (0.0, *PRUNE_RATES)
    err = torch.stack([torch.stack([d["alpha"][a][R] for R in rates]) for a in PRUNE_ALPHAS])  # [A, R, E]
    return Measurement(
        {"drop": err[0].mean(0) - err[-1].mean(0), "ordered": (err[1:] <= err[:-1] + tol).all(1).all(0)},
        "mean error by R: " + "; ".join(f"alpha'={a}: {short(err[i].mean(1))}" for i, a in enumerate(PRUNE_ALPHAS)),
        {"error_by_alpha_test": {str(a): short(err[i].mean(1)) for i, a in enumerate(PRUNE_ALPHAS)}, "rates": list(rates)})


# the one-layer model's CoT / ICL errors as the spec reports them (section 2.5 C7, slide Fig. 9; read off a plot)
ONE_LAYER_C7 = "one-layer (spec C7, 10 -> 100 examples): CoT w/o Condition 1 0.15 -> 0.014; ICL w/ Condition 1 0.35 -> 0.05; " \
    "ICL w/o Condition 1 flat at 0.55-0.7"


def measure_cot_vs_icl(ctx: ClaimContext, arm: str) -> Measurement:
    from theorylab.studies.icl_gpt2.cot_task import evaluate as cot_evaluate
    cfgs = ctx.configs(task="cot")  # a CoT ensemble on the same backbone, whatever the base task
    params, _ = ctx.trained(cfgs)
    cfg = cfgs[0]
    lengths = sorted({max(1, cfg.l_ts // 4), max(1, cfg.l_ts // 2), cfg.l_ts})

    def compute():
        return {wt: {L: cot_evaluate(params, cfgs, L, stream=("claim", "c7", wt), wrong=wt) for L in lengths}
                for wt in ("scatter", "converge")}
    ev = ctx.memo("icl_gpt2:cot_c7", compute)
    L = lengths[-1]
    cot_wo, icl_wo, icl_w = ev["converge"][L]["cot"], ev["converge"][L]["icl"], ev["scatter"][L]["icl"]
    curves = {"CoT w/o Condition 1": [float(ev["converge"][l]["cot"].mean()) for l in lengths],
              "CoT w/ Condition 1": [float(ev["scatter"][l]["cot"].mean()) for l in lengths],
              "ICL w/ Condition 1": [float(ev["scatter"][l]["icl"].mean()) for l in lengths],
              "ICL w/o Condition 1": [float(ev["converge"][l]["icl"].mean()) for l in lengths]}
    return Measurement(
        {"cot_lead": icl_wo - cot_wo, "condition1_lead": icl_wo - icl_w},
        "GPT-2 (" + ", ".join(f"{k} {[r4(v) for v in c]}" for k, c in curves.items()) + f" at l_ts {lengths}); "
        + ONE_LAYER_C7 + f"; chance 1 - 1/M = {1 - 1 / cfg.M:.2f}",
        {"lengths": lengths, **{k: c for k, c in curves.items()}},
        {"cot_vs_icl": {"lengths": lengths, "curves": curves, "chance": 1 - 1 / cfg.M, "spread": {
            name: [float(ev[wt][l][k].double().std()) for l in lengths] for name, k, wt in (
                ("CoT w/o Condition 1", "cot", "converge"), ("CoT w/ Condition 1", "cot", "scatter"),
                ("ICL w/ Condition 1", "icl", "scatter"), ("ICL w/o Condition 1", "icl", "converge"))}}})


def _cot_task_valid(ctx: ClaimContext) -> str | None:
    try:
        ctx.configs(task="cot")
    except ConfigError as e:
        return " ".join(str(e).split())
    return None


COT_TASK_VALID = Hypothesis("the config is valid for the CoT task too (the claim trains the backbone on it)",
                            _cot_task_valid)


CLAIMS = [
    Claim("fig_ood_s1", "E1: slide Fig. 18 (GPT-2)", "figure", "OOD error falls with S1 and every S1 < 1 is worse than "
          "every S1 >= 1, on a GPT-2 trained here.", seeds=5, measure=measure_ood_s1, hypotheses=(ICL_TASK,),
          criterion=Criterion(Above("gap", 0.0, "at l_ts: min OOD error over S1 < 1 minus max over S1 >= 1"),
                              Holds("monotone", meaning=f"OOD error non-increasing in S1 over {list(S1_GRID)} "
                                    "(a rise <= 3/n_test allowed)"))),
    Claim("fig_alpha_test", "E2: slide Fig. 19 (GPT-2)", "figure", "OOD error over test prompt lengths falls as alpha' "
          "rises (fewer context examples needed).", seeds=5, measure=measure_alpha_test, hypotheses=(ICL_TASK,),
          criterion=Criterion(Above("drop", 0.0, f"mean OOD error over l_ts at alpha'={ALPHA_TEST_GRID[0]} minus at "
                                    f"{ALPHA_TEST_GRID[-1]}"),
                              Holds("ordered", meaning=f"mean OOD error non-increasing in alpha' over "
                                    f"{list(ALPHA_TEST_GRID)} (a rise <= 3/n_test allowed)"))),
    Claim("fig_attention_layers", "E5: slide Figs. 12-14 (3-layer)", "figure", "In every layer the query's attention "
          "concentrates on contexts sharing its relevant pattern during training.", seeds=5,
          measure=measure_attention_layers, hypotheses=(ICL_TASK,),
          criterion=Criterion(AtLeast("worst_gap_closed", CLOSE_GAP, "smallest share over layers of the untrained "
                                      "same-pattern attention's gap to 1 closed by training (head mean, OOD prompts)"))),
    Claim("fig_neuron_growth", "E5: slide Figs. 15-17 (3-layer)", "figure", "In every layer the label-embedding "
          "magnitude of most MLP neurons grows during training.", seeds=5, measure=measure_neuron_growth,
          hypotheses=(ICL_TASK,),
          criterion=Criterion(Above("share_grown", 0.5, "smallest share over layers of MLP neurons whose label-part "
                                    "norm grew from init (a majority: > 1/2)"))),
    Claim("fig_neuron_angle", "E5: slide Figs. 15-17 (3-layer)", "figure", "In at least one layer the large neurons' "
          "label embeddings align with sign(a_i) q ('the angle changes still hold for one of the layers').", seeds=5,
          measure=measure_neuron_angle, hypotheses=(ICL_TASK,),
          criterion=Criterion(AtLeast("best_aligned_share", ALIGNED_SHARE, "largest share over layers of the large "
                                      "neurons (label norm >= the layer's median) within pi/8 of sign(a_i) q"))),
    Claim("fig_pruning", "E7: slide Fig. 22 (one-layer model's; GPT-2 here is an extension)", "figure",
          "Magnitude pruning of MLP neurons beats random pruning at every rate R (OOD prompts): the one-layer model's "
          "figure, run on GPT-2's MLP neurons (not a GPT-2 figure of the paper).", seeds=5, measure=measure_pruning,
          hypotheses=(ICL_TASK,),
          criterion=Criterion(Above("min_margin", 0.0, f"smallest margin over R in {list(PRUNE_RATES)} of random over "
                                    "magnitude pruning (OOD hinge; every layer's MLP neurons by smallest |W_1 column|)"))),
    Claim("fig_pruning_alpha", "E8: slide Fig. 23 (one-layer model's; GPT-2 here is an extension)", "figure",
          "Under magnitude pruning the OOD error is lower for larger alpha' at every rate R: the one-layer model's "
          "figure, run on GPT-2 (not a GPT-2 figure of the paper).", seeds=5, measure=measure_pruning_alpha,
          hypotheses=(ICL_TASK,),
          criterion=Criterion(Above("drop", 0.0, f"mean pruned OOD error over R at alpha'={PRUNE_ALPHAS[0]} minus at "
                                    f"{PRUNE_ALPHAS[-1]}"),
                              Holds("ordered", meaning=f"at every R in {[0.0, *PRUNE_RATES]} the pruned OOD error is "
                                    f"non-increasing in alpha' over {list(PRUNE_ALPHAS)} (a rise <= 3/n_test allowed)"))),
    Claim("fig_cot_vs_icl", "CoT C7 (one-layer ordering, on GPT-2)", "figure", "On the GPT-2 backbone trained for CoT, "
          "CoT beats ICL when Condition 1 fails, and ICL is worse without Condition 1 than with it, as for the "
          "one-layer model.", seeds=5, measure=measure_cot_vs_icl, hypotheses=(COT_TASK_VALID,),
          criterion=Criterion(Above("cot_lead", 0.0, "at the longest l_ts: ICL error w/o Condition 1 minus CoT error "
                                    "w/o Condition 1"),
                              Above("condition1_lead", 0.0, "ICL error w/o Condition 1 minus ICL error w/ it"))),
]
