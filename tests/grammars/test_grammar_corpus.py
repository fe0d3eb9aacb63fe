"""The grammars against third-party samples in ``../shared/corpus`` (test use only).

* loghub ``*_2k.log``: every line parses with the sniffed format, and host / program / pid /
  message / time equal the ``*_structured.csv`` ground truth (whose content keeps rsyslog's
  ``message repeated N times: [ ...]`` wrapped; the grammar unwraps it).
* fail2ban ``logs/*`` and wazuh ``tests/*.ini``: every line parses with :func:`parse_any` or
  raises GrammarError, never anything else; the lines that do not parse are listed below with
  the reason.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.grammars import FORMATS, GrammarError, Parsed, parse_any, sniff_format

pytestmark = pytest.mark.corpus

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _raw_lines(path: Path) -> list[str]:
    """The lines of a loghub log: CRLF line ends, the last line without one."""
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    assert lines[-1], "the last line has no line end"
    return lines


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _bsd_expectation(
    row: dict[str, str], host: str, program: str, pid: str, month: str, day: str, time: str
) -> tuple[str | None, str | None, int | None, str, str]:
    return (
        row[host],
        row.get(program, program),
        int(row[pid]) if row[pid] else None,
        row["Content"],
        f"{MONTHS.index(row[month]) + 1:02d}-{int(row[day]):02d} {row[time]}",
    )


def _written(parsed: Parsed) -> str:
    """The message as the line holds it: rsyslog's repeated form wrapped again."""
    if parsed.repeat == 1:
        return parsed.message
    return f"message repeated {parsed.repeat} times: [ {parsed.message}]"


def _bsd_actual(parsed: Parsed) -> tuple[str | None, str | None, int | None, str, str]:
    assert parsed.timestamp is not None and parsed.year_missing
    return (
        parsed.host,
        parsed.program,
        parsed.pid,
        _written(parsed),
        parsed.timestamp.strftime("%m-%d %H:%M:%S"),
    )


# Column names per system: loghub names the host column Level (Linux), Component (OpenSSH)
# or User (Mac); OpenSSH has no program column (it is always sshd).
_SYSTEMS: dict[str, Callable[[dict[str, str]], tuple[object, ...]]] = {
    "Linux": lambda row: _bsd_expectation(
        row, "Level", "Component", "PID", "Month", "Date", "Time"
    ),
    "OpenSSH": lambda row: _bsd_expectation(row, "Component", "sshd", "Pid", "Date", "Day", "Time"),
    "Mac": lambda row: _bsd_expectation(row, "User", "Component", "PID", "Month", "Date", "Time"),
}


@pytest.mark.parametrize("system", sorted(_SYSTEMS))
def test_loghub_syslog_matches_ground_truth(corpus: Path, system: str) -> None:
    folder = corpus / "loghub" / system
    lines = _raw_lines(folder / f"{system}_2k.log")
    rows = _rows(folder / f"{system}_2k.log_structured.csv")
    assert len(lines) == len(rows) == 2000
    assert sniff_format(lines[:50]) == "syslog"
    parse = FORMATS["syslog"].parse
    expect = _SYSTEMS[system]
    mismatches = [
        (number, line)
        for number, (line, row) in enumerate(zip(lines, rows, strict=True), 1)
        if _bsd_actual(parse(line)) != expect(row)
    ]
    assert mismatches == []


def test_loghub_apache_matches_ground_truth(corpus: Path) -> None:
    folder = corpus / "loghub" / "Apache"
    lines = _raw_lines(folder / "Apache_2k.log")
    rows = _rows(folder / "Apache_2k.log_structured.csv")
    assert sniff_format(lines[:50]) == "apache-error"
    parse = FORMATS["apache-error"].parse
    for line, row in zip(lines, rows, strict=True):
        parsed = parse(line)
        assert parsed.timestamp is not None
        assert parsed.timestamp.strftime("%a %b %d %H:%M:%S %Y") == row["Time"]
        assert parsed.level == row["Level"]
        # loghub keeps the 2.2 "[client ip]" block in Content; the grammar moves it to fields.
        client = re.match(r"\[client ([^\]]+)\] ", row["Content"])
        if client:
            assert parsed.fields["client"] == client.group(1)
            assert parsed.message == row["Content"][client.end() :]
        else:
            assert "client" not in parsed.fields
            assert parsed.message == row["Content"]


def _fail2ban_lines(folder: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in sorted(folder.iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if line.strip() and not line.startswith("#"):
                out.append((path.name, line))
    return out


#: fail2ban sample lines no grammar reads, and why.
FAIL2BAN_UNPARSED = {
    # an impossible date (year 0), in a test of fail2ban's own date handling
    (
        "zzz-generic-example",
        "0000-12-30 00:00:00 server test-demo[47831]:  F2B: failure from 192.0.2.1",
    ),
    (
        "zzz-generic-example",
        "0000-12-30 00:00:00 server test-demo[47831]:  F2B: failure from 192.0.2.2",
    ),
    # continuation lines of a multi-line message
    ("zzz-generic-example", "             absentCircleWithNoReason = 0;"),
    ("zzz-generic-example", '             applicationDate = "0000-12-30 00:00:00 +0000";'),
    ("zzz-generic-example", "}"),
}


def test_fail2ban_lines_parse_or_raise_grammar_error(corpus: Path) -> None:
    folder = corpus / "fail2ban" / "logs"
    lines = _fail2ban_lines(folder)
    assert len(lines) > 800
    unparsed: set[tuple[str, str]] = set()
    for name, line in lines:
        try:
            parse_any(line)
        except GrammarError:
            unparsed.add((name, line))
    assert unparsed == FAIL2BAN_UNPARSED


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("apache-auth", "apache-error"),
        ("apache-noscript", "apache-error"),
        ("apache-overflows", "apache-error"),
        ("apache-badbots", "access-log"),
        ("dovecot", "syslog"),
        ("postfix", "syslog"),
        ("sendmail-auth", "syslog"),
        ("sendmail-reject", "syslog"),
        ("sshd", "syslog"),
        ("sshd-journal", "syslog-notime"),
    ],
)
def test_fail2ban_files_sniff(corpus: Path, name: str, expected: str) -> None:
    path = corpus / "fail2ban" / "logs" / name
    assert sniff_format(path.read_text(encoding="utf-8").splitlines()) == expected


def test_fail2ban_sniffed_format_reads_the_lines_it_claims(corpus: Path) -> None:
    """Within the single-format files, the sniffed format parses nearly every line itself."""
    for name in (
        "apache-noscript",
        "apache-overflows",
        "postfix",
        "sendmail-reject",
        "sshd-journal",
    ):
        lines = [
            line
            for line in (corpus / "fail2ban" / "logs" / name).read_text("utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        fmt = FORMATS[sniff_format(lines) or ""]
        for line in lines:
            fmt.parse(line)


_WAZUH_LINE = re.compile(r"log \d+ (?:pass|fail) = (?P<line>.*)$")


def test_wazuh_lines_all_parse(corpus: Path) -> None:
    folder = corpus / "wazuh" / "tests"
    lines = [
        found["line"]
        for path in sorted(folder.glob("*.ini"))
        for raw in path.read_text(encoding="utf-8").splitlines()
        if (found := _WAZUH_LINE.match(raw))
    ]
    assert len(lines) > 100
    formats: dict[str, int] = {}
    for line in lines:
        name, _ = parse_any(line)
        formats[name] = formats.get(name, 0) + 1
    assert set(formats) == {"syslog", "apache-error", "rfc3339", "iso-syslog"}
