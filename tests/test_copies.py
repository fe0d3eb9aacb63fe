"""``Copies``: the events of a rotation set that an earlier set already had, counted with
their ``repeat`` (rsyslog reduces repeated lines per file, so ``mail.log`` may hold
``x`` + ``message repeated 2 times: [ x]`` where ``syslog`` holds ``x, x, x``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from pipeline.engine import Copies
from pipeline.model import Event

X = Event(
    timestamp=datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
    host="mx1",
    program="dovecot",
    pid=None,
    level=None,
    message="master: Warning: service(pop3-login): process_limit (2) reached",
    format="syslog",
    source="mail.log",
    line=1,
)


def fresh(copies: Copies, events: list[Event]) -> list[int]:
    return [copies.fresh(e) for e in events]


def test_a_reduced_repeat_is_as_many_copies_as_it_stands_for() -> None:
    copies = Copies()
    copies.enter("/var/log/mail.log")
    assert fresh(copies, [X, replace(X, repeat=2)]) == [1, 2]
    copies.enter("/var/log/syslog")
    assert fresh(copies, [X, X, X]) == [0, 0, 0]
    copies.enter("/var/log/other")
    assert fresh(copies, [X, X, X, X]) == [0, 0, 0, 1]  # a fourth is new


def test_the_other_order_gives_the_same_count() -> None:
    copies = Copies()
    copies.enter("/var/log/syslog")
    assert fresh(copies, [X, X, X]) == [1, 1, 1]
    copies.enter("/var/log/mail.log")
    assert fresh(copies, [X, replace(X, repeat=2)]) == [0, 0]
    copies.enter("/var/log/other")
    assert fresh(copies, [replace(X, repeat=5)]) == [2]  # 3 of its 5 were read before


def test_repeats_within_one_set_are_real_and_other_events_are_not_copies() -> None:
    copies = Copies()
    copies.enter("/var/log/mail.log")
    assert fresh(copies, [X, X]) == [1, 1]
    copies.enter("/var/log/syslog")
    assert fresh(copies, [replace(X, pid="7"), replace(X, host="mx2"), X]) == [1, 1, 0]
