"""Findings for a person at a terminal: the digest (:mod:`pipeline.output.digest`) laid out,
and the findings table.

Pure functions from findings (plus a width, a zone and, for the digest, how many lines the
screen has) to rich ``Text`` lines; nothing here prints. The layout is computed here, not by
rich's ``Table``: identifiers (rule ids, hosts, programs, file names) are never wrapped, only
cut with an ellipsis when a column cannot be wide enough, and only the message column takes
what is left of a line. Below :data:`WIDE` columns every row takes two lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from rich.cells import cell_len
from rich.text import Text

from pipeline.model import Finding, Severity
from pipeline.output.digest import DigestExample, DigestRow

#: from this width on, a row is one line; below it, two
WIDE = 120
#: the least a message column is given in the one-line form
MIN_MESSAGE = 24
#: the least an identifier column is cut to when a line is too narrow for it
MIN_IDENT = 8
GAP = "  "
ELLIPSIS = "…"
SEVERITY_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c not in (0x09,)}
_CONTROL[0x09] = " "


def visible(text: str | None) -> str:
    """Log text made safe for a terminal: control characters shown as ``\\xNN``."""
    return "" if text is None else text.translate(_CONTROL)


# -- shared pieces --------------------------------------------------------------------------


def short_paths(paths: Iterable[str]) -> dict[str, str]:
    """Each path's shortest suffix of whole components that no other path ends with.

    ``samples/mail/mail.log`` and ``samples/syslog/syslog`` become ``mail.log`` and
    ``syslog``; ``a/syslog`` and ``b/syslog`` stay ``a/syslog`` and ``b/syslog``.
    """
    parts = {p: p.split("/") for p in set(paths)}
    short: dict[str, str] = {}
    pending = list(parts)
    depth = 1
    while pending:
        suffix = {p: "/".join(c[-depth:]) for p, c in parts.items()}
        seen: dict[str, int] = {}
        for s in suffix.values():
            seen[s] = seen.get(s, 0) + 1
        left = []
        for p in pending:
            if seen[suffix[p]] == 1 or len(parts[p]) <= depth:
                short[p] = suffix[p]
            else:
                left.append(p)
        pending = left
        depth += 1
    return short


def time_format(times: Iterable[datetime | None], tz: tzinfo, seconds: bool = True) -> str:
    """As short a strftime format as the times need: no date within one day, no year within
    one year (in ``tz``)."""
    dates = {t.astimezone(tz).date() for t in times if t is not None}
    clock = "%H:%M:%S" if seconds else "%H:%M"
    if len(dates) <= 1:
        return clock
    if len({d.year for d in dates}) == 1:
        return "%m-%d " + clock
    return "%Y-%m-%d " + clock


def zone_name(tz: tzinfo) -> str:
    key = getattr(tz, "key", None)
    if key and key != "localtime":
        return str(key)
    return tz.tzname(datetime.now(UTC)) or str(tz)


@dataclass(frozen=True, slots=True)
class Column:
    """One column: a header and a cell per row (style per cell, or one for all)."""

    name: str
    cells: list[str]
    styles: list[str] | None = None
    style: str = ""
    right: bool = False
    #: in the two-line form, may go to the start of the second line when the first is full
    movable: bool = False


def drop_constant(
    columns: Sequence[Column], droppable: Iterable[str]
) -> tuple[list[Column], list[tuple[str, str]]]:
    """The columns that vary, and ``(name, value)`` of the droppable ones that do not."""
    names = set(droppable)
    kept: list[Column] = []
    constant: list[tuple[str, str]] = []
    for c in columns:
        if c.name in names and len(c.cells) > 1 and len(set(c.cells)) == 1:
            constant.append((c.name, c.cells[0]))
        else:
            kept.append(c)
    return kept, constant


def _widths(columns: Sequence[Column], room: int) -> list[int]:
    """Each column as wide as its widest cell; the widest ones cut down while over ``room``."""
    widths = [max(len(c.name), max((len(x) for x in c.cells), default=0)) for c in columns]
    need = sum(widths) + len(GAP) * (len(widths) - 1)
    while need > room:
        i = max(range(len(widths)), key=widths.__getitem__)
        if widths[i] <= MIN_IDENT:
            break
        cut = min(need - room, widths[i] - MIN_IDENT)
        widths[i] -= cut
        need -= cut
    return widths


def _need(columns: Sequence[Column]) -> int:
    """The width of ``columns`` side by side, none cut."""
    widths = [max(len(c.name), max((len(x) for x in c.cells), default=0)) for c in columns]
    return sum(widths) + len(GAP) * (len(widths) - 1)


def _cell(text: str, width: int, right: bool = False) -> str:
    if len(text) > width:
        return text[: max(width - 1, 0)] + ELLIPSIS
    return text.rjust(width) if right else text.ljust(width)


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells, with an ellipsis when cut."""
    if len(text) <= width and (text.isascii() or cell_len(text) <= width):
        return text
    out = Text(text)
    out.truncate(max(width, 1), overflow="ellipsis")
    return out.plain


def _line(columns: Sequence[Column], widths: Sequence[int], row: int, last: bool) -> Text:
    """One row of ``columns`` (the last one unpadded when ``last``)."""
    line = Text(no_wrap=True, overflow="ellipsis")
    n = len(columns)
    for i, (c, w) in enumerate(zip(columns, widths, strict=True)):
        if i:
            line.append(GAP)
        text = c.cells[row]
        cell = _cell(text, w, c.right) if not (last and i == n - 1) else _cell(text, w).rstrip()
        line.append(cell, c.styles[row] if c.styles is not None else c.style)
    return line


def _header(columns: Sequence[Column], widths: Sequence[int], last: bool = True) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis", style="bold")
    for i, (c, w) in enumerate(zip(columns, widths, strict=True)):
        if i:
            line.append(GAP)
        line.append(_cell(c.name, w, c.right))
    if last:
        line.rstrip()
    return line


def _grid(
    columns: Sequence[Column],
    tail: Column | None,
    width: int,
    indent: int = 4,
    extra: Sequence[str] | None = None,
) -> tuple[list[Text], int]:
    """Rows as lines: one line each when ``width`` >= :data:`WIDE` (``tail`` last, cut to the
    room left), else two (``columns``, then ``tail`` indented); a non-empty ``extra`` text of a
    row goes on a line of its own under it, indented. Returns the lines and how many lines a
    row takes (without ``extra``)."""
    pad = " " * indent
    rows = len(columns[0].cells) if columns else len(tail.cells) if tail else 0
    out: list[Text] = []
    one_line = _need(columns) + (len(GAP) + MIN_MESSAGE if tail else 0) <= width
    if width >= WIDE and (one_line or tail is None):
        widths = _widths(columns, width - MIN_MESSAGE - len(GAP) if tail else width)
        used = sum(widths) + len(GAP) * len(widths)
        room = max(width - used, 1)
        head = _header(columns, widths, last=tail is None)
        if tail is not None:
            head.append(GAP + tail.name if columns else tail.name)
        out.append(head)
        for r in range(rows):
            line = _line(columns, widths, r, last=tail is None)
            if tail is not None:
                line.append(GAP if columns else "")
                line.append(_cut(tail.cells[r], room), tail.style)
            out.append(line)
            if extra is not None and extra[r]:
                out.append(Text(pad + _cut(extra[r], width - indent), "dim", no_wrap=True))
        return out, 1
    moved: list[Column] = []
    columns = list(columns)
    while columns and columns[-1].movable and tail is not None and _need(columns) > width:
        moved.insert(0, columns.pop())
    widths = _widths(columns, width)
    out.append(_header(columns, widths))
    for r in range(rows):
        out.append(_line(columns, widths, r, last=True))
        if tail is not None:
            second = GAP.join([*(c.cells[r] for c in moved), tail.cells[r]])
            out.append(Text(pad + _cut(second, width - indent), tail.style, no_wrap=True))
        if extra is not None and extra[r]:
            out.append(Text(pad + _cut(extra[r], width - indent), "dim", no_wrap=True))
    return out, 2 if tail is not None else 1


def _constants_line(constant: Sequence[tuple[str, str]]) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis", style="dim")
    for i, (name, value) in enumerate(constant):
        line.append(("  " if i else "") + f"{name}: {value}")
    return line


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- the digest's layout --------------------------------------------------------------------


def _span(first: datetime | None, last: datetime | None, fmt: str, tz: tzinfo) -> str:
    if first is None:
        return "-"
    a = first.astimezone(tz).strftime(fmt)
    if last is None or last == first:
        return a
    b = last.astimezone(tz).strftime(fmt)
    if a == b:
        return a
    clock = len(first.strftime(fmt[fmt.index("%H") :]))
    if len(a) > clock and a[:-clock] == b[:-clock]:
        b = b[-clock:]  # the same day: the date once
    return f"{a} – {b}"


def _example(f: DigestExample, where: dict[str, str]) -> str:
    return f"{where[f.source]}:{f.line}  {visible(f.message)}"


def render_digest(
    rows: Sequence[DigestRow],
    width: int,
    tz: tzinfo,
    *,
    max_lines: int | None = None,
    shown: str = "",
) -> list[Text]:
    """The digest as lines for a terminal ``width`` wide.

    With ``max_lines`` (a screen's height), rows that do not fit are folded into per-rule
    counts below the table, except that critical rows are always shown in full. ``shown``
    adds to the title (e.g. ``at or above high``).
    """
    total = sum(r.findings for r in rows)
    if not rows:
        return [Text("no findings" + (f" {shown}" if shown else ""))]
    rules = len({r.rule for r in rows})
    fmt = time_format((t for r in rows for t in (r.first, r.last)), tz, seconds=False)
    where = short_paths(r.example.source for r in rows)
    title = Text(
        f"{_plural(total, 'finding')} of {_plural(rules, 'rule')}"
        + (f" {shown}" if shown else "")
        + f", by rule and host; times {zone_name(tz)}",
        style="bold",
        no_wrap=True,
        overflow="ellipsis",
    )
    keep = len(rows)
    lines_per_row = 1 if width >= WIDE else 2
    if max_lines is not None:
        # title, constants, header, then the rows
        fixed = 3
        if fixed + keep * lines_per_row > max_lines:
            critical = sum(r.severity == Severity.CRITICAL for r in rows)
            keep = max((max_lines - fixed) // lines_per_row, critical)
            while keep > critical:
                folded = _folded(rows[keep:], width)
                if fixed + keep * lines_per_row + len(folded) <= max_lines:
                    break
                keep -= 1
    shown_rows = rows[:keep]
    columns, constant = drop_constant(
        [
            Column(
                "severity",
                [str(r.severity) for r in shown_rows],
                styles=[SEVERITY_STYLE[r.severity] for r in shown_rows],
            ),
            Column("count", [str(r.count) for r in shown_rows], right=True),
            Column("rule", [r.rule for r in shown_rows], style="bold"),
            Column("host", [visible(r.host_name) for r in shown_rows], movable=True),
            Column("when", [_span(r.first, r.last, fmt, tz) for r in shown_rows], movable=True),
        ],
        _constant_names(rows),
    )
    tail = Column("example", [_example(r.example, where) for r in shown_rows], style="")
    out = [title]
    if constant:
        out.append(_constants_line(constant))
    grid, _ = _grid(columns, tail, width)
    out.extend(grid)
    if keep < len(rows):
        out.extend(_folded(rows[keep:], width))
    return fit(out, width)


def _constant_names(rows: Sequence[DigestRow]) -> list[str]:
    """The digest's columns to say once: severity and host when the same on every row (all
    rows, also those folded away)."""
    names = []
    if len(rows) > 1 and len({r.severity for r in rows}) == 1:
        names.append("severity")
    if len(rows) > 1 and len({r.host for r in rows}) == 1:
        names.append("host")
    return names


def fit(lines: list[Text], width: int) -> list[Text]:
    """``lines`` each cut to ``width`` terminal cells (with an ellipsis)."""
    for line in lines:
        if (len(line) > width or not line.plain.isascii()) and cell_len(line.plain) > width:
            line.truncate(width, overflow="ellipsis")
    return lines


def _folded(rows: Sequence[DigestRow], width: int) -> list[Text]:
    """The rows left out, as per-rule counts packed into lines (an item never split)."""
    findings = sum(r.findings for r in rows)
    head = Text(
        f"… and {_plural(len(rows), 'more row')} ({_plural(findings, 'finding')}), per rule:",
        style="bold",
        no_wrap=True,
        overflow="ellipsis",
    )
    per_rule: dict[str, list[int]] = {}
    severity: dict[str, Severity] = {}
    for r in rows:
        acc = per_rule.setdefault(r.rule, [0, 0])
        acc[0] += r.count
        acc[1] += 1
        severity[r.rule] = max(severity.get(r.rule, r.severity), r.severity)
    items: list[tuple[str, str]] = []
    level: Severity | None = None
    for rule, (count, hosts) in sorted(
        per_rule.items(), key=lambda kv: (-severity[kv[0]], -kv[1][0], kv[0])
    ):
        text = f"{rule} {count}" + (f" ({hosts} hosts)" if hosts > 1 else "")
        if severity[rule] != level:
            level = severity[rule]
            text = f"{level}: {text}"
        items.append((text, SEVERITY_STYLE[severity[rule]]))
    out = [head]
    line = Text("  ", no_wrap=True, overflow="ellipsis")
    for text, style in items:
        sep = "  " if len(line) > 2 else ""
        if len(line) + len(sep) + len(text) > width and len(line) > 2:
            out.append(line)
            line, sep = Text("  ", no_wrap=True, overflow="ellipsis"), ""
        line.append(sep)
        line.append(text, style)
    if len(line) > 2:
        out.append(line)
    out.append(Text("  all of them: --format digest | less; each finding: --details", "dim"))
    return out


# -- the findings table ---------------------------------------------------------------------


def render_table(findings: Sequence[Finding], width: int, tz: tzinfo) -> list[Text]:
    """Each finding as a row (in the order given), for a terminal ``width`` wide."""
    if not findings:
        return [Text("no findings")]
    fmt = time_format((f.timestamp for f in findings), tz)
    where = short_paths(f.source for f in findings)
    columns, constant = drop_constant(
        [
            Column(
                "severity",
                [str(f.severity) for f in findings],
                styles=[SEVERITY_STYLE[f.severity] for f in findings],
            ),
            Column(
                "time",
                [
                    f.timestamp.astimezone(tz).strftime(fmt) if f.timestamp else "-"
                    for f in findings
                ],
            ),
            Column("rule", [f.rule for f in findings], style="bold"),
            Column("count", [str(f.count) for f in findings], right=True),
            Column("host", [visible(f.host) or "-" for f in findings], movable=True),
            Column("program", [visible(f.program) or "-" for f in findings], movable=True),
            Column("source", [f"{where[f.source]}:{f.line}" for f in findings], movable=True),
        ],
        ("severity", "rule", "count", "host", "program"),
    )
    tail = Column("message", [visible(f.message) for f in findings])
    fields = ["  ".join(f"{k}={visible(v)}" for k, v in sorted(f.fields.items())) for f in findings]
    out = [
        Text(
            f"{_plural(len(findings), 'finding')}; times {zone_name(tz)}",
            style="bold",
            no_wrap=True,
        )
    ]
    if constant:
        out.append(_constants_line(constant))
    out.extend(_grid(columns, tail, width, extra=fields)[0])
    return fit(out, width)


def lines_of(text: str, width: int) -> int:
    """How many terminal lines ``text`` takes when the terminal wraps it at ``width``."""
    return sum(max(1, math.ceil(cell_len(line) / max(width, 1))) for line in text.split("\n"))
