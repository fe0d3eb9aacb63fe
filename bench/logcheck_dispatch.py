"""An experiment: does dispatching logcheck's patterns by program make the scan faster?

usage: .venv/bin/python bench/logcheck_dispatch.py [--dir /etc/logcheck] [--level server]
       [--file bench/out/syslog-1m.log] [--chunk 8000000]

Nearly every pattern of ``logcheck-database`` starts with a fixed-width timestamp, a host
and a program name: ``^(\\w{3} [ :0-9]{11}|[0-9T:.+-]{32}) [._[:alnum:]-]+ sshd\\[...``.
Such a pattern can only match a line whose bytes after the timestamp, a space, a host (no
space in it) and a space start with the program's word. :func:`pattern_key` reads that
from the translated pattern (its parse tree, as Python's ``re`` parser gives it); the
lines' side is :meth:`Dispatch.line_sets`, in bulk with numpy. Each chunk's lines are
gathered per set of patterns (one pyarrow ``take``) and each group is scanned with a
database of only its patterns; the patterns without such a key scan every line.

The reasoning, for a pattern ``^H T+ R`` where ``H`` is one of a few alternatives each of
one fixed width ``h``, ``T`` a set without the space and ``R`` starts with the word ``w``
(a run of ``[A-Za-z0-9_]`` followed by a byte that is not one, or by the line's end):

* a match starts at a line's start, and byte ``h`` of the line is a space;
* the host runs from ``h + 1`` to the first space after it (``T`` has no space, and at
  least one byte), so ``R`` matches from the byte after that space, ``p``;
* so the line's word at ``p`` (its longest run of word bytes) is ``w``.

A line is keyed by ``(h, word at p)`` for each width ``h`` whose alternatives its first
``h`` bytes can match (tested per byte position with each alternative's byte sets; an
alternative that is not a plain sequence of byte sets counts as any byte but the newline).
Whatever is not understood is answered with None (the pattern scans every line), which
only costs speed.

For each chunk the script times the one-database scan of today's matcher (fast patterns
only) against the dispatched scan, phase by phase, and checks that both find the same
(pattern, line) pairs; it exits 1 when they differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    from re import _constants as _sre  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
#: how many partial readings of a pattern's word are followed before giving up
_MAX_STATES = 64
#: the longest program word looked for (a longer one in a pattern: the pattern is generic)
MAX_WORD = 48

_ANY = bytes(1 if b != 10 else 0 for b in range(256))


@dataclass(frozen=True, slots=True)
class Head:
    """One alternative of a pattern's timestamp: its width and, per byte position, the
    bytes it takes there (a 256-byte table, 1: taken)."""

    width: int
    sets: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Key:
    """The lines a pattern can match: those keyed by one of ``(head.width, word)``."""

    heads: tuple[Head, ...]
    words: frozenset[bytes]

    def pairs(self) -> set[tuple[int, bytes]]:
        return {(h.width, w) for h in self.heads for w in self.words}


def _set_of(op: Any, av: Any) -> bytes | None:
    """The bytes one parse item takes (a single byte position), or None."""
    if op is _sre.LITERAL:
        return bytes(1 if b == av else 0 for b in range(256))
    if op is _sre.ANY:
        return _ANY
    if op is _sre.IN:
        out = bytearray(256)
        negate = False
        for iop, iav in av:
            if iop is _sre.NEGATE:
                negate = True
            elif iop is _sre.LITERAL:
                out[iav] = 1
            elif iop is _sre.RANGE:
                lo, hi = iav
                out[lo : hi + 1] = b"\x01" * (hi - lo + 1)
            else:
                return None
        if negate:
            out = bytearray(0 if x else 1 for x in out)
        out[10] = 0  # nothing translated matches a newline
        return bytes(out[:256])
    return None


def _head(seq: list[tuple[Any, Any]]) -> Head | None:
    """A timestamp alternative as a fixed-width sequence of byte sets (or, when it is of
    one fixed width but not such a sequence, that width with any byte at each position)."""
    sets: list[bytes] = []
    for op, av in seq:
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            lo, hi, sub = av
            if lo != hi or len(sub) != 1:
                return _fixed(seq)
            one = _set_of(*sub[0])
            if one is None:
                return _fixed(seq)
            sets.extend([one] * lo)
            continue
        one = _set_of(op, av)
        if one is None:
            return _fixed(seq)
        sets.append(one)
    return Head(len(sets), tuple(sets)) if sets else None


def _fixed(seq: list[tuple[Any, Any]]) -> Head | None:
    try:
        lo, hi = _sre_parse.SubPattern(_sre_parse.State(), seq).getwidth()
    except Exception:  # whatever the parser makes of it: not understood
        return None
    if lo != hi or lo <= 0 or lo > 256:
        return None
    return Head(lo, (_ANY,) * lo)


def _is_host(op: Any, av: Any) -> bool:
    """``T+``: one or more of a set without the space."""
    if op is not _sre.MAX_REPEAT:
        return False
    lo, _hi, sub = av
    if lo < 1 or len(sub) != 1:
        return False
    one = _set_of(*sub[0])
    return one is not None and not one[32]


def _space(item: tuple[Any, Any]) -> bool:
    return item[0] is _sre.LITERAL and item[1] == 32


def _words(seq: list[tuple[Any, Any]]) -> frozenset[bytes] | None:
    """Every word a match of ``seq`` starts with (its longest run of word bytes, which
    something not a word byte or the line's end follows); None when not known."""
    done: set[bytes] = set()
    todo: list[tuple[bytes, list[tuple[Any, Any]]]] = [(b"", list(seq))]
    seen = 0
    while todo:
        seen += 1
        if seen > _MAX_STATES:
            return None
        word, rest = todo.pop()
        while True:
            if not rest:
                return None  # the match may stop inside the word
            (op, av), rest = rest[0], rest[1:]
            if op is _sre.LITERAL or op is _sre.IN or op is _sre.ANY:
                one = _set_of(op, av)
                if one is None:
                    return None
                taken = [b for b in range(256) if one[b]]
                if not any(b in WORD for b in taken):
                    done.add(word)
                    break
                if not all(b in WORD for b in taken) or len(taken) > 4:
                    return None
                if len(word) + 1 >= MAX_WORD:  # a line's word this long: longer
                    return None
                for b in taken[1:]:
                    todo.append((word + bytes((b,)), rest))
                word += bytes((taken[0],))
                continue
            if op is _sre.AT and av is _sre.AT_END:
                done.add(word)
                break
            if op is _sre.SUBPATTERN:
                _group, add_flags, del_flags, sub = av
                if add_flags or del_flags:
                    return None
                rest = list(sub) + rest
                continue
            if op is _sre.BRANCH:
                _, alternatives = av
                for alt in alternatives[1:]:
                    todo.append((word, list(alt) + rest))
                rest = list(alternatives[0]) + rest
                continue
            if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
                lo, hi, sub = av
                if hi == 0:
                    continue
                sub = list(sub)
                less = [(op, (max(lo - 1, 0), hi - 1 if hi != _sre.MAXREPEAT else hi, sub))]
                if lo == 0:
                    todo.append((word, rest))
                rest = sub + (less if hi != 1 else []) + rest
                continue
            return None
    return frozenset(done) if done else None


def pattern_key(regex: bytes) -> Key | None:
    """The lines ``regex`` (translated, :mod:`pipeline.imports.ere`) can match, as a
    :class:`Key`; None when it is not of the shape this module reads."""
    try:
        items = list(_sre_parse.parse(regex.decode("latin-1")))
    except Exception:  # whatever the parser makes of it: not understood
        return None
    if len(items) < 5 or items[0] != (_sre.AT, _sre.AT_BEGINNING):
        return None
    heads: list[Head] = []
    if items[1][0] is _sre.SUBPATTERN and _space(items[2]):
        _group, add_flags, del_flags, sub = items[1][1]
        if add_flags or del_flags:
            return None
        sub = list(sub)
        if len(sub) == 1 and sub[0][0] is _sre.BRANCH:
            alternatives = [list(a) for a in sub[0][1][1]]
        else:
            alternatives = [sub]
        for alt in alternatives:
            h = _head(alt)
            if h is None:
                return None
            heads.append(h)
        k = 2
    else:
        # the first space followed by a host and a space, after a fixed-width timestamp
        for k in range(2, len(items) - 2):
            if _space(items[k]) and _is_host(*items[k + 1]) and _space(items[k + 2]):
                h = _head(items[1:k])
                if h is not None:
                    heads.append(h)
                    break
        else:
            return None
    if not (k + 3 <= len(items) and _is_host(*items[k + 1]) and _space(items[k + 2])):
        return None
    words = _words(items[k + 3 :])
    if words is None:
        return None
    return Key(tuple(heads), words)


IntArray = npt.NDArray[np.int64]
_WORD_TABLE = np.zeros(256, dtype=bool)
_WORD_TABLE[list(WORD)] = True


class Dispatch:
    """Which patterns (indexes into the list given) each line of a chunk needs.

    ``keys[i]`` is pattern i's :class:`Key` (None: it needs every line, it is in
    :attr:`generic`). The other patterns are put into sets, one per distinct group of
    patterns sharing a ``(width, word)``; :meth:`line_sets` says for each line which set
    (-1: none; a line keyed under several widths gets the union of their sets, a set made
    when first needed)."""

    def __init__(self, keys: list[Key | None]) -> None:
        self.generic = [i for i, k in enumerate(keys) if k is None]
        by_pair: dict[tuple[int, bytes], list[int]] = {}
        heads: dict[int, list[Head]] = {}
        for i, k in enumerate(keys):
            if k is None:
                continue
            for h in k.heads:
                if h not in heads.setdefault(h.width, []):
                    heads[h.width].append(h)
            for pair in k.pairs():
                by_pair.setdefault(pair, []).append(i)
        self.sets: list[tuple[int, ...]] = []
        self._set_ids: dict[tuple[int, ...], int] = {}
        self.pair_set: dict[tuple[int, bytes], int] = {
            pair: self._set_of(tuple(sorted(found))) for pair, found in sorted(by_pair.items())
        }
        #: the sets made at load time (the others are unions made when a line needs one)
        self.base = len(self.sets)
        #: per width, the bytes any alternative of that width takes at each position (a
        #: line passing them all may still fit none: that only costs speed), positions
        #: that take any byte left out
        self.heads: dict[int, list[tuple[int, npt.NDArray[np.bool_]]]] = {}
        for w, hs in sorted(heads.items()):
            union = np.zeros((w, 256), dtype=bool)
            for h in hs:
                union |= np.array([np.frombuffer(t, np.uint8).astype(bool) for t in h.sets])
            self.heads[w] = [(j, union[j]) for j in range(w) if not union[j].sum() >= 255]
        # the distinct byte sets of the heads as bits: CLASSES[b] has bit r when set r takes
        # byte b; per width, the bit each position needs (0: any byte)
        distinct: list[bytes] = []
        for hs in self.heads.values():
            for _, t in hs:
                if t.tobytes() not in distinct:
                    distinct.append(t.tobytes())
        bits = np.uint8 if len(distinct) <= 8 else np.uint64
        self._classes = np.zeros(256, dtype=bits)
        for r, t in enumerate(distinct):
            self._classes |= (np.frombuffer(t, np.uint8).astype(bits) << bits(r)).astype(bits)
        self._needs = {
            w: np.array([1 << distinct.index(t.tobytes()) for _, t in hs], dtype=bits)
            for w, hs in self.heads.items()
        }
        self._columns = {
            w: np.array([j for j, _ in hs], dtype=np.int64) for w, hs in self.heads.items()
        }
        #: bytes read for a line's word: two more than the longest pattern word (the last
        #: one is never a word byte: a line's word that reaches it is longer than all)
        self.width = max((len(w) for _, w in by_pair), default=0) + 2
        #: the newlines :meth:`line_sets` needs after the data (it reads rows of bytes)
        self.pad = max(self.width, 16) + 2
        self._union: dict[tuple[int, ...], int] = {}
        self._codes: dict[int, tuple[npt.NDArray[np.uint64], IntArray]] = {}

    def _set_of(self, patterns: tuple[int, ...]) -> int:
        found = self._set_ids.get(patterns)
        if found is None:
            found = self._set_ids[patterns] = len(self.sets)
            self.sets.append(patterns)
        return found

    def union(self, ids: tuple[int, ...]) -> int:
        """The set of the patterns of the sets ``ids``."""
        found = self._union.get(ids)
        if found is None:
            merged = sorted({p for i in ids for p in self.sets[i]})
            found = self._union[ids] = self._set_of(tuple(merged))
        return found

    def _short_codes(self, h: int) -> tuple[npt.NDArray[np.uint64], IntArray]:
        """The words of eight bytes or fewer keyed with width ``h``, as little-endian
        integers (zero-padded), sorted, and their sets."""
        found = self._codes.get(h)
        if found is None:
            pairs = sorted(
                (int.from_bytes(w.ljust(8, b"\0"), "little"), sid)
                for (width, w), sid in self.pair_set.items()
                if width == h and len(w) <= 8
            )
            found = self._codes[h] = (
                np.array([c for c, _ in pairs], dtype=np.uint64),
                np.array([sid for _, sid in pairs], dtype=np.int64),
            )
        return found

    def line_sets(self, arr: npt.NDArray[np.uint8], starts: IntArray, ends: IntArray) -> IntArray:
        """The set each line needs (-1: none but the generic patterns): line i is
        ``arr[starts[i]:ends[i]]``; ``arr`` ends with :attr:`pad` newlines or more after
        the last line."""
        n = len(starts)
        out = np.full(n, -1, dtype=np.int64)
        if not n or not self.pair_set:
            return out
        spaces: IntArray | None = None
        several: list[tuple[IntArray, IntArray]] = []
        length = ends - starts
        k = self.width
        # rows of bytes gathered a row at a time (a row is contiguous in the view)
        view = np.lib.stride_tricks.sliding_window_view
        for h in self.heads:
            cand = np.flatnonzero(length > h + 1)
            s = starts[cand]
            good = (arr[s + h] == 32) & (arr[s + h + 1] != 32)
            cand, s = cand[good], s[good]
            if not len(cand):
                continue
            if len(self._needs[h]):
                block = view(arr, h)[s][:, self._columns[h]]
                fits = ((self._classes[block] & self._needs[h]) != 0).all(axis=1)
                cand, s = cand[fits], s[fits]
                if not len(cand):
                    continue
            # the host: from byte h + 1 to the first space after it (in the next 16 bytes,
            # else found among all the spaces)
            window = view(arr, 16)[s + h + 2]
            hit = window == 32
            near = hit.any(axis=1)
            p = s + h + 2 + np.argmax(hit, axis=1)
            if not near.all():
                if spaces is None:
                    spaces = np.flatnonzero(arr == 32)
                far = np.flatnonzero(~near)
                at = np.searchsorted(spaces, s[far] + h + 2)
                p[far] = np.where(at < len(spaces), spaces[np.minimum(at, len(spaces) - 1)], -1)
            ok = (p >= 0) & (p < ends[cand])
            cand, p = cand[ok], p[ok] + 1
            if not len(cand):
                continue
            rows = view(arr, k)[p]
            run = _WORD_TABLE[rows]
            run[:, k - 1] = False
            wl = np.argmin(run, axis=1)
            short = wl < k - 1
            cand, rows, wl = cand[short], rows[short], wl[short]
            rows = rows * (np.arange(k)[None, :] < wl[:, None])
            sid = np.full(len(cand), -1, dtype=np.int64)
            eight = wl <= 8
            if k < 8:
                rows = np.concatenate((rows, np.zeros((len(rows), 8 - k), np.uint8)), axis=1)
            codes8, sids8 = self._short_codes(h)
            if len(codes8):
                code = np.ascontiguousarray(rows[eight, :8]).view("<u8").reshape(-1)
                at = np.minimum(np.searchsorted(codes8, code), len(codes8) - 1)
                sid[eight] = np.where(codes8[at] == code, sids8[at], -1)
            long = np.flatnonzero(~eight)
            if len(long):
                uniq, inverse = np.unique(rows[long], axis=0, return_inverse=True)
                found = np.array(
                    [self.pair_set.get((h, u.tobytes().rstrip(b"\0")), -1) for u in uniq],
                    dtype=np.int64,
                )
                sid[long] = found[inverse.reshape(-1)]
            keep = sid >= 0
            several.append((cand[keep], sid[keep]))
        if len(several) == 1:
            lines, sid = several[0]
            out[lines] = sid
            return out
        for lines, sid in several:
            clash = lines[out[lines] >= 0]
            if len(clash):
                both = dict(zip(lines.tolist(), sid.tolist(), strict=True))
                for i in clash.tolist():
                    out[i] = self.union(tuple(sorted({int(out[i]), both[i]})))
                fresh = out[lines] < 0
                out[lines[fresh]] = sid[fresh]
            else:
                out[lines] = sid
        return out


def _scan(db: Any, buf: Any, base: int, out: list[tuple[int, int]]) -> None:
    add = out.append
    db.scan(buf, match_event_handler=lambda i, _s, e, _f, _c: add((i, e + base)))


#: the phases :meth:`Experiment.chunk` times
PHASES = ("one database", "keys", "gather", "sets", "generic")


class Experiment:
    """A matcher's Hyperscan patterns as one database and dispatched by program."""

    def __init__(self, matcher: Any) -> None:
        import time

        import hyperscan

        from pipeline.imports.logcheck import _to_line_end

        fast = matcher._fast
        t = time.perf_counter()
        keys = [pattern_key(p.regex) for _, p in fast]
        self.t_keys = time.perf_counter() - t
        self.patterns = len(fast)
        self.plan = Dispatch(keys)
        flags = hyperscan.HS_FLAG_MULTILINE | hyperscan.HS_FLAG_ALLOWEMPTY

        def compile_(idx: Any) -> Any:
            exprs = [_to_line_end(fast[k][1].regex) for k in idx]
            if not exprs:
                return None
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(
                expressions=exprs,
                ids=[fast[k][0] for k in idx],
                elements=len(exprs),
                flags=[flags] * len(exprs),
            )
            return db

        self._compile = compile_
        t = time.perf_counter()
        self.full = compile_(range(len(fast)))
        self.t_full = time.perf_counter() - t
        t = time.perf_counter()
        self.dbs = [compile_(x) for x in self.plan.sets]
        self.generic = compile_(self.plan.generic)
        self.t_sets = time.perf_counter() - t

    def chunk(self, data: bytes) -> tuple[set[tuple[int, int]], set[tuple[int, int]], list[float]]:
        """The (pattern id, line) pairs of ``data`` found by the one database and by the
        dispatched scan, and the seconds of each of :data:`PHASES`."""
        import time

        import pyarrow as pa

        plan = self.plan
        if not data.endswith(b"\n"):
            data += b"\n"
        arr = np.frombuffer(data, np.uint8)
        nl = np.flatnonzero(arr == 10).astype(np.int64)
        t0 = time.perf_counter()
        want: list[tuple[int, int]] = []
        if self.full is not None:
            _scan(self.full, data, 0, want)
        t1 = time.perf_counter()
        padded = np.concatenate((arr, np.full(plan.pad, 10, np.uint8)))
        starts = np.concatenate(([0], nl[:-1] + 1)).astype(np.int64)
        sid = plan.line_sets(padded, starts, nl)
        t2 = time.perf_counter()
        order = np.argsort(sid, kind="stable")
        order = order[int(np.searchsorted(sid[order], 0)) :]
        ss = sid[order]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(ss)) + 1, [len(ss)]))
        lines = pa.Array.from_buffers(
            pa.large_binary(),
            len(starts),
            [None, pa.py_buffer(np.append(starts, nl[-1] + 1)), pa.py_buffer(data)],
        )
        taken = lines.take(pa.array(order, type=pa.int64()))
        off = np.frombuffer(taken.buffers()[1], np.int64)[: len(taken) + 1]
        buf = memoryview(taken.buffers()[2]) if len(taken) else memoryview(b"")
        # sets made for lines keyed under two widths (compiled when first needed)
        self.dbs.extend(self._compile(x) for x in plan.sets[len(self.dbs) :])
        t3 = time.perf_counter()
        got_local: list[tuple[int, int]] = []
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            if a == b:  # no line needs a set
                continue
            _scan(self.dbs[int(ss[a])], buf[off[a] : off[b]], int(off[a]), got_local)
        t4 = time.perf_counter()
        got: list[tuple[int, int]] = []
        if self.generic is not None:
            _scan(self.generic, data, 0, got)
        t5 = time.perf_counter()
        # the same (pattern id, line) pairs, lines numbered in the chunk
        at = np.searchsorted(nl, [e for _, e in got]).tolist()
        pairs = {(i, int(line)) for (i, _), line in zip(got, at, strict=True)}
        if got_local:
            local = np.searchsorted(off[1:] - 1, [e for _, e in got_local]).tolist()
            pairs |= {(i, int(order[k])) for (i, _), k in zip(got_local, local, strict=True)}
        at = np.searchsorted(nl, [e for _, e in want]).tolist()
        expected = {(i, int(line)) for (i, _), line in zip(want, at, strict=True)}
        return expected, pairs, [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys
    from pathlib import Path

    import pyarrow as pa

    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from pipeline.imports.logcheck import LogcheckMatcher, LogcheckSet

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--dir", default="/etc/logcheck")
    ap.add_argument("--level", default="server")
    ap.add_argument("--file", type=Path, default=repo / "bench" / "out" / "syslog-1m.log")
    ap.add_argument("--chunk", type=int, default=8_000_000)
    args = ap.parse_args(argv)
    ex = Experiment(LogcheckMatcher(LogcheckSet.load(args.dir, args.level)))
    plan = ex.plan
    print(
        f"{ex.patterns} patterns: {ex.patterns - len(plan.generic)} keyed by program "
        f"({len(plan.pair_set)} (width, word) keys, {len(plan.sets)} sets), "
        f"{len(plan.generic)} on every line; reading the keys {ex.t_keys:.2f} s; compiling "
        f"one database {ex.t_full:.2f} s, the sets {ex.t_sets:.2f} s"
    )
    raw = args.file.read_bytes()
    # Arrow's first take pays for setting up its kernels (a scan has done that already)
    pa.array([b"x"]).take(pa.array(np.zeros(1, dtype=np.int64)))
    totals = dict.fromkeys(PHASES, 0.0)
    pos, chunks, wrong = 0, 0, 0
    while pos < len(raw):
        end = raw.rfind(b"\n", pos, pos + args.chunk) + 1 or len(raw)
        data = raw[pos:end]
        pos = end
        chunks += 1
        expected, pairs, times = ex.chunk(data)
        if pairs != expected:
            wrong += 1
            print(f"chunk {chunks}: {len(expected - pairs)} missed, {len(pairs - expected)} extra")
        for name, dt in zip(PHASES, times, strict=True):
            totals[name] += dt
    print(f"{args.file.name}, {chunks} chunks of up to {args.chunk:,} bytes, seconds in all:")
    for name, dt in totals.items():
        print(f"  {name:14} {dt:.3f}")
    print(f"  dispatched     {sum(totals.values()) - totals['one database']:.3f}")
    print("same matches" if not wrong else f"DIFFERENT MATCHES in {wrong} chunks")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
