"""Values passed between the layers: frozen, keyword-only dataclasses and enums.

Nothing here does I/O or knows about pyrad or requests. A RADIUS request arrives as an
``AccessRequest`` (built by ``radius``), the decision for it leaves as a ``Decision`` (made by
``policy`` and ``service``), and FIC answers come back from ``fic`` as ``Preview``,
``PushStatus`` and ``User`` values.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field


class Secret:
    """A string that must never be printed: its ``repr`` and ``str`` hide the value.

    Call ``reveal()`` at the one place the value is really needed (signing, HTTP body).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def reveal_bytes(self) -> bytes:
        return self._value.encode("utf-8")

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.reveal_bytes(), other.reveal_bytes())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __bool__(self) -> bool:
        return bool(self._value)


class PacketKind(enum.Enum):
    """The RADIUS packet codes the bridge accepts on its authentication port."""

    ACCESS_REQUEST = 1
    STATUS_SERVER = 12


class PasswordScheme(enum.Enum):
    """How the NAS sent the user's credential (RFC 2865 §5.2, §5.3; RFC 2548; RFC 3579)."""

    PAP = "pap"
    CHAP = "chap"
    MSCHAP = "mschap"
    EAP = "eap"
    NONE = "none"


@dataclass(frozen=True, kw_only=True, slots=True)
class AccessRequest:
    """A decoded, authenticated request from a NAS.

    ``password`` is the decoded PAP User-Password (``None`` when the request carried none);
    it is excluded from ``repr`` so that the value never reaches a log by accident.
    """

    kind: PacketKind
    identifier: int
    authenticator: bytes
    user_name: str | None
    password: str | None = field(repr=False)
    scheme: PasswordScheme
    state: bytes | None = field(default=None, repr=False)
    proxy_states: tuple[bytes, ...] = ()
    nas_identifier: str | None = None
    nas_ip_address: str | None = None
    calling_station_id: str | None = None
    had_message_authenticator: bool = False


class Outcome(enum.Enum):
    """What the bridge answers."""

    ACCEPT = "accept"
    REJECT = "reject"
    CHALLENGE = "challenge"


class Factor(enum.Enum):
    """The second factor a request asks for, as read from its password (or its State)."""

    OTP = "otp"  # a one-time code typed by the user
    PUSH = "push"  # FortiToken Mobile push
    SMS = "sms"  # send a code by SMS, then challenge for it
    EMAIL = "email"  # send a code by e-mail, then challenge for it
    EMPTY = "empty"  # empty password: ask FIC (preview) what the user has
    CHALLENGE_RESPONSE = "challenge_response"  # the code that answers our Access-Challenge
    UNSUPPORTED = "unsupported"  # CHAP, MS-CHAP, EAP or a password we cannot read
    NONE = "none"  # not decided yet (log field default)


class Reason(enum.Enum):
    """Why a request ended as it did: the ``reason`` field of the completed log line.

    Each value is stable (dashboards and alerts key on it) and reads as a sentence fragment.
    """

    OTP_ACCEPTED = "otp_accepted"
    OTP_REJECTED = "otp_rejected"
    PUSH_APPROVED = "push_approved"
    PUSH_DENIED = "push_denied"
    PUSH_TIMEOUT = "push_timeout"
    CODE_SENT = "code_sent"
    CHALLENGE_ISSUED = "challenge_issued"
    BYPASS = "bypass"
    BLOCKED = "blocked"
    UNKNOWN_USER = "unknown_user"
    USER_LOCKED = "user_locked"
    BAD_PASSWORD_FORMAT = "bad_password_format"  # noqa: S105 - a reason name, not a password
    NO_USER_NAME = "no_user_name"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    STATE_INVALID = "state_invalid"
    STATE_EXPIRED = "state_expired"
    STATE_REPLAYED = "state_replayed"
    FIC_UNAVAILABLE = "fic_unavailable"
    FIC_UNAVAILABLE_FAILOPEN = "fic_unavailable_failopen"
    FIC_ERROR = "fic_error"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SHUTTING_DOWN = "shutting_down"
    STATUS_SERVER = "status_server"
    # FIC refused to start a push or send a code (no phone number, push off, SMS credit gone):
    # the user cannot use that factor, which is neither a wrong code nor a fault of the bridge.
    FIC_REFUSED = "fic_refused"
    # Push-fatigue (MFA bombing) limits and code guessing, refused locally before FIC is asked.
    PUSH_ALREADY_PENDING = "push_already_pending"  # a push from another login still waits
    PUSH_RATE_LIMITED = "push_rate_limited"  # too many pushes for this user in the window
    PUSH_COOLDOWN = "push_cooldown"  # the user denied a push moments ago
    CODE_RATE_LIMITED = "code_rate_limited"  # too many wrong codes for this user in the window


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """The answer to one request, before it is encoded.

    ``state`` is the opaque State attribute of an Access-Challenge; ``attributes`` are extra
    reply attributes by dictionary name (values already of the attribute's Python type).
    """

    outcome: Outcome
    reason: Reason
    reply_message: str | None = None
    state: bytes | None = field(default=None, repr=False)
    attributes: tuple[tuple[str, str | int | bytes], ...] = ()
    fic_auth_id: str | None = None


class PushStatus(enum.Enum):
    """The state of a FortiToken Mobile push as FIC reports it (shared/fic-api.md §6)."""

    WAITING = "waiting"
    APPROVED = "authenticated"
    DENIED = "rejected"


class PreviewAction(enum.Enum):
    """What FIC would do for a login (shared/fic-api.md §4)."""

    MFA = "MFA"
    BYPASS = "Bypass"
    BLOCK = "Block"


class AuthMethod(enum.Enum):
    """A user's second-factor method as FIC names it."""

    FTM = "FTM"  # FortiToken Mobile (push and codes)
    FTK = "FTK"  # hardware FortiToken (codes)
    SMS = "SMS"
    EMAIL = "Email"


@dataclass(frozen=True, kw_only=True, slots=True)
class Preview:
    """FIC's answer to ``POST /auth/preview``: what a login for this user would require."""

    action: PreviewAction
    auth_method: AuthMethod | None
    push_enabled: bool = False
    temp_token: bool = False
    message: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    """A FIC user, as far as the bridge and its CLI care (shared/fic-api.md §7)."""

    id: str
    username: str
    email: str | None = None
    mobile_number: str | None = None
    auth_method: str | None = None
    active: bool | None = None
    realm_id: str | None = None
    user_id: str | None = None
    fail_times: int | None = None
    lockout_at: str | None = None
    created_at: str | None = None
