"""Format registry, sniffing and parse_any."""

from __future__ import annotations

import pytest

from pipeline.grammars import FORMATS, GrammarError, get_format, parse_any, sniff_format
from pipeline.grammars.base import LineFormat

SYSLOG = "Nov 30 08:22:25 vm sm-mta[17783]: 6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt"
RFC3339 = "2026-11-30T08:18:02.338779+00:00 vm sm-mta[17783]: 6AU8MP47017782: queued"
JOURNAL = '{"__REALTIME_TIMESTAMP":"1796031349371844","MESSAGE":"hi","_HOSTNAME":"vm"}'
APACHE = (
    "[Sat Jan 23 13:22:28.123456 2021] [core:error] [pid 1:tid 2] [client 1.2.3.4:5] AH00124: x"
)
STARTUP = "AH00558: apache2: Could not reliably determine the server's fully qualified domain name"


def test_the_registry() -> None:
    assert set(FORMATS) == {
        "journal-json",
        "rfc5424",
        "rfc3339",
        "apache-error",
        "syslog",
        "access-log",
        "iso-syslog",
        "tai64n",
        "syslog-notime",
        "timestamped",
    }
    for name, fmt in FORMATS.items():
        assert isinstance(fmt, LineFormat)
        assert fmt.name == name
        assert fmt.description


def test_get_format() -> None:
    assert get_format("syslog") is FORMATS["syslog"]
    with pytest.raises(ValueError, match="known formats: access-log, apache-error"):
        get_format("nope")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([SYSLOG] * 3, "syslog"),
        ([RFC3339] * 3, "rfc3339"),
        ([JOURNAL] * 3, "journal-json"),
        ([APACHE] * 3, "apache-error"),
        ([STARTUP, STARTUP, APACHE], "apache-error"),
        ([STARTUP], "apache-error"),
        (["[error] [client 1.2.3.4] Directory index forbidden by rule: /home/"], "apache-error"),
        (["<13>1 2026-11-30T08:18:02Z h app - - - hi"], "rfc5424"),
        (["srv sshd[1]: Failed password"] * 2, "syslog-notime"),
        (["@400000004c91b044077a9e94 imap-login: Info: x"], "tai64n"),
        (["2020-03-23 06:47:42.801612-0700  localhost sshd[3186]: error"], "iso-syslog"),
        (["2013-01-04 17:03:46 login authenticator failed"], "timestamped"),
        (['1.2.3.4 - - [05/Mar/2007:14:39:21 +0100] "GET / HTTP/1.0" 200 1'], "access-log"),
    ],
)
def test_sniff(lines: list[str], expected: str) -> None:
    assert sniff_format(lines) == expected


def test_sniff_skips_comments_and_blank_lines_and_line_ends() -> None:
    assert sniff_format(["# a comment", "", "   ", SYSLOG + "\r\n", SYSLOG + "\n"]) == "syslog"


def test_sniff_needs_half_of_the_lines() -> None:
    assert sniff_format([SYSLOG, "x", "y"]) is None
    assert sniff_format([SYSLOG, SYSLOG, "y", "z"]) == "syslog"
    assert sniff_format([]) is None
    assert sniff_format(["# only a comment"]) is None


def test_sniff_prefers_the_format_that_fits_more_lines() -> None:
    assert sniff_format([RFC3339, RFC3339, SYSLOG]) == "rfc3339"
    assert sniff_format([SYSLOG, SYSLOG, RFC3339]) == "syslog"


# what mod_cgid writes into Apache's error log for a CGI script that logs to stderr itself
CGI_STDERR = "2026-11-30 08:24:17 slow.cgi started for 127.0.0.1"
APACHE_2_4 = [
    "[Mon Nov 30 08:24:12.102595 2026] [mpm_event:notice] [pid 28367:tid 28367] AH00489: Apache/2.4.71 (Debian) configured -- resuming normal operations",
    "[Mon Nov 30 08:24:12.102701 2026] [core:notice] [pid 28367:tid 28367] AH00094: Command line: '/usr/sbin/apache2 -D FOREGROUND'",
    "[Mon Nov 30 08:24:15.322007 2026] [core:error] [pid 28369:tid 28371] [client 127.0.0.1:54528] AH00124: Request exceeded the limit of 10 internal redirects due to probable configuration error. Use 'LimitInternalRecursion' to increase the limit if necessary. Use 'LogLevel debug' to get a backtrace.",
    "[Mon Nov 30 08:24:19.477926 2026] [mpm_event:error] [pid 28367:tid 28367] AH00484: server reached MaxRequestWorkers setting, consider raising the MaxRequestWorkers setting",
    "[Mon Nov 30 08:24:23.323549 2026] [core:notice] [pid 28367:tid 28367] AH00052: child pid 28369 exit signal Segmentation fault (11)",
]


def test_sniff_prefers_the_specific_format_over_a_loose_one_that_fits_more_lines() -> None:
    """An Apache error log with a CGI script's dated stderr lines in it: ``timestamped`` fits
    every line, ``apache-error`` all but the script's; the log is Apache's."""
    lines = [STARTUP, *APACHE_2_4[:3], CGI_STDERR, CGI_STDERR, CGI_STDERR, *APACHE_2_4[3:]]
    assert sum(map(FORMATS["timestamped"].sniff, lines)) > sum(
        map(FORMATS["apache-error"].sniff, lines)
    )
    assert sniff_format(lines) == "apache-error"
    # the same holds between the looser relatives: syslog-shaped ISO lines among plain ones
    iso = (
        "2020-03-23 06:47:42.801612-0700  localhost sshd[3186]: error: PAM: Authentication failure"
    )
    plain = "2013-01-04 17:03:46 login authenticator failed"
    assert sniff_format([iso] * 6 + [plain] * 4) == "iso-syslog"


def test_sniff_a_specific_format_needs_half_of_the_lines() -> None:
    """Below half, the specific format is noise in a file of another (looser) format."""
    lines = [APACHE_2_4[0]] * 4 + [CGI_STDERR] * 5
    assert sniff_format(lines) == "timestamped"
    assert sniff_format([APACHE_2_4[0]] * 5 + [CGI_STDERR] * 5) == "apache-error"


def test_sniff_reads_at_most_50_lines() -> None:
    assert sniff_format([SYSLOG] * 50 + [JOURNAL] * 100) == "syslog"


@pytest.mark.parametrize(
    ("line", "name"),
    [
        (SYSLOG, "syslog"),
        (RFC3339, "rfc3339"),
        (JOURNAL, "journal-json"),
        (APACHE, "apache-error"),
        (STARTUP, "apache-error"),
        ("dovecot: master: Error: service(log): child 1210 killed with signal 9", "syslog-notime"),
        (
            "Jul 26 15:28:15 systemd[1]: Failed to start Remount Root and Kernel File Systems.",
            "syslog",
        ),
        ("2013-01-04 17:03:46 login authenticator failed", "timestamped"),
    ],
)
def test_parse_any(line: str, name: str) -> None:
    found, parsed = parse_any(line)
    assert found == name
    assert parsed.message


def test_every_sniffed_example_parses_with_its_format() -> None:
    """A lone line sniffed as format F must parse with F (rule examples rely on it)."""
    for line in (SYSLOG, RFC3339, JOURNAL, APACHE, STARTUP, "srv sshd[1]: x"):
        name = sniff_format([line])
        assert name is not None
        FORMATS[name].parse(line)


def test_parse_any_error() -> None:
    with pytest.raises(GrammarError, match="no known line format"):
        parse_any("}")
    with pytest.raises(GrammarError) as info:
        parse_any("Feb 30 08:22:25 vm x: y")
    assert "date" in str(info.value)
