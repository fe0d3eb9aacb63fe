"""fail2ban's ``datepattern``: finding the time in a line and cutting it out.

fail2ban finds a line's time before its regexes run, removes that text from the line and
matches ``failregex`` on the rest. A filter names its date patterns (``%``-formats with
fail2ban's ``%Ex`` extensions, ``Epoch``, ``LEpoch``, ``TAI64N``, ``{^LN-BEG}`` for "at the
start of the line", ``{DATE}`` for the built-in set after a prefix, ``{NONE}``) or uses the
built-in set. The built-in set here covers the same shapes of dates as fail2ban 1.0's (ISO
8601, asctime, Apache, syslog, epoch, TAI64N, ...), each tried first at the start of a line
and then anywhere; of several unanchored matches the leftmost wins.

Times without a zone are local times in the detector's zone; year-less times take the year
of ``now`` (the year before when that puts them more than a day after ``now``), time-only
ones the date of ``now``. A ``%f`` fraction is matched but dropped, as fail2ban drops it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _names(full: tuple[str, ...]) -> str:
    alts = sorted({*full, *(n[:3] for n in full)}, key=len, reverse=True)
    return "(?i:" + "|".join(alts) + ")"


#: ``%`` directives: fail2ban's meaning, written as regexes of our own
_DIRECTIVES: dict[str, str] = {
    "Y": r"(?P<Y>\d{4})",
    "ExY": r"(?P<Y>(?:19|20)\d\d)",
    "y": r"(?P<y>\d\d)",
    "Exy": r"(?P<y>\d\d)",
    "m": r"(?P<m>1[0-2]|0?[1-9])",
    "Exm": r"(?P<m>1[0-2]|0[1-9])",
    "d": r"(?P<d>3[01]|[12]\d|[0 ]?[1-9])",
    "Exd": r"(?P<d>3[01]|[12]\d|0[1-9])",
    "e": r"(?P<d>3[01]|[12]\d|[0 ]?[1-9])",
    "H": r"(?P<H>2[0-3]|[01]?\d)",
    "ExH": r"(?P<H>2[0-3]|[01]\d)",
    "k": r" ?(?P<H>[0-2]?\d)",
    "Exk": r" ?(?P<H>2[0-3]|[01]?\d)",
    "I": r"(?P<I>1[0-2]|0?[1-9])",
    "l": r" ?(?P<I>1?\d)",
    "Exl": r" ?(?P<I>1[0-2]|\d)",
    "M": r"(?P<M>[0-5]?\d)",
    "ExM": r"(?P<M>[0-5]\d)",
    "S": r"(?P<S>6[01]|[0-5]?\d)",
    "ExS": r"(?P<S>6[01]|[0-5]\d)",
    "f": r"(?P<f>\d{1,6})",
    "p": r"(?P<p>(?i:am|pm))",
    "b": r"(?P<b>" + _names(_MONTH_NAMES) + ")",
    "B": r"(?P<b>" + _names(_MONTH_NAMES) + ")",
    "h": r"(?P<b>" + _names(_MONTH_NAMES) + ")",
    "a": r"(?:" + _names(_DAY_NAMES) + ")",
    "A": r"(?:" + _names(_DAY_NAMES) + ")",
    "z": r"(?P<z>Z|UTC|GMT|[+-][01]\d(?::?\d\d)?)",
    "Exz": r"(?P<z>(?:[A-Z]{3,5})?[+-][01]\d(?::?\d\d)?|[A-Z]{3,5})",
    "Z": r"(?P<Z>Z|[A-Z]{3,5})",
    "ExZ": r"(?P<Z>[A-Z]{3,5})",
    "j": r"(?P<j>36[0-6]|3[0-5]\d|[12]\d\d|0?[1-9]\d|0?0?[1-9])",
    "%": "%",
}
_DIRECTIVE = re.compile(r"%(Ex[a-zA-Z]|[a-zA-Z%])")

#: the built-in set (fail2ban's shapes, in its order), as %-formats
_DEFAULTS: tuple[str, ...] = (
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
)

_LINE_BEGIN = r"^(?:\W{0,2})?"


@dataclass(frozen=True, slots=True)
class DateTemplate:
    name: str
    regex: re.Pattern[str]
    anchored: bool
    kind: str = "fmt"  # "fmt" | "epoch" | "lepoch" | "tai64n" | "none"


def _translate(fmt: str) -> str:
    def sub(m: re.Match[str]) -> str:
        got = _DIRECTIVES.get(m.group(1))
        if got is None:
            raise ValueError(f"unknown date directive %{m.group(1)}")
        return got

    # a directive may occur twice only in alternatives: number later named groups apart
    out = _DIRECTIVE.sub(sub, fmt)
    seen: dict[str, int] = {}

    def rename(m: re.Match[str]) -> str:
        name = m.group(1)
        n = seen.get(name, 0)
        seen[name] = n + 1
        return f"(?P<{name}{'__' + str(n) if n else ''}>"

    return re.sub(r"\(\?P<(\w+)>", rename, out)


def _template(pattern: str, *, anchored: bool = False) -> DateTemplate:
    text = pattern.strip()
    name = text
    unbound = False
    if text.startswith("{UNB}"):
        unbound, text = True, text[5:]
    if text.startswith("{^LN-BEG}"):
        anchored, text = True, text[9:]
    upper = text.upper()
    if upper in ("EPOCH", "LEPOCH"):
        kind = upper.lower()
        digits = (
            r"\d{10,11}(?:\.\d{1,6})?"
            if kind == "epoch"
            else r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"
        )
        # at the line's start, after a "[" there, or in SELinux's "audit(": nowhere else
        lead = r"(?:^|(?<=^\[))" if anchored else r"(?:^|(?<=^\[)|(?<=\baudit\())"
        body = rf"(?P<date>{digits})(?!\d)"
        return DateTemplate(name, re.compile(lead + body), anchored, kind)
    if upper == "TAI64N":
        lead = _LINE_BEGIN if anchored else ""
        return DateTemplate(
            name, re.compile(lead + r"(?P<date>@[0-9a-fA-F]{24})"), anchored, "tai64n"
        )
    if upper == "{NONE}":
        return DateTemplate(name, re.compile(r"^(?P<date>)"), True, "none")
    begin_line = text.startswith("^")
    if begin_line:
        text = text[1:]
        anchored = True
    end_line = text.endswith("$") and not text.endswith(r"\$")
    if end_line:
        text = text[:-1]
    no_begin = text.startswith("**")
    no_end = text.endswith("**")
    text = text.removeprefix("**").removesuffix("**")
    body = _date_group(_translate(text))
    lead = ""
    if begin_line:
        lead = "^"
    elif anchored:
        lead = _LINE_BEGIN
    elif not unbound and not no_begin:
        lead = r"(?:(?<=^)|(?<=\W)|\b)"
    tail = ""
    if end_line:
        tail = "$"
    elif not unbound and not no_end and not re.search(r"(?:\\s|\\b)$", body):
        tail = r"(?=\b|\W|$)"
    return DateTemplate(name, re.compile(f"{lead}{body}{tail}"), anchored)


_PLAIN_GROUP = re.compile(r"(?<!\\)\((?!\?)")


def _date_group(body: str) -> str:
    """The date is the pattern's first plain group when it has one (as in fail2ban's
    ``^[^\\[]*\\[({DATE})``), else the whole pattern."""
    m = _PLAIN_GROUP.search(body)
    if m is None:
        return f"(?P<date>{body})"
    return body[: m.start()] + "(?P<date>" + body[m.end() :]


def default_templates(
    *, line_begin_only: bool = False, prefix: str | None = None
) -> list[DateTemplate]:
    """The built-in set: anchored variants first (fail2ban prefers a time at the line's
    start), then the originals; ``line_begin_only`` for ``{^LN-BEG}``; ``prefix`` for
    ``{DATE}`` patterns (``^<\\d+>\\d+\\s+{DATE}``)."""
    if prefix is not None:
        out = []
        for fmt in _DEFAULTS:
            if fmt in ("EPOCH", "TAI64N"):
                continue
            body = fmt.removeprefix("{^LN-BEG}").removeprefix("^")
            out.append(_template("{UNB}" + prefix.replace("{DATE}", body)))
        return out
    first: list[DateTemplate] = []
    rest: list[DateTemplate] = []
    for fmt in _DEFAULTS:
        if fmt.startswith(("{^LN-BEG}", "^")):
            first.append(_template(fmt))
            continue
        first.append(_template("{^LN-BEG}" + fmt))
        rest.append(_template(fmt))
    return first if line_begin_only else first + rest


def templates_for(datepattern: str | None) -> list[DateTemplate]:
    """The templates a filter's ``datepattern`` (one per line) names."""
    return list(_templates(datepattern))


@functools.lru_cache(maxsize=64)
def _templates(datepattern: str | None) -> tuple[DateTemplate, ...]:
    """:func:`templates_for`, compiled once per ``datepattern`` (the templates are
    immutable; a jail set's filters mostly share one)."""
    return tuple(_build_templates(datepattern))


def _build_templates(datepattern: str | None) -> list[DateTemplate]:
    if not datepattern or not datepattern.strip():
        return default_templates()
    out: list[DateTemplate] = []
    for line in datepattern.splitlines():
        pat = line.strip()
        if not pat:
            continue
        key = pat.upper()
        if key in ("{^LN-BEG}",):
            out.extend(default_templates(line_begin_only=True))
        elif key == "{DEFAULT}":
            out.extend(default_templates())
        elif "{DATE}" in key:
            out.extend(default_templates(prefix=pat.replace("{date}", "{DATE}")))
        else:
            out.append(_template(pat))
    return out


@dataclass(slots=True)
class DateDetector:
    templates: list[DateTemplate]
    tz: tzinfo
    now: datetime  # aware

    def find(self, line: str) -> tuple[int, int, datetime | None] | None:
        """(start, end, time) of the date text in ``line``; None when no template matches."""
        best: tuple[int, re.Match[str], DateTemplate] | None = None
        for tpl in self.templates:
            m = tpl.regex.search(line)
            if m is None:
                continue
            if tpl.anchored or len(self.templates) == 1:
                best = (m.start("date"), m, tpl)
                break
            if best is None or m.start("date") < best[0]:
                best = (m.start("date"), m, tpl)
        if best is None:
            return None
        _, m, tpl = best
        return m.start("date"), m.end("date"), self._time(m, tpl)

    def _time(self, m: re.Match[str], tpl: DateTemplate) -> datetime | None:
        text = m.group("date")
        if tpl.kind == "none":
            return None
        if tpl.kind in ("epoch", "lepoch"):
            whole, _, frac = text.partition(".")
            value = (
                float(whole) if len(whole) <= 11 else float(whole[:10]) + float("0." + whole[10:])
            )
            if frac:
                value += float("0." + frac)
            return datetime.fromtimestamp(value, self.tz)
        if tpl.kind == "tai64n":
            return datetime.fromtimestamp(int(text[2:17], 16), self.tz)
        g = {k.split("__")[0]: v for k, v in m.groupdict().items() if v is not None}
        now = self.now.astimezone(self.tz)
        year = int(g["Y"]) if "Y" in g else (2000 + int(g["y"]) if "y" in g else None)
        if "b" in g:
            month: int | None = _MONTHS[g["b"][:3].lower()]
        else:
            month = int(g["m"]) if "m" in g else None
        day = int(g["d"].strip()) if "d" in g else None
        hour = int(g["H"]) if "H" in g else 0
        if "I" in g:
            hour = int(g["I"]) % 12
            if g.get("p", "").lower() == "pm":
                hour += 12
        minute = int(g.get("M", 0))
        second = min(int(g.get("S", 0)), 59)
        micro = 0  # fail2ban drops a %f fraction (only epoch times keep theirs)
        zone: tzinfo = self.tz
        z = g.get("z") or g.get("Z")
        if z is not None:
            zone = _offset(z) or self.tz
        try:
            if month is None and day is None and year is None:
                got = datetime(now.year, now.month, now.day, hour, minute, second, micro, zone)
                if got > now:
                    got -= timedelta(days=1)
                return got
            assumed = year is None
            got = datetime(
                year if year is not None else now.year,
                month or 1,
                day or 1,
                hour,
                minute,
                second,
                micro,
                zone,
            )
            if assumed and got > now + timedelta(days=1):
                got = got.replace(year=got.year - 1)
            return got
        except ValueError:
            return None


#: common zone abbreviations and their UTC offsets in hours
_ABBR = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2,
    "MET": 1, "MEST": 2, "EET": 2, "EEST": 3, "MSK": 3, "IST": 5.5, "JST": 9, "KST": 9,
    "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13, "HST": -10, "AKST": -9, "AKDT": -8,
    "PST": -8, "PDT": -7, "MST": -7, "MDT": -6, "CST": -6, "CDT": -5, "EST": -5,
    "EDT": -4, "AST": -4, "ADT": -3,
}  # fmt: skip


def _offset(z: str) -> tzinfo | None:
    z = z.strip()
    if z in _ABBR:
        return timezone(timedelta(hours=_ABBR[z]))
    m = re.search(r"([+-])(\d\d):?(\d\d)?$", z)
    if m is None:
        return None
    delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0))
    return timezone(-delta if m.group(1) == "-" else delta)
