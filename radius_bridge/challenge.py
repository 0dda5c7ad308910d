"""Access-Challenge State tokens: issued with a challenge, redeemed once with its answer.

A State (RFC 2865 §5.24: opaque to the NAS, echoed unchanged in the next Access-Request) is
self-contained, so any instance holding the same key can verify it: a version, the factor the
code will be, the issue time and a random nonce, followed by an HMAC-SHA256 (RFC 2104, truncated
to 128 bits) over those fields and the User-Name and client it was issued for. A State that was
forged, altered, or returned for another user or client fails the MAC; an old one is expired;
a second use is refused from a bounded in-memory record of redeemed nonces. A NAS retransmitting
the very same packet never gets here: the duplicate cache answers it (RFC 5080 §2.2.2).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import struct
import threading
from dataclasses import dataclass, field
from typing import ClassVar

from radius_bridge.errors import BridgeError
from radius_bridge.model import Factor, Reason

VERSION = 1
NONCE_SIZE = 16
# 128 bits of MAC: a forger gets one guess per Access-Request, signed with the NAS's secret.
MAC_SIZE = 16
# Instances share the key, not a clock: allow their wall clocks to differ by this much.
MAX_CLOCK_SKEW = 10.0
MIN_KEY_SIZE = 16

# version, factor code, issued_at (seconds since the epoch, IEEE double), nonce
_HEADER = struct.Struct(f"!BBd{NONCE_SIZE}s")
STATE_SIZE = _HEADER.size + MAC_SIZE  # 42 octets; RFC 2865 §5.24 allows up to 253
# Separates our MAC input from any other use of the same key.
_MAC_LABEL = b"radius-bridge challenge state v1\x00"

_FACTOR_CODES = {Factor.OTP: 1, Factor.SMS: 2, Factor.EMAIL: 3, Factor.PUSH: 4}
_FACTORS_BY_CODE = {code: factor for factor, code in _FACTOR_CODES.items()}


class StateError(BridgeError):
    """A State that will not be honoured; ``reason`` is what the Access-Reject reports."""

    reason: ClassVar[Reason] = Reason.STATE_INVALID

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class StateInvalid(StateError):
    """Not a State we issued for this user and client: malformed, forged or altered."""

    reason = Reason.STATE_INVALID


class StateExpired(StateError):
    """A genuine State, answered too late."""

    reason = Reason.STATE_EXPIRED


class StateReplayed(StateError):
    """A genuine State that was already redeemed once."""

    reason = Reason.STATE_REPLAYED


@dataclass(frozen=True, kw_only=True, slots=True)
class ChallengeTicket:
    """What a redeemed State vouches for: the challenge was ours, for this user and client."""

    user_name: str
    client: str
    factor: Factor
    issued_at: float
    nonce: bytes = field(repr=False)


class ChallengeStates:
    """Issues and redeems State tokens under one HMAC key.

    ``now`` is wall-clock time (``time.time()``), so that other instances and a restarted
    daemon read the issue time the same way. Redeemed nonces are remembered until their State
    expires, at most ``max_outstanding`` of them; when that is full the oldest is forgotten and
    every State issued no later than it is refused from then on, so memory stays bounded and a
    replay is never let through. Safe to call from several threads.
    """

    def __init__(self, key: bytes, *, ttl: float, max_outstanding: int = 100_000) -> None:
        if len(key) < MIN_KEY_SIZE:
            raise ValueError(f"the State key must be at least {MIN_KEY_SIZE} bytes")
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl must be a positive number of seconds")
        if max_outstanding < 1:
            raise ValueError("max_outstanding must be at least 1")
        self._key = key
        self._ttl = ttl
        self._max_outstanding = max_outstanding
        self._lock = threading.Lock()
        # Redeemed nonces in redemption order with the time they may be forgotten; roughly the
        # order of expiry, so forgetting from the left is O(1) amortised.
        self._expiries: collections.deque[tuple[float, float, bytes]] = collections.deque()
        self._redeemed: set[bytes] = set()
        # States issued at or before this time are refused: their nonce may have been forgotten.
        self._forgotten_until = -math.inf

    def __len__(self) -> int:
        """How many redeemed States are remembered now."""
        return len(self._redeemed)

    def issue(
        self, *, user_name: str, client: str, factor: Factor, now: float, nonce: bytes
    ) -> bytes:
        """The State octets for a challenge to ``user_name`` via ``client`` for ``factor``.

        ``nonce`` must be ``NONCE_SIZE`` random bytes (``os.urandom(NONCE_SIZE)``).
        """
        code = _FACTOR_CODES.get(factor)
        if code is None:
            raise ValueError(f"a challenge cannot ask for {factor}")
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"the nonce must be {NONCE_SIZE} bytes")
        if not math.isfinite(now):
            raise ValueError("now must be a finite time")
        header = _HEADER.pack(VERSION, code, now, nonce)
        return header + self._mac(header, user_name, client)

    def redeem(self, state: bytes, *, user_name: str, client: str, now: float) -> ChallengeTicket:
        """Check ``state`` for ``user_name`` and ``client`` and use it up.

        Raises ``StateInvalid``, ``StateExpired`` or ``StateReplayed``.
        """
        if len(state) != STATE_SIZE or state[0] != VERSION:
            raise StateInvalid("State is not one this bridge issues (wrong length or version)")
        header, mac = state[: _HEADER.size], state[_HEADER.size :]
        # Constant-time comparison, so response timing reveals nothing about a correct MAC.
        if not hmac.compare_digest(mac, self._mac(header, user_name, client)):
            raise StateInvalid(
                "State MAC does not match: forged, altered, issued under another key, "
                "or issued for another user or client"
            )
        _, code, issued_at, nonce = _HEADER.unpack(header)
        factor = _FACTORS_BY_CODE.get(code)
        if factor is None or not math.isfinite(issued_at):
            raise StateInvalid("State carries fields this version cannot read")
        if issued_at > now + MAX_CLOCK_SKEW:
            raise StateInvalid(
                f"State was issued {issued_at - now:.1f} s in the future: check the clocks"
            )
        expires_at = issued_at + self._ttl
        if now > expires_at:
            age = now - issued_at
            raise StateExpired(f"State is {age:.1f} s old; it was valid for {self._ttl:g} s")
        with self._lock:
            self._forget_expired(now)
            if nonce in self._redeemed:
                raise StateReplayed("State was already used once")
            if issued_at <= self._forgotten_until:
                raise StateExpired(
                    "State is older than the record of used States reaches back "
                    "(more challenges outstanding than max_outstanding)"
                )
            self._remember(nonce, issued_at, expires_at)
        return ChallengeTicket(
            user_name=user_name, client=client, factor=factor, issued_at=issued_at, nonce=nonce
        )

    def _mac(self, header: bytes, user_name: str, client: str) -> bytes:
        user = user_name.encode("utf-8", "surrogatepass")
        nas = client.encode("utf-8", "surrogatepass")
        # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        message = b"".join(
            (
                _MAC_LABEL,
                header,
                struct.pack("!I", len(user)),
                user,
                struct.pack("!I", len(nas)),
                nas,
            )
        )
        return hmac.new(self._key, message, hashlib.sha256).digest()[:MAC_SIZE]

    def _forget_expired(self, now: float) -> None:
        # A nonce may go once its State has expired (the same test as in redeem, on the same
        # float): redeem refuses that State anyway.
        while self._expiries and now > self._expiries[0][0]:
            _, _, nonce = self._expiries.popleft()
            self._redeemed.discard(nonce)

    def _remember(self, nonce: bytes, issued_at: float, expires_at: float) -> None:
        while len(self._redeemed) >= self._max_outstanding:
            _, oldest_issued_at, oldest = self._expiries.popleft()
            self._redeemed.discard(oldest)
            self._forgotten_until = max(self._forgotten_until, oldest_issued_at)
        self._expiries.append((expires_at, issued_at, nonce))
        self._redeemed.add(nonce)
