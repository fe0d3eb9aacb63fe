"""Benchmark ``logwarden scan --logcheck`` with a whole logcheck level on the bench file.

usage: .venv/bin/python bench/logcheck.py [--lines N] [--level server] [--dir /etc/logcheck]

Every line is judged (logcheck's model is "report what no ignore pattern explains"), so
every line is a candidate. One untimed run fills the compiled-pattern cache and checks the
answer (the folded findings stand for some, but not more than all, of the lines); then one
timed run per worker count. The result replaces the section
between the logcheck markers of ``bench/results.md`` (``bench/run.py`` keeps that section
when it rewrites the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import run

BEGIN = "<!-- logcheck bench: begin -->"
END = "<!-- logcheck bench: end -->"


def scan_command(plain: Path, rules: str, level: str, out: str, extra: list[str]) -> list[str]:
    return [
        run.python_command(),
        "-m",
        "pipeline.cli",
        "scan",
        run.rel(plain),
        "--no-builtin-rules",
        "--logcheck",
        rules,
        "--logcheck-level",
        level,
        *extra,
        "--format",
        "jsonl",
        "-o",
        out,
        "-q",
    ]


def check(out: Path) -> tuple[int, int]:
    """(lines the unexplained findings stand for, findings)"""
    findings = [json.loads(ln) for ln in out.read_text(encoding="utf-8").splitlines()]
    lines = sum(f["count"] for f in findings if f["rule"] == "logcheck.unexplained")
    return lines, len(findings)


def section(rows: list[tuple[str, str, float, int]], lines: int, level: str, info: str) -> str:
    out = [
        BEGIN,
        "## logcheck rules (`scan --logcheck`)",
        "",
        f"Written by `bench/logcheck.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, one timed "
        f"run each after an untimed one, on the machine above: {info}. The machine was shared "
        "with other jobs during the run (its load average is given), so the times are upper "
        "bounds.",
        "",
        f"The whole `{level}` level of Debian's `logcheck-database` from `/etc/logcheck`, on "
        f"`bench/out/syslog-1m.log` ({lines:,} lines; every line is judged).",
        "",
        "| run | command | wall s | lines/s | peak RSS MB |",
        "|---|---|---:|---:|---:|",
    ]
    for name, cmd, seconds, rss in rows:
        out.append(
            f"| {name} | `{cmd}` | {seconds:.2f} | {lines / seconds:,.0f} | {rss / 1024:.0f} |"
        )
    out.append(END)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--level", default="server")
    ap.add_argument("--dir", default="/etc/logcheck")
    ap.add_argument("--shared", type=Path, default=run.DEFAULT_SHARED)
    ap.add_argument("--out", type=Path, default=run.BENCH / "results.md")
    args = ap.parse_args(argv)
    if not Path(args.dir, f"ignore.d.{args.level}").is_dir():
        print(f"bench: {args.dir} has no ignore.d.{args.level} (apt install logcheck-database)")
        return 2
    plain, _, _ = run.ensure_input(args.shared.resolve(), args.lines)
    rows = []
    with tempfile.TemporaryDirectory(dir=run.OUT_DIR) as tmp:
        out = Path(tmp) / "findings.jsonl"
        warm = run.measure(scan_command(plain, args.dir, args.level, str(out), []))
        if warm.returncode != 0:
            print(f"bench: the scan failed:\n{warm.stderr}", file=sys.stderr)
            return 1
        folded, findings = check(out)
        if not folded or folded > args.lines:
            print(f"bench: WRONG ANSWER: unexplained lines {folded}", file=sys.stderr)
            return 1
        for name, extra in (("one process", []), ("--workers 2", ["-j", "2"])):
            cmd = scan_command(plain, args.dir, args.level, "/dev/null", extra)
            sample = run.measure(cmd)
            if sample.returncode != 0:
                print(f"bench: {name} failed:\n{sample.stderr}", file=sys.stderr)
                return 1
            rows.append((name, " ".join(cmd), sample.seconds, sample.max_rss_kb))
    with open("/proc/loadavg", encoding="ascii") as f:
        load = " ".join(f.read().split()[:3])
    info = f"{findings:,} findings for {folded:,} unexplained lines; load average {load}"
    text = section(rows, args.lines, args.level, info)
    report = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    if BEGIN in report and END in report:
        head, rest = report.split(BEGIN, 1)
        report = head + text + rest.split(END, 1)[1]
    else:
        report = report.rstrip("\n") + "\n\n" + text + "\n"
    args.out.write_text(report, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
