"""The systemd notification protocol (sd_notify) and the watchdog heartbeat, without libsystemd.

``Notifier`` owns the datagrams a ``Type=notify`` service sends to ``$NOTIFY_SOCKET``: READY=1,
STATUS=, STOPPING=1, RELOADING=1 and WATCHDOG=1 (sd_notify(3)); outside systemd, where the
variable is unset, every method does nothing. ``watchdog_loop`` sends the heartbeat at half the
``WatchdogSec=`` interval only while a health check passes, so a daemon whose loops are stuck
stops beating and systemd restarts it. Sending never raises: a lost notification must not take
down the RADIUS service, so the first failure is logged and later ones are silent.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("radius_bridge.notify")


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _socket_address(value: str) -> str | bytes | None:
    # sd_notify(3): an absolute path names a file system socket; a leading "@" names a socket
    # in the abstract namespace, whose address starts with a NUL byte instead.
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    usec = environ.get("WATCHDOG_USEC", "")
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    # sd_watchdog_enabled(3): the watchdog is meant for this process only when WATCHDOG_PID is
    # unset or names it (a child that inherited the environment must not send heartbeats).
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    # sd_watchdog_enabled(3) advises a heartbeat at half the timeout, so one late beat is not
    # yet a restart.
    return int(usec) / 2_000_000


class Notifier:
    """Sends service state to systemd; every method is a no-op when ``$NOTIFY_SOCKET`` is unset."""

    def __init__(
        self,
        notify_socket: str | None,
        *,
        watchdog_interval: float | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> None:
        self._socket_name = notify_socket or None
        self._address = _socket_address(notify_socket) if notify_socket else None
        # Without a socket there is nobody to send heartbeats to.
        self._watchdog_interval = watchdog_interval if self._socket_name else None
        self._monotonic_usec = monotonic_usec
        self._failure_logged = False

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None
    ) -> Notifier:
        """A notifier configured by ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET"),
            watchdog_interval=_watchdog_interval(env, os.getpid() if pid is None else pid),
        )

    @property
    def enabled(self) -> bool:
        """Whether systemd asked for notifications (``$NOTIFY_SOCKET`` was set)."""
        return self._socket_name is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between heartbeats (half of ``WatchdogSec=``), or None without a watchdog."""
        return self._watchdog_interval

    def ready(self, status: str | None = None) -> None:
        """Start-up (or a reload) is complete: systemd marks the service active."""
        self._send(["READY=1", *self._status_lines(status)])

    def reloading(self) -> None:
        """A configuration reload began; ``ready()`` must follow when it is done."""
        # systemd.service(5), Type=notify-reload (systemd >= 253): RELOADING=1 carries the
        # CLOCK_MONOTONIC time so systemd can tell this reload from an earlier one. Older
        # systemd ignores the extra field.
        self._send(["RELOADING=1", f"MONOTONIC_USEC={self._monotonic_usec()}"])

    def stopping(self) -> None:
        """Shutdown began: systemd shows the service as deactivating."""
        self._send(["STOPPING=1"])

    def status(self, text: str) -> None:
        """A one-line status for ``systemctl status``."""
        self._send(self._status_lines(text))

    def watchdog(self) -> None:
        """One heartbeat; nothing is sent when the watchdog is off for this process."""
        if self._watchdog_interval is not None:
            self._send(["WATCHDOG=1"])

    @staticmethod
    def _status_lines(status: str | None) -> list[str]:
        # The protocol is one assignment per line, so a newline would start a bogus field.
        if status is None:
            return []
        return ["STATUS=" + " ".join(status.splitlines())]

    def _send(self, lines: list[str]) -> None:
        if self._socket_name is None:
            return
        if self._address is None:
            self._log_failure_once("NOTIFY_SOCKET is neither an absolute path nor an @name")
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Called on the event loop: when systemd's queue is full, drop this message
                # rather than stall every RADIUS request behind it.
                sock.setblocking(False)
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as error:
            self._log_failure_once(error.strerror or type(error).__name__)

    def _log_failure_once(self, error: str) -> None:
        if not self._failure_logged:
            self._failure_logged = True
            log.warning(
                "systemd.notify.failed",
                notify_socket=self._socket_name,
                error=error,
                detail="later notification failures are not logged",
            )


async def watchdog_loop(notifier: Notifier, *, healthy: Callable[[], bool]) -> None:
    """Send WATCHDOG=1 every ``notifier.watchdog_interval`` seconds while ``healthy()`` is true.

    Returns at once when there is no watchdog; otherwise runs until cancelled. Running on the
    daemon's event loop, it also stops beating when that loop itself is blocked.
    """
    interval = notifier.watchdog_interval
    if interval is None:
        return
    withheld = False
    while True:
        try:
            ok = healthy()
        except Exception:
            # A broken check means health is unknown: withhold the beat, and say why.
            log.exception("systemd.watchdog.check_failed")
            ok = False
        if ok:
            if withheld:
                log.info("systemd.watchdog.resumed")
                withheld = False
            notifier.watchdog()
        elif not withheld:
            log.error(
                "systemd.watchdog.withheld",
                detail="the service is not making progress; systemd restarts it after "
                "WatchdogSec= without a heartbeat",
            )
            withheld = True
        await asyncio.sleep(interval)
