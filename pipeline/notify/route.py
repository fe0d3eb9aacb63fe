"""Which notifiers a finding goes to, with what title and body."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from pipeline.detection.model import Rule
from pipeline.model import Finding, Severity
from pipeline.notify.notifiers import Notifier
from pipeline.notify.render import RuleText, render


def rule_texts(rules: Iterable[Rule]) -> dict[str, RuleText]:
    return {
        r.id: RuleText(r.remediation, r.references, r.notify_title, r.notify_body) for r in rules
    }


def router(
    notifiers: Sequence[Notifier], rules: Iterable[Rule], floor: Severity | None = None
) -> Callable[[Finding], list[tuple[str, str, str, str]]]:
    """``route(finding)`` → [(notifier name, title, body, format)] for the outbox. A finding
    below ``floor`` (``watch --min-severity``) goes nowhere, whatever the notifiers' own
    floors; at or above it, each notifier's own floor and routing decide."""
    texts = rule_texts(rules)

    def route(f: Finding) -> list[tuple[str, str, str, str]]:
        out: list[tuple[str, str, str, str]] = []
        if floor is not None and f.severity < floor:
            return out
        for n in notifiers:
            if n.wants(f):
                title, body = render(f, texts.get(f.rule), n.format, n.title, n.body)
                out.append((n.name, title, body, n.format))
        return out

    return route
