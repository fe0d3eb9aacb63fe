"""Turning what a line says about time into a tz-aware datetime.

BSD syslog lines carry no year and no zone; Apache error logs carry no zone. The engine
resolves them here, per input, from context:

* the zone is ``--tz`` (default: the machine's local zone);
* the year of the first year-less line is the latest year that does not put it after the
  file's reference time (its mtime, or "now" for stdin), i.e. logs are never in the future;
  ``--year`` sets that first year instead;
* afterwards the year advances when time runs backwards by more than a week (Dec → Jan),
  and a line that only fits as coming just before the latest line of the previous year (a
  late line around New Year) takes the previous year without moving the running state.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import UsageError

UTC = ZoneInfo("UTC")
#: clock skew tolerated before a year-less line counts as "in the future"
FUTURE_SLACK = timedelta(days=1)
#: how far lines of merged files may be out of order without meaning a new year
REORDER = timedelta(days=7)


#: a POSIX TZ rule (``UTC0``, ``CET-1CEST,M3.5.0,M10.5.0/3``): an offset or a rule after the name
_POSIX_RULE = re.compile(r"^[A-Za-z]{3,}[+-]?\d|^<[^>]*>|,M\d")
_ZONE_HINT = "use an IANA name such as Europe/Berlin or UTC"


def _zone_error(name: str, origin: str = "") -> UsageError:
    hint = _ZONE_HINT
    if _POSIX_RULE.search(name):
        hint = f"a POSIX TZ rule cannot be read here; {hint}"
    where = f" (from {origin})" if origin else ""
    return UsageError(f"unknown time zone {name!r}{where}", hint=hint)


def local_zone() -> tzinfo:
    """The machine's zone: ``$TZ`` when set and not empty, else ``/etc/localtime``, else UTC.

    A ``$TZ`` that names no zone (a typo, or a POSIX rule such as ``CET-1CEST,M3.5.0``) is a
    :class:`UsageError`, as a bad ``--tz`` is: it is never silently read as UTC.
    """
    tz = os.environ.get("TZ")
    if tz:
        name = tz.removeprefix(":")
        if name.startswith("/"):
            try:
                with open(name, "rb") as f:
                    return ZoneInfo.from_file(f, key=name)
            except (OSError, ValueError):
                raise _zone_error(tz, "$TZ") from None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise _zone_error(tz, "$TZ") from None
    localtime = Path("/etc/localtime")
    if localtime.exists():
        try:
            with localtime.open("rb") as f:
                return ZoneInfo.from_file(f, key="localtime")
        except (OSError, ValueError):
            pass
    return UTC


def parse_zone(name: str | None) -> tzinfo:
    if not name:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _zone_error(name) from None


_FIXED_ZONES: dict[timedelta, timezone] = {}


def fixed_zone(off: timedelta) -> timezone:
    """The fixed-offset zone of ``off`` (one object per offset)."""
    zone = _FIXED_ZONES.get(off)
    if zone is None:
        zone = _FIXED_ZONES[off] = timezone(off)
    return zone


def fixed_offset(ts: datetime) -> datetime:
    """The same instant with a fixed-offset zone (the offset in force at that time).

    Two datetimes sharing one ZoneInfo subtract and compare as wall-clock times, which is
    wrong across a DST change; with fixed offsets Python compares real instants, so windows
    measured on event time stay right, also after a resume from saved state.
    """
    off = ts.utcoffset()
    if off is None or isinstance(ts.tzinfo, timezone):
        return ts
    return ts.replace(tzinfo=fixed_zone(off))


def _safe_replace_year(ts: datetime, year: int) -> datetime:
    year = min(max(year, 1), 9999)
    try:
        return ts.replace(year=year)
    except ValueError:  # Feb 29 in a non-leap year: the nearest leap year
        for y in (*range(year - 1, max(year - 8, 0), -1), *range(year + 1, min(year + 8, 10000))):
            try:
                return ts.replace(year=y)
            except ValueError:
                continue
        return ts.replace(year=2000)


class TimeResolver:
    """Resolves naive / year-less grammar timestamps of one input, in input order."""

    def __init__(self, tz: tzinfo, reference: datetime, year: int | None = None) -> None:
        self.tz = tz
        self.reference = reference.astimezone(tz)
        self.fixed_year = year
        #: the latest naive time a year-less line may get (the reference plus slack)
        self.limit = (self.reference + FUTURE_SLACK).replace(tzinfo=None)
        self._last: datetime | None = None
        self._low = self._high = datetime.min

    @property
    def last(self) -> datetime | None:
        """The latest naive year-resolved time so far."""
        return self._last

    @last.setter
    def last(self, value: datetime | None) -> None:
        self._last = value
        if value is not None:
            self._low, self._high = value - REORDER, value + REORDER

    def localize(self, naive: datetime) -> datetime:
        """``naive`` wall time in the zone, with the fixed offset in force then (the
        time :meth:`resolve` gives for a wall time it has placed in a year)."""
        return self._aware(naive)

    def _aware(self, naive: datetime) -> datetime:
        """``naive`` wall time in the zone, with the fixed offset in force then."""
        off = self.tz.utcoffset(naive)
        if off is None:
            return naive.replace(tzinfo=self.tz)
        return naive.replace(tzinfo=fixed_zone(off))

    def _first_year(self, ts: datetime) -> int:
        if self.fixed_year is not None:
            return self.fixed_year
        ref = self.reference + FUTURE_SLACK
        year = ref.year
        if _safe_replace_year(ts, year).replace(tzinfo=self.tz) > ref:
            year -= 1
        return year

    def resolve(self, ts: datetime, year_missing: bool) -> datetime:
        """An aware datetime for a grammar timestamp (aware ones pass through)."""
        if ts.tzinfo is not None:
            return fixed_offset(ts)
        if not year_missing:
            return self._aware(ts)
        last = self._last
        if last is None:
            self.last = _safe_replace_year(ts, self._first_year(ts))
            assert self._last is not None
            return self._aware(self._last)
        here = _safe_replace_year(ts, last.year)
        if here < self._low:
            # time ran backwards by more than a reordering: a new year began (Dec -> Jan)
            here = _safe_replace_year(ts, last.year + 1)
        elif here > self._high:
            before = _safe_replace_year(ts, last.year - 1)
            if self._low <= before <= last:
                # a late line from just before New Year, written after January began
                return self._aware(before)
        if self.fixed_year is None and here > self.limit:
            # later than the file was last written: a year too far; take the one before
            return self._aware(_safe_replace_year(ts, here.year - 1))
        if here > last:
            self.last = here
        return self._aware(here)


#: journalctl's time units (systemd.time(7)): a month is 30.44 days, a year 365.25 days
_UNITS: dict[str, float] = {
    **dict.fromkeys(("us", "usec", "µs"), 1e-6),
    **dict.fromkeys(("ms", "msec"), 1e-3),
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400.0),
    **dict.fromkeys(("M", "month", "months"), 30.44 * 86400),
    **dict.fromkeys(("y", "year", "years"), 365.25 * 86400),
}
_SPAN_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Zµ]+)")
_DAYS = {"today": 0, "yesterday": -1, "tomorrow": 1}
_WHEN_HINT = (
    "use ISO 8601 (2026-11-30, 2026-11-30T08:00), a time relative to now (-2h, -1h30min, "
    "+1d, '2h ago') or now, today, yesterday, tomorrow"
)


def _span(text: str) -> float | None:
    """Seconds of a systemd time span (``1h30min``, ``2 d``), or None when it is not one."""
    pos, total = 0, 0.0
    while pos < len(text):
        m = _SPAN_PART.match(text, pos)
        if m is None or m.group(2) not in _UNITS:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total if pos else None


def parse_when(text: str, tz: tzinfo, now: datetime | None = None) -> datetime:
    """``--since``/``--until`` values, as journalctl takes them.

    ISO 8601 dates or datetimes (naive ones are in ``tz``); ``now``; ``today``,
    ``yesterday``, ``tomorrow`` (midnight in ``tz``); a time span before or after ``now``:
    ``-2h``, ``+1d``, ``-1h30min``, ``2h ago`` (units: us, ms, s, min, h, d, w, M, y and
    their long names).
    """
    value = text.strip()
    lower = value.lower()
    if lower == "now" or lower in _DAYS or value[:1] in ("+", "-") or lower.endswith(" ago"):
        current = (now or datetime.now(UTC)).astimezone(tz)
        if lower == "now":
            return current
        if lower in _DAYS:
            day = current.date() + timedelta(days=_DAYS[lower])
            return datetime(day.year, day.month, day.day, tzinfo=tz)
        if lower.endswith(" ago"):
            sign, body = -1, value[:-4].strip()
        else:
            sign, body = (-1 if value[0] == "-" else 1), value[1:].strip()
        seconds = _span(body)
        if seconds is None:
            raise UsageError(f"cannot read time {text!r}", hint=_WHEN_HINT)
        try:
            return current + sign * timedelta(seconds=seconds)
        except OverflowError:
            raise UsageError(f"time {text!r} is out of range", hint=_WHEN_HINT) from None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise UsageError(f"cannot read time {text!r}", hint=_WHEN_HINT) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt
