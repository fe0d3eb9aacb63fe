"""fail2ban filters and jails through ``logwarden scan`` and ``rules list``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.detection.correlate import Detector
from pipeline.imports.f2brules import filter_rules, jail_rules, parse_f2b_time
from pipeline.imports.fail2ban import load_filter
from tests.imports.test_fail2ban_samples import CONFIG, LOGS, require_samples


def _sample(tmp_path: Path, name: str) -> Path:
    lines = [
        ln
        for ln in (LOGS / name).read_text(encoding="utf-8", errors="replace").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    out = tmp_path / f"{name}.log"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _scan(*args: str) -> list[dict[str, object]]:
    res = CliRunner().invoke(main, ["scan", "--no-builtin-rules", "-q", "--format", "jsonl", *args])
    assert res.exit_code == 0, res.output
    return [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]


def test_scan_filter_finds_what_the_filter_finds_on_raw_lines(tmp_path: Path) -> None:
    require_samples()
    log = _sample(tmp_path, "sshd")
    flt = load_filter(CONFIG, "sshd")
    expected = set()
    rfc5424 = set()
    for no, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
        if any(f.fid is not None and not f.nofail for f in flt.process_line(line)):
            expected.add(no)
        if line.startswith("<38>1 "):
            rfc5424.add(no)
    found = _scan("--fail2ban-filter", "sshd", "--year", "2005", str(log))
    got = {int(str(f["source"]).rsplit(":", 1)[1]) for f in found}
    assert len(expected) > 50
    # the grammar reads RFC 5424 envelopes, which fail2ban's filter takes only with
    # logtype=rfc5424: scan matches those lines with the plain filter too
    assert rfc5424 and not rfc5424 & expected
    assert got == expected | rfc5424
    assert all(f["rule"] == "f2b-filter-sshd" and f["fields"]["f2b_id"] for f in found)  # type: ignore[index]


def test_jail_is_a_threshold_with_ignoreip(tmp_path: Path) -> None:
    require_samples()
    root = tmp_path / "fail2ban"
    root.mkdir()
    (root / "filter.d").symlink_to(CONFIG / "filter.d")
    (root / "jail.conf").write_text(
        "[DEFAULT]\nmaxretry = 5\nfindtime = 10m\nbantime = 1d\n"
        "[sshd]\nenabled = true\nmaxretry = 2\nfindtime = 1d\nignoreip = 192.0.2.0/28\n"
        "[apache-auth]\nenabled = false\n",
        encoding="utf-8",
    )
    log = tmp_path / "auth.log"
    log.write_text(
        "".join(
            f"Mar  7 18:53:{10 + i:02d} bar sshd[15{i}]: Failed password for root from {ip} "
            f"port 22 ssh2\n"
            for i, ip in enumerate(
                ["192.0.2.100", "192.0.2.100", "192.0.2.100", "192.0.2.5", "192.0.2.5", "192.0.2.7"]
            )
        ),
        encoding="utf-8",
    )
    found = _scan("--fail2ban", str(root), "--year", "2005", str(log))
    # 192.0.2.100: 3 failures, one finding (the third updates it: bantime suppresses);
    # 192.0.2.5 is in ignoreip; 192.0.2.7 failed once only
    assert [(f["rule"], f["fields"]["f2b_id"], f["count"]) for f in found] == [  # type: ignore[index]
        ("f2b-sshd", "192.0.2.100", 3)
    ]
    res = CliRunner().invoke(
        main, ["rules", "list", "--no-builtin-rules", "--fail2ban", str(root), "--format", "jsonl"]
    )
    assert res.exit_code == 0, res.output
    listed = {d["id"]: d for d in map(json.loads, res.stdout.splitlines())}
    assert set(listed) == {"f2b-sshd", "f2b-sshd-failure"}
    assert listed["f2b-sshd"]["location"] == f"{root / 'jail.conf'}:6"
    assert listed["f2b-sshd-failure"]["location"].startswith(str(root / "filter.d" / "sshd.conf:"))
    assert any(t.startswith("engine:") for t in listed["f2b-sshd"]["tags"])
    # the threshold counts per f2b_id, which the helper rule's filter captures: no body
    # grammar has to run for it (nor beside a rule reading only envelope fields)
    rules = jail_rules(root)
    assert "f2b_id" in rules[0].captures()
    assert not Detector(rules).needs_body_fields()
    assert not Detector([*rules, *filter_rules(root, "sshd")]).needs_body_fields()


def test_fail2ban_durations() -> None:
    assert parse_f2b_time("600").total_seconds() == 600
    assert parse_f2b_time("1h30m").total_seconds() == 5400
    assert parse_f2b_time("1d").total_seconds() == 86400


def test_watch_filter_on_a_live_file_matches_like_the_filter(tmp_path: Path) -> None:
    require_samples()
    from pipeline.config import WatchConfig
    from pipeline.daemon import Daemon

    sample = _sample(tmp_path, "sshd").read_text(encoding="utf-8").splitlines()
    sample = [ln for ln in sample if not ln.startswith("<")]  # see the scan test
    flt = load_filter(CONFIG, "sshd")
    expected = {
        no
        for no, line in enumerate(sample, 1)
        if any(f.fid is not None and not f.nofail for f in flt.process_line(line))
    }
    live = tmp_path / "auth.log"
    live.write_text("", encoding="utf-8")
    out = tmp_path / "findings.jsonl"
    config = WatchConfig(
        paths=(str(live),),
        builtin_rules=False,
        fail2ban_filters=("sshd",),
        state_dir=str(tmp_path / "state"),
        output=str(out),
        poll_interval=0.05,
    )
    daemon = Daemon(config)
    try:
        daemon.recover()
        daemon.step()
        half = len(sample) // 2
        for chunk in (sample[:half], sample[half:]):
            with live.open("a", encoding="utf-8") as f:
                f.write("\n".join(chunk) + "\n")
            for _ in range(3):
                daemon.step()
    finally:
        daemon.close()
    records = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    got = {int(str(r["source"]).rsplit(":", 1)[1]) for r in records}
    assert len(expected) > 50
    assert got == expected


def test_journalmatch_selects_journal_entries(tmp_path: Path) -> None:
    require_samples()
    from pipeline.imports.f2brules import filter_rules, parse_journalmatch

    assert parse_journalmatch(("_SYSTEMD_UNIT=sshd.service + _COMM=sshd",)) == (
        (("_SYSTEMD_UNIT", "sshd.service"),),
        (("_COMM", "sshd"),),
    )
    entries = [
        {"_COMM": comm, "SYSLOG_IDENTIFIER": "sshd", "_PID": "7", "_HOSTNAME": "h",
         "__REALTIME_TIMESTAMP": "1700000000000000", "__CURSOR": f"c{i}",
         "MESSAGE": f"Failed password for root from 192.0.2.{i} port 22 ssh2"}
        for i, comm in enumerate(["sshd", "logger", "sshd"], 1)
    ]  # fmt: skip
    log = tmp_path / "journal.json"
    log.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    assert filter_rules(CONFIG, "sshd")[0].conditions[0].journal  # type: ignore[attr-defined]
    found = _scan("--fail2ban-filter", "sshd", str(log))
    assert sorted(f["fields"]["f2b_id"] for f in found) == ["192.0.2.1", "192.0.2.3"]  # type: ignore[index]


def test_repeated_lines_are_seen_as_written(tmp_path: Path) -> None:
    """fail2ban reads rsyslog's ``message repeated N times: [ ...]`` as it is written (its
    sshd filter does not match it); the rebuilt line keeps the wrapper."""
    require_samples()
    log = tmp_path / "auth.log"
    failed = "Failed password for root from 192.0.2.9 port 22 ssh2"
    log.write_text(
        f"Mar  7 18:53:10 bar sshd[15]: {failed}\n"
        f"Mar  7 18:53:20 bar sshd[15]: message repeated 5 times: [ {failed}]\n",
        encoding="utf-8",
    )
    flt = load_filter(CONFIG, "sshd")
    raw = [bool(flt.process_line(ln)) for ln in log.read_text(encoding="utf-8").splitlines()]
    found = _scan("--fail2ban-filter", "sshd", "--year", "2005", str(log))
    assert [f["source"] for f in found] == [f"{log}:1"]
    assert raw == [True, False]
