"""The per-program body grammars and their registry: :func:`register_body`, :func:`parse_body`.

The engine calls :func:`parse_body` with a parsed line's program and message. Dispatch is on the
program name as the envelope reported it (syslog tag, or the journal's ``SYSLOG_IDENTIFIER``/
``_COMM``):

=========================================  ==============================================
program                                    grammar
=========================================  ==============================================
``sendmail``, ``sm-mta``, ``sm-*``         :func:`pipeline.grammars.mail.parse_sendmail`
``dovecot``                                :func:`pipeline.grammars.mail.parse_dovecot`
``systemd``                                :func:`pipeline.grammars.systemd.parse_systemd`
``kernel``                                 :func:`pipeline.grammars.kernel.parse_kernel`
``httpd``, ``apache``, ``apache2``, X/…    :func:`pipeline.grammars.apache_error.parse_apache_body`
=========================================  ==============================================

Built-ins are registered the way a third party adds one: :func:`register_body`, with the
field names the grammar can produce (:class:`FieldNames`), which rule validation reads.
They are declared here as data with a :class:`LazyParser`: a grammar module (and pyparsing)
is imported on the first message it reads.

A body that does not fit gives ``{}``. A grammar that raises has a bug: :func:`parse_body`
raises :class:`BodyError` naming it, and the engine counts a ``body-error`` problem at the
line and keeps the event without body fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.grammars.base import NO_FIELDS, FieldNames, LazyParser
from pipeline.grammars.common import SENDMAIL_KEY_RE
from pipeline.grammars.registry import APACHE_ERROR_FIELDS

BodyParser = Callable[[str], dict[str, str]]


@dataclass(frozen=True, slots=True)
class BodyGrammar:
    """A body grammar for the messages of some programs.

    It applies to a program named one of ``programs``, or starting with one of ``prefixes``
    (``sm-`` for sendmail's ``sm-mta``, ``sm-msp-queue``; ``httpd/`` for piped error logs).
    """

    name: str
    parse: BodyParser
    programs: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    fields: FieldNames = NO_FIELDS

    def applies_to(self, program: str) -> bool:
        return program in self.programs or program.startswith(self.prefixes)


class BodyError(Exception):
    """A body grammar raised: a bug in the grammar, not bad input."""

    def __init__(self, grammar: str, exc: Exception) -> None:
        super().__init__(f"body grammar {grammar!r} failed: {type(exc).__name__}: {exc}")
        self.grammar = grammar


#: every body grammar by name
BODY_GRAMMARS: dict[str, BodyGrammar] = {}
_BY_NAME: dict[str, BodyGrammar] = {}
_BY_PREFIX: list[tuple[str, BodyGrammar]] = []
#: every prefix at once: most programs have no grammar, and one C call says so
_PREFIXES: tuple[str, ...] = ()


def register_body(grammar: BodyGrammar) -> BodyGrammar:
    """Add a body grammar; a name, or a program another grammar has, is refused."""
    if grammar.name in BODY_GRAMMARS:
        raise ValueError(f"body grammar {grammar.name!r} is already registered")
    for program in grammar.programs:
        if program in _BY_NAME:
            raise ValueError(
                f"program {program!r} already has the body grammar {_BY_NAME[program].name!r}"
            )
    BODY_GRAMMARS[grammar.name] = grammar
    for program in grammar.programs:
        _BY_NAME[program] = grammar
    _BY_PREFIX.extend((prefix, grammar) for prefix in grammar.prefixes)
    _index_prefixes()
    return grammar


def _index_prefixes() -> None:
    global _PREFIXES
    _PREFIXES = tuple(prefix for prefix, _ in _BY_PREFIX)


def unregister_body(name: str) -> None:
    """Remove a body grammar registered under ``name`` (a plug-in unloaded, a test's grammar)."""
    grammar = BODY_GRAMMARS.pop(name)
    for program in grammar.programs:
        del _BY_NAME[program]
    _BY_PREFIX[:] = [(p, g) for p, g in _BY_PREFIX if g is not grammar]
    _index_prefixes()


def body_grammar(program: str | None) -> BodyGrammar | None:
    """The body grammar for a program name, or None when there is none."""
    if not program:
        return None
    found = _BY_NAME.get(program)
    if found is not None:
        return found
    if not program.startswith(_PREFIXES):
        return None
    for prefix, grammar in _BY_PREFIX:
        if program.startswith(prefix):
            return grammar
    return None


def body_parser(program: str | None) -> BodyParser | None:
    """The parse function of :func:`body_grammar` (a built-in one imported), or None."""
    grammar = body_grammar(program)
    if grammar is None:
        return None
    return grammar.parse.resolve() if isinstance(grammar.parse, LazyParser) else grammar.parse


def grammars_for(programs: Iterable[str]) -> list[BodyGrammar]:
    """The body grammars events of these exact program names can go through."""
    out: list[BodyGrammar] = []
    for program in programs:
        grammar = body_grammar(program)
        if grammar is not None and grammar not in out:
            out.append(grammar)
    return out


def parse_body(program: str | None, message: str) -> dict[str, str]:
    """Fields a program's body grammar reads from ``message``; {} when none applies or fits.

    Raises :class:`BodyError` when the grammar itself raises.
    """
    grammar = body_grammar(program)
    if grammar is None or not message:
        return {}
    try:
        return grammar.parse(message)
    except Exception as exc:
        raise BodyError(grammar.name, exc) from exc


def _lazy(module: str, function: str) -> LazyParser[dict[str, str]]:
    return LazyParser(f"pipeline.grammars.{module}", function)


#: what :func:`pipeline.grammars.mail.parse_sendmail` can return: its own names, and the key
#: of any pair
SENDMAIL_FIELDS = FieldNames(
    frozenset({"queue_id", "dsn_queue_id", "dsn"}),
    re.compile(SENDMAIL_KEY_RE),
    "a sendmail key=value pair",
)
#: what :func:`pipeline.grammars.mail.parse_dovecot` can return
DOVECOT_FIELDS = FieldNames(
    frozenset(
        {
            "dovecot_level",
            "process",
            "process_arg",
            "service",
            "event",
            "timeout",
            "limit_kind",
            "limit",
            "child_pid",
            "signal",
            "exit_code",
        }
    )
)
#: what :func:`pipeline.grammars.systemd.parse_systemd` can return
SYSTEMD_FIELDS = FieldNames(
    frozenset(
        {
            "action",
            "unit",
            "description",
            "state",
            "result",
            "process",
            "code",
            "status",
            "timeout_action",
            "restart_count",
            "consumed",
        }
    )
)
#: what :func:`pipeline.grammars.kernel.parse_kernel` can return
KERNEL_FIELDS = FieldNames(
    frozenset({"uptime", "fs", "fs_level", "device", "detail", "nfs_server", "nfs_state"})
)
#: what :func:`pipeline.grammars.apache_error.parse_apache_body` can return
APACHE_FIELDS = FieldNames(APACHE_ERROR_FIELDS | {"apache_pid"})

for _grammar in (
    BodyGrammar(
        "sendmail", _lazy("mail", "parse_sendmail"), ("sendmail",), ("sm-",), SENDMAIL_FIELDS
    ),
    BodyGrammar("dovecot", _lazy("mail", "parse_dovecot"), ("dovecot",), (), DOVECOT_FIELDS),
    BodyGrammar("systemd", _lazy("systemd", "parse_systemd"), ("systemd",), (), SYSTEMD_FIELDS),
    BodyGrammar("kernel", _lazy("kernel", "parse_kernel"), ("kernel",), (), KERNEL_FIELDS),
    BodyGrammar(
        "apache",
        _lazy("apache_error", "parse_apache_body"),
        ("httpd", "apache", "apache2"),
        ("httpd/", "apache/", "apache2/"),
        APACHE_FIELDS,
    ),
):
    register_body(_grammar)
