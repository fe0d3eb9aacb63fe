"""Generated tests: one per annotated sample directory and one per built-in rule's examples.

A sample line annotated ``# expect: RULE`` must yield exactly that finding; every other line
must yield none. A directory is scanned as one input set (rotated files together), as a
user would scan it. A rule's ``match`` examples must fire and its ``no_match`` ones not.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.detection.loader import load_rules
from pipeline.detection.testing import (
    check_examples,
    check_samples,
    read_expectations,
    sample_inputs,
)
from tests.conftest import SAMPLES

RULES = load_rules()
GROUPS = sample_inputs(SAMPLES)


def test_there_are_samples_in_every_format() -> None:
    names = {i.path.removeprefix(str(SAMPLES) + "/") for g in GROUPS.values() for i in g}
    assert {
        "syslog/syslog",
        "syslog-rfc3339/syslog",
        "mail/mail.log",
        "mail/mail.log.1",
        "mail/mail.log.2.gz",
        "apache2/error.log",
        "journal/journal.json",
        "scenarios/threshold-edge/error.log",
        "scenarios/new-year/syslog",
        "scenarios/delivery-silence/mail.log",
    } <= names


@pytest.mark.parametrize("directory", sorted(GROUPS), ids=lambda d: os.path.relpath(d, SAMPLES))
def test_sample_findings_equal_annotations(directory: str, tmp_path: Path) -> None:
    inputs = GROUPS[directory]
    expected = [read_expectations(i) for i in inputs]
    for inp, exp in zip(inputs, expected, strict=True):
        assert exp.lines or exp.counts, f"{inp.path} has no # expect: annotation"
    # check_samples walks a directory: give it a copy of just this one (links)
    for inp in inputs:
        (tmp_path / os.path.basename(inp.path)).symlink_to(inp.path)
        os.utime(tmp_path / os.path.basename(inp.path), follow_symlinks=False)
    for extra in Path(directory).glob("*.yaml"):  # a scenario's own rule overrides
        (tmp_path / extra.name).symlink_to(extra)
    failures, checked, _ = check_samples(RULES, tmp_path)
    assert checked == sum(len(e.lines) + len(e.counts) for e in expected)
    assert failures == [], "\n".join(map(str, failures))


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_examples(rule) -> None:  # type: ignore[no-untyped-def]
    failures, count = check_examples([rule], RULES)
    assert count >= 2
    assert failures == [], "\n".join(map(str, failures))


def test_every_reporting_builtin_rule_fires_on_some_sample() -> None:
    _, _, seen = check_samples(RULES, SAMPLES)
    reporting = {r.id for r in RULES if r.report and r.enabled}
    assert reporting <= seen, reporting - seen
