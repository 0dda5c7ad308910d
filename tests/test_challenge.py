"""Access-Challenge State tokens: round trip, binding, tampering, expiry, replay, memory bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radius_bridge.challenge import (
    MAX_CLOCK_SKEW,
    NONCE_SIZE,
    STATE_SIZE,
    ChallengeStates,
    ChallengeTicket,
    StateError,
    StateExpired,
    StateInvalid,
    StateReplayed,
)
from radius_bridge.errors import BridgeError
from radius_bridge.model import Factor, Reason

KEY = b"k" * 32
TTL = 120.0
T0 = 1_800_000_000.0  # wall-clock seconds


def nonce(n: int) -> bytes:
    return n.to_bytes(NONCE_SIZE, "big")


def make_states(key: bytes = KEY, *, max_outstanding: int = 100_000) -> ChallengeStates:
    return ChallengeStates(key, ttl=TTL, max_outstanding=max_outstanding)


def issue(
    states: ChallengeStates,
    n: int = 1,
    *,
    user: str = "alice",
    client: str = "vpn1",
    factor: Factor = Factor.SMS,
    now: float = T0,
) -> bytes:
    return states.issue(user_name=user, client=client, factor=factor, now=now, nonce=nonce(n))


def test_round_trip_returns_what_was_issued() -> None:
    """A State redeemed by the same user and client yields the ticket it was issued for."""
    states = make_states()
    state = issue(states, 7, factor=Factor.EMAIL)
    ticket = states.redeem(state, user_name="alice", client="vpn1", now=T0 + 30)
    assert ticket == ChallengeTicket(
        user_name="alice", client="vpn1", factor=Factor.EMAIL, issued_at=T0, nonce=nonce(7)
    )


@pytest.mark.parametrize("factor", [Factor.OTP, Factor.SMS, Factor.EMAIL, Factor.PUSH])
def test_every_challenge_factor_survives_the_round_trip(factor: Factor) -> None:
    """The factor the code will be comes back unchanged from the State."""
    states = make_states()
    state = issue(states, factor=factor)
    assert states.redeem(state, user_name="alice", client="vpn1", now=T0).factor is factor


@pytest.mark.parametrize("user", ["", "a", "x" * 253, "josé@example.com", "DOM\\ü"])
def test_state_fits_one_attribute_whatever_the_user_name(user: str) -> None:
    """The State is a fixed 42 octets (RFC 2865 §5.24 allows 253), however long the name."""
    states = make_states()
    state = issue(states, user=user)
    assert len(state) == STATE_SIZE <= 253
    assert states.redeem(state, user_name=user, client="vpn1", now=T0).user_name == user


def test_two_states_for_the_same_login_differ() -> None:
    """Different nonces give different States, so one cannot stand in for another."""
    states = make_states()
    assert issue(states, 1) != issue(states, 2)


@pytest.mark.parametrize(
    ("user", "client"),
    [("bob", "vpn1"), ("Alice", "vpn1"), ("alice ", "vpn1"), ("alice", "vpn2"), ("alicev", "pn1")],
)
def test_state_is_bound_to_user_and_client(user: str, client: str) -> None:
    """A State returned for another User-Name or by another client is invalid."""
    states = make_states()
    state = issue(states)
    with pytest.raises(StateInvalid, match="MAC"):
        states.redeem(state, user_name=user, client=client, now=T0)


def test_user_and_client_cannot_trade_bytes() -> None:
    """Moving bytes between User-Name and client name (NULs included) breaks the MAC."""
    states = make_states()
    state = issue(states, user="a\x00\x00\x00\x06w", client="z")
    with pytest.raises(StateInvalid):
        states.redeem(state, user_name="a", client="w\x00\x00\x00\x01z", now=T0)


@pytest.mark.parametrize("position", range(STATE_SIZE))
def test_any_altered_byte_is_rejected(position: int) -> None:
    """Flipping one bit anywhere in the State makes it invalid."""
    states = make_states()
    state = bytearray(issue(states))
    state[position] ^= 0x01
    with pytest.raises(StateInvalid):
        states.redeem(bytes(state), user_name="alice", client="vpn1", now=T0)


@pytest.mark.parametrize(
    "state",
    [b"", b"\x01", b"fic:" + b"0" * 32, bytes(STATE_SIZE), bytes(253)],
    ids=["empty", "one", "foreign", "zeros", "long"],
)
def test_foreign_states_are_invalid(state: bytes) -> None:
    """A State this bridge did not issue (another server's, or garbage) is invalid."""
    with pytest.raises(StateInvalid):
        make_states().redeem(state, user_name="alice", client="vpn1", now=T0)


def test_truncated_or_extended_state_is_invalid() -> None:
    """A genuine State with a byte cut off or added is invalid."""
    states = make_states()
    state = issue(states)
    for variant in (state[:-1], state + b"\x00", state[1:]):
        with pytest.raises(StateInvalid):
            states.redeem(variant, user_name="alice", client="vpn1", now=T0)


def test_state_expires_after_ttl() -> None:
    """A State is good for exactly ttl seconds and expired after."""
    states = make_states()
    at_limit, late = issue(states, 1), issue(states, 2)
    states.redeem(at_limit, user_name="alice", client="vpn1", now=T0 + TTL)
    with pytest.raises(StateExpired, match="valid for 120 s"):
        states.redeem(late, user_name="alice", client="vpn1", now=T0 + TTL + 0.001)


def test_state_from_the_future_is_tolerated_only_within_clock_skew() -> None:
    """An instance whose clock is slightly ahead is tolerated; far ahead is invalid."""
    states = make_states()
    near, far = issue(states, 1, now=T0 + MAX_CLOCK_SKEW), issue(states, 2, now=T0 + 3600)
    states.redeem(near, user_name="alice", client="vpn1", now=T0)
    with pytest.raises(StateInvalid, match="future"):
        states.redeem(far, user_name="alice", client="vpn1", now=T0)


def test_state_is_single_use() -> None:
    """A second redemption of the same State is a replay, even by the same user and client."""
    states = make_states()
    state = issue(states)
    states.redeem(state, user_name="alice", client="vpn1", now=T0 + 1)
    with pytest.raises(StateReplayed):
        states.redeem(state, user_name="alice", client="vpn1", now=T0 + 2)


def test_replay_after_expiry_is_still_refused_once_forgotten() -> None:
    """After its lifetime a used State is forgotten, and then refused as expired."""
    states = make_states()
    state = issue(states)
    states.redeem(state, user_name="alice", client="vpn1", now=T0)
    assert len(states) == 1
    later = issue(states, 2, now=T0 + TTL + 1)
    states.redeem(later, user_name="alice", client="vpn1", now=T0 + TTL + 1)
    assert len(states) == 1  # the first nonce was forgotten when the second arrived
    with pytest.raises(StateExpired):
        states.redeem(state, user_name="alice", client="vpn1", now=T0 + TTL + 1)


def test_another_instance_with_the_same_key_verifies() -> None:
    """Any instance holding the key verifies a State another one issued."""
    state = issue(make_states())
    ticket = make_states(key=bytes(KEY)).redeem(state, user_name="alice", client="vpn1", now=T0)
    assert ticket.nonce == nonce(1)


def test_an_instance_with_another_key_rejects() -> None:
    """A State issued under another key is invalid."""
    state = issue(make_states())
    with pytest.raises(StateInvalid):
        make_states(key=b"o" * 32).redeem(state, user_name="alice", client="vpn1", now=T0)


def test_memory_is_bounded_and_never_lets_a_replay_through() -> None:
    """With the record full, the oldest nonce is forgotten and older States are refused."""
    states = make_states(max_outstanding=3)
    old_unused = issue(states, 100, now=T0)
    tickets = [issue(states, n, now=T0 + n) for n in range(1, 6)]
    for n, state in enumerate(tickets, start=1):
        states.redeem(state, user_name="alice", client="vpn1", now=T0 + 10)
        assert len(states) == min(n, 3)
    # Nonces 1 and 2 were forgotten; their States and anything as old are refused now.
    for state in (tickets[0], tickets[1], old_unused):
        with pytest.raises(StateExpired, match="max_outstanding"):
            states.redeem(state, user_name="alice", client="vpn1", now=T0 + 10)
    for state in tickets[2:]:
        with pytest.raises(StateReplayed):
            states.redeem(state, user_name="alice", client="vpn1", now=T0 + 10)
    fresh = issue(states, 6, now=T0 + 6)
    states.redeem(fresh, user_name="alice", client="vpn1", now=T0 + 10)


def test_memory_empties_as_states_expire() -> None:
    """Remembered nonces are dropped once their States have expired."""
    states = make_states()
    for n in range(50):
        states.redeem(issue(states, n, now=T0), user_name="alice", client="vpn1", now=T0)
    assert len(states) == 50
    late = issue(states, 99, now=T0 + TTL + 1)
    states.redeem(late, user_name="alice", client="vpn1", now=T0 + TTL + 1)
    assert len(states) == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (StateInvalid, Reason.STATE_INVALID),
        (StateExpired, Reason.STATE_EXPIRED),
        (StateReplayed, Reason.STATE_REPLAYED),
    ],
)
def test_state_errors_name_their_reject_reason(error: type[StateError], reason: Reason) -> None:
    """Each State error is a BridgeError carrying the Reason the Access-Reject reports."""
    assert issubclass(error, BridgeError)
    assert error("x").reason is reason


def test_issue_refuses_bad_arguments() -> None:
    """A factor that is not a code, a short nonce or an endless time is a programming error."""
    states = make_states()
    with pytest.raises(ValueError, match="cannot ask for"):
        issue(states, factor=Factor.EMPTY)
    with pytest.raises(ValueError, match="nonce"):
        states.issue(user_name="a", client="c", factor=Factor.OTP, now=T0, nonce=b"short")
    with pytest.raises(ValueError, match="finite"):
        states.issue(user_name="a", client="c", factor=Factor.OTP, now=float("inf"), nonce=nonce(1))


@pytest.mark.parametrize(
    ("key", "ttl", "max_outstanding", "problem"),
    [
        (b"short", TTL, 10, "key"),
        (KEY, 0.0, 10, "ttl"),
        (KEY, float("nan"), 10, "ttl"),
        (KEY, TTL, 0, "max_outstanding"),
    ],
)
def test_constructor_refuses_weak_or_meaningless_settings(
    key: bytes, ttl: float, max_outstanding: int, problem: str
) -> None:
    """A key under 16 bytes, a non-positive ttl or an empty record is refused."""
    with pytest.raises(ValueError, match=problem):
        ChallengeStates(key, ttl=ttl, max_outstanding=max_outstanding)


@given(state=st.binary(max_size=300), user=st.text(max_size=20), now=st.floats())
def test_any_bytes_give_a_ticket_or_a_state_error(state: bytes, user: str, now: float) -> None:
    """Whatever a NAS sends as State, redeem raises a StateError and nothing else."""
    with pytest.raises(StateError):
        make_states().redeem(state, user_name=user, client="vpn1", now=now)
