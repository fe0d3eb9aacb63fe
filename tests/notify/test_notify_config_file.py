"""Notifiers from an apprise config file, delivered to a real local HTTP receiver."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.notify.notifiers import parse_notifiers
from pipeline.notify.outbox import apprise_send


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[str]]]:
    got: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], got
    srv.shutdown()


def test_a_notifier_can_take_its_urls_from_an_apprise_config_file(
    tmp_path: Path, receiver: tuple[int, list[str]]
) -> None:
    port, got = receiver
    (tmp_path / "apprise.yml").write_text(
        f"urls:\n  - json://bob:s3cret@127.0.0.1:{port}/a\n  - json://127.0.0.1:{port}/b\n"
    )
    (tmp_path / "config.yaml").write_text(
        "paths: []\nnotify:\n  - name: team\n    config: apprise.yml\n    min_severity: high\n"
    )
    cfg = load_config(tmp_path / "config.yaml")
    (n,) = parse_notifiers(cfg.notify, str(tmp_path / "config.yaml"))
    assert n.name == "team" and "s3cret" not in n.masked and "****" in n.masked
    ok, err = apprise_send(n, "title", "body", "text")
    assert ok, err
    assert sorted(got) == ["/a", "/b"]


def test_an_apprise_config_file_without_urls_is_an_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "apprise.yml").write_text("urls: []\n")
    (tmp_path / "config.yaml").write_text("paths: []\nnotify:\n  - config: apprise.yml\n")
    with pytest.raises(ConfigError, match=r"config.yaml:3: apprise accepts no URL"):
        load_config(tmp_path / "config.yaml")
