"""Following log files through rotations, truncations and restarts, by our own offsets.

A :class:`FileFollower` watches one path (``/var/log/syslog``). It reads whole lines from the
file at that path, and keeps a file that was rotated away open until it has been read to its
end, so nothing written before the rotation is lost:

* **rename + create** (logrotate's default): the path names a new inode; the old one is
  drained (to EOF, its last partial line included once it has been quiet a moment), then
  the new file is read from its start;
* **copytruncate**: the same inode got shorter than our offset; reading restarts at 0;
* **delete + recreate**: like rename; the deleted file is still readable through our handle;
* a path that does not exist yet is waited for;
* a **partial last line** is not consumed until its newline arrives.

A file's identity is (device, inode) plus a fingerprint of its first line, so an inode
number reused by a new file is not mistaken for the old one. :class:`FileState` is what is
checkpointed; after a restart the follower resumes from it, and when the file was rotated
while logwarden was down it finds the old file among its rotated siblings (``syslog.1``,
also ``syslog.1.gz`` when it was compressed meanwhile) by the fingerprint and finishes it
first.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import Location, Problem
from pipeline.sources.files import MAX_LINE, detect_compression, last_line_end

#: bytes of the first line that make a file's fingerprint
FINGERPRINT_BYTES = 1024
_SERIALS = itertools.count(1)
#: how long a rotated-away file must stay quiet before its last partial line is taken
DRAIN_GRACE = 1.0


def fingerprint_of(head: bytes) -> str:
    """The fingerprint of a file from its first bytes: its first line, when it is complete."""
    nl = head.find(b"\n")
    if nl < 0:
        return ""
    return hashlib.sha256(head[: nl + 1]).hexdigest()[:32]


@dataclass
class FileState:
    """What is checkpointed about a followed file."""

    path: str
    dev: int = 0
    ino: int = 0
    fingerprint: str = ""
    offset: int = 0
    line: int = 0  # lines consumed; the next line is line + 1

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "fingerprint": self.fingerprint,
            "offset": self.offset,
            "line": self.line,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> FileState:
        return cls(
            str(d["path"]),
            int(str(d.get("dev", 0))),
            int(str(d.get("ino", 0))),
            str(d.get("fingerprint", "")),
            int(str(d.get("offset", 0))),
            int(str(d.get("line", 0))),
        )


@dataclass
class Block:
    """Whole lines read from one file instance."""

    key: str  # identity of the file instance: "dev:ino:fingerprint"
    display: str  # the name to show in findings
    data: bytes
    first_line: int
    mtime: float


@dataclass
class _Open:
    handle: BinaryIO
    dev: int
    ino: int
    display: str
    offset: int = 0
    line: int = 0
    fingerprint: str = ""
    last_growth: float = field(default_factory=time.monotonic)
    seen: int = 0  # the furthest byte seen so far (growth is measured against it)
    skipping: bool = False  # inside the rest of an over-long line
    compressed: bool = False

    serial: int = field(default_factory=lambda: next(_SERIALS))

    @property
    def key(self) -> str:
        """Stable while this file instance is open (its processor's key)."""
        return f"{self.dev}:{self.ino}:{self.serial}"

    def state(self, path: str) -> FileState:
        return FileState(path, self.dev, self.ino, self.fingerprint, self.offset, self.line)


def _count_lines(handle: BinaryIO, upto: int) -> int:
    handle.seek(0)
    left = upto
    n = 0
    while left > 0:
        buf = handle.read(min(left, 8 << 20))
        if not buf:
            break
        n += buf.count(b"\n")
        left -= len(buf)
    return n


class FileFollower:
    """Follows one path; see the module docstring."""

    def __init__(
        self,
        path: str,
        report: Callable[[Problem], None],
        log: Callable[[str], None],
        *,
        state: FileState | None = None,
        from_beginning: bool = False,
        max_line: int = MAX_LINE,
    ) -> None:
        self.path = path
        self.report = report
        self.log = log
        self.saved = state
        self.from_beginning = from_beginning
        self.max_line = max_line
        self.current: _Open | None = None
        self.draining: list[_Open] = []
        self._missing_reported = False
        self._started = False

    # -- opening ---------------------------------------------------------------------------

    def _open(self, path: str, display: str | None = None) -> _Open | None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open across polls on purpose
            st = os.fstat(handle.fileno())
        except OSError as exc:
            self.report(Problem("unreadable", Location(path), exc.strerror or str(exc)))
            return None
        opened = _Open(handle, st.st_dev, st.st_ino, display or path)
        opened.fingerprint = self._head_fingerprint(opened)
        return opened

    def _head_fingerprint(self, f: _Open) -> str:
        try:
            head = os.pread(f.handle.fileno(), FINGERPRINT_BYTES, 0)
        except OSError:
            return ""
        return fingerprint_of(head)

    def _start(self) -> None:
        """First look at the path: resume from the checkpoint, or start at the end."""
        self._started = True
        cur = self._open(self.path) if os.path.exists(self.path) else None
        saved = self.saved
        if saved is not None and saved.ino:
            same = (
                cur is not None
                and (cur.dev, cur.ino) == (saved.dev, saved.ino)
                and (not saved.fingerprint or cur.fingerprint == saved.fingerprint)
            )
            if same and cur is not None:
                cur.offset, cur.line = saved.offset, saved.line
                self.current = cur
                return
            chain = self._find_rotated(saved)
            if chain:
                old = chain[0]
                names = ", ".join(f.display for f in chain)
                self.log(f"{self.path}: rotated while stopped; finishing {names} first")
                old.offset, old.line = saved.offset, saved.line
                if old.compressed:
                    self._skip_compressed(old)
                self.draining.extend(chain)
            else:
                self.report(
                    Problem(
                        "rotated-away",
                        Location(self.path),
                        "the file read before the restart is gone; reading the current "
                        "file from its start",
                    )
                )
            self.current = cur
            return
        self.current = cur
        if cur is not None and not self.from_beginning and saved is None:
            size = os.fstat(cur.handle.fileno()).st_size
            end = last_line_end(cur.handle.fileno(), size)
            cur.line = _count_lines(cur.handle, end)
            cur.offset = end

    def _siblings(self) -> list[Path]:
        p = Path(self.path)
        try:
            return sorted(
                x for x in p.parent.iterdir() if x.name.startswith(p.name) and x.name != p.name
            )
        except OSError:
            return []

    def _open_sibling(self, sib: Path) -> _Open | None:
        """Open a rotated sibling, decompressing a gzip one; fingerprint from its content."""
        try:
            st = sib.stat()
            if detect_compression(str(sib)) == "gzip":
                with _GzipStream(str(sib)) as g:
                    head = g.read(FINGERPRINT_BYTES)
                handle = _GzipStream(str(sib))
                return _Open(
                    handle,  # type: ignore[arg-type]
                    st.st_dev,
                    st.st_ino,
                    str(sib),
                    fingerprint=fingerprint_of(head),
                    compressed=True,
                )
        except OSError:
            return None
        return self._open(str(sib))

    def _find_rotated(self, saved: FileState) -> list[_Open]:
        """The file read before a restart among the rotated siblings, then every newer one.

        The saved file is recognised by (device, inode) when it was renamed, and by the
        fingerprint of its first line when it was compressed or copied (copytruncate), as
        long as the copy holds at least what was read. Newer generations (two rotations
        while stopped) follow it, oldest first, from their start.
        """
        from pipeline.sources.files import rotation_key

        base = Path(self.path).name
        sibs = sorted(
            (x for x in self._siblings() if rotation_key(str(x))[1] == base),
            key=lambda x: rotation_key(str(x)),
        )
        gens = self._generations(sibs)
        for i, opened in enumerate(gens):
            same_inode = (opened.dev, opened.ino) == (saved.dev, saved.ino)
            same_head = bool(saved.fingerprint) and opened.fingerprint == saved.fingerprint
            big_enough = opened.compressed or (
                os.fstat(opened.handle.fileno()).st_size >= saved.offset
            )
            if (same_inode and (same_head or not saved.fingerprint)) or (
                not same_inode and same_head and big_enough
            ):
                return gens[i:]  # the older ones were closed on the way
            opened.handle.close()
        return []

    def _generations(self, sibs: list[Path]) -> list[_Open]:
        """The rotated siblings opened, oldest first, one per generation.

        A plain file and an archive with the same first line are one generation: logrotate
        is compressing it right now (``compress`` without ``delaycompress`` removes the
        plain file only once the archive is written), so the plain one, which is complete,
        is read and the archive left alone."""
        gens: list[_Open] = []
        by_head: dict[str, int] = {}
        for sib in sibs:
            opened = self._open_sibling(sib)
            if opened is None:
                continue
            seen = by_head.get(opened.fingerprint) if opened.fingerprint else None
            if seen is None:
                if opened.fingerprint:
                    by_head[opened.fingerprint] = len(gens)
                gens.append(opened)
                continue
            if gens[seen].compressed and not opened.compressed:
                gens[seen].handle.close()
                gens[seen] = opened
            else:
                opened.handle.close()
        return gens

    def _find_copy(self, cur: _Open) -> _Open | None:
        """After copytruncate: the copy holding lines written before the truncation that
        were not read yet (same first line, longer than what was read), also when it has
        been compressed already."""
        if not cur.fingerprint:
            return None
        for sib in self._siblings():
            opened = self._open_sibling(sib)
            if opened is None:
                continue
            if opened.fingerprint != cur.fingerprint:
                opened.handle.close()
                continue
            opened.offset, opened.line = cur.offset, cur.line
            if opened.compressed:
                self._skip_compressed(opened)
                more = opened.handle.read(1)
                if more:
                    opened.handle = _Pushback(opened.handle, more)  # type: ignore[assignment]
                    return opened
            elif os.fstat(opened.handle.fileno()).st_size > cur.offset:
                return opened
            opened.handle.close()
        return None

    def _skip_compressed(self, f: _Open) -> None:
        left = f.offset
        while left > 0:
            buf = f.handle.read(min(left, 1 << 20))
            if not buf:
                break
            left -= len(buf)

    def _display_of(self, f: _Open) -> str:
        """The current name of a rotated-away inode (``syslog.1``), or the old name."""
        for sib in self._siblings():
            try:
                st = sib.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (f.dev, f.ino):
                return str(sib)
        return f.display + " (deleted)"

    # -- polling ---------------------------------------------------------------------------

    def _check_path(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.current is not None and not self._missing_reported:
                self.log(f"{self.path}: removed; reading what is left of it and waiting")
                self._missing_reported = True
            return
        except OSError as exc:
            self.report(Problem("unreadable", Location(self.path), exc.strerror or str(exc)))
            return
        self._missing_reported = False
        cur = self.current
        if cur is None:
            self.current = self._open(self.path)
            if self.current is not None:
                self.log(f"{self.path}: appeared; reading it from the start")
            return
        if (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
            cur.display = self._display_of(cur)
            self.log(f"{self.path}: rotated (the old file is now {cur.display}); switching")
            self.draining.append(cur)
            self.current = self._open(self.path)
            return
        if st.st_size < cur.offset:
            copy = self._find_copy(cur)
            if copy is not None:
                self.log(
                    f"{self.path}: truncated after a copy to {copy.display}; finishing the "
                    "copy first"
                )
                self.draining.append(copy)
            else:
                self.log(f"{self.path}: truncated (copytruncate?); reading from the start")
            cur.offset, cur.line, cur.seen = 0, 0, 0
            cur.fingerprint = self._head_fingerprint(cur)
            return
        if cur.offset and cur.fingerprint:
            now = self._head_fingerprint(cur)
            if now and now != cur.fingerprint:
                copy = self._find_copy(cur)
                if copy is not None:
                    self.log(
                        f"{self.path}: truncated and rewritten after a copy to {copy.display}; "
                        "finishing the copy first"
                    )
                    self.draining.append(copy)
                else:
                    self.log(f"{self.path}: replaced in place; reading from the start")
                cur.offset, cur.line, cur.fingerprint, cur.seen = 0, 0, now, 0

    def _read(self, f: _Open, max_bytes: int, final: bool) -> Block | None:
        """Whole lines from ``f`` after its offset (and a last partial line when final).

        A line longer than ``max_line`` is cut: its first ``max_line`` bytes are handed on
        as the line (reported as ``line-too-long``) and the rest, up to its newline, is
        skipped. The rest is never read as a line of its own, so text deep inside a long
        line cannot pass for a new record.
        """
        final = final or f.compressed  # a compressed file is complete: nothing to wait for
        if f.compressed:
            data = f.handle.read(max_bytes)
        else:
            try:
                data = os.pread(f.handle.fileno(), max_bytes, f.offset)
            except OSError as exc:
                self.report(Problem("read-error", Location(f.display), exc.strerror or str(exc)))
                return None
        if not data:
            return None
        if f.offset + len(data) > f.seen:
            f.seen = f.offset + len(data)
            f.last_growth = time.monotonic()
        if f.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                f.offset += len(data)
                return None
            f.offset += nl + 1
            f.skipping = False
            data = data[nl + 1 :]
            if not data:
                return None
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > self.max_line:
                return self._cut_long_line(f, data)
            if f.compressed and _damage(f.handle):
                # the torn end of a damaged archive: not a line (the problem says so)
                f.offset += len(data)
                return None
            if not final:
                if f.compressed:  # pragma: no cover - final is always true for these
                    f.handle = _Pushback(f.handle, data)  # type: ignore[assignment]
                return None  # wait for the newline
            cut = len(data) - 1
        whole = data[: cut + 1]
        if f.compressed and cut + 1 < len(data):
            # a compressed stream cannot seek back: keep the rest for the next read
            rest = data[cut + 1 :]
            f.handle = _Pushback(f.handle, rest)  # type: ignore[assignment]
        return self._block(f, whole)

    def _block(self, f: _Open, whole: bytes, consumed: int | None = None) -> Block:
        if not f.fingerprint and f.offset == 0:
            f.fingerprint = fingerprint_of(whole[:FINGERPRINT_BYTES])
        try:
            mtime = os.fstat(f.handle.fileno()).st_mtime
        except (OSError, AttributeError, ValueError):
            mtime = time.time()
        block = Block(f.key, f.display, whole, f.line + 1, mtime)
        f.offset += len(whole) if consumed is None else consumed
        f.line += whole.count(b"\n") + (0 if whole.endswith(b"\n") else 1)
        return block

    def _cut_long_line(self, f: _Open, data: bytes) -> Block:
        """A line over ``max_line`` with no newline yet: hand on its head, skip the rest."""
        self.report(
            Problem(
                "line-too-long",
                Location(f.display, f.line + 1),
                f"longer than {self.max_line} bytes; cut to that length",
            )
        )
        f.skipping = True
        return self._block(f, data[: self.max_line] + b"\n", consumed=len(data))

    def poll(self, max_bytes: int = 8 << 20) -> list[Block]:
        """Blocks of new whole lines, rotated-away files first."""
        if not self._started:
            self._start()
        else:
            self._check_path()
        out: list[Block] = []
        now = time.monotonic()
        for old in list(self.draining[:1]):
            block = self._read(old, max_bytes, final=False)
            if block is not None:
                out.append(block)
                continue
            if now - old.last_growth >= DRAIN_GRACE:
                last = self._read(old, max_bytes, final=True)
                if last is not None:
                    out.append(last)
                    continue
                damage = _damage(old.handle) if old.compressed else None
                old.handle.close()
                self.draining.remove(old)
                if damage:
                    self.report(
                        Problem(
                            "truncated-archive",
                            Location(old.display, old.line + 1),
                            f"{damage}; its {old.line} whole lines were read, the rest is lost; "
                            "going on with the next file",
                        )
                    )
                self.log(f"{old.display}: finished after rotation ({old.line} lines)")
        if self.current is not None and not self.draining:
            block = self._read(self.current, max_bytes, final=False)
            if block is not None:
                out.append(block)
        return out

    def state(self) -> FileState | None:
        """The checkpoint: the oldest file not yet finished, or the current one."""
        if self.draining:
            return self.draining[0].state(self.path)
        if self.current is not None:
            return self.current.state(self.path)
        return self.saved

    def lag(self) -> int:
        """Bytes written to the path but not read yet."""
        if self.current is None:
            return 0
        try:
            size = os.fstat(self.current.handle.fileno()).st_size
        except (OSError, ValueError):  # ValueError: closed (the file left its glob)
            return 0
        return max(0, size - self.current.offset)

    def close(self) -> None:
        for f in [*self.draining, *([self.current] if self.current else [])]:
            with contextlib.suppress(OSError):
                f.handle.close()


#: compressed bytes read from a rotated archive at a time
_GZ_CHUNK = 1 << 16


def _damage(handle: object) -> str | None:
    """Why a compressed stream ended early (cut short, corrupt), or None."""
    return getattr(handle, "damage", None)


class _GzipStream:
    """A gzip archive decompressed as far as it goes.

    :mod:`gzip` raises at a cut-short or corrupt archive and loses what it had decompressed
    in that read; here every byte before the damage is handed on, then the stream ends and
    :attr:`damage` says why. Concatenated members and zero padding after the last member
    are read as ``gzip -d`` reads them.
    """

    def __init__(self, path: str) -> None:
        self.raw = open(path, "rb")  # noqa: SIM115 - drained over many polls
        self.damage: str | None = None
        self._z = zlib.decompressobj(31)
        self._buf = b""
        self._done = False
        self._started = False  # input fed to the current member

    def _next_input(self) -> bytes | None:
        """The compressed bytes to feed next, or None at the end (damage noted)."""
        z = self._z
        if z.unconsumed_tail:
            return z.unconsumed_tail
        if z.eof:  # a member ended: another may follow
            rest = z.unused_data or self.raw.read(_GZ_CHUNK)
            while rest and not rest.strip(b"\x00"):
                rest = self.raw.read(_GZ_CHUNK)  # zero padding after the last member
            if not rest:
                return None
            self._z = zlib.decompressobj(31)
            return rest.lstrip(b"\x00")
        data = self.raw.read(_GZ_CHUNK)
        if not data:
            if self._started:
                self.damage = "cut short: the archive ends inside its compressed data"
            return None
        return data

    def read(self, n: int = -1) -> bytes:
        want = n if n >= 0 else 1 << 62
        while len(self._buf) < want and not self._done:
            data = self._next_input()
            if data is None:
                self._done = True
                break
            self._started = True
            try:
                self._buf += self._z.decompress(data, max(_GZ_CHUNK, want - len(self._buf)))
            except zlib.error as exc:
                self.damage = f"corrupt compressed data ({exc})"
                self._done = True
        out, self._buf = self._buf[:want], self._buf[want:]
        return out

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> _GzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pushback:
    """A read-only stream with some bytes put back in front (for compressed files)."""

    def __init__(self, inner: BinaryIO, front: bytes) -> None:
        self.inner = inner
        self.front = front

    def read(self, n: int = -1) -> bytes:
        if self.front:
            head, self.front = self.front, b""
            more = self.inner.read(max(0, n - len(head))) if n > len(head) else b""
            return head + more
        return self.inner.read(n)

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def damage(self) -> str | None:
        return _damage(self.inner)

    def close(self) -> None:
        self.inner.close()
