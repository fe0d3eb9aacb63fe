"""Start-up does only what the command needs: what a command imports, which grammars it builds.

Each check runs in a fresh interpreter of this checkout, so that nothing imported by other
tests hides an import. Nothing here is timed (``bench/run.py`` times start-up).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline
from tests.conftest import REPO

#: what no command may import before it needs it
HEAVY = ("pandas", "pyparsing", "rich", "numpy", "yaml", "re2", "hyperscan", "pyarrow")

#: run ``logwarden ARGS`` in-process, then report the heavy modules loaded and the built formats
PROBE = """
import json, sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["logwarden", *args]
code = None
if args:
    from pipeline.cli import main
    try:
        main()
    except SystemExit as exc:
        code = exc.code
else:
    import pipeline.cli
from pipeline.grammars.registry import built_formats
heavy = sorted({m.partition(".")[0] for m in sys.modules} & set(%r))
with open(out, "w") as f:
    json.dump({"heavy": heavy, "built": sorted(built_formats()), "code": code}, f)
""" % (HEAVY,)


def probe(tmp_path: Path, *args: str) -> tuple[dict[str, object], str]:
    """What ``logwarden ARGS`` loaded (heavy modules, built formats, exit code), and its stdout."""
    out = tmp_path / "probe.json"
    got = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.exists(), got.stderr
    return json.loads(out.read_text()), got.stdout


def test_importing_the_command_line_imports_nothing_heavy(tmp_path: Path) -> None:
    found, _ = probe(tmp_path)
    assert found["heavy"] == []
    assert found["built"] == ["journal-json"]  # plain Python: no grammar to build


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("scan", "--help")])
def test_version_and_help_import_nothing_heavy(tmp_path: Path, args: tuple[str, ...]) -> None:
    found, out = probe(tmp_path, *args)
    assert found["code"] == 0
    assert found["heavy"] == []
    if args == ("--version",):
        assert out == f"logwarden, version {pipeline.__version__}\n"


def test_the_version_is_the_package_version() -> None:
    assert pipeline.__version__ == importlib.metadata.version("logwarden")


#: lines the syslog fast path reads: no grammar is needed for them
FAST_LINES = [
    "Nov 30 08:22:25 mx1 sshd[1234]: Failed password for root from 10.0.0.1 port 22 ssh2",
    "Nov 30 08:22:27 mx1 sshd[1234]: Failed password for root from 10.0.0.1 port 22 ssh2",
    "Nov 30 08:22:29 mx1 CRON[99]: (root) CMD (run-parts /etc/cron.hourly)",
    "Nov 30 08:22:31 mx1 rsync[77]: write failed on /srv/x: No space left on device (28)",
]


def test_a_scan_of_an_empty_file_builds_no_grammar_and_loads_no_numpy(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    found, out = probe(tmp_path, "scan", "-q", "--format", "jsonl", str(empty))
    assert found["code"] == 0 and out == ""
    assert set(found["heavy"]) <= {"yaml", "re2", "hyperscan"}  # the rules, no more
    assert found["built"] == ["journal-json"]


def test_a_scan_whose_lines_take_the_fast_path_builds_no_grammar(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("\n".join(FAST_LINES) + "\n")
    found, out = probe(tmp_path, "scan", "-q", "--format", "jsonl", str(log))
    assert found["code"] == 0
    assert '"rule": "system.disk-full"' in out  # candidates parsed and matched
    assert "pyparsing" not in found["heavy"] and "pandas" not in found["heavy"]
    assert found["built"] == ["journal-json"]


def test_a_syslog_scan_builds_the_syslog_grammars_and_no_apache_grammar(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    # a <PRI> and a program name with a space leave the fast path: the grammar reads them
    log.write_text(
        "\n".join(
            [
                *FAST_LINES,
                "<38>Nov 30 08:22:31 mx1 sshd[1234]: Failed password for root from 10.0.0.1",
                "Nov 30 08:22:33 mx1 Google Chrome[5]: Failed password for nobody",
            ]
        )
        + "\n"
    )
    found, _ = probe(tmp_path, "scan", "-q", "--format", "jsonl", str(log))
    assert found["code"] == 0
    built = set(found["built"])
    assert "syslog" in built
    assert not built & {"apache-error", "access-log", "timestamped"}
    assert "pandas" not in found["heavy"]


def test_a_lazy_grammar_survives_pickling_unbuilt(tmp_path: Path) -> None:
    """Worker processes and Dask tasks get formats by pickle: the grammar is built there,
    on the first line, not by unpickling."""
    script = """
import pickle, sys
from pipeline.grammars.registry import FORMATS
fmt = pickle.loads(pickle.dumps(FORMATS["apache-error"]))
before = "pipeline.grammars.apache_error" in sys.modules
parsed = fmt.parse("[Sat Jan 23 13:22:28.123456 2021] [core:error] [pid 7] AH00001: x")
print(before, "pipeline.grammars.apache_error" in sys.modules, parsed.level, parsed.pid)
"""
    got = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert got.stdout.split() == ["False", "True", "error", "7"]


def test_the_stores_build_frames_without_the_pandas_api_or_the_bulk_reader() -> None:
    """The frame schema is its own module: the stores import it, not ``pipeline.analysis``
    (which imports the stores), and nothing of reading or parsing."""
    script = """
import sys
import pipeline.store, pipeline.store.parquet, pipeline.store.sqlite
print(sorted(m for m in ("pipeline.analysis", "pipeline.bulk", "pipeline.engine") if m in sys.modules))
"""
    got = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert got.stdout.strip() == "[]"
