"""Tables for the pure decisions in ``radius_bridge.policy``."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import re
from types import MappingProxyType

import pytest

from radius_bridge import errors, policy
from radius_bridge.config import AuthConfig, Failmode, UsernameConfig
from radius_bridge.model import (
    AuthMethod,
    Factor,
    Outcome,
    Preview,
    PreviewAction,
    PushStatus,
    Reason,
)
from radius_bridge.policy import FicIdentity, Step

# --- identity -----------------------------------------------------------------------------------

REALMS = UsernameConfig(
    realm_map=MappingProxyType({"example.com": "corp", "lab.example.com": "lab", "acme": "acme-r"})
)
KEEP_ALL = UsernameConfig(
    strip_domain=False, strip_realm=False, lowercase=False, realm_map=REALMS.realm_map
)


@pytest.mark.parametrize(
    ("user_name", "cfg", "default_realm", "expected"),
    [
        ("alice", UsernameConfig(), None, FicIdentity(username="alice", realm=None)),
        ("alice", UsernameConfig(), "main", FicIdentity(username="alice", realm="main")),
        ("  alice \t", UsernameConfig(), None, FicIdentity(username="alice", realm=None)),
        ("Alice", UsernameConfig(), None, FicIdentity(username="alice", realm=None)),
        ("ALICE", UsernameConfig(lowercase=False), None, FicIdentity(username="ALICE", realm=None)),
        ("CORP\\Alice", UsernameConfig(), None, FicIdentity(username="alice", realm=None)),
        ("A\\B\\alice", UsernameConfig(), None, FicIdentity(username="alice", realm=None)),
        (
            "alice@example.com",
            UsernameConfig(),
            "main",
            FicIdentity(username="alice", realm="main"),
        ),
        ("alice@example.com", REALMS, "main", FicIdentity(username="alice", realm="corp")),
        ("alice@EXAMPLE.Com", REALMS, None, FicIdentity(username="alice", realm="corp")),
        ("alice@lab.example.com", REALMS, None, FicIdentity(username="alice", realm="lab")),
        # Exact match only: a subdomain that is not in the map gets the default realm.
        ("alice@eu.example.com", REALMS, "main", FicIdentity(username="alice", realm="main")),
        ("alice@other.org", REALMS, "main", FicIdentity(username="alice", realm="main")),
        ("ACME\\alice", REALMS, "main", FicIdentity(username="alice", realm="acme-r")),
        # The @realm suffix is more specific than the domain prefix and wins.
        ("ACME\\alice@example.com", REALMS, None, FicIdentity(username="alice", realm="corp")),
        ("ACME\\alice@other.org", REALMS, None, FicIdentity(username="alice", realm="acme-r")),
        ("bob@host@example.com", REALMS, None, FicIdentity(username="bob@host", realm="corp")),
        ("alice@", REALMS, "main", FicIdentity(username="alice", realm="main")),
        (
            "alice@example.com",
            UsernameConfig(strip_realm=False),
            None,
            FicIdentity(username="alice@example.com", realm=None),
        ),
        (
            "Alice@Example.com",
            KEEP_ALL,
            None,
            FicIdentity(username="Alice@Example.com", realm="corp"),
        ),
        (
            "CORP\\Alice",
            UsernameConfig(strip_domain=False),
            None,
            FicIdentity(username="corp\\alice", realm=None),
        ),
        ("ACME\\Alice", KEEP_ALL, None, FicIdentity(username="ACME\\Alice", realm="acme-r")),
        ("josé@example.com", REALMS, None, FicIdentity(username="josé", realm="corp")),
    ],
)
def test_fic_identity(
    user_name: str, cfg: UsernameConfig, default_realm: str | None, expected: FicIdentity
) -> None:
    """A User-Name becomes the FIC user name and realm the username settings describe."""
    assert policy.fic_identity(user_name, cfg, default_realm) == expected


@pytest.mark.parametrize(
    "user_name", ["", "   ", "@example.com", "CORP\\", "CORP\\@example.com", " @x", "\\"]
)
@pytest.mark.parametrize("cfg", [UsernameConfig(), KEEP_ALL], ids=["strip", "keep"])
def test_fic_identity_without_a_user_part_is_refused(user_name: str, cfg: UsernameConfig) -> None:
    """A User-Name that is only a domain, a realm or blanks raises ValueError, stripped or not."""
    with pytest.raises(ValueError, match="no user part"):
        policy.fic_identity(user_name, cfg, "main")


def test_fic_identity_is_hashable() -> None:
    """Identities can key the service's in-flight maps."""
    first = policy.fic_identity("Alice", UsernameConfig(), None)
    assert {first: 1}[policy.fic_identity("alice", UsernameConfig(), None)] == 1


# --- factor for a password ----------------------------------------------------------------------

CUSTOM = AuthConfig(
    push_keyword="Approve",
    sms_keyword="texto",
    email_keyword="courriel",
    otp_pattern=re.compile(r"[0-9]{4}"),
)


@pytest.mark.parametrize(
    ("password", "cfg", "expected"),
    [
        (None, AuthConfig(), Factor.EMPTY),
        ("", AuthConfig(), Factor.EMPTY),
        ("   ", AuthConfig(), Factor.EMPTY),
        ("push", AuthConfig(), Factor.PUSH),
        ("PUSH", AuthConfig(), Factor.PUSH),
        (" Push ", AuthConfig(), Factor.PUSH),
        ("sms", AuthConfig(), Factor.SMS),
        ("SMS", AuthConfig(), Factor.SMS),
        ("email", AuthConfig(), Factor.EMAIL),
        ("eMail\t", AuthConfig(), Factor.EMAIL),
        ("123456", AuthConfig(), Factor.OTP),
        ("012345", AuthConfig(), Factor.OTP),
        (" 12345678 ", AuthConfig(), Factor.OTP),
        ("12345", AuthConfig(), Factor.UNSUPPORTED),
        ("123456789", AuthConfig(), Factor.UNSUPPORTED),
        ("12345a", AuthConfig(), Factor.UNSUPPORTED),
        ("123 456", AuthConfig(), Factor.UNSUPPORTED),
        ("pushh", AuthConfig(), Factor.UNSUPPORTED),
        ("push123456", AuthConfig(), Factor.UNSUPPORTED),
        ("hunter2", AuthConfig(), Factor.UNSUPPORTED),
        # Python's \d also matches other scripts' digits, which FIC would only count as failures.
        ("١٢٣٤٥٦", AuthConfig(), Factor.UNSUPPORTED),
        ("\uff11\uff12\uff13\uff14\uff15\uff16", AuthConfig(), Factor.UNSUPPORTED),  # fullwidth
        ("approve", CUSTOM, Factor.PUSH),
        ("TEXTO", CUSTOM, Factor.SMS),
        ("Courriel", CUSTOM, Factor.EMAIL),
        ("push", CUSTOM, Factor.UNSUPPORTED),
        ("1234", CUSTOM, Factor.OTP),
        ("123456", CUSTOM, Factor.UNSUPPORTED),
    ],
)
def test_factor_for_password(password: str | None, cfg: AuthConfig, expected: Factor) -> None:
    """Keywords (any case), codes (full match of otp_pattern) and blanks map to their factor."""
    assert policy.factor_for_password(password, cfg) is expected


# --- step after preview -------------------------------------------------------------------------

METHODS = [AuthMethod.FTM, AuthMethod.FTK, AuthMethod.SMS, AuthMethod.EMAIL, None]


@pytest.mark.parametrize(
    ("action", "method", "push_enabled", "temp_token"),
    [
        (action, method, push, temp)
        for action in (PreviewAction.BLOCK, PreviewAction.BYPASS)
        for method, push, temp in itertools.product(METHODS, (False, True), (False, True))
    ],
)
def test_block_and_bypass_do_not_depend_on_the_method(
    action: PreviewAction, method: AuthMethod | None, push_enabled: bool, temp_token: bool
) -> None:
    """Block always rejects and Bypass always accepts, whatever the user's method."""
    preview = Preview(
        action=action, auth_method=method, push_enabled=push_enabled, temp_token=temp_token
    )
    expected = Step.REJECT_BLOCKED if action is PreviewAction.BLOCK else Step.ACCEPT_BYPASS
    assert policy.step_after_preview(preview) is expected


@pytest.mark.parametrize(
    ("method", "push_enabled", "temp_token", "expected"),
    [
        (AuthMethod.FTM, True, False, Step.PUSH),
        (AuthMethod.FTM, False, False, Step.CHALLENGE_FOR_CODE),
        (AuthMethod.FTK, False, False, Step.CHALLENGE_FOR_CODE),
        (AuthMethod.FTK, True, False, Step.CHALLENGE_FOR_CODE),
        (AuthMethod.SMS, False, False, Step.SEND_SMS),
        (AuthMethod.SMS, True, False, Step.SEND_SMS),
        (AuthMethod.EMAIL, False, False, Step.SEND_EMAIL),
        (AuthMethod.EMAIL, True, False, Step.SEND_EMAIL),
        (None, False, False, Step.CHALLENGE_FOR_CODE),
        (None, True, False, Step.CHALLENGE_FOR_CODE),
        # A temporary token means codes by its own Email or SMS, whatever the original method.
        (AuthMethod.FTM, True, True, Step.SEND_CODE),
        (AuthMethod.FTM, False, True, Step.SEND_CODE),
        (AuthMethod.FTK, False, True, Step.SEND_CODE),
        (AuthMethod.FTK, True, True, Step.SEND_CODE),
        (AuthMethod.SMS, False, True, Step.SEND_CODE),
        (AuthMethod.SMS, True, True, Step.SEND_CODE),
        (AuthMethod.EMAIL, False, True, Step.SEND_CODE),
        (AuthMethod.EMAIL, True, True, Step.SEND_CODE),
        (None, False, True, Step.SEND_CODE),
        (None, True, True, Step.SEND_CODE),
    ],
)
def test_step_after_mfa_preview(
    method: AuthMethod | None, push_enabled: bool, temp_token: bool, expected: Step
) -> None:
    """An MFA preview leads to push, a sent code, or a challenge for a token code."""
    preview = Preview(
        action=PreviewAction.MFA,
        auth_method=method,
        push_enabled=push_enabled,
        temp_token=temp_token,
    )
    assert policy.step_after_preview(preview) is expected


# --- FIC errors ---------------------------------------------------------------------------------


def _error(cls: type[errors.FicError]) -> errors.FicError:
    if issubclass(cls, errors.FicRateLimited):
        return cls("POST /auth", "slow down", retry_after=300.0)
    if issubclass(cls, errors.FicUnavailable):
        return cls("POST /auth", "connection refused", reached_fic=False)
    return cls("POST /auth", "refused", status=400)


# The decision for every FicError class apart from failmode: (reason for a code, other reason).
REJECT_FOR = {
    errors.FicError: (Reason.FIC_ERROR, Reason.FIC_ERROR),
    errors.FicUnavailable: (Reason.FIC_UNAVAILABLE, Reason.FIC_UNAVAILABLE),
    errors.FicRateLimited: (Reason.RATE_LIMITED, Reason.RATE_LIMITED),
    errors.FicRejected: (Reason.OTP_REJECTED, Reason.FIC_REFUSED),
    errors.FicUnknownUser: (Reason.UNKNOWN_USER, Reason.UNKNOWN_USER),
    errors.FicUserLocked: (Reason.USER_LOCKED, Reason.USER_LOCKED),
    errors.FicCredentialsRefused: (Reason.FIC_ERROR, Reason.FIC_ERROR),
    errors.FicProtocolError: (Reason.FIC_ERROR, Reason.FIC_ERROR),
}
CODE_FACTORS = (Factor.OTP, Factor.CHALLENGE_RESPONSE)
ALL_FACTORS = tuple(Factor)


def test_every_fic_error_class_has_a_decided_outcome() -> None:
    """The table covers every FicError class in errors.py, so a new one forces a decision."""
    defined = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.FicError)
    }
    assert defined == set(REJECT_FOR)


@pytest.mark.parametrize("cls", list(REJECT_FOR), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("failmode", list(Failmode))
@pytest.mark.parametrize("sent", [False, True], ids=["nothing_sent", "sent"])
@pytest.mark.parametrize("factor", ALL_FACTORS, ids=lambda f: f.value)
def test_decision_for_fic_error(
    cls: type[errors.FicError], failmode: Failmode, sent: bool, factor: Factor
) -> None:
    """Only an unreachable FIC, in open mode, before anything was sent, outside a challenge,
    accepts; everything else rejects with the reason of its class."""
    decision = policy.decision_for_fic_error(
        _error(cls), second_factor_sent=sent, failmode=failmode, factor=factor
    )
    fails_open = (
        cls is errors.FicUnavailable
        and failmode is Failmode.OPEN
        and not sent
        and factor is not Factor.CHALLENGE_RESPONSE
    )
    if fails_open:
        assert decision == policy.accept(Reason.FIC_UNAVAILABLE_FAILOPEN)
    else:
        code_reason, other_reason = REJECT_FOR[cls]
        expected = code_reason if factor in CODE_FACTORS else other_reason
        assert decision == policy.reject(expected)


@pytest.mark.parametrize(
    ("error", "failmode", "sent", "factor", "outcome", "reason"),
    [
        # The cases an operator asks about, spelled out.
        (errors.FicRejected("POST /auth", "bad code", status=401), Failmode.OPEN, False,
         Factor.OTP, Outcome.REJECT, Reason.OTP_REJECTED),
        (errors.FicUnavailable("POST /auth", "timeout"), Failmode.OPEN, False,
         Factor.OTP, Outcome.ACCEPT, Reason.FIC_UNAVAILABLE_FAILOPEN),
        (errors.FicUnavailable("GET /auth/x", "timeout"), Failmode.OPEN, True,
         Factor.PUSH, Outcome.REJECT, Reason.FIC_UNAVAILABLE),
        (errors.FicUnavailable("POST /auth/preview", "503", status=503), Failmode.SECURE, False,
         Factor.EMPTY, Outcome.REJECT, Reason.FIC_UNAVAILABLE),
        (errors.FicRateLimited("POST /auth", "429"), Failmode.OPEN, False,
         Factor.PUSH, Outcome.REJECT, Reason.RATE_LIMITED),
        (errors.FicCredentialsRefused("POST /login", "401", status=401), Failmode.OPEN, False,
         Factor.OTP, Outcome.REJECT, Reason.FIC_ERROR),
        (errors.FicRejected("POST /auth", "no mobile number", status=400), Failmode.SECURE,
         True, Factor.SMS, Outcome.REJECT, Reason.FIC_REFUSED),
    ],
)  # fmt: skip
def test_decision_for_fic_error_examples(
    error: errors.FicError,
    failmode: Failmode,
    sent: bool,
    factor: Factor,
    outcome: Outcome,
    reason: Reason,
) -> None:
    """A wrong code rejects even in open mode; only an unreachable FIC before sending accepts."""
    decision = policy.decision_for_fic_error(
        error, second_factor_sent=sent, failmode=failmode, factor=factor
    )
    assert (decision.outcome, decision.reason) == (outcome, reason)


# --- push ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "reason", "message"),
    [
        (PushStatus.APPROVED, Outcome.ACCEPT, Reason.PUSH_APPROVED, None),
        (PushStatus.DENIED, Outcome.REJECT, Reason.PUSH_DENIED, "Push denied on your phone."),
        (
            PushStatus.WAITING,
            Outcome.REJECT,
            Reason.PUSH_TIMEOUT,
            "The push notification was not approved in time.",
        ),
        (
            None,
            Outcome.REJECT,
            Reason.PUSH_TIMEOUT,
            "The push notification was not approved in time.",
        ),
    ],
)
def test_decision_for_push(
    status: PushStatus | None, outcome: Outcome, reason: Reason, message: str | None
) -> None:
    """Approved accepts, denied rejects, and a push still unanswered at the deadline times out."""
    decision = policy.decision_for_push(status)
    assert (decision.outcome, decision.reason, decision.reply_message) == (
        outcome,
        reason,
        message,
    )


# --- decisions and their messages ---------------------------------------------------------------


def test_every_reason_belongs_to_exactly_one_kind_of_answer() -> None:
    """Each Reason either accepts, rejects with a message, or names a challenge; never two."""
    for reason in Reason:
        kinds = []
        with contextlib.suppress(ValueError):
            kinds.append(policy.accept(reason).outcome)
        with contextlib.suppress(ValueError):
            kinds.append(policy.reject(reason).outcome)
        if any(r is reason for r, _ in policy.CHALLENGE_PROMPTS.values()):
            kinds.append(Outcome.CHALLENGE)
        assert len(kinds) == 1, (reason, kinds)


@pytest.mark.parametrize("reason", list(policy.REJECT_MESSAGES), ids=lambda r: r.value)
def test_reject_carries_its_short_message(reason: Reason) -> None:
    """A reject carries its table message: one Reply-Message (<= 253 octets), no internals."""
    decision = policy.reject(reason)
    assert decision.outcome is Outcome.REJECT
    assert decision.reply_message == policy.REJECT_MESSAGES[reason]
    assert decision.state is None and decision.attributes == ()
    message = decision.reply_message
    assert 0 < len(message.encode()) <= 253
    assert not re.search(r"FIC|HTTP|\d{3}|error:|Traceback", message.replace("MFA", ""))


def test_reject_messages_are_distinct() -> None:
    """No two reasons show the user the same text, so a screenshot tells support the reason."""
    messages = list(policy.REJECT_MESSAGES.values())
    assert len(messages) == len(set(messages))


@pytest.mark.parametrize(
    "reason",
    [Reason.OTP_ACCEPTED, Reason.PUSH_APPROVED, Reason.BYPASS, Reason.FIC_UNAVAILABLE_FAILOPEN],
)
def test_accept_carries_no_attributes(reason: Reason) -> None:
    """An accept has no message, State or attributes: the service adds the client's."""
    decision = policy.accept(reason)
    assert decision.outcome is Outcome.ACCEPT and decision.reason is reason
    assert (decision.reply_message, decision.state, decision.attributes) == (None, None, ())


@pytest.mark.parametrize(
    ("factor", "reason", "message"),
    [
        (Factor.SMS, Reason.CODE_SENT, "Enter the code sent by SMS."),
        (Factor.EMAIL, Reason.CODE_SENT, "Enter the code sent by email."),
        (Factor.OTP, Reason.CHALLENGE_ISSUED, "Enter your one-time code."),
        (
            Factor.PUSH,
            Reason.CHALLENGE_ISSUED,
            "Approve the push on FortiToken Mobile, or type a code.",
        ),
    ],
)
def test_challenge_prompts_for_the_code(factor: Factor, reason: Reason, message: str) -> None:
    """A challenge carries the State and a prompt naming where the code comes from."""
    decision = policy.challenge(factor, b"state-octets")
    assert decision.outcome is Outcome.CHALLENGE
    assert (decision.reason, decision.reply_message, decision.state) == (
        reason,
        message,
        b"state-octets",
    )


@pytest.mark.parametrize(
    "factor", [Factor.EMPTY, Factor.UNSUPPORTED, Factor.NONE, Factor.CHALLENGE_RESPONSE]
)
def test_challenge_refuses_factors_without_a_code(factor: Factor) -> None:
    """Asking to challenge for something that is not a code is a programming error."""
    with pytest.raises(ValueError, match="no challenge prompt"):
        policy.challenge(factor, b"s")


def test_already_pending_message_never_asks_to_approve_the_waiting_push() -> None:
    """The waiting push may be an attacker's, timed to meet this login: the message tells the
    user to deny it unless theirs, never to approve it, and offers a code instead."""
    message = policy.reject(Reason.PUSH_ALREADY_PENDING).reply_message
    assert message is not None
    assert "approve" not in message.lower()
    assert "deny it unless you started it" in message and "code" in message


@pytest.mark.parametrize(
    "reason", [Reason.PUSH_RATE_LIMITED, Reason.PUSH_COOLDOWN, Reason.PUSH_ALREADY_PENDING]
)
def test_push_refusals_point_to_a_code(reason: Reason) -> None:
    """Every push refusal tells the user that a code still works, so nobody is stuck."""
    message = policy.reject(reason).reply_message
    assert message is not None and "type a code" in message
