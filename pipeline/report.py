"""A self-contained HTML report of findings: the digest an admin mails to themselves.

One file with inline CSS and an inline SVG timeline, no scripts and nothing fetched, so it
reads the same offline, in a mail client or from an archive. Every piece of log text is
HTML-escaped. It opens with what a reader needs at a glance: the time range the findings
cover, the rule × host digest and the problems met reading the input; then the timeline
(one lane per rule, one panel per cluster of finding times, dots or, where dots would
overlap, a histogram), the scan's counts, the findings table and, per rule, its
description, remediation, references and counts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.detection.model import Rule
from pipeline.errors import Problem
from pipeline.output.digest import NO_HOST, DigestRow, frame_digest

if TYPE_CHECKING:
    from pipeline.context import Context

SEVERITY_COLOURS = {
    "critical": "#7f1d1d",
    "high": "#dc2626",
    "medium": "#d97706",
    "low": "#0891b2",
    "info": "#6b7280",
}

#: the width of the timeline: the page's content width, so it is drawn 1:1 at 1400 px
TIMELINE_WIDTH = 1152
#: digest rows shown before the rest folds into a <details>, so the digest fits the first screen
DIGEST_ROWS = 20
#: problems listed in the open box, and in all (the count is always complete)
PROBLEMS_SHOWN, PROBLEMS_LISTED = 10, 1000

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#111827;
background:#f9fafb}
main{max-width:1200px;margin:0 auto;padding:20px 24px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:18px;margin:24px 0 8px}h3{font-size:15px;margin:0}
.meta{color:#4b5563;font-size:13px;margin:2px 0}
.covers{font-size:15px;margin:4px 0}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin:10px 0}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:4px 12px;min-width:80px}
.card b{display:block;font-size:18px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.digest{font-size:12.5px;line-height:1.3}table.digest td,table.digest th{padding:2px 8px}
table.stats{width:auto;min-width:420px;font-size:12.5px;line-height:1.3}
table.stats th,table.stats td{padding:2px 10px}
td.msg{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-word}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;background:#f3f4f6;
border:1px solid #e5e7eb;border-radius:3px;padding:0 3px}
.sev{display:inline-block;border-radius:4px;padding:0 6px;color:#fff;font-size:12px}
.fields{color:#6b7280;font-size:11px}
.rule{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:12px 16px;margin:10px 0}
.rule p{margin:6px 0}.rule dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;
margin:6px 0}.rule dt{color:#4b5563}
details summary{cursor:pointer;color:#374151;font-size:13px;margin:4px 0}
svg.timeline{display:block;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#374151}
.warn{color:#92400e;font-weight:600}
.problems{background:#fffbeb;border:1px solid #f59e0b;border-radius:6px;padding:8px 16px;
margin:16px 0}.problems h2{margin:4px 0;font-size:16px;color:#92400e}
.problems ul{margin:4px 0;padding-left:20px;font-size:13px}
.problems li{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-word}
"""


_SEVERITY_ORDER = {name: i for i, name in enumerate(reversed(SEVERITY_COLOURS))}


def _sev(severity: str) -> str:
    colour = SEVERITY_COLOURS.get(severity, "#6b7280")
    return f'<span class="sev" style="background:{colour}">{escape(severity)}</span>'


def _anchor(rule_id: str) -> str:
    return "rule-" + "".join(c if c.isalnum() else "-" for c in rule_id)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _fmt_time(ts: object) -> str:
    return "-" if not isinstance(ts, pd.Timestamp) or pd.isna(ts) else ts.isoformat(sep=" ")


def _short_time(ts: object) -> str:
    return "-" if not isinstance(ts, pd.Timestamp) or pd.isna(ts) else f"{ts:%Y-%m-%d %H:%M:%S}"


def _duration(seconds: float) -> str:
    """A span in the largest unit that keeps it readable: ``4 min``, ``6.9 h``, ``327 d``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.0f} d"


_CODE = re.compile(r"`([^`\n]+)`")


def inline_text(text: str) -> str:
    """Rule prose as HTML: escaped first, then `` `code` `` spans turned into ``<code>``."""
    return _CODE.sub(r"<code>\1</code>", escape(text))


# -- the rule × host digest ----------------------------------------------------------------


def _digest_rows(rows: Sequence[DigestRow]) -> str:
    return "".join(
        "<tr>"
        f"<td>{_sev(str(d.severity))}</td>"
        f'<td><a href="#{_anchor(d.rule)}">{escape(d.rule)}</a></td>'
        f"<td>{escape(d.host) if d.host else f'<i>{escape(NO_HOST)}</i>'}</td>"
        f'<td class="num">{d.findings:,}</td><td class="num">{d.count:,}</td>'
        f"<td>{escape(_short_time(d.first))}</td><td>{escape(_short_time(d.last))}</td></tr>"
        for d in rows
    )


def _digest_html(findings: pd.DataFrame) -> str:
    rows = frame_digest(findings)
    if not rows:
        return ""
    head = (
        "<thead><tr><th>severity</th><th>rule</th><th>host</th><th class='num'>findings</th>"
        "<th class='num'>occurrences</th><th>first</th><th>last</th></tr></thead>"
    )
    shown, rest = rows[:DIGEST_ROWS], rows[DIGEST_ROWS:]
    html = (
        f'<section id="digest"><h2>By rule and host</h2><table class="digest">{head}'
        f"<tbody>{_digest_rows(shown)}</tbody></table>"
    )
    if rest:
        html += (
            f"<details><summary>{len(rest)} more rule × host pairs</summary>"
            f'<table class="digest">{head}<tbody>{_digest_rows(rest)}</tbody></table></details>'
        )
    return html + "</section>"


# -- the timeline ------------------------------------------------------------------------------

#: a gap between finding times wider than this share of their whole span breaks the axis
CLUSTER_GAP = 0.15
MAX_PANELS = 4
#: a lane becomes a histogram when more than this many findings fall into DENSE_PX pixels
DENSE_PX, DENSE_MAX = 8, 4
HIST_BIN_PX = 4
#: the least room between two ticks
TICK_PX = 55

_MIN, _HOUR, _DAY = 60, 3600, 86400
#: tick steps: (seconds, unit) with unit "s" (fixed seconds), "M" (months) or "Y" (years)
_STEPS: tuple[tuple[int, str], ...] = (
    *((n * _MIN, "s") for n in (1, 2, 5, 10, 15, 30)),
    *((n * _HOUR, "s") for n in (1, 2, 3, 6, 12)),
    (_DAY, "s"),
    (2 * _DAY, "s"),
    (7 * _DAY, "W"),
    (1, "M"),
    (3, "M"),
    (6, "M"),
    (1, "Y"),
    (2, "Y"),
    (5, "Y"),
    (10, "Y"),
)
_STEP_SECONDS = {"M": 30.4 * _DAY, "Y": 365.25 * _DAY}


def time_clusters(
    times: Sequence[pd.Timestamp] | pd.Series, gap: float = CLUSTER_GAP, most: int = MAX_PANELS
) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """Split finding times into clusters at gaps wider than ``gap`` of their whole span
    (at most ``most`` clusters: the widest gaps win); (first, last, how many) each."""
    ts = pd.Series(pd.to_datetime(pd.Series(times))).dropna().sort_values(kind="stable")
    if not len(ts):
        return []
    ns = ts.dt.as_unit("ns").astype("int64").to_numpy()
    span = int(ns[-1] - ns[0])
    breaks: list[int] = []
    if span > 0 and len(ns) > 1:
        gaps = np.diff(ns)
        wide = np.flatnonzero(gaps > gap * span)
        if len(wide) > most - 1:
            wide = np.sort(wide[np.argsort(gaps[wide], kind="stable")[::-1][: most - 1]])
        breaks = [int(i) + 1 for i in wide]
    bounds = [0, *breaks, len(ns)]
    values = list(ts)
    return [(values[a], values[b - 1], b - a) for a, b in pairwise(bounds)]


def _wall(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_localize(None) if ts.tzinfo is not None else ts


def _aware(wall: pd.Timestamp, tz: Any) -> pd.Timestamp | None:
    if tz is None:
        return wall
    out = wall.tz_localize(tz, ambiguous=True, nonexistent="NaT")
    return None if pd.isna(out) else out


def tick_step(seconds: float, max_ticks: int) -> tuple[int, str]:
    """The smallest round step that puts at most ``max_ticks`` ticks over ``seconds``."""
    for n, unit in _STEPS:
        size = n * _STEP_SECONDS.get(unit, 1)
        if seconds / size <= max_ticks:
            return n, unit
    return _STEPS[-1]


def ticks(start: pd.Timestamp, end: pd.Timestamp, max_ticks: int) -> list[pd.Timestamp]:
    """Round tick times within [start, end]: whole minutes, hours, midnights, Mondays, first
    days of months or years (in the times' own zone), at most ``max_ticks`` of them."""
    tz = start.tzinfo
    a, b = _wall(start), _wall(end)
    n, unit = tick_step((end - start).total_seconds(), max_ticks)
    if unit == "s":
        walls = list(pd.date_range(a.ceil(f"{n}s"), b, freq=f"{n}s"))
    elif unit == "W":
        walls = list(pd.date_range(a.ceil("D"), b, freq="W-MON"))
    elif unit == "M":
        walls = [m for m in pd.date_range(a.floor("D"), b, freq="MS") if (m.month - 1) % n == 0]
    else:
        walls = [y for y in pd.date_range(a.floor("D"), b, freq="YS") if y.year % n == 0]
    out = [_aware(w, tz) for w in walls if a <= w <= b]
    return [t for t in out if t is not None]


def _tick_labels(times: Sequence[pd.Timestamp], span_s: float) -> list[tuple[str, str]]:
    """(main, second line) per tick: the second line names the day (or year) where it
    changes and at the first tick."""
    out: list[tuple[str, str]] = []
    prev: pd.Timestamp | None = None
    for t in times:
        if span_s <= 3 * _DAY:
            main, sub = f"{t:%H:%M}", f"{t:%b} {t.day}"
            changed = prev is None or prev.date() != t.date()
        elif span_s <= 400 * _DAY:
            main, sub = f"{t:%b} {t.day}", f"{t:%Y}"
            changed = prev is None or prev.year != t.year
        else:
            main, sub = f"{t:%Y-%m}", ""
            changed = False
        out.append((main, sub if changed else ""))
        prev = t
    return out


def _text_width(text: str) -> float:
    return 6.2 * len(text)


@dataclass(frozen=True, slots=True)
class _Panel:
    x0: float
    x1: float
    start: pd.Timestamp
    end: pd.Timestamp
    #: the cluster's first and last finding time, and how many findings it holds
    first: pd.Timestamp
    last: pd.Timestamp
    count: int

    @property
    def span_s(self) -> float:
        return max(float((self.end - self.start).total_seconds()), 1.0)

    def x(self, ns: np.ndarray) -> np.ndarray:
        s = self.start.value
        out: np.ndarray = self.x0 + (ns - s) / (self.end.value - s) * (self.x1 - self.x0)
        return out


def _panels(times: pd.Series, x0: float, x1: float, gap_px: float) -> list[_Panel]:
    clusters = time_clusters(times)
    k = len(clusters)
    free = x1 - x0 - gap_px * (k - 1)
    least = min(200.0, free / k)
    total = sum(c for _, _, c in clusters)
    out: list[_Panel] = []
    x = x0
    inset = 12.0  # room for a dot's radius inside the panel
    for first, last, count in clusters:
        width = least + (free - least * k) * count / total
        pad = max((last - first) * 0.03, pd.Timedelta(minutes=5))
        start, end = first - pad, last + pad
        # widen the time range so that the inset keeps dots inside the panel
        per_px = (end - start) / max(width - 2 * inset, 1)
        out.append(
            _Panel(x, x + width, start - per_px * inset, end + per_px * inset, first, last, count)
        )
        x += width + gap_px
    return out


def timeline_svg(findings: pd.DataFrame, width: int = TIMELINE_WIDTH) -> str:
    """The findings over time: one lane per rule (most severe first); one panel per cluster
    of finding times (a broken axis), round ticks; dots per finding, growing with its count,
    or a histogram of findings per bin where a lane's dots would overlap."""
    timed = findings[findings["timestamp"].notna()]
    if not len(timed):
        return '<p class="meta">No finding has a time.</p>'
    order = (
        timed.groupby("rule", observed=True)["severity"]
        .max()
        .sort_values(ascending=False, kind="stable")
    )
    rules = [str(r) for r in order.index]
    left, right, top, lane = 250, 12, 22, 24
    axis_y = top + lane * len(rules)
    height = axis_y + 42
    panels = _panels(timed["timestamp"], left, width - right, 18)
    ns = timed["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    rule_of = timed["rule"].astype(str).to_numpy()
    sev_of = timed["severity"].astype(str).to_numpy()
    count_of = timed["count"].astype("int64").to_numpy()
    per_rule = Counter(rule_of.tolist())
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="findings over time">'
    ]
    parts.append('<g class="bands">')
    for i, rule in enumerate(rules):
        y = top + lane * i
        fill = "#f3f4f6" if i % 2 == 0 else "#ffffff"
        parts.append(f'<rect x="0" y="{y}" width="{width}" height="{lane}" fill="{fill}"/>')
        label = f"{rule} ({per_rule[rule]:,})"
        parts.append(
            f'<text x="{left - 8}" y="{y + lane / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    parts.append("</g>")
    for p_i, p in enumerate(panels):
        parts.append(
            f'<rect class="panel" data-panel="{p_i}" x="{p.x0:.1f}" y="{top}" '
            f'width="{p.x1 - p.x0:.1f}" height="{axis_y - top}" fill="none" stroke="#d1d5db"/>'
        )
        head = f"{p.first:%Y-%m-%d %H:%M} – " + (
            f"{p.last:%H:%M}" if p.first.date() == p.last.date() else f"{p.last:%Y-%m-%d %H:%M}"
        )
        if _text_width(head) > p.x1 - p.x0:
            head = f"{p.first:%Y-%m-%d}"
        parts.append(
            f'<text class="panel-head" x="{(p.x0 + p.x1) / 2:.1f}" y="{top - 7}" '
            f'text-anchor="middle">{escape(head)}</text>'
        )
        parts.append(
            f'<line x1="{p.x0:.1f}" y1="{axis_y}" x2="{p.x1:.1f}" y2="{axis_y}" stroke="#9ca3af"/>'
        )
        max_ticks = max(2, int((p.x1 - p.x0) // TICK_PX))
        tick_times = ticks(p.start, p.end, max_ticks)
        labels = _tick_labels(tick_times, p.span_s)
        xs = p.x(np.array([t.value for t in tick_times], dtype="int64"))
        for t_x, (main, sub) in zip(xs.tolist(), labels, strict=True):
            parts.append(
                f'<line x1="{t_x:.1f}" y1="{top}" x2="{t_x:.1f}" y2="{axis_y + 4}" '
                f'stroke="#e5e7eb"/>'
            )
            half = max(_text_width(main), _text_width(sub)) / 2
            anchor, tx = "middle", t_x
            if t_x - half < p.x0:
                anchor, tx = "start", max(t_x, p.x0)
            elif t_x + half > p.x1:
                anchor, tx = "end", min(t_x, p.x1)
            parts.append(
                f'<text class="tick" x="{tx:.1f}" y="{axis_y + 16}" text-anchor="{anchor}">'
                f"{escape(main)}</text>"
            )
            if sub:
                parts.append(
                    f'<text class="tick" x="{tx:.1f}" y="{axis_y + 30}" '
                    f'text-anchor="{anchor}">{escape(sub)}</text>'
                )
        if p_i:  # the break in the axis
            gx = p.x0 - 9
            parts.append(
                f'<path d="M{gx - 5:.1f},{axis_y + 5} l6,-10 M{gx - 1:.1f},{axis_y + 5} l6,-10" '
                f'stroke="#6b7280" fill="none"/>'
            )
        inside = (ns >= p.start.value) & (ns <= p.end.value)
        for i, rule in enumerate(rules):
            sel = inside & (rule_of == rule)
            if not sel.any():
                continue
            mid = top + lane * i + lane / 2
            parts.append(f'<g class="lane" data-rule="{escape(rule)}" data-panel="{p_i}">')
            xs = p.x(ns[sel])
            dense = np.bincount(((xs - p.x0) // DENSE_PX).astype("int64")).max() > DENSE_MAX
            if dense:
                parts.append(_histogram(p, ns[sel], sev_of[sel], top + lane * i, lane))
            else:
                parts.append(
                    _dots(xs, mid, ns[sel], sev_of[sel], count_of[sel], rule, p.start.tzinfo)
                )
            parts.append("</g>")
    parts.append("</svg>")
    notes = []
    for a, b in pairwise(panels):
        quiet = (b.first - a.last).total_seconds()
        notes.append(
            f"the axis is broken between {a.last:%Y-%m-%d %H:%M} and {b.first:%Y-%m-%d %H:%M} "
            f"({_duration(quiet)} without findings)"
        )
    legend = (
        "One lane per rule (its findings in brackets); a dot per finding, larger for repeated "
        "ones; bars count findings per bin where dots would overlap"
        + ("; " + "; ".join(notes) if notes else "")
        + "."
    )
    return "".join(parts) + f'<p class="meta">{escape(legend)}</p>'


def _dots(
    xs: np.ndarray,
    y: float,
    ns: np.ndarray,
    sevs: np.ndarray,
    counts: np.ndarray,
    rule: str,
    tz: Any,
) -> str:
    out = []
    for x, t, sev, n in zip(xs.tolist(), ns.tolist(), sevs.tolist(), counts.tolist(), strict=True):
        r = min(10.0, 4 + 2 * math.log10(max(1, int(n))))
        colour = SEVERITY_COLOURS.get(str(sev), "#6b7280")
        tip = f"{rule} {_short_time(pd.Timestamp(t, tz=tz))} x{n}"
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}" '
            f'fill-opacity="0.75"><title>{escape(tip)}</title></circle>'
        )
    return "".join(out)


def _histogram(p: _Panel, ns: np.ndarray, sevs: np.ndarray, y0: float, lane: int) -> str:
    bins = max(1, int((p.x1 - p.x0) // HIST_BIN_PX))
    edges = np.linspace(p.start.value, p.end.value, bins + 1)
    counts, _ = np.histogram(ns, bins=edges)
    most = int(counts.max())
    worst = max({str(s) for s in sevs.tolist()}, key=lambda s: _SEVERITY_ORDER.get(s, -1))
    colour = SEVERITY_COLOURS.get(worst, "#6b7280")
    bin_s = (p.end.value - p.start.value) / bins / 1e9
    out = []
    width = (p.x1 - p.x0) / bins
    for k in np.flatnonzero(counts).tolist():
        n = int(counts[k])
        h = max(1.5, (lane - 4) * n / most)
        x = p.x0 + k * width
        when = pd.Timestamp(int(edges[k]), tz=p.start.tzinfo)
        tip = f"{n:,} findings in {_duration(bin_s)} from {when:%Y-%m-%d %H:%M}"
        out.append(
            f'<rect class="bar" data-n="{n}" x="{x:.1f}" y="{y0 + lane - 2 - h:.1f}" '
            f'width="{width * 0.9:.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    return "".join(out)


# -- the rest of the page --------------------------------------------------------------------


def _finding_row(f: Mapping[str, Any], context: Mapping[str, Context] | None = None) -> str:
    """One row of the findings table (with its context, ``report --context N``)."""
    fields = " ".join(f"{k}={v}" for k, v in sorted(f["fields"].items()))
    host, program = f["host"], f["program"]
    return (
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


def _findings_table(findings: pd.DataFrame, context: Mapping[str, Context] | None = None) -> str:
    rows = "".join(_finding_row(f, context) for f in _records(findings))
    head = "".join(
        f"<th>{h}</th>"
        for h in ("severity", "time", "rule", "host", "program", "count", "source", "message")
    )
    return f'<table id="findings"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


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
                f"<p>{inline_text(rule.description.strip())}</p>"
                + (
                    f"<p><b>What to do:</b> {inline_text(rule.remediation.strip())}</p>"
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


def _value(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) or "none"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.3f}"
    return f"{value:,}"


def stats_table(counts: Mapping[str, object]) -> str:
    """The scan's counts as a two-column table, every count shown (nested counts per kind
    on one line, ``none`` where there are none)."""
    rows = "".join(
        f"<tr><th>{escape(str(k).replace('_', ' '))}</th><td>{escape(_value(v))}</td></tr>"
        for k, v in counts.items()
    )
    return f'<table class="stats" id="stats"><tbody>{rows}</tbody></table>'


def problems_box(problems: Sequence[Problem]) -> str:
    """The problems met reading the input: the total and the count per kind, the first ones
    listed, up to PROBLEMS_LISTED more folded away, and how many are not listed."""
    if not problems:
        return ""
    kinds = Counter(p.kind for p in problems)
    by_kind = ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items()))
    shown = "".join(f"<li>{escape(str(p))}</li>" for p in problems[:PROBLEMS_SHOWN])
    more = problems[PROBLEMS_SHOWN:PROBLEMS_LISTED]
    html = (
        f'<section class="problems" id="problems"><h2>{len(problems):,} problem'
        f"{'s' if len(problems) != 1 else ''} reading the input</h2>"
        f'<p class="meta">{escape(by_kind)}</p><ul>{shown}</ul>'
    )
    if more:
        items = "".join(f"<li>{escape(str(p))}</li>" for p in more)
        html += f"<details><summary>{len(more):,} more</summary><ul>{items}</ul></details>"
    if len(problems) > PROBLEMS_LISTED:
        html += f'<p class="meta">{len(problems) - PROBLEMS_LISTED:,} more not listed here.</p>'
    return html + "</section>"


def covered_range(findings: pd.DataFrame) -> str:
    """``covers A to B (span)``: the first finding's time to the last one's last sighting."""
    first = findings["timestamp"].min() if len(findings) else None
    last = (
        pd.concat([findings["timestamp"], findings["last_seen"]]).max() if len(findings) else None
    )
    if not isinstance(first, pd.Timestamp) or not isinstance(last, pd.Timestamp):
        return "No finding has a time."
    zone = f" {first.tzname()}" if first.tzinfo is not None and first.tzname() else ""
    span = _duration((last - first).total_seconds())
    return f"Findings cover {_short_time(first)} to {_short_time(last)}{zone} ({span})."


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
    if problems:
        meta += (
            f' · <a class="warn" href="#problems">{len(problems):,} problem'
            f"{'s' if len(problems) != 1 else ''} reading the input</a>"
        )
    body = (
        f'<h1>{escape(title)}</h1><p class="covers" id="covers">'
        f'{escape(covered_range(findings))}</p><p class="meta">{meta}</p>'
        f'<div class="cards">{cards_html}</div>'
        f"{_digest_html(findings)}{problems_box(problems)}"
        f"<h2>Timeline</h2>{timeline_svg(findings)}"
        + (f"<h2>Scan</h2>{stats_table(counts)}" if counts else "")
        + "<h2>Findings</h2>"
        + (_findings_table(findings, context) if len(findings) else "<p>No findings.</p>")
        + f"<h2>Rules</h2>{_rule_details(findings, rules)}"
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
