"""The import contract, by layers: core <- edit <- shared <- studies. core imports no edit, shared, study, CLI or
notebook API; edit and hf import no shared science or study; shared imports no study; a study imports no other
study (what two studies share lives in theorylab.shared). Read from the source (every import, also inside
functions)."""
import ast
from pathlib import Path

import pytest

import theorylab

PACKAGE = Path(theorylab.__file__).parent


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: p.name)
def test_core_imports_no_study_edit_shared_cli_or_api(path):
    bad = {n for n in imports_of(path) if n.startswith(("theorylab.studies", "theorylab.cli", "theorylab.api",
                                                         "theorylab.edit", "theorylab.shared", "theorylab.hf"))}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("sub", ["edit", "hf"])
def test_edit_and_hf_import_no_study_or_api(sub):
    for path in modules(sub):
        bad = {n for n in imports_of(path) if n.startswith(("theorylab.studies", "theorylab.api", "theorylab.cli",
                                                             "theorylab.shared"))}
        assert not bad, f"{sub}/{path.name} imports {bad}"


@pytest.mark.parametrize("path", modules("shared"), ids=lambda p: p.name)
def test_shared_science_imports_no_study(path):
    bad = {n for n in imports_of(path) if n.startswith(("theorylab.studies", "theorylab.api", "theorylab.cli"))}
    assert not bad, f"shared/{path.name} imports {bad}"


def test_no_study_imports_another_study():
    studies = [p for p in (PACKAGE / "studies").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert len(studies) >= 3
    for study in studies:
        for path in study.rglob("*.py"):
            others = {n.split(".")[2] for n in imports_of(path) if n.startswith("theorylab.studies.")
                      and len(n.split(".")) > 2} - {study.name}
            assert not others, f"{study.name}/{path.name} imports study {others}"


def test_test_files_have_unique_basenames():
    """pytest imports test modules by basename (no __init__.py in tests/): two test_data.py files cannot coexist."""
    names = [p.name for p in Path(__file__).parent.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
