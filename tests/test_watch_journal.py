"""The daemon follows a real journal directory and resumes at its cursor after a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline.config import WatchConfig
from pipeline.daemon import Daemon
from tests.sources.test_journal import entry, write_journal

RECEIPT = "{q}: D{q}: DSN: Return receipt"


def receipt(seq: int, q: str) -> dict[str, str | bytes]:
    return entry(
        seq,
        RECEIPT.format(q=q),
        SYSLOG_IDENTIFIER="sm-mta",
        _COMM="sendmail",
        _PID="1234",
        PRIORITY="6",
    )


def run_until(daemon: Daemon, out: Path, want: int, seconds: float = 10.0) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + seconds
    rows: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        daemon.step()
        rows = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        if len(rows) >= want:
            break
        time.sleep(0.1)
    return rows


@pytest.mark.real
def test_watch_follows_the_journal_and_resumes_at_the_cursor(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    write_journal(journal / "a.journal", [receipt(i, f"6AU8MP4700000{i}") for i in range(3)])
    out = tmp_path / "out.jsonl"
    cfg = WatchConfig(
        paths=(),
        journal_directory=str(journal),
        state_dir=str(tmp_path / "state"),
        output=str(out),
        from_beginning=True,
    )
    first = Daemon(cfg)
    rows = run_until(first, out, 3)
    assert [r["fields"]["queue_id"] for r in rows] == [f"6AU8MP4700000{i}" for i in range(3)]
    assert all(r["source"].startswith(f"journal:{journal}:") for r in rows)
    first.close()  # checkpoints the cursor

    # entries written while stopped, in a new journal file (a rotation)
    write_journal(journal / "b.journal", [receipt(10 + i, f"6AU8MP4700001{i}") for i in range(2)])
    second = Daemon(cfg)
    rows = run_until(second, out, 5)
    time.sleep(0.5)
    second.step()
    second.close()
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    ids = [r["fields"]["queue_id"] for r in rows]
    assert ids == [f"6AU8MP4700000{i}" for i in range(3)] + [f"6AU8MP4700001{i}" for i in range(2)]
    assert len({r["key"] for r in rows}) == 5  # nothing lost, nothing twice
