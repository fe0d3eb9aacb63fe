"""A finding as a notification: a title and a body, in plain text or markdown.

Everything that comes from a log line (message, host, program, captured fields) is escaped
before it goes into a template: control characters are shown as ``\\xNN`` (no terminal or
chat escape sequences, no forged line breaks), and in markdown every character with a
markdown meaning is backslash-escaped, so a log line cannot forge formatting or links.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.model import Finding

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~=])")

DEFAULT_TITLE = "[{severity}] {title} on {host}"
DEFAULT_BODY_TEXT = """{title}
rule: {rule} ({severity})
host: {host}   program: {program}
time: {time}{until}   count: {count}
source: {source}

{lines}
{fields}
What to do: {remediation}
{references}"""
DEFAULT_BODY_MARKDOWN = """**{title}**

- rule: `{rule}` ({severity})
- host: {host}, program: {program}
- time: {time}{until}, count: {count}
- source: {source}

{lines}

{fields}

**What to do:** {remediation}

{references}"""


@dataclass(frozen=True)
class RuleText:
    """What a notification needs from the rule behind a finding."""

    remediation: str = ""
    references: tuple[str, ...] = ()
    title_template: str | None = None
    body_template: str | None = None


def fenced(lines: list[str]) -> str:
    """Lines as a markdown code block whose fence no backtick run inside can close."""
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n" + "\n".join(lines) + f"\n{fence}"


def plain(text: str | None) -> str:
    """Log-derived text made inert for plain-text messages."""
    return "" if text is None else text.translate(_CONTROL)


def markdown(text: str | None) -> str:
    """Log-derived text made inert for markdown messages."""
    return _MD_SPECIAL.sub(r"\\\1", plain(text))


class _Template(string.Formatter):
    """``str.format`` that refuses attribute and index access in templates."""

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, str]:
        if not field_name.isidentifier():
            raise KeyError(field_name)
        return kwargs[field_name], field_name


_FORMATTER = _Template()


def check_template(text: str) -> None:
    """Raise ValueError when a template names an unknown field or is malformed."""
    _FORMATTER.format(text, **{k: "" for k in FIELDS})


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_remediation(text: str, finding: Finding, fmt: str = "text") -> str:
    """A rule's remediation with ``{name}`` replaced by the finding's captured field of that
    name (or its ``host``/``program``), escaped like every other log-derived value.

    A placeholder the finding has no value for is left as written, and so is any other
    brace (shell ``${VAR}``, JSON); one pass, so a filled value is never expanded again. In
    markdown a value inside a code span (`` `systemctl status {unit}` ``) is shown as is,
    since backslash escapes do not work there, unless it holds a backtick that would close
    the span: then the placeholder stays unfilled (the value is in the fields list)."""
    if "{" not in text:
        return text
    known: dict[str, str | None] = {"host": finding.host, "program": finding.program}
    known.update(finding.fields)

    def fill(m: re.Match[str]) -> str:
        value = known.get(m.group(1))
        if value is None or value == "":
            return m.group(0)
        if fmt != "markdown":
            return plain(value)
        if text.count("`", 0, m.start()) % 2:  # inside a code span
            return m.group(0) if "`" in value else plain(value)
        return markdown(value)

    return _PLACEHOLDER.sub(fill, text)


FIELDS = (
    "rule",
    "severity",
    "title",
    "host",
    "program",
    "time",
    "until",
    "count",
    "source",
    "message",
    "lines",
    "fields",
    "remediation",
    "references",
)


def render(
    finding: Finding,
    rule: RuleText | None,
    fmt: str = "text",
    title_template: str | None = None,
    body_template: str | None = None,
) -> tuple[str, str]:
    """The title and body of one finding's notification."""
    esc = markdown if fmt == "markdown" else plain
    rule = rule or RuleText()
    related = finding.related or ()
    if fmt == "markdown":
        raw = [plain(r.message) for r in related[:5]] or [plain(finding.message)]
        shown = fenced(raw)
        fields = "\n".join(f"- {esc(k)}: {esc(v)}" for k, v in sorted(finding.fields.items()))
        refs = "\n".join(f"- <{r}>" for r in rule.references)
    else:
        shown = "\n".join(f"  {plain(r.message)}" for r in related[:5]) or (
            f"  {plain(finding.message)}"
        )
        fields = "\n".join(f"{plain(k)}: {plain(v)}" for k, v in sorted(finding.fields.items()))
        refs = "\n".join(rule.references)
    values = {
        "rule": finding.rule,
        "severity": str(finding.severity),
        "title": finding.title,
        "host": esc(finding.host or "-"),
        "program": esc(finding.program or "-"),
        "time": finding.timestamp.isoformat() if finding.timestamp else "-",
        "until": (
            f" … {finding.last_seen.isoformat()}"
            if finding.last_seen and finding.last_seen != finding.timestamp
            else ""
        ),
        "count": str(finding.count),
        "source": esc(f"{finding.source}:{finding.line}"),
        "message": esc(finding.message),
        "lines": shown,
        "fields": fields,
        "remediation": fill_remediation(rule.remediation, finding, fmt),
        "references": refs,
    }
    title_t = title_template or rule.title_template or DEFAULT_TITLE
    body_t = (
        body_template
        or rule.body_template
        or (DEFAULT_BODY_MARKDOWN if fmt == "markdown" else DEFAULT_BODY_TEXT)
    )
    # a title is plain text in every format: the plain values, not the markdown-escaped ones
    plain_values = {
        **values,
        "host": plain(finding.host or "-"),
        "program": plain(finding.program or "-"),
        "source": plain(f"{finding.source}:{finding.line}"),
        "message": plain(finding.message),
    }
    title = plain(_FORMATTER.format(title_t, **plain_values)).replace("\\x0a", " ")
    body = _FORMATTER.format(body_t, **values).strip() + "\n"
    return title[:250], body
