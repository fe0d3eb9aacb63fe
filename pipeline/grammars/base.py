"""The contract every line grammar fulfils.

A grammar module turns one line of text (no trailing newline) into a :class:`Parsed` record,
or raises :class:`GrammarError` with the 0-based column where the text stopped matching.
Grammars never see bytes, files or rules: decoding, year inference and time zones are the
engine's job, so a grammar only reports what the line itself says.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class GrammarError(ValueError):
    """The line does not fit the grammar; ``col`` is the 0-based column of the mismatch."""

    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.col = col


@dataclass(slots=True)
class Parsed:
    """What a grammar read from one line.

    ``timestamp`` is one of:
      * an aware ``datetime`` (the line carried an offset, e.g. RFC 3339, or the journal's epoch);
      * a naive ``datetime`` with the right year (local time of an unknown zone, e.g. Apache);
      * a naive ``datetime`` with the placeholder year 2000 and ``year_missing=True``
        (BSD syslog ``Nov 30 08:22:25``); 2000 is a leap year, so ``Feb 29`` survives;
      * ``None`` when the line has no time at all.

    ``repeat`` is N for a syslog line that rsyslog's repeated-message reduction wrote
    (``message repeated N times: [ text]``); ``message`` is then ``text``.
    """

    timestamp: datetime | None
    message: str
    host: str | None = None
    program: str | None = None
    pid: int | None = None
    level: str | None = None
    year_missing: bool = False
    fields: dict[str, str] = field(default_factory=dict)
    #: how many identical events the line stands for (rsyslog's ``message repeated N
    #: times: [...]``, whose inner text is then ``message``)
    repeat: int = 1


@dataclass(frozen=True, slots=True)
class FieldNames:
    """The names a grammar can put in ``fields``, declared next to the grammar.

    ``fixed`` are the names the grammar itself chooses. Where names come from the text of
    the line (sendmail's ``key=value`` pairs, journal field names), ``open`` matches every
    name that can occur and ``open_what`` says what such a name is. ``nonstandard`` matches
    the further names the grammar, being lenient, takes from lines that break their
    format's standard (a lower-case key in journal JSON, an RFC 5424 SD-ID that is neither
    registered nor has an ``@``). Rule validation uses this to tell a field that may exist
    from one that never can, and treats non-standard names as never existing.
    """

    fixed: frozenset[str] = frozenset()
    open: re.Pattern[str] | None = None
    open_what: str = ""
    nonstandard: re.Pattern[str] | None = None

    def expected(self, name: str) -> bool:
        """A line that follows the format's standard could give ``name``."""
        return name in self.fixed or (
            self.open is not None and self.open.fullmatch(name) is not None
        )

    def possible(self, name: str) -> bool:
        """Some line could make the grammar produce ``name``."""
        return self.expected(name) or (
            self.nonstandard is not None and self.nonstandard.fullmatch(name) is not None
        )


NO_FIELDS = FieldNames()


class LazyParser(Generic[T]):
    """A grammar function that is imported (its module's grammars built) on its first call.

    The built-in formats and body grammars are declared with one, so that start-up, rule
    loading and sniffing never import pyparsing nor build a grammar that no line needs. It
    pickles as its ``module:function`` name, and a worker process imports the module on the
    first line that needs it.
    """

    __slots__ = ("_fn", "function", "module")

    def __init__(self, module: str, function: str) -> None:
        self.module = module
        self.function = function
        self._fn: Callable[[str], T] | None = None

    def __call__(self, text: str) -> T:
        fn = self._fn
        if fn is None:
            fn = self.resolve()
        return fn(text)

    def resolve(self) -> Callable[[str], T]:
        """The grammar function itself (its module imported)."""
        if self._fn is None:
            self._fn = getattr(importlib.import_module(self.module), self.function)
        assert self._fn is not None
        return self._fn

    @property
    def built(self) -> bool:
        """Whether the grammar module is imported (its grammars are built)."""
        return self._fn is not None or self.module in sys.modules

    def __reduce__(self) -> tuple[Any, ...]:
        return (LazyParser, (self.module, self.function))

    def __repr__(self) -> str:
        return f"LazyParser({self.module}:{self.function})"


@dataclass(frozen=True, slots=True)
class LineFormat:
    """A registered line format.

    ``sniff`` is a cheap test (a compiled regex) that a line *looks like* this format; the
    format sniffer votes with it over the first lines of a file. ``parse`` is the full grammar.
    ``priority`` breaks sniffing ties: more specific formats have a higher number.
    ``fields`` are the names the grammar can put in :attr:`Parsed.fields`.
    """

    name: str
    description: str
    sniff: Callable[[str], bool]
    parse: Callable[[str], Parsed]
    priority: int = 0
    fields: FieldNames = NO_FIELDS
