"""What `serve` exposes: Prometheus metrics, a health check and the pages it is given (the
dashboard at ``/``), on 127.0.0.1 by default."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hippolyte.core.dashboard_html import CSP
from hippolyte.core.model import TableResult


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["target", "table"]
        self.last_success = Gauge(
            "hippolyte_last_success_timestamp_seconds",
            "When the table's last backup committed (Unix time)",
            labels,
            registry=self.registry,
        )
        self.items = Gauge(
            "hippolyte_backup_items", "Items in the last backup", labels, registry=self.registry
        )
        self.bytes = Gauge(
            "hippolyte_backup_bytes",
            "Bytes of item data in the last backup",
            labels,
            registry=self.registry,
        )
        self.duration = Gauge(
            "hippolyte_backup_duration_seconds",
            "Duration of the last backup",
            labels,
            registry=self.registry,
        )
        self.failures = Counter(
            "hippolyte_backup_failures", "Table backups that failed", labels, registry=self.registry
        )
        self.runs = Counter(
            "hippolyte_runs",
            "Jobs run, by job and result",
            ["job", "result"],
            registry=self.registry,
        )
        self.boosts = Gauge(
            "hippolyte_boosts_outstanding",
            "Capacity boosts not yet reverted",
            registry=self.registry,
        )
        self.drill_at = Gauge(
            "hippolyte_drill_timestamp_seconds",
            "When the table's last restore drill ran (Unix time)",
            labels,
            registry=self.registry,
        )
        self.drill_ok = Gauge(
            "hippolyte_drill_ok",
            "1 if the table's last restore drill proved its backup, 0 if it failed",
            labels,
            registry=self.registry,
        )
        self.drill_rto = Gauge(
            "hippolyte_drill_seconds_per_gb",
            "The restore seconds per GB of item data in the table's last drill (the RTO)",
            labels,
            registry=self.registry,
        )

    def table(self, target: str, result: TableResult, *, at: float) -> None:
        if result.started_in:  # runs remotely: the monitor learns its outcome
            return
        if not result.ok:
            self.failures.labels(target, result.table).inc()
            return
        self.last_success.labels(target, result.table).set(at)
        self.items.labels(target, result.table).set(result.item_count)
        self.bytes.labels(target, result.table).set(result.raw_bytes)
        self.duration.labels(target, result.table).set(result.duration_s)

    def seed(
        self,
        target: str,
        table: str,
        *,
        at: float,
        items: int,
        raw_bytes: int,
        duration_s: float,
    ) -> None:
        """A table's newest committed backup as the repository records it (at start)."""
        self.last_success.labels(target, table).set(at)
        self.items.labels(target, table).set(items)
        self.bytes.labels(target, table).set(raw_bytes)
        self.duration.labels(target, table).set(duration_s)

    def drill(
        self, target: str, table: str, *, at: float, ok: bool, seconds_per_gb: float | None
    ) -> None:
        """A table's last restore drill (after a drill, and at start from the records)."""
        self.drill_at.labels(target, table).set(at)
        self.drill_ok.labels(target, table).set(1 if ok else 0)
        if seconds_per_gb is not None:
            self.drill_rto.labels(target, table).set(seconds_per_gb)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# the pages are self-contained: nothing may be fetched from anywhere (the page says so too)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
Page = Callable[[], tuple[int, str, bytes]]  # -> status, content type, body


def start_http(
    metrics: Metrics,
    *,
    host: str,
    port: int,
    health: Callable[[], dict[str, Any]],
    pages: Mapping[str, Page] | None = None,
) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and ``pages`` (path -> page) in a background thread; returns
    the server (shutdown())."""
    routes = dict(pages or {})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render())
            elif path == "/healthz":
                self._send(200, "application/json", orjson.dumps(health(), default=str))
            elif path in routes:
                self._send(*routes[path](), headers=PAGE_HEADERS)
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(
            self, status: int, ctype: str, body: bytes, *, headers: Mapping[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="hippolyte-http").start()
    return server
