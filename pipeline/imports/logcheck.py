"""logcheck's rule directories (``/etc/logcheck``) run on logwarden's engine.

logcheck (Debian's ``logcheck`` and ``logcheck-database``) keeps ``grep -E`` patterns, one per
line, in files under ``cracking.d``, ``violations.d``, ``violations.ignore.d`` and
``ignore.d.<level>``. It reports, for the lines of a log:

* a line matched by a ``cracking.d`` pattern as an attack alert (here: ``logcheck.cracking``,
  critical);
* else a line matched by a ``violations.d/F`` pattern and not explained for ``F`` by
  ``violations.ignore.d`` (``F``, ``logcheck-F``, ``local``, ``local-*``; for ``F`` named
  ``logcheck``, any file there or another ``violations.d`` file) as a security event
  (``logcheck.violations``, high);
* else a line no ``ignore.d.<level>`` pattern explains (the levels include the stricter
  ones: workstation ⊃ server ⊃ paranoid) as a system event (``logcheck.unexplained``, low,
  folded per host, program and hour).

Patterns are translated from ERE (:mod:`pipeline.imports.ere`) and compiled once into one
Hyperscan database: every ignore pattern under one id (Hyperscan reports an id once per
offset, and every pattern is anchored at its line's end, so an explained line costs one
callback however many patterns explain it), the others under their own. A whole chunk is
scanned at once; match ends map to lines with one ``numpy.searchsorted``. Patterns Hyperscan
rejects (back-references) are searched with Python ``re`` over the chunk; without Hyperscan
every pattern is (correct, much slower). A pattern no engine takes is a problem at its
``file:line``, never silently dropped. Lines are matched as logcheck sees them: trailing
white space removed, bytes as in the C locale. (One database per program was measured, in
``bench/logcheck_dispatch.py``: its scans are faster, but keying the lines by program costs
as much; see ``docs/rules.md``.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

try:  # folding unexplained lines in bulk; without it they are folded one by one
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError:  # pragma: no cover - the analysis extra
    pa = None

try:  # x86_64 wheels; the results are the same without it (only slower)
    import hyperscan
except ImportError:  # pragma: no cover - exercised by forcing use_hyperscan=False
    hyperscan = None  # type: ignore[assignment]

from pipeline.detection.model import Rule, Selectors, Suppress
from pipeline.detection.patterns import PatternError, required_literals
from pipeline.errors import Location, Problem, UsageError
from pipeline.imports import ere
from pipeline.imports.ere import EreError, translate
from pipeline.model import Severity

IntArray = npt.NDArray[np.int64]

DEFAULT_DIR = "/etc/logcheck"
LEVELS = ("workstation", "server", "paranoid")
#: the ignore.d directories each level reads (a level includes the stricter ones)
LEVEL_DIRS = {
    "workstation": ("workstation", "server", "paranoid"),
    "server": ("server", "paranoid"),
    "paranoid": ("paranoid",),
}
#: run-parts (which logcheck lists rule files with) only takes names of these characters
_RUN_PARTS_NAME = re.compile(r"[A-Za-z0-9_-]+")
#: what logcheck drops from rule files: blank lines and lines starting with #
_NOT_A_PATTERN = re.compile(rb"[ \t\n\v\f\r]*|#.*", re.DOTALL)
_TRAILING_SPACE = b" \t\v\f\r"

CRACKING = "logcheck.cracking"
VIOLATIONS = "logcheck.violations"
UNEXPLAINED = "logcheck.unexplained"
#: unexplained lines are folded per host, program and this period (logcheck's hourly run)
FOLD_PERIOD_HOURS = 1


@dataclass(frozen=True, slots=True)
class Pattern:
    """One pattern line of a logcheck rule file."""

    text: bytes
    regex: bytes
    #: what Hyperscan cannot take (back-references, anchors inside): searched with re
    slow: bool
    #: ``cracking``, ``violations``, ``violations-ignore`` or ``ignore``
    category: str
    #: the rule file's name (``ssh``, ``logcheck-su``)
    file: str
    location: Location


def _rule(rule_id: str, severity: Severity, title: str, description: str, **kw: Any) -> Rule:
    return Rule(
        id=rule_id,
        title=title,
        severity=severity,
        description=description,
        remediation=kw.pop("remediation", ""),
        references=("man:logcheck(8)",),
        tags=("logcheck",),
        select=Selectors(),
        conditions=(),
        location=kw.pop("location"),
        **kw,
    )


def logcheck_rules(directory: str) -> list[Rule]:
    """The three rules logcheck's verdicts become findings of."""
    loc = Location(directory)
    return [
        _rule(
            CRACKING,
            Severity.CRITICAL,
            "logcheck: attack alert",
            "A line matched by a pattern of logcheck's cracking.d.",
            location=loc,
        ),
        _rule(
            VIOLATIONS,
            Severity.HIGH,
            "logcheck: security event",
            "A line matched by a pattern of logcheck's violations.d and not explained by "
            "violations.ignore.d.",
            location=loc,
        ),
        _rule(
            UNEXPLAINED,
            Severity.LOW,
            "logcheck: unexplained lines",
            "Lines no pattern of logcheck's ignore.d.<level> explains, folded per host, "
            "program and hour.",
            remediation="Read the lines; add an ignore pattern for those that are normal.",
            location=loc,
            # examples: the group's first and last line, wherever chunks or worker parts
            # cut it (the bulk fold passes on a first and a last line per chunk)
            suppress=Suppress(
                period=timedelta(hours=FOLD_PERIOD_HOURS),
                group_by=("host", "program", "logcheck_hour"),
                examples="ends",
            ),
        ),
    ]


def _read_dir(root: Path, sub: str, category: str, out: list[_Line | Problem]) -> None:
    """The pattern lines of one rule directory, and the problems met reading it, in order."""
    problems = out
    d = root / sub
    if not d.is_dir():
        return
    try:
        names = sorted(os.listdir(d))
    except OSError as exc:
        problems.append(Problem("logcheck-unreadable", Location(str(d)), exc.strerror or str(exc)))
        return
    for name in names:
        path = d / name
        if not path.is_file():
            continue
        if not _RUN_PARTS_NAME.fullmatch(name):
            problems.append(
                Problem(
                    "logcheck-skipped",
                    Location(str(path)),
                    "not read: logcheck (through run-parts) skips rule files whose names "
                    "hold other characters than letters, digits, _ and -",
                )
            )
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(
                Problem("logcheck-unreadable", Location(str(path)), exc.strerror or str(exc))
            )
            continue
        for n, line in enumerate(data.split(b"\n"), 1):
            if _NOT_A_PATTERN.fullmatch(line):
                continue
            out.append(_Line(line, category, name, str(path), n))


@dataclass(frozen=True, slots=True)
class _Line:
    """A pattern line read, before translation."""

    text: bytes
    category: str
    file: str
    path: str
    line: int


#: a translation (regex, slow) or why there is none (message, column)
_Translation = tuple[bytes, bool] | tuple[str, int]


def _translate_all(texts: Sequence[bytes]) -> dict[bytes, _Translation]:
    out: dict[bytes, _Translation] = {}
    for text in texts:
        if text in out:
            continue
        try:
            t = translate(text)
        except EreError as exc:
            out[text] = (exc.message, exc.col)
            continue
        out[text] = (t.regex, t.backrefs or t.inner_anchors)
    return out


def _valid(t: object) -> bool:
    """Whether a cached entry has the shape of a :data:`_Translation`."""
    if not isinstance(t, tuple) or len(t) != 2:
        return False
    first, second = t
    if isinstance(first, bytes):
        return isinstance(second, bool)
    return isinstance(first, str) and isinstance(second, int)


def _translations(texts: Sequence[bytes]) -> dict[bytes, _Translation]:
    """The translation of each pattern text, from the cache when the same texts were
    translated by the same translator before (translating all of logcheck's takes a tenth
    of a second, loading the cache a few milliseconds)."""
    where = _cache_dir()
    if where is None:
        return _translate_all(texts)
    import pickle

    try:
        digest = hashlib.sha256(Path(ere.__file__).read_bytes())
    except OSError:
        return _translate_all(texts)
    for text in texts:
        digest.update(len(text).to_bytes(8, "little") + text)
    path = where / f"logcheck-ere-{digest.hexdigest()[:32]}.pickle"
    try:
        found = pickle.loads(path.read_bytes())
        if isinstance(found, dict) and all(_valid(found.get(t)) for t in texts):
            return found
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        pass
    done = _translate_all(texts)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(path)
    return done


@dataclass
class LogcheckSet:
    """The patterns of one logcheck directory and level, and the problems met reading them."""

    directory: str
    level: str
    patterns: list[Pattern]
    problems: list[Problem] = field(default_factory=list)

    @classmethod
    def load(cls, directory: str = DEFAULT_DIR, level: str = "server") -> LogcheckSet:
        if level not in LEVEL_DIRS:
            raise UsageError(f"unknown logcheck level {level!r} (one of: {', '.join(LEVELS)})")
        root = Path(directory)
        if not root.is_dir():
            raise UsageError(f"{directory}: no such logcheck rule directory")
        lines: list[_Line | Problem] = []
        _read_dir(root, "cracking.d", "cracking", lines)
        _read_dir(root, "violations.d", "violations", lines)
        _read_dir(root, "violations.ignore.d", "violations-ignore", lines)
        for lvl in LEVEL_DIRS[level]:
            _read_dir(root, f"ignore.d.{lvl}", "ignore", lines)
        translated = _translations([ln.text for ln in lines if isinstance(ln, _Line)])
        problems: list[Problem] = []
        patterns: list[Pattern] = []
        for ln in lines:
            if isinstance(ln, Problem):
                problems.append(ln)
                continue
            t = translated[ln.text]
            if isinstance(t[0], str):
                problems.append(
                    Problem(
                        "logcheck-pattern",
                        Location(ln.path, ln.line, int(t[1])),
                        f"pattern not used: {t[0]}",
                    )
                )
                continue
            regex, slow = t
            assert isinstance(regex, bytes)
            patterns.append(
                Pattern(
                    ln.text, regex, bool(slow), ln.category, ln.file, Location(ln.path, ln.line)
                )
            )
        if not patterns:
            raise UsageError(f"{directory}: no logcheck patterns found")
        return cls(directory, level, patterns, problems)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.patterns:
            out[p.category] = out.get(p.category, 0) + 1
        return out


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Line indexes (within a chunk) of each verdict, ascending."""

    cracking: IntArray
    violations: IntArray
    unexplained: IntArray
    #: the rule file behind each cracking / violations line (same order)
    cracking_files: tuple[str, ...] = ()
    violations_files: tuple[str, ...] = ()


def _clean(data: bytes, nl: IntArray) -> tuple[bytes, IntArray]:
    """``data`` with trailing white space cut from every line (as logcheck's ``sed`` does)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = nl[nl > 0] - 1
    before = arr[ends] if len(ends) else arr[:0]
    last_ws = bool(data) and not data.endswith(b"\n") and data[-1] in _TRAILING_SPACE
    if not last_ws and not np.isin(before, np.frombuffer(_TRAILING_SPACE, np.uint8)).any():
        return data, nl
    cleaned = b"\n".join(line.rstrip(_TRAILING_SPACE) for line in data.split(b"\n"))
    arr = np.frombuffer(cleaned, dtype=np.uint8)
    return cleaned, np.flatnonzero(arr == 10).astype(np.int64)


_EMPTY = np.zeros(0, dtype=np.int64)
#: a pattern searched with Python re: id, compiled, the pattern, and literals one of which
#: it needs (Hyperscan finds the lines holding one, re tries only those)
_Slow = tuple[int, "re.Pattern[bytes]", Pattern, tuple[bytes, ...]]
#: Hyperscan ids of the prefilter forms of patterns confirmed with re
SLOW_ID = 1 << 24


def _cache_dir() -> Path | None:
    """Where compiled pattern databases are kept (compiling all of logcheck's takes
    seconds); None when there is no such place (no home directory)."""
    own = os.environ.get("LOGWARDEN_CACHE_DIR")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "logwarden"
    try:
        return Path.home() / ".cache" / "logwarden"
    except RuntimeError:
        return None


class LogcheckMatcher:
    """logcheck's three verdicts for whole chunks of lines, in one pass."""

    def __init__(self, rules: LogcheckSet, *, use_hyperscan: bool = True) -> None:
        self.rules = rules
        self.use_hyperscan = use_hyperscan and hyperscan is not None
        #: patterns other than ignore, by id - 1
        self.others = [p for p in rules.patterns if p.category != "ignore"]
        self.ignore = [p for p in rules.patterns if p.category == "ignore"]
        self.problems: list[Problem] = list(rules.problems)
        self._local = threading.local()
        #: patterns searched with Python re: (id, compiled, the pattern)
        self._slow: list[_Slow] = []
        self._fast: list[tuple[int, Pattern]] = []
        for p in self.ignore:
            self._route(0, p)
        for i, p in enumerate(self.others, 1):
            self._route(i, p)
        if self.use_hyperscan:
            try:
                self._database()  # compile now: errors and cost belong to loading
            except hyperscan.error:
                self._fast = self._compilable(self._fast)
                self._local = threading.local()
                self._database()

    def _route(self, ident: int, p: Pattern) -> None:
        if self.use_hyperscan and not p.slow:
            self._fast.append((ident, p))
            return
        self._add_slow(ident, p)

    def _add_slow(self, ident: int, p: Pattern) -> None:
        try:
            rx = re.compile(p.regex, re.MULTILINE)
        except re.error as exc:
            self.problems.append(
                Problem("logcheck-pattern", p.location, f"pattern not used: {exc}")
            )
            return
        try:
            found = required_literals(p.regex.decode("latin-1"))
        except (PatternError, ValueError, re.error):
            found = None
        literals = tuple(sorted(x.encode("latin-1") for x in found)) if found else ()
        self._slow.append((ident, rx, p, literals))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def engine(self) -> str:
        if not self.use_hyperscan:
            return "re"
        return "hyperscan" + (f" + re ({len(self._slow)} patterns)" if self._slow else "")

    # -- compiling ---------------------------------------------------------------------------

    @staticmethod
    def _expressions(
        items: Sequence[tuple[int, Pattern]], slow: Sequence[_Slow] = ()
    ) -> tuple[list[bytes], list[int], list[int]]:
        """Hyperscan's input: the patterns anchored at line ends, then the literals one of
        which each re pattern needs (the lines to try it on), ids from SLOW_ID."""
        flags = hyperscan.HS_FLAG_MULTILINE | hyperscan.HS_FLAG_ALLOWEMPTY
        exprs = [_to_line_end(p.regex) for _, p in items]
        ids = [i for i, _ in items]
        fl = [flags] * len(items)
        for k, (_, _, _, literals) in enumerate(slow):
            for lit in literals:
                exprs.append(b"".join(b"\\x%02x" % c for c in lit))
                ids.append(SLOW_ID + k)
                fl.append(0)
        return exprs, ids, fl

    @classmethod
    def _compile(
        cls,
        items: Sequence[tuple[int, Pattern]],
        slow: Sequence[_Slow] = (),
        *,
        cache: bool = True,
    ) -> Any:
        exprs, ids, flags = cls._expressions(items, slow)
        key = hashlib.sha256(
            repr((getattr(hyperscan, "__version__", ""), exprs, ids, flags)).encode()
        ).hexdigest()[:32]
        if not exprs:
            return None
        where = _cache_dir() if cache else None
        path = where / f"logcheck-{key}.hsdb" if where is not None else None
        if path is not None and path.is_file():
            try:
                db = hyperscan.loadb(path.read_bytes(), hyperscan.HS_MODE_BLOCK)
                db.scratch = hyperscan.Scratch(db)
                return db
            except (hyperscan.error, OSError):
                pass
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=exprs, ids=ids, elements=len(exprs), flags=flags)
        if path is not None:
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(hyperscan.dumpb(db))
                tmp.replace(path)
        return db

    def _compilable(self, items: list[tuple[int, Pattern]]) -> list[tuple[int, Pattern]]:
        """``items`` without those Hyperscan rejects (found by halving), which go to re."""
        try:
            self._compile(items, cache=False)
            return items
        except hyperscan.error:
            if len(items) == 1:
                self._add_slow(*items[0])
                return []
        mid = len(items) // 2
        return self._compilable(items[:mid]) + self._compilable(items[mid:])

    def _database(self) -> Any:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid = os.getpid()
            local.db = self._compile(self._fast, self._slow)
        return local.db

    # -- matching ----------------------------------------------------------------------------

    def _matches(self, data: bytes, nl: IntArray) -> tuple[IntArray, list[tuple[int, int]]]:
        """Lines an ignore pattern explains, and (id, line) of the other patterns' matches."""
        ignore: list[int] = []
        ids: list[int] = []
        ends: list[int] = []
        if self.use_hyperscan:
            add_ignore, add_id, add_end = ignore.append, ids.append, ends.append

            def on_match(ident: int, _s: int, end: int, _f: int, _c: object) -> None:
                if ident:
                    add_id(ident)
                    add_end(end)
                else:
                    add_ignore(end)

            db = self._database()
            if db is not None:
                db.scan(data, match_event_handler=on_match)
            candidates: dict[int, set[int]] = {}
            others: list[tuple[int, int]] = []
            lines = np.searchsorted(nl, np.asarray(ends, dtype=np.int64)).tolist() if ends else []
            for ident, line in zip(ids, lines, strict=True):
                if ident >= SLOW_ID:
                    candidates.setdefault(ident - SLOW_ID, set()).add(line)
                else:
                    others.append((ident, line))
            for k, found in candidates.items():
                ident, rx, _, _ = self._slow[k]
                for line in sorted(found):
                    start = int(nl[line - 1]) + 1 if line else 0
                    stop = int(nl[line]) if line < len(nl) else len(data)
                    if rx.search(data, start, stop) is None:
                        continue
                    if ident:
                        others.append((ident, line))
                    else:
                        ignore.append(stop)
        else:
            others = []
        for ident, rx, _, literals in self._slow:
            if literals and self.use_hyperscan:
                continue
            for m in re.finditer(b"(?:" + rx.pattern + b")[^\\n]*", data, re.MULTILINE):
                if ident:
                    others.append((ident, int(np.searchsorted(nl, m.end()))))
                else:
                    ignore.append(m.end())
        explained = np.searchsorted(nl, np.asarray(ignore, dtype=np.int64)) if ignore else _EMPTY
        return explained, others

    def classify(self, data: bytes, nl: IntArray) -> Verdicts:
        """The verdicts for the lines of ``data`` (``nl``: its newline offsets)."""
        n_lines = len(nl) + (0 if data.endswith(b"\n") or not data else 1)
        if not n_lines:
            return Verdicts(_EMPTY, _EMPTY, _EMPTY)
        data, nl = _clean(data, nl)
        ignored, others = self._matches(data, nl)
        # an empty match after the last newline is in no line
        ignored = ignored[ignored < n_lines]
        others = [(ident, line) for ident, line in others if line < n_lines]
        explained = np.zeros(n_lines, dtype=bool)
        explained[ignored] = True
        cracking: list[int] = []
        cracking_files: list[str] = []
        violations: list[int] = []
        violations_files: list[str] = []
        if others:
            per_line: dict[int, list[Pattern]] = {}
            for ident, line in others:
                per_line.setdefault(line, []).append(self.others[ident - 1])
            for line in sorted(per_line):
                found = per_line[line]
                if any(p.category in ("cracking", "violations") for p in found):
                    explained[line] = True
                crack = sorted({p.file for p in found if p.category == "cracking"})
                if crack:
                    cracking.append(line)
                    cracking_files.append(crack[0])
                    continue
                reporting = _violation_file(found)
                if reporting is not None:
                    violations.append(line)
                    violations_files.append(reporting)
        return Verdicts(
            np.asarray(cracking, dtype=np.int64),
            np.asarray(violations, dtype=np.int64),
            np.flatnonzero(~explained).astype(np.int64),
            tuple(cracking_files),
            tuple(violations_files),
        )


def _to_line_end(regex: bytes) -> bytes:
    """``regex`` made to match up to its line's end, so that all matches in a line end at
    the same offset; one with its own ``$`` stays (Hyperscan takes no ``$`` before more
    pattern), its matches map to their lines all the same."""
    return regex if b"$" in regex else b"(?:" + regex + b")[^\\n]*$"


def _violation_file(found: Sequence[Pattern]) -> str | None:
    """The first violations.d file that reports a line matched by ``found`` (no cracking
    pattern among them), as logcheck's per-file filtering decides; None when all are
    explained by violations.ignore.d."""
    files = sorted({p.file for p in found if p.category == "violations"})
    ignored = {p.file for p in found if p.category == "violations-ignore"}
    local = "local" in ignored or any(f.startswith("local-") for f in ignored)
    for f in files:
        if local or f in ignored or f"logcheck-{f}" in ignored:
            continue
        if f == "logcheck" and (
            ignored or any(g != f and not g.startswith("logchec") for g in files)
        ):
            continue
        return f
    return None


#: the fast paths' envelopes (:mod:`pipeline.grammars.fastpath`) up to ``program[pid]: ``;
#: nothing in them matches a newline, so a line can be tested with the lines after it
_HOST_PROGRAM = r" [A-Za-z0-9][A-Za-z0-9._-]* [A-Za-z0-9_][A-Za-z0-9_./()-]*(?:\[[0-9]{1,10}\])?: "


@dataclass(frozen=True, slots=True)
class _Head:
    """A fast path's envelope as the bulk fold reads it."""

    regex: str
    #: the columns of the hour (the same in every line the envelope fits), and the bits
    #: each takes in the hour's code (8: any byte; 4: a digit)
    hour: tuple[int, ...]
    bits: int
    #: where the key starts (the space before the host, or the zone)
    key: int
    #: where to look for the ``[`` or ``:`` that ends the program: a column no earlier
    #: than the program's first byte (after the shortest host), and, for RFC 3339, the
    #: column of the zone (``Z`` one byte, ``+hh:mm`` six; the column after it is used
    #: when the zone is six bytes)
    search: int
    zone: int | None = None


_FOLD_HEADS = {
    "syslog": _Head(
        r"^(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-9][0-9] [0-9]{2}"
        r":[0-9]{2}:[0-9]{2}" + _HOST_PROGRAM,
        hour=(0, 1, 2, 4, 5, 7, 8),
        bits=8,
        key=15,
        search=17,
    ),
    "rfc3339": _Head(
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}"
        r"(?:Z|[+-][0-9]{2}:[0-9]{2})" + _HOST_PROGRAM,
        hour=(0, 1, 2, 3, 5, 6, 8, 9, 11, 12),
        bits=4,
        key=26,
        search=29,
        zone=26,
    ),
}
#: rsyslog's "message repeated N times: [...]" lines are read one by one (the grammar
#: unwraps them); every line holding these bytes is
_REPEATED = b"message repeated "
#: how far after ``search`` the end of the program is looked for (a longer one: read one
#: by one)
_SEARCH = 256


@dataclass(frozen=True, slots=True)
class Fold:
    """How the unexplained lines of a chunk reach detection.

    ``firsts`` and ``lasts`` are the first and last line of each run of lines with the same
    hour, host and program (``weights``: the lines after the first, which the last one
    stands for; a group of one has no last); ``singles`` are read one by one (other formats,
    lines the fast-path envelope does not fit, rsyslog's repeated-message lines).
    """

    firsts: IntArray
    lasts: IntArray
    weights: IntArray
    singles: IntArray


def _bits(arr: Any) -> npt.NDArray[np.bool_]:
    """A pyarrow boolean array as numpy (nulls False), without pyarrow's conversion
    (which imports pandas)."""
    n, off = len(arr), arr.offset
    buffers = arr.buffers()
    out = np.unpackbits(np.frombuffer(buffers[1], np.uint8), bitorder="little")[off : off + n]
    if arr.null_count:
        valid = np.unpackbits(np.frombuffer(buffers[0], np.uint8), bitorder="little")
        out = out & valid[off : off + n]
    return out.astype(bool)


def _ints(arr: Any) -> npt.NDArray[np.int64]:
    """A pyarrow int32 array without nulls as numpy int64."""
    buf = np.frombuffer(arr.buffers()[1], np.int32)
    return buf[arr.offset : arr.offset + len(arr)].astype(np.int64)


def _binary(data: bytes, offsets: IntArray) -> Any:
    """A pyarrow binary array over ``data`` (not copied): element i is
    ``data[offsets[i]:offsets[i + 1]]``."""
    buf = pa.py_buffer(offsets.astype(np.int32))
    return pa.Array.from_buffers(pa.binary(), len(offsets) - 1, [None, buf, pa.py_buffer(data)])


#: the program's end is looked for this many bytes at a time
_WINDOW = 32


def _rows(data: bytes, width: int) -> npt.NDArray[np.uint8]:
    """``data`` as rows of ``width`` bytes, row i starting at byte i (a view: taking rows
    copies each as one piece, much faster than gathering their bytes one by one)."""
    return np.lib.stride_tricks.sliding_window_view(np.frombuffer(data, np.uint8), width)


def _program_ends(data: bytes, starts: IntArray, at: int, ok: npt.NDArray[np.bool_]) -> IntArray:
    """The column of the first ``[`` or ``:`` from column ``at`` of each line ``ok`` (the
    envelope fits it, so the ``:`` that ends its program is in the line); -1 for the others
    and where there is none within :data:`_SEARCH` bytes.

    Read :data:`_WINDOW` bytes at a time for all the lines still looking (a row of bytes is
    contiguous in a sliding-window view, so each is one copy); the lines too near the end of
    ``data`` for a whole window are looked at one by one."""
    out = np.full(len(starts), -1, dtype=np.int64)
    rows = np.flatnonzero(ok)
    pos = starts[rows] + at
    tail = pos + _SEARCH > len(data)
    for r, p in zip(rows[tail].tolist(), pos[tail].tolist(), strict=True):
        part = data[p : p + _SEARCH]
        found = [i for i in (part.find(b"["), part.find(b":")) if i >= 0]
        if found:
            out[r] = at + min(found)
    rows, pos = rows[~tail], pos[~tail]
    if not len(rows):
        return out
    view = _rows(data, _WINDOW)
    for step in range(0, _SEARCH, _WINDOW):
        window = view[pos + step]
        hit = (window == 91) | (window == 58)  # [ :
        first = np.argmax(hit, axis=1)
        found = hit[np.arange(len(rows)), first]
        out[rows[found]] = first[found] + at + step
        rows, pos = rows[~found], pos[~found]
        if not len(rows):
            break
    return out


def fold_lines(data: bytes, nl: IntArray, lines: IntArray, fmt: str | None) -> Fold:
    """Group the ``lines`` (indexes into ``data``, ascending) by hour, host and program in
    bulk: the lines the format's fast-path envelope fits; the others are singles.

    Each line is tested as the element of a binary array that runs on to the next line
    tested (no copy; the envelope matches no newline, so what follows the line changes
    nothing); the key is the bytes from the zone or host to the program's end."""
    head = _FOLD_HEADS.get(fmt or "")
    if pa is None or head is None or not len(lines) or b"\r" in data or len(data) >= 2**31:
        return Fold(_EMPTY, _EMPTY, _EMPTY, lines)
    line_starts = np.empty(len(nl) + 1, dtype=np.int64)
    line_starts[0] = 0
    line_starts[1:] = nl + 1
    starts = line_starts[lines]
    arr = _binary(data, np.append(starts, len(data)))
    ok = _bits(pc.match_substring_regex(arr, head.regex))
    if _REPEATED in data:
        at = data.find(_REPEATED)
        while at >= 0:
            line = int(np.searchsorted(starts, at, side="right")) - 1
            if line >= 0:
                ok[line] = False
            at = data.find(_REPEATED, at + 1)
    if head.zone is None:
        ends = _program_ends(data, starts, head.search, ok)
    else:
        six = np.frombuffer(data, np.uint8)[np.minimum(starts + head.zone, len(data) - 1)] != 90
        ends = _program_ends(data, starts, head.search, ok & ~six)
        if six.any():
            ends = np.where(six, _program_ends(data, starts, head.search + 5, ok & six), ends)
    ok &= ends >= 0
    bulk = np.flatnonzero(ok)
    singles = lines[~ok]
    if not len(bulk):
        return Fold(_EMPTY, _EMPTY, _EMPTY, singles)
    s = starts[bulk]
    # the keys, as the even elements of an array of key, rest, key, rest, ...
    offsets = np.empty(2 * len(s) + 1, dtype=np.int64)
    offsets[0:-1:2] = s + head.key
    offsets[1::2] = s + ends[bulk]
    offsets[-1] = offsets[-2]
    pairs = _binary(data, offsets)
    evens = pa.Array.from_buffers(
        pa.int64(), len(s), [None, pa.py_buffer(np.arange(0, 2 * len(s), 2, dtype=np.int64))]
    )
    encoded = pc.dictionary_encode(pairs.take(evens))
    key_codes = _ints(encoded.indices)
    # the hour's bytes: a row of the envelope's first bytes each (one copy per line)
    rows = _rows(data, head.hour[-1] + 1)
    cols = rows[s][:, list(head.hour)].astype(np.int64)
    hour = np.zeros(len(s), dtype=np.int64)
    for j in range(cols.shape[1]):
        hour = (hour << head.bits) | (cols[:, j] if head.bits == 8 else cols[:, j] & 15)
    _, hour_codes = np.unique(hour, return_inverse=True)
    codes = hour_codes.reshape(-1) * (len(encoded.dictionary) + 1) + key_codes
    # groups numbered by first appearance among the bulk lines
    _, first, inverse, counts = np.unique(
        codes, return_index=True, return_inverse=True, return_counts=True
    )
    last = np.zeros(len(first), dtype=np.int64)
    last[inverse.reshape(-1)] = np.arange(len(bulk))  # the last write of each group wins
    more = counts > 1
    sel = lines[bulk]
    return Fold(sel[first], sel[last[more]], (counts[more] - 1).astype(np.int64), singles)


def hour_of(ts: datetime | None) -> str:
    """The ``logcheck_hour`` an unexplained line is folded under."""
    return "" if ts is None else ts.replace(minute=0, second=0, microsecond=0).isoformat()
