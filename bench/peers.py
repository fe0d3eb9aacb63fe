"""Inputs for the peer tools and the rule-count comparison, made from the 30 peer regexes.

* ``fail2ban_filter``: a filter with the 30 patterns as ``failregex`` lines. fail2ban refuses a
  failregex without a failure-id group (``<HOST>``, ``<F-ID>``, ...), and a non-empty
  ``<F-ID>`` is parsed as an address (``MAIL/EXPN/VRFY/ETRN`` breaks it as a CIDR), so each
  pattern is written ``(?:PATTERN)<F-ID></F-ID>``: the same pattern plus an empty failure id.
* ``sec_config``: 30 ``type=Single`` rules whose action adds one to a counter, printed at
  ``SEC_SHUTDOWN`` (``-intevents``).
* ``lnav_query``: one SQL query counting the log messages whose ``log_text`` matches any of
  the 30 patterns (``REGEXP``, 30 terms joined by ``OR``).
* ``write_rules``: the 30 patterns as logwarden line rules (``PEER_RULES``): the program part
  of each pattern becomes ``select: program`` and the rest a ``message`` regex, anchored with
  ``^`` where the pattern puts the text right after the program, unanchored where it starts
  with ``.*``.
"""

from __future__ import annotations

from pathlib import Path

#: (id, program or "" for none, message regex, example message) per peer regex, in the order
#: of peer_regexes.txt
PEER_RULES: list[tuple[str, str, str, str]] = [
    (
        "peer.dovecot-process-limit",
        "dovecot",
        r"^master: Warning: service\(pop3-login\): process_limit \(\d+\) reached",
        "master: Warning: service(pop3-login): process_limit (100) reached, client "
        "connections are being dropped",
    ),
    (
        "peer.sendmail-dsn-return-receipt",
        "sm-mta",
        r"^\w+: \w+: DSN: Return receipt",
        "wA1B2c3D004567: wA1B2c3E004567: DSN: Return receipt",
    ),
    (
        "peer.dovecot-pam-auth-failed",
        "dovecot",
        r"^auth-worker\(\d+\): pam\(\S+,\S+(,<\S+>)?\): pam_authenticate\(\) failed",
        "auth-worker(1234): pam(alice,192.0.2.7,<a1b2>): pam_authenticate() failed: "
        "Authentication failure",
    ),
    (
        "peer.dovecot-login-auth-failed",
        "dovecot",
        r"^(imap|pop3)-login: Disconnected \(auth failed, \d+ attempts",
        "pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<alice>",
    ),
    (
        "peer.systemd-failed-to-start",
        "systemd",
        r"^Failed to start \S+",
        "Failed to start foo.service.",
    ),
    (
        "peer.systemd-main-process-failed",
        "systemd",
        r"^\S+: Main process exited, code=exited, status=\d+/FAILURE",
        "foo.service: Main process exited, code=exited, status=1/FAILURE",
    ),
    (
        "peer.sendmail-no-mail-command",
        "sm-mta",
        r"^\w+: (\S+ )?\[\S+\]( \(may be forged\))? did not issue MAIL/EXPN/VRFY/ETRN",
        "wA1B2c3D004567: host.example [192.0.2.7] did not issue MAIL/EXPN/VRFY/ETRN during "
        "connection to MTA",
    ),
    (
        "peer.sendmail-relay-denied",
        "sm-mta",
        r"^\w+: ruleset=check_rcpt, arg1=<\S+>, relay=[^,]+, reject=550",
        "wA1B2c3D004567: ruleset=check_rcpt, arg1=<bob@example.org>, relay=host.example "
        "[192.0.2.7], reject=550 5.7.1 <bob@example.org>... Relaying denied",
    ),
    (
        "peer.kernel-oom-kill",
        "kernel",
        r"^Out of memory: Kill(ed)? process \d+",
        "Out of memory: Killed process 1234 (java)",
    ),
    (
        "peer.sshd-failed-password",
        "sshd",
        r"^Failed password for (invalid user )?\S+ from \S+ port \d+",
        "Failed password for invalid user admin from 192.0.2.7 port 52311 ssh2",
    ),
    (
        "peer.kernel-ext-fs-error",
        "kernel",
        r"^EXT[34]-fs error",
        "EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: comm ls: reading "
        "directory lblock 0",
    ),
    (
        "peer.kernel-io-error",
        "kernel",
        r"I/O error, dev \w+, sector \d+",
        "blk_update_request: I/O error, dev sda, sector 123456",
    ),
    (
        "peer.segfault",
        "",
        r"segfault at [0-9a-f]+ ip [0-9a-f]+",
        "app[1234]: segfault at 0 ip 00007f0000001234 sp 00007ffc00000000 error 4",
    ),
    (
        "peer.systemd-restart-counter",
        "systemd",
        r"^\S+: Scheduled restart job, restart counter is at \d+",
        "foo.service: Scheduled restart job, restart counter is at 5.",
    ),
    (
        "peer.postfix-sasl-failed",
        "postfix/smtpd",
        r"^warning: \S+: SASL \w+ authentication failed",
        "warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
    ),
    (
        "peer.postfix-fatal",
        "postfix/*",
        r"^fatal:",
        "fatal: open database /etc/postfix/virtual.db: No such file or directory",
    ),
    (
        "peer.dovecot-command-startup-failed",
        "dovecot",
        r"^master: Error: service\(\S+\): command startup failed",
        "master: Error: service(imap): command startup failed, throttling for 2 secs",
    ),
    (
        "peer.dovecot-no-space",
        "dovecot",
        r"^\S+: Error: .*No space left on device",
        "imap(alice): Error: write(/var/mail/alice) failed: No space left on device",
    ),
    (
        "peer.sendmail-deferred-timeout",
        "sm-mta",
        r"^\w+: to=<\S+>, .*stat=Deferred: Connection timed out",
        "wA1B2c3D004567: to=<bob@example.org>, delay=00:00:05, mailer=esmtp, "
        "stat=Deferred: Connection timed out with mx.example.org.",
    ),
    (
        "peer.sendmail-dsn-warning",
        "sm-mta",
        r"^\w+: \w+: DSN: Warning: could not send message for past \d+ hours",
        "wA1B2c3D004567: wA1B2c3E004567: DSN: Warning: could not send message for past 4 hours",
    ),
    (
        "peer.sendmail-dsn-user-unknown",
        "sm-mta",
        r"^\w+: \w+: DSN: User unknown",
        "wA1B2c3D004567: wA1B2c3E004567: DSN: User unknown",
    ),
    (
        "peer.sshd-pam-root-failure",
        "sshd(pam_unix)",
        r"^authentication failure; .*rhost=\S+\s+user=root",
        "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= "
        "rhost=192.0.2.7  user=root",
    ),
    (
        "peer.su-pam-failure",
        "su(pam_unix)",
        r"^authentication failure",
        "authentication failure; logname=alice uid=1000 euid=0 tty=pts/0 ruser=alice "
        "rhost=  user=root",
    ),
    (
        "peer.named-refused",
        "named",
        r"(refused|denied)",
        "client 192.0.2.7#53211: query (cache) 'example.org/A/IN' denied",
    ),
    (
        "peer.cron-orphan",
        "CRON",
        r"^\(\S+\) ORPHAN",
        "(alice) ORPHAN (no passwd entry)",
    ),
    (
        "peer.journald-missed",
        "systemd-journald",
        r"(Missed|Suppressed) \d+ .*messages",
        "Suppressed 1234 messages from foo.service",
    ),
    (
        "peer.logrotate-alert",
        "logrotate",
        r"^ALERT exited abnormally",
        "ALERT exited abnormally with [1]",
    ),
    (
        "peer.ftpd-anonymous-refused",
        "ftpd",
        r"^ANONYMOUS FTP LOGIN REFUSED",
        "ANONYMOUS FTP LOGIN REFUSED FROM 192.0.2.7",
    ),
    (
        "peer.kernel-nfs-not-responding",
        "kernel",
        r"^(nfs|NFS): server \S+ not responding",
        "nfs: server fs1 not responding, still trying",
    ),
    (
        "peer.sendmail-syserr",
        "sm-mta",
        r"^\w+: SYSERR\(\w+\):",
        "wA1B2c3D004567: SYSERR(root): collect: I/O error on connection from host.example",
    ),
]


def read_patterns(path: Path) -> list[str]:
    return [p for p in path.read_text(encoding="utf-8").splitlines() if p.strip()]


def fail2ban_filter(patterns: list[str]) -> str:
    lines = [f"(?:{p})<F-ID></F-ID>" for p in patterns]
    return "[Definition]\nfailregex = " + "\n            ".join(lines) + "\nignoreregex =\n"


def sec_config(patterns: list[str]) -> str:
    parts = [
        "type=Single\nptype=SubStr\npattern=SEC_STARTUP\ncontext=SEC_INTERNAL_EVENT\n"
        "desc=init\naction=eval %n ( $main::matches = 0; )\n"
    ]
    for i, p in enumerate(patterns, 1):
        parts.append(
            f"type=Single\nptype=RegExp\npattern={p}\ndesc=p{i}\n"
            "action=eval %n ( $main::matches++; )\n"
        )
    parts.append(
        "type=Single\nptype=SubStr\npattern=SEC_SHUTDOWN\ncontext=SEC_INTERNAL_EVENT\n"
        'desc=done\naction=eval %n ( print STDOUT "$main::matches\\n"; )\n'
    )
    return "\n".join(parts)


def lnav_query(patterns: list[str]) -> str:
    terms = " OR ".join("log_text REGEXP '{}'".format(p.replace("'", "''")) for p in patterns)
    return f";SELECT count(*) AS matches FROM all_logs WHERE {terms}"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def rule_yaml(rule_id: str, program: str, regex: str, message: str) -> str:
    prog = program.replace("/*", "/smtpd") if program else "kernel"
    line = f"Mar  1 00:00:00 mx1 {prog}[1234]: {message}"
    if prog == "kernel":
        line = f"Mar  1 00:00:00 mx1 kernel: {message}"
    if program:
        spoofed = f"Mar  1 00:00:00 mx1 myscript[1234]: {message}"
        select = f"    select:\n      program: {_q(program)}\n"
    else:
        spoofed = "Mar  1 00:00:00 mx1 kernel: app[1234]: segfault handler installed"
        select = ""
    return (
        f"  - id: {rule_id}\n"
        f"    title: Peer regex {rule_id}\n"
        "    severity: low\n"
        "    description: One of the 30 regexes the benchmark gives every tool.\n"
        "    remediation: None; benchmark rule.\n"
        "    references: []\n"
        "    tags: [bench]\n"
        f"{select}"
        "    match:\n"
        "      message:\n"
        f"        regex: {_q(regex)}\n"
        "    examples:\n"
        "      match:\n"
        f"        - {_q(line)}\n"
        "      no_match:\n"
        f"        - {_q(spoofed)}\n"
    )


def write_rules(directory: Path, count: int) -> list[str]:
    """The first ``count`` peer rules into ``directory/peer.yaml``; their ids."""
    directory.mkdir(parents=True, exist_ok=True)
    chosen = PEER_RULES[:count]
    text = "rules:\n" + "\n".join(rule_yaml(*r) for r in chosen)
    (directory / "peer.yaml").write_text(text, encoding="utf-8")
    return [r[0] for r in chosen]
