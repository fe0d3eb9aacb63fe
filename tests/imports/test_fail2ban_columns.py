"""A fail2ban filter judged over a block's columns (:mod:`pipeline.imports.f2bcolumns`) gives
what the per-line path gives, row by row, with the same multi-line state.

The oracle is the per-line path: each event through :meth:`Fail2banCondition.test` (the
filter's ``process_line`` on the rebuilt text). The column path gets the same events as
columns (host, program, pid, repeat, message) and is asked row by row in line order, on a
fresh copy of the filter. The inputs: fail2ban's own sample logs (with every single-line
filter the columns run), the same messages in the plain syslog shape, the bench's kind of
lines, and awkward input (invalid UTF-8, no host, no program, IPv6, empty users, repeated
messages, multi-line ids). Whole scans then compare the block path with the line path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.columns import arrow_strings
from pipeline.engine import Engine, ScanOptions
from pipeline.imports.f2bcolumns import (
    ALWAYS,
    NONEMPTY,
    UNSURE,
    column_judge,
    filter_line,
    group_kinds,
    named_only,
)
from pipeline.imports.f2brules import filter_rules, jail_rules
from pipeline.imports.fail2ban import Fail2banFilter, read_filter
from pipeline.model import Event
from tests.conftest import bench_lines, shared_path
from tests.imports.test_fail2ban_block import _condition, _events, _rule, _sample, _shaped
from tests.imports.test_fail2ban_samples import CONFIG, require_samples, sample_names


def _fresh(name: str) -> Fail2banFilter | None:
    flt = Fail2banFilter(read_filter(CONFIG, name))
    return flt if column_judge(flt) is not None else None


def _columns(events: list[Event]) -> tuple[Any, ...]:
    return (
        arrow_strings([e.host for e in events]),
        arrow_strings([e.program for e in events]),
        np.array([e.pid or 0 for e in events], dtype=np.int64),
        np.array([e.pid is not None for e in events], dtype=bool),
        np.array([e.repeat for e in events], dtype=np.int64),
        arrow_strings([e.message for e in events]),
    )


def _failures(got: list[Any]) -> list[tuple[Any, ...]]:
    # the column path leaves a failure's time out (the condition does not read it)
    return [(f.regex, f.fid, dict(f.groups), f.nofail) for f in got]


def _state(flt: Fail2banFilter) -> list[tuple[str, dict[str, str], set[str], bool]]:
    return [(k, dict(v.groups), set(v.users), v.pending) for k, v in flt._mlfid.items()]


def _compare(
    name: str, data: bytes, *, chunk: int = 0, broken: set[int] | None = None, skips: bool = False
) -> int:
    """Assert the two paths agree on every syslog event of ``data``; the number of rows
    with a failure. ``chunk``: judge the rows in blocks of this many (the state carries)."""
    events = [ev for _, ev in _events(data) if ev.format != "journal-json"]
    line_flt, col_flt = _fresh(name), _fresh(name)
    assert line_flt is not None and col_flt is not None
    line_cond, col_cond = _condition(_rule(line_flt)), _condition(_rule(col_flt))
    assert col_cond.columns is not None
    if broken is not None:  # regexes Arrow's kernel refused: per row
        col_cond.columns._broken = broken
    want_failures = []
    want = []
    for ev in events:
        text = filter_line(ev.host, ev.program, ev.pid, ev.repeat, ev.message)
        want_failures.append(_failures(line_flt.process_line(text, when=ev.timestamp)))
    line_flt.reset()
    want = [line_cond.test(ev) for ev in events]
    # the failures, row by row (the judge itself), then the condition's verdicts
    got_failures = []
    skipped = 0
    step = chunk or max(1, len(events))
    for start in range(0, len(events), step):
        part = events[start : start + step]
        judged = col_cond.columns.judge(*_columns(part))
        for k in range(len(part)):
            nothing = judged.moves_nothing(k)
            before = _state(col_flt) if nothing else None
            found = judged.verdict(k)
            if nothing:
                # what the condition skips: no failure that counts, no state moved
                assert all(f.nofail or f.fid is None for f in found), (name, part[k].message)
                assert _state(col_flt) == before, (name, part[k].message)
                skipped += 1
            got_failures.append(_failures(found))
    assert got_failures == want_failures, name
    assert col_flt._mlfid.keys() == line_flt._mlfid.keys()
    col_flt.reset()
    got = []
    for start in range(0, len(events), step):
        part = events[start : start + step]
        verdict = col_cond.judge_rows(*_columns(part))
        assert verdict is not None
        got += [verdict(k) for k in range(len(part))]
    for ev, a, b in zip(events, got, want, strict=True):
        assert a == b, (name, ev.line, ev.message, a, b)
    assert _state(col_flt) == _state(line_flt)
    if skips:
        assert skipped, "no row was skipped"
    return sum(1 for w in want if w is not None)


def test_columns_agree_with_the_line_path_on_fail2bans_samples() -> None:
    require_samples()
    judged = failures = 0
    for name in sample_names():
        if _fresh(name) is None:
            continue
        judged += 1
        for data in (_sample(name), _shaped(_sample(name), name)):
            failures += _compare(name, data)
    assert judged > 50
    assert failures > 1000


def test_columns_carry_the_state_from_block_to_block() -> None:
    require_samples()
    data = _sample("sshd") + _shaped(_sample("sshd"), "sshd")
    assert _compare("sshd", data, chunk=7) > 100


def test_columns_with_the_filters_modes() -> None:
    require_samples()
    data = _sample("sshd") + _shaped(_sample("sshd"), "sshd")
    for mode in ("aggressive", "ddos", "extra"):
        spec = dataclasses.replace(read_filter(CONFIG, "sshd", {"mode": mode}))
        line_flt, col_flt = Fail2banFilter(spec), Fail2banFilter(spec)
        events = [ev for _, ev in _events(data)]
        line_cond, col_cond = _condition(_rule(line_flt)), _condition(_rule(col_flt))
        verdict = col_cond.judge_rows(*_columns(events))
        assert verdict is not None
        assert [verdict(k) for k in range(len(events))] == [line_cond.test(e) for e in events]


AWKWARD = b"""\
Mar  1 00:00:00 mx1 sshd[12]: Connection from 10.0.0.1 port 4711 on 10.0.0.2 port 22
Mar  1 00:00:00 mx1 sshd[12]: Invalid user  from 10.0.0.1 port 4711
Mar  1 00:00:01 mx1 sshd[12]: Failed password for invalid user  from 10.0.0.1 port 4711 ssh2
Mar  1 00:00:01 mx1 sshd[12]: Failed password for r\xffot from 10.0.0.1 port 22 ssh2
Mar  1 00:00:01 mx1 sshd[12]: Failed password for r\xc3\xa9ot from 10.0.0.1 port 22 ssh2
Mar  1 00:00:01 mx1 sshd[12]: Failed password for root from 2001:db8::1 port 22 ssh2
Mar  1 00:00:01 mx1 sshd[12]: Failed password for root from ::ffff:10.0.0.9 port 22 ssh2
Mar  1 00:00:01 mx1 sshd[12]: Failed publickey for invalid user bob from [2001:db8::2] port 2
Mar  1 00:00:02 mx1 sshd[12]: message repeated 3 times: [ Failed password for root from 10.0.0.1 port 22 ssh2]
Mar  1 00:00:02 mx1 sshd[13]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=10.0.0.3  user=root
Mar  1 00:00:02 mx1 sshd[13]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=alt rhost=10.0.0.3
Mar  1 00:00:03 mx1 sshd[13]: Accepted password for root from 10.0.0.3 port 22 ssh2
Mar  1 00:00:03 mx1 sshd[13]: Failed password for root from 10.0.0.3 port 22 ssh2
Mar  1 00:00:03 mx1 sshd[14]: Accepted publickey for bob from 10.0.0.4 port 22 ssh2
Mar  1 00:00:03 mx1 sshd[14]: Connection closed by authenticating user bob 10.0.0.4 port 22 [preauth]
Mar  1 00:00:04 mx1 sshd[15]: Failed password for alice from 10.0.0.5 port 22 ssh2
Mar  1 00:00:04 mx1 sshd[15]: Failed password for carol from 10.0.0.5 port 22 ssh2
Mar  1 00:00:04 mx1 sshd[15]: Disconnecting authenticating user carol 10.0.0.5 port 22: Too many authentication failures [preauth]
Mar  1 00:00:04 mx1 sshd[15]: Received disconnect from 10.0.0.5 port 22:11: Bye Bye [preauth]
Mar  1 00:00:05 mx1 sshd: Failed password for root from 10.0.0.6 port 22 ssh2
Mar  1 00:00:05 mx1 sshd[016]: Failed password for root from 10.0.0.6 port 22 ssh2
Mar  1 00:00:05 mx1 sshd[16]:  Failed password for root from 10.0.0.6 port 22 ssh2
Mar  1 00:00:05 mx1 sshd[16]: Failed password for root from host.example.org port 22 ssh2
Mar  1 00:00:05 mx1 sshd[16]: error: PAM: Authentication failure for root from 10.0.0.7
Mar  1 00:00:06 sshd[17]: Failed password for root from 10.0.0.8 port 22 ssh2
<38>1 2026-03-01T00:00:06Z mx1 sshd 18 - - Failed password for root from 10.0.0.8 port 22 ssh2
2026-03-01T00:00:07.000000+01:00 mx1 sshd[19]: Failed password for root from 10.0.0.9 port 22
Mar  1 00:00:07 mx1 dovecot: Failed password for root from 10.0.0.1 port 22 ssh2
Mar  1 00:00:08 mx1 sshd[20]: Failed password for root from 10.0.0.10 port 22 ssh2\x00
Mar  1 00:00:08 mx1 sshd[20]: Failed \xe2\x82 password for x from 10.0.0.10
Mar  1 00:00:08 mx1 sshd[20]: refused connect from h.example (10.0.0.11)
Mar  1 00:00:08 mx1 sshd[21]: User bob from 10.0.0.12 not allowed because not listed in AllowUsers
Mar  1 00:00:08 mx1 sshd[21]: ROOT LOGIN REFUSED FROM 10.0.0.13
"""


def test_columns_on_awkward_lines() -> None:
    require_samples()
    # every line twice: the second time the multi-line ids are known
    assert _compare("sshd", AWKWARD + AWKWARD, skips=True) > 20
    for name in ("sshd", "dovecot", "postfix", "pam-generic"):
        if _fresh(name) is not None:
            _compare(name, AWKWARD)


def test_regexes_the_kernel_refuses_run_per_row() -> None:
    require_samples()
    data = _sample("sshd") + AWKWARD
    flt = _fresh("sshd")
    assert flt is not None
    n = len(flt.failregex)
    _compare("sshd", data, broken={-1})  # the prefregex: every row whole
    _compare("sshd", data, broken=set(range(0, n, 2)))
    _compare("sshd", data, broken=set(range(n)))


def test_columns_on_the_bench_lines_and_the_loghub_corpus(tmp_path: Path) -> None:
    require_samples()
    loghub = shared_path("corpus", "loghub")
    bench = bench_lines(tmp_path / "syslog-20k.log", 20000, loghub=True)
    assert _compare("sshd", bench.read_bytes(), chunk=997, skips=True) > 200
    for log in sorted(loghub.glob("*/*_2k.log")):
        _compare("sshd", log.read_bytes())


@pytest.mark.parametrize(
    ("pattern", "kinds"),
    [
        (r"^(?P<a>x)(?P<b>y?)", {"a": ALWAYS, "b": ALWAYS}),
        (r"(?P<a>x)|(?P<b>y*)", {"a": NONEMPTY, "b": UNSURE}),
        (r"(?:(?P<a>x))?(?P<c>(?P<d>z))", {"a": NONEMPTY, "c": ALWAYS, "d": ALWAYS}),
        (r"(?:(?P<a>.*))+", {"a": UNSURE}),
    ],
)
def test_group_kinds(pattern: str, kinds: dict[str, str]) -> None:
    assert group_kinds(pattern) == kinds


def test_unnamed_groups_are_named_for_the_kernel() -> None:
    assert named_only(r"(a)(?P<x>b)[(]\((c)") == r"(?P<_lwu0>a)(?P<x>b)[(]\((?P<_lwu1>c)"
    assert named_only(r"[]()](a)") == r"[]()](?P<_lwu0>a)"
    assert named_only(r"(?:a)(?=b)") == r"(?:a)(?=b)"


def test_filters_the_columns_do_not_run() -> None:
    require_samples()
    for name in sample_names():
        flt = Fail2banFilter(read_filter(CONFIG, name))
        judge = column_judge(flt)
        if flt.spec.maxlines > 1 or flt.ignoreregex:
            assert judge is None, name
        if judge is None:
            rule = _rule(flt)
            assert _condition(rule).judge_rows(*_columns([])) is None


def _scan_both(spec: str, path: Path) -> tuple[Any, Any]:
    # each scan with its own rules: a filter keeps its multi-line state
    block = Engine(filter_rules(CONFIG, spec), ScanOptions()).scan([str(path)])
    line = Engine(filter_rules(CONFIG, spec), ScanOptions(block_path=False)).scan([str(path)])
    return block, line


@pytest.fixture
def columns_for_every_block(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every block read as columns (these inputs are small), counted."""
    from pipeline import block

    monkeypatch.setattr(block, "FEW_CANDIDATES", 0)
    monkeypatch.setattr(block, "UNKNOWN_IS_DENSE", False)
    monkeypatch.setattr(block, "DENSE", 2.0)
    seen: list[int] = []
    orig = block.BlockRecords._judged

    def counted(self: Any, blk: Any, rows: Any, orders: Any) -> Any:
        got = orig(self, blk, rows, orders)
        seen.append(len(got))
        return got

    monkeypatch.setattr(block.BlockRecords, "_judged", counted)
    return seen


def test_scans_find_the_same_on_the_block_path(
    tmp_path: Path, columns_for_every_block: list[int]
) -> None:
    require_samples()
    path = tmp_path / "auth.log"
    path.write_bytes(_sample("sshd") + _shaped(_sample("sshd"), "sshd") + AWKWARD + AWKWARD)
    block, line = _scan_both("sshd", path)
    assert any(columns_for_every_block), "no block was judged over columns"
    assert len(line.findings) > 100
    assert [f.as_dict() for f in block.findings] == [f.as_dict() for f in line.findings]
    assert block.stats.as_dict() | {"seconds": 0} == line.stats.as_dict() | {"seconds": 0}
    assert [str(p) for p in block.problems] == [str(p) for p in line.problems]
    assert block.detection == line.detection


def test_a_jail_scan_finds_the_same_on_the_block_path(
    tmp_path: Path, columns_for_every_block: list[int]
) -> None:
    require_samples()
    root = tmp_path / "fail2ban"
    root.mkdir()
    (root / "filter.d").symlink_to(CONFIG / "filter.d")
    (root / "jail.conf").write_text(
        "[DEFAULT]\nmaxretry = 5\nfindtime = 10m\nbantime = 1h\n"
        "[sshd]\nenabled = true\nmaxretry = 2\nfindtime = 1d\nignoreip = 10.0.0.0/29\n",
        encoding="utf-8",
    )
    path = tmp_path / "auth.log"
    path.write_bytes(_sample("sshd") + _shaped(_sample("sshd"), "sshd") + AWKWARD + AWKWARD)
    block = Engine(jail_rules(root), ScanOptions()).scan([str(path)])
    line = Engine(jail_rules(root), ScanOptions(block_path=False)).scan([str(path)])
    assert any(columns_for_every_block), "no block was judged over columns"
    assert any(f.rule == "f2b-sshd" for f in line.findings)
    assert [f.as_dict() for f in block.findings] == [f.as_dict() for f in line.findings]
    assert block.stats.as_dict() | {"seconds": 0} == line.stats.as_dict() | {"seconds": 0}
    assert block.detection == line.detection
