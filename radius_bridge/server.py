"""The only socket code: UDP listeners, duplicate detection, the reply cache, graceful stop.

Each datagram becomes an ``asyncio`` task, so a login waiting on a push never delays another.
Before a task starts, the reply cache decides whether the datagram is a retransmission
(RFC 5080 §2.2.2): one whose request is still being worked on is dropped, one already answered
gets the very same reply bytes again. The key is the source address and port, the code, the
Identifier and the Request Authenticator, which a NAS keeps the same when it retransmits.

Sockets are bound without SO_REUSEADDR/SO_REUSEPORT, so a second instance on the same port fails
at start instead of silently taking (or sharing) the traffic (pyrad-notes §5.3).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import structlog

from radius_bridge.metrics import Metrics
from radius_bridge.radius import peek_header

log = structlog.get_logger("radius_bridge.server")

Handler = Callable[[bytes, tuple[str, int]], Awaitable[bytes | None]]
CacheKey = tuple[str, int, int, int, bytes]

_PENDING = object()


class ListenError(OSError):
    """A listen address could not be bound; the message says which and why."""


class ReplyCache:
    """Requests in progress and the replies sent in the last ``ttl`` seconds, by request key.

    Both maps are bounded: a flood of distinct requests evicts the oldest answered entries
    first, and beyond ``max_in_progress`` new requests are refused (the caller drops them).
    """

    def __init__(
        self,
        *,
        ttl: float = 30.0,
        max_replies: int = 100_000,
        max_in_progress: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max_replies = max_replies
        self._max_in_progress = max_in_progress
        self._clock = clock
        self._in_progress: set[CacheKey] = set()
        # Insertion order is expiry order because every entry lives for the same ttl.
        self._replies: collections.OrderedDict[CacheKey, tuple[bytes, float]] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._in_progress) + len(self._replies)

    @property
    def in_progress(self) -> int:
        return len(self._in_progress)

    def lookup(self, key: CacheKey) -> object | bytes | None:
        """``_PENDING`` while in progress, the reply bytes once answered, else None."""
        if key in self._in_progress:
            return _PENDING
        self._expire()
        entry = self._replies.get(key)
        return entry[0] if entry is not None else None

    def begin(self, key: CacheKey) -> bool:
        """Mark ``key`` in progress; False when too many requests are already in progress."""
        if len(self._in_progress) >= self._max_in_progress:
            return False
        self._in_progress.add(key)
        return True

    def finish(self, key: CacheKey, reply: bytes | None) -> None:
        self._in_progress.discard(key)
        if reply is None:
            return  # dropped: a retransmission is looked at afresh
        self._replies[key] = (reply, self._clock() + self.ttl)
        self._replies.move_to_end(key)
        while len(self._replies) > self._max_replies:
            self._replies.popitem(last=False)

    def _expire(self) -> None:
        now = self._clock()
        replies = self._replies
        while replies:
            _, (_, expires) = next(iter(replies.items()))
            if expires > now:
                return
            replies.popitem(last=False)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: RadiusServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._server.received(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a NAS that went away, and the like: nothing to do.
        log.debug("radius.socket.error", error=str(exc))

    def send(self, data: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class RadiusServer:
    """Receives on every listen address and answers through ``handler``."""

    def __init__(
        self,
        *,
        handler: Handler,
        listen: Sequence[tuple[str, int]],
        cache: ReplyCache | None = None,
        metrics: Metrics | None = None,
        on_overload: Callable[[str], None] | None = None,
    ) -> None:
        self._handler = handler
        self._on_overload = on_overload
        self._metrics = metrics if metrics is not None else Metrics()
        self._listen = list(listen)
        # Not `cache or ...`: an empty ReplyCache has len() 0 and would be replaced.
        self.cache = cache if cache is not None else ReplyCache()
        self._protocols: list[_Protocol] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = False
        self.duplicates_dropped = 0
        self.duplicates_resent = 0
        self.overload_dropped = 0
        self.received_count = 0

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs; with port 0 in the config, the port the kernel chose."""
        bound = []
        for protocol in self._protocols:
            assert protocol.transport is not None
            name = protocol.transport.get_extra_info("sockname")
            bound.append((name[0], name[1]))
        return bound

    @property
    def in_progress(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for host, port in self._listen:
                sock = _bind(host, port)
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self), sock=sock
                )
                self._protocols.append(protocol)
        except BaseException:
            self._close_sockets()
            raise
        self.accepting = True

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop taking requests, give those in progress ``grace`` seconds, then close."""
        self.accepting = False
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in set(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        self._protocols.clear()

    def received(self, protocol: _Protocol, data: bytes, addr: Any) -> None:
        if not self.accepting:
            self._metrics.packet_dropped("shutting_down")
            return
        self.received_count += 1
        header = peek_header(data)
        key: CacheKey | None = None
        if header is not None:
            code, identifier, authenticator = header
            key = (addr[0], addr[1], code, identifier, authenticator)
            cached = self.cache.lookup(key)
            if cached is _PENDING:
                self.duplicates_dropped += 1
                self._metrics.duplicate("dropped")
                return
            if isinstance(cached, bytes):
                self.duplicates_resent += 1
                self._metrics.duplicate("resent")
                protocol.send(cached, addr)
                return
            if not self.cache.begin(key):
                self.overload_dropped += 1
                self._metrics.packet_dropped("overloaded")
                if self._on_overload is not None:
                    self._on_overload(addr[0])
                return
        task = asyncio.get_running_loop().create_task(self._serve(protocol, data, addr, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, protocol: _Protocol, data: bytes, addr: Any, key: CacheKey | None
    ) -> None:
        reply: bytes | None = None
        try:
            reply = await self._handler(data, (addr[0], addr[1]))
        finally:
            if key is not None:
                self.cache.finish(key, reply)
        if reply is not None:
            protocol.send(reply, addr)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as error:  # a sandbox that forbids the address family, for instance
        raise ListenError(error.errno, f"cannot listen on {shown}: {error.strerror}") from error
    try:
        if family == socket.AF_INET6:
            # "[::]" and "0.0.0.0" are listed separately in the config; each gets its own
            # socket, so the IPv6 one must not claim IPv4 too.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # A generous receive buffer rides out bursts (a NAS fleet reconnecting at once).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ListenError(
                error.errno,
                f"cannot listen on {shown}: address already in use "
                "(is another radius-bridge or RADIUS server running?)",
            ) from error
        raise ListenError(error.errno, f"cannot listen on {shown}: {error.strerror}") from error
    return sock
