"""Syslog envelopes: syslog (RFC 3164), rfc3339, rfc5424, iso-syslog, tai64n, syslog-notime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.grammars import FORMATS, GrammarError

SYSLOG = FORMATS["syslog"].parse
RFC3339 = FORMATS["rfc3339"].parse
RFC5424 = FORMATS["rfc5424"].parse
ISO = FORMATS["iso-syslog"].parse
TAI = FORMATS["tai64n"].parse
NOTIME = FORMATS["syslog-notime"].parse


# --- syslog: the exact lines of SIGNATURES.md -------------------------------------------------


@pytest.mark.parametrize(
    ("line", "host", "program", "pid", "message"),
    [
        (
            "Jul 13 11:21:46 dovecot: master: Error: service(anvil): Initial status notification"
            " not received in 30 seconds, killing the process",
            None,
            "dovecot",
            None,
            "master: Error: service(anvil): Initial status notification not received in 30"
            " seconds, killing the process",
        ),
        (
            "Nov 30 08:23:06 vm dovecot: master: Error: service(fakestatus): Initial status"
            " notification not received in 30 seconds, killing the process",
            "vm",
            "dovecot",
            None,
            "master: Error: service(fakestatus): Initial status notification not received in 30"
            " seconds, killing the process",
        ),
        (
            "Nov 30 08:23:33 vm dovecot: master: Warning: service(pop3-login): process_limit (2)"
            " reached, client connections are being dropped",
            "vm",
            "dovecot",
            None,
            "master: Warning: service(pop3-login): process_limit (2) reached, client connections"
            " are being dropped",
        ),
        (
            "Jul 15 10:15:31 sm-mta[12697]: 06FAFTbL012697: from=<spamvictim@billauer.co.il>,"
            " size=121, class=0, nrcpts=1, msgid=<...>, proto=ESMTP, daemon=IPv4-port-587,"
            " relay=...",
            None,
            "sm-mta",
            12697,
            "06FAFTbL012697: from=<spamvictim@billauer.co.il>, size=121, class=0, nrcpts=1,"
            " msgid=<...>, proto=ESMTP, daemon=IPv4-port-587, relay=...",
        ),
        (
            "Jul 15 10:15:31 sm-mta[12698]: 06FAFTbL012697: 06FAFVbL012698: DSN: Return receipt",
            None,
            "sm-mta",
            12698,
            "06FAFTbL012697: 06FAFVbL012698: DSN: Return receipt",
        ),
        (
            "Nov 30 08:22:25 vm sm-mta[17783]: 6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt",
            "vm",
            "sm-mta",
            17783,
            "6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt",
        ),
        (
            "Jul 26 15:28:15 systemd[1]: systemd-remount-fs.service: main process exited,"
            " code=exited, status=1/FAILURE",
            None,
            "systemd",
            1,
            "systemd-remount-fs.service: main process exited, code=exited, status=1/FAILURE",
        ),
        (
            "Jul 26 15:28:15 systemd[1]: Failed to start Remount Root and Kernel File Systems.",
            None,
            "systemd",
            1,
            "Failed to start Remount Root and Kernel File Systems.",
        ),
        (
            "Jan 16 19:14:33 systemd[1]: cronjob-test.service stop-sigterm timed out. Killing.",
            None,
            "systemd",
            1,
            "cronjob-test.service stop-sigterm timed out. Killing.",
        ),
    ],
)
def test_signature_lines(
    line: str, host: str | None, program: str, pid: int | None, message: str
) -> None:
    parsed = SYSLOG(line)
    assert (parsed.host, parsed.program, parsed.pid, parsed.message) == (
        host,
        program,
        pid,
        message,
    )
    assert parsed.year_missing is True
    assert parsed.timestamp is not None
    assert parsed.timestamp.year == 2000
    assert parsed.timestamp.tzinfo is None


def test_timestamp_is_naive_with_placeholder_year() -> None:
    parsed = SYSLOG("Nov 30 08:22:25 vm sm-mta[17783]: x")
    assert parsed.timestamp == datetime(2000, 11, 30, 8, 22, 25)
    assert parsed.year_missing


def test_single_digit_day_padded_with_a_space() -> None:
    parsed = SYSLOG("Jun  9 06:06:20 combo sshd[1]: hello")
    assert parsed.timestamp == datetime(2000, 6, 9, 6, 6, 20)
    assert (parsed.host, parsed.program, parsed.message) == ("combo", "sshd", "hello")


def test_february_29_survives_the_placeholder_year() -> None:
    assert SYSLOG("Feb 29 00:00:00 h p: m").timestamp == datetime(2000, 2, 29)


def test_an_impossible_date_is_a_grammar_error() -> None:
    with pytest.raises(GrammarError) as info:
        SYSLOG("Feb 30 08:22:25 vm x: y")
    assert info.value.col == 0
    assert "date" in str(info.value)


def test_a_year_in_the_line_is_used() -> None:
    parsed = SYSLOG("2015 Nov 13 13:40:01 ether rsyslogd-2177: imuxsock begins")
    assert parsed.timestamp == datetime(2015, 11, 13, 13, 40, 1)
    assert not parsed.year_missing
    assert (parsed.host, parsed.program) == ("ether", "rsyslogd-2177")


@pytest.mark.parametrize(
    ("line", "program", "pid"),
    [
        (
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown",
            "sshd(pam_unix)",
            19939,
        ),
        ("Jun 19 04:09:11 combo syslogd 1.4.1: restart.", "syslogd 1.4.1", None),
        (
            "Jan 12 11:07:49 mail postfix/smtpd[13767]: improper command pipelining",
            "postfix/smtpd",
            13767,
        ),
        (
            "Mar 11 23:27:54 server postfix-smo/submission/smtpd[22427]: reject",
            "postfix-smo/submission/smtpd",
            22427,
        ),
        (
            "Jul  1 09:04:37 calvisitor-10-105-160-95 Google Chrome[32778]: objc[32778]: Class",
            "Google Chrome",
            32778,
        ),
        (
            "Jul  1 09:05:08 calvisitor-10-105-160-95 BezelServices 255.10[94]: ASSERTION: x",
            "BezelServices 255.10",
            94,
        ),
        (
            "Jul  1 09:01:05 calvisitor-10-105-160-95 com.apple.CDScheduler[43]: Thermal pressure",
            "com.apple.CDScheduler",
            43,
        ),
        ("Jul  7 08:06:15 combo  -- root[2421]: ROOT LOGIN ON tty2", "-- root", 2421),
        (
            "Jan 29 13:54:06 auth-worker(22401): Info: sql(admin): unknown user",
            "auth-worker(22401)",
            None,
        ),
    ],
)
def test_program_names(line: str, program: str, pid: int | None) -> None:
    parsed = SYSLOG(line)
    assert (parsed.program, parsed.pid) == (program, pid)


def test_mac_sender_context_goes_to_fields() -> None:
    parsed = SYSLOG(
        "Jul  1 09:29:02 calvisitor-10-105-160-95 sandboxd[129] ([31211]): com.apple.Addres(31211)"
        " deny network-outbound /private/var/run/mDNSResponder"
    )
    assert (parsed.program, parsed.pid, parsed.fields) == ("sandboxd", 129, {"context": "[31211]"})
    assert parsed.message.startswith("com.apple.Addres(31211) deny")


@pytest.mark.parametrize(
    ("line", "host", "message"),
    [
        ("Jun 14 15:16:01 combo -- MARK --", "combo", "-- MARK --"),
        ("Jun 21 16:47:52 machine [test-demo] F2B: failure", "machine", "[test-demo] F2B: failure"),
        ("Mar  3 00:17:22 [sshd]: User root from x", None, "[sshd]: User root from x"),
    ],
)
def test_a_line_without_a_tag_still_parses(line: str, host: str | None, message: str) -> None:
    parsed = SYSLOG(line)
    assert (parsed.host, parsed.program, parsed.pid, parsed.message) == (host, None, None, message)


def test_kernel_line_keeps_the_kernel_timestamp_in_the_message() -> None:
    parsed = SYSLOG("Jun 21 16:47:50 machine kernel: [  970.699396] EXT4-fs (vda1): Remounting")
    assert parsed.program == "kernel"
    assert parsed.message == "[  970.699396] EXT4-fs (vda1): Remounting"


def test_message_whitespace_is_trimmed_and_tabs_kept() -> None:
    parsed = SYSLOG("Jun 14 15:16:02 combo sshd(pam_unix)[19937]:  a\tb  ")
    assert parsed.message == "a\tb"


def test_pri_and_facility_level_give_the_level() -> None:
    parsed = SYSLOG("<13>Nov 30 08:22:25 vm logger: hi")
    assert (parsed.level, parsed.fields) == ("notice", {"facility": "user"})
    parsed = SYSLOG(
        "Jun 17 14:37:39 <mail.notice> robin sm-mta[2794]: 55HIbcGI002794: <a@b>... User unknown"
    )
    assert (parsed.level, parsed.fields["facility"], parsed.host) == ("notice", "mail", "robin")


def test_pri_above_191_is_rejected() -> None:
    with pytest.raises(GrammarError):
        SYSLOG("<192>Nov 30 08:22:25 vm logger: hi")


@pytest.mark.parametrize(
    "line", ["", "hello world", "Nov 30", "Nov 31 08:22:25 a b: c", "Foo 30 08:22:25 a b: c"]
)
def test_not_syslog(line: str) -> None:
    with pytest.raises(GrammarError):
        SYSLOG(line)


# --- rfc3339 ---------------------------------------------------------------------------------


def test_rfc3339_line() -> None:
    parsed = RFC3339("2026-11-30T08:18:02.338779+00:00 host prog[4242]: msg here ")
    assert parsed.timestamp == datetime(2026, 11, 30, 8, 18, 2, 338779, tzinfo=UTC)
    assert (parsed.host, parsed.program, parsed.pid, parsed.message) == (
        "host",
        "prog",
        4242,
        "msg here",
    )
    assert not parsed.year_missing


def test_rfc3339_offset_and_nanoseconds() -> None:
    parsed = RFC3339("2013-10-30T14:51:21.901728123+01:00 srv sshd[12664]: Postponed")
    assert parsed.timestamp == datetime(
        2013, 10, 30, 14, 51, 21, 901728, tzinfo=timezone(timedelta(hours=1))
    )


def test_rfc3339_needs_an_offset() -> None:
    with pytest.raises(GrammarError):
        RFC3339("2016-09-25T18:57:58.150982 www.srv.tld freeswitch[122921]: x")


# --- rfc5424 ---------------------------------------------------------------------------------


def test_rfc5424_with_pri_and_nil_values() -> None:
    parsed = RFC5424(
        "<38>1 2019-07-08T17:40:16.954167-04:00 hostname.example.com sshd 57915 - -"
        " Failed unknown for invalid user redmond from 192.0.2.1 port 59197 ssh2"
    )
    assert parsed.timestamp == datetime(
        2019, 7, 8, 17, 40, 16, 954167, tzinfo=timezone(timedelta(hours=-4))
    )
    assert (parsed.host, parsed.program, parsed.pid, parsed.level) == (
        "hostname.example.com",
        "sshd",
        57915,
        "info",
    )
    assert parsed.fields == {"facility": "auth"}
    assert parsed.message.startswith("Failed unknown for invalid user redmond")


def test_rfc5424_structured_data_goes_to_fields() -> None:
    parsed = RFC5424(
        '<38>1 2019-07-08T17:40:17.954167-04:00 h sshd 55555 ID47 [timeQuality tzKnown="1"'
        ' isSynced="0"][xxx@123 test="[brackets]" q="a \\"b\\" \\] c"] Failed unknown'
    )
    assert parsed.fields["timeQuality.tzKnown"] == "1"
    assert parsed.fields["timeQuality.isSynced"] == "0"
    assert parsed.fields["xxx@123.test"] == "[brackets]"
    assert parsed.fields["xxx@123.q"] == 'a "b" ] c'
    assert parsed.fields["msgid"] == "ID47"
    assert parsed.message == "Failed unknown"


def test_rfc5424_as_rsyslog_writes_it() -> None:
    parsed = RFC5424("<13>1 2026-11-30T08:18:02.338779+00:00 vm myapp - - -  hello from logger")
    assert (parsed.host, parsed.program, parsed.pid, parsed.level) == (
        "vm",
        "myapp",
        None,
        "notice",
    )
    assert parsed.message == "hello from logger"


def test_rfc5424_without_pri_all_nil() -> None:
    parsed = RFC5424("1 - - - - - -")
    assert (parsed.timestamp, parsed.host, parsed.program, parsed.message) == (None, None, None, "")


def test_rfc5424_bom_and_procid_that_is_not_a_number() -> None:
    parsed = RFC5424("<13>1 2026-11-30T08:18:02Z h app worker-1 - - \ufeffhello")
    assert parsed.message == "hello"
    assert parsed.pid is None
    assert parsed.fields["procid"] == "worker-1"


# --- iso-syslog, tai64n, syslog-notime ---------------------------------------------------------


def test_iso_syslog_variants() -> None:
    parsed = ISO("2020-03-23 06:47:42.801612-0700  localhost sshd[3186]: error: PAM: unknown")
    assert parsed.timestamp == datetime(
        2020, 3, 23, 6, 47, 42, 801612, tzinfo=timezone(timedelta(hours=-7))
    )
    assert (parsed.host, parsed.program, parsed.pid) == ("localhost", "sshd", 3186)
    parsed = ISO("2013-08-11 03:56:40 auth-worker(default): Info: pam(username,1.2.3.4): failed")
    assert parsed.timestamp == datetime(2013, 8, 11, 3, 56, 40)
    assert (parsed.host, parsed.program) == (None, "auth-worker(default)")
    parsed = ISO("2016-09-25T18:57:58.150982 www.srv.tld freeswitch[122921]: 2016-09-25 x")
    assert parsed.timestamp == datetime(2016, 9, 25, 18, 57, 58, 150982)
    assert parsed.host == "www.srv.tld"


def test_iso_syslog_needs_a_tag() -> None:
    with pytest.raises(GrammarError):
        ISO("2013-01-04 17:03:46 login authenticator failed for host [1.2.3.4]: 535 Incorrect")


def test_tai64n() -> None:
    parsed = TAI("@400000004c91b044077a9e94 imap-login: Info: Aborted login (auth failed)")
    assert parsed.timestamp == datetime(2010, 9, 16, 5, 50, 50, 125476, tzinfo=UTC)
    assert (parsed.host, parsed.program) == (None, "imap-login")
    assert parsed.message == "Info: Aborted login (auth failed)"


def test_syslog_notime() -> None:
    parsed = NOTIME("srv sshd[123]: Failed password for root")
    assert (parsed.timestamp, parsed.host, parsed.program, parsed.pid) == (None, "srv", "sshd", 123)
    parsed = NOTIME("dovecot: master: Error: service(log): child 1210 killed with signal 9")
    assert (parsed.host, parsed.program) == (None, "dovecot")
    with pytest.raises(GrammarError):
        NOTIME("just some text")
