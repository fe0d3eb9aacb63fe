"""The daemon's detection state in the state database, row by row, turn by turn: what a
checkpoint stores equals the running detector, across a reload and a restart, and a state
database written by the previous version (one whole JSON snapshot) is taken over."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pipeline.daemon import DETECTOR_NAME, Daemon
from pipeline.detection.correlate import Detector
from pipeline.state import StateDB
from tests.test_watch import Watch, no_drain_grace  # noqa: F401 - a fixture


def from_lines(numbers: Iterable[int]) -> str:
    return "".join(
        f"Nov 30 09:00:00 mx1 sm-mta[1]: M{n:09d}: from=<u{n}@example.org>, size=1, class=0,"
        f" nrcpts=1, relay=r{n}.example.org [192.0.2.1]\n"
        for n in numbers
    )


def stored_equals_live(daemon: Daemon) -> None:
    back = daemon.engine.new_detector()
    with StateDB(daemon.config.state_path) as db:
        saved = db.load_detector(DETECTOR_NAME)
        assert saved is not None and saved["version"] == 2
        back.restore(saved, db.detector_rows(DETECTOR_NAME))
    assert json.dumps(back.snapshot()) == json.dumps(daemon.detector.snapshot())


def remembered(daemon: Daemon) -> int:
    return len(daemon.detector.tables["sendmail.dsn-return-receipt#0"].rows)


def test_checkpoints_store_the_rows_and_a_reload_goes_on_without_rewriting(
    tmp_path: Path,
) -> None:
    watch = Watch(tmp_path, "mail.log")
    log = tmp_path / "mail.log"
    daemon = watch.begin()
    with log.open("a") as f:
        f.write(from_lines(range(300)))
    watch.turn()
    daemon.checkpoint()
    assert remembered(daemon) == 300
    stored_equals_live(daemon)
    with log.open("a") as f:
        f.write(from_lines(range(300, 310)))
    watch.turn()  # read, not yet checkpointed (no finding, within a second)
    old = daemon.detector
    assert daemon.reload()
    assert daemon.detector is not old
    # the new detector carries the old one's unstored changes instead of rewriting all
    changes = daemon.detector.changes()
    assert changes.rewrite == frozenset()
    assert len(changes.rows["enrich:sendmail.dsn-return-receipt#0"]) == 10
    with StateDB(daemon.config.state_path) as db:
        db.checkpoint(detector=None, sources={}, findings=[], changes=(DETECTOR_NAME, changes))
    stored_equals_live(daemon)
    watch.stop()
    daemon = watch.start()
    assert remembered(daemon) == 310
    assert daemon.detector.changes().rows == {}  # restored from the rows: nothing to write


def test_a_state_database_of_the_previous_version_is_taken_over(tmp_path: Path) -> None:
    watch = Watch(tmp_path, "mail.log")
    log = tmp_path / "mail.log"
    daemon = watch.begin()
    # what the previous version left: one whole snapshot, no rows
    rules = daemon.engine.rules
    watch.stop()
    old = Detector(rules)
    lines = tmp_path / "before.log"
    lines.write_text(from_lines(range(50)))
    from pipeline.engine import Engine

    Engine(rules).scan([str(lines)], detector=old)
    with StateDB(watch.state_dir / "state.sqlite") as db:
        db.save_detector(DETECTOR_NAME, old.snapshot())
    daemon = watch.start()
    assert remembered(daemon) == 50
    with log.open("a") as f:
        f.write(from_lines(range(50, 60)))
    watch.turn()
    daemon.checkpoint()
    stored_equals_live(daemon)
    watch.stop()
    daemon = watch.start()
    assert remembered(daemon) == 60
    with StateDB(watch.state_dir / "state.sqlite") as db:
        rows = db.detector_row_counts(DETECTOR_NAME)
    assert rows["enrich:sendmail.dsn-return-receipt#0"] == 60


def test_a_checkpoint_that_fails_leaves_its_rows_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint transaction that fails (the disk is full, say) stores nothing; the rows
    it carried are written by the next one that succeeds."""
    watch = Watch(tmp_path, "mail.log")
    log = tmp_path / "mail.log"
    daemon = watch.begin()
    with log.open("a") as f:
        f.write(from_lines(range(20)))
    watch.turn()
    daemon.checkpoint()
    with log.open("a") as f:
        f.write(from_lines(range(20, 25)))
    watch.turn()
    real = StateDB.checkpoint

    def full_disk(self: StateDB, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(StateDB, "checkpoint", full_disk)
    daemon._touched = dict(daemon.followers)
    with pytest.raises(sqlite3.OperationalError):
        daemon.checkpoint()
    monkeypatch.setattr(StateDB, "checkpoint", real)
    daemon._touched = dict(daemon.followers)
    daemon.checkpoint()
    stored_equals_live(daemon)
    assert remembered(daemon) == 25


def test_a_grown_state_is_frozen_out_of_the_garbage_collectors_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each time the remembered entries have grown by FREEZE_AT since the last time, a
    checkpoint moves what is alive out of the collector's way (a full collection over a
    million rows stalled the daemon), and not at every checkpoint."""
    import gc

    import pipeline.daemon

    monkeypatch.setattr(pipeline.daemon, "FREEZE_AT", 100)
    watch = Watch(tmp_path, "mail.log")
    log = tmp_path / "mail.log"
    daemon = watch.begin()
    gc.unfreeze()
    try:
        counts = []
        for start in (0, 60, 120, 180, 240):
            with log.open("a") as f:
                f.write(from_lines(range(start, start + 60)))
            watch.turn()
            daemon.checkpoint()
            counts.append(gc.get_freeze_count() > 0)
            gc.unfreeze()
        # 60, 120 (frozen: +100 since 0), 180, 240 (frozen: +100 since 120), 300
        assert counts == [False, True, False, True, False]
    finally:
        gc.unfreeze()
