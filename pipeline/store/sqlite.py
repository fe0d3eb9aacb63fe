"""Findings and scan metadata in SQLite, with the daemon's state-database schema.

``scan --store FILE`` appends: the findings go into the ``findings`` table keyed by
:attr:`~pipeline.model.Finding.key` (a finding seen again updates its row: ``count``,
``last_seen``, ``data``), and one row goes into ``scans`` (start, end, paths, counts) with
the keys it reported in ``scan_findings``, all in one transaction. Stored findings are
marked emitted: a scan writes its own output, so a daemon sharing the file never sends them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.errors import Location
from pipeline.model import Finding
from pipeline.schema import ZoneArg, findings_frame
from pipeline.state import StateDB, StateError


def save_scan(
    path: str | Path,
    findings: Sequence[Finding],
    *,
    paths: Sequence[str],
    started: datetime,
    finished: datetime,
    counts: Mapping[str, object],
) -> int:
    """Append a scan's findings and metadata to the SQLite store; return the scan's id."""
    now = time.time()
    with StateDB(path) as db, db.conn:
        db.conn.execute("BEGIN IMMEDIATE")
        cur = db.conn.execute(
            "INSERT INTO scans(started, finished, paths, counts) VALUES (?,?,?,?)",
            (
                started.isoformat(),
                finished.isoformat(),
                json.dumps(list(paths), ensure_ascii=False),
                json.dumps(dict(counts), ensure_ascii=False),
            ),
        )
        scan_id = int(cur.lastrowid or 0)
        for f in findings:
            d = f.as_dict()
            data = json.dumps(d, ensure_ascii=False)
            db.conn.execute(
                "INSERT INTO findings(key, rule, severity, timestamp, host, count, last_seen,"
                " data, stored_at, emitted) VALUES (?,?,?,?,?,?,?,?,?,1)"
                " ON CONFLICT(key) DO UPDATE SET count=excluded.count,"
                " last_seen=excluded.last_seen, data=excluded.data",
                (
                    f.key,
                    f.rule,
                    d["severity"],
                    d["timestamp"],
                    f.host,
                    f.count,
                    d["last_seen"],
                    data,
                    now,
                ),
            )
            db.conn.execute(
                "INSERT OR IGNORE INTO scan_findings(scan_id, finding_key) VALUES (?, ?)",
                (scan_id, f.key),
            )
    return scan_id


def stored_findings(path: str | Path, scan_id: int | None = None) -> list[Finding]:
    """The findings in the store, in the order they were first stored."""
    if not Path(path).exists():
        raise StateError("no such store", Location(str(path)))
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        if scan_id is None:
            rows = conn.execute("SELECT data FROM findings ORDER BY rowid").fetchall()
        else:
            rows = conn.execute(
                "SELECT f.data FROM findings f JOIN scan_findings s ON s.finding_key = f.key"
                " WHERE s.scan_id = ? ORDER BY f.rowid",
                (scan_id,),
            ).fetchall()
    except sqlite3.Error as exc:
        raise StateError(f"cannot read findings: {exc}", Location(str(path))) from None
    finally:
        conn.close()
    return [Finding.from_dict(json.loads(r[0])) for r in rows]


def scans(path: str | Path) -> pd.DataFrame:
    """The ``scans`` table: id, started, finished, paths (list) and counts (dict)."""
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT s.id, s.started, s.finished, s.paths, s.counts,"
            " (SELECT count(*) FROM scan_findings f WHERE f.scan_id = s.id)"
            " FROM scans s ORDER BY s.id"
        ).fetchall()
    except sqlite3.Error as exc:
        raise StateError(f"cannot read scans: {exc}", Location(str(path))) from None
    finally:
        conn.close()
    return pd.DataFrame(
        {
            "id": pd.Series([r[0] for r in rows], dtype="int64"),
            "started": pd.to_datetime([r[1] for r in rows], utc=True, format="ISO8601"),
            "finished": pd.to_datetime([r[2] for r in rows], utc=True, format="ISO8601"),
            "paths": pd.Series([json.loads(r[3]) for r in rows], dtype=object),
            "counts": pd.Series([json.loads(r[4]) for r in rows], dtype=object),
            "findings": pd.Series([r[5] for r in rows], dtype="int64"),
        }
    )


def load_sqlite_findings(
    path: str | Path, *, tz: ZoneArg = None, scan_id: int | None = None
) -> pd.DataFrame:
    return findings_frame(stored_findings(path, scan_id), tz=tz)
