"""Tests of the built-in FIC simulator over real HTTP on 127.0.0.1 (fic-api.md §15)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from radius_bridge.errors import ConfigError
from radius_bridge.simulator import (
    FicSimulator,
    SimulatorSettings,
    SimUser,
    add_arguments,
    demo_users,
    load_users,
    run_from_args,
    settings_from_args,
    tls_context_from_args,
    totp_code,
)
from radius_bridge.simulator_state import Fault, endpoint_matches, route

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 5.0
DEMO_SECRET = "demo-secret"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """A small FIC client over one requests session, for driving the simulator."""

    def __init__(self, sim: FicSimulator) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.token: str | None = None

    def url(self, path: str) -> str:
        if path.startswith("http://"):
            return path
        if path.startswith(("/api/", "/_sim", "/version")):
            return self.sim.origin + path
        return self.sim.base_url + path

    def login(self, client_id: str = "demo-client", secret: str = DEMO_SECRET) -> requests.Response:
        response = self.session.post(
            self.url("/login"),
            json={"client_id": client_id, "client_secret": secret},
            timeout=TIMEOUT,
        )
        if response.status_code == 201:
            self.token = response.json()["access_token"]
        return response

    def call(
        self, method: str, path: str, *, auth: bool = True, **kwargs: Any
    ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if auth and self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.request(method, self.url(path), headers=headers, **kwargs)

    def auth(self, **body: Any) -> requests.Response:
        return self.call("POST", "/auth", json=body)

    def push(self, username: str) -> str:
        response = self.auth(username=username)
        assert response.status_code == 200, response.text
        authid: str = response.json()["authid"]
        return authid

    def status(self, authid: str) -> Any:
        return self.call("GET", f"/auth/{authid}").json()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_api(clock: FakeClock) -> Iterator[Callable[..., Api]]:
    """Start a simulator (demo users unless given) with the settings asked for; logged in."""
    started: list[Api] = []

    def make(users: list[SimUser] | None = None, **settings: Any) -> Api:
        sim = FicSimulator(
            users=demo_users() if users is None else users,
            settings=SimulatorSettings(**settings),
            clock=clock,
        )
        sim.start()
        api = Api(sim)
        started.append(api)
        assert api.login().status_code == 201
        return api

    yield make
    for api in started:
        api.session.close()
        api.sim.stop()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


# ------------------------------------------------------------------ login and bearer


def test_login_issues_token_with_201_and_lifetime(api: Api) -> None:
    """A known client id and secret get 201 with an access token and expires_in 3600."""
    response = api.login()
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"access_token", "expires_in"}
    assert body["expires_in"] == 3600
    assert '"access_token": "' in response.text  # the spacing public clients search for


@pytest.mark.parametrize(
    ("client_id", "secret", "status"),
    [
        ("demo-client", "wrong-secret", 401),
        ("other-client", "demo-secret", 404),
        ("demo-client", "", 400),
        ("demo-client", "has space", 400),
    ],
)
def test_login_refusals(api: Api, client_id: str, secret: str, status: int) -> None:
    """Wrong secret is 401, unknown client 404, malformed secret 400, each with a JSON error."""
    response = api.login(client_id, secret)
    assert response.status_code == status
    assert "error" in response.json()


def test_login_without_body_fields_is_400(api: Api) -> None:
    """A login body without client_id is a 400."""
    response = api.call("POST", "/login", auth=False, json={"client_secret": "demo-secret"})
    assert response.status_code == 400


def test_logins_are_counted(api: Api) -> None:
    """Each successful login increments the logins counter."""
    api.login()
    api.login("demo-client", "nope")
    assert api.sim.counters()["logins"] == 2


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic ZGVtbzpkZW1v", "Bearer ", "Bearer not-a-token-we-issued"],
)
def test_bad_bearer_is_401_json(api: Api, authorization: str | None) -> None:
    """A missing, malformed or unknown bearer gets 401 with a JSON error body."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = api.call(
        "POST", "/auth/preview", auth=False, headers=headers, json={"username": "alice"}
    )
    assert response.status_code == 401
    assert response.json()["error"]


def test_token_expires_with_the_clock(api: Api, clock: FakeClock) -> None:
    """A token works until its lifetime passes on the injected clock, then every call is 401."""
    assert api.call("GET", "/user").status_code == 200
    clock.advance(3599)
    assert api.call("GET", "/user").status_code == 200
    clock.advance(1)
    assert api.call("GET", "/user").status_code == 401
    assert api.call("POST", "/auth", json={"username": "alice"}).status_code == 401


def test_second_login_keeps_old_token_by_default(api: Api) -> None:
    """A second login issues a new token and the old one stays valid."""
    old = api.token
    api.login()
    assert api.token != old
    response = api.call("GET", "/user", auth=False, headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 200


def test_second_login_can_revoke_old_token(make_api: Callable[..., Api]) -> None:
    """With login_revokes_previous the old token is 401 after a new login."""
    api = make_api(login_revokes_previous=True)
    old = api.token
    api.login()
    response = api.call("GET", "/user", auth=False, headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 401
    assert api.call("GET", "/user").status_code == 200


def test_expire_tokens_invalidates_every_token(api: Api) -> None:
    """expire_tokens() makes every issued token 401 at once; a new login works again."""
    api.sim.expire_tokens()
    assert api.call("GET", "/user").status_code == 401
    api.login()
    assert api.call("GET", "/user").status_code == 200


def test_unknown_path_404_and_wrong_method_405(api: Api) -> None:
    """Unknown paths answer 404; a known path with the wrong method 405 with Allow."""
    assert api.call("GET", "/nothing/here").status_code == 404
    response = api.call("DELETE", "/auth/some-id")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert api.call("DELETE", "/auth").status_code == 405
    assert api.call("PATCH", "/user").status_code == 405


def test_version_without_token_unless_configured(make_api: Callable[..., Api]) -> None:
    """GET /version answers 200 without a bearer, or 401 when version_requires_token."""
    api = make_api()
    response = api.call("GET", "/version", auth=False)
    assert response.status_code == 200
    assert "2.5.0" in response.json().values()
    strict = make_api(version_requires_token=True)
    assert strict.call("GET", "/version", auth=False).status_code == 401
    assert strict.call("GET", "/version").status_code == 200


def test_invalid_json_body_is_400(api: Api) -> None:
    """A request body that is not a JSON object is answered 400."""
    response = api.call(
        "POST", "/auth", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert api.call("POST", "/auth", json=[1, 2]).status_code == 400


def test_error_key_is_configurable(make_api: Callable[..., Api]) -> None:
    """error_key names the key of the error message."""
    api = make_api(error_key="message")
    body = api.auth(username="nobody", token="123456").json()
    assert "does not exist" in body["message"]


# ------------------------------------------------------------------ preview


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        (
            "alice",
            {"auth_method": "FTM", "action": "MFA", "temp_token": False, "push_enabled": True},
        ),
        (
            "ALICE",
            {"auth_method": "FTM", "action": "MFA", "temp_token": False, "push_enabled": True},
        ),
        ("frank", {"auth_method": "FTK", "action": "MFA", "temp_token": False}),
        ("carol", {"auth_method": "SMS", "action": "MFA", "temp_token": False}),
        ("dave", {"auth_method": "Email", "action": "MFA", "temp_token": False}),
        ("gina", {"auth_method": "FTM", "action": "Bypass", "temp_token": False}),
    ],
)
def test_preview_actions(api: Api, username: str, expected: dict[str, Any]) -> None:
    """Preview reports method and action; push_enabled only for FTM users needing MFA."""
    response = api.call("POST", "/auth/preview", json={"username": username, "user_ip": "10.0.0.9"})
    assert response.status_code == 200
    assert response.json() == expected


def test_preview_blocks_disabled_user_with_message(make_api: Callable[..., Api]) -> None:
    """A disabled user previews as Block with a message."""
    api = make_api([SimUser("ivan", "ivan@example.com", active=False)])
    body = api.call("POST", "/auth/preview", json={"username": "ivan"}).json()
    assert body["action"] == "Block"
    assert body["message"]


@pytest.mark.parametrize(
    ("users", "settings", "username", "status"),
    [
        (None, {}, "nobody", 400),
        ([SimUser("ivan", "i@example.com", activated=False)], {}, "ivan", 400),
        (None, {"sms_credit": 0}, "carol", 402),
        (None, {"account_active": False}, "alice", 402),
    ],
)
def test_preview_refusals(
    make_api: Callable[..., Api],
    users: list[SimUser] | None,
    settings: dict[str, Any],
    username: str,
    status: int,
) -> None:
    """Unknown or never-activated users get 400; exhausted SMS credit or disabled account 402."""
    api = make_api(users, **settings)
    response = api.call("POST", "/auth/preview", json={"username": username})
    assert response.status_code == status
    assert response.json()["error"]


def test_preview_case_sensitive_when_asked(api: Api) -> None:
    """case_accent_sensitive makes "ALICE" unknown while "alice" is found."""
    body = {"username": "ALICE", "case_accent_sensitive": True}
    assert api.call("POST", "/auth/preview", json=body).status_code == 400
    body["username"] = "alice"
    assert api.call("POST", "/auth/preview", json=body).status_code == 200


def test_preview_reports_push_disabled_by_realm(make_api: Callable[..., Api]) -> None:
    """A realm with push disabled makes preview say push_enabled false and a push 400."""
    api = make_api(
        [SimUser("ivan", "i@example.com", realm="lab")], push_disabled_realms=frozenset({"lab"})
    )
    body = api.call("POST", "/auth/preview", json={"username": "ivan"}).json()
    assert body["push_enabled"] is False
    assert api.auth(username="ivan").status_code == 400


def test_preview_sends_nothing(api: Api) -> None:
    """Preview creates no push and sends no code."""
    api.call("POST", "/auth/preview", json={"username": "alice"})
    api.call("POST", "/auth/preview", json={"username": "carol"})
    counters = api.sim.counters()
    assert counters["pushes"] == {}
    assert api.sim.outbox("carol") == []


# ------------------------------------------------------------------ OTP codes


def test_correct_code_is_200_and_wrong_code_401(api: Api) -> None:
    """The fixed test code is accepted with 200; a wrong code gets 401 with a message."""
    assert api.auth(username="alice", token="123456").status_code == 200
    wrong = api.auth(username="bob", token="000000")
    assert wrong.status_code == 401
    assert wrong.json()["error"]


@pytest.mark.parametrize("status", [400, 403])
def test_wrong_code_status_is_configurable(make_api: Callable[..., Api], status: int) -> None:
    """wrong_code_status changes the status of a wrong code."""
    api = make_api(wrong_code_status=status)
    assert api.auth(username="alice", token="999999").status_code == status


def test_unknown_user_on_auth_says_does_not_exist(api: Api) -> None:
    """An unknown user on POST /auth gets 400 whose message says "does not exist"."""
    response = api.auth(username="nobody", token="123456")
    assert response.status_code == 400
    assert "does not exist" in response.json()["error"]


def test_user_without_activated_token_is_400(make_api: Callable[..., Api]) -> None:
    """A user whose token was never activated cannot authenticate (400)."""
    api = make_api([SimUser("ivan", "i@example.com", activated=False)])
    assert api.auth(username="ivan", token="123456").status_code == 400
    assert api.auth(username="ivan").status_code == 400


def test_token_as_json_number_is_tolerated(make_api: Callable[..., Api]) -> None:
    """A token sent as a JSON number is compared as its digits."""
    api = make_api([SimUser("ivan", "i@example.com", code="654321")])
    assert api.auth(username="ivan", token=654321).status_code == 200
    assert api.auth(username="ivan", token="").status_code == 400
    assert api.auth(username="ivan", token=True).status_code == 400


def test_code_is_single_use_within_its_step(api: Api, clock: FakeClock) -> None:
    """A code accepted once is refused again within its 30 s step and accepted in the next."""
    clock.now = 1_699_999_990.0  # 10 s into a 30 s step
    assert api.auth(username="alice", token="123456").status_code == 200
    clock.advance(15)
    assert api.auth(username="alice", token="123456").status_code == 401
    clock.advance(10)
    assert api.auth(username="alice", token="123456").status_code == 200


def test_codes_can_be_reusable(make_api: Callable[..., Api]) -> None:
    """With codes_single_use off the same code is accepted twice in a row."""
    api = make_api(codes_single_use=False)
    assert api.auth(username="alice", token="123456").status_code == 200
    assert api.auth(username="alice", token="123456").status_code == 200


def test_totp_code_matches_rfc6238_vector() -> None:
    """totp_code reproduces the RFC 6238 Appendix B SHA-1 vector at T=59 s (6 digits)."""
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp_code(secret, 59) == "287082"
    assert totp_code(secret, 59, digits=8) == "94287082"
    assert totp_code(secret, 1111111109, digits=8) == "07081804"


def test_totp_window_and_replay(make_api: Callable[..., Api], clock: FakeClock) -> None:
    """A TOTP user is accepted one step either side, not two, and never twice for a step."""
    secret = "JBSWY3DPEHPK3PXP"
    api = make_api([SimUser("henry", "h@example.com", code=None, totp_secret=secret)])
    now = clock()
    assert api.auth(username="henry", token=totp_code(secret, now - 30)).status_code == 200
    assert api.auth(username="henry", token=totp_code(secret, now - 30)).status_code == 401
    assert api.auth(username="henry", token=totp_code(secret, now)).status_code == 200
    assert api.auth(username="henry", token=totp_code(secret, now + 30)).status_code == 200
    assert api.auth(username="henry", token=totp_code(secret, now - 60)).status_code == 401


# ------------------------------------------------------------------ lockout


def test_lockout_after_threshold_refuses_even_correct_code(api: Api, clock: FakeClock) -> None:
    """After 7 wrong codes even the right code is refused with a "locked" message for 60 s."""
    for _ in range(7):
        assert api.auth(username="alice", token="000000").status_code == 401
    locked = api.auth(username="alice", token="123456")
    assert locked.status_code == 403
    assert "locked" in locked.json()["error"]
    assert "try again in 1 minutes" in locked.json()["error"]
    assert api.auth(username="alice").status_code == 403  # no push while locked
    state = api.sim.user_state("alice")
    assert state is not None and state["fail_times"] == 7 and state["lockout_at"] is not None
    clock.advance(60)
    assert api.auth(username="alice", token="123456").status_code == 200
    state = api.sim.user_state("alice")
    assert state is not None and state["fail_times"] == 0 and state["lockout_at"] is None


def test_success_resets_failure_count(api: Api) -> None:
    """A correct code resets fail_times, so failures must be consecutive to lock."""
    for _ in range(6):
        api.auth(username="alice", token="000000")
    assert api.auth(username="alice", token="123456").status_code == 200
    for _ in range(6):
        api.auth(username="alice", token="000000")
    user = api.call("GET", "/user", params={"username": "alice"}).json()[0]
    assert user["fail_times"] == 6
    assert user["lockout_at"] is None


def test_lockout_threshold_period_and_status_configurable(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    """lockout_threshold, lockout_period and lockout_status shape the lockout."""
    api = make_api(lockout_threshold=2, lockout_period=120, lockout_status=429 - 6)
    api.auth(username="alice", token="1")
    api.auth(username="alice", token="2")
    assert api.auth(username="alice", token="123456").status_code == 423
    clock.advance(119)
    assert "2 minutes" not in api.auth(username="alice", token="123456").json()["error"]
    clock.advance(1)
    assert api.auth(username="alice", token="123456").status_code == 200


# ------------------------------------------------------------------ push


def test_push_approved_after_scripted_delay(api: Api, clock: FakeClock) -> None:
    """alice's push is waiting, then authenticated once 3 s pass, and stays so."""
    authid = api.push("alice")
    assert api.status(authid) == {"authid": authid, "status": "waiting"}
    clock.advance(2.9)
    assert api.status(authid)["status"] == "waiting"
    clock.advance(0.1)
    assert api.status(authid)["status"] == "authenticated"
    clock.advance(600)
    assert api.status(authid)["status"] == "authenticated"


def test_push_denied_and_ignored(api: Api, clock: FakeClock) -> None:
    """bob's push becomes rejected; erin's never-answered push stays waiting."""
    bob = api.push("bob")
    erin = api.push("erin")
    clock.advance(3000)
    assert api.status(bob)["status"] == "rejected"
    assert api.status(erin)["status"] == "waiting"


def test_each_push_post_is_a_new_push_and_counted(api: Api) -> None:
    """Every POST /auth without a token starts another push with a fresh authid."""
    first, second = api.push("alice"), api.push("ALICE")
    assert first != second
    counters = api.sim.counters()
    assert counters["pushes"] == {"alice": 2}
    assert counters["auth_posts"] == {"alice": 2}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"username": "frank"}, "hardware token: codes only"),
        ({"username": "carol", "auth_method": "FTM"}, "SMS user has no FTM"),
        ({"username": "alice", "auth_method": "Push"}, "not a method"),
    ],
)
def test_push_refused_when_not_possible(api: Api, body: dict[str, str], reason: str) -> None:
    """A push for a user whose method is not FTM (or an unknown method) is a 400."""
    assert api.auth(**body).status_code == 400, reason
    assert api.sim.counters()["pushes"] == {}


def test_push_disabled_user_is_400(make_api: Callable[..., Api]) -> None:
    """An FTM user with push turned off gets 400 for a push but can still use codes."""
    api = make_api([SimUser("ivan", "i@example.com", push_enabled=False)])
    assert api.auth(username="ivan").status_code == 400
    assert api.auth(username="ivan", token="123456").status_code == 200


def test_push_start_status_configurable(make_api: Callable[..., Api]) -> None:
    """push_start_status changes the 2xx of a started push."""
    api = make_api(push_start_status=202)
    response = api.auth(username="alice")
    assert response.status_code == 202
    assert response.json()["authid"]


def test_status_list_shape(make_api: Callable[..., Api]) -> None:
    """auth_status_shape "list" answers a one-element list."""
    api = make_api(auth_status_shape="list")
    authid = api.push("erin")
    assert api.status(authid) == [{"authid": authid, "status": "waiting"}]


@pytest.mark.parametrize("status", [400, 404])
def test_unknown_auth_id(make_api: Callable[..., Api], status: int) -> None:
    """An unknown auth ID answers unknown_auth_status with a JSON error."""
    api = make_api(unknown_auth_status=status)
    response = api.call("GET", "/auth/00000000-0000-4000-8000-000000000000")
    assert response.status_code == status
    assert "error" in response.json()


def test_push_expiry_forgets_auth_ids(make_api: Callable[..., Api], clock: FakeClock) -> None:
    """With push_expiry an auth ID is unknown once that many seconds have passed."""
    api = make_api(push_expiry=30)
    authid = api.push("erin")
    clock.advance(30)
    assert api.call("GET", f"/auth/{authid}").status_code == 200
    clock.advance(1)
    assert api.call("GET", f"/auth/{authid}").status_code == 400


def test_manual_approve_and_deny(api: Api) -> None:
    """approve()/deny() finish a waiting push exactly once; unknown IDs raise KeyError."""
    first, second = api.push("erin"), api.push("erin")
    assert api.sim.approve(first) is True
    assert api.sim.deny(first) is False
    assert api.sim.deny(second) is True
    assert api.status(first)["status"] == "authenticated"
    assert api.status(second)["status"] == "rejected"
    with pytest.raises(KeyError):
        api.sim.approve("no-such-id")


def test_manual_decisions_over_http(api: Api) -> None:
    """POST /_sim/auth/{id}/approve|deny and /_sim/push/{user}/... answer waiting pushes."""
    authid = api.push("erin")
    response = api.call("POST", f"/_sim/auth/{authid}/deny", auth=False)
    assert response.status_code == 200
    assert response.json() == {"authid": authid, "status": "rejected"}
    assert api.call("POST", f"/_sim/auth/{authid}/approve", auth=False).status_code == 409
    assert api.call("POST", "/_sim/auth/unknown/approve", auth=False).status_code == 404
    other = api.push("erin")
    response = api.call("POST", "/_sim/push/erin/approve", auth=False)
    assert response.json() == {"authid": other, "status": "authenticated"}
    assert api.call("POST", "/_sim/push/erin/approve", auth=False).status_code == 404
    listed = api.call("GET", "/_sim/auths", auth=False, params={"username": "erin"}).json()
    assert [a["authid"] for a in listed] == [authid, other]


def test_bypass_user_push_is_approved_at_once(api: Api) -> None:
    """A bypassed user's auth POST is approved immediately (no push is sent)."""
    authid = api.push("gina")
    assert api.status(authid)["status"] == "authenticated"
    assert api.auth(username="gina", token="anything").status_code == 200


# ------------------------------------------------------------------ batch


def test_batch_lists_only_finished(api: Api, clock: FakeClock) -> None:
    """GET /auth lists finished auths only: [] at first, then approved and denied ones."""
    alice, bob, erin = api.push("alice"), api.push("bob"), api.push("erin")
    assert api.call("GET", "/auth").json() == []
    clock.advance(3)
    listed = api.call("GET", "/auth").json()
    assert sorted(listed, key=lambda a: a["authid"]) == sorted(
        [{"authid": alice, "status": "authenticated"}, {"authid": bob, "status": "rejected"}],
        key=lambda a: a["authid"],
    )
    assert erin not in {a["authid"] for a in listed}
    assert api.sim.counters()["batch_polls"] == 2


def test_batch_unsupported_is_404(make_api: Callable[..., Api]) -> None:
    """With batch_supported off GET /auth answers 404 while GET /auth/{id} still works."""
    api = make_api(batch_supported=False)
    authid = api.push("alice")
    assert api.call("GET", "/auth").status_code == 404
    assert api.call("GET", f"/auth/{authid}").status_code == 200


def test_batch_rejects_bad_chunksize(api: Api) -> None:
    """chunksize outside 100..1000 is a 400."""
    assert api.call("GET", "/auth", params={"chunksize": 5}).status_code == 400
    assert api.call("GET", "/auth", params={"chunksize": 100}).status_code == 200


# ------------------------------------------------------------------ SMS and e-mail


def test_sms_code_goes_to_outbox_and_verifies(api: Api) -> None:
    """carol's SMS code lands in the outbox, returns an authid, and verifies once with 200."""
    response = api.auth(username="carol")
    assert response.status_code == 200
    authid = response.json()["authid"]
    codes = api.sim.outbox("carol")
    assert len(codes) == 1 and len(codes[0]) == 6 and codes[0].isdigit()
    assert api.status(authid)["status"] == "waiting"
    assert api.auth(username="carol", token=codes[0]).status_code == 200
    assert api.status(authid)["status"] == "authenticated"
    assert api.auth(username="carol", token=codes[0]).status_code == 401


def test_email_by_method_and_outbox_endpoint(api: Api) -> None:
    """auth_method Email sends to the outbox, readable at GET /_sim/outbox/{username}."""
    assert api.auth(username="alice", auth_method="Email").status_code == 200
    body = api.call("GET", "/_sim/outbox/alice", auth=False).json()
    assert body["username"] == "alice"
    assert body["codes"] == api.sim.outbox("alice")
    assert body["latest"] == body["codes"][-1]
    assert api.sim.counters()["codes_sent"] == {"alice": 1}


def test_new_send_invalidates_previous_code(api: Api) -> None:
    """A second send replaces the first code, which is then refused."""
    api.auth(username="dave")
    api.auth(username="dave")
    first, second = api.sim.outbox("dave")
    if first == second:
        pytest.skip("the two random codes happened to be equal")
    assert api.auth(username="dave", token=first).status_code == 401
    assert api.auth(username="dave", token=second).status_code == 200


def test_sent_code_expires(api: Api, clock: FakeClock) -> None:
    """A sent code is refused after 300 s."""
    api.auth(username="dave")
    clock.advance(301)
    response = api.auth(username="dave", token=api.sim.outbox("dave")[-1])
    assert response.status_code == 401
    assert "expired" in response.json()["error"]


def test_code_send_without_authid(make_api: Callable[..., Api]) -> None:
    """With code_send_returns_authid off the send answers 200 with no authid."""
    api = make_api(code_send_returns_authid=False)
    response = api.auth(username="carol")
    assert response.status_code == 200
    assert "authid" not in response.json()


def test_sms_without_mobile_is_400_and_credit_runs_out(make_api: Callable[..., Api]) -> None:
    """SMS to a user without a mobile number is 400; with sms_credit 1 the second SMS is 402."""
    api = make_api(sms_credit=1)
    assert api.auth(username="dave", auth_method="SMS").status_code == 400
    assert api.auth(username="carol").status_code == 200
    assert api.auth(username="carol").status_code == 402
    assert api.sim.outbox("carol") and len(api.sim.outbox("carol")) == 1


def test_seeded_simulators_are_deterministic(clock: FakeClock) -> None:
    """Two simulators with the same seed hand out the same codes and auth IDs."""
    results = []
    for _ in range(2):
        with FicSimulator(
            users=demo_users(), settings=SimulatorSettings(seed=7), clock=clock
        ) as sim:
            api = Api(sim)
            api.login()
            results.append(
                (
                    api.push("alice"),
                    api.auth(username="carol").json()["authid"],
                    sim.outbox("carol"),
                )
            )
            api.session.close()
    assert results[0] == results[1]


# ------------------------------------------------------------------ users


def test_user_create_get_update_delete(api: Api) -> None:
    """POST 201, GET by id and user_id 200, PUT 202 with changes, DELETE 204 then 404."""
    created = api.call(
        "POST",
        "/user",
        json={"username": "ivan", "email": "ivan@example.com", "mobile_number": "+15550100009"},
    )
    assert created.status_code == 201
    user = created.json()
    for key in (
        "id",
        "user_id",
        "customer_id",
        "client_id",
        "realm_id",
        "username",
        "email",
        "mobile_number",
        "auth_method",
        "notification_method",
        "active",
        "created_at",
        "updated_at",
        "bypass_at",
        "lockout_at",
        "fail_times",
        "temp_token",
        "user_data",
    ):
        assert key in user
    assert user["bypass_at"] is None and user["lockout_at"] is None
    assert user["id"] != user["user_id"]
    assert api.call("GET", f"/user/{user['id']}").json()["username"] == "ivan"
    assert api.call("GET", f"/user/{user['user_id']}").status_code == 200
    assert api.auth(username="ivan", token="123456").status_code == 200
    updated = api.call(
        "PUT",
        f"/user/{user['id']}",
        json={"active": False, "auth_method": "SMS", "email": "new@example.com"},
    )
    assert updated.status_code == 202
    assert updated.json()["active"] is False
    assert updated.json()["auth_method"] == "SMS"
    assert api.call("POST", "/auth/preview", json={"username": "ivan"}).json()["action"] == "Block"
    deleted = api.call("DELETE", f"/user/{user['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.call("GET", f"/user/{user['id']}").status_code == 404
    assert api.call("DELETE", f"/user/{user['id']}").status_code == 404


@pytest.mark.parametrize(("settings", "status"), [({}, 409), ({"duplicate_user_status": 400}, 400)])
def test_duplicate_username(
    make_api: Callable[..., Api], settings: dict[str, int], status: int
) -> None:
    """Creating an existing username (in any case) answers duplicate_user_status."""
    api = make_api(**settings)
    response = api.call("POST", "/user", json={"username": "Alice", "email": "a@example.com"})
    assert response.status_code == status


def test_user_create_requires_username_and_email(api: Api) -> None:
    """POST /user without username or email is a 400."""
    assert api.call("POST", "/user", json={"username": "ivan"}).status_code == 400
    assert api.call("POST", "/user", json={"email": "i@example.com"}).status_code == 400


def test_user_list_filters(api: Api) -> None:
    """GET /user lists all; username filters case-insensitively unless case_accent_sensitive."""
    assert len(api.call("GET", "/user").json()) == 7
    found = api.call("GET", "/user", params={"username": "CaRoL"}).json()
    assert [u["username"] for u in found] == ["carol"]
    exact = {"username": "CaRoL", "case_accent_sensitive": "true"}
    assert api.call("GET", "/user", params=exact).json() == []
    by_method = api.call("GET", "/user", params={"auth_method": "FTK"}).json()
    assert [u["username"] for u in by_method] == ["frank"]
    brief = api.call("GET", "/user", params={"username": "bob", "brief": "true"}).json()[0]
    assert set(brief) == {"mobile_number", "username", "email", "vdom", "realm", "id", "user_data"}


def test_user_put_lockout_and_bypass(api: Api) -> None:
    """PUT lockout true locks the user; bypass true makes preview Bypass."""
    user_id = api.call("GET", "/user", params={"username": "alice"}).json()[0]["id"]
    locked = api.call("PUT", f"/user/{user_id}", json={"lockout": True}).json()
    assert locked["lockout_at"] is not None
    assert api.auth(username="alice", token="123456").status_code == 403
    api.call("PUT", f"/user/{user_id}", json={"lockout": False, "bypass": True})
    preview = api.call("POST", "/auth/preview", json={"username": "alice"}).json()
    assert preview["action"] == "Bypass"
    assert api.call("PUT", f"/user/{user_id}", json={"active": "yes"}).status_code == 400


def test_delete_conflict_switch(make_api: Callable[..., Api]) -> None:
    """With delete_conflict on DELETE /user/{id} answers 409 and keeps the user."""
    api = make_api(delete_conflict=True)
    user_id = api.call("GET", "/user", params={"username": "bob"}).json()[0]["id"]
    assert api.call("DELETE", f"/user/{user_id}").status_code == 409
    assert api.call("GET", f"/user/{user_id}").status_code == 200


def test_v2_user_pagination_follows_link_header(make_api: Callable[..., Api]) -> None:
    """GET /api/v2/user pages by limit with rel="next"/"previous" Link URLs to follow as given."""
    users = [SimUser(f"user{n:02d}", f"u{n}@example.com") for n in range(25)]
    api = make_api(users)
    first = api.call("GET", "/api/v2/user", params={"limit": 20})
    assert first.status_code == 200 and len(first.json()) == 20
    assert first.links["next"]["url"].startswith(api.sim.origin)
    assert "previous" not in first.links
    second = api.call("GET", first.links["next"]["url"])
    assert len(second.json()) == 5
    assert "next" not in second.links
    names = [u["username"] for u in first.json() + second.json()]
    assert sorted(names) == [f"user{n:02d}" for n in range(25)]
    back = api.call("GET", second.links["previous"]["url"])
    assert back.json() == first.json()
    assert api.call("GET", "/api/v2/user", params={"limit": 7}).status_code == 400
    assert api.call("GET", "/api/v2/user", params={"page": "garbage!"}).status_code == 400


# ------------------------------------------------------------------ realms, temp tokens


def test_realms(make_api: Callable[..., Api]) -> None:
    """GET /realm lists realms, ?name= filters to a list, /realm/{id} is an object or 404."""
    api = make_api([SimUser("ivan", "i@example.com", realm="lab")])
    realms = api.call("GET", "/realm").json()
    assert {r["name"] for r in realms} == {"default", "lab"}
    lab = api.call("GET", "/realm", params={"name": "lab"}).json()
    assert len(lab) == 1 and lab[0]["is_default"] is False and lab[0]["deleted_at"] is None
    assert api.call("GET", f"/realm/{lab[0]['id']}").json() == lab[0]
    assert api.call("GET", "/realm/nope").status_code == 404


def test_temp_token_lifecycle(api: Api) -> None:
    """A temp token makes preview say temp_token and sends codes by its method until deleted."""
    alice = api.call("GET", "/user", params={"username": "alice"}).json()[0]
    created = api.call(
        "POST",
        "/token/temp",
        json={"user_id": alice["id"], "auth_method": "SMS", "expired_at": "2099-01-01T00:00:00"},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["sn"].startswith("TMP") and len(body["sn"]) == 16
    assert body["expired_at"] == "2099-01-01T00:00:00"
    preview = api.call("POST", "/auth/preview", json={"username": "alice"}).json()
    assert preview["temp_token"] is True and preview["auth_method"] == "FTM"
    assert "authid" in api.auth(username="alice").json()
    assert len(api.sim.outbox("alice")) == 1
    assert api.call("DELETE", f"/token/temp/{alice['id']}").status_code == 204
    preview = api.call("POST", "/auth/preview", json={"username": "alice"}).json()
    assert preview["temp_token"] is False


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"user_id": "nope"}, 404),
        ({"user_id": "<carol>"}, 400),
        ({"user_id": "<dave>", "auth_method": "SMS"}, 400),
        ({"user_id": "<alice>", "expired_at": "tomorrow"}, 400),
    ],
)
def test_temp_token_refusals(api: Api, body: dict[str, str], status: int) -> None:
    """Temp tokens: unknown user 404; non-FTM/FTK user, SMS without mobile, bad date 400."""
    name = body["user_id"].strip("<>")
    found = api.call("GET", "/user", params={"username": name}).json()
    if found:
        body = dict(body, user_id=found[0]["id"])
    assert api.call("POST", "/token/temp", json=body).status_code == status


# ------------------------------------------------------------------ rate limit


def test_rate_limit_window(make_api: Callable[..., Api], clock: FakeClock) -> None:
    """Beyond N requests per window the answer is 429 with a retry message until it slides."""
    api = make_api(rate_limit=(3, 300))  # the login was request 1
    assert api.call("GET", "/user").status_code == 200
    assert api.call("GET", "/user").status_code == 200
    limited = api.call("GET", "/user")
    assert limited.status_code == 429
    assert "retry after 5 minutes" in limited.json()["error"]
    assert "Retry-After" not in limited.headers
    clock.advance(300)
    assert api.call("GET", "/user").status_code == 200
    assert api.sim.counters()["rate_limited"] == 1


def test_rate_limit_retry_after_header(make_api: Callable[..., Api], clock: FakeClock) -> None:
    """rate_limit_retry_after adds Retry-After with the seconds until a slot frees."""
    api = make_api(rate_limit=(1, 60), rate_limit_retry_after=True)
    clock.advance(20)
    limited = api.call("GET", "/user")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "40"


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("pattern", "method", "path", "expected"),
    [
        ("*", "GET", "/api/v1/auth/x", True),
        ("POST /auth", "POST", "/api/v1/auth", True),
        ("POST /auth", "POST", "/api/v1/auth/preview", False),
        ("POST /auth", "GET", "/api/v1/auth", False),
        ("GET /auth/*", "GET", "/api/v1/auth/abc", True),
        ("GET /auth/*", "POST", "/api/v1/auth", False),
        ("GET /auth/{id}", "GET", "/api/v1/auth/abc", True),
        ("/login", "POST", "/api/v1/login", True),
        ("POST /api/v1/login", "POST", "/api/v1/login", True),
        ("GET /v2/user", "GET", "/api/v2/user", True),
        ("get /user", "GET", "/api/v1/user", True),
    ],
)
def test_endpoint_patterns(pattern: str, method: str, path: str, expected: bool) -> None:
    """Fault endpoint patterns match method and path (glob), with optional /api/v1 prefix."""
    assert endpoint_matches(pattern, route(method, path)) is expected


def test_fault_validation() -> None:
    """Unknown fault kinds and non-positive counts are refused."""
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault("500", count=0)


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_5xx_fault_for_count_requests(api: Api, kind: str) -> None:
    """A 5xx fault answers that status (JSON error) for `count` requests, then normal."""
    api.sim.inject_fault(kind, endpoint="POST /auth", count=2)
    for _ in range(2):
        response = api.auth(username="alice", token="123456")
        assert response.status_code == int(kind)
        assert "error" in response.json()
    assert api.call("GET", "/user").status_code == 200  # other endpoints unaffected
    assert api.auth(username="alice", token="123456").status_code == 200
    assert api.sim.counters()["code_checks"] == {"alice": 1}  # faulted requests not processed
    assert api.sim.faults() == []


def test_429_fault_with_retry_after(api: Api) -> None:
    """A 429 fault carries Retry-After when retry_after is given."""
    api.sim.inject_fault("429", count=1, retry_after=7)
    api.sim.inject_fault("429", count=1)
    first = api.call("GET", "/user")
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    second = api.call("GET", "/user")
    assert second.status_code == 429 and "Retry-After" not in second.headers


def test_reset_fault_drops_connection(api: Api) -> None:
    """A reset fault closes the connection with no answer; the next request is served."""
    api.sim.inject_fault("reset", endpoint="POST /auth", count=1)
    with pytest.raises(requests.ConnectionError):
        api.auth(username="alice")
    assert api.sim.counters()["pushes"] == {}
    assert api.auth(username="alice").status_code == 200


def test_malformed_json_fault(api: Api) -> None:
    """A malformed_json fault answers 200 with a body that is not valid JSON."""
    api.sim.inject_fault("malformed_json", endpoint="GET /auth/*", count=1)
    response = api.call("GET", "/auth/any")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)


def test_hang_fault_times_out_without_blocking_others(api: Api) -> None:
    """A hang holds one request past the client's timeout while other requests are served."""
    api.sim.inject_fault("hang", endpoint="POST /auth/preview", count=1, delay=2.0)
    outcome: dict[str, object] = {}

    def hung() -> None:
        with requests.Session() as session:
            started = time.monotonic()
            try:
                session.post(
                    api.url("/auth/preview"),
                    json={"username": "alice"},
                    headers={"Authorization": f"Bearer {api.token}"},
                    timeout=0.5,
                )
            except requests.Timeout:
                outcome["timeout"] = time.monotonic() - started

    thread = threading.Thread(target=hung)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert api.call("GET", "/user").status_code == 200
    assert time.monotonic() - started < 1.0  # the hang holds its request for 2 s
    thread.join(TIMEOUT)
    assert 0.4 < float(outcome["timeout"]) < 1.5  # type: ignore[arg-type]


def test_slow_fault_and_latency_delay_but_answer(make_api: Callable[..., Api]) -> None:
    """slow adds its delay to one request; latency adds to every API request, not /_sim/."""
    api = make_api(latency=0.2)
    api.sim.inject_fault("slow", endpoint="GET /user", count=1, delay=0.3)
    started = time.monotonic()
    assert api.call("GET", "/user").status_code == 200
    assert time.monotonic() - started >= 0.5
    assert api.sim.faults() == []
    started = time.monotonic()
    assert api.call("GET", "/user").status_code == 200
    assert 0.2 <= time.monotonic() - started < 0.45
    started = time.monotonic()
    assert api.call("GET", "/_sim/counters", auth=False).status_code == 200
    assert time.monotonic() - started < 0.15


def test_stop_releases_hung_requests(make_api: Callable[..., Api]) -> None:
    """stop() returns promptly even while a request is held by a 30 s hang."""
    api = make_api()
    api.sim.inject_fault("hang")
    errors: list[Exception] = []

    def hung() -> None:
        with requests.Session() as session:
            try:
                session.get(api.url("/user"), timeout=TIMEOUT)
            except requests.RequestException as exc:
                errors.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    api.sim.stop()
    thread.join(TIMEOUT)
    assert time.monotonic() - started < 2.0
    assert not thread.is_alive()


def test_faults_over_http_and_clear(api: Api) -> None:
    """POST /_sim/faults adds a fault, GET lists it, DELETE clears it."""
    added = api.call(
        "POST", "/_sim/faults", auth=False, json={"kind": "503", "endpoint": "GET /user"}
    )
    assert added.status_code == 201
    assert api.call("GET", "/user").status_code == 503
    listed = api.call("GET", "/_sim/faults", auth=False).json()
    assert listed[0]["kind"] == "503" and listed[0]["remaining"] is None
    assert api.call("GET", "/_sim/counters", auth=False).status_code == 200  # never faulted
    assert api.call("DELETE", "/_sim/faults", auth=False).status_code == 204
    assert api.call("GET", "/user").status_code == 200
    bad = api.call("POST", "/_sim/faults", auth=False, json={"kind": "explode"})
    assert bad.status_code == 400


def test_refuse_and_accept_connections(api: Api) -> None:
    """refuse_connections makes connects fail (and drops open ones); accept reopens the port."""
    port = api.sim.port
    api.sim.refuse_connections()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    with pytest.raises(requests.ConnectionError):
        api.call("GET", "/user")
    api.sim.accept_connections()
    assert api.sim.port == port
    assert api.call("GET", "/user").status_code == 200


# ------------------------------------------------------------------ counters, concurrency


def test_counters_count_requests_connections_and_polls(api: Api) -> None:
    """Counters count requests by template, keep-alive connections, polls; reset zeroes them."""
    authid = api.push("alice")
    api.status(authid)
    api.status(authid)
    api.call("GET", "/auth")
    api.auth(username="alice", token="123456")
    counters = api.call("GET", "/_sim/counters", auth=False).json()
    assert counters["requests"] == {
        "POST /login": 1,
        "POST /auth": 2,
        "GET /auth/{id}": 2,
        "GET /auth": 1,
    }
    assert counters["status_polls"] == 2 and counters["batch_polls"] == 1
    assert counters["auth_posts"] == {"alice": 2} and counters["code_checks"] == {"alice": 1}
    assert counters["tcp_connections"] == 1  # one keep-alive connection for everything
    assert api.call("POST", "/_sim/reset", auth=False).status_code == 204
    after = api.sim.counters()
    assert after["requests"] == {} and after["logins"] == 0 and after["pushes"] == {}


def test_sixty_concurrent_requests(make_api: Callable[..., Api]) -> None:
    """60 concurrent polls on separate connections are served in parallel, all 200."""
    api = make_api(latency=0.1)
    authid = api.push("erin")
    api.sim.reset_counters()

    def poll(_: int) -> int:
        with requests.Session() as session:
            response = session.get(
                api.url(f"/auth/{authid}"),
                timeout=TIMEOUT,
                headers={"Authorization": f"Bearer {api.token}"},
            )
            return response.status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=60) as pool:
        statuses = list(pool.map(poll, range(60)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 60
    assert elapsed < 3.0  # 60 x 0.1 s serialized would take 6 s
    counters = api.sim.counters()
    assert counters["status_polls"] == 60
    assert counters["in_flight_max"] > 10
    assert counters["in_flight"] == 0


def test_verbose_logs_routes_without_secrets(
    make_api: Callable[..., Api], capsys: pytest.CaptureFixture[str]
) -> None:
    """verbose prints one line per request with the route template, never token or code."""
    api = make_api(verbose=True)
    api.auth(username="alice", token="123456")
    authid = api.push("bob")
    api.status(authid)
    out = capsys.readouterr().out
    assert "POST /auth -> 200" in out and "GET /auth/{id} -> 200" in out
    assert api.token is not None and api.token not in out
    assert "123456" not in out and "demo-secret" not in out and authid not in out


def test_quiet_by_default(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    """Without verbose nothing is printed per request."""
    api.call("GET", "/user")
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------------ control endpoints


def test_control_users_add_and_replace(api: Api) -> None:
    """POST /_sim/users adds (or replaces) a user who can then authenticate."""
    response = api.call(
        "POST",
        "/_sim/users",
        auth=False,
        json={"username": "ivan", "email": "i@example.com", "code": "777777"},
    )
    assert response.status_code == 201
    assert api.auth(username="ivan", token="777777").status_code == 200
    api.call(
        "POST",
        "/_sim/users",
        auth=False,
        json={"username": "ivan", "email": "i@example.com", "code": "888888"},
    )
    assert api.auth(username="ivan", token="777777").status_code == 401
    shown = api.call("GET", "/_sim/users/ivan", auth=False).json()
    assert shown["fail_times"] == 1
    bad = api.call("POST", "/_sim/users", auth=False, json={"username": "x", "emial": "y"})
    assert bad.status_code == 400 and "email" in bad.json()["error"]


def test_control_expire_tokens_and_settings(api: Api) -> None:
    """POST /_sim/expire-tokens invalidates tokens; POST /_sim/settings changes switches."""
    assert api.call("POST", "/_sim/expire-tokens", auth=False).status_code == 204
    assert api.call("GET", "/user").status_code == 401
    api.login()
    changed = api.call("POST", "/_sim/settings", auth=False, json={"auth_status_shape": "list"})
    assert changed.status_code == 204
    shown = api.call("GET", "/_sim/settings", auth=False).json()
    assert shown["auth_status_shape"] == "list" and "client_secret" not in shown
    assert isinstance(api.status(api.push("erin")), list)
    bad = api.call("POST", "/_sim/settings", auth=False, json={"auth_status_shape": "tree"})
    assert bad.status_code == 400
    assert api.call("POST", "/_sim/settings", auth=False, json={"nope": 1}).status_code == 400
    assert api.call("GET", "/_sim/whatever", auth=False).status_code == 404


# ------------------------------------------------------------------ users, YAML, CLI


def test_demo_users_cast() -> None:
    """The demo users cover each behaviour named in the README."""
    users = {u.username: u for u in demo_users()}
    assert set(users) == {"alice", "bob", "carol", "dave", "erin", "frank", "gina"}
    assert (users["alice"].push, users["alice"].push_delay, users["alice"].code) == (
        "approve",
        3.0,
        "123456",
    )
    assert users["bob"].push == "deny" and users["erin"].push == "ignore"
    assert users["carol"].auth_method == "SMS" and users["dave"].auth_method == "Email"
    assert users["frank"].auth_method == "FTK" and not users["frank"].push_enabled
    assert users["gina"].bypass


def test_sim_user_validates_and_hides_codes() -> None:
    """SimUser refuses bad values and keeps code and secret out of repr."""
    with pytest.raises(ValueError, match="push"):
        SimUser("x", "x@example.com", push="maybe")
    with pytest.raises(ValueError, match="auth_method"):
        SimUser("x", "x@example.com", auth_method="sms")
    user = SimUser("x", "x@example.com", code="424242", totp_secret="JBSWY3DPEHPK3PXP")
    assert "424242" not in repr(user) and "JBSWY3DP" not in repr(user)


def test_example_users_file_loads() -> None:
    """config/simulator-users.example.yaml loads and includes the demo cast."""
    users = load_users(REPO / "config" / "simulator-users.example.yaml")
    names = [u.username for u in users]
    assert names[:7] == [u.username for u in demo_users()]
    assert all(isinstance(u.push_delay, float) for u in users)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (
            "users:\n  - username: a\n    email: a@x\n    pussh: deny\n",
            "users[0].pussh",
            "did you mean 'push'",
        ),
        ("users:\n  - username: a\n    email: a@x\n    code: 123456\n", "users[0].code", "quoted"),
        ("users:\n  - username: a\n", "users[0].email", "required"),
        (
            "users:\n  - {username: a, email: a@x}\n  - {username: A, email: b@x}\n",
            "users[1].username",
            "duplicate",
        ),
        ("users: {username: a}\n", "users", "list"),
        ("user: []\n", "user", "did you mean 'users'"),
        ("users: [\n", "", "not valid YAML"),
        (
            "users:\n  - username: a\n    email: a@x\n    push_delay: -1\n",
            "users[0].push_delay",
            ">= 0",
        ),
    ],
)
def test_load_users_errors_name_the_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    """load_users raises ConfigError naming the file and the dotted key of the problem."""
    path = tmp_path / "users.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_users(path)
    assert caught.value.key == key
    assert caught.value.file == str(path)
    assert words in caught.value.problem


def test_load_users_missing_file(tmp_path: Path) -> None:
    """A missing users file is a ConfigError naming the file."""
    with pytest.raises(ConfigError) as caught:
        load_users(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(caught.value)


def test_cli_arguments_build_settings() -> None:
    """add_arguments parses every option into SimulatorSettings (latency given in ms)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--latency",
            "250",
            "--client-id",
            "id",
            "--client-secret",
            "s3",
            "--token-lifetime",
            "60",
            "--wrong-code-status",
            "403",
            "--auth-status-shape",
            "list",
            "--no-batch",
            "--rate-limit",
            "60/300",
            "--verbose",
        ]
    )
    settings = settings_from_args(args)
    assert (settings.latency, settings.client_id, settings.client_secret) == (0.25, "id", "s3")
    assert (settings.token_lifetime, settings.wrong_code_status) == (60, 403)
    assert settings.auth_status_shape == "list" and settings.batch_supported is False
    assert settings.rate_limit == (60, 300.0) and settings.verbose is True
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.users) == ("127.0.0.1", 9696, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate-limit", "lots"])


def test_run_from_args_bad_users_file_is_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run_from_args returns 78 when the users file is invalid, naming the problem."""
    path = tmp_path / "users.yaml"
    path.write_text("users: 3\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_from_args(parser.parse_args(["--users", str(path), "--port", "0"])) == 78
    assert "users" in capsys.readouterr().err


def test_run_from_args_serves_until_sigterm() -> None:
    """run_from_args prints the base URL and credentials, serves, and exits 0 on SIGTERM."""
    script = (
        "import argparse, sys\n"
        "from radius_bridge.simulator import add_arguments, run_from_args\n"
        "parser = argparse.ArgumentParser(); add_arguments(parser)\n"
        "sys.exit(run_from_args(parser.parse_args(['--port', '0'])))\n"
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        banner = "".join(lines)
        base_url = next(line.split()[-1] for line in lines if "base URL" in line)
        assert "client_id:     demo-client" in banner and "demo-secret" in banner
        assert "/_sim/outbox/" in banner and "/_sim/counters" in banner
        login = requests.post(
            f"{base_url}/login",
            timeout=TIMEOUT,
            json={"client_id": "demo-client", "client_secret": "demo-secret"},
        )
        assert login.status_code == 201
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def test_https_with_certificate(certificate: tuple[Path, Path]) -> None:
    """With a TLS context the simulator serves HTTPS; an untrusted certificate is refused."""
    cert, key = certificate
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    context = tls_context_from_args(
        parser.parse_args(["--tls-cert", str(cert), "--tls-key", str(key)])
    )
    with FicSimulator(users=demo_users()) as sim, requests.Session() as session:
        sim.stop()
        base_url = sim.start(tls=context)
        assert base_url.startswith("https://127.0.0.1:")
        login = session.post(
            f"{base_url}/login",
            verify=str(cert),
            timeout=TIMEOUT,
            json={"client_id": "demo-client", "client_secret": "demo-secret"},
        )
        assert login.status_code == 201
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{sim.origin}/version", timeout=TIMEOUT)
    with pytest.raises(ValueError, match="together"):
        tls_context_from_args(parser.parse_args(["--tls-cert", str(cert)]))


def raw_exchange(sim: FicSimulator, request: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=TIMEOUT) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_framing_edge_cases(api: Api) -> None:
    """Bad request lines get 400; HTTP/1.0 closes; chunked bodies and Expect are handled."""
    assert raw_exchange(api.sim, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    reply = raw_exchange(api.sim, b"GET /version HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in reply
    body = b'{"client_id": "demo-client", "client_secret": "demo-secret"}'
    chunked = (
        b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\nExpect: 100-continue\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    reply = raw_exchange(api.sim, chunked)
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n")
    assert b'"access_token": "' in reply
    bad_length = b"POST /api/v1/login HTTP/1.1\r\nContent-Length: -4\r\n\r\n"
    assert raw_exchange(api.sim, bad_length).startswith(b"HTTP/1.1 400 ")
    no_body = raw_exchange(api.sim, b"DELETE /api/v1/user/x HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert no_body.startswith(b"HTTP/1.1 401 ")
