"""The HTML report: self-contained, and rendered by a real browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from html import unescape
from itertools import pairwise
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import pipeline
from pipeline.cli import main
from pipeline.errors import Location, Problem
from pipeline.model import Severity
from pipeline.output.digest import frame_digest as digest
from pipeline.report import (
    DIGEST_ROWS,
    PROBLEMS_LISTED,
    inline_text,
    render_report,
    stats_table,
    ticks,
    time_clusters,
)
from tests.conftest import REPO, SAMPLES, require_program

#: screenshots kept for CI to publish (git-ignored)
ARTIFACTS = REPO / "tests" / "artifacts"


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    exe = require_program("chromium", "/usr/bin/chromium")
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_report_is_self_contained() -> None:
    result = pipeline.scan(SAMPLES, tz="UTC")
    html = result.report_html()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"""src=["']?https?:""", html)
    assert "<svg" in html and "<style>" in html
    for rule in set(result.findings["rule"]):
        assert f'id="rule-{rule.replace(".", "-")}"' in html
    # every rule section carries what the rule file says
    dsn = result.rule("sendmail.dsn-return-receipt")
    assert dsn is not None and dsn.references
    assert dsn.references[0] in unescape(html)


def test_report_escapes_log_text(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text(
        "Nov 30 08:00:00 vm backup[1]: write <script>alert(1)</script>: No space left on device\n"
    )
    result = pipeline.scan(log, tz="UTC", year=2026)
    assert len(result.findings) == 1
    html = result.report_html()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_without_findings() -> None:
    result = pipeline.scan(SAMPLES / "syslog", [], tz="UTC")
    html = render_report(result.findings)
    assert "No findings." in html


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main, ["report", str(SAMPLES), "-o", str(out), "--tz", "UTC"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    findings = pipeline.scan(SAMPLES, tz="UTC").findings
    assert f"{len(findings)} findings" in result.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    chromium(
        [f"--screenshot={shot}", "--window-size=1400,2400", out.as_uri()], tmp_path / "profile"
    )
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    dom = chromium(["--dump-dom", out.as_uri()], tmp_path / "profile").stdout
    table = dom[dom.index('<table id="findings"') :]
    body = table[table.index("<tbody>") : table.index("</tbody>")]
    rows = re.findall(r"<tr>.*?</tr>", body, re.S)
    assert len(rows) == len(findings)
    text = unescape(re.sub(r"<[^>]+>", " ", dom))
    for message in findings["message"]:
        assert " ".join(message.split())[:60] in " ".join(text.split())
    # every timed finding is drawn once: a dot, or counted in a histogram bar
    bars = sum(int(n) for n in re.findall(r'<rect class="bar" data-n="(\d+)"', dom))
    assert dom.count("<circle") + bars == int(findings["timestamp"].notna().sum())


def test_report_from_store(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    pipeline.scan(SAMPLES / "mail", tz="UTC").to_sqlite(db)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        main, ["report", "--from-store", str(db), "-o", str(out), "--tz", "UTC"]
    )
    assert result.exit_code == 0, result.stderr
    assert "sendmail.dsn-return-receipt" in out.read_text()


# -- what the report opens with ---------------------------------------------------------------


def test_digest_groups_findings_by_rule_and_host() -> None:
    findings = pipeline.scan(SAMPLES, tz="UTC").findings
    rows = digest(findings)
    expected: dict[tuple[str, str | None], list[Any]] = {}
    for f in findings.to_dict("records"):
        host = f["host"] if isinstance(f["host"], str) else None
        e = expected.setdefault((f["rule"], host), [0, 0, f["timestamp"], f["last_seen"]])
        e[0] += 1
        e[1] += f["count"]
        e[2], e[3] = min(e[2], f["timestamp"]), max(e[3], f["last_seen"])
    assert {(d.rule, d.host): [d.findings, d.count, d.first, d.last] for d in rows} == (expected)
    assert len(rows) == len(expected)
    assert ("apache.child-crashed", None) in expected  # host-less findings have a row
    keys = [(-d.severity, -d.count, -d.findings) for d in rows]
    assert keys == sorted(keys)
    mx1 = next(d for d in rows if (d.rule, d.host) == ("dovecot.process-limit-reached", "mx1"))
    assert mx1.severity == Severity.HIGH and mx1.count > mx1.findings > 1


def test_report_opens_with_range_digest_and_problems() -> None:
    result = pipeline.scan(SAMPLES, tz="UTC")
    problems = [
        Problem("invalid-utf8", Location(f"/var/log/x{i}.log", i + 1, 1), "bad bytes")
        for i in range(PROBLEMS_LISTED + 5)
    ]
    html = render_report(
        result.findings, result.rules, counts=result.counts, problems=problems, paths=["samples"]
    )
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    assert "Findings cover 2025-12-31 23:57:40 to 2026-11-30 06:32:55 UTC" in " ".join(text.split())
    at = {
        name: html.index(marker)
        for name, marker in [
            ("covers", 'id="covers"'),
            ("digest", 'id="digest"'),
            ("problems", 'id="problems"'),
            ("timeline", "<svg"),
            ("findings", 'id="findings"'),
        ]
    }
    assert at["covers"] < at["digest"] < at["problems"] < at["timeline"] < at["findings"]
    # every problem is counted; the ones not listed are said to be left out
    assert f"{len(problems):,} problems reading the input" in html
    assert "invalid-utf8 1,005" in html and "5 more not listed here" in html
    assert html.count("<li>/var/log/x") == PROBLEMS_LISTED
    digest_html = html[at["digest"] : at["problems"]]
    pairs = len(digest(result.findings))
    assert digest_html.count("<tr>") == pairs + 2  # two header rows: shown and folded tables
    assert f"{pairs - DIGEST_ROWS} more rule × host pairs" in digest_html
    assert "<i>(no host)</i>" in digest_html


def test_stats_are_a_table_not_a_dict() -> None:
    result = pipeline.scan(SAMPLES, tz="UTC")
    html = render_report(result.findings, result.rules, counts=result.counts)
    stats = html[html.index('id="stats"') : html.index("</table>", html.index('id="stats"'))]
    assert "{" not in stats and "}" not in stats and "'" not in stats
    assert "<th>out of range</th><td>0</td>" in stats
    assert "<th>unparsed</th><td>none</td>" in stats
    assert "<th>lines</th><td>2,188</td>" in stats
    assert "<th>formats</th><td>apache-error: 2, journal-json: 1, syslog: 6, rfc3339: 1" in stats
    table = stats_table({"problems": {"invalid-utf8": 3, "unparsed": 1200}, "seconds": 0.5})
    assert "invalid-utf8: 3, unparsed: 1,200" in table and "0.500" in table


def test_remediation_renders_inline_code() -> None:
    assert inline_text("run `df -h <dev>` & `lsof +L1`") == (
        "run <code>df -h &lt;dev&gt;</code> &amp; <code>lsof +L1</code>"
    )
    assert inline_text("a lone ` stays") == "a lone ` stays"
    result = pipeline.scan(SAMPLES, tz="UTC")
    html = result.report_html()
    assert "<code>apachectl status</code>" in html
    rules = html[html.index("<h2>Rules</h2>") :]
    assert "`" not in rules


# -- the timeline --------------------------------------------------------------------------


def _t(text: str, tz: str = "UTC") -> pd.Timestamp:
    return pd.Timestamp(text).tz_localize(tz)


@pytest.mark.parametrize(
    ("start", "end", "most", "expected"),
    [
        ("2025-12-31 23:51:10", "2026-01-01 00:08:40", 4, ["23:55", "00:00", "00:05"]),
        ("2026-11-24 10:01:07", "2026-11-24 14:04:00", 6, ["11:00", "12:00", "13:00", "14:00"]),
        ("2026-11-24 02:54", "2026-11-30 13:39", 10, [f"11-{d} 00:00" for d in range(25, 31)]),
        ("2026-11-24 02:54", "2026-11-30 13:39", 4, ["11-25 00:00", "11-27 00:00", "11-29 00:00"]),
        (
            "2024-02-10",
            "2026-01-20",
            10,
            [
                "2024-04",
                "2024-07",
                "2024-10",
                "2025-01",
                "2025-04",
                "2025-07",
                "2025-10",
                "2026-01",
            ],
        ),
    ],
)
def test_ticks_fall_on_round_times(start: str, end: str, most: int, expected: list[str]) -> None:
    got = ticks(_t(start), _t(end), most)
    assert len(got) <= most
    fmt = {5: "%H:%M", 11: "%m-%d %H:%M", 7: "%Y-%m"}[len(expected[0])]
    assert [f"{t:{fmt}}" for t in got] == expected


def test_ticks_follow_the_wall_clock_across_dst() -> None:
    got = ticks(_t("2026-03-28 20:30", "Europe/Berlin"), _t("2026-03-29 09:30", "Europe/Berlin"), 6)
    assert [f"{t:%H:%M}" for t in got] == ["22:00", "00:00", "04:00", "06:00", "08:00"]
    # 02:00 does not exist that night; 04:00 is CEST
    assert got[1].utcoffset() == timedelta(hours=1) and got[2].utcoffset() == timedelta(hours=2)


def test_time_clusters_split_at_wide_gaps() -> None:
    findings = pipeline.scan(SAMPLES, tz="UTC").findings
    clusters = time_clusters(findings["timestamp"])
    assert [(f"{a:%Y-%m-%d}", f"{b:%Y-%m-%d}", n) for a, b, n in clusters] == [
        ("2025-12-31", "2026-01-01", 6),
        ("2026-11-24", "2026-11-30", len(findings) - 6),
    ]
    even = pd.Series(pd.date_range("2026-01-01", periods=50, freq="1h", tz="UTC"))
    assert len(time_clusters(even)) == 1
    # bursts 3, 4, 5, 6 and 7 years apart: four gaps are wide, but at most four panels are
    # drawn, so the three widest break the axis
    bursts = [
        _t(f"{y}-06-01") + pd.Timedelta(minutes=m)
        for y in (2000, 2003, 2007, 2012, 2018, 2025)
        for m in (0, 5, 9)
    ]
    got = time_clusters(pd.Series(bursts))
    assert [(f"{a:%Y}", f"{b:%Y}", n) for a, b, n in got] == [
        ("2000", "2007", 9),
        ("2012", "2012", 3),
        ("2018", "2018", 3),
        ("2025", "2025", 3),
    ]
    assert time_clusters(pd.Series([], dtype="datetime64[ns, UTC]")) == []


# -- layout in a real browser ----------------------------------------------------------------

#: the window the layout facts are checked in, the first screen of a laptop
VIEW_W, VIEW_H = 1400, 900

#: run in a copy of the page only (the report itself has no scripts): lays the page out and
#: writes what it measured into the DOM, which --dump-dom then prints
_MEASURE = """<script>
(() => {
  const box = e => { const b = e.getBoundingClientRect();
                     return {left: b.left, top: b.top, right: b.right, bottom: b.bottom}; };
  const one = s => { const e = document.querySelector(s); return e ? box(e) : null; };
  const svg = document.querySelector("svg.timeline");
  const m = {
    viewport: [innerWidth, innerHeight],
    scrollWidth: document.documentElement.scrollWidth,
    covers: one("#covers"), digest: one("#digest"), problems: one("#problems"),
    timeline: one("svg.timeline"),
    scale: svg.getBoundingClientRect().width / svg.viewBox.baseVal.width,
    fontPx: Math.min(...[...svg.querySelectorAll("text")].map(
      t => parseFloat(getComputedStyle(t).fontSize))),
    panels: [...svg.querySelectorAll("rect.panel")].map(e => box(e)),
    lanes: [...svg.querySelectorAll("g.lane")].map(g => Object.assign(box(g), {
      rule: g.dataset.rule, panel: +g.dataset.panel,
      circles: g.querySelectorAll("circle").length,
      bars: [...g.querySelectorAll("rect.bar")].reduce((n, b) => n + +b.dataset.n, 0)})),
    ticks: [...svg.querySelectorAll("text.tick")].map(t => Object.assign(box(t),
      {text: t.textContent})),
  };
  const out = document.createElement("pre");
  out.id = "layout-facts";
  out.textContent = JSON.stringify(m);
  document.body.appendChild(out);
})();
</script>"""


def layout(html: str, name: str, tmp_path: Path) -> dict[str, Any]:
    """Screenshot the report's first screen (kept in tests/artifacts/) and measure it."""
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    size = f"--window-size={VIEW_W},{VIEW_H}"
    chromium([f"--screenshot={shot}", size, page.as_uri()], tmp_path / "profile")
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (VIEW_W, VIEW_H)
    probe = tmp_path / f"{name}-measured.html"
    probe.write_text(html.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    dom = chromium(["--dump-dom", size, probe.as_uri()], tmp_path / "profile").stdout
    found = re.search(r'<pre id="layout-facts">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    facts: dict[str, Any] = json.loads(unescape(found.group(1)))
    assert facts["viewport"][0] == VIEW_W
    return facts


def check_layout(facts: dict[str, Any]) -> None:
    """What holds for every report at 1400 px."""
    assert facts["scrollWidth"] <= VIEW_W  # nothing wider than the window
    # the first screen: the covered range, then the whole digest
    assert facts["covers"]["bottom"] <= facts["digest"]["top"]
    assert facts["digest"]["bottom"] <= VIEW_H
    # the timeline is drawn 1:1 inside the window, with text no smaller than 11 px
    svg = facts["timeline"]
    assert 0.99 <= facts["scale"] <= 1.01 and svg["right"] <= VIEW_W and facts["fontPx"] >= 11
    # no lane's marks beyond its panel, no panel beyond the plot, panels side by side
    panels = facts["panels"]
    for p in panels:
        assert svg["left"] <= p["left"] < p["right"] <= svg["right"]
    for a, b in pairwise(panels):
        assert a["right"] < b["left"]
    for lane in facts["lanes"]:
        p = panels[lane["panel"]]
        assert p["left"] - 0.5 <= lane["left"] and lane["right"] <= p["right"] + 0.5, lane
        assert p["top"] <= lane["top"] and lane["bottom"] <= p["bottom"], lane
    # tick labels inside the plot and clear of each other on their row
    rows: dict[float, list[dict[str, Any]]] = {}
    for t in facts["ticks"]:
        assert svg["left"] <= t["left"] and t["right"] <= svg["right"], t
        rows.setdefault(round(t["top"]), []).append(t)
    for row in rows.values():
        row.sort(key=lambda t: t["left"])
        for a, b in pairwise(row):
            assert a["right"] + 2 <= b["left"], (a, b)


def test_layout_of_the_samples_report(tmp_path: Path) -> None:
    result = pipeline.scan(SAMPLES, tz="UTC")
    facts = layout(result.report_html(), "report-samples", tmp_path)
    check_layout(facts)
    # the New-Year findings get a panel of their own, not 1% of one axis
    assert len(facts["panels"]) == 2
    timed = int(result.findings["timestamp"].notna().sum())
    assert sum(lane["circles"] + lane["bars"] for lane in facts["lanes"]) == timed


def dense_log(path: Path) -> Path:
    """Two disk-full lines a year before 4,000 of them in six hours, a kernel line amid
    those, and a line with bytes that are not UTF-8 (a problem)."""
    lines = []
    early = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    for k in range(2):
        lines.append(
            f"{(early + timedelta(minutes=k)).isoformat()} web1 backup[77]: "
            "write /var/backups/db.dump: No space left on device"
        )
    late = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    for k in range(4000):
        lines.append(
            f"{(late + timedelta(seconds=5 * k)).isoformat()} web2 rsyslogd[321]: "
            "file '/var/log/app.log': write error: No space left on device"
        )
    lines.append(
        f"{(late + timedelta(hours=2)).isoformat()} web2 kernel: "
        "EXT4-fs (sda1): Remounting filesystem read-only"
    )
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe not text\n")
    return path


def test_layout_of_far_apart_and_dense_findings(tmp_path: Path) -> None:
    result = pipeline.scan(dense_log(tmp_path / "syslog"), tz="UTC")
    assert len(result.findings) == 4003 and [p.kind for p in result.problems] == ["invalid-utf8"]
    facts = layout(result.report_html(), "report-dense", tmp_path)
    check_layout(facts)
    # the problems box is on the first screen too, under the digest
    assert facts["digest"]["bottom"] <= facts["problems"]["top"] < VIEW_H
    assert len(facts["panels"]) == 2  # a year apart: a broken axis
    lanes = {(lane["rule"], lane["panel"]): lane for lane in facts["lanes"]}
    assert lanes[("system.disk-full", 0)]["circles"] == 2
    dense = lanes[("system.disk-full", 1)]
    assert dense["circles"] == 0 and dense["bars"] == 4000  # a histogram, every finding counted
    assert lanes[("kernel.fs-remounted-readonly", 1)]["circles"] == 1
