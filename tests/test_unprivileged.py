"""``tests/unprivileged.py``: an interpreter ``nobody`` can run, also when the test's is private."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO, require_program
from tests.unprivileged import PROBE, others_can_read, probe, python_for

pytestmark = pytest.mark.real


def _nobody() -> list[str]:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("switching to nobody needs root, and CI runs the tests as root")
        pytest.skip("switching to nobody needs root")
    setpriv = require_program("setpriv")
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        if IN_CI:
            pytest.fail("there is no user nobody")
        pytest.skip("there is no user nobody")
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        gid = user.pw_gid
    return [setpriv, f"--reuid={user.pw_uid}", f"--regid={gid}", "--clear-groups"]


def test_not_being_root_fails_under_ci_as_a_missing_component_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sys.modules[__name__], "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="needs root"):
        _nobody()


def test_a_private_virtualenv_gets_a_readable_twin(tmp_path: Path) -> None:
    """A virtualenv in a directory only root may enter (as under ``/root``): ``nobody``
    cannot import the daemon with it; with the interpreter :func:`python_for` gives, it
    imports this checkout's daemon, with the packages the private one had."""
    prefix = _nobody()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    base_python = getattr(sys, "_base_executable", sys.executable)
    venv = private / "venv"
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    ver = "python%d.%d" % sys.version_info[:2]
    sites = [p for p in sys.path if p and Path(p).is_dir() and "-packages" in p]
    (venv / "lib" / ver / "site-packages" / "outer.pth").write_text("\n".join(sites) + "\n")
    python = str(venv / "bin" / "python")
    assert probe([], python).returncode == 0  # root can use it
    assert not others_can_read(venv / "pyvenv.cfg")
    assert probe(prefix, python).returncode != 0  # nobody cannot

    readable = python_for(prefix, python)
    assert readable != python
    where = probe(
        prefix, readable, PROBE + "; import sys; print(pipeline.__file__); print(sys.version)"
    )
    assert where.returncode == 0, where.stderr
    module, version = where.stdout.splitlines()
    assert Path(module).read_bytes() == (REPO / "pipeline" / "__init__.py").read_bytes()
    assert version == sys.version
    # asked again in the same process, the tree is reused
    assert python_for(prefix, python) == readable


def test_a_python_nobody_can_run_is_used_as_it_is() -> None:
    prefix = _nobody()
    if probe(prefix, sys.executable).returncode != 0:
        pytest.skip(f"nobody cannot run {sys.executable} here")
    assert python_for(prefix, sys.executable) == sys.executable


@pytest.mark.parametrize("ci", [True, False])
def test_no_way_to_run_it_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: bool
) -> None:
    """A switch that never works (``false``): under ``CI=true`` the test fails, not skips."""
    import tests.unprivileged

    never = [require_program("false")]
    monkeypatch.setattr(tests.unprivileged, "IN_CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="cannot run"):
        python_for(never, sys.executable)
