"""Every log line quoted in the failure signatures, through envelope and body grammar."""

from __future__ import annotations

import pytest

from pipeline.grammars import parse_any, parse_body

SIGNATURE_LINES: list[tuple[str, str, dict[str, str]]] = [
    # 1. dovecot
    (
        "Jul 13 11:21:46 dovecot: master: Error: service(anvil): Initial status notification not"
        " received in 30 seconds, killing the process",
        "syslog",
        {"process": "master", "dovecot_level": "Error", "service": "anvil", "timeout": "30"},
    ),
    (
        "Nov 30 08:23:06 vm dovecot: master: Error: service(fakestatus): Initial status"
        " notification not received in 30 seconds, killing the process",
        "syslog",
        {"service": "fakestatus", "event": "status-notification-timeout"},
    ),
    (
        "dovecot: master: Error: service(log): child 1210 killed with signal 9",
        "syslog-notime",
        {"service": "log", "child_pid": "1210", "signal": "9", "event": "child-killed"},
    ),
    (
        "Nov 30 08:23:33 vm dovecot: master: Warning: service(pop3-login): process_limit (2)"
        " reached, client connections are being dropped",
        "syslog",
        {"service": "pop3-login", "limit_kind": "process_limit", "limit": "2"},
    ),
    (
        "Nov 30 08:23:33 vm dovecot: master: Warning: service(pop3-login):"
        " client_limit/service_count (1) reached, client connections are being dropped",
        "syslog",
        {"limit_kind": "client_limit/service_count", "limit": "1"},
    ),
    # 2. sendmail
    (
        "Jul 15 10:15:31 sm-mta[12697]: 06FAFTbL012697: from=<spamvictim@billauer.co.il>,"
        " size=121, class=0, nrcpts=1, msgid=<...>, proto=ESMTP, daemon=IPv4-port-587, relay=...",
        "syslog",
        {"queue_id": "06FAFTbL012697", "from": "<spamvictim@billauer.co.il>", "relay": "..."},
    ),
    (
        "Jul 15 10:15:31 sm-mta[12698]: 06FAFTbL012697: to=<legal_address@billauer.co.il>,"
        " ctladdr=<spamvictim@billauer.co.il> (1010/500), delay=00:00:01, xdelay=00:00:00,"
        " mailer=local, pri=30456, dsn=2.0.0, stat=Sent",
        "syslog",
        {"queue_id": "06FAFTbL012697", "to": "<legal_address@billauer.co.il>", "stat": "Sent"},
    ),
    (
        "Jul 15 10:15:31 sm-mta[12698]: 06FAFTbL012697: 06FAFVbL012698: DSN: Return receipt",
        "syslog",
        {"queue_id": "06FAFTbL012697", "dsn_queue_id": "06FAFVbL012698", "dsn": "Return receipt"},
    ),
    (
        "Jul 15 10:15:31 sm-mta[12698]: 06FAFVbL012698: to=<spamvictim@billauer.co.il>,"
        " delay=00:00:00, xdelay=00:00:00, mailer=local, pri=30000, dsn=2.0.0, stat=Sent",
        "syslog",
        {"queue_id": "06FAFVbL012698", "to": "<spamvictim@billauer.co.il>", "dsn": "2.0.0"},
    ),
    (
        "Nov 30 08:22:25 vm sm-mta[17783]: 6AU8MP47017782: 6AU8MP47017783: DSN: Return receipt",
        "syslog",
        {"queue_id": "6AU8MP47017782", "dsn_queue_id": "6AU8MP47017783", "dsn": "Return receipt"},
    ),
    # 3. root over NFS
    (
        "Jul 26 15:28:15 systemd[1]: systemd-remount-fs.service: main process exited,"
        " code=exited, status=1/FAILURE",
        "syslog",
        {"unit": "systemd-remount-fs.service", "code": "exited", "status": "1/FAILURE"},
    ),
    (
        "Jul 26 15:28:15 systemd[1]: Failed to start Remount Root and Kernel File Systems.",
        "syslog",
        {"action": "start-failed", "description": "Remount Root and Kernel File Systems"},
    ),
    (
        "Jul 26 15:28:15 systemd[1]: Unit systemd-remount-fs.service entered failed state.",
        "syslog",
        {"action": "entered-failed", "unit": "systemd-remount-fs.service"},
    ),
    (
        "Jul 26 15:28:15 vm systemd[1]: systemd-remount-fs.service: Failed with result"
        " 'exit-code'.",
        "syslog",
        {"action": "failed-with-result", "result": "exit-code"},
    ),
    (
        "Jul 26 15:28:15 vm systemd[1]: Failed to start systemd-remount-fs.service - Remount Root"
        " and Kernel File Systems.",
        "syslog",
        {"unit": "systemd-remount-fs.service", "action": "start-failed"},
    ),
    # 4. cron jobs as services
    (
        "Jan 16 19:13:03 systemd[1]: Stopping Cronjob test service...",
        "syslog",
        {"action": "stopping", "description": "Cronjob test service"},
    ),
    (
        "Jan 16 19:14:33 systemd[1]: cronjob-test.service stop-sigterm timed out. Killing.",
        "syslog",
        {"action": "timed-out", "unit": "cronjob-test.service", "state": "stop-sigterm"},
    ),
    (
        "Jan 16 19:14:33 systemd[1]: cronjob-test.service: main process exited, code=killed,"
        " status=9/KILL",
        "syslog",
        {"unit": "cronjob-test.service", "code": "killed", "status": "9/KILL"},
    ),
    (
        "Jan 16 19:14:33 systemd[1]: Stopped Cronjob test service.",
        "syslog",
        {"action": "stopped"},
    ),
    (
        "Jan 16 19:14:33 systemd[1]: Unit cronjob-test.service entered failed state.",
        "syslog",
        {"unit": "cronjob-test.service", "state": "failed"},
    ),
    (
        "Jan 16 19:14:33 systemd[1]: cronjob-test.service: State 'stop-sigterm' timed out."
        " Killing.",
        "syslog",
        {"unit": "cronjob-test.service", "state": "stop-sigterm", "timeout_action": "killing"},
    ),
    # 5. Apache
    (
        "[Sat Jan 23 13:22:28.123456 2021] [mpm_event:error] [pid 1299:tid 140234] AH00484:"
        " server reached MaxRequestWorkers setting, consider raising the MaxRequestWorkers setting",
        "apache-error",
        {"ah_code": "AH00484", "module": "mpm_event"},
    ),
    (
        "[Sat Jan 23 13:22:28.123456 2021] [core:notice] [pid 1200] AH00052: child pid 1299 exit"
        " signal Segmentation fault (11)",
        "apache-error",
        {"ah_code": "AH00052"},
    ),
    (
        "[Sat Jan 23 13:22:28.123456 2021] [core:error] [pid 1299:tid 140234]"
        " [client 192.0.2.7:51234] AH00124: Request exceeded the limit of 10 internal redirects"
        " due to probable configuration error.",
        "apache-error",
        {"ah_code": "AH00124", "client": "192.0.2.7", "client_port": "51234"},
    ),
    (
        "[Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] message",
        "apache-error",
        {"client": "1.2.3.4"},
    ),
    (
        "AH00558: apache2: Could not reliably determine the server's fully qualified domain name,"
        " using 127.0.1.1. Set the 'ServerName' directive globally to suppress this message",
        "apache-error",
        {"ah_code": "AH00558"},
    ),
    # 6. disks and file systems
    (
        "Nov 30 08:30:00 vm kernel: [ 1234.567890] EXT4-fs (vda1): Remounting filesystem read-only",
        "syslog",
        {"fs": "ext4", "device": "vda1", "uptime": "1234.567890"},
    ),
    (
        "Nov 30 08:30:00 vm kernel: nfs: server 10.1.1.1 not responding, still trying",
        "syslog",
        {"nfs_server": "10.1.1.1", "nfs_state": "not responding"},
    ),
]


@pytest.mark.parametrize(("line", "fmt", "expected"), SIGNATURE_LINES)
def test_signature_line(line: str, fmt: str, expected: dict[str, str]) -> None:
    name, parsed = parse_any(line)
    assert name == fmt
    fields = {**parsed.fields, **parse_body(parsed.program, parsed.message)}
    assert {key: fields.get(key) for key in expected} == expected
