"""The ICL paper's theorems as claims, graded per seed (core.claims). All claims share one trained ensemble
(the seeds of the base config); S1, alpha', l_ts and ood_mix only change test prompts: evaluated, not retrained.

Constants are fixed before any run and relative to what the same run measures:
- eps_hat: the trained model's own error on fresh prompts of its *training* tasks, at least the rule-of-three
  bound 3/n_test (an error of 0 on n prompts is only known to be below it). "O(eps)" = EPS_MULT x eps_hat.
- attention "-> 1": the trained mass closes at least CLOSE_GAP of the untrained model's gap to 1.
- Prop. 2 "the rest stay near init": the small rows' median growth from init is at most STAY_SMALL of the
  large rows' median growth.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theorylab.core.claims import Claim, ClaimContext, Control, NotApplicable, Outcome
from theorylab.core.ensemble import rng_for
from theorylab.core.measures import r4, rows_below, small_group_size, zero_count_bound
from theorylab.studies.icl.data import in_domain_world, split_tasks
from theorylab.studies.icl.evaluate import (error_vs_length, evaluate, neuron_embeddings, ood_world, prune_rows,
                                            pruning_mask, unseen_world)
from theorylab.studies.icl.model import init_params

EPS_MULT = 2.0
CLOSE_GAP = 0.5
STAY_SMALL = 0.1
ANGLE = math.pi / 8  # "aligned": within pi/8 (the slides' scatter plots)
ALIGNED_SHARE = 0.9  # share of large rows that must be aligned
S1_GRID = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4)
OOD_MIXES = (0.5, 0.7, 0.9)
ALPHA_TEST_GRID = (0.6, 0.8, 1.0)
PRUNE_RATES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
PRUNE_ALPHA_TEST = 0.6  # E7 is measured at alpha' = 0.6


def _base(ctx: ClaimContext):
    cfgs = ctx.configs()
    params, cells = ctx.trained(cfgs)
    return cfgs, params, cells


def _init(ctx: ClaimContext, cfgs):
    return init_params(cfgs, rng_for(cfgs, ctx.device), ctx.device)


def eps_hat(ctx: ClaimContext) -> torch.Tensor:
    """[E] the trained model's error on fresh prompts of its training tasks, floored at 3/n_test."""
    def compute():
        cfgs, params, _ = _base(ctx)
        seen = in_domain_world(cfgs, ctx.device, split_tasks(cfgs[0])[0])
        err = evaluate(params, cfgs, seen, stream=("claim", "seen"))["error"]
        return err.clamp_min(zero_count_bound(cfgs[0].n_test))
    return ctx.memo("icl:eps_hat", compute)


def _list(x: torch.Tensor) -> list[float]:
    return [r4(v) for v in x.tolist()]


def _thm1_hypothesis(cfgs) -> tuple[list, list, float, float]:
    """Thm 1's conditions on the training tasks (Thm 2 assumes them too); NotApplicable where they fail."""
    train, test = split_tasks(cfgs[0])
    M1 = cfgs[0].M1
    frac, needed = len(train) / (len(train) + len(test)), (M1 - 1) ** -0.5
    covered = {a for a, _ in train} == set(range(M1)) == {b for _, b in train}
    if frac < needed or not covered or not test:
        raise NotApplicable(f"Thm 1's hypothesis does not hold at this config (training tasks {len(train)}/"
                            f"{len(train) + len(test)} = {frac:.2f}, needs >= {needed:.3f}, every pattern as +1 and -1: "
                            f"{covered}, unseen tasks: {len(test)}): the theorem says nothing here")
    return train, test, frac, needed


def thm1_in_domain(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    train, test, frac, needed = _thm1_hypothesis(cfgs)
    eps = eps_hat(ctx)
    bound = EPS_MULT * eps
    world = unseen_world(cfgs, ctx.device)
    err = evaluate(params, cfgs, world, stream=("claim", "thm1"))["error"]
    init_err = evaluate(_init(ctx, cfgs), cfgs, world, stream=("claim", "thm1"))["error"]
    return Outcome(
        (err <= bound).tolist(), "unseen in-domain error", err.tolist(),
        f"error on unseen tasks <= {EPS_MULT:g} x eps_hat (own error on training tasks, >= 3/n_test)",
        f"eps_hat {_list(eps)}; trained on {len(train)}/{len(train) + len(test)} tasks = {frac:.2f} >= "
        f"(M1-1)^-1/2 = {needed:.3f}",
        {"unseen_id_error": _list(err), "eps_hat": _list(eps), "train_task_fraction": frac, "required_fraction": needed,
         "l_ts": cfgs[0].l_ts, "alpha_test": cfgs[0].alpha_test},
        control=Control("the untrained model", (init_err <= bound).tolist(), f"error {_list(init_err)}"))


def _ood_curves(ctx: ClaimContext, cfgs, params, mix: float | None = None) -> dict[float, torch.Tensor]:
    """{S1: OOD error [E]} at l_ts, for the config's ood_mix or another one."""
    def compute():
        cs = cfgs if mix is None else [c.replace(ood_mix=mix) for c in cfgs]
        return {S1: evaluate(params, cs, ood_world(cs, ctx.device, S1), stream=("claim", "thm2"))["error"]
                for S1 in S1_GRID}
    return ctx.memo(f"icl:ood:{mix}", compute)


def thm2_ood(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    _thm1_hypothesis(cfgs)
    bound = EPS_MULT * eps_hat(ctx)
    by_s1 = _ood_curves(ctx, cfgs, params)
    above = torch.stack([by_s1[s] for s in S1_GRID if s >= 1])  # [S, E]
    below = torch.stack([by_s1[s] for s in S1_GRID if s < 1])
    worst = above.max(0).values
    # where the bound is first met, for other mixing weights of the ODR construction (threshold movement)
    thresholds = {}
    for mix in OOD_MIXES:
        curve = _ood_curves(ctx, cfgs, params, mix)
        ok = [s for s in S1_GRID if bool((curve[s] <= bound).float().mean() >= 0.5)]
        thresholds[str(mix)] = min(ok) if ok else None
    return Outcome(
        (worst <= bound).tolist(), "worst OOD error over S1 >= 1", worst.tolist(),
        f"OOD error at every S1 >= 1 in {[s for s in S1_GRID if s >= 1]} <= {EPS_MULT:g} x eps_hat",
        f"l_ts {cfgs[0].l_ts}; mean error by S1: " + ", ".join(f"{s}: {r4(by_s1[s].mean())}" for s in S1_GRID)
        + f"; smallest S1 meeting the bound on most seeds by ood_mix: {thresholds}",
        {"ood_error_by_S1": {str(s): _list(v) for s, v in by_s1.items()}, "bound": _list(bound),
         "threshold_S1_by_ood_mix": thresholds, "construction": cfgs[0].ood_construction},
        control=Control("S1 < 1 (hypothesis false)", (below.min(0).values <= bound).tolist(),
                        f"best error over S1 < 1 {_list(below.min(0).values)}"))


def fig_ood_s1(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    lengths = list(range(2, cfgs[0].l_ts + 1, 2))
    curves = ctx.memo("icl:ood_vs_len", lambda: {
        S1: error_vs_length(params, cfgs, ood_world(cfgs, ctx.device, S1), lengths, stream=("claim", "thm2"))
        for S1 in S1_GRID})
    final = torch.stack([curves[s][lengths[-1]] for s in S1_GRID])  # [S, E]
    gap = final[[i for i, s in enumerate(S1_GRID) if s < 1]].min(0).values - \
        final[[i for i, s in enumerate(S1_GRID) if s >= 1]].max(0).values
    monotone = (final[1:] <= final[:-1] + zero_count_bound(cfgs[0].n_test)).all(0)
    return Outcome(
        ((gap > 0) & monotone).tolist(), "min error over S1 < 1 minus max over S1 >= 1", gap.tolist(),
        "OOD error non-increasing in S1 (within 3/n_test) and every S1 < 1 worse than every S1 >= 1 (GPT-2 figure)",
        "mean error by S1: " + ", ".join(f"{s}: {r4(final[i].mean())}" for i, s in enumerate(S1_GRID)),
        {"ood_error_by_S1": {str(s): _list(final[i]) for i, s in enumerate(S1_GRID)}},
        {"ood_error_vs_S1": {"lengths": lengths, "eps": float(EPS_MULT * eps_hat(ctx).mean()), "curves": {
            str(s): [float(curves[s][L].mean()) for L in lengths] for s in S1_GRID}}})


def length_vs_alpha_test(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    bound = EPS_MULT * eps_hat(ctx)  # [E]
    lengths = list(range(1, cfgs[0].l_ts + 1))
    need, curves = [], {}
    for a in ALPHA_TEST_GRID:
        c = error_vs_length(params, cfgs, ood_world(cfgs, ctx.device), lengths, alpha_test=a,
                            stream=("claim", "alpha_test"))
        errs = torch.stack([c[L] for L in lengths])  # [L, E]
        ok = errs <= bound
        beyond = torch.full_like(ok[0], len(lengths) + 1, dtype=torch.long)  # l_ts + 1: not reached within l_ts
        first = torch.where(ok.any(0), ok.float().argmax(0) + 1, beyond)
        need.append(first)
        curves[f"ood alpha'={a}"] = errs.mean(1).tolist()
    need = torch.stack(need)  # [A, E]
    ordered = (need[1:] <= need[:-1]).all(0) & (need[-1] < need[0])
    return Outcome(
        ordered.tolist(), f"needed length at alpha'={ALPHA_TEST_GRID[0]} minus at {ALPHA_TEST_GRID[-1]}",
        (need[0] - need[-1]).float().tolist(),
        "shortest OOD prompt with error <= 2 x eps_hat is non-increasing in alpha' and strictly shorter at the largest",
        f"needed length by alpha' (per seed; {len(lengths) + 1} = not within l_ts): "
        + "; ".join(f"{a}: {need[i].tolist()}" for i, a in enumerate(ALPHA_TEST_GRID)),
        {"needed_length": {str(a): need[i].tolist() for i, a in enumerate(ALPHA_TEST_GRID)}},
        {"error_vs_alpha_test": {"lengths": lengths, "eps": float(bound.mean()), "curves": curves}})


def prop1_attention(ctx: ClaimContext) -> Outcome:
    cfgs, _, cells = _base(ctx)
    steps = cells[0].curves["step"]
    ood = np.array([c.curves["attn_same_ood"] for c in cells])  # [E, T]
    idd = np.array([c.curves["attn_same_id"] for c in cells])
    start, end = ood[:, 0], ood[:, -1]
    closed = (end - start) / np.maximum(1 - start, 1e-12)
    return Outcome(
        (closed >= CLOSE_GAP).tolist(), "share of the gap to 1 closed (OOD prompts)", closed.tolist(),
        f"trained same-pattern attention closes >= {CLOSE_GAP} of the untrained model's gap to 1",
        f"attention on same-pattern contexts {start.mean():.2f} (untrained) -> {end.mean():.2f}",
        {"attn_same_ood_start": start.tolist(), "attn_same_ood_end": end.tolist(), "attn_same_id_end": idd[:, -1].tolist(),
         "qproj_norm": [cells[0].curves["qproj_norm"][0], cells[0].curves["qproj_norm"][-1]],
         "qproj_on_pattern": [cells[0].curves["qproj_on_pattern"][0], cells[0].curves["qproj_on_pattern"][-1]]},
        {"attention_concentration": {"steps": steps, "ood_mean": ood.mean(0).tolist(), "ood_std": ood.std(0).tolist(),
                                     "id_mean": idd.mean(0).tolist(), "id_std": idd.std(0).tolist()}})


def prop2_neurons(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    emb = neuron_embeddings(params, cfgs)
    init = neuron_embeddings(_init(ctx, cfgs), cfgs)
    norm = emb["row_norm"]  # [E, m]
    large = norm >= 0.5 * norm.median(dim=1, keepdim=True).values
    target = torch.where(emb["a_sign"] > 0, emb["label_angle"], math.pi - emb["label_angle"])  # angle to sign(a) q
    n_large = large.sum(1).clamp_min(1)
    share = lambda ok: (ok & large).sum(1) / n_large  # noqa: E731
    label_ok, feat_ok = share(target <= ANGLE), share(emb["feature_angle"] <= ANGLE)
    dominant = share(emb["label_norm"] > emb["feature_norm"])
    growth = norm / init["row_norm"].clamp_min(1e-12)  # [E, m] final / initial row norm
    med = lambda x, m: torch.stack([x[e][m[e]].median() if m[e].any() else x.new_tensor(0.0)  # noqa: E731
                                    for e in range(x.shape[0])])
    small_growth, large_growth = med(growth, ~large), med(growth, large)
    ratio = small_growth / large_growth.clamp_min(1e-12)
    passed = (label_ok >= ALIGNED_SHARE) & (feat_ok >= ALIGNED_SHARE) & (dominant >= ALIGNED_SHARE) & (ratio <= STAY_SMALL)
    mean_large = (norm * large).sum(1) / n_large
    intermediate = ((~large) & (norm >= 0.2 * mean_large[:, None])).sum(1)
    pick = lambda d, e=0: {k: d[k][e].tolist() for k in ("feature_norm", "feature_angle", "label_norm", "label_angle",  # noqa: E731
                                                          "a_sign")}
    return Outcome(
        passed.tolist(), "small rows' growth from init / large rows' growth (medians)", ratio.tolist(),
        f">= {ALIGNED_SHARE:.0%} of large rows: label part within pi/8 of sign(a_i) q, feature part within pi/8 of "
        f"mu_bar, label norm > feature norm; small rows' median growth <= {STAY_SMALL} x the large rows'",
        f"large rows {r4(large.float().mean())}; aligned label {_list(label_ok)}, feature {_list(feat_ok)}, label "
        f"dominant {_list(dominant)}; growth x{r4(small_growth.mean())} (small) vs x{r4(large_growth.mean())} (large). "
        f"Observation: {intermediate.tolist()} small rows per seed sit above 0.2 x the mean large norm (late-recruited)",
        {"large_fraction": _list(large.float().mean(1)), "label_aligned": _list(label_ok), "feature_aligned": _list(feat_ok),
         "label_dominates": _list(dominant), "small_growth_median": _list(small_growth),
         "large_growth_median": _list(large_growth), "intermediate_rows": intermediate.tolist()},
        {"neuron_embeddings": {"init": pick(init), "final": pick(emb)}})


def _pruning(ctx: ClaimContext) -> dict:
    def compute():
        cfgs, params, _ = _base(ctx)
        world = ood_world(cfgs, ctx.device)
        rng = rng_for(cfgs, ctx.device)
        ev = lambda p: evaluate(p, cfgs, world, alpha_test=PRUNE_ALPHA_TEST, stream=("claim", "thm3"))  # noqa: E731
        norms = params["W_O"].norm(dim=-1)
        n_small = small_group_size(norms)
        small = rows_below(norms, n_small)
        as_largest = rows_below(-norms, n_small)  # the same number of rows, largest first
        out = {"base": ev(params), "small": ev(prune_rows(params, ~small)), "largest_same": ev(prune_rows(params, ~as_largest)),
               "n_small": n_small, "sorted_norms": norms.sort(dim=1).values.mean(0).tolist()}
        for how in ("smallest", "smallest_balanced", "largest", "random"):
            out[how] = {R: ev(prune_rows(params, pruning_mask(params, R, how, rng, (R,)))) for R in PRUNE_RATES}
        return out
    return ctx.memo("icl:pruning", compute)


def thm3_pruning(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    d = _pruning(ctx)
    eps = eps_hat(ctx)
    base = d["base"]["error"].clamp_min(zero_count_bound(cfgs[0].n_test))
    bound = EPS_MULT * base + cfgs[0].M2 ** -0.5  # O(eps + M2^-1/2)
    small_err = d["small"]["error"]
    rise = torch.stack([d["largest"][R]["loss"] - d["base"]["loss"] for R in PRUNE_RATES])  # [R, E] hinge risk
    rates = torch.tensor(PRUNE_RATES)[:, None]
    slope = (rise * rates).sum(0) / (rates**2).sum()  # least squares through the origin
    grows = (slope > 0) & (rise[-1] > rise[0])
    passed = (small_err <= bound) & grows
    m = params["W_O"].shape[1]
    return Outcome(
        passed.tolist(), "error after pruning all small rows", small_err.tolist(),
        f"pruning all small W_O rows: error <= {EPS_MULT:g} x eps_hat + M2^-1/2 (eps_hat: the unpruned model's own "
        f"error, alpha'={PRUNE_ALPHA_TEST}); pruning a fraction R of the largest rows raises the hinge risk with a "
        f"positive slope in R, more at R={PRUNE_RATES[-1]} than at R={PRUNE_RATES[0]}",
        f"small rows {_list(d['n_small'].float() / m)} of m; unpruned error {_list(d['base']['error'])}; bound "
        f"{_list(bound)}; largest-first hinge slope {_list(slope)}; training-task eps_hat {_list(eps)}",
        {"small_fraction": _list(d["n_small"].float() / m), "small_pruned_error": _list(small_err),
         "bound": _list(bound), "largest_slope": _list(slope)},
        control=Control("pruning as many of the largest rows", (d["largest_same"]["error"] <= bound).tolist(),
                        f"error {_list(d['largest_same']['error'])}"))


def fig_pruning(ctx: ClaimContext) -> Outcome:
    d = _pruning(ctx)
    loss = {how: torch.stack([d[how][R]["loss"] for R in PRUNE_RATES]) for how in
            ("smallest", "smallest_balanced", "largest", "random")}  # [R, E]
    beats = (loss["smallest"] < loss["random"]).all(0)
    beats_balanced = (loss["smallest_balanced"] < loss["random"]).all(0)
    margin = (loss["random"] - loss["smallest"]).min(0).values
    mean = {how: [r4(x) for x in v.mean(1).tolist()] for how, v in loss.items()}
    err = {how: [r4(float(d[how][R]["error"].mean())) for R in PRUNE_RATES] for how in loss}
    return Outcome(
        beats.tolist(), "smallest margin of random over magnitude pruning (hinge)", margin.tolist(),
        "magnitude (smallest-norm-first) pruning has a lower hinge risk than random pruning at every R (Figs. 19/22)",
        f"seeds where sign-balanced magnitude pruning beats random at every R: {int(beats_balanced.sum())}/"
        f"{beats_balanced.numel()}; mean hinge by R {list(PRUNE_RATES)}: " + "; ".join(f"{k} {v}" for k, v in mean.items()),
        {"rates": list(PRUNE_RATES), "loss": mean, "error": err, "balanced_beats_random": beats_balanced.tolist()},
        {"pruning": {"rates": list(PRUNE_RATES), "loss": mean, "error": err,
                     "base_loss": float(d["base"]["loss"].mean()), "base_error": float(d["base"]["error"].mean()),
                     "sorted_norms": d["sorted_norms"]}})


# seeds=: the smallest count at which three disjoint seed sets gave the same verdict (`theorylab seeds icl
# --candidates 3,5,8`, quick size, 2026-11-23); used when --seeds is not given
CLAIMS = [
    Claim("thm1_in_domain", "Thm 1", "theorem", "Trained on a fraction >= (M1-1)^(-1/2) of the tasks covering every "
          "pattern and label, the error on unseen in-domain tasks is O(eps).", thm1_in_domain, seeds=3),
    Claim("thm2_ood", "Thm 2", "theorem", "When each ODR pattern's IDR coefficients sum to S1 >= 1 (ODI in span(IDI)), "
          "the out-of-domain error is O(eps).", thm2_ood, seeds=3),
    Claim("fig_ood_s1", "Thm 2 / GPT-2 fig.", "figure", "OOD error falls with S1 and is large for every S1 < 1 "
          "(the converse Thm 2 does not state; the paper's GPT-2 figure shows it).", fig_ood_s1, seeds=3),
    Claim("length_vs_alpha_test", "l_ts >= 1/alpha' (fig.)", "figure", "The test prompt length needed for small OOD "
          "error falls as alpha' rises.", length_vs_alpha_test, seeds=3),
    Claim("prop1_attention", "Prop. 1", "mechanism", "The query's attention concentrates on contexts sharing its "
          "relevant pattern during training (mass -> 1).", prop1_attention, seeds=3),
    Claim("prop2_neurons", "Prop. 2", "mechanism", "Rows of W_O W_V align with (mu_bar, +q) for a_i > 0 and "
          "(mu_bar, -q) for a_i < 0, label parts dominant; the remaining rows stay near their initialisation.",
          prop2_neurons, seeds=5),
    Claim("thm3_pruning", "Thm 3", "theorem", "Pruning all small-norm W_O rows keeps the error O(eps + M2^-1/2); "
          "pruning a fraction R of the large rows raises it, growing with R.", thm3_pruning, seeds=3),
    Claim("fig_pruning", "Figs. 19/22", "figure", "Magnitude pruning beats random pruning at every rate R "
          "(sign-balanced magnitude pruning reported beside it).", fig_pruning, seeds=3),
]
