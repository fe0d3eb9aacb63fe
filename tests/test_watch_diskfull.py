"""A full disk under the daemon and under ``scan --state``: a real 2 MiB tmpfs, filled up by a
file that takes all its free space, while a real ``logwarden watch`` follows a log written
line by line, checkpoints into SQLite and notifies a real HTTP receiver.

What must hold: the failed writes (SQLite's "database or disk is full" in the WAL, ENOSPC on
``--output``) lose nothing and repeat nothing. The daemon logs the failure once (path, free
space), reads nothing new and retries with backoff, ``status`` says so; once the filler is
deleted it catches up, and every finding is in ``--output`` once and arrives once. A kill -9
while the disk is full, then a restart, gives the same. The state database passes
``PRAGMA integrity_check`` afterwards and is never left empty.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, REPO, logwarden
from tests.notify.test_notify import Receiver, assert_each_once, qid, receipt
from tests.notify.test_notify_daemon import found, outbox, wait_until


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


@pytest.fixture
def endpoint() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def write_lines(log: Path, numbers: Iterable[int]) -> None:
    """Append receipts one line per write, as rsyslog writes them."""
    for n in numbers:
        with log.open("a", encoding="utf-8") as f:
            f.write(receipt(n) + "\n")
        time.sleep(0.02)


class Watch:
    """``logwarden watch -v`` as a subprocess over one log, its stderr in a file."""

    def __init__(self, base: Path, state_dir: Path, output: Path, url: str) -> None:
        self.base = base
        self.log = base / "logs" / "mail.log"
        self.log.parent.mkdir(exist_ok=True)
        self.log.touch()
        self.state_dir, self.output = state_dir, output
        self.config = base / "logwarden.yaml"
        self.config.write_text(
            f"paths:\n  - {self.log}\n"
            f"state_dir: {state_dir}\n"
            f"output: {output}\n"
            "from_beginning: true\n"
            "poll_interval: 0.1\n"
            "notify_retry: 0.2\n"
            "notify:\n"
            f"  - name: hook\n    url: '{url}'\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.err = base / "watch-0.stderr"

    def start(self) -> None:
        self.runs += 1
        self.err = self.base / f"watch-{self.runs}.stderr"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "watch", "--config", str(self.config), "-v"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self.err.open("wb"),
        )

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def wait_logged(self, text: str, timeout: float = 20) -> None:
        wait_until(lambda: text in self.stderr(), timeout, f"{text!r} was not logged")

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.stderr()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def status(state_dir: Path) -> tuple[int, dict[str, Any]]:
    res = logwarden("status", "--state-dir", str(state_dir), "--format", "json", timeout=30)
    assert res.returncode in (0, 1, 3), res.stderr
    return res.returncode, json.loads(res.stdout)


def assert_sound(db: Path) -> None:
    """The state database is not empty and SQLite finds every page sound."""
    assert db.stat().st_size > 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def assert_retried_with_backoff(text: str) -> None:
    """The recovery line's retry count fits a doubling backoff (not a retry every turn)."""
    m = re.search(r"writing works again after (\d+) retries over (\d+)s", text)
    assert m, text
    retries, seconds = int(m[1]), int(m[2])
    assert 1 <= retries <= 3 + math.log2(max(1, seconds)), m[0]


def numbers(output: Path) -> list[str]:
    records = [json.loads(x) for x in output.read_text(encoding="utf-8").splitlines()]
    return [r["fields"]["queue_id"] for r in records]


# -- the daemon's state directory on the full disk -----------------------------------------------


def test_a_full_state_disk_pauses_the_daemon_and_it_catches_up_exactly_once(
    tmp_path: Path, disk: Disk, endpoint: Receiver
) -> None:
    """The disk fills while a notification is being answered (slowly) and while new lines
    arrive: the checkpoint of their findings and the record of that send fail. Nothing new
    reaches --output or the receiver, the send is not repeated, ``status`` says the daemon
    cannot write; once the filler is gone everything arrives once."""
    state_dir = disk.path / "state"
    watch = Watch(tmp_path, state_dir, tmp_path / "findings.jsonl", endpoint.url("hook"))
    endpoint.slow_after, endpoint.slow = 0, 1.0  # each post is answered after a second
    endpoint.start()
    watch.start()
    try:
        write_lines(watch.log, range(3))
        wait_until(lambda: len(found(watch.output)) == 3, 20, "the findings were not written")
        endpoint.wait(lambda: endpoint.in_flight >= 1, 20, "nothing was sent")
        disk.fill()  # while the first post is being answered
        write_lines(watch.log, range(3, 6))
        watch.wait_logged("the checkpoint failed: database or disk is full (0 bytes free)")
        watch.wait_logged("outbox: the outcome of a send cannot be recorded")
        time.sleep(2.5)  # deliverer passes and checkpoint retries while the disk stays full
        watch.alive()
        assert found(watch.output) == [qid(n) for n in range(3)]
        assert_each_once(endpoint.posts, [0])  # the one answered as the disk filled, once

        def full_disk_shown() -> bool:
            code, info = status(state_dir)
            fault = info["daemon"]["fault"]
            return code == 1 and fault is not None and fault["free_bytes"] == 0

        wait_until(full_disk_shown, 15, "status did not show the full disk")
        code, info = status(state_dir)
        assert info["daemon"]["state"] == "stalled"
        assert "0 bytes free" in info["daemon"]["reason"], info["daemon"]

        endpoint.slow_after = None
        disk.release()
        wait_until(lambda: len(found(watch.output)) == 6, 20, "the daemon did not catch up")
        endpoint.wait_posts(6, "hook", timeout=30)
        write_lines(watch.log, range(6, 8))  # and it reads on
        wait_until(lambda: len(found(watch.output)) == 8, 20, "new lines were not read")
        endpoint.wait_posts(8, "hook", timeout=30)
        wait_until(lambda: status(state_dir)[0] == 0, 15, "status still shows a fault")
        time.sleep(1.0)  # a repeated send would arrive now
        assert status(state_dir)[1]["daemon"]["fault"] is None
        assert watch.stop() == 0, watch.stderr()
    finally:
        watch.close()
    assert found(watch.output) == [qid(n) for n in range(8)]
    assert_each_once(endpoint.posts, range(8))
    text = watch.stderr()
    assert text.count("the checkpoint failed") == 1, text
    assert text.count("writing the status record failed") == 1, text
    assert text.count("outbox: the outcome of a send cannot be recorded") == 1, text
    assert f"{state_dir / 'state.sqlite'}: the checkpoint failed" in text
    assert_retried_with_backoff(text)
    assert all(s == "sent" for s, _, _ in outbox(state_dir))
    assert_sound(state_dir / "state.sqlite")


def test_a_daemon_killed_while_its_state_disk_is_full_loses_and_repeats_nothing(
    tmp_path: Path, disk: Disk, endpoint: Receiver
) -> None:
    state_dir = disk.path / "state"
    watch = Watch(tmp_path, state_dir, tmp_path / "findings.jsonl", endpoint.url("hook"))
    endpoint.start()
    watch.start()
    try:
        write_lines(watch.log, range(3))
        wait_until(lambda: len(found(watch.output)) == 3, 20, "the findings were not written")
        endpoint.wait_posts(3, "hook", timeout=20)
        wait_until(
            lambda: [s for s, _, _ in outbox(state_dir)] == ["sent"] * 3, 10, "sends unrecorded"
        )
        disk.fill()
        write_lines(watch.log, range(3, 6))
        watch.wait_logged("the checkpoint failed: database or disk is full (0 bytes free)")
        watch.kill()
        assert_sound(state_dir / "state.sqlite")  # while the disk is still full
        disk.release()
        write_lines(watch.log, range(6, 8))  # while it is down
        watch.start()
        wait_until(lambda: len(found(watch.output)) == 8, 20, "the restart did not catch up")
        endpoint.wait_posts(8, "hook", timeout=30)
        time.sleep(1.0)
        assert watch.stop() == 0, watch.stderr()
    finally:
        watch.close()
    assert found(watch.output) == [qid(n) for n in range(8)]
    assert_each_once(endpoint.posts, range(8))
    assert_sound(state_dir / "state.sqlite")


# -- the daemon's --output on the full disk -------------------------------------------------------


def test_a_full_output_disk_is_retried_then_written_once_also_across_a_kill(
    tmp_path: Path, disk: Disk, endpoint: Receiver
) -> None:
    """``--output`` on the tmpfs, the state database elsewhere: a write of findings fails
    (ENOSPC; part of a record may land in the file's last page). ``status`` shows the fault
    with the output's path and its free space; after the filler is deleted every finding is
    in the file once, with no torn record. Then the disk fills again, the daemon is killed,
    the filler deleted and the daemon restarted: still each finding once."""
    state_dir, output = tmp_path / "state", disk.path / "findings.jsonl"
    watch = Watch(tmp_path, state_dir, output, endpoint.url("hook"))
    endpoint.start()
    watch.start()
    try:
        write_lines(watch.log, range(3))
        wait_until(lambda: len(found(output)) == 3, 20, "the findings were not written")
        disk.fill()
        write_lines(watch.log, range(3, 6))
        watch.wait_logged(f"{output}: writing the findings failed: No space left on device")

        def output_fault() -> dict[str, Any] | None:
            code, info = status(state_dir)
            return info["daemon"]["fault"] if code == 1 else None

        wait_until(lambda: output_fault() is not None, 15, "status did not show the fault")
        fault = output_fault()
        assert fault is not None
        assert (fault["what"], fault["path"], fault["free_bytes"]) == ("output", str(output), 0)
        watch.alive()
        disk.release()
        wait_until(lambda: len(found(output)) == 6, 20, "the output did not catch up")
        assert numbers(output) == [qid(n) for n in range(6)]  # whole records, each once
        wait_until(lambda: status(state_dir)[0] == 0, 15, "status still shows a fault")

        disk.fill()
        write_lines(watch.log, range(6, 12))  # more than the slack of the file's last page
        wait_until(
            lambda: watch.stderr().count("writing the findings failed") == 2,
            20,
            "the second failure was not logged",
        )
        watch.kill()
        disk.release()
        watch.start()
        wait_until(lambda: len(found(output)) == 12, 20, "the restart did not write them")
        endpoint.wait_posts(12, "hook", timeout=30)
        time.sleep(1.0)
        assert watch.stop() == 0, watch.stderr()
    finally:
        watch.close()
    assert numbers(output) == [qid(n) for n in range(12)]
    assert_each_once(endpoint.posts, range(12))
    assert_sound(state_dir / "state.sqlite")


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
