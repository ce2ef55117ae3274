"""Low-rank updates and sparse W_O of a one-layer Transformer (Li, Wang, Zhang, Liu, Chen; IEEE SAM 2024)."""
from theorylab.core.evaluate import EVAL_BLOCK
from theorylab.core.study import Study, register_study


@register_study("lowrank")
def study() -> Study:
    from theorylab.studies.lowrank.claims import CLAIMS
    from theorylab.studies.lowrank.config import FULL, QUICK, TINY, LowRankConfig
    from theorylab.studies.lowrank.model import check_forward
    from theorylab.studies.lowrank.plots import PLOTS
    from theorylab.studies.lowrank.train import training

    return Study(
        name="lowrank",
        title="Learning on Transformers is Provable Low-Rank and Sparse: A One-layer Analysis",
        paper="Li, Wang, Zhang, Liu, Chen. IEEE SAM 2024 (arXiv 2406.17167)",
        dry_run={"steps": 1, "n_test": EVAL_BLOCK},  # evaluation runs in blocks: one is its memory
        config_cls=LowRankConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward,
        variations={"d": (12, 16), "M": (6, 8), "k_rel": (4,), "L": (10, 12, 40), "alpha_hash": (0.0, 0.2),
                    "tau": (0.0,), "irrelevant_sign": ("plus",), "relevant_draw": ("sample",), "n_train": (0,),
                    "m": (8,), "lora_rank": (1, 3), "xi": (0.01,), "label_model": ("class_majority",)},
    )
