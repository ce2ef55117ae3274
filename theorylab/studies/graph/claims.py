"""The graph-transformer paper's statements as claims (core.claims on core.contract).

Trained cells (through ctx.trained, the sweep engine and the store): for each variant (gt, no_pe, gcn) the seeds x
n_label in LABEL_FACTORS x the base n_label, on one graph and one initialisation per seed (n_label, variant,
label_rule and hops are swept fields: common random numbers; the labelled sets are nested); the same grid with the
label set by the majority over the whole of T^n (label_rule = tokens: no core distance, a rule attention without PE
represents, so PE has nothing to promote: the controls' arm); gt with PE-based sampling (hops = z); the real graphs.

Thresholds are tied to chance, measured in the same run, never to gt's own error: "small error" is at most
FAR_FROM_CHANCE x chance, where chance is the test error of the best constant prediction on the seed's test nodes.

Expressivity, said beside the rankings: attention without PE is a function of the set of token features of T^n
(no distance enters), so wherever two nodes see the same pattern counts with different labels it must err on one
of them; `no_pe_floor` is the error of the best rule on (own pattern, #mu_+, #mu_- in T^n) over the test nodes
(fitted in-sample, so optimistic for no_pe). A ranking against a variant whose floor is far above the target is an
expressivity gap, not a sample-complexity gap: that is why these rankings are `figure` claims.
"""
from __future__ import annotations

import numpy as np
import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import (CLOSE_GAP, FAR_FROM_CHANCE, MAIN, Above, AtLeast, AtMost, ControlArm, Criterion,
                                     Holds, Measurement, Reference, short)
from theorylab.core.measures import first_crossing, gap_closed
from theorylab.studies.graph.data import build_graph, graphs

VARIANTS = ("gt", "no_pe", "gcn")
LABEL_FACTORS = (0.125, 0.25, 0.5, 1.0)  # n_label grid as fractions of the base config's n_label
TOKENS = "tokens"  # the control arm: label = majority over T^n, no core distance
REAL_PLANTED = ("karate", "les_miserables")  # florentine: 11 untied nodes, too few to split
REAL_KNN = {"quick": ("cancer_knn",), "full": ("cancer_knn", "digits_knn")}
REAL_LABEL_SHARE = 0.5  # planted graphs: half their untied nodes labelled
KNN_LABEL_SHARE = 0.1  # k-NN graphs: 10% of the nodes labelled
CPU = torch.device("cpu")


def label_grid(ctx: ClaimContext) -> list[int]:
    n = ctx.configs()[0].n_label
    return sorted({max(2, int(round(f * n))) for f in LABEL_FACTORS})


def _rule(arm: str) -> str:
    return "core" if arm == MAIN else TOKENS


def sweep(ctx: ClaimContext, arm: str) -> dict:
    """{variant: {"err": [G, E] final test error, "last": cells at the largest n_label}} on the arm's label rule."""
    def compute():
        grid = label_grid(ctx)
        out = {}
        for v in VARIANTS:  # one trained call per variant: their weights have different names
            by_n = ctx.sweep("n_label", grid, variant=v, label_rule=_rule(arm))
            cells = ctx.trained([c for n in grid for c in by_n[n]])[1]
            E = len(by_n[grid[0]])
            err = np.array([[cells[j * E + e].metrics["test_error"] for e in range(E)] for j in range(len(grid))])
            out[v] = {"err": torch.tensor(err, dtype=torch.float64), "last": cells[(len(grid) - 1) * E:]}
        return {"grid": grid, "by": out}
    return ctx.memo(f"graph:sweep:{arm}", compute)


def _chance(ctx: ClaimContext) -> torch.Tensor:
    """[E]: the test error of the best constant prediction (the minority label's share of the test nodes)."""
    g = graphs(ctx.configs(), CPU)
    pos = ((g.y > 0) & g.test).sum(1).double() / g.test.sum(1).clamp_min(1)
    return torch.minimum(pos, 1 - pos)


CHANCE = Reference("chance", "the test error of the best constant prediction on the seed's test nodes", _chance)


def target(ctx: ClaimContext) -> torch.Tensor:
    return FAR_FROM_CHANCE * ctx.reference(CHANCE)


def no_pe_floor(ctx: ClaimContext, arm: str) -> torch.Tensor:
    """[E]: the error of the best rule on (own pattern, #mu_+, #mu_- in T^n) over the test nodes (in-sample)."""
    def compute():
        out = []
        for c in ctx.configs(label_rule=_rule(arm)):
            g = build_graph(c)
            kinds = np.where(g.tok_mask, g.kind[g.tok], 0)
            key = np.stack([g.kind, (kinds == 1).sum(1), (kinds == -1).sum(1)], 1)
            test = g.order[c.n_label:g.n_valid]
            _, group = np.unique(key[test], axis=0, return_inverse=True)
            pos = np.bincount(group.ravel(), g.y[test] > 0)
            size = np.bincount(group.ravel())
            out.append(float(np.minimum(pos, size - pos).sum() / max(1, len(test))))
        return torch.tensor(out, dtype=torch.float64)
    return ctx.memo(f"graph:floor:{arm}", compute)


def core_coverage(ctx: ClaimContext) -> list[float]:
    return [round(build_graph(c).core_coverage(c.z_m), 4) for c in ctx.configs()]


def _censored_as_beyond(x: torch.Tensor, censored: torch.Tensor, beyond: float) -> torch.Tensor:
    """A count not reached within the grid only says "beyond it": it enters a ranking as `beyond`, never a fit."""
    return torch.where(censored, torch.full_like(x, beyond), x)


def _ranking(need: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(margin, ratio) [E]: min over no_pe and gcn of what they need, minus (over) what gt needs."""
    other = torch.minimum(need["no_pe"], need["gcn"])
    return other - need["gt"], other / need["gt"].clamp_min(1)


def _expressivity(ctx: ClaimContext, arm: str, sw: dict) -> tuple[str, dict]:
    floor = no_pe_floor(ctx, arm)
    train = {v: short([c.metrics["train_error"] for c in sw["by"][v]["last"]]) for v in VARIANTS}
    tgt = target(ctx)
    blind = int((floor > tgt).sum())
    text = (f"no_pe's floor (best rule on the pattern counts of T^n: distance-blind attention sees no more) "
            f"{short(floor)}, above the target {short(tgt)} on {blind}/{len(floor)} seeds (there no_pe cannot reach "
            f"it at any n_label: an expressivity gap); train error at the largest n_label {train}; core coverage of "
            f"T^n {core_coverage(ctx)}")
    return text, {"no_pe_floor": short(floor), "train_error_at_largest": train, "core_coverage": core_coverage(ctx)}


# ---- sample complexity and iterations: rankings of variants (figure claims) ----
def measure_labels(ctx: ClaimContext, arm: str) -> Measurement:
    sw, tgt = sweep(ctx, arm), target(ctx)
    grid = sw["grid"]
    need, censored = {}, {}
    for v in VARIANTS:
        x, cens = first_crossing(sw["by"][v]["err"] <= tgt, grid)
        need[v], censored[v] = _censored_as_beyond(x, cens, 2 * grid[-1]), cens
    margin, ratio = _ranking(need)
    mean_err = {v: short(sw["by"][v]["err"].mean(1)) for v in VARIANTS}
    text, numbers = _expressivity(ctx, arm, sw)
    return Measurement(
        {"label_margin": margin, "labels_ratio": ratio, "gt_error": sw["by"]["gt"]["err"][-1]},
        f"labels needed per seed ({2 * grid[-1]} = not reached on {grid}): "
        + "; ".join(f"{v} {need[v].long().tolist()}" for v in VARIANTS)
        + f"; mean test error over n_label: " + "; ".join(f"{v} {mean_err[v]}" for v in VARIANTS) + f"; {text}",
        {"grid": grid, "target": short(tgt), "needed": {v: need[v].long().tolist() for v in VARIANTS},
         "censored": {v: censored[v].tolist() for v in VARIANTS},
         "test_error": {v: sw["by"][v]["err"].tolist() for v in VARIANTS}, **numbers},
        {"sample_complexity": {"grid": grid, "target": float(tgt.mean()), "mean": mean_err,
                               "std": {v: short(sw["by"][v]["err"].std(1)) if sw["by"][v]["err"].shape[1] > 1
                                       else [0.0] * len(grid) for v in VARIANTS}}} if arm == MAIN else {})


def measure_iterations(ctx: ClaimContext, arm: str) -> Measurement:
    sw, tgt = sweep(ctx, arm), target(ctx)
    last = {v: sw["by"][v]["last"] for v in VARIANTS}
    marks = last["gt"][0].curves["step"]
    curves = {v: torch.tensor([c.curves["test_error"] for c in last[v]], dtype=torch.float64) for v in VARIANTS}
    need = {}
    for v in VARIANTS:
        x, cens = first_crossing((curves[v] <= tgt[:, None]).T, marks)
        need[v] = _censored_as_beyond(x, cens, marks[-1] + 1)
    margin, ratio = _ranking(need)
    text, numbers = _expressivity(ctx, arm, sw)
    return Measurement(
        {"step_margin": margin, "steps_ratio": ratio, "gt_error": curves["gt"][:, -1]},
        f"at n_label {sw['grid'][-1]}, steps needed per seed ({marks[-1] + 1} = not within {marks[-1]}): "
        + "; ".join(f"{v} {need[v].long().tolist()}" for v in VARIANTS) + f"; {text}",
        {"needed": {v: need[v].long().tolist() for v in VARIANTS}, "target": short(tgt), **numbers},
        {"training_curves": {"steps": marks, "target": float(tgt.mean()),
                             "mean": {v: short(curves[v].mean(0)) for v in VARIANTS},
                             "std": {v: short(curves[v].std(0)) for v in VARIANTS}}} if arm == MAIN else {})


# ---- what training does ----
def measure_attention(ctx: ClaimContext, arm: str) -> Measurement:
    cells = sweep(ctx, arm)["by"]["gt"]["last"]
    m = {k: torch.tensor([c.metrics[k] for c in cells], dtype=torch.float64) for k in
         ("attn_relevant", "untrained_attn_relevant", "attn_consistent", "untrained_attn_consistent",
          "attn_eff", "untrained_attn_eff")}
    closed = gap_closed(m["untrained_attn_relevant"], m["attn_relevant"], target=1.0)
    steps = cells[0].curves["step"]
    trace = {k: np.array([c.curves[f"attn_{k}"] for c in cells]).mean(0).tolist()
             for k in ("relevant", "consistent", "core")}
    return Measurement(
        {"gap_closed": closed},
        f"class-relevant mass {m['untrained_attn_relevant'].mean():.2f} -> {m['attn_relevant'].mean():.2f}; "
        f"label-consistent {m['untrained_attn_consistent'].mean():.2f} -> {m['attn_consistent'].mean():.2f}; "
        f"tokens attended (exp entropy) {m['untrained_attn_eff'].mean():.1f} -> {m['attn_eff'].mean():.1f}",
        {k: short(v) for k, v in m.items()},
        {"attention_mass": {"steps": steps, **trace, "std": {
            k: np.array([c.curves[f"attn_{k}"] for c in cells]).std(0).tolist() for k in trace}}} if arm == MAIN else {})


def measure_pe_core(ctx: ClaimContext, arm: str) -> Measurement:
    cells = sweep(ctx, arm)["by"]["gt"]["last"]
    Z = ctx.configs()[0].Z
    z_m = torch.tensor([c.z_m for c in ctx.configs()])
    b = torch.tensor([[c.metrics[f"b{z}"] for z in range(Z + 1)] for c in cells], dtype=torch.float64)  # [E, Z+1]
    at_core = b.gather(1, z_m[:, None])[:, 0]
    others = b.masked_fill(torch.arange(Z + 1)[None] == z_m[:, None], -torch.inf).max(1).values
    traj = {str(z): np.array([c.curves[f"b{z}"] for c in cells]).mean(0).tolist() for z in range(Z + 1)}
    return Measurement(
        {"pe_margin": at_core - others},
        f"mean trained b_z for z = 0..{Z}: {short(b.mean(0))}; argmax per seed {b.argmax(1).tolist()} "
        f"(z_m = {z_m.tolist()})",
        {"b": b.tolist(), "argmax": b.argmax(1).tolist()},
        {"pe_trajectories": {"steps": cells[0].curves["step"], "z_m": int(z_m[0]), "b": traj, "b_std": {
            str(z): np.array([c.curves[f"b{z}"] for c in cells]).std(0).tolist() for z in range(Z + 1)}}}
        if arm == MAIN else {})


def measure_fig8(ctx: ClaimContext, arm: str) -> Measurement:
    Z = ctx.configs()[0].Z
    b = torch.tensor([[c.metrics[f"b{z}"] for z in range(1, Z + 1)] for c in sweep(ctx, MAIN)["by"]["gt"]["last"]],
                     dtype=torch.float64)  # [E, Z]
    by_hop = ctx.sweep("hops", list(range(1, Z + 1)))
    cells = ctx.trained([c for z in range(1, Z + 1) for c in by_hop[z]])[1]
    E = len(by_hop[1])
    acc = torch.tensor([[1 - cells[(z - 1) * E + e].metrics["test_error"] for z in range(1, Z + 1)] for e in range(E)],
                       dtype=torch.float64)
    tau = torch.tensor([_kendall(b[e], acc[e]) for e in range(E)], dtype=torch.float64)
    same = b.argmax(1) == acc.argmax(1)
    return Measurement(
        {"kendall_tau": tau, "argmax_agrees": same},
        f"mean b_z (z = 1..{Z}) {short(b.mean(0))}; mean accuracy training on hop z only {short(acc.mean(0))}; "
        f"argmax agree on {int(same.sum())}/{E}",
        {"b": b.tolist(), "accuracy_by_hop": acc.tolist()},
        {"pe_sampling": {"z": list(range(1, Z + 1)), "b": short(b.mean(0)), "acc": short(acc.mean(0)),
                         "b_std": short(b.std(0)) if E > 1 else [0.0] * Z,
                         "acc_std": short(acc.std(0)) if E > 1 else [0.0] * Z}})


def _kendall(a: torch.Tensor, b: torch.Tensor) -> float:
    n, s = len(a), 0.0
    for i in range(n):
        for j in range(i + 1, n):
            s += float(torch.sign(a[i] - a[j]) * torch.sign(b[i] - b[j]))
    return s / max(1, n * (n - 1) / 2)


# ---- real graphs ----
def _real(ctx: ClaimContext, graphs_: tuple[str, ...], share: float) -> dict:
    """{graph: {variant: cells [E]}} trained with n_label = share x untied nodes."""
    def compute():
        out = {}
        for name in graphs_:
            n_valid = build_graph(ctx.configs(graph=name)[0]).n_valid
            n = max(2, min(n_valid - 2, int(round(share * n_valid))))
            out[name] = {v: ctx.trained(ctx.configs(graph=name, variant=v, n_label=n))[1] for v in VARIANTS}
            out[name]["n_label"] = n
        return out
    return ctx.memo(f"graph:real:{','.join(graphs_)}", compute)


def _measure_real(ctx: ClaimContext, data: dict, figure: str) -> Measurement:
    Z = ctx.configs()[0].Z
    E = len(ctx.configs())
    margin, at_core = torch.full((E,), torch.inf, dtype=torch.float64), torch.ones(E, dtype=torch.bool)
    err, prof, parts, err_sd, prof_sd = {}, {}, [], {}, {}
    for name, d in data.items():
        e = {v: torch.tensor([c.metrics["test_error"] for c in d[v]], dtype=torch.float64) for v in VARIANTS}
        b = torch.tensor([[c.metrics[f"b{z}"] for z in range(Z + 1)] for c in d["gt"]], dtype=torch.float64)
        margin = torch.minimum(margin, torch.minimum(e["no_pe"], e["gcn"]) - e["gt"])
        at_core &= b.argmax(1) == torch.tensor([c.config["z_m"] for c in d["gt"]])
        err[name] = {v: short([e[v].mean()]) for v in VARIANTS}
        prof[name] = short(b.mean(0))
        err_sd[name] = {v: short([e[v].std() if len(e[v]) > 1 else 0.0]) for v in VARIANTS}
        prof_sd[name] = short(b.std(0)) if len(b) > 1 else [0.0] * (Z + 1)
        parts.append(f"{name} (n_label {d['n_label']}): test error " + ", ".join(f"{v} {e[v].mean():.3f}" for v in VARIANTS)
                     + f"; b_0..b_{Z} {short(b.mean(0))}, argmax per seed {b.argmax(1).tolist()}")
    return Measurement({"error_margin": margin, "pe_at_core": at_core}, "; ".join(parts),
                       {"test_error": err, "b_profile": prof}, {figure: {"test_error": err, "b": prof,
                                                                           "test_error_std": err_sd, "b_std": prof_sd,
                                                                           "seeds": len(b)}})


def measure_real_planted(ctx: ClaimContext, arm: str) -> Measurement:
    return _measure_real(ctx, _real(ctx, REAL_PLANTED, REAL_LABEL_SHARE), "real_planted")


def measure_real_knn(ctx: ClaimContext, arm: str) -> Measurement:
    return _measure_real(ctx, _real(ctx, REAL_KNN["full" if ctx.size == "full" else "quick"], KNN_LABEL_SHARE),
                         "real_knn")


TOKENS_ARM = ControlArm(TOKENS, "the label is the majority over all of T^n (no core distance: PE has nothing to "
                                "promote and no_pe represents the rule)")
SMALL = FAR_FROM_CHANCE * CHANCE

CLAIMS = [
    Claim("fig_labels", "Thm (sample complexity) / TL;DR", "figure", "With a core neighbourhood at distance z_m, the "
          "graph transformer with trainable PE reaches small test error with fewer labelled nodes than the same model "
          "without PE and than a GCN (a ranking of variants; where a variant cannot represent the label the gap is "
          "one of expressivity, which the summary says).", seeds=5, measure=measure_labels,
          criterion=Criterion(Above("label_margin", 0.0, "labels needed by the better of no_pe and gcn minus by gt "
                                    "(first n_label on the grid with test error <= the target; not reached = "
                                    "2 x the largest)"),
                              AtMost("gt_error", SMALL, "gt's test error at the largest n_label"),
                              key="labels_ratio"),
          control=TOKENS_ARM),
    Claim("fig_iterations", "Thm (iterations) / TL;DR", "figure", "It also needs fewer SGD iterations than the "
          "variants to reach small test error (a ranking of variants, like fig_labels).", seeds=5,
          measure=measure_iterations,
          criterion=Criterion(Above("step_margin", 0.0, "steps needed by the better of no_pe and gcn minus by gt at "
                                    "the largest n_label (first checkpoint with test error <= the target; not "
                                    "reached = steps + 1)"),
                              AtMost("gt_error", SMALL, "gt's final test error at the largest n_label"),
                              key="steps_ratio"),
          control=TOKENS_ARM),
    Claim("mech_attention", "attention sparsity", "mechanism", "Training concentrates the attention on "
          "class-relevant nodes of the core neighbourhood (a sparse attention map).", seeds=5,
          measure=measure_attention,
          criterion=Criterion(AtLeast("gap_closed", CLOSE_GAP, "share of the untrained attention mass's gap to 1 on "
                                      "class-relevant nodes (distance z_m, discriminative) closed by training")),
          control=TOKENS_ARM),
    Claim("mech_pe_core", "PE promotes the core", "mechanism", "The trained relative PE b_z is largest at the core "
          "distance z_m.", seeds=5, measure=measure_pe_core,
          criterion=Criterion(Above("pe_margin", 0.0, "b_{z_m} minus the largest other b_z")), control=TOKENS_ARM),
    Claim("fig8_pe_sampling", "Fig. 8", "figure", "The ordering of b_z over z matches the ordering of test accuracy "
          "when T^n holds only the distance-z neighbourhood (PE-based sampling).", seeds=5, measure=measure_fig8,
          criterion=Criterion(Above("kendall_tau", 0.0, "Kendall tau of b_z against hop-z-only accuracy over z = 1..Z"),
                              Holds("argmax_agrees", meaning="the hop with the largest b_z (z >= 1) gives the best "
                                    "hop-only accuracy"))),
    Claim("fig_real_planted", "TL;DR on real graphs", "figure", "On networkx's bundled graphs (karate club, Les "
          "Miserables) with the data model's planted features, gt+PE is at least as accurate as no_pe and gcn, and "
          "b_z peaks at the planted z_m.", seeds=5, measure=measure_real_planted,
          criterion=Criterion(AtLeast("error_margin", 0.0, "smallest (better variant's error - gt's error) over the "
                                      "graphs"),
                              Holds("pe_at_core", meaning="argmax_z b_z = z_m (the planted core distance) on every "
                                    "graph"))),
    Claim("fig_real_knn", "TL;DR / Table (real data)", "figure", "On k-NN graphs of scikit-learn data sets with their "
          "own features and labels, gt+PE is at least as accurate as no_pe and gcn (the paper's real-data "
          "direction).", seeds=5, measure=measure_real_knn,
          criterion=Criterion(AtLeast("error_margin", 0.0, "smallest (better variant's error - gt's error) over the "
                                      "graphs"))),
]
