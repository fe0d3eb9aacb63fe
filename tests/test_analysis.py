"""The pandas API: scan() and read_events(), and the bulk path against the grammars."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import pipeline
import pipeline.bulk
from pipeline import Engine, ScanOptions, load_rules
from pipeline.analysis import (
    EVENT_COLUMNS,
    FINDING_COLUMNS,
    SEVERITY_DTYPE,
    expand_fields,
)
from pipeline.bulk import BulkLineProcessor
from tests.conftest import REPO, SAMPLES, shared_path

ZONE = "Europe/Berlin"


def _touch(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


@contextmanager
def bulk_taken() -> Iterator[Counter[str]]:
    """Count the lines the bulk regex takes, per format, while the block runs.

    A spy on ``BulkLineProcessor._classify``, the step every chunk read in bulk passes with
    the indexes of the lines the regex took (the rest go to the grammar); the real method
    still does the work.
    """
    taken: Counter[str] = Counter()
    original = BulkLineProcessor._classify

    def spy(self: BulkLineProcessor, lines: Any, matched: np.ndarray) -> np.ndarray:
        assert self.format is not None
        taken[self.format.name] += len(matched)
        return original(self, lines, matched)

    BulkLineProcessor._classify = spy  # type: ignore[method-assign]
    try:
        yield taken
    finally:
        BulkLineProcessor._classify = original  # type: ignore[method-assign]


def assert_bulk_equals_grammar(
    paths: list[str] | str, **kw: object
) -> tuple[pd.DataFrame, Counter[str]]:
    """Both paths' frames are equal; returns the frame and the lines the bulk regex took."""
    with bulk_taken() as taken:
        bulk = pipeline.read_events(paths, **kw)  # type: ignore[arg-type]
    with bulk_taken() as none:
        slow = pipeline.read_events(paths, bulk=False, **kw)  # type: ignore[arg-type]
    assert not none, none
    pd.testing.assert_frame_equal(bulk, slow)
    return bulk, taken


def _syslog_shaped(df: pd.DataFrame) -> Counter[str]:
    """Parsed lines per format of the formats the bulk path reads."""
    return Counter(str(f) for f in df["format"] if f in ("syslog", "rfc3339"))


# -- scan() ---------------------------------------------------------------------------------


def test_scan_findings_frame_shape() -> None:
    result = pipeline.scan(SAMPLES, tz=ZONE)
    df = result.findings
    assert list(df.columns) == list(FINDING_COLUMNS)
    assert str(df["timestamp"].dt.tz) == ZONE and str(df["last_seen"].dt.tz) == ZONE
    for col in ("rule", "host", "program", "source"):
        assert isinstance(df[col].dtype, pd.CategoricalDtype), col
    assert df["severity"].dtype == SEVERITY_DTYPE and df["severity"].cat.ordered
    high = df[df["severity"] >= "high"]
    assert set(high["severity"]) <= {"high", "critical"} and len(high)
    assert df["timestamp"].is_monotonic_increasing
    # the same findings as the engine
    engine = Engine(load_rules(), ScanOptions(tz=df["timestamp"].dt.tz)).scan([str(SAMPLES)])
    assert sorted(df["key"]) == sorted(f.key for f in engine.findings)
    assert result.stats.findings == len(df) and result.counts["lines"] == result.stats.lines
    assert "dovecot.silent-stop" in set(df["rule"])


def test_scan_fields_and_expand() -> None:
    df = pipeline.scan(SAMPLES / "mail", tz="UTC").findings
    dsn = df[df["rule"] == "sendmail.dsn-return-receipt"]
    assert len(dsn) and all(isinstance(f, dict) for f in dsn["fields"])
    wide = expand_fields(dsn)
    assert "fields" not in wide.columns and "sender" in wide.columns
    assert wide["sender"].notna().all()


def test_scan_rules_and_range(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text(
        "Nov 30 08:23:33 vm dovecot: master: Warning: service(pop3-login): process_limit (2) "
        "reached, client connections are being dropped\n"
        "Nov 30 09:00:00 vm sm-mta[1]: 6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt\n"
    )
    _touch(log, datetime(2026, 12, 1, tzinfo=UTC))
    rules = [r for r in load_rules() if r.id.startswith("sendmail.")]
    only = pipeline.scan(log, rules, tz="UTC")
    assert set(only.findings["rule"]) == {"sendmail.dsn-return-receipt"}
    ranged = pipeline.scan(log, since="2026-11-30T08:30", tz="UTC")
    assert list(ranged.findings["rule"]) == ["sendmail.dsn-return-receipt"]
    assert ranged.stats.out_of_range == 1
    assert ranged.findings["timestamp"].iloc[0] == pd.Timestamp("2026-11-30 09:00", tz="UTC")


def test_scan_html_repr_shows_counts_and_findings() -> None:
    result = pipeline.scan(SAMPLES / "mail", tz="UTC")
    html = result._repr_html_()
    assert f"{result.stats.lines:,} lines" in html and "findings" in html
    assert "sendmail.dsn-return-receipt" in html and "<table" in html


def test_scan_without_findings() -> None:
    result = pipeline.scan(SAMPLES / "syslog", [], tz="UTC")
    assert len(result.findings) == 0 and list(result.findings.columns) == list(FINDING_COLUMNS)
    assert result.findings["severity"].dtype == SEVERITY_DTYPE
    assert "0 findings" in result._repr_html_()


# -- read_events() -------------------------------------------------------------------------


def test_read_events_columns_and_dtypes() -> None:
    df = pipeline.read_events(SAMPLES / "syslog", tz=ZONE)
    assert list(df.columns) == list(EVENT_COLUMNS)
    assert str(df["timestamp"].dt.tz) == ZONE
    assert df["pid"].dtype == "Int64" and df["line"].dtype == "int64"
    for col in ("host", "program", "level", "format", "source"):
        assert isinstance(df[col].dtype, pd.CategoricalDtype), col
    # every line but comments and blanks: the whole log, not only candidates
    text = (SAMPLES / "syslog" / "syslog").read_text().splitlines()
    assert len(df) == sum(1 for t in text if t.strip() and not t.startswith("#"))


def test_bulk_equals_grammar_on_samples() -> None:
    df, taken = assert_bulk_equals_grammar([str(SAMPLES)], tz=ZONE)
    assert set(df["format"]) >= {"syslog", "rfc3339", "apache-error", "journal-json"}
    # every syslog and RFC 3339 line of the samples has the shape the bulk regex reads
    assert taken == _syslog_shaped(df) and set(taken) == {"syslog", "rfc3339"}, taken


@pytest.mark.corpus
def test_bulk_equals_grammar_on_loghub(tmp_path: Path) -> None:
    """The loghub files end their lines with CR LF, which the bulk path leaves to the
    grammar; their LF copies are read in bulk."""
    root = shared_path("corpus", "loghub")
    logs = sorted(root.glob("*/*_2k.log"))
    assert len(logs) == 5
    for log in logs:
        df, taken = assert_bulk_equals_grammar([str(log)], tz="UTC", year=2005)
        assert sum(taken.values()) <= 1, (log.name, taken)  # a last line without CR LF
        lf = tmp_path / log.name
        lf.write_bytes(log.read_bytes().replace(b"\r\n", b"\n"))
        df, taken = assert_bulk_equals_grammar([str(lf)], tz="UTC", year=2005)
        shaped = _syslog_shaped(df)
        assert set(taken) == set(shaped), (log.name, taken)
        if shaped:  # Linux, Mac, OpenSSH; Apache and Thunderbird are not syslog-shaped
            assert taken["syslog"] >= 0.9 * shaped["syslog"], (log.name, taken, shaped)


def test_bulk_equals_grammar_on_the_bench_file_head(tmp_path: Path) -> None:
    """The first 30,000 lines of the benchmark input (generated here when make bench has
    not made it yet)."""
    import subprocess
    import sys

    bench = REPO / "bench" / "out" / "syslog-1m.log"
    head = tmp_path / "syslog"
    if bench.exists():
        with bench.open("rb") as src:
            head.write_bytes(b"".join(next(src) for _ in range(30_000)))
    else:
        gen = shared_path("bench", "gen_syslog.py")
        subprocess.run(
            [
                sys.executable,
                str(gen),
                "--lines",
                "30000",
                "--out",
                str(head),
                "--loghub",
                str(shared_path("corpus", "loghub")),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    df, taken = assert_bulk_equals_grammar([str(head)], tz=ZONE)
    assert taken["syslog"] >= 0.9 * len(df), (taken, len(df))


EDGE_LINES = [
    "Dec 31 23:59:58 mx1 sshd(pam_unix)[59926]: authentication failure; user=root",
    "Dec 31 23:59:59 mx1 su(pam_unix)[1]: session opened",
    "# a comment line",
    "",
    "   ",
    "Jan  1 00:00:01 mx1 syslogd 1.4.1: restart.",  # program with a space: the grammar
    "Jan  1 00:00:02 mx1 kernel: [    0.000000] Linux version",
    "Dec 31 23:59:50 mx1 late[7]: a late line from the old year",
    "Feb 29 12:00:00 mx1 leap[1]: leap day",
    "Feb 30 12:00:00 mx1 bad[1]: no such day (grammar decides)",
    "Mar 31 02:30:00 mx1 dst[1]: in the spring-forward gap",
    "Oct 27 02:30:00 mx1 dst[1]: in the autumn repeated hour",
    "Nov  5 10:00:00 mx1 prog[12]:    padded message   ",
    "Nov  5 10:00:01 mx1 prog[12]: caf\xe9 \u00fcnicode",
    "Nov  5 10:00:02 mx1 weird line without a tag",
    "Nov  5 10:00:03 mx1 sandboxd[129] ([31211]): context after the pid",
    "<13>Nov  5 10:00:04 mx1 pri[1]: with a PRI",
    "Nov  5 10:00:05 mx1 CRON[2414]: (root) CMD (true)",
    "not a syslog line at all",
    "Jan  2 00:00:00 mx1 next[1]: the year after",
]


@pytest.mark.parametrize("zone", ["UTC", ZONE, "America/New_York"])
def test_bulk_equals_grammar_on_edge_lines(tmp_path: Path, zone: str) -> None:
    log = tmp_path / "syslog"
    body = "\n".join(EDGE_LINES * 3) + "\n"
    # many plain lines first so the format is sniffed as syslog
    plain = "".join(
        f"Dec 30 10:{i // 60:02d}:{i % 60:02d} mx1 app[{i}]: line {i}\n" for i in range(200)
    )
    log.write_bytes((plain + body).encode() + b"Jan  3 00:00:00 mx1 bin[1]: \xff\xfe bad utf-8\n")
    _touch(log, datetime(2027, 2, 1, tzinfo=UTC))
    df, taken = assert_bulk_equals_grammar([str(log)], tz=zone)
    # the plain lines and most edge lines in bulk, the others through the grammar
    assert 200 < taken["syslog"] < len(df), (taken, len(df))
    assert set(taken) == {"syslog"}
    assert df["year_inferred"].any()
    years = df.loc[df["message"] == "the year after", "timestamp"].dt.year
    assert set(years) == {2027} or len(set(years)) > 1  # advanced past New Year


def test_bulk_equals_grammar_with_crlf_and_rfc3339(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.log"
    crlf.write_bytes(
        b"".join(f"Nov 30 08:00:{i:02d} vm app[{i}]: line {i}\r\n".encode() for i in range(60))
    )
    rfc = tmp_path / "rfc.log"
    rfc.write_text(
        "".join(
            f"2026-11-30T08:00:{i:02d}.{i:06d}+0{i % 3}:00 vm app[{i}]: line {i}\n"
            for i in range(60)
        )
        + "2026-11-30T08:01:00+00:00 vm short-fraction[1]: the grammar reads it\n"
        + "2026-02-30T08:01:00.000000+00:00 vm bad-date[1]: no such day\n"
        + "Nov 30 08:02:00 vm bsd[1]: a BSD line in an RFC 3339 file\n"
        + "2026-11-30T08:03:00.000000Z vm app: UTC, no pid\n"
    )
    for p in (crlf, rfc):
        _touch(p, datetime(2026, 12, 1, tzinfo=UTC))
    df, taken = assert_bulk_equals_grammar([str(crlf), str(rfc)], tz=ZONE)
    assert len(df) > 120
    # the CR LF file goes through the grammar; the RFC 3339 one in bulk but for its odd lines
    assert set(taken) == {"rfc3339"} and 60 <= taken["rfc3339"] < 64, taken


def test_read_events_batches_and_range() -> None:
    whole = pipeline.read_events(SAMPLES, tz="UTC")
    batches = list(pipeline.read_events(SAMPLES, tz="UTC", batch_size=100))
    assert len(batches) > 1
    joined = pd.concat(batches, ignore_index=True)
    pd.testing.assert_frame_equal(
        joined.astype({c: object for c in ("host", "program", "level", "format", "source")}),
        whole.astype({c: object for c in ("host", "program", "level", "format", "source")}),
    )
    since = datetime(2026, 11, 29, tzinfo=UTC)
    until = since + timedelta(days=1)
    ranged, taken = assert_bulk_equals_grammar([str(SAMPLES)], tz="UTC", since=since, until=until)
    assert taken["syslog"] > 0 and taken["rfc3339"] > 0, taken
    ts = whole["timestamp"]
    assert len(ranged) == int(((ts >= since) & (ts < until)).sum()) > 0


def test_read_events_progress_callback() -> None:
    seen: list[tuple[int, int | None]] = []
    pipeline.read_events(SAMPLES / "syslog", tz="UTC", progress=lambda d, t: seen.append((d, t)))
    size = (SAMPLES / "syslog" / "syslog").stat().st_size
    assert seen and seen[-1] == (size, size)


def test_bulk_strip_characters_are_pythons() -> None:
    from pipeline.columns import PY_WHITESPACE as _PY_WHITESPACE

    assert set(_PY_WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}


# lines the bulk path cuts at the first space, ": " and "[" after the timestamp
CUT_LINES = [
    "Nov  5 10:00:00 mx1 prog[0123]: pid with a leading zero",
    "Nov  5 10:00:01 mx1 prog[9999999999]: ten-digit pid",
    "Nov  5 10:00:02 mx1 prog[12345678901]: eleven digits (grammar decides)",
    "Nov  5 10:00:03 mx1 prog: ",
    "Nov  5 10:00:04 mx1 prog:",
    "Nov  5 10:00:05 mx1 prog[1]: a: b: c [d] e[f]: g",
    "Nov  5 10:00:06 mx1 a(b)c.d/e-f_g[7]: parentheses, dots and slashes",
    "Nov  5 10:00:07 mx1 prog[]: empty pid",
    "Nov  5 10:00:08 mx1 prog[1]:no space after the colon",
    "Nov  5 10:00:09 mx1 prog[1] : space before the colon",
    "Nov  5 10:00:10 mx1  prog[1]: two spaces after the host",
    "Nov  5 10:00:11 mx1.example-host_x prog[1]: dotted host",
    "Nov  5 10:00:12 mx1 prog[1]: \u3000\x1c ideographic space and separators \x85\xa0\u2028",
    "Nov  5 10:00:13 mx1 prog[1]: \t tabs \x0b\x0c and a NUL \x00 inside \t",
    "Nov  5 10:00:14 mx1 prog[1]: \u00e9\u00e8 \U0001f600 non-ASCII, 4-byte too",
    "Nov  5 10:00:15 h\u00f6st prog[1]: non-ASCII host (grammar decides)",
    "Nov 05 10:00:16 mx1 prog[1]: zero-padded day",
    "Nov  0 10:00:17 mx1 prog[1]: day zero",
    "Apr 31 10:00:18 mx1 prog[1]: no such day",
    "Nov  5 24:00:19 mx1 prog[1]: hour 24",
    "Nov  5 10:60:20 mx1 prog[1]: minute 60",
    "Nov  5 10:00:60 mx1 prog[1]: leap second",
    "Nov  5 10:00:21 mx1 prog[1][2]: two pids",
    "Nov  5 10:00:22 mx1 prog[1]: [3]: brackets in the message",
]


@pytest.mark.parametrize("final_newline", [True, False])
def test_bulk_equals_grammar_on_cut_lines(tmp_path: Path, final_newline: bool) -> None:
    log = tmp_path / "syslog"
    plain = "".join(
        f"Nov  4 10:{i // 60:02d}:{i % 60:02d} mx1 app[{i}]: x {i}\n" for i in range(200)
    )
    body = "\n".join(CUT_LINES * 2) + ("\n" if final_newline else "")
    log.write_bytes((plain + body).encode())
    _touch(log, datetime(2026, 12, 1, tzinfo=UTC))
    df, taken = assert_bulk_equals_grammar([str(log)], tz=ZONE)
    assert 200 < taken["syslog"] < len(df), (taken, len(df))
    assert df["message"].iloc[-1] == "[3]: brackets in the message"
    assert 9999999999 in set(df["pid"].dropna())


def test_bulk_equals_grammar_without_pyarrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.analysis

    monkeypatch.setattr(pipeline.bulk, "HAVE_PYARROW", False)
    log = tmp_path / "syslog"
    plain = "".join(
        f"Dec 30 10:{i // 60:02d}:{i % 60:02d} mx1 app[{i}]: line {i}\n" for i in range(200)
    )
    log.write_text(plain + "\n".join(EDGE_LINES + CUT_LINES) + "\n")
    _touch(log, datetime(2027, 2, 1, tzinfo=UTC))
    df, taken = assert_bulk_equals_grammar([str(log)], tz=ZONE)
    assert 200 < taken["syslog"] < len(df), (taken, len(df))  # Python's re in bulk
    df, taken = assert_bulk_equals_grammar([str(SAMPLES)], tz=ZONE)
    assert taken == _syslog_shaped(df) and set(taken) == {"syslog", "rfc3339"}, taken


def test_bulk_path_keeps_lines_out_of_the_future_like_the_grammar(tmp_path: Path) -> None:
    """A copy whose mtime is 1 March: March lines after it belong to the year before."""
    p = tmp_path / "syslog"
    p.write_text(
        "Feb 28 10:00:00 vm app[1]: a\nMar  3 10:00:00 vm app[1]: b\nMar  4 10:00:00 vm app[1]: c\n"
    )
    ref = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    os.utime(p, (ref, ref))
    frame, taken = assert_bulk_equals_grammar(str(p), tz="UTC")
    assert taken == {"syslog": 3}
    assert [t.year for t in frame["timestamp"]] == [2026, 2025, 2025]
