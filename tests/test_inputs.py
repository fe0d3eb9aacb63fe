"""What ``scan`` makes of its inputs as a whole: the order of the PATHs does not matter,
and host-less lines of different files are not one host."""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.config import ConfigError, WatchConfig, load_config
from pipeline.daemon import Daemon
from pipeline.detection.loader import load_rules
from pipeline.engine import Engine, ScanOptions, ScanResult
from pipeline.sources import tail
from tests.conftest import SAMPLES, logwarden

CRASH = (
    "[{} 2026] [core:notice] [pid 2487:tid 140351] AH00052: child pid {} exit signal "
    "Segmentation fault (11)\n"
)
LOOP = "apache.child-crash-loop"


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
