"""The ICL paper's multi-layer experiments: a small GPT-2 (random init, trained here) reading the icl prompts."""
from theorylab.core.evaluate import EVAL_BLOCK
from theorylab.core.study import Study, register_study


@register_study("icl_gpt2")
def study() -> Study:
    from theorylab.studies.icl_gpt2.claims import CLAIMS
    from theorylab.studies.icl_gpt2.config import FULL, QUICK, ICLGPT2Config
    from theorylab.studies.icl_gpt2.model import check_forward
    from theorylab.studies.icl_gpt2.plots import PLOTS
    from theorylab.studies.icl_gpt2.train import training

    return Study(
        name="icl_gpt2",
        title="How Do Nonlinear Transformers Learn and Generalize in In-Context Learning? (multi-layer GPT-2 figures)",
        paper="Li, Wang, Lu, Cui, Chen. ICML 2024 (arXiv 2402.15607); spec E1, E2, E5 (GPT-2), E7-E8 (one-layer, run on GPT-2)",
        dry_run={"steps": 1, "n_test": EVAL_BLOCK},  # evaluation runs in blocks: one is its memory
        config_cls=ICLGPT2Config, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS,
        tiny={"steps": 20, "n_test": 60, "B": 16, "curve_points": 3, "n_layer": 1, "n_embd": 16, "l_tr": 8, "l_ts": 6},
        forward_check=check_forward,
        variations={"n_layer": (1, 2), "n_head": (1, 2), "n_embd": (16, 24), "M1": (4, 6), "M2": (2, 24),
                    "d_Y": (1, 3), "alpha": (0.3, 1.0), "l_tr": (3, 8), "l_ts": (2, 7), "M1_ood": (2,),
                    "S1": (0.5, 1.0), "ood_construction": ("unit",), "train_task_offsets": ((1,), (1, 2)),
                    "kappa": (0.0,), "weight_decay": (0.1,), "task": ("cot",), "K": (1, 2),
                    "wrong_targets": ("converge",)},
    )
