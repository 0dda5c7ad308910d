"""The FortiIdentity Cloud REST client: the only module that speaks HTTP and imports ``requests``.

``FicClient`` logs in with the application's client id and secret, caches the bearer token and
renews it before it runs out, and offers one method per FIC call the bridge and its CLI need
(auth preview, code check, push start and polling, SMS/e-mail codes, users, version). Every
call has an explicit (connect, read) timeout and a total budget; only idempotent GETs are
retried; each HTTP status and transport failure becomes one of our ``FicError`` classes in
``error_for_status`` and ``_transport_failure``. Nothing from ``requests`` leaves this module,
and no secret, bearer token or one-time code reaches a log line or an exception message.
Wherever shared/fic-api.md marks the live API as unknown, the tolerant reading lives in the
"Tolerances" section below, so the distance to the real service is in one place.
"""

from __future__ import annotations

import email.utils
import functools
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import requests
import structlog
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from radius_bridge.errors import (
    FicCredentialsRefused,
    FicError,
    FicProtocolError,
    FicRateLimited,
    FicRejected,
    FicUnavailable,
    FicUnknownUser,
    FicUserLocked,
)
from radius_bridge.model import AuthMethod, Preview, PreviewAction, PushStatus, Secret, User

if TYPE_CHECKING:
    from radius_bridge.config import FicConfig

_log = structlog.get_logger(__name__)

USER_AGENT: Final = "radius-bridge/0.1"
# Error-body text kept for messages and logs; long bodies are cut here.
MESSAGE_LIMIT: Final = 200
# FIC documents one hour (fic-api.md §3); used when a login answer has no usable expires_in.
DEFAULT_TOKEN_LIFETIME: Final = 3600.0

# Finished pushes asked for per batch poll: the most fic-api.md §6 allows (100..1000). A batch
# answer lists the newest finished pushes only, so this bounds how many approvals one poll sees.
BATCH_SIZE: Final = 1000

# Endpoint labels: what FicCall.endpoint, log lines and FicError.endpoint carry.
LOGIN: Final = "POST /login"
PREVIEW: Final = "POST /auth/preview"
AUTH: Final = "POST /auth"
AUTH_STATUS: Final = "GET /auth/{id}"
AUTH_BATCH: Final = "GET /auth"
USER_LIST: Final = "GET /user"
USER_LIST_V2: Final = "GET /v2/user"
USER_GET: Final = "GET /user/{id}"
USER_CREATE: Final = "POST /user"
USER_DELETE: Final = "DELETE /user/{id}"
VERSION: Final = "GET /version"
ENDPOINTS: Final = (
    LOGIN, PREVIEW, AUTH, AUTH_STATUS, AUTH_BATCH, USER_LIST, USER_LIST_V2, USER_GET,
    USER_CREATE, USER_DELETE, VERSION,
)  # fmt: skip

# Endpoints whose subject is a user: there "does not exist" means the user, "locked" the
# user's lockout (fic-api.md §5.2). Elsewhere (an auth id, the application) it does not.
_USER_SUBJECT_ENDPOINTS: Final = frozenset({PREVIEW, AUTH, USER_LIST, USER_GET, USER_DELETE})
_LOCKOUT_ENDPOINTS: Final = frozenset({PREVIEW, AUTH})


@dataclass(frozen=True)
class FicCall:
    """One HTTP exchange with FIC, reported to the observer (metrics) after it ends."""

    endpoint: str
    status: int | None
    seconds: float
    outcome: str  # "ok" | "http_error" | "timeout" | "connection_error" | "bad_response"


# --------------------------------------------------------------------------------------------
# Tolerances: every place where shared/fic-api.md says UNKNOWN or INFERRED. Each function reads
# the documented shape and also the plausible alternatives, so a surprise from the live service
# is absorbed (or reported as FicProtocolError) here and nowhere else.
# --------------------------------------------------------------------------------------------

_ERROR_MESSAGE_KEYS: Final = ("error", "message", "detail", "msg", "error_description")
_UNKNOWN_USER_TEXT: Final = re.compile(r"does not exist|not found|no such user|unknown user", re.I)
# "Application (auth client) not found", "realm not found" (fic-api.md §4) are not about the user.
_NOT_ABOUT_THE_USER: Final = re.compile(r"\b(client|application|realm|auth ?id)\b", re.I)
_LOCKOUT_TEXT: Final = re.compile(r"\block(ed|out)\b", re.I)
# Trial throttling answers "retry after 5 minutes" in prose; Retry-After is UNKNOWN (§11).
_RETRY_IN_PROSE: Final = re.compile(r"(\d+)\s*(second|sec|minute|min)s?\b", re.I)
_PUSH_STATUS_WORDS: Final = {status.value: status for status in PushStatus}
_AUTH_METHOD_WORDS: Final = {method.value.lower(): method for method in AuthMethod}
_PREVIEW_ACTION_WORDS: Final = {action.value.lower(): action for action in PreviewAction}


def normalize_base_url(base_url: str) -> str:
    """Accept the documented ``https://host:9696`` and the legacy ``.../api/v1`` form (§1)."""
    url = base_url.strip().rstrip("/")
    for suffix in ("/api/v1", "/api/v2", "/api"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def message_of(body: Any, text: str) -> str:
    """The human-readable part of an error body; its key name is UNKNOWN (§11)."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict):
        for key in _ERROR_MESSAGE_KEYS:
            value = body.get(key)
            if isinstance(value, dict):
                value = message_of(value, "")
            if isinstance(value, list):
                value = "; ".join(str(item) for item in value)
            if value:
                return str(value)
    return text.strip()


def _names_unknown_user(message: str) -> bool:
    """The PAM module keys on "does not exist" (§5.2 [CODE]); "not found" is preview's word."""
    return bool(_UNKNOWN_USER_TEXT.search(message)) and not _NOT_ABOUT_THE_USER.search(message)


def _names_lockout(message: str) -> bool:
    """The HTTP status of a lockout is UNKNOWN (§5.2); only its "locked" message is known."""
    return bool(_LOCKOUT_TEXT.search(message))


def parse_retry_after(header: str | None, message: str, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP date) or from FIC's prose.

    ``now`` is wall-clock time (an HTTP date is absolute). ``None`` when nothing says.
    """
    if header:
        value = header.strip()
        try:  # RFC 9110 §10.2.3 says whole seconds; a fraction is read rather than dropped
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return max(0.0, moment.timestamp() - now)
    found = _RETRY_IN_PROSE.search(message)
    if found:
        unit = 60.0 if found.group(2).lower().startswith("min") else 1.0
        return float(found.group(1)) * unit
    return None


def token_lifetime_of(body: Any) -> tuple[Secret, float]:
    """``access_token`` and ``expires_in`` from a login answer (§3); lifetime may be missing."""
    if not isinstance(body, dict):
        raise ValueError("login answer is not a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("login answer has no access_token")
    lifetime = body.get("expires_in")
    try:
        seconds = float(lifetime) if lifetime is not None else DEFAULT_TOKEN_LIFETIME
    except (TypeError, ValueError):
        seconds = DEFAULT_TOKEN_LIFETIME
    if seconds <= 0:
        seconds = DEFAULT_TOKEN_LIFETIME
    return Secret(token), seconds


def renew_after(lifetime: float, margin: float) -> float:
    """Seconds after login to renew: ``margin`` early, or at half life for short tokens."""
    if lifetime < 2 * margin:
        return lifetime / 2
    return lifetime - margin


def auth_id_of(body: Any) -> str | None:
    """The push/auth id of a ``POST /auth`` answer: ``authid`` ([CODE]) or ``id``, maybe listed."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict):
        for key in ("authid", "auth_id", "id"):
            value = body.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
                return str(value)
    return None


def _push_status_word(value: Any) -> PushStatus | None:
    if isinstance(value, str):
        return _PUSH_STATUS_WORDS.get(value.strip().lower())
    return None


def push_status_of(body: Any, auth_id: str) -> PushStatus | None:
    """``status`` of one auth: an object, a one-element list, or the list item with our id (§6)."""
    if isinstance(body, dict):
        return _push_status_word(body.get("status"))
    if isinstance(body, list):
        for item in body:
            if isinstance(item, dict) and auth_id_of(item) == auth_id:
                return _push_status_word(item.get("status"))
        if len(body) == 1 and isinstance(body[0], dict):
            return _push_status_word(body[0].get("status"))
    return None


def finished_pushes_of(body: Any) -> dict[str, PushStatus] | None:
    """The batch answer: a list of ``{authid, status}``; items we cannot read are skipped."""
    if body is None:
        return {}
    if isinstance(body, dict) and "status" in body:
        body = [body]
    elif isinstance(body, dict):  # a list wrapped in an object, under whatever key
        body = next((value for value in body.values() if isinstance(value, list)), None)
    if not isinstance(body, list):
        return None
    finished: dict[str, PushStatus] = {}
    for item in body:
        if isinstance(item, dict):
            auth_id, status = auth_id_of(item), _push_status_word(item.get("status"))
            if auth_id is not None and status is not None:
                finished[auth_id] = status
    return finished


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def preview_of(body: Any) -> Preview | None:
    """A preview answer (§4): action and method case-insensitive; ``message`` only as text."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, dict) or not isinstance(body.get("action"), str):
        return None
    action = _PREVIEW_ACTION_WORDS.get(body["action"].strip().lower())
    if action is None:
        return None
    method = body.get("auth_method")
    message = body.get("message")
    return Preview(
        action=action,
        auth_method=(
            _AUTH_METHOD_WORDS.get(method.strip().lower()) if isinstance(method, str) else None
        ),
        push_enabled=_flag(body.get("push_enabled", False)),
        temp_token=_flag(body.get("temp_token", False)),
        message=message if isinstance(message, str) and message else None,
    )


def _text_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def user_of(item: Any) -> User | None:
    """One user object (§7); ``id`` (the userref) falls back to ``user_id`` when absent."""
    if not isinstance(item, dict):
        return None
    ref = _text_or_none(item.get("id")) or _text_or_none(item.get("user_id"))
    username = _text_or_none(item.get("username"))
    if not ref or username is None:
        return None
    active = item.get("active")
    fail_times = item.get("fail_times")
    return User(
        id=ref,
        username=username,
        email=_text_or_none(item.get("email")),
        mobile_number=_text_or_none(item.get("mobile_number")),
        auth_method=_text_or_none(item.get("auth_method")),
        active=_flag(active) if active is not None else None,
        realm_id=_text_or_none(item.get("realm_id")),
        user_id=_text_or_none(item.get("user_id")),
        fail_times=fail_times if isinstance(fail_times, int) else None,
        lockout_at=_text_or_none(item.get("lockout_at")),
        created_at=_text_or_none(item.get("created_at")),
    )


def users_of(body: Any) -> list[User] | None:
    """A user list; a lone object counts as a list of one (the list-vs-object rule is INFERRED)."""
    if body is None:
        return []
    items = body if isinstance(body, list) else [body]
    users = [user_of(item) for item in items]
    if any(user is None for user in users):
        return None
    return [user for user in users if user is not None]


def version_of(body: Any, text: str) -> str | None:
    """The server version: under a key like " FIC server" (§12, stray space and all)."""
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, str) and ("version" in key.lower() or "server" in key.lower()):
                return value
        strings = [value for value in body.values() if isinstance(value, str)]
        return strings[0] if len(strings) == 1 else None
    if isinstance(body, str):
        return body
    return text.strip() or None


def next_page_url(link: str | None, current_url: str) -> str | None:
    """The ``rel="next"`` URL of a v2 list, followed as given (§1, §10) but only on our host.

    The documented example changes the port (8686 vs 9696); a different host would get our
    bearer token, so it is refused.
    """
    if not link:
        return None
    target = urllib.parse.urljoin(current_url, link)
    here, there = urllib.parse.urlsplit(current_url), urllib.parse.urlsplit(target)
    if (there.scheme, there.hostname) != (here.scheme, here.hostname):
        return None
    return target


# --------------------------------------------------------------------------------------------
# Status and transport mapping: every HTTP status and every requests failure, in one place.
# --------------------------------------------------------------------------------------------


def error_for_status(
    endpoint: str, status: int, message: str, *, retry_after: float | None = None
) -> FicError | None:
    """The error an HTTP status means for ``endpoint``, or ``None`` for success (2xx).

    ``message`` is the already scrubbed, truncated error text from the body.
    """
    detail = message or f"HTTP {status} without a message"
    if 200 <= status < 300:
        return None
    if status == 429:
        return FicRateLimited(endpoint, detail, retry_after=retry_after)
    if status >= 500:
        return FicUnavailable(endpoint, detail, status=status)
    if 400 <= status < 500:
        if endpoint == LOGIN and status in (400, 401, 404):
            # §3: 400 malformed secret, 401 wrong id/secret, 404 unknown client.
            return FicCredentialsRefused(endpoint, detail, status=status)
        if endpoint in _LOCKOUT_ENDPOINTS and _names_lockout(message):
            return FicUserLocked(endpoint, detail, status=status)
        unknown_user = status in (400, 404) and _names_unknown_user(message)
        if endpoint in _USER_SUBJECT_ENDPOINTS and unknown_user:
            return FicUnknownUser(endpoint, detail, status=status)
        return FicRejected(endpoint, detail, status=status)
    # 1xx never surfaces from requests; 3xx is a redirect we refuse to follow (it could carry
    # the bearer token elsewhere), anything else is not HTTP as we know it.
    return FicProtocolError(endpoint, f"unexpected HTTP status {status}", status=status)


@dataclass(frozen=True)
class _Failure:
    """How a request that got no HTTP answer failed."""

    outcome: str  # for FicCall
    detail: str
    retryable: bool  # a second try may help (and costs little of the budget)
    reached_fic: bool  # False only when the request certainly never left (connect phase)


def _transport_failure(exc: Exception, read_timeout: float) -> _Failure:
    """The failure below HTTP, classified; the detail names the cause in a few words."""
    cause = _root_cause(exc)
    before_request = _failed_while_connecting(exc)
    if isinstance(exc, requests.exceptions.SSLError):  # retrying will not fix a certificate
        detail = f"TLS handshake or certificate verification failed: {cause}"
        return _Failure("connection_error", detail, retryable=False, reached_fic=False)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return _Failure("timeout", "timed out connecting to FIC", retryable=True, reached_fic=False)
    if isinstance(exc, requests.exceptions.Timeout):
        # FIC used the whole read timeout: a second try would only spend the caller's budget.
        return _Failure(
            "timeout",
            f"no answer from FIC within {read_timeout:g} s",
            retryable=False,
            reached_fic=True,
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        return _Failure(
            "connection_error",
            f"proxy failed: {cause}",
            retryable=True,
            reached_fic=not before_request,
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return _Failure(
            "connection_error",
            f"connection to FIC failed: {cause}",
            retryable=True,
            reached_fic=not before_request,
        )
    if isinstance(
        exc, (requests.exceptions.ContentDecodingError, requests.exceptions.ChunkedEncodingError)
    ):
        return _Failure(
            "bad_response", f"answer could not be read: {cause}", retryable=True, reached_fic=True
        )
    return _Failure(
        "connection_error",
        f"request failed: {cause}",
        retryable=False,
        reached_fic=not before_request,
    )


def _failed_while_connecting(exc: BaseException) -> bool:
    """True when urllib3 says no connection was made (refused, DNS, connect timeout)."""
    return any(
        isinstance(
            link, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        )
        for link in _cause_chain(exc)
    )


def _cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it wraps (``reason``, an exception arg, or ``__cause__``)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        current = inner if inner is not None else (current.__cause__ or current.__context__)
    return chain


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, e.g. "Connection refused"."""
    innermost = _cause_chain(exc)[-1]
    text = str(innermost) or type(innermost).__name__
    # urllib3 prefixes "<HTTPConnection object at 0x...>: "; the address of an object is noise.
    text = re.sub(r"^<[^>]*>:\s*", "", text)
    return text[:MESSAGE_LIMIT]


def _scrub(text: str, sensitive: tuple[Secret, ...]) -> str:
    """``text`` cut to MESSAGE_LIMIT, with every value we must not repeat replaced."""
    for secret in sensitive:
        value = secret.reveal()
        if value:
            text = text.replace(value, "***")
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 3] + "..."
    return text


# --------------------------------------------------------------------------------------------
# The client.
# --------------------------------------------------------------------------------------------

Body = Mapping[str, str | Secret]


def _json_bytes(body: Body | None) -> bytes | None:
    """The JSON body with secrets opened: built inline at the send, never held in a variable."""
    if body is None:
        return None
    opened = {
        key: value.reveal() if isinstance(value, Secret) else value for key, value in body.items()
    }
    # As requests' json= encodes it: no NaN, UTF-8.
    return json.dumps(opened, allow_nan=False).encode("utf-8")


@functools.lru_cache(maxsize=256)
def _prepared_url(url: str, params: tuple[tuple[str, str], ...]) -> str:
    """``url`` with ``params``, encoded as requests does it (cached: the hot URLs are few)."""
    scratch = requests.PreparedRequest()
    scratch.prepare_url(url, dict(params))
    assert scratch.url is not None
    return scratch.url


def _prepare(
    method: str,
    url: str,
    params: Mapping[str, str] | None,
    body: bytes | None,
    headers: dict[str, str],
) -> requests.PreparedRequest:
    """The request requests' ``Session.prepare_request`` would build for our calls.

    Only what FIC calls use: a JSON body with its length (or an explicit zero length for a
    bodiless method that may carry one, as requests sends), no cookies, no auth hooks.
    """
    request = requests.PreparedRequest()
    request.method = method
    request.url = _prepared_url(url, tuple(params.items()) if params else ())
    if body is not None:
        headers["Content-Length"] = str(len(body))
    elif method not in ("GET", "HEAD"):
        headers["Content-Length"] = "0"
    request.headers = CaseInsensitiveDict(headers)
    request.body = body
    return request


@dataclass(frozen=True)
class _Reply:
    """What this module keeps of an HTTP response (requests objects never leave ``_exchange``)."""

    status: int
    body: Any  # decoded JSON, None when empty, _UNREADABLE when not JSON
    text: str  # a body that is not JSON, scrubbed and cut to MESSAGE_LIMIT (else empty)
    message: str  # the error text of a non-2xx reply (else empty), scrubbed and cut
    retry_after: float | None
    next_url: str | None


_UNREADABLE: Final = object()


class _TransportFailure(Exception):
    """No HTTP answer; carries the FicUnavailable to raise and whether trying again may help.

    Private to this module: callers here unwrap it, so only ``error`` ever leaves.
    """

    def __init__(self, error: FicUnavailable, *, retryable: bool) -> None:
        super().__init__(error.detail)
        self.error = error
        self.retryable = retryable


def _never(reply: _Reply) -> bool:
    return False


def _v2_missing(reply: _Reply) -> bool:
    return reply.status in (404, 405)


def _bearer_wanted(reply: _Reply) -> bool:
    return reply.status == 401


@dataclass(frozen=True)
class _RetryPolicy:
    """Which failures of a call may be tried again (never a POST that may have acted)."""

    connection_errors: bool = False
    server_errors: bool = False
    rate_limited: bool = False


_NO_RETRY: Final = _RetryPolicy()
_IDEMPOTENT_GET: Final = _RetryPolicy(connection_errors=True, server_errors=True, rate_limited=True)
_LOGIN_RETRY: Final = _RetryPolicy(connection_errors=True)


class FicClient:
    """A thread-safe FIC client over one pooled ``requests.Session``.

    Calls may run concurrently from a thread pool: one login at a time (others wait for it),
    at most ``pool_size`` HTTP exchanges in flight (so never more TCP connections than that).
    ``timeout=`` on a call is its total budget in seconds and also its read timeout.
    """

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: Secret,
        session: requests.Session | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        ca_bundle: str | None = None,
        proxy: str | None = None,
        pool_size: int = 10,
        renew_margin: float = 60.0,
        get_retries: int = 2,
        backoff: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        observer: Callable[[FicCall], None] | None = None,
        on_login: Callable[[], None] | None = None,
        realm: str | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._root = normalize_base_url(base_url)
        self._api_v1 = f"{self._root}/api/v1"
        self._api_v2 = f"{self._root}/api/v2"
        self._client_id = client_id
        self._client_secret = client_secret
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # TLS verification is never switched off (fic-api.md §1: verify=False is a doc shortcut).
        self._verify: str | bool = ca_bundle or True
        self._proxies = {"https": proxy, "http": proxy} if proxy else None
        # Never repeated in a message: our secret, and a proxy password (http://u:pw@proxy).
        proxy_password = urllib.parse.urlsplit(proxy).password if proxy else None
        self._always_hidden = (client_secret, *([Secret(proxy_password)] if proxy_password else []))
        self._renew_margin = renew_margin
        self._get_retries = max(0, get_retries)
        self._backoff = backoff
        self._clock = clock
        self._sleep = sleep
        self._observer = observer
        self._on_login = on_login
        self._realm = realm
        self._owns_session = session is None
        self._session = session if session is not None else self._new_session(pool_size)
        self._slots = threading.BoundedSemaphore(pool_size)
        self._login_lock = threading.Lock()
        # (token, renew_at) replaced as one tuple, so readers never see half an update.
        self._token: tuple[Secret, float] | None = None

    @classmethod
    def from_config(cls, fic: FicConfig, **overrides: Any) -> FicClient:
        """A client for the ``fic:`` section of the configuration; keywords override it."""
        settings: dict[str, Any] = {
            "base_url": fic.base_url,
            "client_id": fic.client_id,
            "client_secret": fic.client_secret,
            "realm": fic.realm,
            "connect_timeout": fic.connect_timeout,
            "read_timeout": fic.read_timeout,
            "ca_bundle": fic.ca_bundle,
            "proxy": fic.proxy,
            "pool_size": fic.pool_size,
            "renew_margin": fic.token_renew_margin,
        }
        settings.update(overrides)
        return cls(**settings)

    @staticmethod
    def _new_session(pool_size: int) -> requests.Session:
        session = requests.Session()
        # Proxy and CA come from our configuration only, not from HTTPS_PROXY/REQUESTS_CA_BUNDLE
        # or ~/.netrc, so what the operator configured is what runs.
        session.trust_env = False
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, pool_block=True)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        """Release pooled connections (an injected session belongs to its owner)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> FicClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- login and token ----------------------------------------------------------------

    def login(self) -> None:
        """Log in now (``POST /login``), replacing any cached token."""
        deadline = self._deadline(None)
        self._acquire_login_lock(deadline)
        try:
            self._login(deadline)
        finally:
            self._login_lock.release()

    def _login(self, deadline: float) -> Secret:
        """One login, with the login lock held; retried only on connection errors."""
        started = self._clock()
        try:
            reply = self._call(
                "POST",
                f"{self._api_v1}/login",
                endpoint=LOGIN,
                deadline=deadline,
                read_timeout=self._read_timeout,
                retry=_LOGIN_RETRY,
                authenticated=False,
                body={"client_id": self._client_id, "client_secret": self._client_secret},
            )
        except FicRateLimited:
            raise  # stays a throttle: never a reason to fail open
        except FicUnavailable as error:
            # Whatever happened to the login, the call that needed it was never sent: FIC
            # cannot have pushed or judged a code (failmode open relies on this).
            raise FicUnavailable(
                error.endpoint, error.detail, status=error.status, reached_fic=False
            ) from error
        try:
            token, lifetime = token_lifetime_of(reply.body)
        except ValueError as exc:
            raise FicProtocolError(LOGIN, str(exc), status=reply.status) from None
        # Counted from before the request: the token may have been issued at its start.
        self._token = (token, started + renew_after(lifetime, self._renew_margin))
        if self._on_login is not None:
            self._on_login()
        return token

    def _fresh_token(self) -> Secret | None:
        current = self._token
        if current is not None and self._clock() < current[1]:
            return current[0]
        return None

    def _bearer(self, deadline: float) -> Secret:
        """A token that is not due for renewal; concurrent callers share one login."""
        token = self._fresh_token()
        if token is not None:
            return token
        self._acquire_login_lock(deadline)
        try:
            token = self._fresh_token()  # another thread may have logged in while we waited
            return token if token is not None else self._login(deadline)
        finally:
            self._login_lock.release()

    def _renew_refused(self, refused: Secret, deadline: float) -> Secret:
        """A new token after FIC refused ``refused``, unless another thread already renewed."""
        self._acquire_login_lock(deadline)
        try:
            current = self._token
            if current is not None and current[0] is not refused:
                return current[0]
            self._token = None
            return self._login(deadline)
        finally:
            self._login_lock.release()

    def _acquire_login_lock(self, deadline: float) -> None:
        if not self._login_lock.acquire(timeout=max(0.0, deadline - self._clock())):
            raise FicUnavailable(
                LOGIN, "timed out waiting for another login to finish", reached_fic=False
            )

    # ---- HTTP core ----------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        budget = timeout if timeout is not None else self._connect_timeout + self._read_timeout
        return self._clock() + budget

    def _report(self, endpoint: str, status: int | None, started: float, outcome: str) -> None:
        seconds = max(0.0, self._clock() - started)
        _log.debug(
            "fic.call", endpoint=endpoint, status=status, seconds=round(seconds, 3), outcome=outcome
        )
        if self._observer is not None:
            try:
                self._observer(FicCall(endpoint, status, seconds, outcome))
            except Exception as exc:  # a metrics bug must not fail an authentication
                _log.debug("fic.observer_failed", error=type(exc).__name__)

    def _headers(self, bearer: Secret | None) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer.reveal()}"
        return headers

    def _exchange(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        bearer: Secret | None,
        deadline: float,
        read_timeout: float,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        sensitive: tuple[Secret, ...] = (),
    ) -> _Reply:
        """One HTTP request and its reply; no answer at all raises ``_TransportFailure``.

        Secrets stay wrapped in this frame (tracebacks may print locals); they are opened only
        inside the ``request`` call's arguments.
        """
        started = self._clock()
        remaining = deadline - started
        if remaining <= 0 or not self._slots.acquire(timeout=remaining):
            self._report(endpoint, None, started, "timeout")
            raise _TransportFailure(
                FicUnavailable(endpoint, "no time left in the call's budget", reached_fic=False),
                retryable=False,
            )
        sensitive = (*sensitive, *self._always_hidden, *([bearer] if bearer else []))
        try:
            remaining = max(0.001, deadline - self._clock())
            read = min(read_timeout, remaining)
            request = _prepare(method, url, params, _json_bytes(body), self._headers(bearer))
            # Straight to the session's transport adapter: Session.request would merge
            # session-wide settings we do not use (cookies, hooks, environment, redirects) at
            # about half the CPU cost of a whole FIC call; the adapter still maps every
            # transport failure to requests' exceptions, which _transport_failure reads.
            response = self._session.get_adapter(url).send(
                request,
                timeout=(min(self._connect_timeout, remaining), read),
                verify=self._verify,
                proxies=self._proxies,
            )
            status, content = response.status_code, response.content
            retry_header = response.headers.get("Retry-After")
            next_link = response.links.get("next", {}).get("url")
        # requests' errors are OSErrors; a few urllib3 errors (bad URL parts) escape unwrapped.
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            failure = _transport_failure(exc, read)
            self._report(endpoint, None, started, failure.outcome)
            error = FicUnavailable(
                endpoint, _scrub(failure.detail, sensitive), reached_fic=failure.reached_fic
            )
            raise _TransportFailure(error, retryable=failure.retryable) from None
        finally:
            self._slots.release()
        ok = 200 <= status < 300
        decoded = _decode_json(content)
        self._report(endpoint, status, started, _outcome_of(status, decoded))
        message = (
            "" if ok else _scrub(message_of(decoded, content.decode("utf-8", "replace")), sensitive)
        )
        # Raw text is kept only for a body that is not JSON (a plain-text version, say): a
        # JSON body may hold a fresh access token, which must not sit in a second place.
        text = (
            _scrub(content.decode("utf-8", "replace").strip(), sensitive)
            if (decoded is _UNREADABLE)
            else ""
        )
        return _Reply(
            status=status,
            body=decoded,
            text=text,
            message=message,
            retry_after=(
                parse_retry_after(retry_header, message, now=time.time()) if status == 429 else None
            ),
            next_url=next_page_url(next_link, url),
        )

    def _call(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        deadline: float,
        read_timeout: float,
        retry: _RetryPolicy,
        authenticated: bool = True,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        sensitive: tuple[Secret, ...] = (),
        accept: Callable[[_Reply], bool] = _never,
    ) -> _Reply:
        """A call with its policy: 401 -> log in again once, GET retries, status -> error.

        ``accept`` lets a caller take a non-2xx reply as an answer instead of an error.
        """
        attempt = 0
        renewed = False
        while True:
            bearer = self._bearer(deadline) if authenticated else None
            try:
                reply = self._exchange(
                    method,
                    url,
                    endpoint=endpoint,
                    bearer=bearer,
                    deadline=deadline,
                    read_timeout=read_timeout,
                    body=body,
                    params=params,
                    sensitive=sensitive,
                )
            except _TransportFailure as failure:
                if retry.connection_errors and failure.retryable and self._pause(attempt, deadline):
                    attempt += 1
                    continue
                raise failure.error from None
            if reply.status == 401 and bearer is not None and not renewed:
                # fic-api.md §3: no refresh endpoint; an expired bearer gets 401 -> log in again.
                self._renew_refused(bearer, deadline)
                renewed = True
                continue
            if (
                reply.status == 429
                and retry.rate_limited
                and self._wait_out(reply, attempt, deadline)
            ):
                attempt += 1
                continue
            if reply.status >= 500 and retry.server_errors and self._pause(attempt, deadline):
                attempt += 1
                continue
            if accept(reply):
                return reply
            error = error_for_status(
                endpoint, reply.status, reply.message, retry_after=reply.retry_after
            )
            if error is not None:
                raise error
            return reply

    def _wait_out(self, throttled: _Reply, attempt: int, deadline: float) -> bool:
        """Sleep a 429's Retry-After before retry ``attempt + 1`` if it fits the budget."""
        wait = throttled.retry_after
        if wait is None or attempt >= self._get_retries or not self._fits(wait, deadline):
            return False
        self._sleep(wait)
        return True

    def _fits(self, seconds: float, deadline: float) -> bool:
        return self._clock() + seconds < deadline

    def _pause(self, attempt: int, deadline: float) -> bool:
        """Sleep the exponential backoff before retry ``attempt + 1`` if it fits the budget."""
        if attempt >= self._get_retries:
            return False
        delay = self._backoff * (2**attempt)
        if not self._fits(delay, deadline):
            return False
        self._sleep(delay)
        return True

    def _read(self, timeout: float | None) -> tuple[float, float]:
        """(deadline, read timeout) for a call with an optional per-call budget."""
        return self._deadline(timeout), timeout if timeout is not None else self._read_timeout

    def _auth_body(self, username: str, realm: str | None, user_ip: str | None) -> dict[str, str]:
        body = {"username": username}
        chosen_realm = realm or self._realm
        if chosen_realm:
            body["realm"] = chosen_realm
        if user_ip:
            body["user_ip"] = user_ip
        return body

    # ---- auth ---------------------------------------------------------------------------

    def preview(
        self,
        username: str,
        *,
        realm: str | None = None,
        user_ip: str | None = None,
        timeout: float | None = None,
    ) -> Preview:
        """What FIC would require for this login (``POST /auth/preview``); sends nothing."""
        deadline, read = self._read(timeout)
        reply = self._call(
            "POST",
            f"{self._api_v1}/auth/preview",
            endpoint=PREVIEW,
            deadline=deadline,
            read_timeout=read,
            retry=_NO_RETRY,
            body=self._auth_body(username, realm, user_ip),
        )
        preview = preview_of(reply.body)
        if preview is None:
            raise FicProtocolError(PREVIEW, "answer has no readable action", status=reply.status)
        return preview

    def verify_code(
        self,
        username: str,
        code: str,
        *,
        realm: str | None = None,
        user_ip: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Check a one-time code; returns on success, raises FicRejected (or kin) otherwise.

        The code reaches FIC at most once per evaluation: each wrong attempt counts toward the
        user's lockout (fic-api.md §5.2), so it is resent only when FIC provably refused our
        bearer token rather than the code.
        """
        deadline, read = self._read(timeout)
        secret_code = Secret(code)
        del code  # from here on only wrapped: a traceback printing locals shows no code
        body: dict[str, str | Secret] = {
            **self._auth_body(username, realm, user_ip),
            "token": secret_code,
        }
        url = f"{self._api_v1}/auth"
        try:
            bearer = self._bearer(deadline)
            reply = self._exchange(
                "POST",
                url,
                endpoint=AUTH,
                bearer=bearer,
                deadline=deadline,
                read_timeout=read,
                body=body,
                sensitive=(secret_code,),
            )
            if reply.status == 401 and self._bearer_refused(bearer, username, deadline):
                bearer = self._renew_refused(bearer, deadline)
                reply = self._exchange(
                    "POST",
                    url,
                    endpoint=AUTH,
                    bearer=bearer,
                    deadline=deadline,
                    read_timeout=read,
                    body=body,
                    sensitive=(secret_code,),
                )
        except _TransportFailure as failure:  # never retried: the code may have been judged
            raise failure.error from None
        error = error_for_status(AUTH, reply.status, reply.message, retry_after=reply.retry_after)
        if error is not None:
            raise error

    def _bearer_refused(self, bearer: Secret, username: str, deadline: float) -> bool:
        """Did a 401 from ``POST /auth`` refuse our token (not the code)? Ask a harmless read.

        GitLab models a wrong code as 401 (§5.2), the same status as an expired bearer. Only a
        401 on the probe proves the token; any other answer, or none, counts as "the code was
        judged" so that a code is never sent twice on a guess.
        """
        try:
            probe = self._exchange(
                "GET",
                f"{self._api_v1}/user",
                endpoint=USER_LIST,
                bearer=bearer,
                deadline=deadline,
                read_timeout=self._read_timeout,
                params={"username": username, "brief": "true"},
            )
        except _TransportFailure:
            return False
        return probe.status == 401

    def start_push(
        self,
        username: str,
        *,
        realm: str | None = None,
        user_ip: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Send a FortiToken Mobile push (``POST /auth`` without a code); returns its auth id.

        Never retried: a retry could send the user a second push.
        """
        deadline, read = self._read(timeout)
        reply = self._call(
            "POST",
            f"{self._api_v1}/auth",
            endpoint=AUTH,
            deadline=deadline,
            read_timeout=read,
            retry=_NO_RETRY,
            body=self._auth_body(username, realm, user_ip),
        )
        auth_id = auth_id_of(reply.body)
        if auth_id is None:
            raise FicProtocolError(
                AUTH, "push started but the answer has no authid", status=reply.status
            )
        return auth_id

    def send_code(
        self,
        username: str,
        method: AuthMethod | None,
        *,
        realm: str | None = None,
        user_ip: str | None = None,
        timeout: float | None = None,
    ) -> str | None:
        """Have FIC send a code by ``method`` (SMS/Email); returns an auth id if FIC gave one.

        ``method=None`` leaves the channel to FIC: a user with a temporary token gets the code
        by that token's Email or SMS (shared/fic-api.md §9).
        """
        deadline, read = self._read(timeout)
        body = self._auth_body(username, realm, user_ip)
        if method is not None:
            body["auth_method"] = method.value
        reply = self._call(
            "POST",
            f"{self._api_v1}/auth",
            endpoint=AUTH,
            deadline=deadline,
            read_timeout=read,
            retry=_NO_RETRY,
            body=body,
        )
        # §5.3: whether an SMS/Email trigger returns an authid is UNKNOWN; none is fine.
        return auth_id_of(reply.body)

    def push_status(self, auth_id: str, *, timeout: float | None = None) -> PushStatus:
        """The state of one push (``GET /auth/{id}``)."""
        deadline, read = self._read(timeout)
        quoted = urllib.parse.quote(auth_id, safe="")
        reply = self._call(
            "GET",
            f"{self._api_v1}/auth/{quoted}",
            endpoint=AUTH_STATUS,
            deadline=deadline,
            read_timeout=read,
            retry=_IDEMPOTENT_GET,
        )
        status = push_status_of(reply.body, auth_id)
        if status is None:
            raise FicProtocolError(
                AUTH_STATUS, "answer has no known push status", status=reply.status
            )
        return status

    def finished_pushes(self, *, timeout: float | None = None) -> dict[str, PushStatus]:
        """The answered pushes FIC reports (``GET /auth`` batch, up to ``BATCH_SIZE``), by id."""
        deadline, read = self._read(timeout)
        reply = self._call(
            "GET",
            f"{self._api_v1}/auth",
            endpoint=AUTH_BATCH,
            deadline=deadline,
            read_timeout=read,
            retry=_IDEMPOTENT_GET,
            params={"chunksize": str(BATCH_SIZE)},
        )
        finished = finished_pushes_of(reply.body)
        if finished is None:
            raise FicProtocolError(
                AUTH_BATCH, "answer is not a list of pushes", status=reply.status
            )
        return finished

    # ---- users and misc -----------------------------------------------------------------

    def _users(self, reply: _Reply, endpoint: str) -> list[User]:
        users = users_of(reply.body)
        if users is None:
            raise FicProtocolError(endpoint, "answer is not a list of users", status=reply.status)
        return users

    def list_users(self, **filters: str | bool | int) -> list[User]:
        """All users matching the filters (``GET /api/v1/user``, one unpaginated answer)."""
        deadline, read = self._read(None)
        reply = self._call(
            "GET",
            f"{self._api_v1}/user",
            endpoint=USER_LIST,
            deadline=deadline,
            read_timeout=read,
            retry=_IDEMPOTENT_GET,
            params=_params(filters),
        )
        return self._users(reply, USER_LIST)

    def iter_users(self, **filters: str | bool | int) -> Iterator[User]:
        """Users page by page (``GET /api/v2/user``, Link rel=next); v1 when v2 is missing."""
        url: str | None = f"{self._api_v2}/user"
        params: Mapping[str, str] | None = _params(filters)
        accept = _v2_missing  # only the first page may reveal that there is no v2
        while url is not None:
            deadline, read = self._read(None)
            reply = self._call(
                "GET",
                url,
                endpoint=USER_LIST_V2,
                deadline=deadline,
                read_timeout=read,
                retry=_IDEMPOTENT_GET,
                params=params,
                accept=accept,
            )
            if _v2_missing(reply):
                yield from self.list_users(**filters)
                return
            yield from self._users(reply, USER_LIST_V2)
            # The next link carries the filters and the opaque page cursor itself (§10).
            url, params, accept = reply.next_url, None, _never

    def get_user(self, user_ref: str) -> User:
        """One user by its ``id`` (userref, §7)."""
        deadline, read = self._read(None)
        quoted = urllib.parse.quote(user_ref, safe="")
        reply = self._call(
            "GET",
            f"{self._api_v1}/user/{quoted}",
            endpoint=USER_GET,
            deadline=deadline,
            read_timeout=read,
            retry=_IDEMPOTENT_GET,
        )
        users = self._users(reply, USER_GET)
        if len(users) != 1:
            raise FicProtocolError(
                USER_GET, f"expected one user, got {len(users)}", status=reply.status
            )
        return users[0]

    def find_user(self, username: str) -> User | None:
        """The user with this name (case-insensitive), or None."""
        try:
            users = self.list_users(username=username)
        except FicUnknownUser:
            return None
        wanted = username.casefold()
        return next((user for user in users if user.username.casefold() == wanted), None)

    def create_user(
        self,
        *,
        username: str,
        email: str,
        mobile_number: str | None = None,
        auth_method: AuthMethod | str | None = None,
        realm_id: str | None = None,
    ) -> User:
        """Create a user (``POST /user``); FIC e-mails the token activation."""
        body = {"username": username, "email": email}
        if mobile_number:
            body["mobile_number"] = mobile_number
        if auth_method is not None:
            body["auth_method"] = (
                auth_method.value if isinstance(auth_method, AuthMethod) else auth_method
            )
        if realm_id:
            body["realm_id"] = realm_id
        deadline, read = self._read(None)
        reply = self._call(
            "POST",
            f"{self._api_v1}/user",
            endpoint=USER_CREATE,
            deadline=deadline,
            read_timeout=read,
            retry=_NO_RETRY,
            body=body,
        )
        users = self._users(reply, USER_CREATE)
        if len(users) != 1:
            raise FicProtocolError(USER_CREATE, "answer is not one user", status=reply.status)
        return users[0]

    def delete_user(self, user_ref: str) -> None:
        """Delete a user by its ``id`` (``DELETE /user/{id}``, 204)."""
        deadline, read = self._read(None)
        quoted = urllib.parse.quote(user_ref, safe="")
        self._call(
            "DELETE",
            f"{self._api_v1}/user/{quoted}",
            endpoint=USER_DELETE,
            deadline=deadline,
            read_timeout=read,
            retry=_NO_RETRY,
        )

    def version(self) -> str:
        """FIC's server version (``GET /version``), asked without a token first (§12)."""
        deadline, read = self._read(None)
        url = f"{self._root}/version"
        reply = self._call(
            "GET",
            url,
            endpoint=VERSION,
            deadline=deadline,
            read_timeout=read,
            retry=_IDEMPOTENT_GET,
            authenticated=False,
            accept=_bearer_wanted,
        )
        if reply.status == 401:  # whether /version needs a bearer is UNKNOWN
            reply = self._call(
                "GET",
                url,
                endpoint=VERSION,
                deadline=deadline,
                read_timeout=read,
                retry=_IDEMPOTENT_GET,
            )
        found = version_of(reply.body if reply.body is not _UNREADABLE else None, reply.text)
        if found is None:
            raise FicProtocolError(VERSION, "answer has no version", status=reply.status)
        return found


def _params(filters: Mapping[str, str | bool | int]) -> dict[str, str]:
    """Query parameters as FIC spells them (booleans as ``true``/``false``)."""
    return {
        key: (str(value).lower() if isinstance(value, bool) else str(value))
        for key, value in filters.items()
        if value is not None
    }


def _outcome_of(status: int, decoded: Any) -> str:
    """The FicCall outcome of an HTTP answer."""
    if not 200 <= status < 300:
        return "http_error"
    return "bad_response" if decoded is _UNREADABLE else "ok"


def _decode_json(content: bytes) -> Any:
    if not content.strip():
        return None
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return _UNREADABLE
