"""What operators watch: Status-Server (RFC 5997), /metrics and /healthz, with real traffic."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable

from bridge_harness import RADIUS_SECRET, RunningBridge
from prometheus_client.parser import text_string_to_metric_families

from radius_bridge.radius import RadiusCodec
from radius_bridge.simulator import FicSimulator

SECRET = RADIUS_SECRET.encode()
CODEC = RadiusCodec()
STATUS_SERVER = 12


def status_server() -> tuple[bytes, bytes]:
    """A Status-Server packet with its (mandatory) Message-Authenticator, RFC 5997 §3."""
    authenticator = os.urandom(16)
    body = bytes([80, 18]) + bytes(16)
    packet = bytes([STATUS_SERVER, 42]) + (20 + len(body)).to_bytes(2, "big") + authenticator + body
    mac = hmac.new(SECRET, packet, hashlib.md5).digest()
    return packet[:22] + mac, authenticator


def send(bridge: RunningBridge, packet: bytes, timeout: float = 3.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, bridge.address)
        try:
            return sock.recvfrom(4096)[0]
        except TimeoutError:
            return None


def login(bridge: RunningBridge, user: str, password: str) -> str | None:
    authenticator = os.urandom(16)
    packet = CODEC.build_request(
        secret=SECRET,
        identifier=1,
        user_name=user,
        password=password,
        authenticator=authenticator,
    )
    reply = send(bridge, packet, timeout=8)
    if reply is None:
        return None
    return CODEC.decode_reply(
        reply, secret=SECRET, request_authenticator=authenticator
    ).outcome.value


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_status_server_is_answered_while_fic_is_up_and_silent_while_down(
    bridge: RunningBridge, sim: FicSimulator
) -> None:
    """Status-Server gets Access-Accept with version and uptime while FIC answers, and no
    answer once FIC is known to be down, so a NAS fails over; it comes back with FIC."""
    packet, authenticator = status_server()
    reply = CODEC.decode_reply(
        send(bridge, packet) or b"", secret=SECRET, request_authenticator=authenticator
    )
    assert reply.outcome.value == "accept" and reply.message_authenticator_first
    assert reply.reply_message.startswith("radius-bridge ")

    sim.refuse_connections()
    for _ in range(3):
        assert login(bridge, "alice", "123456") == "reject"
    packet, _ = status_server()
    assert send(bridge, packet, timeout=0.5) is None

    sim.accept_connections()
    assert login(bridge, "alice", "123456") == "accept"
    packet, authenticator = status_server()
    assert send(bridge, packet) is not None


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(
        found
        for (sample, sample_labels), found in samples(text).items()
        if sample == name and wanted <= sample_labels
    )


def test_metrics_move_with_real_traffic_and_healthz_follows_fic(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """Requests, drops, duplicates and FIC calls are counted; /healthz turns 503 with FIC."""
    port = free_tcp_port()
    bridge = make_bridge({"metrics": {"listen": f"127.0.0.1:{port}"}})
    assert login(bridge, "alice", "123456") == "accept"
    assert login(bridge, "alice", "000000") == "reject"
    packet = CODEC.build_request(secret=SECRET, identifier=3, user_name="alice", password="123456")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.settimeout(5)
        for _ in range(2):  # the second is a retransmission: answered from the cache
            nas.sendto(packet, bridge.address)
            nas.recvfrom(4096)
    send(bridge, b"\x01garbage", timeout=0.3)

    status, text = scrape(port, "/metrics")
    assert status == 200
    assert (
        value(
            text,
            "radius_bridge_requests_total",
            outcome="accept",
            reason="otp_accepted",
            client="loopback",
        )
        == 2
    )
    assert value(text, "radius_bridge_requests_total", reason="otp_rejected") == 1
    assert value(text, "radius_bridge_duplicates_total") == 1
    assert value(text, "radius_bridge_packets_dropped_total", reason="malformed") == 1
    assert value(text, "radius_bridge_fic_requests_total", endpoint="POST /auth") >= 3
    assert value(text, "radius_bridge_fic_token_renewals_total") == 1
    assert value(text, "radius_bridge_fic_up") == 1
    assert scrape(port, "/healthz")[0] == 200

    sim.refuse_connections()
    for _ in range(3):
        login(bridge, "alice", "123456")
    assert scrape(port, "/healthz")[0] == 503
    assert value(scrape(port, "/metrics")[1], "radius_bridge_fic_up") == 0


def test_metrics_name_clients_that_never_sent_message_authenticator(
    make_bridge: Callable[..., RunningBridge],
) -> None:
    """A legacy client shows up in the Message-Authenticator gauge."""
    port = free_tcp_port()
    bridge = make_bridge(
        {
            "metrics": {"listen": f"127.0.0.1:{port}"},
            "radius": {
                "clients": [
                    {
                        "name": "old-pam",
                        "address": "127.0.0.1",
                        "secret": RADIUS_SECRET,
                        "require_message_authenticator": "auto",
                    }
                ]
            },
        }
    )
    packet = CODEC.build_request(
        secret=SECRET,
        identifier=5,
        user_name="alice",
        password="123456",
        message_authenticator=False,
    )
    assert send(bridge, packet) is not None
    text = scrape(port, "/metrics")[1]
    assert value(text, "radius_bridge_client_without_message_authenticator", client="old-pam") == 1
