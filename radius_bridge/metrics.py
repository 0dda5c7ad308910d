"""Prometheus metrics and the HTTP listener that serves them with ``/healthz``.

``Metrics`` owns every ``radius_bridge_*`` metric in a private ``CollectorRegistry`` (never the
process-global one, so tests and several bridges in one process do not share counters). The
service, the UDP server and the FIC client's observer report events to its methods; gauges
are read at scrape time through callbacks. Label values are enum values, endpoint templates
(``GET /auth/{id}``, never a raw id) and configured client names; an unknown word or endpoint
is counted as ``other``, so nothing a NAS or FIC sends can grow the number of series.
``MetricsServer`` serves ``/metrics`` (Prometheus text format) and ``/healthz`` (FIC health as
JSON) from a standard-library HTTP server in a daemon thread.
"""

from __future__ import annotations

import enum
import errno
import json
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, cast

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from radius_bridge import __version__, fic
from radius_bridge.errors import (
    BadAuthenticator,
    MalformedPacket,
    MissingAuthenticator,
    UnknownClient,
)
from radius_bridge.fic import FicCall
from radius_bridge.health import FicHealth
from radius_bridge.model import Factor, Outcome, Reason

log = structlog.get_logger("radius_bridge.metrics")

OTHER: Final = "other"

# From a cached OTP answer (about a millisecond) to a push the user approves at the last moment
# (auth.push_timeout is at most 120 s; the NAS has given up long before the top bucket).
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip

# Why a datagram got no answer: the PacketError reasons, plus the server's and service's own.
DROP_REASONS: Final = (
    UnknownClient.reason,
    MalformedPacket.reason,
    BadAuthenticator.reason,
    MissingAuthenticator.reason,
    "overloaded",  # too many requests in progress (the reply cache refused a new one)
    "shutting_down",  # received after SIGTERM
    "fic_down",  # Status-Server left unanswered while FIC is down (RFC 5997)
    "internal_error",  # a bug in the bridge cost this request
)
DUPLICATE_ACTIONS: Final = ("dropped", "resent")
FIC_ENDPOINTS: Final = frozenset(fic.ENDPOINTS)
FIC_OUTCOMES: Final = frozenset({"ok", "http_error", "timeout", "connection_error", "bad_response"})
_FACTORS: Final = frozenset(factor.value for factor in Factor)
_OUTCOMES: Final = frozenset(outcome.value for outcome in Outcome)
_REASONS: Final = frozenset(reason.value for reason in Reason)
_DROP_REASONS: Final = frozenset(DROP_REASONS)
_DUPLICATE_ACTIONS: Final = frozenset(DUPLICATE_ACTIONS)


def _label(value: str | enum.Enum, allowed: frozenset[str]) -> str:
    """``value`` (or an enum's value) when it is one of ``allowed``, otherwise ``other``."""
    text = value.value if isinstance(value, enum.Enum) else value
    return text if isinstance(text, str) and text in allowed else OTHER


def _status_label(status: int | None) -> str:
    if status is None:
        return "none"  # no HTTP answer: a timeout or a connection error
    return str(status) if 100 <= status <= 599 else OTHER


@dataclass(frozen=True, kw_only=True, slots=True)
class _GaugeSources:
    pending_pushes: Callable[[], int]
    in_progress: Callable[[], int]
    fic_up: Callable[[], bool]
    clients_without_message_authenticator: Callable[[], Iterable[str]]


class _ScrapeTimeGauges:
    """A collector that asks its sources for their values at each scrape.

    Scrapes run on the HTTP server's threads, so each source must be safe to call from any
    thread (reading ``len()`` of a container or copying a set is).
    """

    def __init__(self) -> None:
        self.sources: _GaugeSources | None = None

    def collect(self) -> Iterator[Metric]:
        sources = self.sources
        if sources is None:
            return
        scalars: tuple[tuple[str, str, Callable[[], float]], ...] = (
            (
                "radius_bridge_pending_pushes",
                "FortiToken Mobile pushes waiting for the user's answer.",
                sources.pending_pushes,
            ),
            (
                "radius_bridge_requests_in_progress",
                "RADIUS requests received and not yet answered.",
                sources.in_progress,
            ),
            (
                "radius_bridge_fic_up",
                "1 while FortiIdentity Cloud counts as up (Status-Server is answered), else 0.",
                lambda: 1.0 if sources.fic_up() else 0.0,
            ),
        )
        for name, documentation, source in scalars:
            value = self._read(name, source)
            if isinstance(value, int | float):
                yield GaugeMetricFamily(name, documentation, value=float(value))
        name = "radius_bridge_client_without_message_authenticator"
        clients = self._read(
            name, lambda: sorted({str(c) for c in sources.clients_without_message_authenticator()})
        )
        if clients is not None:
            family = GaugeMetricFamily(
                name,
                "1 for each client that has sent Access-Requests without Message-Authenticator "
                "(RFC 3579 §3.2; BlastRADIUS, CVE-2024-3596).",
                labels=["client"],
            )
            for client in clients:
                family.add_metric([client], 1.0)
            yield family

    @staticmethod
    def _read(name: str, source: Callable[[], Any]) -> Any:
        try:
            return source()
        except Exception as exc:  # a broken source costs its metric, never the whole scrape
            log.warning("metrics.gauge_failed", metric=name, error=type(exc).__name__)
            return None


class Metrics:
    """Every radius-bridge metric, in ``registry``; thread-safe (prometheus_client locks)."""

    def __init__(self, *, version: str = __version__) -> None:
        # The *_created series double the output and are stored as separate gauges by a
        # Prometheus scraping the text format; the switch is process-wide, and this process
        # exports only this registry.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        Info("radius_bridge_build", "The running radius-bridge.", registry=self.registry).info(
            {"version": version}
        )
        self._requests = Counter(
            "radius_bridge_requests",
            "RADIUS requests answered, by client, second factor, outcome and reason.",
            ["client", "factor", "outcome", "reason"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "radius_bridge_request_duration_seconds",
            "Seconds from receiving a RADIUS request to sending its answer.",
            ["factor", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._dropped = Counter(
            "radius_bridge_packets_dropped",
            "Datagrams dropped without an answer, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._duplicates = Counter(
            "radius_bridge_duplicates",
            "NAS retransmissions absorbed (RFC 5080 §2.2.2): dropped while the first copy is "
            "still being worked on, or resent the cached answer.",
            ["action"],
            registry=self.registry,
        )
        self._fic_requests = Counter(
            "radius_bridge_fic_requests",
            "HTTP calls to FortiIdentity Cloud, by endpoint and HTTP status (none: no answer).",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self._fic_errors = Counter(
            "radius_bridge_fic_errors",
            "FortiIdentity Cloud calls that did not end in a readable 2xx answer, by endpoint "
            "and outcome (http_error, timeout, connection_error, bad_response).",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self._fic_seconds = Histogram(
            "radius_bridge_fic_request_duration_seconds",
            "Seconds each HTTP call to FortiIdentity Cloud took, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._token_renewals = Counter(
            "radius_bridge_fic_token_renewals",
            "Bearer tokens obtained from FortiIdentity Cloud (POST /login), the first included.",
            registry=self.registry,
        )
        self._gauges = _ScrapeTimeGauges()
        self.registry.register(self._gauges)
        # Series that exist from the start, so that rate() and alerts see a 0 before the first.
        for reason in DROP_REASONS:
            self._dropped.labels(reason=reason)
        for action in DUPLICATE_ACTIONS:
            self._duplicates.labels(action=action)

    def request_completed(
        self,
        client: str,
        factor: str | Factor,
        outcome: str | Outcome,
        reason: str | Reason,
        seconds: float,
    ) -> None:
        """One RADIUS request answered; ``client`` is the configured client's name."""
        factor_label = _label(factor, _FACTORS)
        outcome_label = _label(outcome, _OUTCOMES)
        self._requests.labels(
            client=client,
            factor=factor_label,
            outcome=outcome_label,
            reason=_label(reason, _REASONS),
        ).inc()
        self._request_seconds.labels(factor=factor_label, outcome=outcome_label).observe(
            max(0.0, seconds)
        )

    def packet_dropped(self, reason: str) -> None:
        """A datagram dropped without an answer; ``reason`` is one of ``DROP_REASONS``."""
        self._dropped.labels(reason=_label(reason, _DROP_REASONS)).inc()

    def duplicate(self, kind: str) -> None:
        """A retransmission absorbed: ``"dropped"`` (first copy in progress) or ``"resent"``."""
        self._duplicates.labels(action=_label(kind, _DUPLICATE_ACTIONS)).inc()

    def fic_call(self, call: FicCall) -> None:
        """One finished HTTP call to FIC (the FIC client's observer)."""
        endpoint = _label(call.endpoint, FIC_ENDPOINTS)
        self._fic_requests.labels(endpoint=endpoint, status=_status_label(call.status)).inc()
        if call.outcome != "ok":
            self._fic_errors.labels(
                endpoint=endpoint, outcome=_label(call.outcome, FIC_OUTCOMES)
            ).inc()
        self._fic_seconds.labels(endpoint=endpoint).observe(max(0.0, call.seconds))

    def token_renewed(self) -> None:
        """FIC issued a bearer token (the FIC client's ``on_login``)."""
        self._token_renewals.inc()

    def set_gauge_sources(
        self,
        pending_pushes: Callable[[], int],
        in_progress: Callable[[], int],
        fic_up: Callable[[], bool],
        clients_without_message_authenticator: Callable[[], Iterable[str]],
    ) -> None:
        """Where the gauges read their values at each scrape (each called once per scrape).

        Before this is called the gauges are not exported at all. A source that raises costs
        its own gauge in that scrape and nothing else.
        """
        self._gauges.sources = _GaugeSources(
            pending_pushes=pending_pushes,
            in_progress=in_progress,
            fic_up=fic_up,
            clients_without_message_authenticator=clients_without_message_authenticator,
        )

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


class MetricsListenError(OSError):
    """The metrics address could not be bound; the message says which and why."""


# How often the serving thread checks for stop(); also the longest stop() waits for it.
_POLL_INTERVAL = 0.1
# A client that sends nothing for this long is cut off, so it cannot hold a thread.
_CLIENT_TIMEOUT = 10.0


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # For a TCP listener SO_REUSEADDR only lets a restarted bridge bind past TIME_WAIT; a
    # second running instance on the same port still fails with "address already in use".
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, app: MetricsServer):
        self.address_family = family
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN (a DNS query); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "radius-bridge"
    sys_version = ""  # no Python version in the Server header
    timeout = _CLIENT_TIMEOUT

    def do_GET(self) -> None:
        app = cast(_HttpServer, self.server).app
        path = urllib.parse.urlsplit(self.path).path
        if path == "/metrics":
            try:
                body = app.metrics.exposition()
            except Exception:
                log.exception("metrics.scrape_failed")
                self._send(500, "text/plain; charset=utf-8", b"scrape failed\n")
                return
            self._send(200, CONTENT_TYPE_LATEST, body)
        elif path == "/healthz":
            state = app.health.state()
            up = state["status"] == "up"
            document = {"status": "ok" if up else "unavailable", "fic": state}
            body = json.dumps(document).encode("utf-8") + b"\n"
            self._send(200 if up else 503, "application/json", body)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would flood the journal at info.
        log.debug("metrics.http", client=self.client_address[0], detail=format % args)


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP, served from a daemon thread."""

    def __init__(self, metrics: Metrics, health: FicHealth) -> None:
        self.metrics = metrics
        self.health = health
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port) while serving, else ``None``."""
        if self._httpd is None:
            return None
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host``:``port`` (0: any free port) and serve; returns the bound address.

        Raises ``MetricsListenError`` when the address cannot be bound.
        """
        if self._httpd is not None:
            raise RuntimeError("the metrics server is already running")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            httpd = _HttpServer((host, port), family, self)
        except OSError as error:
            shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            problem = (
                "address already in use"
                if error.errno == errno.EADDRINUSE
                else error.strerror or str(error)
            )
            raise MetricsListenError(
                error.errno, f"cannot serve metrics on {shown}: {problem}"
            ) from error
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()
        bound = self.address
        assert bound is not None
        log.info("metrics.listening", address=f"{bound[0]}:{bound[1]}")
        return bound

    def stop(self) -> None:
        """Stop serving and close the socket; does nothing when not running."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None
