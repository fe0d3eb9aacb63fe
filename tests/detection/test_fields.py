"""Fields a rule keys on must be able to exist: group_by, distinct, joins, conditions.

Errors when no capture, enrichment copy, envelope or grammar field of that name can ever
reach the rule; warnings when only a grammar that takes names from the text (journal fields,
sendmail ``key=value`` pairs, RFC 5424 structured data) could, and the rule does not select it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.detection.fields import check_fields
from pipeline.detection.loader import check_rule_dirs, load_rules
from pipeline.errors import RuleError

HEAD = """\
    title: t
    severity: low
    description: d
    remediation: r
"""
LINE_EXAMPLES = """\
    examples:
      match: ['Nov 30 08:00:00 vm sshd[1]: Failed password for root from 192.0.2.1 port 22']
      no_match: ['Nov 30 08:00:00 vm other[1]: Failed password for root from 192.0.2.1']
"""
SCENARIO = """\
    examples:
      match: [{lines: ['x']}]
      no_match: [{lines: ['y']}]
"""


def line_rule(rule_id: str, select: str, match: str, extra: str = "") -> str:
    return (
        f"  - id: {rule_id}\n{HEAD}    select: {select}\n    match:\n{match}{extra}{LINE_EXAMPLES}"
    )


AUTH_FAIL = line_rule(
    "my.auth-fail",
    "{program: sshd, format: [syslog, rfc3339]}",
    "      message: {regex: 'Failed password for (?P<user>\\S+) from (?P<ip>\\S+)'}\n",
)


def at(tmp_path: Path, text: str, needle: str) -> str:
    """``path:line`` of the first line of ``text`` holding ``needle``."""
    lines = text.splitlines()
    number = next(i for i, x in enumerate(lines, 1) if needle in x)
    return f"{tmp_path / 'rules' / 'r.yaml'}:{number}"


def load(tmp_path: Path, text: str) -> tuple[list[str], list[str]]:
    """Errors (as load_rules sees them) and warnings of a rule file, as text."""
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "r.yaml").write_text(text)
    rules, errors = check_rule_dirs([d], builtin=False)
    return [str(e) for e in errors], [str(w) for w in check_fields(rules)[1]]


def test_the_builtin_pack_keys_only_on_fields_that_exist() -> None:
    rules = load_rules()
    errors, warnings = check_fields(rules)
    assert errors == [] and warnings == []


def test_a_group_by_field_the_steps_never_capture_is_an_error_at_its_line(
    tmp_path: Path,
) -> None:
    text = f"""rules:
{AUTH_FAIL}  - id: my.brute
    type: threshold
{HEAD}    of: my.auth-fail
    count: 3
    window: 10m
    group_by: [host, ipaddr]
{SCENARIO}"""
    errors, _ = load(tmp_path, text)
    assert errors == [
        f"{at(tmp_path, text, 'ipaddr')}: [my.brute] group_by field 'ipaddr' never exists on the matches of "
        "'my.auth-fail': no capture, enrichment copy, envelope or grammar field has that "
        "name ('my.auth-fail' captures: ip, user)"
    ]
    with pytest.raises(RuleError, match="group_by field 'ipaddr'"):
        load_rules([tmp_path / "rules"], builtin=False)


def test_the_captured_name_is_accepted(tmp_path: Path) -> None:
    text = f"""rules:
{AUTH_FAIL}  - id: my.brute
    type: threshold
{HEAD}    of: {{rule: my.auth-fail, distinct: user}}
    count: 3
    window: 10m
    group_by: [host, ip]
{SCENARIO}"""
    assert load(tmp_path, text) == ([], [])


def test_distinct_and_where_fields_are_checked_against_their_step(tmp_path: Path) -> None:
    text = f"""rules:
{AUTH_FAIL}  - id: my.spray
    type: sequence
{HEAD}    window: 10m
    group_by: [host]
    steps:
      - rule: my.auth-fail
        count: 3
        distinct: usr
      - rule: my.auth-fail
        where:
          adress: {{equals: 192.0.2.1}}
{SCENARIO}"""
    errors, _ = load(tmp_path, text)
    assert [e.split(" never exists")[0] for e in errors] == [
        f"{at(tmp_path, text, 'distinct: usr')}: [my.spray] distinct field 'usr'",
        f"{at(tmp_path, text, 'adress:')}: [my.spray] 'where' field 'adress'",
    ]


def test_enrich_by_and_copy_must_exist_on_both_sides(tmp_path: Path) -> None:
    source = line_rule(
        "my.from",
        "{program: sshd, format: [syslog]}",
        "      message: {regex: 'Accepted \\S+ for (?P<user>\\S+) from (?P<ip>\\S+)'}\n",
    )
    consumer = line_rule(
        "my.fail",
        "{program: sshd, format: [syslog]}",
        "      message: {regex: 'Failed password for (?P<user>\\S+)'}\n",
        "    enrich:\n"
        "      - rule: my.from\n"
        "        by: [user, session]\n"
        "        copy: [ip, port]\n"
        "        keep: 1h\n",
    )
    text = f"rules:\n{source}{consumer}"
    errors, _ = load(tmp_path, text)
    by_at, copy_at = at(tmp_path, text, "by: [user"), at(tmp_path, text, "copy: [ip")
    never = "never exists on the matches of"
    assert errors == [
        f"{by_at}: [my.fail] enrich 'by' field 'session' {never} 'my.fail': no capture, "
        "enrichment copy, envelope or grammar field has that name ('my.fail' captures: user; "
        "its enrichment copies: ip, port)",
        f"{by_at}: [my.fail] enrich 'by' field 'session' {never} 'my.from': no capture, "
        "enrichment copy, envelope or grammar field has that name ('my.from' captures: ip, "
        "user)",
        f"{copy_at}: [my.fail] enrich 'copy' field 'port' {never} 'my.from': no capture, "
        "enrichment copy, envelope or grammar field has that name ('my.from' captures: ip, "
        "user)",
    ]


def test_copied_fields_reach_the_correlations_built_on_the_rule(tmp_path: Path) -> None:
    source = line_rule(
        "my.from",
        "{program: sshd}",
        "      message: {regex: 'Accepted \\S+ for (?P<user>\\S+) from (?P<ip>\\S+)'}\n",
    )
    consumer = line_rule(
        "my.fail",
        "{program: sshd}",
        "      message: {regex: 'Failed password for (?P<user>\\S+)'}\n",
        "    enrich:\n      - {rule: my.from, by: [user], copy: [ip], keep: 1h}\n",
    )
    text = f"""rules:
{source}{consumer}  - id: my.brute
    type: threshold
{HEAD}    of: my.fail
    count: 3
    window: 10m
    group_by: [ip]
    suppress: {{period: 1h, group_by: [ip]}}
{SCENARIO}"""
    assert load(tmp_path, text) == ([], [])


@pytest.mark.parametrize(
    ("select", "error", "warning"),
    [
        # a journal rule: any journal field name is legitimate
        ("{format: [journal-json]}", False, False),
        # journal input may or may not come: a warning
        ("{program: sshd}", False, True),
        # no journal-json among the formats: it can never exist
        ("{format: [syslog, rfc3339]}", True, False),
    ],
)
def test_journal_fields_are_certain_possible_or_impossible(
    tmp_path: Path, select: str, error: bool, warning: bool
) -> None:
    rule = line_rule(
        "my.unit",
        select,
        "      message: {contains: 'Failed password'}\n",
        "    suppress: {period: 1h, group_by: [_SYSTEMD_UNIT]}\n",
    )
    errors, warnings = load(tmp_path, f"rules:\n{rule}")
    assert bool(errors) == error, errors
    assert bool(warnings) == warning, warnings
    if warning:
        assert "only a journal field could supply it" in warnings[0]
        assert warnings[0].startswith(f"{tmp_path / 'rules' / 'r.yaml'}:")


def test_if_present_conditions_on_journal_fields_get_no_warning(tmp_path: Path) -> None:
    rule = line_rule(
        "my.unit",
        "{program: sshd}",
        "      message: {contains: 'Failed password'}\n"
        "      _COMM: {equals: sshd, if_present: true}\n",
    )
    assert load(tmp_path, f"rules:\n{rule}") == ([], [])


def test_body_grammar_fields_count_for_the_programs_that_have_them(tmp_path: Path) -> None:
    systemd = line_rule(
        "my.failed",
        "{program: systemd}",
        "      message: {contains: 'Failed password'}\n      result: {equals: timeout}\n",
    )
    sshd = line_rule(
        "my.nope",
        "{program: sshd, format: [syslog]}",
        "      message: {contains: 'Failed password'}\n      result: {equals: timeout}\n",
    )
    sendmail = line_rule(
        "my.relay",
        "{program: [sm-mta]}",
        "      message: {contains: 'Failed password'}\n      relay: {contains: example}\n",
    )
    errors, warnings = load(tmp_path, f"rules:\n{systemd}{sshd}{sendmail}")
    assert len(errors) == 1 and "[my.nope] match field 'result' never exists" in errors[0]
    assert warnings == []


def test_a_field_only_a_sendmail_pair_could_supply_is_a_warning(tmp_path: Path) -> None:
    rule = line_rule(
        "my.any",
        "{format: [syslog]}",
        "      message: {contains: 'Failed password'}\n      relay: {contains: example}\n",
    )
    errors, warnings = load(tmp_path, f"rules:\n{rule}")
    assert errors == []
    (w,) = warnings
    assert "[my.any] match field 'relay'" in w
    assert "only a sendmail key=value pair could supply it" in w
