"""A fail2ban filter's verdict on a block of lines at once: which lines *may* match.

The literal prefilter makes every line with one of a filter's literals a candidate (for
sshd, ``Failed ``, `` user ``, ``Connection ``, ... occur in many other programs' lines);
each candidate then costs a grammar parse, an event and the filter's regexes in Python.
:class:`BlockConfirmation` narrows the candidates of a chunk first, with RE2 passes over all
of them at once (pyarrow's ``match_substring_regex`` kernel, else RE2 line by line): the
relaxed filter on every candidate, the line shape on those it does not match. Only lines
the filter can match become events.

It must never drop a line the filter would match, so the pattern it runs is a *relaxation*
of the filter (:func:`relax`): the prefregex with its ``content`` group replaced by the
alternation of the failregexes, every anchor, look-around and word boundary removed, a
back-reference read as any text, a conditional as either branch, ``\\s`` as every ASCII
character Python's ``\\s`` takes. A relaxed pattern matches wherever the original does
(and more). It is tried on the raw line after its time stamp, which is the text the filter
sees (``host program[pid]: message``) only for a line of the plain shape the syslog and
RFC 3339 fast paths read: ``STAMP HOST PROG[PID]: MESSAGE``. Any other candidate (another
shape, a non-ASCII byte, rsyslog's ``message repeated``) is kept, and the line path decides
as before. Journal JSON lines are not confirmed here (see the prefilter).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

import re2

if TYPE_CHECKING:
    from pipeline.detection.prefilter import IntArray
    from pipeline.imports.fail2ban import Fail2banFilter

_MAXREPEAT = sre_c.MAXREPEAT
_RE2_MAX_REPEAT = 1000
_IGNORECASE = sre_c.SRE_FLAG_IGNORECASE
_MULTILINE = sre_c.SRE_FLAG_MULTILINE
_BEGIN = (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING)
_ASCII = range(128)
#: Python's ``\\s`` on ASCII text (``str.isspace``: the separators ``\\x1c``-``\\x1f`` too)
_SPACE = frozenset(i for i in _ASCII if chr(i).isspace())
#: what ``\\S`` takes even under ``re.ASCII`` (whose ``\\s`` is only ``[ \\t\\n\\r\\f\\v]``)
_NOT_SPACE = frozenset(i for i in _ASCII if chr(i) not in " \t\n\r\f\v")
_DIGIT = frozenset(range(48, 58))
_WORD = frozenset(i for i in _ASCII if chr(i).isalnum() or i == 95)
_CATEGORIES = {
    sre_c.CATEGORY_DIGIT: _DIGIT,
    sre_c.CATEGORY_NOT_DIGIT: frozenset(_ASCII) - _DIGIT,
    sre_c.CATEGORY_SPACE: _SPACE,
    sre_c.CATEGORY_NOT_SPACE: _NOT_SPACE,
    sre_c.CATEGORY_WORD: _WORD,
    sre_c.CATEGORY_NOT_WORD: frozenset(_ASCII) - _WORD,
    sre_c.CATEGORY_LINEBREAK: frozenset([10]),
    sre_c.CATEGORY_NOT_LINEBREAK: frozenset(_ASCII) - {10},
}
_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None))
_ANY = "(?s:.)"


class Unrelaxable(ValueError):
    """A regex construct this module cannot widen into RE2."""


def _folded(chars: set[int], ic: bool) -> set[int]:
    if not ic:
        return chars
    out = set(chars)
    for c in chars:
        ch = chr(c)
        if ch.isascii() and ch.isalpha():
            out.add(ord(ch.swapcase()))
    return out


def _char(c: int) -> str:
    ch = chr(c)
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{c:x}}}"


def _charset(chars: set[int], negate: bool) -> str:
    """An RE2 class of these ASCII characters (and, when ``negate``, all non-ASCII ones)."""
    ranges: list[tuple[int, int]] = []
    for c in sorted(chars):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    body = "".join(_char(a) if a == b else f"{_char(a)}-{_char(b)}" for a, b in ranges)
    if negate:
        body += "\\x{80}-\\x{10ffff}"
    return f"[{body}]" if body else "[^\\x{0}-\\x{10ffff}]"


def _in(items: Any, ic: bool) -> str:
    """A class (``IN``) as the ASCII characters it may take, widened where unsure."""
    negate = False
    chars: set[int] = set()
    for op, av in items:
        if op is sre_c.NEGATE:
            negate = True
        elif op is sre_c.LITERAL:
            chars.add(av)
        elif op is sre_c.RANGE:
            lo, hi = av
            chars.update(range(lo, min(hi, 127) + 1))
        elif op is sre_c.CATEGORY:
            got = _CATEGORIES.get(av)
            if got is None:
                raise Unrelaxable(f"class item {av}")
            chars |= got
        else:
            raise Unrelaxable(f"class item {op}")
    ascii_chars = {c for c in _folded(chars, ic) if c < 128}
    if negate:
        # a negated class takes what is not listed: widen by listing less (the folded set
        # already holds every case the class names)
        return _charset(set(_ASCII) - ascii_chars, True)
    return _charset(ascii_chars, False)


def relax(items: Any, ic: bool = False, replace: Callable[[int], str | None] | None = None) -> str:
    """RE2 syntax matching every text (of ASCII characters) the parsed pattern matches.

    ``replace(group)`` may give the text that stands for a capturing group instead.
    """
    out: list[str] = []
    for op, av in items:
        if op is sre_c.LITERAL:
            out.append(_charset(_folded({av}, ic), False) if ic else _char(av))
        elif op is sre_c.NOT_LITERAL:
            out.append(_charset(set(_ASCII) - _folded({av}, ic), True))
        elif op is sre_c.ANY:
            out.append(_ANY)
        elif op is sre_c.IN:
            out.append(_in(av, ic))
        elif op is sre_c.AT:
            continue  # an anchor or boundary only narrows
        elif op is sre_c.BRANCH:
            out.append("(?:" + "|".join(relax(alt, ic, replace) for alt in av[1]) + ")")
        elif op is sre_c.SUBPATTERN:
            group, add_flags, del_flags, sub = av
            got = replace(group) if replace is not None and group is not None else None
            if got is not None:
                out.append(got)
                continue
            sub_ic = (ic or bool(add_flags & _IGNORECASE)) and not del_flags & _IGNORECASE
            out.append("(?:" + relax(sub, sub_ic, replace) + ")")
        elif op in _REPEATS:
            lo, hi, sub = av
            body = relax(sub, ic, replace)
            if hi == _MAXREPEAT or hi > _RE2_MAX_REPEAT:
                count = f"{{{min(lo, _RE2_MAX_REPEAT)},}}"
            else:
                count = f"{{{lo},{hi}}}"
            out.append(f"(?:{body}){count}")
        elif op is getattr(sre_c, "ATOMIC_GROUP", None):
            out.append("(?:" + relax(av, ic, replace) + ")")
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            continue  # a look-around only narrows
        elif op is sre_c.GROUPREF:
            out.append(_ANY + "*")
        elif op is sre_c.GROUPREF_EXISTS:
            _group, yes, no = av
            alts = [relax(yes, ic, replace), relax(no, ic, replace) if no is not None else ""]
            out.append("(?:" + "|".join(alts) + ")")
        else:
            raise Unrelaxable(f"regex item {op}")
    return "".join(out)


def _parsed(pattern: str) -> tuple[Any, bool]:
    """The parsed pattern and whether it ignores case throughout."""
    try:
        parsed = sre_parse.parse(pattern)
    except Exception as exc:  # whatever the parser rejects
        raise Unrelaxable(str(exc)) from None
    return parsed, bool(parsed.state.flags & _IGNORECASE)


def _anchored(parsed: Any) -> bool:
    """Whether the pattern can only match at the start of its text."""
    data = list(parsed)
    if parsed.state.flags & _MULTILINE or not data:
        return False
    op, av = data[0]
    return op is sre_c.AT and av in _BEGIN


def _content_group(parsed: Any) -> int | None:
    """The ``content`` group's number when it stands at the prefregex's top level and
    cannot be empty (then the failregexes run on its text, starting where it starts)."""
    gid = parsed.state.groupdict.get("content")
    if gid is None:
        return None
    for op, av in parsed:
        if op is sre_c.SUBPATTERN and av[0] == gid:
            return gid if av[3].getwidth()[0] > 0 else None
    return None


#: the time stamps of the two line shapes whose text after the stamp is what the filter sees
STAMP = (
    r"(?:(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-9][0-9] "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})) "
)
_REPEATED = "message repeated "


def _message_start() -> str:
    """The first characters of a message the event keeps as it is written: one that is not
    a space (the event strips those) and does not start rsyslog's ``message repeated N
    times: [ text]``, which the event unwraps."""
    alts = [_charset(set(_ASCII) - _SPACE - {ord(_REPEATED[0])}, True)]
    for i in range(1, len(_REPEATED)):
        head = "".join(_char(ord(c)) for c in _REPEATED[:i])
        alts.append(head + "$")
        alts.append(head + _charset(set(_ASCII) - {ord(_REPEATED[i])}, True))
    return "(?:" + "|".join(alts) + ")"


#: ``STAMP HOST PROG[PID]: MESSAGE`` as the fast paths read it, whose text after the stamp
#: is the text the filter sees (up to trailing spaces): the event writes ``[PID]`` back as
#: it was when it has no leading zeros, and keeps the message as it is written when
#: :func:`_message_start` holds
SHAPE = (
    "^"
    + STAMP
    + r"[A-Za-z0-9][A-Za-z0-9._-]* [A-Za-z0-9_][A-Za-z0-9_./()-]*(?:\[(?:0|[1-9][0-9]{0,9})\])?: "
    + _message_start()
)


def confirmation_patterns(prefregex: str | None, failregexes: Sequence[str]) -> tuple[str, ...]:
    """RE2 patterns that every line the filter matches matches (all of them), on a raw line
    of :data:`SHAPE`; raises :class:`Unrelaxable` when a regex cannot be widened."""
    fails = [_parsed(f) for f in failregexes]
    if prefregex is None:
        # the failregexes run on the whole text after the stamp
        alts = [relax(p, ic) if _anchored(p) else _ANY + "*" + relax(p, ic) for p, ic in fails]
        return ("^" + STAMP + "(?:" + "|".join(alts) + ")",)
    pre, pre_ic = _parsed(prefregex)
    head = "^" + STAMP + ("" if _anchored(pre) else _ANY + "*")
    gid = _content_group(pre)
    if gid is not None:
        alts = [relax(p, ic) if _anchored(p) else _ANY + "*" + relax(p, ic) for p, ic in fails]
        # a failregex matches from where the content starts, and the content may go on
        choice = "(?:" + "|".join(alts) + ")" + _ANY + "*"
        return (head + relax(pre, pre_ic, lambda g: choice if g == gid else None),)
    # the failregexes run on some part of the text, or on all of it: anywhere after the stamp
    anywhere = "(?:" + "|".join(_ANY + "*" + relax(p, ic) for p, ic in fails) + ")"
    return (head + relax(pre, pre_ic), "^" + STAMP + anywhere)


class BlockConfirmation:
    """Narrows a chunk's candidate lines to those that may match (see the module).

    ``patterns``: RE2 patterns a line must all match (:func:`confirmation_patterns`);
    ``use_arrow=False`` runs them line by line with RE2 rather than with pyarrow's kernel
    (what happens anyway without pyarrow; the lines kept are the same).
    """

    def __init__(self, patterns: Sequence[str], *, use_arrow: bool = True) -> None:
        self.patterns = tuple(patterns)
        self.use_arrow = use_arrow
        for p in self.patterns:
            opts = re2.Options()
            opts.log_errors = False
            re2.compile(p, opts)  # raises re2.error now rather than on the first chunk
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"patterns": self.patterns, "use_arrow": self.use_arrow}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.patterns = state["patterns"]
        self.use_arrow = state["use_arrow"]
        self._local = threading.local()

    def keep(self, data: bytes, nl: IntArray, idx: IntArray) -> IntArray:
        """The lines of ``idx`` (sorted 0-based line indexes in ``data``, ``nl`` its
        newline offsets; index ``len(nl)`` is a last line without a newline) that the
        filter may match, in order."""
        import numpy as np

        if not len(idx):
            return idx
        # line i runs from bounds[i] + 1 to bounds[i + 1] (its newline excluded)
        bounds = np.concatenate(([-1], nl, [len(data)])).astype(np.int64)
        starts = bounds[idx] + 1
        ends = np.maximum(bounds[idx + 1], starts)
        may = None
        if self.use_arrow and _have_arrow():
            import pyarrow as pa

            try:
                may = self._test_arrow(data, starts, ends)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                # a pattern the kernel's RE2 options refuse: line by line from now on
                self.use_arrow = False
        if may is None:
            may = self._test_re2(data, starts, ends)
        if not data.isascii():
            # RE2 reads text as UTF-8 and the event replaces what is not: such lines are
            # left to the line path
            may |= _non_ascii(data, starts, ends)
        kept: IntArray = idx[may]
        return kept

    def _test_arrow(self, data: bytes, starts: IntArray, ends: IntArray) -> Any:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        # the candidate lines over the chunk's own bytes, without a copy: element 2k is
        # candidate k, element 2k+1 the bytes up to the next one, which start with the
        # newline ending candidate k, so every pattern (anchored at a time stamp) fails on
        # them at their first byte
        offsets = np.empty(2 * len(starts), dtype=np.int64)
        offsets[0::2] = starts
        offsets[1::2] = ends
        arr = pa.Array.from_buffers(
            pa.large_string(),
            2 * len(starts) - 1,
            [None, pa.py_buffer(offsets), pa.py_buffer(data)],
        )

        def hit(pattern: str) -> Any:
            return _bools(pc.match_substring_regex(arr, pattern))[0::2]

        may = hit(self.patterns[0])
        for p in self.patterns[1:]:
            may &= hit(p)
        if not may.all():
            may |= ~hit(SHAPE)
        return may

    def _compiled(self) -> list[Any]:
        got: list[Any] | None = getattr(self._local, "compiled", None)
        if got is None:
            opts = re2.Options()
            opts.log_errors = False
            got = [re2.compile(p, opts) for p in (SHAPE, *self.patterns)]
            self._local.compiled = got
        return got

    def _test_re2(self, data: bytes, starts: IntArray, ends: IntArray) -> Any:
        import numpy as np

        shape, *patterns = self._compiled()
        may = np.ones(len(starts), dtype=bool)
        for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            line = data[s:e]
            if all(p.search(line) for p in patterns):
                continue
            if shape.search(line) is None:
                continue
            may[i] = False
        return may


@functools.cache
def _have_arrow() -> bool:
    try:
        import pyarrow.compute  # noqa: F401
    except ImportError:  # pragma: no cover - pyarrow is an optional extra
        return False
    return True


def _bools(got: Any) -> Any:
    """An Arrow boolean array without nulls as a numpy one (``to_numpy`` would import
    pandas for it)."""
    import numpy as np

    bits = np.frombuffer(got.buffers()[1], dtype=np.uint8)
    flags = np.unpackbits(bits, bitorder="little")[got.offset : got.offset + len(got)]
    return flags.astype(bool)


def _non_ascii(data: bytes, starts: IntArray, ends: IntArray) -> Any:
    """True for the ranges holding a byte above 127."""
    import numpy as np

    high = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) >= 128)
    first = np.searchsorted(high, starts)
    return (first < len(high)) & (high[np.minimum(first, len(high) - 1)] < ends)


def block_confirmation(flt: Fail2banFilter) -> BlockConfirmation | None:
    """The filter's block stage, or None when one of its regexes cannot be widened."""
    from pipeline.imports.fail2ban import expand_tags

    spec = flt.spec
    try:
        pre = expand_tags(spec.prefregex[0], spec.usedns) if spec.prefregex else None
        fails = [expand_tags(src, spec.usedns) for src, _ in spec.failregex]
        return BlockConfirmation(confirmation_patterns(pre, fails))
    except (Unrelaxable, re2.error):
        return None
