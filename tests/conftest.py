"""Shared fixtures: where the repository and ../shared are, and how real components are required.

Tests that need ``../shared`` (the third-party corpus, the benchmark generator) skip with a
reason when it is absent, as in a user's clone. Tests that need a real system component
(rsyslogd, logger, logrotate) skip when it is missing, except under ``CI=true``, where a
missing component is an install step that was forgotten and the test fails.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SAMPLES = REPO / "samples"
RULES = REPO / "rules"
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip (fail under CI) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing; CI must provide ../shared")
        pytest.skip(f"{path} is absent (../shared is only beside a development checkout)")
    return path


def bench_lines(out: Path, lines: int, *, loghub: bool = False) -> Path:
    """``lines`` lines from ``../shared/bench/gen_syslog.py`` (the bench file's generator,
    its default seed) written to ``out``; with ``loghub``, the loghub corpus's lines mixed
    in. Skips (fails under CI) without ``../shared``."""
    gen = shared_path("bench", "gen_syslog.py")
    cmd = [sys.executable, str(gen), "--lines", str(lines), "--out", str(out)]
    if loghub:
        cmd += ["--loghub", str(shared_path("corpus", "loghub"))]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return out


def require_program(name: str, *candidates: str) -> str:
    """The path of a real program, or skip (fail under CI) when it is not installed."""
    for cand in (name, *candidates):
        found = shutil.which(cand) or (
            cand if os.path.isabs(cand) and os.access(cand, os.X_OK) else None
        )
        if found:
            return found
    message = f"{name} is not installed (make test installs it as root: see APT_PACKAGES)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_speedup(name: str, present: bool) -> None:
    """An optional accelerator (hyperscan, isal): pyproject installs it on x86_64 Linux
    only, so only there does CI fail without it; elsewhere the test skips."""
    if present:
        return
    message = f"{name} is not installed"
    if IN_CI and platform.machine() == "x86_64" and sys.platform == "linux":
        pytest.fail(f"{message}; it is a dependency on x86_64 Linux")
    pytest.skip(f"{message} (no wheel for this platform)")


@pytest.fixture(scope="session")
def builtin_rules():  # type: ignore[no-untyped-def]
    from pipeline.detection.loader import load_rules

    return load_rules()


def logwarden(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ``logwarden`` command line of this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def logrotate(base: Path, paths: Sequence[Path], directives: str, name: str = "logrotate") -> None:
    """Real logrotate, forced, over ``paths`` with ``directives`` (one a line), its config
    (``NAME.conf``) and state file in ``base``; fails the test when logrotate fails."""
    exe = require_program("logrotate", "/usr/sbin/logrotate")
    conf = base / f"{name}.conf"
    names = " ".join(f'"{p}"' for p in paths)
    body = "".join(f"    {line.strip()}\n" for line in directives.strip().splitlines())
    conf.write_text(f"{names} {{\n{body}}}\n", encoding="utf-8")
    res = subprocess.run(
        [exe, "-f", "-s", str(base / "logrotate.status"), str(conf)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 0, f"logrotate failed:\n{conf.read_text()}\n{res.stderr}"
