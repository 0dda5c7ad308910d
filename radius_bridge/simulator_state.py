"""The simulated FIC's state and rules, without sockets: a request in, a ``SimResponse`` out.

``SimulatorState`` owns everything the fake FortiIdentity Cloud remembers (access tokens, users
and their lockout counters, pending pushes, sent SMS/e-mail codes, the outbox, rate-limit
window, injected faults, counters) behind one lock, and decides every answer from
``shared/fic-api.md`` §15 using an injected clock. ``SimulatorSettings`` carries each switch
that §15 marks configurable, so tests can cover both readings of an inferred behaviour. The
HTTP shell in ``simulator.py`` only parses framing, applies faults and writes bytes.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import heapq
import hmac
import json
import math
import random
import threading
import time
import unicodedata
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from radius_bridge.simulator_users import AUTH_METHODS, SimUser, totp_key

WAITING = "waiting"
AUTHENTICATED = "authenticated"
REJECTED = "rejected"

FAULT_KINDS = ("500", "502", "503", "hang", "reset", "429", "malformed_json", "slow")
DEFAULT_FAULT_DELAY = {"hang": 30.0, "slow": 1.0}
# The truncated body of a malformed_json fault names a final status on purpose: a client that
# searches the raw text for "authenticated" (as the PAM module does) would wrongly accept it.
MALFORMED_BODY = b'{"authid": "00000000-0000-4000-8000-000000000000", "status": "authenticated"'

TOTP_STEP = 30  # RFC 6238 §4: the default time step X = 30 seconds
PAGE_LIMITS = (20, 100, 200, 500, 1000)  # fic-api.md §10
FINISHED_AUTH_RETENTION = 3600.0  # finished auths are forgotten an hour after they finished
PRUNE_INTERVAL = 60.0
OUTBOX_LENGTH = 50
SERVER_VERSION = "2.5.0"
CUSTOMER_ID = "00000000-0000-4000-8000-00000000c0de"
_STATUS_CHOICES = frozenset(range(400, 500))


@dataclass(frozen=True, kw_only=True)
class SimulatorSettings:
    """Every switch of the simulator; defaults follow the most likely reading of fic-api.md.

    Switches for inferred behaviour ((I) in §15) let tests cover both readings:
    ``wrong_code_status``, ``lockout_status``, ``push_start_status``, ``auth_status_shape``,
    ``unknown_auth_status``, ``error_key``, ``duplicate_user_status``,
    ``code_send_returns_authid``, ``codes_single_use``, ``login_revokes_previous``,
    ``push_expiry``, ``batch_supported``, ``version_requires_token``.
    """

    # Credentials the simulator accepts at POST /login (demo values, never real ones).
    client_id: str = "demo-client"
    client_secret: str = field(default="demo-secret", repr=False)
    token_lifetime: float = 3600.0  # expires_in of issued tokens, seconds
    login_revokes_previous: bool = False  # (I) a new login invalidates older tokens
    latency: float = 0.0  # seconds added to every API request (not to /_sim/)
    wrong_code_status: int = 401  # (I) status of a wrong, reused or expired code
    lockout_status: int = 403  # (I) status while the user is locked out
    push_start_status: int = 200  # (I) 2xx of a started push
    auth_status_shape: str = "object"  # (I) GET /auth/{id}: "object" or one-element "list"
    unknown_auth_status: int = 400  # (I) unknown or expired auth ID: 400 or 404
    error_key: str = "error"  # (I) key of the message in error bodies
    duplicate_user_status: int = 409  # (I) POST /user with an existing username
    code_send_returns_authid: bool = True  # (I) SMS/e-mail send answers {"authid"} or {}
    code_length: int = 6  # digits of SMS/e-mail codes
    code_expiry: float = 300.0  # seconds an SMS/e-mail code stays valid
    codes_single_use: bool = True  # (I) a code is refused a second time in its 30 s step
    lockout_threshold: int = 7  # consecutive failures that lock the user
    lockout_period: float = 60.0  # seconds a lockout lasts
    rate_limit: tuple[int, float] | None = None  # (count, window seconds) -> 429 beyond
    rate_limit_retry_after: bool = False  # send Retry-After on rate-limit 429s
    push_expiry: float | None = None  # (I) seconds after which an auth ID is unknown
    push_disabled_realms: frozenset[str] = frozenset()  # realms with push turned off
    delete_conflict: bool = False  # DELETE /user/{id} answers 409 (pending task)
    batch_supported: bool = True  # False: GET /auth (batch) answers 404
    sms_credit: int | None = None  # SMS messages left (None: unlimited; 0: 402)
    account_active: bool = True  # False: preview and auth answer 402
    version_requires_token: bool = False  # (I) GET /version needs a bearer token
    new_users_activated: bool = True  # users made by POST /user can authenticate at once
    seed: int | None = None  # seeds auth IDs, tokens and codes for reproducible runs
    verbose: bool = False  # print one line per request (route template, status, time)

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "wrong_code_status",
            "lockout_status",
            "unknown_auth_status",
            "duplicate_user_status",
        ):
            if getattr(self, name) not in _STATUS_CHOICES:
                problems.append(f"{name} must be a 4xx status")
        if not 200 <= self.push_start_status <= 299:
            problems.append("push_start_status must be a 2xx status")
        if self.auth_status_shape not in ("object", "list"):
            problems.append("auth_status_shape must be 'object' or 'list'")
        if self.token_lifetime <= 0 or self.code_expiry <= 0 or self.lockout_period <= 0:
            problems.append("token_lifetime, code_expiry and lockout_period must be > 0")
        if self.latency < 0:
            problems.append("latency must be >= 0")
        if self.lockout_threshold < 1 or not 4 <= self.code_length <= 10:
            problems.append("lockout_threshold must be >= 1 and code_length within 4..10")
        if self.rate_limit is not None and (self.rate_limit[0] < 1 or self.rate_limit[1] <= 0):
            problems.append("rate_limit must be (count >= 1, window_seconds > 0)")
        if self.push_expiry is not None and self.push_expiry <= 0:
            problems.append("push_expiry must be > 0 or None")
        if self.sms_credit is not None and self.sms_credit < 0:
            problems.append("sms_credit must be >= 0 or None")
        if not self.error_key or not self.client_id or not self.client_secret:
            problems.append("error_key, client_id and client_secret must not be empty")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class SimResponse:
    """An answer to write: ``body`` is a JSON value (``None`` means no body, as for 204)."""

    status: int
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Fault:
    """An injected failure for requests matching ``endpoint`` (see ``endpoint_matches``)."""

    kind: str
    endpoint: str = "*"
    count: int | None = None
    retry_after: float | None = None
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if self.count is not None and self.count < 1:
            raise ValueError("fault count must be >= 1 or None")
        for name in ("retry_after", "delay"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"fault {name} must be a number >= 0")

    @property
    def seconds(self) -> float:
        """How long a ``hang`` or ``slow`` fault waits before answering."""
        if self.delay is not None:
            return self.delay
        return DEFAULT_FAULT_DELAY.get(self.kind, 0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "endpoint": self.endpoint,
            "count": self.count,
            "retry_after": self.retry_after,
            "delay": self.delay,
        }


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: ``key`` is concrete (``GET /auth/3f..``), ``template`` counted."""

    key: str
    template: str
    handler: str | None
    param: str | None
    allowed: tuple[str, ...]


def _route_table() -> list[tuple[str, bool, str, dict[str, str]]]:
    # (path prefix or full path, takes a trailing {param}, template, method -> handler)
    return [
        ("/version", False, "/version", {"GET": "version"}),
        ("/api/v1/login", False, "/login", {"POST": "login"}),
        ("/api/v1/auth/preview", False, "/auth/preview", {"POST": "preview"}),
        ("/api/v1/auth", False, "/auth", {"POST": "auth", "GET": "auth_batch"}),
        ("/api/v1/auth", True, "/auth/{id}", {"GET": "auth_status"}),
        ("/api/v1/user", False, "/user", {"GET": "user_list", "POST": "user_create"}),
        (
            "/api/v1/user",
            True,
            "/user/{id}",
            {"GET": "user_get", "PUT": "user_update", "DELETE": "user_delete"},
        ),
        ("/api/v2/user", False, "/v2/user", {"GET": "user_page"}),
        ("/api/v1/realm", False, "/realm", {"GET": "realm_list"}),
        ("/api/v1/realm", True, "/realm/{id}", {"GET": "realm_get"}),
        ("/api/v1/token/temp", False, "/token/temp", {"POST": "temp_create"}),
        ("/api/v1/token/temp", True, "/token/temp/{user_id}", {"DELETE": "temp_delete"}),
    ]


_EXACT: dict[str, tuple[str, dict[str, str]]] = {}
_WITH_PARAM: dict[str, tuple[str, dict[str, str]]] = {}
for _path, _has_param, _template, _methods in _route_table():
    (_WITH_PARAM if _has_param else _EXACT)[_path] = (_template, _methods)


def relative_path(path: str) -> str:
    """``/api/v1/auth/x`` -> ``/auth/x``; ``/api/v2/user`` -> ``/v2/user``; others unchanged."""
    if path.startswith("/api/v1/"):
        return path[7:]
    if path.startswith("/api/"):
        return path[4:]
    return path


def route(method: str, path: str) -> Route:
    """Find the handler for ``method path`` (path without query, trailing slash tolerated)."""
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    key = f"{method} {relative_path(path)}"
    entry = _EXACT.get(path)
    param = None
    if entry is None:
        parent, _, last = path.rpartition("/")
        entry = _WITH_PARAM.get(parent)
        if entry is None or not last:
            return Route(key, f"{method} <unknown>", None, None, ())
        param = unquote(last)
    template, methods = entry
    return Route(key, f"{method} {template}", methods.get(method), param, tuple(methods))


def endpoint_matches(pattern: str, route_: Route) -> bool:
    """Does a fault pattern (``"*"``, ``"POST /auth"``, ``"GET /auth/*"``, ``"/login"``) match?

    A pattern without a method matches every method; ``/api/v1`` prefixes are optional.
    The concrete path and the template (``GET /auth/{id}``) are both tried.
    """
    if pattern.strip() == "*":
        return True
    method, _, path = pattern.strip().rpartition(" ")
    path = relative_path(path)
    for candidate in (route_.key, route_.template):
        got_method, _, got_path = candidate.partition(" ")
        if method and not fnmatchcase(got_method, method.upper()):
            continue
        if fnmatchcase(got_path, path):
            return True
    return False


def totp_code(secret: str, at: float, *, digits: int = 6) -> str:
    """The RFC 6238 code (HMAC-SHA1, 30 s step) of a base32 ``secret`` at time ``at``."""
    return _hotp(totp_key(secret), int(at // TOTP_STEP), digits)


def _hotp(key: bytes, counter: int, digits: int) -> str:
    # RFC 4226 §5.3: dynamic truncation of HMAC-SHA-1 over the 8-byte counter.
    mac = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def fold_name(name: str, *, exact: bool = False) -> str:
    """The username key FIC compares: case- and accent-insensitive unless ``exact``."""
    if exact:
        return name
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _timestamp(at: float | None) -> str | None:
    # fic-api.md §7: ISO-like, no zone, e.g. 2023-03-10T23:39:15; null when unset.
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))


def _flag(value: object) -> bool | None:
    """A boolean from JSON or from a query string; ``None`` when absent or unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no"):
        return False
    return None


class _BadRequest(Exception):
    """Raised inside a handler to answer ``status`` with ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class _TempToken:
    sn: str
    method: str
    expires_at: float | None


@dataclass(slots=True)
class _UserRecord:
    spec: SimUser
    id: str
    user_id: str
    created_at: float
    updated_at: float
    notification_method: str = "Email"
    user_data: int = 0
    fail_times: int = 0
    lockout_at: float | None = None
    bypass_at: float | None = None
    fixed_code_step: int | None = None
    totp_steps_used: set[int] = field(default_factory=set)
    sent_code: str | None = None
    sent_code_expires: float = 0.0
    sent_auth_id: str | None = None
    temp_token: _TempToken | None = None


@dataclass(slots=True)
class _Auth:
    authid: str
    username: str
    kind: str  # "push" or "code"
    created_at: float
    status: str = WAITING
    finished_at: float | None = None


@dataclass(slots=True)
class _Counters:
    logins: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    auth_posts: Counter[str] = field(default_factory=Counter)
    pushes: Counter[str] = field(default_factory=Counter)
    code_checks: Counter[str] = field(default_factory=Counter)
    codes_sent: Counter[str] = field(default_factory=Counter)
    status_polls: int = 0
    batch_polls: int = 0
    tcp_connections: int = 0
    in_flight: int = 0
    in_flight_max: int = 0
    faults_applied: int = 0
    rate_limited: int = 0

    def as_json(self, *, per_user: bool = True) -> dict[str, Any]:
        by_user = {
            "auth_posts": self.auth_posts,
            "pushes": self.pushes,
            "code_checks": self.code_checks,
            "codes_sent": self.codes_sent,
        }
        return {
            "logins": self.logins,
            "requests": dict(self.requests),
            **({name: dict(counter) for name, counter in by_user.items()} if per_user else {}),
            "totals": {name: sum(counter.values()) for name, counter in by_user.items()},
            "status_polls": self.status_polls,
            "batch_polls": self.batch_polls,
            "tcp_connections": self.tcp_connections,
            "in_flight": self.in_flight,
            "in_flight_max": self.in_flight_max,
            "faults_applied": self.faults_applied,
            "rate_limited": self.rate_limited,
        }


@dataclass(slots=True)
class _FaultSlot:
    fault: Fault
    remaining: int | None


class SimulatorState:
    """Everything the fake FIC remembers, guarded by one lock; answers requests by the rules."""

    def __init__(
        self,
        *,
        users: Iterable[SimUser] = (),
        settings: SimulatorSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._settings = settings if settings is not None else SimulatorSettings()
        self._rng: random.Random = (
            random.Random(self._settings.seed)  # noqa: S311 - a test fake, seeded on purpose
            if self._settings.seed is not None
            else random.SystemRandom()
        )
        self._tokens: dict[str, float] = {}
        self._users: dict[str, _UserRecord] = {}
        self._by_name: dict[str, list[_UserRecord]] = {}
        self._realms: dict[str, str] = {}
        self._auths: dict[str, _Auth] = {}
        self._schedule: list[tuple[float, int, str, str]] = []
        self._schedule_seq = 0
        self._finished: deque[str] = deque()
        self._next_prune = 0.0
        self._outbox: dict[str, deque[str]] = {}
        self._sms_credit = self._settings.sms_credit
        self._window: deque[float] = deque()
        self._faults: list[_FaultSlot] = []
        self._counters = _Counters()
        self._ensure_realm("default")
        now = clock()
        for user in users:
            self._put_user(user, now)

    # ----------------------------------------------------------------- control surface

    @property
    def settings(self) -> SimulatorSettings:
        return self._settings

    def configure(self, **changes: Any) -> SimulatorSettings:
        """Replace some settings while running (``sms_credit`` restarts the credit count)."""
        with self._lock:
            self._settings = replace(self._settings, **changes)
            if "sms_credit" in changes:
                self._sms_credit = self._settings.sms_credit
            return self._settings

    def add_user(self, user: SimUser) -> None:
        """Add a user, or replace the one with the same username and realm (state reset)."""
        with self._lock:
            self._put_user(user, self._clock())

    def outbox(self, username: str) -> list[str]:
        """Codes "sent" to ``username`` by SMS or e-mail, oldest first."""
        with self._lock:
            record = self._find_user(username)
            name = record.spec.username if record is not None else username
            return list(self._outbox.get(name, ()))

    def expire_tokens(self) -> None:
        """Invalidate every access token issued so far."""
        with self._lock:
            self._tokens.clear()

    def decide(self, auth_id: str, *, approve: bool) -> bool:
        """Answer a waiting auth by hand: False if it had finished; KeyError if unknown."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            auth = self._live_auth(auth_id, now)
            if auth is None:
                raise KeyError(auth_id)
            if auth.status != WAITING:
                return False
            self._finish(auth, AUTHENTICATED if approve else REJECTED, now)
            return True

    def auth_status(self, auth_id: str) -> str | None:
        """The current status of an auth, or ``None`` when the ID is unknown or expired."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            auth = self._live_auth(auth_id, now)
            return auth.status if auth is not None else None

    def auths(self, username: str | None = None) -> list[dict[str, Any]]:
        """Known auths (oldest first), optionally for one user: authid, username, kind, status."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            wanted = fold_name(username) if username is not None else None
            return [
                {"authid": a.authid, "username": a.username, "kind": a.kind, "status": a.status}
                for a in self._auths.values()
                if self._live_auth(a.authid, now) is not None
                and (wanted is None or fold_name(a.username) == wanted)
            ]

    def user_state(self, username: str) -> dict[str, Any] | None:
        """The FIC user object of ``username`` (as GET /user/{id} shows it), or ``None``."""
        with self._lock:
            record = self._find_user(username)
            if record is None:
                return None
            return self._user_json(record, self._clock())

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(_FaultSlot(fault, fault.count))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(slot.fault.as_json(), remaining=slot.remaining) for slot in self._faults]

    def take_fault(self, route_: Route) -> Fault | None:
        """The first active fault matching this request, consuming one of its uses."""
        with self._lock:
            if not self._faults:
                return None
            for index, slot in enumerate(self._faults):
                if endpoint_matches(slot.fault.endpoint, route_):
                    if slot.remaining is not None:
                        slot.remaining -= 1
                        if slot.remaining <= 0:
                            del self._faults[index]
                    self._counters.faults_applied += 1
                    return slot.fault
            return None

    def counters(self, *, per_user: bool = True) -> dict[str, Any]:
        with self._lock:
            return self._counters.as_json(per_user=per_user)

    def reset_counters(self) -> None:
        """Zero every counter; the connection and request gauges keep their current value."""
        with self._lock:
            in_flight = self._counters.in_flight
            self._counters = _Counters(in_flight=in_flight, in_flight_max=in_flight)

    def connection_opened(self) -> None:
        with self._lock:
            self._counters.tcp_connections += 1

    def request_started(self, route_: Route) -> None:
        with self._lock:
            counters = self._counters
            counters.requests[route_.template] += 1
            counters.in_flight += 1
            counters.in_flight_max = max(counters.in_flight_max, counters.in_flight)

    def request_finished(self) -> None:
        with self._lock:
            self._counters.in_flight -= 1

    # ----------------------------------------------------------------- requests

    def handle(
        self,
        route_: Route,
        *,
        query: str,
        authorization: str | None,
        body: bytes,
        origin: str,
    ) -> SimResponse:
        """Answer one API request (``route_`` from ``route``; ``origin`` like http://h:p)."""
        args, parse_error = _parse_args(query, body)
        with self._lock:
            now = self._clock()
            settings = self._settings
            self._advance(now)
            limited = self._rate_limited(now)
            if limited is not None:
                return limited
            if route_.handler is None:
                if not route_.allowed:
                    return self._error(404, "Not found")
                allow = ", ".join(route_.allowed)
                return self._error(405, "Method not allowed", headers=(("Allow", allow),))
            needs_token = route_.handler != "login" and (
                route_.handler != "version" or settings.version_requires_token
            )
            if needs_token:
                denial = self._check_bearer(authorization, now)
                if denial is not None:
                    return denial
            if parse_error is not None:
                return self._error(400, parse_error)
            handler = getattr(self, f"_h_{route_.handler}")
            try:
                response: SimResponse = handler(args, route_.param, now, origin)
            except _BadRequest as exc:
                return self._error(exc.status, exc.message)
            return response

    def _error(
        self, status: int, message: str, *, headers: tuple[tuple[str, str], ...] = ()
    ) -> SimResponse:
        return SimResponse(status, {self._settings.error_key: message}, headers)

    def error_response(self, status: int, message: str) -> SimResponse:
        """An error body in the configured shape (used by the HTTP shell for faults)."""
        with self._lock:
            return self._error(status, message)

    def _rate_limited(self, now: float) -> SimResponse | None:
        # fic-api.md §11: trial accounts get 60 requests per 5 minutes, then 429.
        limit = self._settings.rate_limit
        if limit is None:
            return None
        count, window = limit
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        if len(self._window) < count:
            self._window.append(now)
            return None
        self._counters.rate_limited += 1
        wait = max(1, math.ceil(self._window[0] + window - now))
        minutes = max(1, math.ceil(window / 60))
        headers = (("Retry-After", str(wait)),) if self._settings.rate_limit_retry_after else ()
        return self._error(
            429,
            f"Too many requests: limit is {count} per {window:g} seconds, "
            f"please retry after {minutes} minutes",
            headers=headers,
        )

    def _check_bearer(self, authorization: str | None, now: float) -> SimResponse | None:
        if authorization is None:
            return self._error(401, "Authorization header is missing")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._error(401, "Authorization header is not a Bearer token")
        expires = self._tokens.get(token.strip())
        if expires is None or now >= expires:
            return self._error(401, "Access token is invalid or has expired")
        return None

    # ----------------------------------------------------------------- login, version

    def _h_version(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        return SimResponse(200, {"FIC server": SERVER_VERSION})

    def _h_login(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        settings = self._settings
        client_id = args.get("client_id")
        secret = args.get("client_secret")
        if not isinstance(client_id, str) or not client_id:
            raise _BadRequest(400, "client_id is required")
        if (
            not isinstance(secret, str)
            or not secret
            or len(secret) > 256
            or not secret.isprintable()
            or any(ch.isspace() for ch in secret)
        ):
            raise _BadRequest(400, "client_secret is malformed")
        if not hmac.compare_digest(client_id.encode(), settings.client_id.encode()):
            raise _BadRequest(404, "Client does not exist")
        if not hmac.compare_digest(secret.encode(), settings.client_secret.encode()):
            raise _BadRequest(401, "Invalid client credentials")
        self._counters.logins += 1
        if settings.login_revokes_previous:
            self._tokens.clear()
        else:
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
        token = f"{self._rng.getrandbits(256):064x}"
        self._tokens[token] = now + settings.token_lifetime
        lifetime = settings.token_lifetime
        expires_in = int(lifetime) if float(lifetime).is_integer() else lifetime
        return SimResponse(201, {"access_token": token, "expires_in": expires_in})

    # ----------------------------------------------------------------- preview and auth

    def _user_for_auth(self, args: dict[str, Any]) -> _UserRecord:
        username = args.get("username")
        if not isinstance(username, str) or not username:
            raise _BadRequest(400, "username is required")
        if len(username) > 80:
            raise _BadRequest(400, "username must be at most 80 characters")
        if not self._settings.account_active:
            raise _BadRequest(402, "The account is disabled")
        realm = args.get("realm")
        exact = _flag(args.get("case_accent_sensitive")) is True
        record = self._find_user(
            username,
            realm=realm if isinstance(realm, str) else None,
            exact=exact,
            realm_id=args.get("realm_id"),
        )
        if record is None:
            raise _BadRequest(400, f"User {username} does not exist")
        if not record.spec.activated:
            raise _BadRequest(400, "The user has no token or it was never activated")
        return record

    def _h_preview(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        record = self._user_for_auth(args)
        spec = record.spec
        temp = self._temp_token(record, now)
        if spec.auth_method == "SMS" and self._sms_credit == 0:
            raise _BadRequest(402, "Not enough SMS credit")
        body: dict[str, Any] = {"auth_method": spec.auth_method, "temp_token": temp is not None}
        if not spec.active:
            body.update(action="Block", message="The user is disabled")
        elif spec.bypass:
            body["action"] = "Bypass"
        else:
            body["action"] = "MFA"
            if spec.auth_method == "FTM":
                body["push_enabled"] = self._push_allowed(record)
        return SimResponse(200, body)

    def _push_allowed(self, record: _UserRecord) -> bool:
        spec = record.spec
        return spec.push_enabled and spec.realm not in self._settings.push_disabled_realms

    def _locked_for(self, record: _UserRecord, now: float) -> float | None:
        """Seconds of lockout left, clearing an expired lockout (and its failure count)."""
        if record.lockout_at is None:
            return None
        left = record.lockout_at + self._settings.lockout_period - now
        if left > 0:
            return left
        record.lockout_at = None
        record.fail_times = 0
        return None

    def _h_auth(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        username = args.get("username")
        if isinstance(username, str) and username:
            known = self._find_user(username)
            self._counters.auth_posts[known.spec.username if known else username] += 1
        record = self._user_for_auth(args)
        if not record.spec.active:
            raise _BadRequest(403, "The user is disabled")
        left = self._locked_for(record, now)
        if left is not None:
            minutes = max(1, math.ceil(left / 60))
            raise _BadRequest(
                self._settings.lockout_status,
                f"The user is locked, try again in {minutes} minutes",
            )
        method = args.get("auth_method")
        if method is not None and method not in AUTH_METHODS:
            raise _BadRequest(400, f"auth_method must be one of {', '.join(AUTH_METHODS)}")
        if "token" in args:
            return self._verify(record, args["token"], now)
        if record.spec.bypass:
            # (I) A bypassed user needs no second factor: the auth is approved at once.
            auth = self._new_auth(record, "push", now)
            self._finish(auth, AUTHENTICATED, now)
            return SimResponse(self._settings.push_start_status, {"authid": auth.authid})
        temp = self._temp_token(record, now)
        chosen = method or (temp.method if temp is not None else record.spec.auth_method)
        if chosen == "FTM":
            return self._start_push(record, now)
        if chosen == "FTK":
            raise _BadRequest(400, "A hardware token user must send a token code")
        return self._send_code(record, chosen, now)

    def _start_push(self, record: _UserRecord, now: float) -> SimResponse:
        spec = record.spec
        if spec.auth_method != "FTM":
            raise _BadRequest(400, "The user has no FortiToken Mobile; push is not possible")
        if not self._push_allowed(record):
            raise _BadRequest(400, "Push notification is not enabled for this user")
        auth = self._new_auth(record, "push", now)
        self._counters.pushes[spec.username] += 1
        if spec.push != "ignore":
            outcome = AUTHENTICATED if spec.push == "approve" else REJECTED
            self._schedule_seq += 1
            heapq.heappush(
                self._schedule, (now + spec.push_delay, self._schedule_seq, auth.authid, outcome)
            )
            if spec.push_delay <= 0:
                self._advance(now)
        return SimResponse(self._settings.push_start_status, {"authid": auth.authid})

    def _send_code(self, record: _UserRecord, method: str, now: float) -> SimResponse:
        spec = record.spec
        if method == "SMS":
            if not spec.mobile_number:
                raise _BadRequest(400, "The user has no mobile number for SMS")
            if self._sms_credit is not None:
                if self._sms_credit <= 0:
                    raise _BadRequest(402, "Not enough SMS credit")
                self._sms_credit -= 1
        length = self._settings.code_length
        code = "".join(self._rng.choice("0123456789") for _ in range(length))
        # (I) A new send replaces the previous code, which stops being accepted.
        record.sent_code = code
        record.sent_code_expires = now + self._settings.code_expiry
        self._outbox.setdefault(spec.username, deque(maxlen=OUTBOX_LENGTH)).append(code)
        self._counters.codes_sent[spec.username] += 1
        if not self._settings.code_send_returns_authid:
            record.sent_auth_id = None
            return SimResponse(200, {})
        auth = self._new_auth(record, "code", now)
        record.sent_auth_id = auth.authid
        return SimResponse(200, {"authid": auth.authid})

    def _verify(self, record: _UserRecord, token: object, now: float) -> SimResponse:
        spec = record.spec
        self._counters.code_checks[spec.username] += 1
        # fic-api.md §5.1: the token is a string of digits; tolerate a JSON number (§15.10).
        if isinstance(token, int) and not isinstance(token, bool):
            token = str(token)
        if not isinstance(token, str) or not token:
            raise _BadRequest(400, "token must be a non-empty string")
        if spec.bypass:
            return SimResponse(200, {})
        failure = self._check_code(record, token, now)
        if failure is None:
            record.fail_times = 0
            return SimResponse(200, {})
        record.fail_times += 1
        if record.fail_times >= self._settings.lockout_threshold:
            record.lockout_at = now
        raise _BadRequest(self._settings.wrong_code_status, failure)

    def _check_code(self, record: _UserRecord, token: str, now: float) -> str | None:
        """``None`` when ``token`` is a valid unused code; otherwise why it is not."""
        spec = record.spec
        encoded = token.encode()
        single_use = self._settings.codes_single_use
        if record.sent_code is not None and hmac.compare_digest(encoded, record.sent_code.encode()):
            if now > record.sent_code_expires:
                return "The token has expired"
            record.sent_code = None
            if record.sent_auth_id is not None:
                auth = self._auths.get(record.sent_auth_id)
                if auth is not None and auth.status == WAITING:
                    self._finish(auth, AUTHENTICATED, now)
            return None
        step = int(now // TOTP_STEP)
        if spec.code is not None and hmac.compare_digest(encoded, spec.code.encode()):
            # (I) fic-api.md §15.11: a code is not accepted twice within its time step.
            if single_use and record.fixed_code_step == step:
                return "The token has already been used"
            record.fixed_code_step = step
            return None
        if spec.totp_secret is not None:
            key = totp_key(spec.totp_secret)
            # RFC 6238 §5.2: accept one step of clock drift either way.
            for candidate in (step, step - 1, step + 1):
                if hmac.compare_digest(encoded, _hotp(key, candidate, len(token)).encode()):
                    if single_use and candidate in record.totp_steps_used:
                        return "The token has already been used"
                    record.totp_steps_used = {s for s in record.totp_steps_used if s >= step - 2}
                    record.totp_steps_used.add(candidate)
                    return None
        return "Invalid token"

    # ----------------------------------------------------------------- push results

    def _new_auth(self, record: _UserRecord, kind: str, now: float) -> _Auth:
        authid = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        auth = _Auth(authid, record.spec.username, kind, now)
        self._auths[authid] = auth
        return auth

    def _finish(self, auth: _Auth, status: str, now: float) -> None:
        auth.status = status
        auth.finished_at = now
        self._finished.append(auth.authid)

    def _advance(self, now: float) -> None:
        """Apply every scripted push answer that is due, and forget old auths now and then."""
        schedule = self._schedule
        while schedule and schedule[0][0] <= now:
            _, _, authid, outcome = heapq.heappop(schedule)
            auth = self._auths.get(authid)
            if auth is not None and auth.status == WAITING:
                self._finish(auth, outcome, now)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL
            self._prune(now)

    def _prune(self, now: float) -> None:
        expiry = self._settings.push_expiry
        forget = [
            authid
            for authid, auth in self._auths.items()
            if (auth.finished_at is not None and now - auth.finished_at > FINISHED_AUTH_RETENTION)
            or (expiry is not None and now - auth.created_at > expiry)
        ]
        for authid in forget:
            del self._auths[authid]
        while self._finished and self._finished[0] not in self._auths:
            self._finished.popleft()

    def _live_auth(self, authid: str, now: float) -> _Auth | None:
        auth = self._auths.get(authid)
        if auth is None:
            return None
        expiry = self._settings.push_expiry
        # (I) fic-api.md §15.14: optionally an unanswered auth ID stops being found.
        if expiry is not None and now - auth.created_at > expiry:
            return None
        return auth

    def _auth_json(self, auth: _Auth) -> Any:
        body = {"authid": auth.authid, "status": auth.status}
        return [body] if self._settings.auth_status_shape == "list" else body

    def _h_auth_status(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        self._counters.status_polls += 1
        auth = self._live_auth(param or "", now)
        if auth is None:
            raise _BadRequest(self._settings.unknown_auth_status, "Unknown auth ID")
        return SimResponse(200, self._auth_json(auth))

    def _h_auth_batch(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        if not self._settings.batch_supported:
            raise _BadRequest(404, "Not found")
        requested = args.get("id")
        if isinstance(requested, str) and requested:
            return self._h_auth_status(args, requested, now, origin)
        self._counters.batch_polls += 1
        chunk = args.get("chunksize", 500)
        try:
            chunksize = int(chunk)
        except (TypeError, ValueError):
            chunksize = 0
        if not 100 <= chunksize <= 1000:
            raise _BadRequest(400, "chunksize must be between 100 and 1000")
        # fic-api.md §6: the batch lists only finished auths, newest first here.
        found: list[dict[str, str]] = []
        for authid in reversed(self._finished):
            auth = self._live_auth(authid, now)
            if auth is not None:
                found.append({"authid": auth.authid, "status": auth.status})
                if len(found) >= chunksize:
                    break
        return SimResponse(200, found)

    # ----------------------------------------------------------------- users

    def _ensure_realm(self, name: str) -> str:
        realm_id = self._realms.get(name)
        if realm_id is None:
            realm_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fic-simulator/realm/{name}"))
            self._realms[name] = realm_id
        return realm_id

    def _put_user(self, user: SimUser, now: float) -> _UserRecord:
        self._ensure_realm(user.realm)
        old = self._find_user(user.username, realm=user.realm)
        if old is not None:
            self._drop_user(old)
        ident = uuid.uuid5(uuid.NAMESPACE_URL, f"fic-simulator/{user.realm}/{user.username}")
        record = _UserRecord(
            spec=user,
            id=str(ident),
            user_id=str(uuid.uuid5(ident, "user")),
            created_at=now,
            updated_at=now,
            notification_method="SMS" if user.auth_method == "SMS" else "Email",
            bypass_at=now if user.bypass else None,
        )
        self._index_user(record)
        return record

    def _index_user(self, record: _UserRecord) -> None:
        self._users[record.id] = record
        self._by_name.setdefault(fold_name(record.spec.username), []).append(record)

    def _drop_user(self, record: _UserRecord) -> None:
        del self._users[record.id]
        same = self._by_name.get(fold_name(record.spec.username), [])
        same[:] = [r for r in same if r is not record]

    def _find_user(
        self,
        username: str,
        *,
        realm: str | None = None,
        exact: bool = False,
        realm_id: object = None,
    ) -> _UserRecord | None:
        for record in self._by_name.get(fold_name(username), ()):
            if exact and record.spec.username != username:
                continue
            if realm is not None and fold_name(record.spec.realm) != fold_name(realm):
                continue
            if realm_id is not None and self._realms[record.spec.realm] != realm_id:
                continue
            return record
        return None

    def _user_by_path(self, param: str | None) -> _UserRecord:
        # fic-api.md §16.9: paths take the userref ``id``; ``user_id`` is accepted too.
        record = self._users.get(param or "")
        if record is None:
            record = next((r for r in self._users.values() if r.user_id == param), None)
        if record is None:
            raise _BadRequest(404, "User not found")
        return record

    def _temp_token(self, record: _UserRecord, now: float) -> _TempToken | None:
        temp = record.temp_token
        if temp is not None and temp.expires_at is not None and now >= temp.expires_at:
            record.temp_token = None
            return None
        return temp

    def _user_json(self, record: _UserRecord, now: float, *, brief: bool = False) -> dict[str, Any]:
        spec = record.spec
        self._locked_for(record, now)
        if brief:
            return {
                "mobile_number": spec.mobile_number,
                "username": spec.username,
                "email": spec.email,
                "vdom": None,
                "realm": spec.realm,
                "id": record.id,
                "user_data": record.user_data,
            }
        return {
            "id": record.id,
            "user_id": record.user_id,
            "customer_id": CUSTOMER_ID,
            "client_id": self._settings.client_id,
            "realm_id": self._realms[spec.realm],
            "username": spec.username,
            "email": spec.email,
            "mobile_number": spec.mobile_number,
            "auth_method": spec.auth_method,
            "notification_method": record.notification_method,
            "active": spec.active,
            "created_at": _timestamp(record.created_at),
            "updated_at": _timestamp(record.updated_at),
            "bypass_at": _timestamp(record.bypass_at),
            "lockout_at": _timestamp(record.lockout_at),
            "fail_times": record.fail_times,
            "temp_token": self._temp_token(record, now) is not None,
            "user_data": record.user_data,
        }

    def _filtered_users(self, args: Mapping[str, Any]) -> list[_UserRecord]:
        exact = _flag(args.get("case_accent_sensitive")) is True
        records: Iterable[_UserRecord] = self._users.values()
        username = args.get("username")
        if isinstance(username, str):
            records = [
                r
                for r in self._by_name.get(fold_name(username), ())
                if not exact or r.spec.username == username
            ]
        text_filters = {
            k: args[k]
            for k in (
                "id",
                "realm_id",
                "email",
                "mobile_number",
                "auth_method",
                "notification_method",
            )
            if k in args
        }
        active = _flag(args.get("active"))
        selected = []
        for record in records:
            values = {
                "id": record.id,
                "realm_id": self._realms[record.spec.realm],
                "email": record.spec.email,
                "mobile_number": record.spec.mobile_number,
                "auth_method": record.spec.auth_method,
                "notification_method": record.notification_method,
            }
            if any(
                (str(values[k]).casefold() if k == "email" else values[k])
                != (str(v).casefold() if k == "email" else v)
                for k, v in text_filters.items()
            ):
                continue
            if active is not None and record.spec.active != active:
                continue
            if "user_data" in args and str(record.user_data) != str(args["user_data"]):
                continue
            selected.append(record)
        selected.sort(key=lambda r: (r.created_at, r.spec.username))
        return selected

    def _h_user_list(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        brief = _flag(args.get("brief")) is True
        return SimResponse(
            200, [self._user_json(r, now, brief=brief) for r in self._filtered_users(args)]
        )

    def _h_user_page(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        # fic-api.md §10: limit in (20, 100, 200, 500, 1000), opaque page cursor, Link header.
        try:
            limit = int(args.get("limit", 500))
        except (TypeError, ValueError):
            limit = 0
        if limit not in PAGE_LIMITS:
            raise _BadRequest(400, f"limit must be one of {', '.join(map(str, PAGE_LIMITS))}")
        offset = _decode_cursor(args.get("page"))
        records = self._filtered_users(args)
        brief = _flag(args.get("brief")) is True
        page = [self._user_json(r, now, brief=brief) for r in records[offset : offset + limit]]
        base = {k: str(v) for k, v in args.items() if k != "page"}
        base["limit"] = str(limit)
        links = []
        if offset + limit < len(records):
            query = urlencode({**base, "page": _encode_cursor(offset + limit)})
            links.append(f'<{origin}/api/v2/user?{query}>; rel="next"')
        if offset > 0:
            query = urlencode({**base, "page": _encode_cursor(max(0, offset - limit))})
            links.append(f'<{origin}/api/v2/user?{query}>; rel="previous"')
        headers = (("Link", ", ".join(links)),) if links else ()
        return SimResponse(200, page, headers)

    def _h_user_get(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        record = self._user_by_path(param)
        brief = _flag(args.get("brief")) is True
        return SimResponse(200, self._user_json(record, now, brief=brief))

    def _h_user_create(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        for key in ("username", "email"):
            if not isinstance(args.get(key), str) or not args[key]:
                raise _BadRequest(400, f"{key} is required")
        method = args.get("auth_method", "FTM")
        notify = args.get("notification_method", "SMS" if method == "SMS" else "Email")
        if notify not in ("Email", "SMS"):
            raise _BadRequest(400, "notification_method must be Email or SMS")
        try:
            spec = SimUser(
                username=args["username"],
                email=args["email"],
                mobile_number=args.get("mobile_number"),
                auth_method=method,
                activated=self._settings.new_users_activated,
            )
        except ValueError as exc:
            raise _BadRequest(400, str(exc).removeprefix("SimUser.")) from None
        if self._find_user(spec.username, realm=spec.realm) is not None:
            raise _BadRequest(
                self._settings.duplicate_user_status, f"User {spec.username} already exists"
            )
        record = self._put_user(spec, now)
        record.notification_method = notify
        user_data = args.get("user_data", 0)
        record.user_data = user_data if user_data in (0, 1) else 0
        return SimResponse(
            201, self._user_json(record, now, brief=_flag(args.get("brief")) is True)
        )

    def _h_user_update(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        record = self._user_by_path(param)
        changes: dict[str, Any] = {}
        for key in ("username", "email", "mobile_number", "auth_method", "active", "bypass"):
            if key in args:
                changes[key] = args[key]
        flags = {}
        for key in ("lockout", "change_token"):
            if key in args:
                if not isinstance(args[key], bool):
                    raise _BadRequest(400, f"{key} must be true or false")
                flags[key] = args[key]
        notify = args.get("notification_method", record.notification_method)
        if notify not in ("Email", "SMS"):
            raise _BadRequest(400, "notification_method must be Email or SMS")
        try:
            spec = replace(record.spec, **changes)
        except ValueError as exc:
            raise _BadRequest(400, str(exc).removeprefix("SimUser.")) from None
        renamed = fold_name(spec.username) != fold_name(record.spec.username)
        if renamed and self._find_user(spec.username, realm=spec.realm) is not None:
            raise _BadRequest(
                self._settings.duplicate_user_status, f"User {spec.username} already exists"
            )
        if flags.get("change_token") and spec.totp_secret is not None:
            fresh = bytes(self._rng.getrandbits(8) for _ in range(20))
            spec = replace(spec, totp_secret=base64.b32encode(fresh).decode())
            record.totp_steps_used.clear()
        self._drop_user(record)
        record.spec = spec
        self._index_user(record)
        record.notification_method = notify
        record.updated_at = now
        if "bypass" in changes:
            record.bypass_at = now if spec.bypass else None
        if "lockout" in flags:
            record.lockout_at = now if flags["lockout"] else None
            record.fail_times = 0
        return SimResponse(
            202, self._user_json(record, now, brief=_flag(args.get("brief")) is True)
        )

    def _h_user_delete(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        record = self._user_by_path(param)
        if self._settings.delete_conflict:
            raise _BadRequest(409, "The application is locked by a pending task")
        self._drop_user(record)
        return SimResponse(204)

    # ----------------------------------------------------------------- realms, temp tokens

    def _realm_json(self, name: str) -> dict[str, Any]:
        return {
            "id": self._realms[name],
            "name": name,
            "description": "",
            "is_default": name == "default",
            "deleted_at": None,
        }

    def _h_realm_list(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        wanted = args.get("name")
        return SimResponse(
            200,
            [self._realm_json(name) for name in self._realms if wanted is None or name == wanted],
        )

    def _h_realm_get(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        for name, realm_id in self._realms.items():
            if realm_id == param:
                return SimResponse(200, self._realm_json(name))
        raise _BadRequest(404, "Realm not found")

    def _h_temp_create(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        user_ref = args.get("user_id")
        if not isinstance(user_ref, str) or not user_ref:
            raise _BadRequest(400, "user_id is required")
        record = self._user_by_path(user_ref)
        method = args.get("auth_method", "Email")
        if method not in ("Email", "SMS"):
            raise _BadRequest(400, "auth_method must be Email or SMS")
        if record.spec.auth_method not in ("FTM", "FTK"):
            raise _BadRequest(400, "Temporary tokens are only for FTM and FTK users")
        if method == "SMS" and not record.spec.mobile_number:
            raise _BadRequest(400, "The user's mobile number is not valid for SMS")
        expired_at = args.get("expired_at")
        expires: float | None = None
        if expired_at is not None:
            try:
                # The timestamps carry no zone; like every FIC timestamp they are UTC.
                expires = calendar.timegm(time.strptime(str(expired_at), "%Y-%m-%dT%H:%M:%S"))
            except ValueError:
                raise _BadRequest(400, "expired_at is not a valid date") from None
        serial = "TMP" + "".join(self._rng.choice("0123456789ABCDEF") for _ in range(13))
        record.temp_token = _TempToken(serial, method, expires)
        return SimResponse(
            201,
            {
                "sn": serial,
                "expired_at": _timestamp(expires),
                "auth_method": method,
                "user_id": record.user_id,
                "username": record.spec.username,
                "realm_id": self._realms[record.spec.realm],
                "realm_name": record.spec.realm,
            },
        )

    def _h_temp_delete(
        self, args: dict[str, Any], param: str | None, now: float, origin: str
    ) -> SimResponse:
        record = self._user_by_path(param)
        record.temp_token = None
        return SimResponse(204)


def _parse_args(query: str, body: bytes) -> tuple[dict[str, Any], str | None]:
    """Query parameters overlaid with the JSON body object; or an error message."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    if not body.strip():
        return args, None
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return args, "The request body is not valid JSON"
    if not isinstance(parsed, dict):
        return args, "The request body must be a JSON object"
    args.update(parsed)
    return args, None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: object) -> int:
    if cursor is None or cursor == "":
        return 0
    try:
        text = base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4)).decode()
        label, _, number = text.partition(":")
        offset = int(number)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest(400, "page is not a valid cursor") from None
    if label != "offset" or offset < 0:
        raise _BadRequest(400, "page is not a valid cursor")
    return offset


__all__ = [
    "FAULT_KINDS",
    "Fault",
    "Route",
    "SimResponse",
    "SimulatorSettings",
    "SimulatorState",
    "endpoint_matches",
    "fold_name",
    "route",
    "totp_code",
]
