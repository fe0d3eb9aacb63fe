"""The daemon on a damaged machine: an emptied or corrupt state database, two daemons on one
state directory, NUL runs from an unclean shutdown, a damaged rotated archive, a restart while
logrotate compresses. Real files, real SQLite, real logrotate, ``logwarden watch`` processes;
each test checks that no receipt is lost and none is reported twice.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.daemon import Daemon
from pipeline.state import StateCorrupt, StateLocked
from tests.conftest import REPO, logrotate, logwarden, require_program
from tests.test_watch import Watch, append, qid
from tests.test_watch_real import Watch as WatchProcess
from tests.test_watch_real import queue_ids, wait_records

STATE_ERROR = 2


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Watch]:
    w = Watch(tmp_path, "mail.log")
    yield w
    w.stop()


def _run_then_stop(watch: Watch) -> Path:
    """A daemon that read receipts 0-2 and stopped; returns its state database."""
    log = watch.base / "mail.log"
    log.write_text("")
    watch.begin()
    append(log, range(3))
    watch.settle()
    watch.stop()
    return watch.state_dir / "state.sqlite"


# -- an empty or corrupt state database ----------------------------------------------------------


def _empty(db: Path) -> None:
    db.write_bytes(b"")


def _bad_header(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"\x00" * 100)


def _bad_page(db: Path) -> None:
    """A page in the middle overwritten: the header still reads, the tables do not."""
    size = db.stat().st_size
    assert size >= 4 * 4096, size
    with db.open("r+b") as f:
        f.seek(2 * 4096)
        f.write(b"\xa5" * 4096)


@pytest.mark.parametrize("damage", [_empty, _bad_header, _bad_page], ids=lambda f: f.__name__[1:])
def test_a_damaged_state_database_is_refused_and_a_restored_one_loses_nothing(
    watch: Watch, damage: object
) -> None:
    db = _run_then_stop(watch)
    backup = watch.base / "backup.sqlite"
    shutil.copyfile(db, backup)
    append(watch.base / "mail.log", range(3, 6))  # logged while the daemon is down
    damage(db)  # type: ignore[operator]
    with pytest.raises(StateCorrupt) as err:
        watch.start()
    assert str(db) in str(err.value) and "--reset-state" in str(err.value)
    res = logwarden("watch", str(watch.base / "mail.log"), "--state-dir", str(watch.state_dir))
    assert res.returncode == STATE_ERROR, res.stderr
    assert "state database is unusable" in res.stderr and "Traceback" not in res.stderr
    # nothing was started afresh on it: the admin restores the backup, and the lines
    # written while down are read, once
    shutil.copyfile(backup, db)
    watch.start()
    watch.settle()
    watch.assert_found(range(6))


def test_reset_state_moves_an_empty_database_aside_with_a_warning(
    watch: Watch, caplog: pytest.LogCaptureFixture
) -> None:
    db = _run_then_stop(watch)
    _empty(db)
    with caplog.at_level("WARNING", logger="logwarden"):
        daemon = Daemon(watch.config(), reset_state=True)
    daemon.close()
    moved = list(watch.state_dir.glob("state.sqlite.broken-*"))
    assert len(moved) == 1 and moved[0].stat().st_size == 0, moved
    assert "--reset-state: moved it to" in caplog.text and "empty: 0 bytes" in caplog.text
    with sqlite3.connect(db) as conn:  # a sound new database
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_reset_state_keeps_a_sound_database(watch: Watch, caplog: pytest.LogCaptureFixture) -> None:
    _run_then_stop(watch)
    append(watch.base / "mail.log", range(3, 5))
    with caplog.at_level("WARNING", logger="logwarden"):
        watch.daemon = Daemon(watch.config(), reset_state=True)
    assert "is sound, so it was kept" in caplog.text
    watch.settle()
    watch.assert_found(range(5))
    assert not list(watch.state_dir.glob("state.sqlite.broken-*"))


def test_a_state_database_gone_from_a_used_directory_is_warned_about(
    watch: Watch, caplog: pytest.LogCaptureFixture
) -> None:
    db = _run_then_stop(watch)
    db.unlink()
    with caplog.at_level("WARNING", logger="logwarden"):
        watch.start()
    assert "was used before, but its state database is gone" in caplog.text


def test_scan_state_refuses_an_empty_database(tmp_path: Path) -> None:
    db = tmp_path / "scan.sqlite"
    db.write_bytes(b"")
    log = tmp_path / "mail.log"
    log.write_text("")
    res = logwarden("scan", str(log), "-q", "--state", str(db))
    assert res.returncode == STATE_ERROR, res.stderr
    assert "state database is unusable (empty: 0 bytes)" in res.stderr


# -- two daemons on one state directory ----------------------------------------------------------


def test_a_second_daemon_in_the_same_process_is_refused(watch: Watch) -> None:
    (watch.base / "mail.log").write_text("")
    watch.begin()
    with pytest.raises(StateLocked, match=r"in use by another logwarden \(pid \d+\)"):
        Daemon(watch.config())


def test_a_second_daemon_on_one_state_directory_exits_and_the_first_reports_once(
    tmp_path: Path,
) -> None:
    from tests.notify.test_notify import Receiver, assert_each_once

    receiver = Receiver()
    receiver.start()
    log = tmp_path / "mail.log"
    log.write_text("")
    first = WatchProcess(tmp_path, [log], "--notify", receiver.url("hook"))
    second = WatchProcess(tmp_path, [log], "--notify", receiver.url("hook"))
    second.runs = 10  # its own stderr file
    try:
        first.start()
        append(log, range(3))
        wait_records(first, lambda r: len(r) == 3)
        with second.stderr_path.open("wb") as err:
            res = subprocess.run(
                second.args, cwd=REPO, stdout=err, stderr=err, timeout=60, check=False
            )
        text = second.log(10)
        assert res.returncode == STATE_ERROR, text
        assert f"state database in use by another logwarden (pid {first.proc.pid})" in text  # type: ignore[union-attr]
        append(log, range(3, 5))
        wait_records(first, lambda r: len(r) == 5)
        receiver.wait_posts(5)
        # a scan that would write the same database is refused too
        scan = logwarden("scan", str(log), "-q", "--state", str(first.state_dir / "state.sqlite"))
        assert scan.returncode == STATE_ERROR and "in use by another logwarden" in scan.stderr
        time.sleep(1.0)
        assert first.stop() == 0, first.logs()
        assert queue_ids(first.records()) == Counter(qid(n) for n in range(5))
        assert_each_once(receiver.posts, range(5))
    finally:
        first.close()
        receiver.stop()


def test_the_lock_of_a_killed_daemon_does_not_stop_the_next_one(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    w = WatchProcess(tmp_path, [log])
    try:
        w.start()
        append(log, range(2))
        wait_records(w, lambda r: len(r) == 2)
        w.kill9()
        append(log, range(2, 4))
        w.start()
        wait_records(w, lambda r: len(r) == 4)
        assert w.stop() == 0, w.logs()
        assert queue_ids(w.records()) == Counter(qid(n) for n in range(4))
    finally:
        w.close()


# -- a damaged rotated archive -------------------------------------------------------------------


def _numbers(records: list[dict[str, Any]]) -> Counter[int]:
    return Counter(int(r["fields"]["queue_id"][1:10]) for r in records)


def _cut(gz: Path) -> None:
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) * 3 // 5])


def _corrupt(gz: Path) -> None:
    with gz.open("r+b") as f:
        f.seek(gz.stat().st_size // 2)
        f.write(b"\xff" * 64)


@pytest.mark.parametrize("damage", [_cut, _corrupt], ids=["cut short", "corrupt"])
def test_a_damaged_rotated_archive_is_read_as_far_as_it_goes_and_passed(
    tmp_path: Path, damage: Any
) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    w = WatchProcess(tmp_path, [log])
    try:
        w.start()
        append(log, range(2))
        wait_records(w, lambda r: len(r) == 2)
        w.kill9()
        append(log, range(2, 3000))  # logged while down, then rotated and compressed
        logrotate(tmp_path, [log], "rotate 9\nmissingok\ncompress\ncreate")
        gz = tmp_path / "mail.log.1.gz"
        damage(gz)
        zcat = subprocess.run(["gzip", "-dc", str(gz)], capture_output=True, check=False)
        assert zcat.returncode != 0  # damaged for gzip too
        whole = zcat.stdout[: zcat.stdout.rfind(b"\n") + 1].decode("utf-8", "replace")
        append(log, range(5000, 5003))
        w.start()
        wait_records(w, lambda r: {5000, 5001, 5002} <= set(_numbers(r)))
        assert w.alive(), w.logs()
        got = _numbers(w.records())
        assert max(got.values()) == 1, [n for n, c in got.items() if c > 1]
        from_archive = sorted(n for n in got if 2 <= n < 3000)
        # what the archive holds up to the damage, without a gap, then the next file
        assert from_archive == list(range(2, 2 + len(from_archive))), from_archive
        assert len(from_archive) > 100, len(from_archive)
        if damage is _cut:
            assert from_archive == [n for n in range(2, 3000) if qid(n) in whole]
        assert "mail.log.1.gz" in w.log() and "truncated-archive" in w.log(), w.log()
        # passed for good: the next start reads neither the archive nor anything twice
        assert w.stop() == 0, w.logs()
        append(log, [5003])
        w.start()
        wait_records(w, lambda r: 5003 in _numbers(r))
        assert w.stop() == 0, w.logs()
        assert _numbers(w.records()) == Counter([0, 1, *from_archive, 5000, 5001, 5002, 5003])
    finally:
        w.close()


# -- a restart while logrotate compresses ------------------------------------------------------


def test_a_restart_while_logrotate_compresses_reads_that_generation_once(
    tmp_path: Path,
) -> None:
    """``compress`` without ``delaycompress``: logrotate renames the file to ``.1``, writes
    ``.1.gz`` and removes ``.1`` only then. A daemon started in between sees both."""
    log = tmp_path / "mail.log"
    log.write_text("")
    started, go = tmp_path / "compress.started", tmp_path / "compress.go"
    slow_gzip = tmp_path / "slow-gzip"
    slow_gzip.write_text(
        f'#!/bin/sh\ngzip "$@"\ntouch "{started}"\nwhile [ ! -e "{go}" ]; do sleep 0.05; done\n'
    )
    slow_gzip.chmod(0o755)
    w = WatchProcess(tmp_path, [log])
    rotating: subprocess.Popen[str] | None = None
    try:
        w.start()
        append(log, range(2))
        wait_records(w, lambda r: len(r) == 2)
        w.kill9()
        append(log, range(2, 50))
        exe = require_program("logrotate", "/usr/sbin/logrotate")
        conf = tmp_path / "logrotate.conf"
        conf.write_text(
            f'"{log}" {{\n    rotate 9\n    compress\n    compresscmd {slow_gzip}\n    create\n}}\n'
        )
        rotating = subprocess.Popen(
            [exe, "-f", "-s", str(tmp_path / "logrotate.status"), str(conf)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not started.exists():
            assert rotating.poll() is None and time.monotonic() < deadline, rotating.stdout
            time.sleep(0.05)
        assert (tmp_path / "mail.log.1").exists() and (tmp_path / "mail.log.1.gz").exists()
        append(log, range(50, 53))
        w.start()  # while both generations are there
        wait_records(w, lambda r: {50, 51, 52} <= set(_numbers(r)))
        time.sleep(1.5)  # a late second reading of the generation would show up by now
        go.touch()
        assert rotating.wait(20) == 0, rotating.stdout
        assert not (tmp_path / "mail.log.1").exists()
        append(log, [53])
        wait_records(w, lambda r: 53 in _numbers(r))
        assert w.stop() == 0, w.logs()
        assert _numbers(w.records()) == Counter(range(54)), w.logs()
    finally:
        go.touch()
        if rotating is not None and rotating.poll() is None:
            rotating.kill()
        w.close()
