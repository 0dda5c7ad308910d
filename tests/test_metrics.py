"""Tests for radius_bridge.metrics: counters, gauges and /healthz over real HTTP on loopback."""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import socket
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from radius_bridge import fic
from radius_bridge.errors import FicRejected, FicUnavailable
from radius_bridge.fic import FicCall, FicClient
from radius_bridge.health import FicHealth
from radius_bridge.metrics import (
    DROP_REASONS,
    FIC_ENDPOINTS,
    LATENCY_BUCKETS,
    Metrics,
    MetricsListenError,
    MetricsServer,
)
from radius_bridge.model import Factor, Outcome, Reason, Secret
from radius_bridge.simulator import FicSimulator

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(address: tuple[str, int], path: str) -> tuple[int, str, bytes]:
    """GET ``path`` from ``address``: the status, the Content-Type and the body."""
    connection = http.client.HTTPConnection(address[0], address[1], timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def scrape(address: tuple[str, int]) -> Samples:
    """Every sample /metrics serves, by name and labels (the text must parse)."""
    status, content_type, body = get(address, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode("utf-8"))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels``, or None when it is not exported."""
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets exported for ``name``."""
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


@pytest.fixture
def health() -> FicHealth:
    """A FicHealth on a clock the test moves."""
    return FicHealth(window=60, failures_to_down=3, clock=FakeClock())


@pytest.fixture
def served(health: FicHealth) -> Iterator[tuple[Metrics, tuple[str, int]]]:
    """A Metrics behind a MetricsServer on 127.0.0.1, port 0; its address."""
    metrics = Metrics()
    server = MetricsServer(metrics, health)
    address = server.start("127.0.0.1", 0)
    yield metrics, address
    server.stop()


def test_request_counter_and_latency_histogram_move(
    served: tuple[Metrics, tuple[str, int]],
) -> None:
    """A completed request counts by client, factor, outcome, reason and lands in its bucket."""
    metrics, address = served
    metrics.request_completed("fortigate", Factor.OTP, Outcome.ACCEPT, Reason.OTP_ACCEPTED, 0.003)
    metrics.request_completed("fortigate", "otp", "accept", "otp_accepted", 0.2)
    metrics.request_completed("asa", "push", "reject", "push_timeout", 25.0)

    samples = scrape(address)
    labels = {"client": "fortigate", "factor": "otp", "outcome": "accept"}
    assert value(samples, "radius_bridge_requests_total", **labels, reason="otp_accepted") == 2
    push = {"client": "asa", "factor": "push", "outcome": "reject", "reason": "push_timeout"}
    assert value(samples, "radius_bridge_requests_total", **push) == 1
    histogram = "radius_bridge_request_duration_seconds"
    otp = {"factor": "otp", "outcome": "accept"}
    assert value(samples, f"{histogram}_bucket", **otp, le="0.0025") == 0
    assert value(samples, f"{histogram}_bucket", **otp, le="0.005") == 1
    assert value(samples, f"{histogram}_bucket", **otp, le="0.25") == 2
    assert value(samples, f"{histogram}_count", **otp) == 2
    assert value(samples, f"{histogram}_sum", **otp) == pytest.approx(0.203)
    pushed = {"factor": "push", "outcome": "reject"}
    assert value(samples, f"{histogram}_bucket", **pushed, le="20.0") == 0
    assert value(samples, f"{histogram}_bucket", **pushed, le="30.0") == 1


def test_latency_buckets_span_a_millisecond_to_a_minute() -> None:
    """The latency buckets rise from 1 ms to 60 s, with room for push waits in between."""
    assert LATENCY_BUCKETS[0] == 0.001
    assert LATENCY_BUCKETS[-1] == 60.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))
    assert {5.0, 10.0, 15.0, 20.0, 30.0} <= set(LATENCY_BUCKETS)


def test_drops_duplicates_and_token_renewals_move(
    served: tuple[Metrics, tuple[str, int]],
) -> None:
    """Dropped packets count by reason, duplicates by action, token renewals in one counter."""
    metrics, address = served
    before = scrape(address)
    assert value(before, "radius_bridge_packets_dropped_total", reason="unknown_client") == 0
    assert value(before, "radius_bridge_duplicates_total", action="resent") == 0
    assert value(before, "radius_bridge_fic_token_renewals_total") == 0

    metrics.packet_dropped("unknown_client")
    metrics.packet_dropped("unknown_client")
    metrics.packet_dropped("bad_message_authenticator")
    metrics.duplicate("dropped")
    metrics.duplicate("resent")
    metrics.duplicate("resent")
    metrics.token_renewed()

    after = scrape(address)
    assert value(after, "radius_bridge_packets_dropped_total", reason="unknown_client") == 2
    dropped = "radius_bridge_packets_dropped_total"
    assert value(after, dropped, reason="bad_message_authenticator") == 1
    assert value(after, dropped, reason="overloaded") == 0
    assert value(after, "radius_bridge_duplicates_total", action="dropped") == 1
    assert value(after, "radius_bridge_duplicates_total", action="resent") == 2
    assert value(after, "radius_bridge_fic_token_renewals_total") == 1


def test_fic_calls_count_by_endpoint_status_and_outcome(
    served: tuple[Metrics, tuple[str, int]],
) -> None:
    """FIC calls count by endpoint and status; failures also by outcome; latency by endpoint."""
    metrics, address = served
    metrics.fic_call(FicCall(fic.AUTH, 200, 0.12, "ok"))
    metrics.fic_call(FicCall(fic.AUTH, 400, 0.08, "http_error"))
    metrics.fic_call(FicCall(fic.AUTH_STATUS, None, 5.0, "timeout"))
    metrics.fic_call(FicCall(fic.AUTH_STATUS, 200, 0.04, "ok"))

    samples = scrape(address)
    requests = "radius_bridge_fic_requests_total"
    assert value(samples, requests, endpoint="POST /auth", status="200") == 1
    assert value(samples, requests, endpoint="POST /auth", status="400") == 1
    assert value(samples, requests, endpoint="GET /auth/{id}", status="none") == 1
    assert value(samples, requests, endpoint="GET /auth/{id}", status="200") == 1
    errors = "radius_bridge_fic_errors_total"
    assert value(samples, errors, endpoint="POST /auth", outcome="http_error") == 1
    assert value(samples, errors, endpoint="GET /auth/{id}", outcome="timeout") == 1
    assert series(samples, errors) == [
        {"endpoint": "POST /auth", "outcome": "http_error"},
        {"endpoint": "GET /auth/{id}", "outcome": "timeout"},
    ]
    duration = "radius_bridge_fic_request_duration_seconds"
    assert value(samples, f"{duration}_count", endpoint="GET /auth/{id}") == 2
    assert value(samples, f"{duration}_bucket", endpoint="GET /auth/{id}", le="0.05") == 1


@dataclasses.dataclass
class GaugeValues:
    """What the gauge sources report; the test changes it between scrapes."""

    pending: int
    in_progress: int
    up: bool
    legacy: list[str]


def test_gauges_are_read_at_each_scrape(served: tuple[Metrics, tuple[str, int]]) -> None:
    """Gauges appear once their sources are set and show the sources' values at each scrape."""
    metrics, address = served
    assert value(scrape(address), "radius_bridge_pending_pushes") is None
    current = GaugeValues(pending=3, in_progress=5, up=True, legacy=["nas-b", "nas-a"])
    metrics.set_gauge_sources(
        pending_pushes=lambda: current.pending,
        in_progress=lambda: current.in_progress,
        fic_up=lambda: current.up,
        clients_without_message_authenticator=lambda: current.legacy,
    )

    first = scrape(address)
    assert value(first, "radius_bridge_pending_pushes") == 3
    assert value(first, "radius_bridge_requests_in_progress") == 5
    assert value(first, "radius_bridge_fic_up") == 1
    legacy = "radius_bridge_client_without_message_authenticator"
    assert series(first, legacy) == [{"client": "nas-a"}, {"client": "nas-b"}]
    assert value(first, legacy, client="nas-a") == 1

    current.pending, current.up, current.legacy = 0, False, []
    second = scrape(address)
    assert value(second, "radius_bridge_pending_pushes") == 0
    assert value(second, "radius_bridge_fic_up") == 0
    assert series(second, legacy) == []


def _raises() -> int:
    raise RuntimeError("bug")


@pytest.mark.parametrize("broken", [_raises, lambda: "3"], ids=["raises", "not-a-number"])
def test_a_failing_gauge_source_costs_only_its_gauge(
    served: tuple[Metrics, tuple[str, int]], broken: Callable[[], int]
) -> None:
    """A gauge source that raises or gives no number leaves that gauge out, serving the rest."""
    metrics, address = served
    metrics.packet_dropped("malformed")
    metrics.set_gauge_sources(
        pending_pushes=broken,
        in_progress=lambda: 1,
        fic_up=lambda: True,
        clients_without_message_authenticator=lambda: [],
    )
    samples = scrape(address)
    assert value(samples, "radius_bridge_pending_pushes") is None
    assert value(samples, "radius_bridge_requests_in_progress") == 1
    assert value(samples, "radius_bridge_packets_dropped_total", reason="malformed") == 1


def test_every_family_is_ours_and_documented(served: tuple[Metrics, tuple[str, int]]) -> None:
    """Each exported family is radius_bridge_* (or the process_* standard set) with HELP text."""
    metrics, address = served
    metrics.set_gauge_sources(lambda: 0, lambda: 0, lambda: True, lambda: ["nas"])
    metrics.request_completed("nas", "otp", "accept", "otp_accepted", 0.1)
    metrics.fic_call(FicCall(fic.LOGIN, 200, 0.1, "ok"))
    _, _, body = get(address, "/metrics")
    families = list(text_string_to_metric_families(body.decode("utf-8")))

    ours = {family.name for family in families if family.name.startswith("radius_bridge_")}
    assert ours == {
        "radius_bridge_build_info",
        "radius_bridge_requests",
        "radius_bridge_request_duration_seconds",
        "radius_bridge_packets_dropped",
        "radius_bridge_duplicates",
        "radius_bridge_fic_requests",
        "radius_bridge_fic_errors",
        "radius_bridge_fic_request_duration_seconds",
        "radius_bridge_fic_token_renewals",
        "radius_bridge_pending_pushes",
        "radius_bridge_requests_in_progress",
        "radius_bridge_fic_up",
        "radius_bridge_client_without_message_authenticator",
    }
    for family in families:
        assert family.name.startswith(("radius_bridge_", "process_")), family.name
        assert family.documentation.strip(), family.name
    assert b"_created" not in body


def test_build_info_carries_the_version() -> None:
    """radius_bridge_build_info carries the version the Metrics was made with."""
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(
            Metrics(version="9.8.7").exposition().decode("utf-8")
        )
        for sample in family.samples
    }
    assert value(samples, "radius_bridge_build_info", version="9.8.7") == 1


def test_instances_do_not_share_counters() -> None:
    """Each Metrics has its own registry: counting in one leaves another at zero."""
    first, second = Metrics(), Metrics()
    first.token_renewed()
    assert b"radius_bridge_fic_token_renewals_total 1.0" in first.exposition()
    assert b"radius_bridge_fic_token_renewals_total 0.0" in second.exposition()


# --- label cardinality --------------------------------------------------------------------------


def test_unknown_label_values_are_counted_as_other(
    served: tuple[Metrics, tuple[str, int]],
) -> None:
    """Values outside the known sets (raw ids, odd statuses, new words) become 'other'."""
    metrics, address = served
    metrics.request_completed("nas", "telepathy", "maybe", "because", 0.1)
    metrics.packet_dropped("legacy_client_without_message_authenticator")
    metrics.duplicate("tripled")
    metrics.fic_call(FicCall("GET /auth/8c1f2e77-0a4b", 200, 0.1, "ok"))
    metrics.fic_call(FicCall(fic.AUTH, 999, 0.1, "surprise"))

    samples = scrape(address)
    labels = {"client": "nas", "factor": "other", "outcome": "other", "reason": "other"}
    assert value(samples, "radius_bridge_requests_total", **labels) == 1
    assert value(samples, "radius_bridge_packets_dropped_total", reason="other") == 1
    assert value(samples, "radius_bridge_duplicates_total", action="other") == 1
    requests = "radius_bridge_fic_requests_total"
    assert value(samples, requests, endpoint="other", status="200") == 1
    assert value(samples, requests, endpoint="POST /auth", status="other") == 1
    assert value(samples, "radius_bridge_fic_errors_total", endpoint="POST /auth", outcome="other")


def test_many_distinct_inputs_make_few_series(served: tuple[Metrics, tuple[str, int]]) -> None:
    """A thousand different auth ids, reasons and statuses add only a handful of series."""
    metrics, address = served
    for index in range(1000):
        metrics.fic_call(FicCall(f"GET /auth/{index}", 200 + index, 0.01, "ok"))
        metrics.packet_dropped(f"reason-{index}")
        metrics.request_completed("nas", f"factor-{index}", "accept", f"why-{index}", 0.01)

    samples = scrape(address)
    assert len(series(samples, "radius_bridge_fic_requests_total")) <= 401  # 200..599 + other
    assert len(series(samples, "radius_bridge_fic_request_duration_seconds_count")) == 1
    assert len(series(samples, "radius_bridge_packets_dropped_total")) == len(DROP_REASONS) + 1
    assert len(series(samples, "radius_bridge_requests_total")) == 1


def test_every_fic_endpoint_label_is_a_known_template() -> None:
    """Each endpoint label fic.py defines is known to metrics, and none holds a raw id."""
    defined = {
        text
        for name, text in vars(fic).items()
        if name.isupper() and isinstance(text, str) and re.match(r"^(GET|POST|PUT|DELETE) /", text)
    }
    assert defined == set(FIC_ENDPOINTS)
    for endpoint in FIC_ENDPOINTS:
        assert not re.search(r"/\d|[0-9a-f]{8}-", endpoint), endpoint


# --- /healthz and the listener ------------------------------------------------------------------


def test_healthz_flips_with_fic_health(
    served: tuple[Metrics, tuple[str, int]], health: FicHealth
) -> None:
    """/healthz answers 200 while FIC is up, 503 after three failed calls, 200 once FIC answers."""
    _, address = served
    status, content_type, body = get(address, "/healthz")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"status": "ok", "fic": health.state()}

    for _ in range(3):
        health.record(FicCall(fic.AUTH, 503, 0.1, "http_error"))
    status, _, body = get(address, "/healthz")
    document = json.loads(body)
    assert status == 503
    assert document["status"] == "unavailable"
    assert document["fic"]["status"] == "down"
    assert document["fic"]["last_failure"] == {
        "endpoint": "POST /auth",
        "status": 503,
        "outcome": "http_error",
    }

    health.record(FicCall(fic.AUTH, 401, 0.1, "http_error"))
    status, _, body = get(address, "/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")


def test_unknown_paths_are_not_found(served: tuple[Metrics, tuple[str, int]]) -> None:
    """Only /metrics and /healthz exist; a query string does not change the path."""
    _, address = served
    assert get(address, "/")[0] == 404
    assert get(address, "/metrics/extra")[0] == 404
    assert get(address, "/healthz?verbose=1")[0] == 200
    assert get(address, "/metrics?name[]=x")[0] == 200


def test_start_stop_and_restart(health: FicHealth) -> None:
    """start() binds (port 0: a free port) and serves; stop() closes it; it can start again."""
    server = MetricsServer(Metrics(), health)
    assert server.address is None
    address = server.start("127.0.0.1", 0)
    try:
        assert address[0] == "127.0.0.1" and address[1] > 0
        assert server.address == address
        with pytest.raises(RuntimeError, match="already running"):
            server.start("127.0.0.1", 0)
    finally:
        server.stop()
    assert server.address is None
    with pytest.raises(ConnectionRefusedError):
        get(address, "/healthz")
    server.stop()  # a second stop does nothing
    again = server.start("127.0.0.1", 0)
    try:
        assert get(again, "/healthz")[0] == 200
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_listen_error(health: FicHealth) -> None:
    """Binding a port another listener holds raises MetricsListenError naming the address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = MetricsServer(Metrics(), health)
        with pytest.raises(
            MetricsListenError, match=rf"127\.0\.0\.1:{port}: address already in use"
        ):
            server.start("127.0.0.1", port)
    assert server.address is None


def test_ipv6_loopback(health: FicHealth) -> None:
    """An IPv6 host is served over IPv6."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = MetricsServer(Metrics(), health)
    try:
        address = server.start("::1", 0)
    except MetricsListenError:
        pytest.skip("::1 is not configured on this machine")
    try:
        assert address[0] == "::1"
        assert get(address, "/healthz")[0] == 200
    finally:
        server.stop()


# --- real FIC traffic ---------------------------------------------------------------------------


class ObservedFic:
    """A real FicClient against the simulator whose calls feed Metrics and FicHealth."""

    def __init__(self, sim: FicSimulator, health: FicHealth) -> None:
        self.calls: list[FicCall] = []
        self.health = health
        self.metrics = Metrics()
        self.metrics.set_gauge_sources(lambda: 0, lambda: 0, health.is_up, lambda: [])
        self.server = MetricsServer(self.metrics, health)
        self.address = self.server.start("127.0.0.1", 0)
        self.client = FicClient(
            base_url=sim.base_url,
            client_id="demo-client",
            client_secret=Secret("demo-secret"),
            connect_timeout=1.0,
            read_timeout=2.0,
            get_retries=0,
            observer=self.observe,
            on_login=self.metrics.token_renewed,
        )

    def observe(self, call: FicCall) -> None:
        self.calls.append(call)
        self.health.record(call)
        self.metrics.fic_call(call)

    def expected_requests(self) -> dict[tuple[str, str], int]:
        """What radius_bridge_fic_requests_total should hold for the calls seen so far."""
        counts: dict[tuple[str, str], int] = {}
        for call in self.calls:
            key = (call.endpoint, "none" if call.status is None else str(call.status))
            counts[key] = counts.get(key, 0) + 1
        return counts

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@pytest.fixture
def observed(sim: FicSimulator, health: FicHealth) -> Iterator[ObservedFic]:
    """An ObservedFic, closed after the test."""
    observed = ObservedFic(sim, health)
    yield observed
    observed.close()


def exported_requests(samples: Samples) -> dict[tuple[str, str], int]:
    """radius_bridge_fic_requests_total as {(endpoint, status): count}."""
    return {
        (dict(labels)["endpoint"], dict(labels)["status"]): int(count)
        for (name, labels), count in samples.items()
        if name == "radius_bridge_fic_requests_total"
    }


def test_real_fic_calls_move_the_counters_and_health(
    sim: FicSimulator, observed: ObservedFic
) -> None:
    """A real FicClient's calls to the simulator are counted as made and drive FIC health."""
    observed.client.verify_code("alice", "123456")
    with pytest.raises(FicRejected):
        observed.client.verify_code("alice", "000000")

    samples = scrape(observed.address)
    assert exported_requests(samples) == observed.expected_requests()
    assert {"POST /login", "POST /auth"} <= {endpoint for endpoint, _ in exported_requests(samples)}
    assert value(samples, "radius_bridge_fic_token_renewals_total") == 1
    assert value(samples, "radius_bridge_fic_up") == 1

    sim.inject_fault("503", endpoint="POST /auth")
    for _ in range(3):
        with pytest.raises(FicUnavailable):
            observed.client.verify_code("alice", "123456")
    samples = scrape(observed.address)
    assert exported_requests(samples) == observed.expected_requests()
    assert exported_requests(samples)[("POST /auth", "503")] == 3
    errors = "radius_bridge_fic_errors_total"
    assert value(samples, errors, endpoint="POST /auth", outcome="http_error") == sum(
        1 for call in observed.calls if call.endpoint == fic.AUTH and call.outcome == "http_error"
    )
    assert value(samples, "radius_bridge_fic_up") == 0
    assert get(observed.address, "/healthz")[0] == 503

    sim.clear_faults()
    observed.client.verify_code("alice", "123456")
    assert value(scrape(observed.address), "radius_bridge_fic_up") == 1
    assert get(observed.address, "/healthz")[0] == 200
