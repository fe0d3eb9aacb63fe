"""Fallback formats: ``access-log`` and ``timestamped``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.grammars import FORMATS, GrammarError

ACCESS = FORMATS["access-log"].parse
TIMESTAMPED = FORMATS["timestamped"].parse
PLUS_ONE = timezone(timedelta(hours=1))


def test_combined_access_log() -> None:
    line = (
        '1.2.3.4 - - [05/Mar/2007:14:39:21 +0100] "POST /123.html/trackback/ HTTP/1.0" 301 459'
        ' "http://www.mydomain.tld/123.html/trackback" "TrackBack/1.02"'
    )
    parsed = ACCESS(line)
    assert parsed.timestamp == datetime(2007, 3, 5, 14, 39, 21, tzinfo=PLUS_ONE)
    assert parsed.message == line
    assert parsed.fields == {
        "client": "1.2.3.4",
        "request": "POST /123.html/trackback/ HTTP/1.0",
        "method": "POST",
        "path": "/123.html/trackback/",
        "protocol": "HTTP/1.0",
        "status": "301",
        "size": "459",
        "referer": "http://www.mydomain.tld/123.html/trackback",
        "user_agent": "TrackBack/1.02",
    }


def test_access_log_with_vhost_user_and_extra_field() -> None:
    parsed = ACCESS(
        'www.site.com 192.0.2.222 - tomcat [18/Aug/2024:21:08:39 +0100] "GET /a\\"b HTTP/1.1"'
        ' 403 - "-" "-" "-"'
    )
    assert parsed.fields["vhost"] == "www.site.com"
    assert parsed.fields["client"] == "192.0.2.222"
    assert parsed.fields["user"] == "tomcat"
    assert parsed.fields["path"] == '/a"b'
    assert "size" not in parsed.fields
    assert "referer" not in parsed.fields


def test_not_an_access_log() -> None:
    with pytest.raises(GrammarError):
        ACCESS("[Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] x")


@pytest.mark.parametrize(
    ("line", "when", "year_missing", "message"),
    [
        (
            "2013-01-04 17:03:46 login authenticator failed for x [24.106.174.74]: 535",
            datetime(2013, 1, 4, 17, 3, 46),
            False,
            "login authenticator failed for x [24.106.174.74]: 535",
        ),
        (
            "[2012-02-13 17:21:54] NOTICE[1638] chan_sip.c: Registration failed",
            datetime(2012, 2, 13, 17, 21, 54),
            False,
            "NOTICE[1638] chan_sip.c: Registration failed",
        ),
        (
            "2015/01/21 10:56:10 [error] 2833#0: *16336 open() failed",
            datetime(2015, 1, 21, 10, 56, 10),
            False,
            "[error] 2833#0: *16336 open() failed",
        ),
        (
            "11-Aug-2013 03:36:11.372 error: client 1.2.3.4#52115: denied",
            datetime(2013, 8, 11, 3, 36, 11, 372000),
            False,
            "error: client 1.2.3.4#52115: denied",
        ),
        (
            "[22-Jan-2013 22:28:21 +0200]: FAILED login for user1 from 192.0.43.10",
            datetime(2013, 1, 22, 22, 28, 21, tzinfo=timezone(timedelta(hours=2))),
            False,
            "FAILED login for user1 from 192.0.43.10",
        ),
        (
            "130324  0:04:00 [Warning] Access denied for user 'root'@'192.168.1.35'",
            datetime(2013, 3, 24, 0, 4),
            False,
            "[Warning] Access denied for user 'root'@'192.168.1.35'",
        ),
        (
            "08-03 07:56:53.026292 [WARN] [SOFIA] Can't find user",
            datetime(2000, 8, 3, 7, 56, 53, 26292),
            True,
            "[WARN] [SOFIA] Can't find user",
        ),
        (
            "Fri Jan 19 12:20:33 2007 [pid 27202] [anonymous] FAIL LOGIN: Client",
            datetime(2007, 1, 19, 12, 20, 33),
            False,
            "[pid 27202] [anonymous] FAIL LOGIN: Client",
        ),
        (
            "[Jan 18 17:39:50] NOTICE[12049]: res_pjsip_session.c:2337 new_invite: Call",
            datetime(2000, 1, 18, 17, 39, 50),
            True,
            "NOTICE[12049]: res_pjsip_session.c:2337 new_invite: Call",
        ),
        (
            "2011-12-25 17:09:20: (http_auth.c.875) password doesn't match",
            datetime(2011, 12, 25, 17, 9, 20),
            False,
            "(http_auth.c.875) password doesn't match",
        ),
        (
            "2006-02-13 15:52:30,388 fail2ban.actions        [123]: NOTICE  [sendmail] Ban",
            datetime(2006, 2, 13, 15, 52, 30, 388000),
            False,
            "fail2ban.actions        [123]: NOTICE  [sendmail] Ban",
        ),
        (
            "<W>2015-11-29 16:38:01.818 1 => <4:testUsernameOne(-1)> Rejected connection",
            datetime(2015, 11, 29, 16, 38, 1, 818000),
            False,
            "1 => <4:testUsernameOne(-1)> Rejected connection",
        ),
    ],
)
def test_timestamped(line: str, when: datetime, year_missing: bool, message: str) -> None:
    parsed = TIMESTAMPED(line)
    assert (parsed.timestamp, parsed.year_missing, parsed.message) == (when, year_missing, message)
    assert (parsed.host, parsed.program, parsed.pid) == (None, None, None)


@pytest.mark.parametrize(
    "line", ["", "no time here", "0000-12-30 00:00:00 server x[1]: y", "2013-13-01 00:00:00 x"]
)
def test_not_timestamped(line: str) -> None:
    with pytest.raises(GrammarError):
        TIMESTAMPED(line)
