"""Batch file input: expanding paths, ordering rotated sets, decompressing, chunking.

A chunk is a run of whole lines read in one go, so that the prefilter can search large
buffers at C speed. Over-long lines are cut at :data:`MAX_LINE` bytes, and a truncated or
corrupt archive ends its file with a located problem instead of an exception.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import mmap
import os
import queue
import re
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from pipeline.errors import InputError, Location, Problem

try:  # an optional speed-up: ISA-L's gzip; the output is the same without it
    from isal import igzip as _igzip
except ImportError:  # pragma: no cover - platforms without a wheel
    _igzip = None  # type: ignore[assignment]

#: lines longer than this are cut (and counted): 64 KiB, like rsyslog's largest messages
MAX_LINE = 64 * 1024
#: bytes read at a time; large enough for C-speed searching, small enough to bound memory
#: (4 MiB: the same speed as 8 MiB on the bench file, 30 MB less at a scan's peak)
CHUNK_SIZE = 4 * 1024 * 1024
#: decompressed bytes read per step, so a truncated archive loses little
READ_STEP = 64 * 1024

#: how every gzip member starts: the magic and the deflate method
_GZIP_MEMBER = b"\x1f\x8b\x08"
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
_ROTATED_NUM = re.compile(r"^(?P<base>.+)\.(?P<n>\d+)$")
_ROTATED_DATE = re.compile(r"^(?P<base>.+)-(?P<d>\d{8}(?:\d{2})?)$")
_COMPRESSED_EXT = (".gz", ".bz2", ".xz")
STDIN = "-"
#: files a directory walk passes over: rules, configs, docs and code kept beside logs
#: (named on the command line they are read like any file)
NOT_LOGS = (".yaml", ".yml", ".md", ".rst", ".py")


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input: a path (``-`` for stdin) and what is known about it before reading."""

    path: str
    compression: str | None = None
    mtime: float | None = None
    #: bytes on disk, when known (URLs)
    size: int | None = None
    #: the name shown in findings and problems when it is not ``path`` (a relative path a
    #: remote worker opens as an absolute one)
    label: str | None = None

    @property
    def display(self) -> str:
        if self.label is not None:
            return self.label
        return "<stdin>" if self.path == STDIN else self.path


@dataclass(slots=True)
class Chunk:
    """Whole lines ``data`` (ending in ``\\n`` except perhaps at the end of input) whose
    first line is line number ``first_line`` (1-based) of the file."""

    data: bytes
    first_line: int


def detect_compression(path: str) -> str | None:
    """The compression of a file by its magic bytes; ``None`` for a pipe (``<(zcat x)``),
    whose bytes a look would consume: :func:`open_input` peeks at it as it reads instead."""
    if not _regular(path):
        return None
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def rotation_key(path: str) -> tuple[str, str, int, int, str]:
    """Sort key putting a rotated set oldest first: ``x.3.gz, x.2.gz, x.1, x``."""
    p = Path(path)
    name = p.name
    for ext in _COMPRESSED_EXT:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    if m := _ROTATED_NUM.match(name):
        return (str(p.parent), m["base"], 0, -int(m["n"]), "")
    if m := _ROTATED_DATE.match(name):
        return (str(p.parent), m["base"], 1, 0, m["d"])
    return (str(p.parent), name, 2, 0, "")


def rotation_set(path: str) -> str:
    """The rotation set ``path`` belongs to, named by its live file: ``/var/log/mail.log``
    for ``mail.log``, ``mail.log.1`` and ``mail.log.2.gz`` (``mail.log-20261130`` too).

    Local paths are made absolute, so a set has one name however its members are written;
    URLs keep their scheme and host. Stdin is a set of its own, ``-``.
    """
    if path == STDIN:
        return STDIN
    if is_url(path):
        parent, _, name = path.rpartition("/")
        return f"{parent}/{rotation_key(name)[1]}"
    _, base, *_ = rotation_key(path)
    return os.path.join(os.path.dirname(os.path.abspath(path)), base)


def _input_order(inp: InputFile) -> tuple[tuple[str, ...], str, int, int, str]:
    """Rotation sets by directory (as a walk visits them) and name, members of a set oldest
    first (see :func:`rotation_key`)."""
    name = inp.path.rpartition("/")[2] if is_url(inp.path) else inp.path
    _, _, kind, num, date = rotation_key(name)
    where, _, base = rotation_set(inp.path).rpartition("/")
    return (tuple(where.split("/")), base, kind, num, date)


#: bytes no text log holds (control characters other than tab, newlines, FF, VT, ESC)
_TEXT_BYTES = bytes(b for b in range(256) if b >= 0x20 or b in b"\t\n\r\f\v\x1b")


def _looks_binary(path: str) -> bool:
    """A NUL byte in the first 4 KiB, unless the rest reads as lines of text.

    An unclean shutdown leaves runs of NULs in a text log (blocks allocated, never
    written); such a file is read, and its NULs are reported as ``nul-byte`` problems. A
    binary file (wtmp, a database) has no newline between its NULs, or control bytes. A
    head of NULs only is judged by the first 4 KiB of text after it (within 1 MiB)."""
    with open(path, "rb") as f:
        head = f.read(4096)
        if b"\x00" not in head:
            return False
        text = head.replace(b"\x00", b"")
        for _ in range(256):
            if len(text) >= 4096:
                break
            more = f.read(4096)
            if not more:
                break
            text += more.replace(b"\x00", b"")
    text = text[:4096]
    control = len(text.translate(None, _TEXT_BYTES))
    return b"\n" not in text or control * 100 > len(text)


def expand_inputs(paths: list[str], problems: list[Problem] | None = None) -> list[InputFile]:
    """Turn PATH arguments (files, directories, globs, URLs, ``-``) into ordered inputs.

    The inputs are ordered by rotation set (:func:`rotation_set`, by name) and within a set
    oldest first, whatever the order of the arguments: ``mail.log*`` expanded by the shell
    reads as the quoted glob does. A named path that does not exist raises
    :class:`InputError`. Inside directories, files that are binary (a NUL byte in their
    first 4 KiB and no compression magic) are skipped with an ``unknown-format`` problem;
    a subdirectory a walk cannot read, and what a walk or a glob finds that is not a
    regular file, are problems located at that path.
    """
    out: list[InputFile] = []
    seen: set[str] = set()

    def note(problem: Problem) -> None:
        if problems is None:
            if problem.kind == "unreadable":
                raise InputError(f"cannot read: {problem.detail}", problem.location)
            return
        problems.append(problem)

    for arg in paths:
        if arg == STDIN:
            out.append(InputFile(STDIN, None, None))
            continue
        if is_url(arg):
            for url_input in _expand_url(arg):
                if url_input.path not in seen:
                    seen.add(url_input.path)
                    out.append(url_input)
            continue
        if any(ch in arg for ch in "*?[") and not os.path.exists(arg):
            candidates = sorted(glob.glob(arg, recursive=True))
            if not candidates:
                raise InputError("no file matches this pattern", Location(arg))
            walked, listed = False, True
        elif os.path.isdir(arg):
            candidates = _walk(arg, note)
            walked, listed = True, True
        elif os.path.exists(arg):
            if not os.path.isfile(arg) and not stat.S_ISFIFO(os.stat(arg).st_mode):
                raise InputError("not a regular file", Location(arg))
            candidates = [arg]
            walked, listed = False, False
        else:
            raise InputError("no such file or directory", Location(arg))
        for path in candidates:
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            if listed and not os.path.isfile(path):
                # a FIFO, socket or device in a log directory: reading it could block
                what = "a directory (a pattern reads files only)" if os.path.isdir(path) else ""
                note(Problem("skipped", Location(path), what or "not a regular file"))
                continue
            try:
                comp = detect_compression(path)
                if walked and comp is None and _looks_binary(path):
                    if problems is not None:
                        problems.append(
                            Problem("unknown-format", Location(path), "binary file skipped")
                        )
                    continue
                mtime = os.stat(path).st_mtime
            except OSError as exc:
                if problems is not None:
                    problems.append(Problem("unreadable", Location(path), exc.strerror or ""))
                    continue
                raise InputError(f"cannot read: {exc.strerror}", Location(path)) from None
            out.append(InputFile(path, comp, mtime))
    out.sort(key=_input_order)
    return out


def _walk(top: str, note: Callable[[Problem], None]) -> list[str]:
    """The files under ``top`` (not rules, configs or docs), subdirectories sorted; a
    subdirectory that cannot be listed and a link to a directory (not followed) are noted."""

    def unreadable(exc: OSError) -> None:
        where = exc.filename if isinstance(exc.filename, str) else top
        note(Problem("unreadable", Location(where), exc.strerror or str(exc)))

    found: list[str] = []
    for root, dirs, files in os.walk(top, onerror=unreadable):
        dirs.sort()
        for d in dirs:
            if os.path.islink(os.path.join(root, d)):
                note(
                    Problem(
                        "skipped",
                        Location(os.path.join(root, d)),
                        "a link to a directory (not followed; name it to read it)",
                    )
                )
        found.extend(os.path.join(root, f) for f in files if not f.endswith(NOT_LOGS))
    return found


def is_url(path: str) -> bool:
    """``s3://bucket/x.log``, ``file:///var/log/syslog``: a path read through fsspec."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum()


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:
        raise InputError(
            "reading URLs needs fsspec", hint="install logwarden[dask] or pip install fsspec"
        ) from None
    return fsspec


def _expand_url(url: str) -> list[InputFile]:
    """The files a URL (or URL glob) names, with compression from the first bytes."""
    fsspec = _fsspec()
    try:
        fs, _, names = fsspec.get_fs_token_paths(url)
    except (ValueError, ImportError) as exc:
        raise InputError(f"cannot read this URL: {exc}", Location(url)) from None
    if not names:
        raise InputError("no file matches this URL", Location(url))
    found: list[InputFile] = []
    for name in sorted(names):
        full = fs.unstrip_protocol(name)
        try:
            info = fs.info(name)
            if info.get("type") == "directory":
                continue
            with fs.open(name, "rb") as f:
                head = f.read(6)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read: {exc}", Location(full)) from None
        comp = next((c for magic, c in _MAGIC.items() if head.startswith(magic)), None)
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
        if hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        found.append(InputFile(full, comp, float(mtime) if mtime else None, int(info["size"])))
    return found


def _open_url(inp: InputFile) -> BinaryIO:
    opened = _fsspec().open(inp.path, "rb", compression=None).open()
    if inp.compression == "gzip":
        return cast(BinaryIO, gzip.GzipFile(fileobj=opened, mode="rb"))
    if inp.compression == "bzip2":
        return cast(BinaryIO, bz2.BZ2File(opened, "rb"))
    if inp.compression == "xz":
        return cast(BinaryIO, lzma.LZMAFile(opened, "rb"))
    return cast(BinaryIO, opened)


def line_starts(inp: InputFile, size: int, part_size: int, start: int = 0) -> list[int]:
    """Offsets cutting a plain file from ``start`` (a line start) to ``size`` into ranges of
    about ``part_size`` bytes at line starts.

    The first offset is ``start``; each other one is just after a newline, so every range
    holds whole lines. A line longer than a range merges the ranges it covers. Nothing
    before ``start`` is read.
    """
    starts = [start]
    with open_input(inp) as f:
        for nominal in range(start + part_size, size, part_size):
            if nominal <= starts[-1]:
                continue
            f.seek(nominal - 1)
            pos = nominal - 1
            while True:
                block = f.read(READ_STEP)
                if not block:
                    return starts
                nl = block.find(b"\n")
                if nl >= 0:
                    cut = pos + nl + 1
                    if cut < size:
                        starts.append(cut)
                    break
                pos += len(block)
    return starts


def last_line_end(fd: int, size: int) -> int:
    """The offset just after the last newline in the first ``size`` bytes of the open file
    ``fd`` (0 when there is none), read backwards in 64 KiB steps."""
    pos = size
    while pos > 0:
        begin = max(0, pos - READ_STEP)
        buf = os.pread(fd, pos - begin, begin)
        nl = buf.rfind(b"\n")
        if nl >= 0:
            return begin + nl + 1
        pos = begin
    return 0


def _member_header_at(m: mmap.mmap, pos: int) -> bool:
    """Whether the bytes at ``pos`` (the gzip magic and deflate method) read as the rest of
    a member header gzip, pigz, zlib or Python write: no reserved flag bits, the extra
    flags 0, 2 or 4, an operating system RFC 1952 names (0-13, or 255 for unknown)."""
    flg, xfl, os_id = m[pos + 3], m[pos + 8], m[pos + 9]
    return not flg & 0xE0 and xfl in (0, 2, 4) and (os_id <= 13 or os_id == 255)


def gzip_whole_size(path: str) -> int | None:
    """The decompressed length of a one-member gzip file modulo 2**32 (its ISIZE trailer),
    read without decompressing; ``None`` when only decompressing tells it: the file may hold
    more than one member (a member header follows its start: the magic, looked for at C
    speed, and a plausible header after it), is too short, or records 0 (zero padding)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 18:  # a 10-byte header, an empty deflate block, an 8-byte trailer
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:3] != _GZIP_MEMBER:
                return None
            pos = m.find(_GZIP_MEMBER, 1, size - 8)
            while pos >= 0:
                if pos + 20 <= size and _member_header_at(m, pos):
                    return None  # perhaps a second member: decompress to know
                pos = m.find(_GZIP_MEMBER, pos + 1, size - 8)
            isize = int.from_bytes(m[size - 4 : size], "little")
    return isize or None


class _FastGunzip:
    """ISA-L's gzip reader (about three times faster than the standard one) for a file.

    On a damaged archive ISA-L gives up a few KiB earlier than the standard reader, so
    then the standard reader takes over from the same point: exactly as much of a
    truncated archive is recovered as without ISA-L.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fileobj: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        opener: Any = _igzip.IGzipFile
        self._reader: Any = opener(fileobj=self.fileobj, mode="rb")
        self._done = 0
        self._standard = False

    def read1(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._reader.read1(size)
        except _ARCHIVE_ERRORS:
            if self._standard:
                raise
            self._take_over()
            data = self._reader.read1(size)
        self._done += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        want = size
        while want != 0:
            block = self.read1(want if want > 0 else READ_STEP)
            if not block:
                break
            parts.append(block)
            if want > 0:
                want -= len(block)
        return b"".join(parts)

    def _take_over(self) -> None:
        self.close()
        self.fileobj = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._reader = gzip.GzipFile(fileobj=self.fileobj, mode="rb")
        self._standard = True
        skip = self._done
        while skip > 0:  # what ISA-L already gave
            got = self._reader.read1(min(skip, READ_STEP))
            if not got:
                break
            skip -= len(got)

    def close(self) -> None:
        self._reader.close()
        self.fileobj.close()

    def __enter__(self) -> _FastGunzip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # opening it reports the error


def _peeked(stream: BinaryIO) -> BinaryIO:
    """A stream that can be read only once (stdin, a pipe), decompressed by its magic bytes
    seen without consuming them."""
    peek = getattr(stream, "peek", None)
    head = peek(6)[:6] if peek is not None else b""
    if head.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    if head.startswith(b"BZh"):
        return cast(BinaryIO, bz2.BZ2File(stream, "rb"))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.LZMAFile(stream, "rb"))
    return stream


def open_input(inp: InputFile) -> BinaryIO:
    """Open an input for binary reading, decompressing transparently."""
    if is_url(inp.path):
        return _open_url(inp)
    if inp.path == STDIN:
        return _peeked(sys.stdin.buffer)
    if inp.compression is None and not _regular(inp.path):
        return _peeked(open(inp.path, "rb"))  # a pipe: read once, its magic peeked at
    if inp.compression == "gzip":
        if _igzip is not None:
            return cast(BinaryIO, _FastGunzip(inp.path))
        return cast(BinaryIO, gzip.open(inp.path, "rb"))
    if inp.compression == "bzip2":
        return cast(BinaryIO, bz2.open(inp.path, "rb"))
    if inp.compression == "xz":
        return cast(BinaryIO, lzma.open(inp.path, "rb"))
    return open(inp.path, "rb")


_ARCHIVE_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, OSError)


def _blocks(
    read: Callable[[int], bytes], step: int, chunk_size: int, limit: int | None
) -> Iterator[bytes]:
    """Blocks of about ``chunk_size`` bytes; on an error, what was read first, then the error."""
    buf = bytearray()
    left = limit
    while True:
        if left is not None:
            if left <= 0:
                break
            step = min(step, left)
        try:
            block = read(step)
        except _ARCHIVE_ERRORS:
            if buf:
                yield bytes(buf)
            raise
        if not block:
            break
        if left is not None:
            left -= len(block)
        if not buf and len(block) >= chunk_size:
            yield block  # a plain file's full read: no copy
            continue
        buf += block
        if len(buf) >= chunk_size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


_DONE = object()


def _read_ahead(blocks: Iterator[bytes], depth: int = 1) -> Iterator[bytes]:
    """``blocks`` produced by a thread: decompression (which releases the GIL) overlaps
    with the parsing of the block before. Errors reach the consumer in order."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for block in blocks:
                if not put(block):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which reports or raises it
            put(exc)

    thread = threading.Thread(target=work, name="logwarden-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(bytes, item)
    finally:
        stop.set()
        thread.join()


def _read_blocks(
    stream: BinaryIO,
    display: str,
    report: Callable[[Problem], None],
    chunk_size: int,
    lines_so_far: Callable[[], int],
    limit: int | None = None,
) -> Iterator[bytes]:
    """Blocks of about ``chunk_size`` bytes; on a decompression error, what was read first.

    Decompressing streams are read with ``read1`` in small steps, so a truncated archive
    loses at most the last step's partial data, not a whole chunk, and they are read one
    block ahead in a thread.
    """
    compressed = isinstance(stream, (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile, _FastGunzip))
    step = min(chunk_size, READ_STEP) if compressed else chunk_size
    reader = getattr(stream, "read1", None) if compressed else None
    read = reader if reader is not None else stream.read
    blocks = _blocks(read, step, chunk_size, limit)
    try:
        yield from _read_ahead(blocks) if compressed else blocks
    except _ARCHIVE_ERRORS as exc:
        # decompressors raise EOFError / zlib.error / BadGzipFile / LZMAError (and bz2 a
        # plain OSError) for truncated or corrupt archives; plain files only read errors
        kind = "truncated-archive" if compressed else "read-error"
        report(Problem(kind, Location(display, lines_so_far()), str(exc) or type(exc).__name__))


def iter_chunks(
    stream: BinaryIO,
    display: str,
    report: Callable[[Problem], None],
    chunk_size: int = CHUNK_SIZE,
    max_line: int = MAX_LINE,
    limit: int | None = None,
    first_line: int = 1,
) -> Iterator[Chunk]:
    """Yield chunks of whole lines; cut lines over ``max_line`` bytes and report them.

    ``limit`` stops after that many bytes (a byte range of a plain file, already positioned);
    ``first_line`` is the number of the stream's first line (a file resumed after a prefix).

    A decompression error (truncated or corrupt archive) or a read error ends the input
    after the data read so far, with a ``truncated-archive`` / ``read-error`` problem
    located at the first line not read.
    """
    carry = b""
    line_no = first_line  # number of the first line in carry
    skipping = False  # inside an over-long line whose first max_line bytes were kept

    def too_long() -> None:
        report(
            Problem(
                "line-too-long",
                Location(display, line_no),
                f"longer than {max_line} bytes; cut to that length",
            )
        )

    # the lambda reads line_no as it is when an error happens: late binding is the point
    blocks = _read_blocks(stream, display, report, chunk_size, lambda: line_no, limit)
    for block in blocks:
        if skipping:
            nl = block.find(b"\n")
            if nl < 0:
                continue
            block = block[nl + 1 :]
            skipping = False
            yield Chunk(carry + b"\n", line_no)
            line_no += 1
            carry = b""
        cut = block.rfind(b"\n")
        if cut < 0:
            data = carry + block if carry else block
            if len(data) > max_line:
                too_long()
                carry = data[:max_line]
                skipping = True
            else:
                carry = data
            continue
        # one copy at most (the carry never holds a newline)
        if carry:
            whole = b"".join((carry, memoryview(block)[: cut + 1]))
        else:
            whole = block if cut == len(block) - 1 else block[: cut + 1]
        carry = block[cut + 1 :]
        block = b""  # not held while the next block is read
        yield Chunk(whole, line_no)
        line_no += whole.count(b"\n")
        if len(carry) > max_line:
            too_long()
            carry = carry[:max_line]
            skipping = True
    if carry:
        yield Chunk(carry, line_no)
