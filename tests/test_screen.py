"""What a person sees: ``logwarden scan samples/`` in a real terminal (tmux) of 160×50 and
100×40 shows every critical finding and the per-rule counts on its one screen.

The screens are kept as golden files in ``tests/fixtures/`` (the lines/s figure masked);
``LOGWARDEN_UPDATE_GOLDEN=1`` writes them anew. The samples are copied with a fixed mtime, so
that year-less lines get the same years on every machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.output.digest import NO_HOST
from tests.conftest import REPO, SAMPLES, require_program
from tests.screen_helper import digest_counts

FIXTURES = Path(__file__).parent / "fixtures"
MTIME = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("screen")
    shutil.copytree(SAMPLES, root / "samples")
    for p in (root / "samples").rglob("*"):
        os.utime(p, (MTIME, MTIME))
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TZ="UTC", PYTHONPATH=str(REPO), LANG="C.UTF-8")
    return env


def screen(root: Path, width: int, height: int, *args: str) -> str:
    """The visible screen of a ``width``×``height`` tmux window once ``scan`` has ended."""
    tmux = require_program("tmux")
    sock = root / f"tmux-{width}x{height}"
    cmd = shlex.join([sys.executable, "-m", "pipeline.cli", "scan", *args])
    done = f"{shlex.quote(tmux)} -S {shlex.quote(str(sock))} wait-for -S done"
    base = [tmux, "-S", str(sock)]
    subprocess.run(
        [
            *base,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            str(width),
            "-y",
            str(height),
            "-c",
            str(root),
            f"{cmd}; {done}; sleep 60",
        ],
        check=True,
        env=_env(),
        timeout=30,
    )
    try:
        subprocess.run([*base, "wait-for", "done"], check=True, timeout=120)
        shown = subprocess.run(
            [*base, "capture-pane", "-p"], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run([*base, "kill-server"], check=False)
    return shown


def _golden(name: str, text: str) -> None:
    path = FIXTURES / name
    masked = re.sub(r"[\d,]+ lines/s", "N lines/s", text).rstrip("\n") + "\n"
    if os.environ.get("LOGWARDEN_UPDATE_GOLDEN") == "1":
        path.write_text(masked, encoding="utf-8")
    assert masked == path.read_text(encoding="utf-8"), f"{name} changed"


def _findings(root: Path) -> list[dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scan", "samples/", "--format", "jsonl", "-q"],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(x) for x in proc.stdout.splitlines()]


@pytest.mark.parametrize(("width", "height"), [(160, 50), (100, 40)])
def test_the_first_screen_shows_every_critical_finding_and_the_counts(
    samples: Path, width: int, height: int
) -> None:
    shown = screen(samples, width, height, "samples/")
    found = _findings(samples)
    lines = shown.splitlines()
    # the digest's title is still on the screen: nothing scrolled away
    assert lines[0] == f"{len(found)} findings of {len({f['rule'] for f in found})} rules, " + (
        "by rule and host; times UTC"
    ), shown
    critical = {(f["rule"], f["host"] or NO_HOST) for f in found if f["severity"] == "critical"}
    assert critical
    for rule, host in critical:
        assert any(
            re.match(rf"critical\s+\d+\s+{re.escape(str(rule))}\s+{re.escape(str(host))}(?!\S)", x)
            for x in lines
        ), f"{rule} on {host} is not on the screen:\n{shown}"
    want: dict[str, int] = {}
    for f in found:
        want[str(f["rule"])] = want.get(str(f["rule"]), 0) + int(str(f["count"]))
    assert digest_counts(shown) == want, shown
    assert "counts: 10 files" in shown
    # no line was wrapped by the terminal except the counts line
    assert all(len(x) <= width for x in lines)
    _golden(f"scan-samples-{width}x{height}.txt", shown)


def test_min_severity_leaves_the_rest_out_of_the_screen(samples: Path) -> None:
    shown = screen(samples, 100, 40, "samples/", "--min-severity", "critical", "-q")
    lines = shown.splitlines()
    assert re.match(r"9 findings of 4 rules at or above critical", lines[0]), shown
    assert not any(x.startswith(("high", "medium", "low")) for x in lines), shown
    assert "… and" not in shown  # nine two-line rows fit
