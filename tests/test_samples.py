"""Generated tests: one per annotated sample file and one per built-in rule's examples.

A sample line annotated ``# expect: RULE`` must yield exactly that finding; every other line
must yield none. A rule's ``match`` examples must fire and its ``no_match`` ones must not.
"""

from __future__ import annotations

import pytest

from pipeline.detection.loader import load_rules
from pipeline.detection.testing import (
    SAMPLE_SKIP_SUFFIXES,
    check_examples,
    check_samples,
    read_expectations,
)
from pipeline.sources.files import expand_inputs
from tests.conftest import SAMPLES

RULES = load_rules()
SAMPLE_FILES = [
    i for i in expand_inputs([str(SAMPLES)]) if not i.path.endswith(SAMPLE_SKIP_SUFFIXES)
]


def test_there_are_samples_in_every_format() -> None:
    names = {str(i.path).removeprefix(str(SAMPLES) + "/") for i in SAMPLE_FILES}
    assert {
        "syslog/syslog",
        "syslog-rfc3339/syslog",
        "mail/mail.log",
        "mail/mail.log.1",
        "mail/mail.log.2.gz",
        "apache2/error.log",
        "journal/journal.json",
    } <= names


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda i: i.path.rsplit("samples/", 1)[-1])
def test_sample_findings_equal_annotations(sample, tmp_path) -> None:  # type: ignore[no-untyped-def]
    expected = read_expectations(sample)
    assert expected.lines or expected.counts, f"{sample.path} has no # expect: annotation"
    failures, checked, _ = check_samples(RULES, sample_dir(sample, tmp_path))
    assert checked == len(expected.lines) + len(expected.counts)
    assert failures == [], "\n".join(map(str, failures))


def sample_dir(sample, tmp_path):  # type: ignore[no-untyped-def]
    """check_samples walks a directory; give it one holding just this sample (a link)."""
    import os

    link = tmp_path / os.path.basename(sample.path)
    link.symlink_to(sample.path)
    return tmp_path


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_examples(rule) -> None:  # type: ignore[no-untyped-def]
    failures, count = check_examples([rule])
    assert count >= 2
    assert failures == [], "\n".join(map(str, failures))


def test_every_builtin_rule_fires_on_some_sample() -> None:
    _, _, seen = check_samples(RULES, SAMPLES)
    assert {r.id for r in RULES} <= seen
