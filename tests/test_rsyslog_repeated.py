"""rsyslog's repeated-message reduction, end to end through a real rsyslogd.

With ``$RepeatedMsgReduction on``, rsyslog writes identical messages of one sender in a row
as the first one plus ``message repeated N times: [ msg]`` (written when a different message
arrives). ``logger`` sends six identical failed root logins, a success, three more failures
from another address and a disconnect; rsyslog writes six lines, in the traditional and the
RFC 3339 format. logwarden must read the hidden events back: line rules see the inner
message (a rule anchored with ``^``), counts add N, a threshold of six failures fires on the
line that brings the sixth, ``parse`` and ``read_events`` give the inner message and N.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

import pipeline
from tests.conftest import logwarden
from tests.rsyslog_helper import FILES, FLUSH_TIMEOUT, HEADERS, Line, running_rsyslog, send

pytestmark = pytest.mark.real

FAILED = "Failed password for root from {ip} port 22 ssh2"
A, B = "203.0.113.7", "198.51.100.9"
SENT = [
    *[Line("sshd", FAILED.format(ip=A), 4242)] * 6,
    Line("sshd", "Accepted password for root from 203.0.113.7 port 22 ssh2", 4242),
    *[Line("sshd", FAILED.format(ip=B), 4242)] * 3,
    Line("sshd", "Connection closed by 198.51.100.9 port 22", 4242),
]
#: what rsyslog writes after the host, line by line
WRITTEN = [
    f"sshd[4242]: {FAILED.format(ip=A)}",
    f"sshd[4242]: message repeated 5 times: [ {FAILED.format(ip=A)}]",
    "sshd[4242]: Accepted password for root from 203.0.113.7 port 22 ssh2",
    f"sshd[4242]: {FAILED.format(ip=B)}",
    f"sshd[4242]: message repeated 2 times: [ {FAILED.format(ip=B)}]",
    "sshd[4242]: Connection closed by 198.51.100.9 port 22",
]
RULES = """\
rules:
  - id: ssh.root-failed
    title: Failed root login
    severity: medium
    description: A failed password for root.
    remediation: Disable password logins for root.
    select: {program: sshd}
    match:
      message: {regex: '^Failed password for (?P<user>\\S+) from (?P<ip>[0-9.]+)'}
    suppress: {period: 1h, group_by: [host, ip]}
    examples:
      match: ['Failed password for root from 192.0.2.1 port 22 ssh2']
      no_match: ['Accepted password for root from 192.0.2.1 port 22 ssh2']
  - id: ssh.root-burst
    type: threshold
    title: Six failed root logins
    severity: high
    description: Password guessing on root.
    remediation: Block the address.
    of: ssh.root-failed
    count: 6
    window: 10m
    group_by: [host]
    examples:
      match:
        - lines: ['{l}', '{l}', '{l}', '{l}', '{l}', '{l}']
      no_match:
        - lines: ['{l}']
""".replace("{l}", "Nov 30 08:00:00 vm sshd[1]: Failed password for root from 192.0.2.1 port 22")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two files rsyslog wrote (by kind), each holding exactly the lines of WRITTEN."""
    base = tmp_path_factory.mktemp("rsyslog-repeated")
    with running_rsyslog(base, ["ssh"], reduce_repeats=True) as rs:
        stream = rs.streams["ssh"]
        for line in SENT:
            send(stream.socket, line)
        deadline = time.monotonic() + FLUSH_TIMEOUT
        while True:
            texts = {k: p.read_text("utf-8") if p.exists() else "" for k, p in stream.files.items()}
            if all(t.count("\n") >= len(WRITTEN) for t in texts.values()):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"rsyslog wrote {texts} within {FLUSH_TIMEOUT} s:\n{rs.errors()}")
            time.sleep(0.05)
    for kind, text in texts.items():
        lines = text.splitlines()
        tails = []
        for got in lines:
            m = HEADERS[kind].match(got)
            assert m is not None, got
            tails.append(got[m.end() :])
        assert tails == WRITTEN, f"{kind}:\n{text}"
    return dict(stream.files)


def _rules(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "ssh.yaml").write_text(RULES, encoding="utf-8")
    return d


@pytest.mark.parametrize("kind", sorted(FILES))
def test_scan_counts_the_events_behind_repeated_lines(
    written: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    rules = _rules(tmp_path)
    proc = logwarden(
        "scan", str(written[kind]), "--rules", str(rules), "--no-builtin-rules", "--format",
        "jsonl", "--tz", "UTC",
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    found = [json.loads(x) for x in proc.stdout.splitlines()]
    got = sorted((f["rule"], f["source"].rpartition(":")[2], f["count"]) for f in found)
    assert got == [
        ("ssh.root-burst", "2", 9),  # 1 + 5 cross six at line 2, then 3 more from B
        ("ssh.root-failed", "1", 6),  # A: the line and the 5 behind line 2
        ("ssh.root-failed", "4", 3),  # B: the line and the 2 behind line 5
    ]
    by_rule = {f["rule"]: f for f in found if f["source"].endswith(":1")}
    assert by_rule["ssh.root-failed"]["fields"] == {"user": "root", "ip": A}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_parse_gives_the_inner_message_and_the_repeat(written: dict[str, Path], kind: str) -> None:
    proc = logwarden("parse", str(written[kind]), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [(e["message"], e["repeat"]) for e in events] == [
        (FAILED.format(ip=A), 1),
        (FAILED.format(ip=A), 5),
        ("Accepted password for root from 203.0.113.7 port 22 ssh2", 1),
        (FAILED.format(ip=B), 1),
        (FAILED.format(ip=B), 2),
        ("Connection closed by 198.51.100.9 port 22", 1),
    ]
    assert {e["format"] for e in events} == {FILES[kind][1]}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_read_events_bulk_and_grammar_agree_on_repeated_lines(
    written: dict[str, Path], kind: str
) -> None:
    bulk = pipeline.read_events(str(written[kind]), tz="UTC")
    pd.testing.assert_frame_equal(
        bulk, pipeline.read_events(str(written[kind]), tz="UTC", bulk=False)
    )
    assert list(bulk["repeat"]) == [1, 5, 1, 1, 2, 1]
    assert int(bulk["repeat"].sum()) == len(SENT)
