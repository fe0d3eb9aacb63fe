"""The bulk path of :func:`pipeline.analysis.read_events`: whole chunks to event frames.

The common syslog shapes (``syslog``, ``rfc3339``) are read by a vectorised path: the regex
of :mod:`pipeline.grammars.fastpath` run over a whole chunk with pyarrow's RE2 kernel (or,
without pyarrow, Python's ``re`` over the chunk), times built with numpy and the year and
zone rules of :mod:`pipeline.timeinfer` applied to runs of lines at once. For ``syslog``,
RE2 only says which lines match; the fixed-width timestamp is read from the bytes and the
other fields are cut with Arrow string kernels, so text stays in Arrow arrays until the
frame is built. A line the regex does not take goes through the grammar, in order, so the
frame equals the grammars' output. :class:`EventReader` drives the inputs as the engine
does and yields raw frames (plain columns, UTC times) for :mod:`pipeline.schema` to finish.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.columns import (
    DAYS_2000,
    MONTH_NAMES,
    NS,
    REPEATED,
    Lines,
    ZoneOffsets,
    block_ok,
    days_from_civil,
    resolve_run,
    syslog_envelope,
    valid_utf8,
)
from pipeline.detection.prefilter import newline_offsets
from pipeline.engine import (
    Engine,
    LineProcessor,
    ProblemLog,
    ScanOptions,
    ScanStats,
    cut_nul_runs,
)
from pipeline.errors import InputError, Location, Problem
from pipeline.grammars.base import GrammarError, Parsed
from pipeline.grammars.common import REPEATED_PREFIX, unrepeat
from pipeline.grammars.fastpath import RFC3339_LINE, SYSLOG_LINE
from pipeline.model import Event
from pipeline.schema import objects_frame as _objects_frame
from pipeline.sources.files import STDIN, InputFile, iter_chunks, open_input
from pipeline.timeinfer import local_zone

#: called after each chunk with (bytes read so far, bytes in all inputs or None)
ProgressFn = Callable[[int, int | None], None]


# -- the bulk path ---------------------------------------------------------------------------

try:  # pyarrow's RE2 kernel; without it, Python's re over the chunk
    import pyarrow as pa
    import pyarrow.compute as pc

    HAVE_PYARROW = True
except ImportError:  # pragma: no cover - exercised only without the extra
    HAVE_PYARROW = False

BULK_SYSLOG, BULK_RFC3339 = SYSLOG_LINE, RFC3339_LINE
_MONTH_NAMES = MONTH_NAMES
_BLANK = re.compile(r"[ \t\n\r\x0b\x0c]*")


def _re2(pattern: re.Pattern[str]) -> str:
    """A ``fastpath`` pattern for RE2's ``extract_regex``: anchored at both ends."""
    return "^(?:" + pattern.pattern + ")$"


# A text column of a raw frame: Arrow-backed (``large_string``) with pyarrow, otherwise a
# numpy array of objects. _finish_events turns either into the final dtypes.
Text = Any


def _text(values: Sequence[str | None]) -> Text:
    if HAVE_PYARROW:
        return pd.arrays.ArrowExtensionArray(pa.array(values, type=pa.large_string()))
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _text_of(arr: Any) -> Text:
    """An Arrow string array as a text column."""
    return pd.arrays.ArrowExtensionArray(arr)


def _same_text(value: str | None, n: int) -> Text:
    """``n`` times the same text (or missing value)."""
    if not HAVE_PYARROW:
        return np.full(n, value, dtype=object)
    if value is None:
        return _text_of(pa.nulls(n, type=pa.large_string()))
    codes = pa.array(np.zeros(n, dtype=np.int32))
    return _text_of(
        pa.DictionaryArray.from_arrays(codes, pa.array([value], type=pa.large_string())).cast(
            pa.large_string()
        )
    )


def _concat_text(a: Text, b: Text) -> Text:
    if isinstance(a, np.ndarray):
        return np.concatenate((a, b))
    return pd.concat([pd.Series(a), pd.Series(b)], ignore_index=True).array


@dataclass
class _Extracted:
    """The fast-path groups of the matched lines of a chunk, as arrays."""

    idx: np.ndarray  # line index in the chunk
    groups: dict[str, list[Any]]


@dataclass
class _Rows:
    """Year-less syslog lines of a chunk read in bulk: line indexes, date parts, envelope."""

    idx: np.ndarray
    mon: np.ndarray
    day: np.ndarray
    tod: np.ndarray  # time of day, ns
    host: Text
    program: Text
    pid: np.ndarray  # int64, 0 where missing
    has_pid: np.ndarray  # bool
    level: Text
    message: Text
    repeat: np.ndarray  # int64: events per line (rsyslog's "message repeated N times")

    def concat(self, other: _Rows) -> _Rows:
        return _Rows(
            np.concatenate((self.idx, other.idx)),
            np.concatenate((self.mon, other.mon)),
            np.concatenate((self.day, other.day)),
            np.concatenate((self.tod, other.tod)),
            _concat_text(self.host, other.host),
            _concat_text(self.program, other.program),
            np.concatenate((self.pid, other.pid)),
            np.concatenate((self.has_pid, other.has_pid)),
            _concat_text(self.level, other.level),
            _concat_text(self.message, other.message),
            np.concatenate((self.repeat, other.repeat)),
        )

    def take(self, order: np.ndarray) -> _Rows:
        return _Rows(
            self.idx[order],
            self.mon[order],
            self.day[order],
            self.tod[order],
            self.host.take(order),
            self.program.take(order),
            self.pid[order],
            self.has_pid[order],
            self.level.take(order),
            self.message.take(order),
            self.repeat[order],
        )

    def frame(self, utc_ns: np.ndarray, fmt: str, source: str, first_line: int) -> pd.DataFrame:
        n = len(self.idx)
        return pd.DataFrame(
            {
                "timestamp": pd.to_datetime(utc_ns, unit="ns", utc=True),
                "host": pd.Series(self.host),
                "program": pd.Series(self.program),
                "pid": pd.arrays.IntegerArray(self.pid, ~self.has_pid),
                "level": pd.Series(self.level),
                "message": pd.Series(self.message),
                "format": pd.Series(_same_text(fmt, n)),
                "source": pd.Series(_same_text(source, n)),
                "line": pd.Series(self.idx + first_line, dtype="int64"),
                "year_inferred": pd.Series(np.ones(n, dtype=bool)),
                "repeat": pd.Series(self.repeat, dtype="int64"),
            }
        )


def _extract(lines: list[str], pattern: re.Pattern[str], names: Sequence[str]) -> _Extracted:
    if HAVE_PYARROW:
        arr = pa.array(lines, type=pa.large_string())
        got = pc.extract_regex(arr, _re2(pattern))
        valid = np.asarray(got.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        idx = np.flatnonzero(valid)
        taken = got.filter(pa.array(valid))
        groups = {n: taken.field(n).to_pylist() for n in names}
        return _Extracted(idx, groups)
    found = [(i, m) for i, line in enumerate(lines) if (m := pattern.fullmatch(line))]
    return _Extracted(
        np.array([i for i, _ in found], dtype=np.int64),
        {n: [m[n] or "" for _, m in found] for n in names},
    )


def _ints(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=np.int64) if values else np.zeros(0, dtype=np.int64)


def _syslog_fields(lines: Lines) -> _Rows:
    """The lines the syslog fast-path regex takes, with a date and time that exist.

    With pyarrow: RE2 only answers which lines match (no captures); the date and time are
    read from their fixed columns in the bytes, and host, program, pid and message are cut
    at the first space, ``": "`` and ``[``, which is where the regex puts them (none of them
    can hold the separator before it).
    """
    if HAVE_PYARROW:
        env = syslog_envelope(lines)
        return _Rows(
            idx=env.idx,
            mon=env.mon,
            day=env.day,
            tod=env.tod,
            host=_text_of(env.host),
            program=_text_of(env.program),
            pid=env.pid,
            has_pid=env.has_pid,
            level=_same_text(None, len(env.idx)),
            message=_text_of(env.message),
            repeat=env.repeat,
        )
    names = ("mon", "day", "hh", "mm", "ss", "host", "prog", "pid", "msg")
    ex = _extract(lines.tolist(), BULK_SYSLOG, names)
    g = ex.groups
    idx = ex.idx
    mon = np.array([_MONTH_NAMES.index(m) + 1 for m in g["mon"]], dtype=np.int64)
    day = _ints([d.strip() for d in g["day"]])
    hh, mm, ss = _ints(g["hh"]), _ints(g["mm"]), _ints(g["ss"])
    ok = (day >= 1) & (hh < 24) & (mm < 60) & (ss < 60)
    if len(mon):
        ok &= day <= DAYS_2000[mon - 1]
    tod = (hh * 3600 + mm * 60 + ss) * NS
    n = int(ok.sum())
    k = np.flatnonzero(ok).tolist()
    pids = [g["pid"][i] for i in k]
    has_pid = np.array([bool(p) for p in pids], dtype=bool)
    pid = np.array([int(p) if p else 0 for p in pids], dtype=np.int64)
    host = _text([g["host"][i] for i in k])
    program = _text([g["prog"][i] for i in k])
    msgs = [g["msg"][i].strip() for i in k]
    repeat = _unrepeat_list(msgs, lines.buf)
    message = _text(msgs)
    return _Rows(
        idx=idx[ok].astype(np.int64),
        mon=mon[ok],
        day=day[ok],
        tod=tod[ok],
        host=host,
        program=program,
        pid=pid,
        has_pid=has_pid,
        level=_same_text(None, n),
        message=message,
        repeat=repeat,
    )


def _unrepeat_list(messages: list[str], chunk: bytes) -> np.ndarray:
    """rsyslog's ``message repeated N times: [ text]`` unwrapped in place, as the grammars
    do (:func:`~pipeline.grammars.common.unrepeat`); the N of each message (1 elsewhere).

    ``chunk`` holds the lines of the messages: when the prefix is nowhere in it (one
    C-level search, the common case), no message is looked at."""
    repeat = np.ones(len(messages), dtype=np.int64)
    if REPEATED not in chunk:
        return repeat
    for i, text in enumerate(messages):
        if text.startswith(REPEATED_PREFIX):
            messages[i], repeat[i] = unrepeat(text)
    return repeat


class BulkLineProcessor(LineProcessor):
    """A :class:`LineProcessor` that turns whole chunks into frames.

    Lines of the ``syslog`` and ``rfc3339`` formats that the fast-path regex takes are read
    in bulk; every other line (and every line of other formats) goes through the grammar
    exactly as :meth:`LineProcessor.process` sends it.
    """

    def __init__(self, *args: Any, zone_offsets: ZoneOffsets, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offsets = zone_offsets

    def frame(self, data: bytes, first_line: int) -> pd.DataFrame | None:
        """The events of the lines in ``data`` as a raw frame (UTC times, plain columns)."""
        if not data:
            return None
        if not self.sniffed:
            self._sniff(data)
        name = self.format.name if self.format is not None else None
        nl = newline_offsets(data)
        if name not in ("syslog", "rfc3339") or not block_ok(data, nl, self.max_line):
            return _objects_frame(
                [r for r in self.process(data, first_line, all_lines=True) if isinstance(r, Event)]
            )
        n_lines = len(nl) + (0 if data.endswith(b"\n") else 1)
        self.stats.lines += n_lines
        self.stats.bytes += len(data)
        if self._scan_anomalies(data, first_line, nl):
            data, nl = cut_nul_runs(data, nl)
        lines = Lines(valid_utf8(data))
        if name == "syslog":
            return self._syslog(lines, first_line)
        return self._rfc3339(lines, first_line)

    # -- line classes ------------------------------------------------------------------------

    def _classify(self, lines: Lines | list[str], matched: np.ndarray) -> np.ndarray:
        """0 comment or blank (counted, skipped), 1 fast path, 2 grammar, per line."""
        kind = np.full(len(lines), 2, dtype=np.int8)
        kind[matched] = 1
        for i in np.flatnonzero(kind == 2).tolist():
            line = lines[i]
            if line.startswith("#"):
                self.stats.comments += 1
                kind[i] = 0
            elif _BLANK.fullmatch(line):
                self.stats.blank += 1
                kind[i] = 0
        return kind

    def _grammar_rows(
        self, lines: Lines | list[str], idx: Iterable[int], first_line: int
    ) -> list[Event]:
        out: list[Event] = []
        for i in idx:
            rec = self._parse(lines[i], first_line + i)
            if isinstance(rec, Event):
                out.append(rec)
        return out

    # -- syslog: year-less local times --------------------------------------------------------

    def _syslog(self, lines: Lines, first_line: int) -> pd.DataFrame | None:
        fast = _syslog_fields(lines)
        kind = self._classify(lines, fast.idx)
        slow = np.flatnonzero(kind == 2)
        other = self._yearless_rows(lines, slow)
        if other is None:
            return self._syslog_in_runs(lines, first_line, fast, kind)
        rows = fast
        if len(other.idx):
            rows = fast.concat(other)
            rows = rows.take(np.argsort(rows.idx, kind="stable"))
        self.stats.parsed += len(rows.idx)
        local_ns = self._resolve_run(rows.mon, rows.day, rows.tod) if len(rows.idx) else rows.tod
        return rows.frame(self.offsets.to_utc(local_ns), "syslog", self.display, first_line)

    def _yearless_rows(self, lines: Lines, slow: np.ndarray) -> _Rows | None:
        """The grammar's reading of the lines the bulk regex left, when all are year-less
        syslog lines; None when one is not (then the chunk is read in runs)."""
        fmt = self.format
        assert fmt is not None
        parsed: list[Parsed] = []
        for i in slow.tolist():
            try:
                p = fmt.parse(lines[i])
            except GrammarError:
                return None
            if p.timestamp is None or p.timestamp.tzinfo is not None or not p.year_missing:
                return None
            parsed.append(p)
        ts = [p.timestamp for p in parsed if p.timestamp is not None]
        return _Rows(
            idx=slow.astype(np.int64),
            mon=np.array([t.month for t in ts], dtype=np.int64),
            day=np.array([t.day for t in ts], dtype=np.int64),
            tod=np.array(
                [
                    ((t.hour * 3600 + t.minute * 60 + t.second) * 1_000_000 + t.microsecond) * 1000
                    for t in ts
                ],
                dtype=np.int64,
            ),
            host=_text([p.host for p in parsed]),
            program=_text([p.program for p in parsed]),
            pid=np.array([p.pid or 0 for p in parsed], dtype=np.int64),
            has_pid=np.array([p.pid is not None for p in parsed], dtype=bool),
            level=_text([p.level for p in parsed]),
            message=_text([p.message for p in parsed]),
            repeat=np.array([p.repeat for p in parsed], dtype=np.int64),
        )

    def _syslog_in_runs(
        self, lines: Lines, first_line: int, fast: _Rows, kind: np.ndarray
    ) -> pd.DataFrame:
        """Runs of bulk lines between lines read one by one (which may be of any format),
        so that year inference sees the lines in the engine's order."""
        local_ns = np.empty(len(fast.idx), dtype=np.int64)
        events: list[Event] = []
        fast_before = np.concatenate(([0], np.cumsum(kind == 1)))
        done = 0
        for stop in [*np.flatnonzero(kind == 2).tolist(), len(lines)]:
            upto = int(fast_before[stop])
            if upto > done:
                sl = slice(done, upto)
                local_ns[sl] = self._resolve_run(fast.mon[sl], fast.day[sl], fast.tod[sl])
                done = upto
            if stop < len(lines):
                events.extend(self._grammar_rows(lines, [stop], first_line))
        self.stats.parsed += len(fast.idx)
        frame = fast.frame(self.offsets.to_utc(local_ns), "syslog", self.display, first_line)
        return _merge(frame, events)

    def _resolve_run(self, mon: np.ndarray, day: np.ndarray, tod: np.ndarray) -> np.ndarray:
        return resolve_run(self.resolver, mon, day, tod)

    # -- RFC 3339: times carry their offset ------------------------------------------------

    def _rfc3339(self, chunk: Lines, first_line: int) -> pd.DataFrame | None:
        lines = chunk.tolist()
        names = ("date", "hh", "mm", "ss", "frac", "zone", "host", "prog", "pid", "msg")
        ex = _extract(lines, BULK_RFC3339, names)
        g = ex.groups
        y = _ints([d[:4] for d in g["date"]])
        mo = _ints([d[5:7] for d in g["date"]])
        d = _ints([d[8:10] for d in g["date"]])
        hh, mm, ss, frac = _ints(g["hh"]), _ints(g["mm"]), _ints(g["ss"]), _ints(g["frac"])
        zsign = np.array([-1 if z.startswith("-") else 1 for z in g["zone"]], dtype=np.int64)
        zh = _ints([z[1:3] if z != "Z" else "0" for z in g["zone"]])
        zm = _ints([z[4:6] if z != "Z" else "0" for z in g["zone"]])
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        days_in = np.where((mo == 2) & leap, 29, DAYS_2000[np.clip(mo, 1, 12) - 1])
        days_in = np.where((mo == 2) & ~leap, 28, days_in)
        ok = (
            (y >= 1)
            & (mo >= 1)
            & (mo <= 12)
            & (d >= 1)
            & (d <= days_in)
            & (hh < 24)
            & (mm < 60)
            & (ss < 60)
            & (zh <= 23)
            & (zm <= 59)
        )
        keep = np.flatnonzero(ok)
        idx = ex.idx[keep]
        kind = self._classify(lines, idx)
        local = (
            days_from_civil(y[keep], mo[keep], d[keep]) * 86400
            + hh[keep] * 3600
            + mm[keep] * 60
            + ss[keep]
        ) * NS + frac[keep] * 1000
        utc_ns = local - zsign[keep] * (zh[keep] * 3600 + zm[keep] * 60) * NS
        k = keep.tolist()
        self.stats.parsed += len(idx)
        msgs = [g["msg"][i].strip() for i in k]
        repeat = _unrepeat_list(msgs, chunk.buf)
        fast = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(utc_ns, unit="ns", utc=True),
                "host": pd.Series([g["host"][i] for i in k], dtype=object),
                "program": pd.Series([g["prog"][i] for i in k], dtype=object),
                "pid": pd.array(
                    [int(g["pid"][i]) if g["pid"][i] else None for i in k], dtype="Int64"
                ),
                "level": pd.Series([None] * len(k), dtype=object),
                "message": pd.Series(msgs, dtype=object),
                "format": pd.Series(["rfc3339"] * len(k), dtype=object),
                "source": pd.Series([self.display] * len(k), dtype=object),
                "line": pd.Series(idx + first_line, dtype="int64"),
                "year_inferred": pd.Series(np.zeros(len(k), dtype=bool)),
                "repeat": pd.Series(repeat, dtype="int64"),
            }
        )
        return _merge(
            fast, self._grammar_rows(lines, np.flatnonzero(kind == 2).tolist(), first_line)
        )


def _merge(fast: pd.DataFrame, events: list[Event]) -> pd.DataFrame:
    if not events:
        return fast
    both = pd.concat([fast, _objects_frame(events)], ignore_index=True)
    return both.sort_values("line", kind="stable", ignore_index=True)


# -- reading inputs --------------------------------------------------------------------------


@dataclass
class EventReader:
    """Reads inputs into raw event frames, chunk by chunk (see :func:`read_events`)."""

    paths: list[str]
    options: ScanOptions
    bulk: bool = True
    progress: ProgressFn | None = None
    stats: ScanStats = field(default_factory=ScanStats)
    problems: list[Problem] = field(default_factory=list)

    def chunks(self) -> Iterator[pd.DataFrame]:
        o = self.options
        zone = o.tz or local_zone()
        offsets = ZoneOffsets(zone)
        log = ProblemLog(self.stats)
        inputs = log.expand(self.paths)
        engine = Engine([], o)
        total = _total_bytes(inputs)
        done = 0
        for inp in inputs:
            if not self.bulk:
                events = [
                    r
                    for r in engine.iter_input(inp, self.stats, log, all_lines=True)
                    if isinstance(r, Event)
                ]
                yield self._in_range(_objects_frame(events))
                continue
            if engine._before_since(inp, self.stats, log):
                continue
            proc = BulkLineProcessor(
                inp.display,
                engine._resolver(inp),
                None,
                log,
                self.stats,
                fmt=o.format,
                max_line=o.max_line,
                body_fields=False,
                zone_offsets=offsets,
            )
            try:
                stream = open_input(inp)
            except (OSError, InputError) as exc:
                text = exc.strerror if isinstance(exc, OSError) else exc.message
                log(Problem("unreadable", Location(inp.display), text or str(exc)))
                continue
            try:
                for chunk in iter_chunks(stream, inp.display, log, max_line=o.max_line):
                    got = proc.frame(chunk.data, chunk.first_line)
                    done += len(chunk.data)
                    if self.progress is not None:
                        self.progress(done, total)
                    if got is not None and len(got):
                        yield self._in_range(got)
            except OSError as exc:
                log(Problem("read-error", Location(inp.display), exc.strerror or str(exc)))
            finally:
                if inp.path != STDIN:
                    stream.close()
        self.problems = log.listed

    def _in_range(self, raw: pd.DataFrame) -> pd.DataFrame:
        o = self.options
        if o.since is None and o.until is None:
            return raw
        ts = raw["timestamp"]
        keep = ts.notna()
        if o.since is not None:
            keep &= ts >= pd.Timestamp(o.since)
        if o.until is not None:
            keep &= ts < pd.Timestamp(o.until)
        self.stats.out_of_range += int((~keep).sum())
        return raw[keep.to_numpy()]


def _total_bytes(inputs: Sequence[InputFile]) -> int | None:
    """Bytes to read, when known (plain files only: compressed sizes are not read sizes)."""
    total = 0
    for inp in inputs:
        if inp.path == STDIN or inp.compression is not None:
            return None
        try:
            total += Path(inp.path).stat().st_size
        except OSError:
            return None
    return total
