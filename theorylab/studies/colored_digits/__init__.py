"""Colored digits: the Colored-MNIST task-vector experiment of Li et al. (ICLR 2025) on 8x8 digits and a small ViT."""
from theorylab.core.study import Study, register_study


@register_study("colored_digits")
def study() -> Study:
    from theorylab.studies.colored_digits.claims import CLAIMS
    from theorylab.studies.colored_digits.config import FULL, QUICK, TINY, ColoredDigitsConfig
    from theorylab.studies.colored_digits.plots import PLOTS
    from theorylab.studies.colored_digits.reference import check_forward
    from theorylab.studies.colored_digits.train import training

    return Study(
        name="colored_digits",
        title="When is Task Vector Provably Effective for Model Editing? (colored digits, small ViT; seed Figs. 23-24)",
        paper="Li, Zhang, Zhang, Chen, Liu, Wang. ICLR 2025 oral (arXiv 2504.10957)",
        config_cls=ColoredDigitsConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward,
        variations={"patch": (4,), "width": (16,), "heads": (1, 4), "depth": (1,), "mlp": (8,), "noise": (0.0,),
                    "pretrain_task": ("rotation",), "ood_p_target": (0.45,), "lam_lo": (-1.0,), "lam_hi": (2.0,),
                    "p_irrelevant": (0.6,)},
        model_steps=lambda c: c.pretrain_steps + c.steps * len(c.task_ps),  # pre-training, then each task
        dry_run={"pretrain_steps": 1, "steps": 1},
        # bench times the adaptation / fine-tuning step; the pre-training is set-up, so keep it short there
        bench_config={"pretrain_steps": 2},
    )
