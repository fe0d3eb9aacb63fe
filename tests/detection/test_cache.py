"""The rule cache: a valid rule set is taken from ``$XDG_CACHE_HOME/logwarden`` while its
files and the code are unchanged, and anything wrong with the cache means loading from the
files, never an error or other rules."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from pipeline.detection import cache
from pipeline.detection.loader import load_rules
from pipeline.detection.patterns import CompiledPattern
from pipeline.errors import RuleError
from tests.conftest import REPO, RULES

RULE = """\
rules:
  - id: test.cached
    title: {title}
    severity: high
    description: a rule of the cache tests
    remediation: put the fire out
    match:
      message:
        contains: "disk on fire"
    examples:
      match:
        - "Nov 30 08:22:25 mx1 kernel: disk on fire"
      no_match:
        - "Nov 30 08:22:25 mx1 kernel: disk fine"
"""


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    return home / "logwarden"


def rule_dir(tmp_path: Path, title: str = "first title") -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "cached.yaml").write_text(RULE.format(title=title), encoding="utf-8")
    return d


def entries(where: Path) -> list[Path]:
    return sorted(where.glob("rules-*.pickle"))


def normal(value: object) -> object:
    """``value`` with compiled patterns as their source (compiled regexes compare by identity)."""
    if isinstance(value, CompiledPattern):
        return ("pattern", value.source, value.engine)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            *(normal(getattr(value, f.name)) for f in dataclasses.fields(value)),
        )
    if isinstance(value, tuple | list):
        return tuple(normal(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, normal(v)) for k, v in value.items()))
    return value


def test_rules_from_the_cache_are_the_rules_of_the_files(cache_home: Path) -> None:
    fresh = load_rules()  # read from the files, then stored
    assert len(entries(cache_home)) == 1
    cached = load_rules()
    assert cached is not fresh
    assert normal(cached) == normal(fresh)


def test_a_second_load_comes_from_the_cache_and_needs_no_yaml(cache_home: Path) -> None:
    probe = "import sys; from pipeline.detection.loader import load_rules; load_rules(); "
    probe += "print('yaml' in sys.modules)"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home.parent)}

    def yaml_imported() -> str:
        got = subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert got.returncode == 0, got.stderr
        return got.stdout.strip()

    assert yaml_imported() == "True"
    assert yaml_imported() == "False"
    assert len(entries(cache_home)) == 1


def test_a_changed_rule_file_is_read_again(tmp_path: Path, cache_home: Path) -> None:
    d = rule_dir(tmp_path)
    assert load_rules([d], builtin=False)[0].title == "first title"
    assert load_rules([d], builtin=False)[0].title == "first title"  # from the cache
    rule_dir(tmp_path, "second title")
    assert load_rules([d], builtin=False)[0].title == "second title"
    assert len(entries(cache_home)) == 2


def test_invalid_rules_are_not_cached(tmp_path: Path, cache_home: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "bad.yaml").write_text("rules:\n  - id: x\n", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(RuleError):
            load_rules([d], builtin=False)
    assert entries(cache_home) == []


def test_an_unwritable_cache_directory_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # logwarden/ cannot be made in a file
    d = rule_dir(tmp_path)
    assert [r.id for r in load_rules([d], builtin=False)] == ["test.cached"]
    assert [r.id for r in load_rules([d], builtin=False)] == ["test.cached"]


def test_a_corrupt_cache_file_is_passed_over_and_replaced(tmp_path: Path, cache_home: Path) -> None:
    d = rule_dir(tmp_path)
    load_rules([d], builtin=False)
    (entry,) = entries(cache_home)
    entry.write_bytes(b"not a pickle")
    assert [r.title for r in load_rules([d], builtin=False)] == ["first title"]
    assert pickle.loads(entry.read_bytes())[0].title == "first title"


def test_a_cache_file_others_may_write_is_not_trusted(tmp_path: Path, cache_home: Path) -> None:
    others = load_rules([RULES / "kernel.yaml"], builtin=False)
    (theirs,) = entries(cache_home)
    d = rule_dir(tmp_path)
    load_rules([d], builtin=False)
    (entry,) = set(entries(cache_home)) - {theirs}
    # other, valid rules under this key: they would be used if the file were trusted
    entry.write_bytes(theirs.read_bytes())
    entry.chmod(0o666)
    assert [r.id for r in load_rules([d], builtin=False)] == ["test.cached"]
    entry.write_bytes(theirs.read_bytes())
    entry.chmod(0o600)
    assert [r.id for r in load_rules([d], builtin=False)] == [r.id for r in others]


def test_the_cache_can_be_turned_off(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, "0")
    load_rules([rule_dir(tmp_path)], builtin=False)
    assert not cache_home.exists()


def test_at_most_max_entries_are_kept(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    d = rule_dir(tmp_path)
    for i in range(4):
        rule_dir(tmp_path, f"title {i}")
        load_rules([d], builtin=False)
    assert len(entries(cache_home)) == 2
