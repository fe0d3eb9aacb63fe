"""Findings and events as Parquet datasets, partitioned by day (needs pyarrow).

Layout under the directory::

    findings/date=2026-11-30/part-<scan>-0.parquet
    events/date=2026-11-30/part-<scan>-0.parquet

``date`` is the day of the row's time in UTC (``unknown`` for rows without a time). Times are
stored as UTC timestamps, a finding's ``fields`` as a ``map<string, string>`` and its ``tags``
as a list, so duckdb (``read_parquet('DIR/findings/*/*.parquet', hive_partitioning=true)``),
pyarrow and pandas read them without logwarden. Each write adds files; nothing is rewritten.
Findings carry ``stored_at``: reading back keeps the latest version of each key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import UsageError
from pipeline.schema import (
    EVENT_COLUMNS,
    FINDING_COLUMNS,
    SEVERITY_DTYPE,
    ZoneArg,
    category,
    empty_findings,
    events_frame,
    finish_events,
    zone_of,
)


def _arrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(
            "Parquet needs pyarrow", hint="pip install 'logwarden[analysis]'"
        ) from None
    return pa, pq, ds


def _dates(ts: pd.Series) -> list[str]:
    utc = ts.dt.tz_convert("UTC")
    return [d if isinstance(d, str) else "unknown" for d in utc.dt.strftime("%Y-%m-%d")]


def _write(table: Any, root: Path, tag: str) -> int:
    _, pq, _ = _arrow()
    root.mkdir(parents=True, exist_ok=True)
    pq.write_to_dataset(
        table,
        root_path=str(root),
        partition_cols=["date"],
        basename_template=f"part-{tag}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
    )
    return int(table.num_rows)


def _time_array(pa: Any, ts: pd.Series) -> Any:
    return pa.array(ts.dt.tz_convert("UTC"), type=pa.timestamp("ns", tz="UTC"))


def _text(pa: Any, values: pd.Series) -> Any:
    return pa.array([None if pd.isna(v) else str(v) for v in values], type=pa.string())


def write_findings(directory: str | Path, findings: pd.DataFrame) -> int:
    """Append a findings frame to ``DIRECTORY/findings``; return the rows written."""
    pa, _, _ = _arrow()
    if not len(findings):
        return 0
    now = pd.Timestamp(datetime.now(UTC))
    table = pa.table(
        {
            "timestamp": _time_array(pa, findings["timestamp"]),
            "last_seen": _time_array(pa, findings["last_seen"]),
            "severity": _text(pa, findings["severity"]),
            "rule": _text(pa, findings["rule"]),
            "title": _text(pa, findings["title"]),
            "host": _text(pa, findings["host"]),
            "program": _text(pa, findings["program"]),
            "count": pa.array(findings["count"].to_numpy(), type=pa.int64()),
            "message": _text(pa, findings["message"]),
            "source": _text(pa, findings["source"]),
            "line": pa.array(findings["line"].to_numpy(), type=pa.int64()),
            "tags": pa.array([list(t) for t in findings["tags"]], type=pa.list_(pa.string())),
            "fields": pa.array(
                [sorted(f.items()) for f in findings["fields"]],
                type=pa.map_(pa.string(), pa.string()),
            ),
            "key": _text(pa, findings["key"]),
            "stored_at": pa.array([now] * len(findings), type=pa.timestamp("ns", tz="UTC")),
            "date": pa.array(_dates(findings["timestamp"]), type=pa.string()),
        }
    )
    return _write(table, Path(directory) / "findings", uuid.uuid4().hex[:12])


def write_events(directory: str | Path, frames: Iterable[pd.DataFrame]) -> int:
    """Append event frames (e.g. ``read_events(..., batch_size=N)``) to ``DIRECTORY/events``."""
    pa, _, _ = _arrow()
    tag = uuid.uuid4().hex[:12]
    total = 0
    for n, frame in enumerate(frames):
        if not len(frame):
            continue
        table = pa.table(
            {
                "timestamp": _time_array(pa, frame["timestamp"]),
                "host": _text(pa, frame["host"]),
                "program": _text(pa, frame["program"]),
                "pid": pa.array(frame["pid"].astype("Int64"), type=pa.int64()),
                "level": _text(pa, frame["level"]),
                "message": _text(pa, frame["message"]),
                "format": _text(pa, frame["format"]),
                "source": _text(pa, frame["source"]),
                "line": pa.array(frame["line"].to_numpy(), type=pa.int64()),
                "year_inferred": pa.array(frame["year_inferred"].to_numpy(), type=pa.bool_()),
                "repeat": pa.array(frame["repeat"].to_numpy(), type=pa.int64()),
                "date": pa.array(_dates(frame["timestamp"]), type=pa.string()),
            }
        )
        total += _write(table, Path(directory) / "events", f"{tag}-{n}")
    return total


def _read(root: Path) -> pd.DataFrame | None:
    _, _, ds = _arrow()
    if not root.is_dir() or not any(root.rglob("*.parquet")):
        return None
    table = ds.dataset(str(root), format="parquet", partitioning="hive").to_table()
    return pd.DataFrame(
        {name: table.column(name).to_pylist() for name in table.column_names if name != "date"}
    )


def load_parquet_findings(directory: str | Path, *, tz: ZoneArg = None) -> pd.DataFrame:
    """The findings under ``DIRECTORY/findings`` as a findings frame (latest version per key)."""
    zone = zone_of(tz)
    raw = _read(Path(directory) / "findings")
    if raw is None or not len(raw):
        return empty_findings(zone)
    raw = raw.sort_values("stored_at", kind="stable").drop_duplicates("key", keep="last")
    out = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(raw["timestamp"], utc=True).dt.tz_convert(zone),
            "last_seen": pd.to_datetime(raw["last_seen"], utc=True).dt.tz_convert(zone),
            "severity": pd.Categorical(raw["severity"], dtype=SEVERITY_DTYPE),
            "rule": pd.Categorical(raw["rule"]),
            "title": raw["title"].astype("str"),
            "host": pd.Categorical(raw["host"]),
            "program": pd.Categorical(raw["program"]),
            "count": raw["count"].astype("int64"),
            "message": raw["message"].astype("str"),
            "source": pd.Categorical(raw["source"]),
            "line": raw["line"].astype("int64"),
            "tags": pd.Series([list(t or ()) for t in raw["tags"]], index=raw.index, dtype=object),
            "fields": pd.Series(
                [dict(f or ()) for f in raw["fields"]], index=raw.index, dtype=object
            ),
            "key": raw["key"].astype("str"),
        },
        columns=list(FINDING_COLUMNS),
    )
    for col in ("timestamp", "last_seen"):
        out[col] = out[col].astype(pd.DatetimeTZDtype("ns", zone))
    out = out.sort_values(
        ["timestamp", "source", "line"], na_position="first", kind="stable"
    ).reset_index(drop=True)
    # categories as findings_frame makes them: sorted, from the values present
    for col in ("rule", "host", "program", "source"):
        out[col] = category(out[col].astype(object))
    return out


def load_events(directory: str | Path, *, tz: ZoneArg = None) -> pd.DataFrame:
    """The events under ``DIRECTORY/events`` as a :func:`~pipeline.analysis.read_events` frame."""
    zone = zone_of(tz)
    raw = _read(Path(directory) / "events")
    if raw is None:
        return events_frame([], tz=zone)
    raw = raw.sort_values(["source", "line"], kind="stable").reset_index(drop=True)
    raw["timestamp"] = pd.to_datetime(raw["timestamp"], utc=True)
    raw["pid"] = raw["pid"].astype("Int64")
    raw["year_inferred"] = raw["year_inferred"].astype(bool)
    if "repeat" not in raw:  # written before the column existed
        raw["repeat"] = 1
    return finish_events(raw[list(EVENT_COLUMNS)], zone)
