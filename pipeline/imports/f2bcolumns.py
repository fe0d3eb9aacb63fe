"""A fail2ban filter judged over a block's columns, with the state it moves applied per row.

On the block path (:class:`~pipeline.block.BlockRecords`) a fast syslog row has its
envelope as Arrow columns (host, program, pid, message). :class:`ColumnJudge` runs the
filter's regexes over all the rows of a block at once, on RE2 through pyarrow's kernels:

1. the text fail2ban sees, ``host program[pid]: message``, is joined from the columns;
2. the prefregex gives its groups (``extract_regex``; the ``content`` group is the text the
   failregexes see);
3. every failregex RE2 takes is tested on the content of every row
   (``match_substring_regex``), and its groups are extracted for the rows it matches; a
   failregex only Python ``re`` takes (look-around, conditionals) runs per row, on the
   rows its relaxation into RE2 (:func:`pipeline.imports.f2bblock.relax`) lets through.

What stays per row, in line order (:meth:`JudgedRows.verdict`), is what moves the filter's
state (:meth:`Fail2banFilter.failures`: the multi-line failure ids of ``<F-MLFID>``) and the
verdict; a row no failregex matches moves nothing and makes no event, and a row whose every
match is ``<F-NOFAIL>`` and forgets an id the filter does not hold is known to move nothing
before any failure is built (:meth:`JudgedRows.moves_nothing`). The captures are
those the per-line path gives: RE2 says where each group took part, Arrow only gives its
text, so a group that may match the empty string and did (or did not take part) is looked
up again per row with the filter's own pattern. Rows the columns do not describe as the
filter sees them (rsyslog's ``message repeated`` wrapper, no program) go through
:meth:`Fail2banFilter.process_text` whole. Only single-line filters without
ignoreregexes whose prefregex runs on RE2 are judged this way (:func:`column_judge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from pipeline.imports.f2bblock import Unrelaxable, _anchored, _parsed, relax
from pipeline.imports.fail2ban import Failure, expand_tags

if TYPE_CHECKING:
    import numpy as np

    from pipeline.imports.fail2ban import Fail2banFilter

# numpy and pyarrow are imported when a block is judged (a scan's start-up does not pay)

#: how a named group's text tells whether it took part in a match
ALWAYS = "always"  # it takes part in every match
NONEMPTY = "nonempty"  # it cannot match the empty string: "" is "did not take part"
UNSURE = "unsure"  # "" may be either: asked again per row
_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None))
_PREFIX = "_lwu"  # the names given to unnamed groups (Arrow's kernel needs every group named)


def filter_line(
    host: str | None, program: str | None, pid: int | None, repeat: int, message: str
) -> str:
    """The text fail2ban sees for a syslog event: ``host program[pid]: message`` (the
    message alone without a program), rsyslog's ``message repeated`` wrapper as written."""
    if not program:
        return message
    tag = f"[{pid}]" if pid is not None else ""
    if repeat > 1:
        # as rsyslog wrote it: fail2ban sees the wrapper, not N failures
        message = f"message repeated {repeat} times: [ {message}]"
    return f"{host or ''} {program}{tag}: {message}"


def group_kinds(pattern: str) -> dict[str, str]:
    """Per named group of ``pattern``: :data:`ALWAYS`, :data:`NONEMPTY` or :data:`UNSURE`."""
    parsed = sre_parse.parse(pattern)
    names = {gid: name for name, gid in parsed.state.groupdict.items()}
    kinds: dict[str, str] = {}

    def walk(items: Any, sure: bool) -> None:
        for op, av in items:
            if op is sre_c.SUBPATTERN:
                gid, _add, _del, sub = av
                if gid in names:
                    if sure:
                        kind = ALWAYS
                    elif sub.getwidth()[0] > 0:
                        kind = NONEMPTY
                    else:
                        kind = UNSURE
                    kinds[names[gid]] = kind
                walk(sub, sure)
            elif op is sre_c.BRANCH:
                for alt in av[1]:
                    walk(alt, False)
            elif op in _REPEATS:
                walk(av[2], False)
            elif op is getattr(sre_c, "ATOMIC_GROUP", None):
                walk(av, sure)
            elif op is sre_c.GROUPREF_EXISTS:
                walk(av[1], False)
                if av[2] is not None:
                    walk(av[2], False)
            elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
                walk(av[1], False)

    walk(parsed, True)
    for name in names.values():
        kinds.setdefault(name, UNSURE)
    return kinds


def named_only(pattern: str) -> str | None:
    """``pattern`` with every unnamed capturing group named (``(?P<_lwuN>...)``), or None
    when the rewrite does not keep its groups (a shape this reader does not follow)."""
    out: list[str] = []
    i, n, in_class = 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
            out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):  # a "]" first in a class is a character
                out.append("]")
                i += 1
            continue
        if ch == "(" and not pattern.startswith("?", i + 1):
            out.append(f"(?P<{_PREFIX}{n}>")
            n += 1
        else:
            out.append(ch)
        i += 1
    got = "".join(out)
    try:
        before, after = sre_parse.parse(pattern), sre_parse.parse(got)
    except Exception:  # whatever the parser rejects
        return None
    own = before.state.groupdict
    if after.state.groups != before.state.groups or len(after.state.groupdict) != (
        after.state.groups - 1
    ):
        return None
    if any(after.state.groupdict.get(k) != v for k, v in own.items()):
        return None
    return got


@dataclass(frozen=True)
class _Regex:
    """One regex as the columns run it: ``named`` for Arrow's extract kernel (None: run
    per row), the kinds of its own named groups."""

    index: int
    source: str  # the expanded pattern
    named: str | None
    kinds: tuple[tuple[str, str], ...]
    #: a failregex only Python re takes: RE2 that every text it matches matches
    relaxed: str | None = None


def _regex(index: int, source: str, engine: str) -> _Regex:
    if engine != "re2":
        try:
            parsed, ic = _parsed(source)
            body = relax(parsed, ic)
            relaxed: str | None = ("^" + body) if _anchored(parsed) else body
        except Unrelaxable:
            relaxed = None
        return _Regex(index, source, None, (), relaxed)
    kinds = group_kinds(source)
    return _Regex(index, source, named_only(source), tuple(kinds.items()))


class ColumnJudge:
    """A filter's regexes over a block's rows (see the module); build with
    :func:`column_judge`."""

    def __init__(self, flt: Fail2banFilter) -> None:
        spec = flt.spec
        self.flt = flt
        self.pre: _Regex | None = None
        if spec.maxlines != 1 or flt.ignoreregex:
            raise ValueError("only single-line filters without ignoreregex")
        if flt.prefregex is not None and (flt.prefregex.engine != "re2" or flt.prefregex.alts):
            raise ValueError("a prefregex the columns do not run")
        if flt.prefregex is not None:
            self.pre = _regex(-1, expand_tags(flt.prefregex.source, spec.usedns), "re2")
        self.fails = [
            _regex(i, expand_tags(p.source, spec.usedns), p.engine)
            for i, p in enumerate(flt.failregex)
        ]
        self._broken: set[int] = set()  # regexes Arrow's kernel refused: per row from then on

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def judge(
        self,
        host: Any,
        program: Any,
        pid: np.ndarray,
        has_pid: np.ndarray,
        repeat: np.ndarray,
        message: Any,
    ) -> JudgedRows:
        """The regexes over these rows (Arrow strings ``host``, ``program``, ``message``;
        numpy ``pid``, ``has_pid``, ``repeat``; one element per row)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from pipeline.columns import arrow_ints, arrow_mask, arrow_text

        n = len(message)
        kind = message.type  # large_string, as every column of a block

        def lit(value: str) -> Any:
            got = arrow_text(value)  # pa.scalar() would import pandas
            return got if got.type == kind else pc.cast(got, kind)

        pid_text = pc.if_else(
            arrow_mask(has_pid),
            pc.binary_join_element_wise(
                lit("["), pc.cast(arrow_ints(pid), kind), lit("]"), lit("")
            ),
            lit(""),
        )
        text = pc.binary_join_element_wise(
            pc.cast(host, kind),
            lit(" "),
            pc.cast(program, kind),
            pid_text,
            lit(": "),
            message,
            lit(""),
        )
        # the rows the columns describe as the filter sees them; others go whole, per row
        whole = (repeat != 1) | (_lengths(program) == 0)
        whole |= ~_numpy(pc.is_valid(text))
        pre_groups: dict[str, list[Any]] = {}
        pre_unsure: dict[str, np.ndarray] = {}
        matched = ~whole
        if self.pre is not None:
            got = self._extract(self.pre, text)
            if got is None:
                whole[:] = True
                matched[:] = False
                content = text
            else:
                matched &= _numpy(got.is_valid())
                inner = got.field("content") if "content" in dict(self.pre.kinds) else None
                content = (
                    text
                    if inner is None
                    else pc.if_else(arrow_mask(_lengths(inner) > 0), inner, text)
                )
                for name, kind in self.pre.kinds:
                    if name == "content" or name.startswith(_PREFIX):
                        continue
                    pre_groups[name] = got.field(name).to_pylist()
                    if kind != ALWAYS:
                        empty = _lengths(got.field(name)) == 0
                        if kind == UNSURE:
                            pre_unsure[name] = empty
                        else:
                            pre_groups[name] = [
                                None if e else v
                                for v, e in zip(pre_groups[name], empty.tolist(), strict=True)
                            ]
        else:
            content = text
        lines: dict[int, str] = {}
        if whole.any():
            at = np.flatnonzero(whole)
            take = arrow_ints(at)
            parts = zip(
                host.take(take).to_pylist(),
                program.take(take).to_pylist(),
                pid[at].tolist(),
                has_pid[at].tolist(),
                repeat[at].tolist(),
                message.take(take).to_pylist(),
                strict=True,
            )
            for row, (h, prog, p, has, rep, msg) in zip(at.tolist(), parts, strict=True):
                lines[row] = filter_line(h, prog, p if has else None, rep, msg or "")
        rows = np.flatnonzero(matched)
        # per failregex: the rows it matches, with its groups, or the rows to try per row
        hits: list[tuple[_Regex, np.ndarray, dict[str, list[Any]], dict[str, np.ndarray]]] = []
        per_row: list[tuple[_Regex, np.ndarray]] = []
        if len(rows):
            cont = content.take(arrow_ints(rows)) if len(rows) < n else content
            ascii_only: np.ndarray | None = None
            for rx in self.fails:
                if rx.named is None or rx.index in self._broken:
                    if rx.relaxed is None or rx.index in self._broken:
                        per_row.append((rx, rows))
                        continue
                    if ascii_only is None:
                        ascii_only = _numpy(pc.string_is_ascii(cont))
                    try:
                        may = _numpy(pc.match_substring_regex(cont, rx.relaxed)) | ~ascii_only
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                        self._broken.add(rx.index)
                        per_row.append((rx, rows))
                        continue
                    if may.any():
                        per_row.append((rx, rows[may]))
                    continue
                try:
                    may = _numpy(pc.match_substring_regex(cont, rx.source))
                    if not may.any():
                        continue
                    sub = cont.filter(arrow_mask(may))
                    got = pc.extract_regex(sub, rx.named)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    self._broken.add(rx.index)
                    per_row.append((rx, rows))
                    continue
                groups: dict[str, list[Any]] = {}
                unsure: dict[str, np.ndarray] = {}
                for name, kind in rx.kinds:
                    if name.startswith(_PREFIX):
                        continue
                    values = got.field(name)
                    groups[name] = values.to_pylist()
                    if kind != ALWAYS:
                        empty = _lengths(values) == 0
                        if kind == UNSURE:
                            if empty.any():
                                unsure[name] = empty
                        else:
                            groups[name] = [
                                None if e else v
                                for v, e in zip(groups[name], empty.tolist(), strict=True)
                            ]
                hits.append((rx, rows[may], groups, unsure))
        contents: dict[int, str] = {}
        asked = [rows[ask] for _, rows, _, unsure in hits for ask in (_any(unsure, len(rows)),)]
        if per_row or any(len(a) for a in asked):
            need = np.unique(np.concatenate([r for _, r in per_row] + asked))
            if len(need):
                got_text = content.take(arrow_ints(need)).to_pylist()
                contents = dict(zip(need.tolist(), got_text, strict=True))
        return JudgedRows(self.flt, text, lines, contents, pre_groups, pre_unsure, hits, per_row)

    def _extract(self, rx: _Regex, text: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        if rx.named is None or rx.index in self._broken:
            return None
        try:
            return pc.extract_regex(text, rx.named)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            self._broken.add(rx.index)
            return None


def _numpy(got: Any) -> np.ndarray:
    """An Arrow boolean array (nulls as False) as numpy."""
    from pipeline.columns import numpy_of

    return numpy_of(got)


def _lengths(strings: Any) -> np.ndarray:
    """The lengths of Arrow strings in characters (0 for nulls), as numpy (comparing in
    Arrow would make a scalar of a Python value, which imports pandas)."""
    import pyarrow.compute as pc

    from pipeline.columns import numpy_of

    return numpy_of(pc.utf8_length(strings))


def _any(masks: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Where any of ``masks`` (each of ``n`` elements) is true."""
    import numpy as np

    out = np.zeros(n, dtype=bool)
    for m in masks.values():
        out |= m
    return out


_Hit = tuple[int, dict[str, str], int, int]


class JudgedRows:
    """The regexes' answers for a block's rows; :meth:`verdict` gives each row's failures
    as the per-line path gives them, moving the filter's state, when called in line order."""

    def __init__(
        self,
        flt: Fail2banFilter,
        text: Any,
        lines: dict[int, str],
        contents: dict[int, str],
        pre_groups: dict[str, list[Any]],
        pre_unsure: dict[str, np.ndarray],
        hits: list[tuple[_Regex, np.ndarray, dict[str, list[Any]], dict[str, np.ndarray]]],
        per_row: list[tuple[_Regex, np.ndarray]],
    ) -> None:

        self.flt = flt
        self._text = text
        self._lines = lines
        self._contents = contents
        self._pre_groups = pre_groups
        self._pre_unsure = pre_unsure
        self._pre_items = list(pre_groups.items())
        #: per row with a failregex to look at: its hits as :meth:`Fail2banFilter.failures`
        #: takes them, groups None where the row is to be asked (see :attr:`_ask`)
        self._todo: dict[int, list[Any]] = {}
        self._ask: set[int] = set()
        todo = self._todo
        for rx, rows, groups, unsure in hits:
            names = list(groups)
            columns = [groups[k] for k in names]
            index = rx.index
            asks = _any(unsure, len(rows))
            if asks.any():
                self._ask.update(rows[asks].tolist())
            asked = asks.tolist()
            for j, row in enumerate(rows.tolist()):
                if asked[j]:
                    found: dict[str, str] | None = None
                else:
                    found = {}
                    for k, col in zip(names, columns, strict=True):
                        v = col[j]
                        if v is not None:
                            found[k] = v
                got = todo.get(row)
                if got is None:
                    todo[row] = [(index, found, 0, 0)]
                else:
                    got.append((index, found, 0, 0))
        for rx, rows in per_row:
            for row in rows.tolist():
                todo.setdefault(row, []).append((rx.index, None, 0, 0))
            self._ask.update(rows.tolist())
        if per_row:
            for got in todo.values():
                got.sort(key=lambda x: x[0])

    def verdict(self, row: int) -> list[Failure]:
        """The filter's failures on row ``row``."""
        todo = self._todo.get(row)
        if todo is None:
            if self._lines:
                line = self._lines.get(row)
                if line is not None:
                    return self.flt.process_text(line)
            return []  # no failregex matches: nothing moves
        pre: dict[str, str] = {}
        for name, col in self._pre_items:
            v = col[row]
            if v is not None:
                pre[name] = v
        if self._pre_unsure and any(u[row] for u in self._pre_unsure.values()):
            return self.flt.process_text(self._text[row].as_py())
        if row in self._ask:
            todo = self._asked(row, todo)
        return self.flt.failures(pre, todo, None)

    def moves_nothing(self, row: int) -> bool:
        """Whether row ``row`` is known to give no failure that counts and to move no state
        without asking the filter: every failregex that matches it is ``<F-NOFAIL>``, and
        it has no multi-line id or every match forgets one the filter does not hold (a
        line fail2ban reads only for the ids it forgets, as sshd's ``Connection closed``).
        The filter's state is read here: call it in line order, just before
        :meth:`verdict`."""
        todo = self._todo.get(row)
        if todo is None or row in self._ask or self._pre_unsure:
            return False
        alts = self.flt._alts
        for index, found, _, _ in todo:
            if alts[index] or "nofail" not in found:
                return False
        pre = None
        for name, col in self._pre_items:
            if name == "mlfid":
                pre = col[row]
        held = self.flt._mlfid
        for _, found, _, _ in todo:
            # the id a match merges under (a failregex's own group wins over the prefregex's)
            mlfid = found.get("mlfid", pre)
            if mlfid is not None and (mlfid in held or "mlfforget" not in found):
                return False
        return True

    def _asked(self, row: int, todo: list[Any]) -> list[_Hit]:
        """The hits of a row whose groups (some or all) are looked for per row."""
        flt = self.flt
        content = self._contents[row] + "\n"
        data = content.encode("utf-8", "surrogatepass")
        hits: list[_Hit] = []
        for index, found, start, end in todo:
            if found is None:
                got = flt.failregex[index].find(content, data)
                if got is not None:
                    hits.append((index, *got))
            else:
                hits.append((index, found, start, end))
        return hits


def column_judge(flt: Fail2banFilter) -> ColumnJudge | None:
    """The filter's column judge, or None for a filter the columns do not run (multi-line,
    with ignoreregexes, a prefregex on Python ``re`` or with ``<F-ALT_...>`` groups)."""
    try:
        return ColumnJudge(flt)
    except ValueError:
        return None
