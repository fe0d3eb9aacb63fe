"""Patterns only Python ``re`` can run (look-around, back-references): accepted only in
shapes whose backtracking is linear in the line, refused otherwise, also by
``rules validate`` (with file and line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.detection.patterns import PatternError, compile_pattern
from tests.conftest import logwarden

REFUSED = {
    r"(?=a)(a|aa)+": "retried from every position",
    r"(?=x)[a-z]+1": "retried from every position",
    r"^(?=a)(a|aa)+b": "must repeat one character",
    r"^(?=a)(?:ab)+": "must repeat one character",
    r"^(?=a)(a|aa){1,30}b": "alternation inside a repeat",
    r"^(?=x)\w+1\w+2": "can start with '1'",
    r"^(?=x)[^ ]+\w": "which it also takes",
    r"(?i)^(?=x)[a-z]+X": "can start with 'X'",
    r"^(?=x)[^,]+(?:,|;)?z": "not one fixed kind of character",
    r"^(?=.*x)abc": "look-around holding an unbounded repeat",
    r"(?m)^(?=x)[a-z]+\d": "retried from every position",
    r"^(?=a)(?:a\w+){3}x": "not one fixed kind of character",
    # variable-count repeats nested in a repeat: exponential though every bound is finite
    r"^(?=a)(?:a{0,20}){0,20}b": "not one fixed kind of character",
    r"^(?=a)(?:a{1,20}){2,20}b": "not one fixed kind of character",
    r"^(?=a)(?:(?:ab){0,5}){1,9}b": "must repeat one character",
}

ACCEPTED = {
    # pattern: (line it matches, captures; line it does not match)
    r"^user=(?P<u>[a-z]+)(?!\S)": ("user=bob rest", {"u": "bob"}, "user=bob1"),
    r"^(?=\S)(?P<q>\w+): to=<(?P<r>[^>]*)>": ("Q1: to=<a@b>", {"q": "Q1", "r": "a@b"}, " Q1: to="),
    r"^(?<!x)(?P<a>[^,]+),(?P<n>\d+)$": ("ab,12", {"a": "ab", "n": "12"}, "ab,12x"),
    r"(?<=u)x(?P<a>\d{1,5})": ("aux123", {"a": "123"}, "ax123"),
    r"^(?P<w>\w+) (?P=w)$": ("hi hi", {"w": "hi"}, "hi ho"),
    r"^(?=1)(?:\d{1,3}\.){3}\d+$|^(?=a)x": ("1.2.3.4", {}, "2.2.3.4"),
    r"^(?=1)(?:\d+\.){3}(?P<last>\d+)$": ("1.22.3.4", {"last": "4"}, "1.2.3"),
}


@pytest.mark.parametrize("pattern", list(REFUSED))
def test_nonlinear_shapes_on_re_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError) as err:
        compile_pattern(pattern)
    assert REFUSED[pattern] in str(err.value), str(err.value)


@pytest.mark.parametrize("pattern", list(ACCEPTED))
def test_linear_shapes_run_on_re_and_match_as_re_does(pattern: str) -> None:
    yes, fields, no = ACCEPTED[pattern]
    compiled = compile_pattern(pattern)
    assert compiled.engine == "re"
    assert compiled.search(yes) == fields
    assert compiled.search(no) is None


def test_rules_validate_refuses_a_lookahead_with_an_alternation_under_a_repeat(
    tmp_path: Path,
) -> None:
    (tmp_path / "r.yaml").write_text(
        """rules:
  - id: demo.slow
    title: t
    severity: low
    description: d
    remediation: r
    match: {message: {regex: '(?=x)(a|aa)+'}}
    examples:
      match: ['Nov 30 08:00:00 vm x[1]: xaa']
      no_match: ['Nov 30 08:00:00 vm x[1]: b']
"""
    )
    res = logwarden("rules", "validate", str(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"{tmp_path / 'r.yaml'}:7" in res.stderr, res.stderr
    assert "unbounded repeat" in res.stderr, res.stderr
