"""Compiling rule patterns safely, and reading the literals a pattern requires.

Log lines are attacker-controlled, so a rule pattern must run in bounded time. Patterns
compile on RE2 (linear time) whenever RE2 accepts them; the few RE2 rejects (look-around,
back-references) fall back to Python ``re`` only when they have no nested or adjacent
unbounded repeats. A named capture may not hold an unbounded catch-all (``.*``), so an
injected value cannot ride along into a finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import re2

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False

_MAXREPEAT = sre_c.MAXREPEAT
_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None))


class PatternError(ValueError):
    """The pattern is invalid or unsafe; the message says why and how to fix it."""


_UNANCHORED = re2._Anchor.UNANCHORED
_NO_CAPTURE_OPTIONS = re2.Options()
_NO_CAPTURE_OPTIONS.log_errors = False
_NO_CAPTURE_OPTIONS.never_capture = True


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    """A compiled rule pattern; :meth:`search` returns its named captures.

    RE2 patterns are matched through the binding's ``RE2.Match`` on the UTF-8 bytes of the
    text (the ``re2`` module's ``search`` and ``groupdict`` cost several times the match
    itself); a pattern without named groups runs with ``never_capture``, as only whether
    it matches counts.
    """

    source: str
    engine: str  # "re2" or "re"
    regex: Any
    _raw: Any = field(init=False, repr=False, compare=False)
    _names: tuple[tuple[str, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = None
        names: tuple[tuple[str, int], ...] = ()
        if self.engine == "re2":
            names = tuple(self.regex.groupindex.items())
            compiled = self.regex if names else re2.compile(self.source, _NO_CAPTURE_OPTIONS)
            raw = compiled._regexp
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_names", names)

    def __reduce__(self) -> tuple[Any, ...]:
        return (CompiledPattern, (self.source, self.engine, self.regex))

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self.regex.groupindex) if hasattr(self.regex, "groupindex") else ()

    def search(self, text: str) -> dict[str, str] | None:
        raw = self._raw
        if raw is None:
            m = self.regex.search(text)
            if m is None:
                return None
            return {k: v for k, v in m.groupdict().items() if v is not None}
        data = text.encode("utf-8", "surrogatepass")
        spans = raw.Match(_UNANCHORED, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        out: dict[str, str] = {}
        if self._names:
            ascii_only = len(data) == len(text)
            for name, index in self._names:
                start, end = spans[index]
                if start < 0:
                    continue
                if ascii_only:
                    out[name] = text[start:end]
                else:
                    out[name] = data[start:end].decode("utf-8", "surrogatepass")
        return out


def _parse(pattern: str, flags: int = 0) -> Any:
    try:
        return sre_parse.parse(pattern, flags)
    except re.error as exc:
        raise PatternError(f"invalid regex: {exc}") from None
    except (RecursionError, OverflowError) as exc:
        raise PatternError(f"invalid regex: {exc}") from None


def _is_unbounded(op: Any, av: Any) -> bool:
    return op in _REPEATS and av[1] == _MAXREPEAT


def _items(seq: Any) -> Iterator[tuple[Any, Any]]:
    yield from seq


def _subsequences(op: Any, av: Any) -> Iterable[Any]:
    """The nested sub-patterns of one parsed item."""
    if op in _REPEATS:
        return [av[2]]
    if op is sre_c.SUBPATTERN:
        return [av[-1]]
    if op is sre_c.BRANCH:
        return list(av[1])
    if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
        return [av[1]]
    if op is sre_c.GROUPREF_EXISTS:
        return [s for s in av[1:] if s is not None]
    if op is getattr(sre_c, "ATOMIC_GROUP", None):
        return [av]
    return []


def _contains_unbounded(seq: Any) -> bool:
    for op, av in _items(seq):
        if _is_unbounded(op, av):
            return True
        if any(_contains_unbounded(sub) for sub in _subsequences(op, av)):
            return True
    return False


def _is_catch_all(op: Any, av: Any) -> bool:
    """``.*``, ``.+``, ``.{3,}`` and friends: an unbounded repeat of 'any character'."""
    if not _is_unbounded(op, av):
        return False
    body = list(av[2])
    return len(body) == 1 and body[0][0] is sre_c.ANY


def _check_captures(seq: Any, names: dict[int, str], inside: str | None) -> None:
    for op, av in _items(seq):
        if op is sre_c.SUBPATTERN and av[0] is not None and av[0] in names:
            _check_captures(av[-1], names, names[av[0]])
            continue
        if inside is not None and _is_catch_all(op, av):
            raise PatternError(
                f"named group {inside!r} holds an unbounded catch-all (.* or .+): an injected "
                "value could ride along; use a class that stops at the delimiter, e.g. [^>\\s]+"
            )
        for sub in _subsequences(op, av):
            _check_captures(sub, names, inside)


def _check_backtracking(seq: Any) -> None:
    """Refuse shapes that backtrack exponentially or polynomially on crafted input."""
    previous_unbounded = False
    for op, av in _items(seq):
        if _is_unbounded(op, av):
            if _contains_unbounded(av[2]):
                raise PatternError(
                    "nested unbounded repeats such as (a+)+ can take exponential time on "
                    "crafted lines; rewrite the pattern so RE2 accepts it or remove the nesting"
                )
            if previous_unbounded:
                raise PatternError(
                    "adjacent unbounded repeats such as .*.* or \\s*\\s+ can take polynomial "
                    "time on crafted lines; merge them or bound them"
                )
            previous_unbounded = True
        elif op not in (sre_c.AT,):
            previous_unbounded = False
        for sub in _subsequences(op, av):
            if op not in _REPEATS:
                _check_backtracking(sub)


def compile_pattern(pattern: str) -> CompiledPattern:
    """Compile a rule pattern, RE2 first; raise :class:`PatternError` when unsafe or invalid."""
    if not isinstance(pattern, str) or not pattern:
        raise PatternError("a regex must be a non-empty string")
    parsed = _parse(pattern)
    names = {index: name for name, index in parsed.state.groupdict.items()}
    _check_captures(parsed, names, None)
    try:
        return CompiledPattern(pattern, "re2", re2.compile(pattern, _RE2_OPTIONS))
    except re2.error:
        pass
    _check_backtracking(parsed)
    try:
        return CompiledPattern(pattern, "re", re.compile(pattern))
    except re.error as exc:  # pragma: no cover - sre_parse accepted it already
        raise PatternError(f"invalid regex: {exc}") from None


# -- required literals ---------------------------------------------------------------------


def _minimal(alts: set[str]) -> frozenset[str]:
    """Drop alternatives that contain another one: finding the shorter one is enough."""
    return frozenset(a for a in alts if not any(b != a and b in a for b in alts))


def _best(options: list[frozenset[str]]) -> frozenset[str] | None:
    """Of several literal sets that are all required, keep the most selective one."""
    usable = [o for o in options if o]
    if not usable:
        return None
    return max(usable, key=lambda s: (min(len(x) for x in s), -len(s)))


def _required(seq: Any, ignorecase: bool) -> frozenset[str] | None:
    options: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            options.append(frozenset(["".join(run)]))
            run.clear()

    def walk(items: Any, ic: bool) -> None:
        for op, av in _items(items):
            if op is sre_c.LITERAL and not ic:
                run.append(chr(av))
            elif op is sre_c.AT:
                continue
            elif op is sre_c.SUBPATTERN:
                add_flags, del_flags = av[1], av[2]
                sub_ic = (ic or bool(add_flags & sre_c.SRE_FLAG_IGNORECASE)) and not (
                    del_flags & sre_c.SRE_FLAG_IGNORECASE
                )
                walk(av[-1], sub_ic)
            elif op is sre_c.BRANCH:
                flush()
                alts: set[str] = set()
                for alt in av[1]:
                    got = _required(alt, ic)
                    if got is None:
                        alts = set()
                        break
                    alts |= got
                if alts:
                    options.append(_minimal(alts))
            elif op in _REPEATS and av[0] >= 1:
                flush()
                got = _required(av[2], ic)
                if got is not None:
                    options.append(got)
            else:
                flush()

    walk(seq, ignorecase)
    flush()
    return _best(options)


def required_literals(pattern: str) -> frozenset[str] | None:
    """Texts of which at least one occurs in every string the pattern matches, or None."""
    parsed = _parse(pattern)
    ignorecase = bool(parsed.state.flags & sre_c.SRE_FLAG_IGNORECASE)
    return _required(parsed, ignorecase)


def best_literal_set(options: Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    """Public form of the selectivity choice used by the prefilter planner."""
    return _best([o for o in options if o is not None])
