"""Transformer DDPM denoiser on multi-token Gaussian mixtures (Li, Min, Vidal; ICML 2026)."""
from theorylab.core.study import Study, register_study


@register_study("diffusion")
def study() -> Study:
    from theorylab.studies.diffusion.claims import CLAIMS
    from theorylab.studies.diffusion.config import FULL, QUICK, TINY, DiffusionConfig
    from theorylab.studies.diffusion.model import check_forward
    from theorylab.studies.diffusion.plots import PLOTS
    from theorylab.studies.diffusion.train import training

    return Study(
        name="diffusion",
        title="Transformers Learn the Optimal DDPM Denoiser for Multi-Token GMMs (one-layer attention denoiser)",
        paper="Li, Min, Vidal. ICML 2026 (arXiv 2604.10074)",
        config_cls=DiffusionConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward,
        variations={"d": (6, 10), "K": (2, 3), "N": (6, 12), "sigma0": (0.0, 0.3), "r": (2.0,),
                    "optimizer": ("gd",), "t_grid": ((50,), (10, 500)), "n_sweep": ((4, 6, 8),)},
    )
