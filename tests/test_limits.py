"""Tests for radius_bridge.limits: per-user push and wrong-code limits, cool-downs, the cap on
outstanding pushes and challenges, and the bounded table, all on a fake clock."""

from __future__ import annotations

import dataclasses

import pytest

from radius_bridge.config import LimitsConfig
from radius_bridge.limits import ChallengeBudget, CodeVerdict, UserLimits
from radius_bridge.model import PushStatus, Reason


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(**changes: object) -> LimitsConfig:
    return dataclasses.replace(LimitsConfig(), **changes)  # type: ignore[arg-type]


# A script is a list of (time, step, expected). Steps: "push U" asks to start a push (expected:
# the refusal reason or None); "approved U" / "denied U" / "timeout U" finish a sent push;
# "unsent U" finishes a push FIC never sent; "code U" asks to check a code; "wrong U" / "right U"
# / "undecided U" finish a code check.
PUSH_ENDINGS = {
    "approved": (True, PushStatus.APPROVED),
    "denied": (True, PushStatus.DENIED),
    "timeout": (True, None),
    "unsent": (False, None),
}
CODE_ENDINGS = {
    "wrong": CodeVerdict.WRONG,
    "right": CodeVerdict.ACCEPTED,
    "undecided": CodeVerdict.UNDECIDED,
}

PENDING = Reason.PUSH_ALREADY_PENDING
PUSHES = Reason.PUSH_RATE_LIMITED
COOLDOWN = Reason.PUSH_COOLDOWN
CODES = Reason.CODE_RATE_LIMITED
OVERLOADED = Reason.OVERLOADED

SCRIPTS: list[tuple[str, LimitsConfig, list[tuple[float, str, Reason | None]]]] = [
    (
        "a second push for a user waits until the first is over",
        limits(),
        [(0, "push a", None), (1, "push a", PENDING), (2, "approved a", None), (3, "push a", None)],
    ),
    (
        "with one_push_per_user off, pushes for one user may overlap",
        limits(one_push_per_user=False),
        [(0, "push a", None), (1, "push a", None)],
    ),
    (
        "users are independent",
        limits(pushes_per_user=1),
        [(0, "push a", None), (1, "push b", None), (2, "timeout a", None), (3, "push a", PUSHES)],
    ),
    (
        "the fourth push within the window is refused; it passes once the first leaves it",
        limits(pushes_per_user=3, pushes_window=300),
        [
            (0, "push a", None),
            (1, "timeout a", None),
            (100, "push a", None),
            (101, "timeout a", None),
            (200, "push a", None),
            (201, "approved a", None),
            (250, "push a", PUSHES),
            (299.9, "push a", PUSHES),
            (300, "push a", None),
        ],
    ),
    (
        "refused pushes do not count, so a refused attacker does not extend the wait",
        limits(pushes_per_user=1, pushes_window=10),
        [
            (0, "push a", None),
            (1, "timeout a", None),
            (5, "push a", PUSHES),
            (9, "push a", PUSHES),
            (10, "push a", None),
        ],
    ),
    (
        "a push FIC never sent does not count",
        limits(pushes_per_user=1),
        [(0, "push a", None), (1, "unsent a", None), (2, "push a", None)],
    ),
    (
        "pushes_per_user off: no rate limit",
        limits(pushes_per_user=None),
        [(t, step, None) for t in range(0, 20, 2) for step in ("push a", "timeout a")],
    ),
    (
        "a denied push starts the cool-down; pushes resume when it ends",
        limits(cooldown_after_denied_push=60, pushes_per_user=None),
        [
            (0, "push a", None),
            (5, "denied a", None),
            (6, "push a", COOLDOWN),
            (64.9, "push a", COOLDOWN),
            (65, "push a", None),
        ],
    ),
    (
        "codes still work during the cool-down",
        limits(cooldown_after_denied_push=60),
        [(0, "push a", None), (1, "denied a", None), (2, "code a", None), (3, "right a", None)],
    ),
    (
        "an approved or unanswered push starts no cool-down",
        limits(cooldown_after_denied_push=60),
        [
            (0, "push a", None),
            (1, "approved a", None),
            (2, "push a", None),
            (3, "timeout a", None),
            (4, "push a", None),
        ],
    ),
    (
        "cooldown_after_denied_push off: a denied push is followed by another at once",
        limits(cooldown_after_denied_push=None),
        [(0, "push a", None), (1, "denied a", None), (2, "push a", None)],
    ),
    (
        "the push cap counts every user's outstanding pushes",
        limits(max_pending_pushes=2),
        [
            (0, "push a", None),
            (0, "push b", None),
            (0, "push c", OVERLOADED),
            (1, "timeout a", None),
            (2, "push c", None),
        ],
    ),
    (
        "the sixth code after five wrong ones is refused until the first leaves the window",
        limits(wrong_codes_per_user=5, wrong_codes_window=300),
        [step for t in range(5) for step in ((t, "code a", None), (t, "wrong a", None))]
        + [(10, "code a", CODES), (299.9, "code a", CODES), (300, "code a", None)],
    ),
    (
        "codes being checked count, so parallel guesses cannot overshoot the limit",
        limits(wrong_codes_per_user=2),
        [(0, "code a", None), (0, "code a", None), (0, "code a", CODES)],
    ),
    (
        "a correct code forgives the wrong ones",
        limits(wrong_codes_per_user=2),
        [
            (0, "code a", None),
            (0, "wrong a", None),
            (1, "code a", None),
            (1, "right a", None),
            (2, "code a", None),
            (2, "wrong a", None),
            (3, "code a", None),
        ],
    ),
    (
        "a code FIC did not judge (FIC down, user locked) does not count",
        limits(wrong_codes_per_user=1),
        [(0, "code a", None), (0, "undecided a", None), (1, "code a", None)],
    ),
    (
        "wrong codes do not limit pushes",
        limits(wrong_codes_per_user=1),
        [(0, "code a", None), (0, "wrong a", None), (1, "code a", CODES), (1, "push a", None)],
    ),
    (
        "wrong_codes_per_user off: no limit on wrong codes",
        limits(wrong_codes_per_user=None),
        [step for t in range(10) for step in ((t, "code a", None), (t, "wrong a", None))],
    ),
]


@pytest.mark.parametrize(
    ("settings", "script"), [s[1:] for s in SCRIPTS], ids=[s[0] for s in SCRIPTS]
)
def test_limit_scripts(
    settings: LimitsConfig, script: list[tuple[float, str, Reason | None]]
) -> None:
    """Each step of the script is allowed or refused with the reason the table names."""
    clock = FakeClock()
    start = clock.now
    table = UserLimits(settings, clock=clock)
    for at, step, expected in script:
        clock.now = start + at
        action, user = step.split()
        if action == "push":
            refusal = table.start_push(user)
        elif action == "code":
            refusal = table.start_code(user)
        elif action in PUSH_ENDINGS:
            sent, status = PUSH_ENDINGS[action]
            table.finish_push(user, sent=sent, status=status)
            refusal = None
        else:
            table.finish_code(user, CODE_ENDINGS[action])
            refusal = None
        assert (refusal.reason if refusal else None) is expected, (at, step)


def test_refusals_say_which_limit_and_when_it_lifts() -> None:
    """Each refusal names its configuration key and the seconds until the request would pass."""
    clock = FakeClock()
    table = UserLimits(limits(pushes_per_user=1, pushes_window=300), clock=clock)
    assert table.start_push("a") is None
    pending = table.start_push("a")
    assert pending is not None and "limits.one_push_per_user" in pending.detail
    table.finish_push("a", sent=True, status=PushStatus.DENIED)
    clock.now += 20
    cooldown = table.start_push("a")
    assert cooldown is not None and cooldown.reason is COOLDOWN
    assert cooldown.retry_after == pytest.approx(40)
    assert "limits.cooldown_after_denied_push" in cooldown.detail
    clock.now += 40
    rate = table.start_push("a")
    assert rate is not None and rate.reason is PUSHES
    assert rate.retry_after == pytest.approx(240)
    assert rate.detail == "1 pushes in the last 300 s (limits.pushes_per_user)"


def test_wrong_code_refusal_names_the_count_and_window() -> None:
    """The code refusal says how many wrong codes in which window, and when the first expires."""
    clock = FakeClock()
    table = UserLimits(limits(wrong_codes_per_user=2, wrong_codes_window=60), clock=clock)
    for _ in range(2):
        assert table.start_code("a") is None
        table.finish_code("a", CodeVerdict.WRONG)
        clock.now += 10
    refusal = table.start_code("a")
    assert refusal is not None and refusal.reason is CODES
    assert refusal.detail == "2 wrong codes in the last 60 s (limits.wrong_codes_per_user)"
    assert refusal.retry_after == pytest.approx(40)


def test_new_settings_apply_to_the_history_kept() -> None:
    """Replacing the settings (a reload) keeps what happened and judges it by the new limit."""
    clock = FakeClock()
    table = UserLimits(limits(pushes_per_user=5), clock=clock)
    for _ in range(2):
        assert table.start_push("a") is None
        table.finish_push("a", sent=True, status=None)
    table.settings = limits(pushes_per_user=2)
    refusal = table.start_push("a")
    assert refusal is not None and refusal.reason is PUSHES


# --- bounded memory -----------------------------------------------------------------------------


def test_a_user_fic_never_acted_on_leaves_no_entry() -> None:
    """A push FIC never sent, or a code it did not judge, leaves nothing in the table."""
    table = UserLimits(limits(), clock=FakeClock())
    for index in range(100):
        assert table.start_push(f"nobody{index}") is None
        table.finish_push(f"nobody{index}", sent=False, status=None)
        assert table.start_code(f"nobody{index}") is None
        table.finish_code(f"nobody{index}", CodeVerdict.UNDECIDED)
    assert len(table) == 0 and table.pushes_outstanding == 0


def test_users_are_forgotten_once_every_window_has_passed() -> None:
    """A user's entry goes when the longest window or cool-down since their last activity ends."""
    clock = FakeClock()
    table = UserLimits(
        limits(pushes_window=300, wrong_codes_window=100, cooldown_after_denied_push=60),
        clock=clock,
    )
    for user in ("a", "b"):
        assert table.start_push(user) is None
        table.finish_push(user, sent=True, status=PushStatus.DENIED)
    assert len(table) == 2
    clock.now += 299
    assert table.start_code("c") is None  # any call sweeps
    assert len(table) == 3
    table.finish_code("c", CodeVerdict.ACCEPTED)  # nothing to remember: c goes at once
    assert len(table) == 2
    clock.now += 1
    assert table.start_code("c") is None
    table.finish_code("c", CodeVerdict.UNDECIDED)
    assert len(table) == 0


def test_a_user_waiting_on_fic_is_never_forgotten() -> None:
    """A push outstanding for longer than every window still blocks a second one for that user."""
    clock = FakeClock()
    table = UserLimits(
        limits(pushes_window=10, wrong_codes_window=10, cooldown_after_denied_push=None),
        clock=clock,
    )
    assert table.start_push("a") is None
    clock.now += 50
    assert table.start_push("b") is None  # sweeps past a's horizon
    refusal = table.start_push("a")
    assert refusal is not None and refusal.reason is PENDING
    assert table.pushes_outstanding == 2


def test_a_full_table_forgets_the_least_recently_active_idle_user() -> None:
    """At max_tracked_users, the user idle longest makes room; busy users are kept."""
    clock = FakeClock()
    table = UserLimits(limits(max_tracked_users=3, pushes_per_user=1), clock=clock)
    assert table.start_push("busy") is None  # stays outstanding
    for user in ("old", "recent"):
        clock.now += 1
        assert table.start_push(user) is None
        table.finish_push(user, sent=True, status=None)
    clock.now += 1
    assert table.start_push("new") is None
    assert len(table) == 3 and table.evicted == 1
    recent = table.start_push("recent")  # still remembered
    assert recent is not None and recent.reason is PUSHES
    busy = table.start_push("busy")
    assert busy is not None and busy.reason is PENDING
    table.finish_push("new", sent=True, status=None)
    assert table.start_push("old") is None  # forgotten: its push no longer counts


def test_a_table_full_of_busy_users_refuses_as_overloaded() -> None:
    """When every tracked user waits on FIC, a new user is refused rather than tracked."""
    table = UserLimits(limits(max_tracked_users=2), clock=FakeClock())
    assert table.start_push("a") is None
    assert table.start_code("b") is None
    refusal = table.start_code("c")
    assert refusal is not None and refusal.reason is OVERLOADED
    assert "limits.max_tracked_users" in refusal.detail
    assert len(table) == 2


def test_finishing_what_was_never_started_changes_nothing() -> None:
    """A stray finish (a bug elsewhere) cannot drive the counts negative."""
    table = UserLimits(limits(max_pending_pushes=1), clock=FakeClock())
    table.finish_push("a", sent=True, status=PushStatus.DENIED)
    table.finish_code("a", CodeVerdict.WRONG)
    assert len(table) == 0 and table.pushes_outstanding == 0
    assert table.start_push("a") is None
    table.finish_push("a", sent=True, status=None)
    table.finish_push("a", sent=True, status=None)
    assert table.pushes_outstanding == 0
    assert table.start_push("b") is None


# --- challenges ---------------------------------------------------------------------------------


def test_challenge_budget_refuses_beyond_capacity_until_the_oldest_expires() -> None:
    """At capacity a challenge is refused as overloaded; it passes once the oldest has expired."""
    clock = FakeClock()
    budget = ChallengeBudget(clock=clock)
    assert budget.reserve(capacity=2, lifetime=120) is None
    clock.now += 30
    assert budget.reserve(capacity=2, lifetime=120) is None
    refusal = budget.reserve(capacity=2, lifetime=120)
    assert refusal is not None and refusal.reason is OVERLOADED
    assert refusal.retry_after == pytest.approx(90)
    assert "limits.max_challenges" in refusal.detail
    clock.now += 90
    assert budget.reserve(capacity=2, lifetime=120) is None
    assert len(budget) == 2


def test_a_released_challenge_frees_its_place() -> None:
    """A reservation whose code could not be sent is given back."""
    budget = ChallengeBudget(clock=FakeClock())
    assert budget.reserve(capacity=1, lifetime=120) is None
    budget.release()
    assert budget.reserve(capacity=1, lifetime=120) is None
    assert len(budget) == 1
