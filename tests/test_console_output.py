"""The terminal renderer (``pipeline.output.console``): the digest's grouping and order,
identifiers never split, paths shortened, constant columns said once, folding to a screen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.cells import cell_len

from pipeline.model import Finding, Severity
from pipeline.output.console import (
    WIDE,
    Column,
    drop_constant,
    render_digest,
    render_table,
    short_paths,
    time_format,
)
from pipeline.output.digest import NO_HOST, digest
from tests.screen_helper import digest_counts, table_rows

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
LONG_RULE = "site.a-long-rule-identifier-to-wrap-ab"
LONG_HOST = "mail-frontend-0042.example.org"


def finding(
    rule: str = "dovecot.process-limit-reached",
    severity: Severity = Severity.HIGH,
    host: str | None = "mx1",
    minutes: int = 0,
    source: str = "/var/log/mail.log",
    line: int = 1,
    count: int = 1,
    message: str = "master: Warning: service(imap-login): process_limit (100) reached",
    program: str | None = "dovecot",
) -> Finding:
    return Finding(
        rule=rule,
        severity=severity,
        title="t",
        timestamp=T0 + timedelta(minutes=minutes),
        host=host,
        program=program,
        source=source,
        line=line,
        message=message,
        count=count,
    )


def mixed() -> list[Finding]:
    out = [finding(minutes=i, line=i + 1) for i in range(27)]
    out += [finding(host="mx2", minutes=5, line=3, source="/srv/mx2/mail.log")]
    out += [
        finding("systemd.remount-fs-failed", Severity.CRITICAL, "db1", 3, "/var/log/syslog", 7),
        finding("systemd.unit-failed", Severity.MEDIUM, "db1", 4, "/var/log/syslog", 9, count=40),
        finding(LONG_RULE, Severity.LOW, LONG_HOST, 9, "/srv/archive/b/syslog", 2),
        finding("kernel.fs-remounted-readonly", Severity.CRITICAL, None, 1, "/srv/a/syslog", 5),
    ]
    return out


def test_digest_groups_by_rule_and_host_ordered_by_severity_then_count() -> None:
    rows = digest(mixed())
    assert [(r.rule, r.host) for r in rows] == [
        ("kernel.fs-remounted-readonly", None),
        ("systemd.remount-fs-failed", "db1"),
        ("dovecot.process-limit-reached", "mx1"),
        ("dovecot.process-limit-reached", "mx2"),
        ("systemd.unit-failed", "db1"),
        (LONG_RULE, LONG_HOST),
    ]
    mx1 = rows[2]
    assert (mx1.findings, mx1.count) == (27, 27)
    assert (mx1.first, mx1.last) == (T0, T0 + timedelta(minutes=26))
    assert mx1.example.line == 1  # the earliest
    assert rows[4].count == 40  # a finding's own count (suppression) adds up


def test_digest_count_outranks_nothing_across_severities() -> None:
    rows = digest([finding(count=1000), finding("x.y", Severity.CRITICAL, minutes=1)])
    assert [r.rule for r in rows] == ["x.y", "dovecot.process-limit-reached"]


def test_short_paths_keep_only_the_suffix_that_tells_inputs_apart() -> None:
    paths = [
        "samples/mail/mail.log",
        "samples/mail/mail.log.1",
        "samples/syslog/syslog",
        "samples/scenarios/new-year/syslog",
        "/var/log/syslog",
        "journal:local",
    ]
    assert short_paths(paths) == {
        "samples/mail/mail.log": "mail.log",
        "samples/mail/mail.log.1": "mail.log.1",
        "samples/syslog/syslog": "syslog/syslog",
        "samples/scenarios/new-year/syslog": "new-year/syslog",
        "/var/log/syslog": "log/syslog",
        "journal:local": "journal:local",
    }
    assert short_paths(["a/b/syslog", "c/b/syslog"]) == {
        "a/b/syslog": "a/b/syslog",
        "c/b/syslog": "c/b/syslog",
    }
    # a path that is another's suffix stays whole, and the two still differ
    short = short_paths(["syslog", "x/syslog"])
    assert short == {"syslog": "syslog", "x/syslog": "x/syslog"}
    assert short_paths(["/var/log/syslog"]) == {"/var/log/syslog": "syslog"}


def test_constant_columns_are_said_once_above() -> None:
    cols = [Column("host", ["mx1", "mx1"]), Column("rule", ["a", "b"])]
    kept, constant = drop_constant(cols, ("host", "rule"))
    assert [c.name for c in kept] == ["rule"] and constant == [("host", "mx1")]
    # one row: nothing is dropped
    assert drop_constant([Column("host", ["mx1"])], ("host",))[1] == []
    two = [finding(), finding("dovecot.silent-stop", minutes=3)]
    lines = [x.plain for x in render_digest(digest(two), 160, UTC)]
    assert lines[1] == "severity: high  host: mx1"
    assert "host" not in lines[2].split() and "severity" not in lines[2].split()
    table = [x.plain for x in render_table([finding(), finding(minutes=3, line=2)], 160, UTC)]
    assert "severity: high" in table[1] and "count: 1" in table[1] and "host: mx1" in table[1]


@pytest.mark.parametrize("width", [72, 80, 100, WIDE - 1, WIDE, 160, 200])
def test_identifiers_are_never_split(width: int) -> None:
    findings = mixed()
    for lines, no_host in (
        (render_digest(digest(findings), width, UTC), NO_HOST),
        (render_table(findings, width, UTC), "-"),
    ):
        plain = [x.plain for x in lines] + [""]
        assert all(cell_len(x) <= width for x in plain), plain
        for f in findings:
            at = [i for i, x in enumerate(plain) if f.rule in x]
            assert at, f"{f.rule} is not whole at {width} columns"
            # the host whole on the row's line, or on its second line
            host = f.host or no_host
            assert any(host in plain[i] or host in plain[i + 1] for i in at), plain
        rows = [i for i, x in enumerate(plain) if x.startswith(("critical", "high", "medium"))]
        below = [plain[i + 1] for i in rows]
        if width < WIDE:  # the two-line form
            assert all(x.startswith("    ") for x in below), plain
        elif width >= 160:  # one line per row where the identifiers fit beside a message
            assert not any(x.startswith("    ") for x in below), plain


def test_an_identifier_too_long_for_the_line_is_cut_with_an_ellipsis() -> None:
    lines = [x.plain for x in render_digest(digest(mixed()), 40, UTC)]
    assert all(cell_len(x) <= 40 for x in lines)
    assert any("…" in x for x in lines)


def test_times_are_as_short_as_the_span_allows() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    day = [T0, T0 + timedelta(hours=2)]
    assert time_format(day, UTC) == "%H:%M:%S"
    assert time_format([T0, T0 + timedelta(days=3)], UTC) == "%m-%d %H:%M:%S"
    assert time_format([T0, T0 + timedelta(days=400)], UTC, seconds=False) == "%Y-%m-%d %H:%M"
    # 23:30 UTC is the next day in Berlin
    late = [T0.replace(hour=22, minute=30), T0.replace(hour=23, minute=30)]
    assert time_format(late, UTC) == "%H:%M:%S" and time_format(late, berlin) != "%H:%M:%S"
    rows = digest([finding(), finding(minutes=90)])
    (line,) = [x.plain for x in render_digest(rows, 160, UTC) if x.plain.startswith("high")]
    assert "08:00 – 09:30" in line and "2026" not in line


def test_the_digest_folds_what_does_not_fit_and_keeps_every_critical_row() -> None:
    findings = [
        finding(f"r.crit{i}", Severity.CRITICAL, f"h{i}", i, f"/l/{i}", 1) for i in range(6)
    ] + [finding(f"r.low{i % 7}", Severity.LOW, f"h{i}", i, "/l/x", i) for i in range(40)]
    rows = digest(findings)
    for width in (80, 160):
        lines = render_digest(rows, width, UTC, max_lines=20)
        text = "\n".join(x.plain for x in lines)
        assert len(lines) <= 20, text
        for i in range(6):
            assert f"r.crit{i}" in text
        want: dict[str, int] = {}
        for f in findings:
            want[f.rule] = want.get(f.rule, 0) + f.count
        assert digest_counts(text) == want, text
    # critical rows stay even when they alone overflow
    lines = render_digest(rows, 80, UTC, max_lines=5)
    assert sum(x.plain.startswith("critical") for x in lines) == 6
    # everything fits: nothing folded
    assert "… and" not in "\n".join(x.plain for x in render_digest(rows, 160, UTC, max_lines=99))


def test_the_table_reads_back_as_the_findings() -> None:
    findings = sorted(mixed(), key=lambda f: f.timestamp or T0)
    rows = table_rows("\n".join(x.plain for x in render_table(findings, 200, UTC)))
    assert [(r["rule"], r["host"], r["source"]) for r in rows] == [
        (f.rule, f.host or "-", f"{short_paths([g.source for g in findings])[f.source]}:{f.line}")
        for f in findings
    ]


def test_control_characters_in_log_text_are_shown_escaped() -> None:
    lines = render_table([finding(message="evil\x1b[2Jtext\ttab")], 160, UTC)
    assert "\x1b" not in "".join(x.plain for x in lines)
    assert any("evil\\x1b[2Jtext tab" in x.plain for x in lines)


def test_no_findings() -> None:
    assert [x.plain for x in render_digest([], 100, UTC)] == ["no findings"]
    assert [x.plain for x in render_table([], 100, UTC)] == ["no findings"]


# -- the scan command's output options --------------------------------------------------------


def _scan(*args: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from pipeline.cli import main

    result = CliRunner().invoke(main, ["scan", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def syslog_sample() -> str:
    from tests.conftest import SAMPLES

    return str(SAMPLES / "syslog")


def test_min_severity_filters_every_format(syslog_sample: str) -> None:
    import json

    code, out, err = _scan(
        syslog_sample, "--format", "json", "--min-severity", "high", "--tz", "UTC"
    )
    assert code == 0
    found = [json.loads(x) for x in out.splitlines()]
    assert found and {f["severity"] for f in found} <= {"high", "critical"}
    _, every, _ = _scan(syslog_sample, "--format", "jsonl", "--tz", "UTC")
    assert len(every.splitlines()) > len(found)
    assert [
        f for f in map(json.loads, every.splitlines()) if f["severity"] in ("high", "critical")
    ] == found
    code, out, _ = _scan(syslog_sample, "--min-severity", "critical", "--tz", "UTC")
    assert out.startswith("3 findings of 3 rules at or above critical, by rule and host")
    assert "medium" not in out and "high" not in out


def test_details_is_the_digest_then_the_table(syslog_sample: str) -> None:
    _, digest_only, _ = _scan(syslog_sample, "--tz", "UTC", "-q")
    _, table, _ = _scan(syslog_sample, "--tz", "UTC", "-q", "--format", "table")
    _, both, _ = _scan(syslog_sample, "--tz", "UTC", "-q", "--details")
    assert both == digest_only + "\n" + table
    assert len(table_rows(table)) == 13
    code, _, err = _scan(syslog_sample, "--details", "--format", "csv")
    assert code == 2 and "--details" in err


def test_the_progress_bar_is_up_while_the_output_is_laid_out(
    syslog_sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.cli as cli

    bars: list[cli._Bar] = []
    live: list[bool] = []

    def bar(engine: object, quiet: bool) -> cli._Bar:
        bars.append(cli._Bar(engine, True))  # type: ignore[arg-type]
        return bars[-1]

    layout = cli.console_lines

    def watched(*args: object, **kwargs: object) -> object:
        progress = bars[-1]._progress
        live.append(progress is not None and progress.live.is_started)
        return layout(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "progress_bar", bar)
    monkeypatch.setattr(cli, "console_lines", watched)
    code, out, _ = _scan(syslog_sample, "--tz", "UTC")
    assert code == 0 and "kernel.fs-remounted-readonly" in out
    assert live == [True]
    assert bars[-1]._progress is None  # and gone once the output is written


def test_report_min_severity_reports_only_those_findings(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import main
    from tests.conftest import SAMPLES

    out = tmp_path / "r.html"
    args = ["report", str(SAMPLES / "syslog"), "-o", str(out), "--tz", "UTC"]
    every = CliRunner().invoke(main, args, catch_exceptions=False)
    assert "13 findings" in every.stderr
    assert "system.disk-full" in out.read_text(encoding="utf-8")
    some = CliRunner().invoke(main, [*args, "--min-severity", "critical"], catch_exceptions=False)
    assert some.exit_code == 0 and "3 findings" in some.stderr
    assert "system.disk-full" not in out.read_text(encoding="utf-8")
