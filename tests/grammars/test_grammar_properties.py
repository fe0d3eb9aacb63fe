"""Properties: no input makes a grammar raise anything but GrammarError.

Arbitrary text (NUL, control characters, odd Unicode), and text that starts like a real line
so that the deeper parts of each grammar are reached too.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.grammars import (
    FORMATS,
    GrammarError,
    LineFormat,
    Parsed,
    parse_any,
    parse_body,
    sniff_format,
)
from pipeline.grammars.bodies import BODY_GRAMMARS, body_grammar

PREFIXES = [
    "",
    "Nov 30 08:22:25 ",
    "Jun  9 06:06:20 combo ",
    "<13>Nov 30 08:22:25 vm ",
    "Nov 30 08:22:25 vm sm-mta[17783]: ",
    "Jul 26 15:28:15 systemd[1]: ",
    "2026-11-30T08:18:02.338779+00:00 host prog[1]: ",
    "2020-03-23 06:47:42.801612-0700 localhost ",
    "<38>1 2019-07-08T17:40:16.954167-04:00 h app 1 - ",
    '<38>1 - h app 1 ID [a b="',
    "@400000004c91b044077a9e94 ",
    "[Sat Jan 23 13:22:28.123456 2021] [core:error] [pid 1:tid 2] ",
    "[error] [client ",
    "AH00558: ",
    "srv sshd[123]: ",
    '{"MESSAGE": ',
    '{"MESSAGE": [104, 105], "_PID": ',
    '1.2.3.4 - - [05/Mar/2007:14:39:21 +0100] "',
    "[2012-02-13 17:21:54] ",
    "130324  0:04:00 ",
]

JOURNAL_KEYS = [
    "MESSAGE",
    "PRIORITY",
    "_PID",
    "SYSLOG_PID",
    "_HOSTNAME",
    "SYSLOG_IDENTIFIER",
    "_COMM",
    "__REALTIME_TIMESTAMP",
    "_SOURCE_REALTIME_TIMESTAMP",
]

PROGRAMS = [None, "", "sendmail", "sm-mta", "dovecot", "systemd", "kernel", "httpd", "apache2/x"]

BODY_PREFIXES = [
    "",
    "06FAFTbL012697: ",
    "06FAFTbL012697: 06FAFVbL012698: DSN: ",
    "from=<a@b>, relay=",
    "master: Error: service(",
    "master: Warning: service(pop3-login): ",
    "Failed to start ",
    "x.service: ",
    "Unit x.service ",
    "[ 1234.5] EXT4-fs (",
    "nfs: server ",
    "[authz_core:error] [pid ",
]

odd_text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=["Cs"])
    | st.sampled_from("\x00\t\r\n [](){}<>:=\",'\\"),
    max_size=120,
)
lines = st.builds(lambda prefix, tail: prefix + tail, st.sampled_from(PREFIXES), odd_text)
bodies = st.builds(lambda prefix, tail: prefix + tail, st.sampled_from(BODY_PREFIXES), odd_text)


BUILTIN_BODIES = [
    BODY_GRAMMARS[name] for name in ("sendmail", "dovecot", "systemd", "kernel", "apache")
]


def _check(parsed: Parsed, fmt: LineFormat | None = None) -> None:
    assert isinstance(parsed.message, str)
    assert parsed.timestamp is None or isinstance(parsed.timestamp, datetime)
    assert parsed.host is None or isinstance(parsed.host, str)
    assert parsed.program is None or isinstance(parsed.program, str)
    assert parsed.pid is None or isinstance(parsed.pid, int)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.fields.items())
    if parsed.year_missing:
        assert parsed.timestamp is not None and parsed.timestamp.year == 2000
    if fmt is not None:
        undeclared = {k for k in parsed.fields if not fmt.fields.possible(k)}
        assert not undeclared, f"{fmt.name} produced undeclared fields {undeclared}"


@settings(max_examples=300, deadline=None)
@given(line=lines)
def test_every_format_parses_or_raises_grammar_error(line: str) -> None:
    for fmt in FORMATS.values():
        try:
            parsed = fmt.parse(line)
        except GrammarError as exc:
            assert 0 <= exc.col <= len(line)
        else:
            _check(parsed, fmt)


@settings(max_examples=300, deadline=None)
@given(line=odd_text)
def test_arbitrary_text(line: str) -> None:
    for fmt in FORMATS.values():
        with contextlib.suppress(GrammarError):
            _check(fmt.parse(line), fmt)
    with contextlib.suppress(GrammarError):
        _check(parse_any(line)[1])


@settings(max_examples=300, deadline=None)
@given(message=bodies | odd_text)
def test_body_parsers_themselves_never_raise(message: str) -> None:
    # the parsers, not parse_body: an exception here fails the test instead of being counted
    for grammar in BUILTIN_BODIES:
        fields = grammar.parse(message)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
        undeclared = {k for k in fields if not grammar.fields.possible(k)}
        assert not undeclared, f"{grammar.name} produced undeclared fields {undeclared}"


@settings(max_examples=300, deadline=None)
@given(program=st.sampled_from(PROGRAMS) | st.text(max_size=12), message=bodies | odd_text)
def test_parse_body_dispatches_to_the_parser_of_the_program(
    program: str | None, message: str
) -> None:
    grammar = body_grammar(program)
    expected = grammar.parse(message) if grammar is not None and message else {}
    assert parse_body(program, message) == expected


@settings(max_examples=200, deadline=None)
@given(sample=st.lists(lines | odd_text, max_size=60))
def test_sniff_format_never_raises(sample: list[str]) -> None:
    name = sniff_format(sample)
    assert name is None or name in FORMATS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(entry=st.dictionaries(st.sampled_from(JOURNAL_KEYS) | st.text(max_size=10), json_values))
def test_journal_json_parses_any_json_object_or_raises_grammar_error(
    entry: dict[str, object],
) -> None:
    line = json.dumps(entry)
    try:
        _check(FORMATS["journal-json"].parse(line), FORMATS["journal-json"])
    except GrammarError as exc:
        assert 0 <= exc.col <= len(line)
