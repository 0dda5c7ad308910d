"""Runs a real bridge on 127.0.0.1 (port 0) in a background thread, for end-to-end tests.

The bridge gets its own event loop in its own thread, exactly as ``radius-bridge serve`` builds
it (``daemon.Bridge``); the tests talk to it over UDP with real RADIUS clients, and it talks to
the FIC simulator over real HTTP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import dataclasses
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radius_bridge.config import Config, parse_config
from radius_bridge.daemon import Bridge

RADIUS_SECRET = "test-radius-secret-0123"


def bridge_config(
    fic_base_url: str, overrides: Mapping[str, Any] | None = None, *, source: str = "<test>"
) -> Config:
    """A loopback configuration; ``overrides`` is merged into it section by section."""
    data: dict[str, Any] = {
        "fic": {
            "base_url": fic_base_url,
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "connect_timeout": 1.0,
            "read_timeout": 2.0,
        },
        "radius": {
            "listen": ["127.0.0.1:1812"],  # replaced by port 0 below
            "clients": [
                {
                    "name": "loopback",
                    "address": "127.0.0.0/8",
                    "secret": RADIUS_SECRET,
                    "reply_attributes": {"Fortinet-Group-Name": "vpn-users"},
                }
            ],
        },
        "auth": {"push_timeout": 4.0, "push_poll_interval": 0.2, "challenge_timeout": 60},
        "logging": {"format": "json", "level": "info"},
    }
    for section, values in (overrides or {}).items():
        if isinstance(values, Mapping) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **copy.deepcopy(dict(values))}
        else:
            data[section] = copy.deepcopy(values)
    config = parse_config(data, source=source, base_dir=Path.cwd(), environ={})
    # The configuration refuses port 0 (a daemon must listen where the NAS sends); tests want
    # whatever free port the kernel picks, on the hosts the configuration names.
    loopback = tuple(dataclasses.replace(address, port=0) for address in config.radius.listen)
    return dataclasses.replace(config, radius=dataclasses.replace(config.radius, listen=loopback))


class RunningBridge:
    """A ``Bridge`` serving from a background thread until ``stop()``."""

    def __init__(self, config: Config) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.bridge: Bridge = self.call(self._build, config)
        self.call(self.bridge.start())
        host, port = self.bridge.addresses[0]
        self.address = (host, port)

    @staticmethod
    async def _build(config: Config) -> Bridge:
        return Bridge(config)

    def call(self, awaitable_or_function: Any, *args: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine (or a coroutine function with ``args``) on the bridge's loop."""
        if callable(awaitable_or_function):
            coroutine = awaitable_or_function(*args)
        else:
            coroutine = awaitable_or_function
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            coroutine, self._loop
        )
        return future.result(timeout)

    def in_loop(self, function: Any, *args: Any) -> Any:
        """Run a plain function on the bridge's loop thread and return its result."""

        async def wrapper() -> Any:
            return function(*args)

        return self.call(wrapper())

    def stop(self, grace: float = 2.0) -> None:
        if not self._loop.is_running():
            return
        try:
            self.call(self.bridge.stop(grace=grace))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
