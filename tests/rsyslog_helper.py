"""A real rsyslogd for end-to-end tests: ``logger`` → rsyslog → log files → ``logwarden``.

One rsyslogd listens on one socket per *stream* in a temporary directory (never
``/dev/log``). Each socket is bound to its own ruleset, which writes what arrives there twice:
in the traditional BSD format (``RSYSLOG_TraditionalFileFormat``:
``Nov 30 08:18:02 host prog[pid]: msg``) and in rsyslog's default RFC 3339 high-precision
format (``RSYSLOG_FileFormat``: ``2026-11-30T08:18:02.338779+00:00 host prog[pid]: msg``,
Debian 12's default). A stream is therefore one independent pair of log files, as if from its
own machine: what is sent to one stream cannot complete or break a correlation in another.

``logger`` (util-linux) cannot set the host name it reports, so separate streams are the way
to keep scenarios apart; every line carries this machine's host name.

``reduce_repeats=True`` turns on rsyslog's repeated-message reduction (the legacy
``$RepeatedMsgReduction on``; rsyslog 8.2302 has no RainerScript parameter for it): identical
messages of one sender in a row become ``message repeated N times: [ msg]``, written when a
different message arrives. rsyslog submits that line to the default ruleset, not to the
input's, so then the one stream allowed writes from the default ruleset.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_program

START_TIMEOUT = 10.0
FLUSH_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
#: the two files rsyslog writes per stream, and the format ``logwarden parse`` must report
FILES = {
    "traditional": ("RSYSLOG_TraditionalFileFormat", "syslog"),
    "rfc3339": ("RSYSLOG_FileFormat", "rfc3339"),
}
#: what each template writes before the program: timestamp and host
HEADERS = {
    "traditional": re.compile(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (?P<host>\S+) "),
    "rfc3339": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d (?P<host>\S+) "),
}


@dataclass(frozen=True)
class Line:
    """One ``logger`` call: the tag, the optional ``--id`` and the message."""

    tag: str
    message: str
    pid: int | None = None

    @property
    def program(self) -> str:
        return self.tag if self.pid is None else f"{self.tag}[{self.pid}]"

    @property
    def written(self) -> str:
        """The message as rsyslog writes it: control characters escaped as ``#ooo``."""
        return "".join(f"#{ord(c):03o}" if ord(c) < 0x20 else c for c in self.message)

    @property
    def text(self) -> str:
        """What rsyslog writes after the timestamp and the host."""
        return f"{self.program}: {self.written}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Stream:
    name: str
    socket: Path
    files: dict[str, Path]  # file kind (see FILES) -> path


@dataclass
class Rsyslog:
    proc: subprocess.Popen[bytes]
    streams: dict[str, Stream]
    stderr: Path

    def errors(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")


def _config(base: Path, streams: Mapping[str, Stream], reduce_repeats: bool = False) -> str:
    parts = [
        f'global(workDirectory="{base / "work"}")',
        "# no system socket (/dev/log) and no imklog: only the test's own sockets",
        'module(load="imuxsock" SysSock.Use="off")',
    ]
    if reduce_repeats:
        parts.insert(1, "$RepeatedMsgReduction on")
    for i, stream in enumerate(streams.values()):
        actions = "\n".join(
            f'  action(type="omfile" file="{stream.files[kind]}" template="{template}"\n'
            '         flushOnTXEnd="on" asyncWriting="off")'
            for kind, (template, _) in FILES.items()
        )
        if reduce_repeats:  # the repeat lines go to the default ruleset: write from there
            parts.append(actions)
            ruleset = ""
        else:
            parts.append(f'ruleset(name="stream{i}") {{\n{actions}\n}}')
            ruleset = f' Ruleset="stream{i}"'
        parts.append(
            f'input(type="imuxsock" Socket="{stream.socket}" CreatePath="on"\n'
            f'      RateLimit.Interval="0"{ruleset})'
        )
    return "\n".join(parts) + "\n"


@contextmanager
def running_rsyslog(
    base: Path, names: Sequence[str], *, reduce_repeats: bool = False
) -> Iterator[Rsyslog]:
    """An rsyslogd with one socket and one pair of files per stream name, stopped on exit.

    ``reduce_repeats``: with repeated-message reduction (one stream only, see above).
    Skips (fails under ``CI=true``) when rsyslogd or logger is not installed.
    """
    if reduce_repeats and len(names) != 1:
        raise ValueError("repeated-message reduction writes from the default ruleset: one stream")
    rsyslogd = require_program("rsyslogd", "/usr/sbin/rsyslogd")
    require_program("logger")
    (base / "work").mkdir()
    # a unix socket path must fit in sun_path (108 bytes); tmp dirs can be deep
    sock_dir = base if len(str(base)) < 80 else Path(tempfile.mkdtemp(prefix="lw-rs-"))
    streams = {
        name: Stream(
            name,
            sock_dir / f"{i}.sock",
            {kind: base / f"{name}.{kind}.log" for kind in FILES},
        )
        for i, name in enumerate(names)
    }
    conf = base / "rsyslog.conf"
    conf.write_text(_config(base, streams, reduce_repeats), encoding="utf-8")
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
    handle = Rsyslog(proc, streams, stderr)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(s.socket.exists() for s in streams.values()):
            if proc.poll() is not None:
                pytest.fail(f"rsyslogd exited with {proc.returncode}:\n{handle.errors()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"rsyslogd did not create its sockets within {START_TIMEOUT:.0f} s:\n"
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


def send(sock: Path, line: Line) -> None:
    """Log one line through ``logger`` to the socket of a stream."""
    cmd = [require_program("logger"), "-u", str(sock), "--socket-errors=on", "-t", line.tag]
    if line.pid is not None:
        cmd.append(f"--id={line.pid}")
    cmd += ["--", line.message]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed: {proc.stderr}"


def wait_written(rsyslog: Rsyslog, sent: Mapping[str, Sequence[Line]]) -> dict[str, str]:
    """Wait until every stream's files hold exactly its lines, in the order sent.

    A stream's lines go through one socket in order, so line ``i`` of each file (1-based) is
    ``sent[stream][i - 1]``. Returns the host name rsyslog wrote, per stream.
    """
    deadline = time.monotonic() + FLUSH_TIMEOUT
    while True:
        problems: list[str] = []
        hosts: dict[str, str] = {}
        for name, lines in sent.items():
            for kind, path in rsyslog.streams[name].files.items():
                text = path.read_text(encoding="utf-8") if path.exists() else ""
                written = text[: text.rfind("\n") + 1].splitlines()  # whole lines only
                if len(written) < len(lines):
                    problems.append(f"{path}: {len(written)} of {len(lines)} lines written")
                    continue
                for n, (got, want) in enumerate(zip(written, lines, strict=False), 1):
                    m = HEADERS[kind].match(got)
                    if m is None or got[m.end() :] != want.text:
                        pytest.fail(f"{path}:{n} is {got!r}, want the line for {want}")
                    hosts[name] = m.group("host")
                if len(written) > len(lines):
                    pytest.fail(
                        f"{path} has unexpected lines:\n" + "\n".join(written[len(lines) :])
                    )
        if not problems:
            return hosts
        if rsyslog.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(
                f"rsyslog did not write every line within {FLUSH_TIMEOUT:.0f} s:\n"
                + "\n".join(problems)
                + f"\nrsyslogd output:\n{rsyslog.errors()}"
            )
        time.sleep(0.05)
