"""Latency and sustained ingest rate of ``logwarden watch`` behind a real rsyslogd.

usage: .venv/bin/python bench/watch_latency.py [--rate 5000] [--seconds 20]
           [--rates 5000,10000,20000,40000,80000,160000] [--step-seconds 20]
           [--mail-rows 100000,200000] [--out bench/watch_results.md] [--profile FILE]

A real rsyslogd (temporary directory, its own unix socket, no ``/dev/log``) writes one file
in the traditional format; ``logwarden watch FILE --state-dir D --output O.jsonl`` follows it.
A sender process paces background lines into rsyslog's socket in small batches (datagrams in
the ``<13>Nov 30 08:00:00 tag[pid]: msg`` form ``logger`` uses) and every 100 ms injects a
sendmail ``DSN: Return receipt`` line with its own queue ids. The send time of each injected
line and the time its finding appears in the output file give the latency; every injected
line must give exactly one finding.

Then the background rate goes up step by step. Each step records what each component did:
the rate the sender achieved (and its CPU), the rate rsyslog wrote to the file (and its CPU,
and how far it fell behind the sender), and the daemon's lag (file size minus its
checkpointed offset) over the step (and its CPU). The highest step at which the lag stays
bounded is the sustained ingest rate. Then come three ceilings, each component on its own:
the sender into a socket that discards, the sender flat out into rsyslog with no daemon, and
the daemon catching up on the whole file (``--from-beginning``, rsyslog stopped), which must
find every injected line again exactly once. Last, the latency phase is repeated with a daemon
that remembers many sendmail messages (``--mail-rows``): the receipt rule keeps the sender of
every ``from=`` line for a week, and that table is part of the state written at every
checkpoint.

Background lines come from the scan benchmark's input (``bench/out/syslog-1m.log``, made by
``../shared/bench/gen_syslog.py``; see ``bench/run.py``), without their timestamp and host,
and without the lines that give findings, so that only the injected lines give findings.
Exit status: 0 fine, 1 a finding lost or duplicated, 2 something needed is missing or broke.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/run.py is a sibling script, not a package
from run import (
    BENCH,
    DEFAULT_SHARED,
    REPO,
    BenchError,
    ensure_input,
    logwarden_command,
    machine,
    python_command,
    rel,
    revision,
    tool_version,
)

RULE = "sendmail.dsn-return-receipt"
#: what the injected lines say; {q} and {d} are the two queue ids
SIGNATURE = "sm-mta[123]: {q}: {d}: DSN: Return receipt"
#: the datagram header: priority user.notice and a timestamp (rsyslog's imuxsock replaces it
#: with the time of receipt)
HEADER = b"<13>Nov 30 08:00:00 "
#: the sender paces in batches of at most this many seconds' worth of lines
BATCH_SECONDS = 0.002
#: how often the harness samples the file, the daemon's checkpoint and the CPU times
SAMPLE_EVERY = 0.25
#: samples in the first seconds of a step are left out of the lag trend (start-up)
WARMUP = 2.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- background lines -------------------------------------------------------------------------


def background_pool(shared: Path, count: int, work: Path) -> tuple[list[bytes], dict[str, Any]]:
    """``count`` datagrams from the scan benchmark's input that give no finding.

    The lines are scanned with ``logwarden scan``; a line that gives a finding is dropped
    and the rest scanned again, until nothing is found.
    """
    plain, _, gen_cmd = ensure_input(shared, 1_000_000)
    texts: list[str] = []
    with plain.open(encoding="utf-8") as f:
        for line in f:
            texts.append(line.rstrip("\n"))
            if len(texts) >= count:
                break
    dropped = 0
    rounds = 0
    sample = work / "pool.log"
    while True:
        rounds += 1
        sample.write_text("\n".join(texts) + "\n", encoding="utf-8")
        out = work / "pool.jsonl"
        proc = subprocess.run(
            [*logwarden_command(), "scan", str(sample), "--format", "jsonl", "-o", str(out), "-q"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode not in (0, 1):
            raise BenchError(f"logwarden scan of the background sample failed:\n{proc.stderr}")
        bad: set[int] = set()
        messages: set[str] = set()
        for raw in out.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                rec = json.loads(raw)
                bad.add(int(rec["source"].rpartition(":")[2]))
                messages.add(rec["message"])
        if not bad:
            break
        if rounds >= 5:
            raise BenchError("the background sample still gives findings after 5 rounds")
        # repeats of a finding's line are folded into it (suppression): drop them too
        kept = [
            t
            for n, t in enumerate(texts, 1)
            if n not in bad and t.partition(": ")[2] not in messages
        ]
        dropped += len(texts) - len(kept)
        texts = kept
    sample.unlink()
    pool = []
    for t in texts:
        # "Mar  1 00:00:00 mx1 prog[pid]: msg" -> "prog[pid]: msg"
        rest = t[16:].split(" ", 1)[1]
        pool.append(HEADER + rest.encode("utf-8"))
    from_lines = sum(1 for p in pool if b"sm-mta[" in p and b": from=<" in p)
    info = {
        "from_share": from_lines / len(pool),
        "source": rel(plain),
        "generator": shlex.join(gen_cmd),
        "lines": len(pool),
        "dropped": dropped,
        "mean_bytes": statistics.fmean(len(p) for p in pool),
    }
    return pool, info


# -- the sender -------------------------------------------------------------------------------


def _sender(
    sock_path: str,
    pool: list[bytes],
    rate: float,
    seconds: float,
    sig_every: float,
    phase: int,
    counter: Any,
    results: Any,
    limit: int = 0,
) -> None:
    """Send ``rate`` background lines/s (``math.inf``: flat out) for ``seconds``, or until
    ``limit`` lines when it is not 0.

    Every ``sig_every`` seconds (0: never) one signature line goes first, and one more
    after the last background line. Reports the signature send times (``time.monotonic()``,
    the same clock in every process), the counts and this process's CPU time through
    ``results``.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(sock_path)
    send = sock.send
    n_pool = len(pool)
    i = 0
    sent = 0
    sigs: list[tuple[str, float]] = []
    batch = max(1, int(rate * BATCH_SECONDS)) if math.isfinite(rate) else 256
    limit = limit or sys.maxsize

    def signature() -> None:
        n = len(sigs)
        qid, dsn = f"Q{phase:02d}{n:06d}", f"D{phase:02d}{n:06d}"
        data = HEADER + SIGNATURE.format(q=qid, d=dsn).encode()
        t = time.monotonic()
        send(data)
        sigs.append((qid, t))

    t0 = time.monotonic()
    end = t0 + seconds
    next_sig = t0 + sig_every if sig_every else math.inf
    while sent < limit:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_sig:
            signature()
            next_sig += sig_every
        due = (int(rate * (now - t0)) - sent) if math.isfinite(rate) else batch
        if due <= 0:
            time.sleep(min(BATCH_SECONDS, max(0.0, next_sig - now)))
            continue
        n = min(due, batch, limit - sent)
        for _ in range(n):
            send(pool[i])
            i += 1
            if i == n_pool:
                i = 0
        sent += n
        counter.value = sent + len(sigs)
    elapsed = time.monotonic() - t0
    if sig_every:
        signature()  # the last one: how long the daemon takes to get through everything
        counter.value = sent + len(sigs)
    cpu = os.times()
    sock.close()
    results.put(
        {
            "sent": sent,
            "sigs": sigs,
            "start": t0,
            "elapsed": elapsed,
            "cpu": cpu.user + cpu.system,
        }
    )


STOP = b"bench: stop"


def _sink(sock_path: str, ready: Any, counter: Any) -> None:
    """A datagram socket that reads and discards until :data:`STOP` (the sender's ceiling)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(sock_path)
    ready.set()
    buf = bytearray(65536)
    recv_into = sock.recv_into
    stop = len(STOP)
    n = 0
    while True:
        size = recv_into(buf)
        if size == stop and buf[:size] == STOP:
            break
        n += 1
    counter.value = n
    sock.close()


# -- processes --------------------------------------------------------------------------------


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process and all its threads (or of one thread), from /proc."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        with open(path, encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int | None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Rsyslog:
    proc: subprocess.Popen[bytes]
    socket: Path
    file: Path
    log: Path
    conf: Path
    version: str


RSYSLOG_CONF = """\
global(workDirectory="{work}")
# no system socket (/dev/log) and no imklog: only this benchmark's socket
module(load="imuxsock" SysSock.Use="off")
ruleset(name="bench") {{
  action(type="omfile" file="{file}" template="RSYSLOG_TraditionalFileFormat"
         flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imuxsock" Socket="{socket}" CreatePath="on" RateLimit.Interval="0"
      Ruleset="bench")
"""


@contextmanager
def running_rsyslog(base: Path) -> Iterator[Rsyslog]:
    exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not os.access(exe, os.X_OK):
        raise BenchError("rsyslogd is not installed (apt-get install rsyslog)")
    (base / "work").mkdir()
    sock = base / "rsyslog.sock"
    logfile = base / "syslog"
    conf = base / "rsyslog.conf"
    conf.write_text(
        RSYSLOG_CONF.format(work=base / "work", file=logfile, socket=sock), encoding="utf-8"
    )
    check = subprocess.run([exe, "-N1", "-f", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise BenchError(f"rsyslogd rejected the configuration:\n{check.stdout}{check.stderr}")
    first = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    version = " ".join(first.removesuffix("compiled with:").split())
    log = base / "rsyslogd.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [exe, "-n", "-f", str(conf), "-i", str(base / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"rsyslogd did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield Rsyslog(proc, sock, logfile, log, conf, version.strip())
    finally:
        stop_process(proc)


@dataclass
class Watch:
    proc: subprocess.Popen[bytes]
    cmd: list[str]
    state_dir: Path
    output: Path
    log: Path

    @property
    def db(self) -> Path:
        return self.state_dir / "state.sqlite"


def start_watch(
    base: Path, name: str, logfile: Path, *extra: str, profile: Path | None = None
) -> Watch:
    state_dir = base / f"{name}-state"
    output = base / f"{name}.jsonl"
    shown = [*logwarden_command(), "watch"]
    if profile is not None:
        shown = [python_command(), "-m", "cProfile", "-o", str(profile), "-m", "pipeline.cli"]
        shown.append("watch")
    cmd = [*shown, str(logfile), "--state-dir", str(state_dir), "--output", str(output), *extra]
    log = base / f"{name}.stderr"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    watch = Watch(proc, cmd, state_dir, output, log)
    # the first run starts at the end of the file: wait until the daemon has looked at it
    # (its source row is in the state database), so that nothing sent later is skipped
    deadline = time.monotonic() + START_TIMEOUT
    while checkpoint(watch) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc, signal.SIGINT)
            raise BenchError(f"logwarden watch did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return watch


def checkpoint(watch: Watch) -> dict[str, Any] | None:
    """The daemon's checkpointed state of its one source (offset, line, inode)."""
    if not watch.db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{watch.db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT state FROM sources").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return json.loads(row[0]) if row else None


def status_lag(watch: Watch) -> int | None:
    """``logwarden status --format json``: the lag it reports for the file."""
    proc = subprocess.run(
        [*logwarden_command(), "status", "--state-dir", str(watch.state_dir), "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    sources = json.loads(proc.stdout)["sources"]
    return int(sources[0]["lag_bytes"]) if sources else None


# -- watching the output ----------------------------------------------------------------------


class OutputTail(threading.Thread):
    """Follows ``--output`` and notes when each finding appears (``time.monotonic()``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.arrived: dict[str, float] = {}
        self.duplicates: Counter[str] = Counter()
        self.other: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        pos = 0
        rest = b""
        f = None
        try:
            while not self.stopping.is_set():
                if f is None:
                    try:
                        f = self.path.open("rb")
                    except FileNotFoundError:
                        time.sleep(0.002)
                        continue
                size = os.fstat(f.fileno()).st_size
                if size <= pos:
                    time.sleep(0.002)
                    continue
                data = os.pread(f.fileno(), size - pos, pos)
                now = time.monotonic()
                pos += len(data)
                *lines, rest = (rest + data).split(b"\n")
                with self.lock:
                    for raw in lines:
                        self._record(json.loads(raw), now)
        finally:
            if f is not None:
                f.close()

    def _record(self, rec: dict[str, Any], now: float) -> None:
        qid = rec.get("fields", {}).get("queue_id", "")
        if rec["rule"] != RULE or not qid.startswith("Q"):
            self.other[rec["rule"]] += 1
        elif qid in self.arrived:
            self.duplicates[qid] += 1
        else:
            self.arrived[qid] = now

    def count(self, qids: Sequence[str]) -> int:
        with self.lock:
            return sum(q in self.arrived for q in qids)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


# -- one measured phase -----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


@dataclass
class Sample:
    t: float
    sent: int
    file_lines: int
    file_bytes: int
    lag: int | None


@dataclass
class Phase:
    name: str
    target: float
    seconds: float
    sent: int = 0
    sigs: list[tuple[str, float]] = field(default_factory=list)
    elapsed: float = 0.0
    started: float = 0.0  # the sender's start and end (time.monotonic())
    ended: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # percent of one core
    latencies: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0
    drain_seconds: float = math.nan
    drained: bool = False
    status_lag: int | None = None
    line_bytes: float = 0.0

    @property
    def send_rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0

    @property
    def write_rate(self) -> float:
        """Lines/s reaching the file while the sender ran (after the warm-up)."""
        steady = self._steady()
        if len(steady) < 2 or steady[-1].t <= steady[0].t:
            return 0.0
        return (steady[-1].file_lines - steady[0].file_lines) / (steady[-1].t - steady[0].t)

    @property
    def read_rate(self) -> float:
        """Lines/s the daemon read: what was written minus the growth of its lag."""
        return self.write_rate - self.lag_slope / self.line_bytes if self.line_bytes else 0.0

    def _steady(self) -> list[Sample]:
        """The samples taken while the sender ran, after the warm-up."""
        return [s for s in self.samples if self.started + WARMUP <= s.t <= self.ended]

    @property
    def lag_slope(self) -> float:
        """Bytes/s by which the daemon's lag grew over the step (after the warm-up)."""
        return slope([(s.t, float(s.lag)) for s in self._steady() if s.lag is not None])

    @property
    def backlog_slope(self) -> float:
        """Lines/s by which rsyslog fell behind the sender (sent minus written)."""
        return slope([(s.t, float(s.sent - s.file_lines)) for s in self._steady()])

    @property
    def lag_max(self) -> int:
        return max((s.lag for s in self._steady() if s.lag is not None), default=0)

    @property
    def input_bytes_rate(self) -> float:
        return self.write_rate * self.line_bytes

    @property
    def daemon_bounded(self) -> bool:
        """The lag does not grow: its trend is under 2 % of the input, and it stays under
        two seconds of input."""
        rate = self.input_bytes_rate
        return self.lag_slope < 0.02 * rate and self.lag_max < 2.0 * rate

    @property
    def rsyslog_kept_up(self) -> bool:
        return self.backlog_slope < 0.02 * max(self.send_rate, 1.0)

    @property
    def sender_kept_up(self) -> bool:
        return not math.isfinite(self.target) or self.send_rate >= 0.95 * self.target

    def verdict(self) -> str:
        limits = []
        if not self.sender_kept_up:
            # a sender that is short of its rate while it has CPU to spare is blocked in
            # send(): rsyslog does not take the datagrams fast enough
            if self.cpu.get("sender", 0.0) >= 85.0:
                limits.append("sender (CPU-bound)")
            else:
                limits.append("rsyslog (sender blocked)")
        if not self.rsyslog_kept_up:
            limits.append("rsyslog (falls behind the sender)")
        if not self.daemon_bounded:
            limits.append("logwarden (lag grows)")
        return "keeps up" if not limits else "saturated: " + ", ".join(limits)


class Bench:
    def __init__(self, args: argparse.Namespace, base: Path, pool: list[bytes]) -> None:
        self.args = args
        self.base = base
        self.pool = pool
        self.ctx = mp.get_context("fork")
        self.phases: list[Phase] = []
        self.total_sigs: list[str] = []
        self.sender_cpu = math.nan  # of the sender's own ceiling, and of its reader
        self.sink_cpu = math.nan

    # -- counting lines in the file as it grows --

    def _file_counter(self, path: Path) -> Iterator[tuple[int, int]]:
        pos = 0
        lines = 0
        with path.open("rb") as f:
            while True:
                size = os.fstat(f.fileno()).st_size
                while pos < size:
                    chunk = os.pread(f.fileno(), min(size - pos, 8 << 20), pos)
                    if not chunk:
                        break
                    lines += chunk.count(b"\n")
                    pos += len(chunk)
                yield lines, pos

    def run_phase(
        self,
        name: str,
        rs: Rsyslog,
        watch: Watch | None,
        tail: OutputTail | None,
        rate: float,
        seconds: float,
        sig_every: float,
        files: Iterator[tuple[int, int]],
        *,
        pool: list[bytes] | None = None,
        limit: int = 0,
    ) -> Phase:
        """Send for ``seconds`` while sampling; wait until rsyslog and the daemon are done."""
        phase = Phase(name, rate, seconds)
        index = len(self.phases)
        self.phases.append(phase)
        counter = self.ctx.Value("q", 0, lock=False)
        results = self.ctx.Queue()
        lines0, bytes0 = next(files)
        proc = self.ctx.Process(
            target=_sender,
            args=(
                str(rs.socket),
                self.pool if pool is None else pool,
                rate,
                seconds,
                sig_every,
                index,
                counter,
                results,
                limit,
            ),
            daemon=True,
        )
        pids = {"rsyslog": rs.proc.pid}
        if watch is not None:
            pids["logwarden"] = watch.proc.pid
        t_start = time.monotonic()
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        main0 = cpu_seconds(watch.proc.pid, watch.proc.pid) if watch is not None else 0.0
        own0 = sum(os.times()[:2])
        proc.start()
        assert proc.pid is not None
        result: dict[str, Any] | None = None
        deadline = t_start + seconds + 120
        while result is None:
            time.sleep(SAMPLE_EVERY)
            now = time.monotonic()
            lines, size = next(files)
            lag = None
            if watch is not None:
                state = checkpoint(watch)
                if state is not None:
                    lag = max(0, size - int(state.get("offset", 0)))
            phase.samples.append(Sample(now, counter.value, lines - lines0, size - bytes0, lag))
            with suppress(Exception):
                result = results.get_nowait()
            if result is None and (not proc.is_alive() and results.empty()):
                raise BenchError(f"the sender process died (exit {proc.exitcode})")
            if now > deadline:
                proc.kill()
                raise BenchError("the sender did not finish")
        t_end = time.monotonic()
        for k, p in pids.items():
            phase.cpu[k] = 100 * (cpu_seconds(p) - cpu0[k]) / (t_end - t_start)
        if watch is not None:
            main = cpu_seconds(watch.proc.pid, watch.proc.pid) - main0
            phase.cpu["logwarden main thread"] = 100 * main / (t_end - t_start)
        phase.cpu["harness"] = 100 * (sum(os.times()[:2]) - own0) / (t_end - t_start)
        proc.join(5)
        phase.cpu["sender"] = 100 * float(result["cpu"]) / float(result["elapsed"])
        phase.sent = int(result["sent"])
        phase.sigs = [(q, float(t)) for q, t in result["sigs"]]
        phase.elapsed = float(result["elapsed"])
        phase.started = float(result["start"])
        phase.ended = phase.started + phase.elapsed
        total = phase.sent + len(phase.sigs)
        # wait for rsyslog to write everything and for the daemon to read it and report
        drain_deadline = time.monotonic() + max(120.0, 3 * seconds)
        qids = [q for q, _ in phase.sigs]
        while True:
            lines, size = next(files)
            done_file = lines - lines0 >= total
            done_daemon = True
            if watch is not None and tail is not None:
                state = checkpoint(watch)
                done_daemon = (
                    state is not None
                    and int(state.get("offset", 0)) >= size
                    and tail.count(qids) == len(qids)
                )
            if done_file and done_daemon:
                phase.drained = True
                break
            if time.monotonic() > drain_deadline:
                break
            time.sleep(0.05)
        lines, size = next(files)
        if lines - lines0 != total:
            raise BenchError(
                f"{name}: rsyslog wrote {lines - lines0} lines, the sender sent {total}"
            )
        phase.line_bytes = (size - bytes0) / max(1, lines - lines0)
        if watch is not None and tail is not None:
            time.sleep(0.3)  # a duplicate would be written right after the first
            with tail.lock:
                for q, t in phase.sigs:
                    if q in tail.arrived:
                        phase.latencies.append(tail.arrived[q] - t)
                    else:
                        phase.lost.append(q)
                phase.duplicates = sum(tail.duplicates[q] for q in qids)
                if qids and qids[-1] in tail.arrived:
                    # the last injected line follows the last background line
                    phase.drain_seconds = tail.arrived[qids[-1]] - phase.ended
            phase.status_lag = status_lag(watch)
        self.total_sigs.extend(qids)
        print(self.describe(phase), file=sys.stderr)
        return phase

    @staticmethod
    def describe(p: Phase) -> str:
        parts = [
            f"{p.name}: sent {p.send_rate:,.0f} lines/s (target {p.target:,.0f})",
            f"written {p.write_rate:,.0f}/s",
            f"cpu {', '.join(f'{k} {v:.0f}%' for k, v in p.cpu.items())}",
        ]
        if p.latencies or p.lost:
            lat = sorted(p.latencies)
            if lat:
                parts.append(
                    f"latency p50 {percentile(lat, 50) * 1000:.0f} ms p99 "
                    f"{percentile(lat, 99) * 1000:.0f} ms max {lat[-1] * 1000:.0f} ms"
                )
            parts.append(f"findings {len(p.latencies)}/{len(p.sigs)} dup {p.duplicates}")
            parts.append(f"lag max {p.lag_max / 1e3:,.0f} kB slope {p.lag_slope / 1e3:,.1f} kB/s")
            parts.append(p.verdict())
        return "; ".join(parts)

    # -- the ceilings --

    def sender_ceiling(self, seconds: float) -> float:
        """The sender flat out into a socket whose reader discards everything."""
        sock_path = self.base / "sink.sock"
        ready = self.ctx.Event()
        got = self.ctx.Value("q", -1, lock=False)
        sink = self.ctx.Process(target=_sink, args=(str(sock_path), ready, got), daemon=True)
        sink.start()
        assert sink.pid is not None
        try:
            if not ready.wait(START_TIMEOUT):
                raise BenchError("the discarding socket did not start")
            sink_cpu0 = cpu_seconds(sink.pid)
            counter = self.ctx.Value("q", 0, lock=False)
            results = self.ctx.Queue()
            proc = self.ctx.Process(
                target=_sender,
                args=(str(sock_path), self.pool, math.inf, seconds, 0, 99, counter, results),
                daemon=True,
            )
            proc.start()
            result = results.get(timeout=seconds + 30)
            proc.join(5)
            self.sink_cpu = 100 * (cpu_seconds(sink.pid) - sink_cpu0) / result["elapsed"]
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(str(sock_path))
                s.send(STOP)
            sink.join(10)
        finally:
            if sink.is_alive():
                sink.kill()
        if got.value != result["sent"]:
            raise BenchError(f"the sink got {got.value} datagrams of {result['sent']}")
        rate = result["sent"] / result["elapsed"]
        self.sender_cpu = 100 * result["cpu"] / result["elapsed"]
        print(
            f"sender ceiling: {rate:,.0f} lines/s (sender CPU {self.sender_cpu:.0f}%, "
            f"reader {self.sink_cpu:.0f}%)",
            file=sys.stderr,
        )
        return rate


@dataclass
class CatchUp:
    lines: int
    bytes: int
    seconds: float  # from the start of the process until the offset reached the end
    steady_rate: float  # lines/s between the first checkpoint and the end
    findings: int
    expected: int
    lost: int
    duplicates: int
    cpu: float
    command: str


def catch_up(base: Path, logfile: Path, expected: Sequence[str]) -> CatchUp:
    """``watch --from-beginning`` over the whole file with nothing else running."""
    size = logfile.stat().st_size
    with logfile.open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(8 << 20), b""))
    t0 = time.monotonic()
    watch = start_watch(base, "catchup", logfile, "--from-beginning")
    first: tuple[float, int] | None = None
    deadline = t0 + 600
    try:
        while True:
            state = checkpoint(watch) or {}
            now = time.monotonic()
            offset, line = int(state.get("offset", 0)), int(state.get("line", 0))
            if first is None and offset > 0:
                first = (now, line)
            if offset >= size:
                break
            if now > deadline or watch.proc.poll() is not None:
                raise BenchError(f"the catch-up did not finish: {offset} of {size} bytes")
            time.sleep(0.02)
        seconds = now - t0
        cpu = cpu_seconds(watch.proc.pid)
    finally:
        stop_process(watch.proc, signal.SIGINT)
    assert first is not None
    span = now - first[0]
    steady = (lines - first[1]) / span if span > 0 else math.nan
    got: Counter[str] = Counter()
    for raw in watch.output.read_text(encoding="utf-8").splitlines():
        rec = json.loads(raw)
        if rec["rule"] == RULE:
            got[rec["fields"]["queue_id"]] += 1
    want = set(expected)
    lost = len(want - set(got))
    dups = sum(n - 1 for n in got.values() if n > 1)
    extra = len(set(got) - want)
    print(
        f"catch-up: {lines:,} lines in {seconds:.1f} s ({steady:,.0f} lines/s steady); "
        f"findings {len(got)} of {len(want)}, {dups} duplicated, {extra} unexpected",
        file=sys.stderr,
    )
    return CatchUp(
        lines,
        size,
        seconds,
        steady,
        sum(got.values()),
        len(want),
        lost + extra,
        dups,
        100 * cpu / seconds,
        shlex.join(watch.cmd).replace(str(base), "$TMP"),
    )


# -- with a full enrichment table -------------------------------------------------------------

#: a sendmail from= line with its own queue id ({i}): the receipt rule remembers its sender
FROM_LINE = (
    "sm-mta[4242]: M{i:09d}: from=<user{i}@example.com>, size=2345, class=0, nrcpts=1, "
    "msgid=<{i}.M{i:09d}@example.com>, proto=ESMTP, daemon=MTA-v4, "
    "relay=mail.example.org [192.0.2.7]"
)


@dataclass
class Restart:
    """The daemon stopped cleanly, background lines sent meanwhile, the daemon started again."""

    ready_seconds: float  # from its start to "watching" in its log (state restored)
    restore_seconds: float | None  # the restore itself, as the daemon logs it
    lines: int  # lines waiting when it started
    catch_seconds: float  # from ready to its checkpoint at the end of the file

    @property
    def rate(self) -> float:
        return self.lines / self.catch_seconds if self.catch_seconds > 0 else math.nan


@dataclass
class MailState:
    rows: int
    load_seconds: float  # the daemon reading the from= lines (--from-beginning)
    state_bytes: int  # the small part of the detector state, written whole at a checkpoint
    stored_rows: int  # rows of the detector state stored apart (written when changed)
    db_bytes: int  # the state database with its WAL
    phase: Phase
    command: str
    restart: Restart | None = None


def first_line(rs: Rsyslog) -> None:
    """One line, so that the file exists before the daemon or the harness look at it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(str(rs.socket))
        s.send(HEADER + b"bench: start")
    deadline = time.monotonic() + START_TIMEOUT
    while not rs.file.exists() or rs.file.stat().st_size == 0:
        if time.monotonic() > deadline:
            raise BenchError(f"rsyslog wrote nothing:\n{rs.log.read_text()}")
        time.sleep(0.02)


def mail_state(bench: Bench, tmp: Path, rows: int, profile: Path | None = None) -> MailState:
    """The latency phase again, with ``rows`` sendmail messages remembered by the daemon.

    The receipt rule keeps the sender of every ``from=`` line for 7 days (up to 200,000
    queue ids), so a mail server's daemon carries that table; it is part of the detection
    state written at every checkpoint. The daemon first reads ``rows`` such lines with
    ``--from-beginning``, then the usual load and injected lines follow.
    """
    args = bench.args
    base = tmp / f"mail-{rows}"
    base.mkdir()
    pool = [HEADER + FROM_LINE.format(i=i).encode() for i in range(rows)]
    restart: Restart | None = None
    with running_rsyslog(base) as rs:
        first_line(rs)
        files = bench._file_counter(rs.file)
        if rows:
            bench.run_phase(
                "from= lines", rs, None, None, math.inf, 900, 0, files, pool=pool, limit=rows
            )
        t0 = time.monotonic()
        watch = start_watch(base, "mail", rs.file, "--from-beginning", profile=profile)
        tail = OutputTail(watch.output)
        tail.start()
        try:
            size = rs.file.stat().st_size
            while int((checkpoint(watch) or {}).get("offset", 0)) < size:
                if time.monotonic() - t0 > 900 or watch.proc.poll() is not None:
                    raise BenchError("the daemon did not read the from= lines within 900 s")
                time.sleep(0.05)
            load = time.monotonic() - t0
            print(f"read {rows:,} from= lines in {load:.1f} s", file=sys.stderr)
            phase = bench.run_phase(
                f"latency, {rows:,} remembered messages" if rows else "latency, empty state",
                rs,
                watch,
                tail,
                args.rate,
                args.seconds,
                args.sig_every,
                files,
            )
        finally:
            stop_process(watch.proc, signal.SIGINT)
            tail.stop()
        state_bytes, stored_rows = stored_state(watch.db)
        db_bytes = sum(
            p.stat().st_size for p in watch.db.parent.glob(watch.db.name + "*") if p.is_file()
        )
        if profile is None and args.restart_lines:
            restart = restart_phase(bench, base, rs, files, args.restart_lines)
    command = shlex.join(watch.cmd).replace(str(tmp), "$TMP")
    return MailState(
        rows, load, state_bytes, stored_rows, db_bytes, phase, command, restart=restart
    )


def stored_state(db: Path) -> tuple[int, int]:
    """The size of the detector's small state record and the number of its stored rows."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT length(state) FROM detector_state").fetchone()
        try:
            parts = [i for (i,) in conn.execute("SELECT id FROM detector_parts")]
        except sqlite3.OperationalError:  # an older logwarden: the state is one record
            parts = []
        n = sum(
            conn.execute(f"SELECT count(*) FROM detector_rows_{int(i)}").fetchone()[0]
            for i in parts
        )
    finally:
        conn.close()
    return (int(row[0]) if row else 0), int(n)


def restart_phase(
    bench: Bench, base: Path, rs: Rsyslog, files: Iterator[tuple[int, int]], lines: int
) -> Restart:
    """With the daemon stopped, ``lines`` background lines flat out into rsyslog; then the
    daemon started again on its state: how long until it is ready (its detection state
    restored), and how fast it reads what waits."""
    bench.run_phase(
        "background while stopped", rs, None, None, math.inf, 600, 0, files, limit=lines
    )
    # then one line that gives a finding: the daemon checkpoints at once when it reads it
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(str(rs.socket))
        sock.send(HEADER + SIGNATURE.format(q="QRESTART0", d="DRESTART0").encode())
    mark = b'"queue_id": "QRESTART0"'
    t0 = time.monotonic()
    watch = start_watch(base, "mail", rs.file)
    try:
        deadline = t0 + 300
        while "watching " not in watch.log.read_text(errors="replace"):
            if watch.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the restarted daemon did not start:\n{watch.log.read_text()}")
            time.sleep(0.01)
        ready = time.monotonic()
        while mark not in (watch.output.read_bytes() if watch.output.exists() else b""):
            if watch.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("the restarted daemon did not catch up within 300 s")
            time.sleep(0.02)
        done = time.monotonic()
    finally:
        stop_process(watch.proc, signal.SIGINT)
    restore = None
    for text in watch.log.read_text(errors="replace").splitlines():
        if "restored detection state" in text:
            with suppress(ValueError):
                restore = float(text.rsplit(" in ", 1)[1].removesuffix(" s"))
    result = Restart(ready - t0, restore, lines, done - ready)
    print(
        f"restart: ready in {result.ready_seconds:.2f} s (restore {restore}), "
        f"{lines:,} lines caught up at {result.rate:,.0f} lines/s",
        file=sys.stderr,
    )
    return result


# -- report -----------------------------------------------------------------------------------


def fs_type(path: Path) -> str:
    best = ("", "?")
    with suppress(OSError), open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) >= len(best[0]):
                best = (mnt, f"{typ} on {dev}")
    return best[1]


def dgram_qlen() -> str:
    try:
        return Path("/proc/sys/net/unix/max_dgram_qlen").read_text(encoding="ascii").strip()
    except OSError:
        return "?"


def ms(x: float) -> str:
    return f"{x * 1000:,.0f}"


def pct(values: Sequence[float], p: float) -> str:
    return ms(percentile(values, p)) if values else "–"


def cpu_cell(p: Phase, key: str) -> str:
    return f"{p.cpu[key]:.0f}" if key in p.cpu else "–"


def logwarden_cpu(p: Phase) -> str:
    if "logwarden" not in p.cpu:
        return "–"
    return f"{p.cpu['logwarden']:.0f} ({p.cpu.get('logwarden main thread', math.nan):.0f})"


def findings_cell(p: Phase) -> str:
    cell = f"{len(p.latencies)}/{len(p.sigs)}"
    return cell + (f", {p.duplicates} twice" if p.duplicates else "")


@dataclass
class Report:
    argv: Sequence[str]
    started: datetime
    tmp: Path
    rsyslog_version: str
    watch_cmd: str
    pool_info: dict[str, Any]
    latency: Phase
    ramp: list[Phase]
    sender_max: float
    rsyslog_max: Phase
    catch: CatchUp
    mail: list[MailState]
    other: Counter[str]


def kept_up(p: Phase) -> bool:
    return p.verdict() == "keeps up" and p.drained


def sustained(ramp: Sequence[Phase]) -> Phase | None:
    """The step with the highest rate the daemon followed with a bounded lag."""
    kept = [p for p in ramp if p.daemon_bounded and p.drained]
    return max(kept, key=lambda p: p.write_rate) if kept else None


def first_saturation(ramp: Sequence[Phase]) -> str:
    for p in ramp:
        if p.verdict() != "keeps up":
            return f"{p.verdict().removeprefix('saturated: ')} at the {p.target:,.0f} lines/s step"
    return "nothing within the steps run"


def state_section(mail: Sequence[MailState], from_rate: float) -> list[str]:
    """The remembered-messages paragraph and table: state size, restart, catch-up."""
    from pipeline.detection.correlate import MAX_REMEMBERED  # the checkout's (PYTHONPATH)

    out = [
        "The rows with remembered messages are the same phase after the daemon has read "
        "that many sendmail `from=` lines with distinct queue ids (`--from-beginning`, "
        "from a fresh rsyslog file and state). The receipt rule keeps the sender of every "
        f"`from=` line for 7 days, up to {MAX_REMEMBERED:,} queue ids, so the daemon of a mail "
        "server that accepts some 30,000 messages a day carries 200,000 of them; the "
        f"background adds about {from_rate:,.0f} new `from=` lines a second. The detection "
        "state is stored row by row: a checkpoint (with every finding, and every second "
        "while lines arrive) writes the rows that changed and one small record of the "
        "global parts (watermarks, reorder buffers, row counts).\n",
        "After each phase the daemon is stopped (SIGINT), background lines are sent flat out "
        "into rsyslog while it is down, then one line that gives a finding; the daemon is "
        "started again on the same state. *ready* is from its start to its `watching` log "
        "line (Python start-up, rules, the detection state restored, recovery); *restore* "
        "the restore alone, as the daemon logs it; *catch-up* the lines waiting divided by "
        "the time from ready to that last finding in `--output`.\n",
        "| remembered messages | reading the `from=` lines | state record | stored rows "
        "| state database | ready s | restore s | lines waiting | catch-up lines/s "
        "| vs empty state |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    empty = next((m.restart for m in mail if m.rows == 0 and m.restart), None)
    for m in mail:
        rs = m.restart
        load = f"{m.load_seconds:.1f} s" if m.rows else "-"
        cells = ["-", "-", "-", "-", "-"]
        if rs is not None:
            vs = f"{100 * rs.rate / empty.rate:.0f} %" if empty and empty.rate > 0 else "-"
            restore = f"{rs.restore_seconds:.2f}" if rs.restore_seconds is not None else "-"
            cells = [f"{rs.ready_seconds:.2f}", restore, f"{rs.lines:,}", f"{rs.rate:,.0f}", vs]
        out.append(
            f"| {m.rows:,} | {load} | {m.state_bytes / 1e3:,.1f} kB | {m.stored_rows:,} "
            f"| {m.db_bytes / 1e6:,.1f} MB | " + " | ".join(cells) + " |"
        )
    return out


def render_state_only(
    bench: Bench,
    argv: Sequence[str],
    started: datetime,
    tmp: Path,
    pool_info: dict[str, Any],
    mail: Sequence[MailState],
) -> str:
    """The report of ``--state-only``: machine, commands, latency and the state table."""
    args = bench.args
    out: list[str] = []
    add = out.append
    add("# `logwarden watch`: latency and restarts with a large detection state\n")
    add(
        f"Written by `bench/watch_latency.py --state-only` on {started:%Y-%m-%d %H:%M} UTC. "
        "Measured numbers from one run, not estimates.\n"
    )
    add("## Machine\n")
    for key, value in machine():
        add(f"- {key}: {value}")
    add(f"- logwarden {tool_version([*logwarden_command(), '--version'])}, revision {revision()}")
    add(f"- temporary directory (log file, state database, output): {fs_type(tmp)}")
    add(
        "- everything runs on this machine at once: sender, rsyslogd, the daemon and the "
        "harness share its cores"
    )
    add("")
    add("## Commands\n")
    add(f"- harness: `{shlex.join([python_command(), rel(Path(__file__)), *argv])}`")
    for m in mail:
        add(f"- daemon, {m.rows:,} remembered: `{m.command}`")
    add(
        f"- background: {pool_info['lines']:,} lines of `{pool_info['source']}`, as in the "
        "full run; every 100 ms an injected receipt line"
    )
    add("")
    add("## Latency under load\n")
    add(
        "From `send()` of an injected line on rsyslog's socket to its finding in `--output`. "
        "CPU is percent of one core while the sender ran.\n"
    )
    add(
        "| phase | background | findings | p50 ms | p90 ms | p99 ms | max ms | lag max kB "
        "| lag trend kB/s | CPU logwarden | CPU rsyslog |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in mail:
        p = m.phase
        lat = p.latencies
        add(
            f"| {p.name} ({p.seconds:.0f} s) | {p.send_rate:,.0f} lines/s | {findings_cell(p)} "
            f"| {pct(lat, 50)} | {pct(lat, 90)} | {pct(lat, 99)} "
            f"| {pct(lat, 100)} | {p.lag_max / 1e3:,.0f} "
            f"| {p.lag_slope / 1e3:,.1f} | {logwarden_cpu(p)} | {cpu_cell(p, 'rsyslog')} |"
        )
    add("")
    add("## State size, restart and catch-up\n")
    out.extend(state_section(mail, pool_info["from_share"] * args.rate))
    return "\n".join(out)


def render(bench: Bench, r: Report) -> str:
    args = bench.args
    out: list[str] = []
    add = out.append
    add("# `logwarden watch`: latency and sustained ingest rate\n")
    add(
        f"Written by `bench/watch_latency.py` on {r.started:%Y-%m-%d %H:%M} UTC. Measured "
        "numbers from one run, not estimates; `bench/README.md` says what is measured.\n"
    )
    add("## Machine\n")
    for key, value in machine():
        add(f"- {key}: {value}")
    add(f"- logwarden {tool_version([*logwarden_command(), '--version'])}, revision {revision()}")
    add(f"- {r.rsyslog_version}")
    add(f"- temporary directory (log file, state database, output): {fs_type(r.tmp)}")
    add(
        f"- `net.unix.max_dgram_qlen` = {dgram_qlen()} (datagrams queued on a unix socket "
        "before the sender blocks)"
    )
    add(
        "- everything runs on this machine at once: sender, rsyslogd, the daemon and the "
        "harness share its cores"
    )
    add("")
    add("## Commands\n")
    add(f"- harness: `{shlex.join([python_command(), rel(Path(__file__)), *r.argv])}`")
    add(f"- daemon: `{r.watch_cmd}` (`$TMP` is a fresh temporary directory)")
    add(
        "- rsyslogd: `rsyslogd -n -f $TMP/rsyslog.conf`: one imuxsock socket (no `/dev/log`, "
        "no rate limit) into omfile with `RSYSLOG_TraditionalFileFormat`, "
        "`flushOnTXEnd=on`, `asyncWriting=off`"
    )
    info = r.pool_info
    add(
        f"- background: {info['lines']:,} lines of `{info['source']}` (made by "
        f"`{info['generator']}`), sent over and over in that order with their timestamp and "
        f"host cut off, {info['dropped']} lines that give a finding left out; "
        f"{info['mean_bytes'] - len(HEADER):.0f} bytes of text per line on average "
        f"({r.latency.line_bytes:.0f} bytes per line in the file)"
    )
    add(
        f"- sender: a Python process on a connected unix datagram socket, paced in batches of "
        f"{BATCH_SECONDS * 1000:.0f} ms; every {args.sig_every * 1000:.0f} ms, and once more "
        f"after the last background line, it injects "
        f"`{SIGNATURE.format(q='Q01000000', d='D01000000')}` with its own queue ids: one "
        f"`{RULE}` finding each"
    )
    add("")

    add("## Latency under load\n")
    add(
        "From `send()` of an injected line on rsyslog's socket to the moment its finding is "
        "in `--output` (the harness polls the file every 2 ms): rsyslog's receive and write, "
        "the daemon's wake-up, read, detection, SQLite checkpoint and the output write with "
        "`fsync`. CPU is percent of one core while the sender ran; for the daemon, the "
        "whole process and (in brackets) its main thread, the rest being watchdog's "
        "inotify threads.\n"
    )
    add(
        "| phase | background | findings | p50 ms | p90 ms | p99 ms | max ms | lag max kB "
        "| lag trend kB/s | CPU logwarden | CPU rsyslog |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [r.latency, *(m.phase for m in r.mail)]
    for p in rows:
        lat = p.latencies
        add(
            f"| {p.name} ({p.seconds:.0f} s) | {p.send_rate:,.0f} lines/s "
            f"| {findings_cell(p)} | {pct(lat, 50)} | {pct(lat, 90)} | {pct(lat, 99)} "
            f"| {pct(lat, 100)} | {p.lag_max / 1e3:,.0f} | {p.lag_slope / 1e3:,.1f} "
            f"| {logwarden_cpu(p)} "
            f"| {cpu_cell(p, 'rsyslog')} |"
        )
    add("")
    add(
        f"`logwarden status --format json` right after the first phase reported "
        f"`lag_bytes` {r.latency.status_lag}."
    )
    if r.mail:
        add("")
        out.extend(state_section(r.mail, info["from_share"] * r.latency.target))
    add("")

    add("## Sustained ingest rate\n")
    add(
        f"Each step sends its background rate for {args.step_seconds:.0f} s with the "
        "injected lines on top. The ramp stops at the first step where something "
        f"saturates; then up to {args.refine} steps go halfway between the last rate kept up "
        "with and the first one not. *sent* is the rate the sender achieved, *written* the "
        "rate at which "
        "lines reached the file, *read* the daemon's (written minus the growth of its lag). "
        "The lag is the file's size minus the offset the daemon checkpointed, sampled "
        f"every {SAMPLE_EVERY * 1000:.0f} ms after the first {WARMUP:.0f} s; it is bounded "
        "when its least-squares trend is under 2 % of the input and it stays under 2 s of "
        "input. *drain* is how long after the last background line the last injected "
        "line's finding was out. CPU is percent of one core; the machine has "
        f"{os.cpu_count()} cores, so the columns add up to at most {100 * (os.cpu_count() or 1)}."
        "\n"
    )
    add(
        "| target lines/s | sent | written | read | lag max kB | lag trend kB/s | drain s "
        "| p50 ms | p99 ms | findings | CPU sender | CPU rsyslog | CPU logwarden (main) "
        "| CPU harness | verdict |"
    )
    add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in r.ramp:
        lat = p.latencies
        add(
            f"| {p.target:,.0f} | {p.send_rate:,.0f} | {p.write_rate:,.0f} | {p.read_rate:,.0f} "
            f"| {p.lag_max / 1e3:,.0f} | {p.lag_slope / 1e3:,.1f} | {p.drain_seconds:.2f} "
            f"| {pct(lat, 50)} | {pct(lat, 99)} | {findings_cell(p)} "
            f"| {cpu_cell(p, 'sender')} | {cpu_cell(p, 'rsyslog')} | {logwarden_cpu(p)} "
            f"| {cpu_cell(p, 'harness')} | {p.verdict()} |"
        )
    add("")
    best = sustained(r.ramp)
    first = first_saturation(r.ramp)
    everything = [p for p in r.ramp if kept_up(p)]
    if best is not None:
        add(
            f"**Highest sustained rate: {best.write_rate:,.0f} lines/s** written by rsyslog "
            f"and followed by the daemon with a bounded lag (the {best.target:,.0f} lines/s "
            "step)."
        )
    else:
        add("The daemon's lag grew at every step.")
    if everything:
        top = max(everything, key=lambda p: p.target)
        add(
            f"Everything kept up to the {top.target:,.0f} lines/s step "
            f"({top.write_rate:,.0f} lines/s written)."
        )
    add(f"First to saturate: {first}.")
    daemon_limits = [p for p in r.ramp if not p.daemon_bounded]
    if not daemon_limits:
        add(
            "The daemon's lag stayed bounded at every step: its own ceiling is above what "
            "rsyslog delivered here (see the catch-up below)."
        )
    add("")

    add("## Each component on its own\n")
    add("| component | how | lines/s | CPU % of one core |")
    add("|---|---|---:|---:|")
    add(
        f"| sender | flat out for {args.ceiling_seconds:.0f} s into a unix datagram socket "
        f"whose reader (another Python process) discards | {r.sender_max:,.0f} "
        f"| sender {bench.sender_cpu:.0f}, reader {bench.sink_cpu:.0f} |"
    )
    rm = r.rsyslog_max
    add(
        f"| sender + rsyslogd | the sender flat out for {args.ceiling_seconds:.0f} s into "
        f"rsyslog with no daemon running; lines reaching the file (the sender managed "
        f"{rm.send_rate:,.0f}) | {rm.write_rate:,.0f} | rsyslog {rm.cpu['rsyslog']:.0f}, "
        f"sender {rm.cpu['sender']:.0f} |"
    )
    c = r.catch
    add(
        f"| logwarden watch | `--from-beginning` over the whole file of the run above "
        f"({c.lines:,} lines, {c.bytes / 1e6:,.0f} MB) with rsyslog stopped, from its first "
        f"checkpoint to the end ({c.lines / c.seconds:,.0f} counting start-up) "
        f"| {c.steady_rate:,.0f} | {c.cpu:.0f} |"
    )
    add("")
    add(
        f"The catch-up found {c.findings} `{RULE}` findings for the {c.expected} injected "
        f"lines in the file ({c.lost} missing or unexpected, {c.duplicates} twice)"
        + (": every injected line found exactly once" if c.lost == c.duplicates == 0 else "")
        + f". Command: `{c.command}`.\n"
    )
    if r.other:
        listed = ", ".join(f"{k} {n}" for k, n in sorted(r.other.items()))
        add(f"Findings from background lines (not injected): {listed}.\n")
    return "\n".join(out)


# -- main -------------------------------------------------------------------------------------


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if any(n < 0 for n in counts):
        raise argparse.ArgumentTypeError("counts must not be negative")
    return [n for n in counts if n]


def problems_of(phases: Sequence[Phase], catch: CatchUp | None) -> list[str]:
    problems = []
    for p in phases:
        if p.lost:
            problems.append(f"{p.name}: {len(p.lost)} findings lost, e.g. {p.lost[:3]}")
        if p.duplicates:
            problems.append(f"{p.name}: {p.duplicates} findings written twice")
    if catch is not None and (catch.lost or catch.duplicates):
        problems.append(
            f"catch-up: {catch.lost} findings missing or unexpected, {catch.duplicates} twice"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=5000, help="background lines/s for latency")
    ap.add_argument("--seconds", type=float, default=20, help="length of the latency phase")
    ap.add_argument(
        "--rates",
        type=parse_rates,
        default=parse_rates("5000,10000,20000,40000,80000,160000"),
        help="background rates of the ramp, comma-separated",
    )
    ap.add_argument("--step-seconds", type=float, default=20, help="length of each ramp step")
    ap.add_argument(
        "--refine",
        type=int,
        default=2,
        help="steps halfway between the last rate kept up with and the first one not",
    )
    ap.add_argument("--ceiling-seconds", type=float, default=10, help="length of each ceiling")
    ap.add_argument("--sig-every", type=float, default=0.1, help="seconds between injections")
    ap.add_argument("--pool", type=int, default=200_000, help="background lines to cycle")
    ap.add_argument(
        "--mail-rows",
        type=parse_counts,
        default=parse_counts("200000,1000000"),
        help="sendmail messages remembered in the last latency phases, comma-separated (0: none)",
    )
    ap.add_argument(
        "--restart-lines",
        type=int,
        default=2_000_000,
        help="background lines sent while the daemon is stopped after each remembered-messages "
        "phase, read after its restart (0: no restart measurement)",
    )
    ap.add_argument(
        "--state-only",
        action="store_true",
        help="only the remembered-messages phases (with an empty-state one to compare), their "
        "restarts and catch-ups; the report has only those sections",
    )
    ap.add_argument("--out", type=Path, default=BENCH / "watch_results.md", help="report file")
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared/ directory")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="only the latency phases, with the daemon under cProfile writing FILE "
        "(and FILE with .mail-ROWS before its suffix for those with remembered messages)",
    )
    args = ap.parse_args(argv)
    if min(args.seconds, args.step_seconds) < 10:
        print("warning: phases under 10 s give noisy lag trends and verdicts", file=sys.stderr)
    argv_shown = sys.argv[1:] if argv is None else argv
    started = datetime.now(UTC)
    # unix socket paths must fit in 108 bytes: keep the directory short
    tmp = Path(tempfile.mkdtemp(prefix="lw-watch-bench-"))
    try:
        return run(args, argv_shown, started, tmp)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, argv: Sequence[str], started: datetime, tmp: Path) -> int:
    pool, pool_info = background_pool(args.shared.resolve(), args.pool, tmp)
    print(
        f"background: {pool_info['lines']:,} lines ({pool_info['dropped']} dropped)",
        file=sys.stderr,
    )
    bench = Bench(args, tmp, pool)
    profile = args.profile.resolve() if args.profile else None
    if args.state_only:
        mail = [mail_state(bench, tmp, rows) for rows in [0, *args.mail_rows]]
        text = render_state_only(bench, argv, started, tmp, pool_info, mail)
        problems = problems_of([m.phase for m in mail], None)
        if problems:
            text += "\n## FAILED\n\n" + "\n".join(f"- {x}" for x in problems) + "\n"
        args.out.write_text(text + "\n", encoding="utf-8")
        print(text)
        return 1 if problems else 0
    ramp: list[Phase] = []
    with running_rsyslog(tmp) as rs:
        first_line(rs)
        files = bench._file_counter(rs.file)
        watch = start_watch(tmp, "live", rs.file, profile=profile)
        tail = OutputTail(watch.output)
        tail.start()
        try:
            latency = bench.run_phase(
                "latency", rs, watch, tail, args.rate, args.seconds, args.sig_every, files
            )
            for rate in [] if profile else args.rates:
                p = bench.run_phase(
                    f"{rate:,.0f} lines/s",
                    rs,
                    watch,
                    tail,
                    rate,
                    args.step_seconds,
                    args.sig_every,
                    files,
                )
                ramp.append(p)
                if not kept_up(p):
                    break
            # between the last step that kept up and the first that did not
            for _ in range(0 if profile else args.refine):
                good = [p.target for p in ramp if kept_up(p)]
                bad = [p.target for p in ramp if not kept_up(p)]
                if not good or not bad or min(bad) / max(good) < 1.15:
                    break
                rate = round((max(good) + min(bad)) / 2, -3)
                ramp.append(
                    bench.run_phase(
                        f"{rate:,.0f} lines/s",
                        rs,
                        watch,
                        tail,
                        rate,
                        args.step_seconds,
                        args.sig_every,
                        files,
                    )
                )
            ramp.sort(key=lambda p: p.target)
        finally:
            stop_process(watch.proc, signal.SIGINT)
            tail.stop()
        if profile is not None:
            print(f"profile written to {profile}", file=sys.stderr)
            phases = [latency]
            for rows in args.mail_rows:
                mail_profile = profile.with_suffix(f".mail-{rows}{profile.suffix}")
                phases.append(mail_state(bench, tmp, rows, mail_profile).phase)
                print(f"profile written to {mail_profile}", file=sys.stderr)
            return 1 if problems_of(phases, None) else 0
        rsyslog_max = bench.run_phase(
            "sender + rsyslog flat out", rs, None, None, math.inf, args.ceiling_seconds, 0, files
        )
    sender_max = bench.sender_ceiling(args.ceiling_seconds)
    catch = catch_up(tmp, rs.file, list(bench.total_sigs))
    mail = [mail_state(bench, tmp, rows) for rows in args.mail_rows]
    report = Report(
        argv=argv,
        started=started,
        tmp=tmp,
        rsyslog_version=rs.version,
        watch_cmd=shlex.join(watch.cmd).replace(str(tmp), "$TMP"),
        pool_info=pool_info,
        latency=latency,
        ramp=ramp,
        sender_max=sender_max,
        rsyslog_max=rsyslog_max,
        catch=catch,
        mail=mail,
        other=tail.other,
    )
    text = render(bench, report)
    problems = problems_of([latency, *ramp, *(m.phase for m in mail)], catch)
    if problems:
        text += "\n## FAILED\n\n" + "\n".join(f"- {x}" for x in problems) + "\n"
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    if problems:
        print("bench: FINDINGS LOST OR DUPLICATED:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
