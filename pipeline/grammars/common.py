"""Atoms shared by the line grammars: timestamps, priorities, levels and the parse runner.

Every element here is a pyparsing element with a name (``set_name``) and a parse action that
returns a typed value. Multi-part values come back as small frozen dataclasses
(:class:`Stamp`) rather than tuples, because pyparsing flattens sequences into its results.

BNF of the atoms (``SP`` is one or more spaces)::

    pri          ::= "<" 1*3DIGIT ">"                          -> int 0..191
    bsd_stamp    ::= [YEAR SP] MONTH SP DAY SP [YEAR SP] TIME   -> Stamp (year 2000 if no YEAR)
    ctime_stamp  ::= WEEKDAY SP MONTH SP DAY SP TIME SP YEAR    -> Stamp (naive)
    rfc3339_stamp::= DATE ("T"|"t") TIME OFFSET                 -> Stamp (aware)
    iso_stamp    ::= DATE ("T"|"t"|SP) TIME [[SP] ZONE]         -> Stamp (aware when ZONE)
    TIME         ::= HH ":" MM ":" SS ["." | "," 1*9DIGIT]
    OFFSET       ::= "Z" | ("+"|"-") HH ":" MM
    ZONE         ::= OFFSET | ("+"|"-") HHMM | "UTC" | "GMT"
    message      ::= *CHAR                                      -> str (everything left)

Every grammar must consume the whole line. Envelope grammars end in ``message``, which takes
whatever is left, so they always do; body grammars end in :data:`end` (``pp.StringEnd``).
pyparsing documents ``parse_all=True`` as equivalent to ending the grammar with ``StringEnd``;
ending it explicitly avoids building a new end-of-string check on every call (about 10 µs a
line, a third of a syslog parse).

Speed: one pyparsing element costs about 4 µs a line whatever it does, and a failed optional
element (a caught exception) more. So adjacent fixed parts (``<PRI>``, time, ``<fac.level>``)
are folded into one ``Regex`` with named groups, and its parse action builds the typed value.

Importing this module imports no pyparsing (the fast paths and the format declarations use
its constants): the elements below are built on first access, by the grammar modules.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from pipeline.grammars.base import GrammarError
from pipeline.model import LEVELS

if TYPE_CHECKING:
    import pyparsing as pp

MONTHS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
MONTH_RE = "(?:" + "|".join(MONTHS) + ")"
WEEKDAY_RE = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
#: a key of sendmail's ``key=value`` pairs
SENDMAIL_KEY_RE = r"[A-Za-z][A-Za-z0-9_\-]*"
#: Apache's level words (``warn``, ``trace1``..``trace8``)
APACHE_LEVEL_RE = r"emerg|alert|crit|error|warn|notice|info|debug|trace[1-8]"

#: syslog facility numbers to names (RFC 5424 table 1, with the usual Linux names).
FACILITIES: tuple[str, ...] = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
)

#: words programs use for a severity, mapped to the names in ``pipeline.model.LEVELS``.
LEVEL_ALIASES: dict[str, str] = {
    **{name: name for name in LEVELS},
    "panic": "emerg",
    "emergency": "emerg",
    "critical": "crit",
    "err": "error",
    "warn": "warning",
    "information": "info",
    "informational": "info",
}
for _n in range(1, 9):
    LEVEL_ALIASES[f"trace{_n}"] = "debug"


def level_name(word: str) -> str | None:
    """The canonical level for a severity word (``warn`` -> ``warning``), or None."""
    return LEVEL_ALIASES.get(word.lower())


@dataclass(frozen=True, slots=True)
class Stamp:
    """A timestamp read from a line; ``year_missing`` marks the placeholder year 2000."""

    when: datetime
    year_missing: bool = False


def fail(instring: str, loc: int, message: str) -> pp.ParseException:
    """A ParseException for a value that has the right shape but is not valid."""
    import pyparsing as pp

    return pp.ParseException(instring, loc, message)


def _fraction(digits: str | None) -> int:
    """Microseconds from 1-9 fraction digits (truncated below the microsecond)."""
    if not digits:
        return 0
    return int(digits[:6].ljust(6, "0"))


@functools.lru_cache(maxsize=4096)  # a log repeats a few offsets; zones are immutable
def _offset(text: str | None) -> timezone | None:
    """A fixed offset from ``Z``, ``+01:00``, ``-0700``, ``UTC``/``GMT``; None when absent."""
    if not text:
        return None
    if text in ("Z", "z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset out of range: {text}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def build_datetime(
    instring: str,
    loc: int,
    *,
    year: int,
    month: int,
    day: int,
    clock: str,
    fraction: str | None = None,
    zone: str | None = None,
) -> datetime:
    """A datetime from parts, or a ParseException at ``loc`` when the parts are not a date."""
    try:
        hour, minute, second = (int(part) for part in clock.split(":"))
        if second == 60:  # a leap second: keep the line, fold it into :59
            second = 59
        return datetime(
            year, month, day, hour, minute, second, _fraction(fraction), tzinfo=_offset(zone)
        )
    except ValueError as exc:
        raise fail(instring, loc, f"not a valid date/time ({exc})") from None


def match_of(toks: pp.ParseResults) -> re.Match[str]:
    """The ``re.Match`` that an ``as_match=True`` Regex element produced."""
    found = toks[0]
    assert isinstance(found, re.Match)
    return found


# --- elements ------------------------------------------------------------------------------------
#
# Each timestamp is a regex text (so that envelopes can fold it into a larger regex: one
# pyparsing element costs ~4 µs a line whatever it does), a converter from its match, and a
# ready-made element.

_CLOCK = r"\d{1,2}:\d\d:\d\d"

#: an optional ``<PRI>`` (group ``pri``).
PRI_RE = r"(?:<(?P<pri>\d{1,3})>)?"

#: BSD syslog ``Nov 30 08:22:25`` (also ``Jun  9``, a year before or after the day, ``.fff``).
BSD_RE = (
    rf"(?:(?P<year1>\d{{4}}) +)?(?P<mon>{MONTH_RE}) +(?P<day>\d{{1,2}}) +"
    rf"(?:(?P<year2>\d{{4}}) +)?(?P<clock>{_CLOCK})(?:\.(?P<frac>\d{{1,9}}))?(?!:?\d)"
)

#: ctime-style ``Sat Jan 23 13:22:28.123456 2021`` (Apache error log, vsftpd).
CTIME_RE = (
    rf"{WEEKDAY_RE} (?P<mon>{MONTH_RE}) +(?P<day>\d{{1,2}}) (?P<clock>{_CLOCK})"
    r"(?:\.(?P<frac>\d{1,9}))? (?P<year>\d{4})"
)

_DATE = r"(?P<year>\d{4})-(?P<month>\d\d)-(?P<day>\d\d)"

#: RFC 3339 with a mandatory offset: ``2026-11-30T08:18:02.338779+00:00``.
RFC3339_RE = (
    rf"{_DATE}[Tt](?P<clock>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{{1,9}}))?"
    r"(?P<zone>[Zz]|[+-]\d\d:\d\d)(?![\w:])"
)

#: ISO 8601 as applications write it: ``T`` or spaces, ``.`` or ``,`` fraction, optional zone.
ISO_RE = (
    rf"{_DATE}(?:[Tt]| +)(?P<clock>{_CLOCK})(?:[.,](?P<frac>\d{{1,9}}))?"
    r"(?: ?(?P<zone>[Zz]|[+-]\d\d:?\d\d|UTC|GMT)(?![\w:]))?(?!:?\d)"
)


def pri_from(instring: str, loc: int, found: re.Match[str]) -> int | None:
    """The ``pri`` group as an int (None when absent); ParseException above 191."""
    text = found["pri"]
    if text is None:
        return None
    value = int(text)
    if value > 191:
        raise fail(instring, loc, f"PRI {value} is above 191")
    return value


def bsd_from(instring: str, loc: int, found: re.Match[str]) -> Stamp:
    """A Stamp from a :data:`BSD_RE` match (year 2000 and ``year_missing`` when no year)."""
    year = found["year1"] or found["year2"]
    when = build_datetime(
        instring,
        loc,
        year=int(year) if year else 2000,
        month=MONTHS[found["mon"]],
        day=int(found["day"]),
        clock=found["clock"],
        fraction=found["frac"],
    )
    return Stamp(when, year_missing=not year)


def ctime_from(instring: str, loc: int, found: re.Match[str]) -> Stamp:
    """A naive Stamp from a :data:`CTIME_RE` match."""
    return Stamp(
        build_datetime(
            instring,
            loc,
            year=int(found["year"]),
            month=MONTHS[found["mon"]],
            day=int(found["day"]),
            clock=found["clock"],
            fraction=found["frac"],
        )
    )


def iso_from(instring: str, loc: int, found: re.Match[str]) -> Stamp:
    """A Stamp from an :data:`ISO_RE` / :data:`RFC3339_RE` match (aware when it has a zone)."""
    return Stamp(
        build_datetime(
            instring,
            loc,
            year=int(found["year"]),
            month=int(found["month"]),
            day=int(found["day"]),
            clock=found["clock"],
            fraction=found["frac"],
            zone=found["zone"],
        )
    )


StampConverter = Callable[[str, int, "re.Match[str]"], Stamp]


def stamp_element(pattern: str, convert: StampConverter, name: str) -> pp.ParserElement:
    """A named Regex element whose token is the :class:`Stamp` ``convert`` makes."""
    import pyparsing as pp

    def action(instring: str, loc: int, toks: pp.ParseResults) -> Stamp:
        return convert(instring, loc, match_of(toks))

    return pp.Regex(pattern, as_match=True).set_name(name).set_parse_action(action)


_ELEMENT_NAMES = frozenset(
    {"bsd_stamp", "ctime_stamp", "rfc3339_stamp", "iso_stamp", "message", "end"}
)


@functools.cache
def _elements() -> dict[str, pp.ParserElement]:
    import pyparsing as pp

    return {
        "bsd_stamp": stamp_element(BSD_RE, bsd_from, "BSD timestamp"),
        "ctime_stamp": stamp_element(CTIME_RE, ctime_from, "ctime timestamp"),
        "rfc3339_stamp": stamp_element(RFC3339_RE, iso_from, "RFC 3339 timestamp"),
        "iso_stamp": stamp_element(ISO_RE, iso_from, "ISO 8601 timestamp"),
        # the rest of the line, verbatim (newlines and tabs included)
        "message": pp.Regex(r"(?s).*").set_name("message"),
        # the end of the line (see the module docstring on ``parse_all``)
        "end": pp.StringEnd().set_name("end of line"),
    }


if TYPE_CHECKING:
    bsd_stamp: pp.ParserElement
    ctime_stamp: pp.ParserElement
    rfc3339_stamp: pp.ParserElement
    iso_stamp: pp.ParserElement
    #: the rest of the line, verbatim (newlines and tabs included).
    message: pp.ParserElement
    #: the end of the line (see the module docstring on ``parse_all``).
    end: pp.ParserElement


def __getattr__(name: str) -> pp.ParserElement:
    """The shared elements, built (with pyparsing imported) when a grammar first needs one."""
    if name not in _ELEMENT_NAMES:  # ``__path__`` and the like, asked by the import system
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _elements()[name]


def run(grammar: pp.ParserElement, line: str, what: str) -> pp.ParseResults:
    """Parse ``line`` with ``grammar`` (which ends in StringEnd), or raise GrammarError."""
    import pyparsing as pp

    try:
        return grammar.parse_string(line)
    except pp.ParseBaseException as exc:
        raise GrammarError(f"line does not fit {what}: {exc.msg}", exc.loc) from None


def ascii_int(text: str | None, digits: int = 10) -> int | None:
    """``text`` as an int when it is 1..``digits`` ASCII digits, else None."""
    if text is None or not (0 < len(text) <= digits and text.isascii() and text.isdigit()):
        return None
    return int(text)


def clean(text: str) -> str:
    """A message as the engine stores it: surrounding whitespace removed."""
    return text.strip()


#: how rsyslog's repeated-message reduction starts a message (see :func:`unrepeat`)
REPEATED_PREFIX = "message repeated "
_REPEATED = re.compile(r"message repeated ([1-9][0-9]{0,9}) times: \[(.*)\]", re.DOTALL)


def unrepeat(message: str) -> tuple[str, int]:
    """The message and how many events it stands for: 1, or N for rsyslog's reduction.

    rsyslog (``$RepeatedMsgReduction on``) writes N identical messages of one sender as one
    ``message repeated N times: [ text]``; that is ``(text, N)`` here (``text`` stripped as
    :func:`clean` strips). Anything else, ``message repeated`` without the brackets
    included, is ``(message, 1)``. Call it on a cleaned message.
    """
    if not message.startswith(REPEATED_PREFIX):
        return message, 1
    found = _REPEATED.fullmatch(message)
    if found is None:
        return message, 1
    return found.group(2).strip(), int(found.group(1))


# --- body grammars -------------------------------------------------------------------------------
#
# A body grammar's elements are Regex elements whose parse actions return ``dict[str, str]``
# (the named groups that matched, plus constants such as ``action``); :func:`body_fields`
# merges them. A group named ``name__2`` fills ``name``: Python's re forbids a group name twice.


def fields_action(**constants: str) -> pp.ParseAction:
    """A parse action turning an ``as_match`` Regex token into its named groups (+ constants)."""

    def action(toks: pp.ParseResults) -> dict[str, str]:
        found = match_of(toks)
        out = {
            name.partition("__")[0]: value
            for name, value in found.groupdict().items()
            if value is not None
        }
        out.update(constants)
        return out

    return action


def body_fields(res: pp.ParseResults) -> dict[str, str]:
    """Merge the dict tokens of a parsed body, left to right."""
    out: dict[str, str] = {}
    for token in res:
        if isinstance(token, dict):
            out.update(token)
    return out


def parse_fields(grammar: pp.ParserElement, text: str) -> dict[str, str]:
    """Run a body grammar; {} when the text does not fit it."""
    import pyparsing as pp

    try:
        return body_fields(grammar.parse_string(text))
    except pp.ParseBaseException:
        return {}


def named(res: pp.ParseResults, name: str) -> object:
    """A named result, or None when absent (``ParseResults.get`` has no type hints)."""
    return res.get(name)  # type: ignore[no-untyped-call]
