"""The verdict table of a real (tiny) run fits 100 columns with every claim id whole, and says what ran: claims with
their own default seed counts run them, so the title never claims one seed count the claims did not all run."""
import re

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.report import TABLE_WIDTH, seed_counts, seed_note, verdict_table
from theorylab.core.store import Store
from theorylab.core.study import get_study


@pytest.fixture(scope="module")
def icl_rows():
    torch.set_num_threads(1)
    s = get_study("icl")
    ctx = ClaimContext(s, "quick", 2, torch.device("cpu"), Store(":memory:"), dict(s.tiny))
    return [r.row("icl") for r in run_claims(ctx, seeds_given=False)]


def _lines(rows, width: int, title: str = "icl") -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(verdict_table(rows, title))
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [TABLE_WIDTH, 200])  # 200: the table's own width, not squeezed by the console
def test_the_table_fits_100_columns_with_whole_claim_ids(icl_rows, width):
    lines = _lines(icl_rows, width, f"icl (quick, {seed_counts(icl_rows)}, cpu)")
    assert max(map(len, lines)) <= TABLE_WIDTH
    for r in icl_rows:
        row = next((ln for ln in lines if re.search(rf"\b{r['claim']}\b", ln)), None)
        assert row is not None, f"{r['claim']} is not whole in the table"
        assert f"{r['seeds_passed']}/{r['seeds']}" in row and r["verdict"] in row
        assert r["summary"][:60] not in "\n".join(lines)  # the long measured text goes to the report only


def test_the_worst_case_row_still_fits(icl_rows):
    longest = max((c.id for s in ("vit", "cot", "mamba") for c in get_study(s).claims), key=len)
    worst = dict(icl_rows[0], claim=longest, study="activation_prompt", kind="mechanism", verdict="inconclusive",
                 seconds=99999.9, seeds=100, seeds_passed=100,
                 interval={"n": 3, "mean": -7.95e-06, "lo": -7.95e-06, "hi": -1.01e-04})
    lines = _lines(icl_rows + [worst], 200)
    assert max(map(len, lines)) <= TABLE_WIDTH and any(longest in ln for ln in lines)
    assert any(ln.strip() == "activation_prompt" for ln in lines)  # several studies: grouped under their names


def test_the_title_says_what_ran(icl_rows):
    counts = {r["claim"]: r["seeds"] for r in icl_rows}
    claim = get_study("icl").claims
    assert counts == {c.id: c.seeds for c in claim}  # --seeds not given: each claim's own default ran
    assert len(set(counts.values())) > 1
    lo, hi = min(counts.values()), max(counts.values())
    assert seed_counts(icl_rows) == f"{lo}-{hi} seeds per claim"
    odd = [c for c, n in counts.items() if n == hi]
    assert all(c in seed_note(icl_rows) for c in odd)
    same = [dict(r, seeds=4) for r in icl_rows]
    assert seed_counts(same) == "4 seeds" and seed_note(same) == ""


def test_check_prints_the_seeds_that_ran(tmp_path):
    args = ["check", "icl", "--device", "cpu", "--store", str(tmp_path / "s.sqlite"), "--claim", "thm1_in_domain",
            "--claim", "prop2_neurons", *[a for k, v in get_study("icl").tiny.items() for a in ("--set", f"{k}={v}")]]
    res = CliRunner().invoke(app, args)
    assert res.exit_code in (0, 1, 3), res.output
    assert "3-5 seeds per claim" in res.output and "5 seeds," not in res.output
    assert "5 by prop2_neurons" in res.output or "3 by thm1_in_domain" in res.output
    assert max(map(len, res.output.splitlines())) <= TABLE_WIDTH
