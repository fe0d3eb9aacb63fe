"""The state database: one SQLite file (WAL) under the state directory.

It keeps what must survive a restart: detection state (open windows, suppression periods,
pending joins) now, and file offsets, journal cursors and the notification outbox as the
daemon grows. Every write is one transaction, so a crash leaves the previous state intact.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import Location, LogwardenError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS detector_state (
    name       TEXT PRIMARY KEY,
    state      TEXT NOT NULL,      -- JSON from Detector.snapshot()
    updated_at REAL NOT NULL       -- unix time of the write
);
"""


class StateError(LogwardenError):
    """The state database cannot be opened or has an unknown layout."""


class StateDB:
    """A small wrapper over the SQLite state file; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self.conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StateError(
                    f"state database schema {row[0]} is newer than this logwarden "
                    f"({SCHEMA_VERSION})",
                    Location(str(self.path)),
                )
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open state database: {exc}", Location(str(path))) from None

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def save_detector(self, name: str, snapshot: Mapping[str, Any]) -> None:
        text = json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False)
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO detector_state(name, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET state=excluded.state, "
                "updated_at=excluded.updated_at",
                (name, text, time.time()),
            )

    def load_detector(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT state FROM detector_state WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[0])
        except json.JSONDecodeError as exc:
            raise StateError(
                f"detector state {name!r} is corrupt: {exc}", Location(str(self.path))
            ) from None
        if not isinstance(data, dict):
            raise StateError(f"detector state {name!r} is corrupt", Location(str(self.path)))
        return data
