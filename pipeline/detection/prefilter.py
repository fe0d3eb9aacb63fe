"""Selecting candidate lines from large byte buffers before any grammar runs.

Every rule states (or the loader derives) literals of which at least one occurs in every
line the rule can match. The prefilter searches a whole chunk for each distinct literal with
``bytes.find`` (C speed), maps hit offsets to line numbers with one vectorised search over
the chunk's newline offsets, and hands only those lines on. Rules without literals make
every line a candidate.

Journal JSON lines escape some characters and may carry ``MESSAGE`` as a byte array, so
for that format the literals are also searched in their JSON-escaped form and every line
with an array ``MESSAGE`` is a candidate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pipeline.detection.model import Rule

IntArray = npt.NDArray[np.int64]

_BYTE_ARRAY_MARKERS = (b'"MESSAGE":[', b'"MESSAGE" : [')


def newline_offsets(data: bytes) -> IntArray:
    """Offsets of every ``\\n`` in ``data``, as an int64 array."""
    arr = np.frombuffer(data, dtype=np.uint8)
    return np.flatnonzero(arr == 10).astype(np.int64)


def _json_forms(literal: bytes) -> set[bytes]:
    text = literal.decode("utf-8", "replace")
    return {
        literal,
        json.dumps(text)[1:-1].encode(),
        json.dumps(text, ensure_ascii=False)[1:-1].encode(),
    }


class Prefilter:
    """Candidate line selection for one rule set."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.unfiltered = [r for r in self.rules if not r.literals]
        self.everything = bool(self.unfiltered)
        literals: set[bytes] = set()
        for r in self.rules:
            literals.update(lit for lit in r.literals if b"\n" not in lit)
        self.literals = sorted(literals)
        self.json_literals = sorted({f for lit in self.literals for f in _json_forms(lit)})

    def candidate_lines(self, data: bytes, nl: IntArray, *, journal: bool = False) -> IntArray:
        """0-based indexes (within ``data``) of the lines that may match some rule.

        ``nl`` are the newline offsets of ``data``; a last line without ``\\n`` has index
        ``len(nl)``.
        """
        n_lines = len(nl) + (0 if data.endswith(b"\n") or not data else 1)
        if self.everything or not self.rules:
            return np.arange(n_lines if self.everything else 0, dtype=np.int64)
        hits: list[int] = []
        find = data.find
        literals = self.json_literals if journal else self.literals
        if journal:
            literals = literals + list(_BYTE_ARRAY_MARKERS)
        for lit in literals:
            pos = find(lit)
            while pos >= 0:
                hits.append(pos)
                end = find(b"\n", pos)
                if end < 0:
                    break
                pos = find(lit, end + 1)
        if not hits:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.searchsorted(nl, np.asarray(hits, dtype=np.int64)))
