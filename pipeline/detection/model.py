"""Rules as immutable values: selectors, field conditions and inline examples."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import timedelta
from types import MappingProxyType

from pipeline.detection.patterns import CompiledPattern
from pipeline.errors import Location
from pipeline.model import Event, Severity


@dataclass(frozen=True, slots=True)
class Condition:
    """A test on one field of an event; all set operators must hold."""

    field: str
    equals: str | None = None
    one_of: frozenset[str] | None = None
    contains: str | None = None
    regex: CompiledPattern | None = None
    if_present: bool = False
    none_of: frozenset[str] | None = None
    #: where the condition is written (for messages about the field it tests)
    location: Location | None = dc_field(default=None, compare=False)

    def test(self, event: Event) -> dict[str, str] | None:
        """The captures (possibly empty) when the condition holds, else None."""
        return self.test_text(event.get(self.field))

    def test_value(self, value: str | None) -> bool:
        return self.test_text(value) is not None

    def test_text(self, value: str | None) -> dict[str, str] | None:
        if value is None:
            return {} if self.if_present else None
        if self.equals is not None and value != self.equals:
            return None
        if self.one_of is not None and value not in self.one_of:
            return None
        if self.none_of is not None and value in self.none_of:
            return None
        if self.contains is not None and self.contains not in value:
            return None
        if self.regex is not None:
            return self.regex.search(value)
        return {}


def _glob_match(value: str | None, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return True
    if value is None:
        return False
    for p in patterns:
        if "*" in p or "?" in p or "[" in p:
            if fnmatch.fnmatchcase(value, p):
                return True
        elif value == p:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Selectors:
    format: tuple[str, ...] = ()
    program: tuple[str, ...] = ()
    host: tuple[str, ...] = ()
    level: tuple[str, ...] = ()

    def accept_program(self, program: str | None) -> bool:
        return _glob_match(program, self.program)


@dataclass(frozen=True, slots=True)
class Example:
    """A line (or, for correlation rules, a scenario of ``lines``) a rule must (not) match.

    ``count`` is how many findings of the rule the scenario must yield (None: at least one).
    """

    line: str
    fields: Mapping[str, str]
    location: Location
    lines: tuple[str, ...] = ()
    count: int | None = None


_NO_FIELDS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    description: str
    remediation: str
    references: tuple[str, ...]
    tags: tuple[str, ...]
    select: Selectors
    conditions: tuple[Condition, ...]
    location: Location
    examples_match: tuple[Example, ...] = ()
    examples_no_match: tuple[Example, ...] = ()
    #: the prefilter: at least one of these byte strings occurs in every line the rule can
    #: match; empty means every line is a candidate.
    literals: tuple[bytes, ...] = ()
    #: one of these occurs in the message of every event the rule matches (checked before
    #: the conditions, so most non-matching events never reach a regex)
    message_literals: tuple[str, ...] = ()
    #: False for helper rules that only feed correlations and enrichments
    report: bool = True
    enabled: bool = True
    suppress: Suppress | None = None
    enrich: tuple[Enrich, ...] = ()
    correlation: Correlation | None = None
    #: the rule's own notification templates (see pipeline.notify.render)
    notify_title: str | None = None
    notify_body: str | None = None

    @property
    def kind(self) -> str:
        return self.correlation.kind if self.correlation else "line"

    def captures(self) -> set[str]:
        """Names of the fields this rule's regexes capture."""
        out: set[str] = set()
        for cond in self.conditions:
            if cond.regex is not None:
                out |= set(cond.regex.group_names)
        return out

    def referenced(self) -> set[str]:
        """Ids of the rules this rule uses: steps, triggers and enrichment sources."""
        refs = self.correlation.referenced() if self.correlation else set()
        return refs | {e.rule for e in self.enrich}

    def looked_up(self) -> set[str]:
        """Field names this rule reads from events (conditions, keys, joins)."""
        names = {c.field for c in self.conditions}
        for e in self.enrich:
            names |= set(e.by)
        if self.suppress is not None:
            names |= set(self.suppress.group_by)
        corr = self.correlation
        if corr is not None:
            names |= set(corr.group_by)
            for step in (*corr.steps, corr.trigger, corr.expect):
                if step is not None:
                    names |= {c.field for c in step.where}
                    if step.distinct:
                        names.add(step.distinct)
        return names

    def evaluate_rest(self, event: Event) -> dict[str, str] | None:
        """The captured fields when the event matches this rule, else None, for an event
        whose program the rule accepts and whose message holds one of
        :attr:`message_literals` (:meth:`Detector.match` checks those first)."""
        sel = self.select
        if (
            (sel.format and event.format not in sel.format)
            or (sel.host and not _glob_match(event.host, sel.host))
            or (sel.level and not _glob_match(event.level, sel.level))
        ):
            return None
        captures: dict[str, str] = {}
        for cond in self.conditions:
            got = cond.test(event)
            if got is None:
                return None
            captures.update(got)
        return captures

    def message_search(self) -> CompiledPattern | None:
        """The pattern when a message regex is all :meth:`evaluate_rest` tests, else None."""
        sel = self.select
        if sel.format or sel.host or sel.level or len(self.conditions) != 1:
            return None
        cond = self.conditions[0]
        if cond.field != "message" or cond.regex is None:
            return None
        if (cond.equals, cond.one_of, cond.contains, cond.none_of) != (None, None, None, None):
            return None
        return cond.regex


# -- stateful parts of rules ----------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | int) -> timedelta:
    """``90s``, ``10m``, ``1h30m``, ``24h``, ``7d`` (a bare number is seconds)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return timedelta(seconds=text)
    value = str(text).strip()
    m = _DURATION.match(value)
    if not value or m is None or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 90s, 10m, 1h30m, 24h, 7d)")
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=s)


#: where the keys of a YAML node are written, as (key, location) pairs
Marks = tuple[tuple[str, Location], ...]


def mark_of(marks: Marks, key: str, default: Location) -> Location:
    """The location of ``key`` among ``marks``, else ``default``."""
    for name, loc in marks:
        if name == key:
            return loc
    return default


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a correlation: matches of ``rule`` that also pass ``where``.

    ``count`` occurrences (of distinct ``distinct`` values, when given) complete the step.
    """

    rule: str
    where: tuple[Condition, ...] = ()
    count: int = 1
    distinct: str | None = None
    marks: Marks = dc_field(default=(), compare=False)

    def accepts(self, rule_id: str, event: Event, fields: Mapping[str, str]) -> bool:
        if rule_id != self.rule:
            return False
        for cond in self.where:
            value = fields.get(cond.field)
            if value is None:
                value = event.get(cond.field)
            if not cond.test_value(value):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Suppress:
    """At most one finding per ``period`` and group key; later ones update its count.

    With ``digest``, nothing is reported at once: one summary finding per period instead.
    ``examples``: the matches a finding keeps as related lines: ``first``, the first few;
    ``ends``, the first and the latest (the same however the matched lines were grouped
    before they reached detection, as logcheck's bulk fold groups them per chunk).
    """

    period: timedelta
    group_by: tuple[str, ...] = ()
    digest: bool = False
    marks: Marks = dc_field(default=(), compare=False)
    examples: str = "first"


@dataclass(frozen=True, slots=True)
class Enrich:
    """Copy fields from an earlier match of ``rule`` that agrees on the ``by`` fields."""

    rule: str
    by: tuple[str, ...]
    copy: tuple[str, ...]
    keep: timedelta
    marks: Marks = dc_field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Correlation:
    """The stateful part of a ``threshold``, ``sequence`` or ``absence`` rule."""

    kind: str  # "threshold" | "sequence" | "absence"
    window: timedelta
    group_by: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()  # sequence: in order; threshold: one step
    count: int = 1  # threshold: events needed in the window
    trigger: Step | None = None  # absence: opens a window; None = heartbeat form
    expect: Step | None = None  # absence: closes it
    sample: int = 5  # related events kept per finding
    marks: Marks = dc_field(default=(), compare=False)

    def referenced(self) -> set[str]:
        refs = {s.rule for s in self.steps}
        for s in (self.trigger, self.expect):
            if s is not None:
                refs.add(s.rule)
        return refs
