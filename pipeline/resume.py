"""``scan --state``: where each input was read to, so a later scan reads only what is new.

A :class:`Mark` remembers one file read by a scan: its identity as the daemon knows files
(device, inode and the fingerprint of its first line, ``tail.fingerprint_of``), its size
and how far it was read (bytes of its content, decompressed, and lines). At the next scan
with the same state, :class:`Resume` matches every input against the marks:

* the same file (same inode and first line) that is at least as long as what was read is
  read from the saved offset on; line numbers stay those of the file;
* the same content under another name or compressed (``mail.log`` → ``mail.log.1`` →
  ``mail.log.1.gz``; same first line, at least as long) is read from the saved offset too,
  in the decompressed stream;
* an archive read before (compressed files do not grow) is not read again; nor is a
  one-member gzip archive of a file read to its end before, when its trailer's length
  (ISIZE, modulo 2**32) is the saved offset: it is not decompressed to be skipped;
* a file read before at a PATH that now holds something else: its content is looked for
  among its rotated files (``mail.log.1``, ``mail.log.1.gz``, as ``watch`` does after a
  restart) and that generation and every newer one are read first; when it is nowhere, or
  the file was truncated or rewritten in place, the current file is read from its start
  with a ``state-reset`` problem;
* a file not seen before is read from its start.

A plain file is read up to its last newline: an unterminated last line (a writer in the
middle of it) is left for the next scan, with a ``partial-line`` problem. Stdin and URLs
have no identity and are read whole. The marks are saved by the caller in the transaction
that saves the detector's snapshot, after detection has consumed the lines.
"""

from __future__ import annotations

import lzma
import os
import stat
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, BinaryIO

from pipeline.errors import InputError, Location, Problem
from pipeline.sources.files import (
    STDIN,
    InputFile,
    detect_compression,
    gzip_whole_size,
    is_url,
    last_line_end,
    open_input,
)
from pipeline.sources.tail import FINGERPRINT_BYTES, FileFollower, FileState, fingerprint_of

if TYPE_CHECKING:
    from pipeline.engine import PartResult

#: the state database's ``sources`` row holding the marks of ``scan --state``
STATE_SOURCE = "scan:inputs"
#: marks of files not met for this long are forgotten
FORGET_AFTER = 90 * 86400
#: read errors: the input's mark does not advance
_FAILED = ("unreadable", "read-error")


@dataclass(frozen=True, slots=True)
class Mark:
    """How far one file was read by a scan with ``--state``."""

    path: str  # absolute, where it was read
    dev: int
    ino: int
    fingerprint: str
    size: int  # bytes on disk then
    offset: int  # bytes of content (decompressed) read: the next scan starts there
    line: int  # lines read
    compressed: bool  # an archive, read to its end
    seen: float  # unix time of the scan that read or met it

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "fingerprint": self.fingerprint,
            "size": self.size,
            "offset": self.offset,
            "line": self.line,
            "compressed": self.compressed,
            "seen": self.seen,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Mark:
        return cls(
            str(d["path"]),
            int(d["dev"]),
            int(d["ino"]),
            str(d["fingerprint"]),
            int(d["size"]),
            int(d["offset"]),
            int(d["line"]),
            bool(d["compressed"]),
            float(d["seen"]),
        )


@dataclass(frozen=True, slots=True)
class Span:
    """What a scan reads of one input: from ``start`` (after ``line`` lines) to ``end``
    (``None``: to the end); ``done``: nothing (an archive read before)."""

    start: int = 0
    line: int = 0
    end: int | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class _Seen:
    """An input's identity now."""

    path: str
    dev: int
    ino: int
    fingerprint: str
    size: int
    compressed: bool


def _identify(inp: InputFile) -> _Seen | None:
    if inp.path == STDIN or is_url(inp.path):
        return None
    try:
        st = os.stat(inp.path)
        if not stat.S_ISREG(st.st_mode):
            return None  # a pipe or device: reading a fingerprint would consume its data
        with open_input(inp) as f:
            head = f.read(FINGERPRINT_BYTES)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, InputError):
        return None  # reading it reports the error
    return _Seen(
        os.path.abspath(inp.path),
        st.st_dev,
        st.st_ino,
        fingerprint_of(head),
        st.st_size,
        inp.compression is not None,
    )


def _last_newline(path: str, size: int) -> int:
    """The offset just after the last newline below ``size`` (0 when there is none)."""
    with open(path, "rb") as f:
        return last_line_end(f.fileno(), size)


def _line_ends_at(path: str, offset: int) -> bool:
    """Whether the byte before ``offset`` is a newline (the saved offset is a line start)."""
    if offset == 0:
        return True
    with open(path, "rb") as f:
        return os.pread(f.fileno(), 1, offset - 1) == b"\n"


def _holds_only(inp: InputFile, offset: int) -> bool:
    """Whether the archive ``inp`` holds exactly ``offset`` bytes, as far as its gzip
    trailer tells without decompressing (a one-member gzip file whose length modulo 2**32
    is ``offset``'s); False when only decompressing could tell."""
    if inp.compression != "gzip":
        return False
    try:
        return gzip_whole_size(inp.path) == offset % 2**32
    except (OSError, ValueError):
        return False  # reading it reports the error


def _continues(seen: _Seen, mark: Mark) -> bool:
    """Whether ``seen`` holds what ``mark`` read, and perhaps more."""
    if mark.fingerprint:
        if seen.fingerprint != mark.fingerprint:
            return False
    elif (seen.dev, seen.ino) != (mark.dev, mark.ino):
        return False  # no first line to recognise it by: only the same inode
    if mark.compressed or seen.compressed:
        return True  # an archive's length is checked when its prefix is skipped
    return seen.size >= mark.offset and _line_ends_at(seen.path, mark.offset)


def skip_prefix(stream: BinaryIO, n: int) -> int:
    """Read and drop the first ``n`` bytes of a decompressing stream; the bytes dropped."""
    left = n
    while left > 0:
        buf = stream.read(min(left, 1 << 20))
        if not buf:
            break
        left -= len(buf)
    return n - left


class Resume:
    """The marks of one state, matched against the inputs of one scan.

    :meth:`prepare` (after the inputs are expanded) matches them and adds rotated
    generations, :meth:`span` says what to read of each input, :meth:`track` counts the
    lines read, and :meth:`checkpoint` is the new state to save.
    """

    def __init__(self, marks: Iterable[Mark] = (), *, clock: Callable[[], float] = time.time):
        self.marks = list(marks)
        self.clock = clock
        self._seen: dict[InputFile, _Seen] = {}
        self._spans: dict[InputFile, Span] = {}
        self._matched: dict[InputFile, Mark] = {}
        self._lines: Counter[InputFile] = Counter()
        self._failed: set[InputFile] = set()
        self._restarted: set[InputFile] = set()
        #: lines of the inputs read by earlier scans, not read again
        self.skipped_lines = 0
        #: inputs that earlier scans had read (wholly or in part)
        self.resumed_inputs = 0

    # -- the state -----------------------------------------------------------------------------

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> Resume:
        """From the ``state`` column of the :data:`STATE_SOURCE` row (``None``: no marks).

        Raises ``ValueError``, ``KeyError`` or ``TypeError`` on a malformed state."""
        if state is None:
            return cls()
        return cls(Mark.from_dict(d) for d in state["inputs"])

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(state, stats) of the :data:`STATE_SOURCE` row after the scan: one mark per path,
        the inputs' new ones and the earlier ones of other paths met in the last 90 days."""
        now = self.clock()
        new: dict[str, Mark] = {}
        for inp, seen in self._seen.items():
            mark = self._mark_after(inp, seen, now)
            if mark is not None:
                new[mark.path] = mark
        used = set(self._matched.values())
        kept = [
            m
            for m in self.marks
            if m not in used and m.path not in new and now - m.seen < FORGET_AFTER
        ]
        marks = [*new.values(), *kept]
        stats = {"inputs": len(new), "lines": sum(self._lines.values())}
        return {"inputs": [m.as_dict() for m in marks]}, stats

    def _mark_after(self, inp: InputFile, seen: _Seen, now: float) -> Mark | None:
        old = self._matched.get(inp)
        if inp in self._failed:
            return old  # read again from where the last complete read ended
        span = self._spans[inp]
        if span.done and old is not None and (old.compressed or not seen.compressed):
            return replace(old, path=seen.path, size=seen.size, seen=now)
        offset = 0 if seen.compressed else (span.end if span.end is not None else seen.size)
        return Mark(
            seen.path,
            seen.dev,
            seen.ino,
            seen.fingerprint,
            seen.size,
            offset,
            (0 if inp in self._restarted else span.line) + self._lines[inp],
            seen.compressed,
            now,
        )

    def unread(self, inp: InputFile) -> None:
        """``inp`` was left out of this scan (``--since`` ruled it out): its mark stays as
        it was, so a later scan still reads what this one did not."""
        self._failed.add(inp)

    # -- before reading ------------------------------------------------------------------------

    def prepare(
        self, inputs: Sequence[InputFile], report: Callable[[Problem], None]
    ) -> list[InputFile]:
        """Match the inputs against the marks; returns the inputs with the rotated
        generations that hold the rest of a file read before inserted before it."""
        out = list(inputs)
        free = set(self.marks)
        by_inode: dict[tuple[int, int], list[Mark]] = {}
        by_head: dict[str, list[Mark]] = {}
        for m in self.marks:
            by_inode.setdefault((m.dev, m.ino), []).append(m)
            if m.fingerprint:
                by_head.setdefault(m.fingerprint, []).append(m)

        def match(inp: InputFile) -> None:
            seen = _identify(inp)
            if seen is None:
                return
            self._seen[inp] = seen
            # the same inode first, then the same content elsewhere
            candidates = [
                *by_inode.get((seen.dev, seen.ino), ()),
                *by_head.get(seen.fingerprint, ()),
            ]
            mark = next((m for m in candidates if m in free and _continues(seen, m)), None)
            if mark is not None:
                free.discard(mark)
            self._start(inp, seen, mark, report)

        for inp in out:
            match(inp)
        named = {seen.path: inp for inp, seen in self._seen.items()}
        for mark in [m for m in self.marks if m in free and m.path in named]:
            if mark not in free:
                continue  # taken by a generation found for an earlier mark
            current = named[mark.path]
            found = [g for g in self._rotated(mark, report) if os.path.abspath(g.path) not in named]
            for gen in found:
                match(gen)
                named[os.path.abspath(gen.path)] = gen
            at = out.index(current)
            out[at:at] = found
            if mark in free:
                self._reset(current, mark, report)
        return out

    def _start(
        self,
        inp: InputFile,
        seen: _Seen,
        mark: Mark | None,
        report: Callable[[Problem], None],
    ) -> None:
        """Where to start and stop reading ``inp``, continuing ``mark``."""
        end = None if seen.compressed else _last_newline(seen.path, seen.size)
        if end is not None and end < seen.size:
            report(
                Problem(
                    "partial-line",
                    Location(inp.display),
                    "the last line has no newline yet: left for the next scan with this --state",
                )
            )
        if mark is None:
            self._spans[inp] = Span(0, 0, end)
            return
        self._matched[inp] = mark
        self.resumed_inputs += 1
        self.skipped_lines += mark.line
        if mark.compressed:
            self._spans[inp] = Span(done=True)  # an archive does not grow
        elif seen.compressed and _holds_only(inp, mark.offset):
            # the file read before, compressed with nothing more: not decompressed to skip it
            self._spans[inp] = Span(mark.offset, mark.line, mark.offset, done=True)
        elif end is not None and end <= mark.offset:
            self._spans[inp] = Span(mark.offset, mark.line, mark.offset, done=True)
        else:
            self._spans[inp] = Span(mark.offset, mark.line, end)

    def _rotated(self, mark: Mark, report: Callable[[Problem], None]) -> list[InputFile]:
        """The generation holding ``mark``'s file among the rotated files of its path, then
        every newer one (the daemon's search after a restart)."""
        follower = FileFollower(mark.path, report, lambda _msg: None)
        saved = FileState(mark.path, mark.dev, mark.ino, mark.fingerprint, mark.offset, mark.line)
        chain = follower._find_rotated(saved)
        out = []
        for opened in chain:
            opened.handle.close()
            try:
                mtime = os.stat(opened.display).st_mtime
                comp = detect_compression(opened.display)
            except OSError:
                continue
            out.append(InputFile(opened.display, comp, mtime))
        return out

    def _reset(self, inp: InputFile, mark: Mark, report: Callable[[Problem], None]) -> None:
        seen = self._seen[inp]
        if (seen.dev, seen.ino) == (mark.dev, mark.ino):
            why = "was truncated or replaced since the last scan with this --state"
        else:
            why = (
                "is not the file the last scan with this --state read, and that one is not "
                "among its rotated files"
            )
        report(
            Problem(
                "state-reset",
                Location(inp.display),
                f"{why} (read then to line {mark.line}): read from its start",
            )
        )

    def span(self, inp: InputFile) -> Span | None:
        """What to read of ``inp``; ``None``: all of it (stdin, URLs)."""
        return self._spans.get(inp)

    # -- while reading -------------------------------------------------------------------------

    def track(self, results: Iterable[PartResult]) -> Iterator[PartResult]:
        """``results`` passed through; each part's lines are counted once detection has
        taken its records (when the next one is asked for)."""
        for res in results:
            yield res
            inp = res.part.inp
            self._lines[inp] += res.stats.lines
            if any(res.stats.problems[k] for k in _FAILED):
                self._failed.add(inp)
            if res.stats.problems["state-reset"]:
                self._restarted.add(inp)  # read from its start after all
