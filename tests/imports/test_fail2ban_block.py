"""The block stage of fail2ban filters (:mod:`pipeline.imports.f2bblock`) never drops a
line the filter matches.

The oracle is the line path itself: each line parsed by the engine's grammars into an event,
rebuilt as :class:`~pipeline.imports.f2brules.Fail2banCondition` rebuilds it, and run through
the filter's prefregex and failregexes (any failregex match counts, failure id or not: a
match without one still moves the filter's multi-line state). The lines are fail2ban's own
sample logs, the same messages in the plain syslog shape the block stage confirms (where
it can drop lines), the loghub corpus and generated bench lines; bad input is fed through
both the pyarrow kernel and the RE2 line loop.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import re2

from pipeline.detection.correlate import Detector
from pipeline.detection.loader import load_rules
from pipeline.detection.model import Rule
from pipeline.detection.prefilter import Prefilter, newline_offsets
from pipeline.engine import LineProcessor, ScanStats, TimeMark, Unparsed
from pipeline.imports.f2bblock import (
    SHAPE,
    BlockConfirmation,
    Unrelaxable,
    _parsed,
    relax,
)
from pipeline.imports.f2brules import Fail2banCondition, _line_rule
from pipeline.imports.fail2ban import Fail2banFilter, expand_tags, read_filter
from pipeline.model import Event
from pipeline.timeinfer import TimeResolver
from tests.conftest import bench_lines, shared_path
from tests.imports.test_fail2ban_samples import CONFIG, LOGS, require_samples, sample_names

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _filter(name: str) -> Fail2banFilter | None:
    flt = Fail2banFilter(read_filter(CONFIG, name))
    return flt if flt.spec.maxlines == 1 else None


def _rule(flt: Fail2banFilter) -> Rule:
    return _line_rule(
        f"f2b-filter-{flt.spec.name}",
        flt,
        "t",
        report=True,
        location=flt.failregex[0].location,
    )


def _condition(rule: Rule) -> Fail2banCondition:
    cond = rule.conditions[0]
    assert isinstance(cond, Fail2banCondition)
    return cond


def _rebuilt(event: Event) -> str:
    """The text the condition hands the filter (as :meth:`Fail2banCondition.test`)."""
    if not event.program:
        return event.message
    pid = f"[{event.pid}]" if event.pid is not None else ""
    message = event.message
    if event.repeat > 1:
        message = f"message repeated {event.repeat} times: [ {message}]"
    return f"{event.host or ''} {event.program}{pid}: {message}"


def _matches(flt: Fail2banFilter, text: str) -> bool:
    """Whether a failregex of the filter matches ``text`` (its prefregex's content)."""
    buf = text + "\n"
    data = buf.encode("utf-8", "surrogatepass")
    if flt.prefregex is not None:
        got = flt.prefregex.find(buf, data)
        if got is None:
            return False
        content = got[0].get("content")
        if content:
            buf = content + "\n"
            data = buf.encode("utf-8", "surrogatepass")
    return any(p.find(buf, data) is not None for p in flt.failregex)


def _events(data: bytes) -> Iterator[tuple[int, Event]]:
    """(0-based line index, event) of every line the grammars read."""
    proc = LineProcessor(
        "t.log", TimeResolver(UTC, NOW), None, lambda p: None, ScanStats(), max_line=4096
    )
    for rec in proc.process(data, 1, all_lines=True):
        if isinstance(rec, Event):
            yield rec.line - 1, rec


def _matched_lines(flt: Fail2banFilter, data: bytes) -> set[int]:
    return {
        i for i, ev in _events(data) if ev.format != "journal-json" and _matches(flt, _rebuilt(ev))
    }


def _check(flt: Fail2banFilter, data: bytes) -> tuple[int, int, int]:
    """Assert that the candidates keep every matched line, with pyarrow and without;
    (literal candidates, kept, matched)."""
    rule = _rule(flt)
    cond = _condition(rule)
    assert cond.block is not None, flt.spec.name
    nl = newline_offsets(data)
    kept = Prefilter([rule]).candidate_lines(data, nl)
    plain = Prefilter(
        [dataclasses.replace(rule, conditions=(dataclasses.replace(cond, block=None),))]
    )
    literal = plain.candidate_lines(data, nl)
    matched = _matched_lines(flt, data)
    missing = sorted(matched - set(kept.tolist()))
    lines = data.split(b"\n")
    assert not missing, f"{flt.spec.name}: dropped {[lines[i] for i in missing[:5]]}"
    assert set(kept.tolist()) <= set(literal.tolist())
    # the RE2 loop (no pyarrow) keeps the same lines
    slow = BlockConfirmation(cond.block.patterns, use_arrow=False)
    assert slow.keep(data, nl, literal).tolist() == cond.block.keep(data, nl, literal).tolist()
    return len(literal), len(kept), len(matched)


_TIME_PREFIX = re.compile(
    rb"^(?:\S+ +\d+ \d\d:\d\d:\d\d(?: \d{4})?|\d{4}-\d\d-\d\dT?[ \d:.,+\-Z]*) +"
)


def _shaped(data: bytes, name: str) -> bytes:
    """The messages of ``data`` again in the plain syslog shape, with their own host and
    program, the filter's name as program, and no program at all."""
    out = []
    for _, ev in _events(data):
        msg = ev.message.encode("utf-8", "surrogateescape")
        host = (ev.host or "h").encode()
        out.append(b"Mar  1 00:00:0%d %s %s[123]: %s" % (len(out) % 10, host, name.encode(), msg))
        if ev.program:
            prog = ev.program.encode("utf-8", "replace")
            pid = b"[%d]" % ev.pid if ev.pid is not None else b""
            out.append(b"Mar 11 00:00:00 %s %s%s: %s" % (host, prog, pid, msg))
            out.append(b"2026-03-01T00:00:00.123456+01:00 %s %s%s: %s" % (host, prog, pid, msg))
    for line in data.split(b"\n"):
        # the line with only its time stamp replaced (whatever its envelope was)
        rest = _TIME_PREFIX.sub(b"", line)
        if rest != line:
            out.append(b"Mar  1 12:00:00 " + rest)
    return b"\n".join(out) + b"\n"


def _sample(name: str) -> bytes:
    lines = (LOGS / name).read_bytes().split(b"\n")
    return b"\n".join(ln for ln in lines if not ln.startswith(b"#")) + b"\n"


def test_block_stage_keeps_every_line_a_filter_matches_in_fail2bans_samples() -> None:
    require_samples()
    dropped = matched_total = 0
    for name in sample_names():
        flt = _filter(name)
        if flt is None:
            continue
        for data in (_sample(name), _shaped(_sample(name), name)):
            literal, kept, matched = _check(flt, data)
            dropped += literal - kept
            matched_total += matched
    assert matched_total > 1000
    # the stage does narrow: lines of the plain shape that only share a literal go
    assert dropped > 100


def test_block_stage_on_the_sshd_corpus_and_bench_lines(tmp_path: Path) -> None:
    require_samples()
    loghub = shared_path("corpus", "loghub")
    bench = bench_lines(tmp_path / "syslog-20k.log", 20000, loghub=True)
    flt = _filter("sshd")
    assert flt is not None
    literal, kept, matched = _check(flt, bench.read_bytes())
    # most literal candidates are other programs' lines, and the stage drops them
    assert matched > 200 and kept < literal / 2
    for log in sorted(loghub.glob("*/*_2k.log")):
        _check(flt, log.read_bytes())
        _check(flt, _shaped(log.read_bytes(), "sshd"))


def _findings(rules: list[Rule], data: bytes) -> list[tuple[str, int | None, str]]:
    detector = Detector(rules)
    proc = LineProcessor(
        "t.log", TimeResolver(UTC, NOW), Prefilter(detector.line_rules), lambda p: None, ScanStats()
    )
    out = []
    for rec in proc.process(data, 1):
        if isinstance(rec, Unparsed):
            continue
        got = (
            detector.observe(rec.host, rec.timestamp)
            if isinstance(rec, TimeMark)
            else detector.process(rec)
        )
        out += [(f.rule, f.line, str(sorted(f.fields.items()))) for f in got]
    out += [(f.rule, f.line, str(sorted(f.fields.items()))) for f in detector.finish()]
    return out


def test_findings_are_the_same_with_and_without_the_block_stage() -> None:
    """Filter rules beside the built-in pack (whose literals select lines too)."""
    require_samples()
    builtin = load_rules()
    flt = _filter("sshd")
    assert flt is not None
    data = _shaped(_sample("sshd"), "sshd") + _sample("sshd")
    with_block = [_rule(flt), *builtin]
    cond = _condition(with_block[0])
    without = [
        dataclasses.replace(with_block[0], conditions=(dataclasses.replace(cond, block=None),)),
        *builtin,
    ]
    got = _findings(with_block, data)
    assert any(r == "f2b-filter-sshd" for r, _, _ in got)
    flt.reset()
    assert got == _findings(without, data)
    # hyperscan and bytes.find select the same lines with the stage
    nl = newline_offsets(data)
    fast = Prefilter(with_block).candidate_lines(data, nl).tolist()
    assert fast == Prefilter(with_block, use_hyperscan=False).candidate_lines(data, nl).tolist()


def test_bad_input_never_raises_and_keeps_what_it_cannot_read() -> None:
    flt = _filter("sshd")
    assert flt is not None
    good = b"Mar  1 00:00:00 mx1 sshd[12]: Failed password for root from 10.0.0.1 port 22 ssh2"
    other = b"Mar  1 00:00:00 mx1 dovecot: Failed password for root from 10.0.0.1 port 22 ssh2"
    lines = [
        good,
        other,
        b"Mar  1 00:00:00 mx1 sshd[12]: Failed password for r\xffot from 10.0.0.1 port 22",
        b"Mar  1 00:00:00 mx1 sshd[12]: Failed password for ro\x00ot from 10.0.0.1 port 22",
        b"Mar  1 00:00:00 mx1 sshd[12]: Failed " + b"x" * 200_000,
        b"Mar  1 00:00:00 mx1 sshd[12]: Failed password for root from 10.0.0.1" + b" " * 100_000,
        b"Mar  1 00:00:00 mx1 sshd[12]: message repeated 2 times: [  Failed password "
        b"for root from 10.0.0.1 port 22 ssh2]",
        b"\xc3\x28 Failed \xe2\x82",
        b"Failed",
        other + b"\r",
        good + b"\r",
        b"",
    ]
    data = b"\n".join(lines)  # no newline after the last line
    rule = _rule(flt)
    cond = _condition(rule)
    assert cond.block is not None
    nl = newline_offsets(data)
    for block in (cond.block, BlockConfirmation(cond.block.patterns, use_arrow=False)):
        kept = block.keep(data, nl, np.arange(len(lines), dtype=np.int64)).tolist()
        # dropped: a plain-shape line of another program; kept: what matches, and every
        # line the stage cannot vouch for (non-ASCII, unwrapped repeats, other shapes)
        assert kept == [0, 2, 3, 5, 6, 7, 8, 10, 11], kept
        assert block.keep(data, nl, np.zeros(0, dtype=np.int64)).tolist() == []
        assert block.keep(b"", np.zeros(0, dtype=np.int64), np.array([0])).tolist() == [0]
    assert Prefilter([rule]).candidate_lines(data, nl).tolist() == [0, 2, 3, 5, 6, 7, 10]
    # the line path agrees on what matches
    assert {0, 3, 5, 10} <= _matched_lines(flt, data) <= {0, 2, 3, 5, 6, 7, 10}


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"^a(?=b)b$", "ab"),
        (r"(?<!x)y\b", "zy"),
        (r"(?P<u>\S+)|(?(u)x|y)", "y"),
        (r"(a)\1", "aa"),
        (r"(?i)AbC", "xabcx"),
        (r"(?i:a)B", "AB"),
        (r"[^\s]+\s", "a\x1c"),
        (r"(?a)\S\s", "\x1f\x0b"),
        (r"x{2,2000}", "x" * 1500),
        (r"a++b(?>c)", "aabc"),
        (r"[\w.-]+", "_"),
        (r"[^a-c]", "d"),
    ],
)
def test_relaxed_patterns_match_what_python_matches(pattern: str, text: str) -> None:
    assert re.search(pattern, text)
    parsed, ic = _parsed(pattern)
    assert re2.search(relax(parsed, ic), text), relax(parsed, ic)


def test_every_fail2ban_regex_relaxes_to_a_superset_on_sample_texts() -> None:
    """Each prefregex and failregex of every single-line filter, relaxed, matches every
    sample text (after its date) the regex itself matches."""
    require_samples()
    for name in sample_names():
        flt = _filter(name)
        if flt is None:
            continue
        texts = [
            ln[:4096]
            for ln in (LOGS / name).read_text(encoding="utf-8", errors="replace").splitlines()
            if ln.isascii() and not ln.startswith("#")
        ]
        for pattern in (flt.prefregex, *flt.failregex):
            if pattern is None:
                continue
            try:
                relaxed = re2.compile(relax(*_parsed(expand_tags(pattern.source, flt.spec.usedns))))
            except Unrelaxable:
                pytest.fail(f"{name}: {pattern.source}")
            for text in texts:
                buf = text + "\n"
                if pattern.find(buf, buf.encode()) is not None:
                    assert relaxed.search(buf), (name, pattern.source, text)


def test_shape_is_what_the_fast_path_reads() -> None:
    from pipeline.grammars.fastpath import fast_rfc3339, fast_syslog

    shape = re2.compile(SHAPE)
    for line in (
        "Mar  1 00:00:00 mx1 sshd[12]: Failed x",
        "Mar 11 00:00:00 mx1 sshd(pam_unix)[0]: x",
        "2026-03-01T00:00:00.123456+01:00 mx1 sshd: x  ",
        "Mar  1 00:00:00 mx1 sshd[12]: message",
    ):
        assert shape.search(line)
        got = fast_syslog(line) or fast_rfc3339(line)
        assert got is not None
        pid = f"[{got.pid}]" if got.pid is not None else ""
        assert line.rstrip().endswith(f"{got.host} {got.program}{pid}: {got.message}")
    for line in (
        "Mar  1 00:00:00 mx1 sshd[012]: x",  # the event writes [12]
        "Mar  1 00:00:00 mx1 sshd[12]:  x",  # the event strips the space
        "Mar  1 00:00:00 mx1 sshd[12]: message repeated 2 times: [ x]",
        "<13>Mar  1 00:00:00 mx1 sshd[12]: x",
        "Mar  1 00:00:00 sshd[12]: x",
        "<38>1 2026-03-01T00:00:00Z mx1 sshd 12 - - x",
    ):
        assert not shape.search(line), line


def test_groups_of_a_line_with_one_two_byte_character() -> None:
    """A line one byte longer in UTF-8 than in characters: its groups are cut from the bytes
    (a newline cut from the bytes once made it look like ASCII)."""
    flt = _filter("sshd")
    assert flt is not None
    text = "mx1 sshd[12]: Failed password for r\u00e9ot from 10.0.0.1 port 22 ssh2"
    got = flt.process_line(text, when=NOW)
    assert [(f.fid, f.groups.get("user")) for f in got] == [("10.0.0.1", "r\u00e9ot")]
    buf = text + "\n"
    assert flt.prefregex is not None
    found = flt.prefregex.find(buf, buf.encode())
    assert found is not None and found[0]["content"].endswith("ssh2")
