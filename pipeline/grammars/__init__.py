"""Line grammars: envelopes (syslog, Apache error log, journal JSON, ...) and body grammars.

Public API:

* :data:`FORMATS` -- every :class:`LineFormat` by name;
* :func:`get_format` -- one format by name (ValueError naming the known ones);
* :func:`sniff_format` -- the format of a file from its first lines;
* :func:`parse_any` -- parse a lone line with whichever format accepts it;
* :func:`parse_body` -- per-program fields from a message (sendmail, dovecot, systemd, kernel);
* :func:`register_body` -- add a body grammar (:class:`BodyGrammar`) for more programs.

Format names: ``journal-json``, ``rfc5424``, ``rfc3339``, ``apache-error``, ``syslog``,
``access-log``, ``iso-syslog``, ``tai64n``, ``syslog-notime``, ``timestamped``.
"""

from __future__ import annotations

from pipeline.grammars.base import FieldNames, GrammarError, LineFormat, Parsed
from pipeline.grammars.bodies import BodyError, BodyGrammar, parse_body, register_body
from pipeline.grammars.registry import FORMATS, get_format, register
from pipeline.grammars.sniff import SNIFF_LINES, parse_any, sniff_format

__all__ = [
    "FORMATS",
    "SNIFF_LINES",
    "BodyError",
    "BodyGrammar",
    "FieldNames",
    "GrammarError",
    "LineFormat",
    "Parsed",
    "get_format",
    "parse_any",
    "parse_body",
    "register",
    "register_body",
    "sniff_format",
]
