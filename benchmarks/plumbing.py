"""Training glue per study, at two git revisions: what the study protocol (core.protocol) took out of the studies.

    python benchmarks/plumbing.py BEFORE_REV [AFTER_REV]     (AFTER_REV defaults to the work tree)

Per study folder: code lines (not blank, not a comment, not a docstring) of train.py and of the whole folder, and
the glue lines: statements that drive the loop or keep records by hand (progress bars, group_result / GroupResult,
train_ensemble calls, rng_for inside training, model_curves, diverged_at bookkeeping), bytes_per_model formulas,
and hand-written per-model row gathers (torch.gather(t, 1, idx.reshape ...), `take`/`gather`/`_rows`/`_subset`
batch helpers). A heuristic, the same at both revisions.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

GLUE_NAMES = {"Bars", "bars", "group_result", "GroupResult", "train_ensemble", "model_curves", "advance", "on_step",
              "diverged_at", "perf_counter"}
GLUE_FUNCTIONS = {"bytes_per_model", "train_group", "_rows", "_subset", "take", "gather", "_take"}


def files(rev: str | None) -> dict[str, str]:
    """{path: text} of theorylab/studies/**.py at rev (None: the work tree)."""
    if rev is None:
        return {str(p): p.read_text() for p in Path("theorylab/studies").glob("*/*.py")}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "theorylab/studies"], capture_output=True,
                           text=True, check=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], capture_output=True, text=True, check=True).stdout
            for n in names if n.endswith(".py")}


def code_lines(text: str) -> set[int]:
    tree = ast.parse(text)
    doc = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                doc |= set(range(first.lineno, first.end_lineno + 1))
    return {i for i, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#") and i not in doc}


def glue_lines(text: str, path: str) -> set[int]:
    tree = ast.parse(text)
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in GLUE_FUNCTIONS and node.name != "train_group":
            out |= set(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.stmt) and not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.If, ast.For,
                                                                     ast.While, ast.With, ast.Try)):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | \
                    {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            src = ast.get_source_segment(text, node) or ""
            rng_in_train = path.endswith("train.py") and "rng_for(" in src
            if names & GLUE_NAMES or rng_in_train or "torch.gather(t, 1, idx.reshape" in src:
                out |= set(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.With) and any("bars" in ast.unparse(i) for i in node.items):
            out.add(node.lineno)
        elif isinstance(node, ast.FunctionDef) and node.name == "train_group":
            out.add(node.lineno)  # the signature; its body counts statement by statement
    return out & code_lines(text)


def table(rev: str | None) -> dict[str, tuple[int, int, int]]:
    per: dict[str, list[int]] = {}
    for path, text in files(rev).items():
        study = Path(path).parent.name
        if study == "studies":
            continue
        row = per.setdefault(study, [0, 0, 0])
        n = len(code_lines(text))
        row[1] += n
        row[2] += len(glue_lines(text, path))
        if path.endswith("/train.py"):
            row[0] += n
    return {k: tuple(v) for k, v in sorted(per.items())}


def main() -> None:
    before, after = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    a, b = table(before), table(after)
    print(f"| study | train.py lines | folder lines | glue lines | glue share |")
    print("|---|---|---|---|---|")
    tot = [0, 0, 0, 0, 0, 0]
    for s in sorted(set(a) | set(b)):
        x, y = a.get(s, (0, 0, 0)), b.get(s, (0, 0, 0))
        print(f"| {s} | {x[0]} -> {y[0]} | {x[1]} -> {y[1]} | {x[2]} -> {y[2]} | "
              f"{x[2] / max(1, x[1]):.0%} -> {y[2] / max(1, y[1]):.0%} |")
        for i in range(3):
            tot[i] += x[i]
            tot[i + 3] += y[i]
    print(f"| all | {tot[0]} -> {tot[3]} | {tot[1]} -> {tot[4]} | {tot[2]} -> {tot[5]} | "
          f"{tot[2] / tot[1]:.0%} -> {tot[5] / tot[4]:.0%} |")


if __name__ == "__main__":
    main()
