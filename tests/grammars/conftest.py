"""Fixtures for the grammar tests: the third-party corpus beside the repository.

The corpus lives in ``<repo>/../shared/corpus``. Tests that read it skip with a reason when it is
absent (a user's clone), and fail instead under ``CI=true``, where its absence is a broken setup.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_path

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def data_dir() -> Path:
    """Fixture files of these tests (real ``journalctl -o json`` output, ...)."""
    return DATA


def corpus_path(*parts: str) -> Path:
    """A path under ``../shared/corpus``; skip (fail under CI=true) when it is missing."""
    return shared_path("corpus", *parts)


@pytest.fixture
def corpus() -> Path:
    """The corpus directory (skips or fails as :func:`corpus_path` does)."""
    return corpus_path()
