"""The tail daemon as a real process: ``logwarden watch`` through rotations, kills and signals.

``logger`` sends sendmail ``DSN: Return receipt`` lines, each with its own pair of queue ids, to
a real rsyslogd (``tests/rsyslog_helper.py``), which writes them to a traditional and an
RFC 3339 file; real ``logrotate`` rotates both files (``create``, ``copytruncate``,
``compress`` with and without ``delaycompress``), or the test deletes them and sends rsyslogd
a HUP so that it creates them anew. ``logwarden watch`` follows both files and is killed with
SIGKILL and restarted in the middle, also while a rotation happens. Every receipt must be in
``--output`` exactly once per file: none lost, none twice.

The other tests drive the daemon without rsyslog: SIGTERM/SIGINT, SIGHUP reloads with a broken
rule file, a log directory that disappears and comes back, and a file the daemon may not read
(run as ``nobody``).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, REPO, logrotate, require_program
from tests.rsyslog_helper import FILES, Line, Rsyslog, running_rsyslog, send
from tests.unprivileged import python_for

pytestmark = pytest.mark.real

RULE = "sendmail.dsn-return-receipt"
#: how long to wait for everything sent so far after a restart or a rotation (it takes a
#: second or two)
CATCH_UP = 10.0


def wait_until(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what()}")
        time.sleep(0.05)


def read_output(path: Path) -> list[dict[str, Any]]:
    """The records in a ``--output`` file; a record still being written is left for later."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    out = []
    for n, raw in enumerate(text[: text.rfind("\n") + 1].splitlines(), 1):
        try:
            out.append(json.loads(raw))
        except ValueError:
            pytest.fail(f"{path}:{n} is not one JSON object: {raw!r}")
    return out


class Watch:
    """``logwarden watch`` as a subprocess, started again after every kill on the same state."""

    def __init__(
        self,
        base: Path,
        paths: Sequence[Path],
        *extra: str,
        prefix: Sequence[str] = (),
        python: str = sys.executable,
        state_dir: Path | None = None,
        output: Path | None = None,
    ) -> None:
        self.base = base
        self.state_dir = state_dir or base / "state"
        self.output = output or base / "findings.jsonl"
        self.args = [
            *prefix,
            python,
            "-m",
            "pipeline.cli",
            "watch",
            *map(str, paths),
            "--state-dir",
            str(self.state_dir),
            "--output",
            str(self.output),
            "--poll-interval",
            "0.2",
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def stderr_path(self) -> Path:
        return self.base / f"watch-{self.runs}.stderr"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        wait_until(
            lambda: "watching " in self.log() or not self.alive(),
            15,
            lambda: f"watch did not start:\n{self.log()}",
        )
        assert self.alive(), f"watch exited with {self.proc.returncode}:\n{self.log()}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, run: int | None = None) -> str:
        path = self.base / f"watch-{run or self.runs}.stderr"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- run {n}:\n{self.log(n)}" for n in range(1, self.runs + 1))

    def kill9(self) -> None:
        assert self.proc is not None and self.alive(), self.logs()
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None and self.alive(), self.logs()
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"watch did not stop within 15 s of signal {sig}:\n{self.logs()}")

    def close(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def records(self) -> list[dict[str, Any]]:
        return read_output(self.output)


@pytest.fixture
def cleanup() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for w in started:
        w.close()


# -- rsyslog + logrotate ---------------------------------------------------------------------------

MODES = {
    "create": "create\n    postrotate\n        /bin/kill -HUP {pid}\n    endscript",
    "copytruncate": "copytruncate",
    "compress": "compress\n    create\n    postrotate\n        /bin/kill -HUP {pid}\n    endscript",
    "compress+delaycompress": (
        "compress\n    delaycompress\n    create\n"
        "    postrotate\n        /bin/kill -HUP {pid}\n    endscript"
    ),
}


class MailServer:
    """rsyslogd with one stream (a traditional and an RFC 3339 file) and a way to rotate it."""

    def __init__(self, rsyslog: Rsyslog, base: Path, series: str) -> None:
        self.rsyslog = rsyslog
        self.stream = rsyslog.streams["mail"]
        self.files = {kind: self.stream.files[kind] for kind in FILES}
        self.base = base
        self.series = series
        self.sent: list[str] = []

    @property
    def paths(self) -> list[Path]:
        return list(self.files.values())

    def send(self, count: int = 1) -> list[str]:
        """Log ``count`` receipts; returns their queue ids."""
        out = []
        for _ in range(count):
            n = len(self.sent)
            qid = f"{self.series}{n:07d}A"
            send(
                self.stream.socket,
                Line("sm-mta", f"{qid}: {self.series}{n:07d}R: DSN: Return receipt", 3000 + n),
            )
            self.sent.append(qid)
            out.append(qid)
        return out

    def written(self, qid: str) -> bool:
        """Whether rsyslog has written ``qid`` to the file now at each path."""
        for path in self.paths:
            try:
                if qid not in path.read_text(encoding="utf-8"):
                    return False
            except FileNotFoundError:
                return False
        return True

    def rotate(self, mode: str) -> list[str]:
        """Rotate both files as logrotate (or an admin deleting them) does, and wait until
        rsyslog writes to the new files. Returns the receipts logged meanwhile that rsyslog
        still wrote to the old files (it reopens its files when it handles the HUP)."""
        if mode == "delete":
            for path in self.paths:
                path.unlink()
            os.kill(self.rsyslog.proc.pid, signal.SIGHUP)
        else:
            directives = "rotate 9\nmissingok\nsharedscripts\n" + MODES[mode].format(
                pid=self.rsyslog.proc.pid
            )
            logrotate(self.base, self.paths, directives, name=f"logrotate-{mode}")
        # a receipt shows where rsyslog writes: until it has handled the HUP, to the old files
        deadline = time.monotonic() + 10
        markers: list[str] = []
        while True:
            (marker,) = self.send()
            markers.append(marker)
            until = time.monotonic() + 1
            while time.monotonic() < until and not self.written(marker):
                time.sleep(0.02)
            if self.written(marker):
                return markers[:-1]
            if time.monotonic() > deadline:
                pytest.fail(f"rsyslog did not write to the new files:\n{self.rsyslog.errors()}")

    def kind_of(self, source: str) -> str:
        name = os.path.basename(source.rsplit(":", 1)[0])
        for kind, path in self.files.items():
            if name.startswith(path.name):
                return kind
        raise AssertionError(f"a finding from an unexpected file: {source}")

    def found(self, records: Iterable[dict[str, Any]]) -> Counter[tuple[str, str]]:
        """How often each (file kind, queue id) was reported."""
        out: Counter[tuple[str, str]] = Counter()
        for r in records:
            assert r["rule"] == RULE, r
            out[self.kind_of(r["source"]), r["fields"]["queue_id"]] += 1
        return out

    def expect(self, qids: Iterable[str]) -> Counter[tuple[str, str]]:
        return Counter((kind, q) for q in qids for kind in self.files)


def assert_exactly_once(
    server: MailServer, watch: Watch, qids: Iterable[str], lost_ok: Iterable[str] = ()
) -> None:
    records = watch.records()
    raw = watch.output.read_text(encoding="utf-8") if watch.output.exists() else ""
    assert raw.endswith("\n") or not raw, "the output ends inside a record"
    got = server.found(records)
    want = server.expect(qids)
    lost = sorted(set(want) - set(got) - set(server.expect(lost_ok)))
    extra = sorted(set(got) - set(want))
    twice = sorted(k for k, n in got.items() if n > 1)
    keys = Counter(r["key"] for r in records)
    assert not (lost or extra or twice), (
        f"lost {lost}\nunexpected {extra}\ntwice {twice}\n{watch.logs()}"
    )
    assert max(keys.values(), default=1) == 1, keys


def wait_found(
    server: MailServer, watch: Watch, qids: Iterable[str], timeout: float = CATCH_UP
) -> None:
    want = set(server.expect(qids))

    def missing() -> list[tuple[str, str]]:
        return sorted(want - set(server.found(watch.records())))

    wait_until(
        lambda: not missing(),
        timeout,
        lambda: f"missing findings {missing()}\n{watch.logs()}",
    )


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[MailServer]:
    base = tmp_path / "logs"
    base.mkdir()
    with running_rsyslog(base, ["mail"]) as rsyslog:
        yield MailServer(rsyslog, base, "RCPT")


#: every way of rotating: logrotate with each configuration, and deletion + HUP
ROTATIONS = [*MODES, "delete"]


@pytest.mark.parametrize("mode", ROTATIONS)
def test_rotations_and_kill9_while_running(
    mode: str, mail_server: MailServer, tmp_path: Path, cleanup: list[Watch]
) -> None:
    """Rotations while the daemon follows, SIGKILL in the middle of a burst and right after a
    rotation (while the old file may still be drained), restarts: every receipt once."""
    server = mail_server
    watch = Watch(tmp_path, server.paths)
    cleanup.append(watch)
    watch.start()  # before the files exist: they appear, and are read from their start

    # each finding reaches the output on its own, without a later line to push it out
    # (how fast is bench/watch_latency.py's business)
    for _ in range(3):
        (qid,) = server.send()
        wait_found(server, watch, [qid], timeout=CATCH_UP)

    server.rotate(mode)
    server.send(3)
    wait_found(server, watch, server.sent)

    # SIGKILL while a burst is arriving
    server.send(3)
    watch.kill9()
    server.send(2)  # while down
    watch.start()
    wait_found(server, watch, server.sent)

    # SIGKILL right after a rotation, then lines while down
    server.rotate(mode)
    server.send(2)
    watch.kill9()
    server.send(2)
    watch.start()
    wait_found(server, watch, server.sent)

    # one more rotation with the restarted daemon (delaycompress compresses the first now)
    server.rotate(mode)
    server.send(2)
    wait_found(server, watch, server.sent)
    assert watch.stop() == 0, watch.logs()
    assert_exactly_once(server, watch, server.sent)


@pytest.mark.parametrize("mode", ROTATIONS)
def test_rotation_while_the_daemon_is_down(
    mode: str, mail_server: MailServer, tmp_path: Path, cleanup: list[Watch]
) -> None:
    """Killed, then lines logged, the files rotated and more lines logged before the restart:
    the restart finishes the rotated file (``.1``, or ``.1.gz`` once compressed) first.

    After ``delete``, the lines logged between the kill and the deletion were in a file that
    no longer exists anywhere: they are lost for any reader, and the restart must say so."""
    server = mail_server
    watch = Watch(tmp_path, server.paths)
    cleanup.append(watch)
    watch.start()
    server.send(2)
    wait_found(server, watch, server.sent)
    watch.kill9()
    unread = server.send(3)
    unread += server.rotate(mode)
    server.send(2)
    watch.start()
    lost = unread if mode == "delete" else []
    wait_found(server, watch, [q for q in server.sent if q not in lost])
    if mode == "delete":
        assert "rotated-away" in watch.log(), watch.logs()
    else:
        assert "rotated while stopped" in watch.log(), watch.logs()
    server.send(1)
    wait_found(server, watch, [q for q in server.sent if q not in lost])
    assert watch.stop() == 0, watch.logs()
    assert_exactly_once(server, watch, server.sent, lost_ok=lost)


def test_two_delaycompress_rotations_while_the_daemon_is_down(
    mail_server: MailServer, tmp_path: Path, cleanup: list[Watch]
) -> None:
    """Down over two daily rotations (``compress`` + ``delaycompress``): the file read last is
    now ``.2.gz``, a whole unread generation is ``.1``, then the current file."""
    server = mail_server
    watch = Watch(tmp_path, server.paths)
    cleanup.append(watch)
    watch.start()
    server.send(2)
    wait_found(server, watch, server.sent)
    watch.kill9()
    server.send(2)
    server.rotate("compress+delaycompress")
    server.send(2)
    server.rotate("compress+delaycompress")
    server.send(2)
    watch.start()
    wait_found(server, watch, server.sent)
    assert "rotated while stopped" in watch.log(), watch.logs()
    assert watch.stop() == 0, watch.logs()
    assert_exactly_once(server, watch, server.sent)


# -- signals -----------------------------------------------------------------------------------


def receipt(n: int, when: str = "Nov 30 09:00:00") -> str:
    return f"{when} mx1 sm-mta[{1000 + n}]: Q{n:09d}A: Q{n:09d}B: DSN: Return receipt\n"


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def queue_ids(records: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(r["fields"].get("queue_id", r["rule"]) for r in records)


def wait_records(watch: Watch, check: Callable[[list[dict[str, Any]]], bool]) -> None:
    wait_until(
        lambda: check(watch.records()),
        CATCH_UP,
        lambda: f"output: {queue_ids(watch.records())}\n{watch.logs()}",
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_checkpoints_and_exits_0(
    sig: int, tmp_path: Path, cleanup: list[Watch]
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(receipt(0))  # before the first start: not reported
    watch = Watch(tmp_path, [log])
    cleanup.append(watch)
    watch.start()
    time.sleep(0.5)  # let the first turn settle on the end of the file
    append(log, receipt(1) + receipt(2))
    wait_records(watch, lambda r: len(r) == 2)
    append(log, "Nov 30 09:00:01 mx1 cron[5]: (root) CMD (true)\n" * 50)  # no findings
    time.sleep(0.3)
    assert watch.stop(sig) == 0, watch.logs()
    assert "stopped after checkpointing" in watch.log()
    size = log.stat().st_size
    with subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "status", "--state-dir", str(watch.state_dir),
         "--format", "json"], cwd=REPO, stdout=subprocess.PIPE, text=True,
    ) as status:  # fmt: skip
        sources = json.loads(status.communicate(timeout=30)[0])["sources"]
    assert [(s["offset"], s["lag_bytes"]) for s in sources] == [(size, 0)], sources

    watch.start()
    append(log, receipt(3))
    wait_records(watch, lambda r: len(r) >= 3)
    time.sleep(0.5)
    assert watch.stop() == 0
    assert queue_ids(watch.records()) == Counter(f"Q{n:09d}A" for n in (1, 2, 3))


RULE_WIDGET = """\
rules:
  - id: local.widget-jam
    title: A widget jammed
    severity: medium
    description: A site rule for the reload test.
    remediation: Unjam it.
    references: []
    tags: [test]
    select:
      program: widgetd
    match:
      message:
        regex: '^jammed: (?P<widget>\\S+)$'
    examples:
      match:
        - line: 'Nov 30 08:00:00 vm widgetd[1]: jammed: w1'
          fields: {widget: w1}
      no_match:
        - 'Nov 30 08:00:00 vm widgetd[1]: running: w1'
"""

RULE_GADGET = RULE_WIDGET.replace("widget", "gadget")
#: the same rule with a YAML syntax error on its line 4
RULE_GADGET_BROKEN = RULE_GADGET.replace("severity: medium", "severity: [medium")


def test_sighup_keeps_the_old_rules_when_the_new_set_is_broken(
    tmp_path: Path, cleanup: list[Watch]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "widget.yaml").write_text(RULE_WIDGET)
    log = tmp_path / "app.log"
    watch = Watch(tmp_path, [log], "--rules", str(rules))
    cleanup.append(watch)
    watch.start()
    append(log, "Nov 30 09:00:00 vm widgetd[7]: jammed: w1\n")
    wait_records(watch, lambda r: len(r) == 1)

    (rules / "gadget.yaml").write_text(RULE_GADGET_BROKEN)
    watch.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_until(
        lambda: "reload failed" in watch.log(),
        10,
        lambda: f"no reload error logged:\n{watch.log()}",
    )
    assert f"{rules / 'gadget.yaml'}:" in watch.log(), watch.log()
    assert watch.alive()
    append(
        log,
        "Nov 30 09:00:01 vm gadgetd[8]: jammed: g1\n"  # the broken rule is not loaded
        "Nov 30 09:00:02 vm widgetd[7]: jammed: w2\n"  # the old site rule still is
        + receipt(1),  # and so are the built-in rules
    )
    wait_records(watch, lambda r: len(r) >= 3)

    (rules / "gadget.yaml").write_text(RULE_GADGET)
    watch.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_until(lambda: "reloaded" in watch.log(), 10, lambda: f"no reload:\n{watch.log()}")
    append(log, "Nov 30 09:00:03 vm gadgetd[8]: jammed: g2\n")
    wait_records(watch, lambda r: len(r) >= 4)
    time.sleep(0.3)
    assert watch.stop() == 0, watch.logs()
    got = [
        (r["rule"], r["fields"].get("widget") or r["fields"].get("gadget")) for r in watch.records()
    ]
    assert sorted(got, key=str) == sorted(
        [
            ("local.widget-jam", "w1"),
            ("local.widget-jam", "w2"),
            (RULE, None),
            ("local.gadget-jam", "g2"),
        ],
        key=str,
    ), watch.logs()


# -- the file system under the daemon -----------------------------------------------------------------


def test_a_log_directory_that_disappears_and_comes_back(
    tmp_path: Path, cleanup: list[Watch]
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    log = app / "mail.log"
    other = tmp_path / "other" / "mail.log"
    other.parent.mkdir()
    watch = Watch(tmp_path, [log, other])
    cleanup.append(watch)
    watch.start()
    append(log, receipt(0) + receipt(1))
    wait_records(watch, lambda r: len(r) == 2)

    shutil.rmtree(app)
    wait_until(lambda: "removed" in watch.log(), 10, lambda: f"no removal noticed:\n{watch.log()}")
    append(other, receipt(10))  # the other source keeps being followed meanwhile
    wait_records(watch, lambda r: len(r) == 3)
    time.sleep(0.5)

    app.mkdir()
    append(log, receipt(2) + receipt(3))  # a new file: read from its start
    wait_records(watch, lambda r: len(r) >= 5)
    time.sleep(0.3)
    assert watch.alive()
    assert watch.stop() == 0, watch.logs()
    assert queue_ids(watch.records()) == Counter(f"Q{n:09d}A" for n in (0, 1, 10, 2, 3))


def _unprivileged() -> tuple[list[str], str, int, int]:
    """How to run the daemon as a user that file modes apply to: ``setpriv`` to ``nobody``
    when the tests run as root, nothing otherwise. Returns (prefix, python, uid, gid).

    ``setpriv`` comes with util-linux, which ``make test`` installs: when it is missing the
    test skips, or fails under ``CI=true``, as it does when there is no user ``nobody``.
    When ``nobody`` cannot read the interpreter, the virtualenv or the checkout (a Python or
    a virtualenv under ``/root``, a checkout in a private home directory), ``python`` is a
    readable tree of the same files (``tests/unprivileged.py``).
    """
    if os.geteuid() != 0:
        return [], sys.executable, os.getuid(), os.getgid()
    setpriv = require_program("setpriv")
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        if IN_CI:
            pytest.fail("there is no user nobody to run the daemon as")
        pytest.skip("there is no user nobody to run the daemon as")
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        gid = user.pw_gid
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={gid}", "--clear-groups"]
    return prefix, python_for(prefix, sys.executable), user.pw_uid, gid


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users can enter (pytest's own temporary directories are private)."""
    path = Path(tempfile.mkdtemp(prefix="lw-watch-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_file_the_daemon_may_not_read(shared_dir: Path, cleanup: list[Watch]) -> None:
    """Mode 000 while the daemon runs unprivileged: a clear error on stderr (not repeated at
    every poll), the other source followed all along, and the file read from its start once
    its mode allows it."""
    prefix, python, uid, gid = _unprivileged()
    logs = shared_dir / "logs"
    logs.mkdir(mode=0o755)
    good, bad = logs / "good.log", logs / "bad.log"
    good.write_text("")
    bad.write_text("")
    good.chmod(0o644)
    bad.chmod(0o000)
    state = shared_dir / "state"
    state.mkdir(mode=0o750)
    os.chown(state, uid, gid)
    watch = Watch(
        shared_dir,
        [good, bad],
        prefix=prefix,
        python=python,
        state_dir=state,
        output=state / "out.jsonl",
    )
    cleanup.append(watch)
    watch.start()
    append(bad, receipt(20))  # root may write it; the daemon may not read it
    append(good, receipt(0))
    wait_records(watch, lambda r: len(r) == 1)
    time.sleep(2.0)  # ten more polls of the unreadable file
    append(good, receipt(1))
    wait_records(watch, lambda r: len(r) == 2)
    assert watch.alive()
    err = watch.log()
    assert f"{bad}: unreadable: Permission denied" in err, err
    # reported, then capped at five (the daemon logs again only every 1000th time)
    assert 1 <= err.count(f"{bad}: unreadable") <= 5, f"repeated at every poll:\n{err}"
    assert "Traceback" not in err, err

    bad.chmod(0o644)
    wait_records(watch, lambda r: len(r) == 3)
    assert watch.stop() == 0, watch.logs()
    assert queue_ids(watch.records()) == Counter(f"Q{n:09d}A" for n in (0, 1, 20))
    status = subprocess.run(
        [*prefix, python, "-m", "pipeline.cli", "status", "--state-dir", str(state),
         "--format", "json"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert status.returncode == 3, status.stderr  # stopped
    by_source = {s["source"]: s for s in json.loads(status.stdout)["sources"]}
    assert by_source[str(bad)]["errors"] > 0, by_source
    assert by_source[str(good)]["errors"] == 0, by_source
