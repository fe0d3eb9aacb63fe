"""Fast paths for the two syslog envelopes that dominate real logs.

The pyparsing grammars cost tens of microseconds a line; a plain compiled regex for the
common, unambiguous shape of a traditional or RFC 3339 rsyslog line (PAM-style tags such as
``sshd(pam_unix)[pid]:`` included) costs a few. A fast path either returns exactly what the
grammar would return, or ``None``, and then the grammar runs: anything unusual (a ``<PRI>``,
a program name with spaces, a host-less tag, a leap second, a fraction that is not 6 digits,
``(context)`` after the pid, rsyslog's ``message repeated N times: [...]``) takes the
grammar.
Tests compare both on every line of the corpora and samples and on generated lines.
"""

from __future__ import annotations

import re
from datetime import datetime

from pipeline.grammars.base import Parsed
from pipeline.grammars.common import MONTHS, _offset

_HOST = r"(?P<host>[A-Za-z0-9][A-Za-z0-9._-]*)"
_TAG = r"(?P<prog>[A-Za-z0-9_][A-Za-z0-9_./()-]*)(?:\[(?P<pid>[0-9]{1,10})\])?: "
_MSG = r"(?P<msg>.*)"
#: rsyslog's "message repeated N times: [...]" is left to the grammar (which unwraps it),
#: so an ordinary line pays nothing in Python for it
_NOT_REPEATED = r"(?!\s*message repeated )"
_SYSLOG_HEAD = (
    r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?P<day>[ 0-9][0-9]) "
    r"(?P<hh>[0-9]{2}):(?P<mm>[0-9]{2}):(?P<ss>[0-9]{2}) " + _HOST + " " + _TAG
)
_RFC3339_HEAD = (
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})T(?P<hh>[0-9]{2}):(?P<mm>[0-9]{2}):(?P<ss>[0-9]{2})"
    r"\.(?P<frac>[0-9]{6})(?P<zone>Z|[+-][0-9]{2}:[0-9]{2}) " + _HOST + " " + _TAG
)

#: the common shape of a traditional syslog line (also :mod:`pipeline.bulk`'s bulk path,
#: which unwraps repeated messages itself)
SYSLOG_LINE = re.compile(_SYSLOG_HEAD + _MSG, re.DOTALL)
#: the common shape of an rsyslog RFC 3339 line (also the bulk path's)
RFC3339_LINE = re.compile(_RFC3339_HEAD + _MSG, re.DOTALL)
_FAST_SYSLOG = re.compile(_SYSLOG_HEAD + _NOT_REPEATED + _MSG, re.DOTALL)
_FAST_RFC3339 = re.compile(_RFC3339_HEAD + _NOT_REPEATED + _MSG, re.DOTALL)


def fast_syslog(line: str) -> Parsed | None:
    m = _FAST_SYSLOG.fullmatch(line)
    if m is None:
        return None
    mon, day, hh, mm, ss, host, prog, pid, msg = m.groups()
    try:
        when = datetime(2000, MONTHS[mon], int(day), int(hh), int(mm), int(ss))
    except ValueError:
        return None
    return Parsed(
        timestamp=when,
        message=msg.strip(),
        host=host,
        program=prog,
        pid=int(pid) if pid is not None else None,
        year_missing=True,
    )


def fast_rfc3339(line: str) -> Parsed | None:
    m = _FAST_RFC3339.fullmatch(line)
    if m is None:
        return None
    date, hh, mm, ss, frac, zone, host, prog, pid, msg = m.groups()
    try:
        when = datetime(
            int(date[:4]),
            int(date[5:7]),
            int(date[8:]),
            int(hh),
            int(mm),
            int(ss),
            int(frac),
            tzinfo=_offset(zone),
        )
    except ValueError:
        return None
    return Parsed(
        timestamp=when,
        message=msg.strip(),
        host=host,
        program=prog,
        pid=int(pid) if pid is not None else None,
    )


#: format name -> fast path
FAST_PATHS = {"syslog": fast_syslog, "rfc3339": fast_rfc3339}
