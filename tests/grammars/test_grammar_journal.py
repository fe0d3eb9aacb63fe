"""``journalctl -o json`` lines (format ``journal-json``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.grammars import FORMATS, GrammarError, sniff_format

PARSE = FORMATS["journal-json"].parse


def _line(**entry: object) -> str:
    return json.dumps(entry, separators=(",", ":"))


def test_pid1_entry() -> None:
    parsed = PARSE(
        _line(
            __REALTIME_TIMESTAMP="1796031349371844",
            _HOSTNAME="vm",
            SYSLOG_IDENTIFIER="systemd",
            _COMM="systemd",
            _PID="1",
            PRIORITY="3",
            _SYSTEMD_UNIT="init.scope",
            UNIT="systemd-remount-fs.service",
            MESSAGE_ID="be02cf6855d2428ba40df7e9d022f03d",
            MESSAGE="Failed to start systemd-remount-fs.service - Remount Root and Kernel File"
            " Systems.",
        )
    )
    assert parsed.timestamp == datetime(2026, 11, 30, 9, 35, 49, 371844, tzinfo=UTC)
    assert (parsed.host, parsed.program, parsed.pid, parsed.level) == ("vm", "systemd", 1, "error")
    assert parsed.message.startswith("Failed to start systemd-remount-fs.service")
    assert parsed.fields["_SYSTEMD_UNIT"] == "init.scope"
    assert parsed.fields["UNIT"] == "systemd-remount-fs.service"
    assert parsed.fields["MESSAGE_ID"] == "be02cf6855d2428ba40df7e9d022f03d"
    assert parsed.fields["_PID"] == "1"
    assert "MESSAGE" not in parsed.fields
    assert not parsed.year_missing


def test_program_and_pid_fallbacks() -> None:
    parsed = PARSE(_line(_COMM="dovecot", SYSLOG_PID="77", MESSAGE="x"))
    assert (parsed.program, parsed.pid, parsed.timestamp, parsed.level) == (
        "dovecot",
        77,
        None,
        None,
    )


def test_source_realtime_when_realtime_is_missing() -> None:
    parsed = PARSE(_line(_SOURCE_REALTIME_TIMESTAMP="0", MESSAGE="x"))
    assert parsed.timestamp == datetime(1970, 1, 1, tzinfo=UTC)


def test_byte_array_message_is_decoded_with_replacement() -> None:
    parsed = PARSE(_line(MESSAGE=list(b"bad byte \xff here\n")))
    assert parsed.message == "bad byte \ufffd here"


def test_multi_valued_field_is_joined() -> None:
    parsed = PARSE(_line(UNIT=["a.service", "b.service"], _PID=["12", "13"], MESSAGE="x"))
    assert parsed.fields["UNIT"] == "a.service\nb.service"
    assert parsed.pid == 12


def test_null_values_are_left_out() -> None:
    parsed = PARSE(_line(MESSAGE=None, COREDUMP=None))
    assert parsed.message == ""
    assert "COREDUMP" not in parsed.fields


@pytest.mark.parametrize(
    ("line", "col"),
    [('{"MESSAGE": "x"', 15), ("{\"MESSAGE\": 'x'}", 12), ("[1, 2]", 0), ('{"a":"b"} x', 10)],
)
def test_malformed_json_is_a_grammar_error_with_a_column(line: str, col: int) -> None:
    with pytest.raises(GrammarError) as info:
        PARSE(line)
    assert info.value.col == col


def test_real_journalctl_output(data_dir: Path) -> None:
    lines = (data_dir / "journal_sample.jsonl").read_text(encoding="utf-8").splitlines()
    assert sniff_format(lines) == "journal-json"
    sendmail, dovecot, binary, native = (PARSE(line) for line in lines)
    assert (sendmail.program, sendmail.pid, sendmail.host, sendmail.level) == (
        "sm-mta",
        11140,
        "vm",
        "notice",
    )
    assert sendmail.message == "6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt"
    assert sendmail.timestamp == datetime(2026, 11, 30, 9, 35, 49, 371844, tzinfo=UTC)
    assert sendmail.fields["_TRANSPORT"] == "syslog"
    assert dovecot.program == "dovecot"
    assert dovecot.message.startswith("master: Warning: service(pop3-login): process_limit (2)")
    assert binary.message == "bad byte \ufffd here"
    assert native.message == "tab\tand bell\x07 here"
    assert native.fields["UNIT"] == "cronjob-test.service\nsecond.service"
    assert native.level == "error"


@pytest.mark.parametrize(
    "line",
    [
        '{"a": {"b": "c"}}',
        '{"a": [[["x"]]]}',
        '{"a": ' + "[" * 900 + "]" * 900 + "}",
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_values_journalctl_never_writes_are_rejected(line: str) -> None:
    with pytest.raises(GrammarError):
        PARSE(line)


def test_lone_surrogate_escapes_become_replacement_characters(tmp_path: Path) -> None:
    """JSON can escape half of a surrogate pair; such text must not reach matching or
    output (it cannot be encoded as UTF-8), while a valid pair stays one character."""
    line = (
        '{"__REALTIME_TIMESTAMP":"1795892651270411","_HOSTNAME":"web1",'
        '"SYSLOG_IDENTIFIER":"apache2","_COMM":"apache2","X_NOTE":"a\\udc80b \\ud83d\\ude00",'
        '"MESSAGE":"[core:notice] [pid 1] AH00052: child pid 4409 exit signal '
        'Segmentation fault (11) \\ud800"}'
    )
    got = PARSE(line)
    assert got.message.endswith("(11) \ufffd\ufffd\ufffd")
    assert got.fields["X_NOTE"] == "a\ufffd\ufffd\ufffdb \U0001f600"
    path = tmp_path / "j.json"
    path.write_text(line + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["scan", str(path), "--format", "jsonl", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rule"] == "apache.child-crashed"
