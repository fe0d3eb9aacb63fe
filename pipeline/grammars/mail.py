"""Body grammars for mail daemons: sendmail and dovecot messages.

They read the message after the syslog tag and return fields; text that does not fit gives {}.

Sendmail (``sendmail``, ``sm-mta``, ``sm-msp-queue``, ... tags)::

    sendmail ::= [QID ":" SP] (pairs | dsn | text)        -> queue_id
    pairs    ::= pair *("," [SP] pair)                      -> <key>=<value> ...
    dsn      ::= [QID ":" SP] "DSN:" SP text                -> dsn_queue_id, dsn
    QID      ::= 12*20(ALPHA | DIGIT)                       ; e.g. 6AU8MP47017782
    pair     ::= key "=" value
    value    ::= *(angle | paren | square | CHAR)           ; stops at "," [SP] key "="
    angle    ::= "<" *CHAR ">"   paren ::= "(" *CHAR ")"   square ::= "[" *CHAR "]"

A value keeps its brackets and inner spaces: ``relay=host [1.2.3.4] (may be forged)``,
``ctladdr=<a@b> (1010/500)``; a comma inside brackets does not end it.

Dovecot (``dovecot`` tag; ``master:`` lines come from the master process)::

    dovecot  ::= [LEVEL ":" SP] [process ":" SP] [LEVEL ":" SP] (service_msg | text)
    process  ::= NAME ["(" ARG ")"]                        -> process, process_arg
    LEVEL    ::= "Debug" | "Info" | "Warning" | "Error" | "Fatal" | "Panic"   -> dovecot_level
    service_msg ::= "service(" NAME "):" SP (status_timeout | limit | child_signal
                                              | child_error | text)       -> service
    status_timeout ::= "Initial status notification not received in" SP N SP "seconds, ..."
                        -> event=status-notification-timeout, timeout
    limit    ::= KIND [SP "(" N ")"] SP "reached, client connections are being dropped"
                        -> event=limit-reached, limit_kind, limit    ; KIND: process_limit, ...
    child_signal ::= "child" SP PID SP "killed with signal" SP N ...
                        -> event=child-killed, child_pid, signal
    child_error  ::= "child" SP PID SP "returned error" SP N ...
                        -> event=child-error, child_pid, exit_code
"""

from __future__ import annotations

import re

import pyparsing as pp

from pipeline.grammars.common import SENDMAIL_KEY_RE, end, fields_action, message, parse_fields

# --- sendmail ------------------------------------------------------------------------------------

_QID = r"[0-9A-Za-z]{12,20}"
_KEY = SENDMAIL_KEY_RE
_VALUE = rf"(?:<[^<>]*>|\([^()]*\)|\[[^\[\]]*\]|[^,]|,(?! ?{_KEY}=))*"

queue_id = (
    pp.Regex(rf"(?P<queue_id>{_QID}): ", as_match=True)
    .set_name("queue id")
    .set_parse_action(fields_action())
)

dsn = (
    pp.Regex(rf"(?:(?P<dsn_queue_id>{_QID}): )?DSN: (?P<dsn>(?s:.*\S))", as_match=True)
    .set_name("DSN: text")
    .set_parse_action(fields_action())
)

_PAIR = re.compile(rf"(?P<key>{_KEY})=(?P<value>{_VALUE})")


def _pairs_action(toks: pp.ParseResults) -> dict[str, str]:
    """``a=1, b=<x, y> (z)`` -> ``{"a": "1", "b": "<x, y> (z)"}`` (first of a repeated key)."""
    text = str(toks[0])
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        found = _PAIR.match(text, pos)
        if found is None:
            break
        out.setdefault(found["key"], found["value"].strip())
        pos = found.end()
        if text.startswith(", ", pos):
            pos += 2
        elif text.startswith(",", pos):
            pos += 1
    return out


pairs = (
    pp.Regex(rf"{_KEY}={_VALUE}(?:, ?{_KEY}={_VALUE})*")
    .set_name("key=value, ...")
    .set_parse_action(_pairs_action)
)

SENDMAIL = (
    (pp.Opt(queue_id) + (pairs | dsn | message) + end)
    .parse_with_tabs()
    .set_name("sendmail message")
)


def parse_sendmail(text: str) -> dict[str, str]:
    """Fields of a sendmail log message (after ``sm-mta[pid]: ``); {} when it has none."""
    return parse_fields(SENDMAIL, text.strip())


# --- dovecot -------------------------------------------------------------------------------------

_LEVEL = r"Debug|Info|Warning|Error|Fatal|Panic"

dovecot_prefix = (
    pp.Regex(
        rf"(?:(?P<dovecot_level>{_LEVEL}): )?"
        r"(?:(?P<process>[a-z][\w.\-]*)(?:\((?P<process_arg>[^()\s]*)\))?: )?"
        rf"(?:(?P<dovecot_level__2>{_LEVEL}): )?",
        as_match=True,
    )
    .set_name("[level:] [process:] [level:]")
    .set_parse_action(fields_action())
)

service = (
    pp.Regex(r"service\((?P<service>[^()\s]+)\): ", as_match=True)
    .set_name("service(name):")
    .set_parse_action(fields_action())
)

status_timeout = (
    pp.Regex(
        r"Initial status notification not received in (?P<timeout>\d+) seconds"
        r"(?:, killing the process)?",
        as_match=True,
    )
    .set_name("status notification timeout")
    .set_parse_action(fields_action(event="status-notification-timeout"))
)

limit_reached = (
    pp.Regex(
        r"(?P<limit_kind>[a-z_]+(?:/[a-z_]+)?)(?: \((?P<limit>\d+)\))? reached"
        r"(?:, client connections are being dropped)?",
        as_match=True,
    )
    .set_name("limit reached")
    .set_parse_action(fields_action(event="limit-reached"))
)

child_signal = (
    pp.Regex(r"child (?P<child_pid>\d+) killed with signal (?P<signal>\d+)", as_match=True)
    .set_name("child killed")
    .set_parse_action(fields_action(event="child-killed"))
)

child_error = (
    pp.Regex(r"child (?P<child_pid>\d+) returned error (?P<exit_code>\d+)", as_match=True)
    .set_name("child returned error")
    .set_parse_action(fields_action(event="child-error"))
)

service_msg = service + pp.Opt(status_timeout | limit_reached | child_signal | child_error)

DOVECOT = (
    (dovecot_prefix + pp.Opt(service_msg) + pp.Opt(message.copy().suppress()) + end)
    .parse_with_tabs()
    .set_name("dovecot message")
)


def parse_dovecot(text: str) -> dict[str, str]:
    """Fields of a dovecot log message (after ``dovecot: ``); {} when it has none."""
    return parse_fields(DOVECOT, text.strip())
