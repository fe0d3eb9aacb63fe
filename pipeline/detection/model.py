"""Rules as immutable values: selectors, field conditions and inline examples."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
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

    def test(self, event: Event) -> dict[str, str] | None:
        """The captures (possibly empty) when the condition holds, else None."""
        value = event.get(self.field)
        if value is None:
            return {} if self.if_present else None
        if self.equals is not None and value != self.equals:
            return None
        if self.one_of is not None and value not in self.one_of:
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

    def accept(self, event: Event) -> bool:
        return (
            (not self.format or event.format in self.format)
            and _glob_match(event.program, self.program)
            and _glob_match(event.host, self.host)
            and _glob_match(event.level, self.level)
        )


@dataclass(frozen=True, slots=True)
class Example:
    line: str
    fields: Mapping[str, str]
    location: Location


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
    meta: Mapping[str, str] = field(default_factory=lambda: _NO_FIELDS)

    def evaluate(self, event: Event) -> dict[str, str] | None:
        """The captured fields when the event matches this rule, else None."""
        if not self.select.accept(event):
            return None
        captures: dict[str, str] = {}
        for cond in self.conditions:
            got = cond.test(event)
            if got is None:
                return None
            captures.update(got)
        return captures
