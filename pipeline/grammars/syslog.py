"""Syslog envelopes: BSD / RFC 3164, rsyslog RFC 3339, RFC 5424 and the looser relatives.

Only the envelope is read here (time, host, program, pid, level); the text after the tag is
the message, handed as-is to the per-program body grammars in :mod:`pipeline.grammars.bodies`.

BNF (``SP`` is one or more spaces; alternatives are tried left to right)::

    syslog       ::= [PRI] bsd_stamp [SP fac_level] SP rest
    rfc3339      ::= [PRI] rfc3339_stamp SP rest
    iso-syslog   ::= iso_stamp SP header SP message          ; a tag is required
    tai64n       ::= "@" 24HEXDIG SP [bare_header SP] message
    syslog-notime::= header SP message                       ; a tag is required
    rfc5424      ::= [PRI] VERSION SP (rfc3339_stamp | "-") SP HOSTNAME SP APP-NAME SP PROCID
                     SP MSGID SP (1*sd_element | "-") [SP message]

    rest         ::= [host SP] [tag SP] message              ; loose_header, then message
    header       ::= [host SP] tag
    bare_header  ::= tag
    tag          ::= program ["[" pid "]"] [" (" context ")"] ":"   ; ":" before a space or EOL
    program      ::= word *2(" " word2)     ; "syslogd 1.4.1", "Google Chrome", "-- root"
    host         ::= a word without brackets that does not end in ":"
    fac_level    ::= "<" facility "." severity ">"           ; e.g. <mail.notice>
    sd_element   ::= "[" SD-ID *(" " PARAM-NAME "=" DQUOTE value DQUOTE) "]"

Which reading wins when a line is ambiguous:

* ``Jul 26 15:28:15 systemd[1]: ...`` has no host: a host never contains brackets.
* ``Jul 13 11:21:46 dovecot: master: Error: ...`` has no host: a host never ends in ``:``.
* ``Jun 14 15:16:01 combo -- MARK --`` has a host and no tag (program None).
* ``Jul 15 10:15:31 Google Chrome[1]: x`` reads as host ``Google``: without a host column the
  envelope cannot tell a host from the first word of a program name.

The BSD timestamp has no year: it comes back with the placeholder year 2000 and
``year_missing=True``; the engine infers the year. RFC 3339 / 5424 and tai64n times are aware;
an ISO time without a zone is naive.

Level and fields: ``<PRI>`` gives ``level`` (its severity, named as in ``pipeline.model.LEVELS``)
and ``fields['facility']``; so does ``<facility.level>``. The macOS sender context
(``sandboxd[129] ([31211]):``) goes to ``fields['context']``. RFC 5424 adds ``msgid``,
``procid`` (when it is not a number; a number is the pid) and its structured data as
``<SD-ID>.<PARAM-NAME>`` (an SD-ID alone, with value "", marks an element without params).
The message is stripped of surrounding whitespace (and of a leading BOM in RFC 5424).

Repeated messages: rsyslog's reduction (``$RepeatedMsgReduction on``) writes N identical
messages as ``message repeated N times: [ text]``; every format here then gives ``text`` as
the message and N as ``repeat`` (:func:`pipeline.grammars.common.unrepeat`).

The formats (name, sniff test, priority, field names) are declared in
:mod:`pipeline.grammars.registry`; this module, with pyparsing, is imported on the first line
one of its grammars parses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyparsing as pp

from pipeline.grammars.base import Parsed
from pipeline.grammars.common import (
    BSD_RE,
    FACILITIES,
    PRI_RE,
    RFC3339_RE,
    Stamp,
    StampConverter,
    ascii_int,
    bsd_from,
    clean,
    fail,
    iso_from,
    iso_stamp,
    level_name,
    match_of,
    message,
    named,
    pri_from,
    rfc3339_stamp,
    run,
    unrepeat,
)
from pipeline.model import LEVELS

# --- the tag -------------------------------------------------------------------------------------

_HOST = r"[^\s\[\]]*[^\s\[\]:]"
_WORD = r"[^\s\[\]:=\"'<>,]+"
_PROGRAM = rf"{_WORD}(?: [\w.+\-]+){{0,2}}"
_TAG_TAIL = r"(?:\[(?P<pid>\d{1,10})\])?(?: \((?P<context>[^()\s]*)\))?:(?=\s|$)"


@dataclass(frozen=True, slots=True)
class Header:
    """The parts of a syslog header before the message."""

    host: str | None
    program: str | None
    pid: int | None
    context: str | None


def _header_action(toks: pp.ParseResults) -> Header:
    groups = match_of(toks).groupdict()
    return Header(
        host=groups.get("host"),
        program=groups["program"],
        pid=ascii_int(groups["pid"]),
        context=groups["context"],
    )


#: ``[host SP] program[pid]:`` -- one regex, so that the host/no-host choice costs nothing.
header = (
    pp.Regex(rf"(?:(?P<host>{_HOST}) +)?(?P<program>{_PROGRAM}){_TAG_TAIL}", as_match=True)
    .set_name("[host] program[pid]:")
    .set_parse_action(_header_action)
)

#: ``program[pid]:`` with no host in front (daemontools / multilog style).
bare_header = (
    pp.Regex(rf"(?P<program>{_WORD}){_TAG_TAIL}", as_match=True)
    .set_name("program[pid]:")
    .set_parse_action(_header_action)
)

#: ``[host SP] [program[pid]:]``: both parts optional, so it always matches (possibly
#: nothing). A first word that cannot be a host (brackets, a final ``:``) is read as the tag;
#: a host followed by text that is not a tag leaves program None.
loose_header = (
    pp.Regex(
        rf"(?:(?P<host>{_HOST})(?: +|$))?(?:(?P<program>{_PROGRAM}){_TAG_TAIL})?", as_match=True
    )
    .set_name("[host] [program[pid]:]")
    .set_parse_action(_header_action)
)


@dataclass(frozen=True, slots=True)
class Lead:
    """What comes before the host: the time, and the ``<PRI>`` / ``<facility.level>`` if any."""

    stamp: Stamp
    pri: int | None = None
    label: str | None = None


def _lead_element(pattern: str, name: str, convert: StampConverter) -> pp.ParserElement:
    def action(instring: str, loc: int, toks: pp.ParseResults) -> Lead:
        found = match_of(toks)
        groups = found.groupdict()
        return Lead(
            convert(instring, loc, found), pri_from(instring, loc, found), groups.get("label")
        )

    return pp.Regex(pattern, as_match=True).set_name(name).set_parse_action(action)


#: ``[<PRI>] Nov 30 08:22:25 [<mail.notice>]``: one element, as each costs ~4 µs a line.
bsd_lead = _lead_element(
    rf"{PRI_RE}{BSD_RE}(?: +<(?P<label>[a-z0-9]+\.[a-z]+)>)?", "[<PRI>] BSD timestamp", bsd_from
)

#: ``[<PRI>] 2026-11-30T08:18:02.338779+00:00``
rfc3339_lead = _lead_element(f"{PRI_RE}{RFC3339_RE}", "[<PRI>] RFC 3339 timestamp", iso_from)

#: what follows the time in BSD and RFC 3339 lines. ``message`` takes the rest of the line
#: whatever it holds, so these grammars always consume the whole line without a StringEnd.
rest = loose_header("header") + message("message")


# --- building a Parsed ---------------------------------------------------------------------------


def _envelope(code: int | None, label: str | None) -> tuple[str | None, dict[str, str]]:
    """Level and facility from ``<PRI>`` and/or ``<facility.level>``."""
    fields: dict[str, str] = {}
    level: str | None = None
    if code is not None:
        level = LEVELS[code & 7]
        fields["facility"] = FACILITIES[code >> 3]
    if label is not None:
        facility, _, severity = label.partition(".")
        fields["facility"] = facility
        level = level_name(severity) or level
    return level, fields


def _to_parsed(res: pp.ParseResults) -> Parsed:
    lead = named(res, "lead")
    stamp = named(res, "timestamp")
    level: str | None = None
    fields: dict[str, str] = {}
    if isinstance(lead, Lead):
        stamp = lead.stamp
        level, fields = _envelope(lead.pri, lead.label)
    head = named(res, "header")
    host_name = program = None
    pid: int | None = None
    if isinstance(head, Header):
        host_name, program, pid = head.host, head.program, head.pid
        if head.context is not None:
            fields["context"] = head.context
    text, repeat = unrepeat(clean(str(named(res, "message") or "")))
    return Parsed(
        timestamp=stamp.when if isinstance(stamp, Stamp) else None,
        message=text,
        host=host_name,
        program=program,
        pid=pid,
        level=level,
        year_missing=stamp.year_missing if isinstance(stamp, Stamp) else False,
        fields=fields,
        repeat=repeat,
    )


def _parser(name: str, grammar: pp.ParserElement) -> Callable[[str], Parsed]:
    """The parse function of format ``name``: :func:`_to_parsed` of ``grammar``'s result."""
    grammar = grammar.parse_with_tabs().set_name(name)

    def parse(line: str) -> Parsed:
        return _to_parsed(run(grammar, line, name))

    return parse


# --- syslog (RFC 3164 / rsyslog traditional) -----------------------------------------------------

SYSLOG_GRAMMAR = bsd_lead("lead") + rest

parse_syslog = _parser("syslog", SYSLOG_GRAMMAR)

# --- rsyslog RFC 3339 (Debian's default file format) ---------------------------------------------

RFC3339_GRAMMAR = rfc3339_lead("lead") + rest

parse_rfc3339 = _parser("rfc3339", RFC3339_GRAMMAR)

# --- ISO date, then a syslog tag -----------------------------------------------------------------

ISO_SYSLOG_GRAMMAR = iso_stamp("timestamp") + header("header") + message("message")

parse_iso_syslog = _parser("iso-syslog", ISO_SYSLOG_GRAMMAR)

# --- daemontools / multilog tai64n ---------------------------------------------------------------

_TAI_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _tai64n_action(instring: str, loc: int, toks: pp.ParseResults) -> Stamp:
    label = str(toks[0])[1:]
    seconds = int(label[:16], 16) - (1 << 62) - 10
    nanos = int(label[16:], 16)
    try:
        when = _TAI_EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise fail(instring, loc, "tai64n label out of range") from None
    return Stamp(when)


tai64n_stamp = (
    pp.Regex(r"@[0-9a-fA-F]{24}(?!\w)").set_name("tai64n label").set_parse_action(_tai64n_action)
)

TAI64N_GRAMMAR = tai64n_stamp("timestamp") + pp.Opt(bare_header("header")) + message("message")

parse_tai64n = _parser("tai64n", TAI64N_GRAMMAR)

# --- journal short output without a time ---------------------------------------------------------

NOTIME_GRAMMAR = header("header") + message("message")

parse_notime = _parser("syslog-notime", NOTIME_GRAMMAR)

# --- RFC 5424 ------------------------------------------------------------------------------------


_SD_ELEMENT_RE = r"\[[^\s=\]\"]+(?: +[^\s=\]\"]+=\"(?:[^\"\\]|\\.)*\")* *\]"
_SD_ELEMENT = re.compile(
    r"\[(?P<id>[^\s=\]\"]+)(?P<params>(?: +[^\s=\]\"]+=\"(?:[^\"\\]|\\.)*\")*) *\]"
)
_SD_PARAM = re.compile(r"(?P<name>[^\s=\]\"]+)=\"(?P<value>(?:[^\"\\]|\\.)*)\"")
_SD_UNESCAPE = re.compile(r"\\([\"\\\]])")


def _sd_action(toks: pp.ParseResults) -> dict[str, str]:
    """``[id a="1"][b]`` -> ``{"id": "", "id.a": "1", "b": ""}``: an id alone marks presence."""
    data: dict[str, str] = {}
    for element in _SD_ELEMENT.finditer(match_of(toks).group(0)):
        sd_id = element["id"]
        data.setdefault(sd_id, "")
        for param in _SD_PARAM.finditer(element["params"]):
            data[f"{sd_id}.{param['name']}"] = _SD_UNESCAPE.sub(r"\1", param["value"])
    return data


#: ``-`` (RFC 5424 NILVALUE): matches and leaves no token, so the result name stays unset.
nil = pp.Regex(r"-(?=\s|$)").set_name("NILVALUE").suppress()

structured_data = nil | pp.Regex(rf"(?:{_SD_ELEMENT_RE})+", as_match=True).set_name(
    "STRUCTURED-DATA"
).set_parse_action(_sd_action)("sd")


def _header_field(name: str) -> pp.ParserElement:
    """An RFC 5424 header field: NILVALUE or 1-255 printable ASCII characters."""
    return nil | pp.Regex(r"[!-~]{1,255}").set_name(name)(name)


def _pri_version_action(instring: str, loc: int, toks: pp.ParseResults) -> int | list[int]:
    code = pri_from(instring, loc, match_of(toks))
    return [] if code is None else code


#: ``[<PRI>]VERSION``; the token is the PRI (none when absent).
pri_version = (
    pp.Regex(rf"{PRI_RE}[1-9]\d{{0,2}}(?= )", as_match=True)
    .set_name("[<PRI>]VERSION")
    .set_parse_action(_pri_version_action)
)

RFC5424_GRAMMAR = (
    pri_version("lead")
    + (rfc3339_stamp("timestamp") | nil)
    + _header_field("hostname")
    + _header_field("app")
    + _header_field("procid")
    + _header_field("msgid")
    + structured_data
    + message("message")
)


def _parse_5424(res: pp.ParseResults) -> Parsed:
    stamp = named(res, "timestamp")
    code = named(res, "lead")
    level, fields = _envelope(code if isinstance(code, int) else None, None)
    procid = named(res, "procid")
    pid: int | None = None
    if isinstance(procid, str):
        pid = ascii_int(procid)
        if pid is None:
            fields["procid"] = procid
    msgid = named(res, "msgid")
    if isinstance(msgid, str):
        fields["msgid"] = msgid
    data = named(res, "sd")
    if isinstance(data, dict):
        fields.update(data)
    hostname = named(res, "hostname")
    app = named(res, "app")
    text, repeat = unrepeat(clean(str(named(res, "message") or "").removeprefix("\ufeff")))
    return Parsed(
        timestamp=stamp.when if isinstance(stamp, Stamp) else None,
        message=text,
        host=hostname if isinstance(hostname, str) else None,
        program=app if isinstance(app, str) else None,
        pid=pid,
        level=level,
        fields=fields,
        repeat=repeat,
    )


_RFC5424 = RFC5424_GRAMMAR.parse_with_tabs().set_name("rfc5424")


def parse_rfc5424(line: str) -> Parsed:
    """Parse one RFC 5424 line (``<PRI>`` optional, as files written by rsyslog have it)."""
    return _parse_5424(run(_RFC5424, line, "rfc5424"))
