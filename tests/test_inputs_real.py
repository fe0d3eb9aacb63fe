"""Inputs as a Debian server has them, made by the real programs.

One real ``rsyslogd`` with Debian's two rules on one socket (``mail.*`` to ``mail.log`` and
``*.*;auth,authpriv.none`` to ``syslog``, traditional format), fed by ``logger``: every mail
line lands in both files, so ``scan`` of both (or of the directory) must count each event
once. Real ``logrotate`` then makes ``mail.log.1``, and ``scan mail.log mail.log.1`` (the
shell's expansion of ``mail.log*``) must read it before ``mail.log``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.daemon import status as read_status
from tests.conftest import logrotate, logwarden, require_program
from tests.test_watch_real import Watch, wait_records

LIMIT = (
    "master: Warning: service(pop3-login): process_limit (100) reached, client connections "
    "are being dropped"
)
#: a threshold (3 disk errors of one unit within an hour) and a sequence (two link-downs,
#: then a failover), over lines of a made-up mail-facility program
RULES = """\
rules:
  - id: test.disk-error
    title: A disk error
    severity: medium
    description: d
    remediation: r
    select: {program: diskwatch}
    match: {message: {regex: '^disk error on (?P<unit>[a-z]+)$'}}
    examples:
      match: ['Nov 30 08:00:00 h diskwatch: disk error on sda']
      no_match: ['Nov 30 08:00:00 h diskwatch: disk fine on sda']
  - id: test.disk-burst
    type: threshold
    title: Disk errors keep coming
    severity: high
    description: d
    remediation: r
    of: test.disk-error
    count: 3
    window: 1h
    group_by: [host, unit]
    examples:
      match:
        - lines:
            - 'Nov 30 08:00:00 h diskwatch: disk error on sda'
            - 'Nov 30 08:00:01 h diskwatch: disk error on sda'
            - 'Nov 30 08:00:02 h diskwatch: disk error on sda'
      no_match:
        - lines: ['Nov 30 08:00:00 h diskwatch: disk error on sda']
  - id: test.link-down
    title: A link went down
    severity: low
    description: d
    remediation: r
    select: {program: linkwatch}
    match: {message: {equals: link down}}
    examples:
      match: ['Nov 30 08:00:00 h linkwatch: link down']
      no_match: ['Nov 30 08:00:00 h linkwatch: link up']
  - id: test.failover
    title: Traffic failed over
    severity: low
    description: d
    remediation: r
    select: {program: linkwatch}
    match: {message: {equals: failover}}
    examples:
      match: ['Nov 30 08:00:00 h linkwatch: failover']
      no_match: ['Nov 30 08:00:00 h linkwatch: link up']
  - id: test.flap-then-failover
    type: sequence
    title: A link flapped twice, then traffic failed over
    severity: high
    description: d
    remediation: r
    steps:
      - {rule: test.link-down, count: 2}
      - test.failover
    window: 1h
    group_by: [host]
    examples:
      match:
        - lines:
            - 'Nov 30 08:00:00 h linkwatch: link down'
            - 'Nov 30 08:00:01 h linkwatch: link down'
            - 'Nov 30 08:00:02 h linkwatch: failover'
      no_match:
        - lines:
            - 'Nov 30 08:00:00 h linkwatch: link down'
            - 'Nov 30 08:00:02 h linkwatch: failover'
"""


@dataclass
class Debian:
    """rsyslogd writing ``mail.log`` and ``syslog`` in ``base`` from one socket."""

    base: Path
    socket: Path
    proc: subprocess.Popen[bytes]
    sent: int = 0

    @property
    def mail_log(self) -> Path:
        return self.base / "mail.log"

    @property
    def syslog(self) -> Path:
        return self.base / "syslog"

    def errors(self) -> str:
        return (self.base / "rsyslogd.stderr").read_text(encoding="utf-8", errors="replace")

    def send(self, tag: str, message: str, facility: str = "mail", pid: int | None = None) -> None:
        cmd = [require_program("logger"), "-u", str(self.socket), "--socket-errors=on"]
        cmd += ["-p", f"{facility}.warning", "-t", tag]
        if pid is not None:
            cmd.append(f"--id={pid}")
        proc = subprocess.run([*cmd, "--", message], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed: {proc.stderr}"
        self.sent += 1

    def wait_for(self, path: Path, text: str, times: int = 1) -> None:
        deadline = time.monotonic() + 10
        while True:
            got = path.read_text(encoding="utf-8").count(text) if path.exists() else 0
            if got >= times:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{path} has {got} of {times} lines with {text!r}:\n{self.errors()}")
            time.sleep(0.05)

    def rotate(self) -> None:
        """Rotate both files as Debian's /etc/logrotate.d/rsyslog does, without compression
        (the first rotation leaves plain ``.1`` files either way, with delaycompress)."""
        logrotate(
            self.base,
            [self.mail_log, self.syslog],
            "rotate 4\nmissingok\nsharedscripts\ncreate\npostrotate\n"
            f"/bin/kill -HUP {self.proc.pid}\nendscript",
        )
        # until rsyslog has handled the HUP it writes to the old files: wait for a marker
        for n in range(100):
            marker = f"after rotation {n}"
            self.send("marker", marker)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                if self.mail_log.exists() and marker in self.mail_log.read_text("utf-8"):
                    return
                time.sleep(0.02)
        pytest.fail(f"rsyslog did not write to the new files:\n{self.errors()}")


@pytest.fixture
def debian(tmp_path: Path) -> Iterator[Debian]:
    rsyslogd = require_program("rsyslogd", "/usr/sbin/rsyslogd")
    require_program("logger")
    base = tmp_path / "log"
    (base / "work").mkdir(parents=True)
    # a unix socket path must fit in sun_path (108 bytes)
    sock_dir = Path(tempfile.mkdtemp(prefix="lw-in-"))
    socket = sock_dir / "log.sock"
    action = 'template="RSYSLOG_TraditionalFileFormat" flushOnTXEnd="on" asyncWriting="off"'
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{base / "work"}")\n'
        'module(load="imuxsock" SysSock.Use="off")\n'
        'ruleset(name="debian") {\n'
        f'  if prifilt("*.*;auth,authpriv.none") then {{\n'
        f'    action(type="omfile" file="{base / "syslog"}" {action})\n  }}\n'
        f'  if prifilt("mail.*") then {{\n'
        f'    action(type="omfile" file="{base / "mail.log"}" {action})\n  }}\n'
        "}\n"
        f'input(type="imuxsock" Socket="{socket}" CreatePath="on" RateLimit.Interval="0"'
        ' Ruleset="debian")\n',
        encoding="utf-8",
    )
    check = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, f"rsyslogd rejected the configuration:\n{check.stderr}"
    with (base / "rsyslogd.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
        )
    server = Debian(base, socket, proc)
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"rsyslogd did not start:\n{server.errors()}")
            time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(sock_dir, ignore_errors=True)


def scan(*args: str) -> tuple[list[dict[str, Any]], str]:
    res = logwarden("scan", "--format", "jsonl", *args)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()], res.stderr


def _by_rule(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["rule"], []).append(r)
    return out


def _canonical(records: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in records)


def test_an_event_rsyslog_writes_to_mail_log_and_syslog_counts_once(
    debian: Debian, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "test.yaml").write_text(RULES, encoding="utf-8")
    for _ in range(9):
        debian.send("dovecot", LIMIT)  # many within one second: real repeats, all counted
    for unit, times in (("sda", 2), ("sdb", 3)):
        for _ in range(times):
            debian.send("diskwatch", f"disk error on {unit}", pid=4100)
    debian.send("linkwatch", "link down", pid=4200)
    debian.send("linkwatch", "failover", pid=4200)
    debian.send("cron", "(root) CMD (true)", facility="cron", pid=4300)  # syslog only
    for path in (debian.mail_log, debian.syslog):
        debian.wait_for(path, "failover")
    debian.wait_for(debian.syslog, "CMD (true)")
    assert debian.mail_log.read_text("utf-8").count(LIMIT) == 9
    assert debian.syslog.read_text("utf-8").count(LIMIT) == 9

    alone, _ = scan("--rules", str(rules), str(debian.mail_log))
    found = _by_rule(alone)
    assert [r["count"] for r in found["dovecot.process-limit-reached"]] == [9]
    assert [(r["fields"]["unit"], r["count"]) for r in found["test.disk-burst"]] == [("sdb", 3)]
    assert "test.flap-then-failover" not in found

    for args in (
        [str(debian.mail_log), str(debian.syslog)],
        [str(debian.syslog), str(debian.mail_log)],
        [str(debian.base)],
    ):
        both, err = scan("--rules", str(rules), *args)
        assert _canonical(both) == _canonical(alone), args
        # 9 + 2 + 3 + 2 matched lines of syslog were already read from mail.log
        assert "16 copies from another file set aside" in err, err


def test_a_rotated_set_given_by_the_shell_is_read_oldest_first(debian: Debian) -> None:
    """``scan mail.log*`` unquoted: the shell passes ``mail.log mail.log.1``; the DSN
    receipt in mail.log still gets the sender of its from= line in mail.log.1."""
    qid, dsn = "6AU8MP47017782", "6AU8MP47017783"
    debian.send(
        "sm-mta",
        f"{qid}: from=<victim@example.org>, size=2240, class=0, nrcpts=1, proto=ESMTP, "
        "daemon=MTA-v4, relay=client.example.net [192.0.2.7]",
        pid=17782,
    )
    debian.wait_for(debian.mail_log, qid)
    debian.rotate()
    debian.send("sm-mta", f"{qid}: {dsn}: DSN: Return receipt", pid=17783)
    debian.wait_for(debian.mail_log, dsn)
    rotated = debian.base / "mail.log.1"
    assert qid in rotated.read_text("utf-8") and dsn not in rotated.read_text("utf-8")

    quoted, _ = scan(str(debian.base / "mail.log*"))
    shell = sorted(str(p) for p in debian.base.glob("mail.log*"))
    assert shell == [str(debian.mail_log), str(rotated)]
    expanded, _ = scan(*shell)
    (receipt,) = _by_rule(expanded)["sendmail.dsn-return-receipt"]
    assert receipt["fields"]["sender"] == "victim@example.org"
    assert receipt["fields"]["dsn_queue_id"] == dsn
    assert _canonical(expanded) == _canonical(quoted)
    # the whole directory: two rotation sets (mail.log*, syslog*) holding the same lines
    everything, err = scan(str(debian.base))
    assert _canonical(everything) == _canonical(quoted)
    assert "copies from another file set aside" in err


@pytest.fixture
def cleanup() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for w in started:
        w.close()


def _watch_copies(state_dir: Path) -> tuple[dict[str, int], int]:
    """Copies set aside per source as ``status`` shows them, and the dropped identities."""
    info = read_status(str(state_dir))
    by_source = {Path(s["source"]).name: int(s["copies"]) for s in info["sources"]}
    return by_source, int(info["daemon"]["copies_forgotten"])


def test_watch_counts_an_event_rsyslog_writes_to_both_files_once(
    debian: Debian, tmp_path: Path, cleanup: list[Watch]
) -> None:
    """The daemon follows both files, as its default paths do: a threshold sees each
    event once, live and when a restart catches up on lines written while it was stopped."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "test.yaml").write_text(RULES, encoding="utf-8")
    debian.send("cron", "(root) CMD (start)", facility="cron", pid=4300)  # creates syslog
    debian.send("diskwatch", "disk fine on sda", pid=4100)  # creates mail.log
    debian.wait_for(debian.mail_log, "disk fine")
    watch = Watch(tmp_path, [debian.mail_log, debian.syslog], "--rules", str(rules))
    cleanup.append(watch)
    watch.start()
    for unit, times in (("sda", 2), ("sdb", 3)):
        for _ in range(times):
            debian.send("diskwatch", f"disk error on {unit}", pid=4100)
    debian.send("diskwatch", "done", pid=4100)
    debian.wait_for(debian.syslog, "done")

    def bursts() -> list[str]:
        return sorted(
            r["fields"]["unit"] for r in watch.records() if r["rule"] == "test.disk-burst"
        )

    wait_records(watch, lambda recs: sum(r["rule"] == "test.disk-error" for r in recs) >= 5)
    time.sleep(1.0)  # both files are read: nothing more may come
    errors = sorted(r["fields"]["unit"] for r in watch.records() if r["rule"] == "test.disk-error")
    assert errors == ["sda"] * 2 + ["sdb"] * 3, watch.logs()
    assert bursts() == ["sdb"], watch.logs()  # sda's two errors are not four
    assert watch.stop() == 0
    copies, forgotten = _watch_copies(watch.state_dir)
    assert sum(copies.values()) == 5 and forgotten == 0, copies

    # written while stopped: the restart reads both files from their offsets
    for _ in range(2):
        debian.send("diskwatch", "disk error on sdc", pid=4100)
    debian.send("diskwatch", "done again", pid=4100)
    debian.wait_for(debian.syslog, "done again")
    watch.start()
    wait_records(watch, lambda recs: sum(r["rule"] == "test.disk-error" for r in recs) >= 7)
    time.sleep(1.0)
    assert bursts() == ["sdb"], watch.logs()
    assert watch.stop() == 0
    copies, _ = _watch_copies(watch.state_dir)
    assert sum(copies.values()) == 7, copies  # kept across the restart
