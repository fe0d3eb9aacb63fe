"""The block path (pipeline.block) against the line path: the same findings, counts and
problems on the samples, the corpora, the bench lines and inputs made to be awkward.

Every comparison scans the same input twice, once with ``ScanOptions(block_path=False)``,
and compares everything a scan returns: the findings in emission order (each as
``Finding.as_dict()``, key and occurrence included), the counts, the located problems and
the detector's counts; and the JSON lines the block path writes from its columns against
``json`` over the line path's findings.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zlib
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import engine as engine_module
from pipeline.block import TableView
from pipeline.cli import write_findings
from pipeline.detection.correlate import Detector
from pipeline.detection.loader import load_rules
from pipeline.engine import Engine, ScanOptions
from pipeline.model import Severity
from pipeline.output.digest import digest
from pipeline.sources.files import iter_chunks
from tests.conftest import REPO, SAMPLES, bench_lines, shared_path

RULES_YAML = r"""
rules:
  - id: t.sshd-failed
    title: Failed password
    severity: medium
    description: d
    remediation: r
    select:
      program: sshd
    match:
      message:
        regex: '^Failed password for (?:invalid user )?(?P<user>\S+) from (?P<addr>[0-9.]+)'
    examples:
      match:
        - 'Jan  1 00:00:00 h sshd[1]: Failed password for root from 192.0.2.1 port 22'
      no_match:
        - 'Jan  1 00:00:00 h sshd[1]: Accepted password for root from 192.0.2.1'
  - id: t.any-error
    title: An error anywhere
    severity: low
    description: d
    remediation: r
    match:
      message:
        regex: '(?i)\berror\b'
    examples:
      match:
        - 'Jan  1 00:00:00 h app[1]: an Error happened'
      no_match:
        - 'Jan  1 00:00:00 h app[1]: errors happened'
  - id: t.glob-program
    title: A program by glob
    severity: high
    description: d
    remediation: r
    select:
      program: ['postfix/*', 'dovecot']
    match:
      message:
        regex: 'warning|reject'
    examples:
      match:
        - 'Jan  1 00:00:00 h postfix/smtpd[1]: warning: x'
      no_match:
        - 'Jan  1 00:00:00 h postfix[1]: warning: x'
  - id: t.lookahead
    title: Python re only (look-ahead)
    severity: low
    description: d
    remediation: r
    select:
      program: kernel
    match:
      message:
        regex: '^usb (?!1-1)\d{1,3}-\d{1,3}'
    examples:
      match:
        - 'Jan  1 00:00:00 h kernel: usb 2-1: new device'
      no_match:
        - 'Jan  1 00:00:00 h kernel: usb 1-1: new device'
  - id: t.cron
    title: Cron, no captures
    severity: info
    description: d
    remediation: r
    select:
      program: [CRON, cron]
    match:
      message:
        regex: 'CMD|session opened'
    examples:
      match:
        - 'Jan  1 00:00:00 h CRON[1]: (root) CMD (true)'
      no_match:
        - 'Jan  1 00:00:00 h crond[1]: (root) CMD (true)'
  - id: t.unicode
    title: Non-ASCII text
    severity: low
    description: d
    remediation: r
    match:
      message:
        regex: 'ü|é|�'
    examples:
      match:
        - 'Jan  1 00:00:00 h app[1]: café'
      no_match:
        - 'Jan  1 00:00:00 h app[1]: cafe'
  - id: t.silent
    title: Reports nothing
    severity: low
    description: d
    remediation: r
    report: false
    match:
      message:
        regex: 'session'
    examples:
      match:
        - 'Jan  1 00:00:00 h app[1]: session opened'
      no_match:
        - 'Jan  1 00:00:00 h app[1]: nothing'
"""


@pytest.fixture(autouse=True)
def columns_for_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks with few candidates are read on the line path; these small inputs would
    all be: here every block is read as columns (one test below keeps the threshold)."""
    from pipeline import block

    monkeypatch.setattr(block, "FEW_CANDIDATES", 0)
    # and never handed to the line path for being dense
    monkeypatch.setattr(block, "UNKNOWN_IS_DENSE", False)
    monkeypatch.setattr(block, "DENSE", 2.0)


@pytest.fixture(autouse=True, params=["held", "on-disk"])
def findings_held_or_on_disk(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Every comparison twice: with the findings held in memory, and with every part of
    them written to a sorted run on disk at once and merged back in batches of 3 rows."""
    from pipeline import block

    if request.param == "on-disk":
        monkeypatch.setattr(block, "HOLD_BYTES", 1)
        monkeypatch.setattr(block, "BATCH_ROWS", 3)
    return str(request.param)


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    d = tmp_path_factory.mktemp("rules")
    (d / "t.yaml").write_text(RULES_YAML, encoding="utf-8")
    loaded = load_rules([d], builtin=False)
    assert Detector(loaded).column_rules() is not None
    return loaded


def builtin_column_rules() -> list[Any]:
    """The built-in rules the block path takes (the others need events)."""
    return [
        r
        for r in load_rules()
        if r.kind == "line" and r.message_search() is not None and not r.suppress and not r.enrich
    ]


def scan_both(rules: list[Any], paths: list[str], **options: Any) -> tuple[Any, Any]:
    block = Engine(rules, ScanOptions(**options)).scan(paths)
    line = Engine(rules, ScanOptions(block_path=False, **options)).scan(paths)
    return block, line


def assert_same(block: Any, line: Any) -> None:
    assert isinstance(block.findings, TableView), "the block path did not run"
    assert not isinstance(line.findings, TableView)
    assert [f.as_dict() for f in block.findings] == [f.as_dict() for f in line.findings]
    assert block.stats.as_dict() | {"seconds": 0} == line.stats.as_dict() | {"seconds": 0}
    assert [str(p) for p in block.problems] == [str(p) for p in line.problems]
    assert block.problems_omitted == line.problems_omitted
    assert block.detection == line.detection
    # the JSON lines written from the columns, in the scan's output order
    view = block.findings.sorted_view()
    ordered = sorted(
        line.findings,
        key=lambda f: (f.timestamp.timestamp() if f.timestamp else float("-inf"), f.source, f.line),
    )
    assert [f.key for f in view] == [f.key for f in ordered]
    fast, slow = io.StringIO(), io.StringIO()
    write_findings(view, "jsonl", fast)
    write_findings(ordered, "jsonl", slow)
    assert fast.getvalue() == slow.getvalue()
    # the digest read from the columns, as the terminal shows it
    assert digest(view) == digest(list(ordered))
    assert digest(view.at_least(Severity.MEDIUM)) == digest(
        [f for f in ordered if f.severity >= Severity.MEDIUM]
    )


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix not in (".yaml", ".md"))


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: str(p.relative_to(SAMPLES)))
def test_samples(rules: list[Any], path: Path) -> None:
    for rule_set in (rules, builtin_column_rules()):
        assert_same(*scan_both(rule_set, [str(path)]))


def test_sample_directories_scanned_together(rules: list[Any]) -> None:
    for directory in ("mail", "syslog"):
        assert_same(*scan_both(rules, [str(SAMPLES / directory)]))


def test_bench_rules_on_generated_lines(tmp_path: Path) -> None:
    out = bench_lines(tmp_path / "syslog", 30000)
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import peers
    finally:
        sys.path.remove(str(REPO / "bench"))
    rule_dir = tmp_path / "rules"
    rule_dir.mkdir()
    peers.write_rules(rule_dir, 30)
    peer_rules = load_rules([rule_dir], builtin=False)
    block, line = scan_both(peer_rules, [str(out)])
    assert len(block.findings) > 1000
    assert_same(block, line)


def test_loghub_corpus(rules: list[Any]) -> None:
    corpus = shared_path("corpus", "loghub")
    files = sorted(p for p in corpus.rglob("*.log") if p.stat().st_size < 20_000_000)
    assert files, f"no .log files under {corpus}"
    for path in files:
        assert_same(*scan_both(rules, [str(path)]))


def awkward_lines() -> bytes:
    """Lines the block path must read as the line path does: see each comment."""
    lines = [
        b"Dec 31 23:59:58 web1 sshd[1]: Failed password for root from 192.0.2.1 port 22",
        # New Year: the year inference must see the same times in the same order
        b"Jan  1 00:00:01 web1 sshd[2]: Failed password for invalid user bob from 192.0.2.2",
        # identical lines within one second: occurrences 0, 1, 2
        b"Jan  1 00:00:02 web1 CRON[3]: (root) CMD (run-parts /etc/cron.hourly)",
        b"Jan  1 00:00:02 web1 CRON[3]: (root) CMD (run-parts /etc/cron.hourly)",
        b"Jan  1 00:00:02 web1 CRON[3]: (root) CMD (run-parts /etc/cron.hourly)",
        b"Jan  1 00:00:03 web2 CRON[3]: (root) CMD (run-parts /etc/cron.hourly)",
        # a line out of order repeats an earlier finding's key: it replaces it in place
        b"Jan  1 00:00:02 web1 CRON[3]: (root) CMD (run-parts /etc/cron.hourly)",
        # rsyslog's repeats: the inner message matches, the count is 5
        b"Jan  1 00:00:04 web1 sshd[4]: message repeated 5 times: [ Failed password for "
        b"root from 192.0.2.4 port 22 ssh2]",
        # invalid UTF-8 and non-ASCII text
        b"Jan  1 00:00:05 web1 kernel: usb 2-1: error \xff\xfe bad bytes",
        "Jan  1 00:00:06 web1 app[9]: Müller said error: café".encode(),
        # a NUL byte inside a line, and a run of them before the next record
        b"Jan  1 00:00:07 web1 app[9]: error with \x00 inside",
        b"\x00" * 40 + b"Jan  1 00:00:08 web1 app[9]: error after a NUL run",
        # comments and blank lines among candidates
        b"# error in a comment",
        b"   ",
        b"",
        # a line the fast path does not take (RFC 3339 in a syslog file, <PRI>, host-less)
        b"2026-01-01T00:00:09.123456+01:00 web1 sshd[5]: Failed password for eve from 192.0.2.5",
        b"<13>Jan  1 00:00:10 web1 app: an error with a priority",
        b"Jan  1 00:00:11 app[7]: error without a host",
        b"Jan  1 00:00:12 web1 postfix/smtpd[8]: warning: hostname does not resolve",
        b"Jan  1 00:00:12 web1 dovecot: imap-login: reject this",
        b"Jan  1 00:00:13 web1 kernel: usb 1-1: new device, usb 3-2 too, error",
        # not a line of any known format, with a candidate word
        b"garbage line with error in it",
        # a date that does not exist
        b"Feb 30 00:00:14 web1 app[9]: error on a day that never was",
        b"Jan  1 00:00:15 web1 app[9]: session opened for user root error",
        b"Jan  1 00:00:16 web1 app[9]: " + b"x" * 600 + b" error at the end of a long message",
    ]
    return b"\n".join(lines) + b"\n"


def test_awkward_lines(rules: list[Any], tmp_path: Path) -> None:
    path = tmp_path / "syslog"
    path.write_bytes(awkward_lines())
    os.utime(path, (datetime(2026, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    block, line = scan_both(rules, [str(path)])
    assert len(block.findings) > 15
    assert {f.occurrence for f in block.findings} >= {0, 1, 2}
    assert any(f.count == 5 for f in block.findings)
    assert_same(block, line)


def test_awkward_lines_in_small_chunks(
    rules: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of a few lines each: every line is some block's first or last one."""
    path = tmp_path / "syslog"
    path.write_bytes(awkward_lines() * 3)
    monkeypatch.setattr(engine_module, "iter_chunks", partial(iter_chunks, chunk_size=300))
    assert_same(*scan_both(rules, [str(path)]))


def out_of_order_lines() -> bytes:
    """Blocks whose times go back and forth (each block spans an early and a late time,
    so the runs on disk overlap), across hosts, with the same lines again after their
    host's time moved on (the same key: the later finding replaces the earlier one), and
    time-less findings among them."""
    out = []
    for rnd in range(3):
        for early, late in ((10, 50), (20, 40), (10, 30), (25, 26)):
            for sec in (5, 5, 7):
                for minute in (early, late):
                    host = "ab"[(sec + minute) % 2]
                    out.append(
                        f"Mar  3 10:{minute:02d}:{sec:02d} {host} sshd[{rnd}]: Failed password "
                        f"for root from 192.0.2.{sec} port 22"
                    )
                    out.append(f"Mar  3 10:{minute:02d}:{sec:02d} {host} app[1]: error {rnd % 2}")
            out.append(f"no time at all: an error {rnd}")
    return ("\n".join(out) + "\n").encode()


def test_out_of_order_times_and_repeated_keys_in_small_chunks(
    rules: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, findings_held_or_on_disk: str
) -> None:
    """Runs on disk that overlap in time, merged in output order; a key seen again in a
    later run replaces the row of an earlier one."""
    path = tmp_path / "syslog"
    path.write_bytes(out_of_order_lines())
    os.utime(path, (datetime(2026, 3, 4, tzinfo=UTC).timestamp(),) * 2)
    monkeypatch.setattr(engine_module, "iter_chunks", partial(iter_chunks, chunk_size=400))
    block, line = scan_both(rules, [str(path)])
    table = block.findings.table
    if findings_held_or_on_disk == "on-disk":
        assert len(table._runs) > 5, "the findings were not written to disk"
    assert table._dropped, "no finding replaced another"
    assert_same(block, line)
    # and at or above a severity, in output order, from the runs
    view = block.findings.sorted_view().at_least(Severity.MEDIUM)
    assert 0 < len(view) < len(block.findings)
    assert [f.key for f in view] == [
        f.key for f in block.findings.sorted_view() if f.severity >= Severity.MEDIUM
    ]
    fast, slow = io.StringIO(), io.StringIO()
    write_findings(view, "jsonl", fast)
    write_findings(list(view), "jsonl", slow)
    assert fast.getvalue() == slow.getvalue()


def test_no_final_newline_gz_and_a_zone_with_summer_time(rules: list[Any], tmp_path: Path) -> None:
    lines = [
        f"Mar 29 0{h}:{m:02d}:00 web1 sshd[1]: Failed password for root from 192.0.2.{m} port 2"
        for h in (1, 2, 3)
        for m in range(0, 60, 7)
    ]
    data = "\n".join(lines).encode()  # no newline at the end
    plain = tmp_path / "auth.log"
    plain.write_bytes(data)
    packed = tmp_path / "auth.log.2.gz"
    packed.write_bytes(gzip.compress(data))
    for path in (plain, packed):
        os.utime(path, (datetime(2026, 4, 1, tzinfo=UTC).timestamp(),) * 2)
    for tz in (ZoneInfo("Europe/Berlin"), ZoneInfo("America/St_Johns"), UTC):
        block, line = scan_both(rules, [str(plain)], tz=tz)
        assert len(block.findings) == len(lines)
        assert_same(block, line)
        assert_same(*scan_both(rules, [str(packed)], tz=tz, year=2026))


def test_crlf_blocks_and_long_lines_take_the_line_path(rules: list[Any], tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.log"
    crlf.write_bytes(awkward_lines().replace(b"\n", b"\r\n"))
    assert_same(*scan_both(rules, [str(crlf)]))
    long = tmp_path / "long.log"
    long.write_bytes(awkward_lines() + b"Jan  1 00:01:00 web1 app: error " + b"y" * 70_000 + b"\n")
    assert_same(*scan_both(rules, [str(long)]))


LINE = st.sampled_from(
    [
        b"Jan  1 00:00:0%d web1 sshd[1]: Failed password for root from 192.0.2.1",
        b"Jan  1 00:00:0%d web2 CRON[2]: (root) CMD (true)",
        b"Jan  1 00:00:0%d web1 kernel: usb 2-%d: error",
        b"Dec 31 23:59:5%d web1 app[3]: an error",
        b"Jan  1 00:00:0%d web1 postfix/qmgr[4]: warning: x",
        b"2026-01-01T00:00:0%d+00:00 web1 app: error",
        b"Jan  1 00:00:0%d app: error without a host",
        b"Jan  1 00:00:0%d web1 app[5]: message repeated 3 times: [ an error]",
        b"no format at all %d error",
        b"",
        b"# comment %d",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(LINE, st.integers(0, 9), st.sampled_from([b"", b"\x00", b"\xc3", b" \xc3\xa9"])),
        min_size=1,
        max_size=40,
    )
)
def test_generated_lines(rules: list[Any], tmp_path: Path, parts: list[Any]) -> None:
    lines = []
    for template, n, extra in parts:
        line = template % ((n,) * template.count(b"%d")) if b"%d" in template else template
        lines.append(line + extra)
    path = tmp_path / "gen.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    os.utime(path, (datetime(2026, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    assert_same(*scan_both(rules, [str(path)]))


def test_a_block_scan_does_not_import_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas on its first ``pa.array``: the block path builds its arrays
    from buffers, so a scan does not pay for it."""
    path = tmp_path / "syslog"
    full = b"Mar  1 00:00:%02d h rsyslogd: write error: No space left on device\n"
    path.write_bytes(awkward_lines() + b"".join(full % i for i in range(9)))
    code = (
        "import sys\n"
        "from pipeline.detection.loader import load_rules\n"
        "from pipeline.engine import Engine, ScanOptions\n"
        "from pipeline.block import TableView\n"
        "import io\n"
        f"rules = [r for r in load_rules() if r.id == 'system.disk-full']\n"
        f"res = Engine(rules, ScanOptions()).scan([{str(path)!r}])\n"
        "assert isinstance(res.findings, TableView)\n"
        "res.findings.sorted_view().write_jsonl(io.StringIO())\n"
        "import pipeline.block\n"
        "pipeline.block.HOLD_BYTES = 1\n"  # and with the findings on disk
        f"res = Engine(rules, ScanOptions()).scan([{str(path)!r}])\n"
        "assert len(res.findings) == 9 and res.findings.table._runs\n"
        "res.findings.sorted_view().write_jsonl(io.StringIO())\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_cli_writes_the_same_jsonl_either_way(tmp_path: Path) -> None:
    rule_dir = tmp_path / "rules"
    rule_dir.mkdir()
    (rule_dir / "t.yaml").write_text(RULES_YAML, encoding="utf-8")
    path = tmp_path / "syslog"
    path.write_bytes(awkward_lines())
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "pipeline.cli", "scan", str(path), "--no-builtin-rules"]
    cmd += ["--rules", str(rule_dir), "--format", "jsonl", "-o", str(out), "-q"]
    subprocess.run(cmd, cwd=REPO, check=False, capture_output=True)
    written = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    rules = load_rules([rule_dir], builtin=False)
    line = Engine(rules, ScanOptions(block_path=False)).scan([str(path)])
    assert [d["key"] for d in written] == [
        f.key
        for f in sorted(
            line.findings,
            key=lambda f: (
                f.timestamp.timestamp() if f.timestamp else float("-inf"),
                f.source,
                f.line,
            ),
        )
    ]


# -- the block path's records for every rule set (pipeline.block.BlockRecords) -----------------


@pytest.fixture
def read_blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the blocks read as columns (to show the block path ran)."""
    from pipeline import block

    seen: list[int] = []
    orig = block._BlockReader._read

    def counted(self: Any, data: bytes, first_line: int, ready: Any = None) -> Any:
        got = orig(self, data, first_line, ready)
        if isinstance(got, block._Block):
            seen.append(first_line)
        return got

    monkeypatch.setattr(block._BlockReader, "_read", counted)
    return seen


def assert_same_records(block: Any, line: Any) -> None:
    assert not isinstance(block.findings, TableView)
    assert [f.as_dict() for f in block.findings] == [f.as_dict() for f in line.findings]
    assert block.stats.as_dict() | {"seconds": 0} == line.stats.as_dict() | {"seconds": 0}
    assert [str(p) for p in block.problems] == [str(p) for p in line.problems]
    assert block.detection == line.detection


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: str(p.relative_to(SAMPLES)))
def test_builtin_rules_on_samples(path: Path, read_blocks: list[int]) -> None:
    rules = load_rules()
    assert Detector(rules).column_rules() is None  # correlations: the records path
    assert_same_records(*scan_both(rules, [str(path)]))


def test_builtin_rules_on_sample_directories_and_scenarios(read_blocks: list[int]) -> None:
    for directory in ("mail", "syslog", "scenarios/new-year", "scenarios/delivery-silence"):
        rules = load_rules([SAMPLES / directory] if "delivery" in directory else [])
        assert_same_records(*scan_both(rules, [str(SAMPLES / directory)]))
    assert read_blocks


def test_builtin_and_test_rules_on_awkward_lines(
    rules: list[Any], tmp_path: Path, read_blocks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "syslog"
    path.write_bytes(awkward_lines() * 2)
    os.utime(path, (datetime(2026, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    both = [*load_rules(), *rules]
    assert_same_records(*scan_both(both, [str(path)]))
    assert read_blocks
    monkeypatch.setattr(engine_module, "iter_chunks", partial(iter_chunks, chunk_size=300))
    assert_same_records(*scan_both(both, [str(path)]))


def test_builtin_rules_on_the_loghub_corpus(read_blocks: list[int]) -> None:
    corpus = shared_path("corpus", "loghub")
    rules = load_rules()
    for path in sorted(p for p in corpus.rglob("*.log") if p.stat().st_size < 20_000_000):
        assert_same_records(*scan_both(rules, [str(path)]))
    assert read_blocks


def test_builtin_rules_with_workers(tmp_path: Path, read_blocks: list[int]) -> None:
    from pipeline.parallel import ProcessRunner

    out = bench_lines(tmp_path / "syslog", 20000)
    rules = load_rules()
    line = Engine(rules, ScanOptions(block_path=False)).scan([str(out)])
    for runner in (None, ProcessRunner(2, part_size=256 * 1024)):
        block = Engine(rules, ScanOptions()).scan([str(out)], runner=runner)
        assert [f.as_dict() for f in block.findings] == [f.as_dict() for f in line.findings]
        assert block.stats.candidates == line.stats.candidates
    assert len(line.findings) > 50


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(LINE, st.integers(0, 9), st.sampled_from([b"", b"\x00", b" \xc3\xa9"])),
        min_size=1,
        max_size=40,
    )
)
def test_generated_lines_with_builtin_rules(
    rules: list[Any], tmp_path: Path, parts: list[Any]
) -> None:
    lines = []
    for template, n, extra in parts:
        line = template % ((n,) * template.count(b"%d")) if b"%d" in template else template
        lines.append(line + extra)
    path = tmp_path / "gen.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    os.utime(path, (datetime(2026, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    assert_same_records(*scan_both([*load_rules(), *rules], [str(path)]))


ABSENCE_YAML = r"""
rules:
  - id: t.backup-started
    title: Backup started
    severity: info
    description: d
    remediation: r
    report: false
    select:
      program: backup
    match:
      message:
        regex: '^started job (?P<job>\S+)'
    examples:
      match:
        - 'Jan  1 00:00:00 h backup[1]: started job nightly'
      no_match:
        - 'Jan  1 00:00:00 h backup[1]: finished job nightly'
  - id: t.backup-finished
    title: Backup finished
    severity: info
    description: d
    remediation: r
    report: false
    select:
      program: backup
    match:
      message:
        regex: '^finished job (?P<job>\S+)'
    examples:
      match:
        - 'Jan  1 00:00:00 h backup[1]: finished job nightly'
      no_match:
        - 'Jan  1 00:00:00 h backup[1]: finished jobs: 3'
  - id: t.backup-missing
    type: absence
    title: A backup did not finish
    severity: high
    description: d
    remediation: r
    trigger: t.backup-started
    expect: t.backup-finished
    window: 10m
    group_by: [host, job]
    examples:
      match:
        - lines:
            - 'Jan  1 00:00:00 h backup[1]: started job nightly'
            - 'Jan  1 00:30:00 h backup[1]: finished jobs: 3'
      no_match:
        - lines:
            - 'Jan  1 00:00:00 h backup[1]: started job nightly'
            - 'Jan  1 00:05:00 h backup[1]: finished job nightly'
            - 'Jan  1 00:30:00 h backup[1]: finished jobs: 3'
"""


@pytest.mark.parametrize(
    "lines",
    [
        # only an unmatched candidate's time covers the window (the last line is earlier)
        [
            "Jan  1 00:00:00 h backup[1]: started job nightly",
            "Jan  1 00:30:00 h backup[1]: finished job  (none)",
            "Jan  1 00:05:00 h cron[2]: nothing to see",
        ],
        # only the first line's time covers it (a later line written first)
        [
            "Jan  1 00:30:00 h cron[2]: nothing to see",
            "Jan  1 00:00:00 h backup[1]: started job nightly",
        ],
    ],
    ids=["unmatched-candidate", "first-line"],
)
def test_times_of_unmatched_candidates_and_sampled_lines_judge_windows(
    tmp_path: Path, lines: list[str], read_blocks: list[int]
) -> None:
    rule_dir = tmp_path / "rules"
    rule_dir.mkdir()
    (rule_dir / "t.yaml").write_text(ABSENCE_YAML, encoding="utf-8")
    rules = load_rules([rule_dir], builtin=False)
    path = tmp_path / "syslog"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.utime(path, (datetime(2026, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    block, line = scan_both(rules, [str(path)])
    assert [f.rule for f in line.findings] == ["t.backup-missing"]
    assert_same_records(block, line)
    assert read_blocks


def test_workers_read_judge_and_key_the_parts(rules: list[Any], tmp_path: Path) -> None:
    """``-j N`` on the block path: workers read byte ranges; the scanning process numbers
    the rows in input order, so findings and output are those of one process."""
    from pipeline.parallel import ProcessRunner

    path = tmp_path / "syslog"
    path.write_bytes(awkward_lines() * 40)
    os.utime(path, (datetime(2026, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    line = Engine(rules, ScanOptions(block_path=False)).scan(
        [str(path)], runner=ProcessRunner(2, part_size=4096)
    )
    block = Engine(rules, ScanOptions()).scan([str(path)], runner=ProcessRunner(2, part_size=4096))
    assert_same(block, line)
    one = Engine(rules, ScanOptions()).scan([str(path)])
    assert [f.as_dict() for f in one.findings] == [f.as_dict() for f in block.findings]


def test_blocks_with_few_candidates_are_read_on_the_line_path(
    rules: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_blocks: list[int]
) -> None:
    from pipeline import block

    monkeypatch.setattr(block, "FEW_CANDIDATES", 1000)
    path = tmp_path / "syslog"
    path.write_bytes(awkward_lines())
    os.utime(path, (datetime(2026, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    assert_same(*scan_both(rules, [str(path)]))
    assert_same_records(*scan_both([*load_rules(), *rules], [str(path)]))
    assert not read_blocks  # no block was read as columns


def test_dense_blocks_go_to_the_line_path_and_sparse_ones_to_columns(
    rules: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_blocks: list[int]
) -> None:
    """A block whose candidates nearly all become events sends the next one to the line
    path, one whose candidates mostly match nothing sends it to columns: the same findings
    either way, and both kinds of blocks happen here."""
    from pipeline import block

    monkeypatch.setattr(block, "UNKNOWN_IS_DENSE", True)
    monkeypatch.setattr(block, "DENSE", 0.5)
    monkeypatch.setattr(engine_module, "iter_chunks", partial(iter_chunks, chunk_size=2000))
    dense = [f"Jan  1 00:0{i % 10}:00 h CRON[3]: (root) CMD (job {i})" for i in range(60)]
    sparse = [f"Jan  1 00:1{i % 10}:00 h sshd[4]: Failed password for x{i}" for i in range(60)]
    path = tmp_path / "syslog"
    path.write_text("\n".join(dense + sparse + dense) + "\n", encoding="utf-8")
    os.utime(path, (datetime(2026, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    both = [*load_rules(), *rules]
    block_result, line_result = scan_both(both, [str(path)])
    assert_same_records(block_result, line_result)
    with path.open("rb") as stream:
        blocks = sum(1 for _ in iter_chunks(stream, str(path), print, chunk_size=2000))
    # the first block on the line path (nothing known yet), then both kinds
    assert 0 < len(read_blocks) < blocks - 1, (read_blocks, blocks)


def test_a_scan_whose_blocks_stay_on_the_line_path_does_not_import_pyarrow(
    tmp_path: Path,
) -> None:
    path = tmp_path / "syslog"
    path.write_bytes(awkward_lines() * 10)  # a few hundred candidates: the line path
    rule_dir = tmp_path / "rules"
    rule_dir.mkdir()
    (rule_dir / "t.yaml").write_text(RULES_YAML, encoding="utf-8")
    (rule_dir / "a.yaml").write_text(ABSENCE_YAML, encoding="utf-8")  # not column rules
    code = (
        "import sys\n"
        "from pipeline.detection.loader import load_rules\n"
        "from pipeline.engine import Engine, ScanOptions\n"
        f"rules = load_rules([{str(rule_dir)!r}])\n"
        f"res = Engine(rules, ScanOptions()).scan([{str(path)!r}])\n"
        "assert res.stats.candidates > 100, res.stats\n"
        "print('pyarrow' in sys.modules, 'pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False False"


def test_digest_of_rows_without_times_and_across_batches(
    rules: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group whose first rows in output order have no time shows its earliest timed row
    (in a later batch) as its example, as the digest of the findings does."""
    from pipeline import block

    monkeypatch.setattr(block, "BATCH_ROWS", 2)
    table = block.FindingTable(rules[:2])
    source = table.source_index("x.log")
    for part in range(3):
        rows = block._EventRows()
        for i in range(3):
            timed = part > 0 and i != 1
            rows.rule.append(i % 2)
            rows.utc.append((1_700_000_000 + 60 * part - i) * 10**9 if timed else block.NO_TIME)
            rows.offset.append(3600)
            rows.stamp.append("2023-11-14T23:13:20+01:00" if timed else None)
            rows.host.append("h" if i < 2 else None)
            rows.program.append("p")
            rows.line.append(10 * part + i)
            rows.message.append(f"message {part}.{i}")
            rows.fields.append({})
            rows.counts.append(1 + i)
            rows.at.append(i)
        out = rows.rows(source)
        out.occurrence = np.zeros(len(out), dtype=np.int64)
        keys = [f"{part:02d}{i:02d}".ljust(20, "0") for i in range(3)]
        out.key = block.arrow_strings(keys)
        table.add(out, keys)
    view = table.view().sorted_view()
    assert digest(view) == digest(list(view))
    examples = {(r.rule, r.host): r.example.message for r in digest(view)}
    assert examples == {
        ("t.sshd-failed", "h"): "message 1.0",  # the earliest timed row, not line 0
        ("t.any-error", "h"): "message 0.1",  # none has a time: the first in order
        ("t.sshd-failed", None): "message 1.2",
    }


def scanned_detector(rules: list[Any], path: Path, block_path: bool) -> Detector:
    """The detector of a scan of ``path`` (made by the engine, as a scan makes it)."""
    engine = Engine(rules, ScanOptions(block_path=block_path))
    made: list[Detector] = []
    new_detector = engine.new_detector

    def keep() -> Detector:
        made.append(new_detector())
        return made[-1]

    engine.new_detector = keep  # type: ignore[method-assign]
    res = engine.scan([str(path)])
    assert isinstance(res.findings, TableView) == block_path
    return made[0]


@pytest.mark.parametrize("chunk_size", [90, 300, 5000])
def test_the_detector_state_after_a_scan_is_the_line_paths(
    rules: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size: int
) -> None:
    """The recent keys per host that a detector numbers identical findings against (kept
    across blocks) are the same after either path (the table path keeps nothing else of
    the detector: its rules keep no state)."""
    path = tmp_path / "syslog"
    # the same second over blocks of a line each: a line seen two blocks before repeats
    again = b"".join(
        b"Mar  4 11:00:00 h app[1]: error %s\n" % x for x in (b"x", b"y", b"x", b"z", b"y")
    )
    path.write_bytes(awkward_lines() + out_of_order_lines() + again + awkward_lines())
    os.utime(path, (datetime(2026, 3, 4, tzinfo=UTC).timestamp(),) * 2)
    monkeypatch.setattr(engine_module, "iter_chunks", partial(iter_chunks, chunk_size=chunk_size))
    assert_same(*scan_both(rules, [str(path)]))
    block, line = (scanned_detector(rules, path, b).snapshot()["recent"] for b in (True, False))
    assert block, "no recent keys to compare"
    assert block == line


@pytest.mark.parametrize("chunk_size", [300, 4000])
def test_read_ahead_gives_the_same_results_and_problems_in_the_same_order(
    rules: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size: int
) -> None:
    """The next block prepared on a second thread while this one is judged: the same
    findings, counts and problems, listed in the order of a scan without read-ahead (the
    problems of reading a block are reported just before it is judged), for a plain file
    and a truncated archive, in small and larger blocks."""
    data = (awkward_lines() + out_of_order_lines()) * 3
    plain = tmp_path / "syslog"
    plain.write_bytes(data)
    # an archive cut just after a line with a problem (invalid UTF-8): its last block's
    # problem comes before the archive's
    z = zlib.compressobj(wbits=31)
    whole = out_of_order_lines() + b"Mar  3 11:00:00 h app[1]: error in caf\xe9\n"
    head = z.compress(whole) + z.flush(zlib.Z_FULL_FLUSH)
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(head + (z.compress(data) + z.flush())[:40])
    for path in (plain, cut):
        os.utime(path, (datetime(2026, 3, 4, tzinfo=UTC).timestamp(),) * 2)
    monkeypatch.setattr(engine_module, "iter_chunks", partial(iter_chunks, chunk_size=chunk_size))
    for ruleset in (rules, builtin_column_rules() + rules, load_rules()):
        for path in (plain, cut):
            ahead = Engine(ruleset, ScanOptions(read_ahead=True))
            if ahead._ahead_pool() is None:
                pytest.skip("one usable core: scans here do not read ahead")
            got = ahead.scan([str(path)])
            want = Engine(ruleset, ScanOptions(read_ahead=False)).scan([str(path)])
            assert [f.as_dict() for f in got.findings] == [f.as_dict() for f in want.findings]
            assert got.stats.as_dict() | {"seconds": 0} == want.stats.as_dict() | {"seconds": 0}
            assert [str(p) for p in got.problems] == [str(p) for p in want.problems]
            assert got.detection == want.detection
    assert [p.kind for p in got.problems][-2:] == ["invalid-utf8", "truncated-archive"]
