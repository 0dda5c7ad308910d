"""Pure decisions: who the user is in FIC, which factor a password asks for, and what each FIC
answer or failure becomes (Accept, Reject or Challenge, per failmode).

Nothing here does I/O, reads a clock or logs; every function maps values to values, so the
service can be a thin sequence (identity, factor, FIC call, decision) and every rule is tested
as a table. The user-facing Reply-Message of every reason lives here, in one table, short and
free of internals: the NAS shows it to the person at the login prompt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

from radius_bridge.config import AuthConfig, Failmode, UsernameConfig
from radius_bridge.errors import (
    FicError,
    FicRateLimited,
    FicRejected,
    FicUnavailable,
    FicUnknownUser,
    FicUserLocked,
)
from radius_bridge.model import (
    AuthMethod,
    Decision,
    Factor,
    Outcome,
    Preview,
    PreviewAction,
    PushStatus,
    Reason,
)

# --- identity -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class FicIdentity:
    """The user as FIC knows them: ``username`` within ``realm`` (None: the app's own realm)."""

    username: str
    realm: str | None


def fic_identity(user_name: str, cfg: UsernameConfig, default_realm: str | None) -> FicIdentity:
    """The FIC user for a RADIUS User-Name: ``DOMAIN\\user`` and ``user@realm`` decoded.

    The qualifier is stripped from the name when ``strip_domain``/``strip_realm`` say so; either
    way it selects the FIC realm through ``realm_map`` (keys matched case-insensitively, the
    ``@realm`` suffix before the ``DOMAIN\\`` prefix), falling back to ``default_realm``.
    Raises ``ValueError`` when no user name is left (``"@realm"``, ``"DOMAIN\\"``, blanks).
    """
    name = user_name.strip()
    # The user part follows the last backslash (a Windows down-level logon name) and precedes
    # the "@" (RFC 7542 §2.2: the realm follows it; should there be several, the last counts).
    domain, backslash, after_domain = name.rpartition("\\")
    local, at, suffix = after_domain.rpartition("@")
    if not (local if at else after_domain).strip():
        raise ValueError("User-Name has no user part besides its domain or realm")
    user = local if at and cfg.strip_realm else after_domain
    if backslash and not cfg.strip_domain:
        user = f"{domain}\\{user}"
    user = user.strip()
    if cfg.lowercase:
        user = user.lower()
    realm = default_realm
    for qualifier in (suffix if at else "", domain if backslash else ""):
        mapped = cfg.realm_map.get(qualifier.strip().lower()) if qualifier else None
        if mapped is not None:
            realm = mapped
            break
    return FicIdentity(username=user, realm=realm)


# --- what the password asks for -----------------------------------------------------------------


def factor_for_password(password: str | None, cfg: AuthConfig) -> Factor:
    """The factor a PAP password asks for.

    ``EMPTY`` for no password, ``PUSH``/``SMS``/``EMAIL`` for a keyword (case-insensitive,
    surrounding blanks ignored), ``OTP`` for a code matching ``otp_pattern``, and
    ``UNSUPPORTED`` for anything else: a password of the wrong shape never reaches FIC, where it
    would only count toward the user's lockout (shared/fic-api.md §5.2).
    """
    typed = (password or "").strip()
    if not typed:
        return Factor.EMPTY
    keywords = {
        cfg.push_keyword.casefold(): Factor.PUSH,
        cfg.sms_keyword.casefold(): Factor.SMS,
        cfg.email_keyword.casefold(): Factor.EMAIL,
    }
    keyword_factor = keywords.get(typed.casefold())
    if keyword_factor is not None:
        return keyword_factor
    # FIC codes are ASCII digits; a pattern's \d also matches other scripts' digits ("١٢٣٤٥٦"),
    # which FIC could only refuse, one more step toward the user's lockout.
    if typed.isascii() and cfg.otp_pattern.fullmatch(typed):
        return Factor.OTP
    return Factor.UNSUPPORTED


class Step(enum.Enum):
    """What the service does next for an empty password, once FIC's preview has answered."""

    PUSH = "push"  # start a FortiToken Mobile push and wait for it
    CHALLENGE_FOR_CODE = "challenge_for_code"  # send nothing; challenge for a token code
    SEND_SMS = "send_sms"  # have FIC send a code by SMS, then challenge for it
    SEND_EMAIL = "send_email"  # have FIC send a code by e-mail, then challenge for it
    # Temporary token: POST /auth without auth_method, so FIC delivers by the temporary token's
    # own method (Email or SMS), which preview does not name (shared/fic-api.md §4, §9).
    SEND_CODE = "send_code"
    ACCEPT_BYPASS = "accept_bypass"
    REJECT_BLOCKED = "reject_blocked"


def step_after_preview(preview: Preview) -> Step:
    """The next step for a user whose preview answered (shared/fic-api.md §4, §9, §13)."""
    if preview.action is PreviewAction.BLOCK:
        return Step.REJECT_BLOCKED
    if preview.action is PreviewAction.BYPASS:
        # A bypass is FIC's administrator exempting this user; FIC remains the authority.
        return Step.ACCEPT_BYPASS
    if preview.temp_token:
        # The user's phone or token is out of use (lost phone): preview still names the
        # original method, but the codes now arrive by the temporary token's Email or SMS.
        return Step.SEND_CODE
    match preview.auth_method:
        case AuthMethod.SMS:
            return Step.SEND_SMS
        case AuthMethod.EMAIL:
            return Step.SEND_EMAIL
        case AuthMethod.FTM if preview.push_enabled:
            return Step.PUSH
        case _:
            # FTK, FTM with push turned off for the realm, or a method we do not know: a code
            # can still be checked, and asking for one grants nothing by itself.
            return Step.CHALLENGE_FOR_CODE


# --- decisions ----------------------------------------------------------------------------------

# Reasons that end in Access-Accept. Accepts carry no Reply-Message: the VPN connects and says so.
_ACCEPT_REASONS = frozenset(
    {
        Reason.OTP_ACCEPTED,
        Reason.PUSH_APPROVED,
        Reason.BYPASS,
        Reason.FIC_UNAVAILABLE_FAILOPEN,
        Reason.STATUS_SERVER,
    }
)

# The one table of what a person sees on a rejected login: short, actionable, no internals
# (no FIC status codes, no error text). Each fits one Reply-Message attribute (RFC 2865 §5.18).
REJECT_MESSAGES: MappingProxyType[Reason, str] = MappingProxyType(
    {
        Reason.OTP_REJECTED: "Wrong code. Try again.",
        Reason.PUSH_DENIED: "Push denied on your phone.",
        Reason.PUSH_TIMEOUT: "The push notification was not approved in time.",
        Reason.BLOCKED: "Sign-in blocked by MFA policy; contact your administrator.",
        Reason.UNKNOWN_USER: "No MFA account for this user; contact your administrator.",
        Reason.USER_LOCKED: "Your account is locked; try again later.",
        Reason.BAD_PASSWORD_FORMAT: "Enter a one-time code, or the keyword for push, SMS or email.",
        Reason.NO_USER_NAME: "Enter your user name.",
        Reason.UNSUPPORTED_SCHEME: "This sign-in method cannot carry an MFA code; "
        "contact your administrator.",
        Reason.STATE_INVALID: "Sign-in session not recognised; start again.",
        Reason.STATE_EXPIRED: "Sign-in session timed out; start again.",
        Reason.STATE_REPLAYED: "Sign-in step already used; start again.",
        Reason.FIC_UNAVAILABLE: "MFA service unavailable; try again later.",
        Reason.FIC_ERROR: "MFA service error; contact your administrator.",
        Reason.FIC_REFUSED: "MFA request refused for your account; contact your administrator.",
        Reason.RATE_LIMITED: "MFA service busy; try again in a few minutes.",
        Reason.OVERLOADED: "Server busy; try again shortly.",
        Reason.SHUTTING_DOWN: "Server restarting; try again shortly.",
        # Push-fatigue limits. The push already waiting may be an attacker's, timed to meet the
        # user's own login: the message must never tell the user to approve it.
        Reason.PUSH_ALREADY_PENDING: "A push for another sign-in is already waiting on your "
        "phone; deny it unless you started it, or type a code.",
        Reason.PUSH_RATE_LIMITED: "Too many push requests; type a code, or try push again "
        "in a few minutes.",
        Reason.PUSH_COOLDOWN: "A push was just denied; type a code, or wait a minute before "
        "asking for another push.",
        Reason.CODE_RATE_LIMITED: "Too many wrong codes; wait a few minutes and try again.",
    }
)

# What an Access-Challenge asks for, by the factor the returned code will be (RFC 2865 §4.4:
# Reply-Message is the prompt shown to the user).
CHALLENGE_PROMPTS: MappingProxyType[Factor, tuple[Reason, str]] = MappingProxyType(
    {
        # Nothing was sent: a FortiToken code, or one a temporary token delivered.
        Factor.OTP: (Reason.CHALLENGE_ISSUED, "Enter your one-time code."),
        Factor.SMS: (Reason.CODE_SENT, "Enter the code sent by SMS."),
        Factor.EMAIL: (Reason.CODE_SENT, "Enter the code sent by email."),
        Factor.PUSH: (
            Reason.CHALLENGE_ISSUED,
            "Approve the push on FortiToken Mobile, or type a code.",
        ),
    }
)


def accept(reason: Reason) -> Decision:
    """An Access-Accept for ``reason``, without attributes (the service adds the client's)."""
    if reason not in _ACCEPT_REASONS:
        raise ValueError(f"{reason} is not a reason to accept")
    return Decision(outcome=Outcome.ACCEPT, reason=reason)


def reject(reason: Reason) -> Decision:
    """An Access-Reject for ``reason``, with the user-facing message from ``REJECT_MESSAGES``."""
    message = REJECT_MESSAGES.get(reason)
    if message is None:
        raise ValueError(f"{reason} is not a reason to reject")
    return Decision(outcome=Outcome.REJECT, reason=reason, reply_message=message)


def challenge(factor: Factor, state: bytes) -> Decision:
    """An Access-Challenge that asks for the code ``factor`` names and carries ``state``."""
    prompt = CHALLENGE_PROMPTS.get(factor)
    if prompt is None:
        raise ValueError(f"no challenge prompt for {factor}")
    reason, message = prompt
    return Decision(outcome=Outcome.CHALLENGE, reason=reason, reply_message=message, state=state)


def decision_for_push(status: PushStatus | None) -> Decision:
    """The answer once a push has finished or its deadline passed (``None`` or ``WAITING``)."""
    match status:
        case PushStatus.APPROVED:
            return accept(Reason.PUSH_APPROVED)
        case PushStatus.DENIED:
            return reject(Reason.PUSH_DENIED)
        case _:
            # No documented "expired" status exists (shared/fic-api.md §6): our deadline decides.
            return reject(Reason.PUSH_TIMEOUT)


def decision_for_fic_error(
    error: FicError, *, second_factor_sent: bool, failmode: Failmode, factor: Factor
) -> Decision:
    """What a failed FIC call becomes.

    ``second_factor_sent`` says a push or code may already have reached FIC or the user (the
    caller folds ``FicUnavailable.reached_fic`` into it). Failmode ``open`` accepts only when
    FIC is unreachable, before anything was sent, and never for the answer to a challenge.
    """
    match error:
        case FicUserLocked():
            return reject(Reason.USER_LOCKED)
        case FicUnknownUser():
            return reject(Reason.UNKNOWN_USER)
        case FicRejected():
            # FIC judged a code: it was wrong. Without a code, FIC refused to push or send one.
            is_code = factor in (Factor.OTP, Factor.CHALLENGE_RESPONSE)
            return reject(Reason.OTP_REJECTED if is_code else Reason.FIC_REFUSED)
        case FicRateLimited():
            # Never fail open on a throttle, whatever the failmode: anyone holding a stolen
            # password can provoke 429s by repeating logins (60 requests per 5 minutes on trial
            # accounts, shared/fic-api.md §11), and open mode would then switch MFA off for them.
            return reject(Reason.RATE_LIMITED)
        case FicUnavailable():
            # A challenge answer means FIC answered seconds ago and the user was already asked
            # for a code: letting it in unchecked would accept whatever was typed.
            already_in_mfa = second_factor_sent or factor is Factor.CHALLENGE_RESPONSE
            if failmode is Failmode.OPEN and not already_in_mfa:
                return accept(Reason.FIC_UNAVAILABLE_FAILOPEN)
            return reject(Reason.FIC_UNAVAILABLE)
        case _:
            # FicCredentialsRefused, FicProtocolError and anything unforeseen: FIC is reachable
            # but the bridge is misconfigured or FIC changed. Failmode open exists for FIC being
            # down, not for a revoked client secret or an answer we cannot read; failing open
            # there would turn one configuration mistake into MFA off for everyone.
            return reject(Reason.FIC_ERROR)
