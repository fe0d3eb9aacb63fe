"""The lines around findings: ``logwarden show KEY|FILE:LINE [-C N]``, ``scan --context N``
in JSONL and ``report --context N``.

The mail sample (``mail.log.2.gz``, ``mail.log.1``, ``mail.log``) is copied to ``tmp_path``
and scanned there; every shown line is compared with the file's own lines, read here
independently (``gzip`` for the archive). Rotation is done by the real ``logrotate``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SAMPLES, logrotate, shared_path
from tests.test_cli_correlation import MTIME, mail, run  # noqa: F401 - mail is a fixture

SHOWN = re.compile(r"^([> ]) +(\d+)  (.*)$")


def file_lines(path: Path) -> list[str]:
    """The file's lines as a reader sees them (index 0 is line 1)."""
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        data: bytes = f.read()
    return data.decode("utf-8", "replace").split("\n")[: data.count(b"\n")]


def scan_jsonl(*args: str) -> list[dict[str, Any]]:
    code, out, err = run("scan", "--tz", "UTC", "--format", "jsonl", "-q", *args)
    assert code == 0, err
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def findings_file(tmp_path: Path, *paths: Path) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path / "findings.jsonl"
    found = scan_jsonl(*map(str, paths))
    out.write_text("".join(json.dumps(f) + "\n" for f in found))
    return out, found


def at(findings: list[dict[str, Any]], source: str, rule: str | None = None) -> dict[str, Any]:
    (f,) = [x for x in findings if x["source"] == source and rule in (None, x["rule"])]
    return f


def shown(out: str) -> dict[str, list[tuple[bool, int, str]]]:
    """The ``show`` output's lines per ``==> file <==`` header: (own line, number, text)."""
    files: dict[str, list[tuple[bool, int, str]]] = {}
    current: list[tuple[bool, int, str]] | None = None
    for row in out.splitlines():
        if row.startswith("==> ") and row.endswith(" <=="):
            current = files.setdefault(row[4:-4], [])
        elif current is not None and (m := SHOWN.match(row)):
            current.append((m[1] == ">", int(m[2]), m[3]))
    return files


def expected(path: Path, own: list[int], n: int) -> list[tuple[bool, int, str]]:
    lines = file_lines(path)
    numbers = sorted({k for x in own for k in range(max(1, x - n), min(len(lines), x + n) + 1)})
    return [(k in own, k, lines[k - 1]) for k in numbers]


# -- show -------------------------------------------------------------------------------------


def test_show_key_on_a_plain_file_prints_the_lines_around_it(mail: Path, tmp_path: Path) -> None:
    jsonl, found = findings_file(tmp_path, mail)
    f = at(found, f"{mail}/mail.log:5")
    code, out, err = run("show", f["key"][:7], "--findings", str(jsonl), "-C", "2")
    assert code == 0, err
    assert f["key"] in out.splitlines()[0] and f["rule"] in out.splitlines()[0]
    assert shown(out) == {str(mail / "mail.log"): expected(mail / "mail.log", [5], 2)}
    assert "--" not in out.splitlines()


def test_show_a_finding_in_the_gz_member_of_the_rotation_set(mail: Path, tmp_path: Path) -> None:
    jsonl, found = findings_file(tmp_path, mail)
    f = at(found, f"{mail}/mail.log.2.gz:311")
    code, out, err = run("show", f["key"], "--findings", str(jsonl), "-C", "3")
    assert code == 0, err
    assert shown(out) == {str(mail / "mail.log.2.gz"): expected(mail / "mail.log.2.gz", [311], 3)}


def test_show_a_correlation_with_lines_in_two_files(mail: Path, tmp_path: Path) -> None:
    """mail.log.1 cut in two after the last status-notification timeout: the silent-stop
    sequence begins in mail.log.1 and ends in mail.log, one rotation set."""
    lines = (SAMPLES / "mail" / "mail.log.1").read_text().splitlines(keepends=True)
    cut = max(i for i, x in enumerate(lines) if "Initial status notification" in x) + 1
    logs = tmp_path / "split"
    logs.mkdir()
    for name, part in (("mail.log.1", lines[:cut]), ("mail.log", lines[cut:])):
        (logs / name).write_text("".join(part))
        os.utime(logs / name, (MTIME, MTIME))
    jsonl, found = findings_file(tmp_path, logs)
    (f,) = [x for x in found if x["rule"] == "dovecot.silent-stop"]
    own = {r["source"] for r in f["related"]}
    first = sorted(int(s.rpartition(":")[2]) for s in own if s.startswith(f"{logs}/mail.log.1:"))
    last = sorted(int(s.rpartition(":")[2]) for s in own if s.startswith(f"{logs}/mail.log:"))
    assert first and last
    code, out, err = run("show", f["key"][:10], "--findings", str(jsonl), "-C", "1")
    assert code == 0, err
    assert shown(out) == {
        str(logs / "mail.log.1"): expected(logs / "mail.log.1", first, 1),
        str(logs / "mail.log"): expected(logs / "mail.log", last, 1),
    }
    assert out.index(f"==> {logs}/mail.log.1 <==") < out.index(f"==> {logs}/mail.log <==")


def test_show_file_line_needs_no_finding() -> None:
    code, out, err = run("show", "samples/mail/mail.log:5", "-C", "2")
    assert code == 0, err
    assert out.splitlines()[0] == "==> samples/mail/mail.log <=="
    assert shown(out) == {"samples/mail/mail.log": expected(SAMPLES / "mail" / "mail.log", [5], 2)}
    code, out, _ = run("show", "samples/mail/mail.log.2.gz:1", "-C", "1")
    assert code == 0
    assert shown(out)["samples/mail/mail.log.2.gz"] == expected(
        SAMPLES / "mail" / "mail.log.2.gz", [1], 1
    )


def test_show_errors_name_the_location_and_exit_2(mail: Path, tmp_path: Path) -> None:
    code, _, err = run("show", f"{tmp_path}/gone.log:7")
    assert code == 2 and f"{tmp_path}/gone.log:7: context-unavailable: no such file" in err
    n = len(file_lines(SAMPLES / "mail" / "mail.log"))
    code, _, err = run("show", f"samples/mail/mail.log:{n + 1}")
    assert code == 2 and f"samples/mail/mail.log:{n + 1}: " in err and f"only {n} lines" in err
    code, _, err = run("show", "samples/mail/mail.log:0")
    assert code == 2 and "numbered from 1" in err

    jsonl, found = findings_file(tmp_path, mail)
    code, _, err = run("show", "0000ffff", "--findings", str(jsonl))
    assert code == 2 and "no finding with a key starting '0000ffff'" in err
    code, _, err = run("show", found[0]["key"])
    assert code == 2 and "--findings" in err
    code, _, err = run("show", "xyz!", "--findings", str(jsonl))
    assert code == 2 and "neither a finding key" in err

    f = at(found, f"{mail}/mail.log:5")
    for p in mail.iterdir():
        p.unlink()
    code, out, err = run("show", f["key"], "--findings", str(jsonl))
    assert code == 2
    assert f"{mail}/mail.log:5: context-unavailable: no such file" in err
    assert f["key"] in out  # the finding itself is still shown


def test_show_a_prefix_of_two_keys_is_ambiguous_and_a_bad_line_is_located(
    mail: Path, tmp_path: Path
) -> None:
    _, found = findings_file(tmp_path, mail)
    a, b = dict(found[0]), dict(found[1])
    a["key"], b["key"] = "abcd1" + a["key"][5:], "abcd2" + b["key"][5:]
    jsonl = tmp_path / "two.jsonl"
    jsonl.write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n")
    code, _, err = run("show", "abcd", "--findings", str(jsonl))
    assert code == 2 and "start of 2 finding keys" in err
    code, out, err = run("show", "abcd2", "--findings", str(jsonl), "-C", "0")
    assert code == 0, err
    assert b["rule"] in out
    jsonl.write_text(json.dumps(a) + "\n" + '{"key": "abcd3", "broken"\n')
    code, _, err = run("show", "abcd3", "--findings", str(jsonl))
    assert code == 2 and f"{jsonl}:2: not a finding" in err


def test_show_from_a_store(mail: Path, tmp_path: Path) -> None:
    store = tmp_path / "findings.sqlite"
    code, _, err = run("scan", "--tz", "UTC", "-q", "--store", str(store), str(mail))
    assert code == 0, err
    found = scan_jsonl(str(mail))
    f = at(found, f"{mail}/mail.log.1:254", "dovecot.silent-stop")
    code, out, err = run("show", f["key"][:8], "--store", str(store), "-C", "0")
    assert code == 0, err
    own = sorted(int(r["source"].rpartition(":")[2]) for r in f["related"])
    assert shown(out) == {str(mail / "mail.log.1"): expected(mail / "mail.log.1", own, 0)}
    assert own == [154, 156, 158, 254] and out.splitlines().count("--") == 3  # runs apart
    code, _, err = run("show", f["key"][:8], "--state", str(tmp_path / "none.sqlite"))
    assert code == 2 and "no such store" in err
    code, _, err = run("show", f["key"][:8], "--store", str(mail / "mail.log"))
    assert code == 2 and f"{mail}/mail.log: cannot read findings" in err


def rotate(log: Path) -> None:
    """Debian's rsyslog rotation: compress, delaycompress, a new empty file."""
    logrotate(log.parent.parent, [log], "rotate 9\ncompress\ndelaycompress\ncreate")


def test_show_after_logrotate_finds_the_lines_in_the_rotated_files(
    mail: Path, tmp_path: Path
) -> None:
    jsonl, found = findings_file(tmp_path, mail)
    before = {name: file_lines(mail / name) for name in ("mail.log", "mail.log.1")}
    rotate(mail / "mail.log")
    assert sorted(p.name for p in mail.iterdir()) == [
        "mail.log",
        "mail.log.1",
        "mail.log.2.gz",
        "mail.log.3.gz",
    ]
    # the live name now holds other lines: the first six of the old file, shifted by one
    (mail / "mail.log").write_text("".join(x + "\n" for x in ["new", *before["mail.log"][:6]]))

    f = at(found, f"{mail}/mail.log:5")  # now mail.log.1:5
    code, out, err = run("show", f["key"], "--findings", str(jsonl), "-C", "1")
    assert code == 0, err
    assert f"({mail}/mail.log:5 is now {mail}/mail.log.1:5: the file was rotated)" in out
    assert shown(out) == {str(mail / "mail.log.1"): expected(mail / "mail.log.1", [5], 1)}
    assert file_lines(mail / "mail.log.1") == before["mail.log"]

    f = at(found, f"{mail}/mail.log:294")  # beyond the new file's end; now in mail.log.1
    code, out, err = run("show", f["key"], "--findings", str(jsonl), "-C", "1")
    assert code == 0, err
    assert list(shown(out)) == [str(mail / "mail.log.1")]

    f = at(found, f"{mail}/mail.log.1:254", "dovecot.silent-stop")  # now in mail.log.2.gz
    own = sorted(int(r["source"].rpartition(":")[2]) for r in f["related"])
    code, out, err = run("show", f["key"], "--findings", str(jsonl), "-C", "2")
    assert code == 0, err
    assert shown(out) == {str(mail / "mail.log.2.gz"): expected(mail / "mail.log.2.gz", own, 2)}
    assert file_lines(mail / "mail.log.2.gz") == before["mail.log.1"]

    # gone from every member: a located error
    (mail / "mail.log.1").unlink()
    f = at(found, f"{mail}/mail.log:5")
    code, _, err = run("show", f["key"], "--findings", str(jsonl))
    assert code == 2
    assert f"{mail}/mail.log:5: context-unavailable: this line no longer holds" in err
    assert f"not in {mail}/mail.log.2.gz, {mail}/mail.log.3.gz either" in err


def test_show_does_not_take_the_same_message_at_the_same_line_of_another_file(
    mail: Path, tmp_path: Path
) -> None:
    """mail.log:281 and mail.log.1:281 both say process_limit (100) reached, at other times:
    with mail.log gone, its line is not taken from mail.log.1."""
    jsonl, found = findings_file(tmp_path, mail)
    f = at(found, f"{mail}/mail.log:272")
    assert f"{mail}/mail.log:281" in {r["source"] for r in f["related"]}
    old, other = file_lines(mail / "mail.log")[280], file_lines(mail / "mail.log.1")[280]
    assert old[15:] == other[15:] and old[:15] != other[:15]
    (mail / "mail.log").unlink()
    code, out, err = run("show", f["key"], "--findings", str(jsonl), "-C", "0")
    assert code == 2
    assert f"{mail}/mail.log:281: context-unavailable: no such file" in err
    assert "mail.log.1 <==" not in out and "is now" not in out


def test_show_escapes_control_characters(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text("one\nNov 30 08:00:00 vm x[1]: \x1b[31mred\x07\ntwo\n")
    code, out, _ = run("show", f"{log}:2", "-C", "1")
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "> 2  Nov 30 08:00:00 vm x[1]: \\x1b[31mred\\x07" in out.splitlines()


# -- scan --context and report --context --------------------------------------------------------


def test_scan_context_in_jsonl_is_the_files_own_lines(mail: Path) -> None:
    found = scan_jsonl("--context", "2", str(mail))
    assert found
    cache: dict[str, list[str]] = {}
    for f in found:
        own = {(s, int(n)) for s, _, n in (r["source"].rpartition(":") for r in f["related"])}
        want = []
        for src in dict.fromkeys(s for s, _ in sorted(own, key=lambda x: x[1])):
            lines = cache.setdefault(src, file_lines(Path(src)))
            mine = sorted(n for s, n in own if s == src)
            numbers = sorted(
                {k for x in mine for k in range(max(1, x - 2), min(len(lines), x + 2) + 1)}
            )
            want += [
                {"source": src, "line": k, "text": lines[k - 1], "match": k in mine}
                for k in numbers
            ]
        assert f["context"] == want, f["key"]
        assert "context_problems" not in f
    without = scan_jsonl(str(mail))
    assert [{k: v for k, v in f.items() if k != "context"} for f in found] == without


def test_scan_context_usage_errors(mail: Path) -> None:
    code, _, err = run("scan", "--context", "2", str(mail))
    assert code == 2 and "--context needs --format jsonl" in err
    code, _, err = run("scan", "--context", "2", "--format", "jsonl", "-")
    assert code == 2 and "not with - or --journal" in err


def test_report_context_is_escaped(mail: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, _, err = run("report", "--tz", "UTC", "-q", "--context", "1", "-o", str(out), str(mail))
    assert code == 0, err
    html = out.read_text()
    assert html.count('<details class="ctx">') == len(scan_jsonl(str(mail)))
    # mail.log:6, after the finding at line 5, carries <...> addresses
    line6 = file_lines(mail / "mail.log")[5]
    assert "to=<billing@forged.example.com>" in line6
    assert line6.replace("<", "&lt;").replace(">", "&gt;") in html
    assert "to=<billing" not in html
    assert '<span class="own">&gt; 5  Nov 29 06:08:41 mx1 sm-mta[2447]: 6AT68eQa002440: ' in html

    store = tmp_path / "s.sqlite"
    assert run("scan", "--tz", "UTC", "-q", "--store", str(store), str(mail))[0] == 0
    code, _, err = run("report", "-q", "--from-store", str(store), "--context", "0", "-o", str(out))
    assert code == 0, err
    assert '<details class="ctx">' in out.read_text()
    plain = tmp_path / "plain.html"
    assert run("report", "-q", "--from-store", str(store), "-o", str(plain))[0] == 0
    assert '<details class="ctx">' not in plain.read_text()  # no context asked for

    # the logs gone since: each missing line is counted, listed and shown in the report
    lost = [f for f in scan_jsonl(str(mail)) if f["source"].startswith(f"{mail}/mail.log:")]
    own = {r["source"] for f in lost for r in f["related"]}
    (mail / "mail.log").unlink()
    code, _, err = run("report", "--from-store", str(store), "--context", "0", "-o", str(out))
    assert code == 0, err
    assert f"context: {len(own)} lines could not be shown" in err
    assert f"{mail}/mail.log:5: context-unavailable: no such file" in err
    assert out.read_text().count('<span class="gone">') == len(own)


@pytest.mark.parametrize("where", ["samples", "corpus"])
def test_every_parsed_line_of_the_samples_and_corpus_passes_its_own_check(where: str) -> None:
    """The check that a line is still the recorded one (message, time of day) holds for
    every event the grammars read, in every format; one read per file."""
    from pipeline.context import Target, gather
    from pipeline.engine import Engine, ScanOptions, ScanStats, Unparsed
    from pipeline.model import Related

    path = SAMPLES if where == "samples" else shared_path("corpus")
    events = [
        e
        for e in Engine([], ScanOptions()).parse([str(path)], ScanStats())
        if not isinstance(e, Unparsed)
    ]
    assert len({e.format for e in events}) >= 4
    targets = [
        [
            Target(
                r.source,
                r.line,
                r.message,
                r.timestamp.strftime("%H:%M:%S") if r.timestamp else None,
            )
        ]
        for r in map(Related.of, events)
    ]
    contexts = gather(targets, 0)
    assert [c.problems for c in contexts if c.problems] == []
    assert all(c.lines[0].match for c in contexts)


def test_show_and_context_are_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    assert "logwarden show" in readme and "--context" in readme
    code, out, _ = run("show", "--help")
    assert code == 0 and "Usage:" in out
