"""Delivering queued notifications: retries with backoff, rate limits with digests.

Notifications are queued in the state database's ``outbox`` in the same transaction that
stores their finding (:meth:`StateDB.checkpoint`). A :class:`Deliverer` — a thread in the
daemon, a final pass after ``scan`` — sends what is due through apprise on its own database
connection, so a slow or dead endpoint never blocks reading or detection. A failed send is
retried with exponential backoff; a restart finds pending rows still there. Each send is
recorded (sent, or failed with its next try) the moment apprise reports it, not after the
pass: only a crash in between those two steps can send one notification twice. Stopping
waits for a send in flight (apprise's own time-outs bound it), so its outcome is recorded.
An outcome that cannot be recorded (the state database's disk is full) is kept in memory and
recorded before anything else is sent: no send starts while one waits, so the message is not
sent again.

A notifier with ``limit: {count: N, period: P}`` sends at most N messages per P; further
notifications are folded and, once the period allows, sent as one digest listing them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.model import Severity
from pipeline.notify.notifiers import Notifier, notify_type

#: (notifier, title, body, format, apprise type) -> (ok, error text)
Sender = Callable[[Notifier, str, str, str, str], tuple[bool, str]]
#: the statements that record one outcome, run in one transaction
Record = list[tuple[str, tuple[object, ...]]]
#: an outbox row of one pass: id, title, body, format, attempts, apprise type
Row = tuple[int, str, str, str, int, str]
#: longest wait between passes while the database cannot be written, in seconds
STORE_RETRY_MAX = 30.0


def apprise_send(
    n: Notifier, title: str, body: str, fmt: str, kind: str = "info"
) -> tuple[bool, str]:
    """Send one message through apprise with ``kind`` as its ``NotifyType``
    (info, success, warning, failure); (ok, error text)."""
    import apprise

    if n.url.startswith("config:"):
        from pipeline.notify.notifiers import load_apprise_config

        box = load_apprise_config(n.url[len("config:") :])
        if len(box) == 0:
            return False, "the apprise config file holds no usable URL any more"
    else:
        plugin = apprise.Apprise.instantiate(n.url, suppress_exceptions=True)
        if plugin is None:
            return False, "apprise no longer accepts this URL"
        box = apprise.Apprise()
        box.add(plugin)
    body_format = apprise.NotifyFormat.MARKDOWN if fmt == "markdown" else apprise.NotifyFormat.TEXT
    with apprise.LogCapture(level=apprise.logging.WARNING) as logs:  # type: ignore[no-untyped-call]
        try:
            ok = bool(
                box.notify(
                    title=title,
                    body=body,
                    body_format=body_format,
                    notify_type=apprise.NotifyType(kind),
                )
            )
        except Exception as exc:  # a plugin failure must not kill delivery
            return False, f"{type(exc).__name__}: {exc}"
        text = logs.getvalue().strip().splitlines()
    return ok, ("" if ok else (text[-1] if text else "delivery failed"))[:500]


#: distinct titles listed in a digest; the rest are summed up in one line
DIGEST_LINES = 50


def digest_body(n: Notifier, titles: list[str]) -> str:
    """What a digest says: the folded titles, repeats counted, at most DIGEST_LINES."""
    assert n.limit is not None
    counts: dict[str, int] = {}
    for t in titles:
        counts[t] = counts.get(t, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = [f"{c} × {t}" if c > 1 else t for t, c in ranked[:DIGEST_LINES]]
    bullet = "- " if n.format == "markdown" else "  "
    lines = "\n".join(bullet + x for x in shown)
    more = len(ranked) - DIGEST_LINES
    tail = f"\n{bullet}... and {more} other kinds of finding" if more > 0 else ""
    return (
        f"{len(titles)} findings arrived while the limit of {n.limit.count} messages "
        f"per {n.limit.period} was reached:\n\n{lines}{tail}\n"
    )


def digest_type(conn: sqlite3.Connection, ids: list[int]) -> str:
    """A digest's apprise type: that of the most severe finding folded into it."""
    if not ids:
        return "info"
    marks = ",".join("?" * len(ids))
    got = {
        s
        for (s,) in conn.execute(
            f"SELECT f.severity FROM outbox o JOIN findings f ON f.key = o.finding_key "
            f"WHERE o.id IN ({marks})",
            ids,
        )
    }
    ranked = sorted((Severity.parse(s) for s in got if s), reverse=True)
    return notify_type(str(ranked[0])) if ranked else "info"


@dataclass
class Delivery:
    sent: int = 0
    failed: int = 0
    folded: int = 0
    digests: int = 0


class Deliverer:
    """Sends what the outbox holds for the configured notifiers."""

    def __init__(
        self,
        state_path: str | Path,
        notifiers: Iterable[Notifier],
        *,
        retry_base: float = 5.0,
        retry_max: float = 300.0,
        send: Sender = apprise_send,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = lambda msg: None,
    ) -> None:
        self.path = str(state_path)
        self.notifiers = {n.name: n for n in notifiers}
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.send = send
        self.clock = clock
        self.log = log
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.totals = Delivery()
        #: outcomes of sends that could not be recorded yet (the database could not be
        #: written), oldest first; nothing is sent while one waits
        self._unrecorded: list[Record] = []
        self._record_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        # the senders of several notifiers record their results on it, under a lock
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _backoff(self, attempts: int) -> float:
        return float(min(self.retry_max, self.retry_base * (2 ** max(0, attempts - 1))))

    def run_once(self) -> Delivery:
        """Send everything due now; return what happened.

        Each notifier's due messages go out on a worker of their own, in order, stopping at
        its first failure: a hanging endpoint delays only its own messages.
        """
        got = Delivery()
        conn = self._connect()
        try:
            if not self._record_held(conn):
                return got
            now = self.clock()
            rows = conn.execute(
                "SELECT id, notifier, title, body, format, attempts, "
                "(SELECT severity FROM findings WHERE key = outbox.finding_key) FROM outbox "
                "WHERE status = 'pending' AND next_at <= ? ORDER BY id",
                (now,),
            ).fetchall()
            batches: dict[str, list[Row]] = {}
            dropped: dict[str, int] = {}
            for row_id, name, title, body, fmt, attempts, severity in rows:
                n = self.notifiers.get(name)
                if n is None:
                    conn.execute(
                        "UPDATE outbox SET status='dropped', last_error=? WHERE id=?",
                        ("no notifier of this name is configured any more", row_id),
                    )
                    dropped[name] = dropped.get(name, 0) + 1
                    continue
                batches.setdefault(name, []).append(
                    (row_id, title, body, fmt, attempts, notify_type(severity))
                )
            for name, count in dropped.items():
                self.log(
                    f"{count} queued notifications for {name!r} dropped: no notifier of "
                    "that name is configured any more (renamed or removed?)"
                )
            allowed: dict[str, list[Row]] = {}
            for name, batch in batches.items():
                n = self.notifiers[name]
                if n.limit is not None:
                    room, free_at = self._room(conn, n, now)
                    over = batch[max(0, room) :]
                    batch = batch[: max(0, room)]
                    for row_id, *_ in over:
                        conn.execute(
                            "UPDATE outbox SET status='folded', next_at=? WHERE id=?",
                            (free_at, row_id),
                        )
                        got.folded += 1
                if batch:
                    allowed[name] = batch
            lock = threading.Lock()

            def record(name: str, row: Row, ok: bool, err: str) -> None:
                """Store one send's outcome at once (autocommit), before the next send."""
                row_id, attempts, when = row[0], row[4], self.clock()
                with lock:
                    if ok:
                        self._record(
                            conn,
                            [
                                (
                                    "UPDATE outbox SET status='sent', sent_at=?, "
                                    "attempts=attempts+1, last_error=NULL WHERE id=?",
                                    (when, row_id),
                                ),
                                ("INSERT INTO notify_log VALUES (?, ?)", (name, when)),
                            ],
                        )
                        got.sent += 1
                    else:
                        self._record(
                            conn,
                            [
                                (
                                    "UPDATE outbox SET attempts=attempts+1, next_at=?, "
                                    "last_error=? WHERE id=?",
                                    (when + self._backoff(attempts + 1), err, row_id),
                                )
                            ],
                        )
                        got.failed += 1
                if not ok:
                    masked = self.notifiers[name].masked
                    self.log(f"notification to {masked} failed ({err}); will retry")

            self._send_all(allowed, record)
            if not self._stop.is_set():  # a stop waits for the send in flight, no digest
                got.digests += self._digests(conn)
        finally:
            conn.close()
        self.totals.sent += got.sent
        self.totals.failed += got.failed
        self.totals.folded += got.folded
        self.totals.digests += got.digests
        return got

    def _send_all(
        self,
        batches: dict[str, list[Row]],
        record: Callable[[str, Row, bool, str], None],
    ) -> None:
        """Send each notifier's batch on its own thread, ``record`` each outcome as it comes;
        stop a batch at its first failure, and before the next send once stopping."""

        def one(name: str) -> None:
            n = self.notifiers[name]
            for row in batches[name]:
                if self._stop.is_set() or self._unrecorded:
                    break
                ok, err = self.send(n, row[1], row[2], row[3], row[5])
                record(name, row, ok, err)
                if not ok:
                    break

        if not batches:
            return
        if len(batches) == 1:
            (name,) = batches
            one(name)
            return
        with ThreadPoolExecutor(max_workers=min(8, len(batches))) as pool:
            for f in [pool.submit(one, name) for name in batches]:
                f.result()

    def _room(self, conn: sqlite3.Connection, n: Notifier, now: float) -> tuple[int, float]:
        """Messages still allowed in the current period, and when the next slot frees."""
        assert n.limit is not None
        period = n.limit.period.total_seconds()
        sent = [
            t
            for (t,) in conn.execute(
                "SELECT sent_at FROM notify_log WHERE notifier=? AND sent_at > ? ORDER BY sent_at",
                (n.name, now - period),
            )
        ]
        room = n.limit.count - len(sent)
        free_at = (sent[0] + period) if sent else now
        return room, free_at

    def _digests(self, conn: sqlite3.Connection) -> int:
        sent = 0
        now = self.clock()
        for name, n in self.notifiers.items():
            folded = conn.execute(
                "SELECT id, title, attempts FROM outbox WHERE notifier=? AND status='folded' "
                "AND next_at <= ? ORDER BY id LIMIT 5000",
                (name, now),
            ).fetchall()
            if not folded or n.limit is None:
                continue
            room, free_at = self._room(conn, n, now)
            if room <= 0:
                conn.execute(
                    "UPDATE outbox SET next_at=? WHERE notifier=? AND status='folded'",
                    (free_at, name),
                )
                continue
            title = f"[logwarden] {len(folded)} more findings (rate limit of {n.name})"
            body = digest_body(n, [t for _, t, _ in folded])
            ids = [i for i, _, _ in folded]
            # the JOIN over the folded rows runs only for a digest that is sent now
            ok, err = self.send(n, title, body, n.format, digest_type(conn, ids))
            tries = max(a for _, _, a in folded) + 1
            marks = ",".join("?" * len(ids))
            if ok:
                self._record(
                    conn,
                    [
                        (
                            f"UPDATE outbox SET status='digested', sent_at=? WHERE id IN ({marks})",
                            (now, *ids),
                        ),
                        ("INSERT INTO notify_log VALUES (?, ?)", (name, now)),
                    ],
                )
                sent += 1
            else:
                self._record(
                    conn,
                    [
                        (
                            f"UPDATE outbox SET next_at=?, last_error=?, attempts=? "
                            f"WHERE id IN ({marks})",
                            (now + self._backoff(tries), err, tries, *ids),
                        )
                    ],
                )
            if self._unrecorded or self._stop.is_set():
                break
        return sent

    # -- recording outcomes ----------------------------------------------------------------

    def _store(self, conn: sqlite3.Connection, record: Record) -> sqlite3.Error | None:
        """Run one outcome's statements in one transaction; the error if it failed."""
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for sql, params in record:
                    conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.rollback()
            return exc
        return None

    def _record(self, conn: sqlite3.Connection, record: Record) -> None:
        """Record a send's outcome now, or keep it for :meth:`_record_held` when the database
        cannot be written (a full disk); sending stops until it is recorded."""
        with self._record_lock:
            exc = None if self._unrecorded else self._store(conn, record)
            if exc is None and not self._unrecorded:
                return
            if not self._unrecorded:
                self.log(
                    f"outbox: the outcome of a send cannot be recorded ({exc}); it is kept "
                    "until it can be, and nothing more is sent until then"
                )
            self._unrecorded.append(record)

    def _record_held(self, conn: sqlite3.Connection) -> bool:
        """Record the outcomes kept in memory, oldest first; True once none is left."""
        with self._record_lock:
            while self._unrecorded:
                if self._store(conn, self._unrecorded[0]) is not None:
                    return False
                self._unrecorded.pop(0)
                if not self._unrecorded:
                    self.log("outbox: the kept send outcomes are recorded; sending goes on")
            return True

    def pending(self) -> int:
        conn = self._connect()
        try:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'folded')"
            ).fetchone()
        finally:
            conn.close()
        return int(n)

    def drain(self, timeout: float) -> Delivery:
        """Deliver until nothing is pending or ``timeout`` seconds passed (``scan``)."""
        end = time.monotonic() + timeout
        while True:
            self.run_once()
            if self.pending() == 0 or time.monotonic() >= end:
                return self.totals
            self._stop.wait(min(0.5, max(0.0, end - time.monotonic())))

    # -- as a thread -----------------------------------------------------------------------

    def start(self, interval: float = 0.5) -> None:
        def loop() -> None:
            failures = 0  # passes in a row that could not write the database
            while not self._stop.is_set():
                try:
                    self.run_once()
                except sqlite3.Error as exc:
                    if not failures:  # once, until a pass works again
                        self.log(f"outbox: {exc}")
                    failures += 1
                else:
                    failures = failures + 1 if self._unrecorded else 0
                # back off while the database cannot be written; a checkpoint that works
                # (which sets ``wake``) means it can be again
                wait = min(STORE_RETRY_MAX, interval * 2 ** min(failures, 8)) if failures else 0
                self.wake.wait(wait or interval)
                self.wake.clear()

        self._thread = threading.Thread(target=loop, name="logwarden-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the send in flight, whose outcome is recorded (no new send starts).

        Waits for it (``timeout`` None: as long as apprise's own time-outs let it take),
        saying so when that takes more than a second."""
        self._stop.set()
        self.wake.set()
        if self._thread is None:
            return
        self._thread.join(1.0 if timeout is None else min(timeout, 1.0))
        if self._thread.is_alive():
            self.log("waiting for a notification being sent to finish, to record its outcome")
            self._thread.join(None if timeout is None else max(0.0, timeout - 1.0))
        if self._unrecorded and not self._thread.is_alive():
            conn = self._connect()
            try:
                if not self._record_held(conn):
                    self.log(
                        f"outbox: {len(self._unrecorded)} send outcomes could not be recorded; "
                        "those messages are sent again after the next start"
                    )
            finally:
                conn.close()
