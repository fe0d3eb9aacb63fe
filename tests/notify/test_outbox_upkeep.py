"""Outbox upkeep: digests stay readable, failures back off, old rows are forgotten."""

from __future__ import annotations

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
