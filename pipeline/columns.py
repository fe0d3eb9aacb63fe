"""Lines as columns: the envelope of whole blocks of syslog lines, with Arrow and numpy.

This is the parse step of the block path, shared by the scan (:mod:`pipeline.block`) and
by ``read_events`` (:mod:`pipeline.bulk`). The lines of a block are one Arrow string
array over the block's bytes (no copy). The fast-path regex of
:mod:`pipeline.grammars.fastpath` runs over all of them at once on RE2, only to say which
lines it takes; the fixed-width timestamp is read from the bytes with numpy and host,
program, pid and message are cut with Arrow string kernels. The year and zone rules of
:mod:`pipeline.timeinfer` are applied to runs of lines at once (:func:`resolve_run`),
with the same answers as :class:`~pipeline.timeinfer.TimeResolver` gives line by line.
A line the regex does not take is left to the grammar, by the caller, in line order.

Nothing here imports pandas (a scan's start-up does not pay for it); pyarrow is imported
when the first block is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, cast

import numpy as np

from pipeline.grammars.common import MONTHS, REPEATED_PREFIX, unrepeat
from pipeline.grammars.fastpath import SYSLOG_LINE
from pipeline.timeinfer import REORDER, TimeResolver, fixed_offset

NS = 1_000_000_000
MONTH_NAMES = tuple(MONTHS)
DAYS_2000 = np.array([31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
#: what every chunk holding a ``message repeated N times: [ text]`` line holds
REPEATED = REPEATED_PREFIX.encode()
REORDER_NS = int(REORDER.total_seconds()) * NS
#: what ``str.strip()`` strips (the characters for which ``str.isspace()`` is true)
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: month of the three bytes of a month name read as one big-endian integer
MONTH_KEYS = np.array([int.from_bytes(m.encode(), "big") for m in MONTH_NAMES])
MONTH_ORDER = np.argsort(MONTH_KEYS)


def re2_match(pattern: re.Pattern[str]) -> str:
    """A ``fastpath`` pattern for RE2's ``match_substring_regex`` on lines that keep their
    ``\\n``: anchored, without captures (RE2 then answers from its DFA)."""
    return "^(?:" + re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern) + ")\n$"


class Lines:
    """The lines of a block (UTF-8 bytes, every line ending in ``\\n``), decoded on demand."""

    def __init__(self, buf: bytes, ends: np.ndarray | None = None) -> None:
        self.buf = buf
        self.ends = (
            ends
            if ends is not None
            else np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10).astype(np.int64)
        )
        self.starts = np.concatenate(([0], self.ends[:-1] + 1)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> str:
        return self.buf[int(self.starts[i]) : int(self.ends[i])].decode("utf-8")

    def tolist(self) -> list[str]:
        return self.buf.decode("utf-8").split("\n")[:-1]

    def arrow(self) -> Any:
        """The lines as an Arrow ``large_string`` array over the buffer, ``\\n`` kept."""
        import pyarrow as pa

        offsets = np.concatenate(([0], self.ends + 1)).astype(np.int64)
        return pa.Array.from_buffers(
            pa.large_string(), len(self), [None, pa.py_buffer(offsets), pa.py_buffer(self.buf)]
        )

    @classmethod
    def of_arrow(cls, arr: Any) -> Lines:
        """The lines of a ``large_string`` array whose every value ends in ``\\n`` (one
        taken from :meth:`arrow`), over one contiguous buffer."""
        import pyarrow as pa

        arr = pa.concat_arrays([arr]) if arr.offset else arr
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[: len(arr) + 1]
        data = arr.buffers()[2]
        start, end = int(offsets[0]), int(offsets[-1])
        buf = data.to_pybytes()[start:end] if data is not None else b""
        return cls(buf, (offsets[1:] - start - 1).astype(np.int64))


# -- Arrow arrays without pandas -----------------------------------------------------------------
#
# pyarrow imports pandas (when installed) the first time ``pa.array``, ``pa.scalar`` or a
# ``to_numpy`` of some types is called: a quarter of a second and tens of megabytes a
# scan does not need. The block path builds and reads its arrays from buffers instead.


def arrow_ints(values: np.ndarray) -> Any:
    """An Arrow ``int64`` array of a numpy array (no nulls)."""
    import pyarrow as pa

    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def arrow_mask(mask: np.ndarray) -> Any:
    """An Arrow boolean array of a numpy boolean array."""
    import pyarrow as pa

    bits = np.packbits(np.asarray(mask, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])


def arrow_strings(values: Sequence[str | None]) -> Any:
    """An Arrow ``large_string`` array of Python strings (None: null)."""
    import pyarrow as pa

    n = len(values)
    validity = None
    nulls = 0
    texts: Sequence[str]
    if None in values:  # (== with a str is False: only None matches)
        valid = np.array([v is not None for v in values], dtype=bool)
        nulls = n - int(valid.sum())
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        texts = [v if v is not None else "" for v in values]
    else:
        texts = cast(Sequence[str], values)
    joined = "".join(texts)
    data = joined.encode("utf-8")
    if len(data) == len(joined):
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    else:
        lengths = np.fromiter((len(t.encode("utf-8")) for t in texts), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(
        pa.large_string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)], nulls
    )


def arrow_text(text: str) -> Any:
    """A ``large_string`` scalar."""
    return arrow_strings([text])[0]


def arrow_int(value: int) -> Any:
    """An ``int64`` scalar."""
    return arrow_ints(np.array([value]))[0]


def numpy_of(arr: Any) -> np.ndarray:
    """A numpy array of an Arrow boolean or integer array; nulls read as False or 0."""
    import pyarrow as pa

    n, off = len(arr), arr.offset
    if arr.null_count:
        import pyarrow.compute as pc

        fill = arrow_mask(np.zeros(1, dtype=bool))[0] if arr.type == pa.bool_() else None
        if fill is None:
            fill = pc.cast(arrow_ints(np.zeros(1, dtype=np.int64)), arr.type)[0]
        arr = pc.coalesce(arr, fill)
        n, off = len(arr), arr.offset
    buf = arr.buffers()[1]
    if arr.type == pa.bool_():
        bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")
        return bits[off : off + n].astype(bool)
    return np.frombuffer(buf, dtype=_NUMPY_TYPES[str(arr.type)])[off : off + n]


_NUMPY_TYPES = {
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
}


def valid_utf8(data: bytes) -> bytes:
    """``data`` as valid UTF-8: itself when it is, else with undecodable bytes replaced by
    U+FFFD (as the line path decodes each line), ending in ``\\n``."""
    buf = data
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            buf = data.decode("utf-8", "replace").encode("utf-8")
    return buf if buf.endswith(b"\n") else buf + b"\n"


def block_ok(data: bytes, nl: np.ndarray, max_line: int) -> bool:
    """Whether a block can be read as columns: no CR line ends (cut per line by the line
    path) and no line over ``max_line`` bytes (cut to it, and reported, by the line path)."""
    if b"\r" in data:
        return False
    if len(nl):
        starts = np.concatenate(([0], nl[:-1] + 1))
        if int((nl - starts).max()) > max_line:
            return False
    return len(data) - (int(nl[-1]) + 1 if len(nl) else 0) <= max_line


@dataclass
class Envelope:
    """The lines of a block the syslog fast path takes: line indexes, date parts, and the
    envelope as Arrow arrays (``host``, ``program``, ``message``) and numpy arrays."""

    idx: np.ndarray
    mon: np.ndarray
    day: np.ndarray
    tod: np.ndarray  # time of day, ns
    host: Any
    program: Any
    pid: np.ndarray  # int64, 0 where missing
    has_pid: np.ndarray
    message: Any
    repeat: np.ndarray  # events per line (rsyslog's "message repeated N times")


def syslog_envelope(lines: Lines) -> Envelope:
    """The lines the syslog fast-path regex takes, with a date and time that exist.

    RE2 only answers which lines match (no captures); the date and time are read from
    their fixed columns in the bytes, and host, program, pid and message are cut at the
    first space, ``": "`` and ``[``, which is where the regex puts them (none of them can
    hold the separator before it).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = lines.arrow()
    hit = pc.match_substring_regex(arr, re2_match(SYSLOG_LINE))
    idx = np.flatnonzero(numpy_of(hit))
    b = np.frombuffer(lines.buf, dtype=np.uint8)
    s = lines.starts[idx]

    def at(k: int) -> np.ndarray:
        got: np.ndarray = b[s + k].astype(np.int64)
        return got

    key = (at(0) << 16) | (at(1) << 8) | at(2)
    mon = MONTH_ORDER[np.searchsorted(MONTH_KEYS[MONTH_ORDER], key)] + 1
    day = np.where(at(4) == 32, 0, at(4) - 48) * 10 + at(5) - 48
    hh = (at(7) - 48) * 10 + at(8) - 48
    mm = (at(10) - 48) * 10 + at(11) - 48
    ss = (at(13) - 48) * 10 + at(14) - 48
    ok = (day >= 1) & (hh < 24) & (mm < 60) & (ss < 60)
    if len(mon):
        ok &= day <= DAYS_2000[mon - 1]
    tod = (hh * 3600 + mm * 60 + ss) * NS
    n = int(ok.sum())
    take = np.zeros(len(lines), dtype=bool)
    take[idx[ok]] = True
    first, second = arrow_int(0), arrow_int(1)
    rest = pc.utf8_slice_codeunits(arr.filter(arrow_mask(take)), 16)  # "host tag: msg\n"
    host_tail = pc.split_pattern(rest, " ", max_splits=1)
    tag_msg = pc.split_pattern(pc.list_element(host_tail, second), ": ", max_splits=1)
    prog_pid = pc.split_pattern(pc.list_element(tag_msg, first), "[", max_splits=1)
    has_pid = numpy_of(pc.list_value_length(prog_pid)) == 2
    pid = np.zeros(n, dtype=np.int64)
    digits = pc.utf8_rtrim(pc.list_flatten(pc.list_slice(prog_pid, 1, 2)), "]")
    pid[has_pid] = numpy_of(pc.cast(digits, pa.int64()))
    msg, repeat = unrepeat_arrow(pc.utf8_trim(pc.list_element(tag_msg, second), PY_WHITESPACE))
    return Envelope(
        idx=idx[ok].astype(np.int64),
        mon=mon[ok],
        day=day[ok],
        tod=tod[ok],
        host=pc.list_element(host_tail, first),
        program=pc.list_element(prog_pid, first),
        pid=pid,
        has_pid=has_pid,
        message=msg,
        repeat=repeat,
    )


def unrepeat_arrow(messages: Any) -> tuple[Any, np.ndarray]:
    """rsyslog's ``message repeated N times: [ text]`` unwrapped in place, as the grammars
    do (:func:`~pipeline.grammars.common.unrepeat`), and the N of each message (1
    elsewhere): one ``starts_with`` over all messages, Python only for the few repeated."""
    import pyarrow.compute as pc

    hit = numpy_of(pc.starts_with(messages, REPEATED_PREFIX))
    repeat = np.ones(len(messages), dtype=np.int64)
    idx = np.flatnonzero(hit)
    if not len(idx):
        return messages, repeat
    inner = [unrepeat(str(messages[int(i)].as_py())) for i in idx]
    repeat[idx] = [n for _, n in inner]
    unwrapped = pc.replace_with_mask(
        messages, arrow_mask(hit), arrow_strings([text for text, _ in inner]).cast(messages.type)
    )
    return unwrapped, repeat


def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (vectorised)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: np.ndarray = era * 146097 + doe - 719468
    return days


def is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def naive_ns(ts: datetime) -> int:
    delta = ts.replace(tzinfo=None) - datetime(1970, 1, 1)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


class ZoneOffsets:
    """UTC offsets of local wall times in one zone, as ``fixed_offset`` gives them."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        fixed = isinstance(zone, timezone) or getattr(zone, "key", None) in ("UTC", "Etc/UTC")
        probe = datetime(2000, 1, 1, tzinfo=zone).utcoffset() if fixed else None
        self.fixed_ns = int(probe.total_seconds()) * NS if probe is not None else None
        self._cache: dict[int, int] = {}

    def to_utc(self, local_ns: np.ndarray) -> np.ndarray:
        """UTC nanoseconds of naive local times (nanoseconds since the epoch, wall clock)."""
        if self.fixed_ns is not None:
            return local_ns - self.fixed_ns
        # the offset is looked up once per distinct wall-clock minute
        minutes = local_ns // (60 * NS)
        uniq, inverse = np.unique(minutes, return_inverse=True)
        offs = np.empty(len(uniq), dtype=np.int64)
        for i, minute in enumerate(uniq.tolist()):
            got = self._cache.get(minute)
            if got is None:
                wall = datetime(1970, 1, 1) + timedelta(minutes=minute)
                off = fixed_offset(wall.replace(tzinfo=self.zone)).utcoffset()
                got = int(off.total_seconds()) * NS if off is not None else 0
                self._cache[minute] = got
            offs[i] = got
        return local_ns - offs[inverse]


def resolve_one(r: TimeResolver, mon: int, day: int, tod: int) -> int:
    naive = datetime(2000, mon, day) + timedelta(microseconds=tod // 1000)
    return naive_ns(r.resolve(naive, True).replace(tzinfo=None))


def resolve_run(r: TimeResolver, mon: np.ndarray, day: np.ndarray, tod: np.ndarray) -> np.ndarray:
    """Wall-clock nanoseconds of consecutive year-less lines, as ``r`` gives them.

    ``tod`` is the time of day in nanoseconds. In bulk when every line lies within the
    reordering distance of the latest time seen so far (no New Year, no late line from
    the year before), else line by line; ``r`` is left as the lines one by one leave it.
    """
    n = len(mon)
    out = np.empty(n, dtype=np.int64)
    if not n:
        return out
    start = 0
    if r.last is None:
        out[0] = resolve_one(r, int(mon[0]), int(day[0]), int(tod[0]))
        start = 1
    if start < n and r.last is not None:
        year = r.last.year
        rest_mon, rest_day = mon[start:], day[start:]
        leap_ok = is_leap(year) or not bool(np.any((rest_mon == 2) & (rest_day == 29)))
        here = (
            days_from_civil(np.full(n - start, year), rest_mon, rest_day) * 86400 * NS + tod[start:]
        )
        last_ns = naive_ns(r.last)
        running = np.maximum.accumulate(np.concatenate(([last_ns], here)))[:-1]
        # as TimeResolver: no line later than the file was last written (else line by line)
        in_year = r.fixed_year is not None or int(here.max()) <= naive_ns(r.limit)
        if (
            leap_ok
            and in_year
            and bool(np.all((here >= running - REORDER_NS) & (here <= running + REORDER_NS)))
        ):
            out[start:] = here
            top = int(here.max())
            if top > last_ns:
                r.last = datetime(1970, 1, 1) + timedelta(microseconds=top // 1000)
            return out
        for i in range(start, n):
            out[i] = resolve_one(r, int(mon[i]), int(day[i]), int(tod[i]))
    return out
