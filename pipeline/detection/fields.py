"""Which fields a rule's events can carry, and the check that every field a rule keys on can.

A field a rule reads (a condition, ``group_by``, ``distinct``, a join's ``by``/``copy``) comes
from one of:

* the event envelope: ``message``, ``program``, ``host``, ``level``, ``pid``, ``format``;
* the grammars the rule's events can come through: the line formats its ``select: format``
  allows (all when it has none) and the body grammars of its ``select: program`` names (all
  when it has none), each with the names it declares (:class:`FieldNames`);
* the captures (named groups) of the rule's regexes and the fields its enrichments copy; a
  correlation's steps, trigger and ``group_by`` see those of the line rules they name.

A name none of these can ever produce is an error at the ``file:line`` of the YAML key. A
name only a grammar taking names from the text could produce (a journal field, a sendmail
``key=value`` pair), where the rule does not select that format or program, is a warning:
the rule may work on some inputs and silently never on others. Conditions with
``if_present: true`` say that themselves, so they get no warning.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.detection.model import Condition, Rule, Selectors, Step, mark_of
from pipeline.errors import Location, RuleError
from pipeline.grammars.base import FieldNames
from pipeline.grammars.bodies import BODY_GRAMMARS, BodyGrammar
from pipeline.grammars.registry import FORMATS

#: what :meth:`Event.get` reads from the envelope
ENVELOPE_FIELDS = frozenset({"message", "program", "host", "level", "pid", "format"})


@dataclass(frozen=True, slots=True)
class Supply:
    """The fields the events (or matches) of one rule can carry."""

    rule: str | None  # None: the events a line rule tests, before any capture
    certain: frozenset[str]
    #: open name sources the rule selects (a journal field of a journal-json rule)
    selected: tuple[FieldNames, ...]
    #: open name sources the rule's events may or may not come through
    unselected: tuple[FieldNames, ...]

    def judge(self, name: str) -> str | None:
        """None when ``name`` can exist, "" when it never can, else what could supply it."""
        if name in self.certain or any(s.expected(name) for s in self.selected):
            return None
        could = dict.fromkeys(s.open_what for s in self.unselected if s.expected(name))
        return " or ".join(could)


def _glob_may_match(pattern: str, grammar: BodyGrammar) -> bool:
    if any(fnmatch.fnmatchcase(p, pattern) for p in grammar.programs):
        return True
    head = pattern
    for ch in "*?[":
        head = head.partition(ch)[0]
    return any(head.startswith(p) or p.startswith(head) for p in grammar.prefixes)


def _sources(select: Selectors) -> tuple[frozenset[str], list[FieldNames], list[FieldNames]]:
    """The fixed names, and the selected and other open sources, of events ``select`` takes."""
    fixed: set[str] = set(ENVELOPE_FIELDS)
    selected: list[FieldNames] = []
    unselected: list[FieldNames] = []
    if select.format:
        formats = [(FORMATS[f].fields, True) for f in select.format if f in FORMATS]
    else:
        formats = [(fmt.fields, False) for fmt in FORMATS.values()]
    if select.program:
        bodies = [
            (g.fields, True)
            for g in BODY_GRAMMARS.values()
            if any(
                _glob_may_match(p, g) if any(ch in p for ch in "*?[") else g.applies_to(p)
                for p in select.program
            )
        ]
    else:
        bodies = [(g.fields, False) for g in BODY_GRAMMARS.values()]
    for names, chosen in (*formats, *bodies):
        fixed |= names.fixed
        if names.open is not None:
            (selected if chosen else unselected).append(names)
    return frozenset(fixed), selected, unselected


class FieldCheck:
    """Checks the field names of a rule set; collects errors and warnings with locations."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.by_id: Mapping[str, Rule] = {r.id: r for r in rules}
        self.errors: list[RuleError] = []
        self.warnings: list[RuleError] = []
        self._events: dict[Selectors, Supply] = {}
        self._matches: dict[str, Supply] = {}

    def events(self, rule: Rule) -> Supply:
        """What the events a line rule's conditions test can carry (no captures yet)."""
        got = self._events.get(rule.select)
        if got is None:
            fixed, selected, unselected = _sources(rule.select)
            got = self._events[rule.select] = Supply(
                None, fixed, tuple(selected), tuple(unselected)
            )
        return got

    def matches(self, rule: Rule) -> Supply:
        """What a line rule's matches carry: its events' fields, captures, enrichment copies."""
        got = self._matches.get(rule.id)
        if got is None:
            ev = self.events(rule)
            own = rule.captures() | {c for e in rule.enrich for c in e.copy}
            got = self._matches[rule.id] = Supply(
                rule.id, ev.certain | own, ev.selected, ev.unselected
            )
        return got

    def line_rule(self, ref: str) -> Rule | None:
        """The line rule ``ref`` names (unknown and correlation targets are reported
        by :func:`pipeline.detection.loader.check_references`)."""
        target = self.by_id.get(ref)
        return target if target is not None and target.kind == "line" else None

    def check(
        self,
        what: str,
        name: str,
        supply: Supply,
        at: Location,
        *,
        optional: bool = False,
        own: Rule | None = None,
    ) -> None:
        verdict = supply.judge(name)
        if verdict is None:
            return
        whose = f"the matches of {supply.rule!r}" if supply.rule else "the events of this rule"
        prefix = f"[{own.id}] " if own is not None else ""
        hint = ""
        if supply.rule is not None:
            target = self.by_id[supply.rule]
            captured = sorted(target.captures())
            copied = sorted({c for e in target.enrich for c in e.copy} - set(captured))
            hint = f"{supply.rule!r} captures: " + (", ".join(captured) or "nothing")
            if copied:
                hint += "; its enrichment copies: " + ", ".join(copied)
        if verdict == "":
            self.errors.append(
                RuleError(
                    f"{prefix}{what} {name!r} never exists on {whose}: no capture, "
                    "enrichment copy, envelope or grammar field has that name",
                    at,
                    hint,
                )
            )
        elif not optional:
            self.warnings.append(
                RuleError(
                    f"{prefix}{what} {name!r} is not a field {whose} certainly have: only "
                    f"{verdict} could supply it, and the rule does not select that input",
                    at,
                    hint,
                )
            )

    def conditions(
        self, what: str, conds: Iterable[Condition], supply: Supply, default: Location, own: Rule
    ) -> None:
        for cond in conds:
            if cond.field in ENVELOPE_FIELDS:
                continue
            self.check(
                what,
                cond.field,
                supply,
                cond.location or default,
                optional=cond.if_present,
                own=own,
            )

    def rule(self, rule: Rule) -> None:
        loc = rule.location
        if rule.kind == "line":
            self.conditions("match field", rule.conditions, self.events(rule), loc, rule)
            mine = self.matches(rule)
            if rule.suppress is not None:
                at = mark_of(rule.suppress.marks, "group_by", loc)
                for name in rule.suppress.group_by:
                    self.check("suppress group_by field", name, mine, at, own=rule)
            for e in rule.enrich:
                source = self.line_rule(e.rule)
                # the join key as this rule's matches carry it, before the lookup
                before = Supply(
                    rule.id,
                    self.events(rule).certain | rule.captures(),
                    mine.selected,
                    mine.unselected,
                )
                by_at = mark_of(e.marks, "by", loc)
                for name in e.by:
                    self.check("enrich 'by' field", name, before, by_at, own=rule)
                    if source is not None:
                        self.check("enrich 'by' field", name, self.matches(source), by_at, own=rule)
                if source is not None:
                    copy_at = mark_of(e.marks, "copy", loc)
                    for name in e.copy:
                        self.check(
                            "enrich 'copy' field", name, self.matches(source), copy_at, own=rule
                        )
            return
        corr = rule.correlation
        assert corr is not None
        steps: list[Step] = [*corr.steps, *(s for s in (corr.trigger, corr.expect) if s)]
        group_at = mark_of(corr.marks, "group_by", loc)
        for step in steps:
            target = self.line_rule(step.rule)
            if target is None:
                continue
            supply = self.matches(target)
            step_at = mark_of(step.marks, "rule", loc)
            self.conditions("'where' field", step.where, supply, step_at, rule)
            if step.distinct is not None:
                self.check(
                    "distinct field",
                    step.distinct,
                    supply,
                    mark_of(step.marks, "distinct", step_at),
                    own=rule,
                )
            for name in corr.group_by:
                self.check("group_by field", name, supply, group_at, own=rule)


def check_fields(rules: Sequence[Rule]) -> tuple[list[RuleError], list[RuleError]]:
    """Errors (fields that can never exist) and warnings (fields only some inputs could
    supply) of every rule, each at the ``file:line`` of the key that names the field."""
    check = FieldCheck(rules)
    for rule in rules:
        check.rule(rule)
    return check.errors, check.warnings
