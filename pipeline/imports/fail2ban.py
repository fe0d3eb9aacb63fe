"""fail2ban filters and jails, run by logwarden.

A filter (``filter.d/NAME.conf`` + ``.local`` + includes, with parameters such as
``sshd[mode=aggressive]``) becomes a :class:`Fail2banFilter`: its ``prefregex``,
``failregex`` and ``ignoreregex`` with fail2ban's tags (``<HOST>``, ``<F-USER>``, ...)
turned into named groups, its date templates and its ``maxlines`` buffer.
:meth:`Fail2banFilter.process_line` gives, per line, what fail2ban gives: the failures
(regex index, failure id / host, time, captured groups).

A jail (``jail.conf`` + ``jail.local`` + ``jail.d/*``, ``enabled = true``) becomes two
logwarden rules (see :func:`jail_rules`): a helper line rule whose match is the filter's
verdict, and a ``threshold`` rule (``maxretry`` in ``findtime`` per host or failure id,
``bantime`` as suppression), so findings, outputs, notifications and state are the engine's.

Nothing of fail2ban is copied here: its files are read from the installation at run time.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import re2

from pipeline.detection.patterns import required_literals
from pipeline.errors import Location, RuleError
from pipeline.imports.f2bconf import read_config, substitute_tags
from pipeline.imports.f2bdate import DateDetector, templates_for

DEFAULT_DIR = "/etc/fail2ban"

# -- fail2ban's tags as regexes (written here; same groups and meaning as fail2ban's) ------

_IP4 = r"(?:::f{4,6}:)?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})"
# every group ends in ":", so a last ":" always follows one (no look-behind needed)
_IP6 = r"(?P<ip6>(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:))"
_DNS = r"(?P<dns>[\w\-.^_]*\w)"
_ADDR = rf"\[?(?:{_IP4}|{_IP6})\]?"
_HOST = rf"(?:{_ADDR}|{_DNS})"
_CIDR = r"(?P<cidr>\d+)"
_SUBNET = rf"\[?(?:{_IP4}|{_IP6})(?:/{_CIDR})?\]?"
_STATIC_TAGS = {
    "IP4": _IP4,
    "F-IP4/": _IP4,
    "IP6": _IP6,
    "F-IP6/": _IP6,
    "ADDR": _ADDR,
    "F-ADDR/": _ADDR,
    "CIDR": _CIDR,
    "F-CIDR/": _CIDR,
    "SUBNET": _SUBNET,
    "F-SUBNET/": _SUBNET,
    "DNS": _DNS,
    "F-DNS/": _DNS,
    "F-ID/": r"(?P<fid>\S+)",
    "F-PORT/": r"(?P<fport>\w+)",
}
_TAG_MAP = {"id": "fid", "port": "fport"}
_FTAG = re.compile(r"</?[\w\-]+/?>")
_FNAME = re.compile(r"^(/?)F-([A-Z0-9_\-]+)$")
_GLOBAL_FLAGS = re.compile(r"(?<!\\)\((?:\?:)?(\(\?[a-z]+)\)")
_UNANCHORED = re2._Anchor.UNANCHORED
#: multi-line failure ids remembered at once (fail2ban's cache size)
MLFID_CACHE = 100


def _set_options() -> Any:
    opts = re2.Options()
    opts.log_errors = False
    return opts


_OPEN_REPEAT = re.compile(r"(?<!\\)\{,(\d+)\}")
#: a line fed to Python ``re`` patterns is cut to this length (bounded time per line)
RE_BOUND = 8192


def expand_tags(regex: str, usedns: str = "yes") -> str:
    """``<HOST>`` and friends, ``<F-NAME>...</F-NAME>`` as ``(?P<name>...)``, ``<SKIPLINES>``."""
    opened: set[str] = set()
    skips = [0]

    def sub(m: re.Match[str]) -> str:
        tag = m.group()
        name = tag[1:-1]
        if name == "HOST":
            return _HOST if usedns != "no" else _ADDR
        if name == "SKIPLINES":
            n = skips[0]
            skips[0] += 1
            return rf"\n(?P<skiplines{n}>(?:(?:.*\n)*?))"
        if name in _STATIC_TAGS:
            return _STATIC_TAGS[name]
        fm = _FNAME.match(name)
        if fm is None:
            return tag
        close, tn = fm.groups()
        if close:
            return ")" if tn in opened else tag
        opened.add(tn)
        low = tn.lower()
        return f"(?P<{_TAG_MAP.get(low, low)}>"

    out = _FTAG.sub(sub, regex)
    # Python reads {,n} as {0,n}; RE2 would read it as literal text
    out = _OPEN_REPEAT.sub(r"{0,\1}", out)
    return _GLOBAL_FLAGS.sub(r"\1:", out)


class Pattern:
    """One fail2ban regex on RE2 when RE2 takes it, else on Python ``re``."""

    __slots__ = (
        "_names",
        "_raw",
        "_re",
        "_strip",
        "alts",
        "engine",
        "literals",
        "location",
        "names",
        "source",
    )

    def __init__(self, source: str, expanded: str, location: Location, multiline: bool) -> None:
        self.source = source
        self.location = location
        self._re: re.Pattern[str] | None = None
        # RE2's $ is the end of the text; Python's also matches before a final newline
        self._strip = not multiline
        self._raw: Any = None
        self._names: tuple[tuple[str, int], ...] = ()
        flags = re.MULTILINE if multiline else 0
        try:
            py = re.compile(expanded, flags)
        except re.error as exc:
            raise RuleError(f"invalid regex: {exc}", location) from exc
        self.names = tuple(py.groupindex)
        #: whether a group is an ``alt_NAME`` one (see :func:`_groups`)
        self.alts = any(n.startswith("alt_") for n in self.names)
        #: one of these occurs in every text the pattern matches (a C-speed test first)
        self.literals: tuple[str, ...] = ()
        try:
            lits = required_literals(expanded)
        except Exception:  # a shape the literal reader does not know
            lits = None
        if lits:
            self.literals = tuple(sorted(lits))
        try:
            opts = re2.Options()
            opts.log_errors = False
            if multiline:
                # ^ and $ at every line, as Python's re.MULTILINE
                opts.posix_syntax = True
                opts.one_line = False
                opts.perl_classes = True
                opts.word_boundary = True
            compiled = re2.compile(expanded, opts)
            self._raw = compiled._regexp
            self._names = tuple(compiled.groupindex.items())
            self.engine = "re2"
        except re2.error:
            self._re = py
            self.engine = "re"

    def find(
        self, text: str, data: bytes, known: bool = False
    ) -> tuple[dict[str, str], int, int] | None:
        """(named groups that took part, start, end) of the first match in ``text``
        (``data``: its UTF-8 bytes, for RE2); None without one. ``known``: a match is
        known to exist (an RE2 set said so), so the literal test is skipped."""
        if self.literals and not known:
            for lit in self.literals:
                if lit in text:
                    break
            else:
                return None
        raw = self._raw
        if raw is None:
            assert self._re is not None
            m = self._re.search(text[:RE_BOUND] if len(text) > RE_BOUND else text)
            if m is None:
                return None
            return {k: v for k, v in m.groupdict().items() if v is not None}, m.start(), m.end()
        # the binding's Match on bytes: re2's search() and groupdict() cost several matches
        # (one byte per character: the text's own length, before a newline is cut)
        ascii_only = len(data) == len(text)
        if self._strip and data.endswith(b"\n"):
            data = data[:-1]
        spans = raw.Match(_UNANCHORED, data, 0, len(data))
        start, end = spans[0]
        if start < 0:
            return None
        out: dict[str, str] = {}
        for name, index in self._names:
            gs, ge = spans[index]
            if gs >= 0:
                out[name] = text[gs:ge] if ascii_only else data[gs:ge].decode("utf-8", "replace")
        if not ascii_only:
            start = len(data[:start].decode("utf-8", "replace"))
            end = len(data[:end].decode("utf-8", "replace"))
        return out, start, end


@dataclass(frozen=True, slots=True)
class Failure:
    """What fail2ban reports for a line: the regex, the failure id (host), time, groups."""

    regex: int
    fid: str | None
    time: datetime | None
    groups: Mapping[str, str]
    nofail: bool = False


_ALT = re.compile(r"^alt_(.*?)(?:_\d+)?$")


def _groups(found: dict[str, str]) -> dict[str, str]:
    """The named groups that took part; an ``alt_NAME`` group fills ``NAME`` when that
    is missing or empty (fail2ban's ``<F-ALT_USER>``)."""
    out = found
    for key in sorted(k for k in out if k.startswith("alt_")):
        am = _ALT.match(key)
        if am is not None:
            name = _TAG_MAP.get(am.group(1), am.group(1))
            if out[key] and not out.get(name):
                out[name] = out[key]
    return out


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A filter's resolved options, before compiling."""

    name: str
    path: str
    params: Mapping[str, str]
    prefregex: tuple[str, Location] | None
    failregex: tuple[tuple[str, Location], ...]
    ignoreregex: tuple[tuple[str, Location], ...]
    datepattern: str | None
    maxlines: int
    journalmatch: tuple[str, ...]
    usedns: str
    files: tuple[str, ...] = ()


_SPEC = re.compile(r"^\s*(?P<name>[^\[\s]+)\s*(?:\[(?P<params>.*)\])?\s*$", re.S)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``sshd[mode=aggressive, publickey="any"]`` → ("sshd", {"mode": "aggressive", ...})."""
    m = _SPEC.match(spec)
    if m is None:
        raise ValueError(f"not a filter name with optional [params]: {spec!r}")
    params: dict[str, str] = {}
    text = m.group("params") or ""
    for pm in re.finditer(
        r"\s*([\w\-/.]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^,]*)\s*(?:,|$)", text
    ):
        value = pm.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        params[pm.group(1).lower()] = value
    return m.group("name"), params


def _regex_lines(value: str | None, loc: Location | None) -> tuple[tuple[str, Location], ...]:
    if not value:
        return ()
    out = []
    base = loc or Location("?")
    for i, line in enumerate(value.split("\n")):
        line = line.strip()
        if line:
            out.append((line, Location(base.path, (base.line or 1) + i)))
    return tuple(out)


def read_filter(root: Path, name: str, params: Mapping[str, str] | None = None) -> FilterSpec:
    """The options of ``filter.d/NAME`` under ``root`` (``/etc/fail2ban``), as fail2ban's
    ``FilterReader`` combines them: ``[Definition]`` with ``%(...)s`` interpolated (the
    parameters taking precedence), ``[Init]`` and the parameters as tags, then ``<tags>``
    substituted recursively."""
    path = root / "filter.d" / f"{name}.conf"
    if not path.exists() and not path.with_suffix(".local").exists():
        raise RuleError(f"no filter {name!r}", Location(str(path)))
    cfg = read_config(path)
    passed = {k.lower(): v for k, v in (params or {}).items()}
    defn = "Definition"
    init: dict[str, str] = dict(passed)
    for key in cfg.sections.get("Init", {}):
        value = cfg.get("Init", key) or ""
        init.setdefault("known/" + key, value)
        init.setdefault(key, value)
    known = (
        "prefregex",
        "failregex",
        "ignoreregex",
        "datepattern",
        "maxlines",
        "journalmatch",
        "usedns",
    )

    def definition(key: str) -> str | None:
        try:
            if "/" in key:
                sec, _, opt = key.partition("/")
                if sec.lower() not in ("known", "default") and sec in cfg.sections:
                    return cfg.get(sec, opt, passed)
                got = cfg._lookup(key, defn)
                return None if got is None else cfg.interpolate(got.text, defn, passed, 0)
            return cfg.get(defn, key, passed)
        except KeyError as exc:
            raise RuleError(
                f"{name}: %({exc.args[0]})s is not defined", cfg.location(defn, key)
            ) from None

    combined: dict[str, str | None] = {k: definition(k) for k in known}
    for k, v in init.items():
        combined[k] = v
    cache: dict[str, str | None] = {}

    def lookup(tag: str) -> str | None:
        if tag in cache:
            return cache[tag]
        cache[tag] = None  # a self-reference resolves to nothing new
        raw = combined[tag] if tag in combined else definition(tag)
        got = None if raw is None else substitute_tags(raw, lookup)
        cache[tag] = got
        return got

    def option(key: str) -> str | None:
        raw = combined.get(key)
        if raw is None:
            return None
        try:
            return substitute_tags(raw, lookup)
        except ValueError as exc:
            raise RuleError(f"{name}: {exc}", cfg.location(defn, key)) from None

    pref = option("prefregex")
    maxlines = option("maxlines")
    try:
        n_lines = int(maxlines) if maxlines else 1
    except ValueError:
        raise RuleError(
            f"maxlines is not a number: {maxlines!r}", cfg.location(defn, "maxlines")
        ) from None
    jm = option("journalmatch")
    return FilterSpec(
        name=name,
        path=str(path),
        params=dict(passed),
        prefregex=(pref.strip(), cfg.location(defn, "prefregex") or Location(str(path)))
        if pref and pref.strip()
        else None,
        failregex=_regex_lines(option("failregex"), cfg.location(defn, "failregex")),
        ignoreregex=_regex_lines(option("ignoreregex"), cfg.location(defn, "ignoreregex")),
        datepattern=option("datepattern"),
        maxlines=max(1, n_lines),
        journalmatch=tuple(x.strip() for x in (jm or "").split("\n") if x.strip()),
        usedns=(option("usedns") or "yes").strip(),
        files=tuple(cfg.files),
    )


@dataclass(slots=True)
class _Pending:
    groups: dict[str, str]
    users: set[str] = field(default_factory=set)
    pending: bool = False


class Fail2banFilter:
    """A compiled filter with its per-input state (the ``maxlines`` buffer, the
    multi-line failure ids, the last time seen)."""

    def __init__(
        self, spec: FilterSpec, *, tz: tzinfo | None = None, now: datetime | None = None
    ) -> None:
        self.spec = spec
        multiline = spec.maxlines > 1
        self.prefregex = (
            Pattern(
                spec.prefregex[0],
                expand_tags(spec.prefregex[0], spec.usedns),
                spec.prefregex[1],
                multiline,
            )
            if spec.prefregex
            else None
        )
        self.failregex = [
            Pattern(src, expand_tags(src, spec.usedns), loc, multiline)
            for src, loc in spec.failregex
        ]
        if not self.failregex:
            raise RuleError(f"filter {spec.name!r} has no failregex", Location(spec.path))
        #: one RE2 pass tells which RE2 failregexes match (single-line filters)
        self._set: Any = None
        self._set_members: list[int] = []
        if not multiline:
            rset = re2.Set.SearchSet(_set_options())
            members = [i for i, p in enumerate(self.failregex) if p.engine == "re2"]
            try:
                for i in members:
                    rset.Add(expand_tags(self.failregex[i].source, spec.usedns))
                rset.Compile()
            except re2.error:
                rset = None
            if rset is not None and members:
                self._set = rset
                self._set_members = members
        #: every failregex, and those the set does not run (tried on every line)
        self._all = range(len(self.failregex))
        self._alts = [p.alts for p in self.failregex]
        self._unset = [i for i in self._all if i not in set(self._set_members)]
        self.ignoreregex = [
            Pattern(src, expand_tags(src, spec.usedns), loc, multiline)
            for src, loc in spec.ignoreregex
        ]
        # few ignoreregexes (against many failregexes) are tried first, as fail2ban does
        self._ignore_first = bool(self.ignoreregex) and (
            len(self.ignoreregex) < len(self.failregex) - 2
        )
        self.tz = tz or datetime.now().astimezone().tzinfo or UTC
        self.dates = DateDetector(
            templates_for(spec.datepattern), self.tz, now or datetime.now(self.tz)
        )
        self._buffer: list[tuple[str, str, str]] = []
        self._mlfid: dict[str, _Pending] = {}
        self._last_time: datetime | None = None
        self._last_text = ""

    @property
    def engines(self) -> str:
        """``re2``, ``re`` or ``re2+re``: what the filter's patterns run on."""
        kinds = {p.engine for p in (*self.failregex, *self.ignoreregex)}
        if self.prefregex is not None:
            kinds.add(self.prefregex.engine)
        return "+".join(sorted(kinds, reverse=True))

    def split_date(self, line: str) -> tuple[tuple[str, str, str], datetime | None]:
        found = self.dates.find(line)
        if found is None:
            return ("", "", line), self._last_time
        start, end, when = found
        if start == end:
            return ("", self._last_text, line), self._last_time
        if when is not None:
            self._last_time, self._last_text = when, line[start:end]
        return (line[:start], line[start:end], line[end:]), when

    def process_line(self, line: str, when: datetime | None = None) -> list[Failure]:
        """The failures fail2ban finds on ``line`` (``when``: a time known from elsewhere,
        e.g. the journal; then the line is matched whole)."""
        if when is not None:
            tup: tuple[str, str, str] = ("", "", line)
        else:
            tup, when = self.split_date(line)
        return self._find(tup, when)

    def process_text(self, line: str, when: datetime | None = None) -> list[Failure]:
        """The failures on ``line`` matched whole (no date is looked for in it)."""
        return self._find(("", "", line), when)

    def _find(self, tup: tuple[str, str, str], when: datetime | None) -> list[Failure]:
        if self.spec.maxlines > 1:
            self._buffer.append(tup)
            self._buffer = self._buffer[-self.spec.maxlines :]
            buf = "\n".join(t[0] + t[2] for t in self._buffer) + "\n"
        else:
            buf = tup[0] + tup[2] + "\n"
        data = buf.encode("utf-8", "surrogatepass")
        if self._ignore_first and any(p.find(buf, data) for p in self.ignoreregex):
            return []
        pre: dict[str, str] = {}
        if self.prefregex is not None:
            got = self.prefregex.find(buf, data)
            if got is None:
                return []
            pre = _groups(got[0]) if self.prefregex.alts else got[0]
            content = pre.pop("content", None)
            if content:
                buf = content + "\n"
                data = buf.encode("utf-8", "surrogatepass")
        return self.failures(pre, self._hits(buf, data), when, buf, data)

    def _hits(self, buf: str, data: bytes) -> list[tuple[int, dict[str, str], int, int]]:
        """(failregex index, groups that took part, start, end) of every failregex that
        matches the content ``buf`` (``data``: its UTF-8 bytes), in filter order."""
        hits: Collection[int] = ()
        order: Iterable[int] = self._all
        if self._set is not None:
            got_set = self._set.Match(data[:-1] if data.endswith(b"\n") else data)
            if got_set:
                members = self._set_members
                hits = {members[i] for i in got_set}
                # the set's patterns that match and every other pattern, in filter order
                order = sorted(hits.union(self._unset)) if self._unset else sorted(hits)
            else:
                order = self._unset
        failregex = self.failregex
        out: list[tuple[int, dict[str, str], int, int]] = []
        for index in order:
            pattern = failregex[index]
            if index in hits:
                found = pattern.find(buf, data, True)
            else:
                # a pattern the set does not run: its literal test first, here (most
                # lines fail it, and a call costs as much as the test)
                for lit in pattern.literals:
                    if lit in buf:
                        break
                else:
                    if pattern.literals:
                        continue
                found = pattern.find(buf, data, True)
            if found is not None:
                out.append((index, *found))
        return out

    def failures(
        self,
        pre: dict[str, str],
        hits: Iterable[tuple[int, dict[str, str], int, int]],
        when: datetime | None,
        buf: str = "",
        data: bytes = b"",
    ) -> list[Failure]:
        """The failures of the failregexes that matched a line's content (``hits``, from
        :meth:`_hits`), ``pre`` the prefregex's other groups: the ignoreregexes, the
        multi-line buffer and failure ids as fail2ban applies them (this is where the
        filter's state moves). ``buf`` and ``data`` are the content the ignoreregexes and
        the buffer need (a filter with neither may leave them out)."""
        out: list[Failure] = []
        alts = self._alts
        multiline = self.spec.maxlines > 1
        ignore = self.ignoreregex
        for index, found, start, end in hits:
            if ignore and any(p.find(buf, data) for p in ignore):
                continue
            groups = _groups(found) if alts[index] else found
            fail = {**pre, **groups} if pre else groups
            if multiline:
                self._consume(buf, start, end)
            failure = self._failure(index, fail, when)
            if failure is not None:
                out.append(failure)
        return out

    def _consume(self, buf: str, start: int, end: int) -> None:
        """Drop the lines a multi-line match used from the buffer."""
        first = buf.count("\n", 0, start)
        nl = buf.find("\n", max(end - 1, 0))
        last = buf.count("\n", 0, nl + 1) if nl >= 0 else len(self._buffer)
        self._buffer = self._buffer[:first] + self._buffer[last:]

    def _failure(self, index: int, fail: dict[str, str], when: datetime | None) -> Failure | None:
        mlfid = fail.get("mlfid")
        nofail = "nofail" in fail
        if mlfid is not None:
            fail, nofail = self._merge(mlfid, fail)
        fid = fail.get("fid")
        host = fail.get("ip4") or fail.get("ip6") or fail.get("dns")
        if host is None:
            host = fid
            if host is None and mlfid is None:
                host = None
        if host is None:
            if mlfid is not None and mlfid in self._mlfid:
                self._mlfid[mlfid].pending = True
            return None
        return Failure(index, host, when, fail, nofail)

    def _merge(self, mlfid: str, fail: dict[str, str]) -> tuple[dict[str, str], bool]:
        gained = "mlfgained" in fail
        nofail = gained or "nofail" in fail
        forget = fail.pop("mlfforget", None) is not None
        cached = self._mlfid.get(mlfid)
        users: set[str] = set()
        pending = False
        if cached is not None:
            merged = dict(cached.groups)
            merged.pop("nofail", None)
            merged.pop("mlfgained", None)
            pending = cached.pending and not gained
            merged.update(fail)
            users = cached.users
            if "user" in fail:
                users.add(fail["user"])
            fail = merged
            cached.groups = merged
            if forget:
                del self._mlfid[mlfid]
        elif not forget:
            if len(self._mlfid) >= MLFID_CACHE:
                # fail2ban keeps the 100 newest ids (first in, first out)
                del self._mlfid[next(iter(self._mlfid))]
            entry = _Pending(dict(fail))
            if "user" in fail:
                entry.users.add(fail["user"])
            users = entry.users
            self._mlfid[mlfid] = entry
        if pending or len(users) > 1:
            nofail = False
        return fail, nofail

    def reset(self) -> None:
        self._buffer.clear()
        self._mlfid.clear()
        self._last_time = None


def load_filter(
    root: Path | str, spec: str, *, tz: tzinfo | None = None, now: datetime | None = None
) -> Fail2banFilter:
    name, params = parse_spec(spec)
    return Fail2banFilter(read_filter(Path(root), name, params), tz=tz, now=now)
