"""rsyslog's repeated-message reduction: ``message repeated N times: [ text]`` is N events.

With ``$RepeatedMsgReduction on``, rsyslog writes N identical messages of one sender as one
line whose message is ``message repeated N times: [`` + the original message (with its
leading space) + ``]``. Every syslog envelope gives the inner text as the message and N as
``repeat``; the fast paths leave such lines to the grammar. (``tests/test_rsyslog_repeated.py``
has the lines a real rsyslogd writes.)
"""

from __future__ import annotations

import pytest

from pipeline.grammars import FORMATS, parse_any
from pipeline.grammars.common import unrepeat
from pipeline.grammars.fastpath import FAST_PATHS
from tests.conftest import shared_path

INNER = "Failed password for root from 5.36.59.76 port 42393 ssh2"
WRAPPED = f"message repeated 5 times: [ {INNER}]"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (WRAPPED, (INNER, 5)),
        (f"message repeated 2 times: [{INNER}]", (INNER, 2)),
        ("message repeated 1234567890 times: [ x]", ("x", 1234567890)),
        # brackets inside the text: the last ']' closes
        ("message repeated 3 times: [ [x] y [z]]", ("[x] y [z]", 3)),
        ("message repeated 3 times: [ ]", ("", 3)),
        # not rsyslog's shape: the message stays as it is, one event
        (INNER, (INNER, 1)),
        ("message repeated 5 times", ("message repeated 5 times", 1)),
        ("message repeated 5 times: [ x", ("message repeated 5 times: [ x", 1)),
        ("message repeated 0 times: [ x]", ("message repeated 0 times: [ x]", 1)),
        ("message repeated five times: [ x]", ("message repeated five times: [ x]", 1)),
        ("message repeated 5 times: [ x] and more", ("message repeated 5 times: [ x] and more", 1)),
        ("last message repeated 5 times", ("last message repeated 5 times", 1)),
        (f"sshd says message repeated 5 times: [ {INNER}]", None),
    ],
)
def test_unrepeat(message: str, expected: tuple[str, int] | None) -> None:
    assert unrepeat(message) == (expected or (message, 1))


LINES = {
    "syslog": f"Dec 10 07:13:56 LabSZ sshd[24227]: {WRAPPED}",
    "rfc3339": f"2026-12-04T18:33:25.533157+00:00 vm sshd[24227]: {WRAPPED}",
    "rfc5424": f"<38>1 2026-12-04T18:33:25.533157+00:00 vm sshd 24227 - - {WRAPPED}",
    "iso-syslog": f"2026-12-04 18:33:25 vm sshd[24227]: {WRAPPED}",
    "syslog-notime": f"vm sshd[24227]: {WRAPPED}",
    "tai64n": f"@4000000050e5c1a31c8c5a84 sshd[24227]: {WRAPPED}",
}


@pytest.mark.parametrize("name", sorted(LINES))
def test_every_syslog_envelope_unwraps_a_repeated_message(name: str) -> None:
    parsed = FORMATS[name].parse(LINES[name])
    assert (parsed.message, parsed.repeat, parsed.program) == (INNER, 5, "sshd")
    assert parsed.pid == 24227


@pytest.mark.parametrize("name", sorted(LINES))
def test_an_ordinary_message_is_one_event(name: str) -> None:
    parsed = FORMATS[name].parse(LINES[name].replace(WRAPPED, INNER))
    assert (parsed.message, parsed.repeat) == (INNER, 1)


def test_the_traditional_form_without_a_host_and_with_extra_spaces() -> None:
    parsed = FORMATS["syslog"].parse(f"Dec 10 07:13:56 sshd[1]:   {WRAPPED}  ")
    assert (parsed.host, parsed.message, parsed.repeat) == (None, INNER, 5)


def test_parse_any_unwraps_too() -> None:
    name, parsed = parse_any(LINES["rfc3339"])
    assert (name, parsed.message, parsed.repeat) == ("rfc3339", INNER, 5)


@pytest.mark.parametrize("name", sorted(FAST_PATHS))
def test_fast_paths_leave_repeated_lines_to_the_grammar(name: str) -> None:
    line = LINES[name]
    assert FAST_PATHS[name](line) is None
    assert FAST_PATHS[name](line.replace(WRAPPED, INNER)) is not None
    # leading spaces before the wrapper are stripped by the grammar: declined too
    assert FAST_PATHS[name](line.replace(WRAPPED, "  " + WRAPPED)) is None


def test_the_journal_keeps_the_text_as_it_is() -> None:
    """journald does no such reduction: a journal message that reads like one is text."""
    parsed = FORMATS["journal-json"].parse(
        '{"__REALTIME_TIMESTAMP":"1764490682338779","MESSAGE":"' + WRAPPED + '"}'
    )
    assert (parsed.message, parsed.repeat) == (WRAPPED, 1)


@pytest.mark.corpus
def test_loghub_openssh_repeated_lines() -> None:
    """The two such lines of the loghub OpenSSH sample (written by a real rsyslog)."""
    path = shared_path("corpus", "loghub", "OpenSSH", "OpenSSH_2k.log")
    lines = path.read_text(encoding="utf-8").splitlines()
    got = [
        (n, p.message, p.repeat)
        for n, line in enumerate(lines, 1)
        if (p := FORMATS["syslog"].parse(line.rstrip("\r"))).repeat != 1
    ]
    assert got == [
        (30, INNER, 5),
        (285, "Failed password for root from 106.5.5.195 port 50719 ssh2", 5),
    ]
