"""The registry of line formats: every built-in :class:`LineFormat` under its name.

Built-ins are registered the way a third party would add one: :func:`register`.
"""

from __future__ import annotations

from pipeline.grammars import apache_error, fallback, journal, syslog
from pipeline.grammars.base import LineFormat

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


for _fmt in (
    journal.FORMAT,
    *syslog.FORMATS,
    apache_error.FORMAT,
    *fallback.FORMATS,
):
    register(_fmt)
