"""The notebooks in notebooks/ are committed executed (``make notebooks``), and still current:
run again top to bottom on the bundled samples (nbclient + ipykernel), each shows the same
text and tables as the committed file, and draws its plots."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from notebooks.execute import NOTEBOOKS, execute, text_outputs


def test_the_three_notebooks_are_there() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01-dovecot-incident", "02-backscatter", "03-fleet-overview"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_executed(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # run once, top to bottom, with nothing of the run's timing kept
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), path.name
    assert all("execution" not in c.metadata for c in code)
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no plot saved"
    assert "/work/" not in path.read_text() and "/tmp/" not in path.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_current(path: Path, tmp_path: Path) -> None:
    fresh = execute(path)  # raises CellExecutionError on any error
    nbformat.write(fresh, tmp_path / path.name)  # kept for a look when this fails
    committed = text_outputs(nbformat.read(path, as_version=4))
    for i, (old, new) in enumerate(zip(committed, text_outputs(fresh), strict=True)):
        assert old == new, f"{path.name}, code cell {i + 1}: stale outputs; run `make notebooks`"
    outputs = [o for c in fresh.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), path.name


def test_notebook_01_answers_when_the_logins_stopped() -> None:
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    assert "when did the logins stop?" in nb.cells[0].source
    said = "".join(t for cell in text_outputs(nb) for kind, t in cell if kind == "stdout")
    assert "The logins on mx1 stopped at 2026-11-28 14:03:27 UTC" in said


def test_notebook_03_heatmap_shows_host_less_findings() -> None:
    nb = nbformat.read(NOTEBOOKS[2], as_version=4)
    heatmap = next(c for c in nb.cells if "pivot_table" in c.source)
    assert any("image/png" in o.get("data", {}) for o in heatmap.outputs)
    assert "(no host)" in heatmap.source
