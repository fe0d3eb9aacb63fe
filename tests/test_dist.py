"""The shipped systemd unit and example config are valid."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_config
from tests.conftest import REPO, require_program


def test_example_config_loads() -> None:
    cfg = load_config(REPO / "dist" / "config.yaml")
    assert cfg.paths == ("/var/log/syslog", "/var/log/mail.log", "/var/log/apache2/error.log")
    assert cfg.state_dir == "/var/lib/logwarden"


#: what ``systemd-analyze verify`` says about a unit that is not the unit's fault: the syscall
#: groups of ``SystemCallFilter=@system-service`` name calls that an older libseccomp does
#: not know (``logwarden.service: Failed to parse system call, ignoring: uretprobe``)
VERIFY_NOISE = re.compile(r": Failed to parse system call, ignoring: \w+$")


def unit_problems(output: str, unit: str = "logwarden.service") -> list[str]:
    """The lines of ``systemd-analyze verify`` output about ``unit``, less :data:`VERIFY_NOISE`."""
    return [line for line in output.splitlines() if unit in line and not VERIFY_NOISE.search(line)]


def verify(analyze: str, tmp_path: Path, unit: str) -> tuple[int, str]:
    """``systemd-analyze verify`` of ``unit`` (the shipped text, changed by the caller) with
    ExecStart pointing at a program that exists here."""
    exe = tmp_path / "logwarden"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    path = tmp_path / "logwarden.service"
    path.write_text(unit.replace("/opt/logwarden/.venv/bin/logwarden", str(exe)))
    got = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, check=False
    )
    return got.returncode, got.stdout + got.stderr


def test_verify_noise_is_only_the_unknown_system_calls() -> None:
    output = (
        "logwarden.service: Failed to parse system call, ignoring: riscv_hwprobe\n"
        "/tmp/x/logwarden.service:42: Failed to parse system call, ignoring: uretprobe\n"
        "/tmp/x/logwarden.service:29: Failed to parse boolean value, ignoring: maybe\n"
        "/tmp/x/logwarden.service:13: Failed to parse sec value, ignoring: 5parsecs\n"
        "logwarden.service: Failed to create logwarden.service/start: Unit x.mount not found.\n"
        "other.service: Failed to load configuration: No such file or directory\n"
    )
    assert unit_problems(output) == output.splitlines()[2:5]


@pytest.mark.real
def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze")
    unit = (REPO / "dist" / "logwarden.service").read_text()
    # everything but ExecStart is verified as shipped
    code, output = verify(analyze, tmp_path, unit)
    assert code == 0 and unit_problems(output) == [], output
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "SupplementaryGroups=adm systemd-journal",
        "ProtectSystem=strict",
        "StateDirectory=logwarden",
        "NoNewPrivileges=yes",
    ):
        assert key in unit


@pytest.mark.real
def test_a_unit_with_bad_values_does_not_verify(tmp_path: Path) -> None:
    """systemd ignores a value it cannot parse and exits 0: the lines it prints must fail
    the check."""
    analyze = require_program("systemd-analyze")
    unit = (REPO / "dist" / "logwarden.service").read_text()
    assert "NoNewPrivileges=yes" in unit and "RestartSec=5s" in unit
    broken = unit.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe").replace(
        "RestartSec=5s", "RestartSec=5parsecs"
    )
    code, output = verify(analyze, tmp_path, broken)
    problems = unit_problems(output)
    assert any("Failed to parse boolean value, ignoring: maybe" in p for p in problems), output
    assert any("5parsecs" in p for p in problems), output
