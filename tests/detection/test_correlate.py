"""The stateful rule language on real log lines: thresholds, sequences, absences, heartbeats,
suppression, digests, enrichment, lateness, overrides, loader errors and memory bounds.

Rules are small YAML files written to ``tmp_path``; events are real syslog lines in files whose
mtime is fixed (2026-11-30 12:00 UTC), scanned by the engine in UTC, so ``Nov 30 10:00:00``
is 2026-11-30T10:00:00+00:00.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

import pipeline.detection.correlate as correlate
from pipeline.detection.correlate import Detector
from pipeline.detection.loader import load_rules
from pipeline.detection.model import Rule
from pipeline.engine import Engine, LineProcessor, ScanOptions, ScanResult, ScanStats, TimeMark
from pipeline.errors import RuleError
from pipeline.model import Event, Finding
from pipeline.timeinfer import TimeResolver

MTIME = datetime(2026, 11, 30, 12, tzinfo=UTC)

# -- building rules -----------------------------------------------------------------------------


def line_rule(rid: str, regex: str, program: str = "app", **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "title": f"title of {rid}",
        "severity": "high",
        "description": "d",
        "remediation": "r",
        "select": {"program": program},
        "match": {"message": {"regex": regex}},
        **extra,
        "examples": {"match": ["x"], "no_match": ["y"]},
    }


def corr_rule(rid: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "type": kind,
        "title": f"title of {rid}",
        "severity": "high",
        "description": "d",
        "remediation": "r",
        **extra,
        "examples": {"match": [{"lines": ["x"]}], "no_match": [{"lines": ["y"]}]},
    }


def load(
    tmp_path: Path, *rules: Mapping[str, Any], overrides: Sequence[Mapping[str, Any]] = ()
) -> list[Rule]:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    doc: dict[str, Any] = {"rules": list(rules)}
    if overrides:
        doc["overrides"] = list(overrides)
    (d / "test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_rules([d], builtin=False)


# the line rules most tests use
START = line_rule("app.start", r"^start (?P<qid>[A-Z0-9]+)(?: user=(?P<user>\S+))?")
STOP = line_rule("app.stop", r"^stop (?P<qid>[A-Z0-9]+) (?P<why>\S+)")
FAIL = line_rule("app.fail", r"^fail (?P<who>\S+)")
BEAT = line_rule("app.beat", r"^beat")

# -- feeding lines --------------------------------------------------------------------------------


def log(hms: str, msg: str, host: str = "h1", prog: str = "app", day: int = 30) -> str:
    return f"Nov {day:2d} {hms} {host} {prog}: {msg}"


def at(hms: str, day: int = 30) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(2026, 11, day, h, m, s, tzinfo=UTC)


def write(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(x + "\n" for x in lines))
    os.utime(path, (MTIME.timestamp(),) * 2)
    return path


def scan(rules: Sequence[Rule], lines: Sequence[str], tmp_path: Path, **options: Any) -> ScanResult:
    options.setdefault("tz", UTC)
    path = write(tmp_path / "logs" / "syslog", lines)
    return Engine(rules, ScanOptions(**options)).scan([str(path)])


def of(result: ScanResult | list[Finding], rule: str) -> list[Finding]:
    findings = result.findings if isinstance(result, ScanResult) else result
    return sorted((f for f in findings if f.rule == rule), key=lambda f: (f.timestamp, f.line))


def stream(
    rules: Sequence[Rule], lines: Sequence[str]
) -> tuple[list[list[Finding]], list[Finding]]:
    """Every line parsed and given to one Detector in order (as a live tail would): the
    findings emitted after each line, and those of ``finish()``."""
    det = Detector(rules)
    proc = LineProcessor(
        "live", TimeResolver(UTC, MTIME), None, lambda p: None, ScanStats(), fmt="syslog"
    )
    per_line: list[list[Finding]] = []
    for i, text in enumerate(lines):
        out: list[Finding] = []
        for rec in proc.process((text + "\n").encode(), i + 1):
            if isinstance(rec, TimeMark):
                out.extend(det.observe(rec.host, rec.timestamp))
            elif isinstance(rec, Event):
                out.extend(det.process(rec))
            else:
                raise AssertionError(f"line {i + 1} does not parse: {rec}")
        per_line.append(out)
    return per_line, det.finish()


# -- threshold ------------------------------------------------------------------------------------


def burst_rules(tmp_path: Path, **extra: Any) -> list[Rule]:
    spec = {"of": "app.fail", "count": 3, "window": "10m", "group_by": ["host"], **extra}
    return load(tmp_path, FAIL, corr_rule("app.burst", "threshold", **spec))


def test_threshold_exactly_count_with_the_last_at_the_window_edge_fires(tmp_path: Path) -> None:
    rules = burst_rules(tmp_path)
    lines = [
        log("10:00:00", "fail a"),
        log("10:05:00", "fail b"),
        log("10:10:00", "fail c"),
    ]
    (f,) = of(scan(rules, lines, tmp_path), "app.burst")
    assert f.count == 3
    assert (f.timestamp, f.line) == (at("10:10:00"), 3)  # reported at the crossing line
    assert f.fields["first_seen"] == "2026-11-30T10:00:00+00:00"
    assert f.last_seen == at("10:10:00")
    assert f.host == "h1"
    assert [r.line for r in f.related] == [1, 2, 3]
    assert "3 × app.fail within 10m" in f.message


def test_threshold_spread_over_window_plus_one_second_does_not_fire(tmp_path: Path) -> None:
    rules = burst_rules(tmp_path)
    lines = [
        log("10:00:00", "fail a"),
        log("10:05:00", "fail b"),
        log("10:10:01", "fail c"),
    ]
    result = scan(rules, lines, tmp_path)
    assert of(result, "app.burst") == []
    assert len(of(result, "app.fail")) == 3


def test_threshold_one_finding_per_crossing_grows_while_above(tmp_path: Path) -> None:
    rules = burst_rules(tmp_path)
    lines = [log(f"10:0{i}:00", f"fail {i}") for i in range(5)]
    (f,) = of(scan(rules, lines, tmp_path), "app.burst")
    assert (f.count, f.last_seen, f.line) == (5, at("10:04:00"), 3)
    # as a stream: one finding at the third line, then updates of the same key
    per_line, _ = stream(rules, lines)
    emitted = [[x for x in out if x.rule == "app.burst"] for out in per_line]
    assert [len(x) for x in emitted] == [0, 0, 1, 1, 1]
    assert len({x[0].key for x in emitted[2:]}) == 1
    assert [(x[0].count, x[0].last_seen) for x in emitted[2:]] == [
        (3, at("10:02:00")),
        (4, at("10:03:00")),
        (5, at("10:04:00")),
    ]


def test_threshold_rearms_after_the_window_empties(tmp_path: Path) -> None:
    rules = burst_rules(tmp_path)
    lines = [
        log("10:00:00", "fail a"),
        log("10:01:00", "fail b"),
        log("10:02:00", "fail c"),
        log("10:30:00", "fail d"),
        log("10:31:00", "fail e"),
        log("10:32:00", "fail f"),
    ]
    found = of(scan(rules, lines, tmp_path), "app.burst")
    assert [(f.timestamp, f.count, f.line, f.fields["first_seen"]) for f in found] == [
        (at("10:02:00"), 3, 3, "2026-11-30T10:00:00+00:00"),
        (at("10:32:00"), 3, 6, "2026-11-30T10:30:00+00:00"),
    ]
    assert found[0].key != found[1].key


def test_threshold_group_by_separates_hosts(tmp_path: Path) -> None:
    rules = burst_rules(tmp_path)
    two_each = [log(f"10:0{i}:00", f"fail {i}", host=h) for i in range(2) for h in ("h1", "h2")]
    assert of(scan(rules, two_each, tmp_path), "app.burst") == []
    three_h2 = [*two_each, log("10:03:00", "fail x", host="h2")]
    (f,) = of(scan(rules, three_h2, tmp_path), "app.burst")
    assert (f.host, f.count) == ("h2", 3)
    both = [*three_h2, log("10:04:00", "fail y", host="h1")]
    assert [(f.host, f.count) for f in of(scan(rules, both, tmp_path), "app.burst")] == [
        ("h2", 3),
        ("h1", 3),
    ]


def test_threshold_of_with_where_counts_only_accepted_matches(tmp_path: Path) -> None:
    rules = burst_rules(tmp_path, of={"rule": "app.fail", "where": {"who": {"not_in": ["probe"]}}})
    lines = [
        log("10:00:00", "fail a"),
        log("10:01:00", "fail probe"),
        log("10:02:00", "fail b"),
        log("10:03:00", "fail probe"),
    ]
    assert of(scan(rules, lines, tmp_path), "app.burst") == []
    (f,) = of(scan(rules, [*lines, log("10:04:00", "fail c")], tmp_path), "app.burst")
    assert f.count == 3


def test_threshold_hosts_override_limits_it_to_the_listed_hosts(tmp_path: Path) -> None:
    spec = {"of": "app.fail", "count": 2, "window": "10m", "group_by": ["host"]}
    rules = load(
        tmp_path,
        FAIL,
        corr_rule("app.burst", "threshold", **spec),
        overrides=[{"id": "app.burst", "hosts": ["h2"]}],
    )
    lines = [log(f"10:0{i}:00", "fail x", host=h) for i in range(2) for h in ("h1", "h2")]
    assert [f.host for f in of(scan(rules, lines, tmp_path), "app.burst")] == ["h2"]


# -- sequence ------------------------------------------------------------------------------------


def seq_rules(tmp_path: Path, steps: Any = None, **extra: Any) -> list[Rule]:
    spec = {
        "window": "10m",
        "group_by": ["host", "qid"],
        "steps": steps or ["app.start", "app.stop"],
        **extra,
    }
    return load(tmp_path, START, STOP, corr_rule("app.seq", "sequence", **spec))


def test_sequence_needs_the_steps_in_order(tmp_path: Path) -> None:
    rules = seq_rules(tmp_path)
    backwards = [log("10:00:00", "stop Q1 crash"), log("10:01:00", "start Q1")]
    assert of(scan(rules, backwards, tmp_path), "app.seq") == []
    forwards = [log("10:00:00", "start Q1"), log("10:01:00", "stop Q1 crash")]
    (f,) = of(scan(rules, forwards, tmp_path), "app.seq")
    assert (f.timestamp, f.line, f.count) == (at("10:01:00"), 2, 1)
    assert f.last_seen == at("10:01:00")
    assert [r.line for r in f.related] == [1, 2]
    assert "app.start then app.stop" in f.message


def test_sequence_window_is_inclusive_and_an_expired_partial_is_counted(tmp_path: Path) -> None:
    rules = seq_rules(tmp_path)
    edge = [log("10:00:00", "start Q1"), log("10:10:00", "stop Q1 crash")]
    assert len(of(scan(rules, edge, tmp_path), "app.seq")) == 1
    late = [log("10:00:00", "start Q1"), log("10:10:01", "stop Q1 crash")]
    result = scan(rules, late, tmp_path)
    assert of(result, "app.seq") == []
    assert result.detection["incomplete"] == {"app.seq": 1}


def test_sequence_joins_on_a_captured_field_so_interleaved_instances_complete_apart(
    tmp_path: Path,
) -> None:
    rules = seq_rules(tmp_path)
    lines = [
        log("10:00:00", "start Q1 user=alice"),
        log("10:00:10", "start Q2 user=bob"),
        log("10:00:20", "stop Q2 crash"),
        log("10:00:30", "start Q3 user=carol"),
        log("10:00:40", "stop Q1 timeout"),
    ]
    found = of(scan(rules, lines, tmp_path), "app.seq")
    assert [(dict(f.fields), f.line) for f in found] == [
        ({"qid": "Q2", "user": "bob", "why": "crash"}, 3),
        ({"qid": "Q1", "user": "alice", "why": "timeout"}, 5),
    ]
    assert [[r.line for r in f.related] for f in found] == [[2, 3], [1, 5]]


def test_sequence_where_not_in_skips_a_matching_step(tmp_path: Path) -> None:
    stop = {"rule": "app.stop", "where": {"why": {"not_in": ["ok", "normal"]}}}
    rules = seq_rules(tmp_path, steps=["app.start", stop])
    lines = [
        log("10:00:00", "start Q1"),
        log("10:00:10", "stop Q1 ok"),
        log("10:00:20", "stop Q1 normal"),
    ]
    assert of(scan(rules, lines, tmp_path), "app.seq") == []
    (f,) = of(scan(rules, [*lines, log("10:00:30", "stop Q1 crash")], tmp_path), "app.seq")
    assert f.fields["why"] == "crash"
    assert f.line == 4


def test_sequence_counted_step_with_distinct_and_where(tmp_path: Path) -> None:
    root = line_rule("sys.root-fail", r"^root remount failed", program="systemd")
    unit = line_rule("sys.unit-fail", r"^unit (?P<unit>\S+) failed", program="systemd")
    cascade = corr_rule(
        "sys.cascade",
        "sequence",
        window="10m",
        group_by=["host"],
        steps=[
            "sys.root-fail",
            {
                "rule": "sys.unit-fail",
                "count": 3,
                "distinct": "unit",
                "where": {"unit": {"not_in": ["root.service"]}},
            },
        ],
    )
    rules = load(tmp_path, root, unit, cascade)
    lines = [
        log("10:00:00", "root remount failed", prog="systemd"),
        log("10:00:01", "unit root.service failed", prog="systemd"),  # excluded by where
        log("10:00:02", "unit a.service failed", prog="systemd"),
        log("10:00:03", "unit a.service failed", prog="systemd"),  # not distinct
        log("10:00:04", "unit b.service failed", prog="systemd"),
        log("10:00:05", "unit root.service failed", prog="systemd"),
    ]
    assert of(scan(rules, lines, tmp_path), "sys.cascade") == []
    more = [*lines, log("10:00:06", "unit c.service failed", prog="systemd")]
    (f,) = of(scan(rules, more, tmp_path), "sys.cascade")
    assert f.line == 7
    assert f.fields["unit.2"] == "a.service, b.service, c.service"
    assert [r.line for r in f.related] == [1, 3, 5, 7]
    assert "sys.unit-fail ×3" in f.message


def test_sequence_finding_has_fields_of_all_steps_and_a_later_steps_other_value_as_name_n(
    tmp_path: Path,
) -> None:
    boot = line_rule("svc.killed", r"^service\((?P<service>[^()\s]+)\): killed (?P<seconds>\d+)")
    limit = line_rule("svc.limit", r"^service\((?P<service>[^()\s]+)\): limit (?P<limit>\d+)")
    story = corr_rule(
        "svc.story",
        "sequence",
        window="24h",
        group_by=["host"],
        steps=["svc.killed", "svc.limit"],
    )
    rules = load(tmp_path, boot, limit, story)
    lines = [
        log("01:00:00", "service(anvil): killed 30"),
        log("09:00:00", "service(pop3-login): limit 100"),
    ]
    (f,) = of(scan(rules, lines, tmp_path), "svc.story")
    assert dict(f.fields) == {
        "service": "anvil",
        "seconds": "30",
        "service.2": "pop3-login",
        "limit": "100",
    }
    same = [
        log("01:00:00", "service(anvil): killed 30"),
        log("09:00:00", "service(anvil): limit 1"),
    ]
    (f,) = of(scan(rules, same, tmp_path), "svc.story")
    assert "service.2" not in f.fields


def test_sequence_instance_runs_from_its_first_step_until_it_completes(tmp_path: Path) -> None:
    """One instance per group key: a repeated first step before the second step moves the
    start to the latest first step (the earlier line stays as evidence)."""
    rules = seq_rules(tmp_path)
    lines = [
        log("10:00:00", "start Q1"),
        log("10:08:00", "start Q1"),
        log("10:09:00", "stop Q1 crash"),
        log("10:10:00", "start Q1"),  # opens the next instance
        log("10:11:00", "stop Q1 crash"),
    ]
    found = of(scan(rules, lines, tmp_path), "app.seq")
    assert [f.line for f in found] == [3, 5]
    assert "within 1m (started 2026-11-30T10:08:00+00:00)" in found[0].message
    assert [r.line for r in found[0].related] == [1, 2, 3]
    assert "within 1m (started 2026-11-30T10:10:00+00:00)" in found[1].message


def test_sequence_window_is_elapsed_time_across_a_dst_change(tmp_path: Path) -> None:
    rules = seq_rules(tmp_path, window="2h")
    lines = [
        log("01:30:00", "start Q1", day=25).replace("Nov", "Oct"),
        log("03:30:00", "stop Q1 crash", day=25).replace("Nov", "Oct"),
    ]
    result = scan(rules, lines, tmp_path, tz=ZoneInfo("Europe/Berlin"))
    start, stop = (f.timestamp for f in of(result, "app.start") + of(result, "app.stop"))
    assert start is not None and stop is not None
    assert stop.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=3)
    assert of(result, "app.seq") == []


# -- absence with a trigger ---------------------------------------------------------------------


def absence_rules(tmp_path: Path, **extra: Any) -> list[Rule]:
    spec = {
        "trigger": "app.start",
        "expect": "app.stop",
        "window": "5m",
        "group_by": ["host", "qid"],
        **extra,
    }
    return load(tmp_path, START, STOP, corr_rule("app.nostop", "absence", **spec))


def test_absence_expect_within_the_window_closes_it(tmp_path: Path) -> None:
    rules = absence_rules(tmp_path)
    lines = [
        log("10:00:00", "start Q1"),
        log("10:05:00", "stop Q1 ok"),  # exactly at the end of the window
        log("10:30:00", "start Q2"),
        log("10:31:00", "stop Q2 ok"),
        log("11:00:00", "stop Q9 ok"),
    ]
    result = scan(rules, lines, tmp_path)
    assert of(result, "app.nostop") == []
    assert result.detection["expired_unjudged"] == {"app.nostop": 0}


def test_absence_expect_after_the_window_is_a_finding_at_trigger_plus_window(
    tmp_path: Path,
) -> None:
    rules = absence_rules(tmp_path)
    lines = [
        log("10:00:00", "start Q1 user=alice"),
        log("10:00:30", "start Q2"),
        log("10:01:00", "stop Q2 ok"),
        log("10:05:01", "stop Q1 ok"),
    ]
    (f,) = of(scan(rules, lines, tmp_path), "app.nostop")
    assert f.timestamp == at("10:05:00")
    assert (f.line, f.host) == (1, "h1")  # located at the trigger
    assert dict(f.fields) == {"qid": "Q1", "user": "alice"}
    assert "was not followed by app.stop within 5m" in f.message


def test_absence_time_passing_on_the_host_judges_the_window(tmp_path: Path) -> None:
    rules = absence_rules(tmp_path)
    lines = [log("10:00:00", "start Q1"), log("10:20:00", "nothing to see", prog="cron")]
    (f,) = of(scan(rules, lines, tmp_path), "app.nostop")
    assert f.timestamp == at("10:05:00")


def test_absence_open_at_the_end_of_input_is_counted_not_reported(tmp_path: Path) -> None:
    rules = absence_rules(tmp_path)
    lines = [log("10:00:00", "start Q1"), log("10:03:00", "nothing to see", prog="cron")]
    result = scan(rules, lines, tmp_path)
    assert of(result, "app.nostop") == []
    assert result.detection["expired_unjudged"] == {"app.nostop": 1}


# -- heartbeat absence -----------------------------------------------------------------------------


def heartbeat_rules(tmp_path: Path, overrides: Sequence[Mapping[str, Any]] = ()) -> list[Rule]:
    silent = corr_rule("app.silent", "absence", expect="app.beat", window="1h")
    return load(tmp_path, FAIL, BEAT, silent, overrides=overrides)


def test_heartbeat_host_that_keeps_logging_without_expect_gives_one_finding(
    tmp_path: Path,
) -> None:
    rules = heartbeat_rules(tmp_path)
    lines = [
        log("10:00:00", "beat"),
        log("10:30:00", "fail a"),
        log("11:30:00", "fail b"),
        log("12:30:00", "fail c"),
        log("13:30:00", "fail d"),
    ]
    (f,) = of(scan(rules, lines, tmp_path), "app.silent")
    assert f.timestamp == at("11:00:00")
    assert f.host == "h1"
    assert dict(f.fields) == {"silent_since": "2026-11-30T10:00:00+00:00"}
    assert f.line == 1  # the last expected line


def test_heartbeat_expect_keeps_coming_gives_nothing(tmp_path: Path) -> None:
    rules = heartbeat_rules(tmp_path)
    lines = [log(f"{10 + i}:00:00", "beat") for i in range(5)] + [log("14:30:00", "fail a")]
    assert of(scan(rules, lines, tmp_path), "app.silent") == []


def test_heartbeat_alerts_again_after_the_expect_came_back(tmp_path: Path) -> None:
    rules = heartbeat_rules(tmp_path)
    lines = [
        log("10:00:00", "beat"),
        log("11:30:00", "fail a"),
        log("12:00:00", "beat"),
        log("14:00:00", "fail b"),
    ]
    found = of(scan(rules, lines, tmp_path), "app.silent")
    assert [f.timestamp for f in found] == [at("11:00:00"), at("13:00:00")]


def test_heartbeat_hosts_override_limits_it_to_the_listed_hosts(tmp_path: Path) -> None:
    lines = [
        log("10:00:00", "beat", host="h1"),
        log("10:00:00", "beat", host="h2"),
        log("12:00:00", "fail a", host="h1"),
        log("12:00:00", "fail a", host="h2"),
    ]
    everywhere = heartbeat_rules(tmp_path)
    assert sorted(f.host for f in of(scan(everywhere, lines, tmp_path), "app.silent")) == [
        "h1",
        "h2",
    ]
    only_h2 = heartbeat_rules(tmp_path, overrides=[{"id": "app.silent", "hosts": ["h2"]}])
    assert [f.host for f in of(scan(only_h2, lines, tmp_path), "app.silent")] == ["h2"]


# -- suppression and digests -------------------------------------------------------------------------


def suppress_rules(tmp_path: Path, **suppress: Any) -> list[Rule]:
    warn = line_rule("app.warn", r"^warn (?P<svc>\S+)", suppress={"period": "1h", **suppress})
    return load(tmp_path, warn)


def test_suppress_folds_count_and_last_seen_into_one_finding(tmp_path: Path) -> None:
    rules = suppress_rules(tmp_path)
    lines = [log("10:00:00", "warn a"), log("10:20:00", "warn b"), log("10:59:59", "warn a")]
    result = scan(rules, lines, tmp_path)
    (f,) = of(result, "app.warn")
    assert (f.timestamp, f.line, f.count, f.last_seen) == (at("10:00:00"), 1, 3, at("10:59:59"))
    assert dict(f.fields) == {"svc": "a"}  # the first occurrence's
    assert [r.line for r in f.related] == [1, 2, 3]
    assert result.detection["suppressed"] == 2
    # as a stream: the same key is emitted again with the grown count
    per_line, _ = stream(rules, lines)
    assert [[(x.key, x.count) for x in out] for out in per_line] == [
        [(f.key, 1)],
        [(f.key, 2)],
        [(f.key, 3)],
    ]


def test_suppress_gives_a_new_finding_after_the_period(tmp_path: Path) -> None:
    rules = suppress_rules(tmp_path)
    lines = [
        log("10:00:00", "warn a"),
        log("10:30:00", "warn a"),
        log("11:00:00", "warn a"),  # start + period: a new period
        log("11:10:00", "warn a"),
    ]
    found = of(scan(rules, lines, tmp_path), "app.warn")
    assert [(f.line, f.count, f.last_seen) for f in found] == [
        (1, 2, at("10:30:00")),
        (3, 2, at("11:10:00")),
    ]


def test_suppress_group_by_keeps_groups_apart(tmp_path: Path) -> None:
    rules = suppress_rules(tmp_path, group_by=["host", "svc"])
    lines = [
        log("10:00:00", "warn a"),
        log("10:01:00", "warn b"),
        log("10:02:00", "warn a", host="h2"),
        log("10:03:00", "warn a"),
        log("10:04:00", "warn b"),
        log("10:05:00", "warn b"),
    ]
    found = of(scan(rules, lines, tmp_path), "app.warn")
    assert [(f.host, f.fields["svc"], f.count) for f in found] == [
        ("h1", "a", 2),
        ("h1", "b", 3),
        ("h2", "a", 1),
    ]


def test_digest_one_summary_per_period_when_it_ends_and_at_end_of_input(tmp_path: Path) -> None:
    rules = suppress_rules(tmp_path, digest=True)
    lines = [
        log("10:00:00", "warn a"),
        log("10:10:00", "warn b"),
        log("10:20:00", "warn a"),
        log("10:59:59", "nothing", prog="cron"),
        log("11:00:00", "nothing", prog="cron"),  # the period ends here
        log("11:30:00", "warn c"),
        log("11:40:00", "warn c"),
    ]
    per_line, at_end = stream(rules, lines)
    assert [len(out) for out in per_line] == [0, 0, 0, 0, 1, 0, 0]
    (first,) = per_line[4]
    assert (first.rule, first.count, first.timestamp, first.last_seen, first.line) == (
        "app.warn",
        3,
        at("10:00:00"),
        at("10:20:00"),
        1,
    )
    assert dict(first.fields) == {"svc": "a", "digest": "true"}
    assert first.message.startswith("3 × title of app.warn between 2026-11-30T10:00:00+00:00")
    (last,) = at_end
    assert (last.count, last.timestamp, last.last_seen) == (2, at("11:30:00"), at("11:40:00"))
    # a scan gives the same two summaries
    found = of(scan(rules, lines, tmp_path), "app.warn")
    assert [(f.count, f.key) for f in found] == [(3, first.key), (2, last.key)]


def test_digest_closed_by_observe_of_the_host_only(tmp_path: Path) -> None:
    rules = suppress_rules(tmp_path, digest=True)
    det = Detector(rules)
    proc = LineProcessor("x", TimeResolver(UTC, MTIME), None, lambda p: None, ScanStats())
    for rec in proc.process((log("10:00:00", "warn a") + "\n").encode(), 1):
        assert isinstance(rec, Event)
        assert det.process(rec) == []
    assert det.observe("h2", at("12:00:00")) == []  # another host's time does not judge it
    assert det.observe("h1", at("10:59:59")) == []
    (digest,) = det.observe("h1", at("11:00:00"))
    assert digest.count == 1 and digest.fields["digest"] == "true"
    assert det.finish() == []


# -- enrichment ------------------------------------------------------------------------------------


def enrich_rules(tmp_path: Path) -> list[Rule]:
    source = line_rule(
        "mta.from", r"^(?P<qid>[A-Z0-9]{2,}): from=<(?P<sender>[^<>\s]*)>", report=False
    )
    receipt = line_rule(
        "mta.receipt",
        r"^(?P<qid>[A-Z0-9]{2,}): receipt",
        enrich=[{"rule": "mta.from", "by": ["qid"], "copy": ["sender"], "keep": "1h"}],
    )
    return load(tmp_path, source, receipt)


def test_enrich_copies_the_sender_and_the_helper_reports_nothing(tmp_path: Path) -> None:
    rules = enrich_rules(tmp_path)
    lines = [
        log("10:00:00", "Q1: from=<a@example.org>"),
        log("10:00:01", "Q2: from=<b@example.org>"),
        log("10:00:02", "Q2: receipt"),
        log("10:00:03", "Q3: receipt"),
    ]
    result = scan(rules, lines, tmp_path)
    assert [dict(f.fields) for f in of(result, "mta.receipt")] == [
        {"qid": "Q2", "sender": "b@example.org"},
        {"qid": "Q3"},
    ]
    assert of(result, "mta.from") == []
    assert result.detection["enriched"] == 1


def test_enrich_does_not_copy_after_keep(tmp_path: Path) -> None:
    rules = enrich_rules(tmp_path)
    lines = [
        log("10:00:00", "Q1: from=<a@example.org>"),
        log("10:00:00", "Q2: from=<b@example.org>"),
        log("11:00:00", "Q1: receipt"),  # exactly keep later: still joined
        log("11:00:01", "Q2: receipt"),
    ]
    found = of(scan(rules, lines, tmp_path), "mta.receipt")
    assert [f.fields.get("sender") for f in found] == ["a@example.org", None]


def test_enrich_source_in_the_previous_rotated_file(tmp_path: Path) -> None:
    rules = enrich_rules(tmp_path)
    logs = tmp_path / "logs"
    write(logs / "app.log.1", [log("10:00:00", "Q1: from=<a@example.org>")])
    write(logs / "app.log", [log("10:10:00", "Q1: receipt")])
    result = Engine(rules, ScanOptions(tz=UTC)).scan([str(logs)])
    (f,) = of(result, "mta.receipt")
    assert f.source == str(logs / "app.log")
    assert f.fields["sender"] == "a@example.org"


# -- lateness ------------------------------------------------------------------------------------


def test_lateness_reorders_matches_of_two_files_within_the_hosts_watermark(
    tmp_path: Path,
) -> None:
    """Inputs are read one after another, not merged by time; a match waits in its host's
    reorder buffer until the host's watermark has passed it by ``lateness``. So a later file
    may still contribute an earlier step, but only while the first file has not moved the
    watermark more than ``lateness`` beyond it."""
    rules = seq_rules(tmp_path, group_by=["host"])
    daemon = write(
        tmp_path / "logs" / "daemon.log",
        [log("10:00:20", "stop Q1 crash"), log("10:00:25", "nothing", prog="cron")],
    )
    mail = write(
        tmp_path / "logs" / "mail.log",
        [log("10:00:05", "start Q1"), log("10:00:40", "nothing", prog="cron")],
    )
    paths = [str(daemon), str(mail)]

    def run(lateness: int) -> ScanResult:
        opts = ScanOptions(tz=UTC, lateness=timedelta(seconds=lateness))
        return Engine(rules, opts).scan(paths)

    in_order = run(0)
    assert of(in_order, "app.seq") == []
    assert in_order.detection["incomplete"] == {"app.seq": 1}
    reordered = run(30)
    (f,) = of(reordered, "app.seq")
    assert (f.source, f.line, f.timestamp) == (str(daemon), 1, at("10:00:20"))
    assert "started 2026-11-30T10:00:05+00:00" in f.message
    # the first file moves h1's watermark past stop + lateness before the second is read
    write(daemon, [log("10:00:20", "stop Q1 crash"), log("10:01:25", "nothing", prog="cron")])
    assert of(run(30), "app.seq") == []


# -- overrides ------------------------------------------------------------------------------------


def test_override_enabled_turns_rules_off_and_on(tmp_path: Path) -> None:
    silent = corr_rule("app.silent", "absence", expect="app.beat", window="1h", enabled=False)
    lines = [log("10:00:00", "beat"), log("10:10:00", "fail a"), log("12:00:00", "fail b")]
    rules = load(tmp_path, FAIL, BEAT, silent)
    result = scan(rules, lines, tmp_path)
    assert of(result, "app.silent") == []
    assert len(of(result, "app.fail")) == 2
    rules = load(
        tmp_path,
        FAIL,
        BEAT,
        silent,
        overrides=[
            {"id": "app.silent", "enabled": True},
            {"id": "app.fail", "enabled": False},
        ],
    )
    result = scan(rules, lines, tmp_path)
    assert len(of(result, "app.silent")) == 1
    assert of(result, "app.fail") == []


def test_override_window_changes_a_correlation(tmp_path: Path) -> None:
    spec = {"of": "app.fail", "count": 3, "window": "10m", "group_by": ["host"]}
    lines = [log("10:00:00", "fail a"), log("10:03:00", "fail b"), log("10:06:00", "fail c")]
    rules = load(tmp_path, FAIL, corr_rule("app.burst", "threshold", **spec))
    assert len(of(scan(rules, lines, tmp_path), "app.burst")) == 1
    rules = load(
        tmp_path,
        FAIL,
        corr_rule("app.burst", "threshold", **spec),
        overrides=[{"id": "app.burst", "window": "5m"}],
    )
    (rule,) = (r for r in rules if r.id == "app.burst")
    assert rule.correlation is not None and rule.correlation.window == timedelta(minutes=5)
    assert of(scan(rules, lines, tmp_path), "app.burst") == []


def test_override_of_an_unknown_rule_names_file_and_line(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "a.yaml").write_text(yaml.safe_dump({"rules": [FAIL]}, sort_keys=False))
    (d / "b.yaml").write_text(
        "overrides:\n  - id: app.fail\n    severity: low\n  - id: app.nope\n    enabled: false\n"
    )
    with pytest.raises(RuleError) as err:
        load_rules([d], builtin=False)
    assert str(err.value).startswith(f"{d / 'b.yaml'}:4: override of unknown rule 'app.nope'")


# -- loader errors of correlation rules ----------------------------------------------------------

LINE_RULES = """\
rules:
  - id: app.start
    title: t
    severity: high
    description: d
    remediation: r
    select: {program: app}
    match: {message: {regex: '^start (?P<qid>\\S+)'}}
    examples: {match: [x], no_match: [y]}
  - id: app.stop
    title: t
    severity: high
    description: d
    remediation: r
    select: {program: app}
    match: {message: {regex: '^stop (?P<qid>\\S+)'}}
    examples: {match: [x], no_match: [y]}
"""
CORR_HEAD = """\
  - id: app.{name}
    title: t
    severity: high
    description: d
    remediation: r
    examples: {{match: [{{lines: [x]}}], no_match: [{{lines: [y]}}]}}
"""


def load_error(tmp_path: Path, *bodies: tuple[str, str]) -> tuple[str, int, str]:
    """Load LINE_RULES plus correlation rules (name, body); the error text, the line of the
    marker ``#>`` in the file (1-based) and the file's path."""
    text = LINE_RULES + "".join(CORR_HEAD.format(name=n) + b for n, b in bodies)
    lines = text.splitlines()
    marked = [i + 1 for i, x in enumerate(lines) if x.rstrip().endswith("#>")]
    assert len(marked) == 1
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    path = d / "corr.yaml"
    path.write_text(text)
    with pytest.raises(RuleError) as err:
        load_rules([d], builtin=False)
    return str(err.value), marked[0], str(path)


@pytest.mark.parametrize(
    ("bodies", "message", "offset"),
    [
        pytest.param(
            [("seq", "    type: sequence  #>\n    window: 10m\n")],
            "a sequence rule needs 'steps': a list of at least two steps",
            -6,  # the rule's `- id:` line
            id="missing-steps",
        ),
        pytest.param(
            [("seq", "    type: sequence\n    window: 10m\n    steps: [app.start]  #>\n")],
            "a sequence rule needs 'steps': a list of at least two steps",
            0,
            id="one-step",
        ),
        pytest.param(
            [
                (
                    "seq",
                    "    type: sequence\n    window: 10 minutes  #>\n    steps: [app.start, app.stop]\n",
                )
            ],
            "invalid duration '10 minutes' (use e.g. 90s, 10m, 1h30m, 24h, 7d)",
            0,
            id="bad-duration",
        ),
        pytest.param(
            [
                (
                    "hb",
                    "    type: absence\n    window: 1h\n    expect: app.stop\n    group_by: [service]  #>\n",
                )
            ],
            "an absence rule without 'trigger' (a heartbeat) is per host",
            0,
            id="heartbeat-group-by",
        ),
        pytest.param(
            [("thr", "    type: threshold  #>\n    window: 1h\n    of: app.stop\n")],
            "a threshold rule needs 'count'",
            -6,
            id="threshold-count",
        ),
        pytest.param(
            [
                (
                    "seq",
                    "    type: sequence\n    window: 1h\n    steps: [app.start, app.stop]\n    match: {message: x}  #>\n",
                )
            ],
            "'match' does not apply to a sequence rule",
            0,
            id="match-on-sequence",
        ),
    ],
)
def test_loader_errors_of_correlation_rules_name_file_and_line(
    tmp_path: Path, bodies: list[tuple[str, str]], message: str, offset: int
) -> None:
    error, line, path = load_error(tmp_path, *bodies)
    assert error.startswith(f"{path}:{line + offset}: {message}"), error


def test_loader_error_for_a_step_naming_an_unknown_rule(tmp_path: Path) -> None:
    body = "    type: sequence\n    window: 10m\n    steps: [app.start, app.nope]\n"
    error, line, path = load_error(tmp_path, ("seq", body.replace("\n", "  #>\n", 1)))
    # the error points at the rule (its `- id:` line), a few lines above the steps
    rule_line = line - 6
    assert error.startswith(f"{path}:{rule_line}: 'app.seq' refers to unknown rule 'app.nope'")


def test_loader_error_for_a_correlation_referencing_a_correlation(tmp_path: Path) -> None:
    ok = "    type: sequence\n    window: 10m\n    steps: [app.start, app.stop]\n"
    bad = "    type: threshold  #>\n    window: 10m\n    count: 2\n    of: app.seq\n"
    error, line, path = load_error(tmp_path, ("seq", ok), ("thr", bad))
    assert error.startswith(f"{path}:{line - 6}: 'app.thr' refers to 'app.seq', a sequence rule")
    assert "must name line rules" in error


def enrich_text(key: str) -> str:
    return LINE_RULES + (
        "  - id: app.receipt\n"
        "    title: t\n"
        "    severity: high\n"
        "    description: d\n"
        "    remediation: r\n"
        "    select: {program: app}\n"
        "    match: {message: {regex: '^receipt (?P<qid>\\S+)'}}\n"
        "    enrich:\n"
        "      - rule: app.start\n"
        f"        {key}: [qid]\n"
        "        copy: [user]\n"
        "        keep: 1h\n"
        "    examples: {match: [x], no_match: [y]}\n"
    )


def test_enrich_with_by_loads(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "e.yaml").write_text(enrich_text("by"))
    (rule,) = (r for r in load_rules([d], builtin=False) if r.id == "app.receipt")
    assert rule.enrich[0].by == ("qid",)


def test_enrich_with_on_instead_of_by_is_an_error_at_its_line(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    text = enrich_text("on")
    (d / "e.yaml").write_text(text)
    line = text.splitlines().index("        on: [qid]") + 1
    with pytest.raises(RuleError) as err:
        load_rules([d], builtin=False)
    assert str(err.value).startswith(f"{d / 'e.yaml'}:{line}:"), str(err.value)


def test_enrich_with_on_instead_of_by_says_so(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "e.yaml").write_text(enrich_text("on"))
    with pytest.raises(RuleError) as err:
        load_rules([d], builtin=False)
    assert "'on'" in str(err.value) and "by" in str(err.value), str(err.value)


# -- memory bounds -------------------------------------------------------------------------------


def test_open_state_is_bounded_and_evictions_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(correlate, "MAX_OPEN", 2)
    warn = line_rule(
        "app.warn", r"^warn (?P<qid>\S+)", suppress={"period": "1h", "group_by": ["qid"]}
    )
    seq = corr_rule(
        "app.seq", "sequence", window="10m", group_by=["qid"], steps=["app.start", "app.stop"]
    )
    nostop = corr_rule(
        "app.nostop",
        "absence",
        window="10m",
        group_by=["qid"],
        trigger="app.start",
        expect="app.stop",
    )
    rules = load(tmp_path, START, STOP, warn, seq, nostop)
    lines = [log(f"10:00:0{i}", f"start Q{i}") for i in range(5)]
    lines += [log(f"10:00:1{i}", f"warn Q{i}") for i in range(5)]
    lines += [log("10:01:00", "stop Q0 crash"), log("10:01:01", "stop Q4 crash")]
    engine = Engine(rules, ScanOptions(tz=UTC))
    det = engine.new_detector()
    result = engine.scan([str(write(tmp_path / "logs" / "syslog", lines))], detector=det)
    assert det.stats.evicted == {"app.seq": 3, "app.nostop": 3, "app.warn": 3}
    # the oldest partial (Q0) was evicted and cannot complete; the newest (Q4) can
    assert [f.fields["qid"] for f in of(result, "app.seq")] == ["Q4"]
    seq_state = det.states["app.seq"]
    assert isinstance(seq_state, correlate.SequenceState)
    assert len(seq_state.partials) <= 2
    assert len(det.suppressors["app.warn"].periods) <= 2


def test_threshold_windows_are_bounded_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(correlate, "MAX_OPEN", 3)
    spec = {"of": "app.fail", "count": 2, "window": "10m", "group_by": ["who"]}
    rules = load(tmp_path, FAIL, corr_rule("app.burst", "threshold", **spec))
    lines = [log(f"10:00:{i:02d}", f"fail client{i}") for i in range(10)]
    engine = Engine(rules, ScanOptions(tz=UTC))
    det = engine.new_detector()
    engine.scan([str(write(tmp_path / "logs" / "syslog", lines))], detector=det)
    state = det.states["app.burst"]
    assert isinstance(state, correlate.ThresholdState)
    assert len(state.windows) <= 3
    assert det.stats.evicted["app.burst"] == 7


def test_an_override_a_rule_type_does_not_have_is_an_error(tmp_path: Path) -> None:
    """``window`` on a line rule or ``count`` on a sequence would do nothing: say so."""
    from pipeline.errors import RuleError

    d = tmp_path / "ov"
    d.mkdir()
    (d / "x.yaml").write_text("overrides:\n  - id: dovecot.process-limit-reached\n    window: 1h\n")
    with pytest.raises(RuleError, match=r"x.yaml:2: 'window' does not apply"):
        load_rules([d])
    (d / "x.yaml").write_text("overrides:\n  - id: dovecot.silent-stop\n    count: 3\n")
    with pytest.raises(RuleError, match=r"x.yaml:2: 'count' does not apply"):
        load_rules([d])


def test_join_rows_a_host_has_moved_keep_past_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long input holds one keep window of join rows per host, not every row it saw;
    another host's rows follow that host's own time."""
    from pipeline.detection.correlate import DetectorStats, EnrichTable
    from pipeline.detection.model import Enrich

    table = EnrichTable(
        Enrich("src", ("queue_id",), ("sender",), timedelta(hours=1)), DetectorStats(), "t"
    )
    t0 = datetime(2026, 11, 30, tzinfo=UTC)

    def remember(host: str, qid: str, minutes: int) -> None:
        ev = Event(t0 + timedelta(minutes=minutes), host, "sm-mta", 1, None, "m", "syslog", "f", 1)
        table.remember(ev, {"queue_id": qid, "sender": f"<{qid}@x>"})

    for i in range(200):
        remember("a", f"A{i}", i)  # one row a minute on host a
    assert len(table.rows) == 61  # minutes 139..199: one hour behind the last
    remember("b", "B0", -600)  # host b is ten hours behind: its row stays
    remember("a", "A200", 200)
    assert ("B0",) in table.rows and ("A139",) not in table.rows and ("A140",) in table.rows
    snap = table.snapshot()
    again = EnrichTable(table.spec, DetectorStats(), "t")
    again.restore(snap)
    assert again.rows == table.rows
    again.restore([[k, t, v] for k, t, v, _ in snap])  # a snapshot from before hosts were kept
    assert {k: r[:2] for k, r in again.rows.items()} == {k: r[:2] for k, r in table.rows.items()}
    # the same key remembered again and again, rows dropped by the cap: the per-host
    # queues stay in proportion to the rows
    for i in range(20_000):
        remember("a", "A-same", 200 + i // 1000)
    assert table._queued <= 2 * len(table.rows) + 1024
    monkeypatch.setattr(correlate, "MAX_REMEMBERED", 50)
    for i in range(5_000):
        remember("c", f"C{i}", 300)
    assert len(table.rows) == 50
    assert table._queued <= 2 * 50 + 1024


def test_a_disabled_rule_a_correlation_uses_keeps_its_own_enrichment(tmp_path: Path) -> None:
    """Turning the receipt rule off keeps it running for the threshold built on it, and it
    still needs its sender join: helpers are followed to the rules they use in turn."""
    d = tmp_path / "rules"
    d.mkdir()
    (d / "burst.yaml").write_text(
        "rules:\n"
        "  - id: local.receipt-burst\n"
        "    title: receipts per sender\n"
        "    severity: high\n"
        "    description: d\n"
        "    remediation: r\n"
        "    type: threshold\n"
        "    of: sendmail.dsn-return-receipt\n"
        "    count: 1\n"
        "    window: 1h\n"
        "    group_by: [sender]\n"
        "    examples:\n"
        "      match:\n"
        "        - lines: ['Nov 30 08:00:05 mx1 sm-mta[2]: 5AU80Xyz001234: 5AU80Xyz001235: "
        "DSN: Return receipt']\n"
        "      no_match:\n"
        "        - lines: ['Nov 30 08:00:05 mx1 sm-mta[2]: 5AU80Xyz001234: from=<a@b>']\n"
        "overrides:\n"
        "  - id: sendmail.dsn-return-receipt\n"
        "    enabled: false\n"
    )
    rules = load_rules([d])
    assert "sendmail.message-from" in {r.id for r in correlate.active_rules(rules)}
    log = tmp_path / "mail.log"
    log.write_text(
        "Nov 30 08:00:00 mx1 sm-mta[1]: 5AU80Xyz001234: from=<victim@example.org>, size=1, "
        "class=0, nrcpts=1, msgid=<a@b>, proto=ESMTP, daemon=MTA, relay=x [192.0.2.1]\n"
        "Nov 30 08:00:05 mx1 sm-mta[2]: 5AU80Xyz001234: 5AU80Xyz001235: DSN: Return receipt\n"
    )
    found = Engine(rules, ScanOptions(year=2026)).scan([str(log)]).findings
    assert [(f.rule, f.fields.get("sender")) for f in found] == [
        ("local.receipt-burst", "victim@example.org")
    ]
