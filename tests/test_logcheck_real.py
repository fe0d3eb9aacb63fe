"""logwarden's logcheck verdicts against Debian's own ``logcheck`` on the same files.

The real ``logcheck`` (package ``logcheck``) runs in its test mode (``-t -o``: no offsets
kept, the report on stdout) with the real ``logcheck-database`` rules of ``/etc/logcheck``,
for each level, on the samples, the loghub corpus and a 20,000-line slice of the benchmark
file; logwarden's matcher reads the same files through the engine's chunker. The lines each
reports as unexplained ("System Events") must be the same lines, as many times each; the
attack alerts and security events the same sets. Lines starting with ``#`` and blank lines
are left out of both sides: logwarden does not judge them (see docs/rules.md).

logcheck refuses to run as root, so as root it runs as the ``logcheck`` user (``runuser``);
its configuration, lock, state and temporary directories are a temporary directory's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.detection.prefilter import newline_offsets
from pipeline.imports.logcheck import LEVELS, LogcheckMatcher, LogcheckSet
from pipeline.sources.files import expand_inputs, iter_chunks, open_input
from tests.conftest import IN_CI, SAMPLES, bench_lines, require_program, shared_path

pytestmark = [pytest.mark.real, pytest.mark.corpus]

RULE_DIR = Path("/etc/logcheck")
_SPACE = b" \t\v\f\r"


@dataclass
class Verdicts:
    unexplained: Counter[bytes]
    cracking: set[bytes]
    violations: set[bytes]


def _judged(line: bytes) -> bool:
    return bool(line) and not line.startswith(b"#")


def _database() -> None:
    if not (RULE_DIR / "ignore.d.server").is_dir():
        message = "logcheck-database is not installed (make test installs it: APT_PACKAGES)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def parse_report(report: bytes) -> Verdicts:
    """The sections of a logcheck report (``INTRO=0``): each header is followed by a line
    of alternating ``=-`` as long as the header."""
    lines = report.split(b"\n")
    sections: list[tuple[bytes, list[bytes]]] = []
    i = 0
    while i < len(lines):
        head = lines[i]
        under = (b"=-" * len(head))[: len(head)]
        if head and i + 1 < len(lines) and lines[i + 1] == under:
            sections.append((head, []))
            i += 2
            continue
        if sections:
            sections[-1][1].append(head)
        elif head:
            raise AssertionError(f"text before the first section of the report: {head!r}")
        i += 1
    out = Verdicts(Counter(), set(), set())
    for head, body in sections:
        judged = [ln for ln in body if _judged(ln)]
        if head == b"System Events":
            out.unexplained.update(judged)
        elif head.startswith(b"Security Alerts"):
            out.cracking.update(judged)
        elif head.startswith(b"Security Events"):
            out.violations.update(judged)
        else:
            raise AssertionError(f"unexpected report section {head!r}: {body[:3]!r}")
    return out


def run_logcheck(files: list[Path], level: str, work: Path, rules: Path = RULE_DIR) -> Verdicts:
    """Debian's logcheck in test mode on ``files`` (copied where its user can read them)."""
    logcheck = require_program("logcheck", "/usr/sbin/logcheck")
    _database()
    work.mkdir(exist_ok=True)
    logs = work / "logs"
    logs.mkdir()
    listed = []
    for n, f in enumerate(files):
        copy = logs / f"{n}-{f.name}"
        shutil.copyfile(f, copy)
        listed.append(str(copy))
    (work / "logfiles").write_text("\n".join(listed) + "\n")
    (work / "logfiles.d").mkdir()
    (work / "state").mkdir()
    (work / "tmp").mkdir()
    conf = work / "logcheck.conf"
    conf.write_text(
        f'REPORTLEVEL="{level}"\nINTRO=0\nSORTUNIQ=0\nSYSLOGSUMMARY=0\n'
        f'TMP="{work / "tmp"}"\nLOCKDIR="{work / "lock"}"\nLOCKFILE="{work / "lock"}/logcheck"\n'
    )
    cmd = [
        logcheck,
        "-c",
        str(conf),
        "-r",
        str(rules),
        "-L",
        str(work / "logfiles"),
        "-D",
        str(work / "logfiles.d"),
        "-S",
        str(work / "state"),
        "-o",
        "-t",
    ]
    if os.geteuid() == 0:
        runuser = require_program("runuser")
        subprocess.run(["chown", "-R", "logcheck:", str(work)], check=True)
        os.chmod(work, 0o755)
        for parent in work.parents:  # the logcheck user must reach the directory
            if parent == Path(parent.anchor):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
        cmd = [runuser, "-u", "logcheck", "--", *cmd]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": str(work)}
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout.decode(errors="replace") + proc.stderr.decode(
        errors="replace"
    )
    return parse_report(proc.stdout)


def logwarden_verdicts(matcher: LogcheckMatcher, files: list[Path]) -> Verdicts:
    """logwarden's verdicts on the lines of ``files``, read in the engine's chunks."""
    out = Verdicts(Counter(), set(), set())
    problems: list[object] = []
    for inp in expand_inputs([str(f) for f in files], problems):
        with open_input(inp) as stream:
            for chunk in iter_chunks(stream, inp.display, problems.append):
                data = chunk.data
                lines = [ln.rstrip(_SPACE) for ln in data.split(b"\n")]
                v = matcher.classify(data, newline_offsets(data))
                out.unexplained.update(
                    lines[i] for i in v.unexplained.tolist() if _judged(lines[i])
                )
                out.cracking.update(lines[i] for i in v.cracking.tolist())
                out.violations.update(lines[i] for i in v.violations.tolist())
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The samples (plain-text logs), the loghub corpus and 20,000 bench lines."""
    loghub = shared_path("corpus", "loghub")
    bench = bench_lines(tmp_path_factory.mktemp("bench") / "syslog-20k.log", 20000, loghub=True)
    samples = sorted(
        p for p in SAMPLES.rglob("*") if p.is_file() and not p.name.endswith((".gz", ".yaml"))
    )
    corpus = sorted(loghub.glob("*/*_2k.log"))
    assert samples and len(corpus) >= 5
    return [*samples, *corpus, bench]


def _differences(name: str, ours: Counter[bytes], theirs: Counter[bytes]) -> str:
    only_ours = ours - theirs
    only_theirs = theirs - ours
    shown = [
        f"{name}: {sum(only_ours.values())} only logwarden's, "
        f"{sum(only_theirs.values())} only logcheck's"
    ]
    shown += [f"  logwarden only: {ln!r}" for ln in list(only_ours)[:15]]
    shown += [f"  logcheck only:  {ln!r}" for ln in list(only_theirs)[:15]]
    return "\n".join(shown)


@pytest.mark.parametrize("level", LEVELS)
def test_unexplained_lines_equal_debian_logcheck(
    level: str, inputs: list[Path], tmp_path: Path
) -> None:
    theirs = run_logcheck(inputs, level, tmp_path / "logcheck")
    matcher = LogcheckMatcher(LogcheckSet.load(str(RULE_DIR), level))
    assert matcher.problems == []
    ours = logwarden_verdicts(matcher, inputs)
    assert sum(theirs.unexplained.values()) > 1000  # the comparison has substance
    assert ours.unexplained == theirs.unexplained, _differences(
        "unexplained", ours.unexplained, theirs.unexplained
    )
    assert ours.cracking == theirs.cracking, _differences(
        "cracking", Counter(ours.cracking), Counter(theirs.cracking)
    )
    assert ours.violations == theirs.violations, _differences(
        "violations", Counter(ours.violations), Counter(theirs.violations)
    )


def test_per_file_rules_equal_debian_logcheck(tmp_path: Path) -> None:
    """violations.ignore.d per file (F, logcheck-F), the ``logcheck`` files, cracking
    before violations before ignore, and the levels, on a rule directory of their own."""
    from tests.test_logcheck import LOG, RULES, rule_dir

    work = tmp_path / "work"
    work.mkdir()
    rules = rule_dir(work / "rules", RULES)
    log = work / "syslog"
    log.write_text("\n".join(LOG) + "\n")
    for level in LEVELS:
        theirs = run_logcheck([log], level, work / level, rules)
        ours = logwarden_verdicts(LogcheckMatcher(LogcheckSet.load(str(rules), level)), [log])
        assert ours.unexplained == theirs.unexplained, (level, ours, theirs)
        assert ours.cracking == theirs.cracking, (level, ours, theirs)
        assert ours.violations == theirs.violations, (level, ours, theirs)
        assert theirs.cracking and theirs.violations and theirs.unexplained


def test_scan_findings_count_every_unexplained_line(inputs: list[Path]) -> None:
    """The folded findings of a scan add up to the lines the matcher calls unexplained
    (rsyslog's ``message repeated N times`` lines weigh N), per host and program."""
    import re

    from pipeline.engine import Engine, ScanOptions
    from pipeline.timeinfer import local_zone

    _database()
    matcher = LogcheckMatcher(LogcheckSet.load(str(RULE_DIR), "server"))
    lines = logwarden_verdicts(matcher, inputs).unexplained
    repeated = re.compile(rb"message repeated ([0-9]+) times: \[")
    expected = sum(
        n * (int(m.group(1)) if (m := repeated.search(ln)) else 1) for ln, n in lines.items()
    )
    result = Engine([], ScanOptions(tz=local_zone()), logcheck=matcher).scan(
        [str(p) for p in inputs]
    )
    folded = [f for f in result.findings if f.rule == "logcheck.unexplained"]
    assert sum(f.count for f in folded) == expected
    assert len(folded) < sum(lines.values()) / 10  # folded, not one finding per line
    keys = [(f.host, f.program, f.fields["logcheck_hour"], f.source) for f in folded]
    assert len(keys) == len(set(keys))
