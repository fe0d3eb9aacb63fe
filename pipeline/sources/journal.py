"""The systemd journal as ``journal-json`` lines: batch reads and a supervised follower.

Both produce exactly what ``journalctl -o json --all`` prints, one JSON object per line
(string values, byte arrays as lists of ints, repeated fields as lists, ``__CURSOR``,
``__REALTIME_TIMESTAMP``, ``__MONOTONIC_TIMESTAMP`` and ``_BOOT_ID`` as strings), so the
``journal-json`` grammar and the prefilter treat them like a journal JSON file. Two backends:

``reader``
    python-systemd's ``systemd.journal.Reader`` (libsystemd in-process), used when it can be
    imported: ``pip install 'logwarden[journal]'``, which builds against ``libsystemd-dev``.
``journalctl``
    a ``journalctl -o json --all`` subprocess; needs only the ``systemd`` package.

``auto`` (the default) takes the reader when it is importable; the environment variable
``LOGWARDEN_JOURNAL_BACKEND`` (``auto``, ``reader``, ``journalctl``) overrides the default.

What a journal read is (:class:`JournalSpec`): this machine's journal, one directory
(``journalctl --directory``: its ``*.journal`` files and those of machine-id subdirectories)
or a set of files read together, interleaved by time (``journalctl --file``). Its display
name, used as the ``source`` of events and findings, is ``journal:local``,
``journal:<directory>`` or ``journal:<file>[,<file>...]``; the ``line`` of an event is the
1-based position of its entry in that read (line N of ``journalctl -o json`` with the same
selection and ``--since``/``--until``). The entry's ``__CURSOR`` is its stable reference.

journalctl behaviours this module works around (systemd 252):

* ``--since``/``--until`` do not accept ISO 8601 with ``T`` or an offset; times are passed as
  ``@<epoch seconds>.<microseconds>``. Both bounds are inclusive there; the engine applies its
  own half-open ``[since, until)`` to event times afterwards.
* without ``--all``, fields over 4096 bytes are printed as ``null``.
* ``--follow`` implies ``--boot`` (only the newest boot in the files) unless ``--merge`` is
  given, so a followed directory would never show a remote host's next boot: ``--merge`` is
  passed for directories and files. Following this machine's journal keeps the implicit
  ``--boot`` (``--merge`` would add other machines' journals), and every (re)start first
  reads what is already there without ``--follow`` (no boot filter), then follows.
* ``--follow --after-cursor=C`` shows at most 10 entries after C (the implicit ``--lines=10``)
  unless ``--no-tail`` is given: it always is.
* ``--after-cursor=C`` skips one entry blindly, assuming C's entry still exists; when its file
  has been vacuumed the first entry after it is lost. Reads after a cursor therefore use
  ``--cursor=C`` and drop the first line only when it is C's entry.
* ``--directory`` and ``--file`` cannot be combined, nor ``--since`` with ``--after-cursor``.
* ``--file`` takes glob patterns; file names are escaped.
* a truncated file given with ``--file`` fails the whole read (``Failed to open files: No
  data available``, status 1); inside ``--directory`` it is skipped with a warning on stderr.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO, cast

from pipeline.errors import InputError, Location, Problem, UsageError
from pipeline.sources.files import CHUNK_SIZE, MAX_LINE, Chunk, iter_chunks

JOURNALCTL = "journalctl"
BACKENDS = ("auto", "reader", "journalctl")
BACKEND_ENV = "LOGWARDEN_JOURNAL_BACKEND"

#: the cursor of a journal JSON line. Inside a JSON string every ``"`` is escaped, so this
#: can only match the real ``__CURSOR`` member, never message text.
CURSOR = re.compile(rb'"__CURSOR"\s*:\s*"([^"\\]+)"')

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
#: what makes journalctl print a value as a byte array instead of a string: control
#: characters other than tab and newline, C1 controls, and Unicode non-characters
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff"
    "\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff\U0004fffe\U0004ffff"
    "\U0005fffe\U0005ffff\U0006fffe\U0006ffff\U0007fffe\U0007ffff\U0008fffe\U0008ffff"
    "\U0009fffe\U0009ffff\U000afffe\U000affff\U000bfffe\U000bffff\U000cfffe\U000cffff"
    "\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff\U0010fffe\U0010ffff]"
)
_MACHINE_DIR = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class JournalSpec:
    """Which journal to read: this machine's (neither set), a directory, or files."""

    directory: str | None = None
    files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.directory is not None and self.files:
            raise UsageError("a journal read is a directory or files, not both")

    @property
    def display(self) -> str:
        if self.directory is not None:
            return f"journal:{self.directory}"
        if self.files:
            return "journal:" + ",".join(self.files)
        return "journal:local"


# -- journalctl commands ------------------------------------------------------------------


def journal_time(when: datetime | str) -> str:
    """A ``--since``/``--until`` value journalctl accepts: ``@seconds.micros`` for datetimes.

    Naive datetimes are taken as UTC. Strings are passed through unchanged.
    """
    if isinstance(when, str):
        return when
    micros = max(0, usec(when))
    return f"@{micros // 1_000_000}.{micros % 1_000_000:06d}"


def usec(when: datetime) -> int:
    """Microseconds since the epoch (naive datetimes are UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _US


def journal_command(
    *,
    directory: str | None = None,
    files: Sequence[str] = (),
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    after_cursor: str | None = None,
    follow: bool = False,
    lines: int | None = None,
    cursor: str | None = None,
    journalctl: str = JOURNALCTL,
) -> list[str]:
    """The ``journalctl -o json`` command line for one read.

    ``lines`` is ``--lines`` (the newest N entries); when following without it, ``--no-tail``
    is passed so that nothing after the start position is left out. ``cursor`` is
    ``--cursor`` (starting at that entry, or where it was).
    """
    if directory is not None and files:
        raise UsageError("journalctl reads a directory or files, not both")
    if sum(x is not None for x in (since, after_cursor, cursor)) > 1:
        raise UsageError("journalctl takes one of --since, --cursor and --after-cursor")
    cmd = [journalctl, "--output=json", "--all", "--no-pager"]
    if directory is not None:
        cmd.append(f"--directory={directory}")
    cmd.extend(f"--file={glob.escape(f)}" for f in files)
    if since is not None:
        cmd.append(f"--since={journal_time(since)}")
    if until is not None:
        cmd.append(f"--until={journal_time(until)}")
    if after_cursor is not None:
        cmd.append(f"--after-cursor={after_cursor}")
    if cursor is not None:
        cmd.append(f"--cursor={cursor}")
    if lines is not None:
        cmd.append(f"--lines={lines}")
    if follow:
        cmd.append("--follow")
        if lines is None:
            cmd.append("--no-tail")
        if directory is not None or files:
            cmd.append("--merge")
    return cmd


def find_journalctl(spec: JournalSpec | None = None) -> str:
    """The journalctl program, or :class:`InputError` when it is not installed."""
    found = shutil.which(JOURNALCTL)
    if found is None:
        raise InputError(
            "journalctl is not installed (it comes with the systemd package; or install "
            "python-systemd: pip install 'logwarden[journal]')",
            Location(spec.display) if spec else None,
        )
    return found


def reader_available() -> bool:
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        return False
    return True


def select_backend(backend: str | None = None) -> str:
    """``reader`` or ``journalctl`` for ``backend`` (default: ``$LOGWARDEN_JOURNAL_BACKEND``,
    then ``auto``)."""
    choice = backend or os.environ.get(BACKEND_ENV) or "auto"
    if choice not in BACKENDS:
        raise UsageError(
            f"unknown journal backend {choice!r}", hint=f"one of {', '.join(BACKENDS)}"
        )
    if choice == "auto":
        return "reader" if reader_available() else "journalctl"
    if choice == "reader" and not reader_available():
        raise InputError("python-systemd is not installed", hint="pip install 'logwarden[journal]'")
    return choice


def check_backend(backend: str | None = None) -> str:
    """The backend journal reads will use; :class:`InputError` when none can work."""
    chosen = select_backend(backend)
    if chosen == "journalctl":
        find_journalctl()
    return chosen


def line_cursor(line: bytes | bytearray) -> str | None:
    """The ``__CURSOR`` of one line."""
    m = CURSOR.search(line)
    return m.group(1).decode("ascii", "replace") if m else None


def drop_cursor_line(data: bytes, cursor: str) -> bytes:
    """``data`` without its first line when that line is the entry at ``cursor``."""
    end = data.find(b"\n") + 1 or len(data)
    return data[end:] if line_cursor(data[:end]) == cursor else data


def last_cursor(data: bytes | bytearray) -> str | None:
    """The ``__CURSOR`` of the last line in ``data`` (whole lines), without parsing JSON."""
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    start = data.rfind(b"\n", 0, end) + 1
    m = CURSOR.search(data, start, end)
    return m.group(1).decode("ascii", "replace") if m else None


# -- python-systemd: the same lines as journalctl ------------------------------------------


def _json_value(raw: bytes) -> str | list[int]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return list(raw)
    return list(raw) if _UNPRINTABLE.search(text) else text


def entry_json(
    fields: dict[str, Any], realtime: int, monotonic: int, boot_id: bytes, cursor: str
) -> bytes:
    """One entry as ``journalctl -o json`` prints it, from python-systemd's raw values."""
    obj: dict[str, object] = {
        "__CURSOR": cursor,
        "__REALTIME_TIMESTAMP": str(realtime),
        "__MONOTONIC_TIMESTAMP": str(monotonic),
        "_BOOT_ID": boot_id.hex(),
    }
    for key, value in fields.items():
        if key == "_BOOT_ID":  # journalctl prints the entry header's boot id instead
            continue
        if isinstance(value, list):
            obj[key] = [_json_value(v) for v in value]
        else:
            obj[key] = _json_value(value)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _open_reader(spec: JournalSpec) -> Any:
    from systemd import journal

    if spec.directory is not None:
        reader = journal.Reader(path=spec.directory)
    elif spec.files:
        reader = journal.Reader(files=list(spec.files))
    else:
        reader = journal.Reader(flags=journal.LOCAL_ONLY)
    reader.data_threshold = 0  # whole values, like --all
    return reader


def _watch(reader: Any) -> None:
    """Make libsystemd watch the files (inotify is set up only once its fd is asked for),
    so that process() sees appended entries, new files and deleted ones."""
    reader.fileno()


def _reader_line(reader: Any) -> tuple[bytes, str, int]:
    """The current entry as a JSON line, its cursor and its realtime."""
    realtime = int(reader._get_realtime())
    monotonic = reader._get_monotonic()
    cursor = str(reader._get_cursor())
    line = entry_json(reader._get_all(), realtime, int(monotonic[0]), bytes(monotonic[1]), cursor)
    return line, cursor, realtime


def _directory_files(directory: str) -> list[str]:
    """The journal files ``sd_journal_open_directory`` reads in ``directory``."""
    found: list[str] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return found
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith((".journal", ".journal~")):
            found.append(path)
        elif _MACHINE_DIR.match(name) and os.path.isdir(path):
            found.extend(
                os.path.join(path, n)
                for n in sorted(os.listdir(path))
                if n.endswith((".journal", ".journal~"))
            )
    return found


def _reader_check_directory(spec: JournalSpec, report: Callable[[Problem], None]) -> None:
    """Report the files of a directory libsystemd would skip silently (journalctl warns)."""
    from systemd import journal

    assert spec.directory is not None
    for path in _directory_files(spec.directory):
        try:
            journal.Reader(files=[path]).close()
        except OSError as exc:
            report(
                Problem(
                    "journal-warning",
                    Location(spec.display),
                    f"journal file {path} skipped: {exc.strerror or exc}",
                )
            )


def _iter_reader(
    spec: JournalSpec,
    report: Callable[[Problem], None],
    *,
    since: datetime | None,
    until: datetime | None,
    after_cursor: str | None,
    chunk_size: int,
    max_line: int,
) -> Iterator[Chunk]:
    display = spec.display
    try:
        reader = _open_reader(spec)
    except OSError as exc:
        report(Problem("journal-error", Location(display), f"cannot open: {exc.strerror or exc}"))
        return
    if spec.directory is not None:
        _reader_check_directory(spec, report)
    until_us = usec(until) if until is not None else None
    line_no = 1
    first = 1
    lines: list[bytes] = []
    size = 0
    skip = after_cursor  # the entry at the cursor itself, if it still exists
    try:
        if after_cursor is not None:
            reader.seek_cursor(after_cursor)
        elif since is not None:
            reader.seek_realtime(max(0, usec(since)))
        while reader._next(1):
            if skip is not None:
                at_cursor = reader.test_cursor(skip)
                skip = None
                if at_cursor:
                    continue
            line, _cursor, realtime = _reader_line(reader)
            if until_us is not None and realtime > until_us:
                break
            if len(line) > max_line:
                report(
                    Problem(
                        "line-too-long",
                        Location(display, line_no),
                        f"longer than {max_line} bytes; cut to that length",
                    )
                )
                line = line[:max_line] + b"\n"
            lines.append(line)
            size += len(line)
            line_no += 1
            if size >= chunk_size:
                yield Chunk(b"".join(lines), first)
                first = line_no
                lines.clear()
                size = 0
    except OSError as exc:
        report(Problem("journal-error", Location(display, line_no), f"read: {exc.strerror or exc}"))
    finally:
        reader.close()
    if lines:
        yield Chunk(b"".join(lines), first)


# -- journalctl: batch -----------------------------------------------------------------------


def _stderr_lines(err: IO[bytes]) -> list[str]:
    err.seek(0)
    text = err.read(64 * 1024).decode("utf-8", "replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _iter_journalctl(
    spec: JournalSpec,
    report: Callable[[Problem], None],
    *,
    since: datetime | None,
    until: datetime | None,
    after_cursor: str | None,
    chunk_size: int,
    max_line: int,
) -> Iterator[Chunk]:
    display = spec.display
    cmd = journal_command(
        directory=spec.directory,
        files=spec.files,
        since=since,
        until=until,
        cursor=after_cursor,  # not --after-cursor: see the module's notes
        journalctl=find_journalctl(spec),
    )
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            stream = cast(BinaryIO, proc.stdout)
            shift = 0
            for chunk in iter_chunks(stream, display, report, chunk_size, max_line):
                if after_cursor is not None and chunk.first_line == 1:
                    data = drop_cursor_line(chunk.data, after_cursor)
                    shift = 1 if len(data) < len(chunk.data) else 0
                    if data:
                        yield Chunk(data, 1)
                    continue
                yield Chunk(chunk.data, chunk.first_line - shift)
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            status = proc.wait()
        messages = _stderr_lines(err)
    if status != 0:
        detail = f"journalctl exited with status {status}"
        if messages:
            detail += ": " + "; ".join(messages[-5:])
        report(Problem("journal-error", Location(display), detail))
    else:
        for message in messages:
            report(Problem("journal-warning", Location(display), message))


def iter_journal(
    spec: JournalSpec,
    report: Callable[[Problem], None],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    after_cursor: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_line: int = MAX_LINE,
    backend: str | None = None,
) -> Iterator[Chunk]:
    """The entries of one journal read as chunks of whole ``journal-json`` lines.

    Chunks suit ``LineProcessor.process(chunk.data, chunk.first_line)``. Failures of the read
    (journalctl's exit status and messages, files libsystemd cannot open) are reported as
    ``journal-error`` problems located at the read's display name and end the read; warnings
    (a truncated file skipped in a directory) are ``journal-warning`` problems. Raises only
    :class:`InputError` when neither python-systemd nor journalctl is available.
    """
    if select_backend(backend) == "reader":
        return _iter_reader(
            spec,
            report,
            since=since,
            until=until,
            after_cursor=after_cursor,
            chunk_size=chunk_size,
            max_line=max_line,
        )
    find_journalctl(spec)  # raise now, not at the first next()
    return _iter_journalctl(
        spec,
        report,
        since=since,
        until=until,
        after_cursor=after_cursor,
        chunk_size=chunk_size,
        max_line=max_line,
    )


# -- following -----------------------------------------------------------------------------


class JournalFollower:
    """New journal entries as they are written, as whole ``journal-json`` lines.

    Where it starts: after ``after_cursor``; else at ``since``; else at the oldest entry when
    ``from_start``; else after the newest entry present now. :meth:`poll` never blocks and
    returns the whole lines available now; :attr:`cursor` is the ``__CURSOR`` of the last
    line handed out, the position to save and pass back as ``after_cursor`` later.

    With journalctl, a reader thread runs ``journalctl`` (first without ``--follow`` for
    what is already there, then with it) and queues whole lines; when the subprocess dies it
    is started again after the last line read, with a backoff that doubles from
    ``min_backoff`` to ``max_backoff`` seconds and resets once a run has lasted a minute.
    With python-systemd, :meth:`poll` reads the journal in-process and reopens it at the
    cursor after an error, with the same backoff (reset by the next successful read).
    Either way rotation and vacuuming are followed (libsystemd watches the files with
    inotify), :attr:`restarts` counts the restarts and :meth:`take_problems` returns what
    went wrong since the last call. Lines carry no line numbers: a caller feeding them to
    ``LineProcessor.process`` keeps its own count.
    """

    def __init__(
        self,
        spec: JournalSpec | None = None,
        *,
        after_cursor: str | None = None,
        since: datetime | None = None,
        from_start: bool = False,
        backend: str | None = None,
        min_backoff: float = 0.2,
        max_backoff: float = 30.0,
        queue_blocks: int = 256,
    ) -> None:
        if after_cursor is not None and since is not None:
            raise UsageError("start after a cursor or at a time, not both")
        self.spec = spec or JournalSpec()
        self.backend = select_backend(backend)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.restarts = 0
        #: position of the last line handed out by poll()
        self.cursor: str | None = after_cursor
        self._since = since
        self._mode = (
            "cursor" if after_cursor else "since" if since else "start" if from_start else "end"
        )
        self._problems: list[Problem] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._pending = bytearray()
        self._delay = min_backoff
        # journalctl backend
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=queue_blocks)
        self._proc: subprocess.Popen[bytes] | None = None
        self._read_cursor: str | None = after_cursor  # last whole line queued
        self._thread: threading.Thread | None = None
        # reader backend
        self._reader: Any = None
        self._retry_at = 0.0
        self._skip_cursor: str | None = None
        self._held: tuple[bytes, str] | None = None
        if self.backend == "journalctl":
            self._journalctl = find_journalctl(self.spec)
            self._thread = threading.Thread(
                target=self._run, name=f"journal-follow {self.spec.display}", daemon=True
            )
            self._thread.start()
        else:
            self._open()

    # -- common ---------------------------------------------------------------------------

    def _report(self, kind: str, detail: str) -> None:
        with self._lock:
            self._problems.append(Problem(kind, Location(self.spec.display), detail))

    def take_problems(self) -> list[Problem]:
        """Problems since the last call (journalctl exits, journal errors), oldest first."""
        with self._lock:
            out, self._problems = self._problems, []
        return out

    @property
    def pid(self) -> int | None:
        """The running journalctl's process id (journalctl backend), else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def poll(self, max_bytes: int = CHUNK_SIZE) -> bytes:
        """Whole lines available now, about ``max_bytes`` at most (at least one line if any
        is waiting); ``b""`` when there is nothing new. Never blocks."""
        if self._closed.is_set():
            return b""
        if self.backend == "journalctl":
            return self._poll_queue(max_bytes)
        return self._poll_reader(max_bytes)

    def close(self) -> None:
        """Stop following: end the subprocess or close the journal."""
        self._closed.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> JournalFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- journalctl backend ----------------------------------------------------------------

    def _poll_queue(self, max_bytes: int) -> bytes:
        pending = self._pending
        while len(pending) < max_bytes:
            try:
                pending += self._queue.get_nowait()
            except queue.Empty:
                break
        if not pending:
            return b""
        if len(pending) <= max_bytes:
            cut = len(pending)
        else:
            cut = pending.rfind(b"\n", 0, max_bytes) + 1 or pending.find(b"\n") + 1
        out = bytes(pending[:cut])
        del pending[:cut]
        cursor = last_cursor(out)
        if cursor is not None:
            self.cursor = cursor
        return out

    def _position(self) -> dict[str, Any]:
        if self._read_cursor is not None:
            return {"cursor": self._read_cursor}
        if self._mode == "since":
            return {"since": self._since}
        return {}

    def _run(self) -> None:
        while not self._closed.is_set():
            started = time.monotonic()
            try:
                self._run_once()
            except Exception as exc:  # keep following whatever went wrong in one run
                self._report("journal-error", f"{type(exc).__name__}: {exc}")
            if self._closed.is_set():
                return
            if time.monotonic() - started > 60:
                self._delay = self.min_backoff
            self.restarts += 1
            self._closed.wait(self._delay)
            self._delay = min(self._delay * 2, self.max_backoff)

    def _run_once(self) -> None:
        spec = self.spec
        # 1. what is there already (no --follow: no implicit --boot); in "end" mode only the
        #    newest entry, whose cursor is the start position and which is not handed out
        baseline = self._mode == "end" and self._read_cursor is None
        cmd = journal_command(
            directory=spec.directory,
            files=spec.files,
            lines=1 if baseline else None,
            journalctl=self._journalctl,
            **self._position(),
        )
        status, messages = self._pump(cmd, baseline=baseline, skip=self._read_cursor)
        if self._closed.is_set():
            return
        if status != 0:
            self._report("journal-error", _exit_detail(status, messages))
            return
        if baseline:
            self._mode = "start"  # an empty journal: everything from now on is new
        for message in messages:
            self._report("journal-warning", message)
        # 2. follow after the last line read
        cmd = journal_command(
            directory=spec.directory,
            files=spec.files,
            follow=True,
            journalctl=self._journalctl,
            **self._position(),
        )
        status, messages = self._pump(cmd, skip=self._read_cursor)
        if not self._closed.is_set():
            self._report("journal-error", _exit_detail(status, messages, following=True))

    def _pump(
        self, cmd: list[str], *, baseline: bool = False, skip: str | None = None
    ) -> tuple[int, list[str]]:
        """Run one journalctl, queue its whole lines; its exit status and messages.

        ``skip``: the cursor the read starts at (``--cursor``), whose entry was handed out
        before and is dropped when it comes first.
        """
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
                )
            except OSError as exc:
                return 127, [f"cannot run {cmd[0]}: {exc.strerror or exc}"]
            self._proc = proc
            if self._closed.is_set():
                proc.terminate()
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            carry = b""
            try:
                while True:
                    block = os.read(fd, 64 * 1024)
                    if not block:
                        break
                    data = carry + block if carry else block
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:
                        carry = data
                        continue
                    whole, carry = data[:cut], data[cut:]
                    if skip is not None:
                        whole = drop_cursor_line(whole, skip)
                        skip = None
                        if not whole:
                            continue
                    cursor = last_cursor(whole)
                    if not baseline and not self._put(whole):
                        break
                    if cursor is not None:
                        self._read_cursor = cursor
                    # a partial line left when journalctl dies is read again after the cursor
            finally:
                proc.stdout.close()
                if proc.poll() is None:
                    proc.terminate()
                try:
                    status = proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    status = proc.wait()
            return status, _stderr_lines(err)

    def _put(self, block: bytes) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(block, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # -- python-systemd backend -------------------------------------------------------------

    def _open(self) -> None:
        try:
            reader = _open_reader(self.spec)
            _watch(reader)
            position = self.cursor
            if position is not None:
                reader.seek_cursor(position)
                self._skip_cursor = position
            elif self._mode == "since" and self._since is not None:
                reader.seek_realtime(max(0, usec(self._since)))
            elif self._mode == "end":
                reader.seek_tail()
                if reader._previous(1):
                    self.cursor = str(reader._get_cursor())
                else:
                    reader.seek_head()
                self._mode = "start"
        except OSError as exc:
            self._failed(f"cannot open the journal: {exc.strerror or exc}")
            return
        self._reader = reader

    def _failed(self, detail: str) -> None:
        self._report("journal-error", detail)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.restarts += 1
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.max_backoff)

    def _poll_reader(self, max_bytes: int) -> bytes:
        if self._reader is None:
            if time.monotonic() < self._retry_at:
                return b""
            self._open()
            if self._reader is None:
                return b""
        reader = self._reader
        out: list[bytes] = []
        size = 0
        cursor = self.cursor
        try:
            if self._held is not None:
                line, cursor = self._held
                self._held = None
                out.append(line)
                size += len(line)
            reader.process()
            while size < max_bytes and reader._next(1):
                if self._skip_cursor is not None:
                    skip = reader.test_cursor(self._skip_cursor)
                    self._skip_cursor = None
                    if skip:
                        continue
                line, entry_cursor, _ = _reader_line(reader)
                if out and size + len(line) > max_bytes:
                    self._held = (line, entry_cursor)
                    break
                out.append(line)
                size += len(line)
                cursor = entry_cursor
        except OSError as exc:
            self.cursor = cursor
            self._failed(f"reading the journal: {exc.strerror or exc}")
            return b"".join(out)
        self.cursor = cursor
        if out:
            self._delay = self.min_backoff
        return b"".join(out)


def _exit_detail(status: int, messages: list[str], *, following: bool = False) -> str:
    what = "journalctl --follow" if following else "journalctl"
    how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
    detail = f"{what} {how}; restarting after the last entry read"
    if messages:
        detail += ": " + "; ".join(messages[-5:])
    return detail
