"""Notifications through outages: the receiver refuses connections, answers 500, hangs (reads
the request and never answers), and the daemon restarts in between, in process and as a
``logwarden watch`` killed with SIGKILL.

What must hold: detection goes on (findings reach ``--output`` and a turn does not wait for
the endpoint), the notifications wait in the outbox (``logwarden notify pending`` lists them),
and once the receiver answers again every one arrives exactly once.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.notify.test_notify import Feed, Receiver, assert_each_once, logwarden, qid, receipt


@pytest.fixture
def endpoint() -> Iterator[Receiver]:
    """A receiver that is not listening yet: connections to its port are refused."""
    r = Receiver()
    yield r
    r.stop()


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout}s")
        time.sleep(0.05)


def outbox(state_dir: Path) -> list[tuple[str, int, str | None]]:
    """(status, attempts, last error) of every outbox row, oldest first."""
    path = state_dir / "state.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(
            "SELECT status, attempts, last_error FROM outbox ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:  # being created
        return []
    finally:
        conn.close()


def pending_listed(state_dir: Path) -> str:
    res = logwarden("notify", "pending", "--state-dir", str(state_dir), timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


def found(output: Path) -> list[str]:
    """The queue ids in ``--output``, in order."""
    if not output.exists():
        return []
    return [
        json.loads(x)["fields"]["queue_id"] for x in output.read_text(encoding="utf-8").splitlines()
    ]


def test_refused_error_restart_and_hang_then_every_notification_arrives_once(
    tmp_path: Path, endpoint: Receiver
) -> None:
    feed = Feed(tmp_path, [{"name": "hook", "url": endpoint.url("hook", rto=1)}], retry=0.2)
    try:
        daemon = feed.start()
        assert daemon.deliverer is not None
        daemon.deliverer.start(interval=0.05)

        # nobody listens: detection goes on, the notifications wait with their error
        feed.write(*(receipt(n) for n in range(3)))
        feed.turn()
        assert found(feed.output) == [qid(n) for n in range(3)]
        wait_until(
            lambda: (
                len(rows := outbox(feed.state_dir)) == 3
                and all(attempts >= 1 and err for _, attempts, err in rows)
            ),
            10,
            "the refused notifications were not tried",
        )
        listed = pending_listed(feed.state_dir)
        assert "3 pending" in listed and listed.count("hook") == 3, listed

        # the receiver answers 500
        endpoint.start(mode="error")
        feed.write(receipt(3))
        feed.turn()
        endpoint.wait(lambda: len(endpoint.errors) >= 2, 10, "no two posts answered 500")
        assert endpoint.posts == []
        assert "4 pending" in pending_listed(feed.state_dir)

        # a restart on the same state directory
        feed.stop()
        daemon = feed.start()
        assert daemon.deliverer is not None
        daemon.deliverer.start(interval=0.05)

        # the receiver hangs: a turn does not wait for it
        endpoint.set_mode("hang")
        endpoint.wait(lambda: endpoint.in_flight >= 1, 10, "no request held open")
        feed.write(receipt(4), receipt(5))
        took = feed.turn()
        # a send gives up after rto=1 s; a turn that waited on one would take that long
        assert took < 1.0, f"a turn took {took:.2f}s while the endpoint hung"
        assert found(feed.output) == [qid(n) for n in range(6)]
        # at least one send gave up on the silent endpoint (rto=1) and the next was tried
        endpoint.wait(lambda: len(endpoint.hung) >= 2, 10, "the hung send did not time out")
        assert "6 pending" in pending_listed(feed.state_dir)
        assert endpoint.posts == []

        # recovery: everything arrives, once
        endpoint.set_mode("ok")
        endpoint.wait_posts(6, "hook", timeout=25)
        time.sleep(0.5)  # a second copy would be retried within this
        assert_each_once(endpoint.posts, range(6))
        assert [s for s, _, _ in outbox(feed.state_dir)] == ["sent"] * 6
        assert "the outbox is empty" in pending_listed(feed.state_dir)
        assert found(feed.output) == [qid(n) for n in range(6)]
    finally:
        feed.stop()


def test_a_killed_watch_delivers_its_outbox_once_after_the_restart(
    tmp_path: Path, endpoint: Receiver
) -> None:
    """``logwarden watch`` with a notifier that refuses connections is killed with SIGKILL;
    more lines arrive while it is down; it restarts against a hanging receiver, which then
    recovers. Every finding is in --output once and arrives once, and the password in the
    notifier URL shows as **** in the daemon's log."""
    log = tmp_path / "logs" / "mail.log"
    log.parent.mkdir()
    state_dir, output = tmp_path / "state", tmp_path / "findings.jsonl"
    config = tmp_path / "logwarden.yaml"
    url = endpoint.url("hook", auth="bob:Hunter2pw", rto=1)
    config.write_text(
        f"paths:\n  - {log}\n"
        f"state_dir: {state_dir}\n"
        f"output: {output}\n"
        "from_beginning: true\n"
        "poll_interval: 0.1\n"
        "notify_retry: 0.2\n"
        "notify:\n"
        f"  - name: hook\n    url: '{url}'\n",
        encoding="utf-8",
    )

    def append(numbers: range) -> None:
        with log.open("a", encoding="utf-8") as f:
            f.write("".join(receipt(n) + "\n" for n in numbers))

    def start(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        err = tmp_path / f"{name}.stderr"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "watch", "--config", str(config)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err.open("wb"),
        )
        return proc, err

    append(range(3))
    proc, err1 = start("first")
    try:
        wait_until(lambda: len(found(output)) == 3, 20, "the first watch found nothing")
        wait_until(
            lambda: len(rows := outbox(state_dir)) == 3 and all(a >= 1 for _, a, _ in rows),
            10,
            "the first watch did not try to notify",
        )
        assert proc.poll() is None, err1.read_text()
        proc.kill()
        proc.wait(10)
        assert "3 pending" in pending_listed(state_dir)

        append(range(3, 5))  # while it is down
        endpoint.start(mode="hang")
        proc, err2 = start("second")
        endpoint.wait(lambda: endpoint.in_flight >= 1, 20, "the restarted watch sent nothing")
        wait_until(lambda: len(found(output)) == 5, 20, "the restarted watch found nothing new")
        assert "5 pending" in pending_listed(state_dir)
        endpoint.set_mode("ok")
        endpoint.wait_posts(5, "hook", timeout=25)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, err2.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_each_once(endpoint.posts, range(5))
    assert all(p.headers.get("Authorization", "").startswith("Basic ") for p in endpoint.posts)
    assert found(output) == [qid(n) for n in range(5)]
    assert "the outbox is empty" in pending_listed(state_dir)
    started = err2.read_text()
    assert f"notifying json://bob:****@127.0.0.1:{endpoint.port}/hook" in started, started
    for text in (err1.read_text(), started):
        assert "Hunter2pw" not in text
