"""Bad input is counted and located, never a crash, never silently dropped."""

from __future__ import annotations

import gzip
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyparsing as pp
import pytest

from pipeline.detection.loader import load_rules
from pipeline.engine import Engine, ScanOptions
from pipeline.grammars import BodyGrammar, FieldNames, register_body
from pipeline.grammars.bodies import unregister_body
from pipeline.grammars.common import body_fields
from tests.conftest import REPO, SAMPLES

DOVECOT = (
    "master: Warning: service(pop3-login): process_limit (2) reached, "
    "client connections are being dropped"
)
# a signature without suppression, so repeated lines are separate findings
RECEIPT = "6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt"


def receipt(n: int) -> bytes:
    return line(n, RECEIPT, "sm-mta[17783]")


def limit(service: str) -> str:
    """The dovecot signature for one service (suppression folds a service's repeats)."""
    return DOVECOT.replace("pop3-login", service)


def line(n: int, msg: str = "pop3-login: Login: user=<a>", prog: str = "dovecot") -> bytes:
    return f"Nov 30 08:{n // 60 % 60:02d}:{n % 60:02d} vm {prog}: {msg}\n".encode()


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_rules(), ScanOptions(tz=UTC))


def kinds(result) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict(result.stats.problems)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    os.utime(p, (datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp(),) * 2)
    return str(p)


def test_signature_is_found_with_location(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "syslog", line(1) + line(2, DOVECOT) + line(3))
    result = engine.scan([path])
    (f,) = result.findings
    assert (f.rule, f.source, f.line, f.host) == ("dovecot.process-limit-reached", path, 2, "vm")
    assert f.timestamp == datetime(2026, 11, 30, 8, 0, 2, tzinfo=UTC)
    assert result.stats.lines == 3
    assert result.stats.candidates == 1


def test_invalid_utf8_nul_and_crlf_are_reported_and_still_matched(
    engine: Engine, tmp_path: Path
) -> None:
    data = (
        line(1)
        + b"Nov 30 08:00:02 vm dovecot: bad \xff\xfe bytes\n"
        + b"Nov 30 08:00:03 vm dovecot: nul \x00 byte\n"
        + line(4, limit("imap-login") + " \xe9").replace(b"\xc3\xa9", b"\xe9")
        + receipt(5).replace(b"\n", b"\r\n")
    )
    path = write(tmp_path, "syslog", data)
    result = engine.scan([path])
    assert [f.line for f in result.findings] == [4, 5]
    assert not result.findings[1].message.endswith("\r")
    assert kinds(result) == {"invalid-utf8": 2, "nul-byte": 1}
    locs = {(p.kind, p.location.line) for p in result.problems}
    assert locs == {("invalid-utf8", 2), ("invalid-utf8", 4), ("nul-byte", 3)}
    assert [p.location.col for p in result.problems if p.kind == "nul-byte"] == [33]


def test_overlong_line_is_cut_counted_and_the_rest_goes_on(engine: Engine, tmp_path: Path) -> None:
    huge = line(1, limit("imap-login") + " " + "x" * 200_000)
    path = write(tmp_path, "syslog", line(0) + huge + line(2, limit("pop3-login")))
    result = engine.scan([path])
    assert kinds(result) == {"line-too-long": 1}
    assert result.problems[0].location.line == 2
    # the cut line still matches its (anchored) start; the next line is not lost
    assert [f.line for f in result.findings] == [2, 3]


def test_truncated_gzip_is_reported_and_the_readable_part_scanned(
    engine: Engine, tmp_path: Path
) -> None:
    body = b"".join(line(i, DOVECOT if i == 5 else "pop3-login: x%d" % i) for i in range(4000))
    blob = gzip.compress(body)
    path = write(tmp_path, "mail.log.2.gz", blob[: len(blob) * 2 // 3])
    result = engine.scan([path])
    assert [f.line for f in result.findings] == [6]
    assert kinds(result) == {"truncated-archive": 1}
    assert result.problems[0].location.path == path


def test_unknown_format_and_unparsed_lines_are_counted(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path, "weird.log", b"".join(b"%d|%d|no format here\n" % (i, i) for i in range(30))
    )
    result = engine.scan([path])
    assert result.findings == []
    assert kinds(result).get("unknown-format") == 1
    assert result.problems[0].location.path == path


def test_unreadable_file_is_reported_and_others_still_scanned(
    engine: Engine, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        # root reads any mode: make it unreadable another way, a directory loop is not
        # possible, so use a FIFO-free trick: a path that vanishes between listing and reading
        good = write(tmp_path, "b.log", line(1, DOVECOT))
        gone = tmp_path / "a.log"
        gone.write_bytes(line(1))
        from pipeline.sources.files import expand_inputs

        inputs = expand_inputs([str(tmp_path)])
        gone.unlink()
        from pipeline.engine import ProblemLog, ScanStats

        stats = ScanStats()
        log = ProblemLog(stats)
        from pipeline.model import Event

        events = [
            e
            for inp in inputs
            for e in engine.iter_input(inp, stats, log, all_lines=False)
            if isinstance(e, Event)
        ]
        assert stats.problems["unreadable"] == 1
        assert log.listed[0].location.path == str(gone)
        assert len(events) == 1 and events[0].source == good  # type: ignore[union-attr]
    else:
        bad = write(tmp_path, "a.log", line(1))
        os.chmod(bad, 0)
        good = write(tmp_path, "b.log", line(1, DOVECOT))
        result = engine.scan([str(tmp_path)])
        assert kinds(result)["unreadable"] == 1
        assert [f.source for f in result.findings] == [good]


def test_since_until_select_by_event_time(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path, "syslog", line(10, DOVECOT) + line(20 * 60, DOVECOT) + line(40 * 60, DOVECOT)
    )
    rules = load_rules()
    eng = Engine(
        rules,
        ScanOptions(
            tz=UTC,
            since=datetime(2026, 11, 30, 8, 10, tzinfo=UTC),
            until=datetime(2026, 11, 30, 8, 30, tzinfo=UTC),
        ),
    )
    result = eng.scan([path])
    assert [f.line for f in result.findings] == [2]
    assert result.stats.out_of_range == 2


def test_year_inference_uses_mtime_and_rollover(engine: Engine, tmp_path: Path) -> None:
    data = (
        b"Dec 31 23:59:58 vm sm-mta[1]: "
        + RECEIPT.encode()
        + b"\n"
        + b"Jan  1 00:00:01 vm sm-mta[1]: "
        + RECEIPT.encode()
        + b"\n"
    )
    p = tmp_path / "syslog.1"
    p.write_bytes(data)
    os.utime(p, (datetime(2025, 1, 2, tzinfo=UTC).timestamp(),) * 2)
    result = engine.scan([str(p)])
    assert [f.timestamp.year for f in result.findings if f.timestamp] == [2024, 2025]


def test_stdin_is_read(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class FakeStdin:
        buffer = io.BytesIO(line(1, DOVECOT))

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    result = engine.scan(["-"])
    assert [(f.source, f.line) for f in result.findings] == [("<stdin>", 1)]


def test_sparse_log_spanning_days_keeps_its_year(engine: Engine, tmp_path: Path) -> None:
    """The last line of a block is sampled after the candidates, so year inference sees the
    lines in order (a block spanning more than a week must not look like a new year)."""
    data = (
        b"Nov 10 08:00:00 vm sm-mta[1]: "
        + RECEIPT.encode()
        + b"\n"
        + b"Nov 12 08:00:00 vm cron[2]: (root) CMD (true)\n"
        + b"Nov 29 08:00:00 vm cron[2]: (root) CMD (true)\n"
    )
    path = write(tmp_path, "syslog", data)
    (f,) = engine.scan([path]).findings
    assert f.timestamp is not None and f.timestamp.year == 2026


def test_progress_reports_bytes_of_the_files_on_disk(tmp_path: Path) -> None:
    """The bar's numbers: bytes read of the files on disk (compressed ones too), and lines."""
    from pipeline.cli import progress_bar

    plain = write(tmp_path, "a.log", b"".join(line(i) for i in range(5000)))
    packed = write(tmp_path, "b.log.gz", gzip.compress(b"".join(line(i) for i in range(5000))))
    eng = Engine(load_rules(), ScanOptions(tz=UTC))
    seen: list[tuple[int, int, int]] = []
    eng.progress = lambda done, total, lines: seen.append((done, total, lines))
    eng.scan([plain, packed])
    total = os.path.getsize(plain) + os.path.getsize(packed)
    assert seen and all(t == total for _, t, _ in seen)
    assert seen[-1][0] == total and seen[-1][2] == 10000
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    # no bar when stderr is not a terminal (as under pytest) or with --quiet
    assert not progress_bar(eng, quiet=False).enabled
    assert not progress_bar(eng, quiet=True).enabled


def test_every_invalid_utf8_line_of_a_latin1_log_is_counted(engine: Engine, tmp_path: Path) -> None:
    """Old logs are often Latin-1 throughout: each bad line is counted and located once."""
    data = b"".join(
        b"Nov 30 08:00:%02d vm app[1]: caf\xe9 %d\n" % (i % 60, i) for i in range(20000)
    )
    path = write(tmp_path, "latin1.log", data + line(1, limit("imap-login")))
    result = engine.scan([path])
    assert result.stats.problems["invalid-utf8"] == 20000
    cols = {p.location.col for p in result.problems if p.kind == "invalid-utf8"}
    assert cols == {len("Nov 30 08:00:00 vm app[1]: caf") + 1}
    assert [f.line for f in result.findings] == [20001]


# --- a body grammar that raises --------------------------------------------------------------

#: a third party's body grammar for ``backupd``: ``job=N took=MS`` with the time as an integer
#: (its parse action's int() raises on the "took=12.5" the author never saw)
_BACKUPD = (
    pp.Regex(r"job=(?P<job>\d+) took=(?P<took>\S+)", as_match=True)
    .set_parse_action(lambda toks: {"job": toks[0]["job"], "took_ms": str(int(toks[0]["took"]))})
    .parse_with_tabs()
)

BACKUPD_RULES = """\
rules:
  - id: backupd.slow-job
    title: A backup job was slow
    severity: medium
    description: Jobs over a second.
    remediation: Look at the job.
    select: {program: backupd}
    match:
      message: {contains: "job="}
      took_ms: {regex: '^\\d{4,}$'}
    examples:
      match: ["Nov 30 08:00:01 vm backupd[1]: job=1 took=1500"]
      no_match: ["Nov 30 08:00:01 vm other[1]: job=1 took=1500"]
  - id: backupd.job
    title: A backup job ran
    severity: info
    description: Every job.
    remediation: Nothing.
    select: {program: backupd}
    match:
      message: {contains: "job="}
    examples:
      match: ["Nov 30 08:00:01 vm backupd[1]: job=1 took=1500"]
      no_match: ["Nov 30 08:00:01 vm other[1]: job=1 took=1500"]
"""


@pytest.fixture
def backupd_grammar() -> Iterator[None]:
    register_body(
        BodyGrammar(
            "backupd",
            lambda text: body_fields(_BACKUPD.parse_string(text)),
            ("backupd",),
            fields=FieldNames(frozenset({"job", "took_ms"})),
        )
    )
    yield
    unregister_body("backupd")


def test_a_body_grammar_that_raises_is_a_counted_located_problem(
    backupd_grammar: None, tmp_path: Path
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "backupd.yaml").write_text(BACKUPD_RULES)
    engine = Engine(load_rules([tmp_path / "rules"], builtin=False), ScanOptions(tz=UTC))
    assert engine.body_fields
    path = write(
        tmp_path,
        "syslog",
        b"Nov 30 08:00:01 vm backupd[1]: job=1 took=1500\n"
        b"Nov 30 08:00:02 vm backupd[1]: job=2 took=12.5\n"
        b"Nov 30 08:00:03 vm backupd[1]: job=3 took=2500\n",
    )
    result = engine.scan([path])
    assert result.stats.problems["body-error"] == 1
    (problem,) = [p for p in result.problems if p.kind == "body-error"]
    assert str(problem.location) == f"{path}:2"
    assert "'backupd'" in problem.detail and "ValueError" in problem.detail
    found = sorted((f.rule, f.line) for f in result.findings)
    # the line still goes on (a rule on its message matches), without its body fields
    assert found == [
        ("backupd.job", 1),
        ("backupd.job", 2),
        ("backupd.job", 3),
        ("backupd.slow-job", 1),
        ("backupd.slow-job", 3),
    ]


def test_rules_test_fails_an_example_whose_body_grammar_raises(
    backupd_grammar: None, tmp_path: Path
) -> None:
    from pipeline.detection.testing import check_examples

    (tmp_path / "rules").mkdir()
    text = BACKUPD_RULES.replace(
        'no_match: ["Nov 30 08:00:01 vm other[1]: job=1 took=1500"]\n  - id: backupd.job',
        'no_match: ["Nov 30 08:00:01 vm backupd[1]: job=1 took=0.5"]\n  - id: backupd.job',
    )
    (tmp_path / "rules" / "backupd.yaml").write_text(text)
    rules = load_rules([tmp_path / "rules"], builtin=False)
    failures, _ = check_examples([r for r in rules if r.id == "backupd.slow-job"], rules)
    messages = [f.message for f in failures]
    assert any(
        m.startswith(
            "example does not parse: body-error: body grammar 'backupd' failed: ValueError"
        )
        for m in messages
    ), messages


@pytest.mark.parametrize("name", ["mail.log", "mail.log.2.gz"])
def test_a_pipe_is_read_whole_plain_or_compressed(name: str) -> None:
    """``scan <(cat FILE)``: a pipe is opened once, its compression peeked at, not read
    away by a look at its magic bytes (its first 8 KiB were lost)."""
    path = SAMPLES / "mail" / name
    base = [sys.executable, "-m", "pipeline.cli", "scan", "--tz", "UTC", "--year", "2026"]
    base += ["--format", "jsonl"]
    direct = subprocess.run([*base, str(path)], cwd=REPO, capture_output=True, text=True)
    piped = subprocess.run(
        ["bash", "-c", f"{shlex.join(base)} <(cat {shlex.quote(str(path))})"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert direct.returncode == piped.returncode == 0, piped.stderr
    lines = direct.stderr.split("counts: ", 1)[1].split(",")[1]
    assert lines in piped.stderr, (direct.stderr, piped.stderr)
    assert len(piped.stdout.splitlines()) == len(direct.stdout.splitlines()) > 0
