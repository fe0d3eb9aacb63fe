"""rsyslog's ``message repeated N times: [ text]`` is N events for detection.

Line rules see ``text`` (also a rule anchored with ``^``, and through the prefilter, which
finds the literals inside the brackets); a finding's ``count`` adds N, suppression and
digests fold N, a threshold window holds N events, a sequence step with ``count`` advances
by N (one position in the order). The repeat count survives snapshots, lateness buffers and
worker processes. Lines are traditional syslog in files whose mtime is 2026-11-30 12:00 UTC.
"""

from __future__ import annotations

import json
import pickle
from datetime import timedelta
from pathlib import Path

from pipeline.detection.correlate import Detector
from pipeline.detection.model import Rule
from pipeline.engine import Engine, Part, ScanOptions, TimeMark
from pipeline.sources.files import expand_inputs
from tests.detection.test_correlate import at, corr_rule, line_rule, load, log, of, scan, write

FAILED = line_rule(
    "ssh.root-failed",
    r"^Failed password for (?P<user>\S+) from (?P<ip>\S+)",
    program="sshd",
)
ACCEPTED = line_rule("ssh.accepted", r"^Accepted password for (?P<user>\S+)", program="sshd")


def failed(hms: str, ip: str = "1.2.3.4", times: int = 1) -> str:
    text = f"Failed password for root from {ip} port 22 ssh2"
    if times > 1:
        text = f"message repeated {times} times: [ {text}]"
    return log(hms, text, prog="sshd[77]")


def test_a_line_rule_sees_the_inner_message_and_counts_n(tmp_path: Path) -> None:
    rules = load(tmp_path, FAILED)
    result = scan(rules, [failed("10:00:00"), failed("10:00:05", times=5)], tmp_path)
    one, five = of(result, "ssh.root-failed")
    assert (one.count, one.line) == (1, 1)
    assert (five.count, five.line, five.timestamp) == (5, 2, at("10:00:05"))
    assert five.message == "Failed password for root from 1.2.3.4 port 22 ssh2"
    assert dict(five.fields) == {"user": "root", "ip": "1.2.3.4"}
    assert result.stats.candidates == 2  # the prefilter found the literal in the brackets


def test_suppression_and_digests_fold_n(tmp_path: Path) -> None:
    lines = [failed("10:00:00", times=5), failed("10:01:00"), failed("10:02:00", times=3)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = dict(FAILED, suppress={"period": "1h", "group_by": ["host"]})
    (f,) = of(scan(load(tmp_path / "a", plain), lines, tmp_path / "a"), "ssh.root-failed")
    assert (f.count, f.last_seen, f.line) == (9, at("10:02:00"), 1)
    digest = dict(FAILED, suppress={"period": "1h", "group_by": ["host"], "digest": True})
    (d,) = of(scan(load(tmp_path / "b", digest), lines, tmp_path / "b"), "ssh.root-failed")
    assert d.count == 9
    assert d.message.startswith("9 × ")


def burst(tmp_path: Path, count: int = 6) -> list[Rule]:
    spec = {"of": "ssh.root-failed", "count": count, "window": "10m", "group_by": ["host"]}
    return load(tmp_path, FAILED, corr_rule("ssh.burst", "threshold", **spec))


def test_a_threshold_window_holds_n_events_per_repeated_line(tmp_path: Path) -> None:
    rules = burst(tmp_path)
    assert of(scan(rules, [failed("10:00:00", times=5)], tmp_path / "a"), "ssh.burst") == []
    lines = [failed("10:00:00", times=5), failed("10:01:00"), failed("10:02:00", times=4)]
    (f,) = of(scan(rules, lines, tmp_path / "b"), "ssh.burst")
    assert (f.line, f.timestamp) == (2, at("10:01:00"))  # crossed at 5 + 1
    assert (f.count, f.last_seen) == (10, at("10:02:00"))  # then grew by 4
    assert [r.line for r in f.related] == [1, 2]
    assert "6 × ssh.root-failed" in f.message


def test_a_threshold_window_drops_the_n_events_of_a_line_together(tmp_path: Path) -> None:
    rules = burst(tmp_path)
    lines = [failed("10:00:00", times=5), failed("10:10:30"), failed("10:11:00", times=4)]
    # the 5 left the window before the single line arrived: 1, then 1 + 4 < 6
    assert of(scan(rules, lines, tmp_path), "ssh.burst") == []


def test_a_threshold_window_resumes_with_its_weights(tmp_path: Path) -> None:
    rules = burst(tmp_path)
    first = write(tmp_path / "one" / "syslog", [failed("10:00:00", times=5)])
    second = write(tmp_path / "two" / "syslog", [failed("10:01:00")])
    engine = Engine(rules, ScanOptions(tz=at("10:00:00").tzinfo))
    det = engine.new_detector()
    engine.scan([str(first)], det)
    restored = Detector(rules)
    restored.restore(json.loads(json.dumps(det.snapshot())))
    result = engine.scan([str(second)], restored)
    (f,) = of(result, "ssh.burst")
    assert f.count == 6


SEQ = corr_rule(
    "ssh.guessed",
    "sequence",
    window="10m",
    group_by=["host"],
    steps=[{"rule": "ssh.root-failed", "count": 5}, {"rule": "ssh.accepted"}],
)


def accepted(hms: str) -> str:
    return log(hms, "Accepted password for root from 1.2.3.4 port 22 ssh2", prog="sshd[78]")


def test_a_sequence_step_counts_n_for_its_count(tmp_path: Path) -> None:
    rules = load(tmp_path, FAILED, ACCEPTED, SEQ)
    lines = [failed("10:00:00", times=5), accepted("10:00:10")]
    (f,) = of(scan(rules, lines, tmp_path / "a"), "ssh.guessed")
    assert (f.line, f.count) == (2, 1)
    short = [failed("10:00:00", times=4), accepted("10:00:10")]
    assert of(scan(rules, short, tmp_path / "b"), "ssh.guessed") == []


def test_a_repeated_line_is_one_position_in_a_sequence(tmp_path: Path) -> None:
    """Its surplus does not fill a later step: steps 1 and 2 on the same rule need two lines."""
    twice = corr_rule(
        "ssh.twice",
        "sequence",
        window="10m",
        group_by=["host"],
        steps=[{"rule": "ssh.root-failed", "count": 2}, {"rule": "ssh.root-failed"}],
    )
    rules = load(tmp_path, FAILED, twice)
    assert of(scan(rules, [failed("10:00:00", times=9)], tmp_path / "a"), "ssh.twice") == []
    lines = [failed("10:00:00", times=9), failed("10:00:01")]
    assert len(of(scan(rules, lines, tmp_path / "b"), "ssh.twice")) == 1


def test_a_distinct_step_counts_a_repeated_line_once(tmp_path: Path) -> None:
    spread = corr_rule(
        "ssh.spread",
        "sequence",
        window="10m",
        group_by=["host"],
        steps=[{"rule": "ssh.root-failed", "count": 3, "distinct": "ip"}, {"rule": "ssh.accepted"}],
    )
    rules = load(tmp_path, FAILED, ACCEPTED, spread)
    lines = [failed("10:00:00", times=5), failed("10:00:01", "5.6.7.8"), accepted("10:00:10")]
    assert of(scan(rules, lines, tmp_path / "a"), "ssh.spread") == []
    lines.insert(2, failed("10:00:02", "9.9.9.9", times=2))
    assert len(of(scan(rules, lines, tmp_path / "b"), "ssh.spread")) == 1


def test_the_lateness_buffer_keeps_n_through_a_snapshot(tmp_path: Path) -> None:
    rules = load(tmp_path, FAILED)
    path = write(tmp_path / "logs" / "syslog", [failed("10:00:00", times=7)])
    options = ScanOptions(tz=at("10:00:00").tzinfo, lateness=timedelta(minutes=5))
    engine = Engine(rules, options)
    det = engine.new_detector()
    assert engine.scan([str(path)], det).findings == []  # still buffered
    restored = Detector(rules, lateness=options.lateness)
    restored.restore(json.loads(json.dumps(det.snapshot())))
    (f,) = restored.finish()
    assert f.count == 7


def test_a_part_read_in_a_worker_keeps_n(tmp_path: Path) -> None:
    rules = load(tmp_path, FAILED)
    path = write(tmp_path / "logs" / "syslog", [failed("10:00:00", times=7)])
    engine = Engine(rules, ScanOptions(tz=at("10:00:00").tzinfo))
    (inp,) = expand_inputs([str(path)], [])
    travelled = pickle.loads(pickle.dumps(engine.run_part(Part(inp))))
    ((event, found),) = [r for r in travelled.iter_records() if not isinstance(r, TimeMark)]
    assert (event.repeat, event.message, found[0][0]) == (
        7,
        "Failed password for root from 1.2.3.4 port 22 ssh2",
        "ssh.root-failed",
    )
