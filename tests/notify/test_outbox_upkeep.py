"""Outbox upkeep: digests stay readable, failures back off, old rows are forgotten."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from pipeline.model import Finding, Severity
from pipeline.notify.notifiers import Limit, Notifier
from pipeline.notify.outbox import DIGEST_LINES, Deliverer, digest_body
from pipeline.state import StateDB


def notifier(limit: int = 1) -> Notifier:
    return Notifier(
        "n",
        "json://127.0.0.1:9/x",
        "json://127.0.0.1:9/x",
        limit=Limit(limit, timedelta(seconds=3600)),
    )


def finding(i: int, rule: str = "system.disk-full") -> Finding:
    return Finding(rule, Severity.HIGH, "T", None, f"h{i % 3}", "app", "f", i, f"m{i}")


def test_a_digest_counts_repeats_and_stays_bounded() -> None:
    titles = ["T disk-full on web1"] * 2000 + [f"T other {i}" for i in range(80)]
    body = digest_body(notifier(), titles)
    assert body.startswith("2080 findings arrived")
    assert "2000 × T disk-full on web1" in body
    assert body.count("\n") < DIGEST_LINES + 8
    assert "... and 31 other kinds of finding" in body


def test_a_failing_digest_backs_off_and_rows_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with StateDB(path) as db:
        db.checkpoint(
            detector=None,
            sources={},
            findings=[finding(i) for i in range(5)],
            route=lambda f: [("n", f"T {f.line}", "body", "text")],
        )
    sent: list[str] = []
    clock = [time.time()]

    def send(n: Notifier, title: str, body: str, fmt: str, kind: str) -> tuple[bool, str]:
        sent.append(title)
        return (len(sent) == 1, "" if len(sent) == 1 else "refused")

    d = Deliverer(path, [notifier(limit=1)], retry_base=10, send=send, clock=lambda: clock[0])
    d.run_once()  # one sent, four folded
    clock[0] += 3601
    d.run_once()  # the digest fails
    import sqlite3

    conn = sqlite3.connect(path)
    (attempts, next_at) = conn.execute(
        "SELECT MAX(attempts), MIN(next_at) FROM outbox WHERE status='folded'"
    ).fetchone()
    assert attempts == 1 and next_at >= clock[0] + 10
    clock[0] += 11
    d.run_once()
    (attempts,) = conn.execute("SELECT MAX(attempts) FROM outbox WHERE status='folded'").fetchone()
    assert attempts == 2  # backing off: the next wait doubles
    conn.close()
    with StateDB(path) as db:
        assert db.prune(findings_days=0, outbox_days=0) >= 1  # the sent row and its log
        rows = db.conn.execute("SELECT status FROM outbox").fetchall()
        assert sorted(r[0] for r in rows) == ["folded"] * 4  # undelivered ones are kept
        (kept,) = db.conn.execute("SELECT COUNT(*) FROM findings").fetchone()
        assert kept == 5  # never emitted to an output here, so not forgotten


def _queue(path: Path, findings: list[Finding]) -> None:
    with StateDB(path) as db:
        db.checkpoint(
            detector=None,
            sources={},
            findings=findings,
            route=lambda f: [("n", f"T {f.line}", "body", "text")],
        )


def test_a_stop_during_a_pass_sends_no_digest_after_the_send_in_flight(tmp_path: Path) -> None:
    """A reload stops the old deliverer: the pass ends after the send in flight, without
    going on to a digest that is due."""
    path = tmp_path / "state.sqlite"
    _queue(path, [finding(i) for i in range(5)])
    clock = [time.time()]
    sent: list[str] = []
    d: Deliverer

    def send(n: Notifier, title: str, body: str, fmt: str, kind: str) -> tuple[bool, str]:
        sent.append(title)
        if len(sent) == 3:
            d.stop()  # as a reload does while this send is in flight
        return True, ""

    d = Deliverer(path, [notifier(limit=2)], send=send, clock=lambda: clock[0])
    assert d.run_once().folded == 3
    clock[0] += 3601  # the period is over: the three folded ones are due as a digest
    _queue(path, [finding(9)])
    got = d.run_once()
    assert sent == ["T 0", "T 1", "T 9"]
    assert got.sent == 1 and got.digests == 0


class CountingDeliverer(Deliverer):
    """Counts the digest-type queries (the JOIN of outbox and findings) it makes."""

    joins = 0

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()

        def trace(sql: str) -> None:
            if "JOIN findings" in sql:
                self.joins += 1

        conn.set_trace_callback(trace)
        return conn


def test_a_rate_limited_digest_looks_up_its_type_only_when_it_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    low = Finding("system.disk-full", Severity.LOW, "T", None, "h", "app", "f", 1, "m1")
    _queue(path, [low, finding(2), finding(3)])
    clock = [time.time()]
    kinds: list[tuple[str, str]] = []

    def send(n: Notifier, title: str, body: str, fmt: str, kind: str) -> tuple[bool, str]:
        kinds.append((title, kind))
        return True, ""

    d = CountingDeliverer(path, [notifier(limit=1)], send=send, clock=lambda: clock[0])
    d.run_once()  # one sent, two folded
    clock[0] += 3601
    _queue(path, [finding(4)])
    d.run_once()  # the new one takes the period's one message; the digest waits
    assert d.joins == 0
    clock[0] += 3601
    assert d.run_once().digests == 1
    assert d.joins == 1
    assert kinds[-1] == ("[logwarden] 2 more findings (rate limit of n)", "failure")


def test_each_send_gets_its_own_rows_type_while_another_pass_runs(tmp_path: Path) -> None:
    """The apprise type travels with each row of a pass: a second pass meanwhile (``scan
    --notify``'s drain beside the thread) does not change the first one's types."""
    path = tmp_path / "state.sqlite"
    low = Finding("system.disk-full", Severity.LOW, "T", None, "h", "app", "f", 1, "m1")
    _queue(path, [low, finding(2)])
    kinds: list[tuple[str, str]] = []
    clock = [time.time() + 1]
    d: Deliverer

    def send(n: Notifier, title: str, body: str, fmt: str, kind: str) -> tuple[bool, str]:
        kinds.append((title, kind))
        if len(kinds) == 1:
            clock[0] -= 3600
            assert d.run_once().sent == 0  # a pass that finds nothing due
            clock[0] += 3600
        return True, ""

    plain = Notifier("n", "json://127.0.0.1:9/x", "json://127.0.0.1:9/x")
    d = Deliverer(path, [plain], send=send, clock=lambda: clock[0])
    d.run_once()
    assert kinds == [("T 1", "info"), ("T 2", "failure")]
