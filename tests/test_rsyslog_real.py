"""End to end through a real rsyslogd: ``logger`` → rsyslog → log files → ``logwarden``.

One rsyslogd per module listens on a socket in a temporary directory (never ``/dev/log``)
and writes every message twice: in the traditional BSD format
(``RSYSLOG_TraditionalFileFormat``: ``Nov 30 08:18:02 host prog[pid]: msg``) and in
rsyslog's default RFC 3339 high-precision format (``RSYSLOG_FileFormat``:
``2026-11-30T08:18:02.338779+00:00 host prog[pid]: msg``, Debian 12's default). ``logger``
sends each signature line of the built-in rules that reaches syslog, plus near misses and
spoofs; then ``logwarden scan`` must find exactly the expected rule on exactly the
expected lines of both files, and ``logwarden parse`` must read every line back as sent.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import REPO, require_program

pytestmark = pytest.mark.real

START_TIMEOUT = 10.0
FLUSH_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
#: rules that correlate several lines; they may add findings but are not the subject here
CORRELATION_RULES = frozenset(
    {"dovecot.silent-stop", "systemd.remount-fs-cascade", "mail.delivery-silence"}
)
#: the two files rsyslog writes, and the format ``logwarden parse`` must report for each
FILES = {
    "traditional": ("RSYSLOG_TraditionalFileFormat", "syslog"),
    "rfc3339": ("RSYSLOG_FileFormat", "rfc3339"),
}
#: what each template writes before the program: timestamp and host
HEADERS = {
    "traditional": re.compile(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ "),
    "rfc3339": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d \S+ "),
}


@dataclass(frozen=True)
class Case:
    """One ``logger`` call and what logwarden must say about the line it produces."""

    tag: str
    message: str
    pid: int | None = None
    rule: str | None = None  # None: the line must yield no finding
    fields: dict[str, str] = field(default_factory=dict)
    why: str = ""

    @property
    def program(self) -> str:
        return self.tag if self.pid is None else f"{self.tag}[{self.pid}]"

    @property
    def written(self) -> str:
        """The message as rsyslog writes it: control characters escaped as ``#ooo``."""
        return "".join(f"#{ord(c):03o}" if ord(c) < 0x20 else c for c in self.message)

    def __str__(self) -> str:
        return f"{self.program}: {self.written}" + (f"  ({self.why})" if self.why else "")


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
    Case(
        "dovecot",
        DOVECOT_PL,
        rule="dovecot.process-limit-reached",
        fields={"service": "pop3-login", "limit": "2"},
    ),
    Case(
        "dovecot",
        "master: Warning: service(pop3-login): client_limit/service_count (1) reached, "
        "client connections are being dropped",
        pid=812,
        rule="dovecot.process-limit-reached",
        fields={"service": "pop3-login", "limit": "1"},
        why="the wording when the limit is 1",
    ),
    Case(
        "dovecot",
        "master: Warning: service(imap-login): process_limit reached, "
        "client connections are being dropped",
        rule="dovecot.process-limit-reached",
        fields={"service": "imap-login"},
        why="older dovecot, no number",
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
class Rsyslog:
    proc: subprocess.Popen[bytes]
    socket: Path
    files: dict[str, Path]
    stderr: Path

    def errors(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")


def _config(base: Path, sock: Path, files: dict[str, Path]) -> str:
    actions = "\n".join(
        f'*.* action(type="omfile" file="{files[name]}" template="{template}"\n'
        '           flushOnTXEnd="on" asyncWriting="off")'
        for name, (template, _) in FILES.items()
    )
    return f"""\
global(workDirectory="{base / "work"}")
# no system socket (/dev/log) and no imklog: only the test's own socket
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{sock}" CreatePath="on" RateLimit.Interval="0")
{actions}
"""


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    rsyslogd = require_program("rsyslogd", "/usr/sbin/rsyslogd")
    require_program("logger")
    base = tmp_path_factory.mktemp("rsyslog")
    (base / "work").mkdir()
    # a unix socket path must fit in sun_path (108 bytes); tmp dirs can be deep
    sock_dir = base if len(str(base)) < 90 else Path(tempfile.mkdtemp(prefix="lw-rs-"))
    sock = sock_dir / "log.sock"
    files = {name: base / f"{name}.log" for name in FILES}
    conf = base / "rsyslog.conf"
    conf.write_text(_config(base, sock, files), encoding="utf-8")
    check = subprocess.run(
        [rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        pytest.fail(
            f"rsyslogd rejected the test configuration:\n{conf.read_text()}\n"
            f"{check.stdout}{check.stderr}"
        )
    stderr = base / "rsyslogd.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(conf), "-i", str(base / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
        )
    handle = Rsyslog(proc, sock, files, stderr)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not sock.exists():
            if proc.poll() is not None:
                pytest.fail(f"rsyslogd exited with {proc.returncode}:\n{handle.errors()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"rsyslogd did not create {sock} within {START_TIMEOUT:.0f} s:\n"
                    f"{handle.errors()}"
                )
            time.sleep(0.05)
        if "error" in handle.errors().lower():
            pytest.fail(f"rsyslogd reported errors at start:\n{handle.errors()}")
        yield handle
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if sock_dir != base:
            shutil.rmtree(sock_dir, ignore_errors=True)


def _send(logger: str, sock: Path, case: Case) -> None:
    cmd = [logger, "-u", str(sock), "--socket-errors=on", "-t", case.tag]
    if case.pid is not None:
        cmd.append(f"--id={case.pid}")
    cmd += ["--", case.message]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed: {proc.stderr}"


def _line_of(kind: str, lines: list[str], case: Case) -> int | None:
    """The 1-based line number of ``case`` in a written file: the line after the header."""
    header = HEADERS[kind]
    want = f"{case.program}: {case.written}"
    hits = [
        i
        for i, line in enumerate(lines, 1)
        if (m := header.match(line)) and line[m.end() :] == want
    ]
    assert len(hits) <= 1, f"{case} is not unique in the file: lines {hits}"
    return hits[0] if hits else None


@dataclass
class Delivered:
    files: dict[str, Path]
    #: per file kind: case index -> line number
    lines: dict[str, dict[int, int]]
    sent_at: datetime


@pytest.fixture(scope="module")
def delivered(rsyslog: Rsyslog) -> Delivered:
    programs = [(c.program, c.written) for c in CASES]
    assert len(set(programs)) == len(programs), "two cases would write the same line"
    logger = require_program("logger")
    sent_at = datetime.now(UTC)
    for case in CASES:
        _send(logger, rsyslog.socket, case)
    deadline = time.monotonic() + FLUSH_TIMEOUT
    located: dict[str, dict[int, int]] = {}
    while True:
        located.clear()
        missing: list[tuple[str, Case]] = []
        for name, path in rsyslog.files.items():
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            lines = text.splitlines()
            located[name] = {}
            for i, case in enumerate(CASES):
                n = _line_of(name, lines, case)
                if n is None:
                    missing.append((name, case))
                else:
                    located[name][i] = n
        if not missing:
            return Delivered(rsyslog.files, located, sent_at)
        if rsyslog.proc.poll() is not None or time.monotonic() > deadline:
            listing = "\n".join(f"  {name}: {case}" for name, case in missing[:20])
            pytest.fail(
                f"rsyslog did not write {len(missing)} lines within "
                f"{FLUSH_TIMEOUT:.0f} s:\n{listing}\nrsyslogd output:\n{rsyslog.errors()}"
            )
        time.sleep(0.05)


def _logwarden(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FILES))
def test_scan_finds_each_signature_on_its_line_only(delivered: Delivered, kind: str) -> None:
    path = delivered.files[kind]
    proc = _logwarden("scan", str(path), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    by_line: dict[int, list[dict[str, object]]] = defaultdict(list)
    for raw in proc.stdout.splitlines():
        finding = json.loads(raw)
        if finding["rule"] in CORRELATION_RULES:
            continue
        source, _, line = str(finding["source"]).rpartition(":")
        assert source == str(path), finding
        by_line[int(line)].append(finding)

    text_lines = path.read_text(encoding="utf-8").splitlines()
    problems: list[str] = []
    expected_lines = set()
    for i, case in enumerate(CASES):
        n = delivered.lines[kind][i]
        expected_lines.add(n)
        got = by_line.get(n, [])
        rules = sorted(str(f["rule"]) for f in got)
        want = [case.rule] if case.rule else []
        if rules != want:
            problems.append(
                f"line {n} {text_lines[n - 1]!r}: want {want or 'no finding'}, "
                f"got {rules or 'no finding'}  [{case.why or case.tag}]"
            )
            continue
        if case.rule and case.fields:
            fields = got[0]["fields"]
            assert isinstance(fields, dict)
            wrong = {k: fields.get(k) for k, v in case.fields.items() if fields.get(k) != v}
            if wrong:
                problems.append(
                    f"line {n} {text_lines[n - 1]!r}: {case.rule} fields {wrong}, "
                    f"want {case.fields}"
                )
    for n, got in sorted(by_line.items()):
        if n not in expected_lines:
            problems.append(
                f"line {n} {text_lines[n - 1]!r}: unexpected {sorted(str(f['rule']) for f in got)}"
            )
    assert not problems, f"{kind} file {path}:\n" + "\n".join(problems)


@pytest.mark.parametrize("kind", list(FILES))
def test_parse_reads_every_line_back_as_sent(delivered: Delivered, kind: str) -> None:
    path = delivered.files[kind]
    proc = _logwarden("parse", str(path), "--print-unparsed")
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
    for i, case in enumerate(CASES):
        n = delivered.lines[kind][i]
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
