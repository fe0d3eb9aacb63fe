"""``read_events`` and rsyslog's ``message repeated N times: [ text]``: the bulk path gives
the same frame as the grammars: ``text`` as the message and N in the ``repeat`` column."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

import pipeline
import pipeline.analysis
import pipeline.bulk
from pipeline.store.parquet import load_events, write_events
from tests.test_analysis import assert_bulk_equals_grammar

TEXT = "Failed password for root from 1.2.3.4 port 22 ssh2"
MESSAGES = [
    (f"message repeated 5 times: [ {TEXT}]", TEXT, 5),
    ("message repeated 2 times: [   padded   ]", "padded", 2),
    ("message repeated 3 times: [ [x] in brackets]", "[x] in brackets", 3),
    ("message repeated 4 times", "message repeated 4 times", 1),
    ("message repeated 0 times: [ zero]", "message repeated 0 times: [ zero]", 1),
    (TEXT, TEXT, 1),
]


def _log(tmp_path: Path, stamp: str, name: str) -> Path:
    path = tmp_path / name
    plain = [f"{stamp} mx1 app[{i}]: line {i}" for i in range(100)]
    special = [f"{stamp} mx1 sshd[7]: {written}" for written, _, _ in MESSAGES]
    # one repeated line the fast-path shape does not take (no host): the grammar's rows
    special.append(f"{stamp} sshd[7]: message repeated 6 times: [ {TEXT}]")
    path.write_text("\n".join(plain + special + plain[:3]) + "\n", encoding="utf-8")
    when = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    os.utime(path, (when, when))
    return path


def _check(df: pd.DataFrame) -> None:
    sshd = df[df["program"] == "sshd"]
    got = list(zip(sshd["message"], sshd["repeat"], strict=True))
    assert got == [(text, n) for _, text, n in MESSAGES] + [(TEXT, 6)]
    assert df["repeat"].dtype == "int64"
    assert int(df["repeat"].sum()) == len(df) + (5 - 1) + (2 - 1) + (3 - 1) + (6 - 1)


@pytest.mark.parametrize(
    ("stamp", "fmt"),
    [("Nov 30 08:00:00", "syslog"), ("2026-11-30T08:00:00.000001+01:00", "rfc3339")],
)
@pytest.mark.parametrize("pyarrow", [True, False])
def test_bulk_equals_grammar_on_repeated_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stamp: str, fmt: str, pyarrow: bool
) -> None:
    if not pyarrow:
        monkeypatch.setattr(pipeline.bulk, "HAVE_PYARROW", False)
    df, taken = assert_bulk_equals_grammar([str(_log(tmp_path, stamp, "syslog"))], tz="UTC")
    assert set(df["format"]) == {fmt}
    # every line took the bulk path, repeated ones included, but the host-less one
    assert taken[fmt] == len(df) - 1, taken
    _check(df)


def test_parquet_events_keep_the_repeat_column(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    log = _log(tmp_path, "Nov 30 08:00:00", "syslog")
    out = tmp_path / "pq"
    write_events(out, pipeline.read_events(str(log), tz="UTC", batch_size=50))
    back = load_events(out, tz="UTC")
    pd.testing.assert_frame_equal(back, pipeline.read_events(str(log), tz="UTC"))
    _check(back)
    # a dataset written before the column existed: every line one event
    for part in out.rglob("*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns(["repeat"]), part)
    assert set(load_events(out, tz="UTC")["repeat"]) == {1}
