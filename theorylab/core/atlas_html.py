"""The atlas's HTML: one self-contained page per study and an index (inline CSS; no external files or fonts).

Each page carries one small inline script: once the page has loaded it marks any figure that failed to load (the
reader sees "figure missing" instead of a blank box) and records `data-images="loaded/total"` on <html>, which the
browser test reads.
"""
from __future__ import annotations

import json
from collections import Counter
from html import escape
from urllib.parse import quote

from theorylab.core.atlas import ClaimView, StudyView, reproduce_command
from theorylab.core.report import CONTRACT
from theorylab.core.verdict import fmt

VERDICT_CLASS = {"holds": "good", "agrees": "good", "fails": "bad", "differs": "differs", "inconclusive": "unsure",
                 "ERROR": "error", "not run": "notrun"}
ORDER = ("holds", "agrees", "fails", "differs", "inconclusive", "ERROR", "not run")

CSS = """
:root { --fg:#1f2328; --muted:#656d76; --line:#d8dee4; --bg:#f6f8fa; --card:#fff; --link:#0969da; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width:1180px; margin:0 auto; padding:20px 24px 48px; }
a { color:var(--link); text-decoration:none; } a:hover { text-decoration:underline; }
h1 { font-size:24px; margin:4px 0 2px; } h2 { font-size:18px; margin:0; } h3 { font-size:15px; margin:0; }
.muted { color:var(--muted); } .small { font-size:12px; }
header.top { display:flex; justify-content:space-between; align-items:flex-end; gap:16px; flex-wrap:wrap;
             margin-bottom:16px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px;
        margin:0 0 16px; }
.card-head { display:flex; justify-content:space-between; align-items:baseline; gap:12px; flex-wrap:wrap;
             margin-bottom:8px; }
.counts { display:flex; gap:6px; flex-wrap:wrap; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
         white-space:nowrap; color:#fff; }
.badge.good { background:#1a7f37; } .badge.bad { background:#cf222e; } .badge.differs { background:#8250df; }
.badge.unsure { background:#bf8700; } .badge.error { background:#82071e; }
.badge.notrun { background:#fff; color:var(--muted); border:1px dashed #afb8c1; font-weight:500; }
table { border-collapse:collapse; width:100%; }
table.claims { table-layout:fixed; }
th, td { text-align:left; vertical-align:top; padding:5px 8px; border-top:1px solid var(--line);
         overflow-wrap:break-word; }
table.claims td { font-size:13px; }
table.overview tr:first-child td { border-top:none; }
.clamp { display:-webkit-box; -webkit-line-clamp:2; -webkit-box-orient:vertical; overflow:hidden; }
.t { font-size:11px; }
td.clip { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
th { font-size:12px; font-weight:600; color:var(--muted); border-top:none; white-space:nowrap; }
td.num { font-variant-numeric:tabular-nums; }
tr.notrun td { color:var(--muted); padding-top:3px; padding-bottom:3px; }
.cfg { font-size:12px; color:var(--muted); }
.strip { display:flex; gap:3px; flex-wrap:wrap; }
.dot { display:inline-block; width:14px; height:14px; border-radius:3px; }
.dot.good { background:#1a7f37; } .dot.bad { background:#cf222e; } .dot.differs { background:#8250df; }
.dot.unsure { background:#bf8700; } .dot.error { background:#82071e; }
.dot.notrun { background:#fff; border:1px dashed #afb8c1; }
table.overview td { padding:4px 8px; vertical-align:middle; }
code, pre { font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
pre { background:var(--bg); border:1px solid var(--line); border-radius:6px; padding:8px 10px; margin:6px 0;
      overflow:auto; max-height:320px; white-space:pre-wrap; overflow-wrap:break-word; }
dl.facts { display:grid; grid-template-columns:130px 1fr; gap:4px 12px; margin:10px 0; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; overflow-wrap:anywhere; }
.figs { display:flex; flex-wrap:wrap; gap:12px; margin-top:10px; }
figure { margin:0; border:1px solid var(--line); border-radius:6px; padding:8px; background:#fff; max-width:100%; }
figure img { display:block; max-width:100%; max-height:560px; width:auto; height:auto; }
figcaption { font-size:12px; color:var(--muted); margin-top:4px; }
img.broken { min-height:40px; background:#ffebe9; }
.note { font-size:12px; color:#9a6700; }
details summary { cursor:pointer; color:var(--muted); font-size:13px; margin-top:8px; }
table.md { width:auto; font-size:13px; margin:6px 0 10px; } table.md td, table.md th { padding:3px 8px; }
nav.toc { font-size:13px; }
"""

# marks figures that failed to load and records loaded/total for the browser test
SCRIPT = """window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; continue; }
    imgs[i].classList.add("broken"); imgs[i].alt = "figure missing: " + imgs[i].getAttribute("src");
  }
  document.documentElement.setAttribute("data-images", ok + "/" + imgs.length);
});"""


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{escape(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n<script>{SCRIPT}</script>\n"
            "</body>\n</html>\n")


def href(path: str) -> str:
    return escape(quote(path), quote=True)


def badge(verdict: str, text: str = "") -> str:
    return f'<span class="badge {VERDICT_CLASS.get(verdict, "error")}">{escape(text or verdict)}</span>'


def counts(claims: list[ClaimView]) -> str:
    c = Counter(v.verdict for v in claims)
    return '<div class="counts">' + "".join(badge(w, f"{c[w]} {w}") for w in ORDER if c[w]) + "</div>"


def interval_text(iv: dict | None) -> str:
    """mean [lo, hi] (the 95% interval over seeds); a single seed has no interval."""
    if not iv or not iv.get("n"):
        return "no finite value" if iv else "&ndash;"
    if iv.get("lo") is None:
        return escape(fmt(iv["mean"]))
    return f"{escape(fmt(iv['mean']))} <span class='muted'>[{escape(fmt(iv['lo']))}, {escape(fmt(iv['hi']))}]</span>"


def seeds_text(v: ClaimView) -> str:
    c = v.contract
    if v.row is None:
        return "&ndash;"
    if "seeds_passed" in c:
        return f"{c['seeds_passed']}/{c.get('seeds', v.row['seeds'])}"
    return f"?/{v.row['seeds']}"


def control_text(v: ClaimView) -> str:
    ctl = v.contract.get("control")
    if not ctl:
        return "&ndash;" if v.row is not None else ""
    iv = ctl.get("interval")
    value = f"{interval_text(iv)}<br>" if iv else ""
    desc = escape(str(ctl.get("description", "")))
    return (f"{value}<span class='small muted clamp' title='{desc}'>passes {ctl.get('passes', '?')}/"
            f"{ctl.get('seeds', '?')} ({desc})</span>")


def key_text(v: ClaimView) -> str:
    c = v.contract
    if v.row is None:
        return ""
    if not c:
        return f"<span class='small'>{escape(v.row.get('summary', '')[:160])}</span>"
    if c.get("not_applicable"):
        return f"<span class='small'>not applicable: {escape(c['not_applicable'][:160])}</span>"
    if c.get("key") is None:
        return f"<span class='small'>{escape(str(v.row.get('summary', ''))[:160])}</span>"
    return (f"{interval_text(c.get('interval'))}<br><span class='small muted clamp' title='{escape(c['key'])}'>"
            f"{escape(c['key'])}</span>")


def config_plain(v: ClaimView) -> str:
    """size · seeds · the --set overrides, as plain text ("" when the claim never ran)."""
    if v.row is None:
        return ""
    o = v.overrides
    sets = ("no overrides" if o == {} else "overrides not recorded" if o is None
            else " ".join(f"{k}={x if isinstance(x, str) else json.dumps(x)}" for k, x in o.items()))
    return f"{v.row['size']} \u00b7 {v.row['seeds']} seeds \u00b7 {sets}"


def config_text(v: ClaimView) -> str:
    return escape(config_plain(v))


def ran_text(v: ClaimView) -> str:
    if v.row is None:
        return ""
    day, _, time = v.ran_at.partition("T")
    return f"<span title='{escape(v.ran_at)}'>{escape(day)}<br><span class='t muted'>{escape(time)}</span></span>"


def claims_table(sv: StudyView, link: str) -> str:
    """link: the page the claim ids point into ('' for this page)."""
    rows = []
    for v in sv.claims:
        cls = " class='notrun'" if v.row is None else ""
        retired = " <span class='small note'>(no longer declared)</span>" if v.retired else ""
        rows.append(
            f"<tr{cls}><td><a href='{href(link)}#{href(v.id)}'>{escape(v.id)}</a>{retired} "
            f"<span class='small muted'>{escape(v.theorem)}</span></td><td>{escape(v.kind)}</td>"
            f"<td>{badge(v.verdict)}</td><td class='num'>{seeds_text(v)}</td><td class='num'>{key_text(v)}</td>"
            f"<td class='num'>{control_text(v)}</td><td class='num'>{ran_text(v)}</td>"
            f"<td class='cfg'><span class='clamp' title='{escape(config_plain(v))}'>{config_text(v)}</span></td></tr>")
    cols = "".join(f"<col style='width:{w}%'>" for w in (17, 9, 10, 6, 19, 15, 11, 13))
    head = ("<tr><th>claim</th><th>kind</th><th>verdict</th><th>seeds</th><th>key number [95% CI]</th>"
            "<th>control</th><th>ran</th><th>config</th></tr>")
    return f"<table class='claims'><colgroup>{cols}</colgroup>\n{head}\n" + "\n".join(rows) + "\n</table>"


def overview(views: list[StudyView]) -> str:
    """One line per study: a coloured square per claim (hover: claim and verdict), linking to the claim."""
    rows = []
    for sv in views:
        dots = "".join(f"<a class='dot {VERDICT_CLASS.get(v.verdict, 'error')}' href='{href(sv.page)}#{href(v.id)}' "
                       f"title='{escape(v.id)}: {escape(v.verdict)}'></a>" for v in sv.claims)
        ran = sum(v.row is not None for v in sv.claims)
        rows.append(f"<tr><td><a href='#{href(sv.name)}'>{escape(sv.name)}</a></td><td><div class='strip'>{dots}"
                    f"</div></td><td class='small muted'>{ran}/{len(sv.claims)} run</td>"
                    f"<td class='small clip' title='{escape(sv.study.paper)}'>{escape(sv.study.title)}</td></tr>")
    cols = "".join(f"<col style='width:{w}%'>" for w in (15, 17, 7, 61))
    return f"<table class='overview claims'><colgroup>{cols}</colgroup>" + "".join(rows) + "</table>"


def index_page(views: list[StudyView], meta: dict) -> str:
    every = [v for sv in views for v in sv.claims]
    size = f"size {meta['size']}" if meta.get("size") else "newest result of any size"
    parts = [f"<header class='top'><div><h1>theorylab atlas</h1><div class='muted'>{len(views)} studies, "
             f"{len(every)} claims &middot; {escape(size)} &middot; store <code>{escape(meta['store'])}</code> &middot; "
             f"generated {escape(meta['generated'])}</div></div>{counts(every)}</header>"]
    parts.append(f"<section class='card'>{overview(views)}</section>")
    for sv in views:
        parts.append(f"<section class='card' id='{escape(sv.name)}'><div class='card-head'><div>"
                     f"<h2><a href='{href(sv.page)}'>{escape(sv.name)}</a></h2><div>{escape(sv.study.title)}</div>"
                     f"<div class='small muted'>{escape(sv.study.paper)}</div></div>{counts(sv.claims)}</div>"
                     f"{claims_table(sv, sv.page)}</section>")
    return page("theorylab atlas", "\n".join(parts))


def markdown_table(md: str) -> str:
    """A Markdown pipe table (numbers["tables"]) as an HTML table; other text is shown as it is."""
    lines = [ln.strip() for ln in md.strip().splitlines()]
    if len(lines) < 2 or not all(ln.startswith("|") for ln in lines):
        return f"<pre>{escape(md)}</pre>"
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    body = [r for r in cells[1:] if not all(set(c) <= set(":- ") for c in r)]
    head = "".join(f"<th>{escape(c)}</th>" for c in cells[0])
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table class='md'><tr>{head}</tr>{rows}</table>"


def claim_section(sv: StudyView, v: ClaimView) -> str:
    facts = [("statement", escape(v.statement) or "&ndash;"), ("kind", f"{escape(v.kind)} &middot; {escape(v.theorem)}")]
    crit = escape(v.criterion) if v.criterion else "&ndash;"
    if v.row is None and v.criterion:
        crit += " <span class='small muted'>(as the study declares it now)</span>"
    facts.append(("criterion", crit))
    if v.row is None:
        facts.append(("result", "not run: the store holds no result for this claim"))
    else:
        c = v.contract
        facts += [("seeds pass", seeds_text(v)), ("key number", key_text(v))]
        if c.get("control"):
            facts.append(("control", control_text(v)))
        facts.append(("measured", f"<span class='small'>{escape(str(v.row.get('summary', '')))}</span>"))
        if c.get("settle"):
            facts.append(("to settle", escape(c["settle"])))
        facts += [("ran", f"{escape(v.ran_at)} &middot; {v.row.get('seconds') or 0:.1f} s"),
                  ("config", config_text(v))]
        cmd = reproduce_command(sv.name, v)
        note = ("" if v.overrides is not None else "<div class='note'>this run predates the recording of --set "
                "overrides: the command may differ from the one that ran</div>")
        facts.append(("reproduce", f"<pre>{escape(cmd or '')}</pre>{note}"))
    dl = "<dl class='facts'>" + "".join(f"<dt>{k}</dt><dd>{val}</dd>" for k, val in facts) + "</dl>"
    figs = ""
    if v.figures:
        items = []
        for f in v.figures:
            if f.file:
                items.append(f"<figure><img src='{href(f.file)}' alt='{escape(f.name)}'>"
                             f"<figcaption>{escape(f.name)}</figcaption></figure>")
            else:
                items.append(f"<figure><figcaption>{escape(f.name)}: {escape(f.problem)}</figcaption></figure>")
        figs = "<div class='figs'>" + "".join(items) + "</div>"
    numbers = ""
    if v.row is not None:
        nums = v.numbers
        tables = nums.get("tables") if isinstance(nums.get("tables"), dict) else {}
        shown = "".join(f"<h3 class='small'>{escape(str(t))}</h3>{markdown_table(str(md))}" for t, md in tables.items())
        rest = {k: x for k, x in nums.items() if k != "tables"}
        numbers = (f"{shown}<details><summary>numbers (JSON)</summary><pre>"
                   f"{escape(json.dumps(rest, indent=1, default=str))}</pre></details>")
    retired = "<span class='note'>stored, but the study no longer declares this claim</span>" if v.retired else ""
    return (f"<section class='card' id='{escape(v.id)}'><div class='card-head'><h2>{escape(v.id)} {badge(v.verdict)}"
            f"</h2>{retired}</div>{dl}{figs}{numbers}</section>")


def study_page(sv: StudyView, meta: dict) -> str:
    s = sv.study
    parts = [f"<div class='small'><a href='index.html'>&larr; atlas</a></div>",
             f"<header class='top'><div><h1>{escape(s.title)}</h1><div class='muted'>{escape(s.paper)}</div>"
             f"<div class='small muted'>study <code>{escape(s.name)}</code> &middot; store "
             f"<code>{escape(meta['store'])}</code></div></div>{counts(sv.claims)}</header>",
             f"<section class='card'>{claims_table(sv, '')}</section>"]
    if sv.maps:
        items = "".join(f"<figure><img src='{href(m.file)}' alt='{escape(m.title)}'><figcaption><b>{escape(m.title)}"
                        f"</b>{' &middot; ' + escape(m.caption) if m.caption else ''}</figcaption></figure>"
                        for m in sv.maps)
        parts.append(f"<section class='card'><h2>Theorem maps</h2><div class='figs'>{items}</div></section>")
    parts += [claim_section(sv, v) for v in sv.claims]
    parts.append(f"<details class='card'><summary>how verdicts are read</summary><p>{escape(CONTRACT)}</p></details>")
    return page(f"{s.name}: {s.title}", "\n".join(parts))
