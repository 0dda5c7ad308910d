"""Whether FortiIdentity Cloud is up, judged from the outcomes of the bridge's own calls to it.

``FicHealth`` is fed every ``fic.FicCall`` (the FIC client's observer) and answers ``is_up``
for the Status-Server reply, for ``/healthz`` and for the ``radius_bridge_fic_up`` metric; the
rule is in its docstring. It does no I/O and keeps no history beyond a few timestamps; its
clock is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from radius_bridge.fic import FicCall

DEFAULT_WINDOW = 60.0
DEFAULT_FAILURES_TO_DOWN = 3
DEFAULT_PROBE_INTERVAL = 30.0
# FicCall outcomes where no HTTP answer arrived at all.
_TRANSPORT_FAILURES = frozenset({"timeout", "connection_error"})


def fic_answered(call: FicCall) -> bool:
    """Whether FIC itself answered ``call``: an HTTP status below 500."""
    if call.outcome in _TRANSPORT_FAILURES or call.status is None:
        return False
    return call.status < 500


@dataclass(frozen=True, kw_only=True, slots=True)
class _Failure:
    at: float
    endpoint: str
    status: int | None
    outcome: str


class FicHealth:
    """FIC's health from the calls recorded so far; thread-safe.

    A call *answered* when FIC sent an HTTP status below 500: a 4xx (a wrong code, an unknown
    user, even 429) is FIC working and saying no, and an unreadable 2xx body is still an
    answer. A call *failed* on a timeout, a connection error or a 5xx. FIC is then:

    * **down** when the last ``failures_to_down`` calls all failed, or when a call has failed
      since the last answer and that answer is older than ``window`` seconds (or there was
      none);
    * **up** otherwise: nothing has failed since FIC last answered, or it answered within
      ``window`` seconds and fewer than ``failures_to_down`` calls have failed since. A fresh
      process and an idle one are up: nothing says FIC is down, and saying so would make every
      NAS give up on the bridge (RFC 5997: a server that leaves Status-Server unanswered is
      taken for dead).

    Down becomes up again with the first answer; ``probe_due`` tells the daemon when to make a
    harmless call, so that recovery is seen even while the NASes have failed over elsewhere.
    """

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        failures_to_down: int = DEFAULT_FAILURES_TO_DOWN,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window <= 0 or probe_interval <= 0:
            raise ValueError("window and probe_interval must be greater than 0")
        if failures_to_down < 1:
            raise ValueError("failures_to_down must be at least 1")
        self.window = window
        self.failures_to_down = failures_to_down
        self.probe_interval = probe_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_success: float | None = None
        self._last_failure: _Failure | None = None
        self._last_call: float | None = None
        self._failures_since_success = 0

    def record(self, call: FicCall) -> None:
        """Take the outcome of one finished FIC call into account (the FIC client's observer)."""
        now = self._clock()
        with self._lock:
            self._last_call = now
            if fic_answered(call):
                self._last_success = now
                self._failures_since_success = 0
            else:
                self._last_failure = _Failure(
                    at=now, endpoint=call.endpoint, status=call.status, outcome=call.outcome
                )
                self._failures_since_success += 1

    @property
    def last_success(self) -> float | None:
        """Clock time of the last call FIC answered, or ``None``."""
        with self._lock:
            return self._last_success

    @property
    def last_failure(self) -> float | None:
        """Clock time of the last call that failed, or ``None``."""
        with self._lock:
            failure = self._last_failure
        return None if failure is None else failure.at

    def is_up(self, now: float | None = None) -> bool:
        """Whether FIC counts as up at clock time ``now`` (default: the clock's now)."""
        moment = self._clock() if now is None else now
        with self._lock:
            return self._is_up(moment)

    def _is_up(self, now: float) -> bool:
        failures = self._failures_since_success
        if failures == 0:
            return True
        if failures >= self.failures_to_down:
            return False
        # A few failures are a blip while FIC answered recently; with no recent answer they
        # are all we know.
        return self._last_success is not None and now - self._last_success <= self.window

    def probe_due(self, now: float | None = None) -> bool:
        """Whether no FIC call has ended for ``probe_interval`` seconds (or none ever has).

        The daemon then makes a harmless call (its result reaches ``record`` like any other),
        so that a down FIC is seen coming back while the NASes have failed over elsewhere.
        """
        moment = self._clock() if now is None else now
        with self._lock:
            return self._last_call is None or moment - self._last_call >= self.probe_interval

    def state(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-ready summary for ``/healthz``: up or down, ages in seconds, the last failure."""
        moment = self._clock() if now is None else now
        with self._lock:
            failure = self._last_failure
            success = self._last_success
            return {
                "status": "up" if self._is_up(moment) else "down",
                "consecutive_failures": self._failures_since_success,
                "seconds_since_success": _age(moment, success),
                "seconds_since_failure": _age(moment, failure.at if failure else None),
                "last_failure": None
                if failure is None
                else {
                    "endpoint": failure.endpoint,
                    "status": failure.status,
                    "outcome": failure.outcome,
                },
            }


def _age(now: float, moment: float | None) -> float | None:
    return None if moment is None else round(max(0.0, now - moment), 3)
