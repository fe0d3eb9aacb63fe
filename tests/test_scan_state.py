"""``scan --state`` reads only what earlier scans did not: as a daily cron over a rotated
``mail.log`` would run it, with real ``logrotate`` rotating (``create``, ``compress`` with and
without ``delaycompress``, ``copytruncate``) between the runs.

The log is the mail sample (``mail.log.1`` then ``mail.log``), written in three pieces: the
first run reads piece A, B is appended, logrotate rotates, C goes to the new file, and the
second run must read exactly B and C; a third run reads nothing. The findings of all runs
together (a later version of a key replaces the earlier one) must be those of one fresh
``--state`` scan over the final files: nothing lost, nothing repeated, the same counts and
the real line numbers. Times are read with ``--year 2026 --tz UTC`` (logrotate's archives
get the current time as mtime).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.parallel import DaskRunner, ProcessRunner
from pipeline.resume import STATE_SOURCE
from pipeline.state import StateDB
from tests.conftest import IN_CI, REPO, SAMPLES, logrotate

MAIL = [
    *(SAMPLES / "mail" / "mail.log.1").read_text().splitlines(keepends=True),
    *(SAMPLES / "mail" / "mail.log").read_text().splitlines(keepends=True),
]
#: the end of piece A: after the last "Initial status notification" line, so a sequence
#: begun in the first run ends in the second
CUT_A = max(i for i, x in enumerate(MAIL[:345]) if "Initial status notification" in x) + 1
CUT_B = 345  # B: the rest of the old mail.log.1; C: mail.log


@dataclass
class Run:
    findings: list[dict[str, Any]]
    lines: int
    problems: list[str]
    err: str


def scan(state: Path, *paths: Path | str, runner: object = None) -> Run:
    args = ["scan", "--tz", "UTC", "--year", "2026", "--format", "jsonl"]
    args += ["--state", str(state), *map(str, paths)]
    if runner is None:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    else:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("pipeline.parallel.runner_for", lambda *a: runner)
            result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    counts = re.search(r"counts: .*?(\d+) lines,", result.stderr)
    assert counts, result.stderr
    problems = [x.strip() for x in result.stderr.splitlines() if x.startswith("  ")]
    found = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
    assert len({f["key"] for f in found}) == len(found), "a key twice in one run"
    return Run(found, int(counts[1]), problems, result.stderr)


def line_of(f: dict[str, Any]) -> int:
    return int(f["source"].rsplit(":", 1)[1])


def essentials(f: dict[str, Any]) -> tuple[Any, ...]:
    return (f["rule"], f["count"], f["last_seen"], f["fields"], line_of(f))


def merged(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """The findings of ``runs`` by key; a key reported again must have changed."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        for f in run.findings:
            before = out.get(f["key"])
            assert before is None or essentials(before) != essentials(f), f"repeated: {f}"
            out[f["key"]] = f
    return out


def assert_one_pass(runs: list[Run], reference: Run) -> None:
    """All runs together are one pass: same keys, counts, fields and line numbers; findings
    first reported after the first run name the file they are in now."""
    together = merged(runs)
    want = {f["key"]: f for f in reference.findings}
    assert sorted(together) == sorted(want), (
        f"lost {sorted(set(want) - set(together))}, extra {sorted(set(together) - set(want))}"
    )
    for key, f in together.items():
        assert essentials(f) == essentials(want[key]), (f, want[key])
    first = {f["key"] for f in runs[0].findings}
    for run in runs[1:]:
        for f in run.findings:
            if f["key"] not in first:
                assert f["source"] == want[f["key"]]["source"]


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(lines)


# -- real logrotate ------------------------------------------------------------------------------

MODES = {
    "create": "create",
    "compress": "compress\n    create",
    "compress+delaycompress": "compress\n    delaycompress\n    create",
    "copytruncate": "copytruncate",
}


def rotate(log: Path, mode: str) -> None:
    directives = f"rotate 9\nmissingok\n{MODES[mode]}"
    logrotate(log.parent.parent, [log], directives, name=f"logrotate-{mode}")


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "logs"
    d.mkdir()
    yield d


CASES = [
    ("create", 1),
    ("compress", 1),
    ("compress+delaycompress", 1),
    ("compress+delaycompress", 2),  # the file read last is compressed by the second
    ("compress", 2),
    ("copytruncate", 1),  # the copy holds the rest; the same inode starts again
]


@pytest.mark.parametrize("named", ["path", "glob"])
@pytest.mark.parametrize(("mode", "rotations"), CASES)
def test_cron_over_a_rotated_log_reads_each_line_once(
    mode: str, rotations: int, named: str, logs: Path, tmp_path: Path
) -> None:
    """run 1 / new lines / rotate / new lines / run 2 / run 3 (nothing new). ``path``: the
    cron names ``mail.log`` only, the rest of the file read before is found among its
    rotated files; ``glob``: it names ``mail.log*``."""
    log = logs / "mail.log"
    state = tmp_path / "scan.sqlite"
    target = log if named == "path" else f"{log}*"
    log.write_text("".join(MAIL[:CUT_A]))
    first = scan(state, target)
    assert first.lines == CUT_A

    append(log, MAIL[CUT_A:CUT_B])
    rotate(log, mode)
    if rotations == 2:
        cut = CUT_B + (len(MAIL) - CUT_B) // 2
        append(log, MAIL[CUT_B:cut])
        rotate(log, mode)
        append(log, MAIL[cut:])
    else:
        append(log, MAIL[CUT_B:])
    archives = sorted(p.name for p in logs.iterdir() if p.name.endswith(".gz"))
    if mode == "compress":
        assert archives == ["mail.log.1.gz", "mail.log.2.gz"][:rotations]
    elif mode == "compress+delaycompress":
        assert archives == ([] if rotations == 1 else ["mail.log.2.gz"])
    second = scan(state, target)
    assert second.lines == len(MAIL) - CUT_A, second.err
    third = scan(state, target)
    assert third.findings == []
    assert third.lines == 0
    for run in (first, second, third):
        assert not [p for p in run.problems if "state-reset" in p or "partial-line" in p]

    reference = scan(tmp_path / "fresh.sqlite", f"{log}*")
    assert reference.lines == len(MAIL)
    assert_one_pass([first, second, third], reference)
    # the sequence begun in the first run ends in the second, and the line numbers of the
    # second run are those of the files it read
    assert [f["rule"] for f in first.findings].count("dovecot.silent-stop") == 0
    assert [f["rule"] for f in second.findings].count("dovecot.silent-stop") == 1
    assert second.findings and all(line_of(f) > 0 for f in second.findings)


def test_a_second_run_over_the_same_file_adds_nothing(logs: Path, tmp_path: Path) -> None:
    """The report: a second run over an unchanged mail.log turned a count of 1 into 20."""
    log = logs / "mail.log"
    log.write_text("".join(MAIL[CUT_B:]))
    state = tmp_path / "scan.sqlite"
    first = scan(state, log)
    assert first.findings
    again = scan(state, log)
    assert again.findings == []
    assert again.lines == 0
    assert f"--state: {len(MAIL) - CUT_B} lines of 1 files read by earlier scans skipped" in (
        again.err
    )


def test_a_file_since_left_out_is_not_taken_as_read(logs: Path, tmp_path: Path) -> None:
    """A file --since rules out (written before it) is not read, so it keeps no position:
    a later run without --since reads it from its first line."""
    log = logs / "mail.log"
    log.write_text("".join(MAIL[:CUT_B]))
    old = 1_600_000_000  # 2020-09-13, before --since
    os.utime(log, (old, old))
    state = tmp_path / "scan.sqlite"
    skipped = scan(state, log, "--since", "2021-01-01")
    assert skipped.lines == 0 and skipped.findings == []
    append(log, MAIL[CUT_B : CUT_B + 1])
    later = scan(state, log)
    assert later.lines == CUT_B + 1
    reference = scan(tmp_path / "fresh.sqlite", log)
    assert {f["key"]: essentials(f) for f in later.findings} == {
        f["key"]: essentials(f) for f in reference.findings
    }


def test_a_pipe_is_read_whole_and_keeps_no_position(logs: Path, tmp_path: Path) -> None:
    """A pipe (``<(zcat mail.log.2.gz)``) is no file to resume: its data is read, not taken
    by a fingerprint first, and it keeps no position."""
    log = logs / "mail.log"
    log.write_text("".join(MAIL[CUT_B:]))
    state = tmp_path / "scan.sqlite"
    cmd = (
        f"{shlex.quote(sys.executable)} -m pipeline.cli scan --tz UTC --year 2026 "
        f"--format jsonl --state {shlex.quote(str(state))} <(cat {shlex.quote(str(log))})"
    )
    res = subprocess.run(
        ["bash", "-c", cmd], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    reference = scan(tmp_path / "fresh.sqlite", log)
    assert f" {reference.lines} lines," in res.stderr
    assert len(res.stdout.splitlines()) == len(reference.findings)
    with StateDB(state) as db:
        saved = db.source_states().get(STATE_SOURCE)
    assert saved is not None and saved[0]["inputs"] == []


def test_lines_appended_later_are_read_alone_with_their_line_numbers(
    logs: Path, tmp_path: Path
) -> None:
    log = logs / "mail.log"
    log.write_text("".join(MAIL[:CUT_A]))
    state = tmp_path / "scan.sqlite"
    first = scan(state, log)
    append(log, MAIL[CUT_A:CUT_B])
    with open(log, "ab") as f:
        f.write(b"Nov 29 23:59:59 mx1 postfix/smtpd[1]: bad \xff byte\n")
    later = scan(state, log)
    assert later.lines == CUT_B - CUT_A + 1
    new = [f for f in later.findings if f["key"] not in {g["key"] for g in first.findings}]
    assert new and min(line_of(f) for f in new) > CUT_A
    # problems too are located at the file's own line numbers
    assert f"{log}:{CUT_B + 1}:43: invalid-utf8: undecodable bytes shown as U+FFFD" in (
        later.problems
    )
    reference = scan(tmp_path / "fresh.sqlite", log)
    assert_one_pass([first, later], reference)


def test_a_truncated_or_replaced_file_is_read_from_its_start(logs: Path, tmp_path: Path) -> None:
    log = logs / "mail.log"
    state = tmp_path / "scan.sqlite"
    log.write_text("".join(MAIL[:CUT_A]))
    scan(state, log)
    # what a scan reads of the new content when the first file was another one
    elsewhere = logs / "old" / "mail.log"
    elsewhere.parent.mkdir()
    shutil.copyfile(log, elsewhere)
    scan(tmp_path / "other.sqlite", elsewhere)

    log.write_text("".join(MAIL[CUT_B:]))  # the same inode, another first line
    truncated = scan(state, log)
    (problem,) = [p for p in truncated.problems if "state-reset" in p]
    assert problem.startswith(f"{log}: state-reset: was truncated or replaced")
    assert f"(read then to line {CUT_A})" in problem
    fresh = scan(tmp_path / "other.sqlite", log)
    assert truncated.lines == fresh.lines == len(MAIL) - CUT_B
    assert truncated.findings  # the sequence begun in the first file ends here
    assert [essentials(f) for f in truncated.findings] == [essentials(f) for f in fresh.findings]

    # another file at the path, and the one read before is not among its rotated files
    log.rename(logs / "old" / "kept")
    log.write_text("".join(MAIL[:CUT_A]))
    replaced = scan(state, log)
    (problem,) = [p for p in replaced.problems if "state-reset" in p]
    assert "is not the file the last scan with this --state read" in problem
    assert replaced.lines == CUT_A
    assert scan(state, log).lines == 0


def test_an_archive_shorter_than_what_was_read_is_read_from_its_start(
    logs: Path, tmp_path: Path
) -> None:
    """Same first line, compressed, but shorter than the part read before: not that file."""
    log = logs / "mail.log"
    state = tmp_path / "scan.sqlite"
    log.write_text("".join(MAIL[:CUT_B]))
    scan(state, log)
    log.unlink()
    with gzip.open(logs / "mail.log.1.gz", "wt") as g:
        g.write("".join(MAIL[:40]))
    log.write_text("")
    run = scan(state, log)
    (problem,) = [p for p in run.problems if "state-reset" in p]
    assert problem.startswith(f"{logs / 'mail.log.1.gz'}: state-reset: holds ")
    assert run.lines == 40


def test_an_unterminated_last_line_waits_for_the_next_run(logs: Path, tmp_path: Path) -> None:
    log = logs / "mail.log"
    state = tmp_path / "scan.sqlite"
    text = "".join(MAIL[CUT_B:])
    half = text.index("\n", len(text) // 2) + 1
    log.write_text(text[:half] + "Nov 29 0")  # a writer in the middle of a line
    first = scan(state, log)
    assert f"{log}: partial-line: the last line has no newline yet" in "\n".join(first.problems)
    assert first.lines == text[:half].count("\n")
    with open(log, "r+", encoding="utf-8") as f:
        f.write(text)  # the same inode: the line completed, more lines after it
    second = scan(state, log)
    assert second.lines == text.count("\n") - text[:half].count("\n")
    reference = scan(tmp_path / "fresh.sqlite", log)
    assert_one_pass([first, second], reference)


def test_an_archive_of_a_file_read_to_its_end_is_not_decompressed(
    logs: Path, tmp_path: Path
) -> None:
    """logrotate compresses mail.log after a run read all of it: the next run takes the
    archive as read from its gzip trailer (ISIZE, the length) without decompressing it.
    Observable: the archive's compressed data is cut in the middle (its head and trailer
    kept), which decompressing would report."""
    log = logs / "mail.log"
    state = tmp_path / "scan.sqlite"
    log.write_text("".join(MAIL[:CUT_B]))
    assert scan(state, log).lines == CUT_B
    rotate(log, "compress")
    archive = logs / "mail.log.1.gz"
    packed = archive.read_bytes()
    with gzip.open(archive) as g:
        assert g.read() == "".join(MAIL[:CUT_B]).encode()  # logrotate's own gzip
    archive.write_bytes(packed[: len(packed) * 3 // 4] + packed[-8:])
    # the rotated generation found by the path, then both named (the mark is the archive's)
    for paths, files in (([log], 1), ([log, archive], 2)):
        run = scan(state, *paths)
        assert run.lines == 0
        assert run.findings == []
        assert run.problems == []
        assert f"--state: {CUT_B} lines of {files} files read by earlier scans skipped" in run.err
    with StateDB(state) as db:
        saved = db.source_states()[STATE_SOURCE][0]["inputs"]
    (mark,) = [m for m in saved if m["path"] == str(archive)]
    assert mark["compressed"] and mark["line"] == CUT_B
    assert mark["ino"] == archive.stat().st_ino


def test_an_archive_of_several_gzip_members_is_decompressed_to_be_skipped(
    logs: Path, tmp_path: Path
) -> None:
    """In a multi-member archive the trailer holds the last member's length only; here it
    equals what was read, but the archive holds more: it is decompressed and the rest read."""
    log = logs / "mail.log"
    state = tmp_path / "scan.sqlite"
    log.write_text("".join(MAIL[:CUT_A]))
    first = scan(state, log)
    read = len("".join(MAIL[:CUT_A]).encode())
    whole = "".join(MAIL[:CUT_B]).encode()
    split = len(whole) - read  # the last member is as long as what was read
    log.unlink()
    archive = logs / "mail.log.1.gz"
    archive.write_bytes(gzip.compress(whole[:split]) + gzip.compress(whole[split:]))
    assert int.from_bytes(archive.read_bytes()[-4:], "little") == read
    log.write_text("")
    second = scan(state, log)
    assert second.problems == []
    assert second.lines == CUT_B - CUT_A
    reference = scan(tmp_path / "fresh.sqlite", archive)
    assert_one_pass([first, second], reference)


def dask_or_skip() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("dask.distributed is missing; the dev extra must install it")
        pytest.skip("dask.distributed is not installed (pip install logwarden[dask])")


@pytest.mark.parametrize("where", ["processes", "dask"])
def test_a_resumed_scan_with_workers_finds_what_one_process_finds(
    where: str, logs: Path, tmp_path: Path
) -> None:
    """The new lines are cut into byte ranges of 1-3 KiB: the first one starts where the
    last run stopped."""
    if where == "dask":
        dask_or_skip()
    log = logs / "mail.log"
    log.write_text("".join(MAIL[:CUT_A]))
    scan(tmp_path / "one.sqlite", log)
    shutil.copyfile(tmp_path / "one.sqlite", tmp_path / "many.sqlite")
    append(log, MAIL[CUT_A:])
    runner = (
        ProcessRunner(2, part_size=1024)
        if where == "processes"
        else DaskRunner(None, workers=2, part_size=3000)
    )
    many = scan(tmp_path / "many.sqlite", log, runner=runner)
    one = scan(tmp_path / "one.sqlite", log)
    assert many.findings == one.findings
    assert many.lines == one.lines == len(MAIL) - CUT_A
    assert many.problems == one.problems
    # and both saved the same positions: a third run reads nothing in either
    assert scan(tmp_path / "many.sqlite", log, runner=runner).lines == 0
    assert scan(tmp_path / "one.sqlite", log).lines == 0


def test_corrupt_positions_in_the_state_are_an_error(logs: Path, tmp_path: Path) -> None:
    from pipeline.resume import STATE_SOURCE
    from pipeline.state import StateDB

    log = logs / "mail.log"
    log.write_text("".join(MAIL[:CUT_A]))
    state = tmp_path / "scan.sqlite"
    with StateDB(state) as db:
        db.checkpoint(
            detector=None, sources={STATE_SOURCE: ({"inputs": [{"path": 1}]}, {})}, findings=[]
        )
    args = ["scan", "--tz", "UTC", "-q", "--state", str(state), str(log)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert f"logwarden: error: {state}: the positions of scanned files are corrupt" in result.stderr
