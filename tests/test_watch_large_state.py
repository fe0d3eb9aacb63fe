"""``logwarden watch`` killed with SIGKILL over and over while it remembers a large join table.

A writer appends sendmail ``from=`` lines with 50,000 distinct queue ids to a real file, in
batches, with a ``DSN: Return receipt`` for an earlier queue id every 250 lines (the receipt
rule copies that message's sender from its join table). The daemon follows the file and is
killed at random points mid-stream, then started again on the same state directory. When
everything has been read, ``--output`` must hold exactly the findings of one ``scan --state``
over the whole file (same keys, same copied senders): nothing lost, nothing twice, no join
row lost across the restarts. The state database must hold the join table as rows.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from pipeline.state import StateDB
from tests.conftest import logwarden
from tests.test_watch_real import Watch, wait_until

pytestmark = pytest.mark.real

MESSAGES = 50_000
RECEIPT_EVERY = 250
KILLS = 4


def line(i: int) -> str:
    # RFC 3339 times (no year to infer), one second apart: all within the rule's 7 days
    h, rest = divmod(i, 3600)
    m, s = divmod(rest, 60)
    stamp = f"2026-11-{28 + h // 24:02d}T{h % 24:02d}:{m:02d}:{s:02d}.000000+00:00 mx1"
    if i % RECEIPT_EVERY == RECEIPT_EVERY - 1:
        # a message from a while back; the first receipts name one never seen (no sender)
        q = f"M{i - 1850:09d}" if i >= 1850 else f"U{i:09d}"
        return f"{stamp} sm-mta[2]: {q}: R{i:09d}: DSN: Return receipt\n"
    return (
        f"{stamp} sm-mta[1]: M{i:09d}: from=<user{i}@example.com>, size=2345, class=0, "
        f"nrcpts=1, msgid=<{i}@example.com>, proto=ESMTP, daemon=MTA, "
        f"relay=mail{i % 97}.example.org [192.0.2.{i % 250}]\n"
    )


def test_kill9_at_random_points_with_a_large_join_table_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(1313)
    log = tmp_path / "mail.log"
    log.write_text("")
    watch = Watch(tmp_path, [log], "--from-beginning")
    done = threading.Event()
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            with log.open("a", encoding="utf-8") as f:
                for start in range(0, MESSAGES, 1000):
                    f.write("".join(line(i) for i in range(start, start + 1000)))
                    f.flush()
                    time.sleep(0.15)
        except BaseException as exc:  # pragma: no cover - reported below
            failure.append(exc)
        finally:
            done.set()

    watch.start()
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        mid_stream = 0
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.2))
            mid_stream += not done.is_set()
            watch.kill9()
            watch.start()
        assert mid_stream >= 2, "the writer finished before the kills: slow it down"
        thread.join(120)
        assert done.is_set() and not failure, failure
        size = log.stat().st_size

        def caught_up() -> bool:
            with sqlite3.connect(f"file:{watch.state_dir / 'state.sqlite'}?mode=ro", uri=True) as c:
                row = c.execute("SELECT state FROM sources").fetchone()
            return row is not None and int(json.loads(row[0]).get("offset", 0)) == size

        wait_until(caught_up, 120, lambda: f"watch did not read the whole file:\n{watch.logs()}")
        assert watch.stop() == 0, watch.logs()
    finally:
        watch.close()
        thread.join(5)
    live = watch.records()
    keys = [r["key"] for r in live]
    assert len(keys) == len(set(keys)), "a finding was written twice"
    res = logwarden(
        "scan", str(log), "--state", str(tmp_path / "scan.sqlite"), "--format", "jsonl", "-q",
        timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    want = {d["key"]: d for d in map(json.loads, res.stdout.splitlines())}
    receipts = MESSAGES // RECEIPT_EVERY
    assert len(want) == receipts
    assert sum(1 for d in want.values() if "sender" in d["fields"]) == receipts - 7
    got = {r["key"]: r for r in live}
    assert sorted(got) == sorted(want), watch.logs()
    for key, d in want.items():
        assert got[key]["fields"] == d["fields"], key
    with StateDB(watch.state_dir / "state.sqlite") as db:
        rows = db.detector_row_counts("watch")
    assert rows.get("enrich:sendmail.dsn-return-receipt#0", 0) == MESSAGES - receipts, (
        "the join table is not stored as rows"
    )
    assert watch.runs == KILLS + 1
