"""Notifiers: apprise URLs with routing, formats, templates and rate limits.

Every URL is instantiated with apprise when the configuration is loaded: apprise itself only
logs a bad URL and returns False later, so a typo would silently notify nobody. Here it is
an error naming the config file and line. URLs are shown with their secrets masked.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from pipeline.detection.model import parse_duration
from pipeline.errors import Location, LogwardenError
from pipeline.model import Finding, Severity
from pipeline.notify.render import check_template

NOTIFIER_KEYS = {
    "url",
    "config",
    "name",
    "tag",
    "min_severity",
    "rules",
    "finding_tags",
    "hosts",
    "format",
    "limit",
    "title",
    "body",
    "__line__",
}


#: the lowest severity a notifier sends unless its entry says ``min_severity``
DEFAULT_FLOOR = "medium"

#: apprise's message type per finding severity: receivers colour and sort by it
NOTIFY_TYPES = {
    "critical": "failure",
    "high": "failure",
    "medium": "warning",
    "low": "info",
    "info": "info",
}


def notify_type(severity: str | None) -> str:
    """The apprise ``NotifyType`` value for a finding severity (``info`` when unknown)."""
    return NOTIFY_TYPES.get(severity or "", "info")


class NotifyError(LogwardenError):
    """A notifier is misconfigured."""


@dataclass(frozen=True)
class Limit:
    count: int
    period: timedelta


@dataclass(frozen=True)
class Notifier:
    """One notification target and which findings go to it."""

    name: str
    url: str
    masked: str
    tags: tuple[str, ...] = ()
    min_severity: Severity = Severity.MEDIUM
    rules: tuple[str, ...] = ()
    finding_tags: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    format: str = "text"
    limit: Limit | None = None
    title: str | None = None
    body: str | None = None
    location: Location = field(default_factory=lambda: Location("<command line>"))

    def wants(self, f: Finding) -> bool:
        """Whether this notifier routes the finding (severity, rule, tag, host)."""
        if f.severity < self.min_severity:
            return False
        if self.rules and not any(fnmatch.fnmatchcase(f.rule, p) for p in self.rules):
            return False
        if self.finding_tags and not set(self.finding_tags) & set(f.tags):
            return False
        return not (
            self.hosts and not any(fnmatch.fnmatchcase(f.host or "", p) for p in self.hosts)
        )


def instantiate(url: str) -> Any:
    """An apprise plugin for ``url``, or None when apprise does not accept it."""
    import apprise

    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def _texts(value: Any, key: str, loc: Location) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return tuple(value)
    raise NotifyError(f"notifier {key!r} must be a text or a list of texts", loc)


def parse_notifier(entry: Mapping[str, Any] | str, source: str, index: int) -> Notifier:
    if isinstance(entry, str):
        entry = {"url": entry}
    line = entry.get("__line__")
    loc = Location(source, int(line) if isinstance(line, int) else None)
    unknown = set(entry) - NOTIFIER_KEYS
    if unknown:
        raise NotifyError(
            f"unknown notifier key {sorted(unknown)[0]!r}",
            loc,
            "known: " + ", ".join(sorted(NOTIFIER_KEYS - {"__line__"})),
        )
    if "config" in entry and "url" not in entry:
        return _config_notifier(entry, source, index, loc)
    url = entry.get("url")
    if not isinstance(url, str) or not url:
        raise NotifyError("a notifier needs a 'url' (an apprise URL) or a 'config' file", loc)
    plugin = instantiate(url)
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else url[:20]
        raise NotifyError(
            f"apprise does not accept the notifier URL ({scheme}://...)",
            loc,
            "check the scheme and its parameters in apprise's documentation",
        )
    fmt = entry.get("format", "text")
    if fmt not in ("text", "markdown"):
        raise NotifyError("notifier 'format' must be text or markdown", loc)
    try:
        min_sev = Severity.parse(str(entry.get("min_severity", DEFAULT_FLOOR)))
    except ValueError as exc:
        raise NotifyError(str(exc), loc) from None
    limit = None
    if "limit" in entry:
        spec = entry["limit"]
        if not isinstance(spec, Mapping) or set(spec) - {"count", "period", "__line__"}:
            raise NotifyError("notifier 'limit' must be {count: N, period: DURATION}", loc)
        try:
            count = int(spec.get("count", 0))
            period = parse_duration(spec.get("period", "1h"))
        except (TypeError, ValueError) as exc:
            raise NotifyError(f"notifier 'limit': {exc}", loc) from None
        if count < 1:
            raise NotifyError("notifier 'limit' count must be at least 1", loc)
        limit = Limit(count, period)
    for key in ("title", "body"):
        if key in entry:
            if not isinstance(entry[key], str):
                raise NotifyError(f"notifier {key!r} must be a template text", loc)
            try:
                check_template(entry[key])
            except (KeyError, ValueError, IndexError) as exc:
                raise NotifyError(f"notifier {key!r} template: unknown field {exc}", loc) from None
    masked = str(plugin.url(privacy=True))
    return Notifier(
        name=str(entry.get("name") or default_name(entry)),
        url=url,
        masked=masked,
        tags=_texts(entry.get("tag"), "tag", loc),
        min_severity=min_sev,
        rules=_texts(entry.get("rules"), "rules", loc),
        finding_tags=_texts(entry.get("finding_tags"), "finding_tags", loc),
        hosts=_texts(entry.get("hosts"), "hosts", loc),
        format=str(fmt),
        limit=limit,
        title=entry.get("title"),
        body=entry.get("body"),
        location=loc,
    )


def default_name(entry: Mapping[str, Any]) -> str:
    """A name from what the notifier is (its target and settings), not from where it
    stands: queued notifications wait by name, so reordering the config must not hand
    them to another notifier; changing one makes it a new notifier."""
    settings = {k: v for k, v in entry.items() if not k.startswith("__")}
    text = json.dumps(settings, sort_keys=True, default=str)
    return "notifier-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def load_apprise_config(path: str) -> Any:
    """An apprise object with every URL of an apprise config file (YAML or text)."""
    import apprise

    conf = apprise.AppriseConfig()
    conf.add(path)
    box = apprise.Apprise()
    box.add(conf)
    return box


def _config_notifier(entry: Mapping[str, Any], source: str, index: int, loc: Location) -> Notifier:
    """A notifier whose targets come from an apprise config file (its URLs and tags)."""
    path = entry.get("config")
    if not isinstance(path, str) or not path:
        raise NotifyError("notifier 'config' must be the path of an apprise config file", loc)
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(source)), path)
    if not os.path.isfile(path):
        raise NotifyError(f"apprise config file not found: {path}", loc)
    box = load_apprise_config(path)
    if len(box) == 0:
        raise NotifyError(
            f"apprise accepts no URL in {path}",
            loc,
            "check the file's syntax (apprise YAML or text config)",
        )
    rest = {k: v for k, v in entry.items() if k != "config"}
    name = entry.get("name") or default_name(entry)
    base = parse_notifier({**rest, "url": "json://localhost", "name": name}, source, index)
    masked = ", ".join(str(s.url(privacy=True)) for s in box)
    return replace(base, url=f"config:{path}", masked=f"config {path}: {masked}")


def parse_notifiers(
    entries: Iterable[Mapping[str, Any] | str], source: str, urls: Sequence[str] = ()
) -> list[Notifier]:
    """Notifiers from config entries (with ``__line__``) and ``--notify`` URLs."""
    out = [parse_notifier(e, source, i) for i, e in enumerate(entries)]
    for i, url in enumerate(urls):
        name = default_name({"url": url}).replace("notifier-", "cli-", 1)
        out.append(parse_notifier({"url": url, "name": name}, "--notify", i))
    names = [n.name for n in out]
    for n in out:
        if names.count(n.name) > 1:
            raise NotifyError(
                f"two notifiers are named {n.name!r}",
                n.location,
                "two entries with the same settings: give them different 'name's",
            )
    return out
