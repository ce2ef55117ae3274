"""Activation prompts vs visual prompts on a small CNN and a small ViT ("Visual Prompting Reimagined: The Power of
Activation Prompts", AISTATS 2026)."""
from theorylab.core.study import Study, register_study


@register_study("activation_prompt")
def study() -> Study:
    from theorylab.studies.activation_prompt.claims import CLAIMS
    from theorylab.studies.activation_prompt.config import FULL, QUICK, TINY, APConfig
    from theorylab.studies.activation_prompt.model import check_forward
    from theorylab.studies.activation_prompt.plots import PLOTS
    from theorylab.studies.activation_prompt.train import training

    return Study(
        name="activation_prompt",
        title="Visual Prompting Reimagined: The Power of Activation Prompts",
        paper="AISTATS 2026 (arXiv 2604.06440)",
        config_cls=APConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, tiny=TINY, forward_check=check_forward,
        dry_run={"pretrain_steps": 1, "steps": 1, "tb_steps": 1},
        # bench times the adaptation / fine-tuning step; the pre-training is set-up, so keep it short there
        bench_config={"pretrain_steps": 2},
        model_steps=lambda c: (6 * c.tb_steps if c.part == "testbed" else
                               c.pretrain_steps + c.steps * (2 * (c.depth + 1 if c.arch == "cnn" else c.depth) + 6)),
        variations={"arch": ("vit",), "depth": (1, 2), "transform": ("invert", "flip"), "patch": (4,),
                    "channels": (3,), "width": (8, 12), "heads": (1, 2),
                    "tb_n": (4, 16), "tb_alpha": (0.5, 1.0)},
    )
