"""The atlas: a static site of every registered study and the newest stored result of each of its claims.

Written from the results store only (nothing trains): index.html lists every study and claim with its verdict,
and one page per study shows each claim's statement, criterion, figures (drawn by the study's own plot functions
from the stored figure data, as `theorylab report` draws them), numbers and the command that reproduces it.
Claims the store holds no result for say "not run"; nothing is filled in. The site opens from disk (file://):
no server, no network, no external CSS, scripts or fonts.

The site is built in a temporary folder beside --out and renamed into place, so a failure leaves no half-written
site. An existing --out is replaced only when it is empty or an earlier atlas (it holds ATLAS_MARKER).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theorylab.core.config import ConfigError, parse_value
from theorylab.core.outputs import check_output_folder, write_atomically
from theorylab.core.store import Store, StoreError
from theorylab.core.study import Study, get_study, study_names

ATLAS_MARKER = ".theorylab-atlas"  # marks a folder this command wrote, so a rebuild may replace it


@dataclass
class Figure:
    name: str
    file: str | None  # relative to the site root; None when the plot could not be drawn
    problem: str = ""


@dataclass
class ClaimView:
    """One claim as the atlas shows it: the study's declaration and its newest stored row (None: not run)."""
    id: str
    kind: str
    theorem: str
    statement: str
    declared_criterion: str  # the kit's rendering from the current declaration ("" for hand-built claims)
    row: dict | None = None
    retired: bool = False  # stored, but the study no longer declares it
    figures: list[Figure] = field(default_factory=list)

    @property
    def contract(self) -> dict:
        return (self.row or {}).get("numbers", {}).get("_contract") or {}

    @property
    def numbers(self) -> dict:
        return {k: v for k, v in (self.row or {}).get("numbers", {}).items() if k != "_contract"}

    @property
    def verdict(self) -> str:
        return self.row["verdict"] if self.row else "not run"

    @property
    def criterion(self) -> str:
        return self.contract.get("criterion") or self.declared_criterion

    @property
    def ran_at(self) -> str:
        if not self.row:
            return ""
        return dt.datetime.fromtimestamp(self.row["created"]).astimezone().isoformat(timespec="seconds")

    @property
    def overrides(self) -> dict | None:
        """The --set overrides of the run; None when the run predates their recording."""
        o = self.contract.get("overrides")
        return o if isinstance(o, dict) else None


@dataclass
class MapView:
    file: str  # relative to the site root
    title: str
    caption: str


@dataclass
class StudyView:
    study: Study
    claims: list[ClaimView]
    maps: list[MapView] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def page(self) -> str:
        return f"{self.name}.html"


def set_text(value: Any) -> str:
    """A --set value that parse_value reads back as `value` (JSON text is YAML; a plain word stays plain)."""
    candidates = [value] if isinstance(value, str) else []
    candidates.append(json.dumps(value))
    for text in candidates:
        try:
            if json.dumps(parse_value(text)) == json.dumps(value):
                return text
        except (ConfigError, TypeError, ValueError):
            continue
    return candidates[-1]


def reproduce_command(study: str, view: ClaimView) -> str | None:
    """`theorylab check ...` that reruns this claim at the stored config (None when the claim never ran)."""
    if view.row is None:
        return None
    parts = ["theorylab", "check", study, "--size", str(view.row["size"]), "--seeds", str(view.row["seeds"])]
    for key, value in (view.overrides or {}).items():
        parts += ["--set", f"{key}={set_text(value)}"]
    parts += ["--claim", view.id]
    return " ".join(shlex.quote(p) for p in parts)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def _claim_views(study: Study, rows: list[dict]) -> list[ClaimView]:
    by_id = {r["claim"]: r for r in rows}
    views = []
    for c in study.claims:
        crit = c.criterion.text() if getattr(c, "criterion", None) is not None else ""
        views.append(ClaimView(c.id, c.kind, c.theorem, c.statement, crit, by_id.pop(c.id, None)))
    for cid, r in by_id.items():  # results of claims the study has since dropped or renamed: shown, marked
        con = r.get("numbers", {}).get("_contract") or {}
        views.append(ClaimView(cid, con.get("kind", ""), con.get("theorem", ""), con.get("statement", ""), "", r,
                               retired=True))
    return views


def _draw_figures(study: Study, view: ClaimView, site: Path) -> None:
    """Draws the claim's stored figure data with the study's plot functions (as write_report does); a figure the
    current plot cannot draw (data from an older run) is listed with the reason instead of failing the site."""
    for name, data in ((view.row or {}).get("figures") or {}).items():
        plot = study.plots.get(name)
        if plot is None:
            view.figures.append(Figure(name, None, "the study has no plot of this name any more"))
            continue
        rel = f"{_safe(study.name)}/{_safe(view.id)}--{_safe(name)}.png"
        try:
            write_atomically(site / rel, lambda tmp, plot=plot, data=data: plot(data, tmp))
        except OSError:
            raise  # a full disk is the site's failure, not the figure's
        except Exception as e:  # noqa: BLE001 - an old store's data against a newer plot: said on the page
            view.figures.append(Figure(name, None, f"could not be drawn from the stored data ({type(e).__name__}: "
                                                   f"{' '.join(str(e).split())[:200]})"))
            continue
        view.figures.append(Figure(name, rel))


def _copy_maps(study: str, maps_root: Path, site: Path) -> list[MapView]:
    """Theorem maps written by `theorylab map` (<store dir>/maps/<study>/NAME.png with NAME.json beside it)."""
    folder = maps_root / study
    if not folder.is_dir():
        return []
    out = []
    for png in sorted(folder.glob("*.png")):
        if not png.is_file():
            continue
        meta: dict = {}
        side = png.with_suffix(".json")
        if side.is_file():
            try:
                loaded = json.loads(side.read_text())
                meta = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                meta = {}
        rel = f"{_safe(study)}/maps/{_safe(png.name)}"
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, site / rel)
        out.append(MapView(rel, str(meta.get("title") or png.stem), str(meta.get("caption") or "")))
    return out


def check_atlas_output(out: Path) -> None:
    """Before anything is read: --out must be a folder we may (re)place."""
    check_output_folder(out)
    if out.is_dir() and any(out.iterdir()) and not (out / ATLAS_MARKER).exists():
        raise ConfigError(f"--out {out} is a folder that holds other files and no earlier atlas; give a new or "
                          "empty folder (an earlier atlas is replaced)")


def open_store(path: Path) -> Store:
    store = Store(path, create=False)
    try:
        store.latest_claims("")  # a store of an older shape without a claims table fails here, before any work
    except StoreError as e:
        raise StoreError(f"{path} is not a theorylab results store with claims ({e})") from None
    return store


def collect(store: Store, size: str | None, site: Path, maps_root: Path) -> list[StudyView]:
    views = []
    for name in study_names():
        study = get_study(name)
        sv = StudyView(study, _claim_views(study, store.latest_claims(name, size)))
        for cv in sv.claims:
            _draw_figures(study, cv, site)
        sv.maps = _copy_maps(name, maps_root, site)
        views.append(sv)
    return views


def build_atlas(store_path: Path, out: Path, size: str | None = None) -> list[StudyView]:
    """Writes the site into `out` (atomically: built beside it, then renamed); returns what it shows."""
    from theorylab.core.atlas_html import index_page, study_page

    out = Path(os.path.abspath(out))  # "." or "site/" name their folder too
    check_atlas_output(out)
    store = open_store(Path(store_path))
    missing = [p for p in [out, *out.parents] if not p.exists()]
    first_missing = missing[-1] if missing else None  # the topmost folder this call creates
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private (0700); the site is an ordinary folder
        views = collect(store, size, tmp, Path(store_path).absolute().parent / "maps")
        meta = {"store": str(Path(store_path)), "size": size, "generated": dt.datetime.now().astimezone()
                .isoformat(timespec="seconds")}
        for sv in views:
            (tmp / sv.page).write_text(study_page(sv, meta), encoding="utf-8")
        (tmp / "index.html").write_text(index_page(views, meta), encoding="utf-8")
        (tmp / ATLAS_MARKER).write_text("written by `theorylab atlas`; a rebuild replaces this folder\n")
        _replace_folder(tmp, out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if first_missing is not None and first_missing != out:
            shutil.rmtree(first_missing, ignore_errors=True)  # parents this call created for --out
        raise
    return views


def _replace_folder(new: Path, out: Path) -> None:
    """new -> out in one rename; an earlier atlas at out is moved aside first and removed after."""
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old)  # rename(2) replaces the empty folder mkdtemp made
        try:
            os.replace(new, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)  # a missing or empty folder is replaced in one step
