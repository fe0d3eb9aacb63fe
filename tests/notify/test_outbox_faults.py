"""The outbox when the daemon is interrupted in the middle of a delivery pass: killed
(SIGKILL) or stopped (SIGTERM) while a notification is being sent. ``logwarden watch``
processes over a log the test writes, a real HTTP receiver on 127.0.0.1: every finding must
arrive exactly once, none lost, none repeated.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notify.test_notify import Post, Receiver, qid
from tests.test_watch import append
from tests.test_watch_real import Watch, wait_records

N = 8


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def _arrived(posts: list[Post]) -> Counter[str]:
    return Counter(q for p in posts for q in re.findall(r"^queue_id: (\S+)$", p.message, re.M))


def _wait(check: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_kill_during_a_delivery_pass_resends_only_what_was_not_answered(
    tmp_path: Path, receiver: Receiver
) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    # the receiver holds the fourth post unanswered (rto: apprise waits for it long enough)
    w = Watch(tmp_path, [log], "--notify", receiver.url("hook", rto=60))
    try:
        w.start()
        receiver.hang_after = 3
        append(log, range(N))  # one checkpoint, one outbox batch of N
        wait_records(w, lambda r: len(r) == N)
        _wait(lambda: len(receiver.posts) == 3 and receiver.in_flight == 1, "3 sent, 1 held")
        w.kill9()
        receiver.hang_after = None
        receiver.set_mode("ok")  # the held post is dropped unanswered: not delivered
        w.start()
        _wait(lambda: len(receiver.posts) >= N, f"{N} posts: {_arrived(receiver.posts)}")
        time.sleep(1.0)  # a repeated one would arrive by now
        assert w.stop() == 0, w.logs()
        assert _arrived(receiver.posts) == Counter(qid(n) for n in range(N)), w.logs()
    finally:
        w.close()


def test_a_stop_during_a_slow_send_waits_for_it_and_records_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    w = Watch(tmp_path, [log], "--notify", receiver.url("hook", rto=60))
    try:
        w.start()
        receiver.slow_after, receiver.slow = 2, 7.0  # the third post is answered after 7 s
        append(log, range(N))
        wait_records(w, lambda r: len(r) == N)
        _wait(lambda: receiver.in_flight == 1, "the third post in flight")
        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(30) == 0, w.logs()
        assert "waiting for a notification being sent to finish" in w.log(), w.logs()
        assert _arrived(receiver.posts) == Counter(qid(n) for n in range(3))
        receiver.slow_after = None
        w.start()
        _wait(lambda: len(receiver.posts) >= N, f"{N} posts: {_arrived(receiver.posts)}")
        time.sleep(1.0)
        assert w.stop() == 0, w.logs()
        assert _arrived(receiver.posts) == Counter(qid(n) for n in range(N)), w.logs()
    finally:
        w.close()
