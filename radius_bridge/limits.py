"""Per-user limits against MFA fatigue (push bombing) and code guessing, and the budget of
outstanding challenges: pure bookkeeping over an injectable clock, with no I/O and no logging.

The service asks before it sends a push, checks a code or issues a challenge, and reports how it
ended. The answer is ``None`` (go ahead) or a ``Refusal`` naming the ``Reason`` the Access-Reject
reports and a detail for the log line. Memory stays bounded: a user is tracked only while one of
their limits still remembers something (the longest window or cool-down), a user for whom FIC
never acted leaves no trace, the table has a cap (the least recently active idle user goes
first), and the challenge budget holds at most its capacity of timestamps.
"""

from __future__ import annotations

import collections
import enum
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from radius_bridge.config import LimitsConfig
from radius_bridge.model import PushStatus, Reason

Clock = Callable[[], float]


@dataclass(frozen=True, kw_only=True, slots=True)
class Refusal:
    """Why a push, code check or challenge is refused; nothing in it is secret.

    ``detail`` names the limit and its numbers for the log line; ``retry_after`` is how many
    seconds until the limit would let the same request through (0 when that depends on others).
    """

    reason: Reason
    detail: str
    retry_after: float = 0.0


class CodeVerdict(enum.Enum):
    """How a code check ended, as far as the wrong-code limit cares."""

    ACCEPTED = "accepted"  # FIC took the code: the user's wrong codes are forgiven
    WRONG = "wrong"  # FIC judged the code wrong: it counts
    UNDECIDED = "undecided"  # FIC did not judge it (unreachable, unknown or locked user)


class _Window:
    """The times of recent events, oldest first; ``prune`` forgets those older than a window."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: collections.deque[float] = collections.deque()

    def __len__(self) -> int:
        return len(self._times)

    def prune(self, now: float, window: float) -> None:
        while self._times and self._times[0] <= now - window:
            self._times.popleft()

    def add(self, now: float) -> None:
        self._times.append(now)

    def remove_newest(self) -> None:
        if self._times:
            self._times.pop()

    def clear(self) -> None:
        self._times.clear()

    def retry_after(self, now: float, window: float) -> float:
        """Seconds until the oldest event leaves the window."""
        return max(0.0, self._times[0] + window - now) if self._times else 0.0


@dataclass(eq=False, slots=True)
class _UserState:
    last_active: float
    pushes: _Window = field(default_factory=_Window)  # pushes sent, or being sent
    wrong_codes: _Window = field(default_factory=_Window)
    pushes_outstanding: int = 0
    codes_outstanding: int = 0
    cooldown_until: float = -math.inf

    @property
    def busy(self) -> bool:
        return self.pushes_outstanding > 0 or self.codes_outstanding > 0


class UserLimits:
    """Push and wrong-code limits per user, and the cap on pushes outstanding in total.

    ``user`` is any hashable name of the FIC user (the service passes the FIC identity: user
    name and realm). Call ``start_push``/``start_code`` before asking FIC; when they return
    ``None``, call ``finish_push``/``finish_code`` exactly once when FIC's part is over.
    ``settings`` may be replaced at any time (a reload); recorded history is kept. Not
    thread-safe: the service calls it from its event loop only.
    """

    def __init__(self, settings: LimitsConfig, *, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        # Least recently active first, so expired users are found at the front.
        self._users: collections.OrderedDict[Hashable, _UserState] = collections.OrderedDict()
        self._pushes_outstanding = 0
        self.evicted = 0  # idle users forgotten early because the table was full

    def __len__(self) -> int:
        """How many users are tracked now."""
        return len(self._users)

    @property
    def pushes_outstanding(self) -> int:
        """Pushes started and not yet finished, for every user together."""
        return self._pushes_outstanding

    # -- pushes ---------------------------------------------------------------------------------

    def start_push(self, user: Hashable) -> Refusal | None:
        """May a new push go to ``user`` now? When it may, it is counted from now on."""
        now = self._clock()
        self._sweep(now)
        limits = self.settings
        state = self._users.get(user)
        if state is not None:
            refusal = self._push_refusal(state, now)
            if refusal is not None:
                return refusal
        if self._pushes_outstanding >= limits.max_pending_pushes:
            return Refusal(
                reason=Reason.OVERLOADED,
                detail=f"{self._pushes_outstanding} pushes pending (limits.max_pending_pushes)",
            )
        state = self._admit(user, now)
        if state is None:
            return self._table_full()
        state.pushes_outstanding += 1
        self._pushes_outstanding += 1
        state.pushes.add(now)
        return None

    def _push_refusal(self, state: _UserState, now: float) -> Refusal | None:
        limits = self.settings
        if limits.one_push_per_user and state.pushes_outstanding:
            return Refusal(
                reason=Reason.PUSH_ALREADY_PENDING,
                detail="a push from another login is still pending (limits.one_push_per_user)",
            )
        if state.cooldown_until > now:
            wait = state.cooldown_until - now
            return Refusal(
                reason=Reason.PUSH_COOLDOWN,
                detail=f"a push was denied; pushes resume in {wait:.0f} s "
                "(limits.cooldown_after_denied_push)",
                retry_after=wait,
            )
        state.pushes.prune(now, limits.pushes_window)
        if limits.pushes_per_user is not None and len(state.pushes) >= limits.pushes_per_user:
            return Refusal(
                reason=Reason.PUSH_RATE_LIMITED,
                detail=f"{len(state.pushes)} pushes in the last {limits.pushes_window:g} s "
                "(limits.pushes_per_user)",
                retry_after=state.pushes.retry_after(now, limits.pushes_window),
            )
        return None

    def finish_push(self, user: Hashable, *, sent: bool, status: PushStatus | None) -> None:
        """The push started for ``user`` is over.

        ``sent`` is False when FIC certainly sent nothing (refused, unknown user, unreachable
        before the request went out): that push does not count. A ``DENIED`` status starts the
        cool-down.
        """
        state = self._users.get(user)
        if state is None or state.pushes_outstanding == 0:
            return
        now = self._clock()
        state.pushes_outstanding -= 1
        self._pushes_outstanding -= 1
        if not sent:
            state.pushes.remove_newest()
        cooldown = self.settings.cooldown_after_denied_push
        if status is PushStatus.DENIED and cooldown is not None:
            state.cooldown_until = max(state.cooldown_until, now + cooldown)
        self._touch(user, state, now)

    # -- codes ----------------------------------------------------------------------------------

    def start_code(self, user: Hashable) -> Refusal | None:
        """May a new code for ``user`` go to FIC now? Codes being checked count as wrong ones
        until FIC has judged them, so parallel guesses cannot overshoot the limit."""
        now = self._clock()
        self._sweep(now)
        limits = self.settings
        state = self._users.get(user)
        if state is not None and limits.wrong_codes_per_user is not None:
            state.wrong_codes.prune(now, limits.wrong_codes_window)
            wrong = len(state.wrong_codes)
            if wrong + state.codes_outstanding >= limits.wrong_codes_per_user:
                checking = (
                    f", {state.codes_outstanding} being checked" if state.codes_outstanding else ""
                )
                return Refusal(
                    reason=Reason.CODE_RATE_LIMITED,
                    detail=f"{wrong} wrong codes in the last {limits.wrong_codes_window:g} s"
                    f"{checking} (limits.wrong_codes_per_user)",
                    retry_after=state.wrong_codes.retry_after(now, limits.wrong_codes_window),
                )
        state = self._admit(user, now)
        if state is None:
            return self._table_full()
        state.codes_outstanding += 1
        return None

    def finish_code(self, user: Hashable, verdict: CodeVerdict) -> None:
        """The code check started for ``user`` is over, with ``verdict``."""
        state = self._users.get(user)
        if state is None or state.codes_outstanding == 0:
            return
        now = self._clock()
        state.codes_outstanding -= 1
        if verdict is CodeVerdict.WRONG:
            state.wrong_codes.add(now)
        elif verdict is CodeVerdict.ACCEPTED:
            state.wrong_codes.clear()
        self._touch(user, state, now)

    # -- the table ------------------------------------------------------------------------------

    def _admit(self, user: Hashable, now: float) -> _UserState | None:
        """The state of ``user``, made room for if new; None when every tracked user is busy."""
        state = self._users.get(user)
        if state is None:
            if len(self._users) >= self.settings.max_tracked_users and not self._evict_one():
                return None
            state = _UserState(last_active=now)
            self._users[user] = state
        state.last_active = now
        self._users.move_to_end(user)
        return state

    def _touch(self, user: Hashable, state: _UserState, now: float) -> None:
        state.last_active = now
        self._users.move_to_end(user)
        if not state.busy and self._forgettable(state, now):
            # Nothing left to remember (a push FIC never sent, a code it never judged): a name
            # FIC does not know leaves no entry behind, so a flood of them fills nothing.
            del self._users[user]

    def _forgettable(self, state: _UserState, now: float) -> bool:
        limits = self.settings
        state.pushes.prune(now, limits.pushes_window)
        state.wrong_codes.prune(now, limits.wrong_codes_window)
        return not state.pushes and not state.wrong_codes and state.cooldown_until <= now

    def _horizon(self) -> float:
        """How long after a user's last activity anything about them can still matter."""
        limits = self.settings
        return max(
            limits.pushes_window,
            limits.wrong_codes_window,
            limits.cooldown_after_denied_push or 0.0,
        )

    def _sweep(self, now: float) -> None:
        """Forget users inactive for longer than every window and cool-down (oldest first)."""
        horizon = self._horizon()
        for _ in range(len(self._users)):
            user, state = next(iter(self._users.items()))
            if state.last_active + horizon > now:
                return
            if state.busy:
                # Waiting on FIC right now: keep it, look again after another horizon.
                self._touch(user, state, now)
                continue
            del self._users[user]

    def _evict_one(self) -> bool:
        """Forget the least recently active user not waiting on FIC; False if every one is."""
        for user, state in self._users.items():
            if not state.busy:
                del self._users[user]
                self.evicted += 1
                return True
        return False

    def _table_full(self) -> Refusal:
        return Refusal(
            reason=Reason.OVERLOADED,
            detail=f"{len(self._users)} users tracked, all waiting on FIC "
            "(limits.max_tracked_users)",
        )


class ChallengeBudget:
    """Bounds the challenges outstanding: those issued within their lifetime.

    A challenge's State is self-contained (``challenge`` signs it), but every State redeemed is
    remembered until it expires; counting issued States in the last ``lifetime`` seconds bounds
    that record. ``reserve`` before sending a code (so no SMS goes out for a challenge that will
    not be issued), ``release`` when the challenge was not issued after all.
    """

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._issued = _Window()

    def __len__(self) -> int:
        return len(self._issued)

    def reserve(self, *, capacity: int, lifetime: float) -> Refusal | None:
        now = self._clock()
        self._issued.prune(now, lifetime)
        if len(self._issued) >= capacity:
            return Refusal(
                reason=Reason.OVERLOADED,
                detail=f"{len(self._issued)} challenges outstanding (limits.max_challenges)",
                retry_after=self._issued.retry_after(now, lifetime),
            )
        self._issued.add(now)
        return None

    def release(self) -> None:
        self._issued.remove_newest()
