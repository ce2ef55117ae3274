"""Mamba's training dynamics: a selective SSM + MLP filters relevant features (Shandirasegaran et al., ICLR 2026)."""
from theorylab.core.evaluate import EVAL_BLOCK
from theorylab.core.study import Study, register_study


@register_study("mamba")
def study() -> Study:
    from theorylab.studies.mamba.claims import CLAIMS
    from theorylab.studies.mamba.config import BENCH, FULL, QUICK, TINY, MambaConfig
    from theorylab.studies.mamba.maps import MAPS
    from theorylab.studies.mamba.model import check_forward
    from theorylab.studies.mamba.plots import PLOTS
    from theorylab.studies.mamba.train import training

    return Study(
        name="mamba",
        title="A Theoretical Analysis of Mamba's Training Dynamics: Filtering Relevant Features for Generalization",
        paper="Shandirasegaran, Li, Zhang, Wang, Zhang. ICLR 2026 (arXiv 2602.12499)",
        dry_run={"steps": 1, "n_test": EVAL_BLOCK},  # evaluation runs in blocks: one is its memory
        config_cls=MambaConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward, maps=MAPS,
        bench_config=BENCH,  # core.bench times the Training's step
        variations={"gain": ("softplus",), "bc": ("random",), "irrelevant_sign": ("plus",), "tau": (0.0, 0.1),
                    "loss": ("logistic",), "B": (8,), "a_scale": ("1/sqrt(m)",), "L": (8, 12), "M": (3, 4),
                    "w_init": (0.5,), "train_gate": (False,), "tf_pos": ("none",), "optimizer": ("adam",), "alpha_r": (0.4, 0.5), "dl_near": (1, 3)},
    )
