"""Reading back what ``scan`` lays out for a terminal: the table's rows and the digest's counts.

The layouts are made of cells separated by at least two spaces (cells never hold two spaces
in a row, except a row's last cell, the message or example); a column whose value is the same
on every row is written once, as ``name: value`` on the line above the header.
"""

from __future__ import annotations

import re

SEVERITIES = ("critical", "high", "medium", "low", "info")
_GAP = re.compile(r"\s{2,}")


def table_rows(text: str) -> list[dict[str, str]]:
    """The rows of ``scan --format table`` (one line each, the wide form), as column → cell,
    the columns written once above the header included."""
    lines = text.splitlines()
    (head,) = (i for i, line in enumerate(lines) if line.rstrip().endswith("message"))
    names = _GAP.split(lines[head].strip())
    constant: dict[str, str] = {}
    if head >= 2 and ": " in lines[head - 1]:
        for item in _GAP.split(lines[head - 1].strip()):
            name, _, value = item.partition(": ")
            constant[name] = value
    rows = []
    for line in lines[head + 1 :]:
        if not line.strip():
            break
        if line.startswith("    "):  # a row's captured fields, or its second line
            continue
        cells = _GAP.split(line.strip(), maxsplit=len(names) - 1)
        rows.append({**constant, **dict(zip(names, cells, strict=True))})
    return rows


def digest_counts(screen: str) -> dict[str, int]:
    """Per rule, the counts a digest shows: its rows' counts plus the folded per-rule ones."""
    counts: dict[str, int] = {}
    folded = False
    row = re.compile(rf"^(?:{'|'.join(SEVERITIES)})\s+(\d+)\s+(\S+)")
    item = re.compile(rf"(?:(?:{'|'.join(SEVERITIES)}): )?(\S+) (\d+)(?: \(\d+ hosts\))?")
    for line in screen.splitlines():
        if line.startswith("… and "):
            folded = True
            continue
        if folded:
            if not line.startswith("  ") or "--details" in line:
                folded = False
                continue
            for part in _GAP.split(line.strip()):
                m = item.fullmatch(part)
                assert m, f"not a per-rule count: {part!r} in {line!r}"
                counts[m[1]] = counts.get(m[1], 0) + int(m[2])
            continue
        m = row.match(line)
        if m:
            counts[m[2]] = counts.get(m[2], 0) + int(m[1])
    return counts
