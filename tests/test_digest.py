"""One rule × host digest (``pipeline.output.digest``) for the terminal and the HTML report:
the same rows, in the same order, host-less rows named the same way."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pipeline
from pipeline.model import Finding, Severity
from pipeline.output.console import render_digest
from pipeline.output.digest import NO_HOST, digest, frame_digest
from pipeline.report import render_report
from pipeline.schema import findings_frame
from tests.conftest import SAMPLES

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def finding(rule: str, host: str | None, minutes: int, count: int = 1) -> Finding:
    return Finding(
        rule=rule,
        severity=Severity.HIGH,
        title="t",
        timestamp=T0 + timedelta(minutes=minutes),
        host=host,
        program="p",
        source="/var/log/syslog",
        line=minutes + 1,
        message=f"m{minutes}",
        count=count,
    )


def ties() -> list[Finding]:
    """Rows of one severity and one count that only the number of findings orders: one
    finding of count 4 against two of count 2, the rule names in the other order."""
    return [
        finding("a.one-big", "h1", 0, count=4),
        finding("b.two-small", "h1", 1, count=2),
        finding("b.two-small", "h1", 2, count=2),
        finding("c.host-less", None, 3, count=1),
        finding("c.host-less", "", 4, count=1),  # an empty host is no host either
    ]


def terminal_rows(findings: list[Finding]) -> list[tuple[str, str]]:
    lines = [x.plain for x in render_digest(digest(findings), 200, UTC)]
    head = next(i for i, x in enumerate(lines) if re.match(r"(severity +)?count +rule", x))
    names = re.split(r"\s{2,}", lines[head].strip())
    rows = []
    for line in lines[head + 1 :]:
        cells = dict(zip(names, re.split(r"\s{2,}", line.strip()), strict=False))
        rows.append((cells["rule"], cells["host"]))
    return rows


def report_rows(findings: list[Finding]) -> list[tuple[str, str]]:
    html = render_report(findings_frame(findings, tz="UTC"))
    section = html[html.index('id="digest"') : html.index("</section>")]
    rows = re.findall(r'<tr><td>.*?</td><td><a href="[^"]*">(.*?)</a></td><td>(.*?)</td>', section)
    return [(unescape(r), unescape(re.sub(r"</?i>", "", h))) for r, h in rows]


def test_terminal_and_report_show_the_same_rows_in_the_same_order() -> None:
    findings = ties()
    want = [
        ("b.two-small", "h1"),  # count 4 in two findings
        ("a.one-big", "h1"),  # count 4 in one
        ("c.host-less", NO_HOST),  # count 2, None and "" in one group
    ]
    assert terminal_rows(findings) == want
    assert report_rows(findings) == want


def test_the_frame_digest_is_the_findings_digest() -> None:
    result = pipeline.scan(SAMPLES, tz="UTC")
    ordered = sorted(
        result.objects,
        key=lambda f: (f.timestamp.timestamp() if f.timestamp else float("-inf"), f.source, f.line),
    )
    rows = digest(ordered)
    assert any(r.host is None for r in rows)
    assert frame_digest(result.findings) == rows
    assert frame_digest(result.findings.iloc[:0]) == []
