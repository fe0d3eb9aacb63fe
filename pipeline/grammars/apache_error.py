"""Apache httpd error log (2.2 and 2.4 default ``ErrorLogFormat``), format ``apache-error``.

BNF (``SP`` is one or more spaces)::

    line       ::= prefixed | startup
    prefixed   ::= [date SP] level_part [SP pid_part] [SP os_error] *(SP peer) [SP] message
    date       ::= "[" WEEKDAY SP MONTH SP DAY SP HH:MM:SS["." 1*6DIGIT] SP YEAR "]"
    level_part ::= "[" [module] ":" level "]" | "[" level "]"      ; 2.4 | 2.2
    level      ::= "emerg" | "alert" | "crit" | "error" | "warn" | "notice" | "info"
                 | "debug" | "trace1" .. "trace8"
    pid_part   ::= "[pid " PID [":tid " TID] "]"
    os_error   ::= "(" ERRNO ")" text ":"                 ; only when a peer block follows
    peer       ::= "[" ("client" | "remote") SP address "]"
    address    ::= IPV4 [":" PORT] | "[" IPV6 "]" [":" PORT] | IPV6   ; 2.2 has no port
    startup    ::= AH-CODE ":" SP message | ("httpd" | "apache2" | "apache") ":" SP message

The date is local time of an unknown zone, so it comes back naive (with its year); lines
without one (``[error] [client 1.2.3.4] ...``, start-up lines) have timestamp None.
Apache's ``warn`` becomes level ``warning`` and ``traceN`` becomes ``debug`` (the original word
is then kept in ``fields['apache_level']``). The message keeps its ``AHnnnnn:`` code, which is also
in ``fields['ah_code']``; the client and remote blocks move to fields (``client``,
``client_port``, ``remote``, ``remote_port``). Start-up lines keep the whole line as message.

:func:`parse_apache_body` reads the same prefix from a message that reached syslog
(``httpd[22034]: [authz_core:error] [pid 22034] [client ...] AH01630: ...``).

The format (sniff test, field names) is declared in :mod:`pipeline.grammars.registry` and the
body grammar in :mod:`pipeline.grammars.bodies`; this module, with pyparsing, is imported on
the first line one of them parses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyparsing as pp

from pipeline.grammars.base import Parsed
from pipeline.grammars.common import (
    APACHE_LEVEL_RE,
    CTIME_RE,
    Stamp,
    ascii_int,
    ctime_from,
    fields_action,
    level_name,
    match_of,
    message,
    named,
    run,
)

_LEVELS = APACHE_LEVEL_RE


@dataclass(frozen=True, slots=True)
class Prefix:
    """The bracketed blocks before the message, up to the peer blocks."""

    stamp: Stamp | None
    level: str | None
    pid: int | None
    fields: dict[str, str]


def _prefix_action(instring: str, loc: int, toks: pp.ParseResults) -> Prefix:
    found = match_of(toks)
    fields: dict[str, str] = {"apache_level": found["level"]}
    for key in ("module", "tid", "errno"):
        if found[key]:
            fields[key] = found[key]
    if found["errno"] is not None:
        fields["os_error"] = found["os_error"].strip()
    return Prefix(
        stamp=ctime_from(instring, loc, found) if found["clock"] else None,
        level=level_name(found["level"]),
        pid=ascii_int(found["pid"]),
        fields=fields,
    )


#: ``[date] [module:level] [pid N:tid N] (errno)text:`` as one element: the blocks are
#: fixed in order, and one Regex costs a fifth of the same blocks as separate elements.
prefix = (
    pp.Regex(
        rf"(?:\[{CTIME_RE}\] +)?"
        rf"\[(?:(?P<module>[\w.\-]*):)?(?P<level>{_LEVELS})\]"
        r"(?: +\[pid (?P<pid>\d{1,10})(?::tid (?P<tid>\d{1,20}))?\])?"
        r"(?: +\((?P<errno>-?\d{1,6})\)(?P<os_error>[^\[\]]*?):(?= \[(?:client|remote) ))?",
        as_match=True,
    )
    .set_name("[date] [module:level] [pid N:tid N]")
    .set_parse_action(_prefix_action)
)

#: ``[client 1.2.3.4:5678]`` / ``[remote [2001:db8::1]:5678]`` / ``[client 2001:db8::1]``.
peer = (
    pp.Regex(
        r"\[(?P<kind>client|remote) (?P<address>\[[0-9A-Fa-f:.]+\](?::\d+)?|[^\s\]]+)\]",
        as_match=True,
    )
    .set_name("[client address]")
    .set_parse_action(fields_action())
)

#: a start-up line written before the error log format applies.
startup = pp.Regex(r"(?:AH\d{4,5}|httpd|apache2?): (?s:.*)").set_name("start-up line")

#: ``message`` takes the rest of the line, so the grammar always consumes the whole line.
PREFIXED = (
    (prefix("prefix") + pp.ZeroOrMore(peer)("peers") + message("message"))
    .set_name("[date] [module:level] ... message")
    .parse_with_tabs()
)

GRAMMAR = (PREFIXED | startup("startup")).parse_with_tabs()

_AH_CODE = re.compile(r"AH\d{4,5}(?=:)")


def split_address(text: str) -> tuple[str, str | None]:
    """``1.2.3.4:80`` -> (ip, '80'); ``[::1]:80`` -> ('::1', '80'); bare IPv6 -> (ip, None)."""
    if text.startswith("["):
        addr, _, tail = text[1:].partition("]")
        port = tail[1:] if tail.startswith(":") and tail[1:].isdigit() else None
        return addr, port
    if text.count(":") == 1:
        addr, _, port = text.partition(":")
        return addr, port if port.isdigit() else None
    return text, None


def _read(res: pp.ParseResults) -> tuple[Prefix | None, str, dict[str, str]]:
    """The prefix, the message and every field of a parsed prefixed line."""
    head = named(res, "prefix")
    text = str(named(res, "message") or "").strip()
    fields: dict[str, str] = dict(head.fields) if isinstance(head, Prefix) else {}
    code = _AH_CODE.match(text)
    if code:
        fields["ah_code"] = code.group(0)
    if "errno" in fields:
        # Apache writes the OS error before the peer block; keep it in the message too, so
        # rules on the wording (e.g. "No space left on device") see it as in the raw line
        text = f"({fields['errno']}){fields.get('os_error', '')}: {text}"
    peers = named(res, "peers")
    for block in peers if isinstance(peers, pp.ParseResults) else ():
        if isinstance(block, dict):
            addr, port = split_address(block["address"])
            fields[block["kind"]] = addr
            if port is not None:
                fields[f"{block['kind']}_port"] = port
    return (head if isinstance(head, Prefix) else None), text, fields


def parse(line: str) -> Parsed:
    """Parse one Apache error log line."""
    res = run(GRAMMAR, line, "apache-error")
    text = named(res, "startup")
    if isinstance(text, str):
        text = text.rstrip()
        code = _AH_CODE.match(text)
        return Parsed(None, text, fields={"ah_code": code.group(0)} if code else {})
    head, text, fields = _read(res)
    if head is None:  # pragma: no cover - the grammar always yields a prefix here
        return Parsed(None, text, fields=fields)
    if fields.get("apache_level") == head.level:
        del fields["apache_level"]
    return Parsed(
        timestamp=head.stamp.when if head.stamp else None,
        message=text,
        pid=head.pid,
        level=head.level,
        fields=fields,
    )


def parse_apache_body(text: str) -> dict[str, str]:
    """Fields of an error-log line that reached syslog without its date; {} when it is not one.

    ``apache_level`` holds the level word and ``apache_pid`` the pid from the text, so that
    they do not hide the syslog envelope's own level and pid.
    """
    try:
        res = PREFIXED.parse_string(text)
    except pp.ParseBaseException:
        return {}
    head, _, fields = _read(res)
    if head is not None and head.pid is not None:
        fields["apache_pid"] = str(head.pid)
    return fields
