"""``watch --metrics ADDR:PORT``: what ``logwarden status`` shows, as Prometheus metrics.

A thread of the daemon serves ``/metrics`` with prometheus_client. Each scrape reads the
state database read-only through :func:`pipeline.daemon.status`, exactly as the ``status``
command does, so both show the same numbers; reading detection or the outbox never blocks
on a scrape. Text (a notifier's last error) stays in ``status``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.config import parse_address
from pipeline.errors import UsageError

STATES = ("running", "stalled", "stopped")


def families(info: dict[str, Any]) -> list[Metric]:
    """The metrics of one :func:`pipeline.daemon.status` result."""
    d = info["daemon"]
    out: list[Metric] = []

    def gauge(name: str, doc: str, value: float | None) -> None:
        """A gauge without labels; no sample when the value is unknown (e.g. stopped)."""
        g = GaugeMetricFamily(name, doc)
        if value is not None:
            g.add_metric([], float(value))
        out.append(g)

    state = GaugeMetricFamily(
        "logwarden_daemon_state", "1 for the daemon's state (running, stalled, stopped)",
        labels=["state"],
    )  # fmt: skip
    for s in STATES:
        state.add_metric([s], 1.0 if d["state"] == s else 0.0)
    out.append(state)
    gauge("logwarden_daemon_pid", "Process id of the daemon", d["pid"])
    gauge("logwarden_daemon_uptime_seconds", "Seconds since the daemon started", d["uptime_s"])
    gauge(
        "logwarden_checkpoint_age_seconds",
        "Seconds since the last checkpoint (grows while no lines arrive)",
        d["checkpoint_age_s"],
    )
    gauge(
        "logwarden_heartbeat_age_seconds",
        "Seconds since the daemon last wrote its status record",
        d["heartbeat_age_s"],
    )
    gauge(
        "logwarden_lines_per_second",
        "Lines read per second over the last minute, all inputs",
        d["lines_per_s"],
    )
    lag = GaugeMetricFamily(
        "logwarden_input_lag_bytes", "Bytes written to an input and not read yet",
        labels=["input"],
    )  # fmt: skip
    rate = GaugeMetricFamily(
        "logwarden_input_lines_per_second", "Lines read per second over the last minute",
        labels=["input"],
    )  # fmt: skip
    lines = CounterMetricFamily(
        "logwarden_input_lines", "Lines read from an input (kept across restarts)",
        labels=["input"],
    )  # fmt: skip
    errors = CounterMetricFamily(
        "logwarden_input_errors", "Read errors of an input (kept across restarts)",
        labels=["input"],
    )  # fmt: skip
    copies = CounterMetricFamily(
        "logwarden_input_copies",
        "Matching events of an input set aside as copies of ones read from another "
        "rotation set (kept across restarts)",
        labels=["input"],
    )
    for s in info["sources"]:
        name = str(s["source"])
        lag.add_metric([name], float(s["lag_bytes"] or 0))
        rate.add_metric([name], float(s["lines_per_s"] or 0))
        lines.add_metric([name], float(s["lines"] or 0))
        errors.add_metric([name], float(s["errors"] or 0))
        copies.add_metric([name], float(s.get("copies") or 0))
    out += [lag, rate, lines, errors, copies]
    dropped = d["dropped_state"]
    evicted = CounterMetricFamily(
        "logwarden_state_evicted",
        "Detection state (windows, partial sequences, suppressions, join rows) evicted at "
        "the table caps since the daemon started",
        labels=["rule"],
    )
    for rule, n in dropped.get("evicted", {}).items():
        evicted.add_metric([rule], float(n))
    restored = CounterMetricFamily(
        "logwarden_state_dropped",
        "Detection state dropped at a start or reload: the rule changed shape or is no "
        "longer loaded (rule '*': all of it)",
        labels=["rule"],
    )
    for rule, n in dropped.get("dropped", {}).items():
        restored.add_metric([rule], float(n))
    out += [evicted, restored]
    per = {
        "sent": "Notifications sent (outbox rows kept: delivered ones for 14 days)",
        "failed": "Failed send attempts of the notifications kept",
        "pending": "Notifications waiting to be sent (retrying or rate-limited)",
        "dropped": "Notifications dropped because their notifier is no longer configured",
    }
    for key, doc in per.items():
        g = GaugeMetricFamily(f"logwarden_notifications_{key}", doc, labels=["notifier"])
        for n in info["notifiers"]:
            g.add_metric([str(n["notifier"])], float(n[key]))
        out.append(g)
    return out


class StatusCollector(Collector):
    """Reads the status afresh at every scrape."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def collect(self) -> Iterator[Metric]:
        from pipeline.daemon import status

        yield from families(status(self.state_dir))


def serve(address: str, state_dir: str) -> Any:
    """Serve ``/metrics`` on ``address`` (``HOST:PORT``) in a thread; returns the server
    (``shutdown()`` and ``server_close()`` stop it)."""
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise UsageError(f"--metrics: {exc}") from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(state_dir))
    try:
        server, _thread = start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
    return server
