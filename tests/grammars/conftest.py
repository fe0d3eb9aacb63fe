"""Fixtures for the grammar tests: the third-party corpus beside the repository.

The corpus lives in ``<repo>/../shared/corpus``. Tests that read it skip with a reason when it is
absent (a user's clone), and fail instead under ``CI=true``, where its absence is a broken setup.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def data_dir() -> Path:
    """Fixture files of these tests (real ``journalctl -o json`` output, ...)."""
    return DATA


def corpus_path(*parts: str) -> Path:
    """A path under ``../shared/corpus``; skip (fail under CI=true) when it is missing."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        message = f"{path} is absent: the third-party corpus is only beside a development checkout"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI must provide ../shared)")
        pytest.skip(message)
    return path


@pytest.fixture
def corpus() -> Path:
    """The corpus directory (skips or fails as :func:`corpus_path` does)."""
    return corpus_path()
