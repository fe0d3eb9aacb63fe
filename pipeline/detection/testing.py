"""Testing rules: inline examples and annotated sample logs, through the real engine path.

Each example runs through the same prefilter, grammar and detector as a scan, so a rule
whose literals miss its own example fails here rather than silently in production.
Correlation rules take scenarios (``lines:``) and are run with the line rules they name.

Sample annotations:

* ``# expect: RULE [name=value ...]`` — the next log line yields that finding;
* ``# expect-count: RULE N [name=value ...]`` — the file yields exactly N findings of RULE
  (with those field values), wherever they are; per-line checks skip RULE in that file.

Every other (rule, line) pair must yield nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pipeline.detection.correlate import Detector
from pipeline.detection.loader import dependencies, extend_rules
from pipeline.detection.model import Example, Rule
from pipeline.detection.prefilter import Prefilter
from pipeline.engine import (
    Engine,
    FindingSet,
    LineProcessor,
    ScanOptions,
    ScanStats,
    TimeMark,
    Unparsed,
)
from pipeline.errors import Location, Problem
from pipeline.model import Event, Finding
from pipeline.sources.files import InputFile, expand_inputs, iter_chunks, open_input
from pipeline.timeinfer import TimeResolver

EXPECT_RE = re.compile(r"^#\s*expect:\s*(?P<body>.*?)\s*$")
EXPECT_COUNT_RE = re.compile(r"^#\s*expect-count:\s*(?P<rule>\S+)\s+(?P<n>\d+)(?P<rest>.*?)\s*$")
SAMPLE_SKIP_SUFFIXES = (".md", ".py", ".txt", ".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class TestFailure:
    location: Location
    rule: str | None
    message: str

    def __str__(self) -> str:
        head = f"{self.location}: "
        return head + (f"[{self.rule}] " if self.rule else "") + self.message


def run_lines(
    rules: Sequence[Rule], lines: Sequence[str], display: str
) -> tuple[list[Finding], list[str]]:
    """Findings of ``rules`` on ``lines`` (one input, in order) and the unparsed reasons."""
    detector = Detector(rules)
    errors: list[str] = []

    def report(problem: Problem) -> None:
        if problem.kind == "body-error":  # a grammar bug must fail the example, not hide
            errors.append(f"{problem.kind}: {problem.detail}")

    proc = LineProcessor(
        display,
        TimeResolver(UTC, datetime.now(UTC)),
        Prefilter(detector.line_rules),
        report,
        ScanStats(),
    )
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    found = FindingSet()
    for rec in proc.process(data, 1):
        if isinstance(rec, Unparsed):
            errors.append(rec.reason)
        elif isinstance(rec, TimeMark):
            found.add(detector.observe(rec.host, rec.timestamp))
        else:
            found.add(detector.process(rec))
    found.add(detector.finish())
    return found.findings(), errors


def _program_of(line: str) -> str | None:
    proc = LineProcessor(
        "<example>", TimeResolver(UTC, datetime.now(UTC)), None, lambda p: None, ScanStats()
    )
    for rec in proc.process(line.encode("utf-8") + b"\n", 1, all_lines=True):
        if isinstance(rec, Event):
            return rec.program
    return None


def _check_example(
    rule: Rule, rules: Sequence[Rule], ex: Example, positive: bool
) -> list[TestFailure]:
    lines = list(ex.lines) if ex.lines else [ex.line]
    found, errors = run_lines(rules, lines, str(ex.location))
    mine = [f for f in found if f.rule == rule.id]
    out = [TestFailure(ex.location, rule.id, f"example does not parse: {e}") for e in errors]
    if not positive:
        if mine:
            out.append(TestFailure(ex.location, rule.id, "no_match example matched"))
        return out
    if ex.count is not None and len(mine) != ex.count:
        out.append(
            TestFailure(ex.location, rule.id, f"expected {ex.count} findings, got {len(mine)}")
        )
    elif not mine:
        out.append(TestFailure(ex.location, rule.id, "match example did not match"))
        return out
    if mine:
        for k, v in ex.fields.items():
            value = _field(mine[0], k)
            if value != v:
                out.append(
                    TestFailure(ex.location, rule.id, f"field {k!r}: expected {v!r}, got {value!r}")
                )
    return out


def check_examples(
    rules: Sequence[Rule], everything: Sequence[Rule] | None = None
) -> tuple[list[TestFailure], int]:
    """Run every rule's examples; return the failures and the number of examples run.

    ``everything`` is where referenced rules are looked up (default: ``rules``).
    """
    pool = list(everything if everything is not None else rules)
    failures: list[TestFailure] = []
    count = 0
    for rule in rules:
        if not rule.examples_match or not rule.examples_no_match:
            failures.append(
                TestFailure(
                    rule.location,
                    rule.id,
                    "a rule needs at least one match and one no_match example",
                )
            )
        # the rule under test runs even when disabled or a helper that reports nothing
        deps = dependencies([rule], {r.id: r for r in pool}) - {rule.id}
        subset = [replace(rule, enabled=True, report=True), *(r for r in pool if r.id in deps)]
        for ex in rule.examples_match:
            count += 1
            failures.extend(_check_example(rule, subset, ex, True))
        for ex in rule.examples_no_match:
            count += 1
            failures.extend(_check_example(rule, subset, ex, False))
        if rule.kind == "line" and rule.select.program and rule.examples_no_match:
            spoofed = [
                ex
                for ex in rule.examples_no_match
                if (prog := _program_of(ex.line)) is not None
                and not rule.select.accept_program(prog)
            ]
            if not spoofed:
                failures.append(
                    TestFailure(
                        rule.location,
                        rule.id,
                        "a rule keyed on a program needs a no_match example from another "
                        "program quoting the text (a spoof)",
                    )
                )
    return failures, count


@dataclass
class Expectations:
    """What one sample file's annotations say."""

    lines: dict[int, list[tuple[str, dict[str, str]]]]
    counts: list[tuple[str, int, dict[str, str], int]]  # rule, n, fields, annotation line


def _field(f: Finding, name: str) -> str | None:
    """A captured field, or else a finding attribute such as ``count`` or ``host``, as text."""
    value = f.fields.get(name)
    if value is None and name in ("count", "host", "program", "severity", "title"):
        attr = getattr(f, name)
        value = None if attr is None else str(attr)
    return value


def _fields(parts: Sequence[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in parts if "=" in p)


def read_expectations(inp: InputFile) -> Expectations:
    """``# expect:`` and ``# expect-count:`` annotations of a sample."""
    exp = Expectations({}, [])
    pending: list[tuple[str, dict[str, str]]] = []
    with open_input(inp) as stream:
        for chunk in iter_chunks(stream, inp.display, lambda p: None):
            for i, raw in enumerate(chunk.data.split(b"\n")):
                text = raw.rstrip(b"\r").decode("utf-8", "replace")
                if m := EXPECT_COUNT_RE.match(text):
                    exp.counts.append(
                        (m["rule"], int(m["n"]), _fields(m["rest"].split()), chunk.first_line + i)
                    )
                elif m := EXPECT_RE.match(text):
                    parts = m["body"].split()
                    if parts:
                        pending.append((parts[0], _fields(parts[1:])))
                elif text.startswith("#") or not text.strip():
                    continue
                elif pending:
                    exp.lines[chunk.first_line + i] = pending
                    pending = []
    return exp


def sample_inputs(samples: Path) -> dict[str, list[InputFile]]:
    """Sample files grouped by directory: a directory is scanned as one input set, so
    rotated files and joins across them work as in a real scan."""
    groups: dict[str, list[InputFile]] = {}
    for inp in expand_inputs([str(samples)]):
        if inp.path.endswith(SAMPLE_SKIP_SUFFIXES):
            continue
        groups.setdefault(str(Path(inp.path).parent), []).append(inp)
    return groups


def _compare(
    inp: InputFile, exp: Expectations, findings: list[Finding]
) -> tuple[list[TestFailure], int]:
    failures: list[TestFailure] = []
    counted = {rule for rule, _, _, _ in exp.counts}
    for rule, n, fields, at in exp.counts:
        got = [
            f
            for f in findings
            if f.rule == rule
            and all(f.fields.get(k) == v or getattr(f, k, None) == v for k, v in fields.items())
        ]
        if len(got) != n:
            failures.append(
                TestFailure(
                    Location(inp.display, at),
                    rule,
                    f"expected {n} findings{' with ' + str(fields) if fields else ''}, "
                    f"got {len(got)}",
                )
            )
    got_lines: dict[int, dict[str, Finding]] = {}
    for f in findings:
        if f.rule not in counted:
            got_lines.setdefault(f.line, {})[f.rule] = f
    checked = 0
    for line in sorted(set(exp.lines) | set(got_lines)):
        loc = Location(inp.display, line)
        want = {r: fl for r, fl in exp.lines.get(line, []) if r != "none" and r not in counted}
        have = got_lines.get(line, {})
        checked += 1 if line in exp.lines else 0
        for rid in sorted(set(want) - set(have)):
            failures.append(TestFailure(loc, rid, "expected finding is missing"))
        for rid in sorted(set(have) - set(want)):
            failures.append(TestFailure(loc, rid, "unexpected finding (not annotated)"))
        for rid in sorted(set(want) & set(have)):
            for k, v in want[rid].items():
                value = _field(have[rid], k)
                if value != v:
                    failures.append(
                        TestFailure(loc, rid, f"field {k!r}: expected {v!r}, got {value!r}")
                    )
    return failures, checked + len(exp.counts)


def check_samples(
    rules: Sequence[Rule], samples: Path, options: ScanOptions | None = None
) -> tuple[list[TestFailure], int, set[str]]:
    """Scan every sample directory as one input set and compare with the annotations.

    Returns failures, the number of annotations checked, and the rule ids seen.
    """
    failures: list[TestFailure] = []
    checked = 0
    seen: set[str] = set()
    base = Engine(rules, options or ScanOptions(tz=UTC))
    for directory, inputs in sample_inputs(samples).items():
        engine = base
        extra = sorted(Path(directory).glob("*.yaml"))
        if extra:
            # a scenario directory may carry a rule file (overrides such as enabling
            # mail.delivery-silence for its host); it applies to that directory only
            more, errors = extend_rules(rules, extra)
            failures.extend(
                TestFailure(e.location or Location(directory), None, e.message) for e in errors
            )
            engine = Engine(more, options or ScanOptions(tz=UTC))
        result = engine.scan([i.path for i in inputs])
        seen.update(f.rule for f in result.findings)
        for p in result.problems:
            failures.append(TestFailure(p.location, None, f"sample problem: {p.kind}: {p.detail}"))
        for inp in inputs:
            mine = [f for f in result.findings if f.source == inp.display]
            fails, n = _compare(inp, read_expectations(inp), mine)
            failures.extend(fails)
            checked += n
            stats = ScanStats()
            problems: list[Problem] = []
            for rec in engine.iter_input(inp, stats, problems.append, all_lines=True):
                if isinstance(rec, Unparsed):
                    failures.append(
                        TestFailure(rec.location, None, f"sample line does not parse: {rec.reason}")
                    )
    return failures, checked, seen
