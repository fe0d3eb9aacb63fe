"""Where a scan's time goes: the phases of one ``logwarden scan``, timed in-process.

usage: .venv/bin/python bench/phases.py FILE [--rules DIR --no-builtin-rules]
       [--fail2ban-filter NAME] [--json]

Runs each phase on its own (parsing: by difference), in the order a scan runs them, and
prints seconds per phase: start-up (imports, rule loading), reading (decompression
included), the prefilter (newline offsets and the literal search), parsing the candidates
into events, line-rule matching, the stateful rest of detection, and writing the findings
as JSON lines. For worker processes it also times what they add: packing a part's results,
unpickling them in the scanning process and rebuilding the events. Those phases are the
line path's (one event per candidate); ``block: ...`` times the scan as ``logwarden scan``
runs it, on the block path (lines and findings as columns). ``bench/run.py`` puts
the table in ``results.md``; the phases add up to a little more than a whole scan (each
re-reads the input).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import sys
import time
from pathlib import Path

T0 = time.perf_counter()

import pipeline.cli  # noqa: E402,F401  (start-up: what the command imports)

T1 = time.perf_counter()

from pipeline.cli import write_findings  # noqa: E402
from pipeline.detection.loader import load_rules  # noqa: E402
from pipeline.detection.prefilter import newline_offsets  # noqa: E402
from pipeline.engine import (  # noqa: E402
    Engine,
    ProblemLog,
    ScanStats,
    TimeMark,
    Unparsed,
    relaxed_gc,
)
from pipeline.sources import files  # noqa: E402
from pipeline.sources.files import expand_inputs, iter_chunks, open_input  # noqa: E402


def phases(
    path: str, rule_dirs: list[str], builtin: bool, fail2ban: tuple[str, ...] = ()
) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {"import": T1 - T0}
    t = time.perf_counter()
    rules = load_rules(rule_dirs, builtin=builtin)
    if fail2ban:
        from pipeline.imports.f2brules import fail2ban_rules

        rules = [*rules, *fail2ban_rules(None, fail2ban)]
    engine = Engine(rules)
    out["load rules"] = time.perf_counter() - t
    out["prefilter engine"] = engine.prefilter.engine
    out["gzip reader"] = "isal" if files._igzip is not None else "zlib"
    out["cores"] = len(os.sched_getaffinity(0))
    (inp,) = expand_inputs([path])
    with relaxed_gc():
        stats = ScanStats()
        log = ProblemLog(stats)
        # warm up: the page cache, and the prefilter's database (compiled on first use)
        with open_input(inp) as stream:
            for chunk in iter_chunks(stream, inp.display, log):
                engine.prefilter.candidate_lines(chunk.data, newline_offsets(chunk.data))
                break
            while stream.read(1 << 24):
                pass
        t = time.perf_counter()
        with open_input(inp) as stream:
            chunks = [c.data for c in iter_chunks(stream, inp.display, log)]
        out["read"] = time.perf_counter() - t
        t = time.perf_counter()
        candidates = 0
        for data in chunks:
            nl = newline_offsets(data)
            candidates += len(engine.prefilter.candidate_lines(data, nl))
        out["prefilter"] = time.perf_counter() - t
        out["candidates"] = candidates
        del chunks
        t = time.perf_counter()
        records = [
            r
            for r in engine.iter_input(inp, stats, log, all_lines=False)
            if not isinstance(r, Unparsed)
        ]
        whole = time.perf_counter() - t
        # derived: the whole read-prefilter-parse pass less the two phases timed alone
        out["parse"] = whole - out["read"] - out["prefilter"]  # type: ignore[operator]
        det = engine.new_detector()
        t = time.perf_counter()
        matched = [
            r if isinstance(r, TimeMark) else (r, det.match(r))
            for r in records
            if isinstance(r, TimeMark) or engine._in_range(r.timestamp)
        ]
        out["match"] = time.perf_counter() - t
        t = time.perf_counter()
        found: dict[str, object] = {}
        for rec in matched:
            if isinstance(rec, TimeMark):
                got = det.observe(rec.host, rec.timestamp)
            else:
                got = det.process(rec[0], rec[1])
            for f in got:
                found[f.key] = f
        for f in det.finish():
            found[f.key] = f
        out["detect (stateful)"] = time.perf_counter() - t
        out["findings"] = len(found)
        out["join rows"] = sum(len(t.rows) for ts in det._sources.values() for t in ts)
        t = time.perf_counter()
        findings = sorted(
            found.values(),
            key=lambda f: (f.timestamp.timestamp() if f.timestamp else 0.0, f.source, f.line),  # type: ignore[attr-defined]
        )
        write_findings(findings, "jsonl", io.StringIO())  # type: ignore[arg-type]
        out["write jsonl"] = time.perf_counter() - t
        # what worker processes add: results packed, sent, unpacked in the scanning process
        parts = engine.plan(inp, workers=2)
        results = [engine.run_part(p) for p in parts]
        t = time.perf_counter()
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results]
        out["workers: pack"] = time.perf_counter() - t
        t = time.perf_counter()
        for b in blobs:
            for _ in pickle.loads(b).iter_records(0):
                pass
        out["workers: unpack"] = time.perf_counter() - t
        out["parts"] = len(parts)
    out.update(block_phases(engine, inp.path))
    return out


#: what the block path's phases time (pipeline.block), by (class, method); with read-ahead
#: (the table path, more than one core) candidates and the envelope run on the second
#: thread: their times are that thread's, overlapping the rest of ``block: scan``
BLOCK_TIMERS = {
    "block: candidates": ("_BlockReader", "_candidates"),
    "block: envelope": ("block", "syslog_envelope"),
    "block: match": ("_BlockReader", "_hits"),
    "block: number (keys)": ("block", "base_keys"),
}


def block_phases(engine: Engine, path: str) -> dict[str, float | int | str]:
    """The scan as ``logwarden scan`` runs it (the block path, pipeline.block), whole and
    by phase: candidates, the envelope of the candidates, the line rules over the columns,
    keying the findings; then writing them. What the scan spends elsewhere (reading,
    events and detection for rules that need them) is the rest of ``block: scan``."""
    from pipeline import block

    spent: dict[str, float] = dict.fromkeys(BLOCK_TIMERS, 0.0)

    def timed(label: str, owner: object, name: str) -> None:
        inner = getattr(owner, name)

        def run(*args: object, **kwargs: object) -> object:
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t

        setattr(owner, name, run)

    saved = []
    for label, (where, name) in BLOCK_TIMERS.items():
        owner = block if where == "block" else getattr(block, where)
        saved.append((owner, name, getattr(owner, name)))
        timed(label, owner, name)
    try:
        t = time.perf_counter()
        result = engine.scan([path])
        out: dict[str, float | int | str] = {"block: scan": time.perf_counter() - t}
        out.update(spent)
        t = time.perf_counter()
        view = getattr(result.findings, "sorted_view", None)
        findings = (
            view()
            if view is not None
            else sorted(
                result.findings,
                key=lambda f: (f.timestamp.timestamp() if f.timestamp else 0.0, f.source, f.line),
            )
        )
        write_findings(findings, "jsonl", io.StringIO())
        out["block: write jsonl"] = time.perf_counter() - t
        out["block: findings as"] = "columns" if view is not None else "objects"
    finally:
        for owner, name, inner in saved:
            setattr(owner, name, inner)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("path")
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--no-builtin-rules", action="store_true")
    ap.add_argument(
        "--fail2ban-filter", action="append", default=[], help="as scan's (/etc/fail2ban)"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if not Path(args.path).is_file():
        ap.error(f"{args.path} is not a file")
    got = phases(args.path, args.rules, not args.no_builtin_rules, tuple(args.fail2ban_filter))
    if args.json:
        print(json.dumps(got))
    else:
        for k, v in got.items():
            print(f"{k:>20}: {v:.3f}" if isinstance(v, float) else f"{k:>20}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
