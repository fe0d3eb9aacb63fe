"""A full disk under ``scan --state``: a real 2 MiB tmpfs, filled up by a file that takes all
its free space. The save fails with a clear message and exit 2, nothing is printed, the
previous state stays intact and a new database is not left as an empty file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, logwarden
from tests.notify.test_notify import qid, receipt


class Disk:
    """A mounted tmpfs that :meth:`fill` fills to the last byte and :meth:`release` frees."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def free(self) -> int:
        return shutil.disk_usage(self.path).free

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            block = b"\0" * 65536
            while True:
                try:
                    if os.write(fd, block) == 0:
                        break
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        finally:
            os.close(fd)
        assert self.free() == 0

    def release(self) -> None:
        self.filler.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A real 2 MiB tmpfs on a directory of the test's own (mounting needs root: CI runs the
    tests as root, so there a failed mount fails the test; elsewhere it skips)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        why = "mount is not installed"
    else:
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            check=False,
        )
        why = "" if res.returncode == 0 else (res.stderr.strip() or f"exit {res.returncode}")
    if why:
        message = f"cannot mount a tmpfs to fill up ({why}): the full-disk tests need root"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield Disk(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def assert_sound(db: Path) -> None:
    """The state database is not empty and SQLite finds every page sound."""
    assert db.stat().st_size > 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


# -- scan --state on the full disk ----------------------------------------------------------------


def _rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(
            "SELECT 'd', name, state FROM detector_state UNION ALL "
            "SELECT 's', name, state FROM sources ORDER BY 1, 2"
        ).fetchall()
    finally:
        conn.close()


def _scan(state: Path, log: Path) -> subprocess.CompletedProcess[str]:
    return logwarden("scan", "--state", str(state), "--format", "jsonl", str(log), timeout=120)


def _scanned(res: subprocess.CompletedProcess[str]) -> list[str]:
    return [json.loads(x)["fields"]["queue_id"] for x in res.stdout.splitlines()]


def test_scan_state_on_a_full_disk_exits_2_and_keeps_the_previous_state(
    tmp_path: Path, disk: Disk
) -> None:
    log, state = tmp_path / "mail.log", disk.path / "scan.sqlite"
    log.write_text("".join(receipt(n) + "\n" for n in range(3)), encoding="utf-8")
    first = _scan(state, log)
    assert first.returncode == 0, first.stderr
    assert _scanned(first) == [qid(n) for n in range(3)]
    saved = _rows(state)
    with log.open("a", encoding="utf-8") as f:
        f.write("".join(receipt(n) + "\n" for n in range(3, 6)))

    # another reader keeps the WAL open, so the scan opens the database and its save fails
    reader = sqlite3.connect(state)
    try:
        reader.execute("SELECT COUNT(*) FROM sources").fetchone()
        disk.fill()
        res = _scan(state, log)
    finally:
        reader.close()
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert f"{state}: the checkpoint failed: database or disk is full (0 bytes free" in res.stderr
    assert "next run reports them" in res.stderr
    assert "Traceback" not in res.stderr

    # nobody else has it open: the database cannot even be opened on the full disk
    res = _scan(state, log)
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert f"{state}: opening the state database failed" in res.stderr
    assert "(0 bytes free on its file system)" in res.stderr

    # a new state database on the full disk is not left behind as an empty file
    fresh = disk.path / "new.sqlite"
    res = _scan(fresh, log)
    assert res.returncode == 2, res.stderr
    assert "(0 bytes free on its file system)" in res.stderr
    assert sorted(p.name for p in disk.path.iterdir() if p.name.startswith("new.sqlite")) in (
        [],
        ["new.sqlite.lock"],
    )

    disk.release()
    assert_sound(state)
    assert _rows(state) == saved
    again = _scan(state, log)
    assert again.returncode == 0, again.stderr
    assert _scanned(again) == [qid(n) for n in range(3, 6)]
