"""systemd journal entries as ``journalctl -o json`` prints them, format ``journal-json``.

One JSON object per line. JSON has an exact standard parser in the library, so this module reads
the object with :mod:`json` instead of a pyparsing grammar; what it defines is the mapping from
journal fields to a :class:`Parsed`::

    entry      ::= "{" [member *("," member)] "}"          ; one line, RFC 8259
    member     ::= NAME ":" value
    value      ::= string | byte-array | list-of-values | null
    byte-array ::= "[" [0..255 *("," 0..255)] "]"          ; journalctl's form for binary data

    timestamp  <- __REALTIME_TIMESTAMP (µs since the epoch, UTC); else _SOURCE_REALTIME_TIMESTAMP
    host       <- _HOSTNAME
    program    <- SYSLOG_IDENTIFIER, else _COMM
    pid        <- _PID, else SYSLOG_PID
    level      <- PRIORITY (0..7 -> emerg..debug)
    message    <- MESSAGE (byte arrays decoded as UTF-8, undecodable bytes replaced)
    fields     <- every key except MESSAGE, as text, under its journal name

The message is not re-parsed: the journal already split it from its metadata. A key that occurs
several times in an entry (journalctl prints a JSON list of values) keeps all its values joined
with ``"\\n"``; the envelope picks the first value of ``_PID``/``SYSLOG_PID``. ``null`` values
(fields journalctl did not print because they are too large) are left out.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.grammars.base import FieldNames, GrammarError, LineFormat, Parsed
from pipeline.grammars.common import ascii_int
from pipeline.model import LEVELS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LEVEL_BY_PRIORITY: dict[str, str] = {str(number): name for number, name in enumerate(LEVELS)}
_DECODER = json.JSONDecoder()


def _is_bytes(value: list[Any]) -> bool:
    return all(type(item) is int and 0 <= item <= 255 for item in value)


class _NotJournal(ValueError):
    """A value journalctl never writes (an object, lists nested more than two deep)."""


def _text(value: Any, depth: int = 0) -> str | None:
    """A journal value as text: strings as-is, byte arrays decoded, lists of values joined."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and depth < 2:
        if value and _is_bytes(value):
            return bytes(value).decode("utf-8", errors="replace")
        parts = [part for part in (_text(item, depth + 1) for item in value) if part is not None]
        return "\n".join(parts)
    raise _NotJournal(f"unexpected value of type {type(value).__name__}")


def _first(value: str | None) -> str | None:
    return None if value is None else value.partition("\n")[0]


def _realtime(value: str | None) -> datetime | None:
    micros = ascii_int(_first(value), 20)
    if micros is None:
        return None
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return None


def _pid(value: str | None) -> int | None:
    return ascii_int(_first(value))


_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _clean(text: str) -> str:
    """Lone surrogates (from ``\\udXXX`` escapes) as U+FFFD; valid pairs are already joined."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def parse(line: str) -> Parsed:
    """Turn one ``journalctl -o json`` line into a Parsed."""
    start = len(line) - len(line.lstrip())
    try:
        entry, stop = _DECODER.raw_decode(line, start)
    except json.JSONDecodeError as exc:
        raise GrammarError(f"line does not fit journal-json: {exc.msg}", exc.pos) from None
    except RecursionError:
        raise GrammarError("line does not fit journal-json: nested too deeply", start) from None
    trailing = line[stop:]
    if trailing.strip():
        col = stop + len(trailing) - len(trailing.lstrip())
        raise GrammarError("line does not fit journal-json: text after the JSON object", col)
    if not isinstance(entry, dict):
        raise GrammarError("line does not fit journal-json: not a JSON object", start)
    fields: dict[str, str] = {}
    try:
        for key, value in entry.items():
            text = _text(value)
            if text is not None and key != "MESSAGE":
                fields[key] = text
        message = _text(entry.get("MESSAGE")) or ""
    except _NotJournal as exc:
        raise GrammarError(f"line does not fit journal-json: {exc}", start) from None
    if _LONE_SURROGATE.search(line):
        # JSON may escape half of a surrogate pair; such text cannot be written as UTF-8
        fields = {_clean(k): _clean(v) for k, v in fields.items()}
        message = _clean(message)
    level = _LEVEL_BY_PRIORITY.get(_first(fields.get("PRIORITY")) or "")
    return Parsed(
        timestamp=_realtime(fields.get("__REALTIME_TIMESTAMP"))
        or _realtime(fields.get("_SOURCE_REALTIME_TIMESTAMP")),
        message=message.rstrip(),
        host=_first(fields.get("_HOSTNAME")),
        program=_first(fields.get("SYSLOG_IDENTIFIER") or fields.get("_COMM")),
        pid=_pid(fields.get("_PID")) or _pid(fields.get("SYSLOG_PID")),
        level=level,
        fields=fields,
    )


_SNIFF = re.compile(r"\s*\{\s*\"")


def sniff(line: str) -> bool:
    """True when the line starts like a JSON object."""
    return _SNIFF.match(line) is not None


FORMAT = LineFormat(
    "journal-json",
    "systemd journal export as 'journalctl -o json' prints it, one object per line",
    sniff,
    parse,
    priority=100,
    # journal field names: upper-case letters, digits and "_", not starting with a digit;
    # a JSON line not written by journalctl may have any key
    fields=FieldNames(
        open=re.compile(r"[A-Z_][A-Z0-9_]*"),
        open_what="a journal field",
        nonstandard=re.compile(r"(?s:.*)"),
    ),
)
