"""The lines around findings: ``logwarden show`` and ``scan --context N``.

A finding's own lines are its ``source:line`` and those of its ``related`` events (a
correlation's lines may lie in several files). :func:`gather` reads each file once, whatever
the number of findings and lines in it, from the original input (plain, ``.gz``, ``.bz2``,
``.xz``), streaming it and keeping only the lines within ``N`` of a wanted one; it stops after
the last one. Each own line is checked against the message recorded for it: a file replaced
by rotation since (the name now holds other lines) is looked for in the other members of its
rotation set (``mail.log`` → ``mail.log.1`` → ``mail.log.2.gz``), nearest older one first.
Whatever cannot be shown is a located :class:`~pipeline.errors.Problem`.

:func:`find_finding` finds a finding by its key, or a unique prefix of it, in JSONL findings
files (``scan --format jsonl``, ``watch --output``) or a SQLite store / state database.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, Location, Problem, UsageError
from pipeline.model import Finding, Related
from pipeline.sources.files import (
    STDIN,
    InputFile,
    detect_compression,
    is_url,
    iter_chunks,
    open_input,
    rotation_key,
    rotation_set,
)

#: the fewest hex digits a key prefix may have
MIN_PREFIX = 4


@dataclass(frozen=True, slots=True)
class Target:
    """One line to show: ``source:line``, the message it should hold (``None``: any) and
    the wall-clock time (``HH:MM:SS``) written in it, where known."""

    source: str
    line: int
    message: str | None = None
    time: str | None = None


@dataclass(frozen=True, slots=True)
class ContextLine:
    """A line shown: where it was read, its number and text, and whether it is an own line."""

    source: str
    line: int
    text: str
    match: bool

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "text": self.text, "match": self.match}


@dataclass(frozen=True, slots=True)
class Context:
    """The lines around one finding, file by file and in line order, and what was missing.

    ``moved`` pairs a recorded ``source:line`` with where its line was found instead (a
    rotated file).
    """

    lines: tuple[ContextLine, ...] = ()
    problems: tuple[Problem, ...] = ()
    moved: tuple[tuple[str, str], ...] = ()

    def hunks(self) -> list[list[ContextLine]]:
        """Runs of adjacent lines of one file (grep separates them with ``--``)."""
        out: list[list[ContextLine]] = []
        for cl in self.lines:
            prev = out[-1][-1] if out else None
            if prev is not None and prev.source == cl.source and prev.line + 1 == cl.line:
                out[-1].append(cl)
            else:
                out.append([cl])
        return out


def finding_targets(f: Finding) -> list[Target]:
    """A finding's own lines, with the message each must hold where one is recorded.

    ``related`` carries each event's message; the finding's own ``source:line`` is checked
    against its message only when it is a single-line finding (a correlation's message is
    its own text, not the line's). Lines without a file (an absence with no last event, the
    journal) are left to :func:`gather`, which reports the journal and stdin.
    """
    seen: dict[tuple[str, int], Target] = {}
    for r in f.related:
        if r.line > 0 and r.source:
            seen.setdefault((r.source, r.line), Target(r.source, r.line, r.message, _clock(r)))
    if f.line > 0 and f.source and (f.source, f.line) not in seen:
        single = not f.related
        seen[(f.source, f.line)] = Target(
            f.source, f.line, f.message if single else None, _clock(f) if single else None
        )
    order: dict[str, int] = {}
    for t in seen.values():
        order.setdefault(t.source, len(order))
    return sorted(seen.values(), key=lambda t: (order[t.source], t.line))


def _clock(r: Related | Finding) -> str | None:
    return r.timestamp.strftime("%H:%M:%S") if r.timestamp is not None else None


#: a wall-clock time as syslog, RFC 3339 and Apache lines write it
_CLOCK = re.compile(r"\d\d:\d\d:\d\d")


def _holds(text: str, t: Target) -> bool:
    """Whether a line as read is still the recorded one: it holds the message and, when it
    shows a time of day at all, the event's (identical messages recur in other files)."""
    message = t.message
    if not message:
        return True
    if message in text or all(word in text for word in message.split()):
        # (some grammars rebuild the message: Apache puts the OS error first)
        return t.time is None or t.time in text or _CLOCK.search(text) is None
    if text.lstrip().startswith("{"):  # journal JSON: the message may be escaped or bytes
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        value = obj.get("MESSAGE") if isinstance(obj, dict) else None
        if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
            value = bytes(value).decode("utf-8", "replace")
        return isinstance(value, str) and message in value
    return False


@dataclass(slots=True)
class _Read:
    """What one pass over a file gave: the wanted lines, how many lines it has at least
    (all of them when ``complete``), and any problem reading it."""

    lines: dict[int, str] = field(default_factory=dict)
    seen: int = 0
    complete: bool = False
    error: str | None = None
    problems: list[Problem] = field(default_factory=list)


def _input_for(path: str) -> InputFile:
    if is_url(path):
        from pipeline.sources.files import expand_inputs

        (inp,) = expand_inputs([path])[:1]
        return inp
    return InputFile(path, detect_compression(path))


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def read_ranges(path: str, ranges: Iterable[tuple[int, int]]) -> _Read:
    """The lines of ``path`` within ``ranges`` (1-based, inclusive), in one streaming pass.

    Chunks of whole lines are counted at C speed and split only where a range falls, and
    the read stops after the last range, so memory holds only the lines asked for.
    """
    merged = _merge(ranges)
    got = _Read()
    if not merged:
        return got
    if path in (STDIN, "<stdin>"):
        got.error = "standard input cannot be read again"
        return got
    if path.startswith("journal:"):
        got.error = "a journal entry is not a line of a file (see journalctl)"
        return got
    last = merged[-1][1]
    try:
        inp = _input_for(path)
        with open_input(inp) as stream:
            j = 0
            for chunk in iter_chunks(stream, path, got.problems.append):
                data = chunk.data
                first = chunk.first_line
                n = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
                end = first + n - 1
                got.seen = end
                while j < len(merged) and merged[j][1] < first:
                    j += 1
                if j < len(merged) and merged[j][0] <= end:
                    rows = data.split(b"\n")
                    k = j
                    while k < len(merged) and merged[k][0] <= end:
                        lo, hi = merged[k]
                        for ln in range(max(lo, first), min(hi, end) + 1):
                            raw = rows[ln - first].rstrip(b"\r")
                            got.lines[ln] = raw.decode("utf-8", "replace")
                        k += 1
                if end >= last:
                    return got
        got.complete = True
    except FileNotFoundError:
        got.error = "no such file (gone, or rotated away)"
    except (OSError, InputError) as exc:
        got.error = f"cannot read: {getattr(exc, 'strerror', None) or exc}"
    return got


def rotation_members(path: str) -> list[str]:
    """The other files of ``path``'s rotation set, nearest older one first, then newer ones."""
    if is_url(path) or path in (STDIN, "<stdin>") or path.startswith("journal:"):
        return []
    directory = os.path.dirname(path) or "."
    home = rotation_set(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    members = [
        os.path.join(directory, n) if os.path.dirname(path) else n
        for n in names
        if rotation_set(os.path.join(directory, n)) == home
    ]
    members = [m for m in members if os.path.isfile(m) and os.path.abspath(m) != _abs(path)]
    key = rotation_key(path)
    older = sorted((m for m in members if rotation_key(m) < key), key=rotation_key, reverse=True)
    newer = sorted((m for m in members if rotation_key(m) > key), key=rotation_key)
    return older + newer


def _abs(path: str) -> str:
    return os.path.abspath(path)


def gather(requests: Sequence[Sequence[Target]], n: int) -> list[Context]:
    """The context of each request (a finding's own lines): ``n`` lines before and after.

    Each file is read once for all requests; a file whose wanted lines no longer hold their
    messages (or that is gone) is followed into its rotation set, each member read once.
    """
    n = max(n, 0)
    wanted: dict[str, list[tuple[int, int]]] = {}
    for req in requests:
        for t in req:
            wanted.setdefault(t.source, []).append((t.line - n, t.line + n))
    reads = {path: read_ranges(path, _clip(spans)) for path, spans in wanted.items()}

    # own lines a read could not confirm: look for them in the file's rotation set
    failed: dict[str, list[Target]] = {}
    for req in requests:
        for t in req:
            if not _found(reads[t.source], t) and t.message:
                failed.setdefault(t.source, []).append(t)
    found_in: dict[tuple[str, int], str] = {}
    tried: dict[str, list[str]] = {}
    member_reads: dict[str, _Read] = {}
    by_member: dict[str, list[tuple[int, int]]] = {}
    candidates: dict[str, list[str]] = {p: rotation_members(p) for p in failed}
    for path, targets in failed.items():
        for m in candidates[path]:
            by_member.setdefault(m, []).extend((t.line - n, t.line + n) for t in targets)
    for m, spans in by_member.items():
        member_reads[m] = read_ranges(m, _clip(spans))
    for path, targets in failed.items():
        tried[path] = candidates[path]
        for t in targets:
            for m in candidates[path]:
                if _found(member_reads[m], t):
                    found_in[(t.source, t.line)] = m
                    break

    out: list[Context] = []
    for req in requests:
        shown: dict[tuple[str, int], ContextLine] = {}
        problems: list[Problem] = []
        moved: list[tuple[str, str]] = []
        for t in req:
            where = found_in.get((t.source, t.line), t.source)
            r = reads[where] if where == t.source else member_reads[where]
            if not _found(r, t):
                problems.append(_problem(t, reads[t.source], tried.get(t.source, [])))
                continue
            if where != t.source:
                moved.append((f"{t.source}:{t.line}", f"{where}:{t.line}"))
            for ln in range(max(1, t.line - n), t.line + n + 1):
                text = r.lines.get(ln)
                if text is None:
                    break
                key = (where, ln)
                old = shown.get(key)
                shown[key] = ContextLine(where, ln, text, ln == t.line or bool(old and old.match))
        order: dict[str, int] = {}
        for src, _ in shown:
            order.setdefault(src, len(order))
        lines = sorted(shown.values(), key=lambda c: (order[c.source], c.line))
        out.append(Context(tuple(lines), tuple(problems), tuple(moved)))
    return out


def _clip(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(max(1, lo), hi) for lo, hi in spans if hi >= 1]


def _found(r: _Read, t: Target) -> bool:
    text = r.lines.get(t.line)
    return text is not None and _holds(text, t)


def _problem(t: Target, r: _Read, tried: Sequence[str]) -> Problem:
    where = Location(t.source, t.line)
    also = f"; not in {', '.join(tried)} either" if tried else ""
    if r.error is not None:
        return Problem("context-unavailable", where, r.error + also)
    if t.line not in r.lines:
        if r.problems:
            return Problem("context-unavailable", where, "; ".join(str(p) for p in r.problems))
        return Problem("context-unavailable", where, f"the file has only {r.seen} lines{also}")
    return Problem(
        "context-unavailable",
        where,
        "this line no longer holds the finding's message (the file was rotated or "
        f"rewritten){also}",
    )


def finding_context(findings: Sequence[Finding], n: int) -> dict[str, Context]:
    """The context of each finding by key (``scan --context N``): one read per file."""
    contexts = gather([finding_targets(f) for f in findings], n)
    return {f.key: c for f, c in zip(findings, contexts, strict=True)}


# -- finding a finding by key -----------------------------------------------------------------


def parse_location(text: str) -> tuple[str, int] | None:
    """``FILE:LINE`` as (FILE, LINE), or ``None`` when ``text`` has no ``:LINE`` (a key)."""
    path, sep, line = text.rpartition(":")
    if not sep or not path or not line.isdigit():
        return None
    if int(line) < 1:
        raise UsageError(f"{text}: lines are numbered from 1")
    return path, int(line)


def check_prefix(prefix: str) -> str:
    text = prefix.strip().lower()
    if len(text) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in text):
        raise UsageError(
            f"{prefix!r} is neither a finding key (at least {MIN_PREFIX} hex digits) nor FILE:LINE"
        )
    return text


def find_finding(prefix: str, findings_files: Sequence[str], stores: Sequence[str]) -> Finding:
    """The finding whose key starts with ``prefix`` in the JSONL files and SQLite stores.

    The same key seen more than once (a finding updated, or stored twice) is one finding, in
    its last version; a prefix of more than one key is an error listing them.
    """
    text = check_prefix(prefix)
    if not findings_files and not stores:
        raise UsageError(
            "a finding key needs --findings FILE.jsonl or --store FILE to look in "
            "(FILE:LINE needs neither)"
        )
    hits: dict[str, Finding] = {}
    for path in findings_files:
        hits.update(_from_jsonl(path, text))
    for path in stores:
        hits.update(_from_store(path, text))
    where = ", ".join([*findings_files, *stores])
    if not hits:
        raise UsageError(f"no finding with a key starting {text!r} in {where}")
    if len(hits) > 1:
        shown = ", ".join(sorted(hits)[:5]) + (", ..." if len(hits) > 5 else "")
        raise UsageError(f"{text!r} is the start of {len(hits)} finding keys ({shown}); give more")
    return next(iter(hits.values()))


def _from_jsonl(path: str, prefix: str) -> Mapping[str, Finding]:
    out: dict[str, Finding] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for no, line in enumerate(f, 1):
                if prefix not in line or not line.strip():
                    continue  # a key with the prefix appears in the line's text
                try:
                    d = json.loads(line)
                    key = str(d.get("key", ""))
                    if not key.startswith(prefix):
                        continue
                    out[key] = Finding.from_dict(d)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise InputError(
                        f"not a finding: {type(exc).__name__}: {exc}", Location(path, no)
                    ) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", Location(path)) from None
    return out


def _from_store(path: str, prefix: str) -> Mapping[str, Finding]:
    if not Path(path).is_file():
        raise InputError("no such store", Location(path))
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open: {exc}", Location(path)) from None
    try:
        rows = conn.execute(
            "SELECT key, data FROM findings WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
    except sqlite3.Error as exc:
        raise InputError(f"cannot read findings: {exc}", Location(path)) from None
    finally:
        conn.close()
    out: dict[str, Finding] = {}
    for key, data in rows:
        try:
            out[str(key)] = Finding.from_dict(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"the stored finding {key} is corrupt: {exc}", Location(path)
            ) from None
    return out
