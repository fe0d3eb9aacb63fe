"""End to end through a real Apache 2.4: apache2 writes its error log, ``logwarden scan`` reads it.

Debian's ``apache2`` runs in the foreground with a config of its own on 127.0.0.1 and the
event MPM (Debian's default, with ``mod_cgid`` for CGI). The test provokes the three
``apache.*`` line rules' signatures: a per-directory RewriteRule loop (AH00124), more slow CGI
requests in parallel than MaxRequestWorkers allows (AH00484) and a child killed with SIGSEGV
(AH00052). The CGI script logs a dated line of its own to stderr, which mod_cgid writes
straight into the error log, so the log is a real Apache log with foreign lines in it, in
which the loose ``timestamped`` format fits more lines than ``apache-error``. Apache's stderr
goes to the same file, so its start-up lines without a date (AH00558 when the host name has no
domain) land there too, as under Debian's init script. ``logwarden scan`` gets no
``--input-format``: sniffing must find the format by itself.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import logwarden, require_program

MODULES = Path("/usr/lib/apache2/modules")
#: one child process with two worker threads: three slow requests at once exhaust it
CONFIG = """\
ServerRoot "{root}"
PidFile "{root}/apache2.pid"
ErrorLog "{root}/error.log"
LogLevel warn
Listen 127.0.0.1:{port}
User {user}
Group {group}
Mutex file:{root}
DefaultRuntimeDir "{root}"
ScriptSock "{root}/cgid.sock"
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule alias_module {modules}/mod_alias.so
LoadModule rewrite_module {modules}/mod_rewrite.so
LoadModule cgid_module {modules}/mod_cgid.so
StartServers 1
ServerLimit 1
ThreadLimit 2
ThreadsPerChild 2
MaxRequestWorkers 2
MinSpareThreads 1
MaxSpareThreads 2
DocumentRoot "{root}/htdocs"
<Directory "{root}/htdocs">
    Require all granted
    RewriteEngine On
    # every pass rewrites again: a loop Apache stops after LimitInternalRecursion (10)
    RewriteRule ^(.*)$ loop/$1
</Directory>
ScriptAlias /cgi-bin/ "{root}/cgi-bin/"
<Directory "{root}/cgi-bin">
    Require all granted
</Directory>
"""
SLOW_CGI = """\
#!/bin/sh
echo "$(date '+%Y-%m-%d %H:%M:%S') slow.cgi started for $REMOTE_ADDR" >&2
sleep 2
printf 'Content-Type: text/plain\\n\\ndone\\n'
"""


@dataclass(frozen=True)
class Apache:
    """A running apache2: its main process, its port and the error log it writes."""

    process: subprocess.Popen[bytes]
    port: int
    error_log: Path

    def get(self, path: str) -> int:
        """The HTTP status of GET ``path``."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=20) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def children(self) -> list[int]:
        """The worker processes: the main process's threaded children (not the cgid daemon)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                threads = len(list((entry / "task").iterdir()))
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid and threads > 1:
                found.append(int(entry.name))
        return found

    def wait_for(self, text: str, timeout: float = 15) -> None:
        """Wait until apache has written ``text`` to its error log."""
        deadline = time.monotonic() + timeout
        while text not in self.error_log.read_text(errors="replace"):
            if self.process.poll() is not None:
                pytest.fail(f"apache2 exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"apache2 wrote no {text!r} in {timeout} s: {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.error_log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[str, str]:
    """An unprivileged user and group for the children: Debian's www-data, else nobody."""
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup"), ("nobody", "nobody")):
        try:
            pwd.getpwnam(user)
            grp.getgrnam(group)
        except KeyError:
            continue
        return user, group
    pytest.fail("neither www-data nor nobody exists to run apache2's children as")


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Callable[[], str]) -> None:
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            pytest.fail(f"apache2 exited with {process.returncode}: {log()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"apache2 does not listen on 127.0.0.1:{port}: {log()}")
            time.sleep(0.1)


@pytest.fixture
def apache() -> Iterator[Apache]:
    binary = require_program("apache2", "/usr/sbin/apache2")
    if not (MODULES / "mod_mpm_event.so").exists():
        pytest.fail(f"apache2 is installed but {MODULES} has no mod_mpm_event.so")
    # the children run unprivileged: the tree must be readable by them, which pytest's
    # tmp_path (below a 0700 directory) is not
    root = Path(tempfile.mkdtemp(prefix="logwarden-apache-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        root.chmod(0o755)
        for sub in ("htdocs", "cgi-bin"):
            (root / sub).mkdir(mode=0o755)
        script = root / "cgi-bin" / "slow"
        script.write_text(SLOW_CGI)
        script.chmod(0o755)
        user, group = _run_as()
        port = _free_port()
        conf = root / "apache2.conf"
        conf.write_text(
            CONFIG.format(root=root, port=port, user=user, group=group, modules=MODULES)
        )
        error_log = root / "error.log"
        with error_log.open("ab") as err:
            process = subprocess.Popen(
                [binary, "-f", str(conf), "-DFOREGROUND"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"},
            )
        running = Apache(process, port, error_log)
        _wait_listening(port, process, running.log)
        yield running
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.real
def test_scan_finds_the_apache_failures_in_a_real_error_log(apache: Apache) -> None:
    # AH00124: each request loops through the per-directory rewrite until Apache gives up
    for n in range(3):
        assert apache.get(f"/page{n}") == 500
    apache.wait_for("AH00124")

    # AH00484: four slow CGI requests at once on two worker threads
    statuses: list[int] = []
    clients = [
        threading.Thread(target=lambda: statuses.append(apache.get("/cgi-bin/slow")))
        for _ in range(4)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=30)
    assert statuses == [200] * 4
    apache.wait_for("AH00484")

    # AH00052: a worker child dies from SIGSEGV, the parent reports it
    children = apache.children()
    assert len(children) == 1, children
    os.kill(children[0], signal.SIGSEGV)
    apache.wait_for("AH00052")

    result = logwarden("scan", "--format", "jsonl", str(apache.error_log))
    assert result.returncode == 0, result.stderr
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    by_rule = {f["rule"]: f for f in findings}
    log = apache.log()
    assert {
        "apache.internal-redirect-limit",
        "apache.max-request-workers",
        "apache.child-crashed",
    } <= set(by_rule), log
    assert [f["rule"] for f in findings].count("apache.internal-redirect-limit") == 3, log
    assert by_rule["apache.internal-redirect-limit"]["fields"]["limit"] == "10"
    assert by_rule["apache.max-request-workers"]["fields"]["code"] == "AH00484"
    assert by_rule["apache.child-crashed"]["fields"] == {
        "child_pid": str(children[0]),
        "signal": "11",
        "signal_name": "Segmentation fault",
    }
    assert "0 candidates unparsed" in result.stderr, result.stderr
