"""Fallback formats for application logs that are not syslog: ``access-log`` and ``timestamped``.

They have low sniffing priority: a file is only read with them when no syslog or Apache error
grammar fits it, and :func:`pipeline.grammars.parse_any` tries them last.

BNF (``SP`` is one or more spaces)::

    access-log  ::= [vhost SP] client SP ident SP user SP "[" clf_date "]" SP
                    DQUOTE request DQUOTE SP status SP size
                    [SP DQUOTE referer DQUOTE SP DQUOTE agent DQUOTE] [SP extra]
    clf_date    ::= DD "/" MONTH "/" YYYY ":" HH ":" MM ":" SS SP ("+"|"-") HHMM
    request     ::= METHOD SP target [SP protocol] | any text

    timestamped ::= ["<" LETTER ">"] (stamp | "[" stamp "]") [":"] SP message
    stamp       ::= iso_stamp                         ; 2013-01-04 17:03:46[.123|,123][ zone]
                  | YYYY "/" MM "/" DD SP TIME        ; nginx
                  | DD "-" MONTH "-" YYYY SP TIME [SP ("+"|"-") HHMM]   ; BIND, Roundcube
                  | YYMMDD SP TIME                    ; old MySQL
                  | MM "-" DD SP TIME                 ; FreeSWITCH (no year)
                  | ctime_stamp                       ; vsftpd
                  | bsd_stamp                         ; Asterisk "[Jan 18 17:39:50]" (no year)

``access-log`` keeps the whole line as the message (rules on access logs match the request and
the user agent together) and puts the parts in fields: ``client``, ``ident``, ``user``,
``method``, ``path``, ``protocol``, ``request``, ``status``, ``size``, ``referer``,
``user_agent``, ``vhost`` (``-`` values are left out). ``timestamped`` reads only the time;
the rest of the line is the message.

The formats (sniff tests, field names) are declared in :mod:`pipeline.grammars.registry`; this
module, with pyparsing, is imported on the first line one of its grammars parses.
"""

from __future__ import annotations

import re

import pyparsing as pp

from pipeline.grammars.base import Parsed
from pipeline.grammars.common import (
    MONTH_RE,
    MONTHS,
    Stamp,
    bsd_stamp,
    build_datetime,
    clean,
    ctime_stamp,
    fields_action,
    iso_stamp,
    message,
    named,
    run,
    stamp_element,
)


def _numeric_from(instring: str, loc: int, found: re.Match[str]) -> Stamp:
    """A Stamp from groups year (or yy) / month (number or name) / day / clock [/ frac, zone]."""
    groups = found.groupdict()
    month = groups["month"]
    if groups.get("yy") is not None:  # two-digit years: 70..99 -> 19xx, 00..69 -> 20xx
        short = int(groups["yy"])
        year = short + (1900 if short >= 70 else 2000)
    else:
        year = int(groups.get("year") or 2000)
    when = build_datetime(
        instring,
        loc,
        year=year,
        month=MONTHS[month] if month in MONTHS else int(month),
        day=int(groups["day"]),
        clock=groups["clock"],
        fraction=groups.get("frac"),
        zone=groups.get("zone"),
    )
    return Stamp(when, year_missing=groups.get("year") is None and groups.get("yy") is None)


# --- access-log ----------------------------------------------------------------------------------

_QUOTED = r"\"(?:[^\"\\]|\\.)*\""


#: ``[05/Mar/2007:14:39:21 +0100]``
clf_stamp = stamp_element(
    rf"\[(?P<day>\d\d)/(?P<month>{MONTH_RE})/(?P<year>\d{{4}}):(?P<clock>\d\d:\d\d:\d\d)"
    r" (?P<zone>[+-]\d{4})\]",
    _numeric_from,
    "[dd/Mon/yyyy:HH:MM:SS zone]",
)

access_who = (
    pp.Regex(
        r"(?:(?P<vhost>\S+) +(?=\S+ +\S+ +\S+ +\[))?(?P<client>\S+) +(?P<ident>\S+) +(?P<user>\S+)",
        as_match=True,
    )
    .set_name("[vhost] client ident user")
    .set_parse_action(fields_action())
)

access_request = (
    pp.Regex(
        rf"(?P<request>{_QUOTED}) +(?P<status>\d{{3}}) +(?P<size>\d+|-)"
        rf"(?: +(?P<referer>{_QUOTED}) +(?P<agent>{_QUOTED}))?",
        as_match=True,
    )
    .set_name('"request" status size')
    .set_parse_action(fields_action())
)

#: ``message`` takes the rest of the line (nginx adds fields after the user agent).
ACCESS_GRAMMAR = (
    access_who("who") + clf_stamp("timestamp") + access_request("request") + message("extra")
).parse_with_tabs()

_UNESCAPE = re.compile(r"\\(.)")


def _unquote(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text[1:-1])


def parse_access(line: str) -> Parsed:
    """Parse one NCSA common / combined access log line (Apache, nginx)."""
    res = run(ACCESS_GRAMMAR, line, "access-log")
    fields: dict[str, str] = {}
    who = named(res, "who")
    if isinstance(who, dict):
        fields.update((key, value) for key, value in who.items() if value != "-")
    req = named(res, "request")
    if isinstance(req, dict):
        request = _unquote(req["request"])
        fields["request"] = request
        parts = request.split(" ")
        if len(parts) in (2, 3) and parts[0].isupper():
            fields["method"], fields["path"] = parts[0], parts[1]
            if len(parts) == 3:
                fields["protocol"] = parts[2]
        fields["status"] = req["status"]
        if req["size"] != "-":
            fields["size"] = req["size"]
        for group, key in (("referer", "referer"), ("agent", "user_agent")):
            if group in req:
                value = _unquote(req[group])
                if value != "-":
                    fields[key] = value
    stamp = named(res, "timestamp")
    return Parsed(
        timestamp=stamp.when if isinstance(stamp, Stamp) else None,
        message=line.strip(),
        fields=fields,
    )


_CLOCK = r"(?P<clock>\d{1,2}:\d\d:\d\d)(?:[.,](?P<frac>\d{1,9}))?"


#: nginx ``2015/01/21 10:56:10``
slash_stamp = stamp_element(
    rf"(?P<year>\d{{4}})/(?P<month>\d\d)/(?P<day>\d\d) +{_CLOCK}(?!:?\d)",
    _numeric_from,
    "YYYY/MM/DD time",
)

#: BIND ``11-Aug-2013 03:36:11.372``, Roundcube ``22-Jan-2013 22:28:21 +0200``
dmy_stamp = stamp_element(
    rf"(?P<day>\d\d)-(?P<month>{MONTH_RE})-(?P<year>\d{{4}}) +{_CLOCK}"
    r"(?: (?P<zone>[+-]\d{4}))?(?!:?\d)",
    _numeric_from,
    "DD-Mon-YYYY time",
)

#: old MySQL ``130324  0:04:00``
yymmdd_stamp = stamp_element(
    r"(?P<yy>\d\d)(?P<month>\d\d)(?P<day>\d\d) +(?P<clock>\d{1,2}:\d\d:\d\d)(?!:?\d)",
    _numeric_from,
    "YYMMDD time",
)

#: FreeSWITCH ``08-03 07:56:53.026292`` (no year: placeholder 2000, ``year_missing``)
monthday_stamp = stamp_element(
    rf"(?P<month>\d\d)-(?P<day>\d\d) +{_CLOCK}(?!:?\d)", _numeric_from, "MM-DD time"
)

any_stamp = (
    iso_stamp | slash_stamp | dmy_stamp | yymmdd_stamp | monthday_stamp | ctime_stamp | bsd_stamp
).set_name("timestamp")

bracketed_stamp = (pp.Suppress("[") + any_stamp("timestamp") + pp.Suppress("]")).set_name(
    "[timestamp]"
)

#: ``message`` takes the rest of the line, so the grammar always consumes the whole line.
TIMESTAMPED_GRAMMAR = (
    pp.Opt(pp.Regex(r"<[A-Z]>").set_name("<L>"))
    + (bracketed_stamp | any_stamp("timestamp")).set_name("timestamp")
    + pp.Opt(pp.Suppress(":"))
    + message("message")
).parse_with_tabs()


def parse_timestamped(line: str) -> Parsed:
    """Read the leading timestamp of an application log line; the rest is the message."""
    res = run(TIMESTAMPED_GRAMMAR, line, "timestamped")
    stamp = named(res, "timestamp")
    return Parsed(
        timestamp=stamp.when if isinstance(stamp, Stamp) else None,
        message=clean(str(named(res, "message") or "")),
        year_missing=stamp.year_missing if isinstance(stamp, Stamp) else False,
    )
