"""Tiny Hugging Face models built from configs (no downloads), perturbed into 'fine-tuned' copies."""
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=96, n_positions=32),
    "bert": lambda: transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=48, vocab_size=96, max_position_embeddings=32),
    "llama": lambda: transformers.LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                              num_attention_heads=2, num_key_value_heads=1, vocab_size=96),
}
MODEL_CLASSES = {"gpt2": "GPT2LMHeadModel", "bert": "BertModel", "llama": "LlamaForCausalLM"}


def build_family(root: Path, arch: str, dtype=torch.float32, n_tasks: int = 2, scale: float = 0.05) -> dict[str, Path]:
    """base + n_tasks perturbed copies, saved with save_pretrained (safetensors)."""
    torch.manual_seed(0)
    cls = getattr(transformers, MODEL_CLASSES[arch])
    model = cls(CONFIGS[arch]()).to(dtype)
    paths = {"base": root / f"{arch}-{str(dtype)[6:]}-base"}
    model.save_pretrained(paths["base"])
    base_sd = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(n_tasks):
        g = torch.Generator().manual_seed(100 + t)
        with torch.no_grad():
            for k, p in model.state_dict().items():
                if p.is_floating_point():
                    p.copy_((base_sd[k].float() + scale * torch.randn(p.shape, generator=g)).to(dtype))
        paths[f"ft{t}"] = root / f"{arch}-{str(dtype)[6:]}-ft{t}"
        model.save_pretrained(paths[f"ft{t}"])
    return paths


@pytest.fixture(scope="session")
def family(tmp_path_factory):
    cache = {}

    def get(arch: str, dtype=torch.float32):
        key = (arch, dtype)
        if key not in cache:
            cache[key] = build_family(tmp_path_factory.mktemp("models"), arch, dtype)
        return cache[key]

    return get
