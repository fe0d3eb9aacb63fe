"""Testing rules: inline examples and annotated sample logs, through the real engine path.

Each example line runs through the same prefilter, grammar and detector as a scan, so a rule
whose literals miss its own example fails here rather than silently in production.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.detection.model import Example, Rule
from pipeline.detection.prefilter import Prefilter
from pipeline.engine import Detector, Engine, LineProcessor, ScanOptions, ScanStats, Unparsed
from pipeline.errors import Location, Problem
from pipeline.grammars import sniff_format
from pipeline.model import Finding
from pipeline.sources.files import InputFile, expand_inputs, iter_chunks, open_input
from pipeline.timeinfer import UTC, TimeResolver

EXPECT_RE = re.compile(r"^#\s*expect:\s*(?P<body>.*?)\s*$")
SAMPLE_SKIP_SUFFIXES = (".md", ".py", ".txt", ".yaml", ".yml", ".json.expect")


@dataclass(frozen=True, slots=True)
class TestFailure:
    location: Location
    rule: str | None
    message: str

    def __str__(self) -> str:
        head = f"{self.location}: "
        return head + (f"[{self.rule}] " if self.rule else "") + self.message


def _run_line(rule: Rule, line: str, location: Location) -> tuple[list[Finding], str | None]:
    """Findings of one rule on one line, and the grammar's complaint if it did not parse."""
    problems: list[Problem] = []
    fmt = sniff_format([line])
    proc = LineProcessor(
        str(location),
        TimeResolver(UTC, datetime.now(UTC)),
        Prefilter([rule]),
        problems.append,
        ScanStats(),
        fmt=fmt,
    )
    data = line.encode("utf-8") + b"\n"
    found: list[Finding] = []
    detector = Detector([rule])
    for rec in proc.process(data, 1):
        if isinstance(rec, Unparsed):
            return [], rec.reason
        found.extend(detector.detect(rec))
    return found, None


def _program_of(line: str) -> str | None:
    fmt = sniff_format([line])
    proc = LineProcessor(
        "<example>",
        TimeResolver(UTC, datetime.now(UTC)),
        None,
        lambda p: None,
        ScanStats(),
        fmt=fmt,
    )
    for rec in proc.process(line.encode("utf-8") + b"\n", 1, all_lines=True):
        if not isinstance(rec, Unparsed):
            return rec.program
    return None


def check_examples(rules: Sequence[Rule]) -> tuple[list[TestFailure], int]:
    """Run every rule's examples; return the failures and the number of examples run."""
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
        ex: Example
        for ex in rule.examples_match:
            count += 1
            found, err = _run_line(rule, ex.line, ex.location)
            if err is not None:
                failures.append(TestFailure(ex.location, rule.id, f"example does not parse: {err}"))
            elif not found:
                failures.append(TestFailure(ex.location, rule.id, "match example did not match"))
            else:
                got = dict(found[0].fields)
                for k, v in ex.fields.items():
                    if got.get(k) != v:
                        failures.append(
                            TestFailure(
                                ex.location,
                                rule.id,
                                f"field {k!r}: expected {v!r}, got {got.get(k)!r}",
                            )
                        )
        for ex in rule.examples_no_match:
            count += 1
            found, err = _run_line(rule, ex.line, ex.location)
            if found:
                failures.append(TestFailure(ex.location, rule.id, "no_match example matched"))
        if rule.select.program and rule.examples_no_match:
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


def read_expectations(inp: InputFile) -> dict[int, list[tuple[str, dict[str, str]]]]:
    """``# expect:`` annotations of a sample: line number → [(rule id or 'none', fields)]."""
    out: dict[int, list[tuple[str, dict[str, str]]]] = {}
    pending: list[tuple[str, dict[str, str]]] = []
    with open_input(inp) as stream:
        for chunk in iter_chunks(stream, inp.display, lambda p: None):
            for i, raw in enumerate(chunk.data.split(b"\n")):
                text = raw.rstrip(b"\r").decode("utf-8", "replace")
                if m := EXPECT_RE.match(text):
                    parts = m["body"].split()
                    if not parts:
                        continue
                    fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
                    pending.append((parts[0], fields))
                elif text.startswith("#") or not text.strip():
                    continue
                elif pending:
                    out[chunk.first_line + i] = pending
                    pending = []
    return out


def check_samples(
    rules: Sequence[Rule], samples: Path, options: ScanOptions | None = None
) -> tuple[list[TestFailure], int, set[str]]:
    """Scan every sample file and compare findings with its annotations exactly.

    Returns failures, the number of annotated lines checked, and the rule ids seen.
    """
    failures: list[TestFailure] = []
    checked = 0
    seen: set[str] = set()
    engine = Engine(rules, options or ScanOptions(tz=UTC))
    inputs = [i for i in expand_inputs([str(samples)]) if not i.path.endswith(SAMPLE_SKIP_SUFFIXES)]
    for inp in inputs:
        expected = read_expectations(inp)
        result = engine.scan([inp.path])
        got: dict[int, list[Finding]] = {}
        for f in result.findings:
            got.setdefault(f.line, []).append(f)
            seen.add(f.rule)
        for line in sorted(set(expected) | set(got)):
            loc = Location(inp.display, line)
            want = {r: fl for r, fl in expected.get(line, []) if r != "none"}
            have = {f.rule: f for f in got.get(line, [])}
            checked += 1 if line in expected else 0
            for rid in sorted(set(want) - set(have)):
                failures.append(TestFailure(loc, rid, "expected finding is missing"))
            for rid in sorted(set(have) - set(want)):
                failures.append(TestFailure(loc, rid, "unexpected finding (not annotated)"))
            for rid in sorted(set(want) & set(have)):
                for k, v in want[rid].items():
                    if have[rid].fields.get(k) != v:
                        failures.append(
                            TestFailure(
                                loc,
                                rid,
                                f"field {k!r}: expected {v!r}, got {have[rid].fields.get(k)!r}",
                            )
                        )
        for p in result.problems:
            if p.kind not in ("skipped",):
                failures.append(
                    TestFailure(p.location, None, f"sample problem: {p.kind}: {p.detail}")
                )
        stats = ScanStats()
        for rec in engine.iter_input(inp, stats, lambda p: None, all_lines=True):
            if isinstance(rec, Unparsed):
                failures.append(
                    TestFailure(rec.location, None, f"sample line does not parse: {rec.reason}")
                )
    return failures, checked, seen
