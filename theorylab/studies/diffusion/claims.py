"""The abstract's claims (section 4.1/4.5 of the spec) on the kit (core.claims on core.contract).

Every limit is a core constant times a quantity the same run measures on the same test data points:
- convergence: at every noise level where the components are separated (sqrt(abar) r >= 3 s_t, data.separated)
  the trained denoiser's excess risk over the Bayes denoiser is at most O_EPS x the excess of the true-assignment
  mean denoiser (data.mean_denoiser: the estimator the paper says attention learns, measured, not a formula);
- tokens: the excess share (excess / untrained excess) falls with N (log-log slope < 0, a figure); the mean
  denoiser's own slope on the same data is reported beside the spec's -1;
- mechanism: at the separated levels training closes at least CLOSE_GAP of the gap between uniform attention's
  same-component mass and 1, and the output is nearer the oracle than the global-mean model's (W = 0);
- sampling (figure): the trained denoisers in the DDPM sampler on the t_grid give centre errors and variance
  errors at most O_EPS x those of the closed-form Bayes denoiser in the same sampler from the same noise.
The W = 0 control trains on the same data points (freeze_attention is a swept field: common random numbers).
"""
from __future__ import annotations

import math

import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import (CLOSE_GAP, MAIN, O_EPS, Above, AtLeast, AtMost, Below, ControlArm, Criterion,
                                     Hypothesis, Measurement, Reference, short)
from theorylab.core.measures import log_log_slope, r4
from theorylab.studies.diffusion.data import separated
from theorylab.studies.diffusion.evaluate import abar_list, generate, measure, sample_statistics

FROZEN = "W=0"


def _measured(ctx: ClaimContext, **changes) -> dict:
    def compute():
        cfgs = ctx.configs(**changes)
        params, cells = ctx.trained(cfgs)
        return {"cfgs": cfgs, "params": params, "cells": cells, **measure(cfgs, params, ctx.device)}
    return ctx.memo("diff:measure:" + repr(sorted(changes.items())), compute)


def _arm(ctx: ClaimContext, arm: str, **changes) -> dict:
    return _measured(ctx, **changes) if arm == MAIN else _measured(ctx, freeze_attention=True, **changes)


def _separated_levels(ctx: ClaimContext) -> str | None:
    cfg = ctx.configs()[0]
    if any(separated(cfg)):
        return None
    return f"no level of t_grid {list(cfg.t_grid)} has sqrt(abar) r >= 3 s_t (r = {cfg.r}, sigma0 = {cfg.sigma0})"


SEPARATED = Hypothesis("some noise level of t_grid has well separated components (sqrt(abar_t) r >= 3 s_t); the "
                       "claim is graded at those levels", _separated_levels)


# ---- convergence: excess_t <= O_EPS x the mean denoiser's excess_t at every separated level ----
def measure_convergence(ctx: ClaimContext, arm: str) -> Measurement:
    m, ref = _arm(ctx, arm), _measured(ctx)
    cfg = m["cfgs"][0]
    sep = torch.tensor(separated(cfg))
    md = ref["md_excess"][:, sep]  # the main arm's mean denoiser on the same test data (the reference of both arms)
    ratio = torch.where(md > 0, m["excess"][:, sep] / md.clamp_min(1e-30), torch.full_like(md, math.nan))
    worst = ratio.nan_to_num(math.inf).max(-1).values
    t_sep = [t for t, s in zip(cfg.t_grid, sep.tolist()) if s]
    share = m["excess"] / m["init_excess"]
    figures = {}
    if arm == MAIN:
        curves = [cell.curves for cell in m["cells"]]
        ctl = [cell.curves for cell in _measured(ctx, freeze_attention=True)["cells"]]
        figures = {"excess_vs_iteration": {"steps": curves[0]["step"], "excess": [c["excess"] for c in curves],
                                           "control": [c["excess"] for c in ctl], "t_grid": list(cfg.t_grid)}}
    return Measurement(
        {"excess_ratio": worst},
        f"separated levels {t_sep}; excess / mean-denoiser excess per level (seed mean) {short(ratio.mean(0))}; "
        f"excess share of the untrained excess per t {list(cfg.t_grid)} {short(share.mean(0))}; mean denoiser's "
        f"share {short((ref['md_excess'] / ref['init_excess']).mean(0))} (K^2/(N d) = {r4(cfg.K**2 / (cfg.N * cfg.d))})",
        {"separated_t": t_sep, "ratio_by_separated_t": short(ratio.mean(0)), "share_by_t": short(share.mean(0)),
         "md_share_by_t": short((ref["md_excess"] / ref["init_excess"]).mean(0)), "abar": short(abar_list(cfg))},
        figures)


# ---- tokens per data point (a rate: figure) ----
def _sweep(ctx: ClaimContext, arm: str, ns) -> dict:
    def compute():
        share, md, rel = [], [], []
        for n in ns:
            m = _arm(ctx, arm, N=n)
            share.append((m["excess"] / m["init_excess"]).mean(-1))  # [E]
            md.append((m["md_excess"] / m["init_excess"]).mean(-1))
            rel.append(m["rel_err"].mean(-1))
        return {"share": torch.stack(share), "md": torch.stack(md), "rel_err": torch.stack(rel)}  # [n, E]
    return ctx.memo(f"diff:sweep:{arm}:{tuple(ns)}", compute)


def measure_tokens(ctx: ClaimContext, arm: str) -> Measurement:
    ns = ctx.configs()[0].n_sweep
    ns = ns if arm == MAIN else (ns[0], ns[-1])  # the W = 0 control at the ends of the sweep
    s = _sweep(ctx, arm, ns)
    slope, _ = log_log_slope(ns, s["share"])
    md_slope, _ = log_log_slope(ns, s["md"])
    figures = {}
    if arm == MAIN:
        c = _sweep(ctx, FROZEN, (ns[0], ns[-1]))
        figures = {"excess_vs_tokens": {"N": list(ns), "share": s["share"].T.tolist(), "control_N": [ns[0], ns[-1]],
                                        "control": c["share"].T.tolist(), "mean_denoiser": s["md"].mean(1).tolist()}}
    return Measurement(
        {"slope": slope}, f"N {list(ns)}: excess share (seed mean) {short(s['share'].mean(1))}; mean denoiser's share "
        f"{short(s['md'].mean(1))}, slope {short(md_slope, 3)} (spec: -1); relative error to the oracle "
        f"{short(s['rel_err'].mean(1))}",
        {"N": list(ns), "share": [short(v) for v in s["share"]], "md_slope": short(md_slope)}, figures)


# ---- mechanism: attention concentrates on the own component at the separated levels ----
def alignment(W: torch.Tensor, K: int) -> torch.Tensor:
    """W [E, G, d, d] -> [E, G]: ||P_U Q||_F^2 / K for Q the top-K eigenvectors (by |eigenvalue|) of (W + W^T)/2,
    U = span{e_1..e_K}: 1 when the top-K eigenspace is U (principal angles 0), about K/d at random."""
    ev, Q = torch.linalg.eigh((W + W.transpose(-1, -2)).double() / 2)
    top = ev.abs().argsort(-1, descending=True)[..., :K]  # [E, G, K]
    Qk = Q.gather(-1, top[..., None, :].expand(*Q.shape[:-1], K))  # [E, G, d, K]
    return (Qk[..., :K, :] ** 2).sum((-1, -2)).float() / K


def measure_mechanism(ctx: ClaimContext, arm: str) -> Measurement:
    m, ctl = _measured(ctx), _measured(ctx, freeze_attention=True)
    cfg = m["cfgs"][0]
    sep = torch.tensor(separated(cfg))
    closed = ((m["same_mass"] - m["uniform_mass"]) / (1 - m["uniform_mass"]).clamp_min(1e-12))[:, sep]
    margin = (ctl["rel_err"] - m["rel_err"])[:, sep]
    align = alignment(m["params"]["W"].nan_to_num(0.0), cfg.K)  # [E, G]
    return Measurement(
        {"mass_gap_closed": closed.min(-1).values, "rel_err_margin": margin.min(-1).values},
        f"same-component mass per t {list(cfg.t_grid)} {short(m['same_mass'].mean(0))} (uniform "
        f"{short(m['uniform_mass'].mean(0))}); relative error to the oracle {short(m['rel_err'].mean(0))} vs global "
        f"mean {short(ctl['rel_err'].mean(0))}; top-K eigenspace of W in U (1 = aligned, {r4(cfg.K / cfg.d)} at "
        f"random) {short(align.mean(0))}",
        {"same_mass": short(m["same_mass"].mean(0)), "W_alignment": short(align.mean(0)),
         "rel_err": short(m["rel_err"].mean(0)), "rel_err_global_mean": short(ctl["rel_err"].mean(0)),
         "separated": sep.tolist()},
        {"attention_mass": {"t": list(cfg.t_grid), "mass": m["same_mass"].tolist(),
                            "uniform": short(m["uniform_mass"].mean(0)), "rel_err": m["rel_err"].tolist(),
                            "rel_err_global": ctl["rel_err"].tolist()}})


# ---- sampling (figure): the trained denoisers against the Bayes denoiser in the same sampler ----
def _sample_errors(ctx: ClaimContext, bayes: bool) -> dict[str, torch.Tensor]:
    def compute():
        m = _measured(ctx)
        X = generate(m["cfgs"], None if bayes else m["params"], ctx.device)
        st = sample_statistics(m["cfgs"], X)
        return {**st, "x": X[0, :, :, :2].flatten(0, 1)[:2000], "centre_err": st["centre_err"].nan_to_num(math.inf).max(-1).values,
                "var_err": st["var_ratio"].clamp_min(1e-12).log().abs().nan_to_num(math.inf).max(-1).values}
    return ctx.memo(f"diff:samples:{bayes}", compute)


BAYES_CENTRE = Reference("bayes_centre_err", "max_k ||sample mean_k - mu_k|| / r of the Bayes denoiser in the same "
                         "sampler from the same noise", lambda ctx: _sample_errors(ctx, True)["centre_err"])
BAYES_VAR = Reference("bayes_var_err", "max_k |log(sample variance_k / sigma0^2)| of the Bayes denoiser in the same "
                      "sampler", lambda ctx: _sample_errors(ctx, True)["var_err"])


def measure_sampling(ctx: ClaimContext, arm: str) -> Measurement:
    st = _sample_errors(ctx, False)
    cfg = ctx.configs()[0]
    return Measurement(
        {"centre_err": st["centre_err"], "var_err": st["var_err"]},
        f"weights (seed 0) {short(st['weights'][0])} (Bayes sampler {short(_sample_errors(ctx, True)['weights'][0])}); "
        f"variance / sigma0^2 (seed 0) {short(st['var_ratio'][0])} (Bayes sampler "
        f"{short(_sample_errors(ctx, True)['var_ratio'][0])}); mean token norm {short(st['mean_norm'])} (r = {cfg.r})",
        {"weights": [short(w) for w in st["weights"]], "var_ratio": [short(x) for x in st["var_ratio"]]},
        {"generated_tokens": {"x": st["x"].tolist(), "r": cfg.r, "K": cfg.K}})


CLAIMS = [
    Claim("thm_convergence", "Thm (convergence)", "theorem", "Gradient descent on the population DDPM loss drives the "
          "risk to the Bayes risk up to the mean-denoising term, at every noise level where the components are "
          "separated.", measure=measure_convergence,
          criterion=Criterion(AtMost("excess_ratio", O_EPS, "max over the separated levels of (test risk - Bayes "
                                     "risk) / (mean-denoiser risk - Bayes risk), the mean denoiser measured on the "
                                     "same test data")),
          hypotheses=(SEPARATED,), control=ControlArm(FROZEN, "attention frozen at W = 0 (the global token mean)")),
    Claim("thm_tokens", "Thm (tokens per data point)", "figure", "The excess risk over the Bayes risk shrinks as the "
          "number of tokens per data point grows (spec: like 1/N; a rate: a figure claim).", measure=measure_tokens,
          criterion=Criterion(Below("slope", 0.0, "log-log slope of the excess share (mean over t of excess_t / "
                                    "untrained excess_t) against N")),
          control=ControlArm(FROZEN, "attention frozen at W = 0, at the ends of the N sweep")),
    Claim("mech_mean_denoising", "Mechanism", "mechanism", "The trained attention implements mean denoising: its mass "
          "concentrates on same-component tokens and the output approaches the oracle MMSE estimator.",
          measure=measure_mechanism, hypotheses=(SEPARATED,),
          criterion=Criterion(AtLeast("mass_gap_closed", CLOSE_GAP, "share of uniform attention's same-component "
                                      "mass gap to 1 closed, worst separated level"),
                              Above("rel_err_margin", 0.0, "global-mean model's relative error to the oracle minus "
                                    "the trained one's, worst separated level"))),
    Claim("fig_sampling", "Sampling (spec 4.5.5)", "figure", "DDPM sampling with the trained denoisers reproduces the "
          "mixture's component means and covariances as well as the Bayes denoiser does in the same sampler.",
          measure=measure_sampling,
          criterion=Criterion(AtMost("centre_err", O_EPS * BAYES_CENTRE, "max_k ||sample mean_k - mu_k|| / r"),
                              AtMost("var_err", O_EPS * BAYES_VAR, "max_k |log(sample variance_k / sigma0^2)|"))),
]
