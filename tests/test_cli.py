"""The CLI contract: every command and option, exit codes, output formats."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import FORMAT_NAMES, main
from tests.conftest import REPO, SAMPLES

DOVECOT = (
    "Nov 30 08:23:33 vm dovecot: master: Warning: service(pop3-login): process_limit (2) "
    "reached, client connections are being dropped\n"
)
DSN = "Nov 30 08:22:25 vm sm-mta[17783]: 6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt\n"
REMOUNT = (
    "Nov 30 07:00:01 vm systemd[1]: Failed to start systemd-remount-fs.service - "
    "Remount Root and Kernel File Systems.\n"
)


def run(*args: str, input: str | bytes | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def log(tmp_path: Path) -> Path:
    p = tmp_path / "syslog"
    p.write_text("Nov 30 08:00:00 vm cron[1]: nothing\n" + DOVECOT + DSN + REMOUNT)
    os.utime(p, (datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp(),) * 2)
    return p


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def _commands(
    cmd: click.Command = main, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree under ``cmd``, groups included, with its path."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, (*path, name))


#: markup that click would show verbatim in --help
MARKUP = ("``", ":func:", ":class:", ":meth:", ".. ")


def _signature(param: click.Option) -> tuple[object, ...]:
    """What a user sees of an option: its flags, metavar, help, whether it is a flag.
    ``--format``'s help and choices belong to what each command writes (its names are
    checked against FORMAT_NAMES instead)."""
    if "--format" in param.opts:
        return (tuple(param.opts), tuple(param.secondary_opts))
    return (
        tuple(param.opts),
        tuple(param.secondary_opts),
        param.metavar,
        param.help,
        param.is_flag,
    )


def test_every_command_and_option_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    commands = list(_commands())
    names = {" ".join(path) for path, _ in commands}
    assert {"", "scan", "parse", "rules", "rules list", "notify test", "status"} <= names
    #: each flag (-o, --output, --rules, ...) -> the definitions of the options that use it
    definitions: dict[str, set[tuple[object, ...]]] = {}
    where: dict[str, list[str]] = {}
    for path, cmd in commands:
        name = " ".join(("logwarden", *path))
        assert (cmd.help or "").strip(), f"`{name}` has no help text"
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert (param.help or "").strip(), f"`{name} {param.opts[0]}` has no help text"
                for flag in (*param.opts, *param.secondary_opts):
                    definitions.setdefault(flag, set()).add(_signature(param))
                    where.setdefault(flag, []).append(name)
                if "--format" in param.opts:
                    assert isinstance(param.type, click.Choice), name
                    choices = set(param.type.choices)
                    assert choices <= set(FORMAT_NAMES), (name, choices)
                    # a stream of objects is asked for by either name
                    if "jsonl" in choices:
                        assert "json" in choices, f"`{name} --format` lacks json"
        code, out, _ = run(*path, "--help")
        assert code == 0 and "Usage:" in out, name
        assert " ".join(cmd.help.split())[:30] in " ".join(out.split()), name
        for mark in MARKUP:
            assert mark not in out, f"`{name} --help` shows {mark!r}"
        assert name in readme, f"README lacks `{name}`"
        if isinstance(cmd, click.Group):
            # every subcommand listed with its whole summary, not one cut off with "..."
            listed = " ".join(out.split("Commands:")[1].split())
            for sub_name, sub in cmd.commands.items():
                summary = " ".join(sub.get_short_help_str(limit=10_000).split())
                assert f"{sub_name} {summary}" in listed, f"`{name} --help` cuts `{sub_name}`"
    shared = {flag: defs for flag, defs in definitions.items() if len(where[flag]) > 1}
    assert {"--rules", "-o", "--config", "--journal", "--since", "-q", "-C"} <= set(shared)
    for flag, defs in shared.items():
        assert len(defs) == 1, f"{flag} is defined {len(defs)} ways: {where[flag]}: {defs}"


def test_options_the_issue_named_are_on_every_command_that_needs_them() -> None:
    def flags(*path: str) -> set[str]:
        cmd: click.Command = main
        for part in path:
            assert isinstance(cmd, click.Group)
            cmd = cmd.commands[part]
        return {f for p in cmd.params if isinstance(p, click.Option) for f in p.opts}

    for path in (("scan",), ("report",), ("watch",), ("parse",)):
        assert {"-o", "--output", "--since", "--until", "--tz", "--journal"} <= flags(*path)
    for path in (("scan",), ("report",), ("watch",), ("rules", "validate"), ("notify", "test")):
        assert "--config" in flags(*path), path
    for path in (("scan",), ("report",), ("watch",), ("rules", "list"), ("rules", "test")):
        assert {"--rules", "--no-builtin-rules"} <= flags(*path), path
    assert "--rules" in flags("rules", "validate")


def test_the_old_positional_rules_dir_still_works_with_a_notice(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(SITE_RULES)
    for cmd in ("list", "validate", "test"):
        code, new_out, new_err = run("rules", cmd, "--rules", str(rules))
        assert code == 0, (cmd, new_err)
        assert "deprecated" not in new_err
        code, old_out, old_err = run("rules", cmd, str(rules))
        assert code == 0, (cmd, old_err)
        assert old_out == new_out, cmd
        notice = [x for x in old_err.splitlines() if "deprecated" in x]
        assert notice == [
            f"logwarden: notice: `rules {cmd} DIR` is deprecated; use `rules {cmd} --rules DIR`"
        ]
    code, out, _ = run("rules", "list", "--rules", str(rules), "--format", "json")
    assert code == 0 and "site.nfs-flapping" in {r["id"] for r in jsonl(out)}


def test_scan_without_default_inputs_suggests_the_journal(tmp_path: Path) -> None:
    """A journal-only Debian has no /var/log/syslog: the default inputs are pointed at an
    empty directory in a real ``logwarden`` process."""
    code = (
        "import sys, pipeline.cli as cli; "
        f"cli.DEFAULT_PATHS = ({str(tmp_path / 'syslog*')!r},); "
        "cli.main(sys.argv[1:])"
    )
    for command in ("scan", "report"):
        res = subprocess.run(
            [sys.executable, "-c", code, command, "-o", str(tmp_path / "out")],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert res.returncode == 2, (command, res.stderr)
        assert f"no PATH given and none of {tmp_path / 'syslog*'} exists" in res.stderr
        assert "use --journal" in res.stderr
        assert res.stdout == ""


def test_parse_writes_json_to_a_file_and_quiet_quiets_the_totals(tmp_path: Path) -> None:
    p = tmp_path / "syslog"
    p.write_text("Nov 30 08:00:00 vm cron[12]: hello\n" + DOVECOT)
    out = tmp_path / "events.jsonl"
    code, stdout, err = run("parse", str(p), "--format", "json", "-o", str(out), "--tz", "UTC")
    assert code == 0 and stdout == ""
    assert [r["program"] for r in jsonl(out.read_text())] == ["cron", "dovecot"]
    assert "2 lines, 2 parsed" in err
    code, stdout, err = run("parse", str(p), "-q", "--tz", "UTC")
    assert code == 0 and err == "" and len(jsonl(stdout)) == 2
    code, _, err = run("parse", str(tmp_path / "gone"), str(p), "-q")
    assert "some input could not be read" in err or "no such file" in err
    code, _, err = run("parse")
    assert code == 2 and "give a PATH or --journal" in err


def test_quiet_leaves_only_errors_on_stderr(tmp_path: Path, log: Path) -> None:
    odd = tmp_path / "odd.log"
    odd.write_text("*** No space left on device ***\n")
    store = tmp_path / "s.sqlite"
    code, _, err = run(
        "scan", str(log), str(odd), "-q", "--store", str(store), "-C", "1", "--format", "jsonl"
    )
    assert code == 0 and err == "", err
    code, _, err = run("report", str(log), "-q", "-o", str(tmp_path / "r.html"), "-C", "1")
    assert code == 0 and err == "", err
    code, _, err = run("report", str(log), "-o", str(tmp_path / "r.html"))
    assert code == 0 and "wrote" in err
    # stored findings are reported as they are: a PATH beside them is refused, not ignored
    code, _, err = run("report", str(log), "--from-store", str(store), "-o", str(tmp_path / "r"))
    assert code == 2 and "--from-store reports stored findings: not with PATH" in err


@pytest.mark.real
def test_report_and_parse_read_the_journal(tmp_path: Path) -> None:
    from tests.sources.test_journal import dovecot, write_journal

    journal = tmp_path / "journal"
    write_journal(journal / "a.journal", [dovecot(i) for i in range(2)])
    out = tmp_path / "r.html"
    code, _, err = run("report", "--journal-directory", str(journal), "-o", str(out), "-q")
    assert code == 0, err
    html = out.read_text()
    assert "dovecot.process-limit-reached" in html and f"journal:{journal}" in html
    code, stdout, err = run("parse", "--journal-directory", str(journal), "--tz", "UTC")
    assert code == 0, err
    rows = jsonl(stdout)
    assert [r["program"] for r in rows] == ["dovecot", "dovecot"]
    assert "2 lines, 2 parsed" in err


def test_scan_jsonl_has_the_contract_fields(log: Path) -> None:
    code, out, err = run("scan", str(log), "--format", "jsonl", "--tz", "UTC")
    assert code == 0
    rows = jsonl(out)
    assert [r["rule"] for r in rows] == [
        "systemd.remount-fs-failed",
        "sendmail.dsn-return-receipt",
        "dovecot.process-limit-reached",
    ]
    dsn = rows[1]
    assert dsn["severity"] == "high"
    assert dsn["host"] == "vm" and dsn["program"] == "sm-mta"
    assert dsn["timestamp"] == "2026-11-30T08:22:25+00:00"
    assert dsn["source"] == f"{log}:3"
    assert dsn["fields"]["queue_id"] == "6AU8MP47017782"  # type: ignore[index]
    assert dsn["fields"]["dsn_queue_id"] == "6AU8MP47017783"  # type: ignore[index]
    assert isinstance(dsn["title"], str) and dsn["message"]
    assert re.search(
        r"counts: 1 files, 4 lines, \d+ candidates, \d+ parsed, 0 candidates unparsed, 3 findings",
        err,
    )


def test_scan_table_is_default_and_prints_counts(log: Path) -> None:
    code, out, err = run("scan", str(log))
    assert code == 0
    assert "dovecot.process-limit-reached" in out and "critical" in out
    assert "counts:" in err
    code, _, err = run("scan", str(log), "-q")
    assert "counts:" not in err


def test_scan_counts_say_that_unparsed_counts_candidates_only(tmp_path: Path) -> None:
    # two lines no grammar reads: one the prefilter selects (a literal of
    # system.disk-full), one it does not
    p = tmp_path / "odd.log"
    p.write_text(
        "Nov 30 08:00:00 vm cron[1]: nothing\n" * 3
        + "*** No space left on device ***\n"
        + "*** garbage without a literal ***\n"
    )
    code, _, err = run("scan", str(p), "--tz", "UTC")
    assert code == 0, err
    assert re.search(
        r"5 lines, 1 candidates, 0 parsed, 1 candidates unparsed \(syslog: 1\)", err
    ), err
    assert " 1 unparsed" not in err
    _, _, err = run("parse", str(p), "--tz", "UTC")
    assert "5 lines, 3 parsed, 2 unparsed" in err, err
    assert "candidates unparsed" in run("scan", "--help")[1]


def test_scan_csv_and_output_file(log: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "f.csv"
    code, out, _ = run("scan", str(log), "--format", "csv", "-o", str(out_file))
    assert code == 0 and out == ""
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert len(rows) == 3 and rows[0]["rule"] and json.loads(rows[0]["fields"]) is not None


def test_scan_fail_on(log: Path) -> None:
    assert run("scan", str(log), "--fail-on", "critical", "-q")[0] == 1
    quiet = log.with_name("quiet")
    quiet.write_text(DSN)
    assert run("scan", str(quiet), "--fail-on", "critical", "-q")[0] == 0
    assert run("scan", str(quiet), "--fail-on", "high", "-q")[0] == 1


def test_scan_since_until_year_tz(log: Path) -> None:
    code, out, _ = run(
        "scan",
        str(log),
        "--format",
        "jsonl",
        "--tz",
        "UTC",
        "--since",
        "2026-11-30T08:00:00",
        "--until",
        "2026-11-30T08:23:00",
    )
    assert [r["rule"] for r in jsonl(out)] == ["sendmail.dsn-return-receipt"]
    code, out, _ = run(
        "scan", str(log), "--format", "jsonl", "--year", "2019", "--tz", "Europe/Berlin"
    )
    stamps = [r["timestamp"] for r in jsonl(out)]
    assert stamps[0] == "2019-11-30T07:00:01+01:00"


def test_scan_directory_glob_and_stdin(log: Path, tmp_path: Path) -> None:
    assert len(jsonl(run("scan", str(tmp_path), "--format", "jsonl")[1])) == 3
    assert len(jsonl(run("scan", str(tmp_path / "sys*"), "--format", "jsonl")[1])) == 3
    code, out, _ = run("scan", "-", "--format", "jsonl", input=DOVECOT)
    (row,) = jsonl(out)
    assert row["source"] == "<stdin>:1"


def test_scan_rules_dir_and_no_builtin(log: Path, tmp_path: Path) -> None:
    rules = tmp_path / "myrules"
    rules.mkdir()
    (rules / "cron.yaml").write_text(
        """rules:
  - id: cron.nothing
    title: Cron said nothing
    severity: low
    description: d
    remediation: r
    select: {program: cron}
    match: {message: {equals: nothing}}
    examples:
      match: ['Nov 30 08:00:00 vm cron[1]: nothing']
      no_match: ['Nov 30 08:00:00 vm other[1]: nothing']
"""
    )
    code, out, _ = run(
        "scan", str(log), "--rules", str(rules), "--no-builtin-rules", "--format", "jsonl"
    )
    assert [r["rule"] for r in jsonl(out)] == ["cron.nothing"]
    code, out, _ = run("scan", str(log), "--rules", str(rules), "--format", "jsonl")
    assert len(jsonl(out)) == 4


def test_a_bad_tz_variable_is_a_usage_error_like_a_bad_tz_option(tmp_path: Path, log: Path) -> None:
    runner = CliRunner()
    for tz, words in (("Europe/Berln", "IANA name"), ("CET-1CEST,M3.5.0,M10.5.0/3", "POSIX")):
        for args in (
            ["scan", str(log)],
            ["parse", str(log)],
            ["watch", "--state-dir", str(tmp_path / "state"), str(log)],
        ):
            result = runner.invoke(main, args, env={"TZ": tz}, catch_exceptions=False)
            assert result.exit_code == 2, (tz, args, result.stderr)
            assert f"unknown time zone {tz!r} (from $TZ)" in result.stderr, args
            assert words in result.stderr
            assert result.stdout == ""
    # a valid --tz does not need $TZ
    result = runner.invoke(
        main, ["scan", str(log), "--tz", "UTC", "-q"], env={"TZ": "Europe/Berln"}
    )
    assert result.exit_code == 0, result.stderr


def test_usage_errors_exit_2(tmp_path: Path, log: Path) -> None:
    code, _, err = run("scan", str(tmp_path / "missing.log"))
    assert code == 2 and "missing.log: no such file or directory" in err
    code, _, err = run("scan", str(log), "--tz", "Nowhere/Land")
    assert code == 2 and "unknown time zone" in err
    code, _, err = run("scan", str(log), "--since", "tuesday")
    assert code == 2 and "cannot read time" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text("rules:\n  - id: x.y\n    wat: 1\n")
    code, _, err = run("scan", str(log), "--rules", str(bad))
    assert code == 2 and f"{bad / 'x.yaml'}:3: unknown key 'wat'" in err
    code, _, _ = run("scan", str(log), "--format", "xml")
    assert code == 2


def test_parse_prints_every_line_and_totals(tmp_path: Path) -> None:
    p = tmp_path / "mixed"
    p.write_text("Nov 30 08:00:00 vm cron[12]: hello\n" + DOVECOT + "garbage ~~~\n")
    code, out, err = run("parse", str(p), "--tz", "UTC")
    assert code == 0
    rows = jsonl(out)
    assert rows[0]["program"] == "cron" and rows[0]["pid"] == 12 and rows[0]["host"] == "vm"
    assert rows[0]["format"] == "syslog" and rows[0]["source"] == f"{p}:1"
    assert set(rows[0]) >= {
        "timestamp",
        "host",
        "program",
        "pid",
        "level",
        "message",
        "format",
        "source",
    }
    assert "3 lines, 2 parsed, 1 unparsed" in err
    code, out, _ = run("parse", str(p), "--print-unparsed")
    assert any(r.get("unparsed") and str(r["source"]).startswith(f"{p}:3:") for r in jsonl(out))


def test_parse_keeps_to_since_and_until_and_reports_skipped_files(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    p = d / "syslog"
    p.write_text(
        "Nov 30 08:00:00 vm cron[1]: early\n"
        "Nov 30 09:00:00 vm cron[2]: inside\n"
        "Nov 30 10:00:00 vm cron[3]: late\n"
    )
    (d / "blob").write_bytes(b"\x00\x01binary")
    window = ("--since", "2025-11-30T08:30", "--until", "2025-11-30T09:30")
    code, out, err = run("parse", str(d), "--tz", "UTC", "--year", "2025", *window)
    assert code == 0, err
    assert [r["message"] for r in jsonl(out)] == ["inside"]
    assert "3 lines, 3 parsed, 0 unparsed, 2 outside --since/--until" in err, err
    assert "problems: unknown-format: 1" in err  # the binary file, skipped by the walk
    code, out, _ = run("parse", str(p), "--format", "table")
    assert code == 0 and "cron" in out


def test_rules_list_validate_test() -> None:
    code, out, _ = run("rules", "list")
    assert code == 0 and "sendmail.dsn-return-receipt" in out
    code, out, _ = run("rules", "list", "--format", "jsonl")
    assert len(jsonl(out)) >= 12
    code, out, _ = run("rules", "validate")
    assert code == 0 and "rules valid" in out
    code, out, err = run("rules", "test")
    assert code == 0, err
    assert re.search(r"\d+ rules, \d+ examples, \d+ annotated sample lines: ok", out)


NFS_DOWN = "Nov 30 07:4{}:12 nfsclient kernel: nfs: server {} not responding, still trying"
#: a site's rules: a threshold on a built-in line rule, and an override of a built-in rule
SITE_RULES = f"""\
rules:
  - id: site.nfs-flapping
    type: threshold
    title: An NFS server stopped answering twice
    severity: high
    description: d
    remediation: r
    of: nfs.server-not-responding
    count: 2
    window: 10m
    group_by: [host, server]
    examples:
      match:
        - lines: ['{NFS_DOWN.format(0, "10.1.1.1")}', '{NFS_DOWN.format(1, "10.1.1.1")}']
      no_match:
        - lines: ['{NFS_DOWN.format(0, "10.1.1.1")}', '{NFS_DOWN.format(1, "10.1.1.2")}']
overrides:
  - id: mail.delivery-silence
    enabled: true
    hosts: [mx1]
    window: 6h
"""


def test_rules_test_validate_and_scan_load_the_same_rule_set(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(SITE_RULES)
    samples = tmp_path / "samples" / "nfs"
    samples.mkdir(parents=True)
    log = samples / "syslog"
    log.write_text(
        f"{NFS_DOWN.format(0, '10.1.1.1')}\n# expect: site.nfs-flapping\n"
        f"{NFS_DOWN.format(1, '10.1.1.1')}\n"
    )
    os.utime(log, (datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp(),) * 2)
    code, out, err = run("rules", "validate", str(rules))
    assert code == 0, err
    assert out.strip() == "1 rules valid"
    code, out, err = run("rules", "test", str(rules), "--samples", str(samples.parent))
    assert code == 0, err
    assert out.strip() == "1 rules, 2 examples, 1 annotated sample lines: ok"
    code, out, err = run("scan", "--rules", str(rules), "--format", "jsonl", "-q", str(log))
    assert code == 0, err
    assert [r["rule"] for r in jsonl(out) if r["rule"] == "site.nfs-flapping"] == [
        "site.nfs-flapping"
    ]
    # without the built-in pack all three refuse the rules alike
    for cmd in (
        ["rules", "validate", str(rules), "--no-builtin-rules"],
        ["rules", "test", str(rules), "--no-builtin-rules"],
    ):
        code, _, err = run(*cmd)
        assert code == 2, cmd
        assert "refers to unknown rule 'nfs.server-not-responding'" in err, cmd
        assert "override of unknown rule 'mail.delivery-silence'" in err, cmd
    code, _, err = run("scan", "--rules", str(rules), "--no-builtin-rules", str(log))
    assert code == 2 and "unknown rule" in err
    code, _, err = run("rules", "test", "--no-builtin-rules")
    assert code == 2 and "needs a DIR" in err


def test_rules_validate_reports_fields_no_step_captures(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    bad = SITE_RULES.replace("group_by: [host, server]", "group_by: [host, srv]")
    (rules / "site.yaml").write_text(bad)
    line = 1 + bad.splitlines().index("    group_by: [host, srv]")
    code, out, err = run("rules", "validate", str(rules))
    assert code == 2, err
    assert (
        f"error: {rules / 'site.yaml'}:{line}: [site.nfs-flapping] group_by field 'srv' never "
        "exists on the matches of 'nfs.server-not-responding'"
    ) in err
    assert "('nfs.server-not-responding' captures: server, state)" in err
    code, _, err = run("scan", "--rules", str(rules), str(SAMPLES / "syslog"))
    assert code == 2 and f"site.yaml:{line}: [site.nfs-flapping] group_by field 'srv'" in err
    # a field only journal input could carry, on a rule that does not select the journal
    maybe = SITE_RULES.replace("group_by: [host, server]", "group_by: [host, _BOOT_ID]")
    (rules / "site.yaml").write_text(maybe)
    code, out, err = run("rules", "validate", str(rules))
    assert code == 0, err
    assert f"warning: {rules / 'site.yaml'}:{line}: [site.nfs-flapping] group_by field" in err
    assert "only a journal field could supply it" in err


def test_rules_validate_and_test_report_bad_rules(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        """rules:
  - id: demo.one
    title: t
    severity: low
    description: d
    remediation: r
    match: {message: {regex: '^boom (?P<what>\\w+)$'}}
    examples:
      match: ['Nov 30 08:00:00 vm x[1]: boom ok', 'Nov 30 08:00:00 vm x[1]: no boom']
      no_match: []
"""
    )
    code, out, _ = run("rules", "validate", str(tmp_path))
    assert code == 0
    code, out, err = run("rules", "test", str(tmp_path))
    assert code == 1
    assert f"{tmp_path / 'r.yaml'}:9" in err and "match example did not match" in err
    assert "needs at least one match and one no_match example" in err
    (tmp_path / "r.yaml").write_text("rules:\n  - id: demo.one\n    severity: loud\n")
    code, _, err = run("rules", "validate", str(tmp_path))
    assert code == 2 and "r.yaml:3: unknown severity 'loud'" in err


def test_demo_samples_scan_finds_every_builtin_rule() -> None:
    code, out, err = run("scan", str(SAMPLES), "--format", "jsonl")
    assert code == 0, err
    found = {r["rule"] for r in jsonl(out)}
    code, listed, _ = run("rules", "list", "--format", "jsonl")
    reporting = {r["id"] for r in jsonl(listed) if r["enabled"] and r["reports"]}
    assert reporting <= found, reporting - found
    assert "0 candidates unparsed" in err


def test_events_refuse_inputs_that_cannot_be_read_twice(tmp_path: Path) -> None:
    """--events re-reads the inputs for the event rows: stdin is gone by then."""
    code, _, err = run("scan", "-", "--parquet", str(tmp_path / "p"), "--events", input="x\n")
    assert code == 2 and "--events reads the inputs again: not with - or --journal" in err
