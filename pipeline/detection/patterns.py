"""Compiling rule patterns safely, and reading the literals a pattern requires.

Log lines are attacker-controlled, so a rule pattern must run in bounded time. Patterns
compile on RE2 (linear time) whenever RE2 accepts them; the few RE2 rejects (look-around,
back-references) fall back to Python ``re`` only when their shape makes backtracking linear
(:func:`_check_linear`): Python ``re`` cannot be interrupted, so the bound comes from
refusing every other shape, not from a timer. A named capture may not hold an unbounded
catch-all (``.*``), so an injected value cannot ride along into a finding.
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


# -- linear shapes for Python re --------------------------------------------------------------

#: code points a character set is tested on to prove two sets disjoint: the first 12 288
#: (every script a log is likely to use) plus samples of the large blocks above, plus every
#: literal and range end of the pattern itself
_PROBE_BASE = (
    *range(0x3000),
    *(0x3000, 0x3007, 0x4E00, 0x9FA5, 0xAC00, 0xD7A3, 0xFF10, 0xFF19, 0xFF21, 0xFF41),
    *(0x10400, 0x104A0, 0x1D7CE, 0x1F600, 0x20000, 0xE0001, 0x10FFFF),
)
_SINGLE = (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.ANY, sre_c.IN)
_END_ATS = (sre_c.AT_END, sre_c.AT_END_STRING)
_START_ATS = (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING)
_LOOKAROUNDS = (sre_c.ASSERT, sre_c.ASSERT_NOT)
#: a continuation whose first character is not known (the end of a repeated group)
_UNKNOWN: list[list[tuple[Any, Any]]] = [[(sre_c.FAILURE, None)]]


def _in_category(cat: Any, ch: str) -> bool:
    if cat in (sre_c.CATEGORY_DIGIT, sre_c.CATEGORY_UNI_DIGIT):
        return ch.isdecimal()
    if cat in (sre_c.CATEGORY_NOT_DIGIT, sre_c.CATEGORY_UNI_NOT_DIGIT):
        return not ch.isdecimal()
    if cat in (sre_c.CATEGORY_SPACE, sre_c.CATEGORY_UNI_SPACE):
        return ch.isspace()
    if cat in (sre_c.CATEGORY_NOT_SPACE, sre_c.CATEGORY_UNI_NOT_SPACE):
        return not ch.isspace()
    if cat in (sre_c.CATEGORY_WORD, sre_c.CATEGORY_UNI_WORD):
        return ch.isalnum() or ch == "_"
    if cat in (sre_c.CATEGORY_NOT_WORD, sre_c.CATEGORY_UNI_NOT_WORD):
        return not (ch.isalnum() or ch == "_")
    return True  # line breaks and anything unknown: assume it may match


class _Chars:
    """The characters one single-character item (``a``, ``[^>\\s]``, ``.``, ``\\d``) takes."""

    def __init__(self, op: Any, av: Any, ignorecase: bool, dotall: bool) -> None:
        self.op, self.av, self.ignorecase, self.dotall = op, av, ignorecase, dotall

    def points(self) -> list[int]:
        """Code points this item names (added to the probe)."""
        if self.op in (sre_c.LITERAL, sre_c.NOT_LITERAL):
            return [self.av]
        out: list[int] = []
        if self.op is sre_c.IN:
            for op, av in self.av:
                if op is sre_c.LITERAL:
                    out.append(av)
                elif op is sre_c.RANGE:
                    out.extend((av[0], av[1], min(av[0] + 1, av[1]), max(av[1] - 1, av[0])))
        return out

    def _raw(self, ch: str) -> bool:
        op, av = self.op, self.av
        if op is sre_c.LITERAL:
            return ord(ch) == int(av)
        if op is sre_c.NOT_LITERAL:
            return ord(ch) != int(av)
        if op is sre_c.ANY:
            return self.dotall or ch != "\n"
        negate, hit = False, False
        for item, arg in av:
            if item is sre_c.NEGATE:
                negate = True
            elif item is sre_c.LITERAL:
                hit = hit or ord(ch) == arg
            elif item is sre_c.RANGE:
                hit = hit or arg[0] <= ord(ch) <= arg[1]
            elif item is sre_c.CATEGORY:
                hit = hit or _in_category(arg, ch)
            else:  # pragma: no cover - other set items: assume the worst
                hit = True
        return hit != negate

    def __contains__(self, ch: str) -> bool:
        if self._raw(ch):
            return True
        return self.ignorecase and ch.swapcase() != ch and self._raw(ch.swapcase())


class _Shape:
    """The checks of :func:`_check_linear` over one parsed pattern."""

    def __init__(self, parsed: Any) -> None:
        flags = parsed.state.flags
        self.ignorecase = bool(flags & sre_c.SRE_FLAG_IGNORECASE)
        self.dotall = bool(flags & sre_c.SRE_FLAG_DOTALL)
        self.multiline = bool(flags & sre_c.SRE_FLAG_MULTILINE)
        self.probe = [chr(c) for c in _PROBE_BASE]
        self._scoped(parsed)
        extra = {p for c in self._all_sets(parsed) for p in c.points()}
        self.probe.extend(chr(c) for c in sorted(extra) if c >= 0x3000)

    def _scoped(self, seq: Any) -> None:
        """Scoped flags anywhere count for the whole pattern (a safe over-estimate)."""
        for op, av in _items(seq):
            if op is sre_c.SUBPATTERN:
                self.ignorecase |= bool(av[1] & sre_c.SRE_FLAG_IGNORECASE)
                self.dotall |= bool(av[1] & sre_c.SRE_FLAG_DOTALL)
            for sub in _subsequences(op, av):
                self._scoped(sub)

    def chars(self, op: Any, av: Any) -> _Chars:
        return _Chars(op, av, self.ignorecase, self.dotall)

    def _all_sets(self, seq: Any) -> Iterator[_Chars]:
        for op, av in _items(seq):
            if op in _SINGLE:
                yield self.chars(op, av)
            for sub in _subsequences(op, av):
                yield from self._all_sets(sub)

    def disjoint(self, a: list[_Chars], b: list[_Chars]) -> str | None:
        """None when no probed character is in both unions, else one that is."""
        for ch in self.probe:
            if any(ch in x for x in a) and any(ch in y for y in b):
                return ch
        return None

    def first(self, rest: list[list[tuple[Any, Any]]]) -> list[_Chars] | None:
        """What the continuation ``rest`` (sequences, innermost first) starts with: its
        possible first characters; [] at the end of the pattern or ``$``; None when that is
        not a single mandatory character (an optional item, a back-reference, ...)."""
        for depth, seq in enumerate(rest):
            for k, (op, av) in enumerate(seq):
                if op is sre_c.AT:
                    if av in _END_ATS and not self.multiline:
                        return []
                    continue  # \b, ^ and other zero-width tests
                if op in _LOOKAROUNDS:
                    continue  # zero-width; its own cost is bounded (checked apart)
                if op in _SINGLE:
                    return [self.chars(op, av)]
                tail = [list(seq[k + 1 :]), *rest[depth + 1 :]]
                if op is sre_c.SUBPATTERN:
                    return self.first([list(av[-1]), *tail])
                if op in _REPEATS and av[0] >= 1:
                    return self.first([list(av[2]), *tail])
                if op is sre_c.BRANCH:
                    out: list[_Chars] = []
                    for alt in av[1]:
                        got = self.first([list(alt), *tail])
                        if got is None or not got:
                            return None
                        out.extend(got)
                    return out
                return None
        return []


def _check_linear(parsed: Any) -> None:
    """Refuse what could make Python ``re`` backtrack more than linearly on a crafted line.

    Accepted shapes, each making a match attempt linear in the line: an unbounded repeat
    repeats one character (``\\S+``, ``[^>]*``); what follows it cannot start with a
    character it takes (so backtracking into it fails at once); a repeat that can repeat
    holds no alternation of longer alternatives; look-arounds hold no unbounded repeat;
    and a pattern with an unbounded repeat is anchored at the start (``^``), since ``re``
    retries an unanchored one at every position of the line.
    """
    shape = _Shape(parsed)
    has_unbounded = _contains_unbounded(parsed)
    if has_unbounded:
        head = [(op, av) for op, av in _items(parsed) if op not in _LOOKAROUNDS]
        anchored = (
            bool(head)
            and head[0][0] is sre_c.AT
            and head[0][1] in _START_ATS
            and not (shape.multiline and head[0][1] is sre_c.AT_BEGINNING)
        )
        if not anchored:
            raise PatternError(
                "on Python re (RE2 rejects this pattern) an unbounded repeat is retried from "
                "every position of the line, quadratic on a crafted one; anchor the pattern "
                "at the start of the message (^) or bound the repeat, e.g. {1,64}"
            )
    _walk_linear(shape, list(_items(parsed)), [], inside_repeat=False)


def _walk_linear(
    shape: _Shape,
    seq: list[tuple[Any, Any]],
    outer: list[list[tuple[Any, Any]]],
    *,
    inside_repeat: bool,
) -> None:
    for k, (op, av) in enumerate(seq):
        rest = [seq[k + 1 :], *outer]
        if op in _LOOKAROUNDS:
            if _contains_unbounded(av[1]):
                raise PatternError(
                    "a look-around holding an unbounded repeat (such as (?=.*x)) is run again "
                    "at every position it is tried; bound the repeat or drop the look-around"
                )
            _walk_linear(shape, list(av[1]), [], inside_repeat=False)
            continue
        if op in _REPEATS:
            body = list(av[2])
            single = len(body) == 1 and body[0][0] in _SINGLE
            unbounded = _is_unbounded(op, av)
            # a repeat of variable count inside a repeat multiplies the ways to split a line
            # ((?:a{0,20}){0,20}b is exponential): it must be as strict as an unbounded one
            variable = av[0] != av[1] and inside_repeat
            if unbounded or variable:
                if not single:
                    raise PatternError(
                        "on Python re an unbounded repeat (or one of variable count inside a "
                        "repeat) must repeat one character (such as \\S+ or [^>]*): a repeated "
                        "group or alternation such as (a|aa)+ can take exponential time on a "
                        "crafted line"
                    )
                _check_followed(shape, body[0], rest)
                continue
            # after the body comes the body again or the rest: not one known first character
            again = av[1] > 1
            _walk_linear(
                shape, body, _UNKNOWN if again else rest, inside_repeat=inside_repeat or again
            )
            continue
        if op is sre_c.BRANCH:
            if inside_repeat and not all(len(alt) == 1 and alt[0][0] in _SINGLE for alt in av[1]):
                raise PatternError(
                    "on Python re an alternation inside a repeat, such as (a|aa){1,30}, can "
                    "take exponential time on a crafted line; use a character class or RE2 syntax"
                )
            for alt in av[1]:
                _walk_linear(shape, list(alt), rest, inside_repeat=inside_repeat)
            continue
        if op is sre_c.SUBPATTERN:
            _walk_linear(shape, list(av[-1]), rest, inside_repeat=inside_repeat)
            continue
        for sub in _subsequences(op, av):
            _walk_linear(shape, list(sub), rest, inside_repeat=inside_repeat)


def _check_followed(
    shape: _Shape, item: tuple[Any, Any], rest: list[list[tuple[Any, Any]]]
) -> None:
    """Refuse a repeat of ``item`` that what follows it (``rest``) could also start with."""
    after = shape.first(rest)
    mine = [shape.chars(*item)]
    clash = (
        None
        if after is not None and not after
        else ("?" if after is None else shape.disjoint(mine, after))
    )
    if clash is not None:
        what = (
            "what follows it is not one fixed kind of character"
            if after is None
            else f"what follows it can start with {clash!r}, which it also takes"
        )
        raise PatternError(
            f"on Python re an unbounded repeat must be followed by a character it "
            f"cannot take (or the end), else backtracking is polynomial; {what}: "
            "put a delimiter it excludes after it, e.g. [^,]+,"
        )


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
    _check_linear(parsed)
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
