"""The CLI over stateful detection: the mail sample in every output format, ``scan --state``
run twice as a cron job would, ``rules list`` types and ``rules test`` with ``# expect-count:``.

The mail sample is copied to ``tmp_path`` with a fixed mtime (2026-11-30 12:00 UTC) and read in
UTC, so the year-less syslog times are the same wherever and whenever the tests run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import SAMPLES

MTIME = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
FORGED_QUEUE = "6AT68eQa002440"  # its from= line is the last line of mail.log.1


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


@pytest.fixture
def mail(tmp_path: Path) -> Path:
    d = tmp_path / "mail"
    d.mkdir()
    for name in ("mail.log.2.gz", "mail.log.1", "mail.log"):
        shutil.copyfile(SAMPLES / "mail" / name, d / name)
        os.utime(d / name, (MTIME, MTIME))
    return d


def scan_jsonl(*args: str) -> list[dict[str, Any]]:
    code, out, err = run("scan", "--tz", "UTC", "--format", "jsonl", "-q", *args)
    assert code == 0, err
    return jsonl(out)


def of(findings: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["rule"] == rule]


# -- scan of the mail sample in every format ----------------------------------------------------


def test_scan_mail_jsonl_shows_the_correlated_findings(mail: Path) -> None:
    found = scan_jsonl(str(mail))
    assert len({f["key"] for f in found}) == len(found)
    (silent,) = of(found, "dovecot.silent-stop")
    assert silent["severity"] == "critical"
    assert silent["source"] == f"{mail / 'mail.log.1'}:254"
    assert silent["fields"]["service"] == "anvil"
    assert silent["fields"]["service.2"] == "pop3-login"
    receipts = {f["fields"]["queue_id"]: f for f in of(found, "sendmail.dsn-return-receipt")}
    assert {q: f["fields"].get("sender") for q, f in receipts.items()} == {
        "6ARME8ri032391": "m.keller@example.net",
        "6ARMJp2x032419": "orders@shop.example.org",
        "6ARN2XCq032536": "press@news.example.net",
        FORGED_QUEUE: "billing@forged.example.com",  # joined across the rotation
        "6ATJlQZg003534": "hr@example.org",
    }
    assert receipts[FORGED_QUEUE]["source"] == f"{mail / 'mail.log'}:5"
    limits = of(found, "dovecot.process-limit-reached")
    folded = [f for f in limits if f["count"] > 1]
    assert folded, limits
    for f in folded:
        assert f["last_seen"] > f["timestamp"]
        assert f["fields"]["service"] == "pop3-login"
    # one finding per host, service and hour: fewer findings than warning lines
    warning = "dovecot: master: Warning: service(pop3-login): process_limit (100) reached"
    warnings = sum((mail / n).read_text().count(warning) for n in ("mail.log.1", "mail.log"))
    assert sum(f["count"] for f in limits) == warnings > len(limits)
    # helpers report nothing
    assert of(found, "sendmail.message-from") == []
    assert of(found, "mail.delivery-or-login") == []


def scan_csv(mail: Path) -> list[dict[str, str]]:
    code, out, err = run("scan", "--tz", "UTC", "--format", "csv", "-q", str(mail))
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def test_scan_mail_csv_shows_the_correlated_findings(mail: Path) -> None:
    rows = scan_csv(mail)
    rules = [r["rule"] for r in rows]
    assert rules.count("dovecot.silent-stop") == 1
    (silent,) = (r for r in rows if r["rule"] == "dovecot.silent-stop")
    assert json.loads(silent["fields"])["service.2"] == "pop3-login"
    senders = {
        json.loads(r["fields"])["queue_id"]: json.loads(r["fields"]).get("sender")
        for r in rows
        if r["rule"] == "sendmail.dsn-return-receipt"
    }
    assert senders[FORGED_QUEUE] == "billing@forged.example.com"
    assert "dovecot.process-limit-reached" in rules
    # the same findings as jsonl, in the same order
    assert [(r["rule"], r["source"]) for r in rows] == [
        (f["rule"], f["source"]) for f in scan_jsonl(str(mail))
    ]


def test_scan_mail_csv_shows_the_count_of_folded_findings(mail: Path) -> None:
    rows = scan_csv(mail)
    limits = [r for r in rows if r["rule"] == "dovecot.process-limit-reached"]
    assert any(int(r.get("count") or 1) > 1 for r in limits)


def scan_table(mail: Path) -> str:
    code, out, err = run("scan", "--tz", "UTC", "-q", "--format", "table", str(mail))
    assert code == 0, err
    return out


def test_scan_mail_table_shows_the_correlated_findings(mail: Path) -> None:
    out = scan_table(mail)
    assert "dovecot.silent-stop" in out
    assert "critical" in out
    assert "sendmail.dsn-return-receipt" in out
    assert "dovecot.process-limit-reached" in out
    assert "sendmail.message-from" not in out


def test_scan_mail_table_shows_sender_and_count(mail: Path) -> None:
    out = scan_table(mail)
    assert "billing@forged.example.com" in out
    (header,) = (x for x in out.splitlines() if "severity" in x and "rule" in x)
    assert "count" in header


# -- scan --state: two invocations as a cron job would make them ----------------------------------


def essentials(findings: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {f["key"]: (f["rule"], f["count"], f["last_seen"], f["fields"]) for f in findings}


def test_scan_state_joins_and_continues_across_the_rotation(mail: Path, tmp_path: Path) -> None:
    state = tmp_path / "state" / "scan.sqlite"  # its directory is created
    first = scan_jsonl("--state", str(state), str(mail / "mail.log.1"))
    assert state.exists()
    second = scan_jsonl("--state", str(state), str(mail / "mail.log"))

    (receipt,) = (
        f
        for f in of(second, "sendmail.dsn-return-receipt")
        if f["fields"]["queue_id"] == FORGED_QUEUE
    )
    assert receipt["fields"]["sender"] == "billing@forged.example.com"
    assert receipt["fields"]["relay"] == "[45.155.205.11]"
    # without the state, the second file alone cannot name the sender
    (alone,) = (
        f
        for f in of(scan_jsonl(str(mail / "mail.log")), "sendmail.dsn-return-receipt")
        if f["fields"]["queue_id"] == FORGED_QUEUE
    )
    assert "sender" not in alone["fields"]

    assert len(of(first, "dovecot.silent-stop")) == 1
    assert of(second, "dovecot.silent-stop") == []
    # the two runs together (a later version of a key replaces the earlier) are one pass
    merged = essentials(first)
    merged.update(essentials(second))
    assert merged == essentials(scan_jsonl(str(mail / "mail.log.1"), str(mail / "mail.log")))


def test_scan_state_completes_a_sequence_begun_in_the_previous_run(
    mail: Path, tmp_path: Path
) -> None:
    lines = (mail / "mail.log.1").read_text().splitlines(keepends=True)
    cut = max(i for i, x in enumerate(lines) if "Initial status notification" in x) + 1
    head, tail = tmp_path / "head" / "mail.log", tmp_path / "tail" / "mail.log"
    for path, part in ((head, lines[:cut]), (tail, lines[cut:])):
        path.parent.mkdir()
        path.write_text("".join(part))
        os.utime(path, (MTIME, MTIME))
    state = tmp_path / "scan.sqlite"

    first = scan_jsonl("--state", str(state), str(head))
    assert len(of(first, "dovecot.status-notification-timeout")) == 3
    assert of(first, "dovecot.silent-stop") == []
    second = scan_jsonl("--state", str(state), str(tail))
    (silent,) = of(second, "dovecot.silent-stop")
    assert silent["fields"]["service"] == "anvil"
    assert silent["fields"]["service.2"] == "pop3-login"
    assert "started 2026-11-28T14:03:27+00:00" in silent["message"]
    assert silent["related"][0]["source"] == f"{head}:154"
    # the tail alone is no story
    assert of(scan_jsonl(str(tail)), "dovecot.silent-stop") == []
    # a third run over nothing new adds nothing
    empty = tmp_path / "empty" / "mail.log"
    empty.parent.mkdir()
    empty.write_text("")
    assert scan_jsonl("--state", str(state), str(empty)) == []


def test_scan_state_file_that_is_not_a_database_is_an_error(tmp_path: Path, mail: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    code, _, err = run("scan", "--tz", "UTC", "-q", "--state", str(bad), str(mail / "mail.log"))
    assert code == 2
    assert "logwarden: error:" in err and str(bad) in err


def custom_rule_dir(path: Path, kind: str) -> Path:
    """A line rule and a correlation ``app.x`` over it, of the given type."""
    head = "    title: t\n    severity: high\n    description: d\n    remediation: r\n"
    scenario = "    examples: {match: [{lines: [x]}], no_match: [{lines: [y]}]}\n"
    body = {
        "threshold": "    type: threshold\n    of: app.fail\n    count: 5\n    window: 1h\n",
        "sequence": "    type: sequence\n    steps: [app.fail, app.fail]\n    window: 1h\n",
    }[kind]
    path.mkdir(parents=True, exist_ok=True)
    (path / "r.yaml").write_text(
        "rules:\n  - id: app.fail\n"
        + head
        + "    select: {program: app}\n"
        + "    match: {message: {regex: '^fail (?P<who>[a-z]+)'}}\n"
        + "    examples: {match: [x], no_match: [y]}\n"
        + "  - id: app.x\n"
        + head
        + body
        + "    group_by: [host]\n"
        + scenario
    )
    return path


def test_scan_state_survives_a_rule_changing_its_type(tmp_path: Path) -> None:
    state = tmp_path / "scan.sqlite"
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "one.log").write_text("Nov 30 10:00:00 h1 app: fail a\n")
    (logs / "two.log").write_text("Nov 30 10:01:00 h1 app: fail b\n")
    for p in logs.iterdir():
        os.utime(p, (MTIME, MTIME))

    def scan_with(kind: str, log: str) -> tuple[int, str]:
        rules = custom_rule_dir(tmp_path / kind, kind)
        args = ["scan", "--no-builtin-rules", "--rules", str(rules), "--state", str(state)]
        args += ["--tz", "UTC", "-q", "--format", "jsonl", str(logs / log)]
        result = CliRunner().invoke(main, args)
        return result.exit_code, result.stdout

    assert scan_with("threshold", "one.log")[0] == 0
    code, out = scan_with("sequence", "two.log")
    assert code == 0
    assert [f["rule"] for f in jsonl(out)] == ["app.fail"]


# -- rules list ---------------------------------------------------------------------------------


def test_rules_list_jsonl_shows_the_type() -> None:
    code, out, err = run("rules", "list", "--format", "jsonl")
    assert code == 0, err
    by_id = {r["id"]: r for r in jsonl(out)}
    assert all("type" in r for r in by_id.values())
    assert by_id["dovecot.silent-stop"]["type"] == "sequence"
    assert by_id["systemd.remount-fs-cascade"]["type"] == "sequence"
    assert by_id["apache.child-crash-loop"]["type"] == "threshold"
    assert by_id["mail.delivery-silence"]["type"] == "absence"
    assert by_id["dovecot.process-limit-reached"]["type"] == "line"
    assert by_id["sendmail.message-from"]["type"] == "line"


def test_rules_list_table_shows_the_type() -> None:
    code, out, err = run("rules", "list")
    assert code == 0, err
    assert "type" in out
    assert "sequence" in out and "threshold" in out and "absence" in out


# -- rules test with # expect-count: ----------------------------------------------------------------

RULES = """\
rules:
  - id: demo.fail
    title: A demo job failed
    severity: medium
    description: d
    remediation: r
    select: {program: demo}
    match:
      message: {regex: '^job (?P<job>[a-z0-9]+) failed$'}
    examples:
      match:
        - line: 'Nov 30 10:00:00 h1 demo[1]: job a failed'
          fields: {job: a}
      no_match:
        - 'Nov 30 10:00:00 h1 demo[1]: job a done'
        - 'Nov 30 10:00:00 h1 other[1]: job a failed'
  - id: demo.burst
    type: threshold
    title: Demo jobs keep failing
    severity: high
    description: d
    remediation: r
    of: demo.fail
    count: 3
    window: 10m
    group_by: [host]
    examples:
      match:
        - lines:
            - 'Nov 30 10:00:00 h1 demo[1]: job a failed'
            - 'Nov 30 10:01:00 h1 demo[1]: job b failed'
            - 'Nov 30 10:02:00 h1 demo[1]: job c failed'
          count: 1
      no_match:
        - lines:
            - 'Nov 30 10:00:00 h1 demo[1]: job a failed'
            - 'Nov 30 10:11:00 h1 demo[1]: job b failed'
            - 'Nov 30 10:22:00 h1 demo[1]: job c failed'
"""

SAMPLE = """\
# Two bursts on h1 and one on h2; per-line annotations for the line rule only.
# expect-count: demo.burst {n}
# expect-count: demo.burst 1 host=h2
# expect: demo.fail job=a
Nov 30 10:00:00 h1 demo[1]: job a failed
# expect: demo.fail job=b
Nov 30 10:01:00 h1 demo[1]: job b failed
# expect: demo.fail job=c
Nov 30 10:02:00 h1 demo[1]: job c failed
Nov 30 10:03:00 h1 demo[1]: job d done
# expect: demo.fail job=e
Nov 30 10:04:00 h2 demo[1]: job e failed
# expect: demo.fail job=f
Nov 30 10:05:00 h2 demo[1]: job f failed
# expect: demo.fail job=g
Nov 30 10:06:00 h2 demo[1]: job g failed
# expect: demo.fail job=h
Nov 30 11:00:00 h1 demo[1]: job h failed
# expect: demo.fail job=i
Nov 30 11:01:00 h1 demo[1]: job i failed
# expect: demo.fail job=j
Nov 30 11:02:00 h1 demo[1]: job j failed
"""


def rules_test_dirs(tmp_path: Path, n: int) -> tuple[Path, Path]:
    rules, samples = tmp_path / "rules", tmp_path / "samples" / "demo"
    rules.mkdir()
    samples.mkdir(parents=True)
    (rules / "demo.yaml").write_text(RULES)
    (samples / "demo.log").write_text(SAMPLE.format(n=n))
    return rules, samples / "demo.log"


def test_rules_test_accepts_expect_count_annotations(tmp_path: Path) -> None:
    rules, sample = rules_test_dirs(tmp_path, 3)
    code, out, err = run(
        "rules", "test", "--rules", str(rules), "--samples", str(sample.parent.parent)
    )
    assert code == 0, err
    assert "2 rules" in out and out.rstrip().endswith("ok"), out
    assert err == ""


def test_rules_test_fails_with_file_and_line_when_the_count_is_wrong(tmp_path: Path) -> None:
    rules, sample = rules_test_dirs(tmp_path, 2)
    code, out, err = run(
        "rules", "test", "--rules", str(rules), "--samples", str(sample.parent.parent)
    )
    assert code == 1
    assert "1 failures" in out
    assert f"FAIL {sample}:2: [demo.burst] expected 2 findings, got 3" in err, err


def test_rules_test_fails_when_an_annotated_line_misses_its_finding(tmp_path: Path) -> None:
    rules, sample = rules_test_dirs(tmp_path, 3)
    text = sample.read_text().replace("job j failed", "job j done")
    sample.write_text(text)
    code, _, err = run(
        "rules", "test", "--rules", str(rules), "--samples", str(sample.parent.parent)
    )
    assert code == 1
    line = text.splitlines().index("Nov 30 11:02:00 h1 demo[1]: job j done") + 1
    assert f"FAIL {sample}:{line}: [demo.fail] expected finding is missing" in err, err
    # and the third burst on h1 is gone with it
    assert f"FAIL {sample}:2: [demo.burst] expected 3 findings, got 2" in err, err
