"""The layout of logwarden's DataFrames: columns, dtypes, and frames built from values.

Both the pandas API (:mod:`pipeline.analysis`) and the stores (:mod:`pipeline.store`) import
it, so that a stored frame and a scanned one are built by the same code:

* times are tz-aware (``datetime64[ns, tz]``), in the zone asked for (default: the
  machine's), missing times are ``NaT``;
* ``host``, ``program``, ``rule``, ``format``, ``source`` and ``level`` are categoricals;
  ``severity`` is an ordered categorical ``info < low < medium < high < critical``;
* a finding's captured ``fields`` stay one column of dicts (each rule captures different
  names).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import pandas as pd

from pipeline.model import Event, Finding, Severity
from pipeline.timeinfer import parse_zone

#: severity as an ordered categorical: ``df[df.severity >= "high"]`` works
SEVERITY_DTYPE = pd.CategoricalDtype([str(s) for s in Severity], ordered=True)

#: the columns of :func:`read_events` frames, in order
EVENT_COLUMNS = (
    "timestamp",
    "host",
    "program",
    "pid",
    "level",
    "message",
    "format",
    "source",
    "line",
    "year_inferred",
    "repeat",
)
#: the columns of findings frames, in order
FINDING_COLUMNS = (
    "timestamp",
    "last_seen",
    "severity",
    "rule",
    "title",
    "host",
    "program",
    "count",
    "message",
    "source",
    "line",
    "tags",
    "fields",
    "key",
)
_EVENT_CATEGORIES = ("host", "program", "level", "format", "source")
_FINDING_CATEGORIES = ("rule", "host", "program", "source")

ZoneArg = tzinfo | str | None


def zone_of(tz: ZoneArg) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    return parse_zone(tz)


# -- frames from objects ---------------------------------------------------------------------


def times(values: Sequence[datetime | None], zone: tzinfo) -> pd.Series:
    """tz-aware datetimes (any offsets) as one ``datetime64[ns, zone]`` column."""
    idx = pd.to_datetime(pd.Series(list(values), dtype=object), utc=True)
    return idx.dt.tz_convert(zone).astype(pd.DatetimeTZDtype("ns", zone))


def category(values: Iterable[str | None] | pd.Series) -> pd.Categorical[Any]:
    """Text as a categorical of ``str`` categories (sorted; missing values ``NaN``)."""
    text = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    return pd.Categorical(text.astype("str").where(text.notna()))


def empty_findings(tz: ZoneArg = None) -> pd.DataFrame:
    """A findings frame without rows (the right columns and dtypes)."""
    return findings_frame([], tz=tz)


def findings_frame(findings: Sequence[Finding], tz: ZoneArg = None) -> pd.DataFrame:
    """Findings as a DataFrame, one row each, ordered by time, source and line."""
    zone = zone_of(tz)
    rows = sorted(
        findings,
        key=lambda f: (
            f.timestamp.timestamp() if f.timestamp else float("-inf"),
            f.source,
            f.line,
        ),
    )
    frame = pd.DataFrame(
        {
            "timestamp": times([f.timestamp for f in rows], zone),
            "last_seen": times([f.last_seen or f.timestamp for f in rows], zone),
            "severity": pd.Categorical([str(f.severity) for f in rows], dtype=SEVERITY_DTYPE),
            "rule": category(f.rule for f in rows),
            "title": pd.Series([f.title for f in rows], dtype="str"),
            "host": category(f.host for f in rows),
            "program": category(f.program for f in rows),
            "count": pd.Series([f.count for f in rows], dtype="int64"),
            "message": pd.Series([f.message for f in rows], dtype="str"),
            "source": category(f.source for f in rows),
            "line": pd.Series([f.line for f in rows], dtype="int64"),
            "tags": pd.Series([list(f.tags) for f in rows], dtype=object),
            "fields": pd.Series([dict(f.fields) for f in rows], dtype=object),
            "key": pd.Series([f.key for f in rows], dtype="str"),
        },
        columns=list(FINDING_COLUMNS),
    )
    return frame


def events_frame(events: Iterable[Event], tz: ZoneArg = None) -> pd.DataFrame:
    """Events as a DataFrame (the columns of :data:`EVENT_COLUMNS`), in the order given."""
    raw = objects_frame(list(events))
    return finish_events(raw, zone_of(tz))


def finish_events(raw: pd.DataFrame, zone: tzinfo) -> pd.DataFrame:
    """Final dtypes of an events frame built from plain columns (UTC times)."""
    out = raw.reset_index(drop=True)
    out["timestamp"] = out["timestamp"].dt.tz_convert(zone)
    for name in _EVENT_CATEGORIES:
        out[name] = category(out[name])
    out["message"] = out["message"].astype("str")
    return out[list(EVENT_COLUMNS)]


def objects_frame(events: list[Event]) -> pd.DataFrame:
    """A raw frame (UTC times, plain columns) of events read by the grammars."""
    return pd.DataFrame(
        {
            "timestamp": times([e.timestamp for e in events], UTC),
            "host": pd.Series([e.host for e in events], dtype=object),
            "program": pd.Series([e.program for e in events], dtype=object),
            "pid": pd.array([e.pid for e in events], dtype="Int64"),
            "level": pd.Series([e.level for e in events], dtype=object),
            "message": pd.Series([e.message for e in events], dtype=object),
            "format": pd.Series([e.format for e in events], dtype=object),
            "source": pd.Series([e.source for e in events], dtype=object),
            "line": pd.Series([e.line for e in events], dtype="int64"),
            "year_inferred": pd.Series([e.year_inferred for e in events], dtype=bool),
            "repeat": pd.Series([e.repeat for e in events], dtype="int64"),
        }
    )
