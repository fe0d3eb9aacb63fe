"""The daemon's health as an operator sees it: ``logwarden status`` and ``/metrics``.

``logwarden watch`` runs as a real process on a temporary state directory, with a notifier
posting to a real HTTP receiver on 127.0.0.1 and ``--metrics`` on a free 127.0.0.1 port.
``status`` must tell running (pid, uptime, checkpoint age, lag, lines/s while lines flow,
per-notifier counts and last error) from stopped (exit 3, also after SIGKILL); ``/metrics``
parsed with ``prometheus_client.parser`` must carry the same numbers. Dropped detection state
(evictions at the table caps, state that no longer fits a changed rule) is shown in both and
in the daemon's log; those cases drive a :class:`Daemon` in this process, where the caps can
be lowered.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import WatchConfig, load_config
from pipeline.daemon import Daemon, daemon_health
from pipeline.daemon import status as read_status
from pipeline.detection import correlate
from tests.conftest import REPO, logwarden
from tests.notify.test_notify import Receiver, free_port

README = (REPO / "README.md").read_text(encoding="utf-8")


def receipt(n: int) -> str:
    """A DSN return receipt: one high-severity finding per line."""
    return f"Nov 30 09:00:00 mx1 sm-mta[{1000 + n}]: Q{n:09d}A: Q{n:09d}B: DSN: Return receipt\n"


def noise(n: int) -> str:
    return f"Nov 30 09:00:01 mx1 cron[{n}]: (root) CMD (run-parts /etc/cron.hourly {n})\n"


def wait_until(ready: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = ready()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout}s")
        time.sleep(0.1)


def status_json(state_dir: Path) -> tuple[int, dict[str, Any]]:
    res = logwarden("status", "--state-dir", str(state_dir), "--format", "json", timeout=30)
    assert res.stdout, res.stderr
    return res.returncode, json.loads(res.stdout)


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` parsed with prometheus_client: sample name -> labels -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        # a family without samples (nothing evicted yet) is still served
        out.setdefault(family.name + ("_total" if family.type == "counter" else ""), {})
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


class Watch:
    """``logwarden watch --config`` on one log file, as a subprocess."""

    def __init__(self, base: Path, notify_url: str, metrics_port: int) -> None:
        self.log = base / "logs" / "mail.log"
        self.log.parent.mkdir(parents=True)
        self.log.touch()
        self.state_dir = base / "state"
        self.config = base / "logwarden.yaml"
        self.config.write_text(
            f"paths: ['{self.log}']\n"
            f"state_dir: '{self.state_dir}'\n"
            f"output: '{base / 'findings.jsonl'}'\n"
            "from_beginning: true\n"
            "poll_interval: 0.1\n"
            "notify_retry: 0.3\n"
            f"metrics: '127.0.0.1:{metrics_port}'\n"
            f"notify:\n  - name: hook\n    url: '{notify_url}'\n",
            encoding="utf-8",
        )
        self.stderr = base / "watch.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "watch", "--config", str(self.config)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr.open("wb"),
        )
        return self.proc

    def append(self, text: str) -> None:
        with self.log.open("a", encoding="utf-8") as f:
            f.write(text)

    def running(self) -> dict[str, Any] | None:
        assert self.proc is not None
        assert self.proc.poll() is None, self.stderr.read_text()
        if not (self.state_dir / "state.sqlite").exists():
            return None
        code, info = status_json(self.state_dir)
        return info if code == 0 else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def endpoint() -> Iterator[Receiver]:
    r = Receiver()  # not listening yet: sends are refused until start()
    yield r
    r.stop()


@pytest.fixture
def watch(tmp_path: Path, endpoint: Receiver) -> Iterator[Watch]:
    w = Watch(tmp_path, endpoint.url("hook"), free_port())
    yield w
    w.kill()


def test_status_and_metrics_of_the_running_daemon_then_stopped(
    watch: Watch, endpoint: Receiver
) -> None:
    port = int(re.search(r"127\.0\.0\.1:(\d+)", watch.config.read_text())[1])  # type: ignore[index]
    proc = watch.start()
    wait_until(watch.running, 30, "status did not report the daemon running")

    # lines flow (and three findings) while the receiver refuses connections
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            watch.append("".join(noise(n + i) for i in range(40)))
            n += 40
            time.sleep(0.05)

    watch.append("".join(receipt(n) for n in range(3)))
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:

        def flowing() -> dict[str, Any] | None:
            info = watch.running()
            if not info or info["daemon"]["lines_per_s"] <= 0 or not info["notifiers"]:
                return None
            hook = info["notifiers"][0]
            return info if hook["failed"] >= 1 and hook["pending"] == 3 else None

        info = wait_until(flowing, 30, "no lines/s and failed notifications in status")
    finally:
        stop.set()
        thread.join()
    d = info["daemon"]
    assert d["state"] == "running" and d["pid"] == proc.pid
    assert d["uptime_s"] > 0 and d["checkpoint_age_s"] is not None
    assert 0 <= d["checkpoint_age_s"] < 10 and d["heartbeat_age_s"] < 10
    assert d["lines_last_minute"] > 0 and d["dropped_state"] == {"evicted": {}, "dropped": {}}
    (source,) = info["sources"]
    assert source["source"] == str(watch.log)
    assert source["lines_per_s"] > 0 and isinstance(source["lag_bytes"], int)
    (hook,) = info["notifiers"]
    assert hook["notifier"] == "hook" and hook["sent"] == 0 and hook["last_error"]

    # the receiver comes up: every notification arrives, with the apprise type of its severity
    endpoint.start()
    endpoint.wait_posts(3, "hook", timeout=30)
    assert {p.type for p in endpoint.posts} == {"failure"}  # DSN receipts are high

    def settled() -> dict[str, Any] | None:
        info = watch.running()
        if not info or info["notifiers"][0]["sent"] != 3:
            return None
        return info if info["sources"][0]["lag_bytes"] == 0 else None

    before = wait_until(settled, 30, "the notifications were not counted as sent")
    (hook,) = before["notifiers"]
    assert (hook["sent"], hook["pending"]) == (3, 0) and hook["failed"] >= 1

    table = logwarden("status", "--state-dir", str(watch.state_dir))
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"running (pid {proc.pid}, up "), table.stdout
    assert "lines/s over the last minute" in table.stdout and "hook" in table.stdout

    # /metrics from the running daemon: the same numbers. Both read the daemon's status
    # record, which it rewrites as it counts the last lines read: compare a scrape with a
    # record that did not change around it
    for _ in range(20):
        _, first = status_json(watch.state_dir)
        metrics = scrape(port)
        _, after = status_json(watch.state_dir)
        if first["sources"][0]["lines"] == after["sources"][0]["lines"]:
            break
        time.sleep(0.5)
    b, a = before["daemon"], after["daemon"]

    def one(name: str, **labels: str) -> float:
        return metrics[name][tuple(sorted(labels.items()))]

    assert one("logwarden_daemon_state", state="running") == 1
    assert one("logwarden_daemon_state", state="stopped") == 0
    assert one("logwarden_daemon_pid") == proc.pid
    assert b["uptime_s"] - 1 <= one("logwarden_daemon_uptime_seconds") <= a["uptime_s"] + 1
    assert one("logwarden_lines_per_second") > 0
    assert min(a["lines_per_s"], b["lines_per_s"]) <= one("logwarden_lines_per_second")
    assert one("logwarden_lines_per_second") <= max(a["lines_per_s"], b["lines_per_s"])
    log = str(watch.log)
    assert one("logwarden_input_lines_total", input=log) == after["sources"][0]["lines"]
    assert one("logwarden_input_lag_bytes", input=log) == 0
    assert one("logwarden_input_errors_total", input=log) == 0
    assert one("logwarden_input_lines_per_second", input=log) > 0
    assert one("logwarden_notifications_sent", notifier="hook") == 3
    assert one("logwarden_notifications_pending", notifier="hook") == 0
    assert one("logwarden_notifications_failed", notifier="hook") == hook["failed"]
    assert "logwarden_checkpoint_age_seconds" in metrics
    assert not metrics.get("logwarden_state_evicted_total")

    # the README's alert rules name metrics the daemon serves
    (rules,) = [b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if "alert:" in b]
    exprs = [r["expr"] for g in yaml.safe_load(rules)["groups"] for r in g["rules"]]
    named = {m for e in exprs for m in re.findall(r"\blogwarden_\w+", e)}
    assert named and named <= set(metrics), named - set(metrics)

    # stopped: exit 3, said so, and nothing serves metrics any more
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, watch.stderr.read_text()
    code, info = status_json(watch.state_dir)
    assert code == 3 and info["daemon"]["state"] == "stopped"
    assert info["daemon"]["reason"] == "stopped cleanly"
    assert info["daemon"]["lines_per_s"] == 0 and info["sources"][0]["lines_per_s"] == 0
    assert info["notifiers"][0]["sent"] == 3
    table = logwarden("status", "--state-dir", str(watch.state_dir))
    assert table.returncode == 3 and table.stdout.startswith(f"stopped (pid {proc.pid}, ")
    with pytest.raises(urllib.error.URLError):
        scrape(port)
    assert f"serving metrics on http://127.0.0.1:{port}/metrics" in watch.stderr.read_text()


def test_status_after_sigkill_says_not_running(watch: Watch) -> None:
    proc = watch.start()
    wait_until(watch.running, 30, "status did not report the daemon running")
    proc.kill()
    proc.wait()
    code, info = status_json(watch.state_dir)
    assert code == 3, info["daemon"]
    assert info["daemon"]["state"] == "stopped" and info["daemon"]["pid"] == proc.pid
    assert info["daemon"]["reason"] == "exited without stopping (killed or crashed)"


def test_a_metrics_address_in_use_stops_watch_with_a_usage_error(
    tmp_path: Path, endpoint: Receiver
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        w = Watch(tmp_path, endpoint.url("hook"), port)
        res = logwarden("watch", "--config", str(w.config), timeout=30)
    assert res.returncode == 2, res.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in res.stderr


def test_a_bad_metrics_address_fails_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("poll_interval: 1\nmetrics: 9108\n", encoding="utf-8")
    res = logwarden("watch", "--config", str(config), timeout=30)
    assert res.returncode == 2 and f"{config}:2" in res.stderr, res.stderr
    config.write_text("metrics: 'localhost:9108'\n", encoding="utf-8")
    assert load_config(config).metrics == "localhost:9108"
    res = logwarden("watch", "--metrics", "::1:9108", str(tmp_path / "a.log"), timeout=30)
    assert res.returncode == 2 and "brackets" in res.stderr, res.stderr


def test_a_live_process_that_stopped_writing_is_stalled() -> None:
    """This test process stands in for a daemon alive but stuck in a turn."""
    now = time.time()
    record = {
        "pid": os.getpid(),
        "proc_start": None,
        "host": socket.gethostname(),
        "started": now - 300,
        "heartbeat": now - 100,
        "stopped": None,
        "last_checkpoint": now - 120,
        "poll_interval": 1.0,
    }
    health = daemon_health(record, now)
    assert health["state"] == "stalled" and health["reason"] == "no status record for 100s"
    assert daemon_health({**record, "heartbeat": now - 2}, now)["state"] == "running"


# -- dropped detection state (in process: the caps can be lowered) -----------------------------

BURST = """\
rules:
  - id: app.fail
    title: t
    severity: low
    description: d
    remediation: r
    select: {program: app}
    match: {message: {regex: '^fail (?P<who>\\S+)'}}
    examples: {match: [x], no_match: [y]}
  - id: app.burst
    title: t
    severity: high
    description: d
    remediation: r
    examples: {match: [{lines: [x]}], no_match: [{lines: [y]}]}
"""
THRESHOLD = (
    "    type: threshold\n    of: app.fail\n    count: 2\n    window: 10m\n    group_by: [who]\n"
)
SEQUENCE = "    type: sequence\n    window: 10m\n    group_by: [who]\n    steps:\n      - rule: app.fail\n      - rule: app.fail\n"  # fmt: skip


def daemon_on(tmp_path: Path, rules: str) -> tuple[Daemon, Path]:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "app.yaml").write_text(rules, encoding="utf-8")
    log = tmp_path / "app.log"
    log.touch()
    config = WatchConfig(
        paths=(str(log),),
        rules=(str(d),),
        builtin_rules=False,
        state_dir=str(tmp_path / "state"),
        from_beginning=True,
        poll_interval=0.05,
    )
    return Daemon(config), log


def test_evictions_at_the_table_caps_show_in_status_metrics_and_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.metrics import families

    monkeypatch.setattr(correlate, "MAX_OPEN", 2)
    daemon, log = daemon_on(tmp_path, BURST + THRESHOLD)
    caplog.set_level(logging.WARNING, logger="logwarden")
    try:
        log.write_text(
            "".join(f"Nov 30 10:00:{i:02d} h app[1]: fail client{i}\n" for i in range(5))
        )
        daemon.step()
        daemon.beat()
    finally:
        daemon.close()
    info = read_status(str(tmp_path / "state"))
    assert info["daemon"]["dropped_state"] == {"evicted": {"app.burst": 3}, "dropped": {}}
    assert "detection state evicted at the table caps since the start: app.burst 3" in caplog.text
    samples = {
        (s.name, tuple(s.labels.items())): s.value for f in families(info) for s in f.samples
    }
    assert samples[("logwarden_state_evicted_total", (("rule", "app.burst"),))] == 3
    table = logwarden("status", "--state-dir", str(tmp_path / "state"))
    assert "detection state evicted at the table caps: app.burst 3" in table.stdout


def test_state_that_no_longer_fits_a_changed_rule_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, log = daemon_on(tmp_path, BURST + THRESHOLD)
    log.write_text("Nov 30 10:00:00 h app[1]: fail client1\n")
    daemon.step()
    daemon.close()
    caplog.set_level(logging.WARNING, logger="logwarden")
    # the same rule id, now a sequence: its threshold windows cannot be restored
    daemon, _ = daemon_on(tmp_path, BURST + SEQUENCE)
    try:
        daemon.beat()
        info = read_status(str(tmp_path / "state"))
        assert info["daemon"]["dropped_state"]["dropped"] == {"app.burst": 1}
        assert "detection state that does not fit the changed rules dropped: app.burst" in (
            caplog.text
        )
        # a reload without the rule drops its state too, and the counts add up
        daemon.step()
        (tmp_path / "rules" / "app.yaml").write_text(BURST.split("  - id: app.burst")[0])
        log.write_text("Nov 30 10:00:05 h app[1]: fail client1\n")
        daemon.step()
        assert daemon.reload()
        daemon.beat()
    finally:
        daemon.close()
    info = read_status(str(tmp_path / "state"))
    assert info["daemon"]["dropped_state"]["dropped"] == {"app.burst": 2}
    assert "detection state of rules no longer loaded dropped: app.burst" in caplog.text


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_status_of_a_state_database_no_daemon_wrote_to_exits_3(tmp_path: Path, fmt: str) -> None:
    """A state database without a status record (a scan's, a daemon that never got to its
    first heartbeat): stopped, "no daemon has run here", in either format (the table
    raised KeyError)."""
    from pipeline.state import StateDB
    from tests.conftest import logwarden

    StateDB(tmp_path / "state.sqlite").close()
    res = logwarden("status", "--state-dir", str(tmp_path), "--format", fmt)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    assert "no daemon has run here" in res.stdout
