"""DQN with epsilon-greedy exploration (Zhang, Li, Wang, Liu, Chen, Lu, Liu, Murugesan, Chaudhury; NeurIPS 2023)."""
from theorylab.core.study import Study, register_study


@register_study("dqn")
def study() -> Study:
    from theorylab.studies.dqn.claims import CLAIMS
    from theorylab.studies.dqn.config import FULL, QUICK, TINY, DQNConfig
    from theorylab.studies.dqn.model import check_forward
    from theorylab.studies.dqn.plots import PLOTS
    from theorylab.studies.dqn.train import model_steps, training

    return Study(
        name="dqn",
        title="On the Convergence and Sample Complexity Analysis of Deep Q-Networks with epsilon-Greedy Exploration",
        paper="Zhang, Li, Wang, Liu, Chen, Lu, Liu, Murugesan, Chaudhury. NeurIPS 2023 (arXiv 2310.16173)",
        config_cls=DQNConfig, training=training, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, model_steps=model_steps, tiny=TINY,
        dry_run={"T": 2, "steps": 1, "fit_steps": 1},  # T iterations x steps make a run long (T >= 2)
        forward_check=check_forward,
        variations={"env": ("chain", "grid"), "n": (3, 5), "slip": (0.0, 0.3), "features": ("random",),
                    "m": (4, 16), "eps_decay": (1.0, 0.5), "eps_levels": ((0.0, 1.0),), "radii": ((1.0,), (0.1, 0.2)),
                    "B": (1, 8), "buffer": (5, 50), "walkers": (1, 3), "episode_len": (1, 5)},
    )
