"""``--min-severity`` on ``watch`` (and the config's ``min_severity:``) and on ``status``.

A real ``logwarden watch`` subprocess follows a log with high and medium findings and
notifies a real HTTP endpoint: only findings at or above the floor reach ``--output`` and the
notifier (whose own floor is lower), while the state database keeps them all; ``status``
lists the last findings at or above its own ``--min-severity`` and draws them, in a real
terminal (tmux) of 80 columns, without splitting a rule id.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, logwarden, require_program
from tests.notify.test_notify import Receiver
from tests.test_watch import Watch

HIGH = "sendmail.dsn-return-receipt"
MEDIUM = "systemd.unit-failed"
LINES = [
    "Nov 30 09:00:00 mx1 sm-mta[1000]: Q000000001A: Q000000001B: DSN: Return receipt",
    "Nov 30 09:00:01 db1 systemd[1]: Unit backup-nightly.service entered failed state.",
    "Nov 30 09:00:02 mx1 sm-mta[1001]: Q000000002A: Q000000002B: DSN: Return receipt",
    "Nov 30 09:00:03 db1 systemd[1]: Unit cleanup-weekly.service entered failed state.",
]


@pytest.fixture
def endpoint() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.1)


def stored(state_dir: Path) -> list[tuple[str, str]]:
    """(rule, severity) of every finding in the state database."""
    path = state_dir / "state.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT rule, severity FROM findings ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:  # being created
        return []
    finally:
        conn.close()


def tmux_screen(root: Path, width: int, height: int, argv: list[str]) -> str:
    """The visible screen of a ``width``×``height`` tmux window once ``argv`` has ended."""
    tmux = require_program("tmux")
    sock = root / f"tmux-{width}x{height}"
    done = f"{shlex.quote(tmux)} -S {shlex.quote(str(sock))} wait-for -S done"
    base = [tmux, "-S", str(sock)]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TZ="UTC", PYTHONPATH=str(REPO), LANG="C.UTF-8")
    cmd = shlex.join(argv)
    subprocess.run(
        [*base, "-f", "/dev/null", "new-session", "-d", "-x", str(width), "-y", str(height),
         "-c", str(REPO), f"{cmd}; {done}; sleep 60"],
        check=True, env=env, timeout=30,
    )  # fmt: skip
    try:
        subprocess.run([*base, "wait-for", "done"], check=True, timeout=60)
        return subprocess.run(
            [*base, "capture-pane", "-p", "-S", "-"], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run([*base, "kill-server"], check=False)


def test_watch_writes_and_notifies_only_findings_at_or_above_the_floor(
    tmp_path: Path, endpoint: Receiver
) -> None:
    log = tmp_path / "syslog"
    log.write_text("".join(x + "\n" for x in LINES), encoding="utf-8")
    state_dir, output = tmp_path / "state", tmp_path / "findings.jsonl"
    config = tmp_path / "config.yaml"
    # the config's floor (critical) is overridden by the command line's (high); the
    # notifier's own floor (info) is lower than both: the higher floor wins
    config.write_text(
        f"paths: [{log}]\nstate_dir: {state_dir}\noutput: {output}\npoll_interval: 0.2\n"
        "min_severity: critical\nnotify_retry: 0.2\n"
        f"notify:\n  - {{name: hook, url: '{endpoint.url('hook')}', min_severity: info}}\n",
        encoding="utf-8",
    )
    stderr = (tmp_path / "watch.stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "watch", "--config", str(config),
         "--from-beginning", "--min-severity", "high"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    try:
        wait_until(lambda: len(stored(state_dir)) == 4, 30, "all four findings stored")
        endpoint.wait_posts(2, timeout=20)
        time.sleep(1.0)  # a third post would have been sent with the two
        assert proc.poll() is None, f"watch exited with {proc.returncode}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr.seek(0)
    log_text = stderr.read()
    assert sorted(stored(state_dir)) == sorted(
        [(HIGH, "high"), (HIGH, "high"), (MEDIUM, "medium"), (MEDIUM, "medium")]
    ), log_text
    written = [json.loads(x) for x in output.read_text(encoding="utf-8").splitlines()]
    assert [(d["rule"], d["severity"]) for d in written] == [(HIGH, "high")] * 2, log_text
    assert len(endpoint.posts) == 2 and all("Return receipt" in p.message for p in endpoint.posts)

    # status: the state database's last findings, all of them or those at or above a floor
    everything = logwarden("status", "--state-dir", str(state_dir), "--format", "json")
    assert everything.returncode == 3, everything.stderr
    assert sorted(f["rule"] for f in json.loads(everything.stdout)["findings"]) == sorted(
        [HIGH, HIGH, MEDIUM, MEDIUM]
    )
    high = logwarden(
        "status", "--state-dir", str(state_dir), "--format", "json", "--min-severity", "high"
    )
    assert [f["rule"] for f in json.loads(high.stdout)["findings"]] == [HIGH, HIGH]
    none = logwarden("status", "--state-dir", str(state_dir), "--min-severity", "critical")
    assert "no findings yet at or above critical" in none.stdout, none.stdout

    shown = logwarden("status", "--state-dir", str(state_dir), "--min-severity", "high")
    assert "last findings at or above high" in shown.stdout
    assert MEDIUM not in shown.stdout.split("last findings")[1], shown.stdout


def test_status_draws_the_last_findings_without_splitting_a_rule_id(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text("".join(x + "\n" for x in LINES), encoding="utf-8")
    w = Watch(tmp_path, "syslog", from_beginning=True)
    w.start()
    w.settle()
    w.stop()
    # on an 80-column terminal, rule ids are whole (two-line rows), never folded
    screen = tmux_screen(
        tmp_path,
        80,
        40,
        [sys.executable, "-m", "pipeline.cli", "status", "--state-dir", str(w.state_dir)],
    )
    lines = screen.splitlines()
    at = lines.index("last findings")
    rows = [x for x in lines[at:] if x.startswith(("high", "medium"))]
    assert len(rows) == 4, screen
    assert sum(HIGH in x for x in rows) == 2 and sum(MEDIUM in x for x in rows) == 2, screen
    assert all(len(x) <= 80 for x in lines), screen


def test_a_config_min_severity_that_is_no_level_fails_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nmin_severity: urgent\n", encoding="utf-8")
    res = logwarden("watch", "--config", str(config), timeout=20)
    assert res.returncode == 2, res.stderr
    assert f"{config}:2" in res.stderr and "urgent" in res.stderr, res.stderr


def test_scan_takes_the_config_min_severity_unless_given_one(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text("".join(x + "\n" for x in LINES), encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("min_severity: high\n", encoding="utf-8")
    args = ["scan", str(log), "--config", str(config), "--format", "jsonl", "-q"]
    floor = logwarden(*args)
    assert floor.returncode == 0, floor.stderr
    assert [json.loads(x)["rule"] for x in floor.stdout.splitlines()] == [HIGH, HIGH]
    given = logwarden(*args, "--min-severity", "medium")
    assert sorted(json.loads(x)["rule"] for x in given.stdout.splitlines()) == sorted(
        [HIGH, HIGH, MEDIUM, MEDIUM]
    )
