"""Stateful detection on event time: enrichment joins, suppression and digests, thresholds,
sequences and absences.

:class:`Detector` receives events in input order. Line rules match each event; their matches
(rule, event, captured fields) go through a small per-host reorder buffer (``lateness``),
then in event-time order to:

* enrichment tables (``enrich:``): a match of a source rule is remembered by its join fields
  for ``keep``; a later match of the consumer rule copies fields from it (the DSN receipt
  gets the ``sender`` of its queue id's ``from=`` line, also across a rotation);
* suppression (``suppress:``): one finding per period and group key, later occurrences
  update its ``count`` and ``last_seen``; or, with ``digest``, one summary per period;
* correlation rules that subscribed to the rule (threshold, sequence, absence).

A line without a host is grouped by its :attr:`~pipeline.model.Event.scope` (its input's
rotation set) wherever a host keys state: ``group_by: [host]``, watermarks, reorder buffers,
join tables, digests, absence windows; its findings' ``host`` stays empty.

Time is only ever event time. Each host has a watermark, the latest event time seen from it
(candidates and the sampled first and last lines of every chunk); absence windows and
digests are judged when that watermark passes their end, so replaying old logs gives the
same findings as watching them live. At the end of the input, open absence windows are
counted as "not judged", never reported.

All state is plain data: :meth:`Detector.snapshot` returns JSON-able dicts and
:meth:`Detector.restore` takes them back, so a resumed run continues windows exactly.
Memory is bounded: every table has a cap, and what is evicted is counted.
"""

from __future__ import annotations

import gc
import heapq
import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import repeat
from types import MappingProxyType
from typing import Any

from pipeline.detection.loader import active_rules
from pipeline.detection.model import Correlation, Enrich, Rule, Step, _glob_match
from pipeline.detection.patterns import CompiledPattern
from pipeline.model import Event, Finding, Related, is_group

#: open windows / partial sequences / suppression entries kept per rule before eviction
MAX_OPEN = 10_000
#: remembered matches per enrichment before the oldest are evicted (a week of a mail server
#: taking 140,000 messages a day; several hundred MB of memory when full)
MAX_REMEMBERED = 1_000_000
#: events kept per threshold window (the count stays exact up to this)
MAX_WINDOW_EVENTS = 10_000

GroupKey = tuple[str | None, ...]
#: a line rule as :meth:`Detector.match` runs it: the rule, its message literals, and its
#: message pattern when that is all there is left to test
PlanStep = tuple[Rule, tuple[str, ...], CompiledPattern | None]
#: fields every event has from its envelope grammar
ENVELOPE_FIELDS = frozenset({"message", "program", "host", "level", "pid", "format"})


def _key_text(key: GroupKey) -> str:
    return json.dumps(list(key))


def _key_of(text: str) -> GroupKey:
    return tuple(json.loads(text))


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _value(name: str, event: Event, fields: Mapping[str, str]) -> str | None:
    got = fields.get(name)
    return got if got is not None else event.get(name)


def group_key(names: Sequence[str], event: Event, fields: Mapping[str, str]) -> GroupKey:
    """The values of ``names``; ``host`` of a host-less line is its :attr:`Event.scope`."""
    return tuple(
        event.scope if n == "host" and "host" not in fields else _value(n, event, fields)
        for n in names
    )


def _human(d: timedelta) -> str:
    """``4m31s``, ``24h``, ``1d2h``: a duration as an admin writes it."""
    secs = int(d.total_seconds())
    if secs <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            parts.append(f"{secs // size}{unit}")
            secs %= size
    return "".join(parts)


class DueTimes:
    """The earliest deadline per host, so that judging on every event costs a dict lookup
    until something of that host is actually due (then one pass, which resets it)."""

    def __init__(self) -> None:
        self._due: dict[str | None, datetime] = {}

    def add(self, host: str | None, when: datetime) -> None:
        cur = self._due.get(host)
        if cur is None or when < cur:
            self._due[host] = when

    def due(self, host: str | None, now: datetime, *, inclusive: bool) -> bool:
        cur = self._due.get(host)
        return cur is not None and (cur <= now if inclusive else cur < now)

    def reset(self, host: str | None, remaining: Iterable[datetime]) -> None:
        earliest = min(remaining, default=None)
        if earliest is None:
            self._due.pop(host, None)
        else:
            self._due[host] = earliest


@dataclass(slots=True)
class Match:
    rule: Rule
    event: Event
    fields: dict[str, str]


@dataclass
class DetectorStats:
    matches: int = 0
    suppressed: int = 0
    enriched: int = 0
    expired_unjudged: Counter[str] = field(default_factory=Counter)
    incomplete: Counter[str] = field(default_factory=Counter)
    evicted: Counter[str] = field(default_factory=Counter)
    #: rules whose saved state did not fit their current definition and was dropped
    dropped_state: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "matches": self.matches,
            "suppressed": self.suppressed,
            "enriched": self.enriched,
            "expired_unjudged": dict(self.expired_unjudged),
            "incomplete": dict(self.incomplete),
            "evicted": dict(self.evicted),
            "dropped_state": list(self.dropped_state),
        }


def base_finding(rule: Rule, event: Event, fields: Mapping[str, str]) -> Finding:
    return Finding(
        rule=rule.id,
        severity=rule.severity,
        title=rule.title,
        timestamp=event.timestamp,
        host=event.host,
        program=event.program,
        source=event.source,
        line=event.line,
        message=event.message,
        fields=MappingProxyType(dict(fields)),
        tags=rule.tags,
        count=event.repeat,
        related=(Related.of(event),),
    )


# -- stored rows -----------------------------------------------------------------------------


#: what changed in a part since the last checkpoint: key -> moved (True: new, re-inserted or
#: deleted, so it belongs at the end of the stored order; False: changed in place)
Changes = dict[GroupKey, bool]


class StoredPart:
    """A part of the detection state kept as one stored row per key (a join table, the
    open windows of a rule), so that a checkpoint writes the keys that changed.

    While ``changed`` is a dict (the daemon turns tracking on), every change of a key marks
    it there: one dict operation, nothing serialised. :meth:`row` encodes a present key's
    value for the state database; :meth:`load_rows` takes the stored rows back, in the order
    they were stored (the order of the part's dict, which eviction at the caps follows).
    """

    changed: Changes | None = None

    def keyed(self) -> Mapping[GroupKey, Any]:
        raise NotImplementedError

    def row(self, key: GroupKey) -> Any:
        raise NotImplementedError

    def load_rows(self, keys: list[GroupKey], values: list[Any]) -> None:
        raise NotImplementedError

    def small(self) -> dict[str, Any]:
        """What this part keeps besides its rows (stored whole at every checkpoint), with
        the number of rows."""
        return {"rows": len(self.keyed())}

    def load_small(self, data: Mapping[str, Any]) -> None:
        return None

    def encode(self, key: GroupKey) -> str:
        """A present key's stored value (JSON of :meth:`row`)."""
        return _json(self.row(key))

    def load_stored(self, data: tuple[list[Any], list[str], Mapping[str, Any] | None]) -> None:
        """Stored keys (JSON lists), values (as stored: text) and the small part, as the
        state database gives them back."""
        keys, texts, small = data
        self.load_rows(list(map(tuple, keys)), json.loads("[" + ",".join(texts) + "]"))
        if small is not None:
            self.load_small(small)

    def _moved(self, key: GroupKey) -> None:
        ch = self.changed
        if ch is not None:
            ch.pop(key, None)
            ch[key] = True

    def _touched(self, key: GroupKey) -> None:
        ch = self.changed
        if ch is not None and key not in ch:
            ch[key] = False

    def _gone(self, key: GroupKey) -> None:
        ch = self.changed
        if ch is not None:
            ch[key] = True


# -- enrichment ------------------------------------------------------------------------------


#: a remembered row: time, copied values (their JSON text until a lookup parses them), host
JoinRow = tuple[datetime | None, dict[str, str] | str, str | None]


class EnrichTable(StoredPart):
    """Remembered matches of a source rule, by join fields, for ``keep``.

    Each host's rows are also queued in the order they came (its time order), so that once
    a host's time has moved ``keep`` past a row, the row is forgotten: a long input holds
    one ``keep`` window of rows, not every row it ever saw. A lookup more than ``keep``
    away from a row's time never uses it anyway.

    Rows read back from the state database (one host's, the usual case) stay the text they
    were stored as until something needs them: a lookup, forgetting (which reads only the
    times at the front of the queue), a snapshot. A start with a million rows builds one
    dict entry per row and parses nothing.
    """

    def __init__(self, spec: Enrich, stats: DetectorStats, name: str) -> None:
        self.spec = spec
        self.stats = stats
        self.name = name
        #: key -> (time, copied values, host), or the stored text of a row read back and
        #: not used since; in arrival order
        self.rows: dict[GroupKey, JoinRow | str] = {}
        #: per host, (time, key) as rows came; an entry whose row has been replaced or
        #: dropped since is skipped when it leaves (and all are rebuilt when such entries
        #: outnumber the rows)
        self._order: dict[str | None, deque[tuple[datetime, GroupKey]]] = {}
        #: the front of one host's queue as read back: (host, keys, stored texts), the
        #: next position; its entries' times are parsed as they reach the front
        self._cold: tuple[str | None, list[GroupKey], list[str]] | None = None
        self._cold_at = 0
        self._queued = 0

    def remember(self, event: Event, fields: Mapping[str, str]) -> None:
        key = group_key(self.spec.by, event, fields)
        if any(v is None for v in key):
            return
        values = {c: v for c in self.spec.copy if (v := _value(c, event, fields)) is not None}
        if not values:
            return
        ts, host = event.timestamp, event.scope
        self.rows.pop(key, None)
        self.rows[key] = (ts, values, host)
        ch = self.changed
        if ch is not None:
            ch.pop(key, None)
            ch[key] = True
        if ts is not None:
            self._queue(key, host, ts)
            self._forget_before(host, ts - self.spec.keep)
        while len(self.rows) > MAX_REMEMBERED:
            gone = next(iter(self.rows))
            del self.rows[gone]
            self._gone(gone)
            self.stats.evicted[self.name] += 1
        if self._queued > 2 * len(self.rows) + 1024:
            self._requeue()

    def _queue(self, key: GroupKey, host: str | None, ts: datetime) -> None:
        order = self._order.get(host)
        if order is None:
            order = self._order[host] = deque()
        order.append((ts, key))
        self._queued += 1

    def _requeue(self) -> None:
        """The per-host queues rebuilt from the rows alone."""
        self._order, self._queued, self._cold = {}, 0, None
        damaged = []
        for key, row in self.rows.items():
            if isinstance(row, str):
                got = _join_row(row)
                if got is None:
                    damaged.append(key)
                    continue
                self.rows[key] = row = got  # the queue entry must share its time
            t, _, host = row
            if t is not None:
                self._queue(key, host, t)
        for key in damaged:
            self._damaged(key)

    def _damaged(self, key: GroupKey) -> None:
        """A row read back that cannot be read: dropped and counted."""
        del self.rows[key]
        self._gone(key)
        self.stats.dropped_state.append(self.name)

    def _forget_before(self, host: str | None, horizon: datetime) -> None:
        """Forget ``host``'s rows from before ``horizon``, oldest first."""
        cold = self._cold
        if cold is not None and cold[0] == host:
            _, keys, texts = cold
            i, n = self._cold_at, len(keys)
            while i < n:
                text = texts[i]
                cut = text.find("\x1f")
                try:
                    t = datetime.fromisoformat(text[:cut]) if cut > 0 else None
                except ValueError:
                    t = None
                if t is not None and t >= horizon:
                    break
                key = keys[i]
                i += 1
                if self.rows.get(key) is text:  # not replaced or dropped since
                    if t is None and cut != 0:
                        self._damaged(key)
                    elif t is not None:
                        del self.rows[key]
                        self._gone(key)
            self._queued -= i - self._cold_at
            self._cold_at = i
            if i < n:
                return
            self._cold = None
        order = self._order.get(host)
        while order and order[0][0] < horizon:
            t, key = order.popleft()
            self._queued -= 1
            row = self.rows.get(key)
            if row is not None and row[0] is t:
                del self.rows[key]
                self._gone(key)

    def lookup(self, event: Event, fields: Mapping[str, str]) -> dict[str, str]:
        key = group_key(self.spec.by, event, fields)
        row = self.rows.get(key)
        if row is None:
            return {}
        stored = isinstance(row, str)
        if isinstance(row, str):
            # decoded for this lookup only: the row stays as stored (its queue entry
            # knows it by that text)
            got_row = _join_row(row)
            if got_row is None:
                self._damaged(key)
                return {}
            row = got_row
        t, values, host = row
        now = event.timestamp
        if (
            t is not None
            and now is not None
            and (now - t > self.spec.keep or now < t - self.spec.keep)
        ):
            del self.rows[key]
            self._gone(key)
            return {}
        if isinstance(values, str):
            got = _join_values(values)
            if got is None:  # a damaged stored row: dropped and counted
                self._damaged(key)
                return {}
            values = got
            if not stored:
                self.rows[key] = (t, values, host)  # same place in the order
        return values

    def _full(
        self, row: JoinRow | str
    ) -> tuple[datetime | None, dict[str, str], str | None] | None:
        """A row with its values parsed (None: damaged)."""
        got = _join_row(row) if isinstance(row, str) else row
        if got is None:
            return None
        values = _join_values(got[1])
        return None if values is None else (got[0], values, got[2])

    def snapshot(self) -> list[Any]:
        full = {k: self._full(row) for k, row in self.rows.items()}
        for key in [k for k, row in full.items() if row is None]:
            self._damaged(key)  # read back but unreadable: dropped once, counted
        return [[list(k), _iso(r[0]), r[1], r[2]] for k, r in full.items() if r is not None]

    def restore(self, data: list[Any]) -> None:
        # snapshots from before hosts were kept have three items per row
        self.rows = {
            tuple(k): (_dt(t), dict(v), host[0] if host else None) for k, t, v, *host in data
        }
        self._requeue()

    def keyed(self) -> Mapping[GroupKey, Any]:
        return self.rows

    def row(self, key: GroupKey) -> Any:
        got = self._full(self.rows[key])
        if got is None:
            raise ValueError(f"a stored row of {self.name} cannot be read")
        return [_iso(got[0]), got[1], got[2]]

    def encode(self, key: GroupKey) -> str:
        # time, host (JSON) and values (JSON) joined by US: JSON escapes control
        # characters, so neither holds one
        row = self.rows[key]
        if isinstance(row, str):
            return row  # as it was stored
        t, values, host = row
        text = values if isinstance(values, str) else _json(values)
        return f"{_iso(t) or ''}\x1f{_json(host)}\x1f{text}"

    def load_stored(self, data: tuple[list[Any], list[str], Mapping[str, Any] | None]) -> None:
        keys, texts, _ = data
        tuples: list[GroupKey] = list(map(tuple, keys))
        rows: dict[GroupKey, JoinRow | str] = dict(zip(tuples, texts, strict=True))
        if len(rows) != len(tuples):
            raise ValueError("a stored join table repeats a key")
        first = texts[0].split("\x1f") if texts else []
        if len(first) == 3:
            host = json.loads(first[1])
            needle = f"\x1f{first[1]}\x1f"
            # every row of that one host (the host is the one field between two US)
            if (host is None or isinstance(host, str)) and all(
                map(str.__contains__, texts, repeat(needle))
            ):
                self.rows, self._order = rows, {}
                self._cold, self._cold_at, self._queued = (host, tuples, texts), 0, len(texts)
                return
        # rows of several hosts: read them all now
        flat = "\x1f".join(texts).split("\x1f") if texts else []
        if len(flat) != 3 * len(texts):
            raise ValueError("a stored join row is not time, host and values")
        fromiso = datetime.fromisoformat
        times = [fromiso(t) if t else None for t in flat[0::3]]
        raw_hosts = flat[1::3]
        decoded = {h: json.loads(h) for h in set(raw_hosts)}
        for h in decoded.values():
            if h is not None and not isinstance(h, str):
                raise ValueError("a stored join row's host is not text")
        hosts = list(map(decoded.__getitem__, raw_hosts))
        self.load_rows(tuples, [times, flat[2::3], hosts])

    def load_rows(self, keys: list[GroupKey], values: list[Any]) -> None:
        """``values``: three columns (times, values as JSON text or mappings, hosts)."""
        times, vals, hosts = values if values else ([], [], [])
        self.rows = dict(zip(keys, zip(times, vals, hosts, strict=True), strict=True))
        if len(self.rows) != len(keys):
            raise ValueError("a stored join table repeats a key")
        self._requeue()


def _join_row(text: str) -> JoinRow | None:
    """A stored join row (time, host, values joined by US) with its values left as text."""
    parts = text.split("\x1f")
    if len(parts) != 3:
        return None
    try:
        t = datetime.fromisoformat(parts[0]) if parts[0] else None
        host = json.loads(parts[1])
    except ValueError:
        return None
    if host is not None and not isinstance(host, str):
        return None
    return (t, parts[2], host)


def _join_values(values: dict[str, str] | str) -> dict[str, str] | None:
    """A row's copied values, parsed when still text (None: damaged)."""
    if not isinstance(values, str):
        return values
    try:
        got = json.loads(values)
    except ValueError:
        return None
    return got if isinstance(got, dict) else None


# -- suppression and digests -------------------------------------------------------------------


@dataclass(slots=True)
class _Period:
    start: datetime | None
    host: str | None
    finding: Finding
    count: int
    last: datetime | None
    related: list[Related]

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "host": self.host,
            "finding": self.finding.as_dict(),
            "count": self.count,
            "last": _iso(self.last),
            "related": [r.as_dict() for r in self.related],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _Period:
        return cls(
            _dt(d["start"]),
            d["host"],
            Finding.from_dict(d["finding"]),
            int(d["count"]),
            _dt(d["last"]),
            [Related.from_dict(r) for r in d["related"]],
        )


class Suppressor(StoredPart):
    """``suppress:`` of one rule: fold occurrences per period and group key."""

    def __init__(self, rule: Rule, stats: DetectorStats, sample: int = 5) -> None:
        assert rule.suppress is not None
        self.rule = rule
        self.spec = rule.suppress
        self.stats = stats
        self.sample = sample
        self.periods: dict[GroupKey, _Period] = {}
        self.due = DueTimes()  # digest periods' ends, per host

    def offer(self, finding: Finding, event: Event, fields: Mapping[str, str]) -> list[Finding]:
        key = group_key(self.spec.group_by, event, fields)
        ts = event.timestamp
        out: list[Finding] = []
        cur = self.periods.get(key)
        if (
            cur is not None
            and ts is not None
            and cur.start is not None
            and ts >= cur.start + self.spec.period
        ):
            if self.spec.digest:
                out.append(self._digest(cur))
            del self.periods[key]
            cur = None
        if cur is None:
            self.periods[key] = _Period(
                ts, event.scope, finding, event.repeat, ts, [Related.of(event)]
            )
            self._moved(key)
            self.stats.suppressed += event.repeat - 1
            if ts is not None and self.spec.digest:  # only digests are judged at period end
                self.due.add(event.scope, ts + self.spec.period)
            self._bound(ts)
            if not self.spec.digest:
                out.append(finding)
            return out
        cur.count += event.repeat
        ch = self.changed
        if ch is not None and key not in ch:
            ch[key] = False
        if ts is not None and (cur.last is None or ts > cur.last):
            cur.last = ts
        if self.spec.examples == "ends" and len(cur.related) >= 2:
            cur.related[-1] = Related.of(event)  # the latest
        elif len(cur.related) < self.sample:
            cur.related.append(Related.of(event))
        self.stats.suppressed += event.repeat
        if not self.spec.digest:
            cur.finding = replace(
                cur.finding, count=cur.count, last_seen=cur.last, related=tuple(cur.related)
            )
            out.append(cur.finding)
        return out

    def _digest(self, p: _Period) -> Finding:
        first = p.finding
        span = ""
        if p.start is not None and p.last is not None:
            span = f" between {p.start.isoformat()} and {p.last.isoformat()}"
        return replace(
            first,
            message=f"{p.count} × {first.title}{span}; first: {first.message}",
            count=p.count,
            last_seen=p.last,
            related=tuple(p.related),
            fields=MappingProxyType({**first.fields, "digest": "true"}),
        )

    def _bound(self, now: datetime | None) -> None:
        if len(self.periods) <= MAX_OPEN:
            return
        if now is not None and not self.spec.digest:
            # periods are kept in start order (a new period is inserted last): ended ones
            # are at the front, and the walk stops at the first that has not ended
            while self.periods:
                key, p = next(iter(self.periods.items()))
                if p.start is None or p.start + self.spec.period >= now:
                    break
                del self.periods[key]
                self._gone(key)
        while len(self.periods) > MAX_OPEN:
            key = next(iter(self.periods))
            del self.periods[key]
            self._gone(key)
            self.stats.evicted[self.rule.id] += 1

    def judge(self, host: str | None, now: datetime) -> list[Finding]:
        """Close digest periods of ``host`` that ended before ``now``; forget old periods."""
        out: list[Finding] = []
        if not self.due.due(host, now, inclusive=True):
            return out
        for key, p in list(self.periods.items()):
            if p.host != host or p.start is None or p.start + self.spec.period > now:
                continue
            if self.spec.digest:
                out.append(self._digest(p))
            del self.periods[key]
            self._gone(key)
        self.due.reset(
            host,
            (
                p.start + self.spec.period
                for p in self.periods.values()
                if p.host == host and p.start is not None
            ),
        )
        return out

    def finish(self) -> list[Finding]:
        out = [self._digest(p) for p in self.periods.values()] if self.spec.digest else []
        if self.spec.digest:
            for key in self.periods:
                self._gone(key)
            self.periods.clear()
        return out

    def snapshot(self) -> dict[str, Any]:
        return {_key_text(k): p.as_dict() for k, p in self.periods.items()}

    def restore(self, data: Mapping[str, Any]) -> None:
        self.load_rows([_key_of(k) for k in data], list(data.values()))

    def keyed(self) -> Mapping[GroupKey, Any]:
        return self.periods

    def row(self, key: GroupKey) -> Any:
        return self.periods[key].as_dict()

    def load_rows(self, keys: list[GroupKey], values: list[Any]) -> None:
        self.periods = {k: _Period.from_dict(v) for k, v in zip(keys, values, strict=True)}
        self.due = DueTimes()
        for p in self.periods.values():
            if p.start is not None and self.spec.digest:
                self.due.add(p.host, p.start + self.spec.period)


# -- correlation rules ---------------------------------------------------------------------------


class CorrelationState(StoredPart):
    """Base of the three stateful rule kinds."""

    def __init__(self, rule: Rule, stats: DetectorStats) -> None:
        assert rule.correlation is not None
        self.rule = rule
        self.corr: Correlation = rule.correlation
        self.stats = stats

    def finding(
        self,
        event: Event,
        fields: Mapping[str, str],
        message: str,
        related: Iterable[Related],
        *,
        timestamp: datetime | None = None,
        count: int = 1,
        last_seen: datetime | None = None,
    ) -> Finding:
        return Finding(
            rule=self.rule.id,
            severity=self.rule.severity,
            title=self.rule.title,
            timestamp=timestamp if timestamp is not None else event.timestamp,
            host=event.host,
            program=event.program,
            source=event.source,
            line=event.line,
            message=message,
            fields=MappingProxyType(dict(fields)),
            tags=self.rule.tags,
            count=count,
            last_seen=last_seen,
            related=tuple(related)[: self.corr.sample],
        )

    def accepts_host(self, host: str | None) -> bool:
        """``select: host`` of a correlation rule (set per host through overrides)."""
        return _glob_match(host, self.rule.select.host)

    def on_match(self, rule_id: str, event: Event, fields: Mapping[str, str]) -> list[Finding]:
        raise NotImplementedError

    def judge(self, host: str | None, now: datetime) -> list[Finding]:
        return []

    def finish(self) -> None:
        return None

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, data: Mapping[str, Any]) -> None:
        raise NotImplementedError


class ThresholdState(CorrelationState):
    """At least ``count`` matches within ``window`` per group key: one finding per crossing.

    A match of a repeated line (``Event.repeat`` N) is N events of the window.
    """

    def __init__(self, rule: Rule, stats: DetectorStats) -> None:
        super().__init__(rule, stats)
        self.step: Step = self.corr.steps[0]
        #: per key, (time, reference, events it stands for), oldest first
        self.windows: dict[GroupKey, deque[tuple[datetime, Related, int]]] = {}
        #: per key, the events in its window (the sum of the window's third items)
        self.totals: dict[GroupKey, int] = {}
        self.fired: dict[GroupKey, Finding] = {}

    def on_match(self, rule_id: str, event: Event, fields: Mapping[str, str]) -> list[Finding]:
        ts = event.timestamp
        if (
            ts is None
            or not self.accepts_host(event.host)
            or not self.step.accepts(rule_id, event, fields)
        ):
            return []
        key = group_key(self.corr.group_by, event, fields)
        # windows are kept in order of last activity, so the stale ones are at the front
        win = self.windows.pop(key, None)
        if win is None:
            win = deque()
        self.windows[key] = win
        ch = self.changed
        if ch is not None:
            ch.pop(key, None)
            ch[key] = True
        n = self.totals.get(key, 0)
        while win and ts - win[0][0] > self.corr.window:
            n -= win.popleft()[2]
        if key in self.fired and n < self.corr.count:
            del self.fired[key]  # the window fell below the count: the next crossing is new
        weight = event.repeat
        win.append((ts, Related.of(event), weight))
        n += weight
        if len(win) > MAX_WINDOW_EVENTS:
            n -= win.popleft()[2]
        self.totals[key] = n
        if len(self.windows) > MAX_OPEN:
            self._evict(ts)
        done = self.fired.get(key)
        if done is None and n >= self.corr.count:
            f = self.finding(
                event,
                {**fields, "first_seen": win[0][0].isoformat()},
                f"{n} × {self.step.rule} within {_human(self.corr.window)}"
                f" (since {win[0][0].isoformat()})",
                (r for _, r, _ in win),
                count=n,
                last_seen=ts,
            )
            self.fired[key] = f
            return [f]
        if done is not None:
            updated = replace(done, count=done.count + weight, last_seen=ts)
            self.fired[key] = updated
            return [updated]
        return []

    def _evict(self, now: datetime) -> None:
        """Drop windows whose events are all older than the window (from the front: least
        recently active first); then the least recently active keys."""
        while self.windows:
            key, w = next(iter(self.windows.items()))
            if w and now - w[-1][0] <= self.corr.window:
                break
            del self.windows[key]
            self.totals.pop(key, None)
            self.fired.pop(key, None)
            self._gone(key)
        while len(self.windows) > MAX_OPEN:
            key = next(iter(self.windows))
            del self.windows[key]
            self.totals.pop(key, None)
            self.fired.pop(key, None)
            self._gone(key)
            self.stats.evicted[self.rule.id] += 1

    @staticmethod
    def _window_items(w: Iterable[tuple[datetime, Related, int]]) -> list[Any]:
        # a repeated line's weight as a third item (older snapshots have two)
        return [
            [t.isoformat(), r.as_dict()] if n == 1 else [t.isoformat(), r.as_dict(), n]
            for t, r, n in w
        ]

    @staticmethod
    def _window_of(items: Iterable[Any]) -> deque[tuple[datetime, Related, int]]:
        return deque(
            (datetime.fromisoformat(t), Related.from_dict(r), int(n[0]) if n else 1)
            for t, r, *n in items
        )

    def keyed(self) -> Mapping[GroupKey, Any]:
        return self.windows

    def row(self, key: GroupKey) -> Any:
        fired = self.fired.get(key)
        return [self._window_items(self.windows[key]), fired.as_dict() if fired else None]

    def load_rows(self, keys: list[GroupKey], values: list[Any]) -> None:
        self.windows = {k: self._window_of(v[0]) for k, v in zip(keys, values, strict=True)}
        self.totals = {k: sum(n for _, _, n in w) for k, w in self.windows.items()}
        self.fired = {k: Finding.from_dict(v[1]) for k, v in zip(keys, values, strict=True) if v[1]}

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": {_key_text(k): self._window_items(w) for k, w in self.windows.items()},
            "fired": {_key_text(k): f.as_dict() for k, f in self.fired.items()},
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        self.windows = {_key_of(k): self._window_of(w) for k, w in data["windows"].items()}
        self.totals = {k: sum(n for _, _, n in w) for k, w in self.windows.items()}
        self.fired = {_key_of(k): Finding.from_dict(f) for k, f in data["fired"].items()}


@dataclass(slots=True)
class _Partial:
    step: int
    start: datetime
    progress: int
    distinct: list[str]
    fields: dict[str, str]
    related: list[Related]

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "start": self.start.isoformat(),
            "progress": self.progress,
            "distinct": self.distinct,
            "fields": self.fields,
            "related": [r.as_dict() for r in self.related],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _Partial:
        return cls(
            int(d["step"]),
            datetime.fromisoformat(d["start"]),
            int(d["progress"]),
            list(d["distinct"]),
            dict(d["fields"]),
            [Related.from_dict(r) for r in d["related"]],
        )


class SequenceState(CorrelationState):
    """Steps in order within ``window`` per group key (which may name captured fields).

    A repeated line (``Event.repeat`` N) is one position in the order: it counts N towards
    its step's ``count`` (one value for a ``distinct`` step) and cannot also be a later step.
    """

    def __init__(self, rule: Rule, stats: DetectorStats) -> None:
        super().__init__(rule, stats)
        self.steps = self.corr.steps
        self.partials: dict[GroupKey, _Partial] = {}

    def _advance(self, p: _Partial, step: Step, event: Event, fields: Mapping[str, str]) -> None:
        if step.distinct is not None:
            value = _value(step.distinct, event, fields)
            if value is None or value in p.distinct:
                return
            p.distinct.append(value)
            p.progress = len(p.distinct)
        else:
            # a repeated line is N matches of this step, never also of the next one
            p.progress += event.repeat
        for k, v in fields.items():
            have = p.fields.setdefault(k, v)
            if have != v:  # a later step's different value: keep it too, as name.N
                p.fields.setdefault(f"{k}.{p.step + 1}", v)
        if len(p.related) < max(self.corr.sample, len(self.steps)):
            p.related.append(Related.of(event))
        if p.progress >= step.count:
            if step.distinct is not None and step.count > 1:
                # every distinct value of a counted step, e.g. the units that failed
                p.fields[f"{step.distinct}.{p.step + 1}"] = ", ".join(p.distinct)
            p.step += 1
            p.progress = 0
            p.distinct = []

    def on_match(self, rule_id: str, event: Event, fields: Mapping[str, str]) -> list[Finding]:
        ts = event.timestamp
        if ts is None or not self.accepts_host(event.host):
            return []
        key = group_key(self.corr.group_by, event, fields)
        p = self.partials.get(key)
        if p is not None and ts - p.start > self.corr.window:
            del self.partials[key]
            self._gone(key)
            self.stats.incomplete[self.rule.id] += 1
            p = None
        if p is not None:
            step = self.steps[p.step]
            if step.accepts(rule_id, event, fields):
                self._advance(p, step, event, fields)
                if p.step == len(self.steps):
                    del self.partials[key]
                    self._gone(key)
                    return [self._complete(p, event)]
                self._touched(key)
                return []
            if (
                p.step == 1
                and p.progress == 0
                and self.steps[0].count == 1
                and self.steps[0].accepts(rule_id, event, fields)
            ):
                # the first step again before the second began: the window now counts from
                # this latest start (a second slow boot, say); its lines join the evidence
                p.start = ts
                self._touched(key)
                for k, v in fields.items():
                    p.fields.setdefault(k, v)
                if len(p.related) < max(self.corr.sample, len(self.steps)):
                    p.related.append(Related.of(event))
            return []
        first = self.steps[0]
        if not first.accepts(rule_id, event, fields):
            return []
        p = _Partial(0, ts, 0, [], {}, [])
        self._advance(p, first, event, fields)
        if p.step == len(self.steps):  # pragma: no cover - a sequence has two steps or more
            return [self._complete(p, event)]
        self.partials[key] = p
        self._moved(key)
        while len(self.partials) > MAX_OPEN:
            gone = next(iter(self.partials))
            del self.partials[gone]
            self._gone(gone)
            self.stats.evicted[self.rule.id] += 1
        return []

    def _complete(self, p: _Partial, event: Event) -> Finding:
        names = " then ".join(s.rule + (f" ×{s.count}" if s.count > 1 else "") for s in self.steps)
        assert event.timestamp is not None
        took = event.timestamp - p.start
        return self.finding(
            event,
            p.fields,
            f"{names} on {event.host or 'one source'} within {_human(took)}"
            f" (started {p.start.isoformat()})",
            p.related,
            last_seen=event.timestamp,
        )

    def finish(self) -> None:
        self.stats.incomplete[self.rule.id] += len(self.partials)

    def snapshot(self) -> dict[str, Any]:
        return {_key_text(k): p.as_dict() for k, p in self.partials.items()}

    def restore(self, data: Mapping[str, Any]) -> None:
        self.partials = {_key_of(k): _Partial.from_dict(v) for k, v in data.items()}

    def keyed(self) -> Mapping[GroupKey, Any]:
        return self.partials

    def row(self, key: GroupKey) -> Any:
        return self.partials[key].as_dict()

    def load_rows(self, keys: list[GroupKey], values: list[Any]) -> None:
        self.partials = {k: _Partial.from_dict(v) for k, v in zip(keys, values, strict=True)}


@dataclass(slots=True)
class _Window:
    end: datetime
    host: str | None
    trigger: dict[str, Any]  # the trigger event, as Event.as_dict()
    fields: dict[str, str]


class AbsenceState(CorrelationState):
    """No ``expect`` within ``window`` after a ``trigger``; or, without a trigger, no
    ``expect`` for ``window`` on a host that keeps logging (a heartbeat)."""

    def __init__(self, rule: Rule, stats: DetectorStats) -> None:
        super().__init__(rule, stats)
        self.trigger = self.corr.trigger
        self.expect = self.corr.expect
        assert self.expect is not None
        self.windows: dict[GroupKey, _Window] = {}
        self.due = DueTimes()  # trigger windows' ends, per host
        # heartbeat: host -> [last expect (or first sight), alerted, last event as dict]
        self.beats: dict[str | None, list[Any]] = {}

    def on_match(self, rule_id: str, event: Event, fields: Mapping[str, str]) -> list[Finding]:
        ts = event.timestamp
        if ts is None or not self.accepts_host(event.host):
            return []
        assert self.expect is not None
        key = group_key(self.corr.group_by, event, fields)
        if self.expect.accepts(rule_id, event, fields):
            if self.trigger is None:
                self.beats[event.scope] = [ts, False, event.as_dict()]
            else:
                w = self.windows.get(key)
                if w is not None and ts <= w.end:
                    del self.windows[key]
                    self._gone(key)
        if (
            self.trigger is not None
            and self.trigger.accepts(rule_id, event, fields)
            and key not in self.windows
        ):
            self.windows[key] = _Window(
                ts + self.corr.window, event.scope, event.as_dict(), dict(fields)
            )
            self._moved(key)
            self.due.add(event.scope, ts + self.corr.window)
            while len(self.windows) > MAX_OPEN:
                gone = next(iter(self.windows))
                del self.windows[gone]
                self._gone(gone)
                self.stats.evicted[self.rule.id] += 1
        return []

    def judge(self, host: str | None, now: datetime) -> list[Finding]:
        out: list[Finding] = []
        assert self.expect is not None
        if self.trigger is None:
            # ``host`` is the scope: for lines without a host, their rotation set's name
            real = None if is_group(host) else host
            if not self.accepts_host(real):
                return out
            beat = self.beats.get(host)
            if beat is None:
                self.beats[host] = [now, False, None]
                return out
            last, alerted, ev = beat
            if not alerted and now - last > self.corr.window:
                beat[1] = True
                origin = (
                    Event.from_dict(ev)
                    if ev
                    else Event(
                        now, real, None, None, None, "", "", "", 0, group=None if real else host
                    )
                )
                out.append(
                    self.finding(
                        origin,
                        {"silent_since": last.isoformat()},
                        f"no {self.expect.rule} on {host or 'this source'} for "
                        f"{_human(self.corr.window)} (last at {last.isoformat()}) while it "
                        "kept logging",
                        [Related.of(origin)] if ev else [],
                        timestamp=last + self.corr.window,
                    )
                )
            return out
        if not self.due.due(host, now, inclusive=False):
            return out
        for key, w in list(self.windows.items()):
            if w.host != host or w.end >= now:
                continue
            del self.windows[key]
            self._gone(key)
            trig = Event.from_dict(w.trigger)
            out.append(
                self.finding(
                    trig,
                    w.fields,
                    f"{self.trigger.rule if self.trigger else ''} at "
                    f"{trig.timestamp.isoformat() if trig.timestamp else '?'} was not followed "
                    f"by {self.expect.rule} within {_human(self.corr.window)}",
                    [Related.of(trig)],
                    timestamp=w.end,
                )
            )
        self.due.reset(host, (w.end for w in self.windows.values() if w.host == host))
        return out

    def finish(self) -> None:
        # open trigger windows, and heartbeats whose quiet spell had not reached the window
        open_beats = sum(1 for b in self.beats.values() if not b[1])
        self.stats.expired_unjudged[self.rule.id] += len(self.windows) + open_beats

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": {
                _key_text(k): [w.end.isoformat(), w.host, w.trigger, w.fields]
                for k, w in self.windows.items()
            },
            "beats": [[h, b[0].isoformat(), b[1], b[2]] for h, b in self.beats.items()],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        self.load_rows([_key_of(k) for k in data["windows"]], list(data["windows"].values()))
        self.load_small(data)

    def keyed(self) -> Mapping[GroupKey, Any]:
        return self.windows

    def row(self, key: GroupKey) -> Any:
        w = self.windows[key]
        return [w.end.isoformat(), w.host, w.trigger, w.fields]

    def load_rows(self, keys: list[GroupKey], values: list[Any]) -> None:
        self.windows = {
            k: _Window(datetime.fromisoformat(e), h, t, dict(f))
            for k, (e, h, t, f) in zip(keys, values, strict=True)
        }
        self.due = DueTimes()
        for w in self.windows.values():
            self.due.add(w.host, w.end)

    def small(self) -> dict[str, Any]:
        # heartbeats are one per host: stored whole
        beats = [[h, b[0].isoformat(), b[1], b[2]] for h, b in self.beats.items()]
        return {"rows": len(self.windows), "beats": beats}

    def load_small(self, data: Mapping[str, Any]) -> None:
        self.beats = {h: [datetime.fromisoformat(t), a, ev] for h, t, a, ev in data["beats"]}


_KINDS: dict[str, type[CorrelationState]] = {
    "threshold": ThresholdState,
    "sequence": SequenceState,
    "absence": AbsenceState,
}


# -- the detector ----------------------------------------------------------------------------------


#: a changed row as the state database takes it: (key as JSON, value as JSON or None when
#: the key is gone, moved to the end of the stored order)
RowChange = tuple[str, str | None, bool]


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """A line rule the block path judges over columns (:meth:`Detector.column_rules`)."""

    rule: Rule
    order: int
    #: the message regex, None for a rule that only an event can test (other conditions)
    pattern: CompiledPattern | None
    literals: tuple[str, ...]
    captures: bool


@dataclass(frozen=True, slots=True)
class StateChanges:
    """What a checkpoint stores of the detector (:meth:`Detector.changes`).

    ``state`` holds the small, global parts whole (watermarks, reorder buffers, occurrence
    numbers, heartbeats, row counts); ``rows`` the changed rows of each stored part, in the
    order they take in the part; a part in ``rewrite`` has all its rows in ``rows`` and its
    stored rows are replaced. ``parts`` names every part the detector has: stored rows of
    any other part are removed.
    """

    state: dict[str, Any]
    parts: tuple[str, ...]
    rewrite: frozenset[str]
    rows: dict[str, list[RowChange]]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while millions of restored objects are built (each
    young-generation pass would walk them again)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Detector:
    """Events in, findings out; stateful on event time, resumable from a snapshot.

    The output of :meth:`process`, :meth:`observe` and :meth:`finish` is a list of findings;
    a finding whose ``key`` was emitted before is an update of it (``count``/``last_seen``).
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        lateness: timedelta = timedelta(0),
        external: Sequence[Rule] = (),
    ) -> None:
        self.rules = active_rules(rules)
        #: rules whose matches are decided outside (logcheck's verdicts, found over whole
        #: chunks): never matched here, but folded, kept in state and reported like others
        self.external = list(external)
        self.lateness = lateness
        self.stats = DetectorStats()
        self.line_rules = [r for r in self.rules if r.kind == "line"]
        self._any_program: list[Rule] = []
        self._by_program: dict[str, list[Rule]] = {}
        for rule in self.line_rules:
            progs = rule.select.program
            if progs and not any(ch in p for p in progs for ch in "*?["):
                for p in progs:
                    self._by_program.setdefault(p, []).append(rule)
            else:
                self._any_program.append(rule)
        self._order = {r.id: i for i, r in enumerate(self.line_rules)}
        self._line_by_id = {r.id: r for r in (*self.line_rules, *self.external)}
        self._plans: dict[str | None, list[PlanStep]] = {}
        self.states: dict[str, CorrelationState] = {
            r.id: _KINDS[r.kind](r, self.stats) for r in self.rules if r.correlation
        }
        self.subscribers: dict[str, list[CorrelationState]] = {}
        for st in self.states.values():
            for ref in st.corr.referenced():
                self.subscribers.setdefault(ref, []).append(st)
        self.suppressors = {
            r.id: Suppressor(r, self.stats)
            for r in (*self.rules, *self.external)
            if r.suppress is not None
        }
        self.tables: dict[str, EnrichTable] = {}
        self._sources: dict[str, list[EnrichTable]] = {}
        self._consumers: dict[str, list[EnrichTable]] = {}
        for r in self.rules:
            for i, spec in enumerate(r.enrich):
                name = f"{r.id}#{i}"
                table = EnrichTable(spec, self.stats, name)
                self.tables[name] = table
                self._sources.setdefault(spec.rule, []).append(table)
                self._consumers.setdefault(r.id, []).append(table)
        self.watermarks: dict[str | None, datetime] = {}
        self._buffer: dict[str | None, list[tuple[datetime, int, Match]]] = {}
        self._seq = 0
        self._recent_stamp: dict[str | None, str] = {}
        self._recent: dict[str | None, dict[str, int]] = {}
        self._judges: list[AbsenceState | Suppressor] = [
            *(s for s in self.states.values() if isinstance(s, AbsenceState)),
            *(s for s in self.suppressors.values() if s.spec.digest),
        ]
        self.parts: dict[str, StoredPart] = {
            **{f"{st.rule.kind}:{rid}": st for rid, st in self.states.items()},
            **{f"suppress:{rid}": sup for rid, sup in self.suppressors.items()},
            **{f"enrich:{name}": t for name, t in self.tables.items()},
        }
        #: parts whose stored rows a checkpoint replaces whole (None: not tracking)
        self._rewrite: set[str] | None = None

    # -- what events must carry ---------------------------------------------------------------

    def needs_body_fields(self) -> bool:
        """Whether any active rule reads a field only a body grammar provides.

        Body grammars cost as much as the envelope; when every field the rules read is an
        envelope field, a capture of the rule (or of the rules it names), a field copied by
        an enrichment, or a journal field, the engine skips them.
        """
        by_id = {r.id: r for r in self.rules}
        copied: dict[str, set[str]] = {}
        for r in self.rules:
            copied[r.id] = {c for e in r.enrich for c in e.copy}
        sources: dict[str, set[str]] = {}
        for r in self.rules:
            for e in r.enrich:
                sources.setdefault(e.rule, set()).update(e.by, e.copy)
        for r in self.rules:
            names = r.looked_up() | sources.get(r.id, set())
            own = r.captures() | copied.get(r.id, set())
            if r.correlation is not None:
                for ref in r.correlation.referenced():
                    if ref in by_id:
                        own |= by_id[ref].captures() | copied.get(ref, set())
            for name in names - own - ENVELOPE_FIELDS:
                if not (name.startswith("_") or name.isupper()):
                    return True
        return False

    def column_rules(self) -> list[ColumnRule] | None:
        """The rules as column rules (:mod:`pipeline.block`), or None when one of them needs
        events: anything stateful (correlations, suppression, enrichment, imported rules),
        or a selector or condition other than a program and one message regex."""
        if self.states or self.suppressors or self.tables or self.external:
            return None
        out: list[ColumnRule] = []
        for rule in self.rules:
            pattern = rule.message_search()
            if rule.kind != "line" or pattern is None or pattern.engine not in ("re2", "re"):
                return None
            if rule.report:  # a line rule that reports nothing feeds nothing here
                out.append(
                    ColumnRule(
                        rule,
                        len(out),
                        pattern,
                        tuple(rule.message_literals),
                        bool(pattern.group_names),
                    )
                )
        return out

    # -- matching ----------------------------------------------------------------------------

    def plan_for(self, program: str | None) -> list[PlanStep]:
        """The line rules that accept ``program``, in rule order, each with its message
        literals and, when a message regex is its only other test, that pattern."""
        got = self._plans.get(program)
        if got is None:
            rules = self._any_program + self._by_program.get(program or "", [])
            rules.sort(key=lambda r: self._order[r.id])
            got = [
                (rule, rule.message_literals, rule.message_search())
                for rule in rules
                if rule.select.accept_program(program)
            ]
            if len(self._plans) < 4096:
                self._plans[program] = got
        return got

    def match(self, event: Event) -> list[Match]:
        out = []
        message = event.message
        for rule, literals, pattern in self.plan_for(event.program):
            if literals:
                for literal in literals:
                    if literal in message:
                        break
                else:
                    continue
            captures = pattern.search(message) if pattern is not None else rule.evaluate_rest(event)
            if captures is not None:
                out.append(Match(rule, event, captures))
        return out

    # -- the stream ----------------------------------------------------------------------------

    def matched(self, event: Event, found: Iterable[tuple[str, dict[str, str]]]) -> list[Match]:
        """Matches of ``event`` found elsewhere (a worker) as (rule id, captured fields)."""
        return [Match(self._line_by_id[rule_id], event, fields) for rule_id, fields in found]

    def process(self, event: Event, matches: list[Match] | None = None) -> list[Finding]:
        """Findings (new or updated) caused by one event, in event-time order.

        ``matches`` are the event's rule matches when already known (see :meth:`matched`).
        """
        if matches is None:
            matches = self.match(event)
        self.stats.matches += len(matches)
        ts = event.timestamp
        if ts is None:
            out: list[Finding] = []
            for m in matches:
                out.extend(self._apply(m))
            return out
        scope = event.host
        if scope is None:  # Event.scope, inline: every candidate passes here
            scope = event.group
        if matches:
            heap = self._buffer.setdefault(scope, [])
            for m in matches:
                self._seq += 1
                heapq.heappush(heap, (ts, self._seq, m))
        return self.observe(scope, ts)

    def observe(self, host: str | None, ts: datetime) -> list[Finding]:
        """Time passes on ``host``: release buffered matches and judge what has ended."""
        wm = self.watermarks.get(host)
        if wm is None or ts > wm:
            self.watermarks[host] = wm = ts
        release = wm - self.lateness if self.lateness else wm
        out: list[Finding] = []
        heap = self._buffer.get(host)
        judges = self._judges
        while heap and heap[0][0] <= release:
            t, _, m = heapq.heappop(heap)
            if judges:
                out.extend(self._judge(host, t))
            out.extend(self._apply(m))
        if judges:
            out.extend(self._judge(host, release))
        return out

    def _judge(self, host: str | None, now: datetime) -> list[Finding]:
        out: list[Finding] = []
        for j in self._judges:
            out.extend(j.judge(host, now))
        return out

    def _apply(self, m: Match) -> list[Finding]:
        rule, event = m.rule, m.event
        fields = m.fields
        for table in self._consumers.get(rule.id, ()):
            got = table.lookup(event, fields)
            if got:
                self.stats.enriched += 1
                fields = {**fields, **{k: v for k, v in got.items() if k not in fields}}
        for table in self._sources.get(rule.id, ()):
            table.remember(event, fields)
        out: list[Finding] = []
        if rule.report:
            f = self._numbered(base_finding(rule, event, fields))
            sup = self.suppressors.get(rule.id)
            out.extend(sup.offer(f, event, fields) if sup else [f])
        for st in self.subscribers.get(rule.id, ()):
            out.extend(st.on_match(rule.id, event, fields))
        return out

    def _numbered(self, f: Finding) -> Finding:
        """Identical findings at the same time (repeated lines) get distinct occurrences."""
        if f.timestamp is None:
            return f
        stamp = f.timestamp.isoformat()
        if self._recent_stamp.get(f.host) != stamp:
            self._recent_stamp[f.host] = stamp
            self._recent[f.host] = {}
        seen = self._recent[f.host]
        base = f.key
        n = seen.get(base, 0)
        seen[base] = n + 1
        return replace(f, occurrence=n) if n else f

    def finish(self) -> list[Finding]:
        """End of input: release everything buffered, flush digests, count open windows."""
        out: list[Finding] = []
        for host in list(self._buffer):
            heap = self._buffer[host]
            while heap:
                t, _, m = heapq.heappop(heap)
                out.extend(self._judge(host, t))
                out.extend(self._apply(m))
        for sup in self.suppressors.values():
            out.extend(sup.finish())
        for st in self.states.values():
            st.finish()
        return out

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """All state as JSON-able data (see :meth:`restore`)."""
        return {
            "version": 1,
            **self._globals(),
            "states": {rid: st.snapshot() for rid, st in self.states.items()},
            "suppress": {rid: s.snapshot() for rid, s in self.suppressors.items()},
            "enrich": {name: t.snapshot() for name, t in self.tables.items()},
        }

    def _globals(self) -> dict[str, Any]:
        return {
            "watermarks": [[h, t.isoformat()] for h, t in self.watermarks.items()],
            "buffer": [
                [
                    h,
                    [
                        [t.isoformat(), s, m.rule.id, m.event.as_dict(), m.fields]
                        for t, s, m in heap
                    ],
                ]
                for h, heap in self._buffer.items()
                if heap
            ],
            "seq": self._seq,
            "recent": [[h, self._recent_stamp[h], seen] for h, seen in self._recent.items()],
        }

    # -- incremental state (the daemon) --------------------------------------------------------

    def track_changes(self) -> None:
        """Remember which keys change, for :meth:`changes`. Until a :meth:`restore`, the
        first checkpoint replaces every stored part."""
        for part in self.parts.values():
            part.changed = {}
        self._rewrite = set(self.parts)

    def changes(self) -> StateChanges:
        """What changed since the last call (everything, for parts to be rewritten), in the
        form the state database stores (:class:`StateChanges`); tracking starts afresh."""
        if self._rewrite is None:
            raise RuntimeError("changes() needs track_changes() first")
        rows: dict[str, list[RowChange]] = {}
        small: dict[str, dict[str, Any]] = {"states": {}, "suppress": {}, "enrich": {}}
        for name, part in self.parts.items():
            kind, _, ident = name.partition(":")
            small["suppress" if kind == "suppress" else "enrich" if kind == "enrich" else "states"][
                ident
            ] = part.small()
            live = part.keyed()
            if name in self._rewrite:
                rows[name] = [(_key_text(k), part.encode(k), True) for k in live]
            elif part.changed:
                rows[name] = [
                    (_key_text(k), part.encode(k), moved)
                    if k in live
                    else (_key_text(k), None, True)
                    for k, moved in part.changed.items()
                ]
            part.changed = {}
        rewrite = frozenset(self._rewrite)
        self._rewrite = set()
        return StateChanges(
            {"version": 2, **self._globals(), **small}, tuple(self.parts), rewrite, rows
        )

    def stored_size(self) -> int:
        """Entries held in the stored parts (join rows, open windows, periods)."""
        return sum(len(part.keyed()) for part in self.parts.values())

    def unstored(self, changes: StateChanges) -> None:
        """``changes`` (from :meth:`changes`) did not reach the state database: mark them
        again, before anything that changed since, so the next checkpoint writes them."""
        if self._rewrite is None:
            return
        self._rewrite |= changes.rewrite
        for name, rows in changes.rows.items():
            part = self.parts.get(name)
            if part is None or part.changed is None:
                continue
            again: Changes = {_key_of(k): moved for k, _, moved in rows}
            for key, moved in part.changed.items():
                if moved:
                    again.pop(key, None)
                    again[key] = True
                else:
                    again.setdefault(key, False)
            part.changed = again

    def continue_from(self, old: Detector) -> None:
        """After :meth:`restore` from ``old``'s snapshot (a reload): carry on with what
        ``old`` had not stored yet, instead of rewriting every part."""
        if self._rewrite is None or old._rewrite is None:
            return
        dropped = set(self.stats.dropped_state)
        for name, part in self.parts.items():
            prev = old.parts.get(name)
            if prev is None or prev.changed is None or name in old._rewrite:
                continue
            if name.partition(":")[2] in dropped:
                continue
            part.changed = dict(prev.changed)
            self._rewrite.discard(name)

    def restore(
        self,
        data: Mapping[str, Any],
        rows: Mapping[str, tuple[list[Any], list[Any]]] | None = None,
    ) -> None:
        """Continue from a :meth:`snapshot`, or from what checkpoints stored (the ``state``
        of :meth:`changes` and the stored ``rows``, per part: keys and values in their
        stored order); state of rules no longer loaded is dropped."""
        version = data.get("version")
        if version == 2 and rows is not None:
            self._restore_stored(data, rows)
            return
        if version != 1:
            raise ValueError("unknown detector state version")
        self._restore_globals(data)
        # state saved for a rule whose definition changed shape is dropped, not fatal
        for rid, st_data in data["states"].items():
            if rid in self.states:
                self._restore_part(rid, self.states[rid].restore, st_data)
        for rid, s_data in data["suppress"].items():
            if rid in self.suppressors:
                self._restore_part(rid, self.suppressors[rid].restore, s_data)
        for name, t_data in data["enrich"].items():
            if name in self.tables:
                self._restore_part(name, self.tables[name].restore, t_data)
        if self._rewrite is not None:
            self._rewrite = set(self.parts)  # a whole snapshot: stored rows are replaced once

    def _restore_stored(
        self, data: Mapping[str, Any], rows: Mapping[str, tuple[list[Any], list[Any]]]
    ) -> None:
        self._restore_globals(data)
        small = {
            **{
                f"{self.states[r].rule.kind}:{r}": v
                for r, v in data["states"].items()
                if r in self.states
            },
            **{f"suppress:{r}": v for r, v in data["suppress"].items()},
            **{f"enrich:{n}": v for n, v in data["enrich"].items()},
        }
        rewrite: set[str] = set()
        for name, part in self.parts.items():
            keys, values = rows.get(name, ([], []))
            ident = name.partition(":")[2]
            before = len(self.stats.dropped_state)
            self._restore_part(ident, part.load_stored, (keys, values, small.get(name)))
            if len(self.stats.dropped_state) > before:
                part.load_rows([], [])  # nothing half-restored
                rewrite.add(name)
        # a rule whose kind changed keeps its id under another part name
        loaded = {n.partition(":")[2] for n in self.parts}
        for name, (keys, _) in rows.items():
            ident = name.partition(":")[2]
            if keys and name not in self.parts and ident in loaded:
                self.stats.dropped_state.append(ident)
        if self._rewrite is not None:
            self._rewrite = rewrite
            for part in self.parts.values():
                part.changed = {}

    def _restore_globals(self, data: Mapping[str, Any]) -> None:
        by_id = {r.id: r for r in (*self.rules, *self.external)}
        self.watermarks = {h: datetime.fromisoformat(t) for h, t in data["watermarks"]}
        self._buffer = {}
        for h, items in data["buffer"]:
            heap = []
            for t, s, rid, ev, fields in items:
                if rid in by_id:
                    heap.append(
                        (
                            datetime.fromisoformat(t),
                            s,
                            Match(by_id[rid], Event.from_dict(ev), dict(fields)),
                        )
                    )
            heapq.heapify(heap)
            self._buffer[h] = heap
        self._seq = int(data["seq"])
        self._recent_stamp = {h: st for h, st, _ in data.get("recent", [])}
        self._recent = {h: dict(seen) for h, _, seen in data.get("recent", [])}

    def _restore_part(self, name: str, restore: Any, data: Any) -> None:
        try:
            restore(data)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            self.stats.dropped_state.append(name)
