"""sd_notify over a real AF_UNIX datagram socket posing as systemd's $NOTIFY_SOCKET; watchdog."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from radius_bridge.notify import Notifier, watchdog_loop

# A short heartbeat (WATCHDOG_USEC=20 ms, beats every 10 ms) keeps the watchdog tests fast.
FAST_WATCHDOG_USEC = "20000"
BEAT = 0.01


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket bound in tmp_path, reading what the service sends to systemd."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(2.0)
        yield sock


def notify_env(sock: socket.socket, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": sock.getsockname(), **extra}


def received(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def test_ready_with_status_is_one_datagram() -> None:
    """ready(status) sends READY=1 and STATUS= in one datagram, one assignment per line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0radius-bridge-test-%d" % os.getpid())
        sock.settimeout(2.0)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": f"@radius-bridge-test-{os.getpid()}"})
        notifier.ready("listening on 0.0.0.0:1812, 2 clients")
        assert received(sock) == b"READY=1\nSTATUS=listening on 0.0.0.0:1812, 2 clients"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda n: n.ready(), b"READY=1"),
        (lambda n: n.ready("ok"), b"READY=1\nSTATUS=ok"),
        (lambda n: n.stopping(), b"STOPPING=1"),
        (lambda n: n.status("3 pushes pending"), b"STATUS=3 pushes pending"),
        (lambda n: n.status("two\nlines"), b"STATUS=two lines"),
        (lambda n: n.watchdog(), b"WATCHDOG=1"),
    ],
    ids=["ready", "ready-status", "stopping", "status", "status-newline", "watchdog"],
)
def test_each_message_on_a_path_socket(systemd: socket.socket, call: Any, expected: bytes) -> None:
    """Each call sends exactly the sd_notify(3) assignment(s) to a file system socket."""
    notifier = Notifier.from_environ(notify_env(systemd, WATCHDOG_USEC="30000000"))
    call(notifier)
    assert received(systemd) == expected


def test_reloading_carries_the_monotonic_clock(systemd: socket.socket) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects."""
    Notifier(systemd.getsockname(), monotonic_usec=lambda: 123456789).reloading()
    assert received(systemd) == b"RELOADING=1\nMONOTONIC_USEC=123456789"


def test_reloading_default_clock_is_clock_monotonic(systemd: socket.socket) -> None:
    """Without an injected clock, MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier.from_environ(notify_env(systemd)).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(systemd).split(b"\n")
    assert first == b"RELOADING=1"
    assert second.startswith(b"MONOTONIC_USEC=")
    assert before <= int(second.removeprefix(b"MONOTONIC_USEC=")) <= after


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
    ids=["usec", "our-pid", "other-pid", "zero", "garbage", "unset"],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    systemd: socket.socket, environ: dict[str, str], interval: float | None
) -> None:
    """The heartbeat interval is half of WATCHDOG_USEC, only in the process WATCHDOG_PID names."""
    notifier = Notifier.from_environ(notify_env(systemd, **environ), pid=4242)
    assert notifier.watchdog_interval == interval


def test_watchdog_sends_nothing_without_watchdog_usec(systemd: socket.socket) -> None:
    """watchdog() is silent when systemd set no watchdog: the next datagram is the later status."""
    notifier = Notifier.from_environ(notify_env(systemd))
    notifier.watchdog()
    notifier.status("marker")
    assert received(systemd) == b"STATUS=marker"


def test_no_notify_socket_means_no_op(systemd: socket.socket) -> None:
    """Without $NOTIFY_SOCKET nothing is sent, nothing is logged, and there is no watchdog."""
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    with structlog.testing.capture_logs() as captured:
        notifier.ready("up")
        notifier.status("x")
        notifier.reloading()
        notifier.watchdog()
        notifier.stopping()
    assert captured == []
    systemd.settimeout(0.05)
    with pytest.raises(TimeoutError):
        received(systemd)


@pytest.mark.parametrize(
    "notify_socket",
    ["/nonexistent/radius-bridge/notify", "relative/notify", "@"],
    ids=["missing-path", "relative", "empty-abstract"],
)
def test_send_errors_never_raise_and_are_logged_once(notify_socket: str) -> None:
    """A socket that cannot be reached costs one warning for the process, never an exception."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": notify_socket})
    with structlog.testing.capture_logs() as captured:
        notifier.ready("up")
        notifier.status("still up")
        notifier.stopping()
    assert [entry["event"] for entry in captured] == ["systemd.notify.failed"]
    assert captured[0]["notify_socket"] == notify_socket


def test_a_full_systemd_queue_drops_messages_instead_of_blocking(systemd: socket.socket) -> None:
    """When nobody reads the socket, sends fail fast (EAGAIN) rather than block the event loop."""
    notifier = Notifier.from_environ(notify_env(systemd))
    # The kernel queues only net.unix.max_dgram_qlen (default 10) datagrams per socket.
    sender = threading.Thread(target=lambda: [notifier.status(f"n{i}") for i in range(200)])
    with structlog.testing.capture_logs() as captured:
        sender.start()
        sender.join(timeout=5.0)
    assert not sender.is_alive(), "a notification blocked on a full queue"
    assert [entry["event"] for entry in captured] == ["systemd.notify.failed"]
    assert received(systemd) == b"STATUS=n0"


async def next_datagram(sock: socket.socket, timeout: float = 2.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), timeout)


def drain(sock: socket.socket) -> list[bytes]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096))
        except BlockingIOError:
            return messages


def test_watchdog_loop_beats_only_while_healthy(systemd: socket.socket) -> None:
    """Heartbeats flow while healthy, stop (with one log line) while not, and resume after."""
    systemd.setblocking(False)
    notifier = Notifier.from_environ(notify_env(systemd, WATCHDOG_USEC=FAST_WATCHDOG_USEC))
    assert notifier.watchdog_interval == BEAT
    health = {"ok": True}

    async def scenario() -> list[str]:
        with structlog.testing.capture_logs() as captured:
            task = asyncio.create_task(watchdog_loop(notifier, healthy=lambda: health["ok"]))
            for _ in range(3):
                assert await next_datagram(systemd) == b"WATCHDOG=1"
            health["ok"] = False
            drain(systemd)  # beats sent before the flip
            await asyncio.sleep(8 * BEAT)
            assert drain(systemd) == []
            health["ok"] = True
            assert await next_datagram(systemd) == b"WATCHDOG=1"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return [entry["event"] for entry in captured]

    events = asyncio.run(scenario())
    assert events == ["systemd.watchdog.withheld", "systemd.watchdog.resumed"]


def test_watchdog_loop_withholds_beats_when_the_check_raises(systemd: socket.socket) -> None:
    """A health check that raises counts as unhealthy: no heartbeat, and the error is logged."""
    systemd.setblocking(False)
    notifier = Notifier.from_environ(notify_env(systemd, WATCHDOG_USEC=FAST_WATCHDOG_USEC))

    def broken_check() -> bool:
        raise RuntimeError("poller state unavailable")

    async def scenario() -> list[str]:
        with structlog.testing.capture_logs() as captured:
            task = asyncio.create_task(watchdog_loop(notifier, healthy=broken_check))
            await asyncio.sleep(5 * BEAT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return [entry["event"] for entry in captured]

    events = asyncio.run(scenario())
    assert drain(systemd) == []
    assert events[0] == "systemd.watchdog.check_failed"
    assert "systemd.watchdog.withheld" in events


@pytest.mark.parametrize(
    "environ",
    [{}, {"WATCHDOG_USEC": FAST_WATCHDOG_USEC}],
    ids=["no-socket", "no-socket-with-usec"],
)
def test_watchdog_loop_returns_at_once_without_a_watchdog(environ: dict[str, str]) -> None:
    """Without a watchdog for this process the loop ends immediately instead of spinning."""
    notifier = Notifier.from_environ(environ)

    async def scenario() -> None:
        await asyncio.wait_for(watchdog_loop(notifier, healthy=lambda: True), timeout=1.0)

    asyncio.run(scenario())


def test_watchdog_loop_returns_at_once_for_another_pid(systemd: socket.socket) -> None:
    """A watchdog meant for another process (WATCHDOG_PID) starts no heartbeat here."""
    environ = notify_env(systemd, WATCHDOG_USEC=FAST_WATCHDOG_USEC, WATCHDOG_PID="1")
    notifier = Notifier.from_environ(environ, pid=4242)

    async def scenario() -> None:
        await asyncio.wait_for(watchdog_loop(notifier, healthy=lambda: True), timeout=1.0)

    asyncio.run(scenario())
    systemd.settimeout(0.05)
    with pytest.raises(TimeoutError):
        received(systemd)
