"""fail2ban's sshd filter on the bench file: ``logwarden scan --fail2ban-filter sshd`` against
``fail2ban-regex`` with the same filter (Debian's ``/etc/fail2ban/filter.d/sshd.conf``).

usage: python bench/fail2ban.py [--lines N] [--runs R] [--shared DIR] [--filter SPEC]

With ``--runs R`` each command runs R times, one after the other, and the report gives the
medians (and the spread).

Both must find the same number of failure lines (fail2ban-regex's ``matched`` of its
``Lines:`` summary, logwarden's findings of ``f2b-filter-sshd``, one per failure line); the
report gives the times and the ratio as a Markdown table on standard output. The input is
``bench/out/syslog-N.log`` from ``../shared/bench/gen_syslog.py``, generated when missing.
Exit status: 0 fine, 1 the counts differ, 2 something needed is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.imports.fail2ban import Fail2banFilter, load_filter  # noqa: E402

OUT_DIR = REPO / "bench" / "out"


def ensure_input(shared: Path, lines: int) -> Path:
    target = OUT_DIR / ("syslog-1m.log" if lines == 1_000_000 else f"syslog-{lines}.log")
    if target.exists():
        with target.open("rb") as f:
            if sum(1 for _ in f) == lines:
                return target
    gen = shared / "bench" / "gen_syslog.py"
    if not gen.exists():
        sys.exit(f"{gen} is missing (it sits beside a development checkout; see --shared)")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(gen), "--lines", str(lines), "--out", str(target)], check=True
    )
    return target


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    # in the checkout, so that its own code runs (not an installed copy)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    took = time.perf_counter() - start
    if res.returncode not in (0, 1):
        sys.exit(f"{cmd[0]} failed ({res.returncode}): {res.stderr[-2000:]}")
    return took, res.stdout + res.stderr


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--filter", default="sshd")
    args = ap.parse_args()
    f2b = shutil.which("fail2ban-regex")
    if f2b is None:
        print("fail2ban-regex is not installed (apt-get install fail2ban)", file=sys.stderr)
        return 2
    target = ensure_input(args.shared, args.lines)
    name = args.filter.split("[")[0]
    findings = OUT_DIR / "fail2ban-findings.jsonl"
    ours = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "scan",
        str(target),
        "--no-builtin-rules",
        "--fail2ban-filter",
        args.filter,
        "--format",
        "jsonl",
        "-o",
        str(findings),
        "-q",
    ]
    theirs = [f2b, "--print-all-matched", str(target), f"/etc/fail2ban/filter.d/{name}.conf"]
    runs_ours = [timed(ours)[0] for _ in range(args.runs)]
    t_ours = statistics.median(runs_ours)
    lines = target.read_text(encoding="utf-8", errors="replace").splitlines()
    mine = set()
    for raw in findings.open(encoding="utf-8"):
        mine.add(lines[int(json.loads(raw)["source"].rsplit(":", 1)[1]) - 1])
    runs_theirs = []
    text = ""
    for _ in range(args.runs):
        took, text = timed(theirs)
        runs_theirs.append(took)
    t_theirs = statistics.median(runs_theirs)
    m = re.search(r"Lines: \d+ lines, \d+ ignored, (\d+) matched", text)
    n_theirs = int(m.group(1)) if m else None
    matched = {
        ln[3:] for ln in text.splitlines() if ln.startswith("|  ") and not ln.startswith("|  ", 1)
    }
    matched = {ln for ln in matched if not re.match(r"^ *\d+\) \[\d+\]", ln)}
    extra = sorted(mine - matched)
    missing = sorted(matched - mine)
    # fail2ban-regex also counts lines a failregex matched without a failure id (a multi-line
    # id still waiting for its address): logwarden reports failures, which need one
    flt = load_filter("/etc/fail2ban", args.filter)
    no_id = [ln for ln in missing if not _has_id(flt, ln)]
    rel = str(target.relative_to(REPO))
    print("| tool | command | seconds | failure lines |\n|---|---|---:|---:|")
    print(
        f"| logwarden scan | `logwarden scan {rel} --no-builtin-rules --fail2ban-filter "
        f"{args.filter} --format jsonl -o ... -q` | {t_ours:.2f} | {len(mine):,} |"
    )
    print(
        f"| fail2ban-regex | `fail2ban-regex --print-all-matched {rel} "
        f"/etc/fail2ban/filter.d/{name}.conf` | {t_theirs:.2f} | {n_theirs} |"
    )
    spread = (
        f" Seconds are medians of {args.runs} runs (logwarden {min(runs_ours):.2f}–"
        f"{max(runs_ours):.2f}, fail2ban-regex {min(runs_theirs):.2f}–{max(runs_theirs):.2f})."
        if args.runs > 1
        else ""
    )
    print(
        f"\n{args.lines:,} lines; logwarden is {t_theirs / t_ours:.1f}x fail2ban-regex.{spread} "
        f"Lines only fail2ban-regex matched: {len(missing)} ({len(no_id)} of them without a "
        f"failure id); only logwarden: {len(extra)}."
    )
    for ln in [*extra, *(x for x in missing if x not in no_id)][:20]:
        print(f"    differs: {ln}")
    return 0 if not extra and len(missing) == len(no_id) else 1


def _has_id(flt: Fail2banFilter, line: str) -> bool:
    """Whether one of the filter's failregexes matches ``line`` with a failure id group."""
    flt.reset()
    tup, _ = flt.split_date(line)
    buf = tup[0] + tup[2] + "\n"
    data = buf.encode()
    if flt.prefregex is not None:
        got = flt.prefregex.find(buf, data)
        if got is None:
            return False
        buf = got[0].get("content", buf[:-1]) + "\n"
        data = buf.encode()
    for p in flt.failregex:
        found = p.find(buf, data)
        if found and any(k in found[0] for k in ("ip4", "ip6", "dns", "fid")):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
