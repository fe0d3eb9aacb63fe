"""A self-contained HTML report of findings: the digest an admin mails to themselves.

One file with inline CSS and an inline SVG timeline, no scripts and nothing fetched, so it
reads the same offline, in a mail client or from an archive. Every piece of log text is
HTML-escaped. Sections: counts, the timeline (one lane per rule, a dot per finding, its
size growing with the finding's count), the findings table and, per rule, its description,
remediation, references and counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.detection.model import Rule
from pipeline.errors import Problem

if TYPE_CHECKING:
    from pipeline.context import Context

SEVERITY_COLOURS = {
    "critical": "#7f1d1d",
    "high": "#dc2626",
    "medium": "#d97706",
    "low": "#0891b2",
    "info": "#6b7280",
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#111827;
background:#f9fafb}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}h3{font-size:15px;margin:0}
.meta{color:#4b5563;font-size:13px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px 14px;min-width:90px}
.card b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6;position:sticky;top:0}
td.msg{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-word}
.sev{display:inline-block;border-radius:4px;padding:0 6px;color:#fff;font-size:12px}
.fields{color:#6b7280;font-size:11px}
.rule{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:12px 16px;margin:10px 0}
.rule p{margin:6px 0}.rule dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;
margin:6px 0}.rule dt{color:#4b5563}
svg text{font:11px system-ui,sans-serif;fill:#374151}
.problems{color:#92400e;font-size:13px}
"""


def _sev(severity: str) -> str:
    colour = SEVERITY_COLOURS.get(severity, "#6b7280")
    return f'<span class="sev" style="background:{colour}">{escape(severity)}</span>'


def _anchor(rule_id: str) -> str:
    return "rule-" + "".join(c if c.isalnum() else "-" for c in rule_id)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _fmt_time(ts: object) -> str:
    return "-" if not isinstance(ts, pd.Timestamp) or pd.isna(ts) else ts.isoformat(sep=" ")


def timeline_svg(findings: pd.DataFrame, width: int = 1100) -> str:
    """An SVG chart: one lane per rule (most severe first), one dot per finding."""
    timed = findings[findings["timestamp"].notna()]
    if not len(timed):
        return '<p class="meta">No finding has a time.</p>'
    order = (
        timed.groupby("rule", observed=True)["severity"]
        .max()
        .sort_values(ascending=False, kind="stable")
    )
    rules = [str(r) for r in order.index]
    left, right, top, lane = 260, 20, 10, 26
    height = top + lane * len(rules) + 40
    t0 = timed["timestamp"].min()
    t1 = timed["timestamp"].max()
    span = (t1 - t0).total_seconds()
    if span <= 0:
        t0 -= pd.Timedelta(hours=1)
        t1 += pd.Timedelta(hours=1)
        span = (t1 - t0).total_seconds()
    plot_w = width - left - right

    def x(ts: pd.Timestamp) -> float:
        return float(left + (ts - t0).total_seconds() / span * plot_w)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="findings over time">'
    ]
    for i, rule in enumerate(rules):
        y = top + lane * i + lane / 2
        fill = "#f3f4f6" if i % 2 == 0 else "#ffffff"
        parts.append(
            f'<rect x="0" y="{top + lane * i}" width="{width}" height="{lane}" fill="{fill}"/>'
        )
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(rule)}</text>'
        )
    axis_y = top + lane * len(rules)
    parts.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#9ca3af"/>'
    )
    for k in range(6):
        ts = t0 + (t1 - t0) * (k / 5)
        xx = x(ts)
        parts.append(
            f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{axis_y + 4}" stroke="#e5e7eb"/>'
        )
        label = ts.strftime("%Y-%m-%d %H:%M")
        anchor = "start" if k == 0 else ("end" if k == 5 else "middle")
        parts.append(
            f'<text x="{xx:.1f}" y="{axis_y + 18}" text-anchor="{anchor}">{escape(label)}</text>'
        )
    lane_of = {r: i for i, r in enumerate(rules)}
    for row in _records(timed):
        i = lane_of[str(row["rule"])]
        y = top + lane * i + lane / 2
        r = 4 + 2 * math.log10(max(1, int(row["count"])))
        colour = SEVERITY_COLOURS.get(str(row["severity"]), "#6b7280")
        host = row["host"] if isinstance(row["host"], str) else ""
        tip = f"{row['rule']} {_fmt_time(row['timestamp'])} {host} x{row['count']}"
        parts.append(
            f'<circle cx="{x(row["timestamp"]):.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}" '
            f'fill-opacity="0.75"><title>{escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _findings_table(findings: pd.DataFrame, context: Mapping[str, Context] | None = None) -> str:
    rows = []
    for f in _records(findings):
        fields = " ".join(f"{k}={v}" for k, v in sorted(f["fields"].items()))
        host, program = f["host"], f["program"]
        rows.append(
            "<tr>"
            f"<td>{_sev(str(f['severity']))}</td>"
            f"<td>{escape(_fmt_time(f['timestamp']))}</td>"
            f'<td><a href="#{_anchor(str(f["rule"]))}">{escape(str(f["rule"]))}</a></td>'
            f"<td>{escape(host if isinstance(host, str) else '-')}</td>"
            f"<td>{escape(program if isinstance(program, str) else '-')}</td>"
            f"<td>{int(f['count'])}</td>"
            f"<td>{escape(str(f['source']) + ':' + str(f['line']))}</td>"
            f'<td class="msg">{escape(str(f["message"]))}'
            + (f'<div class="fields">{escape(fields)}</div>' if fields else "")
            + (context_html(context.get(str(f["key"])), str(f["source"])) if context else "")
            + "</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("severity", "time", "rule", "host", "program", "count", "source", "message")
    )
    return (
        f'<table id="findings"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _rule_details(findings: pd.DataFrame, rules: Sequence[Rule]) -> str:
    by_id = {r.id: r for r in rules}
    out = []
    grouped = findings.groupby("rule", observed=True, sort=False)
    parts = {str(rid): findings.loc[idx] for rid, idx in grouped.groups.items()}
    worst = {rid: int(part["severity"].cat.codes.max()) for rid, part in parts.items()}
    for rule_id in sorted(parts, key=lambda rid: (-worst[rid], rid)):
        part = parts[rule_id]
        rule = by_id.get(str(rule_id))
        severity = str(part["severity"].max())
        hosts = sorted(str(h) for h in part["host"].dropna().unique())
        items = [
            ("findings", str(len(part))),
            ("occurrences", str(int(part["count"].sum()))),
            ("hosts", ", ".join(hosts) or "-"),
            ("first", _fmt_time(part["timestamp"].min())),
            ("last", _fmt_time(part["last_seen"].max())),
        ]
        dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
        body = ""
        if rule is not None:
            refs = "".join(
                f'<li><a href="{escape(ref, quote=True)}">{escape(ref)}</a></li>'
                for ref in rule.references
            )
            body = (
                f"<p>{escape(rule.description.strip())}</p>"
                + (
                    f"<p><b>What to do:</b> {escape(rule.remediation.strip())}</p>"
                    if rule.remediation
                    else ""
                )
                + (f"<p><b>References</b></p><ul>{refs}</ul>" if refs else "")
            )
        title = rule.title if rule is not None else str(part["title"].iloc[0])
        out.append(
            f'<section class="rule" id="{_anchor(str(rule_id))}">'
            f"<h3>{_sev(severity)} {escape(str(rule_id))}: {escape(title)}</h3>"
            f"{body}<dl>{dl}</dl></section>"
        )
    return "".join(out)


def render_report(
    findings: pd.DataFrame,
    rules: Sequence[Rule] = (),
    *,
    counts: Mapping[str, object] | None = None,
    paths: Sequence[str] = (),
    problems: Sequence[Problem] = (),
    title: str = "logwarden report",
    generated: datetime | None = None,
    context: Mapping[str, Context] | None = None,
) -> str:
    """The report as one HTML document (a findings frame, the rules behind it, scan counts).

    ``context`` (``report --context N``) maps finding keys to the lines around them, shown
    under each finding's message (:func:`context_html`).
    """
    when = (generated or datetime.now(UTC)).isoformat(timespec="seconds")
    by_sev = findings["severity"].value_counts()
    cards = [("findings", len(findings))] + [
        (str(s), int(by_sev.get(s, 0))) for s in reversed(list(findings["severity"].cat.categories))
    ]
    if counts:
        cards = [("lines", int(str(counts.get("lines", 0)))), *cards]
    cards_html = "".join(f'<div class="card"><b>{v:,}</b>{escape(k)}</div>' for k, v in cards)
    meta = f"generated {escape(when)}"
    if paths:
        meta += " from " + escape(", ".join(paths))
    counts_html = ""
    if counts:
        shown = ", ".join(
            f"{k}: {v}" for k, v in counts.items() if k not in ("seconds",) and v not in ({}, 0)
        )
        counts_html = f'<p class="meta">{escape(shown)}</p>'
    problems_html = ""
    if problems:
        items = "".join(f"<li>{escape(str(p))}</li>" for p in problems[:50])
        problems_html = f'<h2>Problems reading the input</h2><ul class="problems">{items}</ul>'
    body = (
        f"<h1>{escape(title)}</h1><p class='meta'>{meta}</p>"
        f'<div class="cards">{cards_html}</div>{counts_html}'
        f"<h2>Timeline</h2>{timeline_svg(findings)}"
        f"<h2>Findings</h2>"
        + (_findings_table(findings, context) if len(findings) else "<p>No findings.</p>")
        + f"<h2>Rules</h2>{_rule_details(findings, rules)}{problems_html}"
    )
    extra_css = _CONTEXT_CSS if context else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}{extra_css}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


# -- context (report --context N) -------------------------------------------------------------

_CONTEXT_CSS = """
details.ctx{margin-top:4px}details.ctx summary{cursor:pointer;color:#4b5563;font-size:11px}
details.ctx pre{margin:4px 0;padding:4px 6px;background:#f3f4f6;overflow-x:auto;font-size:11px}
details.ctx .own{background:#fef3c7;font-weight:600}details.ctx .src{color:#6b7280}
details.ctx .gone{color:#92400e}
"""


def context_html(ctx: Context | None, source: str) -> str:
    """A finding's context as a collapsed ``<details>``: numbered lines, its own marked ``>``,
    non-adjacent runs separated by ``--``, a file named where it is not ``source``."""
    if ctx is None or not (ctx.lines or ctx.problems):
        return ""
    out: list[str] = []
    current = source
    for i, hunk in enumerate(ctx.hunks()):
        if i:
            out.append("--")
        if hunk[0].source != current:
            current = hunk[0].source
            out.append(f'<span class="src">{escape(current)}</span>')
        width = len(str(hunk[-1].line))
        for cl in hunk:
            text = escape(f"{'>' if cl.match else ' '} {cl.line:>{width}}  {cl.text}")
            out.append(f'<span class="own">{text}</span>' if cl.match else text)
    for p in ctx.problems:
        out.append(f'<span class="gone">{escape(str(p))}</span>')
    body = "\n".join(out)
    return (
        f'<details class="ctx"><summary>context ({len(ctx.lines)} lines)</summary>'
        f"<pre>{body}</pre></details>"
    )
