"""End to end: push-fatigue limits, the wrong-code limit and the caps on pushes and challenges,
with pyrad's client against a real bridge and the FIC simulator over HTTP."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge_harness import RADIUS_SECRET, RunningBridge
from conftest import LogStream
from pyrad import packet
from test_bridge import CODEC, completed, exchange, login, messages, wait_until

from radius_bridge.simulator import FicSimulator, SimUser

RATE_LIMITED = "Too many push requests; type a code, or try push again in a few minutes."
COOLDOWN = "A push was just denied; type a code, or wait a minute before asking for another push."
ALREADY_PENDING = (
    "A push for another sign-in is already waiting on your phone; deny it unless you started "
    "it, or type a code."
)
CODES_LIMITED = "Too many wrong codes; wait a few minutes and try again."
OVERLOADED = "Server busy; try again shortly."


def in_background(function: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``function`` on a thread; its result lands in the returned list."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(function()))
    thread.start()
    return thread, results


def pushes(sim: FicSimulator) -> dict[str, int]:
    counts: dict[str, int] = sim.counters()["pushes"]
    return counts


# -- pushes per user ------------------------------------------------------------------------------


def test_fourth_push_in_the_window_is_refused_by_default_without_reaching_fic(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """With the defaults (3 pushes per 5 minutes) the fourth push is refused and never sent."""
    for _ in range(3):
        assert login(bridge, "alice", "push").code == packet.AccessAccept
    reply = login(bridge, "alice", "push")
    assert reply.code == packet.AccessReject
    assert messages(reply) == [RATE_LIMITED]
    assert pushes(sim) == {"alice": 3}
    line = completed(log_stream)[-1]
    assert (line["reason"], line["outcome"], line["factor"]) == (
        "push_rate_limited",
        "reject",
        "push",
    )
    assert line["level"] == "warning" and "limits.pushes_per_user" in line["detail"]
    assert 0 < line["retry_after_s"] <= 300


def test_third_push_refused_while_codes_still_work(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """With pushes_per_user 2, the third push is refused; the user's code is still accepted."""
    bridge = make_bridge({"limits": {"pushes_per_user": 2}})
    for _ in range(2):
        assert login(bridge, "alice", "push").code == packet.AccessAccept
    reply = login(bridge, "alice", "push")
    assert (reply.code, messages(reply)) == (packet.AccessReject, [RATE_LIMITED])
    assert login(bridge, "alice", "123456").code == packet.AccessAccept
    assert pushes(sim) == {"alice": 2}
    assert [line["reason"] for line in completed(log_stream)] == [
        "push_approved",
        "push_approved",
        "push_rate_limited",
        "otp_accepted",
    ]


def test_a_joined_login_does_not_count_as_a_push(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """Two logins joined on one push count once toward pushes_per_user."""
    bridge = make_bridge({"limits": {"pushes_per_user": 1}})
    sim.add_user(SimUser("judy", "judy@example.com", push_delay=0.8))
    first, first_result = in_background(lambda: login(bridge, "judy", "push").code)
    wait_until(lambda: len(bridge.bridge.pending) == 1, timeout=3)
    assert login(bridge, "judy", "push").code == packet.AccessAccept  # joins
    first.join(10)
    assert first_result == [packet.AccessAccept]
    assert login(bridge, "judy", "push").code == packet.AccessReject
    assert pushes(sim) == {"judy": 1}
    assert [line["reason"] for line in completed(log_stream)][-1] == "push_rate_limited"


def test_zero_turns_the_push_limit_off(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """pushes_per_user 0: four pushes in a row all go to the phone."""
    bridge = make_bridge({"limits": {"pushes_per_user": 0}})
    for _ in range(4):
        assert login(bridge, "alice", "push").code == packet.AccessAccept
    assert pushes(sim) == {"alice": 4}


# -- cool-down after a denied push ----------------------------------------------------------------


def test_denied_push_starts_a_cool_down_in_which_codes_still_work(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """After bob denies a push, his next push is refused until the cool-down ends; codes work."""
    bridge = make_bridge({"limits": {"cooldown_after_denied_push": 1.0}})
    assert login(bridge, "bob", "push").code == packet.AccessReject  # bob denies
    denied_at = time.monotonic()
    reply = login(bridge, "bob", "push")
    assert (reply.code, messages(reply)) == (packet.AccessReject, [COOLDOWN])
    assert pushes(sim) == {"bob": 1}
    assert login(bridge, "bob", "123456").code == packet.AccessAccept
    line = completed(log_stream)[1]
    assert (
        line["reason"] == "push_cooldown" and "limits.cooldown_after_denied_push" in line["detail"]
    )
    time.sleep(max(0.0, denied_at + 1.05 - time.monotonic()))
    assert login(bridge, "bob", "push").code == packet.AccessReject  # sent, and denied again
    assert pushes(sim) == {"bob": 2}
    assert completed(log_stream)[-1]["reason"] == "push_denied"


def test_empty_password_during_the_cool_down_is_refused_after_preview(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """An empty password that would become a push is refused in the cool-down, unsent."""
    assert login(bridge, "bob", "push").code == packet.AccessReject
    reply = login(bridge, "bob", "")
    assert (reply.code, messages(reply)) == (packet.AccessReject, [COOLDOWN])
    assert pushes(sim) == {"bob": 1}


# -- one push at a time ---------------------------------------------------------------------------


def test_push_pending_from_one_station_refuses_a_login_from_another(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """While station A's push waits, station B's login is refused at once and sends no push;
    once A's push is over, B may push."""
    sim.add_user(SimUser("kim", "kim@example.com", push_delay=1.0))
    station_a, result_a = in_background(
        lambda: login(bridge, "kim", "push", Calling_Station_Id="198.51.100.7").code
    )
    wait_until(lambda: len(bridge.bridge.pending) == 1, timeout=3)
    started = time.monotonic()
    reply = login(bridge, "kim", "push", Calling_Station_Id="203.0.113.9")
    assert time.monotonic() - started < 0.5
    assert (reply.code, messages(reply)) == (packet.AccessReject, [ALREADY_PENDING])
    assert "approve" not in messages(reply)[0].lower()
    station_a.join(10)
    assert result_a == [packet.AccessAccept]
    assert pushes(sim) == {"kim": 1}
    reasons = [(line["reason"], line.get("calling_station_id")) for line in completed(log_stream)]
    assert reasons == [
        ("push_already_pending", "203.0.113.9"),
        ("push_approved", "198.51.100.7"),
    ]
    assert login(bridge, "kim", "push", Calling_Station_Id="203.0.113.9").code == (
        packet.AccessAccept
    )
    assert pushes(sim) == {"kim": 2}


def test_with_one_push_per_user_off_each_station_gets_its_own_push(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """one_push_per_user false: logins from two stations send two pushes (never joined)."""
    bridge = make_bridge({"limits": {"one_push_per_user": False}})
    sim.add_user(SimUser("kim", "kim@example.com", push_delay=0.6))
    threads = [
        in_background(lambda s=station: login(bridge, "kim", "push", Calling_Station_Id=s).code)
        for station in ("198.51.100.7", "203.0.113.9")
    ]
    for thread, _ in threads:
        thread.join(10)
    assert [result for _, result in threads] == [[packet.AccessAccept]] * 2
    assert pushes(sim) == {"kim": 2}


# -- wrong codes ----------------------------------------------------------------------------------


def test_wrong_codes_beyond_the_limit_are_refused_without_asking_fic(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """After three wrong codes, even the right one is refused locally until the window passes."""
    bridge = make_bridge({"limits": {"wrong_codes_per_user": 3}})
    for code in ("111111", "222222", "333333"):
        reply = login(bridge, "alice", code)
        assert (reply.code, messages(reply)) == (packet.AccessReject, ["Wrong code. Try again."])
    reply = login(bridge, "alice", "123456")
    assert (reply.code, messages(reply)) == (packet.AccessReject, [CODES_LIMITED])
    assert sim.counters()["code_checks"] == {"alice": 3}
    line = completed(log_stream)[-1]
    assert (line["reason"], line["factor"], line["level"]) == (
        "code_rate_limited",
        "otp",
        "warning",
    )
    assert "3 wrong codes in the last 300 s" in line["detail"]
    assert login(bridge, "alice", "push").code == packet.AccessAccept  # pushes are not limited


def test_wrong_code_limit_also_guards_challenge_answers(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """A code typed in answer to a challenge counts and is refused like any other."""
    bridge = make_bridge({"limits": {"wrong_codes_per_user": 1}})
    assert login(bridge, "frank", "999999").code == packet.AccessReject
    challenge = login(bridge, "frank", "")
    assert challenge.code == packet.AccessChallenge
    reply = login(bridge, "frank", "123456", state=challenge["State"][0])
    assert (reply.code, messages(reply)) == (packet.AccessReject, [CODES_LIMITED])
    assert sim.counters()["code_checks"] == {"frank": 1}


# -- caps -----------------------------------------------------------------------------------------


def test_a_third_concurrent_push_is_rejected_as_overloaded(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """With max_pending_pushes 2, a third user's push is rejected at once and never sent."""
    bridge = make_bridge({"limits": {"max_pending_pushes": 2}})
    for name in ("user1", "user2", "user3"):
        sim.add_user(SimUser(name, f"{name}@example.com", push_delay=1.0))
    waiting = [
        in_background(lambda n=name: login(bridge, n, "push").code) for name in ("user1", "user2")
    ]
    wait_until(lambda: len(bridge.bridge.pending) == 2, timeout=3)
    reply = login(bridge, "user3", "push")
    assert (reply.code, messages(reply)) == (packet.AccessReject, [OVERLOADED])
    for thread, _ in waiting:
        thread.join(10)
    assert [result for _, result in waiting] == [[packet.AccessAccept]] * 2
    assert pushes(sim) == {"user1": 1, "user2": 1}
    line = completed(log_stream)[0]
    assert (line["reason"], line["user"], line["level"]) == ("overloaded", "user3", "warning")
    assert line["detail"] == "2 pushes pending (limits.max_pending_pushes)"
    assert login(bridge, "user3", "push").code == packet.AccessAccept  # room again


def test_a_third_challenge_is_rejected_as_overloaded_before_any_code_is_sent(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """With max_challenges 2, a third challenge is refused and no SMS goes out for it; the two
    outstanding challenges still complete."""
    bridge = make_bridge({"limits": {"max_challenges": 2}})
    first = login(bridge, "carol", "sms")
    second = login(bridge, "dave", "email")
    assert first.code == second.code == packet.AccessChallenge
    reply = login(bridge, "carol", "sms")
    assert (reply.code, messages(reply)) == (packet.AccessReject, [OVERLOADED])
    token_challenge = login(bridge, "frank", "")
    assert token_challenge.code == packet.AccessReject
    assert len(sim.outbox("carol")) == 1
    line = completed(log_stream)[2]
    assert line["reason"] == "overloaded" and "limits.max_challenges" in line["detail"]
    (code,) = sim.outbox("carol")
    assert login(bridge, "carol", code, state=first["State"][0]).code == packet.AccessAccept


def test_push_and_state_caps_reach_their_tables(make_bridge: Callable[..., RunningBridge]) -> None:
    """The push table and the record of used States are built with the configured caps."""
    bridge = make_bridge({"limits": {"max_pending_pushes": 7, "max_challenges": 11}})
    assert bridge.bridge.pending._max_pending == 7
    assert bridge.bridge.challenges._max_outstanding == 11


def test_requests_beyond_max_requests_in_progress_are_dropped_until_room_returns(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """With two pushes pending and max_requests_in_progress 2, a new datagram gets no answer."""
    bridge = make_bridge({"limits": {"max_requests_in_progress": 2, "max_pending_pushes": 2}})
    for name in ("user1", "user2"):
        sim.add_user(SimUser(name, f"{name}@example.com", push_delay=1.0))
    waiting = [
        in_background(lambda n=name: login(bridge, n, "push").code) for name in ("user1", "user2")
    ]
    wait_until(lambda: len(bridge.bridge.pending) == 2, timeout=3)
    raw = CODEC.build_request(
        secret=RADIUS_SECRET.encode(), identifier=1, user_name="alice", password="123456"
    )
    assert exchange(bridge, raw, timeout=0.3) is None
    assert bridge.bridge.server.overload_dropped == 1
    for thread, _ in waiting:
        thread.join(10)
    assert login(bridge, "alice", "123456").code == packet.AccessAccept
    assert sim.counters()["code_checks"] == {"alice": 1}


def test_duplicate_cache_keeps_only_the_newest_answers(
    make_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """With duplicate_cache_size 1, only the last answer is replayed; an older request is
    handled afresh."""
    bridge = make_bridge({"limits": {"duplicate_cache_size": 1}})
    older, newer = (
        CODEC.build_request(
            secret=RADIUS_SECRET.encode(),
            identifier=identifier,
            user_name="alice",
            password="123456",
            authenticator=bytes([identifier]) * 16,
        )
        for identifier in (1, 2)
    )
    # One socket, as a NAS retransmits: the cache key includes the source port.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.settimeout(6)

        def ask(raw: bytes) -> bytes:
            nas.sendto(raw, bridge.address)
            return nas.recvfrom(4096)[0]

        assert ask(older) and ask(newer)
        assert ask(newer)  # replayed from the cache
        assert sim.counters()["code_checks"] == {"alice": 2}
        assert ask(older)  # evicted: checked again
    assert sim.counters()["code_checks"] == {"alice": 3}


# -- reload ---------------------------------------------------------------------------------------


def test_reload_changes_the_per_user_limits_but_not_the_caps(
    bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream
) -> None:
    """New per-user limits apply at once, keeping what happened; a new cap waits for a restart."""
    assert login(bridge, "alice", "push").code == packet.AccessAccept
    old = bridge.bridge.config
    new = dataclasses.replace(
        old, limits=dataclasses.replace(old.limits, pushes_per_user=1, max_pending_pushes=5)
    )
    bridge.in_loop(bridge.bridge.service.reconfigure, new)
    reply = login(bridge, "alice", "push")
    assert (reply.code, messages(reply)) == (packet.AccessReject, [RATE_LIMITED])
    assert pushes(sim) == {"alice": 1}
    (warning,) = log_stream.events("bridge.reload.caps_unchanged")
    assert "max_pending_pushes" in warning["detail"]
