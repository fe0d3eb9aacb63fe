"""bench/logcheck_dispatch.py: logcheck's patterns dispatched by program find the same
(pattern, line) pairs as one database, on the shapes of lines and patterns it must get
right (every line a program without patterns, no syslog envelope, odd bytes, a line keyed
under two timestamp widths) and on Debian's own patterns."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pipeline.imports import logcheck as lc
from pipeline.imports.logcheck import LogcheckMatcher, LogcheckSet
from tests.conftest import REPO, require_speedup
from tests.test_logcheck import rule_dir

H = r"^(\w{3} [ :[:digit:]]{11}|[0-9T:.+-]{32}) [._[:alnum:]-]+ "

PATTERNS = {
    "ignore.d.server/a": "\n".join(
        [
            r"^\w{3} [ :[:digit:]]{11} [._[:alnum:]-]+ sshd\[[[:digit:]]+\]: Accepted publickey for [[:alnum:]]+$",
            H + r"(spamd|check|re(port|voke))\[[0-9]+\]: ok",
            H + r"kernel:( \[ *[[:digit:]]+\.[[:digit:]]+\])? eth0: link up",
            H + r"postfix/smtpd\[[0-9]+\]: connect from",
            H + r".+\[[0-9]+\]: anything goes",
            H + r"pop3d?: login",
            H + r"cron$",
            r"^[[:alpha:]]{3} [ :[:digit:]]{11} [^ ]+ [Ss]yslogd: restart",
            r"^[0-9 :]{10} [._[:alnum:]:-]+ h1 prog",
            r"^\w{3} [ :[:digit:]]{11} [._[:alnum:]-]+ prog: x",
            r"^[[:alpha:]]+ free text$",
        ]
    )
    + "\n",
    "cracking.d/x": "kernel: Oversized packet\n",
    "violations.d/y": H + r"su\[[0-9]+\]: FAILED" + "\n",
}

LINES = [
    b"Mar  1 10:00:00 web1 sshd[12]: Accepted publickey for bob",
    b"Mar  1 10:00:00 web1 sshd[12]: Accepted password for bob",
    b"Mar  1 10:00:00 web1 sshdx[12]: Accepted publickey for bob",
    b"Mar  1 10:00:00 web1 revoke[3]: ok",
    b"Mar  1 10:00:00 web1 report[3]: ok",
    b"Mar  1 10:00:00 web1 spamd[3]: ok",
    b"Mar  1 10:00:00 web1 checks[3]: ok",
    b"Mar  1 10:00:00 web1 kernel: [ 12.5] eth0: link up",
    b"Mar  1 10:00:00 web1 kernel: eth0: link up",
    b"2024-03-01T10:00:00.000001+01:00 web1 kernel: eth0: link up",
    b"2024-03-01T10:00:00.000001+01:00 web1 kernelx: eth0: link up",
    b"Mar  1 10:00:00 web1 postfix/smtpd[9]: connect from x",
    b"Mar  1 10:00:00 web1 postfix[9]: connect from x",
    b"Mar  1 10:00:00 web1 whatever[9]: anything goes",
    b"Mar  1 10:00:00 web1 pop3: login",
    b"Mar  1 10:00:00 web1 pop3d: login",
    b"Mar  1 10:00:00 web1 pop3dd: login",
    b"Mar  1 10:00:00 web1 cron",
    b"Mar  1 10:00:00 web1 cronx",
    b"Mar  1 10:00:00 web1 syslogd: restart",
    b"Mar  1 10:00:00 web1 Syslogd: restart",
    b"Mar  1 10:00:00 web1 su[1]: FAILED su for root",
    # a program without patterns of its own, a line only the patterns with no program match
    b"Mar  1 10:00:00 web1 ftpd[1]: kernel: Oversized packet",
    b"Mar  1 10:00:00 web1 nopatterns[1]: hello",
    # keyed under two widths: (10, h1) and (15, prog)
    b"123 4567:8 0:00 h1 prog: x",
    # no syslog envelope
    b"just some text sshd[12]: Accepted publickey for bob",
    b"free text",
    b"",
    b"Mar  1",
    b"Mar  1 10:00:00 web1",
    b"Mar  1 10:00:00 web1 ",
    b"Mar  1 10:00:00  web1 sshd[1]: Accepted publickey for bob",
    # odd bytes, a carriage return (the matcher cuts it; here it stays, on both sides)
    b"Mar  1 10:00:00 w\xffb sshd[12]: Accepted publickey for bob",
    b"Mar  1 10:00:00 web1 sshd[12]: Accepted publickey for b\xffb",
    b"Mar  1 10:00:00 web1 \xffsshd[12]: Accepted publickey for bob",
    b"Mar  1 10:00:00 web1 sshd[12]: Accepted publickey for bob\r",
    b"Mar  1 10:00:00 " + b"h" * 300 + b" sshd[12]: Accepted publickey for bob",
    b"Mar  1 10:00:00 web1 " + b"p" * 300 + b"[12]: anything goes",
]


def _experiment() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "logcheck_dispatch", REPO / "bench" / "logcheck_dispatch.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("logcheck_dispatch", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def experiment() -> ModuleType:
    require_speedup("hyperscan", lc.hyperscan is not None)
    pytest.importorskip("pyarrow")
    return _experiment()


def test_pattern_keys_read_the_program(experiment: ModuleType) -> None:
    from pipeline.imports.ere import translate

    def key(ere: str) -> object:
        k = experiment.pattern_key(translate(ere.encode()).regex)
        return None if k is None else sorted(k.pairs())

    assert key(H + r"sshd\[[0-9]+\]: x") == [(15, b"sshd"), (32, b"sshd")]
    assert key(H + r"(spamd|re(port|voke))\[") == sorted(
        (w, p) for w in (15, 32) for p in (b"spamd", b"report", b"revoke")
    )
    assert key(r"^\w{3} [ :[:digit:]]{11} [._[:alnum:]-]+ pop3d?: x") == [
        (15, b"pop3"),
        (15, b"pop3d"),
    ]
    # no program word the line must start with: every line
    for ere in (
        H + r".+\[",
        H + r"[[:alnum:]-]+\[",
        H + r"sshd",  # the match may end inside the word
        H + r"saslauthd+\[",
        r"sshd\[[0-9]+\]: x",
        H + r"a: |b",
        r"^\w+ [._[:alnum:]-]+ sshd\[",  # a timestamp of no fixed width
    ):
        assert key(ere) is None, ere


@pytest.mark.parametrize("chunk", [len(LINES), 7, 1])
def test_dispatched_scan_finds_what_one_database_finds(
    experiment: ModuleType, tmp_path: Path, chunk: int
) -> None:
    root = rule_dir(tmp_path / "rules", PATTERNS)
    ex = experiment.Experiment(LogcheckMatcher(LogcheckSet.load(str(root), "server")))
    assert 0 < len(ex.plan.generic) < ex.patterns
    seen: set[tuple[int, int]] = set()
    for at in range(0, len(LINES), chunk):
        part = LINES[at : at + chunk]
        for ending in (b"\n", b""):  # the last line with and without its newline
            expected, got, _ = ex.chunk(b"\n".join(part) + ending)
            assert got == expected, part
            seen |= {(i, at + line) for i, line in expected}
    # the cases meant to match do (the comparison is not of two empty sets)
    matched = {line for _, line in seen}
    assert {0, 3, 4, 5, 7, 8, 9, 11, 13, 14, 15, 17, 19, 20, 21, 22, 24} <= matched
    assert not {1, 2, 6, 10, 12, 16, 18, 23, 25, 27, 31} & matched
    # the line keyed under two widths needed a set made for it
    assert len(ex.plan.sets) > ex.plan.base


def test_dispatched_scan_of_debians_patterns(experiment: ModuleType) -> None:
    if not Path("/etc/logcheck/ignore.d.server").is_dir():
        pytest.skip("logcheck-database is not installed")
    ex = experiment.Experiment(LogcheckMatcher(LogcheckSet.load("/etc/logcheck", "server")))
    samples = sorted((REPO / "samples" / "syslog").glob("*"))
    data = b"".join(p.read_bytes() for p in samples if p.is_file() and p.suffix != ".gz")
    data += b"\n".join(LINES) + b"\n"
    expected, got, _ = ex.chunk(data)
    assert expected and got == expected
