"""Tests for radius_bridge.health: which FIC call outcomes make FIC up or down, and when."""

from __future__ import annotations

import pytest

from radius_bridge.fic import FicCall
from radius_bridge.health import FicHealth, fic_answered


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def call(kind: str, endpoint: str = "POST /auth") -> FicCall:
    """A FicCall for a short name: "ok", "4xx", "429", "5xx", "timeout", "refused", "garbled"."""
    status, outcome = {
        "ok": (200, "ok"),
        "4xx": (401, "http_error"),
        "429": (429, "http_error"),
        "5xx": (503, "http_error"),
        "timeout": (None, "timeout"),
        "refused": (None, "connection_error"),
        "garbled": (200, "bad_response"),
    }[kind]
    return FicCall(endpoint, status, 0.05, outcome)


@pytest.mark.parametrize(
    ("kind", "answered"),
    [
        ("ok", True),
        ("4xx", True),
        ("429", True),
        ("garbled", True),
        ("5xx", False),
        ("timeout", False),
        ("refused", False),
    ],
)
def test_what_counts_as_an_answer(kind: str, answered: bool) -> None:
    """FIC answered when it sent a status below 500; timeouts, refusals and 5xx are failures."""
    assert fic_answered(call(kind)) is answered


# Each case: (seconds after the previous event, call kind) events, then seconds to wait before
# asking, and the expected answer. window=60, failures_to_down=3.
SEQUENCES = [
    ("nothing recorded yet", [], 0, True),
    ("one answer", [(0, "ok")], 0, True),
    ("an answer long ago, nothing since (idle)", [(0, "ok")], 3600, True),
    ("a 4xx is FIC saying no, not FIC down", [(0, "4xx"), (1, "4xx"), (1, "4xx")], 0, True),
    ("a failure and never an answer", [(0, "timeout")], 0, False),
    ("one blip after a recent answer", [(0, "ok"), (5, "timeout")], 0, True),
    ("two blips after a recent answer", [(0, "ok"), (5, "5xx"), (1, "refused")], 0, True),
    ("three failures in a row", [(0, "ok"), (1, "5xx"), (1, "timeout"), (1, "refused")], 0, False),
    ("a blip ages past the window", [(0, "ok"), (5, "timeout")], 56, False),
    ("the blip just inside the window", [(0, "ok"), (5, "timeout")], 55, True),
    ("a failure after a stale answer", [(0, "ok"), (3600, "timeout")], 0, False),
    (
        "an answer ends the outage",
        [(0, "timeout"), (1, "timeout"), (1, "timeout"), (1, "4xx")],
        0,
        True,
    ),
    ("failures between answers", [(0, "5xx"), (1, "5xx"), (1, "ok"), (1, "5xx")], 0, True),
]


@pytest.mark.parametrize(
    ("events", "wait", "up"),
    [case[1:] for case in SEQUENCES],
    ids=[case[0] for case in SEQUENCES],
)
def test_up_or_down_after_a_sequence(
    events: list[tuple[float, str]], wait: float, up: bool
) -> None:
    """Up unless three calls failed in a row, or a call failed with no answer in the window."""
    clock = FakeClock()
    health = FicHealth(window=60, failures_to_down=3, clock=clock)
    for delay, kind in events:
        clock.now += delay
        health.record(call(kind))
    clock.now += wait
    assert health.is_up() is up
    assert health.is_up(now=clock.now) is up
    assert health.state()["status"] == ("up" if up else "down")


def test_failures_to_down_of_one_makes_any_failure_count() -> None:
    """With failures_to_down=1 a single failure is enough, even right after an answer."""
    clock = FakeClock()
    health = FicHealth(failures_to_down=1, clock=clock)
    health.record(call("ok"))
    health.record(call("timeout"))
    assert not health.is_up()


def test_is_up_at_an_explicit_moment() -> None:
    """is_up(now=...) judges at the given moment rather than the clock's."""
    clock = FakeClock()
    health = FicHealth(window=60, clock=clock)
    health.record(call("ok"))
    clock.now += 10
    health.record(call("timeout"))
    assert health.is_up(now=clock.now + 50)
    assert not health.is_up(now=clock.now + 51)


def test_last_success_and_last_failure_are_clock_times() -> None:
    """last_success and last_failure hold the clock time of the latest of each."""
    clock = FakeClock(500.0)
    health = FicHealth(clock=clock)
    assert (health.last_success, health.last_failure) == (None, None)
    health.record(call("ok"))
    clock.now = 510.0
    health.record(call("5xx"))
    clock.now = 520.0
    health.record(call("4xx"))
    assert (health.last_success, health.last_failure) == (520.0, 510.0)


def test_state_is_a_json_summary() -> None:
    """state() gives status, the failure count, ages in seconds and the last failure's facts."""
    clock = FakeClock()
    health = FicHealth(clock=clock)
    assert health.state() == {
        "status": "up",
        "consecutive_failures": 0,
        "seconds_since_success": None,
        "seconds_since_failure": None,
        "last_failure": None,
    }
    health.record(call("ok"))
    clock.now += 2.5
    health.record(call("timeout", endpoint="GET /auth/{id}"))
    clock.now += 1.25
    assert health.state() == {
        "status": "up",
        "consecutive_failures": 1,
        "seconds_since_success": 3.75,
        "seconds_since_failure": 1.25,
        "last_failure": {"endpoint": "GET /auth/{id}", "status": None, "outcome": "timeout"},
    }


def test_probe_due_when_no_call_ended_for_the_interval() -> None:
    """A probe is due at start and whenever no FIC call has ended for probe_interval seconds."""
    clock = FakeClock()
    health = FicHealth(probe_interval=30, clock=clock)
    assert health.probe_due()
    health.record(call("timeout"))
    assert not health.probe_due()
    clock.now += 29.9
    assert not health.probe_due()
    assert health.probe_due(now=clock.now + 0.1)
    clock.now += 0.1
    assert health.probe_due()


@pytest.mark.parametrize(
    "settings",
    [{"window": 0}, {"probe_interval": -1}, {"failures_to_down": 0}],
)
def test_nonsense_settings_are_refused(settings: dict[str, float]) -> None:
    """A window or probe interval of zero or less, or failures_to_down below 1, is refused."""
    with pytest.raises(ValueError, match="must be"):
        FicHealth(**settings)  # type: ignore[arg-type]
