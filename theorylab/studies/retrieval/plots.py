"""The results table as a figure: passage recall@k and MRR per method, context accuracy, recall@k curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import mean_band, save_figure

LABELS = {"query_only": "B0 query only", "concat": "B1 query + all contexts", "max_fusion": "B2 max_j sim(q + c_j, p)",
          "sum_fusion": "B3 sum_j sim(q + c_j, p)", "pick_then_retrieve": "B4 pick c by sim(q, c), then retrieve",
          "pcas": "PCAS (joint)",
          "query_sim": "pick argmax sim(q, c)", "chance": "chance"}


def retrieval_table(d: dict, path) -> None:
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 4))
    names, methods = d["metrics"], list(d["methods"])
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals = [np.array(d["methods"][m][n]) for n in names]
        a1.bar(np.arange(len(names)) + i * w, [v.mean() for v in vals], w, yerr=[v.std() for v in vals], label=LABELS[m])
    a1.set(xticks=np.arange(len(names)) + w * (len(methods) - 1) / 2, xticklabels=names, ylim=(0, 1.05),
           xlabel="passage metric", ylabel="score (fraction)\nmean; bars: ±1 std over draws",
           title=f"passages (encoder {d['encoder']}; contexts {d.get('context_style', 'verbatim')})")
    # below the bars, never over them
    a1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    ctx = list(d["context"])
    a2.bar(range(len(ctx)), [np.mean(d["context"][m]) for m in ctx], yerr=[np.std(d["context"][m]) for m in ctx],
           color=["C3", "C2", "gray"][: len(ctx)])
    a2.set(xticks=range(len(ctx)), xticklabels=[LABELS[m].replace(" by ", "\nby ").replace(" (", "\n(") for m in ctx],
           ylim=(0, 1.05), xlabel="how the pertinent context is picked",
           ylabel="accuracy (fraction)\nmean; bars: ±1 std over draws",
           title="pertinent context accuracy")
    a2.tick_params(axis="x", labelsize=7)
    for i, m in enumerate(d["curves"]):
        c = np.asarray(d["curves"][m], dtype=float)
        mean_band(a3, d["k"], c.mean(0), c.std(0), LABELS[m], color=f"C{i}", style="-o", ms=3)
    a3.set(xlabel="k (passages retrieved, count)", ylabel="passage recall@k (fraction)", ylim=(0, 1.05),
           title="recall@k\n(mean; shaded: ±1 std over draws)")
    a3.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    save_figure(fig, path)


# one name per context style, so the two claims' figures are two files
PLOTS = {"retrieval_table": retrieval_table, "retrieval_table_indirect": retrieval_table}
