"""Format detection: which registered format a file's lines are in, and parsing a lone line.

:func:`sniff_format` votes: each format's cheap ``sniff`` test is run on up to
:data:`SNIFF_LINES` non-empty lines that do not start with ``#``; the format that fits the most
lines wins, and the higher ``priority`` breaks a tie (``rfc3339`` over ``iso-syslog``,
``apache-error`` over ``timestamped``). When no format fits at least half of the lines the
answer is None and the caller tries every grammar per line (:func:`parse_any`).
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.grammars.base import GrammarError, Parsed
from pipeline.grammars.registry import by_priority

#: how many lines :func:`sniff_format` looks at.
SNIFF_LINES = 50


def _sample(lines: Iterable[str]) -> list[str]:
    sample: list[str] = []
    for line in lines:
        text = line.rstrip("\r\n")
        if not text.strip() or text.startswith("#"):
            continue
        sample.append(text)
        if len(sample) >= SNIFF_LINES:
            break
    return sample


def sniff_format(lines: Iterable[str]) -> str | None:
    """The most specific format that fits at least half of ``lines``, or None when none does."""
    sample = _sample(lines)
    if not sample:
        return None
    for fmt in by_priority():  # most specific first: the first to fit half the lines wins
        votes = sum(1 for line in sample if fmt.sniff(line))
        if votes * 2 >= len(sample):
            return fmt.name
    return None


def parse_any(line: str) -> tuple[str, Parsed]:
    """Parse a line with the first format that accepts it: (format name, Parsed).

    Formats whose sniff test fits the line are tried first, most specific first; then the
    others. When none fits, the GrammarError is the one of the most specific format whose
    sniff test fitted (it says where the line went wrong), or a plain one at column 0.
    """
    formats = by_priority()
    likely = [fmt for fmt in formats if fmt.sniff(line)]
    first_error: GrammarError | None = None
    for fmt in likely + [fmt for fmt in formats if fmt not in likely]:
        try:
            return fmt.name, fmt.parse(line)
        except GrammarError as exc:
            first_error = first_error or exc
    if first_error is None:  # pragma: no cover - there is always at least one format
        raise GrammarError("no line format is registered")
    if not likely:
        raise GrammarError("no known line format fits the line", 0)
    raise first_error
