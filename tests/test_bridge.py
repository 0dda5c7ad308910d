"""End to end: pyrad's RADIUS client against the bridge on UDP, FIC as the simulator over HTTP."""

from __future__ import annotations

import contextlib
import importlib.resources
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from bridge_harness import RADIUS_SECRET, RunningBridge
from conftest import LogStream
from pyrad import packet
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary

from radius_bridge.radius import RadiusCodec
from radius_bridge.simulator import FicSimulator, SimUser

DICTIONARY = Dictionary(str(importlib.resources.files("radius_bridge.dictionaries") / "dictionary"))
CODEC = RadiusCodec()


def pyrad_client(
    bridge: RunningBridge, *, secret: str = RADIUS_SECRET, timeout: float = 6.0
) -> Client:
    host, port = bridge.address
    client = Client(server=host, authport=port, secret=secret.encode(), dict=DICTIONARY)
    client.timeout = timeout
    client.retries = 1
    return client


def login(
    bridge: RunningBridge,
    user: str,
    password: str | None,
    *,
    state: bytes | None = None,
    secret: str = RADIUS_SECRET,
    timeout: float = 6.0,
    **attributes: Any,
) -> packet.Packet:
    """One Access-Request with Message-Authenticator (pyrad adds it), the verified reply back."""
    client = pyrad_client(bridge, secret=secret, timeout=timeout)
    request = client.CreateAuthPacket(code=packet.AccessRequest, User_Name=user)
    if password is not None:
        request["User-Password"] = request.PwCrypt(password)
    if state is not None:
        request["State"] = state
    for name, value in attributes.items():
        request[name.replace("_", "-")] = value
    return send(client, request)


def send(client: Client, request: packet.Packet) -> packet.Packet:
    """pyrad keeps its socket open after a request; close it (no public call does)."""
    try:
        return client.SendPacket(request)
    finally:
        client._CloseSocket()


def messages(reply: packet.Packet) -> list[str]:
    return [m if isinstance(m, str) else m.decode() for m in reply.get("Reply-Message", [])]


def completed(log_stream: LogStream) -> list[dict[str, Any]]:
    return log_stream.events("radius.request.completed")


# -- one-time codes -------------------------------------------------------------------------------


def test_correct_code_is_accepted_with_the_clients_reply_attributes(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """A valid code gets Access-Accept carrying the configured Fortinet-Group-Name."""
    reply = login(bridge, "alice", "123456")
    assert reply.code == packet.AccessAccept
    assert reply["Fortinet-Group-Name"] == ["vpn-users"]
    assert sim.counters()["code_checks"] == {"alice": 1}
    (line,) = completed(log_stream)
    assert line["outcome"] == "accept" and line["reason"] == "otp_accepted"
    assert line["factor"] == "otp" and line["user"] == "alice" and line["client"] == "loopback"


def test_wrong_code_is_rejected_with_a_message(
    bridge: RunningBridge, log_stream: LogStream
) -> None:
    """A wrong code gets Access-Reject with a Reply-Message that says so."""
    reply = login(bridge, "alice", "654321")
    assert reply.code == packet.AccessReject
    assert messages(reply) == ["Wrong code. Try again."]
    assert completed(log_stream)[0]["reason"] == "otp_rejected"


def test_unknown_user_is_rejected(bridge: RunningBridge, log_stream: LogStream) -> None:
    """A user FIC does not know is rejected, and the log says why."""
    reply = login(bridge, "mallory", "123456")
    assert reply.code == packet.AccessReject
    assert completed(log_stream)[0]["reason"] == "unknown_user"


def test_domain_and_realm_are_stripped_and_case_folded(
    bridge: RunningBridge, sim: FicSimulator
) -> None:
    """CORP\\Alice and alice@corp.example reach FIC as alice."""
    assert login(bridge, "CORP\\Alice", "123456").code == packet.AccessAccept
    assert login(bridge, "alice@corp.example", "123456").code == packet.AccessAccept
    assert sim.counters()["code_checks"] == {"alice": 2}


def test_password_that_is_neither_code_nor_keyword_never_reaches_fic(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """A typed static password is rejected locally, so it cannot count toward a FIC lockout."""
    reply = login(bridge, "alice", "hunter2")
    assert reply.code == packet.AccessReject
    assert sim.counters()["auth_posts"] == {}
    assert completed(log_stream)[0]["reason"] == "bad_password_format"


# -- push -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "code", "reason"),
    [
        ("alice", packet.AccessAccept, "push_approved"),
        ("bob", packet.AccessReject, "push_denied"),
    ],
)
def test_push_outcome_decides_the_answer(
    bridge: RunningBridge,
    sim: FicSimulator,
    log_stream: LogStream,
    user: str,
    code: int,
    reason: str,
) -> None:
    """An approved push is accepted, a denied one rejected; one push each."""
    reply = login(bridge, user, "push")
    assert reply.code == code
    assert sim.counters()["pushes"] == {user: 1}
    line = completed(log_stream)[0]
    assert line["reason"] == reason and line["fic_auth_id"]


def test_unanswered_push_is_rejected_when_the_budget_runs_out(
    make_bridge: Callable[..., RunningBridge], log_stream: LogStream
) -> None:
    """A push nobody answers ends in Reject at push_timeout, with a message saying so."""
    bridge = make_bridge({"auth": {"push_timeout": 1.0, "push_poll_interval": 0.2}})
    started = time.monotonic()
    reply = login(bridge, "erin", "push")
    elapsed = time.monotonic() - started
    assert reply.code == packet.AccessReject
    assert messages(reply) == ["The push notification was not approved in time."]
    assert 0.9 <= elapsed < 2.5
    assert completed(log_stream)[0]["reason"] == "push_timeout"


# -- SMS, e-mail and challenges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "keyword", "prompt"),
    [
        ("carol", "sms", "Enter the code sent by SMS."),
        ("dave", "email", "Enter the code sent by email."),
    ],
)
def test_code_sent_then_challenge_round_trip(
    bridge: RunningBridge, sim: FicSimulator, user: str, keyword: str, prompt: str
) -> None:
    """The keyword sends a code and challenges; the code with the State is accepted."""
    challenge = login(bridge, user, keyword)
    assert challenge.code == packet.AccessChallenge
    assert messages(challenge) == [prompt]
    (code,) = sim.outbox(user)
    reply = login(bridge, user, code, state=challenge["State"][0])
    assert reply.code == packet.AccessAccept


@pytest.mark.parametrize(
    ("user", "expected_code", "reason"),
    [
        ("alice", packet.AccessAccept, "push_approved"),  # FTM with push: a push
        ("frank", packet.AccessChallenge, "challenge_issued"),  # hardware token: ask for a code
        ("carol", packet.AccessChallenge, "code_sent"),  # SMS user: send, then ask
        ("dave", packet.AccessChallenge, "code_sent"),  # e-mail user: send, then ask
        ("gina", packet.AccessAccept, "bypass"),  # bypass set in FIC
        ("hank", packet.AccessReject, "blocked"),  # disabled in FIC
    ],
)
def test_empty_password_follows_the_users_method(
    bridge: RunningBridge, log_stream: LogStream, user: str, expected_code: int, reason: str
) -> None:
    """An empty password asks FIC (preview) which factor the user has and follows it."""
    reply = login(bridge, user, "")
    assert reply.code == expected_code
    assert completed(log_stream)[0]["reason"] == reason


def test_hardware_token_challenge_accepts_the_typed_code(bridge: RunningBridge) -> None:
    """After the challenge for an FTK user, the code typed with the State is verified."""
    challenge = login(bridge, "frank", "")
    reply = login(bridge, "frank", "123456", state=challenge["State"][0])
    assert reply.code == packet.AccessAccept


def test_forged_state_is_rejected(bridge: RunningBridge, sim: FicSimulator) -> None:
    """A State with one byte changed is refused before any code reaches FIC."""
    challenge = login(bridge, "frank", "")
    state = bytearray(challenge["State"][0])
    state[-1] ^= 0x01
    reply = login(bridge, "frank", "123456", state=bytes(state))
    assert reply.code == packet.AccessReject
    assert messages(reply) == ["Sign-in session not recognised; start again."]
    assert sim.counters()["code_checks"] == {}


def test_replayed_state_is_rejected(bridge: RunningBridge, sim: FicSimulator) -> None:
    """A State used once cannot be used again, even with a correct code."""
    challenge = login(bridge, "frank", "")
    state = challenge["State"][0]
    assert login(bridge, "frank", "123456", state=state).code == packet.AccessAccept
    reply = login(bridge, "frank", "123456", state=state)
    assert reply.code == packet.AccessReject
    assert sim.counters()["code_checks"] == {"frank": 1}


def test_state_is_bound_to_the_user(bridge: RunningBridge) -> None:
    """Another user's State is refused."""
    challenge = login(bridge, "frank", "")
    reply = login(bridge, "alice", "123456", state=challenge["State"][0])
    assert reply.code == packet.AccessReject


# -- who may talk to us ---------------------------------------------------------------------------


def test_unknown_client_gets_no_reply(
    make_bridge: Callable[..., RunningBridge], log_stream: LogStream
) -> None:
    """A source address that matches no client is dropped and logged."""
    bridge = make_bridge(
        {"radius": {"clients": [{"name": "elsewhere", "address": "192.0.2.1", "secret": "x" * 20}]}}
    )
    with pytest.raises(Timeout):
        login(bridge, "alice", "123456", timeout=0.5)
    (drop,) = log_stream.events("radius.packet.dropped")
    assert drop["reason"] == "unknown_client" and drop["source"] == "127.0.0.1"


def test_wrong_secret_gets_no_reply(bridge: RunningBridge, log_stream: LogStream) -> None:
    """A request signed with another secret is dropped as a Message-Authenticator failure."""
    with pytest.raises(Timeout):
        login(bridge, "alice", "123456", secret="not-the-secret", timeout=0.5)
    (drop,) = log_stream.events("radius.packet.dropped")
    assert drop["reason"] == "bad_message_authenticator"
    assert "shared secret mismatch or tampering" in drop["detail"]
    assert "loopback" in drop["detail"]


def test_missing_message_authenticator_gets_no_reply(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """By default a request without Message-Authenticator is dropped (BlastRADIUS)."""
    raw = CODEC.build_request(
        secret=RADIUS_SECRET.encode(),
        identifier=7,
        user_name="alice",
        password="123456",
        message_authenticator=False,
    )
    assert exchange(bridge, raw, timeout=0.5) is None
    assert log_stream.events("radius.packet.dropped")[0]["reason"] == (
        "missing_message_authenticator"
    )
    assert sim.counters()["auth_posts"] == {}


def test_chap_is_refused_with_a_reason(bridge: RunningBridge, log_stream: LogStream) -> None:
    """CHAP cannot carry a one-time code: Access-Reject, and the log says only PAP works."""
    client = pyrad_client(bridge)
    request = client.CreateAuthPacket(code=packet.AccessRequest, User_Name="alice")
    request["CHAP-Password"] = b"\x01" + bytes(16)
    reply = send(client, request)
    assert reply.code == packet.AccessReject
    line = completed(log_stream)[0]
    assert line["reason"] == "unsupported_scheme" and "PAP" in line["detail"]


def test_malformed_packets_are_dropped_and_the_server_keeps_answering(
    bridge: RunningBridge, log_stream: LogStream
) -> None:
    """Garbage, truncated and overlong datagrams get no reply; a valid request still does."""
    valid = CODEC.build_request(
        secret=RADIUS_SECRET.encode(), identifier=9, user_name="alice", password="123456"
    )
    # (Octets past the Length field are padding, RFC 2865 §3, so valid + b"\0" is not garbage.)
    for garbage in [
        b"",
        b"\x01",
        b"\x01\x02\x00\x14" + bytes(15),
        valid[:30],
        bytes(4096),
        b"\x01\x03\x00\x17" + bytes(16) + b"\x01\x00\x00",
    ]:
        assert exchange(bridge, garbage, timeout=0.2) is None
    assert login(bridge, "alice", "123456").code == packet.AccessAccept
    assert log_stream.events("radius.packet.dropped")


def test_proxy_states_are_echoed_in_order(bridge: RunningBridge) -> None:
    """Two Proxy-State attributes come back in the reply, in the order sent."""
    raw = CODEC.build_request(
        secret=RADIUS_SECRET.encode(),
        identifier=11,
        user_name="alice",
        password="123456",
        authenticator=bytes(range(16)),
        proxy_states=(b"first", b"second"),
    )
    data = exchange(bridge, raw)
    assert data is not None
    reply = CODEC.decode_reply(
        data, secret=RADIUS_SECRET.encode(), request_authenticator=bytes(range(16))
    )
    assert reply.proxy_states == (b"first", b"second")
    assert reply.message_authenticator_first


# -- FIC outages ----------------------------------------------------------------------------------


def test_fic_down_rejects_in_secure_mode(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """With failmode secure, an unreachable FIC means Access-Reject."""
    sim.refuse_connections()
    reply = login(bridge, "alice", "123456")
    assert reply.code == packet.AccessReject
    assert messages(reply) == ["MFA service unavailable; try again later."]
    assert completed(log_stream)[0]["reason"] == "fic_unavailable"


def test_fic_down_accepts_in_open_mode_with_a_warning(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """With failmode open, an unreachable FIC means Accept, logged at warning."""
    bridge = make_bridge({"auth": {"failmode": "open"}})
    sim.refuse_connections()
    reply = login(bridge, "alice", "123456")
    assert reply.code == packet.AccessAccept
    line = completed(log_stream)[0]
    assert line["reason"] == "fic_unavailable_failopen" and line["level"] == "warning"


def test_open_mode_never_accepts_once_a_push_was_sent(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """If FIC goes away after the push went out, even failmode open rejects."""
    bridge = make_bridge({"auth": {"failmode": "open", "push_timeout": 1.0}})
    sim.inject_fault("500", endpoint="GET /auth")
    sim.inject_fault("500", endpoint="GET /auth/*")
    reply = login(bridge, "erin", "push")
    assert reply.code == packet.AccessReject
    assert sim.counters()["pushes"] == {"erin": 1}


# -- retransmissions and joins --------------------------------------------------------------------


def exchange(bridge: RunningBridge, raw: bytes, *, timeout: float = 6.0) -> bytes | None:
    """Send one datagram and return the first datagram that comes back (None on timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(raw, bridge.address)
        try:
            return sock.recvfrom(4096)[0]
        except TimeoutError:
            return None


def test_retransmissions_during_a_push_cause_one_push_and_one_accept(
    bridge: RunningBridge, sim: FicSimulator
) -> None:
    """The same packet re-sent while the push is pending is absorbed; a late copy gets the
    identical reply bytes (RFC 5080 §2.2.2)."""
    sim.add_user(SimUser("ivan", "ivan@example.com", push_delay=1.2))
    raw = CODEC.build_request(
        secret=RADIUS_SECRET.encode(),
        identifier=21,
        user_name="ivan",
        password="push",
        authenticator=bytes(16),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.25)
        replies: list[bytes] = []
        deadline = time.monotonic() + 5
        while not replies and time.monotonic() < deadline:
            sock.sendto(raw, bridge.address)  # a NAS retrying every quarter second
            with contextlib.suppress(TimeoutError):
                replies.append(sock.recvfrom(4096)[0])
        sock.sendto(raw, bridge.address)  # the NAS missed our answer and asks again
        late = sock.recvfrom(4096)[0]
    reply = CODEC.decode_reply(
        replies[0], secret=RADIUS_SECRET.encode(), request_authenticator=bytes(16)
    )
    assert reply.code == packet.AccessAccept
    assert late == replies[0]
    assert sim.counters()["pushes"] == {"ivan": 1}
    assert bridge.bridge.server.duplicates_dropped >= 3


def test_second_login_while_a_push_is_pending_joins_it(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """A new request (new Identifier) for the same user and station joins the pending push."""
    sim.add_user(SimUser("judy", "judy@example.com", push_delay=1.0))
    results: list[int] = []

    def one() -> None:
        results.append(login(bridge, "judy", "push", Calling_Station_Id="198.51.100.7").code)

    threads = [threading.Thread(target=one) for _ in range(2)]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for thread in threads:
        thread.join(10)
    assert results == [packet.AccessAccept, packet.AccessAccept]
    assert sim.counters()["pushes"] == {"judy": 1}
    assert [line.get("joined", False) for line in completed(log_stream)] == [False, True]


def test_pushes_from_different_stations_are_not_joined(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """With the one-push-per-user limit off, a login from another device is a separate push:
    its approval must not let the first in (with the limit on it is refused, test_fatigue)."""
    bridge = make_bridge({"limits": {"one_push_per_user": False}})
    sim.add_user(SimUser("kim", "kim@example.com", push_delay=0.6))
    threads = [
        threading.Thread(
            target=login, args=(bridge, "kim", "push"), kwargs={"Calling_Station_Id": station}
        )
        for station in ("198.51.100.7", "203.0.113.9")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sim.counters()["pushes"] == {"kim": 2}


def wait_until(condition: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# -- concurrency ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_hundred_pending_pushes_do_not_slow_codes_or_multiply_polls(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """With 200 pushes waiting, codes are answered promptly and FIC polling stays flat."""
    bridge = make_bridge({"auth": {"push_timeout": 10.0, "push_poll_interval": 0.5}})
    count = 200
    for index in range(count):
        sim.add_user(SimUser(f"user{index}", f"user{index}@example.com", push_delay=2.5))
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        started = time.monotonic()
        for index, sock in enumerate(sockets):
            raw = CODEC.build_request(
                secret=RADIUS_SECRET.encode(),
                identifier=index % 256,
                user_name=f"user{index}",
                password="push",
            )
            sock.sendto(raw, bridge.address)
        wait_until(lambda: len(bridge.bridge.pending) == count, timeout=2.0)
        code_latencies = []
        for _ in range(10):
            begun = time.monotonic()
            assert login(bridge, "alice", "123456").code == packet.AccessAccept
            code_latencies.append(time.monotonic() - begun)
        outcomes = []
        for sock in sockets:
            sock.settimeout(10)
            outcomes.append(sock.recvfrom(4096)[0][0])
        elapsed = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
    assert outcomes == [packet.AccessAccept] * count
    # Generous for a loaded CI machine; an OTP queued behind pushes would take seconds.
    assert max(code_latencies) < 1.0
    counters = sim.counters()
    assert sum(counters["pushes"].values()) == count
    assert counters["status_polls"] == 0
    # One batch poll per interval, however many pushes wait.
    assert counters["batch_polls"] <= elapsed / 0.5 + 2


# -- log secrecy ----------------------------------------------------------------------------------


def test_no_secret_password_code_or_token_reaches_the_logs(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """Every flow, at debug level: no shared secret, FIC secret, password, code or token logged."""
    bridge = make_bridge({"auth": {"push_timeout": 1.0}})
    login(bridge, "alice", "123456")
    login(bridge, "alice", "864209")  # wrong code
    login(bridge, "alice", "Secret-Static-Password")  # a static password typed by mistake
    login(bridge, "bob", "push")
    challenge = login(bridge, "carol", "sms")
    (sms_code,) = sim.outbox("carol")
    login(bridge, "carol", sms_code, state=challenge["State"][0])
    login(bridge, "frank", "")
    with pytest.raises(Timeout):
        login(bridge, "alice", "123456", secret="wrong-secret-value-42", timeout=0.3)
    sim.refuse_connections()
    login(bridge, "alice", "553311")
    sim.accept_connections()
    token = bridge.bridge.fic._token[0].reveal()  # the live FIC access token
    text = log_stream.getvalue()
    assert len(completed(log_stream)) == 8
    for secret in [
        RADIUS_SECRET,
        "demo-secret",
        "123456",
        "864209",
        "553311",
        sms_code,
        "Secret-Static-Password",
        "wrong-secret-value-42",
        token,
    ]:
        assert secret not in text, f"{secret!r} leaked into the logs"


# -- IPv6 -----------------------------------------------------------------------------------------


def test_ipv4_and_ipv6_listeners_answer_their_clients(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """With an IPv4 and an IPv6 listen address, a client on each is served."""
    bridge = make_bridge(
        {
            "radius": {
                "listen": ["127.0.0.1:1812", "[::1]:1812"],
                "clients": [
                    {"name": "v4", "address": "127.0.0.1", "secret": RADIUS_SECRET},
                    {"name": "v6", "address": "::1", "secret": RADIUS_SECRET},
                ],
            }
        }
    )
    addresses = bridge.bridge.addresses
    assert [host for host, _ in addresses] == ["127.0.0.1", "::1"]
    for family, address in zip((socket.AF_INET, socket.AF_INET6), addresses, strict=True):
        authenticator = bytes(range(16))
        raw = CODEC.build_request(
            secret=RADIUS_SECRET.encode(),
            identifier=1,
            user_name="alice",
            password="123456",
            authenticator=authenticator,
        )
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(6)
            sock.sendto(raw, address)
            data = sock.recvfrom(4096)[0]
        reply = CODEC.decode_reply(
            data, secret=RADIUS_SECRET.encode(), request_authenticator=authenticator
        )
        assert reply.code == packet.AccessAccept
