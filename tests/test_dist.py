"""The shipped systemd unit and example config are valid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_config
from tests.conftest import REPO, require_program


def test_example_config_loads() -> None:
    cfg = load_config(REPO / "dist" / "config.yaml")
    assert cfg.paths == ("/var/log/syslog", "/var/log/mail.log", "/var/log/apache2/error.log")
    assert cfg.state_dir == "/var/lib/logwarden"


@pytest.mark.real
def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze")
    unit = (REPO / "dist" / "logwarden.service").read_text()
    # point ExecStart at a program that exists here; everything else is verified as shipped
    exe = tmp_path / "logwarden"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = unit.replace("/opt/logwarden/.venv/bin/logwarden", str(exe))
    path = tmp_path / "logwarden.service"
    path.write_text(unit)
    got = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, check=False
    )
    problems = [
        line
        for line in (got.stdout + got.stderr).splitlines()
        if "logwarden.service" in line and "Failed to" not in line
    ]
    assert got.returncode == 0 and problems == [], got.stdout + got.stderr
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "SupplementaryGroups=adm systemd-journal",
        "ProtectSystem=strict",
        "StateDirectory=logwarden",
        "NoNewPrivileges=yes",
    ):
        assert key in unit
