"""Task vectors on a one-layer nonlinear Transformer (Li, Zhang, Zhang, Chen, Liu, Wang; ICLR 2025 oral)."""
from theorylab.core.study import Study, register_study


@register_study("task_vectors")
def study() -> Study:
    from theorylab.studies.task_vectors.claims import CLAIMS
    from theorylab.studies.task_vectors.config import FULL, QUICK, TINY, TaskVectorConfig
    from theorylab.studies.task_vectors.data import TASKS
    from theorylab.studies.task_vectors.maps import MAPS
    from theorylab.studies.task_vectors.model import check_forward
    from theorylab.studies.task_vectors.plots import PLOTS
    from theorylab.studies.task_vectors.train import training

    return Study(
        name="task_vectors",
        title="When is Task Vector Provably Effective for Model Editing? (nonlinear Transformer, eq. 7)",
        paper="Li, Zhang, Zhang, Chen, Liu, Wang. ICLR 2025 oral (arXiv 2504.10957)",
        config_cls=TaskVectorConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward, maps=MAPS,
        model_steps=lambda c: c.pretrain_steps + c.steps * len(TASKS),  # Psi0, then each task from it
        variations={"d": (8, 12), "P": (6, 14), "m": (4, 10), "irrelevant_sign": ("plus",), "noise": (0.05,),
                    "a_scale": ("1/sqrt(m)",), "pretrain_steps": (5,), "gamma2": (0.3,), "kappa": (0.5,),
                    "lam_step": (0.5,), "n_star_max": (4,)},
    )
