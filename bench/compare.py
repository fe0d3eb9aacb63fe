"""Two checkouts of logwarden side by side: the same scans, alternating old and new.

    .venv/bin/python bench/compare.py --base /path/to/old-checkout [--runs 5]

Each round runs every case once with the base checkout's code and once with this one's
(``python -m pipeline.cli`` from each checkout's root, this virtualenv's interpreter), so a
machine whose load drifts hurts both alike. Prints, per case, the median CPU seconds
(user + system of the child) and wall seconds of each, and the ratio new / old. The inputs
are the ones ``bench/run.py`` makes (``bench/out/syslog-1m.log`` and its ``.gz``) and the 30
peer rules of ``bench/peers.py``. Before timing, each case runs once more with each
checkout, writing its findings as JSON lines, and the two outputs are compared: the sets
of finding keys, and the lines themselves (byte for byte). A harness, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"


def run(checkout: Path, args: list[str]) -> tuple[float, float]:
    """(CPU s, wall s) of one scan with ``checkout``'s code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scan", *args, "--format", "jsonl", "-q"],
        cwd=checkout,
        stdout=subprocess.DEVNULL,
        check=True,
        env={**os.environ, "PYTHONPATH": str(checkout)},
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def findings_of(checkout: Path, args: list[str], out: Path) -> tuple[set[str], bytes]:
    """The keys of the findings one scan with ``checkout``'s code writes, and its output."""
    cmd = [sys.executable, "-m", "pipeline.cli", "scan", *args, "--format", "jsonl", "-q"]
    subprocess.run(
        [*cmd, "-o", str(out)],
        cwd=checkout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(checkout)},
    )
    data = out.read_bytes()
    return {json.loads(line)["key"] for line in data.splitlines()}, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the other checkout's root")
    ap.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    opts = ap.parse_args()
    plain = OUT / "syslog-1m.log"
    if not plain.exists():
        print(f"{plain} is missing: run bench/run.py once first", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO / "bench"))
    import peers

    rules = OUT / "peers" / "rules-30"
    peers.write_rules(rules, 30)
    cases = {
        "plain, built-in rules": [str(plain)],
        ".gz, built-in rules": [str(plain) + ".gz"],
        "plain, 30 peer rules": [str(plain), "--no-builtin-rules", "--rules", str(rules)],
    }
    same = True
    for name, args in cases.items():
        old_keys, old_out = findings_of(opts.base.resolve(), args, OUT / "compare-old.jsonl")
        new_keys, new_out = findings_of(REPO, args, OUT / "compare-new.jsonl")
        verdict = "the same" if old_out == new_out else "DIFFERENT"
        same &= old_out == new_out
        print(
            f"{name}: {len(old_keys):,} and {len(new_keys):,} finding keys, "
            f"{len(old_keys & new_keys):,} in both; the output is {verdict}",
            file=sys.stderr,
        )
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(opts.runs):
        for name, args in cases.items():
            for who, checkout in (("old", opts.base.resolve()), ("new", REPO)):
                times.setdefault((name, who), []).append(run(checkout, args))
    print("| case | old CPU s | new CPU s | old wall s | new wall s | new / old (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in cases:
        old, new = times[(name, "old")], times[(name, "new")]
        oc, nc = (statistics.median(c for c, _ in t) for t in (old, new))
        ow, nw = (statistics.median(w for _, w in t) for t in (old, new))
        print(f"| {name} | {oc:.2f} | {nc:.2f} | {ow:.2f} | {nw:.2f} | {nc / oc:.3f} |")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
