"""The state database: one SQLite file (WAL) under the state directory.

It keeps what must survive a restart: detection state (open windows, suppression periods,
pending joins; the daemon's row by row, so a checkpoint writes what changed, a ``scan
--state`` run's as one snapshot), file offsets and journal cursors, the findings, the
notification outbox and its send log, the daemon's status record, and ``scan --store``'s
scans. Every write is one transaction, so a crash leaves the previous state intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pipeline.errors import Location, LogwardenError
from pipeline.model import Finding, Severity

if TYPE_CHECKING:
    from pipeline.detection.correlate import StateChanges

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
CREATE TABLE IF NOT EXISTS sources (
    name       TEXT PRIMARY KEY,   -- a followed path, or journal:<spec>
    state      TEXT NOT NULL,      -- JSON: offsets, identity, cursor
    stats      TEXT NOT NULL,      -- JSON: lines, errors, lag, rate
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS findings (
    key        TEXT PRIMARY KEY,   -- Finding.key: deterministic, so re-reads are idempotent
    rule       TEXT NOT NULL,
    severity   TEXT NOT NULL,
    timestamp  TEXT,
    host       TEXT,
    count      INTEGER NOT NULL,
    last_seen  TEXT,
    data       TEXT NOT NULL,      -- JSON: Finding.as_dict()
    stored_at  REAL NOT NULL,
    emitted    INTEGER NOT NULL DEFAULT 0  -- written to the output sinks
);
CREATE INDEX IF NOT EXISTS findings_pending ON findings(emitted) WHERE emitted = 0;
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    finding_key TEXT NOT NULL,
    notifier    TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    format      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending', -- pending | sent | folded | digested | dropped
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,                   -- unix time it may be tried (again)
    last_error  TEXT,
    created_at  REAL NOT NULL,
    sent_at     REAL,
    UNIQUE (finding_key, notifier)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_at);
CREATE TABLE IF NOT EXISTS notify_log (  -- messages sent, for rate limits
    notifier TEXT NOT NULL,
    sent_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS scans (    -- one row per `scan --store` run
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    started    TEXT NOT NULL,      -- ISO 8601, UTC
    finished   TEXT NOT NULL,
    paths      TEXT NOT NULL,      -- JSON list of the PATH arguments
    counts     TEXT NOT NULL       -- JSON: ScanStats.as_dict()
);
CREATE TABLE IF NOT EXISTS scan_findings (  -- which scan reported which finding
    scan_id     INTEGER NOT NULL REFERENCES scans(id),
    finding_key TEXT NOT NULL,
    PRIMARY KEY (scan_id, finding_key)
);
CREATE TABLE IF NOT EXISTS outputs (
    path       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL    -- the output file's size after the last confirmed write
);
"""


class StateError(LogwardenError):
    """The state database cannot be opened or has an unknown layout."""


class StateCorrupt(StateError):
    """The state database is empty (0 bytes) or not a sound SQLite database."""


class StateLocked(StateError):
    """Another process holds the state database's lock."""


class StateWriteError(StateError):
    """A write to the state database failed (its file system is full, an I/O error): the
    transaction was rolled back, so the database holds what the last successful write left.
    ``reason`` is what failed in SQLite's or the system's words, ``free`` the space left on
    its file system then, in bytes (None: unknown)."""

    def __init__(
        self, message: str, location: Location, reason: str, free: int | None, hint: str = ""
    ) -> None:
        self.reason = reason
        self.free = free
        super().__init__(message, location, hint)


def free_space(path: str | Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system holding ``path`` (or
    its nearest existing parent); None where that cannot be told."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def size_text(n: int | None) -> str:
    """``0 bytes``, ``512.0 KiB``, ``1.5 MiB``: free space as a message says it."""
    if n is None:
        return "unknown space"
    if n < 1024:
        return f"{n} bytes"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def write_error(path: Path, doing: str, exc: BaseException) -> StateWriteError:
    """A failed write as a located error that says what failed and the free space left."""
    free = free_space(path)
    why = str(exc) if isinstance(exc, sqlite3.Error) else (getattr(exc, "strerror", "") or str(exc))
    return StateWriteError(
        f"{doing} failed: {why} ({size_text(free)} free on its file system); "
        "the state database is as the last successful write left it",
        Location(str(path)),
        why,
        free,
    )


_F = TypeVar("_F", bound=Callable[..., Any])


def _writes(doing: str) -> Callable[[_F], _F]:
    """Turn a failed write (SQLite's "database or disk is full", an I/O error) into a
    :class:`StateWriteError`, after making sure its transaction is rolled back."""

    def wrap(method: _F) -> _F:
        @functools.wraps(method)
        def call(self: StateDB, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.rollback()
                raise write_error(self.path, doing, exc) from None

        return cast(_F, call)

    return wrap


#: what SQLite says about a file that is not (or no longer) a sound database
_CORRUPT_MARKS = ("not a database", "malformed", "corrupt", "disk image")
RESET_HINT = (
    "restore it from a backup, or move it aside to start afresh "
    "(logwarden watch --reset-state does that)"
)


def _corrupt(path: Path, why: str) -> StateCorrupt:
    return StateCorrupt(
        f"state database is unusable ({why}); refusing to start afresh on it, which would "
        "skip what was logged since the last checkpoint",
        Location(str(path)),
        hint=RESET_HINT,
    )


def move_aside(path: str | Path) -> Path:
    """Rename an unusable state database (and its ``-wal``/``-shm``) out of the way.

    Returns the new name of the database file, ``state.sqlite.broken-<UTC time>``."""
    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.broken-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(Path(f"{target}{suffix}"))
    return target


class StateLock:
    """An exclusive ``flock`` on ``<database>.lock``: one writer per state database.

    The daemon holds it for its whole life and ``scan --state`` while it uses the database;
    the kernel drops it when the process dies, so a crash never leaves a stale lock. The
    holder's pid is written into the file for the message the next one gets."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self.path = Path(f"{db_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(
                f"cannot create the lock file: {exc.strerror or exc}", Location(str(self.path))
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise StateLocked(
                f"state database in use by another logwarden ({who})",
                Location(str(self.db_path)),
                hint="one daemon per state directory: stop the other one, or give this one "
                "its own --state-dir",
            ) from None
        with contextlib.suppress(OSError):  # only for the message; a full disk refuses it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class StateDB:
    """A small wrapper over the SQLite state file; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        created = not self.path.exists()
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size == 0:
                # a full disk or a bad restore; SQLite would take it for a new database
                raise _corrupt(self.path, "empty: 0 bytes")
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
        except sqlite3.DatabaseError as exc:
            if any(m in str(exc).lower() for m in _CORRUPT_MARKS):
                self._close_quietly()
                raise _corrupt(self.path, str(exc)) from None
            raise self._open_failed(exc, created) from None
        except (sqlite3.Error, OSError) as exc:
            raise self._open_failed(exc, created) from None

    def _open_failed(self, exc: BaseException, created: bool) -> StateError:
        """The error for a database that cannot be opened; a file this attempt created
        (a full disk leaves it 0 bytes, which would be refused as empty later) is removed."""
        self._close_quietly()
        if created:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    Path(f"{self.path}{suffix}").unlink()
        if isinstance(exc, sqlite3.OperationalError | OSError):
            return write_error(self.path, "opening the state database", exc)
        return StateError(f"cannot open state database: {exc}", Location(str(self.path)))

    def _close_quietly(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def verify(self) -> None:
        """Check every page (``PRAGMA quick_check``); raise :class:`StateCorrupt` if unsound.

        The daemon runs this once at start-up: damage deep in the file is otherwise only
        found when a checkpoint touches it."""
        try:
            rows = self.conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, str(exc)) from None
        if [r[0] for r in rows] != ["ok"]:
            raise _corrupt(self.path, "; ".join(str(r[0]) for r in rows[:3]))

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- the daemon's checkpoint --------------------------------------------------------------

    @_writes("the checkpoint")
    def checkpoint(
        self,
        *,
        detector: tuple[str, Mapping[str, Any]] | None,
        sources: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
        findings: Sequence[Finding],
        route: Callable[[Finding], list[tuple[str, str, str, str]]] | None = None,
        changes: tuple[str, StateChanges] | None = None,
    ) -> list[Finding]:
        """Store offsets, detection state and findings in one transaction.

        The detection state is either ``detector``, a whole snapshot (name, JSON data), or
        ``changes``, what changed since the last checkpoint (name, changes; see
        :meth:`store_changes`).

        Returns the findings whose key was not stored before (to be emitted); findings whose
        key exists update the stored row (count, last_seen) and are not emitted again.
        ``route`` gives a new finding's notifications as (notifier, title, body, format);
        they are queued in the outbox in the same transaction.
        """
        now = time.time()
        fresh: list[Finding] = []
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for f in findings:
                d = f.as_dict()
                data = json.dumps(d, ensure_ascii=False)
                cur = self.conn.execute(
                    "INSERT INTO findings(key, rule, severity, timestamp, host, count, last_seen,"
                    " data, stored_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO NOTHING",
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
                if cur.rowcount:
                    fresh.append(f)
                    for notifier, title, body, fmt in route(f) if route else ():
                        self.conn.execute(
                            "INSERT INTO outbox(finding_key, notifier, title, body, format,"
                            " next_at, created_at) VALUES (?,?,?,?,?,?,?)"
                            " ON CONFLICT(finding_key, notifier) DO NOTHING",
                            (f.key, notifier, title, body, fmt, now, now),
                        )
                else:
                    self.conn.execute(
                        "UPDATE findings SET count=?, last_seen=?, data=? WHERE key=?",
                        (f.count, d["last_seen"], data, f.key),
                    )
            for name, (state, stats) in sources.items():
                self.conn.execute(
                    "INSERT INTO sources(name, state, stats, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT(name) DO UPDATE SET state=excluded.state, stats=excluded.stats,"
                    " updated_at=excluded.updated_at",
                    (name, json.dumps(state), json.dumps(stats), now),
                )
            if detector is not None:
                self.conn.execute(
                    "INSERT INTO detector_state(name, state, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET state=excluded.state, "
                    "updated_at=excluded.updated_at",
                    (detector[0], json.dumps(detector[1], separators=(",", ":")), now),
                )
            if changes is not None:
                self.store_changes(changes[0], changes[1], now)
        return fresh

    def source_states(self) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        rows = self.conn.execute("SELECT name, state, stats FROM sources").fetchall()
        return {n: (json.loads(s), json.loads(st)) for n, s, st in rows}

    def pending(self) -> list[Finding]:
        """Stored findings not yet confirmed written to the outputs, oldest first."""
        rows = self.conn.execute(
            "SELECT data FROM findings WHERE emitted = 0 ORDER BY rowid"
        ).fetchall()
        return [Finding.from_dict(json.loads(r[0])) for r in rows]

    @_writes("recording the findings written")
    def mark_emitted(self, keys: Sequence[str], outputs: Mapping[str, int]) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "UPDATE findings SET emitted = 1 WHERE key = ?", [(k,) for k in keys]
            )
            for path, size in outputs.items():
                self.conn.execute(
                    "INSERT INTO outputs(path, size) VALUES (?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET size=excluded.size",
                    (path, size),
                )

    def output_size(self, path: str) -> int | None:
        row = self.conn.execute("SELECT size FROM outputs WHERE path = ?", (path,)).fetchone()
        return None if row is None else int(row[0])

    @_writes("forgetting old rows")
    def prune(self, *, findings_days: float = 90, outbox_days: float = 14) -> int:
        """Forget old rows: findings stored more than ``findings_days`` ago (lines that old
        are never read again, so their keys are no longer needed against duplicates),
        delivered notifications after ``outbox_days``, and the rate-limit log after a day.
        Returns the rows removed."""
        now = time.time()
        removed = 0
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            removed += self.conn.execute(
                "DELETE FROM findings WHERE stored_at < ? AND emitted = 1 AND key NOT IN "
                "(SELECT finding_key FROM outbox WHERE status IN ('pending', 'folded'))",
                (now - findings_days * 86400,),
            ).rowcount
            removed += self.conn.execute(
                "DELETE FROM outbox WHERE status IN ('sent', 'digested', 'dropped') "
                "AND created_at < ?",
                (now - outbox_days * 86400,),
            ).rowcount
            removed += self.conn.execute(
                "DELETE FROM notify_log WHERE sent_at < ?", (now - 86400,)
            ).rowcount
        return removed

    def recent_findings(self, limit: int = 10, at_least: Severity | None = None) -> list[Finding]:
        """The last ``limit`` findings stored (at or above ``at_least``), the newest first."""
        where, levels = "", []
        if at_least is not None:
            levels = [str(s) for s in Severity if s >= at_least]
            where = f"WHERE severity IN ({','.join('?' * len(levels))}) "
        rows = self.conn.execute(
            f"SELECT data FROM findings {where}ORDER BY rowid DESC LIMIT ?", (*levels, limit)
        ).fetchall()
        return [Finding.from_dict(json.loads(r[0])) for r in rows]

    # -- detection state, row by row (the daemon) ---------------------------------------------

    def _rows_tables(self) -> None:
        if not getattr(self, "_rows_ready", False):
            # executescript would commit the caller's transaction
            self.conn.execute(_PARTS_TABLE)
            self._rows_ready = True

    def _part_ids(self, detector: str) -> dict[str, int]:
        self._rows_tables()
        rows = self.conn.execute(
            "SELECT name, id FROM detector_parts WHERE detector = ?", (detector,)
        ).fetchall()
        return {str(n): int(i) for n, i in rows}

    def store_changes(self, name: str, changes: StateChanges, now: float | None = None) -> None:
        """Write detector ``name``'s changes (inside the caller's transaction): the small
        parts whole, then per stored part its changed rows (a moved or new row goes to the
        end of the part's order, a row changed in place keeps its place, a gone one is
        deleted); parts the detector no longer has lose their rows."""
        self._rows_tables()
        conn = self.conn
        conn.execute(
            "INSERT INTO detector_state(name, state, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
            (
                name,
                json.dumps(changes.state, separators=(",", ":")),
                time.time() if now is None else now,
            ),
        )
        ids = self._part_ids(name)
        for part in set(ids) - set(changes.parts):
            conn.execute(f"DROP TABLE IF EXISTS {_rows_table(ids[part])}")
            conn.execute("DELETE FROM detector_parts WHERE id = ?", (ids[part],))
        for part, rows in changes.rows.items():
            pid = ids.get(part)
            if pid is None:
                cur = conn.execute(
                    "INSERT INTO detector_parts(detector, name) VALUES (?, ?)", (name, part)
                )
                pid = int(cur.lastrowid or 0)
                conn.execute(_ROWS_TABLE.format(table=_rows_table(pid)))
            table = _rows_table(pid)
            if part in changes.rewrite:
                conn.execute(f"DELETE FROM {table}")
            else:
                conn.executemany(
                    f"DELETE FROM {table} WHERE key = ?",
                    [(key,) for key, _, moved in rows if moved],
                )
            conn.executemany(
                f"INSERT INTO {table}(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(key, value) for key, value, _ in rows if value is not None],
            )
        for part in changes.rewrite - set(changes.rows):
            if part in ids:
                conn.execute(f"DELETE FROM {_rows_table(ids[part])}")

    def detector_rows(self, name: str) -> dict[str, tuple[list[Any], list[str]]]:
        """Detector ``name``'s stored rows per part: the keys (tuples) and the values as
        stored (text the detector decodes), in their stored order."""
        out: dict[str, tuple[list[Any], list[str]]] = {}
        for part, pid in self._part_ids(name).items():
            try:
                rows = self.conn.execute(
                    f"SELECT key, value FROM {_rows_table(pid)} ORDER BY id"
                ).fetchall()
                keys = _keys_of([r[0] for r in rows])
            except (sqlite3.Error, ValueError) as exc:
                raise StateError(
                    f"detector state {name!r}, part {part!r} is corrupt: {exc}",
                    Location(str(self.path)),
                ) from None
            out[part] = (keys, [r[1] for r in rows])
        return out

    def detector_row_counts(self, name: str) -> dict[str, int]:
        """How many rows each stored part of detector ``name`` holds."""
        return {
            part: int(self.conn.execute(f"SELECT count(*) FROM {_rows_table(pid)}").fetchone()[0])
            for part, pid in self._part_ids(name).items()
        }

    def save_detector(self, name: str, snapshot: Mapping[str, Any]) -> None:
        self.checkpoint(detector=(name, snapshot), sources={}, findings=[])

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

    # -- the daemon's status record (``logwarden status``, ``watch --metrics``) ----------------

    @classmethod
    def reader(cls, path: str | Path) -> StateDB:
        """A read-only view of an existing state database, for ``status`` and metrics: it
        creates nothing, migrates nothing and takes no write lock."""
        db = cls.__new__(cls)
        db.path = Path(path)
        try:
            db.conn = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True, timeout=10)
            db.conn.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            raise StateError(f"cannot read state database: {exc}", Location(str(path))) from None
        return db

    def write_status(self, name: str, record: Mapping[str, Any]) -> None:
        """Replace daemon ``name``'s status record (pid, times, rates, lag, dropped state)."""
        try:
            if not getattr(self, "_status_table", False):
                self.conn.execute(_STATUS_TABLE)
                self._status_table = True
            self.conn.execute(
                "INSERT INTO daemon_status(name, record, updated_at) VALUES (?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET record=excluded.record, "
                "updated_at=excluded.updated_at",
                (name, json.dumps(record, separators=(",", ":")), time.time()),
            )
        except sqlite3.OperationalError as exc:
            raise write_error(self.path, "writing the status record", exc) from None
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot write the status record: {exc}", Location(str(self.path))
            ) from None

    def read_status(self, name: str) -> dict[str, Any] | None:
        """The last status record daemon ``name`` wrote, or None (it never ran here)."""
        try:
            row = self.conn.execute(
                "SELECT record FROM daemon_status WHERE name = ?", (name,)
            ).fetchone()
        except sqlite3.OperationalError:  # no such table: written by an older logwarden
            return None
        if row is None:
            return None
        try:
            data = json.loads(row[0])
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def notifier_counts(self) -> list[dict[str, Any]]:
        """Per notifier, over the outbox rows kept (delivered ones for 14 days): messages
        sent, failed send attempts, pending (waiting or folded), dropped, the last error."""
        try:
            rows = self.conn.execute(
                "SELECT notifier, SUM(status = 'sent'), SUM(attempts) - SUM(status = 'sent'),"
                " SUM(status IN ('pending', 'folded')), SUM(status = 'dropped'),"
                " (SELECT last_error FROM outbox AS o WHERE o.notifier = outbox.notifier"
                "  AND o.last_error IS NOT NULL ORDER BY o.next_at DESC, o.id DESC LIMIT 1)"
                " FROM outbox GROUP BY notifier ORDER BY notifier"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        return [
            {
                "notifier": name,
                "sent": int(sent or 0),
                "failed": int(failed or 0),
                "pending": int(pending or 0),
                "dropped": int(dropped or 0),
                "last_error": err,
            }
            for name, sent, failed, pending, dropped, err in rows
        ]


_PARTS_TABLE = """CREATE TABLE IF NOT EXISTS detector_parts (  -- a join table, a rule's windows
    id       INTEGER PRIMARY KEY,      -- its rows are in the table detector_rows_<id>
    detector TEXT NOT NULL,            -- detector_state.name
    name     TEXT NOT NULL,            -- 'enrich:<rule>#<n>', 'suppress:<rule>', '<kind>:<rule>'
    UNIQUE (detector, name)
)"""

#: one table per part, so that a part is read back in its order with one plain scan
_ROWS_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    id    INTEGER PRIMARY KEY,         -- the order: a new or moved key gets a larger id
    key   TEXT NOT NULL UNIQUE,        -- JSON list: the group key
    value TEXT NOT NULL                -- as the part encodes it (JSON, or the join's form)
)"""


def _rows_table(part_id: int) -> str:
    return f"detector_rows_{int(part_id)}"


def _keys_of(texts: list[str]) -> list[tuple[Any, ...]]:
    """Group keys from their JSON texts. Keys of one plain string (``["6AU8MP47017782"]``,
    a join's queue id) are cut out of the text instead of parsed: a million in a tenth of a
    second."""
    if (
        texts
        and min(map(len, texts)) >= 4
        and all(map(str.startswith, texts, repeat('["')))
        and all(map(str.endswith, texts, repeat('"]')))
    ):
        inner = [t[2:-2] for t in texts]
        body = "".join(inner)
        # what json.dumps writes has no other quote and escapes with a backslash
        if '"' not in body and "\\" not in body:
            return list(zip(inner, strict=True))
    keys = json.loads("[" + ",".join(texts) + "]")
    if not all(isinstance(k, list) for k in keys):
        raise ValueError("a stored key is not a list")
    return [tuple(k) for k in keys]


_STATUS_TABLE = """CREATE TABLE IF NOT EXISTS daemon_status (
    name       TEXT PRIMARY KEY,   -- the daemon's detector name ('watch')
    record     TEXT NOT NULL,      -- JSON: pid, start, heartbeat, checkpoint, inputs, ...
    updated_at REAL NOT NULL
)"""
