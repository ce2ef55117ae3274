"""Shallow Vision Transformers: learning, generalization, sample complexity (Li, Wang, Liu, Chen; ICLR 2023)."""
from theorylab.core.evaluate import EVAL_BLOCK
from theorylab.core.study import Study, register_study


@register_study("vit")
def study() -> Study:
    from theorylab.studies.vit.claims import CLAIMS
    from theorylab.studies.vit.config import FULL, QUICK, TINY, ViTConfig
    from theorylab.studies.vit.model import check_forward
    from theorylab.studies.vit.plots import PLOTS
    from theorylab.studies.vit.train import training

    return Study(
        name="vit",
        title="A Theoretical Understanding of Shallow Vision Transformers: Learning, Generalization, and Sample Complexity",
        paper="Li, Wang, Liu, Chen. ICLR 2023 (arXiv 2302.06015)",
        dry_run={"steps": 1, "n_test": EVAL_BLOCK},  # evaluation runs in blocks: one is its memory
        # the bench times what a full-size check mostly trains: width m = 200 on a training set of N examples
        # (the phase diagram's and the sparsification arms' cells), not quick's m = 32 on fresh samples
        bench_config={"m": 200, "n_train": 64},
        config_cls=ViTConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward,
        variations={"alpha_star": (0.2, 0.5), "M": (6, 12), "d": (12,), "tau": (0.0, 0.3), "conf_ratio": (0.0, 0.5),
                    "sparsify": ("irrelevant", "random", "norm", "attention"), "noisy_frac": (0.2,),
                    "alpha_sp": (0.1,), "m": (4,), "n_train": (0, 8), "drop_frac": (0.3,)},
    )
