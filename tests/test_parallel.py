"""Scanning with worker processes and on Dask gives exactly the findings of one process.

Parts here are made tiny (a few KiB) so every sample file is cut into many byte ranges and
joins, sequences, thresholds and suppression windows all cross range boundaries.
"""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.detection.loader import load_rules
from pipeline.engine import Engine, ScanOptions, ScanResult
from pipeline.parallel import DaskRunner, ProcessRunner
from pipeline.sources.files import InputFile, line_starts
from tests.conftest import IN_CI, SAMPLES

SCENARIOS = SAMPLES / "scenarios"


def _findings(result: ScanResult) -> list[str]:
    return [json.dumps(f.as_dict(), sort_keys=True) for f in result.findings]


def _counts(result: ScanResult) -> dict[str, object]:
    counts = result.stats.as_dict()
    counts.pop("seconds")
    return counts


def _problems(result: ScanResult) -> list[str]:
    return [str(p) for p in result.problems]


def _same(local: ScanResult, other: ScanResult) -> None:
    assert _findings(other) == _findings(local)
    assert _counts(other) == _counts(local)
    assert _problems(other) == _problems(local)
    assert other.problems_omitted == local.problems_omitted


def _scan(paths: list[str], runner: object = None, rule_dirs: tuple[str, ...] = ()) -> ScanResult:
    engine = Engine(load_rules(list(rule_dirs)), ScanOptions())
    return engine.scan(paths, runner=runner)  # type: ignore[arg-type]


def dask_installed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("dask.distributed is missing; the dev extra must install it")
        pytest.skip("dask.distributed is not installed (pip install logwarden[dask])")


# -- cutting files --------------------------------------------------------------------------


def test_line_starts_cut_only_at_line_starts(tmp_path: Path) -> None:
    lines = [f"line {i} " + "x" * (i % 97) for i in range(2000)]
    path = tmp_path / "f.log"
    path.write_text("\n".join(lines) + "\n")
    data = path.read_bytes()
    starts = line_starts(InputFile(str(path)), len(data), 4096)
    assert starts[0] == 0 and len(starts) > 10
    assert starts == sorted(set(starts))
    assert all(data[s - 1 : s] == b"\n" for s in starts[1:])
    pieces = [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]
    assert b"".join(pieces) == data


def test_line_starts_from_an_offset_cut_only_what_follows_it(tmp_path: Path) -> None:
    """A resumed scan's ranges: from the saved offset on, about a range apart."""
    lines = [f"line {i} " + "x" * (i % 97) for i in range(2000)]
    path = tmp_path / "f.log"
    path.write_text("\n".join(lines) + "\n")
    data = path.read_bytes()
    start = data.index(b"\n", len(data) // 3) + 1
    starts = line_starts(InputFile(str(path)), len(data), 4096, start)
    assert starts[0] == start and len(starts) > 5
    assert starts == sorted(set(starts))
    assert all(data[s - 1 : s] == b"\n" for s in starts[1:])
    # each cut is the first line start at or after start + k * 4096
    for k, cut in enumerate(starts[1:], 1):
        assert data[start + k * 4096 - 1 :].index(b"\n") + start + k * 4096 == cut
    pieces = [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]
    assert b"".join(pieces) == data[start:]


def test_a_line_longer_than_a_range_merges_ranges(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    path.write_bytes(b"short\n" + b"y" * 20000 + b"\nend\n")
    starts = line_starts(InputFile(str(path)), path.stat().st_size, 4096)
    assert starts == [0, 20007]  # the ranges at 4096..16384 fall inside the long line


def test_engine_plans_ranges_only_for_large_plain_files(tmp_path: Path) -> None:
    engine = Engine(load_rules([]))
    big = tmp_path / "syslog"
    shutil.copy(SAMPLES / "syslog" / "syslog", big)
    packed = tmp_path / "syslog.1.gz"
    packed.write_bytes(gzip.compress(big.read_bytes()))
    parts = engine.plan(InputFile(str(big), None, 0.0), workers=2, part_size=4096)
    assert len(parts) > 5
    assert [p.index for p in parts] == list(range(len(parts)))
    assert parts[0].sniffed is None and {p.sniffed for p in parts[1:]} == {"syslog"}
    assert parts[-1].end is None
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    assert len(engine.plan(InputFile(str(packed), "gzip", 0.0), workers=2, part_size=4096)) == 1
    assert len(engine.plan(InputFile(str(big), None, 0.0), workers=1, part_size=4096)) == 1


# -- worker processes ------------------------------------------------------------------------


@pytest.mark.parametrize("part_size", [1024, 5000, 1 << 20])
def test_worker_processes_find_exactly_what_one_process_finds(part_size: int) -> None:
    paths = [str(SAMPLES)]
    local = _scan(paths)
    assert len(local.findings) > 50
    parallel = _scan(paths, ProcessRunner(2, part_size=part_size))
    _same(local, parallel)


@pytest.mark.parametrize("scenario", ["delivery-silence", "new-year", "threshold-edge"])
def test_worker_processes_agree_on_the_scenarios(scenario: str) -> None:
    directory = SCENARIOS / scenario
    rule_dirs = (str(directory),) if (directory / "rules.yaml").exists() else ()
    local = _scan([str(directory)], rule_dirs=rule_dirs)
    assert local.findings, f"the {scenario} scenario has findings"
    parallel = _scan([str(directory)], ProcessRunner(2, part_size=400), rule_dirs)
    _same(local, parallel)


def test_problems_in_later_ranges_keep_their_line_numbers(tmp_path: Path) -> None:
    text = (SAMPLES / "syslog" / "syslog").read_bytes()
    lines = text.splitlines(keepends=True)
    lines[300] = lines[300].rstrip(b"\n") + b" bad \xff\xfe bytes\n"
    lines[301] = b"Nov 28 10:00:00 host nul\x00inside\n"
    path = tmp_path / "syslog"
    path.write_bytes(b"".join(lines))
    local = _scan([str(path)])
    col = lines[300].index(b"\xff") + 1
    shown = {str(p) for p in local.problems}
    assert f"{path}:301:{col}: invalid-utf8: undecodable bytes shown as U+FFFD" in shown
    assert any(s.startswith(f"{path}:302:") and "nul-byte" in s for s in shown), shown
    parallel = _scan([str(path)], ProcessRunner(2, part_size=2048))
    _same(local, parallel)


# -- Dask ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster() -> object:
    dask_installed()
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    yield cluster
    cluster.close()


def test_dask_local_cluster_finds_exactly_what_the_local_engine_finds() -> None:
    dask_installed()
    paths = [str(SAMPLES)]
    local = _scan(paths)
    on_dask = _scan(paths, DaskRunner(None, workers=2, part_size=3000))
    _same(local, on_dask)


def test_dask_on_a_running_scheduler_with_file_urls(dask_cluster: object) -> None:
    address = dask_cluster.scheduler_address  # type: ignore[attr-defined]
    mail = SAMPLES / "mail"
    local = _scan([str(mail)])
    on_dask = _scan([mail.as_uri() + "/mail.log*"], DaskRunner(address))
    as_urls = [
        f.replace(json.dumps(str(mail))[:-1], json.dumps(mail.as_uri())[:-1])
        for f in _findings(local)
    ]
    assert len(as_urls) > 5
    assert _findings(on_dask) == as_urls
    assert _counts(on_dask) == _counts(local)


def test_unreachable_scheduler_is_a_clear_error() -> None:
    dask_installed()
    result = CliRunner().invoke(
        main,
        ["scan", str(SAMPLES / "syslog"), "--scheduler", "tcp://127.0.0.1:9", "-q"],
    )
    assert result.exit_code != 0
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:9" in result.output


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [["--workers", "2"], ["-j", "0"], ["--engine", "dask", "-j", "2"]]
)
def test_cli_scan_output_is_the_same_with_workers(tmp_path: Path, extra: list[str]) -> None:
    if "dask" in extra:
        dask_installed()
    runner = CliRunner()
    one = runner.invoke(main, ["scan", str(SAMPLES), "--format", "jsonl", "-q"])
    assert one.exit_code == 0, one.output
    many = runner.invoke(main, ["scan", str(SAMPLES), "--format", "jsonl", "-q", *extra])
    assert many.exit_code == 0, many.output
    assert many.output == one.output
    assert len(one.output.splitlines()) > 50


def test_file_urls_work_without_dask() -> None:
    runner = CliRunner()
    by_path = runner.invoke(main, ["scan", str(SAMPLES / "syslog"), "--format", "csv", "-q"])
    by_url = runner.invoke(
        main, ["scan", (SAMPLES / "syslog" / "syslog").as_uri(), "--format", "csv", "-q"]
    )
    assert by_url.exit_code == 0, by_url.output
    rows = by_url.output.splitlines()
    assert len(rows) > 5
    assert rows == by_path.output.replace(str(SAMPLES), "file://" + str(SAMPLES)).splitlines()


def test_dask_reads_relative_paths_and_stdin_like_the_local_engine(
    dask_cluster: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers may run elsewhere: relative paths travel as absolute ones but are shown as
    given, and stdin, which only this process has, is read here."""
    address = dask_cluster.scheduler_address  # type: ignore[attr-defined]
    monkeypatch.chdir(SAMPLES.parent)
    local = _scan(["samples/syslog"])
    on_dask = _scan(["samples/syslog"], DaskRunner(address, part_size=4096))
    assert len(local.findings) > 5
    assert all(json.loads(f)["source"].startswith("samples/syslog/") for f in _findings(on_dask))
    _same(local, on_dask)
    text = (SAMPLES / "syslog" / "syslog").read_text(encoding="utf-8")
    runner = CliRunner()
    one = runner.invoke(main, ["scan", "-", "--format", "jsonl", "-q"], input=text)
    many = runner.invoke(
        main, ["scan", "-", "--format", "jsonl", "-q", "--scheduler", address], input=text
    )
    assert one.exit_code == 0 and many.exit_code == 0, many.output
    assert many.output == one.output and "<stdin>:" in one.output


def test_python_api_scan_with_workers_gives_the_same_frame() -> None:
    import pipeline

    one = pipeline.scan(SAMPLES)
    two = pipeline.scan(SAMPLES, workers=2)
    assert len(one.findings) > 50
    assert two.findings.equals(one.findings)
    with pytest.raises(Exception, match="unknown engine"):
        pipeline.scan(SAMPLES, engine="spark")


def test_a_worker_that_dies_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed mid-scan (here it exits at once; the kernel's OOM killer looks the
    same) ends the scan with a located message, not a traceback or a partial result."""
    import os

    def die(self: Engine, part: object) -> None:
        os._exit(9)

    monkeypatch.setattr(Engine, "run_part", die)  # inherited by the forked workers
    result = CliRunner().invoke(main, ["scan", str(SAMPLES), "-q", "--workers", "2"])
    assert result.exit_code != 0
    assert "a worker process died while reading" in result.output
    assert "fewer --workers" in result.output
