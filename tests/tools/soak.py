"""Runs mixed RADIUS traffic from several simulated NASes against a bridge process for a set time.

The bridge runs as a ``radius-bridge serve`` child process against an in-process FIC simulator,
both on 127.0.0.1. Each NAS has its own source address (127.0.0.11, .12, ...) and shared secret,
and runs several login sessions at once, one after another for ``--seconds``: OTP codes right
and wrong, pushes the user approves, denies or ignores (until ``auth.push_timeout``), SMS and
e-mail challenges answered with the code FIC sent (or a wrong one), Status-Server, and garbage
(bad Message-Authenticator, another secret, truncated, random bytes, an unknown client). A NAS
retransmits the very same packet every second until answered, sometimes sends a request twice
at once, and sometimes again after the answer, which must come back byte for byte.

Every user's outcome is known beforehand, so the run counts lost replies (a request that
deserved an answer got none within its budget), wrong answers (a reply that does not verify, an
outcome other than the expected one, a reply to garbage, two different replies to one request)
and extra FIC calls (a retransmission must never reach FIC: pushes and code checks in the
simulator's counters equal the logins that asked for them). It samples the bridge's VmRSS.

    python tests/tools/soak.py --seconds 300
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import random
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, cast

if __package__ in (None, ""):  # run as a script: make the ``tools`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from radius_bridge.errors import PacketError
from radius_bridge.model import Outcome
from radius_bridge.radius import RadiusCodec, Reply
from radius_bridge.simulator import FicSimulator, SimulatorSettings, SimUser
from tools import BridgeProcess, Nas
from tools.fuzz_bridge import assemble, attribute, sign

CODE = "123456"  # the simulator's fixed test code
PUSH_TIMEOUT = 3.0
RETRANSMIT_EVERY = 1.0  # seconds, as a NAS with a short timeout and several tries
CODE_BUDGET = 6.0  # how long a NAS waits in all for a code, a challenge or Status-Server
PUSH_BUDGET = PUSH_TIMEOUT + 5.0  # and for a push (the NAS is configured to wait longer)
RESEND_WAIT = 1.0  # a retransmission after the answer gets the same answer within this
# The bridge's per-user limits, set explicitly so that the sessions can stay clear of them.
LIMITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "pushes_per_user": 3,
        "pushes_window": 300,
        "cooldown_after_denied_push": 60,
        "wrong_codes_per_user": 5,
        "wrong_codes_window": 300,
    }
)
LIMIT_MARGIN = 10.0  # seconds of slack on each side of a limit's window
QUARANTINE = 5.0  # seconds late replies to a request are still matched to it
RSS_EVERY = 5.0
STATUS_SERVER = 12
UNKNOWN_CLIENT = "127.0.0.250"


@dataclasses.dataclass
class FlowStats:
    """The numbers of one kind of login."""

    logins: int = 0
    requests: int = 0
    right: int = 0
    lost: int = 0
    wrong: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        latencies = sorted(self.latencies) or [0.0]
        return {
            "logins": self.logins,
            "requests": self.requests,
            "right": self.right,
            "lost": self.lost,
            "wrong": self.wrong,
            "median_ms": round(statistics.median(latencies) * 1000, 1),
            "max_ms": round(latencies[-1] * 1000, 1),
        }


@dataclasses.dataclass
class SoakReport:
    """The run's numbers; ``ok`` when nothing was lost, wrong, extra or broken."""

    seconds: float = 0.0
    nases: int = 0
    sessions: int = 0
    flows: dict[str, FlowStats] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(FlowStats)
    )
    datagrams_sent: int = 0
    retransmissions: int = 0
    duplicates_sent: int = 0
    resends_after_answer: int = 0
    resends_unanswered: int = 0
    identical_repeats: int = 0
    replies: int = 0
    garbage_sent: int = 0
    unexpected_datagrams: int = 0
    fic_users: int = 0
    push_logins: int = 0
    fic_pushes: int = 0
    code_logins: int = 0
    fic_code_checks: int = 0
    code_sends: int = 0
    fic_codes_sent: int = 0
    rss_kib: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    bridge_cpu_seconds: float | None = None
    crashed: bool = False
    exit_status: int | None = None
    internal_errors: list[str] = dataclasses.field(default_factory=list)
    bridge_drops: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(stats.lost for stats in self.flows.values()) + self.resends_unanswered

    @property
    def wrong(self) -> int:
        return sum(stats.wrong for stats in self.flows.values()) + self.unexpected_datagrams

    @property
    def extra_fic_calls(self) -> int:
        return (
            max(0, self.fic_pushes - self.push_logins)
            + max(0, self.fic_code_checks - self.code_logins)
            + max(0, self.fic_codes_sent - self.code_sends)
        )

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.wrong == 0
            and self.extra_fic_calls == 0
            and not self.crashed
            and self.exit_status == 0
            and not self.internal_errors
            and sum(stats.logins for stats in self.flows.values()) > 0
        )

    def rss_at(self, fraction: float) -> int | None:
        """The first sample taken at or after ``fraction`` of the run."""
        for at, rss in self.rss_kib:
            if at >= fraction * self.seconds:
                return rss
        return self.rss_kib[-1][1] if self.rss_kib else None

    def text(self) -> str:
        logins = sum(stats.logins for stats in self.flows.values())
        lines = [
            f"ran {self.seconds:.0f} s: {self.nases} NASes x {self.sessions} sessions, {logins:,} "
            f"logins, {self.datagrams_sent:,} datagrams sent ({self.retransmissions:,} "
            f"retransmissions, {self.duplicates_sent:,} sent twice at once, "
            f"{self.resends_after_answer:,} resent after the answer, {self.garbage_sent:,} "
            f"garbage), {self.replies:,} replies",
            f"{'flow':<22}{'logins':>8}{'requests':>10}{'right':>8}{'lost':>6}{'wrong':>7}"
            f"{'median ms':>11}{'max ms':>9}",
        ]
        for name, stats in sorted(self.flows.items()):
            row = stats.summary()
            lines.append(
                f"{name:<22}{row['logins']:>8,}{row['requests']:>10,}{row['right']:>8,}"
                f"{row['lost']:>6}{row['wrong']:>7}{row['median_ms']:>11}{row['max_ms']:>9}"
            )
        rss = [value for _, value in self.rss_kib]
        lines += [
            f"lost replies        {self.lost} ({self.resends_unanswered} of them to a request "
            "resent after its answer)",
            f"wrong answers       {self.wrong} ({self.unexpected_datagrams} datagrams that "
            "answered nothing sent, or differed from the first reply)",
            f"repeats             {self.identical_repeats:,} repeated replies identical to the "
            "first",
            f"FIC calls           pushes {self.fic_pushes:,} for {self.push_logins:,} push logins; "
            f"code checks {self.fic_code_checks:,} for {self.code_logins:,} codes; codes sent "
            f"{self.fic_codes_sent:,} for {self.code_sends:,} challenges "
            f"(extra: {self.extra_fic_calls}); {self.fic_users:,} users in all",
            f"bridge drop reasons {', '.join(f'{k} {v:,}' for k, v in self.bridge_drops.items())}",
            f"bridge memory       VmRSS {self.rss_at(0)} KiB at start, {self.rss_at(0.25)} KiB "
            f"at a quarter, {self.rss_at(0.5)} KiB at half, {self.rss_at(1.0)} KiB at end "
            f"(min {min(rss, default=0)}, max {max(rss, default=0)}); "
            f"{self.bridge_cpu_seconds or 0:.1f} s of CPU",
            f"bridge process      {'CRASHED' if self.crashed else 'alive throughout'}, exit "
            f"status {self.exit_status} after SIGTERM, {len(self.internal_errors)} internal "
            "errors logged",
        ]
        lines += [f"PROBLEM: {problem}" for problem in self.problems[:20]]
        lines += [f"INTERNAL ERROR: {error}" for error in self.internal_errors[:5]]
        lines.append("result              " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        data = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name != "flows"
        }
        data["flows"] = {name: stats.summary() for name, stats in self.flows.items()}
        data.update(lost=self.lost, wrong=self.wrong, extra_fic_calls=self.extra_fic_calls)
        data["ok"] = self.ok
        return data


@dataclasses.dataclass
class Exchange:
    """One request of a NAS: its bytes, and what came back."""

    packet: bytes
    authenticator: bytes
    answered: asyncio.Future[Reply]
    first_reply: bytes | None = None
    repeats: int = 0  # replies identical to the first


class NasEndpoint(asyncio.DatagramProtocol):
    """One source port of a NAS: its socket, Identifiers, retransmissions and reply checks."""

    def __init__(self, nas: Nas, codec: RadiusCodec, report: SoakReport, rng: random.Random):
        self.nas = nas
        self.secret = nas.secret.encode()
        self.codec = codec
        self.report = report
        self.rng = rng
        self.transport: asyncio.DatagramTransport | None = None
        self.server: tuple[str, int] = ("127.0.0.1", 0)
        self._free = collections.deque(range(256))
        self._exchanges: dict[int, Exchange] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.server)
        self.report.datagrams_sent += 1

    def datagram_received(self, data: bytes, addr: Any) -> None:
        report = self.report
        report.replies += 1
        exchange = self._exchanges.get(data[1]) if len(data) >= 20 else None
        if exchange is None:
            self.unexpected(f"{self.nas.name}: a datagram that answers nothing: {data.hex()}")
            return
        try:
            reply = self.codec.decode_reply(
                data, secret=self.secret, request_authenticator=exchange.authenticator
            )
        except PacketError as error:
            self.unexpected(f"{self.nas.name}: a reply that does not verify ({error})")
            return
        if exchange.first_reply is None:
            exchange.first_reply = data
            if not exchange.answered.done():
                exchange.answered.set_result(reply)
        elif data != exchange.first_reply:
            self.unexpected(f"{self.nas.name}: two different replies to one request")
        else:
            exchange.repeats += 1
            report.identical_repeats += 1

    def unexpected(self, text: str) -> None:
        self.report.unexpected_datagrams += 1
        if len(self.report.problems) < 50:
            self.report.problems.append(text)

    async def exchange(
        self, build: Callable[[int, bytes], bytes], *, budget: float, stats: FlowStats
    ) -> Reply | None:
        """Send a request as a NAS does until answered or ``budget`` seconds have passed."""
        while not self._free:
            await asyncio.sleep(0.01)
        identifier = self._free.popleft()
        authenticator = self.rng.randbytes(16)
        packet = build(identifier, authenticator)
        loop = asyncio.get_running_loop()
        exchange = Exchange(packet, authenticator, loop.create_future())
        self._exchanges[identifier] = exchange
        stats.requests += 1
        started = loop.time()
        self.send(packet)
        if self.rng.random() < 0.1:  # a NAS (or a network) that sends the request twice
            self.send(packet)
            self.report.duplicates_sent += 1
        reply = None
        while reply is None and loop.time() - started < budget:
            wait = min(RETRANSMIT_EVERY, budget - (loop.time() - started))
            try:
                reply = await asyncio.wait_for(asyncio.shield(exchange.answered), wait)
            except TimeoutError:
                if loop.time() - started < budget:
                    self.send(packet)  # RFC 5080 §2.2.1: the very same bytes
                    self.report.retransmissions += 1
        if reply is not None:
            stats.latencies.append(loop.time() - started)
            if self.rng.random() < 0.05:
                await self._resend_after_answer(exchange)
        # Late replies to this request (to a retransmission sent just before the answer came)
        # are still recognised and compared for a while; then another request may take the
        # Identifier, with a new Request Authenticator, so the bridge sees a new request.
        loop.call_later(QUARANTINE, self._release, identifier)
        return reply

    async def _resend_after_answer(self, exchange: Exchange) -> None:
        """Send an answered request again: the bridge's reply cache must repeat the answer."""
        before = exchange.repeats
        self.send(exchange.packet)
        self.report.resends_after_answer += 1
        deadline = asyncio.get_running_loop().time() + RESEND_WAIT
        while exchange.repeats == before:
            if asyncio.get_running_loop().time() > deadline:
                self.report.resends_unanswered += 1
                self.report.problems.append(f"{self.nas.name}: a resent request got no answer")
                return
            await asyncio.sleep(0.01)

    def _release(self, identifier: int) -> None:
        del self._exchanges[identifier]
        self._free.append(identifier)


# How often a session picks each flow.
FLOW_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "otp_good": 25,
        "otp_wrong": 10,
        "push_approved": 12,
        "push_denied": 8,
        "push_unanswered": 3,
        "sms_challenge": 8,
        "email_challenge": 5,
        "sms_wrong_code": 4,
        "status_server": 3,
        "garbage": 15,
    }
)


@dataclasses.dataclass
class PushUser:
    """A user of a session's push pool, and when the bridge's push limits last saw them."""

    name: str
    pushed_at: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    denied_at: float | None = None

    def may_push(self, now: float) -> bool:
        """Whether a push now is clear of every push limit (with ``LIMIT_MARGIN`` to spare)."""
        window = LIMITS["pushes_window"] + LIMIT_MARGIN
        while self.pushed_at and now - self.pushed_at[0] > window:
            self.pushed_at.popleft()
        if len(self.pushed_at) >= LIMITS["pushes_per_user"]:
            return False
        cooldown = LIMITS["cooldown_after_denied_push"] + LIMIT_MARGIN
        return self.denied_at is None or now - self.denied_at > cooldown


class Soak:
    """The login sessions and the flows they choose from.

    Each session has its own socket on its NAS's address and its own users, so that sessions
    never share FIC state. Wrong codes go to users who never type a right one (past the
    bridge's wrong-code limit they are refused locally: still a Reject). Pushes go to the first
    user of the session's pool for that behaviour whom the push limits leave alone (fewer than
    ``pushes_per_user`` pushes within the window, no denied push within the cool-down, each with
    a margin); the pool grows only when none is free. So every outcome is known beforehand, and
    the user population stops growing once the windows turn over, as a real one does.
    """

    def __init__(
        self,
        *,
        sim: FicSimulator,
        codec: RadiusCodec,
        sessions: Sequence[tuple[str, NasEndpoint]],
        garbage: NasEndpoint,
        report: SoakReport,
        seed: int,
    ) -> None:
        self.sim = sim
        self.codec = codec
        self.sessions = sessions
        self.garbage_endpoint = garbage
        self.report = report
        self.seed = seed
        self._pools: dict[tuple[str, str], list[PushUser]] = collections.defaultdict(list)

    @staticmethod
    def users(slots: Sequence[str]) -> list[SimUser]:
        """The users each session keeps for its whole run (their outcome never changes)."""
        users = []
        for slot in slots:
            users += [
                SimUser(f"otp-{slot}", f"otp-{slot}@example.com"),
                SimUser(f"wrong-{slot}", f"wrong-{slot}@example.com"),
                SimUser(
                    f"sms-{slot}",
                    f"sms-{slot}@example.com",
                    "+15550100001",
                    auth_method="SMS",
                    code=None,
                ),
                SimUser(
                    f"email-{slot}", f"email-{slot}@example.com", auth_method="Email", code=None
                ),
                SimUser(
                    f"smswrong-{slot}",
                    f"smswrong-{slot}@example.com",
                    "+15550100002",
                    auth_method="SMS",
                    code=None,
                ),
            ]
        return users

    def push_user(self, slot: str, behaviour: str, rng: random.Random) -> PushUser:
        """A user of this session who does ``behaviour`` with a push and may get one now."""
        pool = self._pools[(slot, behaviour)]
        now = time.monotonic()
        for user in pool:
            if user.may_push(now):
                return user
        name = f"{behaviour}-{slot}-{len(pool)}"
        delay = rng.uniform(0.1, 1.5)
        self.sim.add_user(SimUser(name, f"{name}@example.com", push=behaviour, push_delay=delay))
        user = PushUser(name)
        pool.append(user)
        return user

    @property
    def pool_users(self) -> int:
        return sum(len(pool) for pool in self._pools.values())

    async def run(self, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        await asyncio.gather(
            *(
                self.session(endpoint, slot, deadline, random.Random(f"{self.seed}-{slot}"))
                for slot, endpoint in self.sessions
            )
        )

    async def session(
        self, endpoint: NasEndpoint, slot: str, deadline: float, rng: random.Random
    ) -> None:
        loop = asyncio.get_running_loop()
        names = list(FLOW_WEIGHTS)
        weights = list(FLOW_WEIGHTS.values())
        flows: dict[str, Callable[[NasEndpoint, str, random.Random], Awaitable[None]]] = {
            name: getattr(self, name) for name in names
        }
        while loop.time() < deadline:
            name = rng.choices(names, weights)[0]
            self.report.flows[name].logins += 1
            await flows[name](endpoint, slot, rng)
            await asyncio.sleep(rng.uniform(0, 0.05))

    # -- building blocks

    def request(
        self, endpoint: NasEndpoint, user: str, password: str, state: bytes | None = None
    ) -> Callable[[int, bytes], bytes]:
        def build(identifier: int, authenticator: bytes) -> bytes:
            return self.codec.build_request(
                secret=endpoint.secret,
                identifier=identifier,
                authenticator=authenticator,
                user_name=user,
                password=password,
                state=state,
                attributes=(
                    ("NAS-Identifier", endpoint.nas.name),
                    ("Calling-Station-Id", "198.51.100.7"),
                ),
            )

        return build

    async def login(
        self,
        flow: str,
        endpoint: NasEndpoint,
        build: Callable[[int, bytes], bytes],
        expected: Outcome,
        *,
        budget: float = CODE_BUDGET,
        last_step: bool = True,
    ) -> Reply | None:
        """One request of ``flow``: lost, wrong or right (right counted on the last step)."""
        stats = self.report.flows[flow]
        reply = await endpoint.exchange(build, budget=budget, stats=stats)
        if reply is None:
            stats.lost += 1
            self.problem(f"{flow}: no reply from the bridge within {budget:g} s")
            return None
        if reply.outcome is not expected:
            stats.wrong += 1
            self.problem(
                f"{flow}: {reply.outcome.value} ({reply.reply_message!r}), expected "
                f"{expected.value}"
            )
            return None
        if last_step:
            stats.right += 1
        return reply

    def problem(self, text: str) -> None:
        if len(self.report.problems) < 50:
            self.report.problems.append(text)

    # -- flows

    async def otp_good(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        self.report.code_logins += 1
        build = self.request(endpoint, f"otp-{slot}", CODE)
        await self.login("otp_good", endpoint, build, Outcome.ACCEPT)

    async def otp_wrong(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        # Past the bridge's wrong-code limit these are refused without FIC: still a Reject.
        self.report.code_logins += 1
        code = f"{rng.randrange(1_000_000):06d}".replace(CODE, "654321")
        build = self.request(endpoint, f"wrong-{slot}", code)
        await self.login("otp_wrong", endpoint, build, Outcome.REJECT)

    async def _push(
        self, flow: str, endpoint: NasEndpoint, slot: str, behaviour: str, rng: random.Random
    ) -> None:
        expected = Outcome.ACCEPT if behaviour == "approve" else Outcome.REJECT
        user = self.push_user(slot, behaviour, rng)
        user.pushed_at.append(time.monotonic())
        self.report.push_logins += 1
        build = self.request(endpoint, user.name, "push")
        reply = await self.login(flow, endpoint, build, expected, budget=PUSH_BUDGET)
        if reply is not None and behaviour == "deny":
            user.denied_at = time.monotonic()

    async def push_approved(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        await self._push("push_approved", endpoint, slot, "approve", rng)

    async def push_denied(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        await self._push("push_denied", endpoint, slot, "deny", rng)

    async def push_unanswered(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        await self._push("push_unanswered", endpoint, slot, "ignore", rng)

    async def _challenge(
        self,
        flow: str,
        endpoint: NasEndpoint,
        user: str,
        keyword: str,
        *,
        right_code: bool,
    ) -> None:
        self.report.code_sends += 1
        build = self.request(endpoint, user, keyword)
        challenge = await self.login(flow, endpoint, build, Outcome.CHALLENGE, last_step=False)
        if challenge is None:
            return
        if challenge.state is None:
            self.report.flows[flow].wrong += 1
            self.problem(f"{flow}: an Access-Challenge without State")
            return
        outbox = self.sim.outbox(user)
        code = outbox[-1] if outbox else ""
        if not right_code:
            code = f"{(int(code or 0) + 1) % 1_000_000:06d}"
        self.report.code_logins += 1
        expected = Outcome.ACCEPT if right_code else Outcome.REJECT
        answer = self.request(endpoint, user, code, challenge.state)
        await self.login(flow, endpoint, answer, expected)

    async def sms_challenge(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        await self._challenge("sms_challenge", endpoint, f"sms-{slot}", "sms", right_code=True)

    async def email_challenge(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        await self._challenge(
            "email_challenge", endpoint, f"email-{slot}", "email", right_code=True
        )

    async def sms_wrong_code(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        await self._challenge(
            "sms_wrong_code", endpoint, f"smswrong-{slot}", "sms", right_code=False
        )

    async def status_server(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        def build(identifier: int, authenticator: bytes) -> bytes:
            parts = [attribute(80, bytes(16)), attribute(32, endpoint.nas.name.encode())]
            packet = assemble(STATUS_SERVER, identifier, authenticator, parts)
            return sign(packet, endpoint.secret)

        await self.login("status_server", endpoint, build, Outcome.ACCEPT)

    async def garbage(self, endpoint: NasEndpoint, slot: str, rng: random.Random) -> None:
        """A datagram the bridge must drop; any reply to it is counted wrong on arrival."""
        valid = self.request(endpoint, f"otp-{slot}", CODE)(rng.randrange(256), rng.randbytes(16))
        sender = endpoint
        match rng.randrange(5):
            case 0:  # Message-Authenticator (the first attribute) altered
                packet = valid[:22] + bytes(16) + valid[38:]
            case 1:  # signed with another secret
                packet = sign(valid, b"another-secret")
            case 2:  # truncated
                packet = valid[: rng.randrange(len(valid))]
            case 3:  # random bytes
                packet = rng.randbytes(rng.randrange(0, 300))
            case _:  # a valid request from an address that is no client
                packet, sender = valid, self.garbage_endpoint
        sender.send(packet)
        self.report.garbage_sent += 1
        self.report.flows["garbage"].right += 1


def slots(nases: int, sessions: int) -> list[str]:
    return [f"n{nas}s{session}" for nas in range(nases) for session in range(sessions)]


@dataclasses.dataclass(frozen=True)
class Options:
    seconds: float = 300.0
    nases: int = 4
    sessions: int = 4
    seed: int = 1
    log_level: str = "info"


async def _run(
    options: Options, sim: FicSimulator, bridge: BridgeProcess, nases: Sequence[Nas]
) -> SoakReport:
    report = SoakReport(nases=options.nases, sessions=options.sessions)
    codec = RadiusCodec()
    loop = asyncio.get_running_loop()
    rng = random.Random(options.seed)

    async def open_endpoint(nas: Nas) -> NasEndpoint:
        endpoint = NasEndpoint(nas, codec, report, random.Random(rng.random()))
        endpoint.server = bridge.address
        await loop.create_datagram_endpoint(lambda: endpoint, local_addr=(nas.address, 0))
        return endpoint

    # A NAS with several logins at once sends from several source ports.
    sessions = [
        (slot, await open_endpoint(nases[index // options.sessions]))
        for index, slot in enumerate(slots(options.nases, options.sessions))
    ]
    garbage = await open_endpoint(Nas(name="no-client", address=UNKNOWN_CLIENT, secret="x"))
    soak = Soak(
        sim=sim, codec=codec, sessions=sessions, garbage=garbage, report=report, seed=options.seed
    )
    started = loop.time()

    async def sample_memory() -> None:
        while True:
            rss = bridge.rss_kib()
            if rss is not None:
                report.rss_kib.append((loop.time() - started, rss))
            await asyncio.sleep(RSS_EVERY)

    sampler = loop.create_task(sample_memory())
    try:
        await soak.run(options.seconds)
        report.fic_users = len(Soak.users([slot for slot, _ in sessions])) + soak.pool_users
        # Late duplicates still arrive for a moment; they are checked like the others.
        await asyncio.sleep(0.5)
    finally:
        sampler.cancel()
    report.seconds = loop.time() - started
    rss = bridge.rss_kib()
    if rss is not None:
        report.rss_kib.append((report.seconds, rss))
    for endpoint in [*(endpoint for _, endpoint in sessions), garbage]:
        assert endpoint.transport is not None
        endpoint.transport.close()
    return report


def run_soak(options: Options) -> SoakReport:
    """Start the simulator and a bridge process, run the traffic, stop both; the report."""
    users = Soak.users(slots(options.nases, options.sessions))
    # FIC's own lockout (after 7 wrong codes) would turn the challenges of users who only ever
    # type wrong codes into Rejects; it has tests of its own, and is out of reach here.
    settings = SimulatorSettings(codes_single_use=False, lockout_threshold=1_000_000)
    sim = FicSimulator(users=users, settings=settings)
    sim.start()
    nases = [
        Nas(name=f"nas{index}", address=f"127.0.0.{11 + index}", secret=f"soak-secret-{index}-x7")
        for index in range(options.nases)
    ]
    bridge = BridgeProcess(
        fic_base_url=sim.base_url,
        clients=nases,
        auth={"push_timeout": PUSH_TIMEOUT, "push_poll_interval": 0.5, "challenge_timeout": 60},
        sections={"limits": dict(LIMITS)},
        log_level=options.log_level,
    )
    try:
        bridge.start()
        report = asyncio.run(_run(options, sim, bridge, nases))
        report.crashed = not bridge.alive()
        counters = sim.counters()
        report.fic_pushes = sum(counters["pushes"].values())
        report.fic_code_checks = sum(counters["code_checks"].values())
        report.fic_codes_sent = sum(counters["codes_sent"].values())
        if not report.crashed:
            report.bridge_drops = bridge.dropped_by_reason()
            report.bridge_cpu_seconds = bridge.cpu_seconds()
        report.exit_status = bridge.stop()
        report.internal_errors = bridge.internal_errors()
    finally:
        bridge.close()
        sim.stop()
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Options()
    parser.add_argument(
        "--seconds",
        type=float,
        default=defaults.seconds,
        help="how long to send traffic (default %(default)s)",
    )
    parser.add_argument(
        "--nases",
        type=int,
        default=defaults.nases,
        help="simulated NASes, each its own address (default %(default)s)",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=defaults.sessions,
        help="concurrent login sessions per NAS (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--log-level", default=defaults.log_level, choices=("debug", "info", "warning", "error")
    )
    parser.add_argument(
        "--json", metavar="FILE", type=Path, help="also write the report to FILE as JSON"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when nothing was lost, wrong or extra, 1 otherwise."""
    args = build_parser().parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through run_soak, which stops its children

    signal.signal(signal.SIGTERM, terminate)
    report = run_soak(
        Options(
            seconds=args.seconds,
            nases=args.nases,
            sessions=args.sessions,
            seed=args.seed,
            log_level=args.log_level,
        )
    )
    print(report.text())
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_json(), indent=1), encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
