"""Reading real journal files: ``scan --journal``, batch reads and the follower.

Journal files are written by ``systemd-journal-remote -o FILE.journal -`` from journal export
format on stdin (no running journald needed), then read through journalctl and, when it is
installed, python-systemd. Both backends must print the same lines.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.detection.loader import load_rules
from pipeline.engine import Engine, ScanStats, TimeMark, Unparsed
from pipeline.errors import InputError, Problem, UsageError
from pipeline.model import Event
from pipeline.sources import journal as journal_mod
from pipeline.sources.journal import (
    BACKEND_ENV,
    JournalFollower,
    JournalSpec,
    iter_journal,
    journal_command,
    last_cursor,
    reader_available,
    usec,
)
from tests.conftest import IN_CI, require_program

pytestmark = pytest.mark.real

BOOT = "5f0c2e9a7d3b4c1e8a6f2d0b9c7e4a31"
T0 = datetime(2026, 11, 30, 8, 23, 33, 104882, tzinfo=UTC)
PROCESS_LIMIT = (
    "master: Warning: service(pop3-login): process_limit (2) reached, "
    "client connections are being dropped"
)
FAILED_WITH_RESULT = "d9b373ed55a64feb8242e02dbe79a49c"
FAILED_TO_START = "be02cf6855d2428ba40df7e9d022f03d"

Entry = Mapping[str, str | bytes]


# -- writing journal files --------------------------------------------------------------------


def journal_remote() -> str:
    return require_program("systemd-journal-remote", "/lib/systemd/systemd-journal-remote")


def export(entries: list[Entry]) -> bytes:
    """Journal export format: ``KEY=value`` lines, binary-safe ``KEY\\n<le64><data>\\n`` for
    values with a newline or non-UTF-8 bytes, a blank line after each entry."""
    out = bytearray()
    for entry in entries:
        for key, value in entry.items():
            raw = value.encode("utf-8") if isinstance(value, str) else value
            if b"\n" in raw or isinstance(value, bytes):
                out += key.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
            else:
                out += key.encode() + b"=" + raw + b"\n"
        out += b"\n"
    return bytes(out)


def write_journal(path: Path, entries: list[Entry]) -> Path:
    """Write ``entries`` to a new journal file with systemd-journal-remote."""
    path.parent.mkdir(parents=True, exist_ok=True)  # it does not create directories
    proc = subprocess.run(
        [journal_remote(), "-o", str(path), "-"],
        input=export(entries),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"writing {len(entries)} entries".encode() in proc.stderr, proc.stderr
    return path


def at(seq: int) -> datetime:
    return T0 + timedelta(seconds=seq)


def entry(seq: int, message: str, **fields: str) -> dict[str, str | bytes]:
    """An entry ``seq`` seconds after T0 in one boot (realtime and monotonic both grow, as
    in a real journal: cursors of vanished files are found again by boot and monotonic)."""
    return {
        "__REALTIME_TIMESTAMP": str(usec(at(seq))),
        "__MONOTONIC_TIMESTAMP": str(5_000_000 + seq * 1_000_000),
        "_BOOT_ID": BOOT,
        "_HOSTNAME": "vm",
        "_TRANSPORT": "journal",
        "MESSAGE": message,
        **fields,
    }


def dovecot(seq: int, message: str = PROCESS_LIMIT) -> dict[str, str | bytes]:
    return entry(
        seq,
        message,
        _SYSTEMD_UNIT="dovecot.service",
        _COMM="dovecot",
        _EXE="/usr/sbin/dovecot",
        SYSLOG_IDENTIFIER="dovecot",
        _PID="812",
        _UID="0",
        PRIORITY="4",
    )


def spoof(seq: int) -> dict[str, str | bytes]:
    """``logger -t dovecot`` from a login session: the trusted fields tell."""
    return entry(
        seq,
        PROCESS_LIMIT,
        _SYSTEMD_UNIT="session-3.scope",
        _COMM="logger",
        _EXE="/usr/bin/logger",
        SYSLOG_IDENTIFIER="dovecot",
        _PID="4242",
        _UID="1000",
        PRIORITY="5",
    )


def pid1(seq: int, message: str, message_id: str, **fields: str) -> dict[str, str | bytes]:
    return entry(
        seq,
        message,
        _SYSTEMD_UNIT="init.scope",
        _COMM="systemd",
        _EXE="/usr/lib/systemd/systemd",
        SYSLOG_IDENTIFIER="systemd",
        _PID="1",
        _UID="0",
        PRIORITY="3",
        MESSAGE_ID=message_id,
        **fields,
    )


def incident() -> list[Entry]:
    return [
        entry(0, "pam_unix(cron:session): session opened", SYSLOG_IDENTIFIER="CRON"),
        dovecot(1),
        spoof(2),
        pid1(
            3,
            "Failed to start nginx.service - A high performance web server.",
            FAILED_TO_START,
            UNIT="nginx.service",
            JOB_RESULT="failed",
        ),
        pid1(
            4,
            "nginx.service: Failed with result 'exit-code'.",
            FAILED_WITH_RESULT,
            UNIT="nginx.service",
            UNIT_RESULT="exit-code",
        ),
        # logger -t systemd cannot fake PID 1
        entry(
            5,
            "backup.service: Failed with result 'exit-code'.",
            _SYSTEMD_UNIT="session-3.scope",
            _COMM="logger",
            SYSLOG_IDENTIFIER="systemd",
            _PID="4243",
        ),
    ]


# -- backends -----------------------------------------------------------------------------------


def require_reader() -> None:
    if not reader_available():
        message = (
            "python-systemd is not installed (make test installs the journal extra as root: "
            "see APT_PACKAGES)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["journalctl", "reader"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each journal backend in turn; also the default of ``scan --journal`` meanwhile."""
    require_program("journalctl")
    journal_remote()
    if request.param == "reader":
        require_reader()
    monkeypatch.setenv(BACKEND_ENV, request.param)
    return str(request.param)


def read_all(spec: JournalSpec, backend: str, **kw: object) -> tuple[list[bytes], list[Problem]]:
    problems: list[Problem] = []
    chunks = iter_journal(spec, problems.append, backend=backend, **kw)  # type: ignore[arg-type]
    data = b"".join(c.data for c in chunks)
    return data.splitlines(), problems


def scan_cli(*args: str) -> tuple[int, list[dict[str, object]], str]:
    result = CliRunner().invoke(main, ["scan", *args], catch_exceptions=False)
    found = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
    return result.exit_code, found, result.stderr


# -- commands -----------------------------------------------------------------------------------


def test_journal_command_shapes() -> None:
    since = datetime(2026, 11, 30, 9, 0, 0, 250, tzinfo=UTC)
    cmd = journal_command(directory="/srv/j", since=since, until=since + timedelta(hours=1))
    assert cmd[1:] == [
        "--output=json",
        "--all",
        "--no-pager",
        "--directory=/srv/j",
        "--since=@1796029200.000250",
        "--until=@1796032800.000250",
    ]
    cmd = journal_command(files=["/x/a*.journal", "/x/b.journal"], after_cursor="s=1", follow=True)
    assert cmd[4:] == [
        "--file=/x/a[*].journal",
        "--file=/x/b.journal",
        "--after-cursor=s=1",
        "--follow",
        "--no-tail",
        "--merge",
    ]
    # following this machine's journal: no --merge (it would add other machines' journals)
    assert journal_command(follow=True, lines=0)[4:] == ["--lines=0", "--follow"]
    with pytest.raises(UsageError):
        journal_command(directory="/d", files=["/f"])
    with pytest.raises(UsageError):
        journal_command(since=since, after_cursor="s=1")
    with pytest.raises(UsageError):
        journal_command(cursor="s=1", after_cursor="s=1")


def test_last_cursor_ignores_message_text() -> None:
    fake = {"MESSAGE": 'x "__CURSOR":"s=fake" y', "__CURSOR": "s=real;i=2"}
    line = json.dumps(fake, separators=(",", ":")).encode()
    assert last_cursor(b'{"__CURSOR":"s=first;i=1"}\n' + line + b"\n") == "s=real;i=2"
    assert last_cursor(b'{"MESSAGE":"no cursor"}\n') is None


def test_missing_journalctl_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="journalctl is not installed"):
        iter_journal(JournalSpec(files=("/x.journal",)), print, backend="journalctl")


def test_export_needs_only_a_realtime_timestamp(tmp_path: Path) -> None:
    """What systemd-journal-remote requires of export format (the helpers rely on it)."""
    require_program("journalctl")
    proc = subprocess.run(
        [journal_remote(), "-o", str(tmp_path / "a.journal"), "-"],
        input=b"MESSAGE=no time\n\nMESSAGE=timed\n__REALTIME_TIMESTAMP=1796027013104882\n\n",
        capture_output=True,
        check=False,
    )
    assert b"Entry is invalid, ignoring." in proc.stderr
    assert b"writing 1 entries" in proc.stderr
    lines, problems = read_all(JournalSpec(files=(str(tmp_path / "a.journal"),)), "journalctl")
    [obj] = [json.loads(x) for x in lines]
    assert obj["MESSAGE"] == "timed"
    # journalctl adds the cursor, the monotonic time and the boot id (zero when not given)
    assert obj["__MONOTONIC_TIMESTAMP"] == "0" and obj["_BOOT_ID"] == "0" * 32
    assert obj["__CURSOR"].startswith("s=") and not problems


# -- batch reads ----------------------------------------------------------------------------------


def test_reader_prints_what_journalctl_prints(tmp_path: Path) -> None:
    require_program("journalctl")
    require_reader()
    odd: list[Entry] = [
        entry(0, "tab\tand newline\nin one message", CODE_LINE="42"),
        entry(1, "bytes", MESSAGE=b"\x01\x02\xffbinary\nline", BLOB=b"\x00\x01"),
        entry(2, "escape \x1b[31m red", C1="a\u0085b", NONCHAR="a\ufdd0b", BOM="a\ufeffb"),
        {**entry(3, "repeated"), "DUP": "one"},
        entry(4, "x" * 70_000, BIG="y" * 5000, UNI="héllo ✓", QUOTE='a"b\\c'),
    ]
    export_data = export(odd[:3]) + export([odd[4]])
    # a field twice in one entry: export format allows it, journalctl prints a list
    export_data += export([odd[3]])[:-1] + b"DUP=two\n\n"
    path = tmp_path / "odd.journal"
    proc = subprocess.run(
        [journal_remote(), "-o", str(path), "-"], input=export_data, capture_output=True
    )
    assert b"writing 5 entries" in proc.stderr, proc.stderr
    spec = JournalSpec(files=(str(path),))
    by_journalctl, p1 = read_all(spec, "journalctl", max_line=1 << 20)
    by_reader, p2 = read_all(spec, "reader", max_line=1 << 20)
    assert not p1 and not p2
    assert len(by_reader) == len(by_journalctl) == 5
    assert [json.loads(x) for x in by_reader] == [json.loads(x) for x in by_journalctl]
    objs = [json.loads(x) for x in by_reader]
    assert objs[1]["MESSAGE"] == list(b"\x01\x02\xffbinary\nline")
    assert objs[2]["C1"] == list("a\u0085b".encode()) and objs[2]["BOM"] == "a\ufeffb"
    assert objs[4]["DUP"] == ["one", "two"] and len(objs[3]["MESSAGE"]) == 70_000


def test_problems_are_located_at_the_journal(tmp_path: Path, backend: str) -> None:
    good = write_journal(tmp_path / "d" / "good.journal", [dovecot(1)])
    big = write_journal(tmp_path / "big.journal", [entry(i, f"e{i}") for i in range(300)])
    (tmp_path / "d" / "cut.journal").write_bytes(big.read_bytes()[:300_000])
    # a truncated file inside a directory is skipped with a warning
    lines, problems = read_all(JournalSpec(directory=str(tmp_path / "d")), backend)
    assert len(lines) == 1
    assert [(p.kind, p.location.path) for p in problems] == [
        ("journal-warning", f"journal:{tmp_path / 'd'}")
    ]
    assert "cut.journal" in problems[0].detail
    # named files that cannot be opened fail the read, located at the read
    spec = JournalSpec(files=(str(good), str(tmp_path / "d" / "cut.journal")))
    lines, problems = read_all(spec, backend)
    assert lines == []
    assert [(p.kind, p.location.path) for p in problems] == [("journal-error", spec.display)]
    assert "No data available" in problems[0].detail
    lines, problems = read_all(JournalSpec(directory=str(tmp_path / "none")), backend)
    assert lines == [] and [p.kind for p in problems] == ["journal-error"]


def test_after_a_cursor_whose_file_was_vacuumed(tmp_path: Path, backend: str) -> None:
    """journalctl --after-cursor skips one entry blindly; reads after a cursor must not."""
    d = tmp_path / "journal"
    old = write_journal(d / "system@1.journal", [entry(i, f"m {i}") for i in range(3)])
    write_journal(d / "system@2.journal", [entry(i, f"m {i}") for i in range(3, 6)])
    spec = JournalSpec(directory=str(d))
    lines, _ = read_all(spec, backend)
    cursors = [json.loads(x)["__CURSOR"] for x in lines]
    lines, problems = read_all(spec, backend, after_cursor=cursors[1])
    assert [json.loads(x)["MESSAGE"] for x in lines] == ["m 2", "m 3", "m 4", "m 5"]
    old.unlink()
    lines, problems = read_all(spec, backend, after_cursor=cursors[2])
    assert [json.loads(x)["MESSAGE"] for x in lines] == ["m 3", "m 4", "m 5"]
    assert not problems
    # line numbers count the entries of the read
    engine = Engine(load_rules())
    records = list(engine.iter_journal_input(spec, ScanStats(), print, all_lines=True))
    assert [r.line for r in records if isinstance(r, Event)] == [1, 2, 3]


def test_events_keep_the_trusted_fields(tmp_path: Path, backend: str) -> None:
    path = write_journal(tmp_path / "x.journal", incident())
    engine = Engine(load_rules())
    stats = ScanStats()
    problems: list[Problem] = []
    spec = JournalSpec(files=(str(path),))
    records = list(engine.iter_journal_input(spec, stats, problems.append, all_lines=True))
    events = [r for r in records if isinstance(r, Event)]
    assert not problems and not [r for r in records if isinstance(r, (Unparsed, TimeMark))]
    assert [(e.line, e.source) for e in events] == [(n, f"journal:{path}") for n in range(1, 7)]
    genuine, fake = events[1], events[2]
    assert (genuine.program, genuine.pid, genuine.host, genuine.timestamp) == (
        "dovecot",
        812,
        "vm",
        at(1),
    )
    assert {k: genuine.fields[k] for k in ("_SYSTEMD_UNIT", "_COMM", "_PID", "_UID")} == {
        "_SYSTEMD_UNIT": "dovecot.service",
        "_COMM": "dovecot",
        "_PID": "812",
        "_UID": "0",
    }
    assert (fake.program, fake.fields["_COMM"], fake.fields["_SYSTEMD_UNIT"]) == (
        "dovecot",
        "logger",
        "session-3.scope",
    )
    assert events[4].fields["MESSAGE_ID"] == FAILED_WITH_RESULT
    assert events[4].fields["UNIT"] == "nginx.service"
    assert stats.formats == {"journal-json": 1}


# -- scan --journal ---------------------------------------------------------------------------------


def test_scan_journal_file(tmp_path: Path, backend: str) -> None:
    path = write_journal(tmp_path / "x.journal", incident())
    code, found, err = scan_cli("--journal", "--journal-file", str(path), "--format", "jsonl")
    assert code == 0, err
    got = sorted((f["rule"], f["source"], f["program"]) for f in found)
    assert got == [
        ("dovecot.process-limit-reached", f"journal:{path}:2", "dovecot"),
        ("systemd.unit-failed", f"journal:{path}:5", "systemd"),
    ]
    by_rule = {f["rule"]: f for f in found}
    assert by_rule["dovecot.process-limit-reached"]["fields"] == {
        "service": "pop3-login",
        "setting": "process_limit",
        "limit": "2",
    }
    assert by_rule["dovecot.process-limit-reached"]["timestamp"] == at(1).isoformat()
    assert by_rule["systemd.unit-failed"]["fields"]["unit"] == "nginx.service"
    assert "1 files, 6 lines" in err and "problems" not in err


def test_scan_journal_directory_and_paths_together(tmp_path: Path, backend: str) -> None:
    d = tmp_path / "journal"
    # two files whose entries interleave in time: the directory is read merged by time
    write_journal(d / "a.journal", [entry(0, "a0"), dovecot(2), entry(4, "a4")])
    write_journal(d / "b.journal", [entry(1, "b1"), entry(3, "b3")])
    syslog = tmp_path / "syslog"
    syslog.write_text("Nov 30 09:00:00 web dovecot: " + PROCESS_LIMIT + "\n", encoding="utf-8")
    code, found, err = scan_cli(
        str(syslog), "--journal-directory", str(d), "--format", "jsonl", "--tz", "UTC"
    )
    assert code == 0, err
    assert sorted((f["host"], f["source"]) for f in found) == [
        ("vm", f"journal:{d}:3"),
        ("web", f"{syslog}:1"),
    ]
    assert "2 files, 6 lines" in err


def test_scan_journal_since_until(tmp_path: Path, backend: str) -> None:
    # one warning every 2 hours: each is its own finding (suppression folds per hour)
    hours = [dovecot(h * 7200) for h in range(5)]  # T0, +2h, +4h, +6h, +8h
    path = write_journal(tmp_path / "x.journal", hours)
    since = at(7200).isoformat()
    until = at(3 * 7200).isoformat()  # exactly the +6h entry: --until is exclusive
    code, found, err = scan_cli(
        "--journal-file", str(path), "--since", since, "--until", until, "--format", "jsonl"
    )
    assert code == 0, err
    assert [f["timestamp"] for f in found] == [at(7200).isoformat(), at(2 * 7200).isoformat()]
    # journalctl got the bounds too: line numbers count only the entries it returned
    assert [f["source"] for f in found] == [f"journal:{path}:1", f"journal:{path}:2"]
    assert "3 lines" in err and "1 outside --since/--until" in err


def test_scan_without_path_reads_only_the_journal(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_journal(tmp_path / "x.journal", [dovecot(1)])
    monkeypatch.setattr("pipeline.cli.DEFAULT_PATHS", (str(tmp_path / "nothing*"),))
    code, found, err = scan_cli("--journal-file", str(path), "--format", "jsonl")
    assert code == 0 and len(found) == 1, err
    code, _, err = scan_cli("--journal-file", str(tmp_path / "missing.journal"))
    assert code == 2 and "does not exist" in err


# -- following ----------------------------------------------------------------------------------------


def collect(
    follower: JournalFollower, want: int, timeout: float = 8.0, max_bytes: int = 1 << 20
) -> list[dict[str, object]]:
    """Poll until ``want`` entries arrived (or the time is up); check cursor bookkeeping."""
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        data = follower.poll(max_bytes)
        if not data:
            time.sleep(0.05)
            continue
        assert data.endswith(b"\n")
        objs = [json.loads(x) for x in data.splitlines()]
        assert follower.cursor == objs[-1]["__CURSOR"]
        got.extend(objs)
    return got


def messages(objs: list[dict[str, object]]) -> list[object]:
    return [o["MESSAGE"] for o in objs]


def quiet(follower: JournalFollower, seconds: float = 0.4) -> None:
    """Nothing more arrives."""
    time.sleep(seconds)
    assert follower.poll() == b""


@pytest.fixture
def follow(backend: str) -> Iterator[Callable[..., JournalFollower]]:
    opened: list[JournalFollower] = []

    def start(spec: JournalSpec, **kw: object) -> JournalFollower:
        f = JournalFollower(spec, backend=backend, **kw)  # type: ignore[arg-type]
        opened.append(f)
        return f

    yield start
    for f in opened:
        f.close()


def test_follower_sees_new_files(tmp_path: Path, follow: Callable[..., JournalFollower]) -> None:
    d = tmp_path / "journal"
    write_journal(d / "old.journal", [entry(0, "old 0"), entry(1, "old 1")])
    spec = JournalSpec(directory=str(d))
    tail = follow(spec)  # from the newest entry on
    everything = follow(spec, from_start=True)
    quiet(tail)
    write_journal(d / "new.journal", [entry(i, f"new {i}") for i in range(2, 5)])
    got = collect(tail, 3)
    assert messages(got) == ["new 2", "new 3", "new 4"]
    stamps = [int(str(o["__REALTIME_TIMESTAMP"])) for o in got]
    assert stamps == sorted(stamps) and len({o["__CURSOR"] for o in got}) == 3
    assert messages(collect(everything, 5)) == ["old 0", "old 1", "new 2", "new 3", "new 4"]
    quiet(tail)
    quiet(everything, 0)
    # a later follower starting after a saved cursor sees exactly what came after it
    later = follow(spec, after_cursor=got[0]["__CURSOR"])
    assert messages(collect(later, 2)) == ["new 3", "new 4"]
    quiet(later)
    timed = follow(spec, since=at(1))
    assert messages(collect(timed, 4)) == ["old 1", "new 2", "new 3", "new 4"]
    quiet(timed)
    assert tail.restarts == 0 and not tail.take_problems()


def test_follower_hands_out_whole_lines_within_max_bytes(
    tmp_path: Path, follow: Callable[..., JournalFollower]
) -> None:
    d = tmp_path / "journal"
    write_journal(d / "a.journal", [entry(i, f"message {i} " + "z" * 100) for i in range(40)])
    f = follow(JournalSpec(directory=str(d)), from_start=True)
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + 8
    while len(got) < 40 and time.monotonic() < deadline:
        data = f.poll(1500)
        if not data:
            time.sleep(0.05)
            continue
        assert data.endswith(b"\n") and (len(data) <= 1500 or data.count(b"\n") == 1)
        got.extend(json.loads(x) for x in data.splitlines())
        assert f.cursor == got[-1]["__CURSOR"]
    assert messages(got) == [f"message {i} " + "z" * 100 for i in range(40)]


@pytest.mark.parametrize("backend", ["journalctl"], indirect=True)  # the one with a subprocess
def test_follower_restarts_after_the_last_cursor(
    tmp_path: Path, backend: str, follow: Callable[..., JournalFollower]
) -> None:
    d = tmp_path / "journal"
    write_journal(d / "a.journal", [entry(i, f"a {i}") for i in range(3)])
    f = follow(JournalSpec(directory=str(d)), from_start=True, min_backoff=0.5)
    assert messages(collect(f, 3)) == ["a 0", "a 1", "a 2"]
    deadline = time.monotonic() + 5
    while f.pid is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first = f.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # written while journalctl is down: read after the restart, once
    write_journal(d / "b.journal", [entry(i, f"b {i}") for i in range(3, 6)])
    got = collect(f, 3)
    assert messages(got) == ["b 3", "b 4", "b 5"]
    quiet(f)
    assert f.restarts == 1 and f.pid not in (None, first)
    [problem] = f.take_problems()
    assert problem.kind == "journal-error" and "killed by signal 9" in problem.detail
    assert problem.location.path == f"journal:{d}"


def test_follower_survives_rotation_and_vacuum(
    tmp_path: Path, backend: str, follow: Callable[..., JournalFollower]
) -> None:
    d = tmp_path / "journal"
    first = write_journal(d / "system@1.journal", [entry(i, f"m {i}") for i in range(3)])
    f = follow(JournalSpec(directory=str(d)), from_start=True, min_backoff=0.2)
    got = collect(f, 3)
    # rotate: a new file takes over, then the old one is vacuumed
    second = write_journal(d / "system@2.journal", [entry(i, f"m {i}") for i in range(3, 6)])
    first.unlink()
    got += collect(f, 3)
    third = write_journal(d / "system@3.journal", [entry(i, f"m {i}") for i in range(6, 9)])
    second.unlink()
    got += collect(f, 3)
    if backend == "journalctl":
        # a restart whose cursor lies in a vacuumed file finds its place by boot and time
        pid = f.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        write_journal(d / "system@4.journal", [entry(i, f"m {i}") for i in range(9, 11)])
        third.unlink()
        got += collect(f, 2)
        assert f.restarts == 1
    else:
        write_journal(d / "system@4.journal", [entry(i, f"m {i}") for i in range(9, 11)])
        third.unlink()
        got += collect(f, 2)
    quiet(f)
    assert messages(got) == [f"m {i}" for i in range(11)]
