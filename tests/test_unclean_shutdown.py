"""A syslog after an unclean shutdown: a run of NUL bytes where the last writes were lost,
and rsyslog appending the next records right after it. A real rsyslogd writes the lines; the
NUL run is what the file system leaves (the file's size grew, its blocks were never
written), made here by extending the file rsyslog has open.

A directory walk reads the file like a named one; the NULs are counted and located; the
record glued to the end of the run is read.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import logwarden
from tests.rsyslog_helper import Line, running_rsyslog, send
from tests.test_watch import Watch

RUN = 3000  # NULs: most of a 4 KiB block


def receipt(n: int) -> Line:
    return Line("sm-mta", f"Q{n:09d}A: Q{n:09d}B: DSN: Return receipt", pid=1000 + n)


def _wait_receipts(path: Path, n: int) -> None:
    """Until rsyslog has written ``n`` receipts to ``path`` (which it creates with the first)."""
    deadline = time.monotonic() + 10

    def written() -> bytes:
        return path.read_bytes() if path.exists() else b""

    while written().count(b"DSN: Return receipt\n") < n:
        assert time.monotonic() < deadline, written()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the traditional and the RFC 3339 file of one rsyslog stream: receipts
    0-2, a NUL run, receipts 3-5 (3 glued to the run)."""
    base = tmp_path_factory.mktemp("unclean")
    with running_rsyslog(base, ["mx"]) as rsyslog:
        files = rsyslog.streams["mx"].files
        for n in range(3):
            send(rsyslog.streams["mx"].socket, receipt(n))
        for path in files.values():
            _wait_receipts(path, 3)
            os.truncate(path, path.stat().st_size + RUN)  # the run the crash left
        for n in range(3, 6):
            send(rsyslog.streams["mx"].socket, receipt(n))
        for path in files.values():
            _wait_receipts(path, 6)
    logs = base / "logs"
    logs.mkdir()
    for kind, path in files.items():
        data = path.read_bytes()
        assert b"\x00" * RUN in data
        assert data.index(b"\x00") < 4096
        (logs / f"{kind}.log").write_bytes(data)
    return logs


def _scan(*paths: Path) -> tuple[Counter[tuple[str, str]], str]:
    res = logwarden("scan", *map(str, paths), "--format", "jsonl")
    assert res.returncode == 0, res.stderr
    found = [json.loads(x) for x in res.stdout.splitlines()]
    return Counter(
        (Path(f["source"]).name.split(":")[0], f["fields"]["queue_id"]) for f in found
    ), (res.stderr)


def test_a_directory_walk_reads_a_log_with_a_nul_run_like_a_named_one(crashed: Path) -> None:
    walked, err = _scan(crashed)
    want = Counter(
        (f"{kind}.log", f"Q{n:09d}A") for kind in ("traditional", "rfc3339") for n in range(6)
    )
    assert walked == want, err
    assert "unknown-format" not in err and "binary" not in err, err
    assert "nul-byte: 2" in err, err  # one line per file, located
    assert f"{crashed / 'traditional.log'}:4:" in err, err
    named = Counter()
    for path in sorted(crashed.iterdir()):
        got, _ = _scan(path)
        named += got
    assert named == walked


def test_the_daemon_reads_past_a_nul_run(crashed: Path, tmp_path: Path) -> None:
    w = Watch(tmp_path, "mail.log", from_beginning=True)
    (tmp_path / "mail.log").write_bytes((crashed / "traditional.log").read_bytes())
    try:
        w.start()
        w.settle()
        w.assert_found(range(6))
    finally:
        w.stop()


def test_a_binary_file_in_a_directory_is_still_skipped(tmp_path: Path) -> None:
    (tmp_path / "syslog").write_bytes(b"Nov 30 08:00:00 vm x: y\n")
    record = b"\x07\x00\x00\x00\x39\x30\x00\x00pts/0" + b"\x00" * 27 + b"ts/0root" + b"\x00" * 300
    (tmp_path / "wtmp").write_bytes(record * 10)
    res = logwarden("scan", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert f"{tmp_path / 'wtmp'}: unknown-format: binary file skipped" in res.stderr
