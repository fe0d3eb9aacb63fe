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
        return self._name_.lower()


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
    ``repeat`` is how many identical events the line stands for: N for rsyslog's
    ``message repeated N times: [ text]`` (whose ``message`` is then ``text``; ``source`` and
    ``line`` still locate the line as written), else 1.
    ``group`` names, for a line without a host, the rotation set it was read from (see
    :attr:`scope`); it is ``None`` when the line has a host.
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
    repeat: int = 1
    group: str | None = None

    @property
    def scope(self) -> str | None:
        """What detection groups the event under: its host, else its ``group``."""
        return self.host if self.host is not None else self.group

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
        d = {
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
            "repeat": self.repeat,
        }
        if self.group is not None:
            d["group"] = self.group
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """The inverse of :meth:`as_dict`."""
        source, line = _source_line(str(d["source"]))
        pid = d.get("pid")
        return cls(
            timestamp=_ts(d.get("timestamp")),
            host=d.get("host"),
            program=d.get("program"),
            pid=None if pid is None else int(pid),
            level=d.get("level"),
            message=str(d.get("message", "")),
            format=str(d.get("format", "unknown")),
            source=source,
            line=line,
            fields=MappingProxyType({str(k): str(v) for k, v in (d.get("fields") or {}).items()}),
            year_inferred=bool(d.get("year_inferred", False)),
            repeat=int(d.get("repeat", 1)),
            group=d.get("group"),
        )


def is_group(scope: str | None) -> bool:
    """Whether a detection scope (:attr:`Event.scope`) names a rotation set, not a host:
    a set's name is its live file's absolute path, a URL or ``-`` (stdin), and a host name
    holds no ``/``."""
    return scope is not None and (scope == "-" or "/" in scope)


def _ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _source_line(text: str) -> tuple[str, int]:
    path, _, line = text.rpartition(":")
    return (path, int(line)) if line.isdigit() and path else (text, 0)


@dataclass(frozen=True, slots=True)
class Related:
    """One event behind a finding, kept as a short reference (a bounded sample)."""

    source: str
    line: int
    timestamp: datetime | None
    message: str

    @classmethod
    def of(cls, event: Event) -> Related:
        return cls(event.source, event.line, event.timestamp, event.message[:500])

    def as_dict(self) -> dict[str, Any]:
        return self._as_dict(self.timestamp.isoformat() if self.timestamp else None)

    def _as_dict(self, stamp: str | None) -> dict[str, Any]:
        """:meth:`as_dict` with the timestamp already in ISO form."""
        return {"source": f"{self.source}:{self.line}", "timestamp": stamp, "message": self.message}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Related:
        source, line = _source_line(str(d["source"]))
        return cls(source, line, _ts(d.get("timestamp")), str(d.get("message", "")))


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict about one or more events.

    ``count`` and ``last_seen`` grow when later occurrences are folded into this finding
    (suppression, thresholds); a finding updated that way keeps its ``key``. ``related``
    is a bounded sample of the events behind it.
    """

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
    count: int = 1
    last_seen: datetime | None = None
    related: tuple[Related, ...] = ()
    #: 0 for the first finding with this content at this time; 1, 2, ... for identical
    #: lines repeated within the same timestamp (so they stay distinct findings)
    occurrence: int = 0
    #: :attr:`key` once computed (a changed copy made with ``replace`` computes its own)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        """A deterministic identity: the same finding from a re-read line has the same key."""
        key = self._key
        if key is None:
            stamp = self.timestamp.isoformat() if self.timestamp else ""
            text = "\x1f".join(
                (self.rule, stamp, self.host or "", self.program or "", self.message, "")
            )
            if self.occurrence:
                text += str(self.occurrence)
            key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]
            object.__setattr__(self, "_key", key)
        return key

    def as_dict(self) -> dict[str, Any]:
        ts = self.timestamp
        stamp = ts.isoformat() if ts else None
        return {
            "rule": self.rule,
            "severity": str(self.severity),
            "title": self.title,
            "host": self.host,
            "program": self.program,
            "timestamp": stamp,
            "source": f"{self.source}:{self.line}",
            "message": self.message,
            "fields": dict(self.fields),
            "tags": list(self.tags),
            "count": self.count,
            "last_seen": stamp if self.last_seen is None else self.last_seen.isoformat(),
            "related": [
                r._as_dict(stamp) if r.timestamp is ts else r.as_dict() for r in self.related
            ],
            "occurrence": self.occurrence,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        """The inverse of :meth:`as_dict` (``key`` is recomputed, not trusted)."""
        source, line = _source_line(str(d["source"]))
        return cls(
            rule=str(d["rule"]),
            severity=Severity.parse(str(d["severity"])),
            title=str(d["title"]),
            timestamp=_ts(d.get("timestamp")),
            host=d.get("host"),
            program=d.get("program"),
            source=source,
            line=line,
            message=str(d["message"]),
            fields=MappingProxyType({str(k): str(v) for k, v in (d.get("fields") or {}).items()}),
            tags=tuple(d.get("tags") or ()),
            count=int(d.get("count", 1)),
            last_seen=_ts(d.get("last_seen")),
            related=tuple(Related.from_dict(r) for r in d.get("related") or ()),
            occurrence=int(d.get("occurrence", 0)),
        )
