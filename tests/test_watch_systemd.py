"""``Type=notify`` readiness, watchdog pings and journald-style logging, as systemd sees them.

systemd's side is played by a real unix datagram socket in ``NOTIFY_SOCKET`` (what systemd
passes to a ``Type=notify`` service) and ``JOURNAL_STREAM`` (set when stderr goes to journald).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO


def test_watch_reports_ready_pings_the_watchdog_and_stops_cleanly(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(15)
    log = tmp_path / "app.log"
    log.write_text("")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(sock_path),
        "WATCHDOG_USEC": "400000",  # a ping at least every 0.2 s
        "JOURNAL_STREAM": "8:12345",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "watch",
            str(log),
            "--state-dir",
            str(tmp_path / "state"),
            "--poll-interval",
            "0.1",
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages = [sock.recv(4096).decode()]
        assert "READY=1" in messages[0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 2:
            messages.append(sock.recv(4096).decode())
        assert sum("WATCHDOG=1" in m for m in messages) >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        while "STOPPING=1" not in messages[-1]:
            messages.append(sock.recv(4096).decode())
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    stderr = proc.stderr.read() if proc.stderr else ""
    lines = [x for x in stderr.splitlines() if x.strip()]
    # journald reads the priority from a <N> prefix on each line
    assert lines and all(x.startswith("<") and x[2] == ">" for x in lines), stderr
    assert any(x.startswith("<6>watching ") for x in lines)
    assert any(x.startswith("<6>stopped after checkpointing") for x in lines)
