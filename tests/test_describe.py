"""`theorylab describe STUDY` lists every config field (type, quick default, allowed range, meaning, role), the
sizes and their overrides, and the claims; an unknown study is one line and exit code 2."""
import pytest
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.config import field_bounds
from theorylab.core.study import get_study


def _describe(name: str) -> str:
    res = CliRunner().invoke(app, ["describe", name], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    return res.output


def _row(text: str, field: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith(f"│ {field} "))


@pytest.mark.parametrize("name", ["icl", "group_imbalance", "dqn"])
def test_every_field_with_type_default_range_meaning_and_role(name):
    s = get_study(name)
    cls, quick, text = s.config_cls, s.config("quick"), _describe(name)
    for field, info in cls.model_fields.items():
        row = _row(text, field)
        assert repr(getattr(quick, field))[:12] in row  # the quick size's value, not the class default
        lo, hi, _, _ = field_bounds(cls, field)
        for bound in (lo, hi):
            if bound is not None:
                assert str(bound) in row, (field, row)
        assert (info.description or "")[:30] in row
        role = row.split("│")[5]
        assert ("swept" in role) == (field in cls.swept_fields)
        assert ("per-model" in role) == (field in cls.ensemble_scalars)
    for size, overrides in s.sizes.items():
        size_row = _row(text, size)
        assert all(f"{k}=" in size_row for k in list(overrides)[:3])
    for c in s.claims:
        row = _row(text, c.id)
        assert c.kind in row and c.theorem[:10] in row


def test_the_default_is_the_quick_sizes_value():
    from theorylab.core.study import study_names

    for name in study_names():
        s = get_study(name)
        fields = s.config_cls.model_fields
        changed = {k: v for k, v in s.sizes["quick"].items() if v != fields[k].default}
        if changed:
            k = next(iter(changed))
            row = _row(_describe(name), k)
            assert repr(getattr(s.config("quick"), k))[:12] in row and repr(fields[k].default) not in row.split("│")[3]
            return
    pytest.skip("no study's quick size changes a default")


def test_an_unknown_study_is_one_line_and_exit_2():
    res = CliRunner().invoke(app, ["describe", "nope"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown study 'nope'") and "icl" in lines[0]
