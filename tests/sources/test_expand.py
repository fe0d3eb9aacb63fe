"""How PATH arguments become inputs: the order of rotation sets and their members, and
what a walk or a glob finds that cannot be read."""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import Problem
from pipeline.sources.files import expand_inputs
from tests.conftest import REPO, require_program


def _names(paths: list[str], base: Path) -> list[str]:
    return [os.path.relpath(i.path, base) for i in expand_inputs(paths, [])]


def _rotated(base: Path) -> None:
    (base / "mail").mkdir()
    (base / "apache2").mkdir()
    for name in ["mail.log", "mail.log.1", "mail.log.2.gz", "mail.log.10.gz"]:
        data = b"x\n"
        (base / "mail" / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    (base / "apache2" / "error.log").write_bytes(b"x\n")
    (base / "apache2" / "error.log-20261129").write_bytes(b"x\n")
    (base / "syslog").write_bytes(b"x\n")


WANT = [
    "syslog",
    "apache2/error.log-20261129",
    "apache2/error.log",
    "mail/mail.log.10.gz",
    "mail/mail.log.2.gz",
    "mail/mail.log.1",
    "mail/mail.log",
]


def test_a_rotated_set_given_as_separate_arguments_is_read_oldest_first(tmp_path: Path) -> None:
    _rotated(tmp_path)
    mail = tmp_path / "mail"
    # what the shell hands over for mail.log*: sorted by name, the live file first
    shell = sorted(str(p) for p in mail.glob("mail.log*"))
    assert _names(shell, tmp_path) == WANT[3:]
    assert _names([str(mail / "mail.log*")], tmp_path) == WANT[3:]
    assert _names([str(mail)], tmp_path) == WANT[3:]


def test_inputs_are_in_one_order_whatever_the_order_of_the_arguments(tmp_path: Path) -> None:
    _rotated(tmp_path)
    args = [
        str(tmp_path / "mail" / "mail.log"),
        str(tmp_path / "apache2"),
        str(tmp_path / "syslog"),
        str(tmp_path / "mail" / "mail.log.1"),
        str(tmp_path / "mail" / "mail.log*.gz"),
    ]
    for perm in itertools.permutations(args):
        assert _names(list(perm), tmp_path) == WANT, perm
    assert _names([str(tmp_path)], tmp_path) == WANT


def test_a_rotation_set_has_one_name_however_its_members_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.sources.files import rotation_set

    monkeypatch.chdir(tmp_path)
    want = str(tmp_path / "mail.log")
    for path in ["mail.log", "./mail.log.1", str(tmp_path / "mail.log.2.gz"), "mail.log-20261130"]:
        assert rotation_set(path) == want
    assert rotation_set("-") == "-"
    assert rotation_set("s3://logs/mx1/mail.log.3.gz") == "s3://logs/mx1/mail.log"


def test_a_glob_reports_the_directories_and_fifos_it_matches(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"x\n")
    (tmp_path / "b.log").mkdir()
    os.mkfifo(tmp_path / "c.log")
    problems: list[Problem] = []
    got = expand_inputs([str(tmp_path / "*.log")], problems)
    assert [Path(i.path).name for i in got] == ["a.log"]
    assert [(p.kind, Path(p.location.path).name, p.detail) for p in problems] == [
        ("skipped", "b.log", "a directory (a pattern reads files only)"),
        ("skipped", "c.log", "not a regular file"),
    ]


def test_a_walk_reports_a_link_to_a_directory_it_does_not_follow(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.log").write_bytes(b"x\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "elsewhere").symlink_to(tmp_path / "real")
    problems: list[Problem] = []
    assert expand_inputs([str(tmp_path / "logs")], problems) == []
    assert [(p.kind, p.location.path) for p in problems] == [
        ("skipped", str(tmp_path / "logs" / "elsewhere"))
    ]


def test_a_walk_reports_a_subdirectory_it_cannot_read(tmp_path: Path) -> None:
    """chmod 000 keeps out everyone but root, who reads anything (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH): as root the scan runs with those two capabilities dropped by
    util-linux's setpriv, as an unprivileged user it runs as it is."""
    logs = tmp_path / "logs"
    (logs / "locked").mkdir(parents=True)
    (logs / "locked" / "secret.log").write_text("Nov 30 08:00:00 vm x: y\n", encoding="utf-8")
    (logs / "syslog").write_text("Nov 30 08:00:00 vm cron[1]: hello\n", encoding="utf-8")
    (logs / "locked").chmod(0)
    try:
        cmd = [sys.executable, "-m", "pipeline.cli", "scan", "--tz", "UTC", str(logs)]
        if os.geteuid() == 0:
            setpriv = require_program("setpriv")
            cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    finally:
        (logs / "locked").chmod(0o755)
    assert proc.returncode == 3, proc.stderr  # an input could not be read: the scan is incomplete
    assert "counts: 1 files" in proc.stderr
    assert "problems: unreadable: 1" in proc.stderr
    assert f"{logs / 'locked'}: unreadable: Permission denied" in proc.stderr
    shutil.rmtree(logs)
