"""Graph transformers with relative positional encoding (Li, Wang, Ma, Liu, Zhang, Chen; ICML 2024)."""
from theorylab.core.study import Study, register_study


@register_study("graph")
def study() -> Study:
    from theorylab.studies.graph.claims import CLAIMS
    from theorylab.studies.graph.config import FULL, QUICK, TINY, GraphConfig
    from theorylab.studies.graph.model import check_forward
    from theorylab.studies.graph.plots import PLOTS
    from theorylab.studies.graph.train import training

    return Study(
        name="graph",
        title="What Improves the Generalization of Graph Transformers? (self-attention + relative PE)",
        paper="Li, Wang, Ma, Liu, Zhang, Chen. ICML 2024 (arXiv 2406.01977)",
        config_cls=GraphConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward,
        variations={"graph": ("er",), "z_m": (1, 3), "Z": (2, 4), "k": (4, 8), "d": (12, 20), "M": (4,),
                    "p_d": (0.3, 0.8), "tau": (0.0, 0.3), "m": (8,), "gcn_layers": (1, 3), "deg": (3, 6),
                    "B": (4,), "lr": (0.1,)},
    )
