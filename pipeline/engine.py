"""The one engine: input → prefilter → grammar → Event → detection → Finding.

``scan`` (forensics), ``parse`` and, later, the daemon and the pandas API are front-ends
over :class:`LineProcessor` (one input's lines to events) and :class:`Detector` (events
to findings). Nothing here prints or exits; counters and located problems are returned.
"""

from __future__ import annotations

import contextlib
import copyreg
import fnmatch
import gc
import io
import lzma
import os
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeAlias, TypeVar, cast

from pipeline.detection.correlate import Detector
from pipeline.detection.model import Rule
from pipeline.detection.prefilter import Prefilter, newline_offsets
from pipeline.errors import InputError, Location, Problem
from pipeline.grammars import FORMATS, get_format, parse_any, sniff_format
from pipeline.grammars.base import GrammarError, LineFormat, Parsed
from pipeline.grammars.bodies import BodyError, parse_body
from pipeline.grammars.fastpath import FAST_PATHS
from pipeline.model import Event, Finding
from pipeline.resume import skip_prefix
from pipeline.sources.files import (
    MAX_LINE,
    STDIN,
    Chunk,
    InputFile,
    expand_inputs,
    is_url,
    iter_chunks,
    line_starts,
    open_input,
    rotation_set,
)
from pipeline.sources.journal import JournalSpec, check_backend, iter_journal
from pipeline.timeinfer import TimeResolver, local_zone

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from pipeline.block import (
        BlockProcessor,
        BlockRecords,
        FindingTable,
        Prepared,
        TableView,
        _BlockReader,
    )
    from pipeline.detection.correlate import ColumnRule
    from pipeline.detection.prefilter import IntArray
    from pipeline.imports.logcheck import LogcheckMatcher
    from pipeline.resume import Resume

#: located problems kept per (input, kind); all are counted
PROBLEMS_LISTED_PER_KIND = 20
#: NUL bytes in a row that count as a run left by an unclean shutdown (blocks the file
#: system allocated but never wrote); the record appended after such a run is read on
NUL_RUN = 8
_NUL_RUN = re.compile(b"\x00{%d,}" % NUL_RUN)
#: lines read at the start of an input to sniff its format
SNIFF_LINES = 50
_NO_FIELDS: Mapping[str, str] = MappingProxyType({})
#: with several workers, plain files over twice this size are cut into byte ranges of
#: about this size (at line starts), so one large file keeps every worker busy
PART_SIZE = 16 * 1024 * 1024


def _frozen(data: dict[str, str]) -> MappingProxyType[str, str]:
    return MappingProxyType(data)


def _reduce_proxy(
    proxy: MappingProxyType[str, str],
) -> tuple[Callable[[dict[str, str]], MappingProxyType[str, str]], tuple[dict[str, str]]]:
    return (_frozen, (dict(proxy),))


# events and rules hold read-only mappings; they travel to worker processes and back
copyreg.pickle(MappingProxyType, _reduce_proxy)


#: collector thresholds while scanning: millions of short-lived events and few cycles, so
#: young-generation passes every 100k allocations instead of 700 (3.11's default)
SCAN_GC_THRESHOLD = (100_000, 50, 50)


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect garbage less often during a scan, and never walk what existed before it.

    Objects alive at the start (modules, rules, grammars) are frozen out of collection
    for the scan, so full collections stay small and forked workers share those pages.
    The earlier thresholds and objects come back after.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*SCAN_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def sniff_head(data: bytes, max_line: int = MAX_LINE) -> tuple[str | None, bool]:
    """The format most of the first lines of ``data`` fit, and whether there were any."""
    sample: list[str] = []
    for raw in data.split(b"\n", SNIFF_LINES * 4)[: SNIFF_LINES * 4]:
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        if text.strip() and not text.startswith("#"):
            sample.append(text[:max_line])
        if len(sample) >= SNIFF_LINES:
            break
    return (sniff_format(sample) if sample else None), bool(sample)


@dataclass(frozen=True, slots=True)
class ScanOptions:
    since: datetime | None = None
    until: datetime | None = None
    year: int | None = None
    tz: tzinfo | None = None
    format: str | None = None  # force a format instead of sniffing
    #: how far out of order matched lines may come (merged files) before windows judge them
    lateness: timedelta = timedelta(0)
    max_line: int = MAX_LINE
    #: the host of lines that carry none (``--host``); without it such lines are grouped
    #: by their input's rotation set (:attr:`Event.group`)
    host: str | None = None
    #: (path or glob, host) pairs, ``--config``'s ``paths`` entries with a ``host``: the host
    #: of lines that carry none in inputs whose path or rotation set matches; before ``host``
    hosts: tuple[tuple[str, str], ...] = ()
    #: "now" for inputs without an mtime (stdin) and for the never-in-the-future rule
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: judge blocks as columns where the rules allow it (:mod:`pipeline.block`); off, every
    #: scan takes the line path (the two give the same findings: tests compare them)
    block_path: bool = True
    #: on the block path's table (every rule a column rule), prepare the next block
    #: (newline offsets, candidates, envelope: C kernels, most of which release the GIL) on
    #: a second thread while this one is judged, where more than one core is usable and
    #: this is not a worker process
    read_ahead: bool = True

    def host_of(self, path: str) -> str | None:
        """The host of the lines of ``path`` that carry none (once per input, not per line)."""
        if self.hosts:
            names = (path, rotation_set(path))
            for pattern, host in self.hosts:
                if any(n == pattern or fnmatch.fnmatchcase(n, pattern) for n in names):
                    return host
        return self.host


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def raw_position(stream: object) -> int:
    """How far into the file on disk a (possibly decompressing) stream has read."""
    for attr in ("fileobj", "_fp"):  # gzip.GzipFile, bz2.BZ2File / lzma.LZMAFile
        inner = getattr(stream, attr, None)
        if inner is not None and hasattr(inner, "tell"):
            try:
                return int(inner.tell())
            except (OSError, ValueError):
                return 0
    try:
        return int(stream.tell())  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return 0


@dataclass(frozen=True, slots=True)
class TimeMark:
    """Time seen on a host without an event for detection: a chunk's first or last line.

    Detection uses it to judge windows (absence, digests) that the input has covered.
    ``host`` is what detection groups by: for a line without a host, the group (see
    :attr:`Event.scope`).
    """

    host: str | None
    timestamp: datetime


@dataclass(slots=True)
class Unparsed:
    """A line no grammar could read; it is counted and located, never dropped silently."""

    location: Location
    text: str
    format: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class LogcheckHit:
    """A logcheck verdict on one line (see :mod:`pipeline.imports.logcheck`): the line's
    event, standing for ``event.repeat`` folded lines, and the rule it becomes a match of."""

    event: Event
    rule: str
    fields: Mapping[str, str]


@dataclass
class ScanStats:
    files: int = 0
    bytes: int = 0
    lines: int = 0
    comments: int = 0
    blank: int = 0
    candidates: int = 0
    parsed: int = 0
    unparsed: Counter[str] = field(default_factory=Counter)
    out_of_range: int = 0
    #: copies of events already read from another rotation set, left out of detection
    duplicates: int = 0
    findings: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def merge(self, other: ScanStats) -> None:
        """Add the counts of another part of the same scan (not ``files`` or ``seconds``)."""
        for name in (
            "bytes",
            "lines",
            "comments",
            "blank",
            "candidates",
            "parsed",
            "out_of_range",
            "duplicates",
            "findings",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unparsed.update(other.unparsed)
        self.problems.update(other.problems)
        self.formats.update(other.formats)

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "lines": self.lines,
            "comments": self.comments,
            "blank": self.blank,
            "candidates": self.candidates,
            "parsed": self.parsed,
            "unparsed": dict(self.unparsed),
            "out_of_range": self.out_of_range,
            "duplicates": self.duplicates,
            "findings": self.findings,
            "problems": dict(self.problems),
            "formats": dict(self.formats),
            "seconds": round(self.seconds, 3),
        }


class ProblemLog:
    """Counts every problem; keeps the first few of each kind per input with locations."""

    def __init__(self, stats: ScanStats) -> None:
        self.stats = stats
        self.listed: list[Problem] = []
        self._per: Counter[tuple[str, str]] = Counter()  # counted
        self._shown: Counter[tuple[str, str]] = Counter()  # listed

    def __call__(self, problem: Problem) -> None:
        self.stats.problems[problem.kind] += 1
        key = (problem.location.path, problem.kind)
        self._per[key] += 1
        if self._per[key] <= PROBLEMS_LISTED_PER_KIND:
            self._shown[key] += 1
            self.listed.append(problem)

    def expand(self, paths: Sequence[str]) -> list[InputFile]:
        """:func:`expand_inputs`, its problems (skipped and unreadable files) logged here."""
        found: list[Problem] = []
        inputs = expand_inputs(list(paths), found)
        for p in found:
            self(p)
        return inputs

    def omitted(self) -> int:
        return sum(max(0, n - PROBLEMS_LISTED_PER_KIND) for n in self._per.values())

    def merge(self, other: ProblemLog, line_offset: int = 0) -> None:
        """Take the problems of a part read separately (already counted in its stats);
        its line numbers are shifted by ``line_offset``."""
        for p in other.listed:
            key = (p.location.path, p.kind)
            if self._shown[key] >= PROBLEMS_LISTED_PER_KIND:
                continue
            self._shown[key] += 1
            loc = p.location
            if line_offset and loc.line is not None:
                p = replace(p, location=replace(loc, line=loc.line + line_offset))
            self.listed.append(p)
        self._per.update(other._per)


class LineProcessor:
    """Turns the lines of one input into events, in order.

    Holds what is per input: its format (sniffed from the first lines unless forced), its
    time resolver and its display name. ``all_lines=False`` parses only prefilter candidates.
    A line without a host gets ``host`` when given, else ``group`` as its :attr:`Event.group`.
    """

    def __init__(
        self,
        display: str,
        resolver: TimeResolver,
        prefilter: Prefilter | None,
        report: Callable[[Problem], None],
        stats: ScanStats,
        *,
        fmt: str | None = None,
        max_line: int = MAX_LINE,
        body_fields: bool = True,
        sniffed: str | None = None,
        host: str | None = None,
        group: str | None = None,
        logcheck: LogcheckMatcher | None = None,
    ) -> None:
        self.display = display
        self.host = host
        self.group = group
        #: judges every line of each chunk as logcheck does (``scan --logcheck``)
        self.logcheck = logcheck
        #: fold unexplained lines in bulk; off with --since/--until, which must see every
        #: line's time (each line is then an event of its own)
        self.fold_bulk = True
        self.body_fields = body_fields
        self.resolver = resolver
        self.prefilter = prefilter
        self.report = report
        self.stats = stats
        self.max_line = max_line
        self.format: LineFormat | None = get_format(fmt) if fmt else None
        self._fast = FAST_PATHS.get(fmt) if fmt else None
        self.forced = fmt is not None
        self.sniffed = fmt is not None
        if sniffed is not None:
            # a later byte range of a file whose head was sniffed (and counted) already
            self.sniffed = True
            if sniffed != "unknown":
                self.format = get_format(sniffed)
                self._fast = FAST_PATHS.get(sniffed)

    # -- format ----------------------------------------------------------------------------

    def _sniff(self, data: bytes) -> None:
        self.sniffed = True
        name, sample = sniff_head(data, self.max_line)
        if name is not None:
            self.format = FORMATS[name]
            self._fast = FAST_PATHS.get(name)
            self.stats.formats[name] += 1
        elif sample:
            self.stats.formats["unknown"] += 1
            self.report(
                Problem(
                    "unknown-format",
                    Location(self.display),
                    "no known format fits most of the first lines; each line is tried "
                    "against every grammar",
                )
            )

    # -- anomalies counted over whole chunks ------------------------------------------------

    def _scan_anomalies(self, data: bytes, first_line: int, offsets: IntArray) -> bool:
        """Report NUL bytes, invalid UTF-8 and over-long lines; True when a NUL was found."""
        import numpy as np

        pos = data.find(b"\x00")
        nul = pos >= 0
        while pos >= 0:
            idx = int(np.searchsorted(offsets, pos))
            start = int(offsets[idx - 1]) + 1 if idx > 0 else 0
            end = data.find(b"\n", pos)
            run = data.find(b"\x00" * NUL_RUN, pos, end if end >= 0 else len(data)) >= 0
            self.report(
                Problem(
                    "nul-byte",
                    Location(self.display, first_line + idx, pos - start + 1),
                    "a run of NUL bytes (an unclean shutdown?): the line is read from after "
                    "the last run"
                    if run
                    else "NUL byte in line",
                )
            )
            if end < 0:
                break
            pos = data.find(b"\x00", end)
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                # from the first bad line on, line by line: linear however many lines are bad
                n_lines = len(offsets) + (0 if data.endswith(b"\n") else 1)
                for idx in range(int(np.searchsorted(offsets, exc.start)), n_lines):
                    line_start = int(offsets[idx - 1]) + 1 if idx > 0 else 0
                    line_end = int(offsets[idx]) if idx < len(offsets) else len(data)
                    raw = data[line_start:line_end]
                    if raw.isascii():
                        continue
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError as bad:
                        self.report(
                            Problem(
                                "invalid-utf8",
                                Location(self.display, first_line + idx, bad.start + 1),
                                "undecodable bytes shown as U+FFFD",
                            )
                        )
        if len(offsets):
            starts = np.concatenate(([0], offsets[:-1] + 1))
            long_idx = np.flatnonzero((offsets - starts) > self.max_line)
            for long_i in long_idx:
                self.report(
                    Problem(
                        "line-too-long",
                        Location(self.display, first_line + int(long_i)),
                        f"longer than {self.max_line} bytes; cut to that length",
                    )
                )
        return nul

    # -- lines -----------------------------------------------------------------------------

    def _parse(self, text: str, line_no: int) -> Event | Unparsed:
        parsed: Parsed | None = None
        fmt_name: str | None = self.format.name if self.format else None
        reason = ""
        col: int | None = None
        if self.format is not None:
            try:
                parsed = self._fast(text) if self._fast else None
                if parsed is None:
                    parsed = self.format.parse(text)
            except GrammarError as exc:
                reason = f"{exc} (column {exc.col + 1})"
                col = exc.col + 1
        if parsed is None and not self.forced:
            try:
                fmt_name, parsed = parse_any(text)
            except GrammarError as exc:
                reason = reason or str(exc)
        if parsed is None:
            loc = Location(self.display, line_no, col)
            self.stats.unparsed[fmt_name or "unknown"] += 1
            self.report(Problem("unparsed", loc, reason or "no grammar fits"))
            return Unparsed(loc, text, fmt_name, reason or "no grammar fits")
        self.stats.parsed += 1
        ts = parsed.timestamp
        aware = self.resolver.resolve(ts, parsed.year_missing) if ts is not None else None
        fields = parsed.fields
        host, group = parsed.host, None
        if host is None:
            host = self.host
            if host is None:
                group = self.group
        if parsed.message and self.body_fields:
            fields = self.with_body(fields, parsed.program, parsed.message, line_no)
        # positional: keywords cost a candidate line measurably (fields in Event's order)
        return Event(
            aware,
            host,
            parsed.program,
            parsed.pid,
            parsed.level,
            parsed.message,
            fmt_name or "unknown",
            self.display,
            line_no,
            MappingProxyType(fields) if fields else _NO_FIELDS,
            parsed.year_missing and ts is not None and aware is not None,
            parsed.repeat,
            group,
        )

    def with_body(
        self, fields: Mapping[str, str], program: str | None, message: str, line_no: int
    ) -> dict[str, str]:
        """``fields`` with the fields the body grammar of ``program`` reads in ``message``
        (an envelope field wins over a body field of the same name)."""
        out = dict(fields)
        try:
            body = parse_body(program, message)
        except BodyError as exc:
            # a grammar bug: the event goes on without body fields, and it is counted
            self.report(Problem("body-error", Location(self.display, line_no), str(exc)))
            body = {}
        for key, value in body.items():
            out.setdefault(key, value)
        return out

    def _sample(self, raw: bytes) -> TimeMark | None:
        """The time of one line outside the candidates (keeps year inference and windows
        current between sparse candidates)."""
        if self.format is None:
            return None
        raw = raw[: self.max_line].rstrip(b"\r")
        if not raw.strip() or raw.startswith(b"#"):
            return None
        text = raw.decode("utf-8", "replace")
        try:
            parsed = (self._fast(text) if self._fast else None) or self.format.parse(text)
        except GrammarError:
            return None
        if parsed.timestamp is None:
            return None
        ts = self.resolver.resolve(parsed.timestamp, parsed.year_missing)
        host = parsed.host
        if host is None:
            host = self.host if self.host is not None else self.group
        return TimeMark(host, ts)

    def process(
        self, data: bytes, first_line: int, *, all_lines: bool = False
    ) -> Iterator[Event | Unparsed | TimeMark]:
        """Events (or unparsed records) of the lines in ``data``, in line order (for a
        processor without :attr:`logcheck`; :meth:`records` gives its hits too)."""
        return cast(
            Iterator[Event | Unparsed | TimeMark],
            self.records(data, first_line, all_lines=all_lines),
        )

    def records(
        self, data: bytes, first_line: int, *, all_lines: bool = False
    ) -> Iterator[Event | Unparsed | TimeMark | LogcheckHit]:
        """:meth:`process` with logcheck's hits among the events."""
        if not data:
            return
        if not self.sniffed:
            self._sniff(data)
        data, nl, n_lines = self.counted(data, first_line, newline_offsets(data))
        yield from self.counted_records(data, nl, n_lines, first_line, all_lines=all_lines)

    def counted(self, data: bytes, first_line: int, nl: IntArray) -> tuple[bytes, IntArray, int]:
        """Count the lines of ``data`` (lines, bytes, comments) and report its anomalies;
        the data to read on (NUL runs cut), its newline offsets and its number of lines."""
        import numpy as np

        n_lines = len(nl) + (0 if data.endswith(b"\n") else 1)
        self.stats.lines += n_lines
        self.stats.bytes += len(data)
        if self._scan_anomalies(data, first_line, nl):
            data, nl = cut_nul_runs(data, nl)
        # lines starting with "#" after a newline (not a lone "#" ending the data)
        after = nl[nl < len(data) - 2] + 1
        self.stats.comments += int(np.count_nonzero(np.frombuffer(data, np.uint8)[after] == 35))
        if data.startswith(b"#"):
            self.stats.comments += 1
        return data, nl, n_lines

    def counted_records(
        self,
        data: bytes,
        nl: IntArray,
        n_lines: int,
        first_line: int,
        *,
        all_lines: bool = False,
        found: IntArray | None = None,
    ) -> Iterator[Event | Unparsed | TimeMark | LogcheckHit]:
        """:meth:`records` of data already :meth:`counted` (``found``: its candidate lines,
        when the prefilter has already been asked)."""
        journal = self.format is not None and self.format.name == "journal-json"
        last_raw: bytes | None = None
        if all_lines or self.prefilter is None:
            indexes: Iterable[int] = range(n_lines)
        else:
            first_end = int(nl[0]) if len(nl) else len(data)
            mark = self._sample(data[:first_end])
            if mark is not None:
                yield mark
            last_start = (
                int(nl[-2]) + 1
                if data.endswith(b"\n") and len(nl) > 1
                else (int(nl[-1]) + 1 if len(nl) and not data.endswith(b"\n") else 0)
            )
            if last_start > 0:
                # sampled after the candidates: the year inference must see lines in order
                last_raw = data[last_start:].rstrip(b"\n")
            if found is None:
                found = self.prefilter.candidate_lines(data, nl, journal=journal)
            if self.logcheck is not None:
                yield from self._with_logcheck(data, first_line, nl, found)
                indexes = ()
            else:
                indexes = (int(i) for i in found)
        for idx in indexes:
            start = int(nl[idx - 1]) + 1 if idx > 0 else 0
            end = int(nl[idx]) if idx < len(nl) else len(data)
            raw = data[start:end]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if raw.startswith(b"#"):
                continue
            if not raw.strip():
                self.stats.blank += 1
                continue
            if len(raw) > self.max_line:
                raw = raw[: self.max_line]
            if not all_lines:
                self.stats.candidates += 1
            text = raw.decode("utf-8", "replace") if not raw.isascii() else raw.decode("ascii")
            yield self._parse(text, first_line + idx)
        if last_raw is not None:
            last_mark = self._sample(last_raw)
            if last_mark is not None:
                yield last_mark

    def _raw_line(self, data: bytes, nl: IntArray, idx: int) -> bytes | None:
        """Line ``idx`` of ``data`` as the candidate loop reads it; None for comments and
        blank lines (counted here)."""
        start = int(nl[idx - 1]) + 1 if idx > 0 else 0
        end = int(nl[idx]) if idx < len(nl) else len(data)
        raw = data[start:end]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.startswith(b"#"):
            return None
        if not raw.strip():
            self.stats.blank += 1
            return None
        return raw[: self.max_line]

    def _with_logcheck(
        self, data: bytes, first_line: int, nl: IntArray, candidates: IntArray
    ) -> Iterator[Event | Unparsed | LogcheckHit]:
        """The candidates' events and logcheck's verdicts on every line, in line order.

        Cracking and violations lines are one hit each; unexplained lines are folded in
        bulk (:func:`~pipeline.imports.logcheck.fold_lines`): the first line of each hour,
        host and program in the chunk is a hit and the last one a hit weighing the rest,
        so that detection's suppression counts every line without an event per line.
        Comments and blank lines are not judged.
        """
        from pipeline.imports.logcheck import (
            CRACKING,
            UNEXPLAINED,
            VIOLATIONS,
            fold_lines,
            hour_of,
        )

        assert self.logcheck is not None
        verdicts = self.logcheck.classify(data, nl)
        roles: dict[int, tuple[str, dict[str, str], int]] = {}
        for idx, name in zip(verdicts.cracking.tolist(), verdicts.cracking_files, strict=True):
            roles[idx] = (CRACKING, {"logcheck_file": f"cracking.d/{name}"}, 1)
        for idx, name in zip(verdicts.violations.tolist(), verdicts.violations_files, strict=True):
            roles[idx] = (VIOLATIONS, {"logcheck_file": f"violations.d/{name}"}, 1)
        fmt = self.format.name if self.format is not None and self.fold_bulk else None
        fold = fold_lines(data, nl, verdicts.unexplained, fmt)
        for idx in (*fold.firsts.tolist(), *fold.singles.tolist()):
            roles[idx] = (UNEXPLAINED, {}, 1)
        for idx, weight in zip(fold.lasts.tolist(), fold.weights.tolist(), strict=True):
            roles[idx] = (UNEXPLAINED, {}, weight)
        wanted = set(candidates.tolist())
        for idx in sorted(wanted.union(roles)):
            raw = self._raw_line(data, nl, idx)
            if raw is None:
                continue
            is_candidate = idx in wanted
            if is_candidate:
                self.stats.candidates += 1
            text = raw.decode("utf-8", "replace") if not raw.isascii() else raw.decode("ascii")
            rec = self._parse(text, first_line + idx)
            if is_candidate:
                yield rec
            role = roles.get(idx)
            if role is None:
                continue
            rule, fields, weight = role
            if isinstance(rec, Unparsed):
                host = self.host
                rec = Event(
                    None,
                    host,
                    None,
                    None,
                    None,
                    text,
                    "unknown",
                    self.display,
                    first_line + idx,
                    group=self.group if host is None else None,
                )
            if rule == UNEXPLAINED:
                fields = {"logcheck_hour": hour_of(rec.timestamp)}
                if weight != 1 or rec.repeat != 1:
                    rec = replace(rec, repeat=weight if weight != 1 else rec.repeat)
            yield LogcheckHit(rec, rule, fields)


class Copies:
    """Events a scan has already read from another rotation set.

    One event written to two files (Debian's rsyslog puts mail lines in both ``mail.log``
    and ``syslog``) is the same host (or group), time, program, pid and message in both. The
    n-th such event of a set is a copy when an earlier set had at least n of them, so a line
    repeated within one set still counts each time. Events are counted with their
    ``repeat``: rsyslog reduces repeats per file, so one file's ``message repeated 2 times``
    can stand for two lines of the other. Sets are read one after another, so the counts of
    the sets read before are kept whole while one set is read, keyed by a 64-bit hash of
    the event's identity (not the message itself), which bounds their memory.
    """

    def __init__(self) -> None:
        self._before: dict[int, int] = {}
        self._now: dict[int, int] = {}
        self._set: str | None = None

    def enter(self, name: str) -> None:
        """The records that follow come from rotation set ``name``."""
        if name == self._set:
            return
        before = self._before
        for key, n in self._now.items():
            if n > before.get(key, 0):
                before[key] = n
        self._now = {}
        self._set = name

    def fresh(self, event: Event) -> int:
        """Count ``event`` in its set; how many of its ``repeat`` events no earlier set had
        (0: all of them were copies)."""
        key = hash((event.scope, event.timestamp, event.program, event.pid, event.message))
        had = self._now.get(key, 0)
        self._now[key] = had + event.repeat
        copies = min(event.repeat, max(0, self._before.get(key, 0) - had))
        return event.repeat - copies


#: event time ``watch`` keeps an event's identity for, behind the newest time of its scope
#: in every rotation set that still has lines to read
COPY_HORIZON = timedelta(minutes=5)
#: identities ``watch`` keeps at most (the oldest first seen are forgotten beyond)
COPY_KEYS = 100_000


class LiveCopies:
    """:class:`Copies` for ``watch``, where the rotation sets are read side by side.

    An identity (a 64-bit hash, as in :class:`Copies`) is counted per set; an event is a
    copy as far as another set already had more of it than its own set had before it, so
    whichever file is read first holds the originals, live or catching up. Identities are
    kept in the order first seen and forgotten (:meth:`expire`, after each turn) once
    :data:`COPY_HORIZON` older than the time its scope has reached in every set still
    behind (one whose read stopped at the read budget; a set behind that has not reached
    the scope holds it), or, when none is behind, its scope's newest time; at most
    :data:`COPY_KEYS` are kept, the oldest first seen going first.
    """

    __slots__ = ("_behind", "_latest", "_seen", "cap", "forgotten", "horizon")

    def __init__(self, horizon: timedelta = COPY_HORIZON, cap: int = COPY_KEYS) -> None:
        self.horizon = horizon
        self.cap = cap
        #: identity -> (event time, scope, events per set)
        self._seen: dict[int, tuple[datetime | None, str | None, dict[str, int]]] = {}
        #: scope -> set -> the newest event time read from that set
        self._latest: dict[str | None, dict[str, datetime]] = {}
        self._behind: set[str] = set()
        #: identities forgotten at the cap while only one set had them
        self.forgotten = 0

    def reached(self, scope: str | None, group: str, ts: datetime) -> None:
        """Set ``group`` has read up to ``ts`` on ``scope``."""
        by_set = self._latest.get(scope)
        if by_set is None:
            self._latest[scope] = {group: ts}
            return
        had = by_set.get(group)
        if had is None or ts > had:
            by_set[group] = ts

    def behind(self, group: str, more: bool) -> None:
        """Whether ``group`` has more to read than its last read took."""
        if more:
            self._behind.add(group)
        else:
            self._behind.discard(group)

    def fresh(self, event: Event, group: str) -> int:
        """Count ``event`` in ``group``; how many of its ``repeat`` events no other set
        had before (0: all of them were copies)."""
        ts, scope = event.timestamp, event.scope
        key = hash((scope, ts, event.program, event.pid, event.message))
        if ts is not None:
            self.reached(scope, group, ts)
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = (ts, scope, {group: event.repeat})
            if len(self._seen) > self.cap:
                first = next(iter(self._seen))
                if len(self._seen.pop(first)[2]) == 1:
                    self.forgotten += 1
            return event.repeat
        counts = seen[2]
        had = counts.get(group, 0)
        counts[group] = had + event.repeat
        other = max((n for g, n in counts.items() if g != group), default=0)
        return event.repeat - min(event.repeat, max(0, other - had))

    def _floor(self, scope: str | None) -> datetime | None:
        by_set = self._latest.get(scope)
        if not by_set:
            return None
        if not self._behind:
            return max(by_set.values())
        times = []
        for group in self._behind:
            ts = by_set.get(group)
            if ts is None:  # not there yet: it may still bring copies of anything
                return None
            times.append(ts)
        return min(times)

    def expire(self) -> None:
        """Forget the identities past the horizon, oldest first seen first."""
        seen = self._seen
        floors: dict[str | None, datetime | None] = {}
        while seen:
            key = next(iter(seen))
            ts, scope, _ = seen[key]
            if scope not in floors:
                floors[scope] = self._floor(scope)
            floor = floors[scope]
            if ts is not None and (floor is None or ts >= floor - self.horizon):
                break
            del seen[key]

    def __len__(self) -> int:
        return len(self._seen)


def cut_nul_runs(data: bytes, nl: IntArray) -> tuple[bytes, IntArray]:
    """Drop each line's text up to the end of its last run of :data:`NUL_RUN` NUL bytes.

    After an unclean shutdown a log can hold a run of NULs where its last writes were lost,
    and the next record is appended right after it: that record is what the line is read
    as. Line numbers do not change (no newline is removed). Only chunks with a NUL pay.
    """
    cuts: dict[int, int] = {}  # line start -> end of its last run
    for m in _NUL_RUN.finditer(data):
        cuts[data.rfind(b"\n", 0, m.start()) + 1] = m.end()
    if not cuts:
        return data, nl
    pieces: list[bytes] = []
    pos = 0
    for start, end in cuts.items():
        pieces.append(data[pos:start])
        pos = end
    pieces.append(data[pos:])
    out = b"".join(pieces)
    return out, newline_offsets(out)


class FindingSet:
    """Findings by key, in order of first emission; an update replaces the earlier version."""

    def __init__(self) -> None:
        self._by_key: dict[str, Finding] = {}

    def add(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            self._by_key[f.key] = f

    def findings(self) -> list[Finding]:
        return list(self._by_key.values())


@dataclass
class ScanResult:
    #: a list, or a :class:`~pipeline.block.TableView` from the block path
    findings: Sequence[Finding]
    stats: ScanStats
    problems: list[Problem]
    problems_omitted: int = 0
    detection: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Part:
    """One unit of scanning work: a whole input, or a byte range of a large plain file.

    Ranges begin and end at line starts. ``index`` numbers the ranges of one input; the
    ones after the first take the format sniffed from the file's head (``sniffed``), as
    they cannot see it. A first part that resumes an input read before (``scan --state``)
    starts after its ``line`` lines read then (in the decompressed stream when compressed).
    """

    inp: InputFile
    index: int = 0
    start: int = 0
    end: int | None = None
    sniffed: str | None = None
    line: int = 0


_R = TypeVar("_R")
_P = TypeVar("_P", bound="LineProcessor")

#: a candidate event with its line-rule matches as (rule id, captured fields)
Matched: TypeAlias = tuple[Event, list[tuple[str, dict[str, str]]]]


@dataclass
class PartResult:
    """What reading one part gives detection, in line order.

    Line numbers (of events and problems) count from 1 at the part's start; the scan adds
    the lines of the input's earlier parts (:meth:`iter_records`). ``records`` may be a
    generator (parts read in this process); then ``stats`` and ``log`` are complete once
    it is exhausted. A result that travelled between processes keeps its records packed
    (``packed``) until they are read.
    """

    part: Part
    records: Iterable[Matched | TimeMark]
    stats: ScanStats
    log: ProblemLog
    packed: list[_Packed] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # compact on the wire: events as plain tuples, times as naive datetime + UTC offset
        packed = self.packed if self.packed is not None else _pack(self.records)
        return (PartResult, (self.part, (), self.stats, self.log, packed))

    def iter_records(self, line_offset: int = 0) -> Iterator[Matched | TimeMark]:
        """The records with line numbers counted from the input's start."""
        if self.packed is None:
            for rec in self.records:
                if line_offset and not isinstance(rec, TimeMark):
                    event, found = rec
                    rec = (replace(event, line=event.line + line_offset), found)
                yield rec
            return
        zones: dict[int | None, tzinfo] = {}

        def when(naive: datetime | None, off: int | None) -> datetime | None:
            if naive is None:
                return None
            tz = zones.get(off)
            if tz is None:
                tz = zones[off] = timezone(timedelta(seconds=off or 0))
            return naive.replace(tzinfo=tz)

        for t in self.packed:
            if len(t) == 3:
                ts = when(t[1], t[2])
                assert ts is not None
                yield TimeMark(t[0], ts)
                continue
            event = Event(
                when(t[0], t[1]),
                t[2],
                t[3],
                t[4],
                t[5],
                t[6],
                t[7],
                t[8],
                t[9] + line_offset,
                MappingProxyType(t[10]),
                t[11],
                t[12],
                t[14],
            )
            yield event, t[13]


_Packed: TypeAlias = tuple[Any, ...]


def _split_time(ts: datetime | None) -> tuple[datetime | None, int | None]:
    if ts is None:
        return None, None
    off = ts.utcoffset()
    return ts.replace(tzinfo=None), None if off is None else int(off.total_seconds())


def _pack(records: Iterable[Matched | TimeMark]) -> list[_Packed]:
    out: list[_Packed] = []
    for rec in records:
        if isinstance(rec, TimeMark):
            out.append((rec.host, *_split_time(rec.timestamp)))
            continue
        e, found = rec
        out.append(
            (
                *_split_time(e.timestamp),
                e.host,
                e.program,
                e.pid,
                e.level,
                e.message,
                e.format,
                e.source,
                e.line,
                dict(e.fields),
                e.year_inferred,
                e.repeat,
                found,
                e.group,
            )
        )
    return out


class Runner(Protocol):
    """Reads parts somewhere (worker processes, a Dask cluster) and gives their results
    back in the order of ``parts``."""

    #: workers that read at once (large files are cut into ranges when more than one)
    workers: int
    #: the size of those ranges
    part_size: int

    def run(self, engine: Engine, parts: Sequence[Part]) -> Iterator[PartResult]: ...


class Engine:
    """Batch scanning of inputs with one rule set (and, with ``logcheck``, logcheck's
    verdicts on every line)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        options: ScanOptions | None = None,
        *,
        logcheck: LogcheckMatcher | None = None,
    ) -> None:
        self.rules = list(rules)
        self.options = options or ScanOptions()
        self.logcheck = logcheck
        self.detector = self.new_detector()
        self.prefilter = Prefilter(self.detector.line_rules)
        #: the block path's verdict on how dense candidates are (pipeline.block.Density)
        self._density: Any = None
        self._pool: tuple[int, ThreadPoolExecutor] | None = None  # see _ahead_pool()
        self.body_fields = self.detector.needs_body_fields()
        self.tz = self.options.tz or local_zone()

    #: called after every block read: (bytes done, bytes in all inputs, lines so far)
    progress: Callable[[int, int, int], None] | None = None
    #: ``scan --state``: what earlier scans read of the inputs, skipped here
    resume: Resume | None = None
    _progress_done = 0
    _progress_total = 0

    def start_progress(self, inputs: Sequence[InputFile]) -> None:
        self._progress_done = 0
        self._progress_total = sum(_input_size(i) for i in inputs)

    def imported_rules(self) -> list[Rule]:
        """The rules imported rule sets (``--logcheck``) report their findings under."""
        if self.logcheck is None:
            return []
        from pipeline.imports.logcheck import logcheck_rules

        return logcheck_rules(self.logcheck.rules.directory)

    def new_detector(self) -> Detector:
        return Detector(self.rules, lateness=self.options.lateness, external=self.imported_rules())

    def _resolver(self, inp: InputFile) -> TimeResolver:
        if inp.mtime is not None and inp.path != STDIN:
            ref = datetime.fromtimestamp(inp.mtime, UTC)
        else:
            ref = self.options.clock()
        return TimeResolver(self.tz, ref, self.options.year)

    def _in_range(self, ts: datetime | None) -> bool:
        o = self.options
        if o.since is None and o.until is None:
            return True
        if ts is None:
            return False
        if o.since is not None and ts < o.since:
            return False
        return not (o.until is not None and ts >= o.until)

    def _before_since(
        self, inp: InputFile, stats: ScanStats, report: Callable[[Problem], None]
    ) -> bool:
        """Count the input; True (with a ``skipped`` problem) when --since rules it out."""
        o = self.options
        stats.files += 1
        if (
            o.since is not None
            and inp.mtime is not None
            and inp.path != STDIN
            and datetime.fromtimestamp(inp.mtime, UTC) < o.since
        ):
            report(Problem("skipped", Location(inp.display), "last written before --since"))
            return True
        return False

    # -- reading parts -------------------------------------------------------------------------

    def plan(self, inp: InputFile, workers: int, part_size: int = PART_SIZE) -> list[Part]:
        """The parts of one input: byte ranges of a large plain local file, else the whole;
        with :attr:`resume`, only what earlier scans did not read."""
        span = self.resume.span(inp) if self.resume is not None else None
        if span is not None and (span.done or (span.end is not None and span.end <= span.start)):
            return []
        start, line, end = (span.start, span.line, span.end) if span is not None else (0, 0, None)
        size = _input_size(inp) if end is None else end
        if (
            workers < 2
            or inp.path == STDIN
            or inp.compression is not None
            or is_url(inp.path)
            or size - start < 2 * part_size
            or self.options.format == "journal-json"
        ):
            return [Part(inp, 0, start, end, None, line)]
        try:
            starts = line_starts(inp, size, part_size, start)
            with open_input(inp) as f:
                head = f.read(1024 * 1024)
        except OSError:
            return [Part(inp, 0, start, end, None, line)]  # reading it reports the error
        name, sample = sniff_head(head, self.options.max_line)
        sniffed = self.options.format or name or ("unknown" if sample else None)
        ends: list[int | None] = [*starts[1:], end]
        return [
            Part(inp, i, first, last, None if i == 0 else sniffed, line if i == 0 else 0)
            for i, (first, last) in enumerate(zip(starts, ends, strict=True))
        ]

    def _records(
        self,
        part: Part,
        stats: ScanStats,
        report: Callable[[Problem], None],
        *,
        all_lines: bool,
        progress_lines: Callable[[], int] | None = None,
    ) -> Iterator[Event | Unparsed | TimeMark | LogcheckHit]:
        """Every event (all lines, or prefilter candidates) of one part, in line order."""
        o = self.options
        inp = part.inp
        proc = LineProcessor(
            inp.display,
            self._resolver(inp),
            None if all_lines else self.prefilter,
            report,
            stats,
            fmt=o.format,
            max_line=o.max_line,
            body_fields=all_lines or self.body_fields,
            sniffed=part.sniffed,
            host=o.host_of(inp.path),
            group=None if all_lines else rotation_set(inp.path),
            logcheck=None if all_lines else self.logcheck,
        )
        proc.fold_bulk = o.since is None and o.until is None
        for chunk in self._part_chunks(part, stats, report, progress_lines):
            yield from proc.records(chunk.data, chunk.first_line, all_lines=all_lines)

    def _part_chunks(
        self,
        part: Part,
        stats: ScanStats,
        report: Callable[[Problem], None],
        progress_lines: Callable[[], int] | None = None,
    ) -> Iterator[Chunk]:
        """The chunks of one part, with the progress reported after each."""
        o = self.options
        inp = part.inp
        try:
            stream = open_input(inp)
        except (OSError, InputError) as exc:
            text = exc.strerror if isinstance(exc, OSError) else exc.message
            report(Problem("unreadable", Location(inp.display), text or str(exc)))
            return
        try:
            first_line = part.line + 1
            if part.start and inp.compression is not None:
                stream, first_line = self._skip_read(part, stream, report)
            elif part.start:
                stream.seek(part.start)
            limit = None if part.end is None else part.end - part.start
            base = self._progress_done
            skipped = part.start if inp.compression is None else 0  # on disk
            chunks = iter_chunks(
                stream, inp.display, report, max_line=o.max_line, limit=limit, first_line=first_line
            )
            for chunk in chunks:
                yield chunk
                if self.progress is not None:
                    self._progress_done = base + raw_position(stream) - skipped
                    lines = progress_lines() if progress_lines else stats.lines
                    self.progress(self._progress_done, self._progress_total, lines)
            if part.end is not None:
                self._progress_done = base + part.end - part.start
            elif inp.mtime is not None and inp.path != STDIN:
                self._progress_done = base + _input_size(inp) - skipped
        except OSError as exc:
            report(Problem("read-error", Location(inp.display), exc.strerror or str(exc)))
        finally:
            if inp.path != STDIN:
                stream.close()

    def _skip_read(
        self, part: Part, stream: BinaryIO, report: Callable[[Problem], None]
    ) -> tuple[BinaryIO, int]:
        """A compressed input positioned after the part read by an earlier scan, and the
        number of its next line; from its start again (reported) when it is shorter."""
        inp = part.inp
        try:
            skipped = skip_prefix(stream, part.start)
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            report(
                Problem(
                    "truncated-archive",
                    Location(inp.display, part.line + 1),
                    f"damaged inside the part read by the last scan with this --state: {exc}",
                )
            )
            skipped = -1
        if skipped == part.start:
            return stream, part.line + 1
        stream.close()
        if skipped < 0:
            return io.BytesIO(), part.line + 1
        report(
            Problem(
                "state-reset",
                Location(inp.display),
                f"holds {skipped} bytes, fewer than the {part.start} the last scan with this "
                "--state read: read from its start",
            )
        )
        return open_input(inp), 1

    def iter_part(
        self,
        part: Part,
        stats: ScanStats,
        report: Callable[[Problem], None],
        progress_lines: Callable[[], int] | None = None,
    ) -> Iterator[Matched | TimeMark]:
        """The candidate events of one part with their line-rule matches, and time marks.

        Matching is stateless, so it runs here (in a worker, when parts run elsewhere);
        events outside --since/--until are counted and left out.
        """
        o = self.options
        if o.block_path and self.logcheck is None and o.since is None and o.until is None:
            yield from self._block_records(part, stats, report, progress_lines)
            return
        match = self.detector.match
        records = self._records(part, stats, report, all_lines=False, progress_lines=progress_lines)
        if self.logcheck is not None:
            yield from self._with_hits(self._in_scope(records, stats))
            return
        plain = cast(Iterable[Event | Unparsed | TimeMark], records)  # no hits without it
        for rec in self._in_scope(plain, stats):
            if isinstance(rec, Unparsed):
                continue
            if isinstance(rec, TimeMark):
                yield rec
                continue
            yield rec, [(m.rule.id, m.fields) for m in match(rec)]

    def _block_records(
        self,
        part: Part,
        stats: ScanStats,
        report: Callable[[Problem], None],
        progress_lines: Callable[[], int] | None,
    ) -> Iterator[Matched | TimeMark]:
        """:meth:`iter_part`'s records read on the block path (:class:`~pipeline.block.
        BlockRecords`): the same records, with events made only for matched lines.

        Without read-ahead: its blocks are mostly read on the line path (dense), whose
        Python work a second thread only slows down (measured: a fifth slower)."""
        proc: BlockRecords | None = None
        for chunk in self._part_chunks(part, stats, report, progress_lines):
            if proc is None:  # the block path (numpy) is imported for a first block
                from pipeline.block import BlockRecords, Density

                if self._density is None:
                    self._density = Density()
                proc = self._reader(
                    BlockRecords, part, stats, report, detector=self.detector, density=self._density
                )
            yield from proc.block_records(chunk.data, chunk.first_line)

    def _read_ahead(
        self,
        part: Part,
        stats: ScanStats,
        report: Callable[[Problem], None],
        progress_lines: Callable[[], int] | None,
        reader: Callable[[], _BlockReader],
    ) -> Iterator[tuple[Chunk, Prepared | None]]:
        """The chunks of ``part``, each with its :meth:`~pipeline.block._BlockReader.
        prepare` done on a second thread while the caller judges the chunk before it (see
        :attr:`ScanOptions.read_ahead`); else each with None.

        The next chunk is read before the caller judges this one, so the problems its
        reading reports are held and reported just before it is judged: in the order a
        scan without read-ahead reports them."""
        pool = self._ahead_pool()
        if pool is None:
            for chunk in self._part_chunks(part, stats, report, progress_lines):
                yield chunk, None
            return
        held: list[Problem] = []
        before: tuple[Chunk, list[Problem], Future[Prepared]] | None = None
        try:
            for chunk in self._part_chunks(part, stats, held.append, progress_lines):
                problems = held[:]
                held.clear()
                ahead = pool.submit(reader().prepare, chunk.data)
                if before is not None:
                    yield self._replayed(before, report)
                before = (chunk, problems, ahead)
            if before is not None:
                yield self._replayed(before, report)
                before = None
                if self.progress is not None:  # the lines of the last chunk, judged now
                    lines = progress_lines() if progress_lines else stats.lines
                    self.progress(self._progress_done, self._progress_total, lines)
        finally:
            if before is not None:  # the caller stopped early: let the thread finish
                before[2].cancel()
        for p in held:
            report(p)

    @staticmethod
    def _replayed(
        item: tuple[Chunk, list[Problem], Future[Prepared]], report: Callable[[Problem], None]
    ) -> tuple[Chunk, Prepared]:
        chunk, problems, ahead = item
        for p in problems:
            report(p)
        return chunk, ahead.result()

    def _ahead_pool(self) -> ThreadPoolExecutor | None:
        """The thread that prepares blocks ahead, or None where read-ahead is off (the
        pool is this process's: a forked worker does not use its parent's)."""
        if not self.options.read_ahead:
            return None
        if self._pool is not None and self._pool[0] == os.getpid():
            return self._pool[1]
        import multiprocessing

        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        if cores < 2 or multiprocessing.parent_process() is not None:
            return None
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="logwarden-ahead")
        self._pool = (os.getpid(), pool)
        return pool

    def _with_hits(
        self, records: Iterable[Event | Unparsed | TimeMark | LogcheckHit]
    ) -> Iterator[Matched | TimeMark]:
        """:meth:`iter_part`'s loop with logcheck's hits (kept apart: other scans do not
        pay a test per candidate for them)."""
        match = self.detector.match
        for rec in records:
            if isinstance(rec, Unparsed):
                continue
            if isinstance(rec, TimeMark):
                yield rec
            elif isinstance(rec, LogcheckHit):
                yield rec.event, [(rec.rule, dict(rec.fields))]
            else:
                yield rec, [(m.rule.id, m.fields) for m in match(rec)]

    def _in_scope(self, records: Iterable[_R], stats: ScanStats) -> Iterator[_R]:
        """``records`` without the events outside --since/--until (counted)."""
        if self.options.since is None and self.options.until is None:
            yield from records
            return
        for rec in records:
            if isinstance(rec, Event):
                if not self._in_range(rec.timestamp):
                    stats.out_of_range += 1
                    continue
            elif isinstance(rec, LogcheckHit) and not self._in_range(rec.event.timestamp):
                continue  # its line is counted when it is a candidate too, else not read
            yield rec

    def run_part(self, part: Part) -> PartResult:
        """Read one part completely (in a worker process)."""
        stats = ScanStats()
        log = ProblemLog(stats)
        with relaxed_gc():
            records = list(self.iter_part(part, stats, log))
        return PartResult(part, records, stats, log)

    def iter_input(
        self,
        inp: InputFile,
        stats: ScanStats,
        report: Callable[[Problem], None],
        *,
        all_lines: bool,
    ) -> Iterator[Event | Unparsed | TimeMark]:
        """Every event (all lines, or prefilter candidates) of one input (logcheck's hits
        are only read by :meth:`scan`)."""
        if self._before_since(inp, stats, report):
            return
        for rec in self._records(Part(inp), stats, report, all_lines=all_lines):
            if not isinstance(rec, LogcheckHit):
                yield rec

    def iter_journal_input(
        self,
        spec: JournalSpec,
        stats: ScanStats,
        report: Callable[[Problem], None],
        *,
        all_lines: bool,
    ) -> Iterator[Event | Unparsed | TimeMark]:
        """Every event (all entries, or prefilter candidates) of one journal read.

        The journal is read as ``journal-json`` lines (see :mod:`pipeline.sources.journal`);
        ``--since``/``--until`` also narrow what journalctl or libsystemd return.
        """
        o = self.options
        proc = LineProcessor(
            spec.display,
            TimeResolver(self.tz, o.clock(), o.year),
            None if all_lines else self.prefilter,
            report,
            stats,
            fmt="journal-json",
            max_line=o.max_line,
            body_fields=all_lines or self.body_fields,
        )
        stats.files += 1
        stats.formats["journal-json"] += 1
        for chunk in iter_journal(spec, report, since=o.since, until=o.until, max_line=o.max_line):
            yield from proc.process(chunk.data, chunk.first_line, all_lines=all_lines)

    def _local(self, parts: Sequence[Part], total: ScanStats) -> Iterator[PartResult]:
        """Parts read here, one after another, streaming (memory stays flat)."""
        for part in parts:
            stats = ScanStats()
            log = ProblemLog(stats)
            yield PartResult(
                part, self.iter_part(part, stats, log, _lines_of(total, stats)), stats, log
            )

    # -- scanning ------------------------------------------------------------------------------

    def scan(
        self,
        paths: Sequence[str],
        detector: Detector | None = None,
        *,
        journals: Sequence[JournalSpec] = (),
        runner: Runner | None = None,
    ) -> ScanResult:
        """Scan files, directories, globs, URLs or ``-``; raise InputError for missing paths.

        ``journals`` are systemd journal reads scanned after the paths, by the same detector.

        With ``detector``, detection continues from its state (a resumed scan) and is not
        finished at the end, so its :meth:`~Detector.snapshot` can be saved.

        With ``runner``, the inputs (large files cut into byte ranges) are read and matched
        by its workers; detection still sees every event in input order here, so the
        findings are the same as without it.
        """
        with relaxed_gc():
            return self._scan(paths, detector, journals, runner)

    def _scan(
        self,
        paths: Sequence[str],
        detector: Detector | None,
        journals: Sequence[JournalSpec],
        runner: Runner | None,
    ) -> ScanResult:
        started = time.perf_counter()
        stats = ScanStats()
        log = ProblemLog(stats)
        if self.logcheck is not None:
            for problem in self.logcheck.problems:  # patterns not used, files skipped
                log(problem)
        inputs = log.expand(paths)
        if self.resume is not None:
            inputs = self.resume.prepare(inputs, log)
        self.start_progress(inputs)
        if journals:
            check_backend()  # fail before reading anything when the journal cannot be read
        det = detector if detector is not None else self.new_detector()
        collected = FindingSet()
        workers, part_size = (runner.workers, runner.part_size) if runner else (1, PART_SIZE)
        parts: list[Part] = []
        for inp in inputs:
            if self._before_since(inp, stats, log):
                if self.resume is not None:
                    self.resume.unread(inp)
                continue
            parts.extend(self.plan(inp, workers, part_size))
        if detector is None and not journals and self.resume is None:
            blocks = self._block_scan(det, parts, stats, log, runner)
            if blocks is not None:
                stats.findings = len(blocks)
                stats.seconds = time.perf_counter() - started
                return ScanResult(blocks, stats, log.listed, log.omitted(), det.stats.as_dict())
        results = runner.run(self, parts) if runner is not None else self._local(parts, stats)
        if self.resume is not None:
            results = self.resume.track(results)
        offset = 0
        copies = Copies() if len({rotation_set(p.inp.path) for p in parts}) > 1 else None
        for res in results:
            if res.part.index == 0:
                offset = 0
                if copies is not None:
                    copies.enter(rotation_set(res.part.inp.path))
            for rec in res.iter_records(offset):
                if isinstance(rec, TimeMark):
                    collected.add(det.observe(rec.host, rec.timestamp))
                    continue
                event, found = rec
                if found and copies is not None:
                    fresh = copies.fresh(event)
                    if fresh < event.repeat:
                        stats.duplicates += event.repeat - fresh
                        if not fresh:
                            if event.timestamp is not None:
                                collected.add(det.observe(event.scope, event.timestamp))
                            continue
                        event = replace(event, repeat=fresh)
                collected.add(det.process(event, det.matched(event, found)))
            stats.merge(res.stats)
            log.merge(res.log, offset)
            offset += res.stats.lines + res.part.line
            if runner is not None and self.progress is not None:
                end = res.part.end if res.part.end is not None else _input_size(res.part.inp)
                self._progress_done += end - res.part.start
                self.progress(self._progress_done, self._progress_total, stats.lines)
        for spec in journals:
            entries = self.iter_journal_input(spec, stats, log, all_lines=False)
            for entry in self._in_scope(entries, stats):
                if isinstance(entry, Unparsed):
                    continue
                if isinstance(entry, TimeMark):
                    collected.add(det.observe(entry.host, entry.timestamp))
                    continue
                collected.add(det.process(entry))
        if detector is None:
            collected.add(det.finish())
        findings = collected.findings()
        stats.findings = len(findings)
        stats.seconds = time.perf_counter() - started
        return ScanResult(findings, stats, log.listed, log.omitted(), det.stats.as_dict())

    def _block_scan(
        self,
        det: Detector,
        parts: Sequence[Part],
        total: ScanStats,
        log: ProblemLog,
        runner: Runner | None = None,
    ) -> TableView | list[Finding] | None:
        """The findings of ``parts`` read on the block path (:mod:`pipeline.block`), or None
        when the rules, the options or the inputs need the line path."""
        o = self.options
        if not o.block_path or self.logcheck is not None or o.since is not None:
            return None
        if o.until is not None:
            return None
        if len({rotation_set(p.inp.path) for p in parts}) > 1:
            return None  # copies across rotation sets are counted on events
        if runner is None and any(p.start or p.end is not None for p in parts):
            return None
        if runner is not None and not getattr(runner, "blocks", False):
            return None  # Dask: the line path's records travel to the scanning process
        rules = det.column_rules()
        if rules is None:
            return None
        if runner is not None:
            return self._block_scan_workers(det, rules, parts, total, log, runner)
        table: FindingTable | None = None
        for part in parts:
            table = self._block_scan_part(part, det, rules, table, total, log)
        return table.view() if table is not None else []

    def _block_scan_part(
        self,
        part: Part,
        det: Detector,
        rules: list[ColumnRule],
        table: FindingTable | None,
        total: ScanStats,
        log: ProblemLog,
    ) -> FindingTable | None:
        """:meth:`_block_scan` of one part: its findings added to ``table`` (made for a
        first block: numpy and pyarrow are imported then)."""
        stats = ScanStats()
        part_log = ProblemLog(stats)
        proc: BlockProcessor | None = None

        def judge() -> BlockProcessor:
            nonlocal proc, table
            if proc is None:
                from pipeline.block import FindingTable

                if table is None:
                    table = FindingTable([c.rule for c in rules])
                proc = self._block_processor(part, stats, part_log, rules, det, table)
            return proc

        lines = _lines_of(total, stats)
        for chunk, ready in self._read_ahead(part, stats, part_log, lines, judge):
            judge().judge(chunk.data, chunk.first_line, ready)
        total.merge(stats)
        log.merge(part_log)
        return table

    def _block_scan_workers(
        self,
        det: Detector,
        rules: list[ColumnRule],
        parts: Sequence[Part],
        total: ScanStats,
        log: ProblemLog,
        runner: Runner,
    ) -> TableView:
        """:meth:`_block_scan` with the parts read, judged and keyed by ``runner``'s workers;
        the rows are numbered here, in input order, as one process numbers them."""
        from pipeline.block import FindingTable, number
        from pipeline.columns import arrow_strings

        table = FindingTable([c.rule for c in rules])
        ids = arrow_strings([c.rule.id for c in rules])
        offset = 0
        source = 0
        for res in runner.run_blocks(self, parts):  # type: ignore[attr-defined]
            if res.part.index == 0:
                offset = 0
                source = table.source_index(res.part.inp.display)
            for rows, keys in res.done:
                if offset:
                    rows.line = rows.line + offset
                rows.source[:] = source
                det.stats.matches += len(rows)
                number(det, rows, keys, ids)
                table.add(rows, keys)
            total.merge(res.stats)
            log.merge(res.log, offset)
            offset += res.stats.lines + res.part.line
            if self.progress is not None:
                end = res.part.end if res.part.end is not None else _input_size(res.part.inp)
                self._progress_done += end - res.part.start
                self.progress(self._progress_done, self._progress_total, total.lines)
        return table.view()

    def _block_processor(
        self,
        part: Part,
        stats: ScanStats,
        report: Callable[[Problem], None],
        rules: list[ColumnRule],
        det: Detector,
        table: FindingTable | None,
    ) -> BlockProcessor:
        from pipeline.block import BlockProcessor

        return self._reader(
            BlockProcessor, part, stats, report, rules=rules, detector=det, table=table
        )

    def _reader(
        self,
        kind: type[_P],
        part: Part,
        stats: ScanStats,
        report: Callable[[Problem], None],
        **extra: Any,
    ) -> _P:
        """A block path reader of ``part``'s candidates (``kind``, with ``extra``), set up
        as the line path's processor of the part is."""
        o = self.options
        inp = part.inp
        return kind(
            inp.display,
            self._resolver(inp),
            self.prefilter,
            report,
            stats,
            fmt=o.format,
            max_line=o.max_line,
            body_fields=self.body_fields,
            sniffed=part.sniffed,
            host=o.host_of(inp.path),
            group=rotation_set(inp.path),
            **extra,
        )

    def run_block_part(self, part: Part) -> BlockPart:
        """Read, judge and key one part on the block path (in a worker process)."""
        stats = ScanStats()
        log = ProblemLog(stats)
        rules = self.detector.column_rules()
        assert rules is not None
        proc = self._block_processor(part, stats, log, rules, self.detector, None)
        for chunk in self._part_chunks(part, stats, log):
            proc.judge(chunk.data, chunk.first_line)
        return BlockPart(part, proc.done, stats, log)

    def parse(
        self, paths: Sequence[str], stats: ScanStats, journals: Sequence[JournalSpec] = ()
    ) -> Iterator[Event | Unparsed]:
        """Every line of the inputs (then of the ``journals`` reads) as an event or an
        unparsed record; counts go to ``stats``."""
        log = ProblemLog(stats)
        for inp in log.expand(paths):
            for rec in self._in_scope(self.iter_input(inp, stats, log, all_lines=True), stats):
                if not isinstance(rec, TimeMark):
                    yield rec
        for spec in journals:
            entries = self.iter_journal_input(spec, stats, log, all_lines=True)
            for rec in self._in_scope(entries, stats):
                if not isinstance(rec, TimeMark):
                    yield rec


@dataclass
class BlockPart:
    """What a worker gives for one part on the block path: the keyed rows of each block
    (line numbers from 1 at the part's start, not numbered yet), counts and problems."""

    part: Part
    done: list[tuple[Any, list[str]]]
    stats: ScanStats
    log: ProblemLog


def _lines_of(total: ScanStats, part: ScanStats) -> Callable[[], int]:
    return lambda: total.lines + part.lines


def _input_size(inp: InputFile) -> int:
    if inp.path == STDIN:
        return 0
    if inp.size is not None:
        return inp.size
    return _size(inp.path)
