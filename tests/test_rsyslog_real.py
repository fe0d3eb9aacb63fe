"""End to end through a real rsyslogd: ``logger`` → rsyslog → log files → ``logwarden``.

``logger`` sends each signature line of the built-in rules that reaches syslog, plus near
misses and spoofs, to one rsyslog stream (see ``tests/rsyslog_helper.py``), which writes them
in the traditional BSD format and in the RFC 3339 format. Then ``logwarden scan`` must find
exactly the expected rules on exactly the expected lines of both files (the line rules, and
the correlation findings on the line that completes them), and ``logwarden parse`` must read
every line back as sent. Correlation over time (sequences, suppression, enrichment, absence)
has its own scenarios in ``tests/test_rsyslog_correlation.py``.
"""

from __future__ import annotations

import json
import socket
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import logwarden
from tests.rsyslog_helper import FILES, Line, running_rsyslog, send, wait_written

pytestmark = pytest.mark.real


@dataclass(frozen=True)
class Case(Line):
    """One ``logger`` call and what logwarden must say about the line it produces."""

    rule: str | None = None  # None: the line must yield no line-rule finding
    fields: dict[str, str] = field(default_factory=dict)
    #: correlation findings this line completes: rule -> fields it must carry
    also: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    why: str = ""

    def __str__(self) -> str:
        return super().__str__() + (f"  ({self.why})" if self.why else "")


DOVECOT_PL = (
    "master: Warning: service(pop3-login): process_limit (2) reached, "
    "client connections are being dropped"
)
DOVECOT_SN = (
    "master: Error: service(anvil): Initial status notification not received in 30 seconds, "
    "killing the process"
)
REMOUNT = "Failed to start Remount Root and Kernel File Systems."
RECEIPT = "6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt"
MAX_WORKERS = (
    "AH00484: server reached MaxRequestWorkers setting, consider raising the "
    "MaxRequestWorkers setting"
)
REDIRECTS = (
    "AH00124: Request exceeded the limit of 10 internal redirects due to probable "
    "configuration error."
)

CASES: tuple[Case, ...] = (
    # -- dovecot: the master process logs as `dovecot` without a pid (log_path = syslog)
    Case(
        "dovecot",
        DOVECOT_SN,
        rule="dovecot.status-notification-timeout",
        fields={"service": "anvil", "seconds": "30"},
    ),
    Case(
        "dovecot",
        "master: Error: service(ssl-params): Initial status notification not received in "
        "30 seconds, killing the process",
        pid=812,
        rule="dovecot.status-notification-timeout",
        fields={"service": "ssl-params"},
    ),
    # one service per wording: the rule folds warnings per host and service for an hour
    Case(
        "dovecot",
        DOVECOT_PL,
        rule="dovecot.process-limit-reached",
        fields={"service": "pop3-login", "setting": "process_limit", "limit": "2"},
        # the timeouts above, then this limit on the same host: the silent-stop story
        also={
            "dovecot.silent-stop": {
                "service": "anvil",
                "seconds": "30",
                "service.2": "pop3-login",
                "limit": "2",
            }
        },
    ),
    Case(
        "dovecot",
        "master: Warning: service(submission-login): client_limit/service_count (1) reached, "
        "client connections are being dropped",
        pid=812,
        rule="dovecot.process-limit-reached",
        fields={
            "service": "submission-login",
            "setting": "client_limit/service_count",
            "limit": "1",
        },
        why="the wording when the limit is 1",
    ),
    Case(
        "dovecot",
        "master: Warning: service(imap-login): process_limit reached, "
        "client connections are being dropped",
        rule="dovecot.process-limit-reached",
        fields={"service": "imap-login", "setting": "process_limit"},
        why="older dovecot, no number; the sequence above is complete, so no second story",
    ),
    Case(
        "dovecot",
        "master: Warning: service(imap-login): client_limit (1000) reached, "
        "client connections are being dropped",
        why="a different, benign limit",
    ),
    Case(
        "dovecot",
        "master: Error: service(log): child 1210 killed with signal 9",
        why="the companion line, not the timeout",
    ),
    Case("dovecot", "master: Warning: Killed with signal 15 (by pid=1 uid=0 code=kill)"),
    Case("myscript", DOVECOT_SN, why="another program quoting the text"),
    Case("myscript", f"dovecot: {DOVECOT_PL}", why="quoting a whole dovecot line"),
    Case(
        "myscript",
        f"hello\nNov 30 08:23:33 vm dovecot: {DOVECOT_PL}",
        why="a newline injection, escaped by rsyslog as #012",
    ),
    Case("evil dovecot", DOVECOT_PL, why="a tag with a space ending in the program name"),
    Case(
        "dovecot",
        f"lmtp(alice)<2201><kP3sJ2qQZ2nBCAAA>: Error: msgid=<{DOVECOT_PL}>",
        why="the text embedded later in a dovecot line",
    ),
    # -- sendmail: `sm-mta[pid]` with -Lsm-mta, `sendmail[pid]` without
    Case(
        "sm-mta",
        RECEIPT,
        pid=17783,
        rule="sendmail.dsn-return-receipt",
        fields={"queue_id": "6AU8MP47017782", "dsn_queue_id": "6AU8MP47017783"},
    ),
    Case(
        "sendmail",
        "6ASE2o1q030410: 6ASE2p1q030411: DSN: Return receipt",
        pid=30411,
        rule="sendmail.dsn-return-receipt",
        fields={"queue_id": "6ASE2o1q030410", "dsn_queue_id": "6ASE2p1q030411"},
    ),
    Case(
        "sm-mta",
        "6AU8U147017900: 6AU8U247017901: DSN: User unknown",
        pid=17901,
        why="a failure DSN, not a receipt",
    ),
    Case("sm-mta", "6AU8U147017900: 6AU8U247017902: DSN: Service unavailable", pid=17901),
    Case(
        "sm-mta",
        "6AU4U147017100: 6AU8U247017903: DSN: Warning: could not send message for past 4 hours",
        pid=17901,
    ),
    Case("myscript", RECEIPT, why="another program quoting the text"),
    Case(
        "sm-mta",
        "6AU8MP47017782: <evil@example.net>: DSN: Return receipt",
        pid=17783,
        why="an injected queue id",
    ),
    # -- systemd (PID 1); without --id it is the pid-less RHEL-style forwarding
    Case("systemd", REMOUNT, pid=1, rule="systemd.remount-fs-failed"),
    Case(
        "systemd",
        "Failed to start systemd-remount-fs.service - Remount Root and Kernel File Systems.",
        pid=1,
        rule="systemd.remount-fs-failed",
        why="systemd >= 249 wording",
    ),
    Case("systemd", REMOUNT, rule="systemd.remount-fs-failed", why="no pid"),
    Case("systemd", REMOUNT, pid=2231, why="a per-user manager is not PID 1"),
    Case("myscript", REMOUNT, why="another program quoting the text"),
    Case(
        "systemd",
        "systemd-remount-fs.service: Main process exited, code=exited, status=1/FAILURE",
        pid=1,
        why="another line of the same failure",
    ),
    Case(
        "systemd",
        "Failed to start systemd-random-seed.service - Load/Save Random Seed.",
        pid=1,
        why="another unit: counted by its `Failed with result` line only",
    ),
    Case(
        "systemd",
        "cronjob-test.service stop-sigterm timed out. Killing.",
        pid=1,
        rule="systemd.stop-timeout-killed",
        fields={"unit": "cronjob-test.service"},
    ),
    Case(
        "systemd",
        "cronjob-test@backup.service: State 'stop-sigterm' timed out. Killing.",
        pid=1,
        rule="systemd.stop-timeout-killed",
        fields={"unit": "cronjob-test@backup.service"},
    ),
    Case(
        "systemd",
        "cronjob-test@backup.service: State 'stop-sigterm' timed out. Skipping SIGKILL.",
        pid=1,
        why="not killed",
    ),
    Case(
        "systemd",
        "pipewire.service: State 'stop-sigterm' timed out. Killing.",
        pid=1877,
        why="a per-user manager",
    ),
    Case(
        "systemd",
        "Unit cronjob-test.service entered failed state.",
        pid=1,
        rule="systemd.unit-failed",
        fields={"unit": "cronjob-test.service"},
    ),
    Case(
        "systemd",
        "systemd-remount-fs.service: Failed with result 'exit-code'.",
        pid=1,
        rule="systemd.unit-failed",
        fields={"unit": "systemd-remount-fs.service", "result": "exit-code"},
    ),
    Case(
        "myscript",
        "Unit cronjob-test.service entered failed state.",
        why="another program quoting the text",
    ),
    # -- Apache with `ErrorLog syslog:`: ident apache2/httpd with LOG_PID, no time in the text
    Case(
        "apache2",
        f"[mpm_event:error] [pid 1031:tid 140351872411520] {MAX_WORKERS}",
        pid=1031,
        rule="apache.max-request-workers",
        fields={"code": "AH00484"},
    ),
    Case(
        "httpd",
        "[core:notice] [pid 1031] AH00052: child pid 4411 exit signal Bus error (7)",
        pid=1031,
        rule="apache.child-crashed",
        fields={"child_pid": "4411", "signal": "7", "signal_name": "Bus error"},
    ),
    Case(
        "apache2",
        "[core:error] [pid 1099:tid 140351810005568] [client 198.51.100.23:61842] "
        f"{REDIRECTS} Use 'LimitInternalRecursion' to increase the limit if necessary. "
        "Use 'LogLevel debug' to get a backtrace.",
        pid=1099,
        rule="apache.internal-redirect-limit",
        fields={"limit": "10"},
    ),
    Case(
        "apache2",
        "[mpm_event:error] [pid 1031:tid 140351872411520] AH00485: scoreboard is full, "
        "not at MaxRequestWorkers",
        pid=1031,
        why="a different condition",
    ),
    Case(
        "myscript",
        f"[mpm_event:error] [pid 1031:tid 140351872411520] {MAX_WORKERS}",
        why="another program quoting the text",
    ),
    Case(
        "apache2",
        "[core:info] [pid 1099:tid 140351810005568] [client 198.51.100.23:61850] AH00128: "
        f"File does not exist: /var/www/html/missing, referer: http://x/{REDIRECTS}",
        pid=1099,
        why="the text in a referer a client chose",
    ),
    # -- kernel and file systems
    Case(
        "kernel",
        "EXT4-fs (vda1): Remounting filesystem read-only",
        rule="kernel.fs-remounted-readonly",
        fields={"device": "vda1"},
    ),
    Case(
        "myscript",
        "EXT4-fs (vda1): Remounting filesystem read-only",
        why="another program quoting the text",
    ),
    Case(
        "kernel",
        "nfs: server 10.1.1.1 not responding, still trying",
        rule="nfs.server-not-responding",
        fields={"server": "10.1.1.1", "state": "still trying"},
    ),
    Case("kernel", "nfs: server 10.1.1.1 OK", why="the recovery line"),
    Case(
        "myscript",
        "nfs: server 10.1.1.1 not responding, still trying",
        why="another program quoting the text",
    ),
    Case(
        "postfix/postdrop",
        "warning: mail_queue_enter: create file maildrop/881123.23011: No space left on device",
        pid=23011,
        rule="system.disk-full",
    ),
    Case(
        "backup.sh",
        "OSError: [Errno 28] No space left on device: '/srv/backup/db1.tar'",
        pid=9120,
        rule="system.disk-full",
    ),
    Case(
        "myscript",
        'grep found no "No space left on device" errors in last night\'s backup log',
        why="the words quoted inside a longer message",
    ),
    Case(
        "sshd",
        "Invalid user No space left on device from 203.0.113.50 port 51514",
        pid=23101,
        why="injected by a remote client",
    ),
)


# -- rsyslogd -------------------------------------------------------------------------------


@dataclass
class Delivered:
    files: dict[str, Path]  # file kind -> path; line i + 1 of each file is CASES[i]
    sent_at: datetime


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivered]:
    with running_rsyslog(tmp_path_factory.mktemp("rsyslog"), ["signatures"]) as rsyslog:
        stream = rsyslog.streams["signatures"]
        sent_at = datetime.now(UTC)
        for case in CASES:
            send(stream.socket, case)
        wait_written(rsyslog, {"signatures": CASES})
        yield Delivered(stream.files, sent_at)


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FILES))
def test_scan_finds_each_signature_on_its_line_only(delivered: Delivered, kind: str) -> None:
    path = delivered.files[kind]
    proc = logwarden("scan", str(path), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    by_line: dict[int, list[dict[str, object]]] = defaultdict(list)
    for raw in proc.stdout.splitlines():
        finding = json.loads(raw)
        source, _, line = str(finding["source"]).rpartition(":")
        assert source == str(path), finding
        by_line[int(line)].append(finding)

    text_lines = path.read_text(encoding="utf-8").splitlines()
    assert len(text_lines) == len(CASES)
    problems: list[str] = []
    for n, case in enumerate(CASES, 1):
        got = {str(f["rule"]): f for f in by_line.pop(n, [])}
        want = {**({case.rule: case.fields} if case.rule else {}), **case.also}
        if sorted(got) != sorted(want):
            problems.append(
                f"line {n} {text_lines[n - 1]!r}: want {sorted(want) or 'no finding'}, "
                f"got {sorted(got) or 'no finding'}  [{case.why or case.tag}]"
            )
            continue
        for rule, fields in want.items():
            have = got[rule]["fields"]
            assert isinstance(have, dict)
            wrong = {k: have.get(k) for k, v in fields.items() if have.get(k) != v}
            if wrong:
                problems.append(
                    f"line {n} {text_lines[n - 1]!r}: {rule} fields {wrong}, want {fields}"
                )
        # every signature here is the first of its group: nothing is folded into it
        if case.rule and got[case.rule]["count"] != 1:
            problems.append(
                f"line {n} {text_lines[n - 1]!r}: {case.rule} count "
                f"{got[case.rule]['count']}, want 1"
            )
    for n, extra in sorted(by_line.items()):
        problems.append(f"line {n}: unexpected {sorted(str(f['rule']) for f in extra)}")
    assert not problems, f"{kind} file {path}:\n" + "\n".join(problems)


@pytest.mark.parametrize("kind", list(FILES))
def test_parse_reads_every_line_back_as_sent(delivered: Delivered, kind: str) -> None:
    path = delivered.files[kind]
    proc = logwarden("parse", str(path), "--print-unparsed")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(raw) for raw in proc.stdout.splitlines()]
    unparsed = [r for r in records if r.get("unparsed")]
    assert not unparsed, f"{kind}: lines rsyslog wrote that logwarden cannot parse: {unparsed}"
    events = {int(str(r["source"]).rpartition(":")[2]): r for r in records}
    host = socket.gethostname().split(".")[0]
    _, want_format = FILES[kind]
    # both files are in local time; allow for a slow machine, not for a wrong year or zone
    earliest = delivered.sent_at - timedelta(minutes=2)
    latest = datetime.now(UTC) + timedelta(minutes=2)
    problems: list[str] = []
    for n, case in enumerate(CASES, 1):
        event = events.get(n)
        if event is None:
            problems.append(f"line {n} ({case}): no event")
            continue
        got = {k: event.get(k) for k in ("host", "program", "pid", "message", "format")}
        want = {
            "host": host,
            "program": case.tag,
            "pid": case.pid,
            "message": case.written,
            "format": want_format,
        }
        if " " in case.tag:
            # on the wire `tag="evil dovecot"` is the tag `evil` before the text `dovecot: ...`
            del got["program"], got["message"], want["program"], want["message"]
        if got != want:
            problems.append(f"line {n}: got {got}, want {want}")
        stamp = event.get("timestamp")
        when = datetime.fromisoformat(str(stamp)) if stamp else None
        if when is None or when.tzinfo is None or not earliest <= when <= latest:
            problems.append(f"line {n}: timestamp {stamp} is not between {earliest} and {latest}")
    assert not problems, f"{kind} file {path}:\n" + "\n".join(problems)
