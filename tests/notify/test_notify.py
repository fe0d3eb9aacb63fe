"""Notifications reaching real receivers: an HTTP endpoint on 127.0.0.1 for apprise's
``json://`` and an SMTP server (aiosmtpd) for ``mailto://``.

The daemon is driven turn by turn (:meth:`Daemon.step`, then one :meth:`Deliverer.run_once`
pass) over a log file the test writes, so every message a receiver gets can be traced to a
line. What is checked is what arrives: one message per finding, its title and body (rule
title, severity, host, time, count, the matched lines, captured fields, remediation,
references), routing by severity, finding tag, rule and host, escaping of log text in
markdown, a rule's own template, digests under a rate limit, and the command line
(``scan --notify``, ``--dry-run``, ``notify test``, config validation, masked secrets).

``tests/notify/test_notify_daemon.py`` has the outages (refused, 500, hanging) and restarts.
"""

from __future__ import annotations

import email
import functools
import importlib
import json
import re
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest

from pipeline.config import WatchConfig
from pipeline.daemon import Daemon
from pipeline.detection.loader import load_rules
from pipeline.notify.outbox import Delivery
from tests.conftest import IN_CI, SAMPLES, logwarden

DSN = "sendmail.dsn-return-receipt"

# -- receivers -----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Post:
    """One apprise ``json://`` notification as the receiver got it."""

    path: str
    title: str
    message: str
    type: str
    headers: Mapping[str, str]
    at: float  # time.monotonic() on arrival


class Receiver:
    """An HTTP endpoint for apprise ``json://`` posts on a fixed 127.0.0.1 port.

    ``mode`` decides the answer: ``ok`` (200, the post counts as delivered), ``error`` (500)
    or ``hang`` (the request is read, then never answered: the connection is closed without
    a response once the mode changes or the receiver stops). Before :meth:`start` and after
    :meth:`stop` nobody listens on the port: connections are refused. Only answered-200
    posts are in :attr:`posts`; the others are kept in :attr:`errors` and :attr:`hung`.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.posts: list[Post] = []
        self.errors: list[Post] = []
        self.hung: list[Post] = []
        self.in_flight = 0  # requests being held unanswered right now
        #: from this many answered posts on, hang (as if ``mode`` were ``hang``)
        self.hang_after: int | None = None
        #: from this many posts on, answer 200 only after ``slow`` seconds
        self.slow_after: int | None = None
        self.slow = 0.0
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "hook", *, auth: str = "", **params: Any) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"json://{auth + '@' if auth else ''}127.0.0.1:{self.port}/{path}{query}"

    def start(self, mode: str = "ok") -> None:
        self.set_mode(mode)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = json.loads(raw)
                post = Post(
                    self.path,
                    data.get("title", ""),
                    data.get("message", ""),
                    data.get("type", ""),
                    dict(self.headers),
                    time.monotonic(),
                )
                with receiver._cond:
                    if (
                        receiver.hang_after is not None
                        and len(receiver.posts) >= receiver.hang_after
                    ):
                        receiver.mode = "hang"
                    if receiver.mode == "hang":
                        receiver.hung.append(post)
                        receiver.in_flight += 1
                        receiver._cond.notify_all()
                        receiver._cond.wait_for(lambda: receiver.mode != "hang", timeout=60)
                        receiver.in_flight -= 1
                        self.close_connection = True
                        return  # no answer at all
                    failing = receiver.mode == "error"
                    slow = (
                        receiver.slow
                        if receiver.slow_after is not None
                        and len(receiver.posts) >= receiver.slow_after
                        else 0.0
                    )
                    if slow:
                        receiver.in_flight += 1
                        receiver._cond.notify_all()
                if slow:
                    time.sleep(slow)
                with receiver._cond:
                    if slow:
                        receiver.in_flight -= 1
                    (receiver.errors if failing else receiver.posts).append(post)
                    receiver._cond.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (connections are refused from now on); release hung requests."""
        self.set_mode("ok" if self.mode == "hang" else self.mode)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_mode(self, mode: str) -> None:
        assert mode in ("ok", "error", "hang"), mode
        with self._cond:
            self.mode = mode
            self._cond.notify_all()

    def wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                pytest.fail(f"{what} within {timeout}s; posts: {self.titles()}")

    def wait_posts(self, n: int, path: str | None = None, timeout: float = 15) -> list[Post]:
        self.wait(lambda: len(self.at(path)) >= n, timeout, f"no {n} posts to {path or 'any'}")
        return self.at(path)

    def at(self, path: str | None = None) -> list[Post]:
        return [p for p in self.posts if path is None or p.path == f"/{path}"]

    def titles(self, path: str | None = None) -> list[str]:
        return [p.title for p in self.at(path)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def require_module(name: str) -> ModuleType:
    """Import a test dependency, or skip (fail under CI=true) when it is not installed."""
    message = f"{name} is not installed (it is in the dev extras: pip install -e '.[dev]')"
    if IN_CI:
        try:
            return importlib.import_module(name)
        except ImportError:
            pytest.fail(message)
    return pytest.importorskip(name, reason=message)


@dataclass
class Mail:
    """What the SMTP server received: the envelope, the parsed message and the AUTH used."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: tuple[str, str] | None

    def part(self, content_type: str) -> str | None:
        for p in self.message.walk():
            if p.get_content_type() == content_type and not p.is_multipart():
                return str(p.get_content())
        return None


@dataclass
class MailServer:
    port: int
    mails: list[Mail] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, n: int, timeout: float = 15) -> list[Mail]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.mails) >= n, timeout):
                pytest.fail(f"no {n} mails within {timeout}s (got {len(self.mails)})")
            return list(self.mails)


SMTP_USER, SMTP_PASSWORD = "logwarden", "s3cret-Pw"


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    """aiosmtpd on 127.0.0.1 with AUTH (plain, no TLS): it accepts only SMTP_PASSWORD."""
    require_module("aiosmtpd")
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    server = MailServer(free_port())
    logins: dict[int, tuple[str, str]] = {}

    def authenticate(srv: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and data.password.decode() == SMTP_PASSWORD
        if ok:
            logins[id(session)] = (data.login.decode(), data.password.decode())
        return AuthResult(success=ok, handled=False)

    class Handler:
        async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
            msg = email.message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            with server.cond:
                server.mails.append(
                    Mail(envelope.mail_from, list(envelope.rcpt_tos), msg, logins.get(id(session)))
                )
                server.cond.notify_all()
            return "250 OK"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=server.port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


def mailto(server: MailServer, password: str = SMTP_PASSWORD) -> str:
    return (
        f"mailto://{SMTP_USER}:{password}@127.0.0.1:{server.port}"
        "?from=logwarden@example.com&to=ops@example.org"
    )


# -- a daemon over a log the test writes -----------------------------------------------------


class Feed:
    """A daemon following one syslog-style file with the given notifiers, turn by turn."""

    def __init__(
        self,
        base: Path,
        notify: Sequence[Mapping[str, Any]],
        *,
        rules: Sequence[Path] = (),
        builtin: bool = True,
        retry: float = 0.2,
    ) -> None:
        self.log = base / "logs" / "syslog"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self.state_dir = base / "state"
        self.output = base / "findings.jsonl"
        self.config = WatchConfig(
            paths=(str(self.log),),
            state_dir=str(self.state_dir),
            output=str(self.output),
            from_beginning=True,
            poll_interval=0.05,
            rules=tuple(str(r) for r in rules),
            builtin_rules=builtin,
            notify=tuple(dict(n) for n in notify),
            notify_retry=retry,
        )
        self.daemon: Daemon | None = None

    def start(self) -> Daemon:
        """A new daemon on the same state directory (a restart), after its recovery."""
        self.stop()
        self.daemon = Daemon(self.config)
        self.daemon.recover()
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.close()
            self.daemon = None

    def write(self, *lines: str) -> None:
        with self.log.open("a", encoding="utf-8") as f:
            f.write("".join(line.rstrip("\n") + "\n" for line in lines))

    def turn(self) -> float:
        """One daemon turn; the seconds it took."""
        assert self.daemon is not None
        t0 = time.monotonic()
        self.daemon.step()
        return time.monotonic() - t0

    def deliver(self) -> Delivery:
        """One delivery pass over the outbox, in this thread."""
        assert self.daemon is not None and self.daemon.deliverer is not None
        return self.daemon.deliverer.run_once()

    def records(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        return [json.loads(x) for x in self.output.read_text(encoding="utf-8").splitlines()]

    def outbox(self) -> Counter[str]:
        """Outbox rows by status."""
        conn = sqlite3.connect(self.state_dir / "state.sqlite")
        try:
            return Counter(s for (s,) in conn.execute("SELECT status FROM outbox"))
        finally:
            conn.close()


@pytest.fixture
def feeds(tmp_path: Path) -> Iterator[Callable[..., Feed]]:
    made: list[Feed] = []

    def make(notify: Sequence[Mapping[str, Any]], **kw: Any) -> Feed:
        feed = Feed(tmp_path / f"feed{len(made)}", notify, **kw)
        made.append(feed)
        feed.start()
        return feed

    yield make
    for feed in made:
        feed.stop()


def receipt(n: int, host: str = "mx1", when: str = "Nov 30 09:00:00") -> str:
    """A DSN return receipt: one finding, told apart by its queue ids (``Q000000007A``)."""
    return f"{when} {host} sm-mta[{1000 + n}]: Q{n:09d}A: Q{n:09d}B: DSN: Return receipt"


def qid(n: int) -> str:
    return f"Q{n:09d}A"


#: the blog's backscatter signature: the message's from= line names the forged sender that
#: gets the receipt (the finding's captured ``sender``)
DSN_LINES = (
    "Nov 30 08:22:25 mx1 sm-mta[2001]: QSENDER0001: from=<forged@example.net>, size=2240, "
    "class=0, nrcpts=1, proto=ESMTP, daemon=MTA-v4, relay=client.example.net [192.0.2.7]",
    "Nov 30 08:22:26 mx1 sm-mta[2002]: QSENDER0001: QRECEIPT001: DSN: Return receipt",
)
KERNEL_RO = "Nov 30 07:12:44 db1 kernel: EXT4-fs (vda1): Remounting filesystem read-only"
UNIT_FAILED = "Nov 30 07:13:02 db2 systemd[1]: nginx.service: Failed with result 'exit-code'."
EVIL = "*bold* [link](http://evil) \x1b[31m"


@functools.cache
def builtin_rule(rule_id: str) -> Any:
    (rule,) = [r for r in load_rules() if r.id == rule_id]
    return rule


def assert_each_once(posts: Iterable[Post], numbers: Iterable[int]) -> None:
    """The posts are the receipts ``numbers`` (text format), each exactly once."""
    got = Counter(q for p in posts for q in re.findall(r"^queue_id: (\S+)$", p.message, re.M))
    assert got == Counter(qid(n) for n in numbers), got


# -- what a finding's message says -------------------------------------------------------------


def test_a_dsn_finding_arrives_once_with_every_part_of_the_signature(
    feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    feed = feeds([{"name": "all", "url": receiver.url("all")}])
    feed.write(*DSN_LINES)
    feed.turn()
    assert feed.deliver().sent == 1
    (rec,) = feed.records()
    (post,) = receiver.wait_posts(1)
    rule = builtin_rule(DSN)
    assert post.path == "/all"
    assert post.title == f"[high] {rule.title} on mx1"
    body = post.message
    for part in (
        rule.title,
        f"rule: {DSN} (high)",
        "host: mx1   program: sm-mta",
        f"time: {rec['timestamp']}   count: 1",
        f"source: {rec['source']}",
        "  QSENDER0001: QRECEIPT001: DSN: Return receipt",  # the matched line
        "sender: forged@example.net",  # joined from the from= line
        "relay: client.example.net [192.0.2.7]",
        "queue_id: QSENDER0001",
        "dsn_queue_id: QRECEIPT001",
        "What to do: " + rule.remediation.strip().replace("{queue_id}", "QSENDER0001"),
        *rule.references,
    ):
        assert part in body, f"{part!r} missing from:\n{body}"
    # delivered is delivered: further passes and turns send nothing more
    feed.turn()
    assert feed.deliver() == Delivery()
    assert len(receiver.posts) == 1 and feed.outbox() == Counter(sent=1)


def test_markdown_carries_the_same_signature_with_log_text_escaped(
    feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    feed = feeds([{"name": "chat", "url": receiver.url("chat"), "format": "markdown"}])
    feed.write(*DSN_LINES)
    feed.turn()
    feed.deliver()
    (rec,) = feed.records()
    (post,) = receiver.wait_posts(1)
    rule = builtin_rule(DSN)
    for part in (
        f"**{rule.title}**",
        f"- rule: `{DSN}` (high)",
        "- host: mx1, program: sm\\-mta",
        "- sender: forged@example\\.net",
        "- relay: client\\.example\\.net \\[192\\.0\\.2\\.7\\]",
        "count: 1",
        rec["timestamp"],
        "QSENDER0001: QRECEIPT001: DSN: Return receipt",
        *(f"<{ref}>" for ref in rule.references),
    ):
        assert part in post.message, f"{part!r} missing from:\n{post.message}"


def test_one_message_per_finding_however_often_its_line_repeats(
    feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    """Three receipts give three messages; a suppressed signature (dovecot's process limit,
    one finding per host, service and hour) repeated five times gives one."""
    feed = feeds([{"name": "all", "url": receiver.url("all")}])
    limit = (
        "Nov 30 09:0{}:33 mx1 dovecot: master: Warning: service(pop3-login): process_limit "
        "(100) reached, client connections are being dropped"
    )
    feed.write(*(receipt(n) for n in range(3)), *(limit.format(i) for i in range(3)))
    feed.turn()
    feed.write(*(limit.format(i) for i in range(3, 5)))
    feed.turn()
    feed.deliver()
    feed.turn()
    feed.deliver()
    posts = receiver.wait_posts(4)
    time.sleep(0.2)
    assert len(receiver.posts) == 4, receiver.titles()
    assert_each_once([p for p in posts if DSN in p.message], range(3))
    (dovecot,) = [p for p in posts if "dovecot.process-limit-reached" in p.message]
    assert "service: pop3-login" in dovecot.message
    assert Counter(r["rule"] for r in feed.records()) == Counter(
        {DSN: 3, "dovecot.process-limit-reached": 1}
    )
    assert feed.outbox() == Counter(sent=4)


# -- routing -------------------------------------------------------------------------------------


def test_routing_by_severity_tag_rule_and_host(
    feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    """critical to a pager, everything to a mailbox; and by finding tag, rule id and host."""
    feed = feeds(
        [
            {"name": "pager", "url": receiver.url("pager"), "min_severity": "critical"},
            {"name": "mailbox", "url": receiver.url("mailbox")},
            {"name": "abuse", "url": receiver.url("abuse"), "finding_tags": ["backscatter"]},
            {"name": "kernel", "url": receiver.url("kernel"), "rules": ["kernel.*"]},
            {"name": "dbs", "url": receiver.url("dbs"), "hosts": ["db*"]},
            {
                "name": "db-high",
                "url": receiver.url("db-high"),
                "hosts": "db*",
                "min_severity": "high",
            },
        ]
    )
    feed.write(KERNEL_RO, *DSN_LINES, UNIT_FAILED)
    feed.turn()
    feed.deliver()
    receiver.wait_posts(9)
    time.sleep(0.2)
    kernel = "[critical] The kernel remounted a file system read-only after an error on db1"
    dsn = f"[high] {builtin_rule(DSN).title} on mx1"
    unit = f"[medium] {builtin_rule('systemd.unit-failed').title} on db2"
    assert receiver.titles("pager") == [kernel]
    assert Counter(receiver.titles("mailbox")) == Counter([kernel, dsn, unit])
    assert receiver.titles("abuse") == [dsn]
    assert receiver.titles("kernel") == [kernel]
    assert Counter(receiver.titles("dbs")) == Counter([kernel, unit])
    assert receiver.titles("db-high") == [kernel]
    assert len(receiver.posts) == 9


# -- escaping and templates ----------------------------------------------------------------------


def alert_rules(base: Path, notify: str = "") -> Path:
    """A rule that captures free text from the log line (``what``), as some real ones do."""
    d = base / "rules"
    d.mkdir(parents=True, exist_ok=True)
    (d / "alert.yaml").write_text(
        f"""rules:
  - id: app.alert
    title: The application raised an alert
    severity: high
    description: An alert line from the application.
    remediation: Read the alert and act on it.
    references: [https://example.org/runbook]
    tags: [app]
    select:
      program: app
    match:
      message:
        regex: '^ALERT (?P<what>[^;]+)$'
{notify}    examples:
      match:
        - line: 'Nov 30 09:00:00 h app[1]: ALERT disk on fire'
          fields: {{what: disk on fire}}
      no_match:
        - 'Nov 30 09:00:00 h other[1]: ALERT disk on fire'
""",
        encoding="utf-8",
    )
    return d


def evil_line(host: str = "web1") -> str:
    return f"Nov 30 09:11:00 {host} app[3]: ALERT {EVIL} red"


def test_markdown_fields_from_the_log_arrive_escaped(
    tmp_path: Path, feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    """A captured field holding ``*bold* [link](http://evil) ESC[31m`` arrives with every
    markdown character backslash-escaped and the control character spelled out; no raw
    control character reaches any message, in markdown or text."""
    feed = feeds(
        [
            {"name": "md", "url": receiver.url("md"), "format": "markdown"},
            {"name": "txt", "url": receiver.url("txt")},
        ],
        rules=[alert_rules(tmp_path)],
        builtin=False,
    )
    feed.write(evil_line())
    feed.turn()
    feed.deliver()
    receiver.wait_posts(2)
    (md,) = receiver.at("md")
    (txt,) = receiver.at("txt")
    assert "- what: \\*bold\\* \\[link\\]\\(http://evil\\) \\\\x1b\\[31m red" in md.message
    assert "what: *bold* [link](http://evil) \\x1b[31m red" in txt.message
    for post in (md, txt):
        assert not any(ord(c) < 0x20 and c != "\n" for c in post.title + post.message), post


def markdown_renderings(text: str) -> dict[str, str]:
    """The HTML two markdown engines make of ``text``: CommonMark (markdown-it-py, what most
    chat services follow) and Python-Markdown (what apprise converts markdown with for
    HTML services such as e-mail)."""
    import markdown
    from markdown_it import MarkdownIt

    return {
        "commonmark": MarkdownIt().render(text),
        "python-markdown": markdown.markdown(text),
    }


def test_markdown_log_line_cannot_forge_links_or_emphasis(
    tmp_path: Path, feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    feed = feeds(
        [{"name": "md", "url": receiver.url("md"), "format": "markdown"}],
        rules=[alert_rules(tmp_path)],
        builtin=False,
    )
    feed.write(evil_line())
    feed.turn()
    feed.deliver()
    (md,) = receiver.wait_posts(1)
    for engine, html in markdown_renderings(md.message).items():
        assert 'href="http://evil"' not in html, f"{engine} renders a forged link:\n{html}"
        assert "<em>bold</em>" not in html, f"{engine} renders forged emphasis:\n{html}"


def test_a_rules_own_template_shapes_its_messages(
    tmp_path: Path, feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    """``notify: {title, body}`` in a rule replaces the default for that rule only; the log
    text it names is escaped for each notifier's format all the same."""
    rules = alert_rules(
        tmp_path,
        "    notify:\n"
        "      title: 'ALERT from {host}: {rule}'\n"
        '      body: "Alert on {host} at {time} ({count}x): {message}\\nfields: {fields}"\n',
    )
    feed = feeds(
        [
            {"name": "md", "url": receiver.url("md"), "format": "markdown"},
            {"name": "txt", "url": receiver.url("txt")},
        ],
        rules=[rules],
        builtin=True,
    )
    feed.write(evil_line("web-1"), *DSN_LINES)
    feed.turn()
    feed.deliver()
    receiver.wait_posts(4)
    recs = {r["rule"]: r for r in feed.records()}
    when = recs["app.alert"]["timestamp"]
    (txt_alert,) = [p for p in receiver.at("txt") if p.title.startswith("ALERT")]
    assert txt_alert.title == "ALERT from web-1: app.alert"
    assert txt_alert.message.rstrip("\n") == (
        f"Alert on web-1 at {when} (1x): ALERT *bold* [link](http://evil) \\x1b[31m red\n"
        "fields: what: *bold* [link](http://evil) \\x1b[31m red"
    )
    (md_alert,) = [p for p in receiver.at("md") if p.title.startswith("ALERT")]
    assert md_alert.message.startswith(
        f"Alert on web\\-1 at {when} (1x): ALERT \\*bold\\* \\[link\\]\\(http://evil\\) "
        "\\\\x1b\\[31m red\n"
    ), md_alert.message
    for engine, html in markdown_renderings(md_alert.message).items():
        assert 'href="http://evil"' not in html and "<em>" not in html, (engine, html)
    # the other rule keeps the default template
    dsn_titles = {p.title for p in receiver.posts if not p.title.startswith("ALERT")}
    assert dsn_titles == {f"[high] {builtin_rule(DSN).title} on mx1"}
    assert all("What to do:" in p.message for p in receiver.at("txt") if DSN in p.message)


# -- rate limits and digests ----------------------------------------------------------------------


def test_a_rate_limit_folds_the_rest_into_one_digest_once_the_period_allows(
    feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    """``limit: {count: 2, period: 2s}``: five findings at once give two messages now and,
    two seconds later, one digest listing the three others; then nothing more."""
    feed = feeds(
        [
            {
                "name": "limited",
                "url": receiver.url("limited"),
                "limit": {"count": 2, "period": "2s"},
            },
            {"name": "unlimited", "url": receiver.url("unlimited")},
        ]
    )
    hosts = [f"mx{n}" for n in range(5)]
    feed.write(*(receipt(n, host=h) for n, h in enumerate(hosts)))
    feed.turn()
    first = feed.deliver()
    assert (first.sent, first.folded, first.digests) == (7, 3, 0)
    receiver.wait_posts(2, "limited")
    title = builtin_rule(DSN).title
    assert receiver.titles("limited") == [f"[high] {title} on {h}" for h in hosts[:2]]
    assert len(receiver.at("unlimited")) == 5
    t0 = receiver.at("limited")[0].at
    deadline = time.monotonic() + 10
    while len(receiver.at("limited")) < 3:
        assert time.monotonic() < deadline, "no digest within 10 s"
        assert feed.deliver().sent == 0
        time.sleep(0.05)
    digest = receiver.at("limited")[2]
    assert digest.at - t0 >= 1.9, "the digest came before the period allowed it"
    assert digest.title == "[logwarden] 3 more findings (rate limit of limited)"
    listed = [line.strip() for line in digest.message.splitlines() if line.startswith("  ")]
    assert listed == [f"[high] {title} on {h}" for h in hosts[2:]], digest.message
    time.sleep(0.3)
    assert feed.deliver() == Delivery()
    assert len(receiver.at("limited")) == 3 and len(receiver.posts) == 8
    assert feed.outbox() == Counter(sent=7, digested=3)


# -- real mail -------------------------------------------------------------------------------------


def test_mailto_delivers_real_mail(feeds: Callable[..., Feed], smtp: MailServer) -> None:
    feed = feeds([{"name": "mail", "url": mailto(smtp)}])
    feed.write(*DSN_LINES, KERNEL_RO)
    feed.turn()
    assert feed.deliver().sent == 2
    mails = smtp.wait(2)
    rule = builtin_rule(DSN)
    by_subject = {m.message["Subject"]: m for m in mails}
    dsn = by_subject[f"[high] {rule.title} on mx1"]
    assert "[critical] The kernel remounted a file system read-only after an error on db1" in (
        by_subject
    )
    assert dsn.login == (SMTP_USER, SMTP_PASSWORD)
    assert dsn.mail_from == "logwarden@example.com" and dsn.rcpt_tos == ["ops@example.org"]
    body = dsn.part("text/plain")
    assert body is not None, dsn.message
    for part in (
        f"rule: {DSN} (high)",
        "QSENDER0001: QRECEIPT001: DSN: Return receipt",
        "sender: forged@example.net",
        rule.references[0],
    ):
        assert part in body, f"{part!r} missing from the mail:\n{body}"
    assert feed.outbox() == Counter(sent=2)


def test_markdown_mail_html_has_no_link_forged_by_a_log_line(
    tmp_path: Path, feeds: Callable[..., Feed], smtp: MailServer
) -> None:
    feed = feeds(
        [{"name": "mail", "url": mailto(smtp), "format": "markdown"}],
        rules=[alert_rules(tmp_path)],
        builtin=False,
    )
    feed.write(evil_line())
    feed.turn()
    feed.deliver()
    (mail,) = smtp.wait(1)
    html = mail.part("text/html")
    assert html is not None, mail.message
    assert 'href="http://evil"' not in html and "<em>bold</em>" not in html, html


def test_a_markdown_mail_subject_names_the_host_as_logged(
    feeds: Callable[..., Feed], smtp: MailServer
) -> None:
    feed = feeds([{"name": "mail", "url": mailto(smtp), "format": "markdown"}])
    feed.write(KERNEL_RO.replace(" db1 ", " db-1.example.org "))
    feed.turn()
    feed.deliver()
    (mail,) = smtp.wait(1)
    assert mail.message["Subject"] == (
        "[critical] The kernel remounted a file system read-only after an error on db-1.example.org"
    )


# -- configuration and the command line ------------------------------------------------------------


def test_a_bad_notifier_url_fails_validation_and_startup_with_file_and_line(
    tmp_path: Path,
) -> None:
    config = tmp_path / "logwarden.yaml"
    config.write_text(
        f"paths:\n  - {tmp_path}/syslog\n"
        f"state_dir: {tmp_path}/state\n"
        "notify:\n"
        "  - url: json://127.0.0.1:9/ok\n"
        "    tag: all\n"
        "  - url: 'nosuchscheme://x'\n"  # line 7
        "    tag: pager\n",
        encoding="utf-8",
    )
    for args in (
        ["rules", "validate", "--config", str(config)],
        ["watch", "--config", str(config)],
    ):
        res = logwarden(*args, timeout=30)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert f"{config}:7" in res.stderr and "nosuchscheme" in res.stderr, res.stderr
    assert not (tmp_path / "state").exists()
    # a rejected URL carrying a password is named without it
    config.write_text(
        "notify:\n  - url: 'mailto://ops:TopSecret9@127.0.0.1?from=not-an-address'\n",
        encoding="utf-8",
    )
    res = logwarden("rules", "validate", "--config", str(config), timeout=30)
    assert res.returncode == 2 and f"{config}:2" in res.stderr, res.stderr
    assert "TopSecret9" not in res.stdout + res.stderr
    # the good config validates
    config.write_text("notify:\n  - url: json://127.0.0.1:9/ok\n", encoding="utf-8")
    res = logwarden("rules", "validate", "--config", str(config), timeout=30)
    assert res.returncode == 0, res.stderr


def test_notify_test_sends_to_tagged_notifiers_and_reports_each(
    tmp_path: Path, receiver: Receiver, smtp: MailServer
) -> None:
    dead = free_port()
    config = tmp_path / "logwarden.yaml"
    config.write_text(
        "notify:\n"
        f"  - {{name: hook, url: '{receiver.url('hook', auth='bob:Hunter2pw')}', tag: [ops, chat]}}\n"
        f"  - {{name: dead, url: 'json://127.0.0.1:{dead}/x', tag: ops}}\n"
        f"  - {{name: mail, url: '{mailto(smtp)}', tag: [ops, mail]}}\n"
        f"  - {{name: other, url: '{receiver.url('other')}', tag: other}}\n",
        encoding="utf-8",
    )
    res = logwarden("notify", "test", "--config", str(config), "--tag", "ops")
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stdout.splitlines()
    assert [line.split(":")[0].split() for line in lines] == [
        ["ok", "hook"],
        ["FAILED", "dead"],
        ["ok", "mail"],
    ], res.stdout
    assert "json://bob:****@127.0.0.1" in lines[0]
    assert f"mailto://{SMTP_USER}:****@127.0.0.1" in lines[2]
    assert "Hunter2pw" not in res.stdout + res.stderr
    assert SMTP_PASSWORD not in res.stdout + res.stderr
    assert receiver.titles() == ["logwarden test message"] and receiver.at("hook")
    assert receiver.at("hook")[0].headers.get("Authorization", "").startswith("Basic ")
    (mail,) = smtp.wait(1)
    assert mail.message["Subject"] == "logwarden test message"
    # only the tagged ones, all fine: exit 0
    res = logwarden("notify", "test", "--config", str(config), "--tag", "chat")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert (
        res.stdout.startswith("ok     hook: json://bob:****@") and len(res.stdout.splitlines()) == 1
    )
    assert len(receiver.at("hook")) == 2 and not receiver.at("other")
    res = logwarden("notify", "test", "--config", str(config), "--tag", "nobody")
    assert res.returncode == 2 and "no notifiers" in res.stderr


def test_scan_notify_sends_one_message_per_finding(tmp_path: Path, receiver: Receiver) -> None:
    res = logwarden(
        "scan", str(SAMPLES / "mail"), "--format", "jsonl", "-o", str(tmp_path / "f.jsonl"),
        "--notify", receiver.url("scan"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    found = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert len(found) >= 30
    posts = receiver.at("scan")
    assert len(posts) == len(found), (len(posts), len(found))
    assert Counter(p.title for p in posts) == Counter(
        f"[{f['severity']}] {f['title']} on {f['host']}" for f in found
    )
    sources = Counter(
        line.removeprefix("source: ")
        for p in posts
        for line in p.message.splitlines()
        if line.startswith("source: ")
    )
    assert sources == Counter(f["source"] for f in found)
    # a correlation finding lists the lines that made it
    (silent,) = [f for f in found if f["rule"] == "dovecot.silent-stop"]
    (post,) = [p for p in posts if p.title.startswith("[critical]")]
    assert f"source: {silent['source']}" in post.message
    for related in silent["related"]:
        assert related["message"] in post.message
    assert f"notifications: {len(found)} new findings, {len(found)} sent" in res.stderr


def test_scan_config_gives_notifiers_with_floors_tz_and_hosts(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A cron scan with the daemon's config: its notifiers (severity floor), tz and per-path
    host apply; options on the command line win."""
    log = tmp_path / "error.log"
    log.write_bytes((SAMPLES / "apache2" / "error.log").read_bytes())
    config = tmp_path / "logwarden.yaml"
    config.write_text(
        f"tz: Asia/Tokyo\npaths:\n  - {{path: {log}, host: web1}}\n"
        f"notify:\n  - url: {receiver.url('cfg')}\n    min_severity: high\n"
    )
    out = tmp_path / "f.jsonl"
    res = logwarden("scan", str(log), "--config", str(config), "--format", "jsonl", "-o", str(out))
    assert res.returncode == 0, res.stderr
    found = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(found) >= 5 and {f["host"] for f in found} == {"web1"}
    assert all(f["timestamp"].endswith("+09:00") for f in found)
    high = [f for f in found if f["severity"] in ("high", "critical")]
    assert 0 < len(high) < len(found)
    assert sorted(p.title for p in receiver.at("cfg")) == sorted(
        f"[{f['severity']}] {f['title']} on web1" for f in high
    )
    # --tz on the command line wins over the config's
    res = logwarden(
        "scan", str(log), "--config", str(config), "--tz", "UTC", "--format", "jsonl", "--dry-run",
        "-q", "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert all(json.loads(x)["timestamp"].endswith("+00:00") for x in out.read_text().splitlines())
    assert res.stdout.count("--- to json://") == len(high)
    # a bad config is refused before scanning, with file:line
    config.write_text("tz: UTC\nnotfy: []\n")
    res = logwarden("scan", str(log), "--config", str(config))
    assert res.returncode == 2 and f"{config}:2: unknown setting 'notfy'" in res.stderr


def test_scan_notify_dry_run_prints_and_sends_nothing(tmp_path: Path, receiver: Receiver) -> None:
    url = receiver.url("dry", auth="bob:Hunter2pw")
    res = logwarden(
        "scan", str(SAMPLES / "mail"), "-q", "-o", str(tmp_path / "f.txt"),
        "--notify", url, "--dry-run",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    blocks = res.stdout.split("--- to ")[1:]
    assert len(blocks) >= 30
    assert all(b.startswith(f"json://bob:****@127.0.0.1:{receiver.port}/dry") for b in blocks)
    assert "Hunter2pw" not in res.stdout + res.stderr
    assert any("sender: " in b for b in blocks) and any("[critical]" in b for b in blocks)
    assert receiver.posts == [] and receiver.errors == [] and receiver.hung == []


def test_unnamed_notifiers_keep_their_name_when_the_config_is_reordered() -> None:
    """Queued notifications wait by notifier name: moving a pager above the mail notifier
    must not hand the mail notifier's queue to the pager."""
    from pipeline.notify.notifiers import NotifyError, parse_notifiers

    mail = {"url": "mailto://u:p@example.org", "__line__": 3}
    pager = {"url": "json://localhost:9/page", "min_severity": "critical", "__line__": 7}
    one = {n.url: n.name for n in parse_notifiers([mail, pager], "c.yaml")}
    two = {n.url: n.name for n in parse_notifiers([{**pager, "__line__": 3}, mail], "c.yaml")}
    assert one == two and len(set(one.values())) == 2
    changed = parse_notifiers([{**pager, "min_severity": "high"}], "c.yaml")
    assert changed[0].name != one[pager["url"]]  # a changed notifier is a new one
    with pytest.raises(NotifyError, match="two notifiers are named"):
        parse_notifiers([mail, mail], "c.yaml")
