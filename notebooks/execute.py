"""Execute the notebooks in place on the bundled samples: ``make notebooks``.

They are committed executed, so a reader sees the tables and plots without running them;
``tests/test_notebooks.py`` runs them again and fails when the committed outputs are stale.
A run is made repeatable: the kernel runs with ``TZ=UTC`` and a fixed hash seed in the
notebooks' folder (the notebooks use paths relative to the repository root), and what
differs between runs or machines is left out of the file (execution times, the kernel's
Python version).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))
KERNEL_ENV = {"TZ": "UTC", "PYTHONHASHSEED": "0"}


def execute(path: Path, timeout: int = 300) -> Any:
    """The notebook at ``path`` run top to bottom (a new ``NotebookNode``; nothing written)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute(env={**os.environ, **KERNEL_ENV})  # raises CellExecutionError on an error
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def text_outputs(nb: Any) -> list[list[tuple[str, str]]]:
    """Per code cell, what it showed as text (streams, text/plain and text/html results),
    images left out: what a fresh run must reproduce exactly."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        shown: list[tuple[str, str]] = []
        for o in cell.outputs:
            if o.output_type == "stream":
                shown.append((o.name, o.text))
            elif o.output_type == "error":
                shown.append(("error", f"{o.ename}: {o.evalue}"))
            else:
                for mime in ("text/plain", "text/html"):
                    if mime in o.get("data", {}):
                        shown.append((mime, o.data[mime]))
        out.append(shown)
    return out


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or NOTEBOOKS
    for path in paths:
        nb = execute(path)
        nbformat.write(nb, path)
        print(f"executed {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
