"""Detection state stored row by row: a checkpoint writes what changed, and what was stored
gives back exactly the detector that wrote it.

The daemon's path: :meth:`Detector.track_changes`, then at every checkpoint
:meth:`Detector.changes` into :meth:`StateDB.store_changes` (inside the checkpoint's
transaction), and at a start :meth:`StateDB.detector_rows` into :meth:`Detector.restore`.
The property test cuts the rotated mail sample at random points, scans each piece, stores the
changes in one real SQLite file and either goes on with the same detector or restarts from
the file; after every checkpoint the stored state, read back, must equal the live
detector's snapshot exactly (order included: eviction at the caps follows it), and the final
findings must equal one pass over the same files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.detection import correlate
from pipeline.detection.correlate import Detector
from pipeline.detection.model import Rule
from pipeline.engine import Engine, FindingSet, ScanOptions
from pipeline.model import Finding
from pipeline.sources.files import rotation_key
from pipeline.state import StateDB
from tests.detection.test_resume import (
    MAIL,
    MAIL_STATEFUL_CUTS,
    OPTIONS,
    InputSet,
    by_key,
    one_pass,
    rule_sets,  # noqa: F401 - a fixture
    write_files,
)

NAME = "watch"


def pieces(inputs: InputSet, cuts: Sequence[int]) -> list[list[tuple[str, list[str]]]]:
    """The input cut after each line number in ``cuts``: the files of each piece."""
    out: list[list[tuple[str, list[str]]]] = []
    done = 0
    rest = inputs
    for k in [*sorted(set(cuts)), inputs.size]:
        first, tail = rest.cut(k - done)
        out.append(first)
        rest = InputSet(tuple((n, tuple(lines)) for n, lines in tail))
        done = k
    return out


def write_rotation(root: Path, parts: list[list[tuple[str, list[str]]]]) -> list[list[str]]:
    """Every piece's files as members of one rotation set, oldest first, as a live log and
    its rotated generations are read."""
    flat = [f for part in parts for f in part]
    base = rotation_key(flat[0][0])[1]
    last = len(flat) - 1
    names = [base if i == last else f"{base}.{last - i}" for i in range(len(flat))]
    paths = write_files(root, [(n, lines) for n, (_, lines) in zip(names, flat, strict=True)])
    out, i = [], 0
    for part in parts:
        out.append(paths[i : i + len(part)])
        i += len(part)
    return out


def stored(db: StateDB, rules: Sequence[Rule], lateness: timedelta) -> Detector:
    det = Detector(rules, lateness=lateness)
    det.track_changes()
    saved = db.load_detector(NAME)
    if saved is not None:
        det.restore(saved, db.detector_rows(NAME))
    return det


def checkpoint(db: StateDB, det: Detector) -> None:
    db.checkpoint(detector=None, sources={}, findings=[], changes=(NAME, det.changes()))


def exact(det: Detector) -> str:
    return json.dumps(det.snapshot())  # order-sensitive: dict order is part of the state


def resumed_incrementally(
    rules: Sequence[Rule],
    options: ScanOptions,
    paths: list[list[str]],
    restarts: Sequence[bool],
    db_path: Path,
) -> list[Finding]:
    collected = FindingSet()
    with StateDB(db_path) as db:
        det = stored(db, rules, options.lateness)
        for piece, restart in zip(paths, restarts, strict=True):
            if restart:
                det = stored(db, rules, options.lateness)  # a new process: only the file
            if piece:
                collected.add(Engine(rules, options).scan(piece, detector=det).findings)
            checkpoint(db, det)
            assert exact(stored(db, rules, options.lateness)) == exact(det)
    collected.add(det.finish())
    return collected.findings()


@pytest.mark.parametrize("option", sorted(OPTIONS))
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cuts=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=MAIL.size), st.sampled_from(MAIL_STATEFUL_CUTS)
        ),
        min_size=1,
        max_size=4,
    ),
    restarts=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_stored_rows_resume_at_random_cuts_to_the_same_findings(
    cuts: list[int],
    restarts: list[bool],
    option: str,
    rule_sets: dict[str, list[Rule]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    rules = rule_sets["extended"]
    options = OPTIONS[option]
    root = tmp_path_factory.mktemp("inc")
    paths = write_rotation(root / "logs", pieces(MAIL, cuts))
    want = by_key(one_pass(rules, options, [p for piece in paths for p in piece]))
    got = by_key(
        resumed_incrementally(rules, options, paths, restarts[: len(paths)], root / "state.sqlite")
    )
    assert got == want


def test_a_checkpoint_writes_only_what_changed(
    rule_sets: dict[str, list[Rule]],
    tmp_path: Path,
) -> None:
    """After the whole mail sample, one more ``from=`` line is one changed row; a receipt
    that uses a remembered sender and a line that touches nothing are none."""
    rules = rule_sets["builtin"]
    engine = Engine(rules, OPTIONS["no-lateness"])
    det = engine.new_detector()
    det.track_changes()
    paths = write_files(tmp_path / "logs", MAIL.files)
    engine.scan(paths, detector=det)
    first = det.changes()
    table = "enrich:sendmail.dsn-return-receipt#0"
    assert first.rewrite == frozenset(det.parts)  # nothing stored yet: everything once
    assert len(first.rows[table]) == len(det.tables["sendmail.dsn-return-receipt#0"].rows) > 0
    with StateDB(tmp_path / "state.sqlite") as db:
        db.checkpoint(detector=None, sources={}, findings=[], changes=(NAME, first))
        later = "Nov 30 23:59:00 vm"
        (tmp_path / "more.log").write_text(
            f"{later} sm-mta[1]: 7AU8MP47017782: from=<x@example.org>, size=1, class=0,"
            " nrcpts=1, relay=y [192.0.2.9]\n"
            f"{later} kernel: [1.0] nothing a rule reads\n"
        )
        Engine(rules, OPTIONS["no-lateness"]).scan([str(tmp_path / "more.log")], detector=det)
        second = det.changes()
        assert second.rewrite == frozenset()
        assert {p: [(k, moved) for k, _, moved in rows] for p, rows in second.rows.items()} == {
            table: [('["7AU8MP47017782"]', True)]
        }
        db.checkpoint(detector=None, sources={}, findings=[], changes=(NAME, second))
        assert exact(stored(db, rules, timedelta(0))) == exact(det)
        assert det.changes().rows == {}  # nothing since


def test_rows_changed_in_place_keep_their_stored_order(
    monkeypatch: pytest.MonkeyPatch,
    rule_sets: dict[str, list[Rule]],
    tmp_path: Path,
) -> None:
    """A suppression period updated by a later occurrence keeps its place (the oldest
    period is evicted first at the cap), a remembered sender seen again moves to the end:
    both orders survive a restart, so eviction after it drops the same entries."""
    rules = rule_sets["builtin"]
    lines = [
        # two suppressed groups (per host and service), the first one updated later
        *(
            f"Nov 30 08:00:0{i} vm dovecot: master: Warning: service({svc}): process_limit "
            "(2) reached, client connections are being dropped"
            for i, svc in enumerate(("pop3-login", "imap-login", "pop3-login"))
        ),
        *(
            f"Nov 30 08:01:0{i} vm sm-mta[1]: Q{q}AAAAAAAA: from=<{q}@example.org>, size=1, "
            "class=0, nrcpts=1, relay=y [192.0.2.9]"
            for i, q in enumerate("ABA")
        ),
    ]
    log = tmp_path / "mail.log"
    log.write_text("".join(x + "\n" for x in lines))
    det = Detector(rules)
    det.track_changes()
    Engine(rules, OPTIONS["no-lateness"]).scan([str(log)], detector=det)
    with StateDB(tmp_path / "state.sqlite") as db:
        checkpoint(db, det)
        # once more, incrementally: the same lines again update and move the same keys
        Engine(rules, OPTIONS["no-lateness"]).scan([str(log)], detector=det)
        checkpoint(db, det)
        back = stored(db, rules, timedelta(0))
    assert exact(back) == exact(det)
    periods = back.snapshot()["suppress"]["dovecot.process-limit-reached"]
    assert [json.loads(k)[1] for k in periods] == ["pop3-login", "imap-login"]
    assert [k for k, *_ in back.snapshot()["enrich"]["sendmail.dsn-return-receipt#0"]] == [
        ["QBAAAAAAAA"],
        ["QAAAAAAAAA"],
    ]
    monkeypatch.setattr(correlate, "MAX_REMEMBERED", 1)
    log.write_text(lines[-1].replace("QA", "QC").replace("01:02", "01:03") + "\n")
    for d in (det, back):
        Engine(rules, OPTIONS["no-lateness"]).scan([str(log)], detector=d)
    assert exact(back) == exact(det)


def test_a_whole_snapshot_from_before_is_read_once_then_stored_as_rows(
    rule_sets: dict[str, list[Rule]],
    tmp_path: Path,
) -> None:
    """A state database written by the previous version (one JSON snapshot) still loads;
    the first checkpoint replaces it with rows, and later ones write only changes."""
    rules = rule_sets["extended"]
    options = OPTIONS["lateness-90s"]
    first_files, rest_files = MAIL.cut(MAIL.size // 2)
    paths = write_rotation(tmp_path / "logs", [first_files, rest_files])
    old = Detector(rules, lateness=options.lateness)
    Engine(rules, options).scan(paths[0], detector=old)
    db_path = tmp_path / "state.sqlite"
    with StateDB(db_path) as db:
        db.save_detector(NAME, old.snapshot())  # what the previous version wrote
        det = stored(db, rules, options.lateness)
        assert exact(det) == exact(old)
        migrated = det.changes()
        assert migrated.rewrite == frozenset(det.parts)
        db.checkpoint(detector=None, sources={}, findings=[], changes=(NAME, migrated))
        saved = db.load_detector(NAME)
        assert saved is not None and saved["version"] == 2
        assert "enrich:sendmail.dsn-return-receipt#0" in db.detector_rows(NAME)
        assert exact(stored(db, rules, options.lateness)) == exact(old)
        collected = FindingSet()
        collected.add(Engine(rules, options).scan(paths[1], detector=det).findings)
        assert not det.changes().rewrite
    collected.add(det.finish())
    want = FindingSet()
    ref = Detector(rules, lateness=options.lateness)
    ref.restore(old.snapshot())
    want.add(Engine(rules, options).scan(paths[1], detector=ref).findings)
    want.add(ref.finish())
    assert by_key(collected.findings()) == by_key(want.findings())


def test_stored_rows_of_a_rule_that_changed_kind_are_counted_as_dropped(
    rule_sets: dict[str, list[Rule]],
    tmp_path: Path,
) -> None:
    rules = rule_sets["extended"]
    det = Detector(rules)
    det.track_changes()
    Engine(rules, OPTIONS["no-lateness"]).scan(
        write_files(tmp_path / "logs", MAIL.files), detector=det
    )
    changes = det.changes()
    part = "sequence:test.accepted-then-delivered"
    assert changes.rows.get(part), "the sample leaves no open sequence"
    renamed = {
        (f"threshold:{p.partition(':')[2]}" if p == part else p): rows
        for p, rows in changes.rows.items()
    }
    with StateDB(tmp_path / "state.sqlite") as db:
        db.checkpoint(
            detector=None,
            sources={},
            findings=[],
            changes=(
                NAME,
                correlate.StateChanges(
                    changes.state,
                    tuple(renamed),
                    frozenset(renamed),
                    renamed,
                ),
            ),
        )
        back = stored(db, rules, timedelta(0))
    assert back.stats.dropped_state == ["test.accepted-then-delivered"]
    assert not back.states["test.accepted-then-delivered"].snapshot()


def test_a_damaged_stored_row_is_an_error_or_a_counted_drop(
    rule_sets: dict[str, list[Rule]],
    tmp_path: Path,
) -> None:
    """A key that is not JSON stops the start with the database and the part named; a
    value that cannot be read drops that part's state, counted, and restores the rest."""
    from pipeline.state import StateError

    rules = rule_sets["extended"]
    det = Detector(rules)
    det.track_changes()
    Engine(rules, OPTIONS["no-lateness"]).scan(
        write_files(tmp_path / "logs", MAIL.files), detector=det
    )
    table = "enrich:sendmail.dsn-return-receipt#0"
    sequence = "sequence:test.accepted-then-delivered"
    with StateDB(tmp_path / "state.sqlite") as db:
        checkpoint(db, det)
        ids = db._part_ids(NAME)
        db.conn.execute(
            f"UPDATE detector_rows_{ids[sequence]} SET value = '{{not json' WHERE id = "
            f"(SELECT min(id) FROM detector_rows_{ids[sequence]})"
        )
        db.conn.execute(
            f"UPDATE detector_rows_{ids[table]} SET value = 'no separators' WHERE id = "
            f"(SELECT min(id) FROM detector_rows_{ids[table]})"
        )
        back = stored(db, rules, timedelta(0))
        assert sorted(back.stats.dropped_state) == [
            "sendmail.dsn-return-receipt#0",
            "test.accepted-then-delivered",
        ]
        assert not back.tables["sendmail.dsn-return-receipt#0"].rows
        assert not back.states["test.accepted-then-delivered"].snapshot()
        assert (
            back.snapshot()["states"]["test.auth-burst"]
            == det.snapshot()["states"]["test.auth-burst"]
        )
        # the next checkpoint rewrites the dropped parts
        assert back.changes().rewrite == {table, sequence}
        db.conn.execute(f"UPDATE detector_rows_{ids[table]} SET key = '[unquoted' WHERE id = 1")
        with pytest.raises(StateError, match="is corrupt") as err:
            db.detector_rows(NAME)
    assert err.value.location is not None and str(tmp_path) in str(err.value.location)


def test_a_damaged_join_value_is_dropped_when_used(
    rule_sets: dict[str, list[Rule]],
    tmp_path: Path,
) -> None:
    """A join row's values are parsed when a lookup uses them: one that is damaged is
    forgotten and counted then, and the receipt goes out without a sender."""
    rules = rule_sets["builtin"]
    det = Detector(rules)
    det.track_changes()
    log = tmp_path / "mail.log"
    frm = (
        "Nov 30 08:22:24 vm sm-mta[17782]: 6AU8MP47017782: from=<a@example.org>, "
        "size=1, class=0, nrcpts=1, relay=x [192.0.2.7]\n"
    )
    receipt = (
        "Nov 30 08:22:25 vm sm-mta[17783]: 6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt\n"
    )
    log.write_text(frm)
    Engine(rules, OPTIONS["no-lateness"]).scan([str(log)], detector=det)
    with StateDB(tmp_path / "state.sqlite") as db:
        checkpoint(db, det)
        good = stored(db, rules, timedelta(0))
        pid = db._part_ids(NAME)["enrich:sendmail.dsn-return-receipt#0"]
        db.conn.execute(
            f"UPDATE detector_rows_{pid} SET value = substr(value, 1, length(value) - 1) || ',]'"
        )
        bad = stored(db, rules, timedelta(0))
    log.write_text(receipt)
    senders = []
    for d in (good, bad):
        found = Engine(rules, OPTIONS["no-lateness"]).scan([str(log)], detector=d).findings
        senders.append([f.fields.get("sender") for f in found])
    assert senders == [["a@example.org"], [None]]
    assert bad.stats.dropped_state == ["sendmail.dsn-return-receipt#0"]
    assert not bad.tables["sendmail.dsn-return-receipt#0"].rows


def test_a_damaged_join_value_is_dropped_once_by_a_snapshot(
    rule_sets: dict[str, list[Rule]],
    tmp_path: Path,
) -> None:
    """A reload snapshots the detector: a damaged row read back is left out, counted once."""
    rules = rule_sets["builtin"]
    det = Detector(rules)
    det.track_changes()
    log = tmp_path / "mail.log"
    log.write_text(
        "".join(
            f"Nov 30 08:22:2{i} vm sm-mta[1]: 6AU8MP4701778{i}: from=<a{i}@example.org>, "
            "size=1, class=0, nrcpts=1, relay=x [192.0.2.7]\n"
            for i in range(3)
        )
    )
    Engine(rules, OPTIONS["no-lateness"]).scan([str(log)], detector=det)
    with StateDB(tmp_path / "state.sqlite") as db:
        checkpoint(db, det)
        pid = db._part_ids(NAME)["enrich:sendmail.dsn-return-receipt#0"]
        db.conn.execute(f"UPDATE detector_rows_{pid} SET value = value || 'x' WHERE id = 2")
        back = stored(db, rules, timedelta(0))
    first = back.snapshot()["enrich"]["sendmail.dsn-return-receipt#0"]
    assert [k for k, *_ in first] == [["6AU8MP47017780"], ["6AU8MP47017782"]]
    assert back.snapshot()["enrich"]["sendmail.dsn-return-receipt#0"] == first
    assert back.stats.dropped_state == ["sendmail.dsn-return-receipt#0"]


def test_rows_read_back_are_forgotten_as_the_live_ones(
    rule_sets: dict[str, list[Rule]],
    tmp_path: Path,
) -> None:
    """Join rows read back stay text until used; forgetting them a week later (the oldest
    first, a re-remembered one kept, a later one stopping the walk) and lookups on them
    give the detector that never stopped, exactly."""
    rules = rule_sets["builtin"]

    def frm(day: int, hms: str, q: str) -> str:
        return (
            f"Nov {day:2d} {hms} vm sm-mta[1]: {q}AAAAAAAA: from=<{q}@example.org>, size=1, "
            "class=0, nrcpts=1, relay=y [192.0.2.9]"
        )

    def receipt(day: int, hms: str, q: str) -> str:
        return f"Nov {day:2d} {hms} vm sm-mta[2]: {q}AAAAAAAA: R{q}AAAAAAA: DSN: Return receipt"

    def feed(name: str, lines: list[str], *dets: Detector) -> list[list[dict[str, Any]]]:
        paths = write_files(tmp_path / name, [("mail.log", lines)])
        return [
            [
                f.as_dict()
                for f in Engine(rules, OPTIONS["no-lateness"]).scan(paths, detector=d).findings
            ]
            for d in dets
        ]

    live = Detector(rules)
    live.track_changes()
    feed("a", [frm(10, "00:00:00", "Q1"), frm(10, "00:01:00", "Q2"), frm(10, "00:02:00", "Q3"),
               frm(10, "00:03:00", "Q4")], live)  # fmt: skip
    with StateDB(tmp_path / "state.sqlite") as db:
        checkpoint(db, live)
        back = stored(db, rules, timedelta(0))
    table = back.tables["sendmail.dsn-return-receipt#0"]
    assert all(isinstance(r, str) for r in table.rows.values())  # nothing parsed yet
    got = feed("b", [frm(12, "00:00:00", "Q2"), receipt(12, "00:00:01", "Q4")], live, back)
    assert got[0] == got[1] and got[0][0]["fields"]["sender"] == "Q4@example.org"
    assert exact(back) == exact(live)
    # a week after Q1 and Q2's first line: Q1 goes, Q2's old entry is stale, Q3 stops the walk
    feed("c", [frm(17, "00:01:30", "Q9")], live, back)
    assert exact(back) == exact(live)
    assert [k for k, *_ in back.snapshot()["enrich"]["sendmail.dsn-return-receipt#0"]] == [
        ["Q3AAAAAAAA"], ["Q4AAAAAAAA"], ["Q2AAAAAAAA"], ["Q9AAAAAAAA"]
    ]  # fmt: skip
    feed("d", [frm(19, "12:00:00", "Q8")], live, back)
    assert exact(back) == exact(live)
    assert [k for k, *_ in back.snapshot()["enrich"]["sendmail.dsn-return-receipt#0"]] == [
        ["Q9AAAAAAAA"], ["Q8AAAAAAAA"]
    ]  # fmt: skip
    assert not back.stats.dropped_state
