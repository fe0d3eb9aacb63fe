from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.detection.loader import check_rule_dirs, load_rules, read_rule_text
from pipeline.errors import RuleError
from pipeline.model import Severity

GOOD = """\
rules:
  - id: demo.thing-broke
    title: A thing broke
    severity: high
    description: The thing broke.
    remediation: Fix the thing.
    references: [https://example.org/thing]
    tags: [demo]
    select:
      program: [thingd]
    match:
      message:
        regex: '^thing (?P<name>[a-z]+) broke$'
    examples:
      match:
        - line: 'Nov 30 08:00:00 vm thingd[1]: thing alpha broke'
          fields: {name: alpha}
      no_match:
        - 'Nov 30 08:00:00 vm other[1]: thing alpha broke'
"""


def errors_of(text: str) -> list[str]:
    return [str(e) for e in read_rule_text(text, "r.yaml").errors]


def test_good_rule_loads_with_everything() -> None:
    report = read_rule_text(GOOD, "r.yaml")
    assert report.errors == []
    (rule,) = report.rules
    assert rule.id == "demo.thing-broke"
    assert rule.severity is Severity.HIGH
    assert rule.references == ("https://example.org/thing",)
    assert rule.select.program == ("thingd",)
    assert str(rule.location) == "r.yaml:2"
    assert rule.examples_match[0].fields == {"name": "alpha"}
    assert rule.literals == (b"thing ",)  # the longest literal run the regex needs


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    tags: [demo]\n",
            "    tags: [demo]\n    colour: red\n",
            "r.yaml:9: unknown key 'colour'",
        ),
        (
            "    severity: high\n",
            "    severity: high\n    severity: low\n",
            "r.yaml:5:5: duplicate key 'severity'",
        ),
        ("    severity: high\n", "    severity: urgent\n", "r.yaml:4: unknown severity 'urgent'"),
        (
            "'^thing (?P<name>[a-z]+) broke$'",
            "'^thing (?P<name>[a-z]+ broke$'",
            "r.yaml:13: regex of 'message': invalid regex",
        ),
        (
            "'^thing (?P<name>[a-z]+) broke$'",
            "'^thing (?P<name>.*) broke$'",
            "r.yaml:13: regex of 'message': named group 'name' holds an unbounded catch-all",
        ),
        (
            "  - id: demo.thing-broke\n",
            "  - id: Demo Thing\n",
            "r.yaml:2: invalid rule id 'Demo Thing'",
        ),
        ("    title: A thing broke\n", "", "r.yaml:2: missing required key 'title'"),
        (
            "      no_match:\n        - 'Nov 30 08:00:00 vm other[1]: thing alpha broke'\n",
            "",
            "r.yaml:15: examples need a 'no_match' list",
        ),
        (
            "        regex:",
            "        regexp:",
            "r.yaml:13: unknown key 'regexp' in condition on 'message'",
        ),
        (
            "    select:\n",
            "    select:\n      prog: [x]\n",
            "r.yaml:10: unknown key 'prog' in select",
        ),
    ],
)
def test_errors_name_file_and_line(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    errs = errors_of(GOOD.replace(old, new))
    assert any(e.startswith(expected) for e in errs), errs


def test_yaml_syntax_error_is_located() -> None:
    errs = errors_of("rules:\n  - id: [unclosed\n")
    assert errs and errs[0].startswith("r.yaml:"), errs
    assert "invalid YAML" in errs[0]


def test_every_error_is_collected() -> None:
    text = GOOD.replace("severity: high", "severity: nope").replace("regexp", "x") + (
        "  - id: second.rule\n    bogus: 1\n"
    )
    errs = errors_of(text)
    assert any("unknown severity" in e for e in errs)
    assert any("r.yaml:21: unknown key 'bogus'" in e for e in errs)


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    rules, errors = check_rule_dirs([tmp_path], builtin=False)
    assert len(rules) == 1
    assert len(errors) == 1
    assert "duplicate rule id 'demo.thing-broke'" in str(errors[0])
    assert str(errors[0]).startswith(str(tmp_path / "b.yaml") + ":2")


def test_load_rules_raises_first_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(GOOD.replace("severity: high", "severity: 5"))
    with pytest.raises(RuleError, match=r"bad.yaml:4"):
        load_rules([tmp_path], builtin=False)


def test_missing_rule_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="no such rule file"):
        load_rules([tmp_path / "nope"], builtin=False)


def test_non_utf8_rule_file(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_bytes(b"rules:\n  - id: \xff\n")
    _, errors = check_rule_dirs([tmp_path], builtin=False)
    assert "x.yaml:2: rule file is not valid UTF-8" in str(errors[0])


def test_builtin_pack_is_valid(builtin_rules) -> None:  # type: ignore[no-untyped-def]
    ids = {r.id for r in builtin_rules}
    required = {
        "dovecot.status-notification-timeout",
        "dovecot.process-limit-reached",
        "sendmail.dsn-return-receipt",
        "systemd.remount-fs-failed",
        "systemd.stop-timeout-killed",
        "systemd.unit-failed",
        "kernel.fs-remounted-readonly",
        "nfs.server-not-responding",
        "system.disk-full",
        "apache.max-request-workers",
        "apache.child-crashed",
        "apache.internal-redirect-limit",
    }
    assert required <= ids
    for rule in builtin_rules:
        if rule.kind == "line":
            assert rule.literals, f"{rule.id} has no prefilter literal"


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.floats(allow_nan=False)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_never_escapes_the_loader(text: str) -> None:
    report = read_rule_text(text, "fuzz.yaml")
    for e in report.errors:
        assert isinstance(e, RuleError)
        assert e.location is not None and e.location.path == "fuzz.yaml"


@settings(max_examples=300, deadline=None)
@given(st.lists(yaml_values, max_size=3))
def test_arbitrary_yaml_structures_never_escape_the_loader(items: list[object]) -> None:
    import yaml

    text = yaml.safe_dump({"rules": items})
    report = read_rule_text(text, "fuzz.yaml")
    assert report.rules == [] or all(r.id for r in report.rules)
    for e in report.errors:
        assert isinstance(e, RuleError)


def test_an_override_may_name_a_rule_of_another_file(tmp_path: Path) -> None:
    """Overrides apply after every file is read, wherever the rule stands (the rules test
    reads sample directories' rule files the same way as --rules)."""
    from pipeline.detection.loader import extend_rules

    (tmp_path / "a.yaml").write_text(
        "overrides:\n  - id: dovecot.process-limit-reached\n    severity: low\n"
    )
    builtin, _ = check_rule_dirs([])
    got, errors = extend_rules(
        [], [tmp_path, *sorted(Path(builtin[0].location.path).parent.glob("*.yaml"))]
    )
    assert errors == []
    assert {r.id: r.severity for r in got}["dovecot.process-limit-reached"] == Severity.LOW
