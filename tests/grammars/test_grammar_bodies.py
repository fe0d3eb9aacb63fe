"""Per-program body grammars behind ``parse_body``."""

from __future__ import annotations

import pytest

from pipeline.grammars import parse_body
from pipeline.grammars.bodies import body_parser

# --- sendmail ----------------------------------------------------------------------------------


def test_sendmail_from_line() -> None:
    fields = parse_body(
        "sm-mta",
        "06FAFTbL012697: from=<spamvictim@billauer.co.il>, size=121, class=0, nrcpts=1,"
        " msgid=<...>, proto=ESMTP, daemon=IPv4-port-587, relay=...",
    )
    assert fields == {
        "queue_id": "06FAFTbL012697",
        "from": "<spamvictim@billauer.co.il>",
        "size": "121",
        "class": "0",
        "nrcpts": "1",
        "msgid": "<...>",
        "proto": "ESMTP",
        "daemon": "IPv4-port-587",
        "relay": "...",
    }


def test_sendmail_to_line_with_parenthesised_value() -> None:
    fields = parse_body(
        "sm-mta",
        "06FAFTbL012697: to=<legal_address@billauer.co.il>, ctladdr=<spamvictim@billauer.co.il>"
        " (1010/500), delay=00:00:01, xdelay=00:00:00, mailer=local, pri=30456, dsn=2.0.0,"
        " stat=Sent",
    )
    assert fields["to"] == "<legal_address@billauer.co.il>"
    assert fields["ctladdr"] == "<spamvictim@billauer.co.il> (1010/500)"
    assert (fields["dsn"], fields["stat"]) == ("2.0.0", "Sent")


@pytest.mark.parametrize("program", ["sm-mta", "sendmail", "sm-msp-queue", "sm-mta-rx"])
def test_sendmail_dsn_return_receipt(program: str) -> None:
    assert parse_body(program, "6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt") == {
        "queue_id": "6AU8MP47017782",
        "dsn_queue_id": "6AU8MP47017783",
        "dsn": "Return receipt",
    }


def test_sendmail_failure_dsn_without_a_second_queue_id() -> None:
    assert parse_body("sendmail", "06FAFTbL012697: DSN: User unknown") == {
        "queue_id": "06FAFTbL012697",
        "dsn": "User unknown",
    }


def test_sendmail_relay_with_brackets_and_reject_with_spaces() -> None:
    fields = parse_body(
        "sm-mta",
        "s1NLaDQT022248: ruleset=check_rcpt, arg1=<a@hotmail.it>, relay=int0.example.net"
        " [80.253.155.119] (may be forged), reject=550 5.7.1 <a@hotmail.it>... Relaying denied",
    )
    assert fields["relay"] == "int0.example.net [80.253.155.119] (may be forged)"
    assert fields["reject"] == "550 5.7.1 <a@hotmail.it>... Relaying denied"


def test_sendmail_commas_inside_brackets_and_recipient_lists() -> None:
    fields = parse_body(
        "sendmail",
        "rA37ZTSC026254: to=a@b,c@d, delay=1, stat=Sent (Ok: queued as 12, id=5)",
    )
    assert fields["to"] == "a@b,c@d"
    assert fields["stat"] == "Sent (Ok: queued as 12, id=5)"


def test_sendmail_pairs_without_queue_id() -> None:
    fields = parse_body(
        "sm-mta",
        "ruleset=check_relay, arg1=[196.213.73.146], arg2=196.213.73.146,"
        " relay=[196.213.73.146], reject=421 4.3.2 Connection rate limit exceeded.",
    )
    assert "queue_id" not in fields
    assert fields["arg1"] == "[196.213.73.146]"


def test_sendmail_other_text_keeps_the_queue_id() -> None:
    assert parse_body(
        "sm-mta", "s1GNXHYB005133: [190.5.230.178]: possible SMTP attack: command=AUTH, count=5"
    ) == {"queue_id": "s1GNXHYB005133"}


def test_sendmail_text_without_structure() -> None:
    assert parse_body("sm-mta", "starting daemon (8.17.1): SMTP+queueing@00:10:00") == {}


# --- dovecot ------------------------------------------------------------------------------------


def test_dovecot_status_notification_timeout() -> None:
    assert parse_body(
        "dovecot",
        "master: Error: service(anvil): Initial status notification not received in 30 seconds,"
        " killing the process",
    ) == {
        "process": "master",
        "dovecot_level": "Error",
        "service": "anvil",
        "timeout": "30",
        "event": "status-notification-timeout",
    }


@pytest.mark.parametrize(
    ("text", "kind", "limit"),
    [
        ("process_limit (2) reached", "process_limit", "2"),
        ("client_limit/service_count (1) reached", "client_limit/service_count", "1"),
        ("process_limit reached", "process_limit", None),
    ],
)
def test_dovecot_limit_reached(text: str, kind: str, limit: str | None) -> None:
    fields = parse_body(
        "dovecot",
        f"master: Warning: service(pop3-login): {text}, client connections are being dropped",
    )
    assert fields["service"] == "pop3-login"
    assert fields["dovecot_level"] == "Warning"
    assert (fields["limit_kind"], fields.get("limit")) == (kind, limit)
    assert fields["event"] == "limit-reached"


def test_dovecot_child_killed() -> None:
    fields = parse_body("dovecot", "master: Error: service(log): child 1210 killed with signal 9")
    assert (fields["service"], fields["child_pid"], fields["signal"]) == ("log", "1210", "9")


def test_dovecot_other_messages() -> None:
    assert parse_body("dovecot", "Fatal: auth(default): Support not compiled in") == {
        "dovecot_level": "Fatal",
        "process": "auth",
        "process_arg": "default",
    }
    assert parse_body("dovecot", "imap-login: Disconnected (auth failed)") == {
        "process": "imap-login"
    }
    assert parse_body("dovecot", "Dovecot v1.2.rc3 starting up (core dumps disabled)") == {}


# --- systemd ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "systemd-remount-fs.service: main process exited, code=exited, status=1/FAILURE",
            {
                "unit": "systemd-remount-fs.service",
                "process": "main",
                "code": "exited",
                "status": "1/FAILURE",
                "action": "process-exited",
            },
        ),
        (
            "systemd-remount-fs.service: Main process exited, code=exited, status=1/FAILURE",
            {
                "unit": "systemd-remount-fs.service",
                "process": "main",
                "code": "exited",
                "status": "1/FAILURE",
                "action": "process-exited",
            },
        ),
        (
            "Failed to start Remount Root and Kernel File Systems.",
            {"description": "Remount Root and Kernel File Systems", "action": "start-failed"},
        ),
        (
            "Failed to start systemd-remount-fs.service - Remount Root and Kernel File Systems.",
            {
                "unit": "systemd-remount-fs.service",
                "description": "Remount Root and Kernel File Systems",
                "action": "start-failed",
            },
        ),
        (
            "Unit systemd-remount-fs.service entered failed state.",
            {"unit": "systemd-remount-fs.service", "action": "entered-failed", "state": "failed"},
        ),
        (
            "cronjob-test.service: Unit entered failed state.",
            {"unit": "cronjob-test.service", "action": "entered-failed", "state": "failed"},
        ),
        (
            "systemd-remount-fs.service: Failed with result 'exit-code'.",
            {
                "unit": "systemd-remount-fs.service",
                "result": "exit-code",
                "action": "failed-with-result",
            },
        ),
        (
            "cronjob-test.service stop-sigterm timed out. Killing.",
            {
                "unit": "cronjob-test.service",
                "state": "stop-sigterm",
                "timeout_action": "killing",
                "action": "timed-out",
            },
        ),
        (
            "cronjob-test@backup.service: State 'stop-sigterm' timed out. Killing.",
            {
                "unit": "cronjob-test@backup.service",
                "state": "stop-sigterm",
                "timeout_action": "killing",
                "action": "timed-out",
            },
        ),
        (
            "cronjob-test.service: main process exited, code=killed, status=9/KILL",
            {
                "unit": "cronjob-test.service",
                "process": "main",
                "code": "killed",
                "status": "9/KILL",
                "action": "process-exited",
            },
        ),
        (
            "Stopping Cronjob test service...",
            {"description": "Cronjob test service", "action": "stopping"},
        ),
        (
            "Stopped Cronjob test service.",
            {"description": "Cronjob test service", "action": "stopped"},
        ),
        (
            "Started cronjob-test.service - Cronjob test service.",
            {
                "unit": "cronjob-test.service",
                "description": "Cronjob test service",
                "action": "started",
            },
        ),
        (
            "Starting cronjob-test.service...",
            {
                "unit": "cronjob-test.service",
                "description": "cronjob-test.service",
                "action": "starting",
            },
        ),
        (
            "foo.service: Start request repeated too quickly.",
            {"unit": "foo.service", "action": "start-limit-hit"},
        ),
        (
            "foo.service: Scheduled restart job, restart counter is at 5.",
            {"unit": "foo.service", "restart_count": "5", "action": "restart-scheduled"},
        ),
        (
            "foo.service: Deactivated successfully.",
            {"unit": "foo.service", "action": "deactivated"},
        ),
        (
            "certbot.service: Consumed 1.234s CPU time.",
            {"unit": "certbot.service", "consumed": "1.234s CPU time", "action": "consumed"},
        ),
        (
            "Finished logrotate.service - Rotate log files.",
            {"unit": "logrotate.service", "description": "Rotate log files", "action": "finished"},
        ),
        ("Time has been changed", {}),
    ],
)
def test_systemd(text: str, expected: dict[str, str]) -> None:
    assert parse_body("systemd", text) == expected


# --- kernel -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "EXT4-fs (vda1): Remounting filesystem read-only",
            {"fs": "ext4", "device": "vda1", "detail": "Remounting filesystem read-only"},
        ),
        (
            "[ 1234.567890] EXT4-fs (vda1): Remounting filesystem read-only",
            {
                "uptime": "1234.567890",
                "fs": "ext4",
                "device": "vda1",
                "detail": "Remounting filesystem read-only",
            },
        ),
        (
            "EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: comm ls: reading",
            {
                "fs": "ext4",
                "fs_level": "error",
                "device": "sda1",
                "detail": "ext4_find_entry:1455: inode #2: comm ls: reading",
            },
        ),
        (
            "nfs: server 10.1.1.1 not responding, still trying",
            {"nfs_server": "10.1.1.1", "nfs_state": "not responding", "detail": "still trying"},
        ),
        (
            "[  970.699396] nfs: server 10.1.1.1 OK",
            {"uptime": "970.699396", "nfs_server": "10.1.1.1", "nfs_state": "OK"},
        ),
        (
            "XFS (sdb1): Corruption detected. Unmount and run xfs_repair",
            {
                "fs": "xfs",
                "device": "sdb1",
                "detail": "Corruption detected. Unmount and run xfs_repair",
            },
        ),
        ("klogd 1.4.1, log source = /proc/kmsg started.", {}),
        ("[  970.699396] F2B: failure from 192.0.2.2", {"uptime": "970.699396"}),
    ],
)
def test_kernel(text: str, expected: dict[str, str]) -> None:
    assert parse_body("kernel", text) == expected


# --- dispatch -----------------------------------------------------------------------------------


def test_apache_through_syslog() -> None:
    fields = parse_body(
        "httpd/backend1",
        "[authz_core:error] [pid 22036] [client 192.0.2.2:59392] AH01630: client denied",
    )
    assert fields["ah_code"] == "AH01630"
    assert fields["client"] == "192.0.2.2"


@pytest.mark.parametrize(
    "program", [None, "", "sshd", "postfix/smtpd", "systemd-logind", "dovecot-auth"]
)
def test_programs_without_a_body_grammar(program: str | None) -> None:
    assert parse_body(program, "06FAFTbL012697: DSN: x") == {}
    assert body_parser(program) is None


def test_empty_message() -> None:
    assert parse_body("systemd", "") == {}


def test_same_wording_from_another_program_is_not_read() -> None:
    text = "master: Warning: service(pop3-login): process_limit (2) reached"
    assert parse_body("myscript", text) == {}


def test_apache_with_a_suffix_gets_the_apache_body_grammar() -> None:
    from pipeline.grammars.apache_error import parse_apache_body
    from pipeline.grammars.bodies import body_parser

    for program in ("httpd", "apache", "apache2", "httpd/site", "apache/site", "apache2/site"):
        assert body_parser(program) is parse_apache_body, program
    assert body_parser("apachetop") is None


# --- declared field names ----------------------------------------------------------------------


def _real_lines() -> list[str]:
    from tests.conftest import SAMPLES
    from tests.grammars.conftest import corpus_path

    paths = [p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix not in (".md", ".yaml")]
    paths += [p for p in corpus_path().rglob("*") if p.is_file() and p.suffix != ".csv"]
    out: list[str] = []
    for p in paths:
        text = p.read_bytes().decode("utf-8", "replace")
        out.extend(x.rstrip("\r") for x in text.split("\n") if x.strip())
    return out


def test_every_field_a_grammar_produces_on_real_lines_is_declared() -> None:
    from pipeline.grammars import FORMATS, GrammarError, parse_any
    from pipeline.grammars.bodies import body_grammar

    seen_formats: set[str] = set()
    seen_bodies: set[str] = set()
    for text in _real_lines():
        try:
            name, parsed = parse_any(text)
        except GrammarError:
            continue
        fmt = FORMATS[name]
        assert all(fmt.fields.possible(k) for k in parsed.fields), (name, text, parsed.fields)
        seen_formats.add(name)
        grammar = body_grammar(parsed.program)
        if grammar is not None and parsed.message:
            fields = grammar.parse(parsed.message)
            assert all(grammar.fields.possible(k) for k in fields), (grammar.name, text, fields)
            if fields:
                seen_bodies.add(grammar.name)
    assert {"sendmail", "dovecot", "systemd", "kernel"} <= seen_bodies
    assert {"syslog", "journal-json", "apache-error"} <= seen_formats


def test_a_program_gets_the_registered_grammar_and_names_are_unique() -> None:
    from pipeline.grammars import BodyGrammar, register_body
    from pipeline.grammars.bodies import BODY_GRAMMARS, body_grammar, unregister_body

    assert body_grammar("sm-msp-queue") is BODY_GRAMMARS["sendmail"]
    assert body_grammar("apache2/vhost") is BODY_GRAMMARS["apache"]
    with pytest.raises(ValueError, match="already registered"):
        register_body(BodyGrammar("kernel", lambda text: {}, ("kernel2",)))
    with pytest.raises(ValueError, match="already has the body grammar 'kernel'"):
        register_body(BodyGrammar("kernel2", lambda text: {}, ("kernel",)))
    register_body(BodyGrammar("myd", lambda text: {"x": text}, ("myd",), ("myd-",)))
    try:
        assert parse_body("myd-worker", "hi") == {"x": "hi"}
    finally:
        unregister_body("myd")
    assert body_grammar("myd-worker") is None
