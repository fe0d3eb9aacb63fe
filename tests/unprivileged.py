"""Running this checkout's Python as an unprivileged user (``nobody``) when the tests run as root.

File modes only apply to a process that is not root, so tests of unreadable files run the
daemon as ``nobody`` through ``setpriv``. That user must be able to read the interpreter, its
standard library, the virtualenv's packages and the checkout, which is often not the case: a
pyenv Python or a virtualenv under ``/root`` (mode 0700), a clone in a private home. Then
:func:`python_for` builds, once per test process, a tree that ``nobody`` can read in a
temporary directory: hard links to the files (copies where linking is not possible or a file
itself is private) of every part that ``nobody`` cannot reach, a virtualenv on the linked
interpreter, and a ``.pth`` file that puts the original (or linked) package directories and
checkout on its path. The code that runs is the same files, so the test still tests this
checkout. When even that interpreter cannot import the daemon, the test fails under
``CI=true`` and skips elsewhere, saying why.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO

#: what the unprivileged daemon needs to import
PROBE = "import pipeline.cli, pipeline.daemon, watchdog"
#: the checkout's parts an unprivileged run reads when the checkout itself is private
REPO_PARTS = ("pipeline", "rules")

_built: dict[str, str] = {}


def others_can_read(path: Path) -> bool:
    """Whether a user who is neither owner nor in the group can reach and read ``path``."""
    path = path.resolve()
    try:
        for parent in reversed(path.parents):
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        mode = os.stat(path).st_mode
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & need == need


def probe(
    prefix: Sequence[str], python: str, code: str = PROBE
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``python`` after ``prefix`` (the switch to the other user) in the checkout."""
    return subprocess.run(
        [*prefix, python, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def python_for(prefix: Sequence[str], python: str) -> str:
    """An interpreter with ``python``'s packages that ``prefix`` (e.g. ``setpriv`` to
    ``nobody``) can run with this checkout: ``python`` itself when it can, else a readable
    tree built for it. Fails under ``CI=true`` (skips elsewhere) when neither can."""
    first = probe(prefix, python)
    if first.returncode == 0:
        return python
    if python not in _built:
        _built[python] = _readable_tree(python)
    built = _built[python]
    second = probe(prefix, built)
    if second.returncode == 0:
        return built
    message = (
        f"{' '.join(prefix)} cannot run {python} with this checkout ({REPO}), nor the readable "
        f"copy {built}: {_last_line(first.stderr)} / {_last_line(second.stderr)}"
    )
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _readable_tree(python: str) -> str:
    """Build the tree for ``python`` (run as root) and return its interpreter (a wrapper)."""
    info = json.loads(
        subprocess.run(
            [
                python,
                "-c",
                "import json, sys; print(json.dumps({'base': sys.base_prefix, "
                "'exe': getattr(sys, '_base_executable', sys.executable), 'path': sys.path, "
                "'ver': 'python%d.%d' % sys.version_info[:2]}))",
            ],
            cwd="/",
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    root = Path(tempfile.mkdtemp(prefix="lw-python-"))
    atexit.register(shutil.rmtree, root, True)
    root.chmod(0o755)
    base, exe = Path(info["base"]).resolve(), Path(info["exe"]).resolve()
    lib = f"lib/{info['ver']}"
    if others_can_read(exe) and others_can_read(base / lib / "os.py"):
        new_base, new_exe = base, exe
    else:
        new_base = root / "base"
        _link_tree(base, new_base, skip={Path(lib, "site-packages"), Path(lib, "test")})
        new_exe = new_base / exe.relative_to(base)
    libdir = new_base / "lib"
    env = {**os.environ, "LD_LIBRARY_PATH": str(libdir)}
    venv = root / "venv"
    subprocess.run(
        [str(new_exe), "-m", "venv", "--without-pip", str(venv)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # the package directories (site-packages, editable installs) of the original, in order
    lines = []
    if not others_can_read(REPO):
        checkout = root / "checkout"
        for part in REPO_PARTS:
            _link_tree(REPO / part, checkout / part)
        lines.append(str(checkout))
    for n, entry in enumerate(info["path"]):
        if not entry or not Path(entry).is_dir():
            continue
        resolved = Path(entry).resolve()
        if resolved.is_relative_to(base) and not resolved.name.endswith("-packages"):
            continue  # the standard library: the new virtualenv has it from its base
        where = Path(entry)
        if not others_can_read(where):
            where = root / "sites" / str(n)
            _link_tree(Path(entry), where)
        lines.append(str(where))
    (venv / lib / "site-packages" / "_logwarden_tests.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({line!r})" for line in lines) + "\n"
    )
    wrapper = root / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"LD_LIBRARY_PATH='{libdir}'${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} "
        f"exec '{venv}/bin/python' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def _link_tree(src: Path, dst: Path, skip: set[Path] | None = None) -> None:
    """``dst`` as a readable copy of ``src``: directories made 0755, files hard-linked (or
    copied where a link is not possible or the file is not readable by others), symbolic
    links kept, pointed into ``dst`` when they pointed into ``src``."""
    skip = skip or set()
    dst.mkdir(parents=True, exist_ok=True)
    dst.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        rel = here.relative_to(src)
        out = dst / rel
        keep = []
        for name in dirnames:
            if rel / name in skip:
                continue
            if (here / name).is_symlink():
                filenames.append(name)
                continue
            (out / name).mkdir(exist_ok=True)
            (out / name).chmod(0o755)
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            source, target = here / name, out / name
            if source.is_symlink():
                link = Path(os.readlink(source))
                if link.is_absolute() and link.is_relative_to(src):
                    link = dst / link.relative_to(src)
                target.symlink_to(link)
                continue
            mode = source.stat().st_mode
            if mode & stat.S_IROTH:
                try:
                    os.link(source, target)
                    continue
                except OSError:
                    pass
            shutil.copy2(source, target)
            target.chmod(
                (mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                | (0o555 if mode & stat.S_IXUSR else 0)
            )
