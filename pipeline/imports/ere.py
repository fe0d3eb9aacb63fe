"""POSIX extended regular expressions (as GNU ``grep -E`` reads them) in PCRE syntax.

logcheck's patterns are ERE lines for ``grep -E``; Hyperscan, RE2 and Python ``re`` read
PCRE-style syntax, where ``[[:digit:]]`` is a set of ``[``, ``:``, ``d``, ... and ``\\`` is
an escape inside brackets. :func:`translate` rewrites one ERE into a pattern all three read
the same way, with GNU grep's meaning in the C locale (bytes, not characters):

* bracket expressions are rebuilt item by item: POSIX classes become byte ranges, ``\\`` is
  a plain byte, ``]`` first is literal, a negated set also excludes ``\\n``;
* ``\\w \\W \\s \\S`` become explicit sets (none of them reaches ``\\n``), ``\\b \\B`` stay,
  ``\\``` and ``\\'`` become ``^`` and ``$`` (a grep line is its own buffer), ``\\N`` is a
  back-reference, any other escaped byte is that byte;
* ``{`` that does not open a valid interval is literal; ``*`` at the start of an expression
  is dropped (GNU ignores it); a quantifier after a quantifier repeats the repetition
  (``a+?`` is ``(?:a+)?``, not a lazy ``a+``).

So that a match can never run over a line end when a block of many lines is scanned at once,
nothing translated matches ``\\n``. ``.`` is left as ``.`` (no DOTALL).
"""

from __future__ import annotations

from dataclasses import dataclass

_CLASSES: dict[str, bytes] = {
    "alpha": b"A-Za-z",
    "digit": b"0-9",
    "alnum": b"A-Za-z0-9",
    "upper": b"A-Z",
    "lower": b"a-z",
    "space": b" \\t\\x0b\\x0c\\r",  # and \n, which no line holds
    "blank": b" \\t",
    "punct": b"!-/:-@\\[-`{-~",
    "print": b" -~",
    "graph": b"!-~",
    "cntrl": b"\\x00-\\x09\\x0b-\\x1f\\x7f",
    "xdigit": b"0-9A-Fa-f",
}
_WORD = b"A-Za-z0-9_"
_SPACE = b" \\t\\x0b\\x0c\\r"
_SPECIAL = frozenset(b"\\^$.|?*+()[]{}/-#&~ \t")


class EreError(ValueError):
    """A pattern that cannot be translated; ``col`` is 1-based."""

    def __init__(self, message: str, col: int) -> None:
        super().__init__(message)
        self.message = message
        self.col = col


@dataclass(frozen=True, slots=True)
class Translated:
    regex: bytes
    #: uses ``\\1`` ... (Hyperscan and RE2 cannot; Python ``re`` can)
    backrefs: bool
    #: has ``^`` after pattern text or ``$`` before more (Hyperscan takes neither)
    inner_anchors: bool = False


def _byte(c: int) -> bytes:
    if c in _SPECIAL or c < 0x20 or c > 0x7E:
        return b"\\x%02x" % c
    return bytes((c,))


def _bracket(p: bytes, i: int) -> tuple[bytes, int]:
    """The set starting at ``p[i] == '['``, and the index after its ``]``."""
    start = i
    i += 1
    negate = i < len(p) and p[i] == 0x5E  # ^
    if negate:
        i += 1
    items: list[bytes] = []
    first = True
    while True:
        if i >= len(p):
            raise EreError("unmatched [", start + 1)
        c = p[i]
        if c == 0x5D and not first:  # ]
            i += 1
            break
        first = False
        if c == 0x5B and i + 1 < len(p) and p[i + 1] in b":=.":  # [: [= [.
            kind = p[i + 1]
            end = p.find(bytes((kind, 0x5D)), i + 2)
            if end < 0:
                raise EreError("unterminated [" + chr(kind), i + 1)
            name = p[i + 2 : end].decode("ascii", "replace")
            i = end + 2
            if kind == 0x3A:  # :
                cls = _CLASSES.get(name)
                if cls is None:
                    raise EreError(f"unknown character class [:{name}:]", start + 1)
                items.append(cls)
                continue
            if len(name) != 1:  # [=x=] / [.x.] of one byte are that byte (C locale)
                raise EreError(f"multi-character collating element [{chr(kind)}{name}", start + 1)
            lo = ord(name)
        else:
            lo = c
            i += 1
        if i + 1 < len(p) and p[i] == 0x2D and p[i + 1] != 0x5D:  # a range lo-hi
            hi = p[i + 1]
            i += 2
            if hi == 0x5B and i < len(p) and p[i] in b".=":
                kind = p[i]
                end = p.find(bytes((kind, 0x5D)), i + 1)
                if end < 0 or end != i + 2:
                    raise EreError("bad range end", i)
                hi = p[i + 1]
                i = end + 2
            if hi < lo:
                raise EreError("invalid range end", i)
            items.append(_byte(lo) + b"-" + _byte(hi))
        else:
            items.append(_byte(lo))
    body = b"".join(items)
    return (b"[^" + body + b"\\n]" if negate else b"[" + body + b"]"), i


def _interval(p: bytes, i: int) -> tuple[bytes, int] | None:
    """``{m}``, ``{m,}``, ``{,n}``, ``{m,n}`` at ``p[i]``, or None when ``{`` is literal."""
    end = p.find(b"}", i)
    if end < 0:
        return None
    body = p[i + 1 : end]
    lo, comma, hi = body.partition(b",")
    if not (lo.isdigit() or (comma and not lo)) or (hi and not hi.isdigit()):
        return None
    if not lo and not hi:
        return None
    if lo and hi and int(hi) < int(lo):
        raise EreError("invalid interval (max below min)", i + 1)
    return b"{" + (lo or b"0") + comma + hi + b"}", end + 1


def translate(pattern: bytes) -> Translated:
    """``pattern`` (one ``grep -E`` pattern) in the syntax Hyperscan, RE2 and ``re`` share."""
    p = pattern
    out: list[bytes] = []  # one entry per atom (quantifiers fold into it)
    #: index in ``out`` where the current alternative starts, per open group
    depth = 0
    backrefs = False
    quantified = False  # the last atom already has a quantifier
    at_start = True  # start of the pattern, a group or an alternative
    inner = False  # an anchor where Hyperscan takes none
    fresh = True  # nothing matched yet at the top level (a ^ here is a plain start anchor)
    dollar = False  # a $ was the last thing seen (only ), | or the end may follow)
    i = 0
    while i < len(p):
        c = p[i]
        if c == 0x7C and depth == 0:
            fresh = True
        elif c not in b"(^" and not (c == 0x5C and p[i + 1 : i + 2] == b"`"):
            fresh = False
        if dollar and c not in b")|$":
            inner = True
        dollar = False
        if c in b"*+?" or (c == 0x7B and _interval(p, i) is not None):  # quantifiers
            if c == 0x7B:
                got = _interval(p, i)
                assert got is not None
                q, nxt = got
            else:
                q, nxt = bytes((c,)), i + 1
            if at_start:
                if c == 0x2A:  # GNU ignores a leading *
                    i = nxt
                    continue
                raise EreError(f"{chr(c)} with nothing to repeat", i + 1)
            if quantified:
                out[-1] = b"(?:" + out[-1] + b")" + q
            else:
                out[-1] += q
                quantified = True
            i = nxt
            continue
        quantified = False
        if c == 0x5B:  # [
            atom, i = _bracket(p, i)
            out.append(atom)
            at_start = False
            continue
        if c == 0x5C:  # backslash
            if i + 1 >= len(p):
                raise EreError("trailing backslash", i + 1)
            e = p[i + 1]
            i += 2
            at_start = False
            if e == 0x77:  # w
                out.append(b"[" + _WORD + b"]")
            elif e == 0x57:  # W
                out.append(b"[^" + _WORD + b"\\n]")
            elif e == 0x73:  # s
                out.append(b"[" + _SPACE + b"]")
            elif e == 0x53:  # S
                out.append(b"[^" + _SPACE + b"\\n]")
            elif e in b"bB":
                out.append(b"\\" + bytes((e,)))
                quantified = True  # an anchor takes no quantifier in PCRE; GNU ignores one
            elif e == 0x60:  # `
                inner = inner or not fresh
                out.append(b"^")
                quantified = True
            elif e == 0x27:  # '
                dollar = True
                out.append(b"$")
                quantified = True
            elif e in b"<>":
                raise EreError(f"\\{chr(e)} (word start/end) is not supported", i - 1)
            elif 0x31 <= e <= 0x39:
                if e - 0x30 > depth_total(out):
                    raise EreError("back-reference to a group that does not exist", i - 1)
                backrefs = True
                out.append(b"\\" + bytes((e,)))
            else:
                out.append(_byte(e))
            continue
        if c == 0x28:  # (
            depth += 1
            out.append(b"(")
            at_start = True
            i += 1
            continue
        if c == 0x29:  # )
            if depth == 0:
                raise EreError("unmatched )", i + 1)
            depth -= 1
            # the group is one atom: fold everything since its "(" into it
            j = len(out) - 1
            level = 0
            while True:
                if out[j] == b")":
                    level += 1
                elif out[j] == b"(":
                    if level == 0:
                        break
                    level -= 1
                j -= 1
            group = b"(" + b"".join(out[j + 1 :]) + b")"
            del out[j:]
            out.append(group)
            at_start = False
            i += 1
            continue
        if c == 0x7C:  # |
            out.append(b"|")
            at_start = True
            quantified = True  # nothing to quantify right after |
            i += 1
            continue
        if c in b"^$":
            if c == 0x5E:
                inner = inner or not fresh
            else:
                dollar = True
            out.append(bytes((c,)))
            at_start = c == 0x5E and at_start
            quantified = True
            i += 1
            continue
        if c == 0x2E:  # .
            out.append(b".")
        else:
            out.append(_byte(c))
        at_start = False
        i += 1
    if depth:
        raise EreError("unmatched (", len(p))
    return Translated(b"".join(out), backrefs, inner)


def depth_total(out: list[bytes]) -> int:
    """Groups opened so far (a back-reference may only name one of those)."""
    return sum(part.count(b"(") - part.count(b"(?:") - part.count(b"\\(") for part in out)
