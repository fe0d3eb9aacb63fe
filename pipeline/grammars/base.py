"""The contract every line grammar fulfils.

A grammar module turns one line of text (no trailing newline) into a :class:`Parsed` record,
or raises :class:`GrammarError` with the 0-based column where the text stopped matching.
Grammars never see bytes, files or rules: decoding, year inference and time zones are the
engine's job, so a grammar only reports what the line itself says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime


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
class LineFormat:
    """A registered line format.

    ``sniff`` is a cheap test (a compiled regex) that a line *looks like* this format; the
    format sniffer votes with it over the first lines of a file. ``parse`` is the full grammar.
    ``priority`` breaks sniffing ties: more specific formats have a higher number.
    """

    name: str
    description: str
    sniff: Callable[[str], bool]
    parse: Callable[[str], Parsed]
    priority: int = 0
