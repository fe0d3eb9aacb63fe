"""Loading YAML rule files into :class:`Rule` values, with located errors.

Every problem found is a :class:`RuleError` naming ``file:line``. ``read_rule_file`` collects
all of them (for ``rules validate``); ``load_rules`` raises the first.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.detection.model import Condition, Example, Rule, Selectors
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
REQUIRED_KEYS = ("id", "title", "severity", "description", "remediation", "match", "examples")
SELECT_KEYS = ("format", "program", "host", "level")
CONDITION_KEYS = {"equals", "in", "contains", "regex", "if_present"}
EXAMPLE_KEYS = {"match", "no_match"}
EXAMPLE_ITEM_KEYS = {"line", "fields"}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: literals shorter than this select too many lines to be worth a prefilter
MIN_LITERAL = 3
#: fields whose text stands verbatim in the raw line, so their literals can prefilter
LITERAL_FIELDS = ("message", "program", "host")


@dataclass
class RuleFileReport:
    path: str
    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)


def builtin_rules_dir() -> Path:
    """Where the built-in pack is: ``$LOGWARDEN_RULES``, the source tree, or the install prefix."""
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
            self.err(f"condition on {name!r} has no test (equals, in, contains or regex)", line)
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
        if "in" in spec_d:
            v = spec_d["in"]
            if (
                not isinstance(v, list)
                or not v
                or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v)
            ):
                self.err(f"'in' of {name!r} must be a non-empty list of texts", line)
                ok = False
            else:
                kwargs["one_of"] = frozenset(str(x) for x in v)
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
        return Condition(**kwargs) if ok else None

    def examples(self, node: Any, line: int) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
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
                iline = items.line_of(i)
                if isinstance(item, str):
                    out[kind].append(
                        Example(item, MappingProxyType({}), Location(self.path, iline))
                    )
                elif isinstance(item, LocDict):
                    self.unknown_keys(item, EXAMPLE_ITEM_KEYS, f"a {kind} example")
                    text = item.get("line")
                    fields = item.get("fields", {})
                    if not isinstance(text, str):
                        self.err("an example needs a 'line' text", iline)
                        continue
                    if not isinstance(fields, dict) or not all(
                        isinstance(v, (str, int)) for v in fields.values()
                    ):
                        self.err("example 'fields' must map names to texts", iline)
                        continue
                    if fields and kind == "no_match":
                        self.err("a no_match example cannot check fields", iline)
                        continue
                    out[kind].append(
                        Example(
                            text,
                            MappingProxyType({str(k): str(v) for k, v in fields.items()}),
                            Location(self.path, iline),
                        )
                    )
                else:
                    self.err(f"a {kind} example must be a line or a mapping", iline)
        return tuple(out["match"]), tuple(out["no_match"])

    def rule(self, node: Any, line: int) -> Rule | None:
        if not isinstance(node, LocDict):
            self.err("a rule must be a mapping", line)
            return None
        before = len(self.errors)
        self.unknown_keys(node, RULE_KEYS, "a rule")
        for key in REQUIRED_KEYS:
            if key not in node:
                self.err(f"missing required key {key!r}", node.line)
        rule_id = self.text(node, "id")
        if rule_id and not ID_RE.match(rule_id):
            self.err(
                f"invalid rule id {rule_id!r}",
                node.line_of("id"),
                "use dotted lower-case words such as dovecot.process-limit-reached",
            )
        title = self.text(node, "title")
        sev_text = self.text(node, "severity")
        severity = Severity.INFO
        if sev_text:
            try:
                severity = Severity.parse(sev_text)
            except ValueError as exc:
                self.err(str(exc), node.line_of("severity"))
        description = self.text(node, "description")
        remediation = self.text(node, "remediation")
        references = self.text_list(node, "references")
        tags = self.text_list(node, "tags")
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
        if match is not None:
            if not isinstance(match, LocDict) or not match:
                self.err(
                    "'match' must be a non-empty mapping of field conditions", node.line_of("match")
                )
            else:
                for name, spec in match.items():
                    cond = self.condition(name, spec, match.line_of(name))
                    if cond is not None:
                        conditions.append(cond)
        ex_match: tuple[Example, ...] = ()
        ex_no: tuple[Example, ...] = ()
        if "examples" in node:
            ex_match, ex_no = self.examples(node["examples"], node.line_of("examples"))
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
            literals=plan_literals(select, conditions),
        )


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
        reader.unknown_keys(doc, {"rules"}, "a rule file")
        items = doc.get("rules")
        if not isinstance(items, LocList):
            reader.err("'rules' must be a list", doc.line_of("rules") if "rules" in doc else 1)
        else:
            for i, node in enumerate(items):
                rule = reader.rule(node, items.line_of(i))
                if rule is not None:
                    report.rules.append(rule)
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
    paths: list[str | os.PathLike[str]] = []
    if builtin:
        paths.append(builtin_rules_dir())
    paths.extend(dirs)
    rules: list[Rule] = []
    errors: list[RuleError] = []
    try:
        files = rule_files(paths)
    except RuleError as exc:
        return [], [exc]
    for f in files:
        report = read_rule_file(f)
        rules.extend(report.rules)
        errors.extend(report.errors)
    seen: dict[str, Rule] = {}
    unique: list[Rule] = []
    for rule in rules:
        if rule.id in seen:
            errors.append(
                RuleError(
                    f"duplicate rule id {rule.id!r} (first defined at {seen[rule.id].location})",
                    rule.location,
                )
            )
            continue
        seen[rule.id] = rule
        unique.append(rule)
    return unique, errors


def load_rules(dirs: Sequence[str | os.PathLike[str]] = (), *, builtin: bool = True) -> list[Rule]:
    """Load and validate rules; raise the first :class:`RuleError`."""
    rules, errors = check_rule_dirs(dirs, builtin=builtin)
    if errors:
        raise errors[0]
    return rules
