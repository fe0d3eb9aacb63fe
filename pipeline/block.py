"""The block path of a scan: syslog blocks read as columns (see docs/architecture.md).

Per block (:class:`_BlockReader`):

1. the prefilter picks the candidate lines (one pass for every literal);
2. the candidates, with the block's first and last line (their times keep the year
   inference current, as the line path samples them), are taken into one Arrow string
   array and their envelope is read in bulk (:func:`pipeline.columns.syslog_envelope`);
   lines the fast path does not take go through the grammar, in line order, as events;
3. each line rule is judged over the columns: its program selector once per distinct
   program, its RE2 regex and then its literals over the messages of the rows it selects
   (Python ``re`` for the patterns RE2 cannot take); captures are read only for the rows
   that match.

Then one of two front-ends. When every rule is a *column rule* (a line rule whose tests are
a program selector and one message regex, nothing stateful: ``Detector.column_rules()``),
:class:`BlockProcessor` keeps the findings in a :class:`FindingTable`, one row each, with
the identity (``key``, ``occurrence``) the detector gives them, written as JSON lines and
digested from the rows (:class:`TableView`); :class:`~pipeline.model.Finding` objects are
made only when something asks for them. Otherwise :class:`BlockRecords` gives the detector
the records the line path gives it, making events only for the candidates a rule matches.

A block of another format, with CR line ends or over-long lines, with few candidates, or
(for records) after a block whose candidates nearly all became events, is read on the line
path. The findings, counts and problem locations are those of the line path either way
(``tests/test_block.py`` compares both).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO, cast, overload

import numpy as np

from pipeline.columns import (
    NS,
    Envelope,
    Lines,
    ZoneOffsets,
    arrow_ints,
    arrow_mask,
    arrow_strings,
    arrow_text,
    block_ok,
    numpy_of,
    resolve_run,
    syslog_envelope,
    valid_utf8,
)
from pipeline.detection.correlate import ColumnRule, Detector
from pipeline.detection.model import Rule
from pipeline.detection.prefilter import newline_offsets
from pipeline.engine import LineProcessor, LogcheckHit, Matched, TimeMark, Unparsed
from pipeline.model import Event, Finding, Related, Severity
from pipeline.timeinfer import fixed_zone

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipeline.detection.prefilter import IntArray
    from pipeline.output.digest import DigestRow

_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_NO_FIELDS: dict[str, str] = {}
_NO_EVENT_FIELDS: MappingProxyType[str, str] = MappingProxyType({})
_log = logging.getLogger("logwarden")


# -- findings as rows -------------------------------------------------------------------------


#: the time of a finding without one
NO_TIME = -(2**63)


_strings = arrow_strings


@dataclass
class Rows:
    """Findings as columns, in order of emission: numpy arrays and Arrow strings.

    ``key`` and ``occurrence`` are filled in when the rows are numbered (``_emit``)."""

    rule: np.ndarray  # index into the table's rules
    utc: np.ndarray  # UTC nanoseconds, NO_TIME for none
    offset: np.ndarray  # UTC offset in seconds
    stamp: Any  # the time in ISO form, as datetime.isoformat() writes it; null for none
    host: Any
    program: Any
    line: np.ndarray
    message: Any
    fields: list[dict[str, str]] | None  # None: no captures at all
    counts: np.ndarray
    source: np.ndarray  # index into the table's sources
    occurrence: np.ndarray | None = None
    key: Any = None
    #: filled in by the table (:meth:`FindingTable.add`): the row's id, and its place
    #: among rows that tie in the output order (its own id, or the first id of its key)
    rid: np.ndarray | None = None
    order: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rule)

    def take(self, order: np.ndarray) -> Rows:

        at = arrow_ints(order)
        return Rows(
            self.rule[order],
            self.utc[order],
            self.offset[order],
            self.stamp.take(at),
            self.host.take(at),
            self.program.take(at),
            self.line[order],
            self.message.take(at),
            None if self.fields is None else [self.fields[i] for i in order.tolist()],
            self.counts[order],
            self.source[order],
            None if self.occurrence is None else self.occurrence[order],
            None if self.key is None else self.key.take(at),
            None if self.rid is None else self.rid[order],
            None if self.order is None else self.order[order],
        )

    @staticmethod
    def concat(parts: Sequence[Rows]) -> Rows:
        import pyarrow as pa

        def strings(name: str) -> Any:
            return pa.concat_arrays([getattr(p, name) for p in parts])

        def ints(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        fields: list[dict[str, str]] | None = None
        if any(p.fields is not None for p in parts):
            fields = []
            for p in parts:
                fields.extend(p.fields if p.fields is not None else [_NO_FIELDS] * len(p))
        numbered = all(p.key is not None for p in parts)
        kept = all(p.rid is not None for p in parts)
        return Rows(
            ints("rule"),
            ints("utc"),
            ints("offset"),
            strings("stamp"),
            strings("host"),
            strings("program"),
            ints("line"),
            strings("message"),
            fields,
            ints("counts"),
            ints("source"),
            ints("occurrence") if numbered else None,
            strings("key") if numbered else None,
            ints("rid") if kept else None,
            ints("order") if kept else None,
        )


class _EventRows:
    """Rows gathered one finding at a time (events the columns could not read)."""

    def __init__(self) -> None:
        self.rule: list[int] = []
        self.utc: list[int] = []
        self.offset: list[int] = []
        self.stamp: list[str | None] = []
        self.host: list[str | None] = []
        self.program: list[str | None] = []
        self.line: list[int] = []
        self.message: list[str] = []
        self.fields: list[dict[str, str]] = []
        self.counts: list[int] = []
        self.at: list[int] = []  # the row's place among a block's rows

    def rows(self, source: int) -> Rows:
        ints = np.asarray
        n = len(self.rule)
        return Rows(
            ints(self.rule, dtype=np.int64),
            ints(self.utc, dtype=np.int64),
            ints(self.offset, dtype=np.int64),
            _strings(self.stamp),
            _strings(self.host),
            _strings(self.program),
            ints(self.line, dtype=np.int64),
            _strings(self.message),
            self.fields if any(self.fields) else None,
            ints(self.counts, dtype=np.int64),
            np.full(n, source, dtype=np.int64),
        )


def _utc_of(ts: datetime) -> tuple[int, int]:
    """UTC nanoseconds and offset seconds of an aware time."""
    off = ts.utcoffset() or timedelta(0)
    wall = ts.replace(tzinfo=None) - _EPOCH - off
    return (wall.days * 86400 + wall.seconds) * NS + wall.microseconds * 1000, int(
        off.total_seconds()
    )


#: bytes of findings' columns held in memory before they are written to a sorted run on
#: disk (:class:`FindingTable`); None: never
HOLD_BYTES: int | None = 4 << 20
#: rows per record batch of a run on disk, and per batch of JSON lines written
BATCH_ROWS = 2048
#: how runs on disk are compressed: None, not (50 MB for the 185,262 findings of the
#: 30-rule bench case); "lz4" writes a third of that, for about 0.1 s more CPU
RUN_COMPRESSION: str | None = None


def _row_bytes(rows: Rows) -> int:
    """About what ``rows`` hold in memory."""
    strings = sum(int(a.nbytes) for a in (rows.stamp, rows.host, rows.program, rows.message))
    key = int(rows.key.nbytes) if rows.key is not None else 0
    return strings + key + 96 * len(rows) + (200 * len(rows) if rows.fields else 0)


def _key_ints(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The 80 bits of each 20-hex-digit key as (high 64 bits, low 16 bits)."""
    raw = np.frombuffer(
        bytes.fromhex("".join(keys)), dtype=np.dtype([("hi", ">u8"), ("lo", ">u2")])
    )
    return raw["hi"].astype(np.uint64), raw["lo"].astype(np.uint16)


class _KeyIndex:
    """The keys of a table's rows, for finding a key seen before: levels of (high bits,
    low bits, row id) sorted by the high bits, merged as a binary counter merges (``log
    n`` levels), 18 bytes a row instead of a Python set's hundred."""

    def __init__(self) -> None:
        self._levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def seen(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Which of the keys were added before."""
        out = np.zeros(len(hi), dtype=bool)
        if not self._levels:
            return out
        by = np.argsort(hi)  # searched in order: each search starts where the last ended
        q = hi[by]
        for h, lw, _ in self._levels:
            at = np.searchsorted(h, q)
            ok = at < len(h)
            hit = np.zeros(len(q), dtype=bool)
            hit[ok] = h[at[ok]] == q[ok]
            for j in np.flatnonzero(hit).tolist():  # the same high bits: rare but a repeat
                i = int(by[j])
                lo_match = lw[int(at[j]) : int(np.searchsorted(h, hi[i], "right"))]
                out[i] |= bool(np.any(lo_match == lo[i]))
        return out

    def latest(self, hi: int, lo: int) -> int:
        """The row id last added with this key."""
        best = -1
        for h, lw, rid in self._levels:
            a, b = np.searchsorted(h, hi), np.searchsorted(h, hi, "right")
            got = rid[a:b][lw[a:b] == lo]
            if len(got):
                best = max(best, int(got.max()))
        return best

    def add(self, hi: np.ndarray, lo: np.ndarray, rid: np.ndarray) -> None:
        # sorted by the high bits only (keys that share them are found by a scan of
        # their range); two sorted levels merge in one pass of the stable sort
        order = np.argsort(hi, kind="stable")
        self._levels.append((hi[order], lo[order], rid[order]))
        while len(self._levels) > 1 and len(self._levels[-1][0]) >= len(self._levels[-2][0]):
            b, a = self._levels.pop(), self._levels.pop()
            h, lw, r = (np.concatenate((x, y)) for x, y in zip(a, b, strict=True))
            order = np.argsort(h, kind="stable")
            self._levels.append((h[order], lw[order], r[order]))


class _Run:
    """Rows written to a file, sorted in output order (Arrow IPC)."""

    def __init__(self, path: str, first: Rows) -> None:
        self.path = path
        self.first = first  # its first row

    def batches(self) -> Iterator[Rows]:
        import pyarrow as pa
        import pyarrow.ipc

        with pa.OSFile(self.path, "rb") as f:
            reader = pyarrow.ipc.open_file(f, options=pyarrow.ipc.IpcReadOptions(use_threads=False))
            for i in range(reader.num_record_batches):
                yield _rows_of_batch(reader.get_batch(i))


_INT_COLUMNS = ("rule", "utc", "offset", "line", "counts", "source", "occurrence", "rid", "order")
_STRING_COLUMNS = ("stamp", "host", "program", "message", "key")


def _batch_of_rows(rows: Rows) -> Any:
    import pyarrow as pa

    names = [*_INT_COLUMNS, *_STRING_COLUMNS, "fields"]
    arrays = [arrow_ints(getattr(rows, n)) for n in _INT_COLUMNS]
    arrays += [getattr(rows, n) for n in _STRING_COLUMNS]
    fields = rows.fields
    arrays.append(
        _strings([_ENCODE(f) if f else None for f in fields] if fields else [None] * len(rows))
    )
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _rows_of_batch(batch: Any) -> Rows:
    def ints(name: str) -> np.ndarray:
        return numpy_of(batch.column(name)).copy()

    fields_col = batch.column("fields")
    fields = None
    if fields_col.null_count < len(fields_col):
        fields = [json.loads(f) if f is not None else _NO_FIELDS for f in fields_col.to_pylist()]
    return Rows(
        ints("rule"),
        ints("utc"),
        ints("offset"),
        batch.column("stamp"),
        batch.column("host"),
        batch.column("program"),
        ints("line"),
        batch.column("message"),
        fields,
        ints("counts"),
        ints("source"),
        ints("occurrence"),
        batch.column("key"),
        ints("rid"),
        ints("order"),
    )


def _secs(utc: np.ndarray) -> np.ndarray:
    """The sort time of rows: as ``datetime.timestamp()`` gives it (microseconds over
    10**6, as a float), -inf for none."""
    return np.where(utc == NO_TIME, -np.inf, (utc // 1000).astype(float) / 1e6)


class FindingTable:
    """Findings kept as rows, in order of first emission; a later finding with the key of
    an earlier one replaces it (its content, in the earlier one's place among rows that
    tie in the output order), as the line path's finding set does.

    Rows beyond :data:`HOLD_BYTES` are written to disk, sorted in output order, in runs
    (a temporary directory, removed with the table): the JSON lines of a sorted view of
    every row are merged from the runs in bounded memory (:meth:`TableView.write_jsonl`);
    anything else reads the rows back.

    A scan hands them on as a :class:`TableView` (:meth:`view`), which gives
    :class:`~pipeline.model.Finding` objects, made on first access.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        #: None once a run could not be written: the rows stay in memory
        self.hold: int | None = HOLD_BYTES
        self.sources: list[str] = []
        self._held: list[Rows] = []
        self._held_bytes = 0
        self._runs: list[_Run] = []
        self._dir: str | None = None
        self._count = 0  # row ids given
        self._index = _KeyIndex()
        #: rows replaced by a later row with their key
        self._dropped: set[int] = set()
        #: a replacing row's place among ties: the first row with its key (others: own id)
        self._order_of: dict[int, int] = {}
        self._alive = np.zeros(len(self.rules), dtype=np.int64)  # rows per rule
        self._rows: Rows | None = None
        self._py: dict[str, list[Any]] | None = None
        self._made: dict[int, Finding] = {}

    def source_index(self, source: str) -> int:
        self.sources.append(source)
        return len(self.sources) - 1

    def add(self, rows: Rows, keys: list[str]) -> None:
        """Append numbered rows (``key`` and ``occurrence`` filled in; ``keys`` the keys as
        Python strings)."""
        n = len(rows)
        if not n:
            return
        rid = np.arange(self._count, self._count + n, dtype=np.int64)
        self._count += n
        order = rid.copy()
        hi, lo = _key_ints(keys)
        again = self._index.seen(hi, lo)
        if again.any() or len(set(keys)) != n:
            latest: dict[str, int] = {}
            for i in np.flatnonzero(again).tolist():
                latest.setdefault(keys[i], self._index.latest(int(hi[i]), int(lo[i])))
            for i, k in enumerate(keys):
                before = latest.get(k)
                if before is not None:
                    self._dropped.add(before)
                    self._alive[int(rows.rule[i])] -= 1
                    order[i] = self._order_of.get(before, before)
                    self._order_of[int(rid[i])] = int(order[i])
                latest[k] = int(rid[i])
        self._index.add(hi, lo, rid)
        self._alive += np.bincount(rows.rule, minlength=len(self._alive))
        rows.rid, rows.order = rid, order
        self._held.append(rows)
        self._held_bytes += _row_bytes(rows)
        self._rows = self._py = None
        self._made = {}
        if self.hold is not None and self._held_bytes > self.hold:
            self._spill()

    def _sorted_held(self) -> Rows:
        """The rows held, in output order."""
        rows = Rows.concat(self._held) if len(self._held) > 1 else self._held[0]
        # names sort the same now as when every source is known: an order within a run
        rank = self._source_rank()
        assert rows.order is not None
        order = np.lexsort((rows.order, rows.line, rank[rows.source], _secs(rows.utc)))
        return rows.take(order)

    def _source_rank(self) -> np.ndarray:
        place = {n: i for i, n in enumerate(sorted(set(self.sources)))}
        return np.array([place[s] for s in self.sources] or [0], dtype=np.int64)

    def _spill(self) -> None:
        import shutil
        import tempfile
        import weakref

        import pyarrow as pa
        import pyarrow.ipc

        rows = self._sorted_held()
        try:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="logwarden-findings-")
                weakref.finalize(self, shutil.rmtree, self._dir, True)
            path = os.path.join(self._dir, f"run-{len(self._runs)}.arrow")
            options = pyarrow.ipc.IpcWriteOptions(compression=RUN_COMPRESSION, use_threads=False)
            first = _batch_of_rows(rows.take(np.arange(min(len(rows), BATCH_ROWS))))
            with (
                pa.OSFile(path, "wb") as f,
                pyarrow.ipc.new_file(f, first.schema, options=options) as w,
            ):
                w.write_batch(first)
                for start in range(BATCH_ROWS, len(rows), BATCH_ROWS):
                    at = np.arange(start, min(len(rows), start + BATCH_ROWS))
                    w.write_batch(_batch_of_rows(rows.take(at)))
        except OSError as exc:  # no room on disk: held in memory from now on
            _log.warning("findings kept in memory: cannot write them to disk: %s", exc)
            self.hold = None
            return
        self._runs.append(_Run(path, rows.take(np.arange(1))))
        self._held, self._held_bytes = [], 0

    def alive(self, floor: Severity | None = None) -> int:
        """How many rows there are (at or above ``floor``)."""
        if floor is None:
            return int(self._alive.sum())
        ok = np.array([r.severity >= floor for r in self.rules], dtype=bool)
        return int(self._alive[ok].sum()) if len(ok) else 0

    def _all_parts(self) -> Iterator[Rows]:
        for run in self._runs:
            yield from run.batches()
        yield from self._held

    @property
    def rows(self) -> Rows:
        """All rows, one per key, in order of first emission (read back from disk)."""
        if self._rows is None:
            parts = list(self._all_parts())
            if not parts:
                empty = _EventRows().rows(0)
                empty.occurrence = empty.rid = empty.order = np.zeros(0, dtype=np.int64)
                empty.key = _strings([])
                parts = [empty]
            rows = Rows.concat(parts) if len(parts) > 1 else parts[0]
            assert rows.order is not None and rows.rid is not None
            keep = np.ones(len(rows), dtype=bool)
            if self._dropped:
                keep = ~np.isin(rows.rid, np.fromiter(self._dropped, dtype=np.int64))
            kept = np.flatnonzero(keep)
            rows = rows.take(kept[np.argsort(rows.order[kept], kind="stable")])
            if not self._runs and len(rows):  # nothing on disk: keep them as one part
                self._held = [rows]
            self._rows = rows
        return self._rows

    def sorted_batches(self, floor: Severity | None = None) -> Iterator[Rows]:
        """Every row (at or above ``floor``) in output order, in batches: the runs on disk
        and the rows held merged, a batch of each run in memory at a time."""
        ok = np.array([floor is None or r.severity >= floor for r in self.rules], dtype=bool)
        dropped = np.fromiter(self._dropped, dtype=np.int64) if self._dropped else None
        rank = self._source_rank()

        def keyed(rows: Rows) -> tuple[Rows, tuple[np.ndarray, ...]]:
            assert rows.order is not None and rows.rid is not None
            keep = ok[rows.rule]
            if dropped is not None:
                keep &= ~np.isin(rows.rid, dropped)
            if not keep.all():
                rows = rows.take(np.flatnonzero(keep))
            assert rows.order is not None
            return rows, (_secs(rows.utc), rank[rows.source], rows.line, rows.order)

        def first_key(rows: Rows) -> tuple[float, int, int, int]:
            assert rows.order is not None
            utc, src = rows.utc[:1], rank[rows.source[:1]]
            return (float(_secs(utc)[0]), int(src[0]), int(rows.line[0]), int(rows.order[0]))

        # per run: the sort key of its first row (a lower bound of all of it) and batches
        runs: list[tuple[tuple[float, int, int, int], Iterator[Rows]]] = [
            (first_key(run.first), run.batches()) for run in self._runs
        ]
        held = self._sorted_held() if self._held else None
        if held is not None and len(held):
            step = range(0, len(held), BATCH_ROWS)
            batches = (held.take(np.arange(a, min(len(held), a + BATCH_ROWS))) for a in step)
            runs.append((first_key(held), batches))
        # runs not yet open, the one starting first last; a run is opened only when it may
        # hold rows before the rows open so far (runs of a time-ordered input do not
        # overlap: one is open at a time)
        pending = sorted(range(len(runs)), key=lambda i: runs[i][0], reverse=True)
        # per open run: its current batch (rows and sort keys) from where it is not yet out
        current: dict[int, tuple[Rows, tuple[np.ndarray, ...]]] = {}

        def refill(i: int) -> None:
            for rows in runs[i][1]:
                got = keyed(rows)
                if len(got[0]):
                    current[i] = got
                    return
            current.pop(i, None)

        while current or pending:
            if not current:
                refill(pending.pop())
                continue
            # every row up to the smallest of the current batches' last keys comes before
            # anything not yet read
            bound = min(
                (float(k[0][-1]), int(k[1][-1]), int(k[2][-1]), int(k[3][-1]))
                for _, k in current.values()
            )
            if pending and runs[pending[-1]][0] <= bound:
                refill(pending.pop())
                continue
            if len(current) == 1:  # one run open: its batch as it is
                ((i, (rows, _)),) = current.items()
                yield rows
                refill(i)
                continue
            pieces: list[tuple[Rows, tuple[np.ndarray, ...]]] = []
            for i in list(current):
                rows, keys = current[i]
                n = int(np.count_nonzero(_at_most(keys, bound)))
                if n == len(rows):
                    pieces.append((rows, keys))
                    refill(i)
                elif n:
                    pieces.append((rows.take(np.arange(n)), tuple(k[:n] for k in keys)))
                    rest = np.arange(n, len(rows))
                    current[i] = (rows.take(rest), tuple(k[n:] for k in keys))
            merged = Rows.concat([p[0] for p in pieces]) if len(pieces) > 1 else pieces[0][0]
            keys = tuple(np.concatenate([p[1][j] for p in pieces]) for j in range(4))
            yield merged.take(np.lexsort(keys[::-1]))

    def __len__(self) -> int:
        return self.alive()

    def view(self) -> TableView:
        """Every row, in order of first emission."""
        return TableView(self, None)

    def _columns(self) -> dict[str, list[Any]]:
        if self._py is None:
            r = self.rows
            self._py = {
                name: getattr(r, name).to_pylist()
                if hasattr(getattr(r, name), "to_pylist")
                else list(getattr(r, name))
                for name in ("stamp", "host", "program", "message", "key")
            }
        return self._py

    def timestamp(self, row: int) -> datetime | None:
        return _time_of(int(self.rows.utc[row]), int(self.rows.offset[row]))

    def finding(self, row: int) -> Finding:
        made = self._made.get(row)
        if made is not None:
            return made
        r = self.rows
        py = self._columns()
        rule = self.rules[int(r.rule[row])]
        ts = self.timestamp(row)
        source, line, message = (
            self.sources[int(r.source[row])],
            int(r.line[row]),
            py["message"][row],
        )
        assert r.occurrence is not None
        f = Finding(
            rule=rule.id,
            severity=rule.severity,
            title=rule.title,
            timestamp=ts,
            host=py["host"][row],
            program=py["program"][row],
            source=source,
            line=line,
            message=message,
            fields=MappingProxyType(dict(r.fields[row]) if r.fields is not None else {}),
            tags=rule.tags,
            count=int(r.counts[row]),
            related=(Related(source, line, ts, message[:500]),),
            occurrence=int(r.occurrence[row]),
        )
        object.__setattr__(f, "_key", py["key"][row])
        self._made[row] = f
        return f


@dataclass
class _Example:
    """What a digest row shows of its earliest finding."""

    utc: int
    offset: int
    source: str
    line: int
    message: str


def _example(t: FindingTable, rows: Rows, i: int) -> _Example:
    return _Example(
        int(rows.utc[i]),
        int(rows.offset[i]),
        t.sources[int(rows.source[i])],
        int(rows.line[i]),
        str(rows.message[i].as_py()),
    )


def _time_of(utc: int, offset: int) -> datetime | None:
    """The aware time of a row's UTC nanoseconds and offset (None for none)."""
    if utc == NO_TIME:
        return None
    zone = fixed_zone(timedelta(seconds=offset))
    return (_EPOCH_UTC + timedelta(microseconds=utc // 1000)).astimezone(zone)


def _at_most(keys: tuple[np.ndarray, ...], bound: tuple[Any, ...]) -> np.ndarray:
    """Which rows' sort keys (time, source rank, line, order) are at most ``bound``."""
    t, s, line, o = keys
    b0, b1, b2, b3 = bound
    out: np.ndarray = (t < b0) | (
        (t == b0) & ((s < b1) | ((s == b1) & ((line < b2) | ((line == b2) & (o <= b3)))))
    )
    return out


class TableView(Sequence[Finding]):
    """Some rows of a :class:`FindingTable`, in a given order: what a block-path scan
    returns as its findings (all rows, in order of emission) and what it shows.

    ``rows`` None is every row of the table: in order of emission, or with ``in_order``
    in output order (at or above ``floor``), without reading the rows back from disk
    until something asks for them one by one."""

    def __init__(
        self,
        table: FindingTable,
        rows: np.ndarray | None,
        *,
        in_order: bool = False,
        floor: Severity | None = None,
    ) -> None:
        self.table = table
        self._index = rows
        self.in_order = in_order
        self.floor = floor
        self._read: np.ndarray | None = None

    @property
    def rows(self) -> np.ndarray:
        """The rows, as indexes into the table's rows in order of first emission (for
        every row: read back from disk, once)."""
        if self._index is not None:
            return self._index
        if self._read is None:
            every = np.arange(len(self.table.rows), dtype=np.int64)
            view = TableView(self.table, every)
            if self.in_order:
                view = view.sorted_view()
            self._read = view.at_least(self.floor).rows
        return self._read

    def __len__(self) -> int:
        if self._index is None:
            return self.table.alive(self.floor)
        return len(self._index)

    @overload
    def __getitem__(self, i: int) -> Finding: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Finding]: ...
    def __getitem__(self, i: int | slice) -> Finding | Sequence[Finding]:
        if isinstance(i, slice):
            return TableView(self.table, self.rows[i])
        return self.table.finding(int(self.rows[i]))

    def __iter__(self) -> Iterator[Finding]:
        finding = self.table.finding
        for row in self.rows.tolist():
            yield finding(row)

    def sorted_view(self) -> TableView:
        """These rows in the scan's output order: by time (none first), source, line; rows
        that tie keep their order here."""
        if self._index is None:
            return TableView(self.table, None, in_order=True, floor=self.floor)
        t = self.table
        r = t.rows
        secs = _secs(r.utc[self.rows])
        rank = t._source_rank()
        src = rank[r.source[self.rows]] if len(self.rows) else self.rows
        order = np.lexsort((r.line[self.rows], src, secs))
        return TableView(t, self.rows[order].astype(np.int64))

    def at_least(self, floor: Severity | None) -> TableView:
        """The rows whose rule's severity is ``floor`` or above."""
        if floor is None:
            return self
        if self._index is None:
            above = floor if self.floor is None else max(floor, self.floor)
            return TableView(self.table, None, in_order=self.in_order, floor=above)
        if not len(self.rows):
            return self
        ok = np.array([r.severity >= floor for r in self.table.rules], dtype=bool)
        return TableView(self.table, self.rows[ok[self.table.rows.rule[self.rows]]])

    def digest_rows(self) -> list[DigestRow]:
        """:func:`pipeline.output.digest.digest` of these rows, read from the columns (the
        same groups, counts, times, examples and order, without a Finding per row), batch
        by batch (every row in output order: merged from the runs on disk)."""
        from pipeline.output.digest import DigestExample, DigestRow, ordered

        t = self.table
        # per (rule, host): [the earliest row's (utc, offset, source, line, message),
        # findings, count, earliest, latest, the latest row's (utc, offset)]
        groups: dict[tuple[int, str | None], list[Any]] = {}
        for r in self._batches(BATCH_ROWS):
            items = zip(
                r.rule.tolist(),
                r.host.to_pylist(),
                r.utc.tolist(),
                r.counts.tolist(),
                strict=True,
            )
            for i, (rule, host, ts, count) in enumerate(items):
                key = (rule, host or None)
                g = groups.get(key)
                if g is None:
                    here = (ts, int(r.offset[i]))
                    groups[key] = [(r, i), 1, count, ts, ts, here]
                    continue
                g[1] += 1
                g[2] += count
                if ts != NO_TIME and (g[3] == NO_TIME or ts < g[3]):
                    g[3], g[0] = ts, (r, i)
                if ts != NO_TIME and (g[4] == NO_TIME or ts > g[4]):
                    g[4], g[5] = ts, (ts, int(r.offset[i]))
            # before the batch goes: what the digest shows of the earliest rows in it
            for g in groups.values():
                if isinstance(g[0], tuple):
                    g[0] = _example(t, *g[0])
        out = []
        for (rule, host), (first, findings, count, _, _, latest) in groups.items():
            spec = t.rules[rule]
            out.append(
                DigestRow(
                    spec.id,
                    host,
                    spec.severity,
                    findings,
                    count,
                    _time_of(first.utc, first.offset),
                    _time_of(*latest),
                    DigestExample(first.source, first.line, first.message),
                )
            )
        return ordered(out)

    def _batches(self, batch: int) -> Iterator[Rows]:
        """These rows in batches; every row in output order is merged from the table's
        runs without reading them all back."""
        if self._index is None and self.in_order:
            yield from self.table.sorted_batches(self.floor)
            return
        every = self.table.rows
        for start in range(0, len(self.rows), batch):
            yield every.take(self.rows[start : start + batch])

    def write_jsonl(self, out: TextIO, batch: int = BATCH_ROWS) -> None:
        """The rows as JSON lines, byte for byte what ``Finding.as_dict`` gives encoded:
        assembled column by column with Arrow, in batches."""
        t = self.table
        heads = _strings(
            [
                '{"rule": '
                + _ENCODE(x.id)
                + ', "severity": '
                + _ENCODE(str(x.severity))
                + ', "title": '
                + _ENCODE(x.title)
                + ', "host": '
                for x in t.rules
            ]
        )
        tags = _strings([', "tags": ' + _ENCODE(list(x.tags)) + ', "count": ' for x in t.rules])
        sources = _strings([encode_basestring(s)[:-1] + ":" for s in t.sources])
        raw = getattr(out, "buffer", None)
        if str(getattr(out, "encoding", "")).lower().replace("-", "") != "utf8":
            raw = None
        for rows in self._batches(batch):
            text = _json_lines(rows, heads, tags, sources)
            data = text.buffers()[2]
            offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)
            chunk = memoryview(data)[
                int(offsets[text.offset]) : int(offsets[text.offset + len(text)])
            ]
            if raw is not None:
                out.flush()
                raw.write(chunk)
            else:
                out.write(bytes(chunk).decode("utf-8"))
        if raw is not None:
            raw.flush()


def _join(*parts: Any, sep: str = "") -> Any:
    """Arrow strings joined row by row (``str`` parts are the same in every row)."""
    import pyarrow.compute as pc

    args = [arrow_text(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, arrow_text(sep))


def _quoted(values: Any) -> Any:
    """JSON strings of Arrow strings (``null`` for null), as ``json`` writes them."""
    import pyarrow.compute as pc

    coded = pc.dictionary_encode(values)
    words = _strings([encode_basestring(v) for v in coded.dictionary.to_pylist()])
    out = words.take(coded.indices)
    return pc.coalesce(out, arrow_text("null")) if out.null_count else out


def _json_text(values: Any) -> Any:
    """JSON strings of Arrow strings that are mostly distinct (messages): quoted in bulk,
    escaped by ``json`` only where a character needs it."""
    import pyarrow.compute as pc

    quoted = _join('"', values, '"')
    needs = pc.match_substring_regex(values, r'[\x00-\x1f"\\]')
    rows = np.flatnonzero(numpy_of(needs))
    if not len(rows):
        return quoted
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    fixed = _strings([encode_basestring(values[int(i)].as_py()) for i in rows])
    return pc.replace_with_mask(quoted, arrow_mask(mask), fixed)


def _json_lines(r: Rows, heads: Any, tags: Any, sources: Any) -> Any:
    """One JSON line per row (``\n`` included), as an Arrow string array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    assert r.occurrence is not None and r.key is not None
    rule = arrow_ints(r.rule)
    stamp = _join('"', r.stamp, '"')
    stamp = pc.coalesce(stamp, arrow_text("null")) if stamp.null_count else stamp
    source = _join(
        sources.take(arrow_ints(r.source)), pc.cast(arrow_ints(r.line), pa.large_string()), '"'
    )
    message = _json_text(r.message)
    long = np.flatnonzero(numpy_of(pc.utf8_length(r.message)) > 500)
    related = message
    if len(long):
        mask = np.zeros(len(r), dtype=bool)
        mask[long] = True
        cut = _strings([encode_basestring(r.message[int(i)].as_py()[:500]) for i in long])
        related = pc.replace_with_mask(message, arrow_mask(mask), cut)
    if r.fields is None or not any(r.fields):
        fields: Any = "{}"
    else:
        fields = _strings([_ENCODE(f) if f else "{}" for f in r.fields])
    return _join(
        heads.take(rule),
        _quoted(r.host),
        ', "program": ',
        _quoted(r.program),
        ', "timestamp": ',
        stamp,
        ', "source": ',
        source,
        ', "message": ',
        message,
        ', "fields": ',
        fields,
        tags.take(rule),
        pc.cast(arrow_ints(r.counts), pa.large_string()),
        ', "last_seen": ',
        stamp,
        ', "related": [{"source": ',
        source,
        ', "timestamp": ',
        stamp,
        ', "message": ',
        related,
        '}], "occurrence": ',
        pc.cast(arrow_ints(r.occurrence), pa.large_string()),
        ', "key": "',
        r.key,
        '"}\n',
    )


# -- judging blocks -----------------------------------------------------------------------------


def _stamps(local_ns: np.ndarray, offset: np.ndarray) -> list[str | None]:
    """``datetime.isoformat()`` of whole-second local times with their UTC offsets."""
    if not len(local_ns):
        return []
    secs = local_ns // NS
    years = secs.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    if int(years.min()) < 1000 or int(years.max()) > 9999 or bool(np.any(local_ns % NS)):
        return [  # what numpy writes differently: years of other than four digits
            (_EPOCH + timedelta(microseconds=int(t) // 1000))
            .replace(tzinfo=fixed_zone(timedelta(seconds=int(o))))
            .isoformat()
            for t, o in zip(local_ns.tolist(), offset.tolist(), strict=True)
        ]
    wall = np.datetime_as_string(secs.astype("datetime64[s]"), unit="s").tolist()
    zones = _zone_suffixes(offset)
    if len(zones) == 1:
        (suffix,) = zones.values()
        return [w + suffix for w in wall]
    return [w + zones[o] for w, o in zip(wall, offset.tolist(), strict=True)]


def _zone_suffixes(offset: np.ndarray) -> dict[int, str]:
    """What ``isoformat()`` writes after the seconds for each UTC offset (``+01:00``)."""
    return {
        int(o): datetime(2000, 1, 1, tzinfo=fixed_zone(timedelta(seconds=int(o)))).isoformat()[19:]
        for o in np.unique(offset).tolist()
    }


def _stamp_array(local_ns: np.ndarray, offset: np.ndarray) -> Any:
    """:func:`_stamps` as an Arrow string array, built in numpy where every time has a
    four-digit year and whole seconds and every offset's suffix is as long."""
    import pyarrow as pa

    secs = local_ns // NS
    zones = _zone_suffixes(offset) if len(local_ns) else {}
    if len({len(z) for z in zones.values()}) == 1:
        years = secs.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
        if int(years.min()) >= 1000 and int(years.max()) <= 9999 and not np.any(local_ns % NS):
            wall = np.datetime_as_string(secs.astype("datetime64[s]"), unit="s").astype("S19")
            width = 19 + len(next(iter(zones.values())))
            out = np.empty((len(secs), width), dtype=np.uint8)
            out[:, :19] = np.frombuffer(wall.tobytes(), dtype=np.uint8).reshape(-1, 19)
            codes = sorted(zones)
            table = np.array([list(zones[c].encode("ascii")) for c in codes], dtype=np.uint8)
            out[:, 19:] = table[np.searchsorted(codes, offset)]
            offsets = np.arange(0, width * (len(secs) + 1), width, dtype=np.int64)
            return pa.Array.from_buffers(
                pa.large_string(), len(secs), [None, pa.py_buffer(offsets), pa.py_buffer(out)]
            )
    return _strings(_stamps(local_ns, offset))


#: candidates in a block below which it is read on the line path (columns cost about a
#: millisecond a block more than they save on so few lines)
FEW_CANDIDATES = 1000

#: the share of a block's candidates that became events above which the next block is
#: read on the line path (the columns then cost more than they save); below it, as columns
DENSE = 0.5
#: how the first block of a scan is read when nothing is known yet: on the line path
#: (dense), which measures the share for the next (and imports no pyarrow when it stays so)
UNKNOWN_IS_DENSE = True

#: prefilter literals up to which the block path finds candidates with RE2 (an alternation
#: RE2 runs as one DFA) where Hyperscan is missing or the hits are many; above it, Hyperscan
RE2_LITERALS = 256
#: a block whose candidates are more than 1 line in this many has many hits (above)
MANY_HITS = 16


def _re2_literal(literal: bytes) -> str:
    """A literal as an RE2 pattern: letters, digits and non-ASCII text as they are, every
    other ASCII character as ``\\xHH``."""
    text = literal.decode("utf-8")
    return "".join(ch if ch.isalnum() or ord(ch) > 127 else f"\\x{ord(ch):02x}" for ch in text)


@dataclass
class Prepared:
    """A block's bytes and what :meth:`_BlockReader.prepare` found in them (None: not
    looked at yet)."""

    data: bytes
    nl: IntArray
    ok: bool  # block_ok(): LF line ends, no over-long line
    cands: np.ndarray | None = None
    block: Any = None  # the block's lines as one Arrow array
    same: bool = True  # whether ``block`` holds the block's own bytes (valid UTF-8)
    sel: np.ndarray | None = None  # the rows taken: candidates, first and last line
    is_cand: np.ndarray | None = None
    env: Envelope | None = None  # of the rows taken

    def envelope(self, n_lines: int) -> None:
        """The rows to take (the candidates, with the first and the last line for their
        times, as the line path samples them) and their envelope."""
        assert self.cands is not None
        last = n_lines - 1 if n_lines > 1 else 0
        sel = np.unique(np.concatenate(([0, last], self.cands))).astype(np.int64)
        is_cand = np.zeros(len(sel), dtype=bool)
        is_cand[np.searchsorted(sel, self.cands)] = True
        self.sel, self.is_cand = sel, is_cand
        self.env = syslog_envelope(Lines.of_arrow(self.block.take(arrow_ints(sel))))


@dataclass
class _Block:
    """One block read as columns: the rows taken (``sel``: the candidates, and the first and
    last line for their times), the envelope of those the fast path read, and the events
    of the candidates it did not."""

    first_line: int
    sel: np.ndarray  # line indexes in the block
    env: Envelope  # the fast rows (indexes into sel)
    pos: np.ndarray  # sel index of each fast candidate row
    local_ns: np.ndarray  # wall-clock time of each fast candidate row
    host: Any  # of the fast candidate rows (Arrow)
    program: Any
    message: Any
    keep: np.ndarray  # which fast rows are candidates
    fast: np.ndarray  # index among the fast rows of each fast candidate row
    slow: list[tuple[int, Event]]  # (sel index, event) of candidates read by the grammar
    #: the times of the first and the last line (sel index 0 and the last one), sampled
    #: as the line path samples them: before the block's records and after them
    marks: list[tuple[int, TimeMark]]
    _py: _PyRows | None = None

    def python(self) -> _PyRows:
        """The fast candidate rows' envelope as Python values (made once, for events)."""
        if self._py is None:
            env, fast = self.env, self.fast
            pids = env.pid[fast].tolist()
            has = env.has_pid[fast].tolist()
            self._py = _PyRows(
                self.host.to_pylist(),
                self.program.to_pylist(),
                self.message.to_pylist(),
                [p if h else None for p, h in zip(pids, has, strict=True)],
                env.repeat[fast].tolist(),
                {},
            )
        return self._py


@dataclass
class _PyRows:
    host: list[str]
    program: list[str]
    message: list[str]
    pid: list[int | None]
    repeat: list[int]
    times: dict[int, datetime]


class _BlockReader(LineProcessor):
    """Reads whole blocks as columns (:meth:`_read`) and judges column rules over them
    (:meth:`_hits`); the two front-ends below turn the hits into findings or records."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offsets = ZoneOffsets(self.resolver.tz)
        self._accept: dict[str | None, np.ndarray] = {}
        self._literal_pattern: str | None = None
        #: the last block's candidates were many (over 1 in MANY_HITS lines): RE2 then
        #: finds the next block's, one pass with no Python call per hit (see _candidates)
        self._many_hits = False
        #: most candidates of the last block became events (see BlockRecords): read this
        #: one on the line path
        self._dense = False

    def prepare(self, data: bytes) -> Prepared:
        """What :meth:`_read` needs of ``data`` that depends on its bytes alone: newline
        offsets, candidates and, when the columns will read it, the candidates' envelope.
        Safe on another thread (the engine prepares the next block there while this one is
        judged); :meth:`_read` uses it only if the block's bytes stay as they are."""
        nl = newline_offsets(data)
        ready = Prepared(data, nl, block_ok(data, nl, self.max_line))
        if not ready.ok or not data:
            return ready
        if self.sniffed and (self.format is None or self.format.name != "syslog"):
            return ready
        if self._arrow_first():
            ready.block, ready.same = self._arrow(data, nl)
        ready.cands = self._candidates(data, nl, ready.block, ready.same)
        if len(ready.cands) < FEW_CANDIDATES or self._dense:
            return ready
        if ready.block is None:
            ready.block, ready.same = self._arrow(data, nl)
        n_lines = len(nl) + (0 if data.endswith(b"\n") else 1)
        ready.envelope(n_lines)
        return ready

    def _read(
        self, data: bytes, first_line: int, ready: Prepared | None = None
    ) -> _Block | Iterator[Event | Unparsed | TimeMark | LogcheckHit]:
        """The block as columns; or, when the columns cannot read it (another format, CR
        line ends, over-long lines) or it has few candidates (too few for columns to pay
        for themselves), the line path's records of it. ``ready``: :meth:`prepare` of
        ``data``, done ahead."""
        if not self.sniffed:
            self._sniff(data)
        if ready is not None and ready.data is not data:
            ready = None
        nl = newline_offsets(data) if ready is None else ready.nl
        if (
            self.format is None
            or self.format.name != "syslog"
            or not (block_ok(data, nl, self.max_line) if ready is None else ready.ok)
        ):
            return self.records(data, first_line)
        cut, nl, n_lines = self.counted(data, first_line, nl)
        if ready is None or cut is not data or ready.cands is None:
            ready = Prepared(cut, nl, True)
        data = cut
        if ready.cands is None:
            if self._arrow_first():
                ready.block, ready.same = self._arrow(data, nl)
            ready.cands = self._candidates(data, nl, ready.block, ready.same)
        cands = ready.cands
        if len(cands) < FEW_CANDIDATES or self._dense:
            return self.counted_records(data, nl, n_lines, first_line, found=cands)
        if ready.block is None:
            ready.block, ready.same = self._arrow(data, nl)
        if ready.env is None:
            ready.envelope(n_lines)
        assert ready.sel is not None and ready.is_cand is not None and ready.env is not None
        last = n_lines - 1 if n_lines > 1 else 0
        return self._columns(data, nl, first_line, ready.sel, ready.is_cand, ready.env, last)

    @staticmethod
    def _arrow(data: bytes, nl: IntArray) -> tuple[Any, bool]:
        """The block's lines as one Arrow array (invalid UTF-8 replaced, as the line path
        decodes it), and whether it holds the block's own bytes."""
        buf = valid_utf8(data)
        return Lines(buf, nl if buf is data else None).arrow(), buf is data

    def _candidates(self, data: bytes, nl: IntArray, block: Any, same_bytes: bool) -> np.ndarray:
        """The prefilter's candidate lines: Hyperscan over the bytes where it is installed
        and the last block's hits were few; else, with a few literals, one RE2 pass over
        the block's lines (an alternation of the literals, ``block``) answers per line at
        once, instead of one ``bytes.find`` per literal or a Python call per hit."""
        cands = self._found(data, nl, block, same_bytes)
        self._many_hits = len(cands) * MANY_HITS > len(nl)
        return cands

    def _arrow_first(self) -> bool:
        """Whether candidates are found over the block's lines as Arrow strings."""
        pf = self.prefilter
        return pf is not None and (not pf.use_hyperscan or self._many_hits)

    def _found(self, data: bytes, nl: IntArray, block: Any, same_bytes: bool) -> np.ndarray:
        pf = self.prefilter
        assert pf is not None
        if (
            # Hyperscan: as fast with many hits, much faster with few; with many, RE2 frees
            # the GIL for the whole pass (Hyperscan calls Python per hit), which counts
            # where the next block is prepared on a second thread
            (pf.use_hyperscan and not self._many_hits)
            or block is None
            or pf.everything
            or pf.confirmed  # rules that narrow their candidates themselves
            or not pf.literals
            or len(pf.literals) > RE2_LITERALS
            or not same_bytes
        ):
            return pf.candidate_lines(data, nl)
        if self._literal_pattern is None:
            try:
                self._literal_pattern = "|".join(_re2_literal(lit) for lit in pf.literals)
            except UnicodeDecodeError:  # a literal of raw bytes: Hyperscan reads bytes
                self._literal_pattern = ""
        if not self._literal_pattern:
            return pf.candidate_lines(data, nl)
        import pyarrow.compute as pc

        hit = pc.match_substring_regex(block, self._literal_pattern)
        return np.flatnonzero(numpy_of(hit)).astype(np.int64)

    def _columns(
        self,
        data: bytes,
        nl: IntArray,
        first_line: int,
        sel: np.ndarray,
        is_cand: np.ndarray,
        env: Envelope,
        last: int,
    ) -> _Block:
        import pyarrow.compute as pc

        is_fast = np.zeros(len(sel), dtype=bool)
        is_fast[env.idx] = True
        # times: runs of fast rows between the rows read one by one, in line order
        local_ns = np.empty(len(env.idx), dtype=np.int64)
        fast_before = np.concatenate(([0], np.cumsum(is_fast)))
        slow: list[tuple[int, Event]] = []
        sampled: dict[int, TimeMark | None] = {}
        done = 0
        for stop in [*np.flatnonzero(~is_fast).tolist(), len(sel)]:
            upto = int(fast_before[stop])
            if upto > done:
                local_ns[done:upto] = resolve_run(
                    self.resolver, env.mon[done:upto], env.day[done:upto], env.tod[done:upto]
                )
                done = upto
            if stop == len(sel):
                break
            idx = int(sel[stop])
            start = int(nl[idx - 1]) + 1 if idx > 0 else 0
            end = int(nl[idx]) if idx < len(nl) else len(data)
            raw = data[start:end]
            sample = stop == 0 or (last and stop == len(sel) - 1)
            if sample and stop == 0:  # sampled before the candidates, as the line path does
                sampled[stop] = self._sample(raw)
            if not is_cand[stop]:
                if stop:
                    sampled[stop] = self._sample(raw)
                continue
            if raw.startswith(b"#"):
                pass
            elif not raw.strip():
                self.stats.blank += 1
            else:
                self.stats.candidates += 1
                text = raw.decode("utf-8", "replace") if not raw.isascii() else raw.decode("ascii")
                rec = self._parse(text, first_line + idx)
                if not isinstance(rec, Unparsed):
                    slow.append((stop, rec))
            if sample and stop:  # and after them
                sampled[stop] = self._sample(raw)
        # the times of the first and the last line, as the line path samples them
        marks = []
        for stop in sorted({0, len(sel) - 1} if last else {0}):
            if is_fast[stop]:
                row = int(np.searchsorted(env.idx, stop))
                naive = _EPOCH + timedelta(microseconds=int(local_ns[row]) // 1000)
                marks.append((stop, TimeMark(env.host[row].as_py(), self.resolver.localize(naive))))
            elif sampled.get(stop) is not None:
                marks.append((stop, cast(TimeMark, sampled[stop])))
        keep = is_cand[env.idx]
        n_fast = int(keep.sum())
        self.stats.candidates += n_fast
        self.stats.parsed += n_fast
        mask = arrow_mask(keep)
        return _Block(
            first_line,
            sel,
            env,
            env.idx[keep],
            local_ns[keep],
            pc.filter(env.host, mask),
            pc.filter(env.program, mask),
            pc.filter(env.message, mask),
            keep,
            np.flatnonzero(keep),
            slow,
            marks,
        )

    def _accepts(self, rules: Sequence[ColumnRule], programs: list[str | None]) -> np.ndarray:
        """Per rule and distinct program: whether the rule's selector takes it."""
        out = np.zeros((len(rules), len(programs)), dtype=bool)
        for j, prog in enumerate(programs):
            got = self._accept.get(prog)
            if got is None:
                got = np.array([c.rule.select.accept_program(prog) for c in rules], dtype=bool)
                if len(self._accept) < 4096:
                    self._accept[prog] = got
            out[:, j] = got
        return out

    @staticmethod
    def _has_literal(msgs: Any, literals: tuple[str, ...]) -> np.ndarray:
        """Which of ``msgs`` hold one of ``literals``."""
        import pyarrow.compute as pc

        has = pc.match_substring(msgs, literals[0])
        for lit in literals[1:]:
            has = pc.or_(has, pc.match_substring(msgs, lit))
        return numpy_of(has)

    def _hits(
        self, block: _Block, rules: Sequence[ColumnRule]
    ) -> tuple[np.ndarray, np.ndarray, dict[tuple[int, int], dict[str, str]]]:
        """(fast candidate row, rule order) of every match, sorted, and the captures of
        rules that capture. A rule with no ``pattern`` (one only events can test) gives
        the rows its program selector and literals let through, to be tested on events."""
        import pyarrow.compute as pc

        hit_rows: list[np.ndarray] = []
        hit_rules: list[np.ndarray] = []
        captured: dict[tuple[int, int], dict[str, str]] = {}
        message = block.message
        if len(message):
            coded = pc.dictionary_encode(block.program)
            codes = numpy_of(coded.indices).astype(np.int64)
            accepts = self._accepts(rules, coded.dictionary.to_pylist())
            for k, c in enumerate(rules):
                rows = np.flatnonzero(accepts[k][codes])
                if not len(rows):
                    continue
                msgs = message.take(arrow_ints(rows))
                if c.pattern is not None and c.pattern.engine == "re2" and not c.captures:
                    rows = rows[numpy_of(pc.match_substring_regex(msgs, c.pattern.source))]
                    if c.literals and len(rows):  # as Detector.match: a literal, then the regex
                        rows = rows[self._has_literal(message.take(arrow_ints(rows)), c.literals)]
                elif c.pattern is None:  # tested on events by the caller
                    if c.literals:
                        rows = rows[self._has_literal(msgs, c.literals)]
                else:
                    search = c.pattern.search
                    lits = c.literals
                    found = []
                    for row, text in zip(rows.tolist(), msgs.to_pylist(), strict=True):
                        if lits and not any(lit in text for lit in lits):
                            continue
                        got = search(text)
                        if got is not None:
                            found.append(row)
                            if got:
                                captured[(row, c.order)] = got
                    rows = np.array(found, dtype=np.int64)
                if len(rows):
                    hit_rows.append(rows)
                    hit_rules.append(np.full(len(rows), c.order, dtype=np.int64))
        if not hit_rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, captured
        rows = np.concatenate(hit_rows)
        order_of = np.concatenate(hit_rules)
        order = np.lexsort((order_of, rows))
        return rows[order], order_of[order], captured


class BlockProcessor(_BlockReader):
    """Judges whole blocks against column rules and adds the findings to a
    :class:`FindingTable` (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        rules: list[ColumnRule],
        detector: Detector,
        table: FindingTable | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rules = rules
        self.detector = detector
        #: None in a worker: the keyed rows are kept in :attr:`done` instead
        self.table = table
        self.done: list[tuple[Rows, list[str]]] = []
        self._index = {c.rule.id: c.order for c in rules}
        self._ids = _strings([c.rule.id for c in rules])
        self._source = table.source_index(self.display) if table is not None else 0

    def judge(self, data: bytes, first_line: int, ready: Prepared | None = None) -> None:
        """Add the findings of the lines in ``data`` (lines ``first_line`` on; ``ready``:
        :meth:`prepare` of ``data``, done ahead)."""
        if not data:
            return
        block = self._read(data, first_line, ready)
        if not isinstance(block, _Block):
            self._judge_events(block)
            return
        rows, rules, captured = self._hits(block, self.rules)
        self.detector.stats.matches += len(rows)
        take = arrow_ints(rows)
        at = block.pos[rows]
        local = block.local_ns[rows]
        utc = self.offsets.to_utc(local)
        offset = (local - utc) // NS
        out = Rows(
            rules,
            utc,
            offset,
            _stamp_array(local, offset),
            block.host.take(take),
            block.program.take(take),
            first_line + block.sel[at],
            block.message.take(take),
            [captured.get(k, _NO_FIELDS) for k in zip(rows.tolist(), rules.tolist(), strict=True)]
            if captured
            else None,
            block.env.repeat[block.keep][rows],
            np.full(len(rows), self._source, dtype=np.int64),
        )
        if block.slow:
            # the events read one by one, in their places among the fast rows
            extra = _EventRows()
            for stop, event in block.slow:
                self._event_rows(event, extra, stop)
            if extra.rule:
                where = np.concatenate((at, np.asarray(extra.at, dtype=np.int64)))
                out = Rows.concat([out, extra.rows(self._source)])
                out = out.take(np.argsort(where, kind="stable"))
        self._emit(out)

    def _judge_events(self, records: Iterable[Event | Unparsed | TimeMark | LogcheckHit]) -> None:
        """A block read on the line path: its events, matched one by one."""
        rows = _EventRows()
        for rec in records:
            if isinstance(rec, Event):
                self._event_rows(rec, rows, 0)
        self._emit(rows.rows(self._source))

    def _event_rows(self, event: Event, rows: _EventRows, at: int) -> None:
        """The findings of one event as rows (as the detector's line rules give them)."""
        matches = self.detector.match(event)
        self.detector.stats.matches += len(matches)
        if not matches:
            return
        ts = event.timestamp
        utc, off = _utc_of(ts) if ts is not None else (NO_TIME, 0)
        stamp = ts.isoformat() if ts is not None else None
        for m in matches:
            rows.rule.append(self._index[m.rule.id])
            rows.utc.append(utc)
            rows.offset.append(off)
            rows.stamp.append(stamp)
            rows.host.append(event.host)
            rows.program.append(event.program)
            rows.line.append(event.line)
            rows.message.append(event.message)
            rows.fields.append(dict(m.fields))
            rows.counts.append(event.repeat)
            rows.at.append(at)

    def _emit(self, rows: Rows) -> None:
        """Key the rows, then number them and add them to the table; in a worker, keep
        them for the scanning process, which numbers them in input order."""
        if not len(rows):
            return
        keys = base_keys(rows, self._ids)
        if self.table is None:
            self.done.append((rows, keys))
            return
        number(self.detector, rows, keys, self._ids)
        self.table.add(rows, keys)


def base_keys(rows: Rows, ids: Any) -> list[str]:
    """Each row's key before numbering (:attr:`Finding.key` with occurrence 0)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    empty = arrow_text("")
    texts = _join(
        ids.take(arrow_ints(rows.rule)),
        pc.coalesce(rows.stamp, empty),
        pc.coalesce(rows.host, empty),
        pc.coalesce(rows.program, empty),
        rows.message,
        "",
        sep="\x1f",
    )
    sha = hashlib.sha256
    return [sha(t).hexdigest()[:20] for t in texts.cast(pa.large_binary()).to_pylist()]


def number(det: Detector, rows: Rows, keys: list[str], ids: Any) -> None:
    """Number the rows as the detector numbers identical findings at one time (per host,
    within one timestamp): ``occurrence``, and the keys of the repeated ones, in place.

    In bulk: a row's occurrence is how many rows before it have its key within its host's
    run of rows at one time (a host's time changing starts a new run; rows without a time
    take no part), plus, for the run a host was in when the block began, the count the
    detector kept of the key; the detector keeps each host's last run's counts."""
    import pyarrow.compute as pc

    recent_stamp, recent = det._recent_stamp, det._recent
    n = len(rows)
    occurrence = np.zeros(n, dtype=np.int64)
    timed = np.flatnonzero(numpy_of(pc.is_valid(rows.stamp))) if n else np.zeros(0, np.int64)
    if len(timed):
        host = pc.dictionary_encode(rows.host, null_encoding="encode")
        stamp = pc.dictionary_encode(rows.stamp)
        hosts, stamps = host.dictionary.to_pylist(), stamp.dictionary.to_pylist()
        host_of = numpy_of(host.indices)[timed]
        stamp_of = numpy_of(stamp.indices)[timed]
        by_host = np.argsort(host_of, kind="stable")  # each host's rows, in order
        h, st = host_of[by_host], stamp_of[by_host]
        first = np.ones(len(h), dtype=bool)
        first[1:] = h[1:] != h[:-1]  # a host's first row here
        starts = first.copy()
        starts[1:] |= st[1:] != st[:-1]  # a run at one time starts
        # a host whose first row here has the time it had before goes on with that run
        goes_on = np.zeros(len(h), dtype=bool)
        for at in np.flatnonzero(first).tolist():
            name = hosts[int(h[at])]
            if name in recent and recent_stamp.get(name) == stamps[int(st[at])]:
                goes_on[at] = True
        run = np.cumsum(starts)  # per row (host order): its run
        hi, lo = _key_ints([keys[i] for i in timed[by_host].tolist()])
        # within a run, the rows of one key, in order: the k-th has occurrence k
        order = np.lexsort((np.arange(len(h)), lo, hi, run))
        r, kh, kl = run[order], hi[order], lo[order]
        new_group = np.ones(len(order), dtype=bool)
        new_group[1:] = (r[1:] != r[:-1]) | (kh[1:] != kh[:-1]) | (kl[1:] != kl[:-1])
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
        count = np.empty(len(order), dtype=np.int64)
        count[order] = np.arange(len(order)) - group_start  # per row (host order)
        # the runs that go on: add what the detector counted of each key before
        carried = set(run[goes_on].tolist())
        row_of = timed[by_host]
        if carried:
            for j in np.flatnonzero(np.isin(run, list(carried))).tolist():
                seen = recent[hosts[int(h[j])]]
                count[j] += seen.get(keys[int(row_of[j])], 0)
        occurrence[row_of] = count
        # the detector keeps each host's last run: the count after its last row per key
        last = np.ones(len(h), dtype=bool)
        last[:-1] = h[:-1] != h[1:]
        run_start = np.flatnonzero(starts)  # runs are contiguous in host order
        for end in np.flatnonzero(last).tolist():
            name = hosts[int(h[end])]
            mine = range(int(run_start[run[end] - 1]), end + 1)
            if run[end] in carried:
                seen = recent[name]
            else:
                recent_stamp[name] = stamps[int(st[end])]
                seen = recent[name] = {}
            for j in mine:
                seen[keys[int(row_of[j])]] = int(count[j]) + 1
        for i in np.flatnonzero(occurrence).tolist():
            got = int(occurrence[i])
            text = "\x1f".join(
                (
                    ids[int(rows.rule[i])].as_py(),
                    rows.stamp[i].as_py(),
                    rows.host[i].as_py() or "",
                    rows.program[i].as_py() or "",
                    rows.message[i].as_py(),
                    "",
                )
            )
            keys[i] = hashlib.sha256((text + str(got)).encode()).hexdigest()[:20]
    rows.occurrence = occurrence
    rows.key = _strings(keys)


def _on_rows(
    verdict: Callable[[int], dict[str, str] | None], rows: np.ndarray
) -> Callable[[int], dict[str, str] | None]:
    """``verdict`` (over the elements of ``rows``) called with a block row."""
    place = {row: k for k, row in enumerate(rows.tolist())}
    return lambda row: verdict(place[row])


@dataclass
class Density:
    """Whether the block read last had most of its candidates become events (None: no
    block read yet)."""

    dense: bool | None = None


class BlockRecords(_BlockReader):
    """Reads whole blocks as columns for the detector: the records the line path gives
    :meth:`Engine._scan <pipeline.engine.Engine>` (an event with its line-rule matches, or
    a time mark), in the same order, with the same matches.

    Each line rule is judged over the columns (its program selector, literals and message
    regex); a rule that tests more than that is tested on the events of the rows its
    program and literals let through. An event is made only for a candidate some rule
    matches; a candidate nothing matches only moves time on (a :class:`TimeMark` of its
    host and time, as the detector takes an event without matches).
    """

    def __init__(
        self, *args: Any, detector: Detector, density: Density | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.detector = detector
        #: shared by the parts one process reads, so a part starts from what the last
        #: one found (a worker reads many short parts of the same kind of input)
        self.density = density if density is not None else Density()
        known = self.density.dense
        self._dense = UNKNOWN_IS_DENSE if known is None else known
        self.rules = [
            ColumnRule(
                rule,
                i,
                pattern if pattern is not None and pattern.engine in ("re2", "re") else None,
                tuple(rule.message_literals),
                bool(pattern.group_names) if pattern is not None else False,
            )
            for i, rule in enumerate(detector.line_rules)
            for pattern in (rule.message_search(),)
        ]

    def block_records(self, data: bytes, first_line: int) -> Iterator[Matched | TimeMark]:
        """The records of the lines in ``data`` (lines ``first_line`` on)."""
        if not data:
            return
        match = self.detector.match
        block = self._read(data, first_line)
        if not isinstance(block, _Block):
            events = matched = 0
            for rec in block:
                if isinstance(rec, Event):
                    found = [(m.rule.id, m.fields) for m in match(rec)]
                    events += 1
                    matched += bool(found)
                    yield rec, found
                elif isinstance(rec, TimeMark):
                    yield rec
            self._dense = matched > DENSE * max(1, events)
            self.density.dense = self._dense
            return
        marks = block.marks
        if marks and marks[0][0] == 0:
            yield marks[0][1]
        rows, orders, captured = self._hits(block, self.rules)
        # per row, its rules in rule order; a rule only an event can test is tested when
        # its row comes, in line order (a condition may keep state from line to line)
        todo: dict[int, list[int]] = {}
        for row, order in zip(rows.tolist(), orders.tolist(), strict=True):
            todo.setdefault(row, []).append(order)
        judged = self._judged(block, rows, orders)
        made = 0
        # in line order: every fast candidate (an event with its matches, else its time),
        # and the candidates the grammar read
        slow = block.slow
        slow_at = 0
        hosts = block.python().host
        local_ns = block.local_ns
        times = block.python().times
        last: tuple[str | None, int] | None = None
        for row, where in enumerate(block.pos.tolist()):
            while slow_at < len(slow) and slow[slow_at][0] < where:
                event = slow[slow_at][1]
                yield event, [(m.rule.id, m.fields) for m in match(event)]
                slow_at += 1
                last = None
            pending = todo.get(row)
            if pending is not None:
                # made when a rule needs it or matches (a body grammar may report a
                # problem: then for every pending row, as the line path parses it)
                made_event = self._event(block, row) if self.body_fields else None
                hits = []
                for order in pending:
                    c = self.rules[order]
                    if c.pattern is not None:
                        hits.append((c.rule.id, captured.get((row, order), {})))
                        continue
                    verdict = judged.get(order)
                    if verdict is not None:
                        got = verdict(row)
                    else:
                        if made_event is None:
                            made_event = self._event(block, row)
                        got = c.rule.evaluate_rest(made_event)
                    if got is not None:
                        hits.append((c.rule.id, got))
                made += made_event is not None or bool(hits)  # the events this block made
                if hits:
                    yield (made_event if made_event is not None else self._event(block, row)), hits
                    last = None
                    continue
            host, t = hosts[row], int(local_ns[row])
            if last == (host, t):
                continue  # the same time again on the same host: nothing moves
            last = (host, t)
            ts = times.get(t)
            if ts is None:
                ts = times[t] = self.resolver.localize(_EPOCH + timedelta(microseconds=t // 1000))
            yield TimeMark(host, ts)
        for _, event in slow[slow_at:]:
            yield event, [(m.rule.id, m.fields) for m in match(event)]
        if marks and marks[-1][0] != 0:
            yield marks[-1][1]
        self._dense = made + len(slow) > DENSE * max(1, len(block.pos) + len(slow))
        self.density.dense = self._dense

    def _judged(
        self, block: _Block, rows: np.ndarray, orders: np.ndarray
    ) -> dict[int, Callable[[int], dict[str, str] | None]]:
        """Per rule order, the verdicts of a rule whose one condition judges a block's rows
        at once (``judge_rows``, e.g. a fail2ban filter's), over the rows it selects."""
        out: dict[int, Callable[[int], dict[str, str] | None]] = {}
        for c in self.rules:
            rule = c.rule
            sel = rule.select
            if c.pattern is not None or len(rule.conditions) != 1:
                continue
            judge = getattr(rule.conditions[0], "judge_rows", None)
            if judge is None or sel.format or sel.host or sel.level:
                continue
            mine = rows[orders == c.order]
            if not len(mine):
                continue
            env, fast = block.env, block.fast
            every = len(mine) == len(block.message)  # the rule takes every row
            at = None if every else arrow_ints(mine)

            def cols(values: Any, at: Any = at) -> Any:
                return values if at is None else values.take(at)

            verdict = judge(
                cols(block.host),
                cols(block.program),
                env.pid[fast][mine],
                env.has_pid[fast][mine],
                env.repeat[fast][mine],
                cols(block.message),
            )
            if verdict is not None:
                out[c.order] = verdict if every else _on_rows(verdict, mine)
        return out

    def _event(self, block: _Block, row: int) -> Event:
        """The event of fast candidate row ``row``, as the grammar's fast path gives it."""
        py = block.python()
        at = int(block.pos[row])
        line_no = block.first_line + int(block.sel[at])
        message, program = py.message[row], py.program[row]
        t = int(block.local_ns[row])
        ts = py.times.get(t)
        if ts is None:
            ts = py.times[t] = self.resolver.localize(_EPOCH + timedelta(microseconds=t // 1000))
        fields: Any = _NO_EVENT_FIELDS
        if message and self.body_fields:
            got = self.with_body({}, program, message, line_no)
            fields = MappingProxyType(got) if got else _NO_EVENT_FIELDS
        return Event(
            ts,
            py.host[row],
            program,
            py.pid[row],
            None,
            message,
            "syslog",
            self.display,
            line_no,
            fields,
            True,
            py.repeat[row],
            None,
        )
