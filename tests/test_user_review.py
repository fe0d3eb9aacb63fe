"""Regressions from trying logwarden as an admin would, on awkward input and settings."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.detection.correlate import Detector
from pipeline.detection.loader import extend_rules, load_rules
from pipeline.timeinfer import TimeResolver
from tests.conftest import REPO, SAMPLES


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_out_of_range_years_are_usage_errors_and_feb_29_never_hangs() -> None:
    assert run("scan", str(SAMPLES / "syslog"), "--year", "0")[0] == 2
    assert run("scan", str(SAMPLES / "syslog"), "--year", "-5")[0] == 2
    r = TimeResolver(UTC, datetime(2026, 3, 1, tzinfo=UTC), year=1)
    assert r.resolve(datetime(2000, 2, 29, 10), True).day == 29  # a nearby leap year


def test_year_inference_never_puts_lines_after_the_file_was_written(tmp_path: Path) -> None:
    r = TimeResolver(UTC, datetime(2026, 11, 30, tzinfo=UTC))
    got = [
        r.resolve(datetime(2000, m, d, 12), True)
        for m, d in [(11, 20), (1, 5), (11, 21), (2, 1), (11, 22)]
    ]
    assert all(g <= datetime(2026, 12, 1, tzinfo=UTC) for g in got), got


def test_a_fifo_in_a_walked_directory_is_skipped_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.log")
    (tmp_path / "syslog").write_bytes((SAMPLES / "syslog" / "syslog").read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scan", str(tmp_path), "--format", "jsonl"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "fifo.log: skipped: not a regular file" in proc.stderr


def test_disabling_a_line_rule_keeps_the_correlations_built_on_it(tmp_path: Path) -> None:
    (tmp_path / "ov.yaml").write_text(
        "overrides:\n  - id: systemd.unit-failed\n    enabled: false\n"
    )
    rules, errors = extend_rules(load_rules(), [tmp_path / "ov.yaml"])
    assert errors == []
    active = {r.id: r for r in Detector(rules).rules}
    assert "systemd.remount-fs-cascade" in active
    assert active["systemd.unit-failed"].report is False  # a silent helper now
    code, out, _ = run(
        "scan", str(SAMPLES / "syslog"), "--rules", str(tmp_path), "--format", "jsonl", "-q"
    )
    assert code == 0 and "systemd.remount-fs-cascade" in out
    assert '"rule": "systemd.unit-failed"' not in out


def test_unwritable_outputs_fail_before_scanning_with_exit_2(tmp_path: Path) -> None:
    code, _, err = run("scan", str(SAMPLES / "syslog"), "-o", "/nonexistent/x.jsonl")
    assert code == 2 and "/nonexistent/x.jsonl: cannot write" in err
    code, _, err = run("scan", str(SAMPLES / "syslog"), "--parquet", "/proc/lake")
    assert code == 2 and "/proc/lake" in err
    code, _, err = run("report", str(SAMPLES / "syslog"), "-o", "/nonexistent/r.html")
    assert code == 2 and "cannot write" in err


def test_rules_validate_accepts_overrides_of_builtin_rules(tmp_path: Path) -> None:
    (tmp_path / "ov.yaml").write_text(
        "overrides:\n  - id: dovecot.process-limit-reached\n    severity: medium\n"
    )
    code, out, err = run("rules", "validate", str(tmp_path))
    assert code == 0, err


def test_a_missing_required_key_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - id: my.rule\n    title: t\n    severity: low\n"
        "    match: {message: {contains: x}}\n"
        "    examples: {match: ['Nov 30 08:00:00 h p: x'], no_match: ['Nov 30 08:00:00 h p: y']}\n"
    )
    code, _, err = run("rules", "validate", str(tmp_path))
    assert code == 2
    assert err.count("missing required key 'description'") == 1


def test_compressed_stdin_is_read(tmp_path: Path) -> None:
    data = gzip.compress((SAMPLES / "syslog" / "syslog").read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scan", "-", "--format", "jsonl", "-q"],
        cwd=REPO,
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.count(b'"rule"') >= 5


def test_a_threshold_of_one_fires_again_after_its_window(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "rules:\n  - id: my.each\n    type: threshold\n    title: t\n    severity: low\n"
        "    description: d\n    remediation: r\n    of: apache.child-crashed\n    count: 1\n"
        "    window: 1s\n    examples:\n      match: [{lines: ['[Sat Nov 28 14:31:12.000000 2026]"
        " [core:notice] [pid 1:tid 2] AH00052: child pid 3 exit signal Segmentation fault (11)']}]\n"
        "      no_match: [{lines: ['[Sat Nov 28 14:31:12.000000 2026] [core:notice] [pid 1:tid 2]"
        " AH00051: child pid 3 exit signal Aborted (6), possible coredump in /tmp']}]\n"
    )
    crash = "[Sat Nov 28 14:{m}:12.000000 2026] [core:notice] [pid 1:tid 2] AH00052: child pid 3 exit signal Segmentation fault (11)\n"
    log = tmp_path / "error.log"
    log.write_text("".join(crash.format(m=m) for m in (31, 32, 47)))
    code, out, _ = run("scan", str(log), "--rules", str(tmp_path), "--format", "jsonl", "-q")
    assert out.count('"rule": "my.each"') == 3
