"""The ICL paper's theorems as claims (core.claims on core.contract). All claims share one trained ensemble (the
seeds of the base config); S1, alpha', l_ts and ood_mix only change test prompts: evaluated, not retrained.

References are measured in the same run: eps_hat is the trained model's own error on fresh prompts of its
*training* tasks, at least the rule-of-three bound 3/n_test (an error of 0 on n prompts is only known to be
below it). The contract's constants (O_EPS, CLOSE_GAP, STAY_SMALL, ALIGN_ANGLE, ALIGNED_SHARE) are core's.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import (ALIGN_ANGLE, ALIGNED_SHARE, CLOSE_GAP, MAIN, O_EPS, STAY_SMALL, Above, AtLeast,
                                     AtMost, ControlArm, Criterion, Holds, Hypothesis, Measurement, Reference, short)
from theorylab.core.ensemble import rng_for
from theorylab.core.measures import first_crossing, gap_closed, r4, rows_below, small_group_size, zero_count_bound
from theorylab.shared.icl_prompts import split_tasks
from theorylab.shared.icl_evaluation import ood_world, seen_world, unseen_world
from theorylab.studies.icl.evaluate import error_vs_length, evaluate, neuron_embeddings, prune_rows, pruning_mask
from theorylab.studies.icl.model import init_params

S1_GRID = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4)
OOD_MIXES = (0.5, 0.7, 0.9)
ALPHA_TEST_GRID = (0.6, 0.8, 1.0)
PRUNE_RATES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
PRUNE_ALPHA_TEST = 0.6  # E7 is measured at alpha' = 0.6
UNTRAINED = "untrained"


def _base(ctx: ClaimContext):
    cfgs = ctx.configs()
    params, cells = ctx.trained(cfgs)
    return cfgs, params, cells


def _params(ctx: ClaimContext, arm: str):
    """The trained weights, or the untrained model's (the control arm of the theorem claims)."""
    cfgs, params, _ = _base(ctx)
    return init_params(cfgs, rng_for(cfgs, ctx.device), ctx.device) if arm == UNTRAINED else params


def _eps_hat(ctx: ClaimContext) -> torch.Tensor:
    cfgs, params, _ = _base(ctx)
    return evaluate(params, cfgs, seen_world(cfgs, ctx.device), stream=("claim", "seen"))["error"].clamp_min(zero_count_bound(cfgs[0].n_test))


EPS_HAT = Reference("eps_hat", "the trained model's own error on fresh prompts of its training tasks, >= 3/n_test",
                    _eps_hat)


def _thm1_tasks(ctx: ClaimContext) -> str | None:
    cfg = ctx.configs()[0]
    train, test = split_tasks(cfg)
    frac, needed = len(train) / (len(train) + len(test)), (cfg.M1 - 1) ** -0.5
    covered = {a for a, _ in train} == set(range(cfg.M1)) == {b for _, b in train}
    if frac >= needed and covered and test:
        return None
    return (f"training tasks {len(train)}/{len(train) + len(test)} = {frac:.2f} (needs >= {needed:.3f}), every "
            f"pattern as +1 and -1: {covered}, unseen tasks left: {len(test)}")


THM1_TASKS = Hypothesis("Thm 1: the training tasks are a fraction >= (M1-1)^-1/2 of all tasks, use every IDR pattern "
                        "as +1 and as -1, and leave unseen tasks", _thm1_tasks)


# ---- Thm 1: unseen in-domain tasks ----
def measure_thm1(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs = ctx.configs()
    err = evaluate(_params(ctx, arm), cfgs, unseen_world(cfgs, ctx.device), stream=("claim", "thm1"))["error"]
    train, test = split_tasks(cfgs[0])
    return Measurement({"unseen_error": err}, f"trained on {len(train)}/{len(train) + len(test)} tasks",
                       {"l_ts": cfgs[0].l_ts, "alpha_test": cfgs[0].alpha_test})


# ---- Thm 2: out-of-domain tasks with S1 >= 1 ----
def _ood_curves(ctx: ClaimContext, mix: float | None = None) -> dict[float, torch.Tensor]:
    """{S1: OOD error [E]} at l_ts, for the config's ood_mix or another one."""
    def compute():
        cfgs, params, _ = _base(ctx)
        cs = cfgs if mix is None else [c.replace(ood_mix=mix) for c in cfgs]
        return {S1: evaluate(params, cs, ood_world(cs, ctx.device, S1), stream=("claim", "thm2"))["error"]
                for S1 in S1_GRID}
    return ctx.memo(f"icl:ood:{mix}", compute)


def measure_thm2(ctx: ClaimContext, arm: str) -> Measurement:
    by_s1 = _ood_curves(ctx)
    s1s = [s for s in S1_GRID if (s >= 1) == (arm == MAIN)]
    worst = torch.stack([by_s1[s] for s in s1s]).max(0).values
    bound = O_EPS * ctx.reference(EPS_HAT)
    thresholds = {}  # where the bound is first met on most seeds, for other mixing weights of the ODR construction
    for mix in OOD_MIXES:
        curve = _ood_curves(ctx, mix)
        ok = [s for s in S1_GRID if float((curve[s].double() <= bound).double().mean()) >= 0.5]
        thresholds[str(mix)] = min(ok) if ok else None
    return Measurement(
        {"worst_ood_error": worst}, f"S1 in {s1s}; mean error by S1: "
        + ", ".join(f"{s}: {r4(by_s1[s].mean())}" for s in S1_GRID)
        + f"; smallest S1 meeting the bound on most seeds by ood_mix: {thresholds}",
        {"ood_error_by_S1": {str(s): short(v) for s, v in by_s1.items()}, "threshold_S1_by_ood_mix": thresholds,
         "construction": ctx.configs()[0].ood_construction})


# ---- figures: OOD error against S1, prompt length against alpha' ----
def measure_fig_ood_s1(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs, params, _ = _base(ctx)
    lengths = list(range(2, cfgs[0].l_ts + 1, 2)) or [cfgs[0].l_ts]
    curves = ctx.memo("icl:ood_vs_len", lambda: {
        S1: error_vs_length(params, cfgs, ood_world(cfgs, ctx.device, S1), lengths, stream=("claim", "thm2"))
        for S1 in S1_GRID})
    final = torch.stack([curves[s][lengths[-1]] for s in S1_GRID])  # [S, E]
    below = [i for i, s in enumerate(S1_GRID) if s < 1]
    above = [i for i, s in enumerate(S1_GRID) if s >= 1]
    gap = final[below].min(0).values - final[above].max(0).values
    monotone = (final[1:] <= final[:-1] + zero_count_bound(cfgs[0].n_test)).all(0)
    return Measurement(
        {"gap": gap, "monotone": monotone},
        "mean error by S1: " + ", ".join(f"{s}: {r4(final[i].mean())}" for i, s in enumerate(S1_GRID)),
        {"ood_error_by_S1": {str(s): short(final[i]) for i, s in enumerate(S1_GRID)}},
        {"ood_error_vs_S1": {"lengths": lengths, "eps": float(O_EPS * ctx.reference(EPS_HAT).mean()), "curves": {
            str(s): [float(curves[s][L].mean()) for L in lengths] for s in S1_GRID},
            "spread": {str(s): [float(curves[s][L].std()) if curves[s][L].numel() > 1 else 0.0 for L in lengths]
                       for s in S1_GRID}}})


def measure_length_vs_alpha_test(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs, params, _ = _base(ctx)
    bound = O_EPS * ctx.reference(EPS_HAT)  # [E]
    lengths = list(range(1, cfgs[0].l_ts + 1))
    need, curves, spread = [], {}, {}
    for a in ALPHA_TEST_GRID:
        c = error_vs_length(params, cfgs, ood_world(cfgs, ctx.device), lengths, alpha_test=a,
                            stream=("claim", "alpha_test"))
        errs = torch.stack([c[L] for L in lengths]).double()  # [L, E]
        first, censored = first_crossing(errs <= bound, lengths)
        need.append(torch.where(censored, float(len(lengths) + 1), first))  # l_ts + 1: beyond the lengths tried
        curves[f"ood alpha'={a}"] = errs.mean(1).tolist()
        spread[f"ood alpha'={a}"] = errs.std(1).tolist() if errs.shape[1] > 1 else [0.0] * len(lengths)
    need = torch.stack(need)  # [A, E]
    # a censored need is a lower bound (> l_ts): the ordering below stays true of the real values
    ordered = (need[1:] <= need[:-1]).all(0) & (need[-1] < need[0])
    return Measurement(
        {"length_drop": need[0] - need[-1], "ordered": ordered},
        f"needed length by alpha' (per seed; {len(lengths) + 1} = not within l_ts): "
        + "; ".join(f"{a}: {need[i].long().tolist()}" for i, a in enumerate(ALPHA_TEST_GRID)),
        {"needed_length": {str(a): need[i].long().tolist() for i, a in enumerate(ALPHA_TEST_GRID)}},
        {"error_vs_alpha_test": {"lengths": lengths, "eps": float(bound.mean()), "curves": curves, "spread": spread}})


# ---- Props. 1 and 2: what training does ----
def measure_prop1(ctx: ClaimContext, arm: str) -> Measurement:
    _, _, cells = _base(ctx)
    steps = cells[0].curves["step"]
    ood = np.array([c.curves["attn_same_ood"] for c in cells])  # [E, T]
    idd = np.array([c.curves["attn_same_id"] for c in cells])
    closed = gap_closed(torch.tensor(ood[:, 0]), torch.tensor(ood[:, -1]), target=1.0)
    return Measurement(
        {"gap_closed": closed}, f"attention on same-pattern contexts {ood[:, 0].mean():.2f} (untrained) -> "
        f"{ood[:, -1].mean():.2f}",
        {"attn_same_ood_start": ood[:, 0].tolist(), "attn_same_ood_end": ood[:, -1].tolist(),
         "attn_same_id_end": idd[:, -1].tolist(),
         "qproj_norm": [cells[0].curves["qproj_norm"][0], cells[0].curves["qproj_norm"][-1]],
         "qproj_on_pattern": [cells[0].curves["qproj_on_pattern"][0], cells[0].curves["qproj_on_pattern"][-1]]},
        {"attention_concentration": {"steps": steps, "ood_mean": ood.mean(0).tolist(), "ood_std": ood.std(0).tolist(),
                                     "id_mean": idd.mean(0).tolist(), "id_std": idd.std(0).tolist()}})


def measure_prop2(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs, params, _ = _base(ctx)
    emb = neuron_embeddings(params, cfgs)
    init = neuron_embeddings(_params(ctx, UNTRAINED), cfgs)
    norm = emb["row_norm"]  # [E, m]
    large = norm >= 0.5 * norm.median(dim=1, keepdim=True).values
    target = torch.where(emb["a_sign"] > 0, emb["label_angle"], math.pi - emb["label_angle"])  # angle to sign(a) q
    n_large = large.sum(1).clamp_min(1)
    share = lambda ok: (ok & large).sum(1) / n_large  # noqa: E731
    growth = norm / init["row_norm"].clamp_min(1e-12)  # [E, m] final / initial row norm
    med = lambda x, m: torch.stack([x[e][m[e]].median() if m[e].any() else x.new_tensor(0.0)  # noqa: E731
                                    for e in range(x.shape[0])])
    small_growth, large_growth = med(growth, ~large), med(growth, large)
    mean_large = (norm * large).sum(1) / n_large
    intermediate = ((~large) & (norm >= 0.2 * mean_large[:, None])).sum(1)
    pick = lambda d: {k: d[k][0].tolist() for k in ("feature_norm", "feature_angle", "label_norm", "label_angle",  # noqa: E731
                                                     "a_sign")}
    return Measurement(
        {"growth_ratio": small_growth / large_growth.clamp_min(1e-12), "label_aligned": share(target <= ALIGN_ANGLE),
         "feature_aligned": share(emb["feature_angle"] <= ALIGN_ANGLE),
         "label_dominates": share(emb["label_norm"] > emb["feature_norm"])},
        f"large rows {r4(large.float().mean())}; growth x{r4(small_growth.mean())} (small) vs "
        f"x{r4(large_growth.mean())} (large). Observation: {intermediate.tolist()} small rows per seed sit above "
        "0.2 x the mean large norm (late-recruited)",
        {"large_fraction": short(large.float().mean(1)), "intermediate_rows": intermediate.tolist()},
        {"neuron_embeddings": {"init": pick(init), "final": pick(emb)}})


# ---- Thm 3 and Figs. 19/22: pruning ----
def _pruning(ctx: ClaimContext) -> dict:
    def compute():
        cfgs, params, _ = _base(ctx)
        world = ood_world(cfgs, ctx.device)
        rng = rng_for(cfgs, ctx.device)
        ev = lambda p: evaluate(p, cfgs, world, alpha_test=PRUNE_ALPHA_TEST, stream=("claim", "thm3"))  # noqa: E731
        norms = params["W_O"].norm(dim=-1)
        n_small = small_group_size(norms)
        out = {"base": ev(params), "n_small": n_small, "sorted_norms": norms.sort(dim=1).values.mean(0).tolist(),
               "smallest_group": ev(prune_rows(params, ~rows_below(norms, n_small))),
               "largest_group": ev(prune_rows(params, ~rows_below(-norms, n_small)))}  # as many rows, largest first
        for how in ("smallest", "smallest_balanced", "largest", "random"):
            out[how] = {R: ev(prune_rows(params, pruning_mask(params, R, how, rng, (R,)))) for R in PRUNE_RATES}
        return out
    return ctx.memo("icl:pruning", compute)


def _unpruned_error(ctx: ClaimContext) -> torch.Tensor:
    cfg = ctx.configs()[0]
    return _pruning(ctx)["base"]["error"].clamp_min(zero_count_bound(cfg.n_test))


UNPRUNED = Reference("eps_unpruned", f"the unpruned model's own OOD error at alpha'={PRUNE_ALPHA_TEST}, >= 3/n_test",
                     _unpruned_error)
M2_TERM = Reference("M2^-1/2", "the theorem's additive term M2^-1/2 at this config",
                    lambda ctx: [c.M2 ** -0.5 for c in ctx.configs()])


def measure_thm3(ctx: ClaimContext, arm: str) -> Measurement:
    d = _pruning(ctx)
    m = ctx.configs()[0].m
    which = "smallest_group" if arm == MAIN else "largest_group"
    return Measurement({"pruned_error": d[which]["error"]},
                       f"rows pruned per seed {d['n_small'].tolist()} of {m} ({which.replace('_', ' ')} by norm)",
                       {"small_fraction": short(d["n_small"].float() / m)})


def measure_largest_rows(ctx: ClaimContext, arm: str) -> Measurement:
    d = _pruning(ctx)
    rise = torch.stack([d["largest"][R]["loss"] - d["base"]["loss"] for R in PRUNE_RATES]).double()  # [R, E] hinge
    rates = torch.tensor(PRUNE_RATES, dtype=torch.float64)[:, None]
    slope = (rise * rates).sum(0) / (rates**2).sum()  # least squares through the origin
    return Measurement({"largest_slope": slope, "rise_at_ends": rise[-1] - rise[0]},
                       f"hinge rise over the unpruned model at R={PRUNE_RATES[0]}: {short(rise[0])}, "
                       f"at R={PRUNE_RATES[-1]}: {short(rise[-1])}")


def measure_fig_pruning(ctx: ClaimContext, arm: str) -> Measurement:
    d = _pruning(ctx)
    loss = {how: torch.stack([d[how][R]["loss"] for R in PRUNE_RATES]) for how in
            ("smallest", "smallest_balanced", "largest", "random")}  # [R, E]
    beats_balanced = (loss["smallest_balanced"] < loss["random"]).all(0)
    mean = {how: [r4(x) for x in v.mean(1).tolist()] for how, v in loss.items()}
    spread = {how: [r4(x) for x in v.std(1).tolist()] if v.shape[1] > 1 else [0.0] * len(PRUNE_RATES)
              for how, v in loss.items()}
    err = {how: [r4(float(d[how][R]["error"].mean())) for R in PRUNE_RATES] for how in loss}
    return Measurement(
        {"min_margin": (loss["random"] - loss["smallest"]).min(0).values},
        f"seeds where sign-balanced magnitude pruning beats random at every R: {int(beats_balanced.sum())}/"
        f"{beats_balanced.numel()}; mean hinge by R {list(PRUNE_RATES)}: " + "; ".join(f"{k} {v}" for k, v in mean.items()),
        {"rates": list(PRUNE_RATES), "loss": mean, "error": err, "balanced_beats_random": beats_balanced.tolist()},
        {"pruning": {"rates": list(PRUNE_RATES), "loss": mean, "loss_std": spread, "error": err, "error_std": {
            how: [r4(float(d[how][R]["error"].std())) if len(d[how][R]["error"]) > 1 else 0.0 for R in PRUNE_RATES]
            for how in loss},
                     "base_loss": float(d["base"]["loss"].mean()), "base_error": float(d["base"]["error"].mean()),
                     "sorted_norms": d["sorted_norms"]}})


# seeds=: the smallest count at which three disjoint seed sets gave the same verdict (`theorylab seeds icl
# --candidates 3,5,8`, quick size, 2026-11-23); used when --seeds is not given
CLAIMS = [
    Claim("thm1_in_domain", "Thm 1", "theorem", "Trained on a fraction >= (M1-1)^(-1/2) of the tasks covering every "
          "pattern and label, the error on unseen in-domain tasks is O(eps).", seeds=3, measure=measure_thm1,
          criterion=Criterion(AtMost("unseen_error", O_EPS * EPS_HAT, "error on unseen in-domain tasks")),
          hypotheses=(THM1_TASKS,), control=ControlArm(UNTRAINED, "the untrained model")),
    Claim("thm2_ood", "Thm 2", "theorem", "When each ODR pattern's IDR coefficients sum to S1 >= 1 (ODI in span(IDI)), "
          "the out-of-domain error is O(eps).", seeds=3, measure=measure_thm2,
          criterion=Criterion(AtMost("worst_ood_error", O_EPS * EPS_HAT, "worst OOD error over the arm's S1 values")),
          hypotheses=(THM1_TASKS,), control=ControlArm("S1<1", "S1 < 1 (the hypothesis made false)")),
    Claim("fig_ood_s1", "Thm 2 / GPT-2 fig.", "figure", "OOD error falls with S1 and is large for every S1 < 1 "
          "(the converse Thm 2 does not state; the paper's GPT-2 figure shows it).", seeds=3, measure=measure_fig_ood_s1,
          criterion=Criterion(Above("gap", 0.0, "min OOD error over S1 < 1 minus max over S1 >= 1"),
                              Holds("monotone", meaning="OOD error non-increasing in S1 (within 3/n_test)"))),
    Claim("length_vs_alpha_test", "l_ts >= 1/alpha' (fig.)", "figure", "The test prompt length needed for small OOD "
          "error falls as alpha' rises.", seeds=3, measure=measure_length_vs_alpha_test,
          criterion=Criterion(Above("length_drop", 0.0, f"needed length at alpha'={ALPHA_TEST_GRID[0]} minus at "
                                    f"{ALPHA_TEST_GRID[-1]} (shortest OOD prompt with error <= {O_EPS:g} x eps_hat)"),
                              Holds("ordered", meaning="the needed length is non-increasing in alpha'"))),
    Claim("prop1_attention", "Prop. 1", "mechanism", "The query's attention concentrates on contexts sharing its "
          "relevant pattern during training (mass -> 1).", seeds=3, measure=measure_prop1,
          criterion=Criterion(AtLeast("gap_closed", CLOSE_GAP, "share of the untrained same-pattern attention's gap "
                                      "to 1 closed by training (OOD prompts)"))),
    Claim("prop2_neurons", "Prop. 2", "mechanism", "Rows of W_O W_V align with (mu_bar, +q) for a_i > 0 and "
          "(mu_bar, -q) for a_i < 0, label parts dominant; the remaining rows stay near their initialisation.",
          seeds=5, measure=measure_prop2,
          criterion=Criterion(AtMost("growth_ratio", STAY_SMALL, "small rows' median growth from init / large rows'"),
                              AtLeast("label_aligned", ALIGNED_SHARE, "share of large rows whose label part is within "
                                      "pi/8 of sign(a_i) q"),
                              AtLeast("feature_aligned", ALIGNED_SHARE, "share of large rows whose feature part is "
                                      "within pi/8 of mu_bar"),
                              AtLeast("label_dominates", ALIGNED_SHARE, "share of large rows with label norm > "
                                      "feature norm"))),
    Claim("thm3_pruning", "Thm 3", "theorem", "Pruning all small-norm W_O rows keeps the error O(eps + M2^-1/2).",
          seeds=3, measure=measure_thm3,
          criterion=Criterion(AtMost("pruned_error", O_EPS * UNPRUNED + M2_TERM, "OOD error after pruning the "
                                     "small-norm group of W_O rows")),
          hypotheses=(THM1_TASKS,), control=ControlArm("largest", "pruning as many of the largest rows")),
    Claim("thm3_large_rows", "Thm 3 (Omega(R) part)", "figure", "Pruning a fraction R of the large rows raises the "
          "error, growing with R (a rate: a figure claim).", seeds=3, measure=measure_largest_rows,
          criterion=Criterion(Above("largest_slope", 0.0, "slope in R of the hinge risk's rise (largest rows first)"),
                              Above("rise_at_ends", 0.0, f"rise at R={PRUNE_RATES[-1]} minus rise at "
                                    f"R={PRUNE_RATES[0]}"))),
    Claim("fig_pruning", "Figs. 19/22", "figure", "Magnitude pruning beats random pruning at every rate R "
          "(sign-balanced magnitude pruning reported beside it).", seeds=3, measure=measure_fig_pruning,
          criterion=Criterion(Above("min_margin", 0.0, "smallest margin of random over magnitude pruning (hinge), "
                                    "over R"))),
]
