"""How fast ``pipeline.read_events`` turns the benchmark file into a DataFrame.

Runs in-process (no start-up counted): the whole file into one frame, the same in batches
of 100 000 rows, and the ``.gz``; prints lines/s of the median of ``--runs`` runs and the
peak RSS of this process. Needs ``bench/out/syslog-1m.log`` (``make bench`` generates it).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.analysis import read_events

OUT = Path(__file__).resolve().parent / "out"


def timed(fn: Callable[[], int], runs: int) -> tuple[int, float]:
    times, rows = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - start)
    return rows, statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--file", type=Path, default=OUT / "syslog-1m.log")
    args = ap.parse_args()
    if not args.file.exists():
        print(f"{args.file} is missing: run `make bench` once to generate it", file=sys.stderr)
        return 2
    cases: list[tuple[str, Callable[[], int]]] = [
        ("one frame", lambda: len(read_events(args.file, tz="UTC"))),
        (
            "batches of 100k",
            lambda: sum(len(b) for b in read_events(args.file, tz="UTC", batch_size=100_000)),
        ),
    ]
    gz = args.file.with_name(args.file.name + ".gz")
    if gz.exists():
        cases.append((".gz, one frame", lambda: len(read_events(gz, tz="UTC"))))
    print("| read_events | rows | seconds (median) | lines/s |\n|---|---:|---:|---:|")
    for name, fn in cases:
        rows, secs = timed(fn, args.runs)
        print(f"| {name} | {rows:,} | {secs:.2f} | {rows / secs:,.0f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the process: {peak:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
