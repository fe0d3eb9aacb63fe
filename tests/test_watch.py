"""The tail daemon turn by turn: :meth:`Daemon.step` over files the tests write themselves.

No rsyslog and no subprocess daemon here (``tests/test_watch_real.py`` has those): each test
builds a :class:`WatchConfig` over files in a temporary directory, appends lines, rotates,
truncates, deletes and restarts by hand between turns, and checks what reaches ``--output``.
The lines are sendmail's ``DSN: Return receipt``, one finding per line, each with its own pair
of queue ids, so a lost or a repeated line shows up as a missing or doubled queue id.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import WatchConfig, load_config
from pipeline.daemon import Daemon, JsonlOutput
from pipeline.daemon import status as read_status
from pipeline.model import Finding
from pipeline.sources import tail
from pipeline.state import StateDB
from tests.conftest import REPO, SAMPLES, logwarden

RULE = "sendmail.dsn-return-receipt"


def receipt(n: int, host: str = "mx1", when: str = "Nov 30 09:00:00") -> str:
    """One log line that yields one finding, told apart by its queue ids (``Q000000007A``)."""
    return f"{when} {host} sm-mta[{1000 + n}]: Q{n:09d}A: Q{n:09d}B: DSN: Return receipt\n"


def qid(n: int) -> str:
    return f"Q{n:09d}A"


def append(path: Path, numbers: Iterable[int], *, end: str = "") -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(receipt(n) for n in numbers) + end)


def gzip_file(path: Path, target: Path) -> None:
    """Compress ``path`` into ``target`` and remove it, as logrotate's ``compress`` does."""
    with path.open("rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.utime(target, (path.stat().st_atime, path.stat().st_mtime))
    path.unlink()


@pytest.fixture(autouse=True)
def no_drain_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotated-away file counts as finished at the first turn that finds nothing new in it
    (the daemon waits a second of quiet; these tests control every write themselves)."""
    monkeypatch.setattr(tail, "DRAIN_GRACE", 0.0)


class Watch:
    """A daemon over files in one directory, driven one turn at a time; restartable."""

    def __init__(self, base: Path, *names: str, from_beginning: bool = False) -> None:
        self.base = base
        self.paths = tuple(str(base / n) for n in names)
        self.state_dir = base / "state"
        self.output = base / "findings.jsonl"
        self.from_beginning = from_beginning
        self.daemon: Daemon | None = None

    def config(self) -> WatchConfig:
        return WatchConfig(
            paths=self.paths,
            state_dir=str(self.state_dir),
            output=str(self.output),
            from_beginning=self.from_beginning,
            poll_interval=0.05,
        )

    def start(self) -> Daemon:
        """A new daemon on the same state directory (a restart), after its recovery step."""
        self.stop()
        self.daemon = Daemon(self.config())
        self.daemon.recover()
        return self.daemon

    def begin(self) -> Daemon:
        """The first start: one turn over the (missing or empty) files fixes where reading
        starts, so what the test appends afterwards is new."""
        daemon = self.start()
        self.turn()
        return daemon

    def abandon(self) -> None:
        """Drop the running daemon without closing anything (as if it had been killed)."""
        if self.daemon is not None:
            self.daemon.state.close()  # only so the test does not leak the connection
            self.daemon.lock.release()  # the kernel drops a killed process's lock
            self.daemon = None

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.close()
            self.daemon = None

    def turn(self, times: int = 1) -> int:
        assert self.daemon is not None
        return sum(self.daemon.step() for _ in range(times))

    def settle(self, limit: int = 50) -> None:
        """Turn until two turns in a row read nothing (rotated files drained, switched)."""
        quiet = 0
        for _ in range(limit):
            quiet = quiet + 1 if self.turn() == 0 else 0
            if quiet >= 2:
                return
        pytest.fail(f"the daemon still reads after {limit} turns")

    def records(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        text = self.output.read_text(encoding="utf-8")
        assert not text or text.endswith("\n"), f"{self.output} ends inside a record"
        out = []
        for n, raw in enumerate(text.splitlines(), 1):
            try:
                out.append(json.loads(raw))
            except ValueError:
                pytest.fail(f"{self.output}:{n} is not one JSON object: {raw!r}")
        return out

    def found(self) -> Counter[str]:
        """How often each queue id was reported."""
        recs = self.records()
        assert {r["rule"] for r in recs} <= {RULE}, recs
        return Counter(r["fields"]["queue_id"] for r in recs)

    def assert_found(self, numbers: Iterable[int]) -> None:
        """Exactly these receipts, each exactly once, and no record twice."""
        want = Counter(qid(n) for n in numbers)
        got = self.found()
        lost = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        doubled = sorted(q for q, c in got.items() if c > 1)
        assert not (lost or extra or doubled), f"lost {lost}, unexpected {extra}, twice {doubled}"
        keys = Counter(r["key"] for r in self.records())
        assert max(keys.values(), default=1) == 1, keys


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Watch]:
    w = Watch(tmp_path, "mail.log")
    yield w
    w.stop()


# -- where reading starts ------------------------------------------------------------------------


def test_first_run_starts_at_the_end_of_existing_files(watch: Watch) -> None:
    log = Path(watch.paths[0])
    append(log, range(3))
    watch.start()
    assert watch.turn(3) == 0
    assert watch.found() == Counter()
    append(log, range(3, 5))
    watch.turn()
    watch.assert_found(range(3, 5))


def test_first_run_at_the_end_still_reads_a_line_being_written(watch: Watch) -> None:
    """The end of a file is after its last whole line: a partial line there is finished later."""
    log = Path(watch.paths[0])
    append(log, range(2))
    partial = receipt(2)
    with log.open("a") as f:
        f.write(partial[:30])
    watch.start()
    watch.turn()
    with log.open("a") as f:
        f.write(partial[30:])
    watch.turn()
    watch.assert_found([2])


def test_from_beginning_reads_existing_files_on_the_first_run_only(tmp_path: Path) -> None:
    w = Watch(tmp_path, "mail.log", from_beginning=True)
    log = Path(w.paths[0])
    append(log, range(3))
    w.start()
    w.turn()
    w.assert_found(range(3))
    append(log, [3])
    w.start()  # a restart with --from-beginning again resumes from the checkpoint
    w.turn()
    w.assert_found(range(4))
    w.stop()


def test_a_file_that_appears_later_is_read_from_its_start(watch: Watch) -> None:
    log = Path(watch.paths[0])
    watch.start()
    assert watch.turn(2) == 0
    append(log, range(3))
    watch.turn()
    watch.assert_found(range(3))


def test_a_file_that_appears_under_a_glob_is_read_from_its_start(tmp_path: Path) -> None:
    w = Watch(tmp_path, "*.log")
    (tmp_path / "a.log").write_text("")
    w.begin()
    append(tmp_path / "a.log", [0])
    w.turn()
    append(tmp_path / "new.log", range(1, 4))  # a new virtual host's log, say
    w.turn(2)
    w.stop()
    w.assert_found(range(4))


def test_a_file_that_leaves_its_glob_is_read_to_its_end_and_let_go(tmp_path: Path) -> None:
    """Deleted (or compressed away) right after its last line: that line is still found,
    and the daemon stops holding the file open (its disk space comes back)."""
    w = Watch(tmp_path, "*.log")
    log = tmp_path / "a.log"
    log.write_text("")
    daemon = w.begin()
    append(log, [0])
    log.unlink()
    w.settle()
    assert str(log) not in daemon.followers
    assert not any(
        os.readlink(f"/proc/self/fd/{fd}") == f"{log} (deleted)"
        for fd in os.listdir("/proc/self/fd")
        if os.path.islink(f"/proc/self/fd/{fd}")
    )
    w.stop()
    w.assert_found([0])


@pytest.mark.parametrize("before", ["missing", "empty"])
def test_lines_written_while_stopped_to_a_file_not_read_before_are_read(
    watch: Watch, before: str
) -> None:
    """The daemon ran while the file was missing (or empty), then stopped; the file got lines
    (Apache starting at boot before logwarden, say). This is not a first run: the daemon was
    waiting for that file, and must read it from its start."""
    log = Path(watch.paths[0])
    if before == "empty":
        log.write_text("")
    watch.begin()
    watch.turn()
    watch.stop()
    append(log, range(3))
    watch.start()
    watch.turn(2)
    watch.assert_found(range(3))


# -- lines -----------------------------------------------------------------------------------------


def test_a_partial_last_line_waits_for_its_newline(watch: Watch) -> None:
    log = Path(watch.paths[0])
    log.write_text("")
    watch.start()
    watch.turn()
    line = receipt(1)
    with log.open("a") as f:
        f.write(receipt(0) + line[:-1])  # the writer has not finished the second line yet
    watch.turn(3)
    watch.assert_found([0])
    state = watch.daemon.followers[str(log)].state()  # type: ignore[union-attr]
    assert state is not None and state.offset == len(receipt(0)) and state.line == 1
    with log.open("a") as f:
        f.write("\n")
    watch.turn()
    watch.assert_found([0, 1])
    assert [r["source"] for r in watch.records()] == [f"{log}:1", f"{log}:2"]


# -- rotations while running -------------------------------------------------------------------


def test_rename_and_create_finishes_the_old_file_first(watch: Watch) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    with log.open("a") as writer:  # the syslog daemon keeps its descriptor across the rename
        log.rename(log.with_name("mail.log.1"))
        append(log, range(10, 12))  # the new file, created by the rotation
        writer.write(receipt(2) + receipt(3)[:-1])  # written late, before the writer reopens
        writer.flush()
        watch.turn()
        writer.write("\n")
    watch.settle()
    watch.assert_found([0, 1, 2, 3, 10, 11])
    sources = {r["fields"]["queue_id"]: r["source"] for r in watch.records()}
    assert sources[qid(2)] == f"{log}.1:3", "a line read after the rename names the new name"
    assert sources[qid(10)] == f"{log}:1"


def test_a_rotated_file_ending_in_a_partial_line_is_finished(
    watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer died mid-line before the rotation: once the old file has been quiet for the
    drain grace, its last partial line is taken as a line and the new file is read."""
    monkeypatch.setattr(tail, "DRAIN_GRACE", 0.1)
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2), end=receipt(2)[:-1])
    watch.turn()
    log.rename(log.with_name("mail.log.1"))
    append(log, range(10, 12))
    deadline = time.monotonic() + 1  # ten times the grace
    while time.monotonic() < deadline and watch.found()[qid(11)] == 0:
        watch.turn()
        time.sleep(0.02)
    watch.assert_found([0, 1, 2, 10, 11])


def test_copytruncate_restarts_at_the_start_of_the_same_file(watch: Watch) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(3))
    watch.turn()
    shutil.copy(log, log.with_name("mail.log.1"))
    with log.open("r+") as f:
        f.truncate(0)
    append(log, [3])  # shorter than the offset reached before
    watch.turn()
    watch.assert_found(range(4))
    with log.open("r+") as f:
        f.truncate(0)
    append(log, range(4, 9))  # truncated and grown past the old offset before the next turn
    watch.turn(2)
    watch.assert_found(range(9))


def test_copytruncate_keeps_the_lines_written_just_before_the_copy(watch: Watch) -> None:
    """Lines written before ``copy`` are in ``mail.log.1`` with the fingerprint of the file
    being followed: nothing forces their loss. (Lines written between the copy and the
    truncation are lost for every reader; this test writes none.)"""
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    append(log, range(2, 4))  # not read yet when logrotate copies and truncates
    shutil.copy(log, log.with_name("mail.log.1"))
    with log.open("r+") as f:
        f.truncate(0)
    append(log, [4])
    watch.settle()
    watch.assert_found(range(5))


def test_copytruncate_noticed_after_the_file_grew_again_keeps_the_copied_lines(
    watch: Watch,
) -> None:
    """A busy log: between two turns it was copied, truncated and written past the offset
    the daemon had reached."""
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    append(log, range(2, 4))
    shutil.copy(log, log.with_name("mail.log.1"))
    with log.open("r+") as f:
        f.truncate(0)
    append(log, range(10, 15))
    watch.settle()
    watch.assert_found([0, 1, 2, 3, *range(10, 15)])


def test_copytruncate_and_compress_while_running_keeps_the_copied_lines(watch: Watch) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    append(log, range(2, 4))
    shutil.copy(log, log.with_name("mail.log.1"))
    with log.open("r+") as f:
        f.truncate(0)
    gzip_file(log.with_name("mail.log.1"), log.with_name("mail.log.1.gz"))
    append(log, [10])
    watch.settle()
    watch.assert_found([0, 1, 2, 3, 10])


def test_delete_and_recreate_finishes_the_deleted_file(watch: Watch) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    with log.open("a") as writer:
        writer.write(receipt(0))
        writer.flush()
        watch.turn()
        log.unlink()
        writer.write(receipt(1))  # into the deleted file, before the writer reopens
        writer.flush()
        watch.turn()
        append(log, range(10, 12))  # the writer reopened: a new file at the path
        writer.write(receipt(2))
        writer.flush()
        watch.settle()
    watch.assert_found([0, 1, 2, 10, 11])


# -- restarts ----------------------------------------------------------------------------------------


def test_a_restart_resumes_from_the_checkpoint(watch: Watch) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(3))
    watch.turn()
    watch.stop()
    append(log, range(3, 6))  # written while stopped
    watch.start()
    watch.turn()
    append(log, [6])
    watch.turn()
    watch.assert_found(range(7))


def test_lines_read_but_not_checkpointed_before_a_crash_are_reported_once(
    watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after reading and detecting, before the checkpoint committed: read again."""
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    append(log, range(2, 5))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point runs

    with monkeypatch.context() as m:
        m.setattr(StateDB, "checkpoint", crash)
        with pytest.raises(KeyboardInterrupt):
            watch.turn()
    watch.abandon()
    watch.start()
    watch.turn()
    watch.assert_found(range(5))


def _crashing_write(written: str) -> Any:
    """A JsonlOutput.write that dies part way: after no record, half the records, or half
    the records and part of the next one (a torn line, as a crash leaves); then the process
    dies (a full disk, which the daemon retries, is in ``tests/test_watch_diskfull.py``)."""

    def write(self: JsonlOutput, findings: list[Finding]) -> int:
        half = len(findings) // 2 if written != "nothing" else 0
        with open(self.path, "a", encoding="utf-8") as f:
            for x in findings[:half]:
                f.write(json.dumps(x.as_dict(), ensure_ascii=False) + "\n")
            if written == "torn":
                f.write(json.dumps(findings[half].as_dict(), ensure_ascii=False)[:50])
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point runs

    return write


@pytest.mark.parametrize("written", ["nothing", "half", "torn"])
def test_a_crash_between_checkpoint_and_output_is_completed_once(
    watch: Watch, monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    append(log, range(2, 8))
    with monkeypatch.context() as m:
        m.setattr(JsonlOutput, "write", _crashing_write(written))
        with pytest.raises(KeyboardInterrupt):
            watch.turn()
    with StateDB(watch.state_dir / "state.sqlite") as db:
        assert sorted(f.fields["queue_id"] for f in db.pending()) == [qid(n) for n in range(2, 8)]
    watch.abandon()
    watch.start()  # recover() runs here
    watch.turn(2)
    append(log, [8])
    watch.turn()
    watch.assert_found(range(9))
    with StateDB(watch.state_dir / "state.sqlite") as db:
        assert db.pending() == []


def test_a_crash_after_the_output_write_does_not_write_again(
    watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(4))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(StateDB, "mark_emitted", crash)
        with pytest.raises(KeyboardInterrupt):
            watch.turn()
    watch.abandon()
    watch.start()
    watch.turn()
    watch.assert_found(range(4))


@pytest.mark.parametrize("rotation", ["renamed", "renamed and compressed"])
def test_a_file_rotated_while_stopped_is_finished_first(
    watch: Watch, rotation: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(3))
    watch.turn()
    watch.stop()
    append(log, range(3, 6))  # never read before the rotation
    rotated = log.with_name("mail.log.1")
    log.rename(rotated)
    if rotation == "renamed and compressed":
        gzip_file(rotated, log.with_name("mail.log.1.gz"))
        rotated = log.with_name("mail.log.1.gz")
    append(log, range(10, 13))
    caplog.set_level(logging.INFO, logger="logwarden")
    watch.start()
    watch.settle()
    watch.assert_found([*range(6), *range(10, 13)])
    assert f"rotated while stopped; finishing {rotated} first" in caplog.text
    sources = {r["fields"]["queue_id"]: r["source"] for r in watch.records()}
    assert sources[qid(3)] == f"{rotated}:4"


def test_two_rotations_while_stopped_read_every_generation(watch: Watch) -> None:
    """logrotate ran twice while the daemon was down (``delaycompress``: the file read last is
    now ``mail.log.2.gz``, the next one ``mail.log.1``, then the current file)."""
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    watch.stop()
    append(log, [2])
    log.rename(log.with_name("mail.log.1"))
    append(log, [3, 4])
    log.with_name("mail.log.1").rename(log.with_name("mail.log.2"))
    gzip_file(log.with_name("mail.log.2"), log.with_name("mail.log.2.gz"))
    log.rename(log.with_name("mail.log.1"))
    append(log, [5])
    watch.start()
    watch.settle()
    watch.assert_found(range(6))


def test_copytruncate_while_stopped_finishes_the_copy(watch: Watch) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    watch.stop()
    append(log, [2, 3])
    shutil.copy2(log, log.with_name("mail.log.1"))
    with log.open("r+") as f:
        f.truncate(0)
    append(log, [4])
    watch.start()
    watch.settle()
    watch.assert_found(range(5))


def test_copytruncate_and_compress_while_stopped_finishes_the_copy(watch: Watch) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    watch.stop()
    append(log, [2, 3])
    shutil.copy2(log, log.with_name("mail.log.1"))
    with log.open("r+") as f:
        f.truncate(0)
    gzip_file(log.with_name("mail.log.1"), log.with_name("mail.log.1.gz"))
    append(log, [4])
    watch.start()
    watch.settle()
    watch.assert_found(range(5))


def test_a_file_deleted_while_stopped_is_reported_and_the_new_one_read(
    watch: Watch, caplog: pytest.LogCaptureFixture
) -> None:
    log = Path(watch.paths[0])
    watch.begin()
    append(log, range(2))
    watch.turn()
    watch.stop()
    log.unlink()
    append(log, [2])
    caplog.set_level(logging.INFO, logger="logwarden")
    watch.start()
    watch.settle()
    watch.assert_found(range(3))
    assert "rotated-away" in caplog.text


def test_correlation_state_survives_a_crash_and_a_rotation(watch: Watch) -> None:
    """A join (the sender of a DSN receipt, from its ``from=`` line) and a sequence
    (``dovecot.silent-stop``) whose first halves were read before a crash and a rotation
    complete after the restart, once."""
    log = Path(watch.paths[0])
    watch.begin()
    with log.open("a") as f:
        f.write(
            "Nov 30 08:22:25 mx1 sm-mta[2001]: QSENDER0001: from=<forged@example.net>, size=2240,"
            " class=0, nrcpts=1, proto=ESMTP, daemon=MTA-v4, relay=client.example.net [192.0.2.7]\n"
            "Nov 30 08:23:06 mx1 dovecot: master: Error: service(anvil): Initial status "
            "notification not received in 30 seconds, killing the process\n"
        )
    watch.turn()
    assert [r["rule"] for r in watch.records()] == ["dovecot.status-notification-timeout"]
    watch.abandon()  # killed
    log.rename(log.with_name("mail.log.1"))
    log.write_text(
        "Nov 30 09:10:00 mx1 sm-mta[2002]: QSENDER0001: QRECEIPT001: DSN: Return receipt\n"
        "Nov 30 10:15:00 mx1 dovecot: master: Warning: service(pop3-login): process_limit (100)"
        " reached, client connections are being dropped\n"
    )
    watch.start()
    watch.settle()
    watch.stop()
    records = watch.records()
    rules = Counter(r["rule"] for r in records)
    assert rules == Counter(
        [
            "dovecot.status-notification-timeout",
            RULE,
            "dovecot.process-limit-reached",
            "dovecot.silent-stop",
        ]
    ), records
    (dsn,) = [r for r in records if r["rule"] == RULE]
    assert dsn["fields"].get("sender") == "forged@example.net", dsn


# -- replay equals live --------------------------------------------------------------------------

#: every bundled sample, in the order scan reads them; the compressed generation decompressed
SAMPLE_FILES = (
    "apache2/error.log",
    "journal/journal.json",
    "mail/mail.log.2",
    "mail/mail.log.1",
    "mail/mail.log",
    "scenarios/new-year/syslog",
    "scenarios/threshold-edge/error.log",
    "syslog-rfc3339/syslog",
    "syslog/syslog",
)


def _sample_copy(base: Path) -> list[Path]:
    """The samples under ``base`` with their mtimes (which decide the year of year-less lines).

    ``watch`` follows live files, and a live file is never compressed, so ``mail.log.2.gz`` is
    followed as the plain ``mail.log.2`` it was before logrotate compressed it.
    """
    out = []
    for name in SAMPLE_FILES:
        dst = base / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        src = SAMPLES / name
        if src.exists():
            shutil.copy2(src, dst)
        else:
            gz = src.with_name(src.name + ".gz")
            with gzip.open(gz, "rb") as f:
                dst.write_bytes(f.read())
            os.utime(dst, (gz.stat().st_atime, gz.stat().st_mtime))
        out.append(dst)
    return out


def _identity(d: dict[str, Any]) -> tuple[Any, ...]:
    return (
        d["rule"],
        d["timestamp"],
        d["host"],
        d["source"],
        json.dumps(d["fields"], sort_keys=True),
    )


def _scan(paths: list[Path], state: Path | None = None) -> dict[str, dict[str, Any]]:
    args = ["scan", *map(str, paths), "--format", "jsonl", "-q"]
    if state is not None:
        args += ["--state", str(state)]
    res = logwarden(*args)
    assert res.returncode == 0, res.stderr
    found = [json.loads(x) for x in res.stdout.splitlines()]
    by_key = {d["key"]: d for d in found}
    assert len(by_key) == len(found), "scan reported a key twice"
    return by_key


def test_replay_equals_live_through_the_command_line(tmp_path: Path) -> None:
    """``scan`` and ``watch --from-beginning`` over the same files report the same findings:
    same keys, rules, timestamps, hosts, ``source:line``, fields and counts.

    What is compared with what: ``scan`` ends with ``Detector.finish()`` (end of input:
    buffered matches released, suppression digests flushed, open windows counted); ``watch``
    never reaches an end of input and never calls it. ``scan --state`` does not call it
    either (detection continues at the next scan), so it is the like-for-like reference and
    must equal ``watch`` exactly. Plain ``scan`` may add findings that only the end of input
    completes; every finding ``watch`` reports must be in it, identical. The counts compare
    here because every file is present at the start and read in one turn: a finding is
    written to ``--output`` once, when first reported, so occurrences folded into it in a
    later turn update the state database, not the output (the live test below checks those
    counts in the state database).
    """
    paths = _sample_copy(tmp_path / "logs")
    plain = _scan(paths)
    resumable = _scan(paths, tmp_path / "scan-state.sqlite")
    state_dir, output = tmp_path / "state", tmp_path / "watch.jsonl"
    stderr = (tmp_path / "watch.stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "watch", *map(str, paths), "--from-beginning",
         "--state-dir", str(state_dir), "--output", str(output), "--poll-interval", "0.2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    try:
        sizes = {str(p): p.stat().st_size for p in paths}
        deadline = time.monotonic() + 30
        while True:
            done: dict[str, int] = {}
            if (state_dir / "state.sqlite").exists():
                try:
                    done = {
                        s["source"]: s["offset"] for s in read_status(str(state_dir))["sources"]
                    }
                except Exception:  # the database is being created
                    done = {}
            if done == sizes:
                break
            assert proc.poll() is None, f"watch exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"watch did not read every file: {done}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr.seek(0)
    log = stderr.read()
    live = [json.loads(x) for x in output.read_text(encoding="utf-8").splitlines()]
    by_key = {d["key"]: d for d in live}
    assert len(by_key) == len(live), "watch wrote a finding twice"

    def view(found: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
        return {k: (*_identity(d), d["count"]) for k, d in found.items()}

    assert len(live) > 50 and {d["rule"] for d in live} >= {
        "dovecot.silent-stop",
        "systemd.remount-fs-cascade",
        "sendmail.dsn-return-receipt",
    }, "the samples lost their correlation findings"
    assert view(by_key) == view(resumable), log
    missing = {k: v for k, v in view(by_key).items() if view(plain).get(k) != v}
    assert not missing, f"watch found what scan did not: {missing}"


def test_replay_equals_live_when_lines_arrive_in_pieces(tmp_path: Path) -> None:
    """The samples written into the followed files ~1 kB at a time (lines cut anywhere), with
    a turn after every write, give the same findings as ``scan --state`` over the finished
    files. The output holds each finding once as first reported; its final count is the one
    in the state database."""
    sources = _sample_copy(tmp_path / "samples")
    logs = tmp_path / "logs"
    paths = [logs / p.relative_to(tmp_path / "samples") for p in sources]
    w = Watch(logs, *(str(p.relative_to(logs)) for p in paths), from_beginning=True)
    w.start()
    w.turn()
    for src, dst in zip(sources, paths, strict=True):
        dst.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        for i in range(0, len(data), 997):
            with dst.open("ab") as f:
                f.write(data[i : i + 997])
            w.turn()
        os.utime(dst, (src.stat().st_atime, src.stat().st_mtime))
    w.settle()
    w.stop()
    # the year of a year-less line comes from the mtime the file had when it was first read
    # (now, for both), so scan the copies with the same mtimes as the followed files
    for src, dst in zip(sources, paths, strict=True):
        os.utime(src, (dst.stat().st_atime, dst.stat().st_mtime))
    reference = _scan(sources, tmp_path / "scan-state.sqlite")
    rename = {str(s): str(d) for s, d in zip(sources, paths, strict=True)}

    def relocated(d: dict[str, Any]) -> tuple[Any, ...]:
        path, _, line = d["source"].rpartition(":")
        return _identity({**d, "source": f"{rename.get(path, path)}:{line}"})

    live = w.records()
    assert len({d["key"] for d in live}) == len(live), "watch wrote a finding twice"
    assert {d["key"]: _identity(d) for d in live} == {k: relocated(d) for k, d in reference.items()}
    with StateDB(w.state_dir / "state.sqlite") as db:
        stored = {f.key: f.count for f in db.recent_findings(100_000)}
    assert stored == {k: d["count"] for k, d in reference.items()}


# -- status and configuration ------------------------------------------------------------------


def test_status_shows_each_source_and_the_last_findings(tmp_path: Path) -> None:
    w = Watch(tmp_path, "mail.log", "other.log")
    mail, other = (Path(p) for p in w.paths)
    mail.write_text("")
    other.write_text("")
    w.start()
    w.turn()
    append(mail, range(12))
    append(other, [20], end=receipt(21)[:25])  # a partial line: read later, counted as lag
    w.turn()
    w.stop()
    append(mail, [12])  # written since: lag
    res = logwarden("status", "--state-dir", str(w.state_dir), "--format", "json")
    assert res.returncode == 3, res.stderr  # the daemon is not running
    info = json.loads(res.stdout)
    assert info["daemon"]["state"] == "stopped"
    by_source = {s["source"]: s for s in info["sources"]}
    assert set(by_source) == {str(mail), str(other)}
    line = len(receipt(0))
    assert by_source[str(mail)] | {"lines_per_s": 0} == {
        "source": str(mail),
        "offset": 12 * line,
        "line": 12,
        "lag_bytes": line,
        "lines": 12,
        "lines_per_s": 0,
        "errors": 0,
        "problems": {},
        "copies": 0,
    }
    assert by_source[str(other)]["offset"] == line
    assert by_source[str(other)]["line"] == 1
    assert by_source[str(other)]["lag_bytes"] == 25
    assert by_source[str(other)]["errors"] == 0
    recent = [f["fields"]["queue_id"] for f in info["findings"]]
    assert len(recent) == 10 and set(recent) <= {qid(n) for n in [*range(12), 20]}
    table = logwarden("status", "--state-dir", str(w.state_dir))
    assert table.returncode == 3 and "mail.log" in table.stdout and "last findings" in table.stdout
    assert table.stdout.startswith("stopped (pid ")


def test_status_counts_lines_across_restarts(tmp_path: Path) -> None:
    w = Watch(tmp_path, "mail.log")
    log = Path(w.paths[0])
    w.begin()
    append(log, range(3))
    w.turn()
    w.start()
    append(log, range(3, 5))
    w.turn()
    w.stop()
    (source,) = read_status(str(w.state_dir))["sources"]
    assert (source["lines"], source["line"]) == (5, 5)


def test_status_lists_an_unreadable_source_with_its_errors(tmp_path: Path) -> None:
    """A directory where a log file should be stands for any unreadable path (tests run as
    root, which no file mode stops; tests/test_watch_real.py has the permission case)."""
    w = Watch(tmp_path, "mail.log", "broken.log")
    Path(w.paths[1]).mkdir()
    Path(w.paths[0]).write_text("")
    w.start()
    w.turn()
    append(Path(w.paths[0]), range(2))
    w.turn(3)
    w.stop()
    by_source = {s["source"]: s for s in read_status(str(w.state_dir))["sources"]}
    assert str(w.paths[0]) in by_source
    assert by_source.get(str(w.paths[1]), {}).get("errors", 0) > 0, by_source


def test_an_unreadable_source_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = Watch(tmp_path, "broken.log", "mail.log")
    Path(w.paths[0]).mkdir()
    log = Path(w.paths[1])
    log.write_text("")
    caplog.set_level(logging.INFO, logger="logwarden")
    w.start()
    w.turn()
    append(log, range(3))
    w.turn()
    w.assert_found(range(3))
    assert f"{w.paths[0]}: unreadable: Is a directory" in caplog.text
    w.stop()


def test_watch_config_with_an_unknown_key_fails_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "logwarden.yaml"
    config.write_text(
        f"paths:\n  - {tmp_path}/mail.log\nstate_dir: {tmp_path}/state\npoll_intervall: 2\n",
        encoding="utf-8",
    )
    res = logwarden("watch", "--config", str(config), timeout=20)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert f"{config}:4" in res.stderr and "poll_intervall" in res.stderr
    assert "poll_interval" in res.stderr  # the known settings are listed
    assert not (tmp_path / "state").exists()


def test_watch_config_with_a_wrong_type_fails_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "logwarden.yaml"
    config.write_text("poll_interval: 0.5\nfrom_beginning: sometimes\n", encoding="utf-8")
    res = logwarden("watch", "--config", str(config), timeout=20)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert f"{config}:2" in res.stderr and "from_beginning" in res.stderr


def test_reload_keeps_settings_that_need_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGHUP re-reads rules and notifiers; a new state_dir or output would split the state
    between two databases, so those wait for a restart, and the log says so."""
    conf = tmp_path / "config.yaml"
    log = tmp_path / "a.log"
    log.write_text("")
    conf.write_text(f"paths: [{log}]\nstate_dir: {tmp_path / 's1'}\npoll_interval: 0.1\n")
    daemon = Daemon(load_config(str(conf)), config_path=str(conf))
    try:
        conf.write_text(f"paths: [{log}]\nstate_dir: {tmp_path / 's2'}\npoll_interval: 0.5\n")
        with caplog.at_level("WARNING", logger="pipeline.daemon"):
            assert daemon.reload()
        assert daemon.config.state_dir == str(tmp_path / "s1")
        assert daemon.config.poll_interval == 0.5  # applied at once
        assert "state_dir take effect at the next restart" in caplog.text
    finally:
        daemon.close()


def test_watch_refuses_a_poll_interval_that_would_spin(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["watch", str(tmp_path / "a.log"), "--poll-interval", "0"])
    assert result.exit_code == 2 and "--poll-interval" in result.output


def _watch_until(args: list[str], output: Path, want: set[str], tmp_path: Path) -> set[str]:
    """Run ``logwarden watch ARGS`` until ``output`` holds the queue ids ``want``, then
    SIGTERM it; the queue ids found."""
    stderr = (tmp_path / "watch.stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "watch", *args], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    found: set[str] = set()
    try:
        deadline = time.monotonic() + 30
        while not want <= found:
            assert proc.poll() is None, f"watch exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"watch found {found}, not {want}"
            time.sleep(0.1)
            if output.exists():
                rows = [json.loads(x) for x in output.read_text().splitlines() if x.endswith("}")]
                found = {r["fields"]["queue_id"] for r in rows}
        time.sleep(0.5)  # anything read too much would show up by now
        if output.exists():
            rows = [json.loads(x) for x in output.read_text().splitlines()]
            found = {r["fields"]["queue_id"] for r in rows}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return found


def test_watch_since_until_choose_the_first_runs_old_lines_and_then_offsets_rule(
    tmp_path: Path,
) -> None:
    log = tmp_path / "a.log"
    log.write_text(
        receipt(1, when="Nov 30 07:00:00")
        + receipt(2, when="Nov 30 09:00:00")
        + receipt(3, when="Nov 30 11:00:00")
    )
    stamp = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    os.utime(log, (stamp, stamp))
    output = tmp_path / "out.jsonl"
    args = [
        str(log), "--state-dir", str(tmp_path / "state"), "-o", str(output), "--tz", "UTC",
        "--since", "2026-11-30T08:00", "--until", "2026-11-30T10:00", "--poll-interval", "0.05",
    ]  # fmt: skip
    # the first run reads the file from its start, keeping the old lines inside the range
    assert _watch_until(args, output, {qid(2)}, tmp_path) == {qid(2)}
    # later runs go on from the saved offsets: a new line outside the range is read
    with log.open("a") as f:
        f.write(receipt(4, when="Nov 30 07:30:00"))
    assert _watch_until(args, output, {qid(2), qid(4)}, tmp_path) == {qid(2), qid(4)}


def test_watch_refuses_an_unreadable_since(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    result = CliRunner().invoke(main, ["watch", "--state-dir", state, "--since", "-2 fortnights"])
    assert result.exit_code == 2 and "cannot read time '-2 fortnights'" in result.stderr


def test_the_status_record_reads_the_process_start_and_host_name_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import daemon as daemon_module

    calls: Counter[str] = Counter()
    start, host = daemon_module.process_start, daemon_module.socket.gethostname

    def counted_start(pid: int) -> str | None:
        calls["proc"] += 1
        return start(pid)

    def counted_host() -> str:
        calls["host"] += 1
        return host()

    monkeypatch.setattr(daemon_module, "process_start", counted_start)
    monkeypatch.setattr(daemon_module.socket, "gethostname", counted_host)
    w = Watch(tmp_path, "mail.log")
    daemon = w.begin()
    first = dict(calls)
    for _ in range(5):
        daemon.beat()
    assert calls == first, "read again at each heartbeat"
    w.stop()
    info = read_status(str(w.state_dir))
    assert info["daemon"]["host"] == host() and info["daemon"]["state"] == "stopped"
