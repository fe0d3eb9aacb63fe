"""One root error with a location, and the non-fatal problem records of a scan.

The library raises the first :class:`LogwardenError`; front-ends that want every error
(``rules validate``) collect :class:`Problem` records instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is: a path (or ``<stdin>``), a 1-based line, an optional 1-based column."""

    path: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        out = self.path
        if self.line is not None:
            out += f":{self.line}"
            if self.col is not None:
                out += f":{self.col}"
        return out


class LogwardenError(Exception):
    """Root of every error the engine raises on purpose."""

    def __init__(self, message: str, location: Location | None = None, hint: str = "") -> None:
        self.message = message
        self.location = location
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class RuleError(LogwardenError):
    """A rule file or rule is invalid."""


class InputError(LogwardenError):
    """An input path cannot be used at all (missing, unreadable, not a log)."""


class UsageError(LogwardenError):
    """A caller passed an option value that cannot work (bad --since, unknown tz, ...)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A counted, located, non-fatal problem met while reading input.

    ``kind`` is a short stable tag (``invalid-utf8``, ``nul-byte``, ``line-too-long``,
    ``truncated-archive``, ``unreadable``, ``unknown-format``, ``unparsed``, ``body-error``,
    ...).
    """

    kind: str
    location: Location
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.location}: {self.kind}" + (f": {self.detail}" if self.detail else "")
