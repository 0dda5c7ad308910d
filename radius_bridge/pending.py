"""Outstanding FortiToken Mobile pushes, and the one poller that collects all their results.

A login waiting on a push is an ``asyncio`` future, not a thread: ten thousand users reading
their phones cost ten thousand small table entries. One poller asks FIC for every finished push
at once (``GET /auth``, the batch endpoint) about once a second, so the number of FIC requests per
second does not grow with the number of waiting users. Where the batch endpoint is refused, the
poller falls back to asking per auth id, oldest first, within a fixed budget per round.

Results are remembered for a short while, because FIC's batch answer may report a push before the
login that started it has registered its auth id.

A batch answer lists only the newest finished pushes (``fic.BATCH_SIZE`` of them), so approvals
arriving faster than that per round would be missed: when more than half of an answer is new
since the previous one, the next round comes after half the interval. That keeps up with twice
as many approvals a second, and FIC still hears at most two polls per interval.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from radius_bridge.errors import (
    FicError,
    FicProtocolError,
    FicRateLimited,
    FicRejected,
    FicUnavailable,
)
from radius_bridge.fic import BATCH_SIZE
from radius_bridge.model import PushStatus

log = structlog.get_logger("radius_bridge.pending")

FetchFinished = Callable[[], Awaitable[dict[str, PushStatus]]]
FetchOne = Callable[[str], Awaitable[PushStatus]]

# How long a finished result that nobody waits for (yet) is kept.
_RECENT_RESULTS_SECONDS = 120.0


class TooManyPending(Exception):
    """The table is full: a flood must not exhaust memory (the caller rejects the login)."""


@dataclass(eq=False)
class _Waiter:
    auth_id: str
    deadline: float
    future: asyncio.Future[PushStatus | None]
    registered_at: float = field(default=0.0)


class PendingPushes:
    """Waits for the final status of pushes, polling FIC once per interval for all of them.

    ``fetch_finished`` is the batch call and ``fetch_one`` the per-id call; both are coroutines
    (the service wraps the blocking FIC client in its executor). ``per_id_budget`` bounds the
    per-id calls of one round in fallback mode; ``full_batch`` is the most a batch answer
    lists.
    """

    def __init__(
        self,
        *,
        fetch_finished: FetchFinished,
        fetch_one: FetchOne,
        interval: float = 1.0,
        per_id_budget: int = 10,
        max_pending: int = 50_000,
        full_batch: int = BATCH_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_finished = fetch_finished
        self._fetch_one = fetch_one
        self._interval = interval
        self._per_id_budget = per_id_budget
        self._max_pending = max_pending
        self._full_batch = full_batch
        self._last_batch: frozenset[str] = frozenset()
        self._hurry = False  # approvals come in too fast for one batch per interval
        self._clock = clock
        self._waiters: dict[str, _Waiter] = {}
        self._recent: collections.OrderedDict[str, tuple[PushStatus, float]] = (
            collections.OrderedDict()
        )
        self._batch_supported = True
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fic_failing = False
        self._last_error: FicError | None = None
        self._paused_until = 0.0
        self.rounds = 0  # poll rounds done; tests and metrics read it
        self._last_round_at = clock()

    def __len__(self) -> int:
        return len(self._waiters)

    @property
    def batch_supported(self) -> bool:
        return self._batch_supported

    def healthy(self, *, stuck_after: float) -> bool:
        """False when the poller died, or pushes wait and no round finished for ``stuck_after``."""
        if self._task is None or self._task.done():
            return False
        if not self._waiters:
            return True
        return self._clock() - self._last_round_at < stuck_after

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    async def stop(self) -> None:
        """Stop polling and resolve every waiter as timed out (the service rejects them)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for waiter in list(self._waiters.values()):
            self._finish(waiter, None)

    def cancel_all(self) -> int:
        """Resolve every waiting push as not approved; returns how many there were."""
        count = len(self._waiters)
        for waiter in list(self._waiters.values()):
            self._finish(waiter, None)
        return count

    async def wait(self, auth_id: str, *, deadline: float) -> PushStatus | None:
        """The final status of ``auth_id``, or None if ``deadline`` (clock time) passes first."""
        known = self._recent.pop(auth_id, None)
        if known is not None:
            return known[0]
        if len(self._waiters) >= self._max_pending:
            raise TooManyPending(f"{len(self._waiters)} pushes already pending")
        loop = asyncio.get_running_loop()
        waiter = _Waiter(auth_id, deadline, loop.create_future(), self._clock())
        self._waiters[auth_id] = waiter
        self._wakeup.set()
        try:
            return await waiter.future
        finally:
            self._waiters.pop(auth_id, None)

    def _finish(self, waiter: _Waiter, status: PushStatus | None) -> None:
        self._waiters.pop(waiter.auth_id, None)
        if not waiter.future.done():
            waiter.future.set_result(status)

    def _fail(self, waiter: _Waiter, error: FicError) -> None:
        self._waiters.pop(waiter.auth_id, None)
        if not waiter.future.done():
            waiter.future.set_exception(
                FicUnavailable(
                    error.endpoint,
                    f"no poll was answered before the push deadline: {error.detail}",
                    status=error.status,
                )
            )

    def _record(self, auth_id: str, status: PushStatus) -> None:
        if status is PushStatus.WAITING:
            return
        waiter = self._waiters.get(auth_id)
        if waiter is not None:
            self._finish(waiter, status)
        elif auth_id not in self._recent:
            # Kept from when first seen: batch answers repeat a result for as long as FIC
            # lists it, and a refreshed entry would hold up the expiry of those behind it.
            self._recent[auth_id] = (status, self._clock())

    def _expire(self) -> None:
        now = self._clock()
        for waiter in [w for w in self._waiters.values() if w.deadline <= now]:
            if self._fic_failing and self._last_error is not None:
                # The user may well have approved: what ran out was FIC, not the user.
                self._fail(waiter, self._last_error)
            else:
                self._finish(waiter, None)
        while self._recent:
            _, (_, seen) = next(iter(self._recent.items()))
            if now - seen < _RECENT_RESULTS_SECONDS:
                break
            self._recent.popitem(last=False)

    async def _poll_forever(self) -> None:
        while True:
            if not self._waiters:
                self._wakeup.clear()
                await self._wakeup.wait()
                self._last_round_at = self._clock()
            await asyncio.sleep(self._interval / 2 if self._hurry else self._interval)
            self._expire()
            if not self._waiters or self._clock() < self._paused_until:
                continue
            self.rounds += 1
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the poller must outlive any one bad round
                log.exception("fic.poll.failed")
            self._last_round_at = self._clock()
            self._expire()

    async def _poll_once(self) -> None:
        if self._batch_supported:
            try:
                finished = await self._fetch_finished()
            except FicRejected as error:
                # The batch endpoint is not there for this application (404/405/400): ask per
                # auth id from now on. An unreadable answer is only a failed round.
                self._batch_supported = False
                log.warning("fic.poll.batch_unsupported", error=str(error))
            except (FicUnavailable, FicProtocolError) as error:
                self._note_failure(error)
                return
            else:
                self._note_recovery()
                fresh = len(finished.keys() - self._last_batch)
                self._last_batch = frozenset(finished)
                self._hurry = fresh > self._full_batch // 2
                for auth_id, status in finished.items():
                    self._record(auth_id, status)
                return
        await self._poll_each()

    async def _poll_each(self) -> None:
        oldest_first = sorted(self._waiters.values(), key=lambda w: w.registered_at)
        for waiter in oldest_first[: self._per_id_budget]:
            try:
                status = await self._fetch_one(waiter.auth_id)
            except (FicUnavailable, FicProtocolError) as error:
                self._note_failure(error)
                return
            except FicError as error:
                # FIC no longer knows this push (expired or never valid): it cannot be approved.
                log.info("fic.poll.unknown_auth", auth_id=waiter.auth_id, error=str(error))
                self._finish(waiter, None)
                continue
            self._note_recovery()
            self._record(waiter.auth_id, status)
            # Round-robin: a waiter polled now goes to the back of the queue.
            waiter.registered_at = self._clock()

    def _note_failure(self, error: FicError) -> None:
        if not self._fic_failing:
            log.warning("fic.poll.unavailable", error=str(error))
        self._fic_failing = True
        self._last_error = error
        if isinstance(error, FicRateLimited):
            # Polling through a throttle only prolongs it (trial accounts are disabled beyond
            # 240 requests in 5 minutes, shared/fic-api.md §11): wait as long as FIC asks.
            pause = error.retry_after if error.retry_after is not None else 2 * self._interval
            self._paused_until = self._clock() + pause

    def _note_recovery(self) -> None:
        if self._fic_failing:
            log.info("fic.poll.recovered")
        self._fic_failing = False
        self._last_error = None
