"""The low-rank / sparse one-layer paper's statements as claims, graded per seed (core.claims). Only the abstract
was readable, so the statements are the abstract's (and the spec's section 3.3 reading of it).

Trained cells: the seeds of the base config (k_rel from the config), the same seeds at every k_rel of K_SWEEP
(one call to ctx.trained, i.e. the sweep engine and the store), and LoRA cells (lora_rank = k_rel and k_rel - 1).

Constants, fixed before any run and relative to what the same run measures:
- Effective rank: the number of singular values >= RANK_REL x the largest (spec L1: sigma_3 / sigma_1 < 0.1);
  "low rank with rank k_rel" also asks the top-k_rel singular values to hold >= ENERGY of ||dW||_F^2 (spec L1),
  and the largest principal angle between the top-k_rel singular subspace and span{label-relevant patterns} to
  be <= ANGLE (the ICL study's alignment angle). Subspaces tested: the row (input) space of dW_Q, dW_K, dW_V,
  and the column space of dW_Q, dW_K (their outputs are compared with each other in pattern space); dW_V's
  column space lives in the hidden space W_O reads and is only reported.
- W_O rows: the small group lies below the largest ratio gap of the sorted final row norms (core.measures);
  "near init": the small rows' median ||dW_O[i]|| <= STAY_SMALL x the large rows' median.
- eps_hat: the model's own test hinge risk, at least 3/n_test (the resolution of a test set of n_test). "Nearly
  unchanged", "keeps the error" and "reaches the same error" = hinge risk <= EPS_MULT x eps_hat; "degrades" = above.

Why the hinge risk and not the sign error for pruning, truncation and LoRA: the majority vote is linearly separable
by the mean token (n_rel > n_conf in every sample), so W_V and W_O alone classify it: the first quick run (5 seeds)
measured test error 0 after pruning all small rows, after pruning half the large rows, after truncating the
attention updates to rank 0 (0.0003-0.013) and for LoRA ranks 1 and 2. Error cannot tell any two of these models
apart (the pruning control passed), so every such test is stated on the hinge risk, the quantity SGD minimises;
errors are reported beside it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theorylab.core.claims import Claim, ClaimContext, Control, Outcome
from theorylab.core.measures import r4, rows_below, small_group_size, zero_count_bound
from theorylab.edit import prune_rows_count
from theorylab.studies.lowrank.data import relevant_span
from theorylab.studies.lowrank.evaluate import (effective_rank, energy_top, evaluate, principal_angles, spectrum,
                                                truncated, updates)
from theorylab.studies.lowrank.model import ATTENTION

RANK_REL = 0.1
ENERGY = 0.9
ANGLE = math.pi / 8
STAY_SMALL = 0.1
EPS_MULT = 2.0
K_SWEEP = (2, 4, 6)
PRUNE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)  # R: fraction of the large rows pruned, largest first
SIDES = {"W_Q": ("right", "left"), "W_K": ("right", "left"), "W_V": ("right",)}


def _list(x) -> list[float]:
    return [r4(v) for v in torch.as_tensor(x).flatten().tolist()]


def _base(ctx: ClaimContext):
    cfgs = ctx.configs()
    params, cells = ctx.trained(cfgs)
    return cfgs, params, cells


def eps_hat(cfgs, ev: dict) -> torch.Tensor:
    """[E] the model's own test hinge risk (from evaluate's output), floored at 3/n_test."""
    return ev["loss"].clamp_min(zero_count_bound(cfgs[0].n_test))


def _sweep(ctx: ClaimContext) -> dict:
    """The seeds at every k_rel of K_SWEEP (and the base config's k_rel), trained as one sweep."""
    def compute():
        base_k = ctx.configs()[0].k_rel
        ks = sorted({*[k for k in K_SWEEP if k < ctx.configs()[0].M], base_k})
        per_k = {k: ctx.configs(k_rel=k) for k in ks}
        allc = [c for k in ks for c in per_k[k]]
        params, _ = ctx.trained(allc)
        out, n = {}, len(per_k[ks[0]])
        for i, k in enumerate(ks):
            cs = per_k[k]
            p = {name: v[i * n:(i + 1) * n] for name, v in params.items()}
            out[k] = {"cfgs": cs, "params": p, **_structure(cs, p, ctx.device)}
        return out
    return ctx.memo("lowrank:sweep", compute)


def _structure(cfgs, params, device) -> dict:
    """Spectra, effective ranks, energies and principal angles of dW_Q, dW_K, dW_V."""
    k = cfgs[0].k_rel
    span = relevant_span(cfgs, device)
    up = updates(params)
    out = {"spectrum": {}, "rank": {}, "energy": {}, "angle": {}, "angle_V_left": None}
    for w in ATTENTION:
        s = spectrum(up[w])
        out["spectrum"][w] = s / s[:, :1].clamp_min(1e-30)
        out["rank"][w] = effective_rank(s, RANK_REL)
        out["energy"][w] = energy_top(s, k)
        worst = [principal_angles(up[w], span, k, side).max(-1).values for side in SIDES[w]]  # [E] per side
        out["angle"][w] = torch.stack(worst).max(0).values
    out["angle_V_left"] = principal_angles(up["W_V"], span, k, "left").max(-1).values
    return out


def updates_low_rank(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    k = cfgs[0].k_rel
    st = ctx.memo("lowrank:structure", lambda: _structure(cfgs, params, ctx.device))
    ok = torch.ones(len(cfgs), dtype=torch.bool)
    for w in ATTENTION:
        ok &= (st["rank"][w] == k) & (st["energy"][w] >= ENERGY) & (st["angle"][w] <= ANGLE)
    tail = torch.stack([st["spectrum"][w][:, k] if st["spectrum"][w].shape[1] > k else torch.zeros(len(cfgs))
                        for w in ATTENTION]).max(0).values  # [E] worst sigma_{k+1} / sigma_1
    spectra = {w: st["spectrum"][w] for w in ATTENTION}
    return Outcome(
        ok.tolist(), f"largest sigma_(k+1)/sigma_1 over dW_Q, dW_K, dW_V (k = k_rel = {k})", tail.tolist(),
        f"for each of dW_Q, dW_K, dW_V: #{{sigma_i >= {RANK_REL} sigma_1}} = k_rel = {k}, top-{k} energy >= {ENERGY}, "
        f"largest principal angle of the top-{k} subspace to span{{relevant patterns}} <= pi/8 (row spaces; column "
        "spaces of dW_Q, dW_K)",
        "; ".join(f"{w}: rank {st['rank'][w].tolist()}, energy {_list(st['energy'][w])}, angle {_list(st['angle'][w])}"
                  for w in ATTENTION) + f"; dW_V column-space angle (not tested) {_list(st['angle_V_left'])}",
        {"k_rel": k, **{f"{w}_rank": st["rank"][w].tolist() for w in ATTENTION},
         **{f"{w}_energy_top_k": _list(st["energy"][w]) for w in ATTENTION},
         **{f"{w}_max_angle": _list(st["angle"][w]) for w in ATTENTION},
         **{f"{w}_sigma_over_sigma1": _list(spectra[w].mean(0)[: k + 4]) for w in ATTENTION}},
        {"spectra": {"k_rel": k, "rel": RANK_REL,
                     **{w: {"mean": spectra[w].mean(0).tolist(), "std": spectra[w].std(0).tolist()} for w in ATTENTION}}})


def rank_tracks_k_rel(ctx: ClaimContext) -> Outcome:
    sw = _sweep(ctx)
    ks = sorted(sw)
    E = len(ctx.configs())
    ok = torch.ones(E, dtype=torch.bool)
    for k in ks:
        for w in ATTENTION:
            ok &= sw[k]["rank"][w] == k
    top = ks[-1]
    key = torch.stack([sw[top]["rank"][w].float() for w in ATTENTION]).mean(0)
    table = {str(k): {w: r4(sw[k]["rank"][w].float().mean()) for w in ATTENTION} for k in ks}
    within = {str(k): {w: r4(sw[k]["spectrum"][w][:, 2:k].mean()) if k > 2 else None for w in ATTENTION} for k in ks}
    return Outcome(
        ok.tolist(), f"mean effective rank of dW_Q, dW_K, dW_V at k_rel = {top}", key.tolist(),
        f"effective rank (#{{sigma_i >= {RANK_REL} sigma_1}}) of each of dW_Q, dW_K, dW_V equals k_rel at every "
        f"k_rel in {ks} (the sweep of spec L2; k_rel/2 patterns per class)",
        f"mean effective rank by k_rel: {table}; mean sigma_3..sigma_k / sigma_1 (within-class directions): {within}",
        {"ranks": {str(k): {w: sw[k]["rank"][w].tolist() for w in ATTENTION} for k in ks}, "within_class_sigma": within,
         "energy_top_k": {str(k): {w: r4(sw[k]["energy"][w].mean()) for w in ATTENTION} for k in ks}},
        {"rank_vs_k": {"k": ks, "rel": RANK_REL, **{w: _rank_curve(sw, ks, w) for w in ATTENTION}}})


def _rank_curve(sw: dict, ks: list[int], w: str) -> dict:
    """Figure data: effective rank of dW mean and std over seeds by k_rel, and the mean normalised spectra."""
    ranks = [sw[k]["rank"][w].float() for k in ks]
    return {"mean": [float(r.mean()) for r in ranks], "std": [float(r.std()) if len(r) > 1 else 0.0 for r in ranks],
            "spectra": {str(k): sw[k]["spectrum"][w].mean(0)[: max(ks) + 3].tolist() for k in ks}}


def _split(params) -> dict:
    norms = params["W_O"].norm(dim=-1)  # [E, m]
    n_small = small_group_size(norms)
    small = rows_below(norms, n_small)
    return {"norms": norms, "n_small": n_small, "small": small,
            "update": (params["W_O"] - params["W_O0"]).norm(dim=-1), "init": params["W_O0"].norm(dim=-1)}


def _median_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    nan = x.new_tensor(float("nan"))
    return torch.stack([x[e][mask[e]].median() if mask[e].any() else nan for e in range(x.shape[0])])


def wo_rows_split(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    sp = _split(params)
    small_up, large_up = _median_where(sp["update"], sp["small"]), _median_where(sp["update"], ~sp["small"])
    ratio = small_up / large_up
    ok = ratio <= STAY_SMALL  # NaN (no split) fails
    m = params["W_O"].shape[1]
    order = sp["norms"].argsort(-1)
    return Outcome(
        ok.tolist(), "small rows' median update / large rows' median update", ratio.tolist(),
        f"W_O rows split at the largest ratio gap of the sorted norms; small rows' median ||dW_O[i]|| <= {STAY_SMALL} x "
        "the large rows' median",
        f"small rows {_list(sp['n_small'].float() / m)} of m; median update small {_list(small_up)} vs large "
        f"{_list(large_up)}; median init norm {r4(sp['init'].median())}",
        {"small_fraction": _list(sp["n_small"].float() / m), "small_update_median": _list(small_up),
         "large_update_median": _list(large_up)},
        {"wo_rows": {"norm": sp["norms"].gather(1, order).mean(0).tolist(),
                     "update": sp["update"].gather(1, order).mean(0).tolist(),
                     "init": sp["init"].gather(1, order).mean(0).tolist(),
                     "small_fraction": float(sp["n_small"].float().mean() / m)}})


def _pruning(ctx: ClaimContext) -> dict:
    def compute():
        cfgs, params, _ = _base(ctx)
        sp = _split(params)
        n_large = params["W_O"].shape[1] - sp["n_small"]
        ev = lambda n, which: evaluate({**params, "W_O": prune_rows_count(params["W_O"], n, which, model_axis=True)}, cfgs)  # noqa: E731
        return {"base": evaluate(params, cfgs), "small": ev(sp["n_small"], "smallest"),
                "largest_same": ev(sp["n_small"], "largest"), "n_small": sp["n_small"],
                "largest": {R: ev(torch.round(R * n_large.float()).long(), "largest") for R in PRUNE_FRACTIONS}}
    return ctx.memo("lowrank:pruning", compute)


def thm_pruning(ctx: ClaimContext) -> Outcome:
    cfgs, params, _ = _base(ctx)
    d = _pruning(ctx)
    bound = EPS_MULT * eps_hat(cfgs, d["base"])
    small_loss, small_err = d["small"]["loss"], d["small"]["error"]
    rise = torch.stack([d["largest"][R]["loss"] - d["base"]["loss"] for R in PRUNE_FRACTIONS])  # [R, E] hinge risk
    err_rise = torch.stack([d["largest"][R]["error"] - d["base"]["error"] for R in PRUNE_FRACTIONS])
    rates = torch.tensor(PRUNE_FRACTIONS)[:, None]
    slope = (rise * rates).sum(0) / (rates**2).sum()  # least squares through the origin
    err_slope = (err_rise * rates).sum(0) / (rates**2).sum()
    grows = (slope > 0) & (rise[-1] > rise[0])
    m = params["W_O"].shape[1]
    return Outcome(
        ((small_loss <= bound) & grows).tolist(), "hinge risk after pruning all small rows", small_loss.tolist(),
        f"pruning every small W_O row: hinge risk <= {EPS_MULT:g} x eps_hat (the unpruned model's own test hinge risk, "
        f">= 3/n_test); pruning a fraction R in {list(PRUNE_FRACTIONS)} of the large rows, largest first, raises the "
        f"hinge risk with a positive slope in R, more at R = {PRUNE_FRACTIONS[-1]} than at {PRUNE_FRACTIONS[0]}",
        f"small rows {_list(d['n_small'].float() / m)} of m; unpruned hinge {_list(d['base']['loss'])}, error "
        f"{_list(d['base']['error'])}; bound {_list(bound)}; error after pruning the small rows {_list(small_err)}; "
        f"hinge slope in R {_list(slope)} ('about R': 1); error slope in R {_list(err_slope)}; mean hinge by R: "
        f"{[r4(d['largest'][R]['loss'].mean()) for R in PRUNE_FRACTIONS]}, error by R: "
        f"{[r4(d['largest'][R]['error'].mean()) for R in PRUNE_FRACTIONS]}",
        {"small_fraction": _list(d["n_small"].float() / m), "small_pruned_hinge": _list(small_loss),
         "small_pruned_error": _list(small_err),
         "bound": _list(bound), "hinge_slope": _list(slope), "error_slope": _list(err_slope)},
        {"pruning": {"R": list(PRUNE_FRACTIONS), "error": [float(d["largest"][R]["error"].mean()) for R in PRUNE_FRACTIONS],
                     "loss": [float(d["largest"][R]["loss"].mean()) for R in PRUNE_FRACTIONS],
                     "base_error": float(d["base"]["error"].mean()), "base_loss": float(d["base"]["loss"].mean()),
                     "small_error": float(small_err.mean()), "small_loss": float(small_loss.mean()),
                     "bound": float(bound.mean())}},
        control=Control("pruning as many of the largest rows", (d["largest_same"]["loss"] <= bound).tolist(),
                        f"hinge {_list(d['largest_same']['loss'])}"))


def fig_truncation(ctx: ClaimContext) -> Outcome:
    sw = _sweep(ctx)
    ks = sorted(sw)
    ranks = list(range(0, max(ks) + 3))
    E = len(ctx.configs())
    ok = torch.ones(E, dtype=torch.bool)
    margin = torch.full((E,), float("inf"))
    curves, errors = {}, {}
    for k in ks:
        cs, p = sw[k]["cfgs"], sw[k]["params"]
        bound = EPS_MULT * eps_hat(cs, evaluate(p, cs))
        evs = [evaluate(truncated(p, r), cs) for r in ranks]
        err = torch.stack([e["loss"] for e in evs])  # [R, E] hinge risk
        errors[str(k)] = [r4(e["error"].mean()) for e in evs]
        keep = (err[k:] <= bound).all(0)
        degrade = err[k - 1] > bound
        ok &= keep & degrade
        margin = torch.minimum(margin, err[k - 1] - bound)
        curves[str(k)] = {"mean": err.mean(1).tolist(), "bound": float(bound.mean())}
    return Outcome(
        ok.tolist(), "min over k_rel of hinge(rank k_rel - 1) minus the bound", margin.tolist(),
        f"with dW_Q, dW_K, dW_V replaced by their best rank-r approximations: hinge risk <= {EPS_MULT:g} x eps_hat for every "
        f"r >= k_rel, and > {EPS_MULT:g} x eps_hat at r = k_rel - 1, at every k_rel in {ks}",
        "mean hinge by rank r = " + str(ranks) + ": " + "; ".join(f"k_rel {k}: {[r4(x) for x in curves[str(k)]['mean']]}"
                                                                for k in ks) + f"; mean error by rank: {errors}",
        {"ranks": ranks, "hinge_by_rank": {k: [r4(x) for x in v["mean"]] for k, v in curves.items()},
         "error_by_rank": errors},
        {"truncation": {"ranks": ranks, "curves": curves}})


def _lora(ctx: ClaimContext, r: int):
    return ctx.trained(ctx.configs(lora_rank=r))


def fig_lora(ctx: ClaimContext) -> Outcome:
    cfgs, params, cells = _base(ctx)
    k = cfgs[0].k_rel
    full = evaluate(params, cfgs)
    bound = EPS_MULT * eps_hat(cfgs, full)
    out, curves = {}, {"full": cells}
    for r in (k, k - 1):
        cs = ctx.configs(lora_rank=r)
        p, c = _lora(ctx, r)
        out[r] = evaluate(p, cs)
        curves[f"LoRA r={r}"] = c
    err = out[k]["loss"]
    steps = cells[0].curves["step"]
    loss = {name: np.array([c.curves["loss"] for c in cs]).mean(0).tolist() for name, cs in curves.items()}
    return Outcome(
        (err <= bound).tolist(), f"test hinge risk of rank-{k} LoRA updates trained from the start", err.tolist(),
        f"W_Q, W_K, W_V trained as W^(0) + B A with rank r = k_rel = {k} (W_O full; same lr, steps, data): hinge risk "
        f"<= {EPS_MULT:g} x eps_hat of full training",
        f"full training hinge {_list(full['loss'])}, error {_list(full['error'])}; bound {_list(bound)}; LoRA r = {k} "
        f"error {_list(out[k]['error'])}; LoRA r = {k - 1} hinge {_list(out[k - 1]['loss'])}, error "
        f"{_list(out[k - 1]['error'])}",
        {"lora_hinge": _list(err), "lora_error": _list(out[k]["error"]), f"lora_r{k - 1}_hinge": _list(out[k - 1]["loss"]),
         "full_hinge": _list(full["loss"]), "bound": _list(bound)},
        {"lora": {"steps": steps, "loss": loss, "hinge": {"full": float(full["loss"].mean()),
                                                          **{f"LoRA r={r}": float(v["loss"].mean()) for r, v in out.items()}}}})


CLAIMS = [
    Claim("updates_low_rank", "abstract / L1", "mechanism", "The updates of W_Q, W_K, W_V are low-rank, with effective "
          "rank the number of label-relevant patterns, and lie in those patterns' span.", updates_low_rank),
    Claim("rank_tracks_k_rel", "abstract / L2", "mechanism", "The updates' effective rank tracks the number of "
          "label-relevant patterns k_rel (swept).", rank_tracks_k_rel),
    Claim("wo_rows_split", "abstract (sparse W_O)", "mechanism", "W_O rows split into large rows and rows that stay "
          "near their initialisation.", wo_rows_split),
    Claim("thm_pruning", "abstract / ICL Thm 3 form", "theorem", "Magnitude pruning of the small W_O rows leaves the "
          "test risk nearly unchanged; pruning a fraction R of the large rows raises it, growing with R.", thm_pruning),
    Claim("fig_truncation", "L3", "figure", "Rank-r truncation of the W_Q, W_K, W_V updates keeps the test risk for "
          "r >= k_rel and degrades it below.", fig_truncation),
    Claim("fig_lora", "L3 (LoRA)", "figure", "A rank-k_rel LoRA-style update of W_Q, W_K, W_V trained from the start "
          "reaches the test risk of full training.", fig_lora),
]
