"""One request's path through the bridge: client, decode, policy, FIC, encode, log.

``Service.handle`` takes a datagram and its source and returns the reply bytes, or None when
the datagram is dropped. It never raises: whatever goes wrong inside becomes a logged drop or an
Access-Reject. It owns no sockets (``server`` does) and makes no decisions of its own that could
be made without I/O (``policy`` does); it is the sequence that joins them, with one
``radius.request.completed`` log line per answered request.

Logins that are the same login arriving twice (a NAS that retries with a new Identifier, a user
who presses Connect again) share one FIC call: a second push request for the same user, client
and station joins the push already in flight, and the same code is verified once. Everything
else that would reach FIC first passes the limits (``limits``): one push at a time per user, so
many per window, a cool-down after a denied push, so many wrong codes per window, and caps on
pushes and challenges outstanding; a refusal is an Access-Reject saying which.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar

import structlog

from radius_bridge import __version__, policy
from radius_bridge.challenge import ChallengeStates, StateError
from radius_bridge.config import ClientConfig, Config, EmptyPassword, MessageAuthenticatorPolicy
from radius_bridge.errors import (
    FicError,
    FicRejected,
    FicUnavailable,
    FicUnknownUser,
    FicUserLocked,
    PacketError,
)
from radius_bridge.health import FicHealth
from radius_bridge.limits import ChallengeBudget, CodeVerdict, Refusal, UserLimits
from radius_bridge.metrics import Metrics
from radius_bridge.model import (
    AccessRequest,
    AuthMethod,
    Decision,
    Factor,
    Outcome,
    PacketKind,
    PasswordScheme,
    Preview,
    PushStatus,
    Reason,
)
from radius_bridge.pending import PendingPushes, TooManyPending
from radius_bridge.radius import RadiusCodec

log = structlog.get_logger("radius_bridge.service")

T = TypeVar("T")


class FicApi(Protocol):
    """The part of ``fic.FicClient`` the service calls (blocking; run in the executor)."""

    def preview(
        self, username: str, *, realm: str | None = ..., user_ip: str | None = ...
    ) -> Preview: ...

    def verify_code(
        self, username: str, code: str, *, realm: str | None = ..., user_ip: str | None = ...
    ) -> None: ...

    def start_push(
        self, username: str, *, realm: str | None = ..., user_ip: str | None = ...
    ) -> str: ...

    def send_code(
        self,
        username: str,
        method: AuthMethod | None,
        *,
        realm: str | None = ...,
        user_ip: str | None = ...,
    ) -> str | None: ...


@dataclasses.dataclass
class _Login:
    """What one request learned on its way; the completed log line is made from it."""

    request_id: str
    client: str
    user: str | None = None
    factor: Factor = Factor.NONE
    second_factor_sent: bool = False
    joined: bool = False
    fic_auth_id: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class DropLog:
    """Logs dropped datagrams once per source and reason per ``interval``, counting the rest.

    A misconfigured NAS retrying every second, or a scan, must not flood the journal.
    """

    def __init__(self, *, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self.counts: dict[str, int] = {}

    def note(self, source: str, reason: str, **fields: Any) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self._clock()
        key = (source, reason)
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            self._last[key] = (last[0], last[1] + 1)
            return
        if len(self._last) > 10_000:
            self._last.clear()
        suppressed = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        log.warning(
            "radius.packet.dropped",
            source=source,
            reason=reason,
            suppressed_since_last=suppressed,
            **fields,
        )


class Service:
    """Turns datagrams into replies; see the module docstring."""

    def __init__(
        self,
        *,
        config: Config,
        codec: RadiusCodec,
        fic: FicApi,
        executor: Executor,
        pending: PendingPushes,
        challenges: ChallengeStates,
        metrics: Metrics | None = None,
        health: FicHealth | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._codec = codec
        self._fic = fic
        self._executor = executor
        self._pending = pending
        self._challenges = challenges
        self._metrics = metrics or Metrics()
        self._health = health or FicHealth()
        self._clock = clock
        self._wall_clock = wall_clock
        self._started = clock()
        self._in_flight: dict[Hashable, asyncio.Future[Any]] = {}
        self._limits = UserLimits(config.limits, clock=clock)
        self._challenge_budget = ChallengeBudget(clock=clock)
        # The caps sized at start (the push table, the record of used States, the reply cache)
        # stay as they were until a restart; the per-user limits follow every reload.
        self._caps = config.limits
        self._coalesce_key = secrets.token_bytes(32)
        # Clients with require_message_authenticator "auto" that have sent a valid one: from
        # then on they must always send it (FreeRADIUS 3.2.5 semantics).
        self.clients_with_message_authenticator: set[str] = set()
        # Every client that sent a request without one, whatever its policy (metrics, doctor).
        self.clients_without_message_authenticator: set[str] = set()
        self._legacy_clients_logged: set[str] = set()
        self.drops = DropLog(clock=clock)
        self.stopping = False

    @property
    def config(self) -> Config:
        return self._config

    def reconfigure(self, config: Config, *, codec: RadiusCodec | None = None) -> None:
        """Use a new configuration for every request that starts from now on.

        Requests already under way finish with the configuration they started with.
        """
        if codec is not None:
            self._codec = codec
        started = self._caps
        limits = dataclasses.replace(
            config.limits,
            max_pending_pushes=started.max_pending_pushes,
            max_challenges=started.max_challenges,
            duplicate_cache_size=started.duplicate_cache_size,
            max_requests_in_progress=started.max_requests_in_progress,
        )
        if limits != config.limits:
            log.warning(
                "bridge.reload.caps_unchanged",
                detail="limits.max_pending_pushes, max_challenges, duplicate_cache_size and "
                "max_requests_in_progress change only on restart",
            )
        self._limits.settings = limits
        self._config = config

    def set_fic(self, fic: FicApi) -> None:
        """Send FIC calls of requests that start from now on to ``fic``."""
        self._fic = fic

    # -- the request path ---------------------------------------------------------------------

    async def handle(self, data: bytes, source: tuple[str, int]) -> bytes | None:
        """The reply to one datagram, or None to drop it. Never raises."""
        try:
            return await self._handle(data, source)
        except Exception:
            # The last line of defence: a bug must cost one request, never the server.
            log.exception("radius.request.failed", source=source[0])
            self._metrics.packet_dropped("internal_error")
            return None

    async def _handle(self, data: bytes, source: tuple[str, int]) -> bytes | None:
        started = self._clock()
        config = self._config
        address = source[0]
        client = config.client_for(address)
        if client is None:
            self._drop(address, "unknown_client")
            return None
        secret = client.secret.reveal_bytes()
        try:
            request = self._codec.decode(
                data,
                secret=secret,
                client_name=client.name,
                require_message_authenticator=self._requires_authenticator(client),
            )
        except PacketError as error:
            self._drop(address, error.reason, client=client.name, detail=str(error))
            return None
        self._note_authenticator(client, request)

        login = _Login(request_id=secrets.token_hex(6), client=client.name)
        if request.kind is PacketKind.STATUS_SERVER:
            if not self._health.is_up():
                # RFC 5997 §4.3: silence tells the NAS to fail over to its next server while
                # FIC is unreachable from here.
                self._drop(address, "fic_down", client=client.name)
                return None
            decision = self._status_server_decision()
        else:
            login.user = request.user_name
            decision = await self._decide(request, client, login)
            if decision.outcome is Outcome.ACCEPT and client.reply_attributes:
                decision = dataclasses.replace(
                    decision, attributes=decision.attributes + client.reply_attributes
                )
        try:
            reply: bytes | None = self._codec.encode(request, decision, secret=secret)
        except ValueError as error:
            # RFC 2865 §3 caps a packet at 4096 octets and §5.33 wants every Proxy-State back:
            # a request whose Proxy-States nearly fill a packet cannot be answered at all.
            reply = None
            login.extra["reply_dropped"] = f"the reply cannot be encoded: {error}"
            self._drop(address, "malformed", client=client.name, detail=str(error))
        self._log_completed(request, decision, login, address, started)
        self._metrics.request_completed(
            login.client, login.factor, decision.outcome, decision.reason, self._clock() - started
        )
        return reply

    def _drop(self, source: str, reason: str, **fields: Any) -> None:
        self._metrics.packet_dropped(reason)
        self.drops.note(source, reason, **fields)

    def _requires_authenticator(self, client: ClientConfig) -> bool:
        match client.require_message_authenticator:
            case MessageAuthenticatorPolicy.REQUIRED:
                return True
            case MessageAuthenticatorPolicy.OPTIONAL:
                return False
            case MessageAuthenticatorPolicy.AUTO:
                return client.name in self.clients_with_message_authenticator
        return True  # pragma: no cover - exhaustive match; stay strict if an option is added

    def _note_authenticator(self, client: ClientConfig, request: AccessRequest) -> None:
        if not request.had_message_authenticator:
            self.clients_without_message_authenticator.add(client.name)
        policy_ = client.require_message_authenticator
        if policy_ is not MessageAuthenticatorPolicy.AUTO:
            return
        if request.had_message_authenticator:
            if client.name not in self.clients_with_message_authenticator:
                self.clients_with_message_authenticator.add(client.name)
                log.info("radius.client.message_authenticator_learned", client=client.name)
        elif client.name not in self._legacy_clients_logged:
            self._legacy_clients_logged.add(client.name)
            log.warning(
                "radius.client.legacy",
                client=client.name,
                detail="no Message-Authenticator yet; served until it sends one (auto)",
            )

    def _status_server_decision(self) -> Decision:
        uptime = int(self._clock() - self._started)
        return Decision(
            outcome=Outcome.ACCEPT,
            reason=Reason.STATUS_SERVER,
            reply_message=f"radius-bridge {__version__} up {uptime} s",
        )

    async def _decide(
        self, request: AccessRequest, client: ClientConfig, login: _Login
    ) -> Decision:
        auth = self._config.auth
        if request.scheme not in (PasswordScheme.PAP, PasswordScheme.NONE):
            login.factor = Factor.UNSUPPORTED
            login.extra["scheme"] = request.scheme.value
            login.extra["detail"] = "only PAP can carry a one-time code"
            return policy.reject(Reason.UNSUPPORTED_SCHEME)
        if not request.user_name:
            return policy.reject(Reason.NO_USER_NAME)
        try:
            identity = policy.fic_identity(request.user_name, auth.username, self._config.fic.realm)
        except ValueError:
            return policy.reject(Reason.NO_USER_NAME)
        login.user = identity.username
        if identity.realm:
            login.extra["realm"] = identity.realm

        try:
            if request.state is not None:
                return await self._answer_challenge(request, client, identity, login)
            factor = policy.factor_for_password(request.password, auth)
            login.factor = factor
            match factor:
                case Factor.OTP:
                    assert request.password is not None
                    return await self._verify_code(request, identity, request.password, login)
                case Factor.PUSH:
                    return await self._push(request, client, identity, login)
                case Factor.SMS:
                    return await self._send_code(request, client, identity, AuthMethod.SMS, login)
                case Factor.EMAIL:
                    return await self._send_code(request, client, identity, AuthMethod.EMAIL, login)
                case Factor.EMPTY:
                    return await self._empty_password(request, client, identity, login)
                case _:
                    return policy.reject(Reason.BAD_PASSWORD_FORMAT)
        except FicError as error:
            login.extra["fic_error"] = str(error)
            sent = login.second_factor_sent and not (
                isinstance(error, FicUnavailable) and not error.reached_fic
            )
            return policy.decision_for_fic_error(
                error,
                second_factor_sent=sent,
                failmode=auth.failmode,
                factor=login.factor,
            )
        except TooManyPending:
            return policy.reject(Reason.OVERLOADED)

    # -- flows ----------------------------------------------------------------------------------

    async def _empty_password(
        self,
        request: AccessRequest,
        client: ClientConfig,
        identity: policy.FicIdentity,
        login: _Login,
    ) -> Decision:
        match self._config.auth.empty_password:
            case EmptyPassword.PUSH:
                login.factor = Factor.PUSH
                return await self._push(request, client, identity, login)
            case EmptyPassword.REJECT:
                return policy.reject(Reason.BAD_PASSWORD_FORMAT)
        preview = await self._call(
            self._fic.preview,
            identity.username,
            realm=identity.realm,
            user_ip=_user_ip(request),
        )
        login.extra["auth_method"] = preview.auth_method.value if preview.auth_method else None
        step = policy.step_after_preview(preview)
        match step:
            case policy.Step.PUSH:
                login.factor = Factor.PUSH
                return await self._push(request, client, identity, login)
            case policy.Step.SEND_SMS:
                login.factor = Factor.SMS
                return await self._send_code(request, client, identity, AuthMethod.SMS, login)
            case policy.Step.SEND_EMAIL:
                login.factor = Factor.EMAIL
                return await self._send_code(request, client, identity, AuthMethod.EMAIL, login)
            case policy.Step.SEND_CODE:
                # A temporary token: FIC delivers by the token's own method (Email or SMS).
                login.factor = Factor.OTP
                return await self._send_code(request, client, identity, None, login)
            case policy.Step.CHALLENGE_FOR_CODE:
                login.factor = Factor.OTP
                return self._challenge(request, client, Factor.OTP, login)
            case policy.Step.ACCEPT_BYPASS:
                return policy.accept(Reason.BYPASS)
            case policy.Step.REJECT_BLOCKED:
                login.extra["fic_message"] = preview.message
                return policy.reject(Reason.BLOCKED)
        return policy.reject(Reason.FIC_ERROR)  # pragma: no cover - exhaustive match

    async def _verify_code(
        self,
        request: AccessRequest,
        identity: policy.FicIdentity,
        code: str,
        login: _Login,
    ) -> Decision:
        # The same code for the same login, arriving again while FIC checks it, is not sent a
        # second time: each attempt counts toward the user's lockout in FIC.
        digest = hmac.new(self._coalesce_key, code.encode(), hashlib.sha256).digest()
        key = ("code", _origin(request, login.client), identity, request.calling_station_id, digest)
        if key not in self._in_flight:
            # A new guess, not the same one arriving again (which joins it below, uncounted).
            refusal = self._limits.start_code(identity)
            if refusal is not None:
                return self._refuse(refusal, login)

        async def verify() -> None:
            try:
                await self._call(
                    self._fic.verify_code,
                    identity.username,
                    code,
                    realm=identity.realm,
                    user_ip=_user_ip(request),
                )
            except FicRejected as error:
                # Unknown and locked users are FIC's verdict on the user, not on the code.
                judged = not isinstance(error, FicUnknownUser | FicUserLocked)
                verdict = CodeVerdict.WRONG if judged else CodeVerdict.UNDECIDED
                self._limits.finish_code(identity, verdict)
                raise
            except BaseException:
                self._limits.finish_code(identity, CodeVerdict.UNDECIDED)
                raise
            self._limits.finish_code(identity, CodeVerdict.ACCEPTED)

        login.second_factor_sent = True
        await self._once(key, verify, login)
        return policy.accept(Reason.OTP_ACCEPTED)

    async def _push(
        self,
        request: AccessRequest,
        client: ClientConfig,
        identity: policy.FicIdentity,
        login: _Login,
    ) -> Decision:
        key = ("push", _origin(request, client.name), identity, request.calling_station_id)
        if key not in self._in_flight:
            # A new push, not the same login again (which joins the one in flight, uncounted).
            # Checked and counted before the await in _once, so parallel logins cannot both pass.
            refusal = self._limits.start_push(identity)
            if refusal is not None:
                return self._refuse(refusal, login)
        deadline = self._clock() + self._config.auth.push_timeout

        async def push() -> tuple[PushStatus | None, str]:
            sent, status = False, None
            try:
                auth_id = await self._call(
                    self._fic.start_push,
                    identity.username,
                    realm=identity.realm,
                    user_ip=_user_ip(request),
                )
                sent = True
                login.fic_auth_id = auth_id
                status = await self._pending.wait(auth_id, deadline=deadline)
                return status, auth_id
            except FicUnavailable as error:
                sent = error.reached_fic  # a timeout after sending may still reach the phone
                raise
            finally:
                self._limits.finish_push(identity, sent=sent, status=status)

        login.second_factor_sent = True
        status, auth_id = await self._once(key, push, login)
        login.fic_auth_id = auth_id
        if status is None and self.stopping:
            return policy.reject(Reason.SHUTTING_DOWN)
        decision = policy.decision_for_push(status)
        return dataclasses.replace(decision, fic_auth_id=auth_id)

    async def _send_code(
        self,
        request: AccessRequest,
        client: ClientConfig,
        identity: policy.FicIdentity,
        method: AuthMethod | None,
        login: _Login,
    ) -> Decision:
        # Reserved before the code goes out: no SMS for a challenge that could not be issued.
        refusal = self._reserve_challenge()
        if refusal is not None:
            return self._refuse(refusal, login)
        login.second_factor_sent = True
        try:
            auth_id = await self._call(
                self._fic.send_code,
                identity.username,
                method,
                realm=identity.realm,
                user_ip=_user_ip(request),
            )
        except BaseException:
            self._challenge_budget.release()
            raise
        login.fic_auth_id = auth_id
        return self._issue_challenge(request, client, _CODE_FACTORS.get(method, Factor.OTP))

    def _challenge(
        self, request: AccessRequest, client: ClientConfig, factor: Factor, login: _Login
    ) -> Decision:
        refusal = self._reserve_challenge()
        if refusal is not None:
            return self._refuse(refusal, login)
        return self._issue_challenge(request, client, factor)

    def _reserve_challenge(self) -> Refusal | None:
        return self._challenge_budget.reserve(
            capacity=self._caps.max_challenges, lifetime=self._config.auth.challenge_timeout
        )

    def _issue_challenge(
        self, request: AccessRequest, client: ClientConfig, factor: Factor
    ) -> Decision:
        assert request.user_name is not None
        state = self._challenges.issue(
            user_name=request.user_name,
            client=client.name,
            factor=factor,
            now=self._wall_clock(),
            nonce=os.urandom(16),
        )
        return policy.challenge(factor, state)

    async def _answer_challenge(
        self,
        request: AccessRequest,
        client: ClientConfig,
        identity: policy.FicIdentity,
        login: _Login,
    ) -> Decision:
        assert request.state is not None and request.user_name is not None
        login.factor = Factor.CHALLENGE_RESPONSE
        try:
            ticket = self._challenges.redeem(
                request.state,
                user_name=request.user_name,
                client=client.name,
                now=self._wall_clock(),
            )
        except StateError as error:  # forged, tampered, expired, replayed, foreign
            login.extra["detail"] = str(error)
            return policy.reject(error.reason)
        login.extra["challenged_for"] = ticket.factor.value
        code = request.password or ""
        if policy.factor_for_password(code, self._config.auth) is not Factor.OTP:
            return policy.reject(Reason.BAD_PASSWORD_FORMAT)
        return await self._verify_code(request, identity, code, login)

    # -- helpers --------------------------------------------------------------------------------

    def _refuse(self, refusal: Refusal, login: _Login) -> Decision:
        """The Access-Reject for a limit; the log line says which limit and when it lifts."""
        login.extra["detail"] = refusal.detail
        if refusal.retry_after > 0:
            login.extra["retry_after_s"] = math.ceil(refusal.retry_after)
        return policy.reject(refusal.reason)

    async def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking FIC call in the executor, so the event loop never waits on HTTP."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(method, *args, **kwargs)
        )

    async def _once(self, key: Hashable, work: Callable[[], Awaitable[T]], login: _Login) -> T:
        """Run ``work`` once per key at a time; a request arriving meanwhile shares its result."""
        running = self._in_flight.get(key)
        if running is not None:
            login.joined = True
            result: T = await asyncio.shield(running)
            return result
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            value = await work()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here, so an unshared failure is not reported twice
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._in_flight[key]

    def _log_completed(
        self,
        request: AccessRequest,
        decision: Decision,
        login: _Login,
        source: str,
        started: float,
    ) -> None:
        fields: dict[str, Any] = {
            "request_id": login.request_id,
            "client": login.client,
            "source": source,
            "user": login.user,
            "factor": login.factor.value,
            "outcome": decision.outcome.value,
            "reason": decision.reason.value,
            "duration_ms": round((self._clock() - started) * 1000, 1),
        }
        if login.fic_auth_id:
            fields["fic_auth_id"] = login.fic_auth_id
        if login.joined:
            fields["joined"] = True
        if request.nas_identifier:
            fields["nas_identifier"] = request.nas_identifier
        if request.calling_station_id:
            fields["calling_station_id"] = request.calling_station_id
        fields.update(login.extra)
        if decision.reason in _WARNING_REASONS:
            log.warning("radius.request.completed", **fields)
        else:
            log.info("radius.request.completed", **fields)


# Outcomes an operator should notice: MFA skipped, a user's second factor under attack (or in
# trouble), the bridge at a capacity limit.
_WARNING_REASONS = frozenset(
    {
        Reason.FIC_UNAVAILABLE_FAILOPEN,
        Reason.PUSH_RATE_LIMITED,
        Reason.CODE_RATE_LIMITED,
        Reason.OVERLOADED,
    }
)

# Which code an Access-Challenge asks for, by how FIC was told to deliver it (None: FIC chose).
_CODE_FACTORS: dict[AuthMethod | None, Factor] = {
    AuthMethod.SMS: Factor.SMS,
    AuthMethod.EMAIL: Factor.EMAIL,
}


def _origin(request: AccessRequest, client: str) -> Hashable:
    """Where a login comes from, for recognising the same login arriving twice.

    A request relayed by a proxy (Proxy-State present) is named by the NAS behind the proxy,
    so the same login relayed along two proxy paths is recognised as one.
    """
    if request.proxy_states and (request.nas_identifier or request.nas_ip_address):
        return ("nas", request.nas_identifier, request.nas_ip_address)
    return ("client", client)


def _user_ip(request: AccessRequest) -> str | None:
    """The VPN user's address, when the NAS put one in Calling-Station-Id (FortiGate does)."""
    candidate = request.calling_station_id
    if not candidate:
        return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None
