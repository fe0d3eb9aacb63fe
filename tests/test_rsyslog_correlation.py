"""Correlation end to end through a real rsyslogd: stories told over several lines and seconds.

Each scenario is its own rsyslog stream (its own pair of files, see
``tests/rsyslog_helper.py``), so one scenario's lines cannot complete or break another's
correlation. All scenarios play on one timeline: each line is sent through ``logger`` at its
offset in seconds, so the slowest scenario (a few seconds of mail silence) sets the pace.
Then ``logwarden scan`` of each file must give exactly the expected findings: rule, the line
it points at, fields, ``count``, ``timestamp``/``last_seen`` and, where it matters, the lines
behind it; nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline.timeinfer import local_zone
from tests.conftest import logwarden
from tests.rsyslog_helper import FILES, Line, running_rsyslog, send, wait_written
from tests.screen_helper import table_rows

pytestmark = pytest.mark.real


def timeout(service: str) -> str:
    return (
        f"master: Error: service({service}): Initial status notification not received in "
        "30 seconds, killing the process"
    )


def limit(service: str) -> str:
    return (
        f"master: Warning: service({service}): process_limit (100) reached, "
        "client connections are being dropped"
    )


def login(n: int) -> str:
    return (
        "imap-login: Login: user=<anna>, method=PLAIN, rip=203.0.113.45, lip=192.0.2.10, "
        f"mpid={2490 + n}, TLS, session=<{'abcdef'[n]}>"
    )


def unit_failed(unit: str, result: str = "exit-code") -> Line:
    return Line("systemd", f"{unit}: Failed with result '{result}'.", pid=1)


REMOUNT = Line(
    "systemd",
    "Failed to start systemd-remount-fs.service - Remount Root and Kernel File Systems.",
    pid=1,
)
CRASH = "[core:notice] [pid 2487] AH00052: child pid {} exit signal Segmentation fault (11)"
#: lines of a host that keeps logging, none of them a delivery or a login
CRON = Line("CRON", "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)", pid=2211)
STARTING = Line("systemd", "Starting logrotate.service - Rotate log files...", pid=1)


@dataclass(frozen=True)
class Want:
    """One finding a scenario's file must yield."""

    rule: str
    line: int  # the line the finding points at (``source``), 1-based
    fields: Mapping[str, str] = field(default_factory=dict)
    #: the fields are exactly ``fields`` (else: at least these)
    exact: bool = False
    #: fields whose value is the timestamp of a line: name -> line
    stamps: Mapping[str, int] = field(default_factory=dict)
    count: int | None = 1  # None: not checked
    #: the line whose time is the finding's timestamp (default: ``line``), plus ``later``
    at: int | None = None
    later: timedelta = timedelta(0)
    #: the line whose time is ``last_seen`` (default: the finding's timestamp)
    last_seen_at: int | None = None
    #: the lines the finding lists as behind it (None: not checked)
    related: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    lines: tuple[tuple[float, Line], ...]  # (seconds after the start, line)
    want: tuple[Want, ...]
    #: scan with a rule file enabling mail.delivery-silence for this host, window 3 s
    silence_override: bool = False

    def __str__(self) -> str:
        return self.name


SILENCE_WINDOW = timedelta(seconds=3)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "silent-stop",
        (
            (0, Line("dovecot", timeout("anvil"))),
            (0, Line("dovecot", "master: Error: service(log): child 1210 killed with signal 9")),
            (1, Line("dovecot", limit("pop3-login"))),
            (2, Line("dovecot", limit("pop3-login"))),
        ),
        (
            Want(
                "dovecot.status-notification-timeout",
                1,
                {"service": "anvil", "seconds": "30"},
                exact=True,
            ),
            # the second warning is folded into the first (same host and service, same hour)
            Want(
                "dovecot.process-limit-reached",
                3,
                {"service": "pop3-login", "setting": "process_limit", "limit": "100"},
                exact=True,
                count=2,
                last_seen_at=4,
            ),
            # completed by the first warning; the story is told once, not per warning
            Want(
                "dovecot.silent-stop",
                3,
                {"service": "anvil", "seconds": "30", "service.2": "pop3-login", "limit": "100"},
                count=None,
                related=(1, 3),
            ),
        ),
    ),
    Scenario(
        "limit-only",
        ((0, Line("dovecot", limit("pop3-login"))),),
        (Want("dovecot.process-limit-reached", 1, {"service": "pop3-login"}),),
    ),
    Scenario(
        "limit-then-timeout",
        ((0, Line("dovecot", limit("pop3-login"))), (1, Line("dovecot", timeout("anvil")))),
        (
            Want("dovecot.process-limit-reached", 1, {"service": "pop3-login"}),
            Want("dovecot.status-notification-timeout", 2, {"service": "anvil"}),
        ),
    ),
    Scenario(
        "spoofed-timeout-then-limit",
        ((0, Line("myscript", timeout("anvil"))), (1, Line("dovecot", limit("pop3-login")))),
        (Want("dovecot.process-limit-reached", 2, {"service": "pop3-login"}),),
    ),
    Scenario(
        "suppressed-limit",
        (
            (0, Line("dovecot", limit("pop3-login"))),
            (1.2, Line("dovecot", limit("pop3-login"))),
            (2.4, Line("dovecot", limit("pop3-login"))),
            (2.5, Line("dovecot", limit("imap-login"))),
        ),
        (
            Want(
                "dovecot.process-limit-reached",
                1,
                {"service": "pop3-login", "setting": "process_limit", "limit": "100"},
                exact=True,
                count=3,
                last_seen_at=3,
            ),
            # another service is another group
            Want("dovecot.process-limit-reached", 4, {"service": "imap-login"}),
        ),
    ),
    # SIGNATURES.md section 2, as sendmail writes it with -Lsm-mta
    Scenario(
        "dsn-receipt",
        tuple(
            (0, line)
            for line in (
                Line(
                    "sm-mta",
                    "06FAFTbL012697: from=<spamvictim@example.org>, size=121, class=0, "
                    "nrcpts=1, msgid=<202607151015.06FAFTbL012697@example.net>, proto=ESMTP, "
                    "daemon=IPv4-port-587, relay=client.example.net [198.51.100.23]",
                    pid=12697,
                ),
                Line(
                    "sm-mta",
                    "06FAFTbL012697: to=<legal_address@example.org>, "
                    "ctladdr=<spamvictim@example.org> (1010/500), delay=00:00:01, "
                    "xdelay=00:00:00, mailer=local, pri=30456, dsn=2.0.0, stat=Sent",
                    pid=12698,
                ),
                Line("sm-mta", "06FAFTbL012697: 06FAFVbL012698: DSN: Return receipt", pid=12698),
                Line(
                    "sm-mta",
                    "06FAFVbL012698: to=<spamvictim@example.org>, delay=00:00:00, "
                    "xdelay=00:00:00, mailer=local, pri=30000, dsn=2.0.0, stat=Sent",
                    pid=12698,
                ),
            )
        ),
        (
            Want(
                "sendmail.dsn-return-receipt",
                3,
                {
                    "queue_id": "06FAFTbL012697",
                    "dsn_queue_id": "06FAFVbL012698",
                    "sender": "spamvictim@example.org",
                    "relay": "client.example.net [198.51.100.23]",
                },
                exact=True,
            ),
        ),
    ),
    # a from= line another program wrote names no sender, and does not replace a real one
    Scenario(
        "dsn-spoofed-from",
        tuple(
            (0, line)
            for line in (
                Line(
                    "sendmail",
                    "6ASE2o1q030410: from=<alice@example.org>, size=2240, class=0, nrcpts=1, "
                    "msgid=<20261128140251.1@example.org>, proto=ESMTP, daemon=MTA-v4, "
                    "relay=mail.example.org [192.0.2.25]",
                    pid=30410,
                ),
                Line(
                    "myscript",
                    "6ASE2o1q030410: from=<decoy@example.net>, size=1, class=0, nrcpts=1, "
                    "proto=ESMTP, daemon=MTA-v4, relay=decoy.example.net [203.0.113.66]",
                ),
                Line("sendmail", "6ASE2o1q030410: 6ASE2p1q030411: DSN: Return receipt", pid=30411),
                Line(
                    "myscript",
                    "6ASE2o1q030500: from=<decoy@example.net>, size=1, class=0, nrcpts=1, "
                    "proto=ESMTP, daemon=MTA-v4, relay=decoy.example.net [203.0.113.66]",
                ),
                Line("sendmail", "6ASE2o1q030500: 6ASE2p1q030501: DSN: Return receipt", pid=30501),
            )
        ),
        (
            Want(
                "sendmail.dsn-return-receipt",
                3,
                {
                    "queue_id": "6ASE2o1q030410",
                    "dsn_queue_id": "6ASE2p1q030411",
                    "sender": "alice@example.org",
                    "relay": "mail.example.org [192.0.2.25]",
                },
                exact=True,
            ),
            Want(
                "sendmail.dsn-return-receipt",
                5,
                {"queue_id": "6ASE2o1q030500", "dsn_queue_id": "6ASE2p1q030501"},
                exact=True,
            ),
        ),
    ),
    Scenario(
        "remount-cascade",
        (
            (0, REMOUNT),
            (0, unit_failed("systemd-remount-fs.service")),
            (1, unit_failed("systemd-tmpfiles-setup.service")),
            (1, unit_failed("systemd-journal-flush.service")),
            (2, unit_failed("ssh.service")),
        ),
        (
            Want("systemd.remount-fs-failed", 1, exact=True),
            Want(
                "systemd.unit-failed",
                2,
                {"unit": "systemd-remount-fs.service", "result": "exit-code"},
                exact=True,
            ),
            Want("systemd.unit-failed", 3, {"unit": "systemd-tmpfiles-setup.service"}),
            Want("systemd.unit-failed", 4, {"unit": "systemd-journal-flush.service"}),
            Want("systemd.unit-failed", 5, {"unit": "ssh.service"}),
            # the remount unit's own failure is not one of the three
            Want(
                "systemd.remount-fs-cascade",
                5,
                {"unit": "systemd-tmpfiles-setup.service"},
                count=None,
                related=(1, 3, 4, 5),
            ),
        ),
    ),
    Scenario(
        "remount-two-units",
        (
            (0, REMOUNT),
            (0, unit_failed("systemd-remount-fs.service")),
            (1, unit_failed("systemd-tmpfiles-setup.service")),
            (1, unit_failed("systemd-journal-flush.service")),
            (2, unit_failed("systemd-journal-flush.service", "start-limit-hit")),
        ),
        (
            Want("systemd.remount-fs-failed", 1),
            Want("systemd.unit-failed", 2, {"unit": "systemd-remount-fs.service"}),
            Want("systemd.unit-failed", 3, {"unit": "systemd-tmpfiles-setup.service"}),
            Want("systemd.unit-failed", 4, {"unit": "systemd-journal-flush.service"}),
            Want(
                "systemd.unit-failed",
                5,
                {"unit": "systemd-journal-flush.service", "result": "start-limit-hit"},
            ),
        ),
    ),
    # Apache with `ErrorLog syslog:`: three children die within ten minutes
    Scenario(
        "child-crash-loop",
        tuple((t, Line("apache2", CRASH.format(4411 + t), pid=2487)) for t in range(3)),
        (
            Want("apache.child-crashed", 1, {"child_pid": "4411", "signal": "11"}),
            Want("apache.child-crashed", 2, {"child_pid": "4412"}),
            Want("apache.child-crashed", 3, {"child_pid": "4413"}),
            # reported at the crash that crossed the threshold; first_seen is the first crash
            Want(
                "apache.child-crash-loop",
                3,
                count=3,
                stamps={"first_seen": 1},
                last_seen_at=3,
                related=(1, 2, 3),
            ),
        ),
    ),
    # a login, then more than the window of other lines and no login: one finding
    Scenario(
        "mail-silence",
        ((0, Line("dovecot", login(0))), (4.5, CRON), (4.6, STARTING)),
        (
            Want(
                "mail.delivery-silence",
                1,
                exact=True,
                stamps={"silent_since": 1},
                at=1,
                later=SILENCE_WINDOW,
                related=(1,),
            ),
        ),
        silence_override=True,
    ),
    # logins keep coming every second: never silent for the window
    Scenario(
        "mail-logins-continue",
        (*((t, Line("dovecot", login(t))) for t in range(5)), (4.5, CRON), (4.6, STARTING)),
        (),
        silence_override=True,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class Played:
    files: dict[str, dict[str, Path]]  # scenario -> file kind -> path
    hosts: dict[str, str]  # scenario -> host name rsyslog wrote
    #: (path, line) -> the timestamp ``logwarden parse`` reads there (ISO 8601)
    stamps: dict[tuple[str, int], str]


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    assert len(BY_NAME) == len(SCENARIOS), "two scenarios with one name"
    names = [s.name for s in SCENARIOS]
    with running_rsyslog(tmp_path_factory.mktemp("rsyslog"), names) as rsyslog:
        timeline = sorted(
            ((at, i, s.name, line) for s in SCENARIOS for i, (at, line) in enumerate(s.lines)),
            key=lambda item: (item[0], item[1]),
        )
        start = time.monotonic()
        for at, _, name, line in timeline:
            wait = start + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            send(rsyslog.streams[name].socket, line)
        hosts = wait_written(rsyslog, {s.name: [line for _, line in s.lines] for s in SCENARIOS})
        files = {name: rsyslog.streams[name].files for name in names}
        paths = [str(p) for kinds in files.values() for p in kinds.values()]
        proc = logwarden("parse", *paths)
        assert proc.returncode == 0, proc.stderr
        stamps = {}
        for raw in proc.stdout.splitlines():
            event = json.loads(raw)
            path, _, n = str(event["source"]).rpartition(":")
            stamps[path, int(n)] = str(event["timestamp"])
        yield Played(files, hosts, stamps)


def silence_rules(tmp_path: Path, host: str) -> Path:
    """A user rule directory that enables mail.delivery-silence for ``host``, window 3 s."""
    rules = tmp_path / "rules"
    rules.mkdir(parents=True)
    (rules / "mail-hosts.yaml").write_text(
        "overrides:\n"
        "  - id: mail.delivery-silence\n"
        "    enabled: true\n"
        f"    hosts: [{json.dumps(host)}]\n"
        f"    window: {int(SILENCE_WINDOW.total_seconds())}s\n",
        encoding="utf-8",
    )
    return rules


def scan(played: Played, scenario: Scenario, kind: str, tmp_path: Path, *args: str) -> str:
    path = played.files[scenario.name][kind]
    if scenario.silence_override:
        args = (*args, "--rules", str(silence_rules(tmp_path, played.hosts[scenario.name])))
    proc = logwarden("scan", str(path), *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _line(source: object, path: Path) -> int:
    name, _, n = str(source).rpartition(":")
    assert name == str(path), source
    return int(n)


def check(played: Played, scenario: Scenario, kind: str, findings: list[dict[str, object]]) -> None:
    """``findings`` (as ``--format jsonl`` writes them) are exactly ``scenario.want``."""
    path = played.files[scenario.name][kind]
    text = path.read_text(encoding="utf-8").splitlines()

    def stamp(n: int) -> datetime:
        return datetime.fromisoformat(played.stamps[str(path), n])

    def show(n: int) -> str:
        return f"line {n} {text[n - 1]!r}"

    got = sorted((str(f["rule"]), _line(f["source"], path)) for f in findings)
    want = sorted((w.rule, w.line) for w in scenario.want)
    assert got == want, (
        f"{scenario} ({kind}, {path}): findings (rule, line)\n  got  {got}\n  want {want}\n"
        + "\n".join(f"  {i}: {t}" for i, t in enumerate(text, 1))
    )
    assert len({f["key"] for f in findings}) == len(findings), "two findings with one key"
    by = {(str(f["rule"]), _line(f["source"], path)): f for f in findings}
    problems: list[str] = []
    for w in scenario.want:
        f = by[w.rule, w.line]
        fields = f["fields"]
        assert isinstance(fields, dict)
        expect = {**w.fields, **{k: stamp(n).isoformat() for k, n in w.stamps.items()}}
        have = fields if w.exact else {k: fields.get(k) for k in expect}
        if have != expect:
            problems.append(f"{w.rule} on {show(w.line)}: fields {fields}, want {expect}")
        if f["host"] != played.hosts[scenario.name]:
            problems.append(f"{w.rule} on {show(w.line)}: host {f['host']!r}")
        if w.count is not None and f["count"] != w.count:
            problems.append(f"{w.rule} on {show(w.line)}: count {f['count']}, want {w.count}")
        when = stamp(w.at or w.line) + w.later
        last = stamp(w.last_seen_at) if w.last_seen_at else when
        got_when = datetime.fromisoformat(str(f["timestamp"]))
        got_last = datetime.fromisoformat(str(f["last_seen"]))
        if (got_when, got_last) != (when, last):
            problems.append(
                f"{w.rule} on {show(w.line)}: timestamp/last_seen {got_when}/{got_last}, "
                f"want {when}/{last}"
            )
        if w.related is not None:
            related = f["related"]
            assert isinstance(related, list)
            lines = tuple(_line(r["source"], path) for r in related)
            if lines != w.related:
                problems.append(
                    f"{w.rule} on {show(w.line)}: related lines {lines}, want {w.related}"
                )
    assert not problems, f"{scenario} ({kind}, {path}):\n" + "\n".join(problems)


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FILES))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_scenario_yields_exactly_its_findings(
    played: Played, scenario: Scenario, kind: str, tmp_path: Path
) -> None:
    out = scan(played, scenario, kind, tmp_path, "--format", "jsonl")
    check(played, scenario, kind, [json.loads(raw) for raw in out.splitlines()])


@pytest.mark.parametrize("kind", list(FILES))
def test_suppressed_finding_keeps_the_key_of_its_first_line(
    played: Played, kind: str, tmp_path: Path
) -> None:
    """The folded finding is the first line's finding, updated: the same ``key``."""
    path = played.files["suppressed-limit"][kind]
    first = tmp_path / path.name
    first.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    alone = logwarden("scan", str(first), "--format", "jsonl")
    both = logwarden("scan", str(path), "--format", "jsonl")
    assert alone.returncode == both.returncode == 0, alone.stderr + both.stderr
    (single,) = (json.loads(raw) for raw in alone.stdout.splitlines())
    folded = [json.loads(raw) for raw in both.stdout.splitlines()]
    (same,) = (f for f in folded if _line(f["source"], path) == 1)
    assert (single["count"], same["count"]) == (1, 3)
    assert same["key"] == single["key"]


@pytest.mark.parametrize("kind", list(FILES))
def test_mail_silence_is_off_without_an_override(played: Played, kind: str) -> None:
    path = played.files["mail-silence"][kind]
    proc = logwarden("scan", str(path), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("name", ["silent-stop", "mail-silence"])
def test_correlation_findings_in_csv_and_table(played: Played, name: str, tmp_path: Path) -> None:
    """Every output format carries the same findings as jsonl, correlations included."""
    scenario = BY_NAME[name]
    out = scan(played, scenario, "traditional", tmp_path / "jsonl", "--format", "jsonl")
    jsonl = [json.loads(raw) for raw in out.splitlines()]
    check(played, scenario, "traditional", jsonl)
    want = sorted((f["rule"], f["source"], f["severity"]) for f in jsonl)

    out = scan(played, scenario, "traditional", tmp_path / "csv", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted((r["rule"], r["source"], r["severity"]) for r in rows) == want
    for row in rows:
        (f,) = (f for f in jsonl if (f["rule"], f["source"]) == (row["rule"], row["source"]))
        assert json.loads(row["fields"]) == f["fields"]
        assert (row["host"], row["timestamp"]) == (f["host"], f["timestamp"])

    table = scan(played, scenario, "traditional", tmp_path / "table", "--format", "table")
    zone = local_zone()
    want_rows = sorted(
        (
            str(f["severity"]),
            str(f["rule"]),
            datetime.fromisoformat(str(f["timestamp"])).astimezone(zone).strftime("%H:%M:%S"),
            str(f["count"]),
            str(f["host"]),
            str(f["program"]),
            Path(str(f["source"])).name,  # one input: its file name tells it apart
        )
        for f in jsonl
    )
    got = sorted(
        (
            r["severity"],
            r["rule"],
            r["time"][-len("hh:mm:ss") :],
            r["count"],
            r["host"],
            r["program"],
            r["source"],
        )
        for r in table_rows(table)
    )
    assert got == want_rows, table
