"""theorylab merge against committed mergekit 0.1.5 outputs (no mergekit needed; regenerate them with
tests/hf/fixtures/mergekit/make_refs.py). Each case is a mergekit YAML over tiny committed Llama models."""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from theorylab.hf import load_state_dict, merge_checkpoints
from theorylab.hf.vocabulary import VOCAB_TENSOR

REFS = Path(__file__).parent / "fixtures" / "mergekit"
CASES = sorted(p.stem for p in (REFS / "cases").glob("*.yml"))


def _expected(case: str) -> tuple[dict, dict]:
    with safe_open(REFS / "expected" / f"{case}.safetensors", "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _merge(case: str, tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / f"{case}.yml"
    cfg.write_text((REFS / "cases" / f"{case}.yml").read_text().replace("models/", f"{REFS}/models/") + extra)
    out = tmp_path / f"{case}-out"
    merge_checkpoints(cfg, out, progress=False)
    return out


def test_every_case_has_a_reference():
    assert len(CASES) >= 24
    assert all((REFS / "expected" / f"{c}.safetensors").exists() for c in CASES)


def _full_vocab(model_vocab: dict, added: list) -> dict[str, int]:
    return model_vocab | {content: i for content, i, _special in added}


def _rows_in_our_order(theirs: dict, ours_vocab: dict, their_vocab: dict, rows: int) -> dict:
    """mergekit's union appends the other models' tokens in hash order (a different order each run):
    its vocabulary tensors with their rows moved to our ids, so that rows compare token by token."""
    assert set(ours_vocab) == set(their_vocab)
    order = [their_vocab[t] for t in sorted(ours_vocab, key=ours_vocab.get)]
    order += list(range(len(order), rows))  # pad_to_multiple_of rows follow the tokens in both
    return {k: (v[order] if v.shape[0] == rows and VOCAB_TENSOR.search(k) else v) for k, v in theirs.items()}


@pytest.mark.parametrize("case", CASES)
def test_same_tensors_as_mergekit(case, tmp_path):
    out = _merge(case, tmp_path)
    ours = load_state_dict(out)
    theirs, meta = _expected(case)
    assert set(ours) == set(theirs)
    if "added_tokens" in meta:  # the output tokenizer's added tokens: the same, with the same flags
        saved = json.loads((out / "tokenizer.json").read_text())
        our_added = [[a["content"], a["id"], a["special"]] for a in saved["added_tokens"]]
        their_added = json.loads(meta["added_tokens"])
        assert sorted((c, sp) for c, _, sp in our_added) == sorted((c, sp) for c, _, sp in their_added)
        ours_vocab = _full_vocab(saved["model"]["vocab"], our_added)
        their_vocab = _full_vocab(json.loads(meta["vocab"]), their_added)
        base_vocab = json.loads((REFS / "models" / "base" / "tokenizer.json").read_text())["model"]["vocab"]
        assert all(ours_vocab[t] == their_vocab[t] == i for t, i in base_vocab.items())  # the base's ids stay
        theirs = _rows_in_our_order(theirs, ours_vocab, their_vocab, int(meta["vocab_size"]))
    for k, v in theirs.items():
        assert ours[k].dtype == v.dtype, k
        if v.dtype == torch.float32:
            assert float((ours[k] - v).abs().max()) <= 1e-6, k
        else:  # half precision: the same up to one rounding step of the output dtype
            torch.testing.assert_close(ours[k], v, rtol=torch.finfo(v.dtype).eps, atol=1e-6, msg=k)
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == int(meta["num_hidden_layers"])
    assert config["vocab_size"] == int(meta["vocab_size"])
    if "vocab" in meta:  # tokenizer_source / tokenizer: the same output vocabulary
        vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
        assert vocab == json.loads(meta["vocab"])


def test_passthrough_stacks_and_renumbers_layers(tmp_path):
    out = load_state_dict(_merge("passthrough_stack", tmp_path))
    ft1 = load_state_dict(REFS / "models" / "ft1")
    ft2 = load_state_dict(REFS / "models" / "ft2")
    # output layer 2 is ft1's layer 1 (gradient scale [1, 0.5] at t = 0 -> 1; o_proj filtered to 0)
    assert torch.equal(out["model.layers.2.mlp.up_proj.weight"], ft1["model.layers.1.mlp.up_proj.weight"])
    assert torch.equal(out["model.layers.3.mlp.up_proj.weight"], ft1["model.layers.2.mlp.up_proj.weight"] * 0.5)
    assert not out["model.layers.2.self_attn.o_proj.weight"].any()
    # the last slice supplies what follows the layers, the first what precedes them
    assert torch.equal(out["lm_head.weight"], ft2["lm_head.weight"])
    assert torch.equal(out["model.layers.4.self_attn.q_proj.weight"], ft2["model.layers.2.self_attn.q_proj.weight"])


def test_compute_dtype_float32_differs_from_mergekits_bf16(tmp_path):
    """compute_dtype: float32 is theorylab's option: the arithmetic in float32, only the output in bf16."""
    out = load_state_dict(_merge("ties_bf16", tmp_path, "compute_dtype: float32\n"))
    theirs, _ = _expected("ties_bf16")
    diff = max(float((out[k].float() - theirs[k].float()).abs().max()) for k in theirs)
    assert diff > 0
    assert all(out[k].dtype == torch.bfloat16 for k in out)


def test_tokenizer_source_moves_rows_to_the_output_ids(tmp_path):
    """tok_b's tokenizer orders the shared words differently: after alignment, row i of every input is the
    row of output token i, so the slerp of tok_b with itself at any t gives tok_b's rows in tok_b's order."""
    case = tmp_path / "self.yml"
    m = f"{REFS}/models"
    case.write_text(f"merge_method: slerp\nbase_model: {m}/base\ntokenizer_source: base\ndtype: float32\n"
                    f"models:\n  - model: {m}/base\n  - model: {m}/tok_b\nparameters:\n  t: 1.0\n")
    merge_checkpoints(case, tmp_path / "out", progress=False)
    out = load_state_dict(tmp_path / "out")
    tok_b = load_state_dict(REFS / "models" / "tok_b")
    vocab_a = json.loads((REFS / "models" / "base" / "tokenizer.json").read_text())["model"]["vocab"]
    vocab_b = json.loads((REFS / "models" / "tok_b" / "tokenizer.json").read_text())["model"]["vocab"]
    emb = out["model.embed_tokens.weight"]
    assert emb.shape[0] == len(vocab_a)
    for word, i in vocab_a.items():
        if word in vocab_b:  # slerp at t = 1 returns tok_b's row (up to float32 rounding)
            torch.testing.assert_close(emb[i], tok_b["model.embed_tokens.weight"][vocab_b[word]])


def test_half_checkpoints_without_dtype_compute_in_their_dtype(tmp_path):
    """mergekit computes in the inputs' own dtype when the config names none: bf16 checkpoints without
    dtype merge exactly as the fp32 checkpoints with dtype: bfloat16 (the committed reference)."""
    from theorylab.hf import save_state_dict

    for name in ("base", "ft0", "ft1"):
        sd = {k: v.bfloat16() for k, v in load_state_dict(REFS / "models" / name).items()}
        save_state_dict(sd, tmp_path / "models" / name, support_from=REFS / "models" / name)
    cfg = tmp_path / "ties.yml"
    text = (REFS / "cases" / "ties_bf16.yml").read_text().replace("models/", f"{tmp_path}/models/")
    cfg.write_text(text.replace("dtype: bfloat16\n", ""))
    assert "dtype" not in cfg.read_text()
    merge_checkpoints(cfg, tmp_path / "out", progress=False)
    ours = load_state_dict(tmp_path / "out")
    theirs, _ = _expected("ties_bf16")
    for k, v in theirs.items():
        torch.testing.assert_close(ours[k], v, rtol=torch.finfo(v.dtype).eps, atol=1e-6, msg=k)


def test_union_appends_tokens_in_config_and_id_order(tmp_path):
    """Where mergekit's order of the appended tokens is a hash order, ours is fixed: the base's ids, then
    the other models' plain tokens (config order, id order), then added tokens with the first model's
    flags; n4, plain in tok_b but an added token of tok_c, comes with the added tokens; <beyond> (past
    tok_c's vocab_size) is left out."""
    out = _merge("tokenizer_union_ties", tmp_path)
    saved = json.loads((out / "tokenizer.json").read_text())
    added = [[a["content"], a["id"], a["special"]] for a in saved["added_tokens"]]
    assert added == [["<unk>", 0, True], ["n0", 16, False], ["n1", 17, False], ["n2", 18, False], ["n3", 19, False],
                     ["n5", 20, False], ["n4", 21, False], ["<sep>", 22, True]]
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 23
