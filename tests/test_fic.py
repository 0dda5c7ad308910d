"""Tests of radius_bridge.fic: the pure mapping and tolerance functions, then the client against
the real FIC simulator over HTTP on 127.0.0.1 (port 0)."""

from __future__ import annotations

import datetime
import email.utils
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import structlog

from radius_bridge import fic
from radius_bridge.errors import (
    FicCredentialsRefused,
    FicProtocolError,
    FicRateLimited,
    FicRejected,
    FicUnavailable,
    FicUnknownUser,
    FicUserLocked,
)
from radius_bridge.model import AuthMethod, PreviewAction, PushStatus, Secret
from radius_bridge.simulator import FicSimulator
from radius_bridge.simulator_state import SimulatorSettings
from radius_bridge.simulator_users import SimUser

ALL_ENDPOINTS = fic.ENDPOINTS

# ---- status mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_every_status_maps_to_success_or_one_of_our_errors(endpoint: str) -> None:
    """Each status 100-599 on every endpoint is success (2xx only) or a FicError of its class."""
    for status in range(100, 600):
        error = fic.error_for_status(endpoint, status, "some text")
        if 200 <= status < 300:
            assert error is None, status
            continue
        assert error is not None, status
        assert error.status == status and error.endpoint == endpoint
        if status == 429:
            assert type(error) is FicRateLimited
        elif status >= 500:
            assert type(error) is FicUnavailable
        elif status >= 400:
            assert isinstance(error, FicRejected | FicCredentialsRefused)
        else:
            assert type(error) is FicProtocolError


@pytest.mark.parametrize(
    ("endpoint", "status", "message", "expected"),
    [
        (fic.AUTH, 400, "User alice does not exist", FicUnknownUser),
        (fic.PREVIEW, 400, "user not found", FicUnknownUser),
        (fic.USER_GET, 404, "User not found", FicUnknownUser),
        (fic.PREVIEW, 400, "Application (auth client) not found", FicRejected),
        (fic.AUTH_STATUS, 400, "auth id not found", FicRejected),
        (fic.AUTH, 403, "The user is locked, try again in 2 minutes", FicUserLocked),
        (fic.AUTH, 400, "User lockout in effect", FicUserLocked),
        (fic.USER_DELETE, 409, "The application is locked by a pending task", FicRejected),
        (fic.AUTH, 401, "Invalid token", FicRejected),
        (fic.AUTH, 402, "Not enough SMS credit", FicRejected),
        (fic.LOGIN, 400, "client_secret is malformed", FicCredentialsRefused),
        (fic.LOGIN, 401, "Invalid client credentials", FicCredentialsRefused),
        (fic.LOGIN, 404, "Client does not exist", FicCredentialsRefused),
        (fic.LOGIN, 402, "The account is disabled", FicRejected),
        (fic.LOGIN, 503, "down", FicUnavailable),
        (fic.AUTH, 302, "", FicProtocolError),
    ],
)
def test_status_and_message_pick_the_error_class(
    endpoint: str, status: int, message: str, expected: type[Exception]
) -> None:
    """Unknown user, lockout and refused credentials are told apart by endpoint and message."""
    assert type(fic.error_for_status(endpoint, status, message)) is expected


def test_rate_limit_error_carries_retry_after() -> None:
    """A 429 becomes FicRateLimited with the wait FIC asked for, and never 'reached FIC'."""
    error = fic.error_for_status(fic.AUTH, 429, "slow down", retry_after=12.0)
    assert isinstance(error, FicRateLimited)
    assert error.retry_after == 12.0 and error.reached_fic is False


# ---- tolerances -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "text", "expected"),
    [
        ({"error": "boom"}, "", "boom"),
        ({"message": "m"}, "", "m"),
        ({"detail": "d"}, "", "d"),
        ({"msg": "x"}, "", "x"),
        ({"error": {"message": "nested"}}, "", "nested"),
        ([{"error": "in a list"}], "", "in a list"),
        (None, " plain text ", "plain text"),
        ({"other": 1}, '{"other": 1}', '{"other": 1}'),
    ],
)
def test_error_message_is_found_under_any_known_key(body: object, text: str, expected: str) -> None:
    """The error text comes from error/message/detail/msg or, failing those, the raw body."""
    assert fic.message_of(body, text) == expected


@pytest.mark.parametrize(
    ("header", "message", "expected"),
    [
        ("30", "", 30.0),
        (email.utils.formatdate(1_000_090.0, usegmt=True), "", 90.0),
        (None, "Too many requests, retry after 5 minutes", 300.0),
        (None, "try again in 20 seconds", 20.0),
        ("garbage", "", None),
        (None, "no hint", None),
    ],
)
def test_retry_after_reads_seconds_dates_and_prose(
    header: str | None, message: str, expected: float | None
) -> None:
    """Retry-After may be seconds or an HTTP date; FIC's trial message says minutes in prose."""
    assert fic.parse_retry_after(header, message, now=1_000_000.0) == expected


@pytest.mark.parametrize(
    ("lifetime", "margin", "expected"),
    [(3600.0, 60.0, 3540.0), (120.0, 60.0, 60.0), (100.0, 60.0, 50.0), (2.0, 60.0, 1.0)],
)
def test_renewal_is_margin_early_or_at_half_life(
    lifetime: float, margin: float, expected: float
) -> None:
    """Tokens renew `margin` before expiry, or at half life when shorter than twice the margin."""
    assert fic.renew_after(lifetime, margin) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"authid": "a1"}, "a1"),
        ({"id": "a2"}, "a2"),
        ([{"authid": "a3"}], "a3"),
        ({"authid": 7}, "7"),
        ({}, None),
        ({"authid": ""}, None),
        ("a4", None),
        (None, None),
    ],
)
def test_auth_id_is_read_tolerantly(body: object, expected: str | None) -> None:
    """The auth id is taken from authid or id, in an object or a one-element list."""
    assert fic.auth_id_of(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"status": "waiting"}, PushStatus.WAITING),
        ({"authid": "x", "status": "authenticated"}, PushStatus.APPROVED),
        ([{"authid": "x", "status": "rejected"}], PushStatus.DENIED),
        (
            [{"authid": "y", "status": "rejected"}, {"authid": "x", "status": "waiting"}],
            PushStatus.WAITING,
        ),
        ([{"status": "Authenticated"}], PushStatus.APPROVED),
        ({"status": "expired"}, None),
        ([], None),
        ("authenticated", None),
    ],
)
def test_push_status_accepts_object_or_list(body: object, expected: PushStatus | None) -> None:
    """A push status comes from an object, a one-element list or the item with our auth id."""
    assert fic.push_status_of(body, "x") == expected


def test_batch_keeps_readable_finished_pushes() -> None:
    """The batch list becomes a dict by auth id; unreadable items are skipped, [] is empty."""
    body = [
        {"authid": "a", "status": "authenticated"},
        {"authid": "b", "status": "rejected"},
        {"status": "authenticated"},
        "junk",
    ]
    assert fic.finished_pushes_of(body) == {"a": PushStatus.APPROVED, "b": PushStatus.DENIED}
    assert fic.finished_pushes_of([]) == {}
    assert fic.finished_pushes_of({"items": [{"authid": "c", "status": "rejected"}]}) == {
        "c": PushStatus.DENIED
    }
    assert fic.finished_pushes_of("nonsense") is None


def test_preview_is_parsed_case_insensitively() -> None:
    """Preview action and method are matched without regard to case; unknown action is None."""
    preview = fic.preview_of({"action": "mfa", "auth_method": "ftm", "push_enabled": True})
    assert preview is not None
    assert (preview.action, preview.auth_method, preview.push_enabled) == (
        PreviewAction.MFA,
        AuthMethod.FTM,
        True,
    )
    blocked = fic.preview_of({"action": "Block", "message": "disabled", "temp_token": "true"})
    assert blocked is not None and blocked.message == "disabled" and blocked.temp_token
    assert fic.preview_of({"action": "Maybe"}) is None
    assert fic.preview_of({"auth_method": "FTM"}) is None


def test_users_parse_from_object_or_list() -> None:
    """A user list may come as one object; id falls back to user_id; a nameless item fails."""
    one = {
        "id": "r1",
        "user_id": "u1",
        "username": "alice",
        "active": True,
        "fail_times": 0,
        "lockout_at": None,
    }
    users = fic.users_of(one)
    assert users is not None and users[0].id == "r1" and users[0].lockout_at is None
    fallback = fic.users_of([{"user_id": "u2", "username": "bob"}])
    assert fallback is not None and fallback[0].id == "u2"
    assert fic.users_of([{"id": "r3"}]) is None
    assert fic.users_of(None) == []


@pytest.mark.parametrize(
    ("body", "text", "expected"),
    [
        ({" FIC server": "2.5.0"}, "", "2.5.0"),
        ({"version": "3.0"}, "", "3.0"),
        ("2.6", "", "2.6"),
        (None, "2.7.1\n", "2.7.1"),
        ({"a": 1}, "", None),
    ],
)
def test_version_is_found_under_a_server_or_version_key(
    body: object, text: str, expected: str | None
) -> None:
    """The version sits under a key like " FIC server" (with the doc's stray space) or as text."""
    assert fic.version_of(body, text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://fic.fortinet.com:9696", "https://fic.fortinet.com:9696"),
        ("https://ftc.fortinet.com:9696/api/v1/", "https://ftc.fortinet.com:9696"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ],
)
def test_base_url_tolerates_the_legacy_api_suffix(url: str, expected: str) -> None:
    """A base URL given with /api/v1 (as legacy clients wrote it) still finds every endpoint."""
    assert fic.normalize_base_url(url) == expected


def test_next_page_link_only_on_our_host() -> None:
    """Link rel=next is followed as given (other port allowed) but never to another host."""
    here = "https://fic.example:9696/api/v2/user"
    assert fic.next_page_url("https://fic.example:8686/api/v2/user?page=2", here) == (
        "https://fic.example:8686/api/v2/user?page=2"
    )
    assert fic.next_page_url("/api/v2/user?page=3", here) == (
        "https://fic.example:9696/api/v2/user?page=3"
    )
    assert fic.next_page_url("https://evil.example/api/v2/user?page=2", here) is None
    assert fic.next_page_url(None, here) is None


# ---- against the simulator --------------------------------------------------------------------

CLIENT_SECRET = "demo-secret-Qx7-never-logged"
USERS = [
    SimUser("alice", "alice@example.com", "+15550100001", push="ignore"),
    SimUser("bob", "bob@example.com", push="deny", push_delay=0.0),
    SimUser("carol", "carol@example.com", "+15550100003", auth_method="SMS", code=None),
    SimUser("dave", "dave@example.com", auth_method="Email", code=None),
    SimUser("gina", "gina@example.com", bypass=True),
    SimUser("hank", "hank@example.com", active=False),
    SimUser("otto", "otto@example.com", code="012345"),
]


def start_simulator(**settings: Any) -> FicSimulator:
    values: dict[str, Any] = {"seed": 7, "client_secret": CLIENT_SECRET, **settings}
    clock = values.pop("clock", time.time)
    simulator = FicSimulator(users=USERS, settings=SimulatorSettings(**values), clock=clock)
    simulator.start()
    return simulator


@pytest.fixture
def sim() -> Iterator[FicSimulator]:
    simulator = start_simulator()
    yield simulator
    simulator.stop()


ClientFactory = Callable[..., fic.FicClient]


@pytest.fixture
def connect() -> Iterator[ClientFactory]:
    """Make clients for a simulator (fast timeouts, no real backoff sleeps); close them after."""
    made: list[fic.FicClient] = []

    def make(simulator: FicSimulator, **overrides: Any) -> fic.FicClient:
        settings: dict[str, Any] = {
            "base_url": simulator.base_url,
            "client_id": "demo-client",
            "client_secret": Secret(CLIENT_SECRET),
            "connect_timeout": 1.0,
            "read_timeout": 2.0,
            "backoff": 0.01,
            **overrides,
        }
        client = fic.FicClient(**settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def requests_to(simulator: FicSimulator, endpoint: str) -> int:
    count: int = simulator.counters()["requests"].get(endpoint, 0)
    return count


def test_login_once_then_reuse_token(sim: FicSimulator, connect: ClientFactory) -> None:
    """Many calls share one login; on_login fires once per successful login."""
    logins: list[int] = []
    client = connect(sim, on_login=lambda: logins.append(1))
    for _ in range(3):
        client.preview("alice")
    assert sim.counters()["logins"] == 1 and logins == [1]
    client.login()
    assert sim.counters()["logins"] == 2 and logins == [1, 1]


@pytest.mark.parametrize(
    ("client_id", "secret", "status"),
    [
        ("demo-client", "wrong-secret", 401),
        ("nobody", CLIENT_SECRET, 404),
        ("demo-client", "bad secret", 400),
    ],
)
def test_refused_credentials(
    sim: FicSimulator, connect: ClientFactory, client_id: str, secret: str, status: int
) -> None:
    """A refused client id or secret raises FicCredentialsRefused without echoing the secret."""
    client = connect(sim, client_id=client_id, client_secret=Secret(secret))
    with pytest.raises(FicCredentialsRefused) as caught:
        client.preview("alice")
    assert caught.value.status == status and secret not in str(caught.value)
    assert sim.counters()["logins"] == 0


def test_token_renewed_margin_before_expiry(connect: ClientFactory) -> None:
    """With a 3600 s token and a 60 s margin, the client logs in again after 3540 s of its clock."""
    simulator = start_simulator(token_lifetime=3600.0)
    now = [1000.0]
    try:
        client = connect(simulator, clock=lambda: now[0], renew_margin=60.0)
        client.preview("alice")
        now[0] += 3539.0
        client.preview("alice")
        assert simulator.counters()["logins"] == 1
        now[0] += 2.0
        client.preview("alice")
        assert simulator.counters()["logins"] == 2
    finally:
        simulator.stop()


def test_short_token_renewed_at_half_life(connect: ClientFactory) -> None:
    """A token shorter than twice the margin is renewed at half its life."""
    simulator = start_simulator(token_lifetime=100.0)
    now = [0.0]
    try:
        client = connect(simulator, clock=lambda: now[0], renew_margin=60.0)
        client.preview("alice")
        now[0] = 49.0
        client.preview("alice")
        assert simulator.counters()["logins"] == 1
        now[0] = 51.0
        client.preview("alice")
        assert simulator.counters()["logins"] == 2
    finally:
        simulator.stop()


def test_expired_on_server_logs_in_again_once(connect: ClientFactory) -> None:
    """A token FIC expired early (its clock) gets 401: one new login, one retry, success."""
    server_now = [10_000.0]
    simulator = start_simulator(clock=lambda: server_now[0])
    try:
        client = connect(simulator)
        client.preview("alice")
        server_now[0] += 4000.0
        assert client.find_user("alice") is not None
        assert simulator.counters()["logins"] == 2
        assert requests_to(simulator, "GET /user") == 2
    finally:
        simulator.stop()


def test_concurrent_callers_share_one_login(sim: FicSimulator, connect: ClientFactory) -> None:
    """Twenty threads starting at once on a fresh client cause exactly one login."""
    client = connect(sim)
    barrier = threading.Barrier(20)

    def call(_: int) -> None:
        barrier.wait()
        client.preview("alice")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(call, range(20)))
    assert sim.counters()["logins"] == 1


def test_connections_never_exceed_pool_size(connect: ClientFactory) -> None:
    """Under 20 concurrent calls the client opens at most pool_size TCP connections."""
    simulator = start_simulator(latency=0.02)
    try:
        client = connect(simulator, pool_size=3)
        client.login()
        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(lambda _: client.preview("alice"), range(20)))
        counters = simulator.counters()
        assert counters["tcp_connections"] <= 3
        assert 2 <= counters["in_flight_max"] <= 3
    finally:
        simulator.stop()


def test_preview_answers(sim: FicSimulator, connect: ClientFactory) -> None:
    """Preview reports MFA with method and push, Bypass, Block with message, or unknown user."""
    client = connect(sim)
    alice = client.preview("alice", user_ip="192.0.2.10")
    assert (alice.action, alice.auth_method, alice.push_enabled) == (
        PreviewAction.MFA,
        AuthMethod.FTM,
        True,
    )
    carol = client.preview("carol")
    assert (carol.auth_method, carol.push_enabled) == (AuthMethod.SMS, False)
    assert client.preview("gina").action is PreviewAction.BYPASS
    blocked = client.preview("hank")
    assert blocked.action is PreviewAction.BLOCK and blocked.message
    with pytest.raises(FicUnknownUser):
        client.preview("nobody")


def test_preview_account_disabled_is_rejected(connect: ClientFactory) -> None:
    """A 402 (account disabled) is a refusal, not an outage."""
    simulator = start_simulator(account_active=False)
    try:
        with pytest.raises(FicRejected) as caught:
            connect(simulator).preview("alice")
        assert caught.value.status == 402
    finally:
        simulator.stop()


def test_verify_code_accepts_and_keeps_leading_zeros(
    sim: FicSimulator, connect: ClientFactory
) -> None:
    """A correct code returns; "012345" is sent as a string so its leading zero survives."""
    client = connect(sim)
    client.verify_code("alice", "123456")
    client.verify_code("otto", "012345")
    assert sim.counters()["code_checks"] == {"alice": 1, "otto": 1}


def test_wrong_code_401_is_rejected_without_resending(
    sim: FicSimulator, connect: ClientFactory
) -> None:
    """A 401 for a wrong code, with a good bearer (probe answers), is FicRejected; sent once."""
    client = connect(sim)
    client.login()
    with pytest.raises(FicRejected) as caught:
        client.verify_code("alice", "654321")
    assert type(caught.value) is FicRejected and caught.value.status == 401
    counters = sim.counters()
    assert counters["code_checks"] == {"alice": 1}
    assert requests_to(sim, "POST /auth") == 1 and requests_to(sim, "GET /user") == 1
    assert counters["logins"] == 1
    assert "654321" not in str(caught.value)


def test_expired_bearer_on_verify_relogs_and_resends_once(
    sim: FicSimulator, connect: ClientFactory
) -> None:
    """A 401 with a refused bearer (probe 401 too) means the code was not judged: log in, resend."""
    client = connect(sim)
    client.login()
    sim.expire_tokens()
    client.verify_code("alice", "123456")
    counters = sim.counters()
    assert counters["code_checks"] == {"alice": 1}
    assert requests_to(sim, "POST /auth") == 2 and counters["logins"] == 2


def test_expired_bearer_and_wrong_code_is_judged_once(
    sim: FicSimulator, connect: ClientFactory
) -> None:
    """After a bearer refresh the second 401 is the code's: FicRejected, one code check in FIC."""
    client = connect(sim)
    client.login()
    sim.expire_tokens()
    with pytest.raises(FicRejected):
        client.verify_code("alice", "999999")
    assert sim.counters()["code_checks"] == {"alice": 1}
    assert requests_to(sim, "POST /auth") == 2 and requests_to(sim, "GET /user") == 1


def test_wrong_code_400_needs_no_probe(connect: ClientFactory) -> None:
    """When FIC says 400 for a wrong code there is no bearer doubt and no probe."""
    simulator = start_simulator(wrong_code_status=400)
    try:
        with pytest.raises(FicRejected):
            connect(simulator).verify_code("alice", "111111")
        assert requests_to(simulator, "GET /user") == 0
    finally:
        simulator.stop()


def test_lockout_is_reported_as_locked(connect: ClientFactory) -> None:
    """After the realm's failure limit even a correct code gets FicUserLocked."""
    simulator = start_simulator(lockout_threshold=2)
    try:
        client = connect(simulator)
        for _ in range(2):
            with pytest.raises(FicRejected):
                client.verify_code("alice", "000000")
        with pytest.raises(FicUserLocked):
            client.verify_code("alice", "123456")
    finally:
        simulator.stop()


def test_push_start_poll_and_batch(sim: FicSimulator, connect: ClientFactory) -> None:
    """A push returns its auth id, polls waiting until answered, and shows in the batch."""
    client = connect(sim)
    auth_id = client.start_push("alice")
    assert client.push_status(auth_id) is PushStatus.WAITING
    assert client.finished_pushes() == {}
    sim.approve(auth_id)
    assert client.push_status(auth_id) is PushStatus.APPROVED
    denied = client.start_push("bob")
    assert client.push_status(denied) is PushStatus.DENIED
    assert client.finished_pushes() == {auth_id: PushStatus.APPROVED, denied: PushStatus.DENIED}
    assert sim.counters()["pushes"] == {"alice": 1, "bob": 1}


@pytest.mark.parametrize(
    "settings",
    [{"auth_status_shape": "list"}, {"push_start_status": 202}, {"push_start_status": 201}],
)
def test_push_tolerates_answer_shapes(connect: ClientFactory, settings: dict[str, Any]) -> None:
    """Push start with 200/201/202 and status as an object or one-element list both work."""
    simulator = start_simulator(**settings)
    try:
        client = connect(simulator)
        auth_id = client.start_push("alice")
        simulator.deny(auth_id)
        assert client.push_status(auth_id) is PushStatus.DENIED
    finally:
        simulator.stop()


def test_unknown_auth_id_is_rejected_not_unknown_user(
    sim: FicSimulator, connect: ClientFactory
) -> None:
    """An auth id FIC does not know is FicRejected, never mistaken for an unknown user."""
    with pytest.raises(FicRejected) as caught:
        connect(sim).push_status("no-such-auth")
    assert type(caught.value) is FicRejected


def test_batch_unsupported_is_rejected(connect: ClientFactory) -> None:
    """Without the batch endpoint GET /auth is refused (the poller then asks per id)."""
    simulator = start_simulator(batch_supported=False)
    try:
        with pytest.raises(FicRejected):
            connect(simulator).finished_pushes()
    finally:
        simulator.stop()


@pytest.mark.parametrize("returns_authid", [True, False])
def test_send_code_delivers_and_verifies(connect: ClientFactory, returns_authid: bool) -> None:
    """SMS/e-mail codes reach the outbox; the auth id is returned only when FIC gives one."""
    simulator = start_simulator(code_send_returns_authid=returns_authid)
    try:
        client = connect(simulator)
        auth_id = client.send_code("carol", AuthMethod.SMS)
        assert (auth_id is not None) is returns_authid
        client.send_code("dave", AuthMethod.EMAIL)
        client.verify_code("carol", simulator.outbox("carol")[-1])
        client.verify_code("dave", simulator.outbox("dave")[-1])
    finally:
        simulator.stop()


def test_sms_without_mobile_is_rejected(sim: FicSimulator, connect: ClientFactory) -> None:
    """Asking for an SMS for a user without a mobile number is refused."""
    with pytest.raises(FicRejected):
        connect(sim).send_code("dave", AuthMethod.SMS)


def test_users_create_get_find_delete(sim: FicSimulator, connect: ClientFactory) -> None:
    """A created user can be fetched, found by name, listed, deleted, and is then unknown."""
    client = connect(sim)
    created = client.create_user(
        username="zoe",
        email="zoe@example.com",
        mobile_number="+15550100099",
        auth_method=AuthMethod.SMS,
    )
    assert (created.username, created.auth_method) == ("zoe", "SMS")
    assert client.get_user(created.id) == created
    found = client.find_user("ZOE")
    assert found is not None and found.id == created.id
    assert "zoe" in [user.username for user in client.list_users()]
    assert [user.username for user in client.list_users(username="zoe")] == ["zoe"]
    client.delete_user(created.id)
    assert client.find_user("zoe") is None
    with pytest.raises(FicUnknownUser):
        client.get_user(created.id)
    with pytest.raises(FicUnknownUser):
        client.delete_user(created.id)


def test_duplicate_user_is_rejected(sim: FicSimulator, connect: ClientFactory) -> None:
    """Creating an existing user name is refused with FIC's status (409)."""
    with pytest.raises(FicRejected) as caught:
        connect(sim).create_user(username="alice", email="a2@example.com")
    assert caught.value.status == 409


def test_delete_conflict_is_not_a_user_lockout(connect: ClientFactory) -> None:
    """409 "application locked by a pending task" is a plain refusal, not FicUserLocked."""
    simulator = start_simulator(delete_conflict=True)
    try:
        client = connect(simulator)
        user = client.find_user("alice")
        assert user is not None
        with pytest.raises(FicRejected) as caught:
            client.delete_user(user.id)
        assert type(caught.value) is FicRejected and caught.value.status == 409
    finally:
        simulator.stop()


def test_iter_users_follows_pages(sim: FicSimulator, connect: ClientFactory) -> None:
    """The v2 list is read page by page through Link rel=next until the last page."""
    for number in range(25):
        sim.add_user(SimUser(f"user{number:02d}", f"user{number:02d}@example.com"))
    users = list(connect(sim).iter_users(limit=20))
    assert len(users) == len(USERS) + 25
    assert len({user.id for user in users}) == len(users)
    assert requests_to(sim, "GET /v2/user") == 2


@pytest.mark.parametrize("requires_token", [False, True])
def test_version_with_or_without_token(connect: ClientFactory, requires_token: bool) -> None:
    """The version is read without a login, or with one when FIC demands a bearer."""
    simulator = start_simulator(version_requires_token=requires_token)
    try:
        assert connect(simulator).version() == "2.5.0"
        assert simulator.counters()["logins"] == (1 if requires_token else 0)
    finally:
        simulator.stop()


# ---- failures, retries and time bounds ----------------------------------------------------------


def test_get_retries_5xx_with_backoff(sim: FicSimulator, connect: ClientFactory) -> None:
    """A GET that meets two 5xx is retried with exponential backoff and then succeeds."""
    sleeps: list[float] = []
    client = connect(sim, sleep=sleeps.append, backoff=0.05)
    auth_id = client.start_push("alice")
    sim.inject_fault("503", endpoint="GET /auth/*", count=2)
    assert client.push_status(auth_id) is PushStatus.WAITING
    assert sleeps == [0.05, 0.1]
    assert requests_to(sim, "GET /auth/{id}") == 3


def test_get_gives_up_after_retries(sim: FicSimulator, connect: ClientFactory) -> None:
    """When every attempt gets 5xx, the GET fails as FicUnavailable after get_retries retries."""
    client = connect(sim, sleep=lambda _: None, get_retries=2)
    sim.inject_fault("500", endpoint="GET /auth")
    with pytest.raises(FicUnavailable) as caught:
        client.finished_pushes()
    assert caught.value.status == 500
    assert requests_to(sim, "GET /auth") == 3


@pytest.mark.parametrize("kind", ["500", "503", "reset"])
def test_post_auth_is_never_retried(sim: FicSimulator, connect: ClientFactory, kind: str) -> None:
    """A push start that fails is not sent again (a second push would reach the phone)."""
    client = connect(sim, sleep=lambda _: None)
    client.login()
    sim.inject_fault(kind, endpoint="POST /auth", count=1)
    with pytest.raises(FicUnavailable) as caught:
        client.start_push("alice")
    assert caught.value.reached_fic is True
    assert requests_to(sim, "POST /auth") == 1


def test_get_retried_after_connection_reset(sim: FicSimulator, connect: ClientFactory) -> None:
    """A reset connection on a GET is retried on a fresh connection."""
    client = connect(sim, sleep=lambda _: None)
    auth_id = client.start_push("alice")
    sim.inject_fault("reset", endpoint="GET /auth/*", count=1)
    assert client.push_status(auth_id) is PushStatus.WAITING


def test_login_retried_after_connection_reset(sim: FicSimulator, connect: ClientFactory) -> None:
    """POST /login may be retried after a connection error (it has no side effect on users)."""
    sim.inject_fault("reset", endpoint="POST /login", count=1)
    connect(sim, sleep=lambda _: None).login()
    assert requests_to(sim, "POST /login") == 2 and sim.counters()["logins"] == 1


def test_hang_times_out_within_read_timeout(sim: FicSimulator, connect: ClientFactory) -> None:
    """A FIC that never answers costs the read timeout, then FicUnavailable; no retry of POST."""
    calls: list[fic.FicCall] = []
    client = connect(sim, read_timeout=0.3, observer=calls.append)
    client.login()
    sim.inject_fault("hang", endpoint="POST /auth", delay=5.0)
    started = time.monotonic()
    with pytest.raises(FicUnavailable) as caught:
        client.verify_code("alice", "123456")
    assert time.monotonic() - started < 1.5
    assert "0.3 s" in str(caught.value)
    assert calls[-1] == fic.FicCall("POST /auth", None, calls[-1].seconds, "timeout")
    assert requests_to(sim, "POST /auth") == 1


def test_per_call_timeout_overrides_read_timeout(sim: FicSimulator, connect: ClientFactory) -> None:
    """timeout= bounds one call (what the NAS still waits), even when read_timeout is longer."""
    client = connect(sim, read_timeout=5.0)
    client.login()
    sim.inject_fault("hang", endpoint="GET /auth/*", delay=5.0)
    started = time.monotonic()
    with pytest.raises(FicUnavailable):
        client.push_status("any", timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_refused_connection_is_unavailable_fast(sim: FicSimulator, connect: ClientFactory) -> None:
    """With FIC not listening, calls fail fast as FicUnavailable that never reached FIC."""
    client = connect(sim, sleep=lambda _: None)
    sim.refuse_connections()
    started = time.monotonic()
    with pytest.raises(FicUnavailable) as caught:
        client.preview("alice")
    assert time.monotonic() - started < 1.5
    assert caught.value.reached_fic is False
    assert "connection" in str(caught.value).lower()


def test_429_within_budget_is_waited_out(sim: FicSimulator, connect: ClientFactory) -> None:
    """A GET answered 429 with a short Retry-After sleeps that long and tries again."""
    sleeps: list[float] = []
    client = connect(sim, sleep=sleeps.append)
    auth_id = client.start_push("alice")
    sim.inject_fault("429", endpoint="GET /auth/*", count=1, retry_after=0.5)
    assert client.push_status(auth_id) is PushStatus.WAITING
    assert sleeps == [0.5]


def test_429_beyond_budget_raises_rate_limited(sim: FicSimulator, connect: ClientFactory) -> None:
    """A Retry-After longer than the call's budget is not slept: FicRateLimited at once."""
    sleeps: list[float] = []
    client = connect(sim, sleep=sleeps.append)
    sim.inject_fault("429", endpoint="GET /auth", count=1, retry_after=300)
    with pytest.raises(FicRateLimited) as caught:
        client.finished_pushes()
    assert caught.value.retry_after == 300 and sleeps == []


def test_429_on_post_auth_is_not_retried(sim: FicSimulator, connect: ClientFactory) -> None:
    """A throttled push start raises FicRateLimited (safe for failmode: FIC did not act)."""
    sleeps: list[float] = []
    client = connect(sim, sleep=sleeps.append)
    sim.inject_fault("429", endpoint="POST /auth", count=1, retry_after=1)
    with pytest.raises(FicRateLimited) as caught:
        client.start_push("alice")
    assert caught.value.reached_fic is False and sleeps == []
    assert requests_to(sim, "POST /auth") == 1


@pytest.mark.parametrize(
    ("endpoint", "call"),
    [
        ("GET /auth/*", lambda client: client.push_status("x")),
        ("POST /auth", lambda client: client.start_push("alice")),
        ("POST /auth/preview", lambda client: client.preview("alice")),
        ("POST /login", lambda client: client.login()),
    ],
)
def test_malformed_json_is_protocol_error(
    sim: FicSimulator,
    connect: ClientFactory,
    endpoint: str,
    call: Callable[[fic.FicClient], object],
) -> None:
    """A truncated JSON body (even one that mentions "authenticated") is FicProtocolError."""
    calls: list[fic.FicCall] = []
    client = connect(sim, observer=calls.append)
    if endpoint != "POST /login":
        client.login()
    sim.inject_fault("malformed_json", endpoint=endpoint, count=1)
    with pytest.raises(FicProtocolError):
        call(client)
    assert calls[-1].outcome == "bad_response"


def test_observer_sees_every_call(sim: FicSimulator, connect: ClientFactory) -> None:
    """The observer gets endpoint, status and outcome for each HTTP exchange, errors included."""
    calls: list[fic.FicCall] = []
    client = connect(sim, observer=calls.append)
    client.preview("alice")
    with pytest.raises(FicUnknownUser):
        client.preview("nobody")
    assert [(c.endpoint, c.status, c.outcome) for c in calls] == [
        ("POST /login", 201, "ok"),
        ("POST /auth/preview", 200, "ok"),
        ("POST /auth/preview", 400, "http_error"),
    ]
    assert all(call.seconds >= 0 for call in calls)


# ---- a scripted FIC for what the simulator does not do (TLS, echoes, odd statuses) --------------

Responder = Callable[[str, bytes], tuple[int, object, dict[str, str]]]


class ScriptedFic:
    """A small HTTP(S) server on 127.0.0.1: "METHOD /path" -> responder(query, body); records
    every request's method, path, headers and body."""

    def __init__(self, script: dict[str, Responder], tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path, _, query = self.path.partition("?")
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                responder = script.get(f"{self.command} {path}")
                status, answer, headers = (
                    responder(query, body) if responder else (404, {"error": "Not Found"}, {})
                )
                payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


SCRIPTED_TOKEN = "tok-4f9a1c77e2b0-never-logged"


def _login(query: str, body: bytes) -> tuple[int, object, dict[str, str]]:
    return 201, {"access_token": SCRIPTED_TOKEN, "expires_in": 3600}, {}


def _echo(status: int) -> Responder:
    """An error answer that repeats the request body, as a careless server might."""
    return lambda query, body: (status, {"message": f"cannot accept {body.decode()}"}, {})


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedFic]]:
    servers: list[ScriptedFic] = []

    def make(script: dict[str, Responder], tls: ssl.SSLContext | None = None) -> ScriptedFic:
        server = ScriptedFic({"POST /api/v1/login": _login, **script}, tls)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def scripted_client(server: ScriptedFic, **overrides: Any) -> fic.FicClient:
    return fic.FicClient(
        base_url=server.base_url,
        client_id="demo-client",
        client_secret=Secret(CLIENT_SECRET),
        connect_timeout=1.0,
        read_timeout=2.0,
        sleep=lambda _: None,
        **overrides,
    )


def test_requests_carry_bearer_json_and_string_token(scripted: Callable[..., ScriptedFic]) -> None:
    """Calls send Bearer auth and JSON; the code goes as a JSON string, leading zeros kept."""
    server = scripted({"POST /api/v1/auth": lambda q, b: (200, {}, {})})
    with scripted_client(server) as client:
        client.verify_code("alice", "000123")
    method, path, headers, body = server.requests[-1]
    assert (method, path) == ("POST", "/api/v1/auth")
    assert headers["Authorization"] == f"Bearer {SCRIPTED_TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"username": "alice", "token": "000123"}
    assert "Authorization" not in server.requests[0][2]


def test_echoed_secrets_are_scrubbed_from_errors(scripted: Callable[..., ScriptedFic]) -> None:
    """An error body repeating our code or client secret is cut and masked in the exception."""
    server = scripted({"POST /api/v1/auth": _echo(400)})
    with scripted_client(server) as client, pytest.raises(FicRejected) as caught:
        client.verify_code("alice", "424242")
    assert "424242" not in str(caught.value) and "***" in str(caught.value)
    refusing = scripted({"POST /api/v1/login": _echo(401)})
    with scripted_client(refusing) as client, pytest.raises(FicCredentialsRefused) as refused:
        client.login()
    assert CLIENT_SECRET not in str(refused.value)
    long_body = scripted({"GET /api/v1/auth": lambda q, b: (500, "x" * 5000, {})})
    with scripted_client(long_body, get_retries=0) as client, pytest.raises(FicUnavailable) as cut:
        client.finished_pushes()
    assert len(cut.value.detail) <= fic.MESSAGE_LIMIT


def test_iter_users_falls_back_to_v1(scripted: Callable[..., ScriptedFic]) -> None:
    """Where /api/v2/user does not exist (404), the v1 list is used instead."""
    user = {"id": "r1", "username": "alice"}
    server = scripted({"GET /api/v1/user": lambda q, b: (200, [user], {})})
    with scripted_client(server) as client:
        assert [u.username for u in client.iter_users()] == ["alice"]
    assert [path.partition("?")[0] for _, path, _, _ in server.requests[1:]] == [
        "/api/v2/user",
        "/api/v1/user",
    ]


def test_next_link_to_another_host_is_not_followed(scripted: Callable[..., ScriptedFic]) -> None:
    """A rel=next pointing at a foreign host ends the listing: the bearer never goes there."""
    link = {"Link": '<https://elsewhere.example/api/v2/user?page=2>; rel="next"'}
    server = scripted(
        {"GET /api/v2/user": lambda q, b: (200, [{"id": "1", "username": "a"}], link)}
    )
    with scripted_client(server) as client:
        assert len(list(client.iter_users())) == 1


def test_redirect_is_not_followed(scripted: Callable[..., ScriptedFic]) -> None:
    """A 3xx is a protocol error; the request (and its bearer) is not sent to the Location."""
    server = scripted(
        {
            "POST /api/v1/auth": lambda q, b: (
                307,
                {},
                {"Location": "http://127.0.0.1:9/api/v1/auth"},
            )
        }
    )
    with scripted_client(server) as client, pytest.raises(FicProtocolError):
        client.start_push("alice")
    assert len(server.requests) == 2


def test_retry_after_http_date_is_honoured(scripted: Callable[..., ScriptedFic]) -> None:
    """Retry-After as an HTTP date is turned into seconds for FicRateLimited."""
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    server = scripted({"POST /api/v1/auth": lambda q, b: (429, {}, {"Retry-After": later})})
    with scripted_client(server) as client, pytest.raises(FicRateLimited) as caught:
        client.start_push("alice")
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def _tls_server(scripted: Callable[..., ScriptedFic], tls_files: tuple[str, str]) -> ScriptedFic:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return scripted({"GET /version": lambda q, b: (200, {"FIC server": "9.9"}, {})}, context)


def test_tls_certificate_is_verified(
    scripted: Callable[..., ScriptedFic], tls_files: tuple[str, str]
) -> None:
    """An untrusted certificate fails clearly as a TLS error; trusted via ca_bundle it works."""
    server = _tls_server(scripted, tls_files)
    with scripted_client(server) as client, pytest.raises(FicUnavailable) as caught:
        client.version()
    assert "TLS" in str(caught.value) and "certificate" in str(caught.value)
    assert caught.value.reached_fic is False
    with scripted_client(server, ca_bundle=tls_files[0]) as trusting:
        assert trusting.version() == "9.9"


def test_tls_to_a_plain_http_port_says_tls(sim: FicSimulator, connect: ClientFactory) -> None:
    """Speaking TLS to a server that does not is reported as a TLS failure, quickly."""
    client = connect(sim, base_url=sim.origin.replace("http://", "https://"))
    started = time.monotonic()
    with pytest.raises(FicUnavailable) as caught:
        client.version()
    assert "TLS" in str(caught.value) and time.monotonic() - started < 1.5


def test_missing_ca_bundle_is_unavailable_not_a_crash(
    scripted: Callable[..., ScriptedFic], tls_files: tuple[str, str]
) -> None:
    """A CA bundle path that does not exist gives FicUnavailable naming the problem."""
    server = _tls_server(scripted, tls_files)
    with (
        scripted_client(server, ca_bundle="/nonexistent/ca.pem") as client,
        pytest.raises(FicUnavailable) as caught,
    ):
        client.version()
    assert "/nonexistent/ca.pem" in str(caught.value)


# ---- no secret in any log or error --------------------------------------------------------------


def test_no_secret_token_or_code_in_logs_or_errors(
    sim: FicSimulator,
    scripted: Callable[..., ScriptedFic],
    connect: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through logins, codes, re-logins and errors, no secret, token or code reaches a log."""
    caplog.set_level(logging.DEBUG)
    codes = ["123456", "864213", "012345"]
    errors: list[str] = []
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as captured:
            client = connect(sim)
            client.verify_code("alice", codes[0])
            sim.expire_tokens()
            for username, code in (("alice", codes[1]), ("otto", codes[2])):
                try:
                    client.verify_code(username, code)
                except FicRejected as error:
                    errors.append(str(error))
            echo = scripted({"POST /api/v1/auth": _echo(400)})
            with scripted_client(echo) as echoing:
                for code in codes:
                    try:
                        echoing.verify_code("alice", code)
                    except FicRejected as error:
                        errors.append(str(error))
    finally:
        structlog.configure(**saved)
    assert any(entry["event"] == "fic.call" for entry in captured)  # the capture saw our logs
    text = "\n".join([repr(captured), caplog.text, *errors])
    for secret in (CLIENT_SECRET, SCRIPTED_TOKEN, *codes):
        assert secret not in text
    assert all(entry["log_level"] == "debug" for entry in captured)
