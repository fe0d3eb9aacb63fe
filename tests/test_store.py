"""Stores: scan --store (SQLite, the daemon's schema) and --parquet round-trip."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

import pipeline
from pipeline.cli import main
from pipeline.state import StateDB
from pipeline.store import load_findings
from pipeline.store.parquet import load_events, write_events
from pipeline.store.sqlite import scans, stored_findings
from tests.conftest import SAMPLES

ZONE = "Europe/Berlin"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stderr


def test_sqlite_round_trip_and_scans_table(tmp_path: Path) -> None:
    db = tmp_path / "findings.sqlite"
    result = pipeline.scan(SAMPLES, tz=ZONE)
    first = result.to_sqlite(db)
    second = result.to_sqlite(db)  # the same findings again: one row per key
    assert second == first + 1
    back = load_findings(db, tz=ZONE)
    pd.testing.assert_frame_equal(result.findings, back)
    pd.testing.assert_frame_equal(result.findings, load_findings(db, tz=ZONE, scan_id=second))
    runs = scans(db)
    assert list(runs["id"]) == [first, second]
    assert list(runs["findings"]) == [len(back)] * 2
    assert runs["counts"].iloc[0]["lines"] == result.stats.lines
    assert runs["paths"].iloc[0] == [str(SAMPLES)]
    assert (runs["finished"] >= runs["started"]).all()


def test_sqlite_store_is_the_daemons_schema(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    result = pipeline.scan(SAMPLES / "mail", tz="UTC")
    result.to_sqlite(db)
    # the daemon's state database opens it, sees the findings, and never re-emits them
    with StateDB(db) as state:
        assert state.pending() == []
        assert {f.key for f in state.recent_findings(1000)} == set(result.findings["key"])
        fresh = state.checkpoint(detector=None, sources={}, findings=result.objects)
        assert fresh == []  # keys already stored
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(findings)")]
    conn.close()
    assert cols == [
        "key",
        "rule",
        "severity",
        "timestamp",
        "host",
        "count",
        "last_seen",
        "data",
        "stored_at",
        "emitted",
    ]
    # a finding stored by the daemon reads back the same way
    fresh_db = tmp_path / "daemon.sqlite"
    with StateDB(fresh_db) as state:
        state.checkpoint(detector=None, sources={}, findings=result.objects)
    pd.testing.assert_frame_equal(load_findings(fresh_db, tz="UTC"), load_findings(db, tz="UTC"))


def test_parquet_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    result = pipeline.scan(SAMPLES, tz=ZONE)
    assert result.to_parquet(out) == len(result.findings)
    result.to_parquet(out)  # appended again: still one row per key on reading
    parts = sorted(p.name for p in (out / "findings").iterdir())
    assert parts and all(p.startswith("date=") for p in parts)
    pd.testing.assert_frame_equal(result.findings, load_findings(out, tz=ZONE))
    # plain pyarrow reads it without logwarden: fields as a map, tags as a list
    table = pq.read_table(out / "findings")
    fields_type = table.schema.field("fields").type
    assert pa.types.is_map(fields_type)
    assert fields_type.key_type == pa.string() and fields_type.item_type == pa.string()
    assert table.schema.field("tags").type.value_type == pa.string()


def test_parquet_events_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    n = write_events(out, pipeline.read_events(SAMPLES, tz="UTC", batch_size=400))
    original = pipeline.read_events(SAMPLES, tz="UTC")
    assert n == len(original)
    back = load_events(out, tz="UTC")
    expect = original.sort_values(["source", "line"], kind="stable").reset_index(drop=True)
    expect["source"] = expect["source"].cat.remove_unused_categories()
    pd.testing.assert_frame_equal(expect, back)


def test_cli_scan_store_parquet_events(tmp_path: Path) -> None:
    db, out = tmp_path / "s.sqlite", tmp_path / "pq"
    args = ["scan", str(SAMPLES / "mail"), "--format", "jsonl", "-o", str(tmp_path / "f.jsonl")]
    code, err = cli(*args, "--tz", "UTC", "--store", str(db), "--parquet", str(out), "--events")
    assert code == 0, err
    assert "stored: scan 1" in err and "events in" in err
    jsonl = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert {f.key for f in stored_findings(db)} == {f["key"] for f in jsonl}
    pd.testing.assert_frame_equal(load_findings(db, tz="UTC"), load_findings(out, tz="UTC"))
    assert len(load_events(out)) == len(pipeline.read_events(SAMPLES / "mail", tz="UTC"))
    code, _ = cli(*args, "--events")
    assert code == 2  # --events needs --parquet
