"""``scan`` run by cron: an incomplete run (an input it could not read, notifications left
undelivered) exits 3 and says so on stderr, also with ``-q``.

The endpoint is a real HTTP receiver on 127.0.0.1 (``tests/notify``), refused while it is
not started; the unreadable input is a mode-000 file read by an unprivileged scan.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, logwarden
from tests.notify.test_notify import Receiver, assert_each_once, receipt
from tests.test_watch_real import _unprivileged

EXIT_INCOMPLETE = 3


@pytest.fixture
def refused() -> Iterator[Receiver]:
    """A receiver whose port nobody listens on until the test starts it."""
    r = Receiver()
    yield r
    r.stop()


def _log(tmp_path: Path, numbers: range) -> Path:
    path = tmp_path / "mail.log"
    path.write_text("".join(receipt(n) + "\n" for n in numbers))
    return path


def test_scan_notify_to_a_dead_endpoint_without_state_exits_3_and_says_so_with_q(
    tmp_path: Path, refused: Receiver
) -> None:
    log = _log(tmp_path, range(3))
    res = logwarden(
        "scan", str(log), "-q", "-o", str(tmp_path / "f.txt"),
        "--notify", refused.url("cron"), "--notify-wait", "1",
    )  # fmt: skip
    assert res.returncode == EXIT_INCOMPLETE, res.stderr
    assert "3 notifications left undelivered (dropped: no --state to keep them)" in res.stderr
    assert "Traceback" not in res.stderr


def test_scan_notify_with_state_keeps_the_rest_and_sends_it_once_next_time(
    tmp_path: Path, refused: Receiver
) -> None:
    log = _log(tmp_path, range(4))
    state = tmp_path / "scan.sqlite"
    args = ["-q", "-o", str(tmp_path / "f.txt"), "--state", str(state),
            "--notify", refused.url("cron"), "--notify-wait", "1"]  # fmt: skip
    first = logwarden("scan", str(log), *args)
    assert first.returncode == EXIT_INCOMPLETE, first.stderr
    assert "4 notifications left undelivered (kept in --state for the next run)" in first.stderr
    refused.start()
    # the next cron run reads the lines logged since (the day's new file)
    later = tmp_path / "mail.log.new"
    later.write_text(receipt(4) + "\n")
    second = logwarden("scan", str(later), *args)
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""
    assert_each_once(refused.posts, range(5))


def test_scan_notify_delivered_exits_0(tmp_path: Path, refused: Receiver) -> None:
    refused.start()
    log = _log(tmp_path, range(2))
    res = logwarden("scan", str(log), "-q", "-o", str(tmp_path / "f.txt"),
                    "--notify", refused.url("cron"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert_each_once(refused.posts, range(2))


def test_scan_of_an_input_it_may_not_read_exits_3_and_says_so_with_q(tmp_path: Path) -> None:
    prefix, python, _uid, _gid = _unprivileged()
    base = Path("/tmp") / f"lw-exit-{tmp_path.name}"
    base.mkdir(mode=0o755, exist_ok=True)
    good, bad = base / "good.log", base / "bad.log"
    good.write_text(receipt(1) + "\n")
    bad.write_text(receipt(2) + "\n")
    good.chmod(0o644)
    bad.chmod(0o000)
    try:
        res = subprocess.run(
            [*prefix, python, "-m", "pipeline.cli", "scan", "-q", "--format", "jsonl",
             str(good), str(bad)],
            cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
    finally:
        bad.unlink()
        good.unlink()
        base.rmdir()
    assert res.returncode == EXIT_INCOMPLETE, res.stderr
    assert "some input could not be read (unreadable: 1)" in res.stderr
    assert "Q000000001A" in res.stdout  # the readable input was still scanned
