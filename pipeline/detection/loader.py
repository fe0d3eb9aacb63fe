"""Loading YAML rule files into :class:`Rule` values, with located errors.

Every problem found is a :class:`RuleError` naming ``file:line``. ``read_rule_file`` collects
all of them (for ``rules validate``); ``load_rules`` raises the first.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.detection.fields import check_fields
from pipeline.detection.model import (
    Condition,
    Correlation,
    Enrich,
    Example,
    Marks,
    Rule,
    Selectors,
    Step,
    Suppress,
    parse_duration,
)
from pipeline.detection.patterns import (
    PatternError,
    best_literal_set,
    compile_pattern,
    required_literals,
)
from pipeline.detection.yamlsrc import LocDict, LocList, load_yaml
from pipeline.errors import Location, RuleError
from pipeline.model import Severity

RULE_KEYS = {
    "notify",
    "type",
    "report",
    "enabled",
    "suppress",
    "enrich",
    "window",
    "group_by",
    "steps",
    "of",
    "count",
    "trigger",
    "expect",
    "sample",
    "id",
    "title",
    "severity",
    "description",
    "remediation",
    "references",
    "tags",
    "select",
    "match",
    "examples",
}
REQUIRED_KEYS = ("id", "title", "severity", "description", "remediation", "examples")
RULE_TYPES = ("line", "threshold", "sequence", "absence")
#: keys that only some rule types take
TYPE_KEYS = {
    "line": {"match", "enrich", "report"},
    "threshold": {"of", "count", "window", "group_by", "sample"},
    "sequence": {"steps", "window", "group_by", "sample"},
    "absence": {"trigger", "expect", "window", "group_by", "sample"},
}
STEP_KEYS = {"rule", "where", "count", "distinct"}
SUPPRESS_KEYS = {"period", "group_by", "digest"}
ENRICH_KEYS = {"rule", "by", "copy", "keep"}
OVERRIDE_KEYS = {"id", "enabled", "severity", "window", "hosts", "count", "suppress"}
EXAMPLE_SCENARIO_KEYS = {"lines", "fields", "count"}
SELECT_KEYS = ("format", "program", "host", "level")
CONDITION_KEYS = {"equals", "in", "not_in", "contains", "regex", "if_present"}
EXAMPLE_KEYS = {"match", "no_match"}
EXAMPLE_ITEM_KEYS = {"line", "fields", "lines", "count"}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: literals shorter than this select too many lines to be worth a prefilter
MIN_LITERAL = 3
#: fields whose text stands verbatim in the raw line, so their literals can prefilter
LITERAL_FIELDS = ("message", "program", "host")


@dataclass(frozen=True)
class Override:
    """Changes to an already loaded rule, e.g. enabling ``mail.delivery-silence`` for hosts."""

    rule: str
    changes: dict[str, Any]
    location: Location

    def problem(self, rule: Rule) -> str | None:
        """Why this override cannot apply to ``rule`` (a setting its type does not have)."""
        if "window" in self.changes and rule.correlation is None:
            return f"'window' does not apply to {rule.id!r}, a {rule.kind} rule"
        if "count" in self.changes and rule.kind != "threshold":
            return f"'count' does not apply to {rule.id!r}, a {rule.kind} rule"
        return None

    def apply(self, rule: Rule) -> Rule:
        c = self.changes
        updates: dict[str, Any] = {}
        for key in ("enabled", "severity", "suppress"):
            if key in c:
                updates[key] = c[key]
        if "hosts" in c:
            updates["select"] = replace(rule.select, host=c["hosts"])
        corr = rule.correlation
        if corr is not None and ("window" in c or "count" in c):
            updates["correlation"] = replace(
                corr, window=c.get("window", corr.window), count=c.get("count", corr.count)
            )
        return replace(rule, **updates)


@dataclass
class RuleFileReport:
    path: str
    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)


def builtin_rules_dir() -> Path:
    """Where the built-in pack is: ``$LOGWARDEN_BUILTIN_RULES``, the source tree, or the
    install prefix."""
    env = os.environ.get("LOGWARDEN_BUILTIN_RULES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent.parent / "rules"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "logwarden" / "rules"


def rule_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(x for x in path.iterdir() if x.suffix in (".yaml", ".yml")))
        elif path.exists():
            out.append(path)
        else:
            raise RuleError("no such rule file or directory", Location(str(path)))
    return out


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[RuleError] = []

    def err(self, message: str, line: int | None, hint: str = "") -> None:
        self.errors.append(RuleError(message, Location(self.path, line), hint))

    def text(self, node: LocDict, key: str, *, required: bool = True) -> str | None:
        value = node.get(key)
        if value is None:
            if required:
                self.err(f"missing required key {key!r}", node.line)
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.err(f"{key!r} must be text", node.line_of(key))
            return None
        text = str(value).strip()
        if required and not text:
            self.err(f"{key!r} must not be empty", node.line_of(key))
            return None
        return text

    def text_list(self, node: LocDict, key: str) -> tuple[str, ...]:
        value = node.get(key)
        if value is None:
            return ()
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return (str(value),)
        if not isinstance(value, list):
            self.err(f"{key!r} must be a text or a list of texts", node.line_of(key))
            return ()
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                line = value.line_of(i) if isinstance(value, LocList) else node.line_of(key)
                self.err(f"{key!r} item {i + 1} must be text", line)
                continue
            out.append(str(item))
        return tuple(out)

    def unknown_keys(self, node: LocDict, allowed: Iterable[str], what: str) -> None:
        allowed = set(allowed)
        for key in node:
            if key not in allowed:
                self.err(
                    f"unknown key {key!r} in {what}",
                    node.line_of(key),
                    "allowed: " + ", ".join(sorted(allowed)),
                )

    # -- pieces of a rule ------------------------------------------------------------------

    def condition(self, name: str, spec: Any, line: int) -> Condition | None:
        if not FIELD_RE.match(name):
            self.err(f"invalid field name {name!r}", line)
            return None
        if isinstance(spec, str):
            spec_d: dict[str, Any] = {"equals": spec}
        elif isinstance(spec, LocDict):
            self.unknown_keys(spec, CONDITION_KEYS, f"condition on {name!r}")
            spec_d = dict(spec)
        else:
            self.err(f"condition on {name!r} must be a mapping or a text", line)
            return None
        ops = set(spec_d) - {"if_present"}
        if not ops:
            self.err(
                f"condition on {name!r} has no test (equals, in, not_in, contains or regex)", line
            )
            return None
        kwargs: dict[str, Any] = {"field": name}
        ok = True
        for key in ("equals", "contains"):
            if key in spec_d:
                v = spec_d[key]
                if isinstance(v, bool) or not isinstance(v, (str, int)):
                    self.err(f"{key!r} of {name!r} must be text", line)
                    ok = False
                else:
                    kwargs[key] = str(v)
        for key, attr in (("in", "one_of"), ("not_in", "none_of")):
            if key not in spec_d:
                continue
            v = spec_d[key]
            if (
                not isinstance(v, list)
                or not v
                or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v)
            ):
                self.err(f"{key!r} of {name!r} must be a non-empty list of texts", line)
                ok = False
            else:
                kwargs[attr] = frozenset(str(x) for x in v)
        if "regex" in spec_d:
            pat = spec_d["regex"]
            rline = spec.line_of("regex") if isinstance(spec, LocDict) else line
            if not isinstance(pat, str):
                self.err(f"'regex' of {name!r} must be text", rline)
                ok = False
            else:
                try:
                    kwargs["regex"] = compile_pattern(pat)
                except PatternError as exc:
                    self.err(f"regex of {name!r}: {exc}", rline)
                    ok = False
        if "if_present" in spec_d:
            if not isinstance(spec_d["if_present"], bool):
                self.err(f"'if_present' of {name!r} must be true or false", line)
                ok = False
            else:
                kwargs["if_present"] = spec_d["if_present"]
        return Condition(**kwargs, location=Location(self.path, line)) if ok else None

    def examples(
        self, node: Any, line: int, *, scenario: bool = False
    ) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
        if not isinstance(node, LocDict):
            self.err("'examples' must be a mapping with 'match' and 'no_match' lists", line)
            return (), ()
        self.unknown_keys(node, EXAMPLE_KEYS, "examples")
        out: dict[str, list[Example]] = {"match": [], "no_match": []}
        for kind in ("match", "no_match"):
            items = node.get(kind)
            if items is None:
                self.err(f"examples need a {kind!r} list", node.line, "every rule needs both")
                continue
            if not isinstance(items, LocList):
                self.err(f"examples {kind!r} must be a list", node.line_of(kind))
                continue
            for i, item in enumerate(items):
                ex = self.example(item, items.line_of(i), kind, scenario)
                if ex is not None:
                    out[kind].append(ex)
        return tuple(out["match"]), tuple(out["no_match"])

    def example(self, item: Any, iline: int, kind: str, scenario: bool) -> Example | None:
        loc = Location(self.path, iline)
        if isinstance(item, str) and not scenario:
            return Example(item, MappingProxyType({}), loc)
        if not isinstance(item, LocDict):
            want = "a mapping with 'lines'" if scenario else "a line or a mapping"
            self.err(f"a {kind} example must be {want}", iline)
            return None
        self.unknown_keys(
            item, EXAMPLE_SCENARIO_KEYS if scenario else EXAMPLE_ITEM_KEYS, f"a {kind} example"
        )
        fields = item.get("fields", {})
        if not isinstance(fields, dict) or not all(
            isinstance(v, (str, int)) for v in fields.values()
        ):
            self.err("example 'fields' must map names to texts", iline)
            return None
        if fields and kind == "no_match":
            self.err("a no_match example cannot check fields", iline)
            return None
        count = item.get("count")
        if count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or count < 0
        ):
            self.err("example 'count' must be a whole number", iline)
            return None
        frozen = MappingProxyType({str(k): str(v) for k, v in fields.items()})
        if scenario or "lines" in item:
            lines = item.get("lines")
            if (
                not isinstance(lines, list)
                or not lines
                or not all(isinstance(x, str) for x in lines)
            ):
                self.err("an example needs 'lines': a non-empty list of log lines", iline)
                return None
            return Example("", frozen, loc, tuple(lines), count)
        text = item.get("line")
        if not isinstance(text, str):
            self.err("an example needs a 'line' text", iline)
            return None
        return Example(text, frozen, loc, (), count)

    def duration(self, node: LocDict, key: str, *, required: bool) -> timedelta | None:
        value = node.get(key)
        if value is None:
            if required:
                self.err(f"missing required key {key!r}", node.line)
            return None
        try:
            d = parse_duration(value)
        except ValueError as exc:
            self.err(str(exc), node.line_of(key))
            return None
        if d <= timedelta(0):
            self.err(f"{key!r} must be longer than zero", node.line_of(key))
            return None
        return d

    def count_of(self, node: LocDict, key: str, default: int) -> int:
        value = node.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.err(f"{key!r} must be a whole number of at least 1", node.line_of(key))
            return default
        return value

    def marks(self, node: LocDict, *keys: str) -> Marks:
        """Where ``keys`` of ``node`` are written (the keys present)."""
        return tuple((k, Location(self.path, node.line_of(k))) for k in keys if k in node)

    def step(self, node: Any, line: int, what: str) -> Step | None:
        if isinstance(node, str):
            return Step(node, marks=(("rule", Location(self.path, line)),))
        if not isinstance(node, LocDict):
            self.err(f"{what} must be a rule id or a mapping with 'rule'", line)
            return None
        self.unknown_keys(node, STEP_KEYS, what)
        rule_id = self.text(node, "rule")
        where: list[Condition] = []
        spec = node.get("where")
        if spec is not None:
            if not isinstance(spec, LocDict) or not spec:
                self.err(
                    f"'where' of {what} must be a mapping of field conditions",
                    node.line_of("where"),
                )
            else:
                for name, cond_spec in spec.items():
                    cond = self.condition(name, cond_spec, spec.line_of(name))
                    if cond is not None:
                        where.append(cond)
        distinct = self.text(node, "distinct", required=False) if "distinct" in node else None
        count = self.count_of(node, "count", 1)
        if rule_id is None:
            return None
        marks = (("rule", Location(self.path, node.line)), *self.marks(node, "distinct"))
        return Step(rule_id, tuple(where), count, distinct, marks)

    def suppress(self, node: Any, line: int) -> Suppress | None:
        if not isinstance(node, LocDict):
            self.err("'suppress' must be a mapping with 'period'", line)
            return None
        self.unknown_keys(node, SUPPRESS_KEYS, "suppress")
        period = self.duration(node, "period", required=True)
        digest = node.get("digest", False)
        if not isinstance(digest, bool):
            self.err("'digest' must be true or false", node.line_of("digest"))
            return None
        if period is None:
            return None
        return Suppress(
            period, self.text_list(node, "group_by"), digest, self.marks(node, "group_by")
        )

    def enrich(self, node: Any, line: int) -> tuple[Enrich, ...]:
        if not isinstance(node, LocList):
            self.err("'enrich' must be a list", line)
            return ()
        out = []
        for i, item in enumerate(node):
            iline = node.line_of(i)
            if not isinstance(item, LocDict):
                self.err("an enrich entry must be a mapping", iline)
                continue
            self.unknown_keys(item, ENRICH_KEYS, "an enrich entry")
            rule_id = self.text(item, "rule")
            by = self.text_list(item, "by")
            copy = self.text_list(item, "copy")
            keep = self.duration(item, "keep", required=True)
            if not by or not copy:
                self.err("an enrich entry needs 'by' and 'copy' fields", iline)
                continue
            if rule_id and keep is not None:
                out.append(Enrich(rule_id, by, copy, keep, self.marks(item, "by", "copy")))
        return tuple(out)

    def correlation(self, kind: str, node: LocDict) -> Correlation | None:
        window = self.duration(node, "window", required=True)
        group_by = self.text_list(node, "group_by")
        sample = self.count_of(node, "sample", 5)
        marks = self.marks(node, "group_by")
        if kind == "threshold":
            of = self.step(node.get("of"), node.line_of("of"), "'of'") if "of" in node else None
            if "of" not in node:
                self.err(
                    "a threshold rule needs 'of': the rule whose matches are counted", node.line
                )
            count = self.count_of(node, "count", 1)
            if "count" not in node:
                self.err("a threshold rule needs 'count'", node.line)
            if window is None or of is None:
                return None
            return Correlation(kind, window, group_by, (of,), count, sample=sample, marks=marks)
        if kind == "sequence":
            steps_node = node.get("steps")
            if not isinstance(steps_node, LocList) or len(steps_node) < 2:
                self.err(
                    "a sequence rule needs 'steps': a list of at least two steps",
                    node.line_of("steps") if "steps" in node else node.line,
                )
                return None
            steps = [
                self.step(x, steps_node.line_of(i), f"step {i + 1}")
                for i, x in enumerate(steps_node)
            ]
            if window is None or any(s is None for s in steps):
                return None
            return Correlation(
                kind, window, group_by, tuple(s for s in steps if s), sample=sample, marks=marks
            )
        # absence
        trigger = (
            self.step(node["trigger"], node.line_of("trigger"), "'trigger'")
            if "trigger" in node
            else None
        )
        if "expect" not in node:
            self.err("an absence rule needs 'expect': the rule whose matches must come", node.line)
            return None
        expect = self.step(node["expect"], node.line_of("expect"), "'expect'")
        if "trigger" not in node:
            if group_by not in ((), ("host",)):
                self.err(
                    "an absence rule without 'trigger' (a heartbeat) is per host: "
                    "leave out 'group_by' or make it [host]",
                    node.line_of("group_by"),
                )
                return None
            group_by = ("host",)
        if window is None or expect is None or ("trigger" in node and trigger is None):
            return None
        return Correlation(kind, window, group_by, (), 1, trigger, expect, sample, marks)

    def rule(self, node: Any, line: int) -> Rule | None:
        if not isinstance(node, LocDict):
            self.err("a rule must be a mapping", line)
            return None
        before = len(self.errors)
        kind = str(node.get("type", "line"))
        if kind not in RULE_TYPES:
            self.err(
                f"unknown rule type {kind!r}",
                node.line_of("type"),
                "one of: " + ", ".join(RULE_TYPES),
            )
            kind = "line"
        other_types = set().union(*(v for k, v in TYPE_KEYS.items() if k != kind))
        allowed = RULE_KEYS - (other_types - TYPE_KEYS[kind])
        for key in node:
            if key in RULE_KEYS and key not in allowed:
                self.err(f"{key!r} does not apply to a {kind} rule", node.line_of(key))
        self.unknown_keys(node, RULE_KEYS, "a rule")
        required = (*REQUIRED_KEYS, "match") if kind == "line" else REQUIRED_KEYS
        for key in required:
            if key not in node:
                self.err(f"missing required key {key!r}", node.line)
        rule_id = self.text(node, "id") if "id" in node else None
        if rule_id and not ID_RE.match(rule_id):
            self.err(
                f"invalid rule id {rule_id!r}",
                node.line_of("id"),
                "use dotted lower-case words such as dovecot.process-limit-reached",
            )
        title = self.text(node, "title") if "title" in node else None
        sev_text = self.text(node, "severity") if "severity" in node else None
        severity = Severity.INFO
        if sev_text:
            try:
                severity = Severity.parse(sev_text)
            except ValueError as exc:
                self.err(str(exc), node.line_of("severity"))
        description = self.text(node, "description") if "description" in node else None
        remediation = self.text(node, "remediation") if "remediation" in node else None
        references = self.text_list(node, "references")
        tags = self.text_list(node, "tags")
        flags: dict[str, bool] = {}
        for key in ("report", "enabled"):
            value = node.get(key, True)
            if not isinstance(value, bool):
                self.err(f"{key!r} must be true or false", node.line_of(key))
            flags[key] = value is not False
        select = Selectors()
        sel = node.get("select")
        if sel is not None:
            if not isinstance(sel, LocDict):
                self.err("'select' must be a mapping", node.line_of("select"))
            else:
                self.unknown_keys(sel, SELECT_KEYS, "select")
                select = Selectors(**{k: self.text_list(sel, k) for k in SELECT_KEYS})
        conditions: list[Condition] = []
        match = node.get("match")
        if match is not None and kind == "line":
            if not isinstance(match, LocDict) or not match:
                self.err(
                    "'match' must be a non-empty mapping of field conditions", node.line_of("match")
                )
            else:
                for name, spec in match.items():
                    cond = self.condition(name, spec, match.line_of(name))
                    if cond is not None:
                        conditions.append(cond)
        suppress = (
            self.suppress(node["suppress"], node.line_of("suppress"))
            if "suppress" in node
            else None
        )
        enrich = self.enrich(node["enrich"], node.line_of("enrich")) if "enrich" in node else ()
        correlation = self.correlation(kind, node) if kind != "line" else None
        templates: dict[str, str] = {}
        if "notify" in node:
            spec = node["notify"]
            if not isinstance(spec, LocDict):
                self.err(
                    "'notify' must be a mapping with 'title' and/or 'body' templates",
                    node.line_of("notify"),
                )
            else:
                from pipeline.notify.render import check_template

                self.unknown_keys(spec, {"title", "body"}, "notify")
                for key in ("title", "body"):
                    if key not in spec:
                        continue
                    if not isinstance(spec[key], str):
                        self.err(f"notify {key!r} must be a template text", spec.line_of(key))
                        continue
                    try:
                        check_template(spec[key])
                    except (KeyError, ValueError, IndexError) as exc:
                        self.err(f"notify {key!r} template: unknown field {exc}", spec.line_of(key))
                        continue
                    templates[key] = spec[key]
        ex_match: tuple[Example, ...] = ()
        ex_no: tuple[Example, ...] = ()
        if "examples" in node:
            ex_match, ex_no = self.examples(
                node["examples"], node.line_of("examples"), scenario=kind != "line"
            )
        if len(self.errors) > before:
            return None
        assert rule_id and title and description is not None and remediation is not None
        return Rule(
            id=rule_id,
            title=title,
            severity=severity,
            description=description,
            remediation=remediation,
            references=references,
            tags=tags,
            select=select,
            conditions=tuple(conditions),
            location=Location(self.path, node.line),
            examples_match=ex_match,
            examples_no_match=ex_no,
            literals=plan_literals(select, conditions) if kind == "line" else (),
            message_literals=message_literals(conditions) if kind == "line" else (),
            report=flags["report"],
            enabled=flags["enabled"],
            suppress=suppress,
            enrich=enrich,
            correlation=correlation,
            notify_title=templates.get("title"),
            notify_body=templates.get("body"),
        )

    def override(self, node: Any, line: int) -> Override | None:
        if not isinstance(node, LocDict):
            self.err("an override must be a mapping with 'id'", line)
            return None
        before = len(self.errors)
        self.unknown_keys(node, OVERRIDE_KEYS, "an override")
        rule_id = self.text(node, "id")
        changes: dict[str, Any] = {}
        if "enabled" in node:
            if not isinstance(node["enabled"], bool):
                self.err("'enabled' must be true or false", node.line_of("enabled"))
            changes["enabled"] = node["enabled"]
        if "severity" in node:
            try:
                changes["severity"] = Severity.parse(str(node["severity"]))
            except ValueError as exc:
                self.err(str(exc), node.line_of("severity"))
        if "window" in node:
            changes["window"] = self.duration(node, "window", required=True)
        if "count" in node:
            changes["count"] = self.count_of(node, "count", 1)
        if "hosts" in node:
            changes["hosts"] = self.text_list(node, "hosts")
        if "suppress" in node:
            changes["suppress"] = self.suppress(node["suppress"], node.line_of("suppress"))
        if len(self.errors) > before or rule_id is None:
            return None
        return Override(rule_id, changes, Location(self.path, node.line))


def plan_literals(select: Selectors, conditions: Sequence[Condition]) -> tuple[bytes, ...]:
    """The prefilter literals of a rule: the most selective required literal set."""
    options: list[frozenset[str] | None] = []
    for cond in conditions:
        if cond.field not in LITERAL_FIELDS or cond.if_present:
            continue
        if cond.equals is not None:
            options.append(frozenset([cond.equals]))
        if cond.one_of is not None:
            options.append(cond.one_of)
        if cond.contains is not None:
            options.append(frozenset([cond.contains]))
        if cond.regex is not None:
            options.append(required_literals(cond.regex.source))
    for values in (select.program, select.host):
        if values and not any(ch in v for v in values for ch in "*?["):
            options.append(frozenset(values))
    best = best_literal_set(options)
    if best is None or min(len(x) for x in best) < MIN_LITERAL:
        return ()
    return tuple(sorted(x.encode("utf-8") for x in best))


def message_literals(conditions: Sequence[Condition]) -> tuple[str, ...]:
    """Texts of which one must occur in the message: a C-speed test before any regex runs."""
    options: list[frozenset[str] | None] = []
    for cond in conditions:
        if cond.field != "message" or cond.if_present:
            continue
        if cond.contains is not None:
            options.append(frozenset([cond.contains]))
        if cond.regex is not None:
            options.append(required_literals(cond.regex.source))
    best = best_literal_set(options)
    return tuple(sorted(best)) if best else ()


def read_rule_text(text: str, path: str) -> RuleFileReport:
    report = RuleFileReport(path)
    reader = _Reader(path)
    try:
        doc = load_yaml(text, path)
    except RuleError as exc:
        report.errors.append(exc)
        return report
    if doc is None:
        reader.err("the file holds no rules", 1, "expected a top-level 'rules:' list")
    elif not isinstance(doc, LocDict):
        reader.err("a rule file must be a mapping with a 'rules' list", 1)
    else:
        reader.unknown_keys(doc, {"rules", "overrides"}, "a rule file")
        items = doc.get("rules", LocList() if "overrides" in doc else None)
        if not isinstance(items, LocList):
            reader.err("'rules' must be a list", doc.line_of("rules") if "rules" in doc else 1)
        else:
            for i, node in enumerate(items):
                rule = reader.rule(node, items.line_of(i))
                if rule is not None:
                    report.rules.append(rule)
        if "overrides" in doc:
            ovs = doc["overrides"]
            if not isinstance(ovs, LocList):
                reader.err("'overrides' must be a list", doc.line_of("overrides"))
            else:
                for i, node in enumerate(ovs):
                    ov = reader.override(node, ovs.line_of(i))
                    if ov is not None:
                        report.overrides.append(ov)
    report.errors.extend(reader.errors)
    return report


def read_rule_file(path: Path) -> RuleFileReport:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report = RuleFileReport(str(path))
        report.errors.append(
            RuleError(f"cannot read rule file: {exc.strerror}", Location(str(path)))
        )
        return report
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        report = RuleFileReport(str(path))
        report.errors.append(RuleError("rule file is not valid UTF-8", Location(str(path), line)))
        return report
    return read_rule_text(text, str(path))


def check_rule_dirs(
    dirs: Sequence[str | os.PathLike[str]], *, builtin: bool = True
) -> tuple[list[Rule], list[RuleError]]:
    """Read every rule file; return the valid rules and every error (cross-rule checks too)."""
    paths = [builtin_rules_dir(), *dirs] if builtin else list(dirs)
    try:
        return extend_rules([], paths)
    except RuleError as exc:  # a path that is not there
        return [], [exc]


def extend_rules(
    rules: Sequence[Rule], paths: Sequence[str | os.PathLike[str]]
) -> tuple[list[Rule], list[RuleError]]:
    """``rules`` plus the rules of more files, then every file's overrides (as ``--rules``
    adds them: an override may name a rule from any file)."""
    seen = {r.id: r for r in rules}
    order = [r.id for r in rules]
    errors: list[RuleError] = []
    overrides: list[Override] = []
    for f in rule_files(paths):
        report = read_rule_file(f)
        errors.extend(report.errors)
        overrides.extend(report.overrides)
        for rule in report.rules:
            if rule.id in seen:
                errors.append(
                    RuleError(
                        f"duplicate rule id {rule.id!r} (first defined at "
                        f"{seen[rule.id].location})",
                        rule.location,
                    )
                )
                continue
            seen[rule.id] = rule
            order.append(rule.id)
    for ov in overrides:
        if ov.rule not in seen:
            errors.append(RuleError(f"override of unknown rule {ov.rule!r}", ov.location))
            continue
        if (why := ov.problem(seen[ov.rule])) is not None:
            errors.append(RuleError(why, ov.location))
            continue
        seen[ov.rule] = ov.apply(seen[ov.rule])
    out = [seen[i] for i in order]
    errors.extend(check_references(out))
    errors.extend(check_fields(out)[0])
    return out, errors


def check_references(rules: Sequence[Rule]) -> list[RuleError]:
    """Correlations and enrichments must name existing line rules, with fields they have."""
    by_id = {r.id: r for r in rules}
    errors: list[RuleError] = []
    for rule in rules:
        for ref in sorted(rule.referenced()):
            target = by_id.get(ref)
            if target is None:
                errors.append(
                    RuleError(f"{rule.id!r} refers to unknown rule {ref!r}", rule.location)
                )
            elif target.correlation is not None:
                errors.append(
                    RuleError(
                        f"{rule.id!r} refers to {ref!r}, a {target.kind} rule; steps, triggers "
                        "and enrichments must name line rules",
                        rule.location,
                    )
                )
    return errors


def dependencies(roots: Iterable[Rule], by_id: Mapping[str, Rule]) -> set[str]:
    """Ids of the rules ``roots`` use, directly or through the rules they use (a helper
    with its own enrichment source needs that source too)."""
    needed: set[str] = set()
    todo = list(roots)
    while todo:
        for ref in todo.pop().referenced() - needed:
            needed.add(ref)
            if ref in by_id:
                todo.append(by_id[ref])
    return needed


def active_rules(rules: Sequence[Rule]) -> list[Rule]:
    """The enabled rules, plus the line rules they use (steps, triggers, enrichment
    sources) as silent helpers even when those are disabled or ``report: false``: turning a
    noisy line rule off must not take the correlations built on it down with it.
    Helpers nothing enabled uses are dropped, so they cost nothing.
    """
    by_id = {r.id: r for r in rules}
    enabled = {r.id for r in rules if r.enabled}
    needed = dependencies((r for r in rules if r.enabled), by_id)
    out = []
    for r in rules:
        if r.id in enabled:
            if r.kind == "line" and not r.report and r.id not in needed:
                continue
            if r.correlation and not r.correlation.referenced() <= set(by_id):
                continue
            out.append(r)
        elif r.id in needed and r.kind == "line":
            out.append(replace(r, enabled=True, report=False))
    return out


def load_rules(dirs: Sequence[str | os.PathLike[str]] = (), *, builtin: bool = True) -> list[Rule]:
    """Load and validate rules; raise the first :class:`RuleError`.

    A valid rule set is kept in the rule cache (:mod:`pipeline.detection.cache`), keyed by
    the files' content and the code, and taken from there while neither changes.
    """
    from pipeline.detection import cache

    key = None
    if cache.enabled():
        try:
            key = cache.key_of(rule_files([builtin_rules_dir(), *dirs] if builtin else dirs))
        except (OSError, RuleError):  # reading the files reports it
            key = None
        cached = cache.load(key) if key is not None else None
        if cached is not None:
            return cached
    rules, errors = check_rule_dirs(dirs, builtin=builtin)
    if errors:
        raise errors[0]
    if key is not None:
        try:  # not when a file changed while it was read: the key must be of what was read
            same = key == cache.key_of(
                rule_files([builtin_rules_dir(), *dirs] if builtin else dirs)
            )
        except (OSError, RuleError):
            same = False
        if same:
            cache.store(key, rules)
    return rules
