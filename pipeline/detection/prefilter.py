"""Selecting candidate lines from large byte buffers before any grammar runs.

Every rule states (or the loader derives) literals of which at least one occurs in every
line the rule can match. The prefilter searches a whole chunk for all distinct literals at once with
Hyperscan (one pass, however many rules), or, where Hyperscan is not installed, for each
literal in turn with ``bytes.find`` (C speed); it maps hit offsets to line numbers with one
vectorised search over the chunk's newline offsets, and hands only those lines on. Rules
without literals make every line a candidate.

Journal JSON lines escape some characters and may carry ``MESSAGE`` as a byte array, so
for that format the literals are also searched in their JSON-escaped form and every line
with an array ``MESSAGE`` is a candidate.

A rule may narrow its own candidates further, a block at a time: a condition with a
``confirm_block(data, nl, lines)`` method (see :class:`BlockConfirmed`) gets the indexes of
the lines its rule's literals selected and returns those that can hold (a necessary test,
typically RE2 passes over all of them); a line stays a candidate when another rule's
literal selected it. Journal JSON chunks are not confirmed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

try:  # an optional speed-up (x86_64 wheels); the results are the same without it
    import hyperscan
except ImportError:  # pragma: no cover - exercised by forcing use_hyperscan=False
    hyperscan = None  # type: ignore[assignment]

from pipeline.detection.model import Rule

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    IntArray: TypeAlias = npt.NDArray[np.int64]

# numpy is imported by the functions that get a chunk: a command or a scan that reads no
# line does not pay for it

_BYTE_ARRAY_MARKERS = (b'"MESSAGE":[', b'"MESSAGE" : [')


def newline_offsets(data: bytes) -> IntArray:
    """Offsets of every ``\\n`` in ``data``, as an int64 array."""
    import numpy as np

    arr = np.frombuffer(data, dtype=np.uint8)
    return np.flatnonzero(arr == 10).astype(np.int64)


def _json_forms(literal: bytes) -> set[bytes]:
    text = literal.decode("utf-8", "replace")
    return {
        literal,
        json.dumps(text)[1:-1].encode(),
        json.dumps(text, ensure_ascii=False)[1:-1].encode(),
    }


def _hyperscan_database(literals: Sequence[bytes]) -> Any:
    """A block-mode Hyperscan database matching each literal byte for byte."""
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(
        expressions=[b"".join(b"\\x%02x" % c for c in lit) for lit in literals],
        ids=list(range(len(literals))),
        elements=len(literals),
        flags=[0] * len(literals),
    )
    return db


@runtime_checkable
class BlockConfirmed(Protocol):
    """A condition that can tell, for a chunk's candidate lines at once, which may hold."""

    def confirm_block(self, data: bytes, nl: IntArray, lines: IntArray) -> IntArray:
        """Of ``lines`` (sorted 0-based line indexes in ``data``; ``nl`` its newline
        offsets), those on which the condition may hold: never one on which it holds."""
        ...


def _confirmation(rule: Rule) -> BlockConfirmed | None:
    for cond in rule.conditions:
        if isinstance(cond, BlockConfirmed):
            return cond
    return None


class Prefilter:
    """Candidate line selection for one rule set."""

    def __init__(self, rules: Sequence[Rule], *, use_hyperscan: bool = True) -> None:
        self.rules = list(rules)
        self.everything = any(not r.literals for r in self.rules)
        literals: set[bytes] = set()
        for r in self.rules:
            literals.update(lit for lit in r.literals if b"\n" not in lit)
        self.literals = sorted(literals)
        #: (condition, indexes of the rule's literals) of the rules that confirm their
        #: candidates, and the indexes of the other rules' literals
        self.confirmed: list[tuple[BlockConfirmed, frozenset[int]]] = []
        index = {lit: i for i, lit in enumerate(self.literals)}
        plain: set[int] = set()
        for r in self.rules:
            own = {index[lit] for lit in r.literals if lit in index}
            cond = _confirmation(r)
            if cond is None:
                plain |= own
            else:
                self.confirmed.append((cond, frozenset(own)))
        self.plain_literals = frozenset(plain)
        self.json_literals = sorted({f for lit in self.literals for f in _json_forms(lit)})
        #: what is searched in journal-json lines: escaped forms and byte-array messages
        self.journal_literals = self.json_literals + list(_BYTE_ARRAY_MARKERS)
        self.use_hyperscan = use_hyperscan and hyperscan is not None and bool(self.literals)
        # compiled lazily, per process and thread (a database's scratch space is not shared)
        self._local = threading.local()

    @property
    def engine(self) -> str:
        """How literals are searched: ``hyperscan`` or ``find``."""
        return "hyperscan" if self.use_hyperscan else "find"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _database(self, journal: bool) -> Any:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid = os.getpid()
            local.dbs = {}
        db = local.dbs.get(journal)
        if db is None:
            lits = self.journal_literals if journal else self.literals
            db = local.dbs[journal] = _hyperscan_database(lits)
        return db

    def _hits(self, data: bytes, journal: bool, ids: list[int] | None = None) -> list[int]:
        """Offsets inside every occurrence of every literal (several per line at most);
        with ``ids``, the index of each one's literal is appended there."""
        hits: list[int] = []
        if self.use_hyperscan:
            add = hits.append
            if ids is None:

                def on_match(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
                    add(end - 1)

            else:
                add_id = ids.append

                def on_match(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
                    add(end - 1)
                    add_id(_id)

            self._database(journal).scan(data, match_event_handler=on_match)
            return hits
        find = data.find
        for i, lit in enumerate(self.journal_literals if journal else self.literals):
            pos = find(lit)
            while pos >= 0:
                hits.append(pos)
                if ids is not None:
                    ids.append(i)
                end = find(b"\n", pos)
                if end < 0:
                    break
                pos = find(lit, end + 1)
        return hits

    def candidate_lines(self, data: bytes, nl: IntArray, *, journal: bool = False) -> IntArray:
        """0-based indexes (within ``data``) of the lines that may match some rule.

        ``nl`` are the newline offsets of ``data``; a last line without ``\\n`` has index
        ``len(nl)``.
        """
        import numpy as np

        n_lines = len(nl) + (0 if data.endswith(b"\n") or not data else 1)
        if self.everything or not self.rules:
            return np.arange(n_lines if self.everything else 0, dtype=np.int64)
        if self.confirmed and not journal:
            return self._confirmed_lines(data, nl)
        hits = self._hits(data, journal)
        if not hits:
            return np.zeros(0, dtype=np.int64)
        return _distinct(np.searchsorted(nl, np.asarray(hits, dtype=np.int64)))

    def _confirmed_lines(self, data: bytes, nl: IntArray) -> IntArray:
        """:meth:`candidate_lines` with some rules' candidates confirmed by their condition."""
        import numpy as np

        if not self.plain_literals and len(self.confirmed) == 1:
            # one rule: its literals are all there are
            hits = self._hits(data, False)
            if not hits:
                return np.zeros(0, dtype=np.int64)
            mine = _distinct(np.searchsorted(nl, np.asarray(hits, dtype=np.int64)))
            return self.confirmed[0][0].confirm_block(data, nl, mine)
        ids: list[int] = []
        offsets = np.asarray(self._hits(data, False, ids), dtype=np.int64)
        if not len(offsets):
            return np.zeros(0, dtype=np.int64)
        lit = np.asarray(ids, dtype=np.int64)
        line = np.searchsorted(nl, offsets)

        def lines_of(literals: frozenset[int]) -> IntArray:
            if not literals:
                return np.zeros(0, dtype=np.int64)
            mask = np.isin(lit, np.fromiter(literals, dtype=np.int64, count=len(literals)))
            return np.unique(line[mask])

        out = lines_of(self.plain_literals)
        for cond, literals in self.confirmed:
            mine = np.setdiff1d(lines_of(literals), out, assume_unique=True)
            if len(mine):
                kept = cond.confirm_block(data, nl, mine)
                out = np.union1d(out, kept)
        return out.astype(np.int64)


def _distinct(lines: IntArray) -> IntArray:
    """``numpy.unique`` of line indexes, without a sort where they come in order (as
    Hyperscan reports matches: by end offset)."""
    import numpy as np

    if len(lines) > 1 and bool(np.all(lines[1:] >= lines[:-1])):
        keep = np.ones(len(lines), dtype=bool)
        keep[1:] = lines[1:] != lines[:-1]
        out: IntArray = lines[keep]
        return out
    return np.unique(lines)
