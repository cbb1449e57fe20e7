"""The dashboard as one self-contained HTML page: the fleet, the runs, the newest plan and
the coverage (what ``serve`` shows at ``/`` and ``hippolyte dashboard`` writes to a file).

Pure: :func:`render` takes :func:`hippolyte.ops.dashboard.gather`'s plain data and returns
the page. Inline CSS, inline SVG and a small inline script (sorting and filtering, nothing
else); no font, image, script or style from any address, and a Content-Security-Policy that
forbids them, so the page opens offline, from a file or an e-mail attachment. The tables
read fully with JavaScript off. Every name and reason is escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from hippolyte.core import plan_html
from hippolyte.core.dashboard_fleet import STATES, fleet_table

Json = Mapping[str, Any]

PLAN_EMBED_MAX = 400_000  # bytes of Gantt page embedded in a written file; larger: a note
REASONS_SHOWN = 10  # failed tables named per run, then "and N more"
# default-src 'none': nothing is fetched from anywhere; the plan's Gantt is an inline frame
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; frame-src 'self'; base-uri 'none'; form-action 'none'"
)

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em;color:#222}
h1{font-size:1.5em;margin:0}h2{font-size:1.2em;margin:1.4em 0 .4em}
nav a{margin-right:1em}header p{margin:.2em 0;color:#555}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.card{border:1px solid #ccc;border-radius:6px;padding:.3em .8em;min-width:7em}
.card b{display:block;font-size:1.4em}.card.warn{border-color:#b3261e;color:#b3261e}
.err{border:2px solid #b3261e;background:#fdecea;color:#7a1212;padding:.5em .8em;margin:.5em 0}
.note{border-left:4px solid #888;padding:.3em .8em;background:#f5f5f5}
table.list{border-collapse:collapse;font-size:13px}
table.list th,table.list td{border-bottom:1px solid #e4e4e4;padding:.2em .45em;text-align:left;
vertical-align:top}
table.list th[data-sort]{cursor:pointer;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td[data-v]{text-align:right;white-space:nowrap}#fleet-table td:first-child{white-space:nowrap}
td.bad,.bad{color:#b3261e}
.st{display:inline-block;min-width:5.5em;padding:0 .4em;border-radius:3px;color:#fff}
tr.ok .st{background:#2e7d32}tr.late .st{background:#b3261e}tr.missing .st{background:#6a1b1b}
tr.unreadable .st{background:#e65100}tr.excluded .st,tr.empty .st{background:#757575}
tr.late td,tr.missing td{background:#fdf1f0}
td svg{width:60px;height:16px;vertical-align:middle;margin-left:.4em}
td polyline{fill:none;stroke:#4e79a7;stroke-width:1.5}
small{color:#666}code{font-size:12px}
form.filter{margin:.4em 0}form.filter label{margin-right:1em}
iframe.plan{width:100%;height:80vh;border:1px solid #ccc}
"""

_JS = """
(function () {
  var table = document.getElementById("fleet-table");
  var form = document.getElementById("fleet-filter");
  if (!table || !form) return;
  form.hidden = false;
  var body = table.tBodies[0], heads = table.tHead.rows[0].cells, ageCol = 3;
  var count = document.getElementById("fleet-count");
  for (var i = 0; i < heads.length; i++) if (heads[i].textContent == "Age") ageCol = i;
  function value(row, col, numeric) {
    var cell = row.cells[col], v = cell.getAttribute("data-v");
    if (v === null) v = cell.textContent;
    if (!numeric) return v.toLowerCase();
    v = parseFloat(v);
    return isNaN(v) ? -Infinity : v;
  }
  table.tHead.addEventListener("click", function (e) {
    var th = e.target.closest("th");
    if (!th) return;
    var col = th.cellIndex, numeric = th.getAttribute("data-sort") == "num";
    var dir = th.getAttribute("aria-sort") == "ascending" ? -1 : 1;
    for (var k = 0; k < heads.length; k++) heads[k].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (p, q) {
      var x = value(p, col, numeric), y = value(q, col, numeric);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    for (var k = 0; k < rows.length; k++) body.appendChild(rows[k]);
  });
  function filter() {
    var name = form.q.value.toLowerCase(), state = form.state.value;
    var age = parseFloat(form.age.value), shown = 0;
    for (var k = 0; k < body.rows.length; k++) {
      var row = body.rows[k];
      var ok = (!name || row.cells[0].textContent.toLowerCase().indexOf(name) >= 0)
        && (!state || row.className == state)
        && (isNaN(age) || value(row, ageCol, true) >= age);
      row.hidden = !ok;
      if (ok) shown++;
    }
    count.textContent = shown + " of " + body.rows.length + " tables shown";
  }
  form.addEventListener("input", filter);
  form.addEventListener("submit", function (e) { e.preventDefault(); });
})();
"""


def render(doc: Json, *, refresh_s: int | None = None, plan_href: str | None = None) -> str:
    """The page. ``refresh_s``: reload itself every so many seconds (``serve``).
    ``plan_href``: link the plan's Gantt there (``serve``); without, embed it (a file)."""
    rpo = float(doc["rpoHours"])
    tables = doc["tables"]
    body = [
        _header(doc, refresh_s=refresh_s),
        *(f'<div class="err" role="alert">{escape(e)}</div>' for e in doc["errors"]),
        _cards(doc),
        '<section id="fleet"><h2>Fleet</h2>',
        _fleet(tables, rpo_hours=rpo, doc=doc),
        "</section>",
        f'<section id="runs"><h2>Runs</h2>{_runs(doc)}</section>',
        f'<section id="plan"><h2>Plan</h2>{_plan(doc.get("plan"), href=plan_href)}</section>',
        f'<section id="coverage"><h2>Coverage</h2>{_coverage(doc["coverage"])}</section>',
        f'<section id="drills"><h2>Drills</h2>{_drills(doc.get("drills") or [])}</section>',
    ]
    return _page("\n".join(body), refresh_s=refresh_s)


def _page(body: str, *, refresh_s: int | None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">\n' if refresh_s else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n{refresh}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>Hippolyte dashboard</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n<script>{_JS}</script>\n</body>\n</html>\n"
    )


def _header(doc: Json, *, refresh_s: int | None) -> str:
    when = str(doc["generatedAt"])[:19].replace("T", " ")
    again = f"; refreshes every {refresh_s} s" if refresh_s else ""
    repos = ", ".join(doc["repositories"]) or "none configured"
    return (
        "<header><h1>Hippolyte</h1>\n"
        f'<p>Generated <time id="generated">{escape(when)}</time> UTC{again}. '
        f"Repository: <code>{escape(repos)}</code>. RPO {float(doc['rpoHours']):g} h.</p>\n"
        '<nav><a href="#fleet">Fleet</a><a href="#runs">Runs</a><a href="#plan">Plan</a>'
        '<a href="#coverage">Coverage</a></nav></header>'
    )


def _cards(doc: Json) -> str:
    tables = doc["tables"]
    count = {state: sum(1 for t in tables if t["state"] == state) for state in STATES}
    failed_runs = sum(1 for r in doc["runs"] if r["outcome"] == "failed")
    newest = doc["runs"][0] if doc["runs"] else None
    open_boosts = len(newest["notPutBack"]) if newest else 0
    cards = [
        _card("tables", len(tables)),
        _card("ok", count["ok"]),
        _card("late", count["late"], warn=count["late"] > 0),
        _card("no backup", count["missing"], warn=count["missing"] > 0),
        _card("failed runs shown", failed_runs, warn=failed_runs > 0),
        _card("boosts not put back (newest run)", open_boosts, warn=open_boosts > 0),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _card(label: str, value: object, *, warn: bool = False) -> str:
    cls = "card warn" if warn else "card"
    return f'<div class="{cls}"><b>{escape(str(value))}</b>{escape(label)}</div>'


def _fleet(tables: Sequence[Json], *, rpo_hours: float, doc: Json) -> str:
    if not tables:
        if doc["errors"]:
            return "<p>No table to show: the repository could not be read (above).</p>"
        return (
            '<p class="note">The repository holds no backup yet. Tables appear here once '
            "their first backup commits.</p>"
        )
    options = "".join(f'<option value="{s}">{label}</option>' for s, label in STATES.items())
    form = (
        '<form id="fleet-filter" class="filter" hidden>'
        '<label>Name <input name="q" type="search" placeholder="contains"></label>'
        f'<label>State <select name="state"><option value="">any</option>{options}</select>'
        '</label><label>Age at least <input name="age" type="number" min="0" step="any" '
        'style="width:5em"> h</label><span id="fleet-count"></span></form>'
    )
    return form + fleet_table(tables, rpo_hours=rpo_hours)


# --- runs -------------------------------------------------------------------------------------


def _runs(doc: Json) -> str:
    shown = doc["runs"]
    if not shown:
        return "<p>No run recorded yet.</p>"
    rows = "\n".join(_run_row(r) for r in shown)
    total = doc["runCount"]
    more = (
        f"<p><small>The newest {len(shown)} of {total} runs.</small></p>"
        if total > len(shown)
        else ""
    )
    return (
        f'{more}<table id="runs-table" class="list"><thead><tr><th>Run</th><th>Outcome</th>'
        "<th>Tables</th><th>Reasons</th><th>Capacity boosts</th><th>Monitor</th>"
        f"<th>Records and logs</th></tr></thead>\n<tbody>\n{rows}\n</tbody></table>"
    )


def _run_row(r: Json) -> str:
    outcome = r["outcome"]
    cls = ' class="bad"' if outcome == "failed" else ""
    counts = f"{r['tables']}: {r['ok']} ok"
    if r["failed"]:
        counts += f", {len(r['failed'])} failed"
    if r["remote"]:
        counts += f", {len(r['remote'])} started remotely"
    return (
        f"<tr><td>{escape(r['id'])}</td><td{cls}>{escape(outcome)}</td>"
        f"<td>{escape(counts)}</td><td>{_reasons(r)}</td><td>{_capacity(r)}</td>"
        f"<td>{_monitor(r.get('monitor'))}</td><td><code>{escape(r['logs'])}</code></td></tr>"
    )


def _reasons(r: Json) -> str:
    lines = [f"{f['table']}: {f['error']}" for f in r["failed"]]
    lines += [f"{x['table']}: started in {x['startedIn']}" for x in r["remote"]]
    lines += list(r["problems"])
    return _bullets(lines)


def _capacity(r: Json) -> str:
    counts = r["capacity"]
    if not counts:
        return "-"
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    pending = [f"{p['table']}: {p['status']} {p['note']}".strip() for p in r["notPutBack"]]
    return escape(summary) + (_bullets(pending) if pending else "")


def _monitor(m: Json | None) -> str:
    if m is None:
        return "-"
    when = escape(str(m["checkedAt"])[:16].replace("T", " "))
    if m["ok"]:
        return f"ok <small>{when}</small>"
    lines = [f"{f['table']}: {f['reason']}" for f in m["failed"]]
    return f'<span class="bad">failed</span> <small>{when}</small>{_bullets(lines)}'


def _drills(shown: Sequence[Json]) -> str:
    """The newest restore drills: when, where, each table proven or not, its RTO."""
    if not shown:
        return "<p>No restore drill recorded yet (<code>hippolyte drill</code>, [drills]).</p>"
    rows = []
    for d in shown:
        outcome = "ok" if d["ok"] else '<span class="bad">failed</span>'
        lines = []
        for t in d["tables"]:
            rto = f", {t['secondsPerGb']:,.0f} s/GB" if t.get("secondsPerGb") else ""
            state = "proven" if t["ok"] else f"NOT proven: {t.get('error') or '?'}"
            lines.append(f"{t['table']}: {state} ({t['items']:,} items{rto})")
        when = escape(str(d["at"])[:16].replace("T", " "))
        rows.append(
            f"<tr><td>{escape(d['id'])}</td><td>{when}</td><td>{outcome}</td>"
            f"<td>{_bullets(lines)}</td><td><code>{escape(d['target'])}</code></td></tr>"
        )
    return (
        '<table id="drills-table" class="list"><thead><tr><th>Drill</th><th>At (UTC)</th>'
        "<th>Outcome</th><th>Tables</th><th>Restored into</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
    )


def _bullets(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    shown = "".join(f"<li>{escape(line)}</li>" for line in lines[:REASONS_SHOWN])
    more = f"<li>and {len(lines) - REASONS_SHOWN} more</li>" if len(lines) > REASONS_SHOWN else ""
    return f"<ul>{shown}{more}</ul>"


# --- plan and coverage ------------------------------------------------------------------------


def _plan(plan: Json | None, *, href: str | None) -> str:
    if plan is None:
        return "<p>No plan recorded yet: a run records its plan in the repository.</p>"
    p = plan["plan"]
    pipelines = p.get("pipelines") or []
    tables = sum(len(x["tables"]) for x in pipelines)
    s = p["settings"]
    text = (
        f"The plan of run {plan['runId']}, the newest in the repository: {len(pipelines)} "
        f"pipelines, {tables} tables, window {s['window_start']}–{s['window_end']} UTC, "
        f"finishes at {p.get('finishes_at', '?')} UTC, {len(p.get('skipped') or [])} skipped."
    )
    if href is not None:
        return f'<p>{escape(text)} <a href="{escape(href)}">Open its Gantt chart</a>.</p>'
    page = plan_html.render(p)
    if len(page) > PLAN_EMBED_MAX:
        note = f"The Gantt chart ({len(page) // 1000} KB) is too large to embed here"
        return f"<p>{escape(text)}</p><p>{note}: <code>hippolyte plan --format html</code>.</p>"
    return (
        f"<p>{escape(text)}</p><details open><summary>Gantt chart</summary>"
        f'<iframe class="plan" title="plan" sandbox srcdoc="{escape(page)}"></iframe></details>'
    )


def _coverage(cov: Json) -> str:
    if cov["discovered"]:
        intro = "<p>From the account's tables (DynamoDB discovery), against the repository.</p>"
    else:
        intro = (
            '<p class="note">No connection to DynamoDB here: what the repository knows (tables '
            "the newest plan skipped, tables whose run failed without a backup). "
            "<code>serve</code> and <code>hippolyte dashboard --discover</code> list the "
            "account's tables.</p>"
        )
    return (
        intro
        + "<h3>Tables with no backup</h3>"
        + _cov_table(cov["uncovered"], "coverage-uncovered")
        + "<h3>Tables excluded</h3>"
        + (_cov_table(cov["excluded"], "coverage-excluded") if cov["discovered"] else "<p>-</p>")
    )


def _cov_table(rows: Sequence[Json], ident: str) -> str:
    if not rows:
        return "<p>None.</p>"
    body = "".join(
        f"<tr><td>{escape(r['table'])}</td><td>{escape(r.get('target') or '-')}</td>"
        f"<td>{escape(r['reason'])}</td></tr>"
        for r in rows
    )
    return (
        f'<table id="{ident}" class="list"><thead><tr><th>Table</th><th>Target</th>'
        f"<th>Why</th></tr></thead><tbody>{body}</tbody></table>"
    )
