"""In-context learning on a one-layer nonlinear Transformer (Li, Wang, Lu, Cui, Chen; ICML 2024)."""
from theorylab.core.evaluate import EVAL_BLOCK
from theorylab.core.study import Study, register_study


@register_study("icl")
def study() -> Study:
    from theorylab.studies.icl.claims import CLAIMS
    from theorylab.studies.icl.config import FULL, QUICK, ICLConfig
    from theorylab.studies.icl.plots import PLOTS
    from theorylab.studies.icl.bench import REFERENCE, icl_train_seconds
    from theorylab.studies.icl.maps import MAPS
    from theorylab.studies.icl.model import check_forward
    from theorylab.studies.icl.train import training

    return Study(
        name="icl",
        title="How Do Nonlinear Transformers Learn and Generalize in In-Context Learning?",
        paper="Li, Wang, Lu, Cui, Chen. ICML 2024 (arXiv 2402.15607)",
        dry_run={"steps": 1, "n_test": EVAL_BLOCK},  # evaluation runs in blocks: one is its memory
        config_cls=ICLConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, eval_tokens=lambda c: c.n_test * (c.l_ts + 1),
        tiny={"steps": 30, "n_test": 100, "B": 16, "curve_points": 4},
        forward_check=check_forward, maps=MAPS, bench=icl_train_seconds, bench_config=REFERENCE,
        variations={"M1": (4, 5, 7, 8), "M2": (2, 5, 24), "d_X": (30, 40), "d_Y": (1, 3), "alpha": (0.3, 1.0),
                    "l_tr": (4, 9), "m": (4, 10), "attend_query": (True,), "M1_ood": (2, 4), "S1": (0.5, 1.0),
                    "ood_construction": ("unit",), "train_task_offsets": ((1,), (1, 2)), "n_train": (40,),
                    "l_ts": (3, 8), "kappa": (0.0,)},
    )
