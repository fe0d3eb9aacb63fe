"""One entry point for the per-program body grammars: :func:`parse_body`.

The engine calls it with a parsed line's program and message. Dispatch is on the program name
as the envelope reported it (syslog tag, or the journal's ``SYSLOG_IDENTIFIER``/``_COMM``):

=========================================  ==============================================
program                                    grammar
=========================================  ==============================================
``sendmail``, ``sm-mta``, ``sm-*``         :func:`pipeline.grammars.mail.parse_sendmail`
``dovecot``                                :func:`pipeline.grammars.mail.parse_dovecot`
``systemd``                                :func:`pipeline.grammars.systemd.parse_systemd`
``kernel``                                 :func:`pipeline.grammars.kernel.parse_kernel`
``httpd``, ``apache``, ``apache2``, X/…    :func:`pipeline.grammars.apache_error.parse_apache_body`
=========================================  ==============================================

A body that does not fit gives ``{}``; :func:`parse_body` never raises.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.grammars.apache_error import parse_apache_body
from pipeline.grammars.kernel import parse_kernel
from pipeline.grammars.mail import parse_dovecot, parse_sendmail
from pipeline.grammars.systemd import parse_systemd

BodyParser = Callable[[str], dict[str, str]]

_BY_NAME: dict[str, BodyParser] = {
    "sendmail": parse_sendmail,
    "dovecot": parse_dovecot,
    "systemd": parse_systemd,
    "kernel": parse_kernel,
    "httpd": parse_apache_body,
    "apache": parse_apache_body,
    "apache2": parse_apache_body,
}


def body_parser(program: str | None) -> BodyParser | None:
    """The body grammar for a program name, or None when there is none."""
    if not program:
        return None
    found = _BY_NAME.get(program)
    if found is not None:
        return found
    if program.startswith("sm-"):
        return parse_sendmail
    head = program.partition("/")[0]
    if head in ("httpd", "apache", "apache2"):
        return parse_apache_body
    return None


def parse_body(program: str | None, message: str) -> dict[str, str]:
    """Fields a program's body grammar reads from ``message``; {} when none applies or fits."""
    parser = body_parser(program)
    if parser is None or not message:
        return {}
    try:
        return parser(message)
    except Exception:  # a body is best effort: a grammar bug must not lose the line
        return {}
