"""The registry of line formats: every built-in :class:`LineFormat` under its name.

Built-ins are registered the way a third party would add one: :func:`register`.

A built-in format is declared here as data (name, description, sniff regex, priority, field
names) with a :class:`LazyParser` as its ``parse``: its grammar module (and pyparsing) is
imported, and its grammars built, on the first line it parses. Start-up, rule loading and
sniffing build no grammar; a scan builds only the grammars of the formats its lines need
(:func:`built_formats`). The formats of one module share elements and are built together:
``syslog``, ``rfc3339``, ``rfc5424``, ``iso-syslog``, ``tai64n`` and ``syslog-notime``
(:mod:`pipeline.grammars.syslog`); ``access-log`` and ``timestamped``
(:mod:`pipeline.grammars.fallback`). ``journal-json`` is plain Python (no pyparsing).
"""

from __future__ import annotations

import re

from pipeline.grammars import journal
from pipeline.grammars.base import NO_FIELDS, FieldNames, LazyParser, LineFormat, Parsed
from pipeline.grammars.common import APACHE_LEVEL_RE, MONTH_RE, WEEKDAY_RE

#: every known line format by name.
FORMATS: dict[str, LineFormat] = {}


def register(fmt: LineFormat) -> LineFormat:
    """Add a format to :data:`FORMATS`; a name can only be registered once."""
    if fmt.name in FORMATS:
        raise ValueError(f"line format {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> LineFormat:
    """The format called ``name``; ValueError naming the known formats when there is none."""
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"unknown line format {name!r} (known formats: {known})") from None


def by_priority() -> list[LineFormat]:
    """All formats, most specific first."""
    return sorted(FORMATS.values(), key=lambda fmt: (-fmt.priority, fmt.name))


def built_formats() -> set[str]:
    """The formats whose grammar has been built (declared lazily and imported since)."""
    return {
        name
        for name, fmt in FORMATS.items()
        if not isinstance(fmt.parse, LazyParser) or fmt.parse.built
    }


class _Sniff:
    """A format's sniff test: its regex matches at the start of the line."""

    __slots__ = ("pattern",)

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __call__(self, line: str) -> bool:
        return self.pattern.match(line) is not None

    def __reduce__(self) -> tuple[object, ...]:
        return (_Sniff, (self.pattern.pattern,))


def _declare(
    name: str,
    description: str,
    module: str,
    function: str,
    sniff: str,
    priority: int,
    fields: FieldNames,
) -> LineFormat:
    parse: LazyParser[Parsed] = LazyParser(f"pipeline.grammars.{module}", function)
    return LineFormat(name, description, _Sniff(sniff), parse, priority, fields)


#: what the syslog envelopes can put in fields
ENVELOPE_FIELDS = FieldNames(frozenset({"facility", "context"}))
#: what the Apache error log grammar (and the prefix and peer blocks) can put in fields
APACHE_ERROR_FIELDS = frozenset(
    {
        "apache_level",
        "module",
        "tid",
        "errno",
        "os_error",
        "ah_code",
        "client",
        "client_port",
        "remote",
        "remote_port",
    }
)
_SNIFF_TAG = r"(?:[^\s\[\]:]+ +)?[^\s\[\]:=\"'<>,]+(?:\[\d+\])?:(?:\s|$)"

for _fmt in (
    journal.FORMAT,
    _declare(
        "syslog",
        "BSD syslog / RFC 3164, rsyslog's traditional format: "
        "'Nov 30 08:22:25 host prog[pid]: msg'",
        "syslog",
        "parse_syslog",
        rf"(?:<\d{{1,3}}>)?(?:\d{{4}} +)?{MONTH_RE} +\d{{1,2}} +(?:\d{{4}} +)?\d{{1,2}}:\d\d:\d\d",
        60,
        ENVELOPE_FIELDS,
    ),
    _declare(
        "rfc3339",
        "rsyslog high-precision file format: "
        "'2026-11-30T08:18:02.338779+00:00 host prog[pid]: msg'",
        "syslog",
        "parse_rfc3339",
        r"(?:<\d{1,3}>)?\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)\s",
        80,
        ENVELOPE_FIELDS,
    ),
    _declare(
        "rfc5424",
        "RFC 5424 syslog: '<13>1 2026-11-30T08:18:02Z host app procid msgid [sd] msg'",
        "syslog",
        "parse_rfc5424",
        r"(?:<\d{1,3}>)?[1-9]\d{0,2} (?:-|\d{4}-\d\d-\d\d[Tt]\S+) \S+ \S+ \S+ \S+ [-\[]",
        90,
        # structured data: "ID" and "ID.PARAM"; an ID without "@" must be registered (RFC
        # 5424 section 6.3.2 and 7: timeQuality, origin, meta), others are private
        # ("name@number")
        FieldNames(
            frozenset({"facility", "procid", "msgid", "timeQuality", "origin", "meta"}),
            re.compile(r"[^\s=\]\"]*[@.][^\s=\]\"]*"),
            "an RFC 5424 structured-data element",
            re.compile(r"[^\s=\]\"]+"),
        ),
    ),
    _declare(
        "iso-syslog",
        "an ISO date (any separator, zone optional) then '[host] prog[pid]: msg'",
        "syslog",
        "parse_iso_syslog",
        r"\d{4}-\d\d-\d\d(?:[Tt]| +)\d{1,2}:\d\d:\d\d(?:[.,]\d+)?"
        r"(?: ?(?:[Zz]|[+-]\d\d:?\d\d|UTC|GMT))?"
        rf" +{_SNIFF_TAG}",
        40,
        ENVELOPE_FIELDS,
    ),
    _declare(
        "tai64n",
        "daemontools/multilog lines: '@4000000050e5c1a31c8c5a84 prog: msg' (UTC)",
        "syslog",
        "parse_tai64n",
        r"@[0-9a-fA-F]{24}\s",
        30,
        ENVELOPE_FIELDS,
    ),
    _declare(
        "syslog-notime",
        "syslog lines without a timestamp, as journal tools print them: 'host prog[pid]: msg'",
        "syslog",
        "parse_notime",
        r"[^\s\[\]:@<{]+ +[^\s\[\]:=\"'<>,]+(?:\[\d+\])?:(?:\s|$)",
        20,
        ENVELOPE_FIELDS,
    ),
    _declare(
        "apache-error",
        "Apache httpd error log, 2.2 and 2.4: '[Sat Jan 23 13:22:28.123456 2021] [core:error] ...'",
        "apache_error",
        "parse",
        rf"(?:\[{WEEKDAY_RE} {MONTH_RE} +\d{{1,2}} [\d:.]+ \d{{4}}\] )?"
        rf"\[(?:[\w.\-]*:)?(?:{APACHE_LEVEL_RE})\]"
        r"|(?:AH\d{4,5}|httpd|apache2?): ",
        70,
        FieldNames(APACHE_ERROR_FIELDS),
    ),
    _declare(
        "access-log",
        "NCSA common/combined access log: "
        "'1.2.3.4 - - [05/Mar/2007:14:39:21 +0100] \"GET / HTTP/1.1\" 200 42'",
        "fallback",
        "parse_access",
        rf"(?:\S+ +)?\S+ +\S+ +\S+ +\[\d\d/{MONTH_RE}/\d{{4}}:\d\d:\d\d:\d\d [+-]\d{{4}}\] +\"",
        50,
        FieldNames(
            frozenset(
                {
                    "vhost",
                    "client",
                    "ident",
                    "user",
                    "request",
                    "method",
                    "path",
                    "protocol",
                    "status",
                    "size",
                    "referer",
                    "user_agent",
                }
            )
        ),
    ),
    _declare(
        "timestamped",
        "any line that starts with a date and time in a common application layout",
        "fallback",
        "parse_timestamped",
        r"(?:<[A-Z]>)?\[?(?:"
        r"\d{4}-\d\d-\d\d(?:[Tt]| +)\d{1,2}:\d\d:\d\d"
        r"|\d{4}/\d\d/\d\d +\d{1,2}:\d\d:\d\d"
        rf"|\d\d-{MONTH_RE}-\d{{4}} +\d{{1,2}}:\d\d:\d\d"
        r"|\d{6} +\d{1,2}:\d\d:\d\d"
        r"|\d\d-\d\d +\d{1,2}:\d\d:\d\d"
        rf"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {MONTH_RE} +\d{{1,2}} \d\d:\d\d:\d\d"
        rf"|(?<=\[){MONTH_RE} +\d{{1,2}} +\d{{1,2}}:\d\d:\d\d"
        r")",
        10,
        NO_FIELDS,
    ),
):
    register(_fmt)
