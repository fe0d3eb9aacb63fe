"""Cutting the input anywhere, saving the detector and resuming gives the findings of one pass.

How the comparison is made like with like: the input set (the rotated mail sample, or one
scenario) is read as lines in rotation order and cut after line ``k``. Each file is written to
``tmp_path`` whole, or as a head (first part) and a tail (second part) under the same name in
two directories, all with the same mtime, so every part infers the same years. File boundaries
matter to the engine: every input gets its own year resolver, and the first and last line of
each input are sampled as time marks, which judge absence windows and digests and release the
lateness buffer. So the uninterrupted pass is one ``Engine.scan`` over exactly the same part
files in the same order, while the resumed pass scans the first part with one Engine, saves
``Detector.snapshot()`` into a real SQLite ``StateDB``, and scans the rest with a fresh Engine
whose new Detector is restored from that file; ``finish()`` runs once, at the very end. Final
findings are compared by key, whole (count, last_seen, fields, related, ...).

With the built-in rules and no lateness nothing is judged by time marks, so there the resumed
findings must also equal those of the uncut files (by key, count, last_seen and fields).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.detection.correlate import Detector
from pipeline.detection.loader import load_rules
from pipeline.detection.model import Rule
from pipeline.engine import Engine, FindingSet, ScanOptions
from pipeline.model import Finding
from pipeline.sources.files import rotation_key
from pipeline.state import StateDB
from tests.conftest import SAMPLES

MTIME = datetime(2026, 11, 30, 12, tzinfo=UTC)

# Rules with every kind of state over the mail sample: a digest, a threshold fed by it, an
# absence with a trigger and a sequence joined on the queue id, and the heartbeat turned on.
EXTRA_RULES = r"""
rules:
  - id: test.auth-failed
    title: A mailbox login failed
    severity: low
    description: d
    remediation: r
    select: {program: dovecot}
    match:
      message: {regex: '^(?:imap|pop3)-login: Disconnected \(auth failed, '}
    suppress: {period: 1h, group_by: [host], digest: true}
    examples: {match: [x], no_match: [y]}
  - id: test.delivered
    report: false
    title: Sendmail delivered a message
    severity: info
    description: d
    remediation: r
    select: {program: [sm-mta, sendmail]}
    match:
      message: {regex: '^(?P<queue_id>[A-Za-z0-9]{8,20}): to=.*, stat=Sent'}
    examples: {match: [x], no_match: [y]}
  - id: test.auth-burst
    type: threshold
    title: Logins keep failing
    severity: medium
    description: d
    remediation: r
    of: test.auth-failed
    count: 2
    window: 30m
    group_by: [host]
    examples: {match: [{lines: [x]}], no_match: [{lines: [y]}]}
  - id: test.accepted-not-delivered
    type: absence
    title: A message was accepted but not delivered within a minute
    severity: low
    description: d
    remediation: r
    trigger: sendmail.message-from
    expect: test.delivered
    window: 1m
    group_by: [queue_id]
    examples: {match: [{lines: [x]}], no_match: [{lines: [y]}]}
  - id: test.accepted-then-delivered
    type: sequence
    title: A message was accepted and delivered
    severity: info
    description: d
    remediation: r
    steps: [sendmail.message-from, test.delivered]
    window: 10m
    group_by: [queue_id]
    examples: {match: [{lines: [x]}], no_match: [{lines: [y]}]}
overrides:
  - id: mail.delivery-silence
    enabled: true
    hosts: [mx1]
    window: 1h
"""


@pytest.fixture(scope="module")
def rule_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Rule]]:
    extra = tmp_path_factory.mktemp("rules")
    (extra / "extra.yaml").write_text(EXTRA_RULES)
    return {"builtin": load_rules(), "extended": load_rules([extra])}


# -- input sets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSet:
    """Files (name, lines) in reading order."""

    files: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def size(self) -> int:
        return sum(len(lines) for _, lines in self.files)

    def cut(self, k: int) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
        """The files holding the first ``k`` lines, and those holding the rest."""
        first: list[tuple[str, list[str]]] = []
        rest: list[tuple[str, list[str]]] = []
        seen = 0
        for name, lines in self.files:
            head = max(0, min(len(lines), k - seen))
            if head:
                first.append((name, list(lines[:head])))
            if head < len(lines):
                rest.append((name, list(lines[head:])))
            seen += len(lines)
        return first, rest


def read_lines(path: Path) -> tuple[str, ...]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return tuple(raw.decode("utf-8").splitlines())


def input_set(*paths: Path) -> InputSet:
    return InputSet(tuple((p.name.removesuffix(".gz"), read_lines(p)) for p in paths))


MAIL = input_set(*(SAMPLES / "mail" / n for n in ("mail.log.2.gz", "mail.log.1", "mail.log")))
THRESHOLD_EDGE = input_set(SAMPLES / "scenarios" / "threshold-edge" / "error.log")
NEW_YEAR = input_set(SAMPLES / "scenarios" / "new-year" / "syslog")
RECEIPT = "Nov 30 08:22:25 vm sm-mta[17783]: 6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt"
# identical lines within one second stay distinct findings (occurrence numbers) across a cut
REPEATS = InputSet(
    (
        (
            "mail.log",
            (
                "Nov 30 08:22:24 vm sm-mta[17782]: 6AU8MP47017782: from=<a@example.org>, "
                "size=1, class=0, nrcpts=1, relay=x [192.0.2.7]",
                RECEIPT,
                RECEIPT,
                RECEIPT,
                RECEIPT.replace("08:22:25", "08:22:26"),
            ),
        ),
    )
)


def cuts_after(inputs: InputSet, *texts: str) -> list[int]:
    """Cut points right after lines holding one of ``texts`` (where state is likely open)."""
    lines = [x for _, file_lines in inputs.files for x in file_lines]
    return [i + 1 for i, x in enumerate(lines) if any(t in x for t in texts)]


MAIL_STATEFUL_CUTS = cuts_after(
    MAIL, "from=<", "Initial status notification", "process_limit", "auth failed", "Login:"
)


def write_files(root: Path, files: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, lines in files:
        path = root / name
        path.write_text("".join(x + "\n" for x in lines))
        os.utime(path, (MTIME.timestamp(),) * 2)
        paths.append(str(path))
    return paths


def write_pieces(
    root: Path,
    first_files: Sequence[tuple[str, Sequence[str]]],
    rest_files: Sequence[tuple[str, Sequence[str]]],
) -> tuple[list[str], list[str]]:
    """The pieces of a cut input written as the members of one rotation set, oldest first
    (``x.2``, ``x.1``, ``x``): one pass reads them as one input, as the resumed scans do,
    so a line repeated across the cut is a repeat, not a copy from another input."""
    pieces = [*first_files, *rest_files]
    base = rotation_key(pieces[0][0])[1]
    last = len(pieces) - 1
    names = [base if i == last else f"{base}.{last - i}" for i in range(len(pieces))]
    paths = write_files(root, [(n, lines) for n, (_, lines) in zip(names, pieces, strict=True)])
    return paths[: len(first_files)], paths[len(first_files) :]


# -- the two passes -------------------------------------------------------------------------------


def by_key(findings: Sequence[Finding]) -> dict[str, dict[str, Any]]:
    return {f.key: f.as_dict() for f in findings}


def one_pass(rules: Sequence[Rule], options: ScanOptions, paths: list[str]) -> list[Finding]:
    return Engine(rules, options).scan(paths).findings


def resumed(
    rules: Sequence[Rule],
    options: ScanOptions,
    first: list[str],
    rest: list[str],
    state: Path,
) -> list[Finding]:
    collected = FindingSet()
    engine = Engine(rules, options)
    detector = engine.new_detector()
    collected.add(engine.scan(first, detector=detector).findings)
    with StateDB(state) as db:
        db.save_detector("scan", detector.snapshot())
    del engine, detector
    engine = Engine(rules, options)  # a new process: nothing shared but the state file
    detector = engine.new_detector()
    with StateDB(state) as db:
        saved = db.load_detector("scan")
    assert saved is not None
    detector.restore(saved)
    collected.add(engine.scan(rest, detector=detector).findings)
    collected.add(detector.finish())
    return collected.findings()


def check_cut(
    inputs: InputSet, k: int, rules: Sequence[Rule], options: ScanOptions, root: Path
) -> dict[str, dict[str, Any]]:
    first_files, rest_files = inputs.cut(k)
    first, rest = write_pieces(root, first_files, rest_files)
    want = by_key(one_pass(rules, options, first + rest))
    got = by_key(resumed(rules, options, first, rest, root / "state.sqlite"))
    assert got.keys() == want.keys(), (
        f"cut after line {k}: missing {sorted(want[x]['rule'] for x in want.keys() - got.keys())}"
        f", extra {sorted(got[x]['rule'] for x in got.keys() - want.keys())}"
    )
    for key, f in want.items():
        assert got[key] == f, f"cut after line {k}: {f['rule']} at {f['source']} differs"
    return got


def essentials(findings: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {k: (f["rule"], f["count"], f["last_seen"], f["fields"]) for k, f in findings.items()}


OPTIONS = {
    "no-lateness": ScanOptions(tz=UTC),
    "lateness-90s": ScanOptions(tz=UTC, lateness=timedelta(seconds=90)),
}


@pytest.fixture(scope="module")
def uncut_mail(
    rule_sets: dict[str, list[Rule]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Any, ...]]:
    paths = write_files(tmp_path_factory.mktemp("uncut"), MAIL.files)
    return essentials(by_key(one_pass(rule_sets["builtin"], OPTIONS["no-lateness"], paths)))


# -- properties --------------------------------------------------------------------------------


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("rule_set", ["builtin", "extended"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    k=st.one_of(st.integers(min_value=0, max_value=MAIL.size), st.sampled_from(MAIL_STATEFUL_CUTS))
)
def test_mail_set_cut_anywhere_resumes_to_the_same_findings(
    k: int,
    rule_set: str,
    option: str,
    rule_sets: dict[str, list[Rule]],
    uncut_mail: dict[str, tuple[Any, ...]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    got = check_cut(MAIL, k, rule_sets[rule_set], OPTIONS[option], tmp_path_factory.mktemp("cut"))
    if rule_set == "builtin" and option == "no-lateness":
        assert essentials(got) == uncut_mail


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("inputs", [THRESHOLD_EDGE, NEW_YEAR], ids=["threshold-edge", "new-year"])
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_scenario_cut_anywhere_resumes_to_the_same_findings(
    data: st.DataObject,
    inputs: InputSet,
    option: str,
    rule_sets: dict[str, list[Rule]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    k = data.draw(st.integers(min_value=0, max_value=inputs.size), label="k")
    check_cut(inputs, k, rule_sets["builtin"], OPTIONS[option], tmp_path_factory.mktemp("cut"))


@pytest.mark.parametrize(
    ("inputs", "rule"),
    [(NEW_YEAR, "systemd.remount-fs-cascade"), (REPEATS, "sendmail.dsn-return-receipt")],
    ids=["new-year", "repeated-lines"],
)
def test_small_scenario_every_cut_point(
    inputs: InputSet, rule: str, rule_sets: dict[str, list[Rule]], tmp_path: Path
) -> None:
    rules = rule_sets["builtin"]
    options = OPTIONS["no-lateness"]
    uncut = essentials(by_key(one_pass(rules, options, write_files(tmp_path / "u", inputs.files))))
    assert rule in {f[0] for f in uncut.values()}
    for k in range(inputs.size + 1):
        got = check_cut(inputs, k, rules, options, tmp_path / f"k{k}")
        assert essentials(got) == uncut, f"cut after line {k}"


def test_mail_set_cuts_that_leave_state_open(
    rule_sets: dict[str, list[Rule]], uncut_mail: dict[str, tuple[Any, ...]], tmp_path: Path
) -> None:
    """The interesting cuts, named: between the dovecot timeouts and the first process limit
    (an open silent-stop), and between mail.log.1's last line (a from= line) and mail.log's
    DSN receipt (an enrichment join across the rotation)."""
    rules = rule_sets["builtin"]
    sizes = [len(lines) for _, lines in MAIL.files]
    log1 = dict(MAIL.files)["mail.log.1"]
    timeouts = max(i for i, x in enumerate(log1) if "Initial status notification" in x) + 1

    def silent_stop_open(snap: dict[str, Any]) -> bool:
        return bool(snap["states"]["dovecot.silent-stop"])

    def sender_remembered(snap: dict[str, Any]) -> bool:
        rows = snap["enrich"]["sendmail.dsn-return-receipt#0"]
        return ["6AT68eQa002440"] in [row[0] for row in rows]

    for k, is_open in (
        (sizes[0] + timeouts, silent_stop_open),
        (sizes[0] + sizes[1], sender_remembered),
    ):
        first, _ = MAIL.cut(k)
        engine = Engine(rules, OPTIONS["no-lateness"])
        det = engine.new_detector()
        engine.scan(write_files(tmp_path / f"probe{k}", first), detector=det)
        assert is_open(det.snapshot()), f"cut after line {k}"
        got = check_cut(MAIL, k, rules, OPTIONS["no-lateness"], tmp_path / f"k{k}")
        assert essentials(got) == uncut_mail
        silent = [f for f in got.values() if f["rule"] == "dovecot.silent-stop"]
        assert [(f["fields"]["service"], f["fields"]["service.2"]) for f in silent] == [
            ("anvil", "pop3-login")
        ]
        senders = {
            f["fields"]["queue_id"]: f["fields"].get("sender")
            for f in got.values()
            if f["rule"] == "sendmail.dsn-return-receipt"
        }
        assert senders["6AT68eQa002440"] == "billing@forged.example.com"


# -- the snapshot itself ------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_snapshot_survives_a_json_round_trip(
    fraction: float, rule_sets: dict[str, list[Rule]], tmp_path: Path
) -> None:
    rules = rule_sets["extended"]
    options = OPTIONS["lateness-90s"]
    k = int(MAIL.size * fraction)
    first_files, rest_files = MAIL.cut(k)
    first = write_files(tmp_path / "first", first_files)
    rest = write_files(tmp_path / "rest", rest_files)
    engine = Engine(rules, options)
    det = engine.new_detector()
    engine.scan(first, detector=det)
    snap = det.snapshot()
    text = json.dumps(snap, allow_nan=False)
    assert json.loads(text) == snap  # plain JSON data: nothing lost or changed by dumping
    assert any(snap["states"].values()) and any(snap["suppress"].values())

    direct, from_json = (
        Detector(rules, lateness=options.lateness),
        Detector(rules, lateness=options.lateness),
    )
    direct.restore(snap)
    from_json.restore(json.loads(text))
    assert from_json.snapshot() == direct.snapshot() == snap
    with StateDB(tmp_path / "state.sqlite") as db:
        db.save_detector("scan", snap)
    with StateDB(tmp_path / "state.sqlite") as db:
        assert db.load_detector("scan") == snap
        assert db.load_detector("other") is None

    def finish(d: Detector) -> dict[str, dict[str, Any]]:
        collected = FindingSet()
        collected.add(Engine(rules, options).scan(rest, detector=d).findings)
        collected.add(d.finish())
        return by_key(collected.findings())

    assert finish(from_json) == finish(direct)


def test_restore_refuses_an_unknown_version(rule_sets: dict[str, list[Rule]]) -> None:
    det = Detector(rule_sets["builtin"])
    snap = det.snapshot()
    with pytest.raises(ValueError, match="unknown detector state version"):
        det.restore({**snap, "version": 2})


def test_restore_drops_state_of_rules_no_longer_loaded(
    rule_sets: dict[str, list[Rule]], tmp_path: Path
) -> None:
    first, _ = MAIL.cut(len(MAIL.files[0][1]) + len(MAIL.files[1][1]))
    engine = Engine(rule_sets["extended"], OPTIONS["lateness-90s"])
    det = engine.new_detector()
    engine.scan(write_files(tmp_path, first), detector=det)
    snap = json.loads(json.dumps(det.snapshot()))
    smaller = Detector(rule_sets["builtin"], lateness=timedelta(seconds=90))
    smaller.restore(snap)
    again = smaller.snapshot()
    assert set(again["states"]) == set(smaller.states)
    assert "test.accepted-then-delivered" not in again["states"]
    assert again["enrich"] == snap["enrich"]


def test_resume_across_a_dst_change_gives_the_same_findings(
    rule_sets: dict[str, list[Rule]], tmp_path: Path
) -> None:
    from zoneinfo import ZoneInfo

    rules = rule_sets["builtin"]
    lines = (
        "Oct 25 01:30:00 mx1 dovecot: master: Error: service(anvil): Initial status "
        "notification not received in 30 seconds, killing the process",
        # 24 h on the wall clock, 25 h elapsed: the day has 25 hours
        "Oct 26 01:30:00 mx1 dovecot: master: Warning: service(pop3-login): process_limit "
        "(100) reached, client connections are being dropped",
    )
    inputs = InputSet((("mail.log", lines),))
    options = ScanOptions(tz=ZoneInfo("Europe/Berlin"))
    got = check_cut(inputs, 1, rules, options, tmp_path)
    assert "dovecot.silent-stop" not in {f["rule"] for f in got.values()}  # 25 h > 24 h
