"""The Apache error log grammar (format ``apache-error``)."""

from __future__ import annotations

from datetime import datetime

import pytest

from pipeline.grammars import FORMATS, GrammarError
from pipeline.grammars.apache_error import parse_apache_body, split_address

PARSE = FORMATS["apache-error"].parse


def test_24_full_line() -> None:
    parsed = PARSE(
        "[Sat Jan 23 13:22:28.123456 2021] [core:error] [pid 1299:tid 140234] "
        "[client 192.0.2.7:51234] AH00124: Request exceeded the limit of 10 internal redirects"
    )
    assert parsed.timestamp == datetime(2021, 1, 23, 13, 22, 28, 123456)
    assert (parsed.level, parsed.pid, parsed.host, parsed.program) == ("error", 1299, None, None)
    assert parsed.fields == {
        "module": "core",
        "tid": "140234",
        "client": "192.0.2.7",
        "client_port": "51234",
        "ah_code": "AH00124",
    }
    assert parsed.message == "AH00124: Request exceeded the limit of 10 internal redirects"


def test_24_pid_without_tid_and_without_client() -> None:
    parsed = PARSE(
        "[Tue Sep 30 12:11:21.258612 2014] [ssl:error] [pid 30473] AH02032: Hostname"
        " www.example.com provided via SNI and hostname ssl://www.example.com provided via HTTP"
        " are different"
    )
    assert parsed.pid == 30473
    assert parsed.fields == {"module": "ssl", "ah_code": "AH02032"}


@pytest.mark.parametrize(
    ("block", "client", "port"),
    [
        ("[client [2001:db8::80da:af6b:8b2c]:51548]", "2001:db8::80da:af6b:8b2c", "51548"),
        ("[client 2001:db8::80da:af6b:8b2c]", "2001:db8::80da:af6b:8b2c", None),
        ("[client 127.0.0.1]", "127.0.0.1", None),
        ("[client 192.0.2.1:56175]", "192.0.2.1", "56175"),
    ],
)
def test_clients(block: str, client: str, port: str | None) -> None:
    parsed = PARSE(f"[Sat Jul 20 22:11:44.147674 2013] [authz_owner:error] [pid 17540] {block} x")
    assert parsed.fields["client"] == client
    assert parsed.fields.get("client_port") == port
    assert parsed.message == "x"


def test_remote_block() -> None:
    parsed = PARSE(
        "[Mon Nov 06 13:39:56.637868 2023] [auth_basic:error] [pid 3175001:tid 140494544914112]"
        " [remote 192.0.2.111:35924] AH01618: user whatever not found: /admin"
    )
    assert (parsed.fields["remote"], parsed.fields["remote_port"]) == ("192.0.2.111", "35924")
    assert "client" not in parsed.fields


def test_22_line() -> None:
    parsed = PARSE("[Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] Directory index forbidden")
    assert parsed.timestamp == datetime(2005, 12, 4, 4, 47, 44)
    assert (parsed.level, parsed.pid, parsed.fields) == ("error", None, {"client": "1.2.3.4"})
    assert parsed.message == "Directory index forbidden"


def test_warn_and_trace_levels_are_normalised() -> None:
    parsed = PARSE("[Tue Sep 30 12:24:22.891366 2014] [proxy:warn] [pid 2331] AH01136: Unescaped")
    assert (parsed.level, parsed.fields["apache_level"]) == ("warning", "warn")
    parsed = PARSE("[Tue Sep 30 12:24:22.891366 2014] [core:trace5] [pid 2331] request")
    assert (parsed.level, parsed.fields["apache_level"]) == ("debug", "trace5")


def test_module_may_be_empty() -> None:
    parsed = PARSE("[Sun Nov 23 18:49:01.713508 2014] [:error] [pid 15816] PHP Notice:  x ")
    assert "module" not in parsed.fields
    assert parsed.message == "PHP Notice:  x"


def test_os_error_before_the_client() -> None:
    parsed = PARSE(
        "[Tue Sep 30 11:30:13.262255 2014] [core:error] [pid 20101] (13)Permission denied:"
        " [client 99.47.227.95:34567] AH00035: access to / denied"
    )
    assert (parsed.fields["errno"], parsed.fields["os_error"]) == ("13", "Permission denied")
    # the OS error stays in the message, as in the raw line, so wording rules see it
    assert parsed.message == "(13)Permission denied: AH00035: access to / denied"
    assert parsed.fields["ah_code"] == "AH00035"


@pytest.mark.parametrize(
    ("line", "level", "client"),
    [
        (
            "[error] [client 80.230.208.105] Directory index forbidden by rule: /home/",
            "error",
            "80.230.208.105",
        ),
        ("[notice] Apache configured", "notice", None),
    ],
)
def test_lines_without_a_date(line: str, level: str, client: str | None) -> None:
    parsed = PARSE(line)
    assert parsed.timestamp is None
    assert parsed.level == level
    assert parsed.fields.get("client") == client


@pytest.mark.parametrize(
    "line",
    [
        "AH00558: apache2: Could not reliably determine the server's fully qualified domain name,"
        " using 127.0.1.1. Set the 'ServerName' directive globally to suppress this message",
        "httpd: Could not reliably determine the server's fully qualified domain name",
    ],
)
def test_startup_lines_without_brackets(line: str) -> None:
    parsed = PARSE(line + "  ")
    assert parsed.timestamp is None
    assert parsed.message == line
    assert parsed.level is None


def test_startup_line_keeps_its_ah_code() -> None:
    assert PARSE("AH00558: apache2: Could not").fields == {"ah_code": "AH00558"}


@pytest.mark.parametrize(
    "line",
    ["", "hello", "[Sun Dec 04 04:47:44 2005]", "[Sun Dec 04 04:47:44 2005] [bogus] x", "[error"],
)
def test_not_apache(line: str) -> None:
    with pytest.raises(GrammarError):
        PARSE(line)


def test_error_column_points_at_the_level_block() -> None:
    with pytest.raises(GrammarError) as info:
        PARSE("[Sun Dec 04 04:47:44 2005] [bogus] x")
    assert info.value.col == 0


def test_body_read_from_a_syslog_message() -> None:
    fields = parse_apache_body(
        "[authz_core:error] [pid 22036] [client 192.0.2.2:59392] AH01630: client denied"
    )
    assert fields == {
        "apache_level": "error",
        "module": "authz_core",
        "client": "192.0.2.2",
        "client_port": "59392",
        "ah_code": "AH01630",
        "apache_pid": "22036",
    }
    assert parse_apache_body("not an error log line") == {}


def test_split_address() -> None:
    assert split_address("1.2.3.4:80") == ("1.2.3.4", "80")
    assert split_address("[::1]:80") == ("::1", "80")
    assert split_address("::1") == ("::1", None)
    assert split_address("host:port") == ("host", None)
