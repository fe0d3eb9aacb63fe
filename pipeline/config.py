"""The daemon's YAML configuration, validated up front with file:line errors.

Every key has a command-line twin on ``logwarden watch``; options given on the command line
win over the file. Defaults suit a Debian server.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.detection.yamlsrc import LocDict, LocList, load_yaml
from pipeline.errors import Location, LogwardenError, RuleError
from pipeline.model import Severity

DEFAULT_PATHS = ("/var/log/syslog", "/var/log/mail.log", "/var/log/apache2/error.log")
DEFAULT_STATE_DIR = "/var/lib/logwarden"


class ConfigError(LogwardenError):
    """The configuration file is invalid."""


@dataclass(frozen=True)
class WatchConfig:
    paths: tuple[str, ...] = DEFAULT_PATHS
    journal: bool = False
    journal_directory: str | None = None
    rules: tuple[str, ...] = ()
    builtin_rules: bool = True
    #: a fail2ban configuration whose enabled jails run too (``fail2ban: /etc/fail2ban``)
    fail2ban: str | None = None
    #: fail2ban filters (``sshd[mode=aggressive]``) of ``fail2ban`` (default /etc/fail2ban)
    fail2ban_filters: tuple[str, ...] = ()
    state_dir: str = DEFAULT_STATE_DIR
    output: str | None = None
    from_beginning: bool = False
    tz: str | None = None
    poll_interval: float = 1.0
    #: the host of lines that carry none (Apache error logs), for every path without its own
    host: str | None = None
    #: (path or glob, host) from ``paths`` entries written as ``{path: ..., host: ...}``
    hosts: tuple[tuple[str, str], ...] = ()
    #: notifier entries (apprise URLs and their routing), validated by the notify layer
    notify: tuple[dict[str, Any], ...] = ()
    #: extra notifier URLs from the command line (--notify)
    notify_urls: tuple[str, ...] = ()
    #: first retry of a failed notification after this many seconds, doubling up to 5 min
    notify_retry: float = 5.0
    #: ``ADDR:PORT`` to serve Prometheus metrics on (``watch --metrics``); off when None
    metrics: str | None = None
    #: ``watch --since/--until`` (command line only): on a first run, the lines of the files
    #: (and journal) from before the start that are read; afterwards saved offsets rule
    since: datetime | None = None
    until: datetime | None = None
    #: a logcheck rule directory whose verdicts every line gets (``watch --logcheck``)
    logcheck: str | None = None
    logcheck_level: str = "server"
    #: findings below this severity are not written to ``output`` nor notified (an extra
    #: floor over each notifier's own ``min_severity``); the state database keeps them all
    min_severity: str | None = None
    source: str | None = None  # the file this came from
    lines: dict[str, int] = field(default_factory=dict)  # key -> line in that file

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) / "state.sqlite"

    def with_overrides(self, **changes: Any) -> WatchConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def host_of(self, path: str) -> str | None:
        """The host given for the lines of ``path`` that carry none, if any."""
        for pattern, host in self.hosts:
            if path == pattern or fnmatch.fnmatchcase(path, pattern):
                return host
        return self.host


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not ADDRESS:PORT (such as 127.0.0.1:9108)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, as [::1]:9108")
    return host, int(port)


_KEYS: dict[str, type | tuple[type, ...]] = {
    "paths": list,
    "journal": bool,
    "journal_directory": str,
    "rules": list,
    "builtin_rules": bool,
    "fail2ban": str,
    "fail2ban_filters": list,
    "state_dir": str,
    "output": str,
    "from_beginning": bool,
    "tz": str,
    "poll_interval": (int, float),
    "host": str,
    "notify": list,
    "notify_retry": (int, float),
    "metrics": str,
    "logcheck": str,
    "logcheck_level": str,
    "min_severity": str,
}


def load_config(path: str | os.PathLike[str]) -> WatchConfig:
    """Read and validate a config file; raise :class:`ConfigError` naming file:line."""
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", Location(p)) from None
    except UnicodeDecodeError:
        raise ConfigError("config is not valid UTF-8", Location(p)) from None
    try:
        doc = load_yaml(text, p)
    except RuleError as exc:
        raise ConfigError(exc.message, exc.location) from None
    if doc is None:
        return WatchConfig(source=p)
    if not isinstance(doc, LocDict):
        raise ConfigError("the config must be a mapping of settings", Location(p, 1))
    values: dict[str, Any] = {}
    for key, value in doc.items():
        line = doc.line_of(key)
        if key not in _KEYS:
            raise ConfigError(
                f"unknown setting {key!r}",
                Location(p, line),
                "known: " + ", ".join(sorted(_KEYS)),
            )
        want = _KEYS[key]
        if isinstance(value, bool) and want in ((int, float),):
            raise ConfigError(f"{key!r} must be a number", Location(p, line))
        if not isinstance(value, want):
            kind = want.__name__ if isinstance(want, type) else "number"
            raise ConfigError(f"{key!r} must be a {kind}", Location(p, line))
        if key == "host":
            _check_host(value, Location(p, line))
        if key == "paths":
            assert isinstance(value, LocList)
            value, values["hosts"] = _paths(value, p)
        if key == "rules":
            assert isinstance(value, LocList)
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item:
                    raise ConfigError(f"{key!r} items must be paths", Location(p, value.line_of(i)))
            value = tuple(value)
        if key == "fail2ban_filters":
            assert isinstance(value, LocList)
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item:
                    raise ConfigError(
                        f"{key!r} items must be filter names", Location(p, value.line_of(i))
                    )
            value = tuple(value)
        if key == "notify":
            assert isinstance(value, LocList)
            items = []
            for i, item in enumerate(value):
                entry = dict(item) if isinstance(item, dict) else {"url": item}
                entry["__line__"] = value.line_of(i)
                items.append(entry)
            value = tuple(items)
        if key == "poll_interval" and not 0.05 <= float(value) <= 60:
            raise ConfigError(
                "'poll_interval' must be between 0.05 and 60 seconds", Location(p, line)
            )
        if key == "logcheck_level" and value not in ("workstation", "server", "paranoid"):
            raise ConfigError(
                "'logcheck_level' must be workstation, server or paranoid", Location(p, line)
            )
        if key == "min_severity":
            try:
                value = str(Severity.parse(value))
            except ValueError as exc:
                raise ConfigError(f"'min_severity': {exc}", Location(p, line)) from None
        if key == "metrics":
            try:
                parse_address(value)
            except ValueError as exc:
                raise ConfigError(f"'metrics': {exc}", Location(p, line)) from None
        values[key] = value
    if "notify" in values:
        from pipeline.notify.notifiers import NotifyError, parse_notifiers

        try:
            parse_notifiers(values["notify"], p)
        except NotifyError as exc:
            raise ConfigError(exc.message, exc.location, exc.hint) from None
    base = os.path.dirname(os.path.abspath(p))
    if "rules" in values:
        values["rules"] = tuple(os.path.join(base, r) for r in values["rules"])
    if "logcheck" in values:
        values["logcheck"] = os.path.join(base, values["logcheck"])
    lines = {k: doc.line_of(k) for k in doc}
    return WatchConfig(source=p, lines=lines, **values)


def _check_host(value: object, where: Location) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError("'host' must be a host name, without spaces", where)


def _paths(items: LocList, p: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """``paths`` entries: a path (or glob), or ``{path: ..., host: ...}`` naming the host of
    that path's lines that carry none."""
    paths: list[str] = []
    hosts: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        where = Location(p, items.line_of(i))
        if isinstance(item, LocDict):
            unknown = set(item) - {"path", "host"}
            if unknown:
                raise ConfigError(
                    f"unknown key {sorted(unknown)[0]!r} in a 'paths' entry",
                    Location(p, item.line_of(sorted(unknown)[0])),
                    "known: host, path",
                )
            path = item.get("path")
            if not isinstance(path, str) or not path:
                raise ConfigError("a 'paths' entry needs a 'path'", where)
            if "host" in item:
                _check_host(item["host"], Location(p, item.line_of("host")))
                hosts.append((path, item["host"]))
            paths.append(path)
            continue
        if not isinstance(item, str) or not item:
            raise ConfigError("'paths' items must be paths", where)
        paths.append(item)
    return tuple(paths), tuple(hosts)
