"""fail2ban's configuration files: INI with includes, ``.local`` overrides, interpolation.

Read the way fail2ban 1.0 reads them (its ``ConfigParser`` subclass), written here from its
documented behaviour: keys are case-folded, a ``key = value`` may continue on indented
lines, ``#``/``;`` start comment lines, ``[INCLUDES] before``/``after`` name files read
before/after this one (relative to its directory), and each ``X.conf`` is followed by its
``X.local``. A value redefined later keeps its earlier text reachable as ``%(known/key)s``.
Every value remembers the file and line it was written on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import Location, RuleError

_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
_OPTION = re.compile(r"^(?P<key>[^=:\s][^=:]*?)\s*[=:]\s*(?P<value>.*)$")
_INTERP = re.compile(r"%\(([^)]+)\)s|%%")
#: fail2ban's tag syntax: ``<name>``, innermost first (a name holds no ``<``, ``>`` or space)
TAG = re.compile(r"<([^ <>]+)>")
_MAX_DEPTH = 40


@dataclass(frozen=True, slots=True)
class Value:
    text: str
    location: Location


@dataclass(slots=True)
class Config:
    """The merged sections of one configuration file and everything it includes."""

    sections: dict[str, dict[str, Value]] = field(default_factory=dict)
    #: earlier values of redefined keys, per section (``%(known/key)s``)
    known: dict[str, dict[str, Value]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def defaults(self) -> dict[str, Value]:
        return self.sections.get("DEFAULT", {})

    def raw(self, section: str, key: str) -> Value | None:
        got = self.sections.get(section, {}).get(key)
        return got if got is not None else self.defaults.get(key)

    def merge(self, other: Config) -> None:
        for name, values in other.sections.items():
            mine = self.sections.setdefault(name, {})
            for key, value in values.items():
                if key in mine and name != "DEFAULT":
                    self.known.setdefault(name, {})[key] = mine[key]
                mine[key] = value
        for name, values in other.known.items():
            self.known.setdefault(name, {}).update(values)
        self.files.extend(f for f in other.files if f not in self.files)

    # -- interpolation ----------------------------------------------------------------------

    def get(self, section: str, key: str, overrides: Mapping[str, str] | None = None) -> str | None:
        """``key`` of ``section`` (or DEFAULT) with ``%(name)s`` interpolated; ``overrides``
        (a filter's parameters) take precedence over both, as fail2ban's ``vars`` do."""
        if overrides and key in overrides:
            return self.interpolate(overrides[key], section, overrides, 0)
        got = self._lookup(key, section)
        if got is None:
            return None
        return self.interpolate(got.text, section, overrides, 0)

    def location(self, section: str, key: str) -> Location | None:
        got = self._lookup(key, section)
        return got.location if got is not None else None

    def _lookup(self, name: str, section: str) -> Value | None:
        if "/" in name:
            sec, _, opt = name.partition("/")
            if sec.lower() == "known":
                got = self.known.get(section, {}).get(opt)
                return got if got is not None else self.defaults.get(opt)
            if sec.lower() == "default":
                return self.defaults.get(opt)
            got = self.sections.get(sec, {}).get(opt)
            if got is not None:
                return got
        return self.raw(section, name)

    def interpolate(
        self, text: str, section: str, overrides: Mapping[str, str] | None, depth: int
    ) -> str:
        if "%" not in text:
            return text
        if depth > _MAX_DEPTH:
            raise ValueError(f"interpolation nested too deeply in {text[:80]!r}")

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name is None:
                return "%"
            name = name.lower() if "/" not in name else name
            if overrides and name in overrides:
                return self.interpolate(overrides[name], section, overrides, depth + 1)
            got = self._lookup(name, section)
            if got is None:
                raise KeyError(name)
            if name.startswith("known/"):
                # the earlier value is read where it was written, before the override
                return self.interpolate(got.text, section, None, depth + 1)
            return self.interpolate(got.text, section, overrides, depth + 1)

        return _INTERP.sub(sub, text)


def parse_ini(path: Path) -> Config:
    """One file, without its includes. Syntax errors are :class:`RuleError` at file:line."""
    cfg = Config(files=[str(path)])
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror}", Location(str(path))) from exc
    section: dict[str, Value] | None = None
    key: str | None = None
    parts: list[str] = []
    start = 0

    def flush() -> None:
        nonlocal key
        if section is not None and key is not None:
            section[key] = Value("\n".join(parts).strip(), Location(str(path), start))
        key = None

    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith(("#", ";")):
            continue
        if not stripped:
            if key is not None:
                parts.append("")
            continue
        if line[0] in " \t" and key is not None:
            parts.append(stripped)
            continue
        flush()
        m = _SECTION.match(line)
        if m:
            section = cfg.sections.setdefault(m.group("name").strip(), {})
            continue
        m = _OPTION.match(line)
        if m is None or section is None:
            what = "a line outside any [section]" if section is None else "not key = value"
            raise RuleError(f"{what}: {stripped[:60]!r}", Location(str(path), no))
        key = m.group("key").strip().lower()
        parts = [m.group("value").strip()]
        start = no
    flush()
    return cfg


def read_config(path: Path, _seen: tuple[Path, ...] = ()) -> Config:
    """``path`` and its ``.local``, each with its ``[INCLUDES]``, merged in fail2ban's order.

    A missing include is skipped, as fail2ban skips it (``common.local`` usually is)."""
    out = Config()
    local = path.with_suffix(".local")
    for member in (path, local):
        if member in _seen or not member.exists():
            continue
        own = parse_ini(member)
        includes = own.sections.pop("INCLUDES", {})
        seen = (*_seen, member)
        for which in ("before",):
            for inc in _include_names(includes.get(which)):
                out.merge(read_config(member.parent / inc, seen))
        out.merge(own)
        for inc in _include_names(includes.get("after")):
            out.merge(read_config(member.parent / inc, seen))
    return out


def _include_names(value: Value | None) -> list[str]:
    if value is None:
        return []
    return [n for n in re.split(r"\s+", value.text) if n]


def substitute_tags(text: str, lookup: Callable[[str], str | None]) -> str:
    """``<name>`` tags replaced, innermost first and recursively, by ``lookup(name)``;
    tags it does not know (``<HOST>``, ``<F-USER>``) stay as they are."""
    pos = 0
    for _ in range(10000):
        m = TAG.search(text, pos)
        if m is None:
            return text
        got = lookup(m.group(1))
        if got is None:
            pos = m.end()
            continue
        text = text[: m.start()] + got + text[m.end() :]
        # from the start again: the replacement may complete an enclosing tag
        pos = 0
    raise ValueError(f"tags nested too deeply (or self-referencing) in {text[:80]!r}")
