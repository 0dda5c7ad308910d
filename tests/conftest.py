"""Shared fixtures: the FIC simulator over real HTTP and a real bridge on a UDP socket.

Both listen on 127.0.0.1 with ports the kernel picks. The simulator's users are the demo cast
with short push delays, so push tests take a fraction of a second.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bridge_harness import RunningBridge, bridge_config

from radius_bridge import logs
from radius_bridge.config import LogFormat
from radius_bridge.simulator import FicSimulator, SimulatorSettings, SimUser

PUSH_DELAY = 0.3


def test_users() -> list[SimUser]:
    """The demo cast, with pushes answered after ``PUSH_DELAY`` seconds."""
    return [
        SimUser("alice", "alice@example.com", "+15550100001", push_delay=PUSH_DELAY),
        SimUser("bob", "bob@example.com", "+15550100002", push="deny", push_delay=PUSH_DELAY),
        SimUser("carol", "carol@example.com", "+15550100003", auth_method="SMS", code=None),
        SimUser("dave", "dave@example.com", auth_method="Email", code=None),
        SimUser("erin", "erin@example.com", push="ignore"),
        SimUser("frank", "frank@example.com", auth_method="FTK", push_enabled=False),
        SimUser("gina", "gina@example.com", bypass=True),
        SimUser("hank", "hank@example.com", active=False),
    ]


test_users.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test


@pytest.fixture
def sim() -> Iterator[FicSimulator]:
    """A fresh FIC simulator on 127.0.0.1, port 0."""
    # The fixed test code 123456 may be used again within its 30 s step (a real TOTP code may
    # not), so that one test can log in more than once.
    simulator = FicSimulator(users=test_users(), settings=SimulatorSettings(codes_single_use=False))
    simulator.start()
    yield simulator
    simulator.stop()


class LogStream(io.StringIO):
    """Everything the bridge logged, as JSON lines."""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]
        return [line for line in lines if name is None or line.get("event") == name]


@pytest.fixture
def log_stream() -> Iterator[LogStream]:
    """Routes the bridge's logs (JSON, debug level) into a stream the test can read."""
    stream = LogStream()
    logs.configure_logging(LogFormat.JSON, "debug", stream=stream)
    yield stream
    logs.reset_logging()


@pytest.fixture
def make_bridge(sim: FicSimulator) -> Iterator[Callable[..., RunningBridge]]:
    """Starts bridges against ``sim`` with configuration overrides; stops them afterwards."""
    running: list[RunningBridge] = []

    def make(overrides: dict[str, Any] | None = None) -> RunningBridge:
        bridge = RunningBridge(bridge_config(sim.base_url, overrides))
        running.append(bridge)
        return bridge

    yield make
    for bridge in running:
        bridge.stop()


@pytest.fixture
def bridge(make_bridge: Callable[..., RunningBridge]) -> RunningBridge:
    """A bridge with the test defaults (push_timeout 4 s, polling every 0.2 s)."""
    return make_bridge()
