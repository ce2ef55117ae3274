"""`theorylab atlas`: the static site written from a store of a few claims run at tiny configs.

Checked: every registered study and claim is listed, unrun claims say "not run", every link and image resolves,
every page is well-formed HTML with no external resource, the reproduce command reruns the claim to the same
result, older store rows still render, bad inputs are one line and exit 2, a failure leaves nothing behind; and a
real headless Chromium loads the pages with every figure and no console message (skipped only without Chromium).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import parse_assignments
from theorylab.core.store import Store
from theorylab.core.study import get_study, study_names

CHROMIUM = Path("/usr/bin/chromium")
RUN = {"icl": ["thm1_in_domain", "prop1_attention"], "retrieval": ["fig_pcas_passage"]}
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store holding three claims run at tiny configs (2 seeds) and one theorem map beside it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path_factory.mktemp("atlas") / "runs" / "store.sqlite"
        st = Store(path)
        for name, ids in RUN.items():
            s = get_study(name)
            run_claims(ClaimContext(s, "quick", 2, torch.device("cpu"), st, overrides=dict(s.tiny)), ids)
    finally:
        torch.set_num_threads(before)
    maps = path.parent / "maps" / "icl"
    maps.mkdir(parents=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.imshow([[0, 1], [1, 0]])
    fig.savefig(maps / "ood region.png")
    plt.close(fig)
    (maps / "ood region.json").write_text(json.dumps({"title": "Thm 2 region", "caption": "where S1 >= 1"}))
    (maps / "orphan.json").write_text("{}")  # a JSON without its PNG is not shown
    return path


@pytest.fixture(scope="module")
def site(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "atlas"
    r = runner.invoke(app, ["atlas", "--store", str(store), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


class StrictHTML(HTMLParser):
    """Collects links, images and ids, and fails on unbalanced or misnested elements."""
    VOID = {"meta", "img", "br", "col", "link", "input", "hr", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.ids: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        for k in ("src", "href"):
            if a.get(k, "").startswith(("http:", "https:", "//")):
                self.errors.append(f"external resource {a[k]}")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}> at {self.getpos()}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> StrictHTML:
    p = StrictHTML()
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    p.feed(text)
    p.close()
    assert p.errors == [] and p.stack == [], (path.name, p.errors, p.stack)
    assert len(p.ids) == len(set(p.ids)), f"{path.name}: duplicate ids"
    return p


def claim_row(html: str, claim: str) -> str:
    m = re.search(rf"<tr[^>]*><td><a href='[^']*#{claim}'>.*?</tr>", html, re.S)
    assert m, claim
    return m.group(0)


def test_every_study_and_claim_is_listed_and_unrun_claims_say_not_run(site, store):
    index = (site / "index.html").read_text()
    stored = Store(store, create=False)
    for name in study_names():
        assert f"href='{name}.html'" in index
        assert (site / f"{name}.html").is_file()
        rows = {r["claim"]: r for r in stored.latest_claims(name)}
        for c in get_study(name).claims:
            row = claim_row(index, c.id)
            if c.id in rows:
                r = rows[c.id]
                con = r["numbers"]["_contract"]
                assert f">{r['verdict']}</span>" in row and "not run" not in row
                assert f"{con['seeds_passed']}/{r['seeds']}" in row
                assert dt.datetime.fromtimestamp(r["created"]).astimezone().isoformat(timespec="seconds") in row
            else:
                assert ">not run</span>" in row and "seeds \u00b7" not in row, c.id
    n_run = sum(len(v) for v in RUN.values())
    total = sum(len(get_study(n).claims) for n in study_names())
    assert index.count("class='notrun'") == total - n_run


def test_the_control_and_the_interval_are_shown_beside_the_key_number(site, store):
    r = next(r for r in Store(store, create=False).latest_claims("icl") if r["claim"] == "thm1_in_domain")
    con = r["numbers"]["_contract"]
    row = claim_row((site / "index.html").read_text(), "thm1_in_domain")
    from theorylab.core.verdict import fmt

    assert f"{fmt(con['interval']['mean'])} <span class='muted'>[{fmt(con['interval']['lo'])}" in row
    ctl = con["control"]
    assert ctl["interval"]["n"] == 2 and fmt(ctl["interval"]["mean"]) in row
    assert f"passes {ctl['passes']}/{ctl['seeds']} ({ctl['description']})" in row


def test_every_link_and_image_resolves_and_every_page_parses(site):
    pages = sorted(site.glob("*.html"))
    assert len(pages) == len(study_names()) + 1
    ids = {p.name: set(parse(p).ids) for p in pages}
    images = 0
    for p in pages:
        parsed = parse(p)
        for src in parsed.images:
            images += 1
            f = site / unquote(src)
            assert f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", (p.name, src)
        for link in parsed.links:
            u = urlparse(link)
            assert not u.scheme and not u.netloc, link
            target = unquote(u.path) or p.name
            assert (site / target).is_file(), (p.name, link)
            if u.fragment:
                assert unquote(u.fragment) in ids[target], (p.name, link)
    assert images >= 3  # the prop1 figure, the retrieval table figure and the theorem map


def test_figures_are_drawn_from_the_stored_data_and_maps_are_shown(site, store):
    icl = (site / "icl.html").read_text()
    stored = {r["claim"]: r for r in Store(store, create=False).latest_claims("icl")}
    for name in stored["prop1_attention"]["figures"]:
        assert (site / "icl" / f"prop1_attention--{name}.png").is_file()
        assert f"src='icl/prop1_attention--{name}.png'" in icl
    assert "src='icl/maps/ood_region.png'" in icl and "Thm 2 region" in icl and "where S1 &gt;= 1" in icl
    assert "orphan" not in icl
    assert "Theorem maps" not in (site / "retrieval.html").read_text()  # no maps folder: no section


def commands(page: Path) -> dict[str, list[str]]:
    html = page.read_text()
    out = {}
    for claim, cmd in re.findall(r"<section class='card' id='([^']+)'>(?:(?!</section>).)*?<dt>reproduce</dt><dd><pre>(.*?)</pre>",
                                 html, re.S):
        import html as h
        out[claim] = shlex.split(h.unescape(cmd))
    return out


def test_the_reproduce_command_carries_the_exact_config(site, store):
    cmds = commands(site / "icl.html")
    assert set(cmds) == set(RUN["icl"])
    argv = cmds["thm1_in_domain"]
    assert argv[:3] == ["theorylab", "check", "icl"]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert parse_assignments(sets) == get_study("icl").tiny
    assert argv[argv.index("--size") + 1] == "quick" and argv[argv.index("--seeds") + 1] == "2"
    assert argv[argv.index("--claim") + 1] == "thm1_in_domain"


def test_the_reproduce_command_reruns_to_the_same_result(site, store, tmp_path):
    argv = commands(site / "retrieval.html")["fig_pcas_passage"]
    r = runner.invoke(app, [*argv[1:], "--store", str(tmp_path / "again.sqlite"), "--device", "cpu", "--json"])
    assert r.exit_code in (0, 1, 3), r.output
    again = json.loads(r.output)[0]
    stored = Store(store, create=False).latest_claims("retrieval")[0]
    assert again["verdict"] == stored["verdict"]
    assert again["numbers"] == {k: v for k, v in stored["numbers"].items() if k != "_contract"}


def test_older_store_rows_still_render(tmp_path):
    """Rows from before overrides were recorded (and before `_contract` existed) render; nothing is made up."""
    st = Store(tmp_path / "old.sqlite")
    contract = {"kind": "theorem", "criterion": "old criterion text", "seeds_passed": 1, "seeds": 2,
                "key": "k", "interval": {"mean": 0.5, "lo": 0.1, "hi": 0.9, "min": 0.4, "max": 0.6, "n": 2}}
    st.put_claim("icl", "thm1_in_domain", "quick", 2, False, "inconclusive", "old summary",
                 {"a": 1, "_contract": contract}, {"no_such_plot": {}}, 1.0)
    st.put_claim("icl", "thm2_ood", "full", 3, True, "holds", "older summary", {"b": 2}, {}, 1.0)
    st.put_claim("icl", "gone_claim", "quick", 2, True, "holds", "a claim since removed", {}, {}, 1.0)
    out = tmp_path / "site"
    r = runner.invoke(app, ["atlas", "--store", str(st.path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    html = (out / "icl.html").read_text()
    parse(out / "icl.html")
    assert "overrides not recorded" in html and "old criterion text" in html
    assert "the study has no plot of this name any more" in html
    assert "gone_claim" in html and "no longer declares" in html
    assert "?/3" in claim_row((out / "index.html").read_text(), "thm2_ood")
    r = runner.invoke(app, ["atlas", "--store", str(st.path), "--out", str(out), "--size", "full"])
    assert r.exit_code == 0, r.output
    index = (out / "index.html").read_text()
    assert ">not run</span>" in claim_row(index, "thm1_in_domain") and ">holds</span>" in claim_row(index, "thm2_ood")


def one_line_error(r, *needles):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) <= 2
    for n in needles:
        assert n in r.output, (n, r.output)


def test_bad_inputs_are_one_line_and_exit_2(store, tmp_path):
    out = tmp_path / "site"
    one_line_error(runner.invoke(app, ["atlas", "--store", str(tmp_path / "none.sqlite"), "--out", str(out)]),
                   "no store")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    one_line_error(runner.invoke(app, ["atlas", "--store", str(junk), "--out", str(out)]), "not a theorylab store")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    one_line_error(runner.invoke(app, ["atlas", "--store", str(store), "--out", str(a_file)]), "--out", "is a file")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("mine")
    one_line_error(runner.invoke(app, ["atlas", "--store", str(store), "--out", str(busy)]), "--out", "other files")
    assert (busy / "thesis.tex").read_text() == "mine"
    one_line_error(runner.invoke(app, ["atlas", "--store", str(store), "--out", str(out), "--size", "huge"]),
                   "--size", "quick")
    assert not out.exists() and a_file.read_text() == "x"


def test_a_failure_leaves_nothing_and_keeps_an_earlier_atlas(store, tmp_path, monkeypatch):
    from theorylab.core import atlas_html

    out = tmp_path / "new" / "site"

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atlas_html, "index_page", full_disk)
    r = runner.invoke(app, ["atlas", "--store", str(store), "--out", str(out)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path) == []
    monkeypatch.undo()
    assert runner.invoke(app, ["atlas", "--store", str(store), "--out", str(out)]).exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setattr(atlas_html, "index_page", full_disk)
    assert runner.invoke(app, ["atlas", "--store", str(store), "--out", str(out)]).exit_code == 2
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the earlier atlas is untouched
    assert sorted(os.listdir(out.parent)) == ["site"]  # no temporary folder left beside it


def _chromium(args: list[str], profile: Path) -> subprocess.Popen:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
    return subprocess.Popen([str(CHROMIUM), *flags, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium); "
                                                   "the real-browser check of the atlas is skipped")
def test_a_real_browser_loads_every_page_and_figure(site, tmp_path):
    artifacts = Path(os.environ.get("THEORYLAB_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "atlas-index.png"
    shot.unlink(missing_ok=True)
    pages = ["index.html", "icl.html", "retrieval.html"]
    procs = {p: _chromium(["--dump-dom", (site / p).as_uri()], tmp_path / f"profile-{p}") for p in pages}
    procs["shot"] = _chromium([f"--screenshot={shot}", "--window-size=1280,900", (site / "index.html").as_uri()],
                              tmp_path / "profile-shot")
    results = {k: p.communicate(timeout=90) for k, p in procs.items()}
    for page in pages:
        dom, log = results[page]
        assert procs[page].returncode == 0, log[-2000:]
        console = [ln for ln in log.splitlines() if ":CONSOLE" in ln]
        assert console == [], (page, console)
        n_img = len(parse(site / page).images)
        m = re.search(r'<html[^>]*data-images="(\d+)/(\d+)"', dom)
        assert m, f"{page}: the page's load handler did not run"
        assert (int(m.group(1)), int(m.group(2))) == (n_img, n_img), (page, m.group(0))
        assert not re.search(r"<img[^>]*broken", dom), page
    assert int(re.search(r'data-images="\d+/(\d+)"', results["icl.html"][0]).group(1)) >= 2
    assert procs["shot"].returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, results["shot"][1][-2000:]
    print(f"atlas screenshot: {shot}", file=sys.stderr)
