"""The block path of a scan: candidate lines judged as columns, findings kept as columns.

When every rule of a scan is a *column rule* (a line rule that reports each matching line:
a program selector and one message regex, nothing stateful), the lines of each block are
not turned into :class:`~pipeline.model.Event` objects at all:

1. the prefilter picks the candidate lines of the block (one pass for every literal);
2. the candidates, with the block's first and last line (their times keep the year
   inference current, as the line path samples them), are taken into one Arrow string
   array and their envelope is read in bulk (:func:`pipeline.columns.syslog_envelope`);
   lines the fast path does not take go through the grammar, in line order, as events;
3. each rule is judged over the columns: its program selector once per distinct program,
   its literals and its RE2 regex over the messages of the rows it selects (Python ``re``
   for the patterns RE2 cannot take); captures are read only for the rows that match;
4. findings are kept in a :class:`FindingTable`, one row each, with the identity
   (``key``, ``occurrence``) the detector gives them, and written as JSON lines from the
   rows (:meth:`TableView.write_jsonl`); :class:`~pipeline.model.Finding` objects are made
   only when something asks for them.

The findings, counts and problem locations are those of the line path (tests compare
both on the samples, the corpora and generated lines). A scan with any other kind of rule
(correlations, suppression, enrichment, other selectors or conditions), with
``--since``/``--until``, ``--state``, workers, journals, logcheck or several rotation sets
takes the line path; so does a block of another format, or one with CR line ends or
over-long lines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO, overload

import numpy as np

from pipeline.columns import NS, Lines, ZoneOffsets, resolve_run, syslog_envelope
from pipeline.detection.correlate import Detector
from pipeline.detection.model import Rule
from pipeline.detection.patterns import CompiledPattern
from pipeline.detection.prefilter import newline_offsets
from pipeline.engine import LineProcessor, Unparsed, cut_nul_runs
from pipeline.model import Event, Finding, Related, Severity
from pipeline.timeinfer import fixed_zone

if TYPE_CHECKING:
    from pipeline.detection.prefilter import IntArray

_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_NO_FIELDS: dict[str, str] = {}


@dataclass(frozen=True)
class ColumnRule:
    """A line rule judged over columns: which programs it takes, its literals and regex."""

    rule: Rule
    order: int
    pattern: CompiledPattern
    literals: tuple[str, ...]
    captures: bool


def column_rules(detector: Detector) -> list[ColumnRule] | None:
    """The detector's rules as column rules, or None when one of them needs events
    (anything stateful, or a selector or condition other than program and message)."""
    if detector.states or detector.suppressors or detector.tables or detector.external:
        return None
    out: list[ColumnRule] = []
    for rule in detector.rules:
        if rule.kind != "line":
            return None
        pattern = rule.message_search()
        if pattern is None or pattern.engine not in ("re2", "re"):
            return None
        if not rule.report:
            continue  # reports nothing, feeds nothing (no correlations here)
        out.append(
            ColumnRule(
                rule,
                len(out),
                pattern,
                tuple(rule.message_literals),
                bool(pattern.group_names),
            )
        )
    return out


# -- findings as rows -------------------------------------------------------------------------


#: the time of a finding without one
NO_TIME = -(2**63)


@dataclass
class Rows:
    """Findings of one block as columns, in order of emission (before numbering)."""

    rule: list[int]
    utc: list[int]  # UTC nanoseconds, NO_TIME for none
    offset: list[int]  # UTC offset in seconds
    stamp: list[str | None]  # the time in ISO form, as ``datetime.isoformat`` gives it
    host: list[str | None]
    program: list[str | None]
    line: list[int]
    message: list[str]
    fields: list[dict[str, str]]
    counts: list[int]

    @classmethod
    def empty(cls) -> Rows:
        return cls([], [], [], [], [], [], [], [], [], [])

    def extend(self, other: Rows) -> None:
        for name in _ROW_COLUMNS:
            getattr(self, name).extend(getattr(other, name))

    def take(self, order: list[int]) -> Rows:
        return Rows(*([getattr(self, n)[i] for i in order] for n in _ROW_COLUMNS))


_ROW_COLUMNS = (
    "rule",
    "utc",
    "offset",
    "stamp",
    "host",
    "program",
    "line",
    "message",
    "fields",
    "counts",
)


def _utc_of(ts: datetime) -> tuple[int, int]:
    """UTC nanoseconds and offset seconds of an aware time."""
    off = ts.utcoffset() or timedelta(0)
    wall = ts.replace(tzinfo=None) - _EPOCH - off
    return (wall.days * 86400 + wall.seconds) * NS + wall.microseconds * 1000, int(
        off.total_seconds()
    )


class FindingTable(Sequence[Finding]):
    """Findings kept as rows, in order of first emission; a later finding with the key of
    an earlier one replaces it in place (as the line path's finding set does).

    As a sequence it gives :class:`~pipeline.model.Finding` objects, made on first access.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.rows = Rows.empty()
        self.source: list[str] = []
        self.occurrence: list[int] = []
        self.key: list[str] = []
        self._row_of: dict[str, int] = {}
        self._made: dict[int, Finding] = {}

    def add(self, rows: Rows, source: str, occurrence: list[int], keys: list[str]) -> None:
        """Append numbered rows (``keys`` and ``occurrence`` as the detector gives them)."""
        row_of = self._row_of
        start = len(self.key)
        again = [i for i, k in enumerate(keys) if k in row_of]
        if not again and len(set(keys)) == len(keys):
            row_of.update(zip(keys, range(start, start + len(keys)), strict=True))
            self.rows.extend(rows)
            self.source.extend([source] * len(keys))
            self.occurrence.extend(occurrence)
            self.key.extend(keys)
            return
        for i, key in enumerate(keys):  # a key seen before: the later finding replaces it
            one = rows.take([i])
            row = row_of.get(key)
            if row is None:
                row_of[key] = len(self.key)
                self.rows.extend(one)
                self.source.append(source)
                self.occurrence.append(occurrence[i])
                self.key.append(key)
                continue
            self._made.pop(row, None)
            for name in _ROW_COLUMNS:
                getattr(self.rows, name)[row] = getattr(one, name)[0]
            self.source[row] = source
            self.occurrence[row] = occurrence[i]

    def __len__(self) -> int:
        return len(self.key)

    @overload
    def __getitem__(self, i: int) -> Finding: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Finding]: ...
    def __getitem__(self, i: int | slice) -> Finding | Sequence[Finding]:
        if isinstance(i, slice):
            return [self.finding(r) for r in range(len(self))[i]]
        return self.finding(range(len(self))[i])

    def __iter__(self) -> Iterator[Finding]:
        for row in range(len(self)):
            yield self.finding(row)

    def timestamp(self, row: int) -> datetime | None:
        utc = self.rows.utc[row]
        if utc == NO_TIME:
            return None
        zone = fixed_zone(timedelta(seconds=self.rows.offset[row]))
        return (_EPOCH_UTC + timedelta(microseconds=utc // 1000)).astimezone(zone)

    def finding(self, row: int) -> Finding:
        made = self._made.get(row)
        if made is not None:
            return made
        r = self.rows
        rule = self.rules[r.rule[row]]
        ts = self.timestamp(row)
        source, line, message = self.source[row], r.line[row], r.message[row]
        f = Finding(
            rule=rule.id,
            severity=rule.severity,
            title=rule.title,
            timestamp=ts,
            host=r.host[row],
            program=r.program[row],
            source=source,
            line=line,
            message=message,
            fields=MappingProxyType(dict(r.fields[row])),
            tags=rule.tags,
            count=r.counts[row],
            related=(Related(source, line, ts, message[:500]),),
            occurrence=self.occurrence[row],
        )
        object.__setattr__(f, "_key", self.key[row])
        self._made[row] = f
        return f

    def sorted_view(self) -> TableView:
        """The rows in the scan's output order: by time (none first), source, line; rows
        that tie keep their order of emission."""
        if not len(self):
            return TableView(self, np.zeros(0, dtype=np.int64))
        utc = np.array(self.rows.utc, dtype=np.int64)
        # as datetime.timestamp() gives it: microseconds over 10**6, as a float
        secs = np.where(utc == NO_TIME, -np.inf, (utc // 1000).astype(float) / 1e6)
        names = sorted(set(self.source))
        rank = {s: i for i, s in enumerate(names)}
        src = np.array([rank[s] for s in self.source], dtype=np.int64)
        lines = np.array(self.rows.line, dtype=np.int64)
        order = np.lexsort((lines, src, secs))
        return TableView(self, order.astype(np.int64))


class TableView(Sequence[Finding]):
    """Some rows of a :class:`FindingTable`, in a given order (what a scan shows)."""

    def __init__(self, table: FindingTable, rows: np.ndarray) -> None:
        self.table = table
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

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

    def at_least(self, floor: Severity | None) -> TableView:
        """The rows whose rule's severity is ``floor`` or above."""
        if floor is None:
            return self
        ok = np.array([r.severity >= floor for r in self.table.rules], dtype=bool)
        if not len(self.rows):
            return self
        rule = np.asarray(self.table.rows.rule, dtype=np.int64)[self.rows]
        return TableView(self.table, self.rows[ok[rule]])

    def write_jsonl(self, out: TextIO, batch: int = 4096) -> None:
        """The rows as JSON lines, byte for byte what ``Finding.as_dict`` gives encoded."""
        t = self.table
        r = t.rows
        heads = [
            '{"rule": '
            + _ENCODE(x.id)
            + ', "severity": '
            + _ENCODE(str(x.severity))
            + ', "title": '
            + _ENCODE(x.title)
            + ', "host": '
            for x in t.rules
        ]
        tags = [_ENCODE(list(x.tags)) for x in t.rules]
        text = encode_basestring
        names: dict[str | None, str] = {None: "null"}
        sources: dict[str, str] = {}
        buf: list[str] = []
        for row in self.rows.tolist():
            stamp = r.stamp[row]
            ts = f'"{stamp}"' if stamp is not None else "null"
            host, program = r.host[row], r.program[row]
            h = names.get(host)
            if h is None:
                h = names[host] = text(host)
            p = names.get(program)
            if p is None:
                p = names[program] = text(program)
            s = sources.get(t.source[row])
            if s is None:
                s = sources[t.source[row]] = text(t.source[row])[:-1]
            message = r.message[row]
            msg = text(message)
            related = msg if len(message) <= 500 else text(message[:500])
            fields = r.fields[row]
            rule = r.rule[row]
            source = f'{s}:{r.line[row]}"'
            buf.append(
                f'{heads[rule]}{h}, "program": {p}, "timestamp": {ts}, "source": {source}, '
                f'"message": {msg}, "fields": {_ENCODE(fields) if fields else "{}"}, '
                f'"tags": {tags[rule]}, "count": {r.counts[row]}, "last_seen": {ts}, '
                f'"related": [{{"source": {source}, "timestamp": {ts}, "message": {related}}}], '
                f'"occurrence": {t.occurrence[row]}, "key": "{t.key[row]}"}}\n'
            )
            if len(buf) >= batch:
                out.write("".join(buf))
                buf.clear()
        if buf:
            out.write("".join(buf))


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
    zones = {
        int(o): datetime(2000, 1, 1, tzinfo=fixed_zone(timedelta(seconds=int(o)))).isoformat()[19:]
        for o in np.unique(offset).tolist()
    }
    if len(zones) == 1:
        (suffix,) = zones.values()
        return [w + suffix for w in wall]
    return [w + zones[o] for w, o in zip(wall, offset.tolist(), strict=True)]


class BlockProcessor(LineProcessor):
    """A :class:`~pipeline.engine.LineProcessor` that judges whole blocks against column
    rules and adds the findings to a :class:`FindingTable` (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        rules: list[ColumnRule],
        detector: Detector,
        table: FindingTable,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rules = rules
        self.detector = detector
        self.table = table
        self._index = {c.rule.id: c.order for c in rules}
        self.offsets = ZoneOffsets(self.resolver.tz)
        self._accept: dict[str, np.ndarray] = {}

    def judge(self, data: bytes, first_line: int) -> None:
        """Add the findings of the lines in ``data`` (lines ``first_line`` on)."""
        if not data:
            return
        if not self.sniffed:
            self._sniff(data)
        nl = newline_offsets(data)
        if self.format is None or self.format.name != "syslog" or not self._block_ok(data, nl):
            self._judge_events(data, first_line)
            return
        n_lines = len(nl) + (0 if data.endswith(b"\n") else 1)
        self.stats.lines += n_lines
        self.stats.bytes += len(data)
        if self._scan_anomalies(data, first_line, nl):
            data, nl = cut_nul_runs(data, nl)
            n_lines = len(nl) + (0 if data.endswith(b"\n") else 1)
        after = nl[nl < len(data) - 2] + 1
        self.stats.comments += int(np.count_nonzero(np.frombuffer(data, np.uint8)[after] == 35))
        if data.startswith(b"#"):
            self.stats.comments += 1
        assert self.prefilter is not None
        cands = self.prefilter.candidate_lines(data, nl)
        # the first and the last line are read for their times, as the line path samples them
        last = n_lines - 1 if n_lines > 1 else 0
        sel = np.unique(np.concatenate(([0, last], cands))).astype(np.int64)
        is_cand = np.zeros(len(sel), dtype=bool)
        is_cand[np.searchsorted(sel, cands)] = True
        buf = data
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                buf = data.decode("utf-8", "replace").encode("utf-8")
        if not buf.endswith(b"\n"):
            buf += b"\n"
        block = Lines(buf, nl if buf is data else None)
        lines = Lines.of_arrow(block.arrow().take(sel))
        self._judge_rows(data, nl, first_line, sel, is_cand, lines)

    def _block_ok(self, data: bytes, nl: IntArray) -> bool:
        if b"\r" in data:  # CR line ends are cut per line by the line path
            return False
        if len(nl):
            starts = np.concatenate(([0], nl[:-1] + 1))
            if int((nl - starts).max()) > self.max_line:
                return False
        return len(data) - (int(nl[-1]) + 1 if len(nl) else 0) <= self.max_line

    def _judge_events(self, data: bytes, first_line: int) -> None:
        """A block the columns cannot read: its lines as events, matched one by one."""
        rows = Rows.empty()
        for rec in self.records(data, first_line):
            if isinstance(rec, Event):
                self._event_rows(rec, rows)
        self._emit(rows)

    def _event_rows(self, event: Event, rows: Rows) -> None:
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

    def _emit(self, rows: Rows) -> None:
        """Number the rows as the detector numbers identical findings at one time (per
        host, within one timestamp), and add them to the table."""
        det = self.detector
        recent_stamp, recent = det._recent_stamp, det._recent
        ids = [c.rule.id for c in self.rules]
        sha = hashlib.sha256
        keys: list[str] = []
        occurrence: list[int] = []
        for rule, stamp, host, program, message in zip(
            rows.rule, rows.stamp, rows.host, rows.program, rows.message, strict=True
        ):
            text = "\x1f".join((ids[rule], stamp or "", host or "", program or "", message, ""))
            base = sha(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]
            n = 0
            if stamp is not None:
                if recent_stamp.get(host) != stamp:
                    recent_stamp[host] = stamp
                    seen = recent[host] = {}
                else:
                    seen = recent[host]
                n = seen.get(base, 0)
                seen[base] = n + 1
                if n:
                    text += str(n)
                    base = sha(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]
            keys.append(base)
            occurrence.append(n)
        self.table.add(rows, self.display, occurrence, keys)

    def _accepts(self, programs: list[str]) -> np.ndarray:
        """Per rule and distinct program: whether the rule's selector takes it."""
        out = np.zeros((len(self.rules), len(programs)), dtype=bool)
        for j, prog in enumerate(programs):
            got = self._accept.get(prog)
            if got is None:
                got = np.array([c.rule.select.accept_program(prog) for c in self.rules])
                if len(self._accept) < 4096:
                    self._accept[prog] = got
            out[:, j] = got
        return out

    def _judge_rows(
        self,
        data: bytes,
        nl: IntArray,
        first_line: int,
        sel: np.ndarray,
        is_cand: np.ndarray,
        lines: Lines,
    ) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        env = syslog_envelope(lines)
        is_fast = np.zeros(len(sel), dtype=bool)
        is_fast[env.idx] = True
        # times: runs of fast rows between the rows read one by one, in line order
        local_ns = np.empty(len(env.idx), dtype=np.int64)
        fast_before = np.concatenate(([0], np.cumsum(is_fast)))
        slow: list[tuple[int, Event]] = []
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
            if not is_cand[stop]:
                self._sample(raw)
                continue
            if raw.startswith(b"#"):
                continue
            if not raw.strip():
                self.stats.blank += 1
                continue
            self.stats.candidates += 1
            text = raw.decode("utf-8", "replace") if not raw.isascii() else raw.decode("ascii")
            rec = self._parse(text, first_line + idx)
            if not isinstance(rec, Unparsed):
                slow.append((stop, rec))
        # the fast rows that are candidates
        keep = is_cand[env.idx]
        n_fast = int(keep.sum())
        self.stats.candidates += n_fast
        self.stats.parsed += n_fast
        pos = env.idx[keep]
        local_ns = local_ns[keep]
        mask = pa.array(keep)
        program = pc.filter(env.program, mask)
        message = pc.filter(env.message, mask)
        # each rule over the columns: (row, rule) of every match, and the captures
        hit_rows: list[np.ndarray] = []
        hit_rules: list[np.ndarray] = []
        captured: dict[tuple[int, int], dict[str, str]] = {}
        if n_fast:
            coded = pc.dictionary_encode(program)
            codes = np.asarray(coded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            accepts = self._accepts(coded.dictionary.to_pylist())
            for c in self.rules:
                rows = np.flatnonzero(accepts[c.order][codes])
                if not len(rows):
                    continue
                msgs = message.take(pa.array(rows))
                if c.literals:
                    has = pc.match_substring(msgs, c.literals[0])
                    for lit in c.literals[1:]:
                        has = pc.or_(has, pc.match_substring(msgs, lit))
                    sub = np.flatnonzero(np.asarray(has.to_numpy(zero_copy_only=False)))
                    rows, msgs = rows[sub], msgs.take(pa.array(sub))
                    if not len(rows):
                        continue
                if c.pattern.engine == "re2" and not c.captures:
                    ok = pc.match_substring_regex(msgs, c.pattern.source)
                    rows = rows[np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)]
                else:
                    search = c.pattern.search
                    found = []
                    for row, text in zip(rows.tolist(), msgs.to_pylist(), strict=True):
                        got = search(text)
                        if got is not None:
                            found.append(row)
                            if got:
                                captured[(row, c.order)] = got
                    rows = np.array(found, dtype=np.int64)
                if len(rows):
                    hit_rows.append(rows)
                    hit_rules.append(np.full(len(rows), c.order, dtype=np.int64))
        if hit_rows:
            rows = np.concatenate(hit_rows)
            rules = np.concatenate(hit_rules)
            order = np.lexsort((rules, rows))
            rows, rules = rows[order], rules[order]
        else:
            rows = rules = np.zeros(0, dtype=np.int64)
        self.detector.stats.matches += len(rows)
        take = pa.array(rows)
        at = pos[rows]
        local = local_ns[rows]
        utc = self.offsets.to_utc(local)
        offset = (local - utc) // NS
        out = Rows(
            rules.tolist(),
            utc.tolist(),
            offset.tolist(),
            _stamps(local, offset),
            env.host.filter(mask).take(take).to_pylist(),
            program.take(take).to_pylist(),
            (first_line + sel[at]).tolist(),
            message.take(take).to_pylist(),
            [captured.get(k, _NO_FIELDS) for k in zip(rows.tolist(), rules.tolist(), strict=True)]
            if captured
            else [_NO_FIELDS] * len(rows),
            env.repeat[keep][rows].tolist(),
        )
        if slow:
            # the events read one by one, in their places among the fast rows
            where = at.tolist()
            for stop, event in slow:
                extra = Rows.empty()
                self._event_rows(event, extra)
                out.extend(extra)
                where.extend([stop] * len(extra.rule))
            order = np.argsort(np.asarray(where, dtype=np.int64), kind="stable").tolist()
            out = out.take(order)
        self._emit(out)
