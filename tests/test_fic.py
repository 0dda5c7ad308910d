"""Tests of radius_bridge.fic: the pure mapping and tolerance functions, then the client against
the real FIC simulator over HTTP on 127.0.0.1 (port 0)."""

from __future__ import annotations

import email.utils

import pytest

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
from radius_bridge.model import AuthMethod, PreviewAction, PushStatus

ALL_ENDPOINTS = (
    fic.LOGIN, fic.PREVIEW, fic.AUTH, fic.AUTH_STATUS, fic.AUTH_BATCH, fic.USER_LIST,
    fic.USER_LIST_V2, fic.USER_GET, fic.USER_CREATE, fic.USER_DELETE, fic.VERSION,
)

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
        ([{"authid": "y", "status": "rejected"}, {"authid": "x", "status": "waiting"}],
         PushStatus.WAITING),
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
    body = [{"authid": "a", "status": "authenticated"}, {"authid": "b", "status": "rejected"},
            {"status": "authenticated"}, "junk"]
    assert fic.finished_pushes_of(body) == {"a": PushStatus.APPROVED, "b": PushStatus.DENIED}
    assert fic.finished_pushes_of([]) == {}
    assert fic.finished_pushes_of({"items": [{"authid": "c", "status": "rejected"}]}) == {
        "c": PushStatus.DENIED}
    assert fic.finished_pushes_of("nonsense") is None


def test_preview_is_parsed_case_insensitively() -> None:
    """Preview action and method are matched without regard to case; unknown action is None."""
    preview = fic.preview_of({"action": "mfa", "auth_method": "ftm", "push_enabled": True})
    assert preview is not None
    assert (preview.action, preview.auth_method, preview.push_enabled) == (
        PreviewAction.MFA, AuthMethod.FTM, True)
    blocked = fic.preview_of({"action": "Block", "message": "disabled", "temp_token": "true"})
    assert blocked is not None and blocked.message == "disabled" and blocked.temp_token
    assert fic.preview_of({"action": "Maybe"}) is None
    assert fic.preview_of({"auth_method": "FTM"}) is None


def test_users_parse_from_object_or_list() -> None:
    """A user list may come as one object; id falls back to user_id; a nameless item fails."""
    one = {"id": "r1", "user_id": "u1", "username": "alice", "active": True, "fail_times": 0,
           "lockout_at": None}
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
        "https://fic.example:8686/api/v2/user?page=2")
    assert fic.next_page_url("/api/v2/user?page=3", here) == (
        "https://fic.example:9696/api/v2/user?page=3")
    assert fic.next_page_url("https://evil.example/api/v2/user?page=2", here) is None
    assert fic.next_page_url(None, here) is None
