"""``scan --logcheck``: ERE translation against GNU grep, verdicts, folding, problems, state."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.detection.prefilter import newline_offsets
from pipeline.imports import logcheck as lc
from pipeline.imports.logcheck import LogcheckMatcher, LogcheckSet
from tests.conftest import logwarden, require_program, require_speedup


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGWARDEN_CACHE_DIR", str(tmp_path / "cache"))


def rule_dir(root: Path, files: dict[str, str]) -> Path:
    """A logcheck rule directory: ``{"ignore.d.server/ssh": "pattern\\n...", ...}``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


ENGINES = [pytest.param(True, id="hyperscan"), pytest.param(False, id="re")]

#: grep -E patterns whose ERE reading differs from PCRE's, and lines that tell them apart
PATTERNS = [
    r"[[:digit:]]{3}",
    r"^[[:alpha:]]+ [[:alnum:]_-]+$",
    r"[[:space:]]x",
    r"[[:upper:][:digit:]]z",
    r"[a-c[:digit:]x-z]q",
    r"[[:punct:]]{2}",
    r"[[:xdigit:]]{4}",
    r"[]a]b",
    r"[^]a]b",
    r"[\]x",
    r"[a\]+c",
    r"[.]",
    r"[*+?{]",
    r"[]-]",
    r"[[.-.]]z",
    r"a{x",
    r"a{1",
    r"a{,2}b",
    r"*ab",
    r"xa+?y",
    r"a{1}{2}",
    r"\w+=\w",
    r"\W\W",
    r"\s\S",
    r"\bfoo\b",
    r"x\dy",
    r"\(lit\)",
    r"(a|b)*c$",
    r"^$",
    r"a|^b",
    r"^(x|y)z",
    r"(ab)\1",
    r"a.c",
    r"[^a-z]+$",
    r"^\w{3} [ :[:digit:]]{11} [._[:alnum:]-]+ sshd\[[[:digit:]]+\]: Accepted",
]
LINES = [
    "abc",
    "ab",
    "aab",
    "*ab",
    "xy",
    "xay",
    "xaay",
    "a{x",
    "a{1",
    "a{1}",
    "aa",
    "key=value",
    "no equals here",
    "foo",
    "afoo",
    "foo bar",
    "xdy",
    "x1y",
    "(lit)",
    "lit",
    "abcbc",
    "ababc",
    "abab",
    "bz",
    "yz",
    "zyz",
    "a\\x",
    "\\x",
    "]b",
    "ab",
    "cb",
    "a\\\\c",
    "a]c",
    ".",
    "?",
    "-",
    "]",
    "-z",
    "123",
    "12",
    "ABC def-1",
    "abc def!",
    "a x",
    "a\tx",
    "Az",
    "5z",
    "bq",
    "5q",
    "yq",
    "!!",
    "a!b",
    "dead",
    "DEAD",
    "x",
    "",
    "UPPER 123",
    "a  b",
    "Mar  1 00:00:00 mx1 sshd[42]: Accepted publickey for alice",
    "Mar  1 00:00:00 mx1 sshd(pam)[42]: Accepted",
]


@pytest.mark.parametrize("hyperscan", ENGINES)
def test_patterns_match_the_lines_gnu_grep_matches(tmp_path: Path, hyperscan: bool) -> None:
    if hyperscan:
        require_speedup("hyperscan", lc.hyperscan is not None)
    grep = require_program("grep")
    data = "\n".join(LINES).encode() + b"\n"
    logfile = tmp_path / "lines"
    logfile.write_bytes(data)
    nl = newline_offsets(data)
    wrong = []
    for n, pattern in enumerate(PATTERNS):
        proc = subprocess.run(
            [grep, "-E", "-n", "--", pattern, str(logfile)],
            capture_output=True,
            env={"LC_ALL": "C"},
            check=False,
        )
        assert proc.returncode in (0, 1), proc.stderr
        expected = {int(ln.split(b":", 1)[0]) - 1 for ln in proc.stdout.splitlines()}
        root = rule_dir(tmp_path / f"rules{n}", {"ignore.d.server/test": pattern + "\n"})
        matcher = LogcheckMatcher(LogcheckSet.load(str(root)), use_hyperscan=hyperscan)
        assert matcher.problems == []
        explained = set(range(len(LINES))) - set(matcher.classify(data, nl).unexplained.tolist())
        if explained != expected:
            wrong.append(
                f"{pattern!r}: grep {sorted(LINES[i] for i in expected)} "
                f"logwarden {sorted(LINES[i] for i in explained)}"
            )
    assert not wrong, "\n".join(wrong)


#: the directory logcheck's own per-file rules are exercised with
RULES = {
    "cracking.d/kernel": "kernel: .*ATTACK\n",
    "cracking.d/logcheck": "rootkit\n",
    "violations.d/su": "su\\[[0-9]+\\]: FAILED\n",
    "violations.d/logcheck": "denied\n",
    "violations.d/sudo": "sudo: .*denied\n",
    "violations.ignore.d/logcheck-su": "FAILED su for nobody\n",
    "violations.ignore.d/sudo": "sudo: .*harmless denied\n",
    "ignore.d.server/cron": "# a comment\n\n   \n^\\w{3} [ :[:digit:]]{11} [._[:alnum:]-]+ CRON\\[[0-9]+\\]: \n",
    "ignore.d.paranoid/paranoid": "PARANOID-OK\n",
    "ignore.d.workstation/desk": "DESK-OK\n",
}
LOG = [
    "Mar  1 10:00:01 web1 kernel: ATTACK detected",  # cracking
    "Mar  1 10:00:02 web1 kernel: rootkit ATTACK",  # cracking (two files)
    "Mar  1 10:00:03 web1 su[11]: FAILED su for root",  # violation (su)
    "Mar  1 10:00:04 web1 su[12]: FAILED su for nobody",  # ignored for su
    "Mar  1 10:00:05 web1 sudo: alice denied",  # violation (sudo; logcheck yields to it)
    "Mar  1 10:00:06 web1 sudo: harmless denied",  # ignored for sudo, logcheck ignored too
    "Mar  1 10:00:07 web1 app: access denied",  # violation (logcheck)
    "Mar  1 10:00:08 web1 CRON[5]: (root) CMD x",  # explained (server)
    "Mar  1 10:00:09 web1 app: PARANOID-OK",  # explained at every level
    "Mar  1 10:00:10 web1 app: DESK-OK",  # explained at workstation only
    "Mar  1 10:00:11 web1 app: something new",  # unexplained
]


def _verdicts(matcher: LogcheckMatcher, lines: list[str]) -> dict[str, list[int]]:
    data = ("\n".join(lines) + "\n").encode()
    v = matcher.classify(data, newline_offsets(data))
    return {
        "cracking": v.cracking.tolist(),
        "violations": v.violations.tolist(),
        "unexplained": v.unexplained.tolist(),
    }


@pytest.mark.parametrize("hyperscan", ENGINES)
def test_verdicts_follow_logchecks_order_and_per_file_ignores(
    tmp_path: Path, hyperscan: bool
) -> None:
    if hyperscan:
        require_speedup("hyperscan", lc.hyperscan is not None)
    root = rule_dir(tmp_path / "rules", RULES)
    got = {
        level: _verdicts(
            LogcheckMatcher(LogcheckSet.load(str(root), level), use_hyperscan=hyperscan), LOG
        )
        for level in lc.LEVELS
    }
    for level in lc.LEVELS:
        assert got[level]["cracking"] == [0, 1]
        assert got[level]["violations"] == [2, 4, 6]
    # lines 3 and 5, ignored by violations.ignore.d, are no system events either
    # (logcheck takes every violations.d match out of them); a level includes the stricter
    assert got["server"]["unexplained"] == [9, 10]
    assert got["paranoid"]["unexplained"] == [7, 9, 10]
    assert got["workstation"]["unexplained"] == [10]


def test_rule_files_logcheck_skips_and_bad_patterns_are_located_problems(
    tmp_path: Path,
) -> None:
    root = rule_dir(
        tmp_path / "rules",
        {
            "ignore.d.server/ok": "fine\n[[:nonsense:]]x\n(unclosed\n",
            "ignore.d.server/local.dpkg-old": "everything\n",
        },
    )
    rules = LogcheckSet.load(str(root))
    problems = {(p.kind, str(p.location)) for p in LogcheckMatcher(rules).problems}
    ok = root / "ignore.d.server" / "ok"
    assert ("logcheck-pattern", f"{ok}:2:1") in problems
    assert ("logcheck-pattern", f"{ok}:3:9") in problems
    assert ("logcheck-skipped", str(root / "ignore.d.server" / "local.dpkg-old")) in problems
    assert [p.text for p in rules.patterns] == [b"fine"]


def test_trailing_white_space_is_cut_before_matching(tmp_path: Path) -> None:
    root = rule_dir(tmp_path / "rules", {"ignore.d.server/x": "done$\n"})
    matcher = LogcheckMatcher(LogcheckSet.load(str(root)))
    assert _verdicts(matcher, ["job done  ", "job done\r", "job done.", "job done\t"]) == {
        "cracking": [],
        "violations": [],
        "unexplained": [2],
    }


def _scan(*args: str) -> tuple[list[dict[str, Any]], str]:
    proc = logwarden("scan", "--format", "jsonl", *args)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(ln) for ln in proc.stdout.splitlines()], proc.stderr


FOLD_LOG = [
    "# a comment line is not judged",
    "Mar  1 10:00:01 web1 kernel: ATTACK detected",
    "Mar  1 10:05:00 web1 app[1]: new thing one",
    "Mar  1 10:06:00 web1 app[2]: new thing two",
    "",
    "Mar  1 10:07:00 web2 app[3]: other host",
    "Mar  1 10:08:00 web1 other: other program",
    "Mar  1 10:09:00 web1 app[4]: message repeated 3 times: [ new thing three]",
    "not a syslog line at all",
    "Mar  1 10:59:59 web1 app[5]: last of the hour",
    "Mar  1 11:00:00 web1 app[6]: next hour",
    "Mar  1 11:00:01 web1 CRON[7]: (root) CMD x",
]


def test_scan_folds_unexplained_lines_per_host_program_and_hour(tmp_path: Path) -> None:
    root = rule_dir(tmp_path / "rules", RULES)
    log = tmp_path / "syslog"
    log.write_text("\n".join(FOLD_LOG) + "\n")
    found, err = _scan("--no-builtin-rules", "--logcheck", str(root), "--tz", "UTC", str(log))
    by = {(f["rule"], f["host"], f["program"], f["fields"].get("logcheck_hour")): f for f in found}
    crack = by[("logcheck.cracking", "web1", "kernel", None)]
    assert (
        crack["severity"] == "critical" and crack["fields"]["logcheck_file"] == "cracking.d/kernel"
    )
    app = by[("logcheck.unexplained", "web1", "app", f"{crack['timestamp'][:13]}:00:00+00:00")]
    assert app["severity"] == "low"
    assert app["count"] == 6  # one, two, three × 3 (rsyslog's repeat), last of the hour
    assert app["message"] == "new thing one" and app["source"].endswith(":3")
    assert app["last_seen"].endswith("10:59:59+00:00")
    assert app["timestamp"].endswith("10:05:00+00:00")
    nxt = [f for k, f in by.items() if k[2] == "app" and k[3] and k[3].endswith("11:00:00+00:00")]
    assert len(nxt) == 1 and nxt[0]["count"] == 1
    assert {(k[1], k[2]) for k in by if k[0] == "logcheck.unexplained"} == {
        ("web1", "app"),
        ("web2", "app"),
        ("web1", "other"),
        (None, None),  # the line no grammar reads is reported all the same
    }
    total = sum(f["count"] for f in found if f["rule"] == "logcheck.unexplained")
    assert total == 10  # every unexplained line, comments and the blank line aside
    assert "1 candidates unparsed" in err or "unparsed" in err


def test_scan_keeps_builtin_findings_and_reports_rule_problems(tmp_path: Path) -> None:
    root = rule_dir(
        tmp_path / "rules", {"ignore.d.server/x": "(broken\nCRON\n", "ignore.d.server/a.b": "x\n"}
    )
    log = tmp_path / "syslog"
    line = (
        "Mar  1 10:00:00 vm dovecot: master: Warning: service(pop3-login): process_limit (2)"
        " reached, client connections are being dropped"
    )
    log.write_text(line + "\n")
    found, err = _scan("--logcheck", str(root), "--tz", "UTC", str(log))
    assert {f["rule"] for f in found} == {"dovecot.process-limit-reached", "logcheck.unexplained"}
    assert "logcheck-pattern" in err and f"{root / 'ignore.d.server' / 'x'}:1" in err
    assert "logcheck-skipped" in err


def test_scan_state_continues_the_fold(tmp_path: Path) -> None:
    root = rule_dir(tmp_path / "rules", {"ignore.d.server/x": "CRON\n"})
    log = tmp_path / "syslog"
    state = tmp_path / "state.sqlite"
    log.write_text("Mar  1 10:00:00 web1 app[1]: one\nMar  1 10:01:00 web1 app[1]: two\n")
    args = ("--no-builtin-rules", "--logcheck", str(root), "--tz", "UTC", "--state", str(state))
    first, _ = _scan(*args, str(log))
    with log.open("a") as f:
        f.write("Mar  1 10:02:00 web1 app[1]: three\n")
    second, _ = _scan(*args, str(log))
    assert len(first) == len(second) == 1
    assert first[0]["key"] == second[0]["key"]
    assert (first[0]["count"], second[0]["count"]) == (2, 3)
    assert second[0]["last_seen"].endswith("10:02:00+00:00")


def test_missing_rule_directory_is_a_usage_error(tmp_path: Path) -> None:
    proc = logwarden("scan", "--logcheck", str(tmp_path / "nope"), str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "no such logcheck rule directory" in proc.stderr


def test_hyperscan_and_re_agree_on_debians_rules(tmp_path: Path) -> None:
    """The fallback without Hyperscan gives the same verdicts with the real database."""
    require_speedup("hyperscan", lc.hyperscan is not None)
    if not Path("/etc/logcheck/ignore.d.server").is_dir() or shutil.which("logcheck") is None:
        require_program("logcheck", "/usr/sbin/logcheck")
    from tests.conftest import shared_path

    data = shared_path("corpus", "loghub", "Linux", "Linux_2k.log").read_bytes()
    data += shared_path("corpus", "loghub", "OpenSSH", "OpenSSH_2k.log").read_bytes()[:100_000]
    nl = newline_offsets(data)
    rules = LogcheckSet.load("/etc/logcheck", "server")
    fast = LogcheckMatcher(rules).classify(data, nl)
    slow = LogcheckMatcher(rules, use_hyperscan=False).classify(data, nl)
    assert fast.unexplained.tolist() == slow.unexplained.tolist()
    assert fast.cracking.tolist() == slow.cracking.tolist()
    assert fast.violations.tolist() == slow.violations.tolist()


def test_watch_reports_logchecks_verdicts_and_keeps_folding_across_restarts(
    tmp_path: Path,
) -> None:
    from pipeline.config import WatchConfig
    from pipeline.daemon import Daemon

    root = rule_dir(tmp_path / "rules", RULES)
    log = tmp_path / "syslog"
    log.write_text("")
    out = tmp_path / "findings.jsonl"
    config = WatchConfig(
        paths=(str(log),),
        state_dir=str(tmp_path / "state"),
        output=str(out),
        poll_interval=0.05,
        builtin_rules=False,
        logcheck=str(root),
        tz="UTC",
    )

    def write(*lines: str) -> None:
        with log.open("a") as f:
            f.write("".join(ln + "\n" for ln in lines))

    def fold_count(daemon: Daemon) -> int:
        periods = daemon.detector.suppressors["logcheck.unexplained"].periods
        return sum(p.count for p in periods.values())

    daemon = Daemon(config)
    daemon.recover()
    daemon.step()
    write(
        "Mar  1 10:00:01 web1 kernel: ATTACK detected",
        "Mar  1 10:00:02 web1 app[1]: new one",
        "Mar  1 10:00:03 web1 CRON[2]: (root) CMD x",
        "Mar  1 10:00:04 web1 app[1]: new two",
    )
    daemon.step()
    daemon.checkpoint()
    records = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [(r["rule"], r["severity"]) for r in records] == [
        ("logcheck.cracking", "critical"),
        ("logcheck.unexplained", "low"),
    ]
    assert fold_count(daemon) == 2
    daemon.close()
    restarted = Daemon(config)
    restarted.recover()
    write("Mar  1 10:30:00 web1 app[1]: new three")
    restarted.step()
    restarted.checkpoint()
    assert fold_count(restarted) == 3  # the fold went on from the saved state
    assert len(out.read_text().splitlines()) == 2  # an update is no new finding
    write("Mar  1 11:00:00 web1 app[1]: next hour")
    restarted.step()
    restarted.checkpoint()
    last = json.loads(out.read_text().splitlines()[-1])
    assert last["rule"] == "logcheck.unexplained" and last["message"] == "next hour"
    restarted.close()


def test_watch_config_takes_a_logcheck_directory(tmp_path: Path) -> None:
    from pipeline.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    path.write_text("logcheck: rules\nlogcheck_level: paranoid\n")
    config = load_config(path)
    assert config.logcheck == str(tmp_path / "rules") and config.logcheck_level == "paranoid"
    path.write_text("logcheck: /etc/logcheck\nlogcheck_level: strict\n")
    with pytest.raises(ConfigError, match="logcheck_level"):
        load_config(path)


def test_since_and_until_count_only_the_unexplained_lines_inside(tmp_path: Path) -> None:
    root = rule_dir(tmp_path / "rules", {"ignore.d.server/x": "CRON\n"})
    log = tmp_path / "syslog"
    log.write_text("".join(f"Mar  1 10:{m:02d}:00 web1 app[1]: line {m}\n" for m in range(10)))
    found, _ = _scan(
        "--no-builtin-rules",
        "--logcheck",
        str(root),
        "--tz",
        "UTC",
        "--year",
        "2024",
        "--since",
        "2024-03-01T10:03:00Z",
        "--until",
        "2024-03-01T10:07:00Z",
        str(log),
    )
    assert [(f["count"], f["message"]) for f in found] == [(4, "line 3")]
    assert found[0]["last_seen"].endswith("10:06:00+00:00")


#: lines for the bulk fold: envelopes that fit, nearly fit and do not, in both formats
FOLD_LINES = [
    "Mar  1 10:00:00 web1 app[1]: one",
    "Mar  1 10:00:01 web1 app: no pid",
    "Mar  1 10:00:02 web1 app[12345678901]: pid too long",
    "Mar  1 10:00:03 web1 app[]: empty pid",
    "Mar  1 10:00:04 web1 sshd(pam_unix)[9]: parentheses",
    "Mar  1 10:00:05 web1 app[2]:no space",
    "Mar  1 10:00:06 web1 app[3]: message repeated 2 times: [ one]",
    "Mar  1 10:00:07 web1 app[3]:  \tmessage repeated 2 times: [ one]",
    "Mar  1 10:00:08 web1 app[3]: says message repeated elsewhere",
    "Mar  1 10:59:59 web1 app[4]: last of the hour",
    "Mar  1 11:00:00 web1 app[5]: next hour",
    "Mar 11 10:00:00 web1 app[5]: another day",
    "Mar  1 10:00:09 web2 app[6]: other host",
    "Mar  1 10:00:10 web1 ap[7]: shorter program",
    "Mar  1 10:00:11 web1 appx[7]: longer program",
    "Mar  1 10:00:12 -web app[8]: host may not start with -",
    "Mar  1 10:00:13 web1 .app[8]: program may not start with .",
    "Mar  1 10:00:14 web1 app[8] : space before colon",
    "Xyz  1 10:00:15 web1 app[9]: no month",
    "Mar  1 10:0:16 web1 app[9]: short minutes",
    "Mar  1 10:00:17 web1 \xe4pp[9]: not ASCII",
    "Mar  1 10:00:18 web1 app[9]: caf\xe9 \x00 after the envelope",
    "Mar  1 10:00:19 " + "h" * 300 + " app[9]: long host",
    "Mar  1 10:00:20 web1 " + "p" * 300 + "[9]: long program",
    "Mar  1 10:00:21 web1",
    "Mar  1",
    "",
    "2024-03-01T10:00:00.000001+01:00 web1 app[1]: rfc one",
    "2024-03-01T10:30:00.123456+01:00 web1 app: rfc two",
    "2024-03-01T10:30:00.123456Z web1 app[1]: rfc utc",
    "2024-03-01T10:30:00.123456Z w a: shortest",
    "2024-03-01T10:30:00.123456-05:00 web1 app[1]: rfc other zone",
    "2024-03-01T11:30:00.123456+01:00 web1 app[1]: rfc next hour",
    "2024-03-01T10:30:00.12345+01:00 web1 app[1]: rfc short fraction",
    "2024-03-01T10:30:00.123456+0100 web1 app[1]: rfc zone without colon",
]


def _fast_key(fmt: str, line: str) -> tuple[str, ...] | None:
    """What the fast path reads of the hour, zone, host and program (None: it does not
    take the line, or the line is an rsyslog repeat, which the grammar unwraps)."""
    from pipeline.grammars.fastpath import RFC3339_LINE, SYSLOG_LINE

    m = (SYSLOG_LINE if fmt == "syslog" else RFC3339_LINE).match(line)
    if m is None or "message repeated " in line:
        return None
    if fmt == "syslog":
        return (m["mon"], m["day"], m["hh"], m["host"], m["prog"])
    return (m["date"], m["hh"], m["zone"], m["host"], m["prog"])


@pytest.mark.parametrize("fmt", ["syslog", "rfc3339"])
def test_bulk_fold_groups_lines_as_the_fast_path_reads_them(fmt: str) -> None:
    lines = FOLD_LINES * 3  # every group has more than one line
    data = "\n".join(lines).encode("utf-8", "surrogateescape") + b"\n"
    nl = newline_offsets(data)
    # every line but a few is unexplained (the fold only looks at those it is given)
    wanted = np.array([i for i in range(len(lines)) if i % 7 != 3], dtype=np.int64)
    fold = lc.fold_lines(data, nl, wanted, fmt)
    singles = set(fold.singles.tolist())
    bulk = [int(i) for i in wanted if int(i) not in singles]
    keys = {i: _fast_key(fmt, lines[i]) for i in wanted.tolist()}
    # a line is read in bulk exactly when the fast path takes it (the long host and program
    # aside: the end of a program more than 256 bytes on is not looked for)
    long = {i for i in keys if "h" * 300 in lines[i] or "p" * 300 in lines[i]}
    assert {i for i in bulk} == {i for i, k in keys.items() if k is not None} - long
    assert not set(bulk) & singles and set(bulk) | singles == set(wanted.tolist())
    # one group per key: its first line and, for more, its last weighing the rest
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in bulk:
        key = keys[i]
        assert key is not None
        groups.setdefault(key, []).append(i)
    assert sorted(fold.firsts.tolist()) == sorted(g[0] for g in groups.values())
    expect_lasts = {g[-1]: len(g) - 1 for g in groups.values() if len(g) > 1}
    assert dict(zip(fold.lasts.tolist(), fold.weights.tolist(), strict=True)) == expect_lasts


def _program_ends_by_arrow(data: bytes, starts: np.ndarray, at: int) -> np.ndarray:
    """The program ends as the bulk fold first read them: each line an element of a binary
    array running on to the next line's start, searched with Arrow's string kernels."""
    pa = pytest.importorskip("pyarrow")
    pc = pytest.importorskip("pyarrow.compute")
    arr = lc._binary(data, np.append(starts, len(data)))
    part = pc.binary_slice(arr, at, at + lc._SEARCH)
    found = [lc._ints(pc.find_substring(part, sep)) for sep in ("[", ":")]
    assert isinstance(arr, pa.Array)
    big = np.iinfo(np.int64).max
    first = np.minimum(*(np.where(f < 0, big, f) for f in found))
    return np.where(first == big, -1, first + at)


def test_program_ends_read_in_windows_are_those_arrow_finds() -> None:
    at = 17
    lines = [
        b"Mar  1 10:00:00 web1 app[1]: x",
        b"Mar  1 10:00:00 web1 app: x",
        b"Mar  1 10:00:00 web1 sshd(pam_unix)[9]: x",
        # the end at each distance around the windows' edges and the search's limit
        *(b"Mar  1 10:00:00 w " + b"p" * n + b": x" for n in (12, 13, 14, 45, 46, 237, 238, 239)),
        b"Mar  1 10:00:00 w " + b"p" * 300 + b": too far",
        b"Mar  1 10:00:00 web1 no colon or bracket at all in this line",
        b"Mar  1 10:00:00 web1 app[1]: \xff\xfe odd bytes",
    ]
    for tail in (b"", b"\n", b"Mar  1 10:00:00 w p" * 3):
        # the last lines are near the data's end (read one by one)
        data = b"\n".join(lines) + b"\n" + tail + b"Mar  1 10:00:00 web1 last[2]: x"
        arr = np.frombuffer(data, np.uint8)
        starts = np.concatenate(([0], np.flatnonzero(arr == 10) + 1)).astype(np.int64)
        # the lines the fold asks about: those the envelope fits (the end is in the line)
        envelope = re.compile(lc._FOLD_HEADS["syslog"].regex.encode())
        ok = np.array([envelope.match(line) is not None for line in data.split(b"\n")])
        assert ok.sum() >= 12
        got = lc._program_ends(data, starts, at, ok)
        want = _program_ends_by_arrow(data, starts, at)
        assert got[ok].tolist() == want[ok].tolist() and (got[~ok] == -1).all()
        assert sorted(set(got[ok].tolist()))[:2] == [-1, 24]  # some too far, some found


def test_bulk_fold_of_odd_bytes_never_fails() -> None:
    data = (
        b"Mar  1 10:00:00 web1 app[1]: \xff\xfe bad UTF-8\n"
        b"\x00\x00\x00\n"
        b"Mar  1 10:00:00 web1 app[1]: " + b"x" * 100_000 + b"\n"
        b"Mar  1 10:00:01 web1 app[1]: no newline at the end"
    )
    nl = newline_offsets(data)
    fold = lc.fold_lines(data, nl, np.arange(4, dtype=np.int64), "syslog")
    assert fold.firsts.tolist() == [0] and fold.singles.tolist() == [1]
    assert fold.lasts.tolist() == [3] and fold.weights.tolist() == [2]


def test_translations_come_from_the_cache_the_same_and_a_bad_cache_is_ignored(
    tmp_path: Path,
) -> None:
    root = rule_dir(
        tmp_path / "rules",
        {
            "ignore.d.server/x": "(broken\n^[[:alpha:]]+ ok$\n(a)\\1\n",
            "ignore.d.server/a.b": "x\n",
            "cracking.d/kernel": "kernel: evil\n",
        },
    )
    fresh = LogcheckSet.load(str(root), "server")
    cached = list((tmp_path / "cache").glob("logcheck-ere-*.pickle"))
    assert len(cached) == 1
    again = LogcheckSet.load(str(root), "server")
    assert again.patterns == fresh.patterns and again.problems == fresh.problems
    assert [p.kind for p in fresh.problems] == ["logcheck-skipped", "logcheck-pattern"]
    cached[0].write_bytes(b"not a pickle")
    assert LogcheckSet.load(str(root), "server").patterns == fresh.patterns
    cached[0].write_bytes(pickle.dumps({b"x": ("wrong", "shape")}))
    assert LogcheckSet.load(str(root), "server").patterns == fresh.patterns


def test_the_fold_is_the_same_however_chunks_and_workers_cut_the_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's count, times and examples (its first and last line) do not depend on
    where chunks or worker parts cut it: small chunks, workers and the line path (every
    unexplained line an event, as --since makes it) give the same JSON lines."""
    import io
    from dataclasses import replace
    from datetime import UTC, datetime
    from functools import partial

    from pipeline import engine as engine_module
    from pipeline.cli import write_findings
    from pipeline.engine import Engine, ScanOptions
    from pipeline.parallel import ProcessRunner
    from pipeline.sources.files import iter_chunks

    root = rule_dir(tmp_path / "rules", RULES)
    log = tmp_path / "syslog"
    lines = [  # in time order, three seconds apart: over three hours
        f"Mar  1 {10 + i * 3 // 3600:02d}:{i * 3 // 60 % 60:02d}:{i * 3 % 60:02d} web{i % 3} "
        f"{('app', 'db', 'CRON')[i % 7 % 3]}[{i}]: event {i}"
        for i in range(4000)
    ]
    log.write_text("\n".join(lines) + "\n")

    def jsonl(options: ScanOptions, runner: Any = None) -> str:
        engine = Engine([], options, logcheck=LogcheckMatcher(LogcheckSet.load(str(root))))
        result = engine.scan([str(log)], runner=runner)
        out = io.StringIO()
        write_findings(sorted(result.findings, key=lambda f: (f.timestamp, f.line)), "jsonl", out)
        return out.getvalue()

    base = ScanOptions(tz=UTC)
    whole = jsonl(base)
    found = [json.loads(x) for x in whole.splitlines()]
    assert len(found) > 10 and max(f["count"] for f in found) > 100
    assert all(len(f["related"]) == min(2, f["count"]) for f in found)
    assert jsonl(replace(base, since=datetime(2000, 1, 1, tzinfo=UTC))) == whole
    assert jsonl(base, ProcessRunner(2, part_size=8192)) == whole
    monkeypatch.setattr(engine_module, "iter_chunks", partial(iter_chunks, chunk_size=3000))
    assert jsonl(base) == whole
