"""The README's examples work as written."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.config import load_config
from pipeline.detection.loader import extend_rules, load_rules
from pipeline.notify.notifiers import parse_notifiers
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.S)


def test_the_notification_config_in_the_readme_loads(tmp_path: Path) -> None:
    (block,) = [b for b in YAML_BLOCKS if b.lstrip().startswith("# /etc/logwarden/config.yaml")]
    path = tmp_path / "config.yaml"
    apprise_file = tmp_path / "apprise.yml"
    apprise_file.write_text("urls:\n  - json://hooks.example.org/team\n")
    path.write_text(block.replace("/etc/logwarden/apprise.yml", str(apprise_file)))
    cfg = load_config(path)
    notifiers = parse_notifiers(cfg.notify, str(path))
    assert {n.name for n in notifiers} == {"admin-mail", "pager", "mail-team", "team"}
    mail = next(n for n in notifiers if n.name == "admin-mail")
    assert mail.url.startswith("mailtos://") and "SECRET" not in mail.masked
    assert mail.limit is not None and mail.limit.count == 10
    pager = next(n for n in notifiers if n.name == "pager")
    assert pager.format == "markdown" and pager.tags == ("oncall",)


def test_the_override_example_in_the_readme_enables_delivery_silence(tmp_path: Path) -> None:
    (block,) = [b for b in YAML_BLOCKS if b.lstrip().startswith("overrides:")]
    (tmp_path / "mine.yaml").write_text(block)
    rules, errors = extend_rules(load_rules(), [tmp_path / "mine.yaml"])
    assert errors == []
    silence = next(r for r in rules if r.id == "mail.delivery-silence")
    assert silence.enabled and silence.select.host == ("mx1",)


def test_the_shipped_example_config_is_what_the_readme_points_to() -> None:
    assert "dist/config.yaml" in README and (REPO / "dist" / "config.yaml").exists()
    assert "dist/logwarden.service" in README and (REPO / "dist" / "logwarden.service").exists()


def test_the_tour_shows_the_screen_the_screen_test_captures() -> None:
    """The README's scan output is the kept 100x40 capture of ``scan samples/``, not a
    hand-written one (``LOGWARDEN_UPDATE_GOLDEN=1`` renews both sides' source)."""
    screen = (REPO / "tests" / "fixtures" / "scan-samples-100x40.txt").read_text(encoding="utf-8")
    assert "```\n" + screen + "```\n" in README


def _exit_codes(text: str) -> tuple[set[str], set[str]]:
    """The exit codes an ``Exit status: ...`` paragraph names, overall and for ``status``."""
    flat = " ".join(text.replace("``", "`").split())
    overall, _, status = flat.partition("`status`:")
    return set(re.findall(r"(?:^|; )([0-9]) ", overall.strip())), set(
        re.findall(r"(?:^|, )([0-9]) ", status.strip())
    )


def _exit_table() -> dict[str, set[str]]:
    """The README's exit-status table: per command, the codes it gives a meaning."""
    section = README.split("### Exit status\n", 1)[1].split("\n#", 1)[0]
    rows = [r.strip().strip("|").split("|") for r in section.splitlines() if r.startswith("|")]
    codes = [c.strip() for c in rows[0][1:]]
    return {
        row[0].strip(): {code for code, cell in zip(codes, row[1:], strict=True) if cell.strip()}
        for row in rows[2:]
    } | {"": set(codes)}


def test_the_readme_states_the_exit_statuses_the_command_line_uses() -> None:
    import pipeline.cli

    doc = (pipeline.cli.__doc__ or "").split("Exit status:", 1)[1]
    expected = _exit_codes(doc)
    assert expected == ({"0", "1", "2", "3"}, {"0", "1", "2", "3"})
    table = _exit_table()
    assert table[""] == expected[0]
    assert table["`status`"] == expected[1]
    assert table["`scan`"] == expected[0]
