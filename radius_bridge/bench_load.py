"""The benchmark's RADIUS load generator: precomputed Access-Requests over many UDP sockets.

A NAS fleet is imitated cheaply enough that the bridge, not the generator, is what runs out of
CPU first: every request is built (hidden password, Message-Authenticator) before a phase
starts, a phase only sends bytes and reads replies, and a reply is matched to its request by the
socket it arrived on and its Identifier (RFC 2865 §3: the Identifier matches a reply to its
request, per source port). One epoll loop drives every socket; several streams of requests
(codes at a paced rate, thousands of waiting pushes, retransmitted logins) can run at once.

A reply is checked (code, Response Authenticator over the request's authenticator and the shared
secret) but not decoded further: that is the bridge's codec's job and is tested elsewhere.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from radius_bridge.radius import ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, RadiusCodec

IDENTIFIERS = 256  # RFC 2865 §3: one octet
_RECEIVE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Prepared:
    """One Access-Request ready to send: its bytes and what matching its reply needs."""

    identifier: int
    authenticator: bytes
    data: bytes


def prepare(
    codec: RadiusCodec,
    secret: bytes,
    logins: Sequence[tuple[str, str, str]],
    *,
    nas_identifier: str = "radius-bridge-bench",
) -> list[Prepared]:
    """Access-Requests for ``(user, password, calling station)`` triples, Identifiers in turn.

    Request ``k`` gets Identifier ``k % 256``, which is what ``SocketGroup`` relies on to give
    every request in flight its own (socket, Identifier) pair.
    """
    prepared = []
    for index, (user, password, station) in enumerate(logins):
        identifier = index % IDENTIFIERS
        authenticator = hashlib.blake2b(
            f"{index}:{user}:{station}:{time.time_ns()}".encode(), digest_size=16
        ).digest()
        data = codec.build_request(
            secret=secret,
            identifier=identifier,
            user_name=user,
            password=password,
            authenticator=authenticator,
            attributes=(("NAS-Identifier", nas_identifier), ("Calling-Station-Id", station)),
        )
        prepared.append(Prepared(identifier, authenticator, data))
    return prepared


@dataclass(slots=True)
class _InFlight:
    stream: Stream
    request: Prepared
    sent_at: float
    first_sent_at: float
    transmissions: int = 1


class SocketGroup:
    """``count`` UDP sockets to one server; request ``k`` of a stream goes out on socket
    ``(k // 256 + cycle) % count`` with its own Identifier, so up to ``256 * count`` requests
    can be in flight at once.

    ``cycle`` (how often the stream's request list was used up) moves a reused request to
    another socket, so that the bridge sees a new source port and treats it as a new request
    rather than a retransmission of the one it answered within its duplicate window
    (RFC 5080 §2.2.2 keys duplicates by source port too).
    """

    def __init__(self, server: tuple[str, int], count: int) -> None:
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sockets: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                # connect(): send() without an address, and replies from anyone else dropped.
                sock.connect(server)
                sock.setblocking(False)
        except BaseException:
            self.close()
            raise
        # (socket index, Identifier) -> request in flight
        self.slots: list[dict[int, _InFlight]] = [{} for _ in self.sockets]

    @property
    def capacity(self) -> int:
        return len(self.sockets) * IDENTIFIERS

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@dataclass
class StreamResult:
    """What one stream saw: counts by outcome, and the latencies of answered requests."""

    sent: int = 0
    transmissions: int = 0
    accepted: int = 0
    rejected: int = 0
    challenged: int = 0
    invalid: int = 0  # a reply that does not verify against our request and secret
    lost: int = 0  # no reply within the stream's timeout
    latencies: list[float] = field(default_factory=list)
    # (completion time, latency, reply code) of each answered request, in completion order
    completions: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return self.accepted + self.rejected + self.challenged


class Stream:
    """A sequence of requests sent over one socket group, cycling through ``requests``.

    ``retransmit_every`` re-sends a request still unanswered after that many seconds, with the
    very same bytes, as a NAS does (RFC 5080 §2.2.1); ``timeout`` gives up on it.
    """

    def __init__(
        self,
        name: str,
        group: SocketGroup,
        requests: Sequence[Prepared],
        *,
        timeout: float = 10.0,
        retransmit_every: float | None = None,
    ) -> None:
        if not requests:
            raise ValueError("a stream needs at least one request")
        self.name = name
        self.group = group
        self.requests = requests
        self.timeout = timeout
        self.retransmit_every = retransmit_every
        self.result = StreamResult()
        self.in_flight = 0  # sent and neither answered nor given up on
        # When its requests in flight are next looked at for retransmission or timeout: often
        # when it retransmits, else about once a second (thousands of waiting pushes make a
        # look cost milliseconds, which would show in the latencies measured meanwhile).
        self.sweep_every = 0.05 if retransmit_every is not None else 1.0
        self.next_sweep = 0.0
        self._next = 0
        self.on_complete: Callable[[_InFlight, int, float], None] | None = None

    def send_next(self, now: float) -> bool:
        """Send the next request; False when its (socket, Identifier) is still busy."""
        index = self._next % len(self.requests)
        cycle = self._next // len(self.requests)
        request = self.requests[index]
        group = self.group
        socket_index = (index // IDENTIFIERS + cycle) % len(group.sockets)
        slots = group.slots[socket_index]
        if request.identifier in slots:
            return False
        try:
            group.sockets[socket_index].send(request.data)
        except (BlockingIOError, ConnectionRefusedError):
            # A full send buffer, or ICMP unreachable from a previous datagram: the request
            # is sent again by the next try (the bridge is not up, or is drowning).
            return False
        slots[request.identifier] = _InFlight(self, request, now, now)
        self.in_flight += 1
        self._next += 1
        self.result.sent += 1
        self.result.transmissions += 1
        return True


class LoadGenerator:
    """One epoll loop over every stream's sockets; see the module docstring."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._poll = select.epoll()
        self._by_fd: dict[int, tuple[SocketGroup, int]] = {}
        self._groups: list[SocketGroup] = []
        self._streams: list[Stream] = []
        self._next_sweep = 0.0

    def close(self) -> None:
        self._poll.close()
        for group in self._groups:
            group.close()
        self._groups.clear()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stream(
        self,
        name: str,
        server: tuple[str, int],
        requests: Sequence[Prepared],
        *,
        in_flight: int,
        timeout: float = 10.0,
        retransmit_every: float | None = None,
    ) -> Stream:
        """A stream with enough sockets for ``in_flight`` requests at once."""
        count = max(1, math.ceil(in_flight / IDENTIFIERS))
        group = SocketGroup(server, count)
        self._groups.append(group)
        for index, sock in enumerate(group.sockets):
            self._by_fd[sock.fileno()] = (group, index)
            self._poll.register(sock.fileno(), select.EPOLLIN)
        stream = Stream(name, group, requests, timeout=timeout, retransmit_every=retransmit_every)
        self._streams.append(stream)
        return stream

    def poll(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for replies and account them; returns how many."""
        events = self._poll.poll(max(0.0, timeout), 64)
        handled = 0
        for fd, _ in events:
            group, index = self._by_fd[fd]
            handled += self._receive(group, index)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + 0.05
            self._sweep(now)
        return handled

    def _receive(self, group: SocketGroup, index: int) -> int:
        sock = group.sockets[index]
        slots = group.slots[index]
        secret = self._secret
        handled = 0
        while True:
            try:
                data = sock.recv(_RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return handled
            except ConnectionRefusedError:
                continue  # ICMP for an earlier datagram; the socket stays usable
            now = time.monotonic()
            if len(data) < 20:
                continue
            entry = slots.get(data[1])
            if entry is None:
                continue  # a late reply to a request given up on, or a second copy
            length = (data[2] << 8) | data[3]
            packet = data[:length]
            # RFC 2865 §3: Response Authenticator = MD5(Code+ID+Length+RequestAuth+Attrs+Secret)
            expected = hashlib.md5(  # noqa: S324 - RADIUS prescribes MD5
                packet[:4] + entry.request.authenticator + packet[20:] + secret
            ).digest()
            del slots[data[1]]
            entry.stream.in_flight -= 1
            handled += 1
            result = entry.stream.result
            if expected != packet[4:20]:
                result.invalid += 1
                continue
            code = packet[0]
            if code == ACCESS_ACCEPT:
                result.accepted += 1
            elif code == ACCESS_REJECT:
                result.rejected += 1
            elif code == ACCESS_CHALLENGE:
                result.challenged += 1
            else:
                result.invalid += 1
                continue
            # From the first transmission: what the user waits, retransmissions included.
            latency = now - entry.first_sent_at
            result.latencies.append(latency)
            result.completions.append((now, latency, code))
            if entry.stream.on_complete is not None:
                entry.stream.on_complete(entry, code, now)

    def _sweep(self, now: float) -> None:
        """Retransmit what is due, and give up on what has timed out."""
        for stream in self._streams:
            if now < stream.next_sweep:
                continue
            stream.next_sweep = now + stream.sweep_every
            every = stream.retransmit_every
            for index, slots in enumerate(stream.group.slots):
                if not slots:
                    continue
                sock = stream.group.sockets[index]
                for identifier, entry in list(slots.items()):
                    if now - entry.first_sent_at >= stream.timeout:
                        del slots[identifier]
                        stream.in_flight -= 1
                        stream.result.lost += 1
                    elif every is not None and now - entry.sent_at >= every:
                        try:
                            sock.send(entry.request.data)
                        except (BlockingIOError, ConnectionRefusedError):
                            continue
                        entry.sent_at = now
                        entry.transmissions += 1
                        stream.result.transmissions += 1

    # -- drivers --------------------------------------------------------------------------

    def run_window(
        self, stream: Stream, *, window: int, until: float, count: int | None = None
    ) -> None:
        """Keep ``window`` requests of ``stream`` in flight until the monotonic time ``until``,
        or until ``count`` requests of it went out."""
        while True:
            now = time.monotonic()
            if now >= until or (count is not None and stream.result.sent >= count):
                return
            while (
                stream.in_flight < window
                and (count is None or stream.result.sent < count)
                and stream.send_next(now)
            ):
                pass
            self.poll(min(0.01, until - now))

    def run_paced(
        self,
        stream: Stream,
        *,
        rate: float,
        until: float,
        count: int | None = None,
        alongside: Callable[[float], None] | None = None,
    ) -> None:
        """Send ``stream`` at ``rate`` per second (open loop) until ``until``, or until
        ``count`` requests of it went out.

        A request due while its slot is busy waits; ``alongside(now)`` runs every turn (a
        sampler, for instance).
        """
        interval = 1.0 / rate
        due = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= until or (count is not None and stream.result.sent >= count):
                return
            while due <= now and (count is None or stream.result.sent < count):
                if not stream.send_next(now):
                    break
                due += interval
            if alongside is not None:
                alongside(now)
            self.poll(min(max(0.0, due - time.monotonic()), 0.01, until - now))

    def drain(self, streams: Sequence[Stream], *, until: float) -> None:
        """Read replies until nothing of ``streams`` is in flight or ``until`` passes."""
        while any(stream.in_flight for stream in streams):
            now = time.monotonic()
            if now >= until:
                return
            self.poll(min(0.05, until - now))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def completed_between(
    result: StreamResult, start: float, end: float
) -> list[tuple[float, float, int]]:
    """The completions (time, latency, code) within [start, end); they are time-ordered."""
    times = [moment for moment, _, _ in result.completions]
    return result.completions[bisect.bisect_left(times, start) : bisect.bisect_left(times, end)]
