"""How real NASes differ: Message-Authenticator learning, empty-password forms, proxies in front.

Packets are built byte by byte here, so each test states exactly what the NAS sent.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import threading
from collections.abc import Callable

import pytest
from bridge_harness import RADIUS_SECRET, RunningBridge
from conftest import LogStream

from radius_bridge.radius import RadiusCodec
from radius_bridge.simulator import FicSimulator, SimUser

SECRET = RADIUS_SECRET.encode()
CODEC = RadiusCodec()
USER_NAME, USER_PASSWORD, STATE, NAS_IDENTIFIER, PROXY_STATE, MESSAGE_AUTHENTICATOR = (
    1,
    2,
    24,
    32,
    33,
    80,
)
CALLING_STATION_ID = 31


def hide(password: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 §5.2 User-Password hiding of an already padded value."""
    out, previous = b"", authenticator
    for start in range(0, len(password), 16):
        key = hashlib.md5(SECRET + previous).digest()  # noqa: S324 - the RFC's algorithm
        block = bytes(a ^ b for a, b in zip(password[start : start + 16], key, strict=True))
        out += block
        previous = block
    return out


def access_request(
    attributes: list[tuple[int, bytes]],
    *,
    identifier: int = 1,
    authenticator: bytes | None = None,
    message_authenticator: str | None = "first",
) -> tuple[bytes, bytes]:
    """An Access-Request with Message-Authenticator "first", "last" or None; returns (packet,
    request authenticator)."""
    authenticator = authenticator or os.urandom(16)
    placeholder = [(MESSAGE_AUTHENTICATOR, bytes(16))]
    if message_authenticator == "first":
        attributes = placeholder + attributes
    elif message_authenticator == "last":
        attributes = attributes + placeholder
    body = b"".join(bytes([kind, len(value) + 2]) + value for kind, value in attributes)
    header = bytes([1, identifier]) + (20 + len(body)).to_bytes(2, "big") + authenticator
    packet = header + body
    if message_authenticator is not None:
        mac = hmac.new(SECRET, packet, hashlib.md5).digest()
        offset = packet.index(bytes([MESSAGE_AUTHENTICATOR, 18]) + bytes(16))
        packet = packet[: offset + 2] + mac + packet[offset + 18 :]
    return packet, authenticator


def exchange(bridge: RunningBridge, packet: bytes, timeout: float = 6.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, bridge.address)
        try:
            return sock.recvfrom(4096)[0]
        except TimeoutError:
            return None


def outcome(reply: bytes | None, authenticator: bytes) -> str | None:
    if reply is None:
        return None
    decoded = CODEC.decode_reply(reply, secret=SECRET, request_authenticator=authenticator)
    return decoded.outcome.value


def legacy_client_bridge(make_bridge: Callable[..., RunningBridge], policy: str) -> RunningBridge:
    return make_bridge(
        {
            "radius": {
                "clients": [
                    {
                        "name": "pam-host",
                        "address": "127.0.0.1",
                        "secret": RADIUS_SECRET,
                        "require_message_authenticator": policy,
                    }
                ]
            }
        }
    )


def code_login(message_authenticator: str | None, user: bytes = b"alice") -> tuple[bytes, bytes]:
    authenticator = os.urandom(16)
    return access_request(
        [(USER_NAME, user), (USER_PASSWORD, hide(b"123456".ljust(16, b"\0"), authenticator))],
        authenticator=authenticator,
        message_authenticator=message_authenticator,
    )


# -- Message-Authenticator ------------------------------------------------------------------------


def test_auto_accepts_a_legacy_client_until_it_sends_one_valid_message_authenticator(
    make_bridge: Callable[..., RunningBridge], log_stream: LogStream
) -> None:
    """With "auto", requests without MA are served until the client first sends a valid one;
    from then on a request without it is dropped."""
    bridge = legacy_client_bridge(make_bridge, "auto")
    packet, authenticator = code_login(None)
    assert outcome(exchange(bridge, packet), authenticator) == "accept"
    packet, authenticator = code_login("first")
    assert outcome(exchange(bridge, packet), authenticator) == "accept"
    packet, authenticator = code_login(None)
    assert exchange(bridge, packet, timeout=0.5) is None
    assert any(
        e["reason"] == "missing_message_authenticator"
        for e in log_stream.events("radius.packet.dropped")
    )
    assert bridge.bridge.service.clients_with_message_authenticator == {"pam-host"}


def test_auto_logs_a_legacy_client_at_warning_once(
    make_bridge: Callable[..., RunningBridge], log_stream: LogStream
) -> None:
    """A client on "auto" that never signs is named once as legacy, not on every request."""
    bridge = legacy_client_bridge(make_bridge, "auto")
    for _ in range(3):
        packet, authenticator = code_login(None)
        assert outcome(exchange(bridge, packet), authenticator) == "accept"
    warnings = log_stream.events("radius.client.legacy")
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"


def test_false_serves_requests_without_message_authenticator(
    make_bridge: Callable[..., RunningBridge],
) -> None:
    """An explicitly legacy client is served without MA."""
    bridge = legacy_client_bridge(make_bridge, "false")
    packet, authenticator = code_login(None)
    assert outcome(exchange(bridge, packet), authenticator) == "accept"


@pytest.mark.parametrize("placement", ["first", "last"])
def test_message_authenticator_is_verified_wherever_it_stands(
    bridge: RunningBridge, placement: str
) -> None:
    """radclient and Authen::Radius put MA last: it is verified there as well as first."""
    packet, authenticator = code_login(placement)
    assert outcome(exchange(bridge, packet), authenticator) == "accept"
    tampered = bytearray(packet)
    tampered[packet.index(bytes([MESSAGE_AUTHENTICATOR, 18])) + 5] ^= 1
    assert exchange(bridge, bytes(tampered), timeout=0.5) is None


# -- empty passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["missing", "zero length", "sixteen zero octets"])
def test_every_form_of_empty_password_starts_the_empty_password_flow(
    bridge: RunningBridge, log_stream: LogStream, form: str
) -> None:
    """User-Password absent, of length 0, or 16 zero octets: all are an empty password."""
    authenticator = os.urandom(16)
    attributes = [(USER_NAME, b"frank")]  # a hardware-token user: an empty password challenges
    if form == "zero length":
        attributes.append((USER_PASSWORD, b""))
    elif form == "sixteen zero octets":
        attributes.append((USER_PASSWORD, hide(bytes(16), authenticator)))
    packet, _ = access_request(attributes, authenticator=authenticator)
    assert outcome(exchange(bridge, packet), authenticator) == "challenge"
    (line,) = log_stream.events("radius.request.completed")
    assert line["reason"] == "challenge_issued"


# -- proxies --------------------------------------------------------------------------------------


def test_two_proxy_states_come_back_in_order(bridge: RunningBridge) -> None:
    """A request relayed by two proxies gets both Proxy-State attributes back, in order."""
    packet, authenticator = code_login("first")
    packet, authenticator = access_request(
        [
            (USER_NAME, b"alice"),
            (USER_PASSWORD, hide(b"123456".ljust(16, b"\0"), authenticator)),
            (PROXY_STATE, b"outer-proxy"),
            (PROXY_STATE, b"inner-proxy"),
        ],
        authenticator=authenticator,
    )
    reply = CODEC.decode_reply(
        exchange(bridge, packet) or b"", secret=SECRET, request_authenticator=authenticator
    )
    assert reply.outcome.value == "accept"
    assert reply.proxy_states == (b"outer-proxy", b"inner-proxy")


def test_the_same_login_through_two_proxies_sends_one_push(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """Two proxies relaying one NAS's request (new Identifier and authenticator each, their own
    Proxy-State) are one login: one push, both answered."""
    sim.add_user(SimUser("lena", "lena@example.com", push_delay=0.8))
    bridge = make_bridge(
        {
            "radius": {
                "clients": [
                    {"name": "proxy-a", "address": "127.0.0.1", "secret": RADIUS_SECRET},
                    {"name": "proxy-b", "address": "127.0.0.2", "secret": RADIUS_SECRET},
                ]
            }
        }
    )
    outcomes: list[str | None] = []

    def relay(source: str, proxy_state: bytes) -> None:
        authenticator = os.urandom(16)
        packet, _ = access_request(
            [
                (USER_NAME, b"lena"),
                (USER_PASSWORD, hide(b"push".ljust(16, b"\0"), authenticator)),
                (NAS_IDENTIFIER, b"vpn-gw-1"),
                (CALLING_STATION_ID, b"203.0.113.50"),
                (PROXY_STATE, proxy_state),
            ],
            authenticator=authenticator,
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(6)
            sock.sendto(packet, bridge.address)
            outcomes.append(outcome(sock.recvfrom(4096)[0], authenticator))

    threads = [
        threading.Thread(target=relay, args=("127.0.0.1", b"a")),
        threading.Thread(target=relay, args=("127.0.0.2", b"b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes == ["accept", "accept"]
    assert sim.counters()["pushes"] == {"lena": 1}
