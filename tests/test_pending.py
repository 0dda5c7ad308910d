"""The push poller under many approvals: batch size, a faster round when answers are mostly
new, and the memory of results nobody waits for."""

from __future__ import annotations

import asyncio
import time

from radius_bridge.fic import BATCH_SIZE, FicClient
from radius_bridge.model import PushStatus, Secret
from radius_bridge.pending import PendingPushes
from radius_bridge.simulator import FicSimulator, SimUser


def test_a_batch_poll_lists_more_than_the_default_chunk(sim: FicSimulator) -> None:
    """The batch call asks for the largest chunk FIC allows, not its default of 500."""
    sim.add_user(SimUser("many", "many@example.com", push_delay=0.0))
    client = FicClient(
        base_url=sim.base_url, client_id="demo-client", client_secret=Secret("demo-secret")
    )
    with client:
        started = {client.start_push("many") for _ in range(600)}
        assert set(client.finished_pushes()) == started
    assert BATCH_SIZE == 1000


class ScriptedBatches:
    """Batch answers in turn (the last one repeated), and the time of every call."""

    def __init__(self, answers: list[dict[str, PushStatus]]) -> None:
        self.answers = answers
        self.calls: list[float] = []

    async def fetch_finished(self) -> dict[str, PushStatus]:
        self.calls.append(time.monotonic())
        return self.answers[min(len(self.calls), len(self.answers)) - 1]

    async def fetch_one(self, auth_id: str) -> PushStatus:
        raise AssertionError("the batch endpoint works; no per-id poll expected")


def approved(*auth_ids: str) -> dict[str, PushStatus]:
    return dict.fromkeys(auth_ids, PushStatus.APPROVED)


def test_an_answer_mostly_new_brings_the_next_round_forward() -> None:
    """After a batch answer more than half new, the poller looks again after half the
    interval; after one with nothing new, at the full interval."""
    interval = 0.6
    script = ScriptedBatches([approved("a", "b", "c", "d"), approved("a", "b", "c", "d")])

    async def scenario() -> None:
        pending = PendingPushes(
            fetch_finished=script.fetch_finished,
            fetch_one=script.fetch_one,
            interval=interval,
            full_batch=4,
        )
        pending.start()
        waiting = asyncio.ensure_future(pending.wait("never", deadline=time.monotonic() + 60))
        while len(script.calls) < 3:
            await asyncio.sleep(0.02)
        waiting.cancel()
        await pending.stop()

    asyncio.run(scenario())
    first, second, third = script.calls[:3]
    assert second - first < interval * 0.85  # four of four new: half the interval
    assert third - second >= interval * 0.95  # nothing new: the whole interval


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_result_nobody_waits_for_is_forgotten_two_minutes_after_first_seen() -> None:
    """An answer nobody waited for is kept 120 s from when it was first seen, even while FIC
    keeps listing an older one in front of it."""
    clock = Clock()
    # "old" is in every answer; "late" in one, a little later.
    script = ScriptedBatches([approved("old"), approved("old", "late"), approved("old")])

    async def rounds(count: int) -> None:
        target = len(script.calls) + count
        while len(script.calls) < target:
            await asyncio.sleep(0.005)

    async def scenario() -> PushStatus | None:
        pending = PendingPushes(
            fetch_finished=script.fetch_finished,
            fetch_one=script.fetch_one,
            interval=0.01,
            clock=clock,
        )
        pending.start()
        keep_polling = asyncio.ensure_future(pending.wait("busy", deadline=clock.now + 10_000))
        await rounds(1)  # "old" first seen at 1000
        clock.now += 10
        await rounds(1)  # "late" first seen at 1010
        clock.now += 90
        await rounds(1)  # "old" listed again at 1100
        clock.now += 35  # 1135: "late" was seen 125 s ago
        await rounds(2)
        try:
            return await asyncio.wait_for(pending.wait("late", deadline=clock.now + 1), 0.1)
        except TimeoutError:
            return None  # not remembered: the login would wait for a poll
        finally:
            keep_polling.cancel()
            await pending.stop()

    assert asyncio.run(scenario()) is None
