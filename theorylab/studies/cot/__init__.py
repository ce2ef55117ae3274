"""Chain-of-thought on a one-layer attention-only Transformer (Li, Lu, Chen, Cui, Wang; ICLR 2025)."""
from theorylab.core.evaluate import EVAL_BLOCK
from theorylab.core.study import Study, register_study


@register_study("cot")
def study() -> Study:
    from theorylab.studies.cot.claims import CLAIMS
    from theorylab.studies.cot.config import FULL, QUICK, CoTConfig
    from theorylab.studies.cot.model import check_forward
    from theorylab.studies.cot.plots import PLOTS
    from theorylab.studies.cot.train import training

    return Study(
        name="cot",
        title="Training Nonlinear Transformers for Chain-of-Thought Inference: A Theoretical Generalization Analysis",
        paper="Li, Lu, Chen, Cui, Wang. ICLR 2025 (arXiv 2410.02167)",
        dry_run={"steps": 1, "n_test": EVAL_BLOCK},  # evaluation runs in blocks: one is its memory
        config_cls=CoTConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS,
        tiny={"steps": 30, "B": 32, "n_test": 50, "l_ts": 10, "l_ts_step": 5, "curve_points": 4},
        forward_check=check_forward,
        variations={"M": (4, 6), "K": (1, 2, 4), "d_X": (20, 24), "alpha": (0.3, 1.0), "l_tr": (2, 5),
                    "alpha_test": (0.5, 1.0), "noise": (0.0, 0.3), "overlap": (0.0, 0.3), "p_correct": (0.6, 0.9),
                    "rho": (0.3, 0.8), "wrong_targets": ("scatter", "converge"), "train_W_V": (True,),
                    "delta": (0.0, 0.5), "l_ts": (4, 7), "l_ts_step": (3,)},
    )
