"""PCAS: joint retrieval of passages and personalized context (Wan, Li, Lu, Cui, Danilevsky; ICASSP 2024)."""
from theorylab.core.study import Study, register_study


@register_study("retrieval")
def study() -> Study:
    from theorylab.studies.retrieval.claims import CLAIMS
    from theorylab.studies.retrieval.config import FULL, QUICK, TINY, RetrievalConfig
    from theorylab.studies.retrieval.encoders import check_available
    from theorylab.studies.retrieval.model import check_forward
    from theorylab.studies.retrieval.plots import PLOTS
    from theorylab.studies.retrieval.train import train_group

    return Study(
        name="retrieval",
        title="How Can Personalized Context Help? Exploring Joint Retrieval of Passage and Personalized Context (PCAS)",
        paper="Wan, Li, Lu, Cui, Danilevsky. ICASSP 2024 (arXiv 2308.13760)",
        config_cls=RetrievalConfig, train_group=train_group, sizes={"quick": QUICK, "full": FULL},
        claims=CLAIMS, plots=PLOTS, model_steps=lambda c: 1, tiny=TINY,
        dry_run={},  # indexing a draw is one pass already; the config rejects `steps` (nothing trains)
        forward_check=check_forward, needs=check_available,
        variations={"n_users": (1, 3), "queries_per_user": (1, 3), "n_contexts": (1, 2, 5), "n_values": (2, 8),
                    "history_share": (0.0, 1.0), "context_style": ("indirect",), "d_hash": (8, 32), "lam": (0.5,),
                    "ks": ((1,), (2, 3)), "mrr_at": (1, 3)},
    )
