"""mergekit's ``tokenizer_source`` / ``tokenizer``: the output tokenizer, and every model's embedding rows
moved to the output's token ids before the merge (mergekit 0.1.5's PermutedVocabulary).

The output tokenizer is the base's (``base``; the first model without a base), a named model's, or the
``union`` (mergekit's default for ``tokenizer:`` without a source): the base's tokenizer plus, appended
after its ids, every other token below its model's vocab_size (models in config order, each in its id
order; mergekit walks them in hash order, so its ids for the appended tokens vary from run to run while
the rows they carry do not), then the added tokens (special or not) no earlier model has, with the
settings of the first model that adds them; a plain token of one model that another adds as an added
token is appended with the added tokens. ``tokens`` listed are added last.

For each vocabulary tensor (token embeddings, LM head) and each model, row i of the aligned tensor is the
model's row for output token i. A token that model lacks gets a default row: the row of the only model
that has it; else the base's; else the mean over the models that have it; zeros when none has it; or what
``tokens: {TOKEN: {source: ...}}`` says (a model's row, {kind: zero}, or {kind: model_token, model, token |
token_id}); ``force: true`` applies that default even where the model has the token.
``pad_to_multiple_of`` pads the rows with the mean row.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .config import ConfigError

Key = tuple[Path, Path | None]
VOCAB_TENSOR = re.compile(r"(embed_tokens|embed_in|embed_out|wte|word_embeddings|lm_head)\.weight$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json", "chat_template.jinja")


def _vocab_size(path: Path) -> int | None:
    cfg = path / "config.json"
    if not cfg.exists():
        return None
    data = json.loads(cfg.read_text())
    return data.get("vocab_size", (data.get("text_config") or {}).get("vocab_size"))


def _tokenizer(path: Path, where: str):
    from theorylab.core.extras import require

    transformers = require("transformers", "a merge with tokenizer_source or tokenizer")

    try:
        return transformers.AutoTokenizer.from_pretrained(str(path))
    except Exception as err:  # noqa: BLE001  any loading failure is the config's problem here
        raise ConfigError(f"{where}: cannot load a tokenizer from {path}: {str(err).splitlines()[0][:200]}") from None


@dataclass
class VocabularyPlan:
    tokenizer: object
    vocab: dict[str, int]
    rows: int
    permutations: dict[Key, dict[int, int]]  # output id -> the model's row (-1: the model lacks the token)
    original: dict[Key, dict[str, int]]
    tokens: dict  # token -> TokenSpec (config)
    base: Key | None
    labels: dict[Key, str]


def build_vocabulary(source, models: dict[Key, str], base: Key | None, source_key: Key | None, tokens: dict,
                     pad_to_multiple_of: int | None) -> VocabularyPlan:
    """models: every referenced model (key -> label), in config order; source: "base", "union" or a model's key."""
    first = base if base is not None else next(iter(models))
    tokenizers = {k: _tokenizer(k[0], label) for k, label in models.items()}
    base_tok = tokenizers[first]
    size = _vocab_size(first[0])
    if size is not None and any(i >= size for i in base_tok.get_vocab().values()):
        raise ConfigError(f"tokenizer_source: the tokenizer of {models[first]} has ids beyond its vocab_size {size}; "
                          "theorylab does not strip them (mergekit rewrites BPE tokenizers for that)")
    if source == "union":
        order = [first] + [k for k in tokenizers if k != first]
        out = _union_tokenizer(first, {k: tokenizers[k] for k in order}, models[first])
    elif source == "base":
        out = base_tok
    else:
        out = _tokenizer(source_key[0], f"tokenizer source {source_key[0]}")
    existing = set(out.get_vocab())
    for tok in tokens:
        if tok not in existing:
            out.add_tokens(tok)
            existing.add(tok)
    vocab = out.get_vocab()
    rows = len(vocab)
    if pad_to_multiple_of and rows % pad_to_multiple_of:
        rows = (rows // pad_to_multiple_of + 1) * pad_to_multiple_of
    permutations = {}
    for k, tok in tokenizers.items():
        theirs = tok.get_vocab()
        limit = _vocab_size(k[0]) or len(theirs)
        permutations[k] = {i: (theirs[t] if t in theirs and theirs[t] < limit else -1) for t, i in vocab.items()}
    return VocabularyPlan(out, vocab, rows, permutations, {k: t.get_vocab() for k, t in tokenizers.items()},
                          dict(tokens), base, dict(models))


def _union_tokenizer(first: Key, tokenizers: dict, label: str):
    """A fresh copy of the first tokenizer, extended by every other model's tokens (module docstring)."""
    out = _tokenizer(first[0], label)  # not tokenizers[first]: that one stays the base's own vocabulary
    plain: dict[str, None] = {}  # an ordered set
    added: dict[str, object] = {}  # content -> the first model's AddedToken
    for k, tok in tokenizers.items():
        limit = _vocab_size(k[0]) or tok.vocab_size
        for word, i in sorted(tok.get_vocab().items(), key=lambda item: item[1]):
            if i < limit:
                plain.setdefault(word)
        for i, info in sorted(tok.added_tokens_decoder.items()):
            if i < limit:
                added.setdefault(info.content, info)
    present = set(out.get_vocab())
    for word in plain:
        if word not in added and word not in present:
            out.add_tokens(word)
    for info in added.values():
        out.add_tokens(info)  # a no-op for those the first tokenizer already has
    return out


def is_vocabulary_tensor(name: str, shape, vocab_size: int | None) -> bool:
    return bool(VOCAB_TENSOR.search(name)) and len(shape) >= 1 and (vocab_size is None or shape[0] == vocab_size)


def align(plan: VocabularyPlan, name: str, tensors: dict[Key, Tensor]) -> dict[Key, Tensor]:
    """Each model's tensor with its rows at the output's token ids (rows on axis 0)."""
    keys = list(tensors)
    dtype = tensors[keys[0]].dtype
    for t in tensors.values():
        dtype = torch.promote_types(dtype, t.dtype)
    shape = tensors[keys[0]].shape[1:]
    perms = {k: plan.permutations[k] for k in keys}
    specs = dict(plan.tokens)
    average = set()
    for tok, i in plan.vocab.items():  # who supplies a token some model lacks
        if tok in specs:
            continue
        have = [k for k in keys if perms[k][i] >= 0]
        if len(have) == 1:
            specs[tok] = {"source": have[0]}
        elif not have:
            specs[tok] = {"source": "zero"}
        elif plan.base in keys and perms[plan.base][i] >= 0:
            specs[tok] = {"source": plan.base}
        else:
            average.add(tok)
    defaults = {}
    for tok, i in plan.vocab.items():
        spec = specs.get(tok)
        force = bool(spec and spec.get("force"))
        if not force and all(perms[k][i] >= 0 for k in keys):
            continue
        if tok in average:
            row = torch.zeros(shape, dtype=dtype)
            n = 0
            for k in keys:
                if perms[k][i] >= 0:
                    row = row + tensors[k][perms[k][i]]
                    n += 1
            defaults[tok] = row / n
        elif spec is not None:
            defaults[tok] = _default_row(plan, name, tensors, perms, tok, i, spec, shape, dtype)
    out = {}
    for k in keys:
        new = torch.zeros((plan.rows, *shape), dtype=dtype)
        for tok, i in plan.vocab.items():
            force = bool(plan.tokens.get(tok, {}).get("force"))
            if perms[k][i] >= 0 and not force:
                new[i] = tensors[k][perms[k][i]]
            elif tok in defaults:
                new[i] = defaults[tok]
        if plan.rows > len(plan.vocab):
            new[len(plan.vocab):] = torch.mean(new[:len(plan.vocab)], dim=0)
        out[k] = new
    return out


def _default_row(plan, name, tensors, perms, tok, i, spec, shape, dtype) -> Tensor:
    if "source" not in spec:
        raise ConfigError(f"tokenizer.tokens[{tok!r}]: no source given, and a model lacks the token (or force is set)")
    src = spec["source"]
    if src == "zero":
        return torch.zeros(shape, dtype=dtype)
    if isinstance(src, dict):  # {kind: model_token, model: key, token_id | token}
        k = src["model"]
        if k not in tensors:
            raise ConfigError(f"tokenizer.tokens[{tok!r}]: {plan.labels.get(k, k)} has no tensor {name!r}")
        row = src.get("token_id")
        if row is None:
            if src["token"] not in plan.original[k]:
                raise ConfigError(f"tokenizer.tokens[{tok!r}]: token {src['token']!r} is not in {plan.labels[k]}")
            row = plan.original[k][src["token"]]
        if not 0 <= row < tensors[k].shape[0]:
            raise ConfigError(f"tokenizer.tokens[{tok!r}]: token_id {row} is out of range for {plan.labels[k]}")
        return tensors[k][row]
    if src not in tensors:
        raise ConfigError(f"tokenizer.tokens[{tok!r}]: {plan.labels.get(src, src)} has no tensor {name!r}")
    if perms[src][i] < 0:
        raise ConfigError(f"tokenizer.tokens[{tok!r}]: {plan.labels[src]} has no token {tok!r}")
    return tensors[src][perms[src][i]]


class AlignedReader:
    """A checkpoint reader whose vocabulary tensors are replaced by their aligned versions."""

    def __init__(self, inner, replaced: dict[str, Tensor]):
        self._inner, self._replaced = inner, replaced

    def __getattr__(self, attr):
        return getattr(self._inner, attr)

    @property
    def names(self):
        return self._inner.names

    def __contains__(self, name):
        return name in self._inner

    def info(self, name):
        if name in self._replaced:
            from .safetensors_io import TensorInfo
            t = self._replaced[name]
            return TensorInfo(name, tuple(t.shape), t.dtype)
        return self._inner.info(name)

    def read(self, name):
        return self._replaced[name].clone() if name in self._replaced else self._inner.read(name)

    def read_rows(self, name, start, stop):
        return self._replaced[name][start:stop].clone() if name in self._replaced else self._inner.read_rows(name, start, stop)

    def close(self):
        self._inner.close()


def aligned_tensors(plan: VocabularyPlan, readers: dict[Key, object]) -> dict[Key, dict[str, Tensor]]:
    """Per model: its vocabulary tensors aligned to the output vocabulary (computed jointly, tensor by
    tensor, over the given models)."""
    first = next(iter(readers.values()))
    names = [n for n in first.names if n in first and is_vocabulary_tensor(n, first.info(n).shape, None)]
    replaced: dict[Key, dict[str, Tensor]] = {k: {} for k in readers}
    for name in names:
        present = {k: r.read(name) for k, r in readers.items() if name in r}
        sizes = {k: _vocab_size(k[0]) for k in present}
        if any(s is not None and t.shape[0] != s for (k, t), s in zip(present.items(), sizes.values())):
            continue  # not indexed by tokens after all
        for k, t in align(plan, name, present).items():
            replaced[k][name] = t
    return replaced


def save_tokenizer(plan: VocabularyPlan, folder: Path) -> None:
    """Replace the copied tokenizer files by the output tokenizer; config.json gets its vocabulary size."""
    for f in TOKENIZER_FILES:
        (folder / f).unlink(missing_ok=True)
    plan.tokenizer.save_pretrained(str(folder))
    cfg = folder / "config.json"
    if cfg.exists():
        data = json.loads(cfg.read_text())
        data["vocab_size"] = plan.rows
        cfg.write_text(json.dumps(data, indent=2) + "\n")


def plan_for_config(config, resolve_key, models: dict[Key, str], base: Key | None) -> VocabularyPlan | None:
    """The vocabulary plan of a config (None without tokenizer_source / tokenizer). resolve_key: a model
    reference of the config -> its key; models: every referenced model (key -> label) in config order."""
    source = config.vocabulary_source
    if source is None:
        return None
    settings = config.tokenizer
    source_key = None
    if source not in ("base", "union"):
        source_key = resolve_key(source, "tokenizer_source" if settings is None else "tokenizer.source")
    tokens = {}
    for tok, spec in ((settings.tokens or {}) if settings is not None else {}).items():
        where = f"tokenizer.tokens[{tok!r}].source"
        src = spec.source
        if src is None:
            entry = None
        elif isinstance(src, str):
            entry = resolve_key(src, where)
        elif getattr(src, "kind", None) == "zero":
            entry = "zero"
        else:
            entry = {"model": resolve_key(src.model, where), "token_id": src.token_id, "token": src.token}
        if entry is not None and not isinstance(entry, str) and isinstance(entry, tuple) and entry not in models:
            raise ConfigError(f"{where}: {src!r} is not one of the merged models")
        tokens[tok] = {"force": spec.force} | ({"source": entry} if entry is not None else {})
    pad = settings.pad_to_multiple_of if settings is not None else None
    return build_vocabulary(source, models, base, source_key, tokens, pad)
