"""Body grammar for systemd's own unit messages (tag ``systemd``, PID 1 or a user manager).

Old (≤ 219), middle and new (≥ 249) wordings are all read; every match sets ``action``.

BNF (``UNIT`` is a unit name with its type suffix: ``cronjob-test@backup.service``)::

    systemd ::= start_failed | entered_failed | unit_msg | lifecycle
    start_failed   ::= "Failed to start" SP [UNIT SP "-" SP] DESC ["."]
                                       -> action=start-failed, unit, description
    entered_failed ::= "Unit" SP UNIT SP "entered failed state" ["."]
                                       -> action=entered-failed, unit, state=failed
    unit_msg       ::= UNIT (":" SP | SP) unit_event
    unit_event     ::= "Unit entered failed state" ["."]  -> action=entered-failed, state=failed
                     | "Failed with result '" RESULT "'" ["."]  -> action=failed-with-result, result
                     | ("main" | "Main" | "Control" | "control") SP "process exited, code=" CODE
                       ", status=" STATUS *CHAR
                                       -> action=process-exited, process, code, status
                     | ("State '" STATE "'" | STATE [SP "operation"]) SP "timed out." SP WORD ["."]
                                       -> action=timed-out, state, timeout_action (killing, ...)
                     | "Start request repeated too quickly" ["."]     -> action=start-limit-hit
                     | "Scheduled restart job, restart counter is at" SP N ["."]
                                       -> action=restart-scheduled, restart_count
                     | ("Deactivated successfully" | "Succeeded") ["."]  -> action=deactivated
                     | "Consumed" SP TEXT ["."]         -> action=consumed, consumed
    lifecycle      ::= VERB SP [UNIT SP "-" SP] DESC ["..." | "."]
                                       -> action=starting, started, stopping, stopped, ...
    VERB           ::= "Starting" | "Started" | "Stopping" | "Stopped" | "Reloading" | "Reloaded"
                     | "Finished"

A description that is itself a unit name (systemd prints the name when a unit has no
Description=) also fills ``unit``.
"""

from __future__ import annotations

import re

import pyparsing as pp

from pipeline.grammars.common import end, fields_action, parse_fields

UNIT_RE = (
    r"[\w:.\\@\-]+\.(?:service|socket|device|mount|automount|swap|target|path|timer|slice|scope)"
)
_UNIT = rf"(?P<unit>{UNIT_RE})"
_DOT = r"\.?\s*\Z"


def _event(name: str, pattern: str, action: str) -> pp.ParserElement:
    return (
        pp.Regex(pattern, as_match=True)
        .set_name(name)
        .set_parse_action(fields_action(action=action))
    )


start_failed = _event(
    "Failed to start",
    rf"Failed to start (?:{_UNIT} - )?(?P<description>.*?){_DOT}",
    "start-failed",
)
entered_failed = _event(
    "Unit X entered failed state",
    rf"Unit {_UNIT} entered failed state{_DOT}",
    "entered-failed",
)
entered_failed_new = _event(
    "X: Unit entered failed state",
    rf"{_UNIT}: Unit entered failed state{_DOT}",
    "entered-failed",
)
failed_result = _event(
    "X: Failed with result",
    rf"{_UNIT}: Failed with result '(?P<result>[^']*)'{_DOT}",
    "failed-with-result",
)
process_exited = _event(
    "X: main process exited",
    rf"{_UNIT}: (?P<process>[Mm]ain|[Cc]ontrol) process exited, code=(?P<code>[\w-]+),"
    r" status=(?P<status>[^\s,]+)(?s:.*)",
    "process-exited",
)
timed_out = _event(
    "X: State 'S' timed out",
    rf"{_UNIT}:? (?:State '(?P<state>[\w-]+)'|(?P<state__2>[\w-]+)(?: operation)?) timed out\."
    rf" (?P<timeout_action>\w+){_DOT}",
    "timed-out",
)
start_limit = _event(
    "X: Start request repeated too quickly",
    rf"{_UNIT}: Start request repeated too quickly{_DOT}",
    "start-limit-hit",
)
restart_scheduled = _event(
    "X: Scheduled restart job",
    rf"{_UNIT}: Scheduled restart job, restart counter is at (?P<restart_count>\d+){_DOT}",
    "restart-scheduled",
)
consumed = _event(
    "X: Consumed ... CPU time",
    rf"{_UNIT}: Consumed (?P<consumed>.+?){_DOT}",
    "consumed",
)
deactivated = _event(
    "X: Deactivated successfully",
    rf"{_UNIT}: (?:Deactivated successfully|Succeeded){_DOT}",
    "deactivated",
)


def _lifecycle_action(toks: pp.ParseResults) -> dict[str, str]:
    found = toks[0]
    assert isinstance(found, re.Match)
    out = {key: value for key, value in found.groupdict().items() if value is not None}
    out["action"] = out.pop("verb").lower()
    return out


lifecycle = (
    pp.Regex(
        r"(?P<verb>Starting|Started|Stopping|Stopped|Reloading|Reloaded|Finished) "
        rf"(?:{_UNIT} - )?(?P<description>.+?)(?:\.\.\.|\.)?\s*\Z",
        as_match=True,
    )
    .set_name("Starting/Started/Stopping/Stopped")
    .set_parse_action(_lifecycle_action)
)

SYSTEMD = (
    (
        (
            start_failed
            | entered_failed
            | entered_failed_new
            | failed_result
            | process_exited
            | timed_out
            | start_limit
            | restart_scheduled
            | deactivated
            | consumed
            | lifecycle
        )
        + end
    )
    .parse_with_tabs()
    .set_name("systemd message")
)

_UNIT_ONLY = re.compile(UNIT_RE)
#: how every wording above begins: most systemd messages fail this at once, instead of
#: after trying every alternative
_WORTH_PARSING = re.compile(
    rf"(?:Failed to start |Unit |(?:Starting|Started|Stopping|Stopped|Reloading|Reloaded"
    rf"|Finished) |{UNIT_RE}:? )"
)


def parse_systemd(text: str) -> dict[str, str]:
    """Fields of a systemd unit message; {} when it is not one of the known wordings."""
    text = text.strip()
    if not _WORTH_PARSING.match(text):
        return {}
    out = parse_fields(SYSTEMD, text)
    description = out.get("description")
    if description is not None and "unit" not in out and _UNIT_ONLY.fullmatch(description):
        out["unit"] = description
    if out.get("action") == "entered-failed":
        out["state"] = "failed"
    for key in ("process", "timeout_action"):
        if key in out:
            out[key] = out[key].lower()
    return out
