"""The rule × host digest: findings grouped by rule and host, the most severe first.

One implementation for every view of it: ``scan``'s terminal output
(:func:`pipeline.output.console.render_digest`) and the HTML report's top
(:mod:`pipeline.report`). :func:`digest` takes findings, :func:`frame_digest` a findings
frame (``pipeline.scan().findings`` or a store read back); both group, order and name rows
the same way. Findings without a host are one group per rule, named :data:`NO_HOST`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline.model import Finding, Severity

if TYPE_CHECKING:
    import pandas as pd

#: how a row of findings without a host is named, in the terminal and in the report
NO_HOST = "(no host)"

_SEVERITIES = {str(s): s for s in Severity}


def host_label(host: str | None) -> str:
    """``host``, or :data:`NO_HOST` for findings that carry none."""
    return host if host else NO_HOST


@dataclass(frozen=True, slots=True)
class DigestExample:
    """The finding a digest row shows as its example: where it is and what it says."""

    source: str
    line: int
    message: str


@dataclass(frozen=True, slots=True)
class DigestRow:
    """The findings of one rule on one host: how many, when, and the earliest as an example.

    ``host`` is None for findings without one (:func:`host_label` names them). ``count``
    adds up the findings' own counts (a suppressed or threshold finding stands for several
    events); ``findings`` is how many findings there are; ``severity`` is the worst.
    """

    rule: str
    host: str | None
    severity: Severity
    findings: int
    count: int
    first: datetime | None
    last: datetime | None
    example: DigestExample

    @property
    def host_name(self) -> str:
        return host_label(self.host)


class _Group:
    __slots__ = ("at", "count", "findings", "first", "last", "severity")

    def __init__(
        self, at: int, severity: Severity, count: int, first: datetime | None, last: datetime | None
    ) -> None:
        self.at = at
        self.severity = severity
        self.findings = 1
        self.count = count
        self.first = first
        self.last = last


#: one finding as the digest reads it: rule, host, severity, count, time, last time
Item = tuple[str, str | None, Severity, int, datetime | None, datetime | None]


def _group(items: Iterable[Item], example: Callable[[int], DigestExample]) -> list[DigestRow]:
    """The one grouping and order: by (rule, host), the most severe first, then the highest
    count, then the most findings, then by rule and host; ``example(i)`` makes the example
    of the ``i``-th item (the earliest of its group)."""
    groups: dict[tuple[str, str | None], _Group] = {}
    for i, (rule, host, severity, count, ts, last) in enumerate(items):
        key = (rule, host or None)
        g = groups.get(key)
        if g is None:
            groups[key] = _Group(i, severity, count, ts, last or ts)
            continue
        g.findings += 1
        g.count += count
        if severity > g.severity:
            g.severity = severity
        if ts is not None and (g.first is None or ts < g.first):
            g.first = ts
            g.at = i
        last = last or ts
        if last is not None and (g.last is None or last > g.last):
            g.last = last
    return ordered(
        [
            DigestRow(rule, host, g.severity, g.findings, g.count, g.first, g.last, example(g.at))
            for (rule, host), g in groups.items()
        ]
    )


def ordered(rows: list[DigestRow]) -> list[DigestRow]:
    """The digest's order: the most severe first, then the highest count, then the most
    findings, then by rule and host."""
    rows.sort(key=lambda r: (-r.severity, -r.count, -r.findings, r.rule, r.host or ""))
    return rows


def digest(findings: Iterable[Finding]) -> list[DigestRow]:
    """One row per rule and host (see :func:`_group` for the order)."""
    from_columns = getattr(findings, "digest_rows", None)
    if from_columns is not None:  # the block path's rows (pipeline.block.TableView)
        rows: list[DigestRow] = from_columns()
        return rows
    items = list(findings)

    def example(i: int) -> DigestExample:
        f = items[i]
        return DigestExample(f.source, f.line, f.message)

    return _group(
        ((f.rule, f.host, f.severity, f.count, f.timestamp, f.last_seen) for f in items), example
    )


def frame_digest(findings: pd.DataFrame) -> list[DigestRow]:
    """:func:`digest` of a findings frame (the columns of ``pipeline.schema``)."""
    if not len(findings):
        return []
    import pandas as pd

    def when(values: pd.Series) -> list[datetime | None]:
        return [None if pd.isna(t) else t for t in values.tolist()]

    hosts = [h if isinstance(h, str) else None for h in findings["host"].tolist()]
    severities = [_SEVERITIES.get(str(s), Severity.INFO) for s in findings["severity"].tolist()]
    sources: Sequence[object] = findings["source"].tolist()
    lines: Sequence[object] = findings["line"].tolist()
    messages: Sequence[object] = findings["message"].tolist()

    def example(i: int) -> DigestExample:
        return DigestExample(str(sources[i]), int(str(lines[i])), str(messages[i]))

    return _group(
        zip(
            (str(r) for r in findings["rule"].tolist()),
            hosts,
            severities,
            (int(c) for c in findings["count"].tolist()),
            when(findings["timestamp"]),
            when(findings["last_seen"]),
            strict=True,
        ),
        example,
    )
