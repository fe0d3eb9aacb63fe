"""What a notification says about its finding beyond the text: apprise's message type by
severity (what receivers colour and sort by), the default severity floor, and remediation
texts with the finding's captured fields filled in (escaped like every other log value).

Everything is checked on what a real HTTP receiver on 127.0.0.1 gets from apprise's
``json://`` (its ``type`` key), as in ``tests/notify/test_notify.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.notify.test_notify import (
    DSN_LINES,
    KERNEL_RO,
    UNIT_FAILED,
    Feed,
    Receiver,
    builtin_rule,
    feeds,  # noqa: F401 - a fixture
    markdown_renderings,
    receipt,
    receiver,  # noqa: F401 - a fixture
)

#: a low-severity finding (Apache's internal redirect loop), as rsyslog writes it
REDIRECT_LOOP = (
    "Nov 30 07:14:00 web1 apache2[1099]: [core:error] [pid 1099:tid 140351810005568] "
    "[client 198.51.100.23:61842] AH00124: Request exceeded the limit of 10 internal "
    "redirects due to probable configuration error."
)


def by_title(receiver: Receiver, path: str) -> dict[str, str]:
    """Title -> apprise type of the posts to ``path``."""
    return {p.title: p.type for p in receiver.at(path)}


def test_severity_maps_to_the_apprise_type(feeds: Callable[..., Feed], receiver: Receiver) -> None:
    """critical and high arrive as ``failure``, medium as ``warning``, low as ``info``."""
    feed = feeds([{"name": "all", "url": receiver.url("all"), "min_severity": "info"}])
    feed.write(KERNEL_RO, *DSN_LINES, UNIT_FAILED, REDIRECT_LOOP)
    feed.turn()
    feed.deliver()
    receiver.wait_posts(4)
    got = {title.split("]")[0] + "]": kind for title, kind in by_title(receiver, "all").items()}
    assert got == {
        "[critical]": "failure",
        "[high]": "failure",
        "[medium]": "warning",
        "[low]": "info",
    }


def test_the_default_floor_is_medium(feeds: Callable[..., Feed], receiver: Receiver) -> None:
    """A notifier without ``min_severity`` gets medium and above; ``info`` opts back in."""
    feed = feeds(
        [
            {"name": "plain", "url": receiver.url("plain")},
            {"name": "chatty", "url": receiver.url("chatty"), "min_severity": "info"},
        ]
    )
    feed.write(UNIT_FAILED, REDIRECT_LOOP)
    feed.turn()
    feed.deliver()
    receiver.wait_posts(3)
    time.sleep(0.2)
    unit = f"[medium] {builtin_rule('systemd.unit-failed').title} on db2"
    loop = f"[low] {builtin_rule('apache.internal-redirect-limit').title} on web1"
    assert by_title(receiver, "plain") == {unit: "warning"}
    assert by_title(receiver, "chatty") == {unit: "warning", loop: "info"}


def test_a_digest_carries_the_type_of_its_most_severe_finding(
    feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    """One message a minute: the first finding (medium) goes out as ``warning``; the
    digest of the rest, which holds a critical one, as ``failure``."""
    feed = feeds(
        [{"name": "lim", "url": receiver.url("lim"), "limit": {"count": 1, "period": "1s"}}]
    )
    feed.write(UNIT_FAILED)
    feed.turn()
    feed.write(receipt(1), KERNEL_RO)
    feed.turn()
    feed.deliver()
    (first,) = receiver.wait_posts(1)
    assert first.type == "warning"
    deadline = time.monotonic() + 10
    while len(receiver.at("lim")) < 2:
        assert time.monotonic() < deadline, "no digest within 10 s"
        feed.deliver()
        time.sleep(0.05)
    digest = receiver.at("lim")[1]
    assert digest.title.startswith("[logwarden] 2 more findings")
    assert digest.type == "failure"


def test_remediation_names_the_failed_unit(feeds: Callable[..., Feed], receiver: Receiver) -> None:
    """The built-in unit rule says `systemctl status {unit}`: the message names nginx."""
    feed = feeds(
        [
            {"name": "txt", "url": receiver.url("txt")},
            {"name": "md", "url": receiver.url("md"), "format": "markdown"},
        ]
    )
    feed.write(UNIT_FAILED)
    feed.turn()
    feed.deliver()
    receiver.wait_posts(2)
    assert "{unit}" in builtin_rule("systemd.unit-failed").remediation
    for path in ("txt", "md"):
        (post,) = receiver.at(path)
        # inside a code span the value is shown as logged: escapes do not work there
        assert "`systemctl status nginx.service`" in post.message, post.message
        assert "`systemctl reset-failed nginx.service`" in post.message
        assert "{unit}" not in post.message


def placeholder_rules(base: Path) -> Path:
    """A rule whose remediation names a captured field in and out of code spans, a field it
    never captures, the host, and braces that are no placeholder at all."""
    d = base / "rules"
    d.mkdir(parents=True, exist_ok=True)
    (d / "job.yaml").write_text(
        r"""rules:
  - id: app.job-failed
    title: A job failed
    severity: high
    description: A job of the application failed.
    remediation: >
      Rerun `jobctl run {job}` on {host}; the job {job} keeps its log in
      ${LOGDIR}/{job}.log. Ask {owner} if it fails again; {"retry": true} in its config.
    tags: [app]
    select:
      program: app
    match:
      message:
        regex: '^job (?P<job>\S+) failed$'
    examples:
      match:
        - line: 'Nov 30 09:00:00 h app[1]: job backup failed'
          fields: {job: backup}
      no_match:
        - 'Nov 30 09:00:00 h app[1]: job backup done'
""",
        encoding="utf-8",
    )
    return d


def test_remediation_fields_are_filled_once_and_escaped(
    tmp_path: Path, feeds: Callable[..., Feed], receiver: Receiver
) -> None:
    """A value from the log line is escaped for the notifier's format (markdown outside code
    spans, control characters everywhere), a value with a backtick is not put into a code
    span it would close, a value that looks like a placeholder is not expanded, and unknown
    placeholders and other braces stay as written."""
    feed = feeds(
        [
            {"name": "txt", "url": receiver.url("txt")},
            {"name": "md", "url": receiver.url("md"), "format": "markdown"},
        ],
        rules=[placeholder_rules(tmp_path)],
        builtin=False,
    )
    feed.write(
        "Nov 30 09:00:00 web1 app[1]: job nightly_[x](http://evil) failed",
        "Nov 30 09:00:01 web1 app[1]: job a`b{host}\x1b[31m failed",
    )
    feed.turn()
    feed.deliver()
    receiver.wait_posts(4)
    evil = "nightly_[x](http://evil)"
    text = {p.message for p in receiver.at("txt")}
    md = {p.message for p in receiver.at("md")}
    (t1,) = [m for m in text if "nightly" in m]
    assert f"Rerun `jobctl run {evil}` on web1; the job {evil} keeps its log in" in t1, t1
    assert f"${{LOGDIR}}/{evil}.log. Ask {{owner}} if it fails again;" in t1
    assert '{"retry": true} in its config.' in t1
    (t2,) = [m for m in text if "a`b" in m]
    assert "Rerun `jobctl run a`b{host}\\x1b[31m` on web1" in t2, t2  # not expanded again
    (m1,) = [m for m in md if "nightly" in m]
    assert f"Rerun `jobctl run {evil}` on web1" in m1, m1  # in a code span: as logged
    assert "the job nightly\\_\\[x\\]\\(http://evil\\) keeps" in m1  # outside: escaped
    (m2,) = [m for m in md if "a`b" in m]
    assert "Rerun `jobctl run {job}` on web1" in m2, m2  # a backtick would close the span
    assert "the job a\\`b\\{host\\}\\\\x1b\\[31m keeps" in m2
    for post in receiver.posts:
        assert "\x1b" not in post.message
    for message in md:
        for engine, html in markdown_renderings(message).items():
            assert 'href="http://evil"' not in html, (engine, html)
