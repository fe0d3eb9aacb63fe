"""A cache of loaded rule sets, so that a command's start-up does not parse YAML and derive
literals from regexes each time (about a sixth of a scan's start-up).

:func:`pipeline.detection.loader.load_rules` looks a rule set up here first. The key is a
hash of everything the result depends on: the content and path of every rule file read, in
order; the code (logwarden's version and the size and mtime of every module of the
package); and the registered line formats and body grammars with the field names they
declare (rule validation reads them). Only valid rule sets are stored: a set with an error
is read and reported in full every time.

The cache lives in ``$XDG_CACHE_HOME/logwarden`` (``~/.cache/logwarden``), one file per key,
at most :data:`MAX_ENTRIES` (the oldest go). It is only a speed-up: a directory that cannot
be created or written, a file that is unreadable, not owned by this user, writable by
others or corrupt, is passed over and the rules are loaded from their files as without it.
``LOGWARDEN_RULE_CACHE=0`` turns it off.
"""

from __future__ import annotations

import copyreg
import functools
import hashlib
import io
import os
import pickle
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.detection.model import Rule
from pipeline.grammars.base import FieldNames

#: set to "0" to neither read nor write the cache
CACHE_ENV = "LOGWARDEN_RULE_CACHE"
#: rule sets kept; storing one more removes the least recently written
MAX_ENTRIES = 16
_PREFIX = "rules-"
_SUFFIX = ".pickle"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/logwarden``, by default ``~/.cache/logwarden``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "logwarden"


def enabled() -> bool:
    return os.environ.get(CACHE_ENV, "1") != "0"


@functools.cache
def code_version() -> str:
    """logwarden's version and the size and mtime of each of its modules."""
    from pipeline import __version__

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(__version__.encode())
    todo = [root]
    entries: list[str] = []
    while todo:
        with os.scandir(todo.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                    todo.append(Path(entry.path))
                elif entry.name.endswith(".py"):
                    st = entry.stat()
                    entries.append(f"{entry.path}\0{st.st_size}\0{st.st_mtime_ns}")
    for line in sorted(entries):
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def _fields(names: FieldNames) -> tuple[object, ...]:
    """``names`` in a form whose repr does not depend on the process (sets are sorted)."""
    return (
        sorted(names.fixed),
        names.open.pattern if names.open is not None else None,
        names.open_what,
        names.nonstandard.pattern if names.nonstandard is not None else None,
    )


def _grammars() -> str:
    """What rule validation reads of the registered grammars: names and field names."""
    from pipeline.grammars.bodies import BODY_GRAMMARS
    from pipeline.grammars.registry import FORMATS

    formats = sorted((name, _fields(fmt.fields)) for name, fmt in FORMATS.items())
    bodies = sorted(
        (name, (g.programs, g.prefixes, _fields(g.fields))) for name, g in BODY_GRAMMARS.items()
    )
    return repr((formats, bodies))


def key_of(files: Sequence[Path]) -> str:
    """The cache key of the rules read from ``files`` (OSError when one cannot be read)."""
    h = hashlib.sha256(code_version().encode())
    h.update(_grammars().encode())
    for path in files:
        h.update(str(path).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _mapping_proxy(data: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(data)


def _reduce_proxy(proxy: MappingProxyType[str, Any]) -> tuple[Any, ...]:
    return (_mapping_proxy, (dict(proxy),))


def load(key: str) -> list[Rule] | None:
    """The rule set stored under ``key``, or None (absent, unusable or corrupt)."""
    path = cache_dir() / f"{_PREFIX}{key}{_SUFFIX}"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        rules = pickle.loads(data)
    except Exception:  # a corrupt or outdated file: load the rules from their files
        return None
    if not isinstance(rules, list) or not all(isinstance(r, Rule) for r in rules):
        return None
    return rules


def store(key: str, rules: Sequence[Rule]) -> None:
    """Keep ``rules`` under ``key``; a cache that cannot be written is left alone."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[MappingProxyType] = _reduce_proxy
    try:
        pickler.dump(list(rules))
    except Exception:  # a rule holding something that does not pickle: no cache for it
        return
    where = cache_dir()
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=where)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, where / f"{_PREFIX}{key}{_SUFFIX}")
        except OSError:
            os.unlink(tmp)
            raise
        _prune(where)
    except OSError:
        return


def _prune(where: Path) -> None:
    entries = []
    for p in where.glob(f"{_PREFIX}*{_SUFFIX}"):
        try:
            entries.append((p.stat().st_mtime_ns, p))
        except OSError:
            continue
    entries.sort(reverse=True)
    for _, p in entries[MAX_ENTRIES:]:
        try:
            p.unlink()
        except OSError:
            continue
