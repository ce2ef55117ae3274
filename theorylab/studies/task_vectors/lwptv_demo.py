"""Issue 5's demonstration on the theory models: in-domain (T1, T2) vs out-of-domain (T') accuracy of a
merge Psi0 + dPsi_T1 + dPsi_T2, with and without LwPTV (theorylab.edit.lwptv_masks, model_axis=True).

Local adapter (marked): the one-layer model has no blocks, so W (attention) and V (value) are named
"blocks.0.W" and "blocks.1.V" for LwPTV's layer grouping; with ratio 0.5 each task keeps one of the two.
"""
from __future__ import annotations

import torch

from theorylab.edit import TaskVector, apply_layer_masks, lwptv_masks
from theorylab.studies.task_vectors.evaluate import Experiment, evaluate_grid

_AS_BLOCKS = {"W": "blocks.0.W", "V": "blocks.1.V"}  # adapter: tensor name -> LwPTV block name


def _blocks(d) -> dict[str, torch.Tensor]:
    return {_AS_BLOCKS[k]: v for k, v in d.items()}


def _unblocks(d) -> dict[str, torch.Tensor]:
    back = {v: k for k, v in _AS_BLOCKS.items()}
    return {back[k]: v for k, v in d.items()}


def masked_tvs(ex: Experiment, score: str, ratio: float) -> tuple[dict[str, TaskVector], list[str]]:
    names = list(ex.tvs)
    tvs = [_blocks(ex.tvs[t]) for t in names]
    masks = lwptv_masks(tvs, _blocks(ex.base), ratio, score=score, model_axis=True)
    out = apply_layer_masks(tvs, masks, model_axis=True)
    pruned = [f"{t}: " + "/".join(f"{float((~masks.keep[i, l]).float().mean()):.0%} {['W', 'V'][l]}"
                                  for l in range(len(masks.layers))) for i, t in enumerate(names)]
    return {t: TaskVector(vector=_unblocks(v)) for t, v in zip(names, out)}, pruned


def lwptv_table(ex: Experiment, ratio: float = 0.5) -> dict:
    """Accuracy (1 - sign error, mean over seeds) on T1, T2 (ID) and T' (OOD) for each merge."""
    one = torch.tensor([[1.0, 1.0]])
    rows = []
    variants = [("task arithmetic Psi0 + dPsi1 + dPsi2", ex, "-")]
    for score in ("salient_mass", "relative_update"):
        tvs, pruned = masked_tvs(ex, score, ratio)
        variants.append((f"+ LwPTV ({score}, ratio {ratio})", ex.with_tvs(tvs), "; ".join(pruned)))
    for name, e, pruned in variants:
        acc = {t: 1 - float(evaluate_grid(e, one, t)["error"].mean()) for t in ("T1", "T2", "OOD")}
        loss = float(evaluate_grid(e, one, "OOD")["loss"].mean())
        rows.append({"merge": name, "acc_T1": round(acc["T1"], 4), "acc_T2": round(acc["T2"], 4),
                     "acc_ID_mean": round((acc["T1"] + acc["T2"]) / 2, 4), "acc_OOD": round(acc["OOD"], 4),
                     "hinge_OOD": round(loss, 4), "pruned_blocks": pruned})
    md = ["| merge | acc T1 (ID) | acc T2 (ID) | acc T' (OOD) | hinge T' | blocks pruned (share of seeds) |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['merge']} | {r['acc_T1']:.3f} | {r['acc_T2']:.3f} | {r['acc_OOD']:.3f} | {r['hinge_OOD']:.3f} | "
           f"{r['pruned_blocks']} |" for r in rows]
    return {"rows": rows, "markdown": "\n".join(md)}
