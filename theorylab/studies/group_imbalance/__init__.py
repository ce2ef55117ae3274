"""Group imbalance in one-hidden-layer networks on Gaussian mixtures (Li, Zhang, Zhang, Wang, Liu, Chen; JSTSP 2024)."""
from theorylab.core.study import Study, register_study


@register_study("group_imbalance")
def study() -> Study:
    from theorylab.studies.group_imbalance.claims import CLAIMS
    from theorylab.studies.group_imbalance.config import FULL, QUICK, TINY, GroupImbalanceConfig
    from theorylab.studies.group_imbalance.model import check_forward
    from theorylab.studies.group_imbalance.plots import PLOTS
    from theorylab.studies.group_imbalance.train import training

    return Study(
        name="group_imbalance",
        title="How Does Promoting the Minority Fraction Affect Generalization? (one-hidden-layer network, GMM)",
        paper="Li, Zhang, Zhang, Wang, Liu, Chen. IEEE JSTSP 18(2), 2024 (arXiv 2403.07310)",
        config_cls=GroupImbalanceConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward,
        variations={"d": (3, 8), "K": (1, 2), "lam2": (0.1,), "mu1": (0.0, 2.0), "sigma2": (0.5, 3.0),
                    "teacher_scale": (3.0,), "sigma2_out": (5.0,), "digits_d": (4,), "noise_grid": ((1.0, 2.0),),
                    "lr_rule": ("fixed",)},
    )
