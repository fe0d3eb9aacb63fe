"""Arbitrary bytes never raise out of the engine; every line is accounted for."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.detection.correlate import Detector
from pipeline.detection.loader import load_rules
from pipeline.detection.prefilter import Prefilter
from pipeline.engine import LineProcessor, ScanStats, TimeMark, Unparsed
from pipeline.errors import Problem
from pipeline.grammars import FORMATS
from pipeline.timeinfer import TimeResolver

RULES = load_rules()
PREFILTER = Prefilter(RULES)
DETECTOR = Detector(RULES)

# lines that look like logs, so the grammars get past their first token, mixed with junk
log_like = st.sampled_from(
    [
        b"Nov 30 08:23:33 vm dovecot: ",
        b"2026-11-30T08:18:02.338779+00:00 vm sm-mta[1]: ",
        b"<13>1 2026-11-30T08:18:02Z vm app 12 - - ",
        b"[Sat Jan 23 13:22:28.123456 2021] [core:error] [pid 1:tid 2] ",
        b'{"__REALTIME_TIMESTAMP":"1","MESSAGE":',
        b"# expect: x",
        b"",
    ]
)
junk = st.binary(max_size=200)
lines = st.lists(st.tuples(log_like, junk).map(lambda t: t[0] + t[1]), max_size=30)


def run(data: bytes, fmt: str | None, all_lines: bool) -> tuple[ScanStats, list[Problem], int, int]:
    stats = ScanStats()
    problems: list[Problem] = []
    proc = LineProcessor(
        "fuzz.log",
        TimeResolver(UTC, datetime(2026, 11, 30, tzinfo=UTC)),
        PREFILTER,
        problems.append,
        stats,
        fmt=fmt,
        max_line=128,
    )
    events = unparsed = 0
    for rec in proc.process(data, 1, all_lines=all_lines):
        if isinstance(rec, TimeMark):
            continue
        if isinstance(rec, Unparsed):
            unparsed += 1
            assert rec.location.path == "fuzz.log" and rec.location.line is not None
        else:
            events += 1
            DETECTOR.process(rec)
            assert rec.timestamp is None or rec.timestamp.tzinfo is not None
    return stats, problems, events, unparsed


@settings(max_examples=250, deadline=None)
@given(lines, st.sampled_from([None, *sorted(FORMATS)]))
def test_every_line_becomes_an_event_or_a_located_failure(
    parts: list[bytes], fmt: str | None
) -> None:
    data = b"\n".join(p.replace(b"\n", b" ") for p in parts)
    stats, problems, events, unparsed = run(data, fmt, all_lines=True)
    non_comment = (
        [p for p in data.split(b"\n") if not p.rstrip(b"\r").startswith(b"#")] if data else []
    )
    blank = sum(1 for p in non_comment if not p.rstrip(b"\r")[:128].strip())
    assert events + unparsed + blank == len(non_comment)
    assert sum(stats.unparsed.values()) == unparsed
    assert sum(1 for p in problems if p.kind == "unparsed") == unparsed
    for p in problems:
        assert p.location.path == "fuzz.log"
        # per-line problems carry a line; "unknown-format" is about the whole file
        assert p.location.line is not None or p.kind == "unknown-format"


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_in_candidate_mode(data: bytes) -> None:
    stats, problems, events, unparsed = run(data, None, all_lines=False)
    assert events + unparsed <= stats.candidates
    assert stats.lines == (data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1))


# literal fragments of the built-in rules, so that hits are common, mixed with junk
literal_bits = st.sampled_from([*sorted({lit for r in RULES for lit in r.literals}), b"\n", b"\\"])
haystack = st.lists(st.one_of(literal_bits, st.binary(max_size=40)), max_size=40).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(haystack, st.booleans())
def test_hyperscan_and_find_select_the_same_lines(data: bytes, journal: bool) -> None:
    from pipeline.detection.prefilter import hyperscan, newline_offsets
    from tests.conftest import require_speedup

    require_speedup("hyperscan", hyperscan is not None)
    with_literals = [r for r in RULES if r.literals]  # the others make every line a candidate
    fast = Prefilter(with_literals)
    plain = Prefilter(with_literals, use_hyperscan=False)
    assert fast.engine == "hyperscan" and plain.engine == "find"
    nl = newline_offsets(data)
    got = fast.candidate_lines(data, nl, journal=journal).tolist()
    assert got == plain.candidate_lines(data, nl, journal=journal).tolist()
    # and every selected line holds a literal (no false candidates from either)
    starts = [0, *(int(i) + 1 for i in nl)]
    ends = [*(int(i) for i in nl), len(data)]
    lits = fast.journal_literals if journal else fast.literals
    for idx in got:
        line = data[starts[idx] : ends[idx]]
        assert any(lit in line for lit in lits)
