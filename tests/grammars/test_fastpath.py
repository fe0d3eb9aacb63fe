"""The syslog fast paths return exactly what the pyparsing grammars return, or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.grammars import FORMATS
from pipeline.grammars.base import GrammarError
from pipeline.grammars.fastpath import FAST_PATHS
from tests.conftest import SAMPLES, shared_path


def _same(name: str, line: str) -> bool:
    """True when the fast path declines or agrees with the grammar (ISO times included)."""
    got = FAST_PATHS[name](line)
    if got is None:
        return True
    try:
        want = FORMATS[name].parse(line)
    except GrammarError:
        return False
    stamp = (got.timestamp.isoformat() if got.timestamp else None) == (
        want.timestamp.isoformat() if want.timestamp else None
    )
    return got == want and stamp


def _lines(paths: list[Path]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p.is_file() and p.suffix != ".gz":
            out += p.read_text(encoding="utf-8", errors="replace").splitlines()
    return [x.rstrip("\r") for x in out]


def test_fast_paths_agree_on_the_samples() -> None:
    lines = _lines(sorted(SAMPLES.rglob("*")))
    hits = {name: sum(FAST_PATHS[name](x) is not None for x in lines) for name in FAST_PATHS}
    assert hits["syslog"] > 500 and hits["rfc3339"] > 100
    bad = [(n, x) for x in lines for n in FAST_PATHS if not _same(n, x)]
    assert bad == []


@pytest.mark.corpus
def test_fast_paths_agree_on_the_corpora() -> None:
    root = shared_path("corpus")
    lines = _lines(sorted(root.rglob("*.log")) + sorted((root / "fail2ban" / "logs").iterdir()))
    assert sum(FAST_PATHS["syslog"](x) is not None for x in lines) > 3000
    bad = [(n, x) for x in lines for n in FAST_PATHS if not _same(n, x)]
    assert bad == []


STAMPS = [
    "Nov 30 08:22:25",
    "Nov  3 08:22:25",
    "Feb 29 23:59:60",
    "2026-11-30T08:18:02.338779+00:00",
    "2026-11-30T08:18:02.338779Z",
    "2026-02-30T08:18:02.338779+01:00",
]
TAGS = [
    "sm-mta[17783]:",
    "dovecot:",
    "systemd[1]:",
    "sshd(pam_unix)[1]:",
    "prog[1] (ctx):",
    "a:b:",
    "kernel:",
    "postfix/smtpd[9]:",
]


tokens = st.sampled_from(
    [
        *STAMPS,
        "<13>Nov 30 08:22:25",
        "vm",
        "host.example.org",
        *TAGS,
        "syslogd 1.4.1:",
        "[x]",
        " ",
        "  ",
        "msg",
        "master: Error:",
        "message repeated 3 times: [ msg]",
        "message repeated",
        ":",
        "",
    ]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(tokens, min_size=1, max_size=7), st.text(max_size=20))
def test_fast_paths_agree_on_generated_lines(parts: list[str], tail: str) -> None:
    """Junk made of log-ish tokens: a fast path that takes a line must agree."""
    line = " ".join(parts) + tail
    for name in FAST_PATHS:
        assert _same(name, line), (name, line)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(STAMPS),
    st.sampled_from(["vm", "host.example.org", "-", "10.0.0.1"]),
    st.sampled_from(TAGS),
    st.lists(tokens, max_size=4),
    st.text(max_size=20),
)
def test_fast_paths_agree_on_generated_log_lines(
    stamp: str, host: str, tag: str, parts: list[str], tail: str
) -> None:
    """Lines in the shape the fast paths take (time, host, tag, message), so that most
    examples reach a fast path and are compared with the grammar."""
    line = " ".join([stamp, host, tag, *parts]) + tail
    for name in FAST_PATHS:
        assert _same(name, line), (name, line)


def test_generated_log_lines_mostly_reach_a_fast_path() -> None:
    """The strategy above compares something: most of its lines are taken by a fast path."""
    lines = [f"{s} vm {t} message" for s in STAMPS for t in TAGS]
    taken = sum(any(FAST_PATHS[n](x) is not None for n in FAST_PATHS) for x in lines)
    assert taken >= len(lines) // 2
