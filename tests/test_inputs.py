"""What ``scan`` makes of its inputs as a whole: the order of the PATHs does not matter,
host-less lines of different files are not one host, and an event written to two files
counts once (see also ``tests/test_inputs_real.py`` with rsyslog and logrotate)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.config import ConfigError, WatchConfig, load_config
from pipeline.daemon import Daemon
from pipeline.daemon import status as read_status
from pipeline.detection.loader import load_rules
from pipeline.engine import Engine, ScanOptions, ScanResult
from pipeline.model import Event
from pipeline.parallel import ProcessRunner
from pipeline.sources import tail
from tests.conftest import SAMPLES, logwarden

CRASH = (
    "[{} 2026] [core:notice] [pid 2487:tid 140351] AH00052: child pid {} exit signal "
    "Segmentation fault (11)\n"
)
LIMIT = (
    "{} mx1 dovecot: master: Warning: service(pop3-login): process_limit (100) reached, "
    "client connections are being dropped\n"
)
LOOP = "apache.child-crash-loop"
LOOP_LIMIT = "dovecot.process-limit-reached"


def _scan(paths: list[str], runner: object = None, **options: object) -> ScanResult:
    engine = Engine(load_rules(), ScanOptions(**options))  # type: ignore[arg-type]
    return engine.scan(paths, runner=runner)  # type: ignore[arg-type]


def _findings(result: ScanResult) -> list[str]:
    return sorted(json.dumps(f.as_dict(), sort_keys=True) for f in result.findings)


def _crash_logs(base: Path) -> list[str]:
    """Two hosts' Apache error logs, two crashes each within ten minutes: no crash loop on
    either host, but four crashes if they were one."""
    paths = []
    for host, minute in (("web1", 1), ("web2", 3)):
        (base / host).mkdir()
        path = base / host / "error.log"
        path.write_text(
            CRASH.format(f"Tue Nov 24 10:{minute:02d}:00.000000", 100 + minute)
            + CRASH.format(f"Tue Nov 24 10:{minute + 4:02d}:00.000000", 200 + minute),
            encoding="utf-8",
        )
        paths.append(str(path))
    return paths


# -- item 3: host-less lines, argument order ----------------------------------------------------


def test_host_less_lines_of_different_files_are_not_one_host(tmp_path: Path) -> None:
    paths = _crash_logs(tmp_path)
    result = _scan(paths, tz=datetime.now().astimezone().tzinfo)
    rules = sorted(f.rule for f in result.findings)
    assert rules == ["apache.child-crashed"] * 4
    assert all(f.host is None for f in result.findings)


def test_a_silence_of_host_less_lines_shows_no_host(tmp_path: Path) -> None:
    """A heartbeat absence judged on a rotation set's lines (no host; the expected event
    never seen) reports an empty host, not the set's path it is grouped under; its
    message names the set."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "quiet.yaml").write_text(
        """rules:
  - id: t.crashed
    report: false
    title: a child crashed
    severity: info
    description: x
    remediation: x
    select: {format: apache-error}
    match: {message: {regex: 'AH00052: child pid'}}
    examples:
      match: ['[Tue Nov 24 08:00:00.000000 2026] [core:notice] [pid 1:tid 1] AH00052: child pid 9 exit signal Segmentation fault (11)']
      no_match: ['[Tue Nov 24 08:00:00.000000 2026] [core:notice] [pid 1:tid 1] AH00094: Command line']
  - id: t.quiet
    type: absence
    title: no crash for an hour
    severity: low
    description: x
    remediation: x
    expect: t.crashed
    window: 1h
    examples:
      match:
        - lines:
            - '[Tue Nov 24 08:00:00.000000 2026] [core:notice] [pid 1:tid 1] AH00052: child pid 9 exit signal Segmentation fault (11)'
            - '[Tue Nov 24 12:00:00.000000 2026] [core:notice] [pid 1:tid 1] AH00052: child pid 9 exit signal Segmentation fault (11)'
          count: 1
      no_match:
        - lines:
            - '[Tue Nov 24 08:00:00.000000 2026] [core:notice] [pid 1:tid 1] AH00052: child pid 9 exit signal Segmentation fault (11)'
            - '[Tue Nov 24 08:30:00.000000 2026] [core:notice] [pid 1:tid 1] AH00052: child pid 9 exit signal Segmentation fault (11)'
""",
        encoding="utf-8",
    )
    log = tmp_path / "error.log"
    log.write_text(
        "".join(
            f"[Tue Nov 24 {hour}:00:00.000000 2026] [core:notice] [pid 1:tid 1] AH00094: "
            "Command line: '/usr/sbin/apache2'\n"
            for hour in ("08", "09", "12")
        ),
        encoding="utf-8",
    )
    rules = load_rules([tmp_path / "rules"], builtin=False)
    result = Engine(rules, ScanOptions(tz=datetime.now().astimezone().tzinfo)).scan([str(log)])
    quiet = [f for f in result.findings if f.rule == "t.quiet"]
    assert len(quiet) == 1, result.findings
    assert quiet[0].host is None
    assert f"no t.crashed on {log} for 1h" in quiet[0].message


def test_host_names_the_host_of_host_less_lines(tmp_path: Path) -> None:
    paths = _crash_logs(tmp_path)
    result = _scan(paths, host="web")
    loops = [f for f in result.findings if f.rule == LOOP]
    assert [f.count for f in loops] == [4]
    assert {f.host for f in result.findings} == {"web"}
    res = logwarden("scan", "--host", "web", "--format", "jsonl", *paths)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert {r["host"] for r in records} == {"web"} and LOOP in {r["rule"] for r in records}
    bad = logwarden("scan", "--host", "web 1", *paths)
    assert bad.returncode == 2 and "--host" in bad.stderr


SAMPLE_ARGS = [
    "apache2",
    "journal",
    "mail/mail.log",
    "mail/mail.log.1",
    "mail/mail.log.2.gz",
    "scenarios",
    "syslog",
    "syslog-rfc3339",
]


def test_findings_do_not_depend_on_the_order_of_the_paths() -> None:
    """``scan samples/`` and the sample directories and files in other orders: the same
    findings, and the threshold-edge crash loops are the two the scenario has (not one
    adding the crashes of samples/apache2 four days earlier)."""
    whole = _scan([str(SAMPLES)])
    want = _findings(whole)
    loops = sorted((f.count, f.source, f.line) for f in whole.findings if f.rule == LOOP)
    edge = str(SAMPLES / "scenarios" / "threshold-edge" / "error.log")
    assert loops == [(3, edge, 11), (5, edge, 29)]
    for f in whole.findings:
        if f.rule == LOOP:
            assert f.timestamp is not None
            assert datetime.fromisoformat(f.fields["first_seen"]) <= f.timestamp
    orders = [SAMPLE_ARGS, SAMPLE_ARGS[::-1]]
    rng = random.Random(11)
    orders += [rng.sample(SAMPLE_ARGS, len(SAMPLE_ARGS)) for _ in range(6)]
    for order in orders:
        got = _scan([str(SAMPLES / a) for a in order])
        assert _findings(got) == want, order


# -- item 2: one event in two files -------------------------------------------------------------


def _two_files(base: Path) -> tuple[Path, Path]:
    """mail.log and syslog as Debian's rsyslog writes them: every mail line in both, plus
    a repeat within the same second (a real second warning) and lines only in syslog."""
    stamps = ["Nov 30 08:00:01", "Nov 30 08:00:01", "Nov 30 08:10:00", "Nov 30 08:20:00"]
    mail = "".join(LIMIT.format(s) for s in stamps)
    other = "Nov 30 08:05:00 mx1 CRON[2211]: (root) CMD (true)\n"
    (base / "mail.log").write_text(mail, encoding="utf-8")
    (base / "syslog").write_text(mail[: len(mail) // 2] + other + mail[len(mail) // 2 :])
    return base / "mail.log", base / "syslog"


def _limit(result: ScanResult) -> list[int]:
    return [f.count for f in result.findings if f.rule == "dovecot.process-limit-reached"]


def test_an_event_in_two_files_counts_once(tmp_path: Path) -> None:
    mail, syslog = _two_files(tmp_path)
    alone = _scan([str(mail)])
    assert _limit(alone) == [4]
    for paths in ([mail, syslog], [syslog, mail], [tmp_path]):
        result = _scan([str(p) for p in paths])
        assert _limit(result) == [4], paths
        assert _findings(result) == _findings(alone)
        assert result.stats.duplicates == 4
    assert alone.stats.duplicates == 0
    res = logwarden("scan", str(tmp_path))
    assert "4 copies from another file set aside" in res.stderr


def test_repeats_across_the_members_of_one_rotation_set_still_count(tmp_path: Path) -> None:
    mail, _ = _two_files(tmp_path)
    (tmp_path / "syslog").unlink()
    (tmp_path / "mail.log.1").write_bytes(mail.read_bytes())
    result = _scan([str(tmp_path)])
    assert _limit(result) == [8] and result.stats.duplicates == 0


@pytest.mark.parametrize("part_size", [64, 1 << 20])
def test_workers_set_aside_the_same_copies(tmp_path: Path, part_size: int) -> None:
    _two_files(tmp_path)
    _crash_logs(tmp_path)
    local = _scan([str(tmp_path)])
    parallel = _scan([str(tmp_path)], ProcessRunner(2, part_size=part_size))
    assert [f.as_dict() for f in parallel.findings] == [f.as_dict() for f in local.findings]
    assert parallel.stats.duplicates == local.stats.duplicates == 4


# -- the daemon ------------------------------------------------------------------------------------


@pytest.fixture
def no_drain_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tail, "DRAIN_GRACE", 0.0)


def _watch(base: Path, config: WatchConfig) -> list[dict[str, object]]:
    daemon = Daemon(config)
    try:
        daemon.recover()
        for _ in range(3):
            daemon.step()
    finally:
        daemon.close()
    out = Path(str(config.output))
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_watch_keeps_host_less_lines_of_followed_files_apart(
    tmp_path: Path, no_drain_grace: None
) -> None:
    paths = tuple(_crash_logs(tmp_path))
    base = WatchConfig(
        paths=paths,
        state_dir=str(tmp_path / "state"),
        output=str(tmp_path / "found.jsonl"),
        from_beginning=True,
    )
    records = _watch(tmp_path, base)
    assert sorted(r["rule"] for r in records) == ["apache.child-crashed"] * 4
    assert {r["host"] for r in records} == {None}
    (tmp_path / "found.jsonl").unlink()
    named = WatchConfig(
        paths=paths,
        state_dir=str(tmp_path / "state2"),
        output=str(tmp_path / "found.jsonl"),
        from_beginning=True,
        hosts=((str(tmp_path / "web*" / "error.log"), "web"),),
    )
    records = _watch(tmp_path, named)
    assert {r["host"] for r in records} == {"web"}
    assert [r["count"] for r in records if r["rule"] == LOOP] == [4]


def test_watch_config_names_the_host_of_a_path(tmp_path: Path) -> None:
    conf = tmp_path / "config.yaml"
    conf.write_text(
        "paths:\n  - /var/log/syslog\n  - path: /srv/www/*/error.log\n    host: web1\nhost: mx1\n",
        encoding="utf-8",
    )
    config = load_config(conf)
    assert config.paths == ("/var/log/syslog", "/srv/www/*/error.log")
    assert config.host_of("/srv/www/shop/error.log") == "web1"
    assert config.host_of("/var/log/syslog") == "mx1"
    conf.write_text("paths:\n  - path: /x.log\n    hots: web1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'hots'") as err:
        load_config(conf)
    assert err.value.location.line == 3
    conf.write_text("paths:\n  - path: /x.log\n    host: web 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="host name") as err:
        load_config(conf)
    assert err.value.location.line == 3


def test_the_readme_s_unquoted_glob_finds_what_the_quoted_one_finds() -> None:
    """``logwarden scan /var/log/mail.log*`` on the samples: the shell's expansion (the
    live file first) and the quoted glob give the same findings, the DSN join included."""
    shell = sorted(str(p) for p in (SAMPLES / "mail").glob("mail.log*"))
    assert shell[0].endswith("mail.log")
    quoted = logwarden("scan", "--tz", "UTC", "--format", "jsonl", str(SAMPLES / "mail/mail.log*"))
    expanded = logwarden("scan", "--tz", "UTC", "--format", "jsonl", *shell)
    assert quoted.returncode == expanded.returncode == 0, expanded.stderr
    assert expanded.stdout == quoted.stdout
    records = [json.loads(line) for line in expanded.stdout.splitlines()]
    assert len(records) == 30
    receipts = [r for r in records if r["rule"] == "sendmail.dsn-return-receipt"]
    assert receipts and all("sender" in r["fields"] for r in receipts)


def _watch_two_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int) -> Daemon:
    from pipeline import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "READ_BUDGET", budget)
    mail, syslog = _two_files(tmp_path)
    # syslog has more lines between the copies: read a budget a turn, it falls behind
    cron = "".join(f"Nov 30 08:00:{s:02} mx1 CRON[2211]: (root) CMD (true)\n" for s in range(2, 40))
    lines = syslog.read_text(encoding="utf-8").splitlines(keepends=True)
    syslog.write_text(lines[0] + cron + "".join(lines[1:]), encoding="utf-8")
    config = WatchConfig(
        paths=(str(mail), str(syslog)),
        state_dir=str(tmp_path / "state"),
        output=str(tmp_path / "found.jsonl"),
        from_beginning=True,
    )
    daemon = Daemon(config)
    daemon.recover()
    for _ in range(200):
        daemon.step()
    return daemon


@pytest.mark.parametrize("budget", [1 << 20, 150], ids=["one-turn", "catching-up"])
def test_watch_counts_an_event_in_two_files_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_drain_grace: None, budget: int
) -> None:
    """A first run (or a restart) catching up reads the files a budget at a time, so
    mail.log runs ahead of syslog in event time: its events are still remembered when
    syslog's copies come."""
    daemon = _watch_two_files(tmp_path, monkeypatch, budget)
    try:
        assert daemon.scan_stats.duplicates == 4
        assert daemon.stats[str(tmp_path / "syslog")].copies == 4
        assert daemon.stats[str(tmp_path / "mail.log")].copies == 0
        assert len(daemon.copies) == 1  # once both are read: the 08:20 one, the newest
    finally:
        daemon.close()
    info = read_status(str(tmp_path / "state"))
    limits = [f["count"] for f in info["findings"] if f["rule"] == LOOP_LIMIT]
    assert limits == [4]
    assert sum(s["copies"] for s in info["sources"]) == 4


def test_live_copies_are_kept_while_a_set_behind_has_not_reached_them() -> None:
    from pipeline.engine import LiveCopies

    t0 = datetime(2026, 11, 30, 8, tzinfo=UTC)

    def event(minute: int) -> Event:
        when = t0 + timedelta(minutes=minute)
        return Event(when, "mx1", "app", 1, None, f"m{minute}", "syslog", "f", minute)

    copies = LiveCopies(horizon=timedelta(minutes=5), cap=1000)
    copies.behind("syslog", True)
    for m in range(60):
        assert copies.fresh(event(m), "mail.log") == 1
    copies.expire()
    assert len(copies) == 60  # syslog, behind, has not been seen on mx1 yet
    copies.reached("mx1", "syslog", t0 + timedelta(minutes=30))
    copies.expire()
    assert len(copies) == 35  # 25 through 59 are still to come
    assert copies.fresh(event(30), "syslog") == 0
    copies.behind("syslog", False)
    copies.reached("mx1", "syslog", t0 + timedelta(minutes=59))
    copies.expire()
    assert len(copies) == 6  # the last five minutes of the newest time
    small = LiveCopies(cap=3)
    for m in range(5):
        small.fresh(event(m), "mail.log")
    assert len(small) == 3 and small.forgotten == 2
    assert small.fresh(event(0), "syslog") == 1  # forgotten: counted again


def test_a_reload_applies_the_new_host_of_a_path_and_keeps_the_counts(
    tmp_path: Path, no_drain_grace: None, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGHUP's reload gives the files already open the config's new ``host:``; a new
    metrics address waits for a restart. Counts (copies, problems, errors) carry on
    across a restart."""
    log = tmp_path / "error.log"
    log.write_text("")
    conf = tmp_path / "config.yaml"
    out = tmp_path / "found.jsonl"
    head = f"state_dir: {tmp_path / 'state'}\noutput: {out}\n"
    conf.write_text(f"paths:\n  - path: {log}\n    host: web1\n{head}")
    daemon = Daemon(load_config(str(conf)), config_path=str(conf))
    try:
        daemon.recover()
        daemon.step()
        with log.open("a") as f:
            f.write(CRASH.format("Tue Nov 24 10:01:00.000000", 101))
        daemon.step()
        conf.write_text(f"paths:\n  - path: {log}\n    host: web2\n{head}metrics: 127.0.0.1:1\n")
        with caplog.at_level("WARNING", logger="logwarden"):
            assert daemon.reload()
        assert "metrics take effect at the next restart" in caplog.text
        assert daemon.config.metrics is None
        with log.open("a") as f:
            f.write(CRASH.format("Tue Nov 24 10:02:00.000000", 102))
            f.write("\x00" * 64 + "\n")  # a problem, counted
        daemon.step()
        problems = dict(daemon.stats[str(log)].problems)
        assert problems
    finally:
        daemon.close()
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["host"] for r in records if r["rule"] == "apache.child-crashed"] == ["web1", "web2"]
    again = Daemon(load_config(str(conf)), config_path=str(conf))
    try:
        again.step()
    finally:
        again.close()
    (source,) = read_status(str(tmp_path / "state"))["sources"]
    assert source["problems"] == problems  # not started again from nothing
