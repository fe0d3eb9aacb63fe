"""The HTML report: self-contained, and rendered by a real browser (headless Chromium)."""

from __future__ import annotations

import re
import subprocess
from html import unescape
from pathlib import Path

from click.testing import CliRunner

import pipeline
from pipeline.cli import main
from pipeline.report import render_report
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
        [f"--screenshot={shot}", "--window-size=1280,2000", out.as_uri()], tmp_path / "profile"
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
    assert dom.count("<circle") == int(findings["timestamp"].notna().sum())


def test_report_from_store(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    pipeline.scan(SAMPLES / "mail", tz="UTC").to_sqlite(db)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        main, ["report", "--from-store", str(db), "-o", str(out), "--tz", "UTC"]
    )
    assert result.exit_code == 0, result.stderr
    assert "sendmail.dsn-return-receipt" in out.read_text()
