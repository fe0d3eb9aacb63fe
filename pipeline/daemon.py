"""``logwarden watch``: the tail daemon over the same engine as ``scan``.

One loop: wake up (inotify through watchdog, or the poll interval), read whole new lines
from every source, run them through per-file :class:`LineProcessor`s and the one
:class:`Detector`, then checkpoint — offsets, journal cursors, detection state and the new
findings — in one SQLite transaction, and only then write the findings to the outputs.
A finding's key is deterministic, so lines read again after a crash give the same keys and
the store refuses them as duplicates; an output write interrupted by a crash is completed at
the next start by comparing the output file's tail with the store.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from pipeline.config import WatchConfig, load_config
from pipeline.detection.correlate import paused_gc
from pipeline.detection.loader import load_rules
from pipeline.engine import (
    Engine,
    LineProcessor,
    LiveCopies,
    LogcheckHit,
    ScanOptions,
    ScanStats,
    TimeMark,
    Unparsed,
)
from pipeline.errors import LogwardenError, Problem
from pipeline.model import Event, Finding, Severity
from pipeline.sources.files import rotation_set
from pipeline.sources.tail import FileFollower, FileState
from pipeline.state import (
    StateCorrupt,
    StateDB,
    StateError,
    StateLock,
    StateWriteError,
    free_space,
    move_aside,
    size_text,
)
from pipeline.timeinfer import TimeResolver, parse_zone

log = logging.getLogger("logwarden")

DETECTOR_NAME = "watch"
#: bytes read per source per loop turn, so one busy file cannot starve the others
READ_BUDGET = 4 << 20
#: seconds between removals of old rows from the state database
PRUNE_EVERY = 3600.0
#: after a change notice, wait this long so one turn reads a burst of writes
COALESCE = 0.02
#: seconds between checkpoints when lines were read but nothing was found
CHECKPOINT_EVERY = 1.0
#: seconds between status records (``logwarden status``, ``--metrics``)
HEARTBEAT_EVERY = 1.0
#: lines/s are counted over this many seconds
RATE_WINDOW = 60
#: a running daemon whose status record is older than this many poll intervals (and at
#: least STALL_MIN seconds) is reported as stalled
STALL_POLLS = 3
STALL_MIN = 30.0
#: detection entries (restored, or grown by since the last time) from which what is alive
#: is moved out of garbage collection's way
FREEZE_AT = 100_000
#: seconds between log lines about detection state dropped at the table caps
DROPPED_LOG_EVERY = 60.0
#: after a failed write (a full disk): first retry after this many seconds, doubling up to
#: RETRY_MAX; a retry comes sooner once the file system has more free space than at the failure
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
#: a live daemon whose status record is older than this many heartbeats, on a file system
#: with less than LOW_SPACE bytes free, is reported as unable to write its status record
STATUS_STALE_BEATS = 3
LOW_SPACE = 1 << 20


@dataclass(frozen=True, slots=True)
class WriteFault:
    """A write the daemon could not make (the checkpoint, an output file): what, where, why,
    the free space then, since when, how often it was retried and when it is tried next.
    While one is set the daemon reads nothing new."""

    what: str  # "checkpoint" | "output"
    path: str
    error: str
    free_bytes: int | None
    since: float  # unix time of the first failure
    retries: int = 0
    next_retry: float = 0.0  # unix time
    due: float = 0.0  # time.monotonic() of the next retry

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "path": self.path,
            "error": self.error,
            "free_bytes": self.free_bytes,
            "since": self.since,
            "retries": self.retries,
            "next_retry": self.next_retry,
        }


class RollingCount:
    """Lines read in the last :data:`RATE_WINDOW` seconds, in one-second buckets; added to
    once per block read, never per line."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()

    def add(self, n: int, now: float) -> None:
        sec = int(now)
        if self.buckets and self.buckets[-1][0] == sec:
            self.buckets[-1][1] += n
        else:
            self.buckets.append([sec, n])
            while self.buckets[0][0] <= sec - RATE_WINDOW:
                self.buckets.popleft()

    def total(self, now: float) -> int:
        first = int(now) - RATE_WINDOW
        return sum(n for sec, n in self.buckets if sec > first)

    def rate(self, now: float, since: float) -> float:
        """Lines/s over the window, or over the time since ``since`` when that is shorter."""
        span = min(float(RATE_WINDOW), max(1.0, now - since))
        return self.total(now) / span


class JournalFormatter(logging.Formatter):
    """``<N>message`` under systemd (journald reads the level), else a plain prefix."""

    LEVELS: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if self.journal:
            return f"<{self.LEVELS.get(record.levelno, 6)}>{msg}"
        return f"logwarden[{os.getpid()}]: {record.levelname.lower()}: {msg}"


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(bool(os.environ.get("JOURNAL_STREAM"))))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def sd_notify(message: str) -> bool:
    """Tell systemd (``Type=notify``) something; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(addr)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


@dataclass
class SourceStats:
    lines: int = 0
    errors: int = 0
    #: matching events set aside as copies of ones read from another rotation set
    copies: int = 0
    rate: float = 0.0  # lines/s over the last minute, as of the last checkpoint
    last_read: float = 0.0
    problems: dict[str, int] = field(default_factory=dict)
    recent: RollingCount = field(default_factory=RollingCount)

    def restore(self, saved: dict[str, Any]) -> None:
        """Carry on the counts a checkpoint stored (``status`` and ``--metrics`` show
        them across restarts)."""
        self.lines = int(saved.get("lines", 0))
        self.errors = int(saved.get("errors", 0))
        self.copies = int(saved.get("copies", 0))
        problems = saved.get("problems")
        if isinstance(problems, dict):
            self.problems = {str(k): int(v) for k, v in problems.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "errors": self.errors,
            "copies": self.copies,
            "rate": round(self.rate, 1),
            "last_read": self.last_read,
            "problems": self.problems,
        }


class JsonlOutput:
    """Appends one JSON object per finding, the schema of ``scan --format jsonl``."""

    def __init__(self, path: str) -> None:
        self.path = str(Path(path).resolve())
        #: findings below this severity are not written (``watch --min-severity``)
        self.floor: Severity | None = None
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    def keys_after(self, offset: int) -> set[str]:
        """Keys already written after ``offset`` (a write the store did not confirm)."""
        keys: set[str] = set()
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                for raw in f:
                    try:
                        keys.add(json.loads(raw)["key"])
                    except (ValueError, KeyError, TypeError):
                        continue
        except FileNotFoundError:
            pass
        return keys

    def repair(self, offset: int) -> None:
        """Cut a record torn by a crash (no final newline) after ``offset``."""
        try:
            with open(self.path, "r+b") as f:
                size = f.seek(0, os.SEEK_END)
                if size <= offset:
                    return
                f.seek(size - 1)
                if f.read(1) == b"\n":
                    return
                f.seek(offset)
                data = f.read()
                cut = data.rfind(b"\n")
                f.truncate(offset + cut + 1 if cut >= 0 else offset)
        except FileNotFoundError:
            return

    def write(self, findings: list[Finding]) -> int:
        """Append ``findings``; returns the new size. A write that fails (ENOSPC) is cut
        off again, so the file never ends in a torn record while the write is retried."""
        if self.floor is not None:
            findings = [f for f in findings if f.severity >= self.floor]
        data = "".join(json.dumps(x.as_dict(), ensure_ascii=False) + "\n" for x in findings)
        view = memoryview(data.encode("utf-8"))
        # unbuffered: nothing is left in a buffer to be written after the cut
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)


class JournalSource:
    """The journal as a daemon source: a follower, its cursor checkpoint and a line count."""

    def __init__(
        self,
        config: WatchConfig,
        saved: tuple[dict[str, Any], dict[str, Any]] | None,
        report: Callable[[Problem], None],
        from_start: bool = False,
    ) -> None:
        from pipeline.sources.journal import JournalFollower, JournalSpec

        self.spec = JournalSpec(directory=config.journal_directory)
        self.name = self.spec.display
        cursor = saved[0].get("cursor") if saved else None
        self.line = int(saved[0].get("line", 0)) if saved else 0
        self.follower = JournalFollower(
            self.spec,
            after_cursor=cursor,
            from_start=(config.from_beginning or from_start) and cursor is None,
        )
        self.report = report

    def poll(self, max_bytes: int) -> bytes:
        for p in self.follower.take_problems():
            self.report(p)
        return self.follower.poll(max_bytes)

    def checkpoint(self) -> dict[str, Any]:
        return {"path": self.name, "cursor": self.follower.cursor, "line": self.line}

    def lag(self) -> int:
        return 0

    def close(self) -> None:
        self.follower.close()


#: settings a running daemon keeps until it restarts: where its state and output live,
#: whether and which journal it follows, the zone its open files are read in, and the
#: address it serves metrics on
RESTART_ONLY = ("state_dir", "output", "journal", "journal_directory", "tz", "metrics")


class Daemon:
    """The watch loop; :meth:`step` is one turn (tests drive it directly)."""

    #: unix time of the last checkpoint of this process (None before the first)
    _committed_at: float | None

    def __init__(
        self,
        config: WatchConfig,
        *,
        config_path: str | None = None,
        overrides: dict[str, Any] | None = None,
        reset_state: bool = False,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._cli_overrides = dict(overrides or {})
        # one daemon per state directory, held until close() (or the process dies)
        lock = StateLock(config.state_path)
        used_before = lock.path.exists()
        self.lock = lock.acquire()
        if used_before and not Path(config.state_path).exists():
            log.warning(
                "%s: this state directory was used before, but its state database is gone; "
                "starting as on a first run (lines logged since the last stop are not read)",
                config.state_path,
            )
        try:
            self.state = open_state(config.state_path, reset=reset_state)
            self._init(config)
        except BaseException:
            if hasattr(self, "state"):
                self.state.close()
            self.lock.release()
            raise

    def _init(self, config: WatchConfig) -> None:
        self.engine = self._engine(config)
        #: detection entries when the garbage collector last had them frozen out of its way
        self._frozen_size = 0
        self.detector = self.engine.new_detector()
        self.detector.track_changes()
        saved = self.state.load_detector(DETECTOR_NAME)
        if saved is not None:
            try:
                began = time.monotonic()
                # a whole snapshot (an older logwarden) is read once, then stored row by row
                with paused_gc():
                    self.detector.restore(saved, self.state.detector_rows(DETECTOR_NAME))
                if self.detector.stored_size() >= FREEZE_AT:
                    # restored rows stay: later collections need not walk them again
                    gc.freeze()
                    self._frozen_size = self.detector.stored_size()
                log.info(
                    "restored detection state (%d remembered entries) in %.2f s",
                    self.detector.stored_size(),
                    time.monotonic() - began,
                )
            except (ValueError, KeyError, TypeError) as exc:
                log.error("detection state could not be restored (%s); starting it afresh", exc)
                self.detector.stats.dropped_state.append("*")
        self.followers: dict[str, FileFollower] = {}
        self.processors: dict[str, LineProcessor] = {}
        #: the followed path (config entry) each file processor reads, for its host
        self._proc_source: dict[str, str] = {}
        self.stats: dict[str, SourceStats] = {}
        self.scan_stats = ScanStats()
        #: one event read from two rotation sets (mail.log and syslog) is detected once
        self.copies = LiveCopies()
        self.outputs = [JsonlOutput(config.output)] if config.output else []
        self._setup_notify(config)
        self.saved_sources = self.state.source_states()
        self.wake = threading.Event()
        #: set by signals only: a paused daemon (a failed write) waits on it, not on ``wake``
        self._interrupt = threading.Event()
        self._stop = False
        self._reload = False
        self._observer: Any = None
        self._running = False
        self._last_prune = 0.0
        self._looked = False
        self._touched: dict[str, Any] = {}
        #: ``--since``/``--until`` on a first run (no saved offsets): lines stamped before
        #: the start are read from the files' start and kept only inside the window
        self._window: tuple[datetime, datetime | None, datetime | None] | None = None
        if (config.since or config.until) and not self.saved_sources:
            self._window = (datetime.now(UTC), config.since, config.until)
        self.journal: JournalSource | None = None
        if config.journal or config.journal_directory:
            self._start_journal()
        self._last_commit = time.monotonic()
        #: a write that failed and is being retried; findings of failed checkpoints held
        #: until one succeeds; whether stored findings still wait to be written to outputs
        self.fault: WriteFault | None = None
        self._held: dict[str, Finding] = {}
        self._unwritten = False
        self._status_failed = False
        self._init_health(saved)

    # -- set-up ------------------------------------------------------------------------------

    def _setup_notify(self, config: WatchConfig) -> None:
        from pipeline.notify.notifiers import parse_notifiers
        from pipeline.notify.outbox import Deliverer
        from pipeline.notify.route import router

        floor = Severity.parse(config.min_severity) if config.min_severity else None
        for output in self.outputs:
            output.floor = floor
        self.notifiers = parse_notifiers(
            config.notify, config.source or "<config>", config.notify_urls
        )
        rules = self.engine.rules + self.engine.imported_rules()
        self.route = router(self.notifiers, rules, floor) if self.notifiers else None
        old = getattr(self, "deliverer", None)
        if old is not None:
            # wait for a send in flight, so the new worker cannot send the same row again
            old.stop(timeout=None)
        self.deliverer = (
            Deliverer(
                config.state_path,
                self.notifiers,
                retry_base=config.notify_retry,
                log=lambda msg: log.warning("%s", msg),
            )
            if self.notifiers
            else None
        )

    @staticmethod
    def _engine(config: WatchConfig) -> Engine:
        rules = load_rules(list(config.rules), builtin=config.builtin_rules)
        if config.fail2ban is not None or config.fail2ban_filters:
            from pipeline.imports.f2brules import fail2ban_rules

            rules = [*rules, *fail2ban_rules(config.fail2ban, config.fail2ban_filters)]
        logcheck = None
        if config.logcheck:
            from pipeline.imports.logcheck import LogcheckMatcher, LogcheckSet

            logcheck = LogcheckMatcher(LogcheckSet.load(config.logcheck, config.logcheck_level))
            for problem in logcheck.problems:
                log.warning("logcheck rules: %s", problem)
        return Engine(rules, ScanOptions(tz=parse_zone(config.tz)), logcheck=logcheck)

    def _paths(self) -> list[str]:
        out: list[str] = []
        for p in self.config.paths:
            if any(ch in p for ch in "*?["):
                # rotated, compressed generations are history, not live logs
                out.extend(
                    sorted(
                        x
                        for x in glob.glob(p)
                        if os.path.isfile(x) and not x.endswith((".gz", ".bz2", ".xz"))
                    )
                )
            else:
                out.append(p)
        return out

    def _follower(self, path: str) -> FileFollower:
        f = self.followers.get(path)
        if f is None:
            saved = self.saved_sources.get(path)
            state = FileState.from_dict(saved[0]) if saved else None
            st = self.stats.setdefault(path, SourceStats())
            if saved:
                st.restore(saved[1])
            # a file that turns up under a glob after the first look is new: read it all
            late = self._looked and not saved
            f = FileFollower(
                path,
                self._reporter(path),
                lambda msg: log.info("%s", msg),
                state=state,
                from_beginning=self.config.from_beginning or late or self._window is not None,
            )
            self.followers[path] = f
            # checkpoint every source once, even before it has lines (a missing or empty
            # file), so a restart reads what was written to it meanwhile
            self._touched[path] = f
        return f

    def _reporter(self, name: str) -> Callable[[Problem], None]:
        def report(p: Problem) -> None:
            st = self.stats.setdefault(name, SourceStats())
            st.problems[p.kind] = st.problems.get(p.kind, 0) + 1
            follower = self.followers.get(name)
            if follower is not None:
                self._touched[name] = follower
            self.scan_stats.problems[p.kind] += 1
            if p.kind in ("unreadable", "read-error", "rotated-away"):
                st.errors += 1
            n = st.problems[p.kind]
            if n <= 5 or n % 1000 == 0:
                log.warning("%s%s", p, f" ({n} so far)" if n > 5 else "")

        return report

    def _start_journal(self) -> None:
        from pipeline.sources.journal import JournalSpec

        name = JournalSpec(directory=self.config.journal_directory).display
        st = self.stats.setdefault(name, SourceStats())
        saved = self.saved_sources.get(name)
        if saved:
            st.restore(saved[1])
        self.journal = JournalSource(
            self.config,
            self.saved_sources.get(name),
            self._reporter(name),
            from_start=self._window is not None,
        )
        log.info("following %s", name)

    def _processor(self, key: str, display: str, mtime: float, source: str) -> LineProcessor:
        proc = self.processors.get(key)
        if proc is None:
            ref = datetime.fromtimestamp(mtime, UTC)
            proc = LineProcessor(
                display,
                TimeResolver(self.engine.tz, ref),
                self.engine.prefilter,
                self._reporter(source),
                self.scan_stats,
                body_fields=self.engine.body_fields,
                host=self.config.host_of(source),
                group=rotation_set(source),
                logcheck=self.engine.logcheck,
            )
            self.processors[key] = proc
            self._proc_source[key] = source
        proc.display = display
        return proc

    # -- one turn ----------------------------------------------------------------------------

    def step(self) -> int:
        """Read what is new everywhere, detect, checkpoint, emit. Returns lines read.

        While a write fails (:attr:`fault`) nothing is read: the turn retries that write when
        it is due and returns 0."""
        if self.fault is not None and not self._retry():
            return 0
        found: dict[str, Finding] = {}
        lines = 0
        touched: dict[str, FileFollower] = {}
        live = self._paths()
        # files that left their glob (deleted, compressed): read what is left, then let go
        matched = set(live)
        gone = [p for p in self.followers if p not in matched]
        paths = [*live, *gone]
        copies = self.copies if len({rotation_set(p) for p in paths}) > 1 else None
        for path in paths:
            follower = self._follower(path)
            blocks = follower.poll(READ_BUDGET)
            if not blocks and path in gone:
                follower.close()
                del self.followers[path]
                continue
            if copies is not None:  # one fstat a turn: has it more to read?
                copies.behind(rotation_set(path), follower.lag() > 0)
            for block in blocks:
                touched[path] = follower
                proc = self._processor(block.key, block.display, block.mtime, path)
                n = self._feed(proc, block.data, block.first_line, found, copies, self.stats[path])
                lines += n
                st = self.stats[path]
                st.lines += n
                st.last_read = time.monotonic()
                st.recent.add(n, st.last_read)
        self._looked = True
        if copies is not None:
            copies.expire()
        self._forget_finished()
        if self.journal is not None:
            lines += self._step_journal(found)
        if lines:
            self.recent.add(lines, time.monotonic())
        self._touched.update(touched)
        if found or (self._touched and time.monotonic() - self._last_commit >= CHECKPOINT_EVERY):
            self.checkpoint(list(found.values()))
        return lines

    def _feed(
        self,
        proc: LineProcessor,
        data: bytes,
        first_line: int,
        found: dict[str, Finding],
        copies: LiveCopies | None = None,
        stats: SourceStats | None = None,
    ) -> int:
        """Detect on one block of lines; returns how many lines it held. With ``copies``,
        a matching event already read from another rotation set is set aside."""
        before = self.scan_stats.lines
        window = self._window
        detector = self.detector
        group = proc.group or proc.display
        for rec in proc.records(data, first_line):
            if isinstance(rec, Unparsed):
                continue
            if (
                window is not None
                and not isinstance(rec, TimeMark)
                and self._outside(window, rec.event if isinstance(rec, LogcheckHit) else rec)
            ):
                continue
            if isinstance(rec, TimeMark):
                if copies is not None:
                    copies.reached(rec.host, group, rec.timestamp)
                out = detector.observe(rec.host, rec.timestamp)
            elif isinstance(rec, LogcheckHit):
                hit = detector.matched(rec.event, [(rec.rule, dict(rec.fields))])
                out = self._detect(rec.event, hit, copies, group, stats)
            elif copies is not None:
                out = self._detect(rec, detector.match(rec), copies, group, stats)
            else:
                out = detector.process(rec)
            for f in out:
                found[f.key] = f
        return self.scan_stats.lines - before

    def _detect(
        self,
        event: Event,
        matches: list[Any],
        copies: LiveCopies | None,
        group: str,
        stats: SourceStats | None,
    ) -> list[Finding]:
        """Detect on one event unless (some of its repeats) are copies from another set."""
        if matches and copies is not None:
            fresh = copies.fresh(event, group)
            if fresh < event.repeat:
                n = event.repeat - fresh
                self.scan_stats.duplicates += n
                if stats is not None:
                    stats.copies += n
                if not fresh:
                    if event.timestamp is None:
                        return []
                    return self.detector.observe(event.scope, event.timestamp)
                event = replace(event, repeat=fresh)
                matches = [replace(m, event=event) for m in matches]
        return self.detector.process(event, matches)

    def _outside(self, window: tuple[datetime, datetime | None, datetime | None], e: Event) -> bool:
        """A line from before the start outside the first run's --since/--until (counted)."""
        started, since, until = window
        ts = e.timestamp
        if ts is None or ts >= started:
            return False
        if (since is not None and ts < since) or (until is not None and ts >= until):
            self.scan_stats.out_of_range += 1
            return True
        return False

    def _forget_finished(self) -> None:
        """Drop the processors of files that are neither followed nor being finished."""
        live = {self.journal.name} if self.journal is not None else set()
        for f in self.followers.values():
            for opened in (*f.draining, *([f.current] if f.current else [])):
                live.add(opened.key)
        for key in [k for k in self.processors if k not in live]:
            del self.processors[key]
            self._proc_source.pop(key, None)

    def _step_journal(self, found: dict[str, Finding]) -> int:
        assert self.journal is not None
        source = self.journal
        data = source.poll(READ_BUDGET)
        if not data:
            return 0
        proc = self.processors.get(source.name)
        if proc is None:
            proc = LineProcessor(
                source.name,
                TimeResolver(self.engine.tz, datetime.now(UTC)),
                self.engine.prefilter,
                self._reporter(source.name),
                self.scan_stats,
                fmt="journal-json",
                body_fields=self.engine.body_fields,
            )
            self.processors[source.name] = proc
        n = self._feed(proc, data, source.line + 1, found)
        source.line += n
        st = self.stats[source.name]
        st.lines += n
        st.last_read = time.monotonic()
        st.recent.add(n, st.last_read)
        self._touched[source.name] = source
        return n

    def checkpoint(self, findings: list[Finding] | None = None) -> None:
        """Commit offsets, detection state and ``findings`` together, then emit new ones.

        Without findings this runs at most every :data:`CHECKPOINT_EVERY` seconds (lines read
        since are simply read again after a crash, giving the same finding keys).
        """
        touched, self._touched = self._touched, {}
        self._last_commit = time.monotonic()
        held = self._held
        for f in findings or ():
            held[f.key] = f  # a later version of a held key replaces it
        try:
            fresh = self._commit(touched, list(held.values()))
        except StateWriteError as exc:
            # rolled back: the offsets, the detection state and these findings are stored
            # by the next checkpoint that succeeds (nothing more is read until then)
            self._touched = touched | self._touched
            self._held = held
            self._failed("checkpoint", str(self.state.path), exc.reason, exc.free)
            return
        self._held = {}
        self._committed_at = time.time()
        self._freeze_grown_state()
        if fresh:
            self._emit(fresh)
            if self.deliverer is not None:
                self.deliverer.wake.set()

    def _freeze_grown_state(self) -> None:
        """Once the detection state has grown by :data:`FREEZE_AT` entries since the last
        time, move what is alive out of the garbage collector's way (``gc.freeze``), as a
        restore does: else a full collection walks every remembered row and stalls the
        daemon for a third of a second at a million of them."""
        size = self.detector.stored_size()
        if size >= self._frozen_size + FREEZE_AT:
            gc.freeze()
            self._frozen_size = size

    def _commit(self, touched: dict[str, FileFollower], findings: list[Finding]) -> list[Finding]:
        sources: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        mono = time.monotonic()
        for path, follower in touched.items():
            st = self.stats[path]
            st.rate = st.recent.rate(mono, self._started_mono)
            stats = st.as_dict() | {"lag": follower.lag()}
            if isinstance(follower, JournalSource):
                sources[path] = (follower.checkpoint(), stats)
                continue
            state = follower.state()
            sources[path] = (state.as_dict() if state else {"path": path}, stats)
        changes = self.detector.changes()
        try:
            return self.state.checkpoint(
                detector=None,
                changes=(DETECTOR_NAME, changes),
                sources=sources,
                findings=findings,
                route=self.route,
            )
        except BaseException:
            self.detector.unstored(changes)  # not stored: the next checkpoint writes them
            raise

    def _emit(self, findings: list[Finding]) -> None:
        """Write new findings to the outputs and record that; a failure leaves them stored
        as not written, for :meth:`recover` at the retry (or the next start)."""
        if self._unwritten:  # earlier ones wait: write in order, at the retry
            return
        sizes: dict[str, int] = {}
        out = None
        try:
            for out in self.outputs:
                sizes[out.path] = out.write(findings)
            self.state.mark_emitted([f.key for f in findings], sizes)
        except (OSError, StateWriteError) as exc:
            self._write_failed(exc, out)
            return
        for f in findings:
            log.info("finding %s [%s] %s %s", f.rule, f.severity, f.host or "-", f.message[:200])

    def recover(self) -> None:
        """Write findings stored but not confirmed written (before a crash, or while an
        output or the state database could not be written), exactly once."""
        self._unwritten = False
        try:
            pending = self.state.pending()
            if not pending:
                return
            sizes: dict[str, int] = {}
            out = None
            for out in self.outputs:
                confirmed = self.state.output_size(out.path) or 0
                out.repair(confirmed)
                done = out.keys_after(confirmed)
                rest = [f for f in pending if f.key not in done]
                sizes[out.path] = out.write(rest) if rest else os.path.getsize(out.path)
            self.state.mark_emitted([f.key for f in pending], sizes)
        except (OSError, StateWriteError) as exc:
            self._write_failed(exc, out)
            return
        log.info("wrote %d findings stored but not yet written to the outputs", len(pending))

    # -- failed writes: a full disk ----------------------------------------------------------

    def _write_failed(self, exc: OSError | StateWriteError, out: JsonlOutput | None) -> None:
        """Writing findings out (``out``) or recording that failed: retried later."""
        self._unwritten = True
        if isinstance(exc, StateWriteError):
            self._failed("checkpoint", str(self.state.path), exc.reason, exc.free)
        else:
            assert out is not None
            self._failed("output", out.path, exc.strerror or str(exc), free_space(out.path))

    def _failed(self, what: str, path: str, error: str, free: int | None) -> None:
        """Note a failed write: logged once (with the path and the free space), then retried
        with a doubling backoff; nothing new is read meanwhile."""
        now, mono = time.time(), time.monotonic()
        fault = self.fault
        if fault is None:
            log.error(
                "%s: %s failed: %s (%s free); reading is paused and the write retried until "
                "it succeeds; nothing read so far is lost",
                path,
                "writing the findings" if what == "output" else "the checkpoint",
                error,
                size_text(free),
            )
            fault = WriteFault(what, path, error, free, now)
        else:
            fault = replace(
                fault, what=what, path=path, error=error, free_bytes=free, retries=fault.retries + 1
            )
        wait = min(RETRY_MAX, RETRY_FIRST * 2 ** min(fault.retries, 16))
        self.fault = replace(fault, next_retry=now + wait, due=mono + wait)

    def _retry(self) -> bool:
        """Retry the failed write when it is due (or space was freed); True once it
        succeeded and reading goes on."""
        fault = self.fault
        assert fault is not None
        if time.monotonic() < fault.due:
            free = free_space(fault.path)
            if free is None or fault.free_bytes is None or free <= fault.free_bytes:
                return False
        log.debug("retrying %s of %s", fault.what, fault.path)
        if self._held or self._touched:
            self.checkpoint()  # the held findings, offsets and detection state
        if self.fault is fault and self._unwritten:
            self.recover()
        if self.fault is not fault:  # failed again (and rescheduled)
            return False
        self.fault = None
        log.info(
            "%s: writing works again after %d retries over %.0fs; reading goes on",
            fault.path,
            fault.retries + 1,
            time.time() - fault.since,
        )
        return True

    # -- health: the status record, dropped state, metrics -----------------------------------

    def _init_health(self, saved: dict[str, Any] | None) -> None:
        self.started = time.time()
        self._started_mono = time.monotonic()
        self._committed_at = None
        self._beat_at = 0.0
        self.recent = RollingCount()
        #: detection state dropped by detectors replaced at a reload, and state of rules no
        #: longer loaded (the current detector counts its own in ``stats``)
        self._evicted_before: Counter[str] = Counter()
        self._dropped_before: Counter[str] = Counter()
        self._dropped_logged = 0
        self._dropped_logged_at = 0.0
        self._metrics: Any = None
        #: what the status record says of this process; neither changes while it runs
        self._proc_start = process_start(os.getpid())
        self._host = socket.gethostname()
        if saved is not None:
            self._note_restored(self.detector, saved)

    def _note_restored(self, detector: Any, snapshot: dict[str, Any]) -> None:
        """Count and log what a restore dropped: state that did not fit a changed rule,
        and state of rules that are no longer loaded."""
        gone = sorted(
            {n for n in snapshot.get("states", {}) if n not in detector.states}
            | {n for n in snapshot.get("suppress", {}) if n not in detector.suppressors}
            | {n for n in snapshot.get("enrich", {}) if n not in detector.tables}
        )
        gone = [
            n
            for n in gone
            if any(
                _holds_state(snapshot.get(k, {}).get(n)) for k in ("states", "suppress", "enrich")
            )
        ]
        self._dropped_before.update(gone)
        if gone:
            log.warning("detection state of rules no longer loaded dropped: %s", ", ".join(gone))
        if detector.stats.dropped_state:
            log.warning(
                "detection state that does not fit the changed rules dropped: %s",
                ", ".join(detector.stats.dropped_state),
            )

    def _carry_health(self, detector: Any, snapshot: dict[str, Any]) -> None:
        """At a reload: keep the counts of the detector being replaced."""
        self._evicted_before.update(self.detector.stats.evicted)
        self._dropped_before.update(self.detector.stats.dropped_state)
        self._note_restored(detector, snapshot)

    def dropped_state(self) -> dict[str, dict[str, int]]:
        """Detection state lost since the start: ``evicted`` at the table caps and
        ``dropped`` at a restore (rule changed shape or no longer loaded; ``*``: all), by
        rule (or join table)."""
        evicted = self._evicted_before + self.detector.stats.evicted
        dropped = self._dropped_before + Counter(self.detector.stats.dropped_state)
        return {"evicted": dict(sorted(evicted.items())), "dropped": dict(sorted(dropped.items()))}

    def _log_dropped(self, dropped: dict[str, dict[str, int]], now: float) -> None:
        total = sum(dropped["evicted"].values())
        if total <= self._dropped_logged or now - self._dropped_logged_at < DROPPED_LOG_EVERY:
            return
        self._dropped_logged, self._dropped_logged_at = total, now
        log.warning(
            "detection state evicted at the table caps since the start: %s",
            ", ".join(f"{k} {v}" for k, v in dropped["evicted"].items()),
        )

    def beat(self, *, stopped: bool = False) -> None:
        """Write the status record ``logwarden status`` and ``--metrics`` read."""
        now, mono = time.time(), time.monotonic()
        self._beat_at = mono
        inputs: dict[str, dict[str, Any]] = {}
        sources: list[tuple[str, Any]] = list(self.followers.items())
        if self.journal is not None:
            sources.append((self.journal.name, self.journal))
        for name, source in sources:
            st = self.stats.get(name) or SourceStats()
            inputs[name] = {
                "lag_bytes": source.lag(),
                "lines": st.lines,
                "lines_per_s": round(st.recent.rate(mono, self._started_mono), 2),
                "copies": st.copies,
            }
        dropped = self.dropped_state()
        record = {
            "pid": os.getpid(),
            "proc_start": self._proc_start,
            "host": self._host,
            "started": self.started,
            "heartbeat": now,
            "stopped": now if stopped else None,
            "last_checkpoint": self._committed_at,
            "poll_interval": self.config.poll_interval,
            "lines_last_minute": self.recent.total(mono),
            "lines_per_s": round(self.recent.rate(mono, self._started_mono), 2),
            "inputs": inputs,
            "dropped_state": dropped,
            "metrics": self.config.metrics,
            "copies_forgotten": self.copies.forgotten,
        }
        if self.fault is not None:
            record["fault"] = self.fault.as_dict()
        try:
            self.state.write_status(DETECTOR_NAME, record)
        except StateError as exc:
            if not self._status_failed:  # once until a write works again
                log.warning("%s", exc)
            self._status_failed = True
        else:
            self._status_failed = False
        self._log_dropped(dropped, mono)

    def _start_metrics(self) -> None:
        if not self.config.metrics:
            return
        from pipeline.metrics import serve

        self._metrics = serve(self.config.metrics, self.config.state_dir)
        log.info("serving metrics on http://%s/metrics", self.config.metrics)

    def _stop_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
            self._metrics = None

    # -- reload, signals, loop ---------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file and rules; keep the old ones when the new set is invalid."""
        try:
            config = self.config
            if self.config_path:
                config = load_config(self.config_path).with_overrides(**self._cli_overrides)
            changed = [k for k in RESTART_ONLY if getattr(config, k) != getattr(self.config, k)]
            if changed:
                log.warning("reload: %s take effect at the next restart", ", ".join(changed))
                config = replace(config, **{k: getattr(self.config, k) for k in changed})
            engine = self._engine(config)
        except LogwardenError as exc:
            log.error("reload failed, keeping the running rules and config: %s", exc)
            return False
        detector = engine.new_detector()
        detector.track_changes()
        snapshot = self.detector.snapshot()
        detector.restore(snapshot)
        detector.continue_from(self.detector)
        self._carry_health(detector, snapshot)
        self.config, self.engine, self.detector = config, engine, detector
        try:
            self._setup_notify(config)
        except LogwardenError as exc:
            log.error("reload: notifiers invalid, notifications off until fixed: %s", exc)
            self.route, self.deliverer = None, None
        if self.deliverer is not None and self._running:
            self.deliverer.start()
        for key, proc in self.processors.items():
            proc.prefilter = engine.prefilter
            proc.body_fields = engine.body_fields
            if proc.format is None or proc.format.name != "journal-json":
                proc.logcheck = engine.logcheck
            source = self._proc_source.get(key)
            if source is not None:  # the journal's lines name their host
                proc.host = config.host_of(source)
        log.info("reloaded: %d rules", len(engine.rules))
        return True

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
        self.wake.set()
        self._interrupt.set()

    def _watch_dirs(self) -> None:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return
        wake = self.wake

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        dirs = set()
        for p in self.config.paths:
            d = os.path.dirname(os.path.abspath(p.split("*")[0] if "*" in p else p))
            while d and not os.path.isdir(d):
                d = os.path.dirname(d)
            if d:
                dirs.add(d)
        observer = Observer()
        for d in sorted(dirs):
            try:
                observer.schedule(Wake(), d, recursive=False)
            except OSError as exc:
                log.warning("cannot watch %s for changes (%s); polling it", d, exc)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        self._start_metrics()
        self._watch_dirs()
        self.recover()
        self._running = True
        if self.deliverer is not None:
            self.deliverer.start()
            for n in self.notifiers:
                log.info("notifying %s (%s and above)", n.masked, n.min_severity)
        log.info(
            "watching %s with %d rules; state in %s",
            ", ".join(self.config.paths) or "nothing",
            len(self.engine.rules),
            self.config.state_dir,
        )
        sd_notify("READY=1\nSTATUS=watching")
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        ping_every = watchdog_usec / 2e6 if watchdog_usec else 0.0
        last_ping = 0.0
        try:
            while not self._stop:
                if self._reload:
                    self._reload = False
                    sd_notify("RELOADING=1")
                    self.reload()
                    sd_notify("READY=1")
                self.wake.clear()
                busy = self.step()
                if time.monotonic() - self._beat_at >= HEARTBEAT_EVERY:
                    self.beat()
                if time.monotonic() - self._last_prune >= PRUNE_EVERY and self.fault is None:
                    self._last_prune = time.monotonic()
                    try:
                        removed = self.state.prune()
                    except StateWriteError as exc:  # tried again in an hour
                        log.warning("%s", exc)
                        removed = 0
                    if removed:
                        log.info("state database: forgot %d old rows", removed)
                if ping_every and time.monotonic() - last_ping >= ping_every:
                    sd_notify("WATCHDOG=1")
                    last_ping = time.monotonic()
                if self.fault is not None and not self._stop:
                    # paused: change notices do not matter until the write works again
                    self._interrupt.wait(self.config.poll_interval)
                    self._interrupt.clear()
                elif not busy and not self._stop:
                    # the journal has no change notice here: look at it often
                    wait = self.config.poll_interval
                    if self.wake.wait(min(wait, 0.2) if self.journal else wait):
                        # a change notice: let a burst of writes land, read them in one turn
                        time.sleep(COALESCE)
        finally:
            sd_notify("STOPPING=1")
            self.close()
        if self.fault is not None:
            log.error(
                "stopped without its last checkpoint (%s: %s): what was read since the last "
                "one that succeeded is read again at the next start",
                self.fault.path,
                self.fault.error,
            )
            return 1
        log.info("stopped after checkpointing")
        return 0

    def close(self) -> None:
        """Checkpoint what was read since the last commit, then release everything."""
        if self.fault is not None:
            self.fault = replace(self.fault, due=0.0)  # one more try now
            self._retry()
        elif self._touched:
            self.checkpoint()
        self.beat(stopped=True)
        self._stop_metrics()
        if self._observer is not None:
            self._observer.stop()
        if self.deliverer is not None:
            self.deliverer.stop()
        for f in self.followers.values():
            f.close()
        if self.journal is not None:
            self.journal.close()
        self.state.close()
        self.lock.release()


def open_state(path: str | Path, *, reset: bool = False) -> StateDB:
    """The daemon's state database, checked page by page; an empty or corrupt one is refused
    (:class:`StateCorrupt`), or with ``reset`` moved aside with a warning and started afresh."""
    try:
        db = StateDB(path)
        try:
            db.verify()
        except StateCorrupt:
            db.close()
            raise
    except StateCorrupt as exc:
        if not reset:
            raise
        moved = move_aside(path)
        log.warning(
            "%s; --reset-state: moved it to %s and starting with a new one: detection state, "
            "offsets and queued notifications start afresh, as on a first run",
            exc.message,
            moved,
        )
        return StateDB(path)
    if reset:
        log.warning("--reset-state: %s is sound, so it was kept as it is", path)
    return db


def _holds_state(part: Any) -> bool:
    """Whether a piece of a detector snapshot holds anything (a window, a partial, a row):
    a non-empty list somewhere in it, or a mapping with such a value; numbers alone are
    bookkeeping, except ``rows``, the number of rows stored apart."""
    if isinstance(part, dict):
        if isinstance(part.get("rows"), int) and part["rows"] > 0:
            return True
        return any(_holds_state(v) for v in part.values())
    return isinstance(part, list) and len(part) > 0


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None where
    that cannot be read: tells a live daemon from another process that got its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _alive(record: dict[str, Any]) -> bool | None:
    """Whether the process that wrote ``record`` still runs; None when that cannot be told
    from here (the state directory is shared with another host)."""
    if record.get("host") != socket.gethostname():
        return None
    pid = int(record.get("pid") or 0)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = record.get("proc_start")
    return started is None or process_start(pid) in (None, started)


def daemon_health(
    record: dict[str, Any] | None, now: float | None = None, state_dir: str | None = None
) -> dict[str, Any]:
    """Running, stalled or stopped, from the status record: running when the process that
    wrote it is alive (same pid and start time) and wrote it recently; stalled when it is
    alive but has not written for :data:`STALL_POLLS` poll intervals (at least
    :data:`STALL_MIN` s), or when a write fails (``fault``: the checkpoint or an output,
    from the record; or the record itself, when it is :data:`STATUS_STALE_BEATS`
    heartbeats old and ``state_dir``'s file system has less than :data:`LOW_SPACE` free);
    stopped when it stopped cleanly, died, or never ran here."""
    now = time.time() if now is None else now
    if record is None:  # the same keys as a record gives, for every reader of them
        return {
            "state": "stopped",
            "reason": "no daemon has run here",
            "pid": None,
            "host": None,
            "started": None,
            "uptime_s": None,
            "heartbeat_age_s": None,
            "last_checkpoint": None,
            "checkpoint_age_s": None,
            "lines_last_minute": 0,
            "lines_per_s": 0.0,
            "dropped_state": {"evicted": {}, "dropped": {}},
            "metrics": None,
            "copies_forgotten": 0,
            "fault": None,
        }
    beat = float(record.get("heartbeat") or 0.0)
    age = max(0.0, now - beat)
    alive = _alive(record)
    stall = max(STALL_MIN, STALL_POLLS * float(record.get("poll_interval") or 1.0))
    if record.get("stopped"):
        state, reason = "stopped", "stopped cleanly"
    elif alive is False:
        state, reason = "stopped", "exited without stopping (killed or crashed)"
    elif age > stall:
        state, reason = "stalled", f"no status record for {age:.0f}s"
    else:
        state, reason = "running", ""
    fault = record.get("fault")
    poll = float(record.get("poll_interval") or 1.0)
    if state != "stopped" and fault is None and state_dir is not None:
        free = free_space(state_dir)
        if age > STATUS_STALE_BEATS * max(HEARTBEAT_EVERY, poll) and (free or 0) < LOW_SPACE:
            fault = {
                "what": "status",
                "path": str(Path(state_dir) / "state.sqlite"),
                "error": "the status record cannot be written",
                "free_bytes": free,
                "since": beat,
            }
    if fault is not None and state != "stopped":
        free_text = size_text(fault.get("free_bytes"))
        if fault.get("what") == "status":
            reason = (
                f"no status record for {age:.0f}s and {free_text} free on the file system of "
                f"{fault.get('path')}: the daemon cannot write there (its checkpoints most "
                "likely fail too)"
            )
        else:
            what = "checkpoints" if fault.get("what") == "checkpoint" else "output writes"
            reason = (
                f"{what} fail: {fault.get('path')}: {fault.get('error')} ({free_text} free); "
                f"reading is paused, retried {fault.get('retries', 0)} times"
            )
        state = "stalled"
    running = state != "stopped"
    checkpoint = record.get("last_checkpoint")
    return {
        "state": state,
        "reason": reason,
        "pid": record.get("pid"),
        "host": record.get("host"),
        "started": _iso(record.get("started")),
        "uptime_s": round(now - float(record["started"]), 1) if running else None,
        "heartbeat_age_s": round(age, 1),
        "last_checkpoint": _iso(checkpoint),
        "checkpoint_age_s": round(now - float(checkpoint), 1) if checkpoint else None,
        "lines_last_minute": record.get("lines_last_minute", 0) if running else 0,
        "lines_per_s": record.get("lines_per_s", 0.0) if running else 0.0,
        "dropped_state": record.get("dropped_state", {"evicted": {}, "dropped": {}}),
        "metrics": record.get("metrics"),
        "copies_forgotten": record.get("copies_forgotten", 0) if running else 0,
        "fault": fault,
    }


def _iso(t: Any) -> str | None:
    return datetime.fromtimestamp(float(t), UTC).isoformat(timespec="seconds") if t else None


def status(state_dir: str, min_severity: Severity | None = None) -> dict[str, Any]:
    """What ``logwarden status`` shows (and ``--metrics`` serves): whether the daemon runs
    (pid, uptime, checkpoint age, lines/s over the last minute, dropped detection state);
    per source position, lag, lines/s, errors; per notifier sent, failed, pending and the
    last error; the last findings (those at or above ``min_severity``)."""
    path = Path(state_dir) / "state.sqlite"
    if not path.exists():
        raise LogwardenError(f"no state database at {path}", hint="has logwarden watch run here?")
    with StateDB.reader(path) as db:
        record = db.read_status(DETECTOR_NAME)
        health = daemon_health(record, state_dir=state_dir)
        # while it runs, the daemon's own view: what it has read, not what it committed
        inputs = (record or {}).get("inputs", {}) if health["state"] != "stopped" else {}
        sources = []
        for name, (state, stats) in sorted(db.source_states().items()):
            lag = stats.get("lag", 0)
            try:
                st = os.stat(name)
                if (st.st_dev, st.st_ino) == (state.get("dev"), state.get("ino")):
                    lag = max(0, st.st_size - int(state.get("offset", 0)))
            except OSError:
                pass
            live = inputs.get(name, {})
            lag = live.get("lag_bytes", lag)
            sources.append(
                {
                    "source": name,
                    "offset": state.get("offset"),
                    "line": state.get("line"),
                    "lag_bytes": lag,
                    "lines": live.get("lines", stats.get("lines", 0)),
                    "lines_per_s": live.get("lines_per_s", 0.0),
                    "errors": stats.get("errors", 0),
                    "problems": stats.get("problems", {}),
                    "copies": live.get("copies", stats.get("copies", 0)),
                }
            )
        recent = [f.as_dict() for f in db.recent_findings(10, min_severity)]
        notifiers = db.notifier_counts()
    return {"daemon": health, "sources": sources, "notifiers": notifiers, "findings": recent}
