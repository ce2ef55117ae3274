"""``relate``: how two fine-tuned checkpoints relate, and what the task-vector theory advises.

Task-vector cosines are streamed tensor by tensor. With probe inputs, each model is run on them and
alpha-hat (paper 1's estimator, E_x cos(f_A(x), f_B(x))) is reported raw and centred on the base's
outputs; the recommendation uses the centred value when probes are given (two models fine-tuned from one
base share most of their raw output), else the overall task-vector cosine.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..edit.relate import CosineAccumulator, Recommendation, group_name, output_similarity, recommend
from ..edit.state import DEFAULT_LAYER_PATTERN
from .checkpoint import CheckpointReader


@dataclass(frozen=True)
class RelateReport:
    cosines: dict[str, float]  # "layer i", "other", "overall"
    alpha_hat_raw: float | None
    alpha_hat_centred: float | None
    recommendation: Recommendation


def task_vector_cosines_streaming(model_a, model_b, base, layer_pattern: str = DEFAULT_LAYER_PATTERN,
                                  chunk_elems: int = 1 << 22) -> dict[str, float]:
    acc = CosineAccumulator()
    with CheckpointReader(base) as rb, CheckpointReader(model_a) as ra, CheckpointReader(model_b) as rB:
        for name in rb.names:
            info = rb.info(name)
            if not info.dtype.is_floating_point:
                continue
            for r, label in ((ra, "MODEL_A"), (rB, "MODEL_B")):
                if name not in r or r.info(name).shape != info.shape:
                    raise ValueError(f"{label}: tensor {name!r} is missing or has a different shape than in BASE")
            for a, b in info.row_blocks(chunk_elems):
                rows = {label: r.read_rows(name, a, b).double() for r, label in ((rb, "BASE"), (ra, "MODEL_A"), (rB, "MODEL_B"))}
                for label, block in rows.items():
                    if not torch.isfinite(block).all():
                        raise ValueError(f"{label}: tensor {name!r} has NaN or infinite weights; no relation can be estimated")
                acc.add(group_name(name, layer_pattern), rows["MODEL_A"] - rows["BASE"], rows["MODEL_B"] - rows["BASE"])
    return acc.cosines(("MODEL_A - BASE", "MODEL_B - BASE"))


def load_probe_inputs(path: str | Path, tokenizer_from: str | Path, max_length: int = 128) -> dict[str, Tensor]:
    """Probe inputs: a .txt file (one input per line, tokenized with the base's tokenizer) or a
    .pt/.safetensors file holding ``input_ids`` (and optionally ``attention_mask``)."""
    path = Path(path)
    if path.suffix == ".txt":
        from theorylab.core.extras import require

        AutoTokenizer = require("transformers", "probe inputs from a .txt file").AutoTokenizer
        lines = [l for l in path.read_text().splitlines() if l.strip()]
        if not lines:
            raise ValueError(f"{path}: no probe inputs (one per line expected)")
        tok = AutoTokenizer.from_pretrained(str(tokenizer_from))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return dict(tok(lines, return_tensors="pt", padding=True, truncation=True, max_length=max_length))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        data = load_file(str(path))
    elif path.suffix == ".pt":
        data = torch.load(path, weights_only=True)
    else:
        raise ValueError(f"probe inputs must be .txt, .pt or .safetensors, got {path.name}")
    if "input_ids" not in data:
        raise ValueError(f"{path}: needs an 'input_ids' tensor, found {sorted(data)}")
    return {k: data[k] for k in ("input_ids", "attention_mask") if k in data}


@torch.no_grad()
def model_outputs(path: str | Path, inputs: dict[str, Tensor]) -> Tensor:
    """One output vector per probe input: the model's logits if it has a head, else its last hidden state;
    sequence outputs are averaged over the non-padding positions. [N, D]"""
    from theorylab.core.extras import require

    transformers = require("transformers", "relate --probe-inputs")
    transformers.utils.logging.disable_progress_bar()  # three loading bars would bury relate's own report
    config = transformers.AutoConfig.from_pretrained(str(path))
    arch = (config.architectures or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    model = (cls or transformers.AutoModel).from_pretrained(str(path)).eval()
    out = model(**inputs)
    y = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    if y.dim() == 3:
        mask = inputs.get("attention_mask", torch.ones(y.shape[:2])).to(y.dtype).unsqueeze(-1)
        y = (y * mask).sum(1) / mask.sum(1).clamp_min(1)
    return y.float()


def relate_checkpoints(model_a, model_b, base, probe_inputs=None, *, layer_pattern: str = DEFAULT_LAYER_PATTERN,
                       tolerance: float = 0.1, beta: float = 0.05) -> RelateReport:
    cos = task_vector_cosines_streaming(model_a, model_b, base, layer_pattern)
    raw = centred = None
    if probe_inputs is not None:
        inputs = load_probe_inputs(probe_inputs, base)
        fa, fb, f0 = (model_outputs(p, inputs) for p in (model_a, model_b, base))
        for label, f in (("MODEL_A", fa), ("MODEL_B", fb), ("BASE", f0)):
            if not torch.isfinite(f).all():
                raise ValueError(f"{label}: outputs on the probe inputs are NaN or infinite; no alpha-hat can be estimated")
        for label, f in (("MODEL_A", fa), ("MODEL_B", fb)):
            if torch.equal(f, f0):
                raise ValueError(f"{label}: outputs on the probe inputs equal BASE's, so the centred alpha-hat is undefined; "
                                 "use probe inputs the fine-tune changes")
        raw, centred = output_similarity(fa, fb), output_similarity(fa, fb, f0)
    alpha = centred if centred is not None else cos["overall"]
    return RelateReport(cos, raw, centred, recommend(max(-1.0, min(1.0, alpha)), tolerance, beta))
