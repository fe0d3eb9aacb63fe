"""The data types at the centre of the engine: Severity, Event and Finding.

Everything here is immutable. Sources and grammars produce :class:`Event` values, detection
turns them into :class:`Finding` values, and sinks only read them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, str] = MappingProxyType({})


class Severity(IntEnum):
    """Ordered finding severities; ``--fail-on`` compares with ``>=``."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of: {names})") from None

    def __str__(self) -> str:
        return self.name.lower()


#: syslog/journal priority numbers to level names, as RFC 5424 defines them.
LEVELS: tuple[str, ...] = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")


@dataclass(frozen=True, slots=True)
class Event:
    """One parsed log record.

    ``timestamp`` is tz-aware or ``None`` when the line carries no time at all.
    ``year_inferred`` marks a year taken from context (file mtime, rollovers, ``--year``).
    ``fields`` holds what body grammars extracted (``queue_id``, ``service``, ...) and,
    for journal entries, the journal's own fields under their journal names
    (``_SYSTEMD_UNIT``, ``_COMM``, ``MESSAGE_ID``, ...).
    """

    timestamp: datetime | None
    host: str | None
    program: str | None
    pid: int | None
    level: str | None
    message: str
    format: str
    source: str
    line: int
    fields: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    year_inferred: bool = False

    def get(self, name: str) -> str | None:
        """The value of a matchable field as text: envelope fields first, then ``fields``."""
        if name == "message":
            return self.message
        if name == "program":
            return self.program
        if name == "host":
            return self.host
        if name == "level":
            return self.level
        if name == "format":
            return self.format
        if name == "pid":
            return None if self.pid is None else str(self.pid)
        return self.fields.get(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "host": self.host,
            "program": self.program,
            "pid": self.pid,
            "level": self.level,
            "message": self.message,
            "format": self.format,
            "source": f"{self.source}:{self.line}",
            "fields": dict(self.fields),
            "year_inferred": self.year_inferred,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict about one or more events."""

    rule: str
    severity: Severity
    title: str
    timestamp: datetime | None
    host: str | None
    program: str | None
    source: str
    line: int
    message: str
    fields: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    tags: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """A deterministic identity: the same finding from a re-read line has the same key."""
        h = hashlib.sha256()
        stamp = self.timestamp.isoformat() if self.timestamp else ""
        for part in (self.rule, stamp, self.host or "", self.program or "", self.message):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        return h.hexdigest()[:20]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": str(self.severity),
            "title": self.title,
            "host": self.host,
            "program": self.program,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "source": f"{self.source}:{self.line}",
            "message": self.message,
            "fields": dict(self.fields),
            "tags": list(self.tags),
            "key": self.key,
        }
