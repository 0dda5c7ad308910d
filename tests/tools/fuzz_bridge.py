"""Throws mutated RADIUS packets at a running bridge over UDP and checks every answer it gives.

The bridge runs as a ``radius-bridge serve`` child process (a crash is an exit), against an
in-process FIC simulator, both on 127.0.0.1. Packets are valid Access-Requests built with the
codec, then mutated: header Length, attribute lengths, truncated, duplicated, shuffled and random
attributes, vendor-specific garbage, Request Authenticators, Message-Authenticators (wrong,
zero, moved, duplicated, wrong length, missing, other secret), forged States, many and huge
Proxy-States, huge, odd and empty User-Passwords, random bytes; some are sent unchanged and
some twice. Half the mutations are re-signed afterwards, so that they reach the checks behind
the Message-Authenticator. Everything follows from ``--seed``.

An oracle written here from RFC 2865 §3/§5 and RFC 3579 §3.2 (not from the bridge's code) says
what each packet deserves: an answer (well-formed and authentic), silence, or either (authentic
but past what the oracle models, such as a vendor's sub-attributes). Every datagram that comes
back must verify with ``RadiusCodec.decode_reply`` against the request it answers, carry
Message-Authenticator first, echo the Proxy-States, answer a packet that deserved an answer,
with an outcome that request allows (a forged State is never accepted), and a retransmission
gets the very same bytes. A valid marker every ``--window`` packets bounds the packets in
flight, so the kernel drops nothing and a lost answer is the bridge's. After each batch a
valid login must be accepted within a second, and the bridge process must still be running.

    python tests/tools/fuzz_bridge.py --packets 1000000 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import enum
import hashlib
import hmac
import json
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``tools`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from radius_bridge.client import RadiusClient
from radius_bridge.errors import PacketError
from radius_bridge.model import Outcome
from radius_bridge.radius import RadiusCodec
from radius_bridge.simulator import FicSimulator, SimulatorSettings, SimUser
from tools import BridgeProcess, Nas

SECRET = b"fuzz-radius-secret-8c1f"
OTHER_SECRET = b"not-the-secret"
CODE = "123456"  # the simulator's fixed test code
PUSH_TIMEOUT = 5.0
LIVENESS_TIMEOUT = 1.0
MARKER_TIMEOUT = 5.0
# An answer to a login that waits on FIC (a push) may come this long after it was sent.
ANSWER_DEADLINE = PUSH_TIMEOUT + 5.0

ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE, STATUS_SERVER = 1, 2, 3, 11, 12
USER_NAME, USER_PASSWORD, CHAP_PASSWORD, STATE, VENDOR_SPECIFIC = 1, 2, 3, 24, 26
PROXY_STATE, MESSAGE_AUTHENTICATOR = 33, 80
# Vendors whose sub-attributes the shipped dictionary defines (the bridge checks their layout).
KNOWN_VENDORS = (9, 311, 2636, 12356, 25461)
# Room a reply needs besides the echoed Proxy-States: header, Message-Authenticator and a
# Reply-Message (RFC 2865 §3: at most 4096 octets in all).
REPLY_OVERHEAD = 20 + 18 + 400


class Expect(enum.Enum):
    """What a packet deserves, by the oracle."""

    ANSWER = "answer"  # well-formed and authentic: it must be answered
    SILENCE = "silence"  # malformed or not authentic: any answer is a bug
    EITHER = "either"  # authentic, but beyond what the oracle models


# ---------------------------------------------------------------------- the oracle


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()  # noqa: S324 - RADIUS prescribes MD5 (RFC 2865 §3)


def _unhide(hidden: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 §5.2, reversed."""
    plain = bytearray()
    previous = authenticator
    for start in range(0, len(hidden), 16):
        block = hidden[start : start + 16]
        key = _md5(SECRET + previous)
        plain += bytes(a ^ b for a, b in zip(block, key, strict=True))
        previous = block
    return bytes(plain)


def _vendor_layout_ok(value: bytes) -> bool:
    """RFC 2865 §5.26: the sub-attributes after the vendor id tile the value exactly."""
    offset = 4
    while offset < len(value):
        if offset + 2 > len(value) or value[offset + 1] < 2:
            return False
        offset += value[offset + 1]
    return offset == len(value)


def judge(packet: bytes) -> tuple[Expect, tuple[bytes, ...]]:
    """What ``packet`` deserves from a bridge that requires Message-Authenticator, and the
    Proxy-States its answer must echo."""
    if len(packet) < 20:
        return Expect.SILENCE, ()
    length = int.from_bytes(packet[2:4], "big")
    if not 20 <= length <= 4096 or length > len(packet):  # RFC 2865 §3
        return Expect.SILENCE, ()
    code = packet[0]
    if code not in (ACCESS_REQUEST, STATUS_SERVER):
        return Expect.SILENCE, ()
    attributes: list[tuple[int, int, bytes]] = []
    offset = 20
    while offset < length:
        if length - offset < 2 or packet[offset + 1] < 2 or offset + packet[offset + 1] > length:
            return Expect.SILENCE, ()
        end = offset + packet[offset + 1]
        attributes.append((packet[offset], offset, packet[offset + 2 : end]))
        offset = end
    signatures = [(at, value) for kind, at, value in attributes if kind == MESSAGE_AUTHENTICATOR]
    if len(signatures) != 1 or len(signatures[0][1]) != 16:  # RFC 3579 §3.2
        return Expect.SILENCE, ()
    at, received = signatures[0]
    signed = packet[: at + 2] + bytes(16) + packet[at + 18 : length]
    if not hmac.compare_digest(hmac.digest(SECRET, signed, "md5"), received):
        return Expect.SILENCE, ()
    counts = collections.Counter(kind for kind, _, _ in attributes)
    # RFC 2865 §5.44: at most one User-Name, User-Password, CHAP-Password and State; §4.1:
    # not both passwords.
    if any(counts[kind] > 1 for kind in (USER_NAME, USER_PASSWORD, CHAP_PASSWORD, STATE)):
        return Expect.SILENCE, ()
    if counts[USER_PASSWORD] and counts[CHAP_PASSWORD]:
        return Expect.SILENCE, ()
    values = {kind: value for kind, _, value in attributes}
    for kind, _, value in attributes:
        if kind == VENDOR_SPECIFIC:
            if len(value) < 5:  # RFC 2865 §5.26: Length >= 7
                return Expect.SILENCE, ()
            # A vendor the dictionary defines uses the §5.26 layout; a VSA of it that does not
            # is malformed. Other vendors' VSAs are opaque (the layout is only a SHOULD).
            vendor = int.from_bytes(value[:4], "big")
            if vendor in KNOWN_VENDORS and not _vendor_layout_ok(value):
                return Expect.SILENCE, ()
    hidden = values.get(USER_PASSWORD)
    if hidden:
        if len(hidden) % 16 or len(hidden) > 128:  # RFC 2865 §5.2
            return Expect.SILENCE, ()
        try:
            _unhide(hidden, packet[4:20]).rstrip(b"\x00").decode("utf-8")
        except UnicodeDecodeError:
            return Expect.SILENCE, ()
    if USER_NAME in values:
        try:
            values[USER_NAME].decode("utf-8")
        except UnicodeDecodeError:
            return Expect.SILENCE, ()
    proxy_states = tuple(value for kind, _, value in attributes if kind == PROXY_STATE)
    certain = True
    if REPLY_OVERHEAD + sum(len(value) + 2 for value in proxy_states) > 4096:
        certain = False  # the echo may not fit in a reply
    if code == STATUS_SERVER:
        certain = False  # answered only while the bridge judges FIC up (RFC 5997 §4.3)
    return (Expect.ANSWER if certain else Expect.EITHER), proxy_states


# ---------------------------------------------------------------------- packet building


def attribute(kind: int, value: bytes) -> bytes:
    return bytes((kind, min(len(value), 253) + 2)) + value[:253]


def assemble(
    code: int, identifier: int, authenticator: bytes, attributes: Sequence[bytes]
) -> bytes:
    body = b"".join(attributes)
    return bytes((code, identifier)) + (20 + len(body)).to_bytes(2, "big") + authenticator + body


def sign(packet: bytes, secret: bytes = SECRET) -> bytes:
    """Set the first well-placed Message-Authenticator as the bridge would check it: HMAC-MD5
    over the packet up to its Length field with the value zeroed (RFC 3579 §3.2)."""
    length = min(int.from_bytes(packet[2:4], "big"), len(packet)) if len(packet) >= 4 else 0
    offset = 20
    while offset + 2 <= length and packet[offset + 1] >= 2:
        if packet[offset] == MESSAGE_AUTHENTICATOR and packet[offset + 1] == 18:
            if offset + 18 > length:
                break
            zeroed = packet[: offset + 2] + bytes(16) + packet[offset + 18 : length]
            digest = hmac.digest(secret, zeroed, "md5")
            return packet[: offset + 2] + digest + packet[offset + 18 :]
        offset += packet[offset + 1]
    return packet


def split(packet: bytes) -> list[bytes]:
    """The attributes of a well-formed packet, each with its type and length octets."""
    parts = []
    offset = 20
    while offset < len(packet):
        end = offset + packet[offset + 1]
        parts.append(packet[offset:end])
        offset = end
    return parts


@dataclasses.dataclass(frozen=True)
class Template:
    """A kind of valid request: how to build one and the outcomes it may get."""

    name: str
    weight: float
    build: Callable[[random.Random], bytes]
    outcomes: frozenset[Outcome]


def templates(codec: RadiusCodec, real_state: bytes) -> list[Template]:
    """The requests mutations start from; few of them reach FIC, so the fuzz stays fast."""

    def request(user: str, password: str | None, **extra: Any) -> Callable[[random.Random], bytes]:
        def build(rng: random.Random) -> bytes:
            return codec.build_request(
                secret=SECRET,
                identifier=rng.randrange(256),
                authenticator=rng.randbytes(16),
                user_name=user if user else f"fuzz-{rng.randrange(10_000)}",
                password=password,
                attributes=(("NAS-Identifier", "fuzz-nas"), ("Calling-Station-Id", "192.0.2.7")),
                **extra,
            )

        return build

    def bad_format(rng: random.Random) -> bytes:
        words = ("hunter2", "x", "Summer2024!", "12345", "123456789", "p\u00e4ss", "push me")
        return codec.build_request(
            secret=SECRET,
            identifier=rng.randrange(256),
            authenticator=rng.randbytes(16),
            user_name=f"fuzz-{rng.randrange(10_000)}",
            password=rng.choice(words),
            attributes=(("NAS-Identifier", "fuzz-nas"),),
        )

    def forged_state(rng: random.Random) -> bytes:
        state = bytearray(real_state)
        match rng.randrange(5):
            case 0:
                state[rng.randrange(len(state))] ^= 1 << rng.randrange(8)
            case 1:
                del state[rng.randrange(len(state)) :]
            case 2:
                state += rng.randbytes(rng.randrange(1, 200))
            case 3:
                state = bytearray(rng.randbytes(rng.randrange(0, 254)))
        # Case 4: the genuine State, returned for a user it was not issued for (and who has no
        # account, so that the request stays a Reject whatever a mutation removes from it).
        user = "mallory" if state == real_state else "carol"
        return codec.build_request(
            secret=SECRET,
            identifier=rng.randrange(256),
            authenticator=rng.randbytes(16),
            user_name=user,
            password=CODE,
            state=bytes(state),
        )

    def status_server(rng: random.Random) -> bytes:
        parts = [attribute(MESSAGE_AUTHENTICATOR, bytes(16)), attribute(32, b"fuzz-nas")]
        return sign(assemble(STATUS_SERVER, rng.randrange(256), rng.randbytes(16), parts))

    def chap(rng: random.Random) -> bytes:
        parts = [
            attribute(MESSAGE_AUTHENTICATOR, bytes(16)),
            attribute(USER_NAME, b"mallory"),  # no account: no mutation can make this an Accept
            attribute(CHAP_PASSWORD, rng.randbytes(17)),
        ]
        return sign(assemble(ACCESS_REQUEST, rng.randrange(256), rng.randbytes(16), parts))

    def empty_password(rng: random.Random) -> bytes:
        # A zero-length User-Password, as some NASes send an empty password.
        parts = [
            attribute(MESSAGE_AUTHENTICATOR, bytes(16)),
            attribute(USER_NAME, f"fuzz-{rng.randrange(10_000)}".encode()),
            attribute(USER_PASSWORD, b""),
        ]
        return sign(assemble(ACCESS_REQUEST, rng.randrange(256), rng.randbytes(16), parts))

    reject = frozenset({Outcome.REJECT})
    accept_or_reject = frozenset({Outcome.ACCEPT, Outcome.REJECT})
    return [
        Template("bad_format", 72, bad_format, reject),
        Template("forged_state", 10, forged_state, reject),
        Template("status_server", 4, status_server, frozenset({Outcome.ACCEPT})),
        Template("chap", 4, chap, reject),
        Template("otp_alice", 2, request("alice", CODE), accept_or_reject),
        Template("otp_wrong_bob", 2, request("bob", "000000"), reject),
        Template("push_alice", 1.5, request("alice", "push"), accept_or_reject),
        Template("push_denied_bob", 1, request("bob", "push"), reject),
        Template(
            "sms_carol",
            1.5,
            request("carol", "sms"),
            frozenset({Outcome.CHALLENGE, Outcome.REJECT}),
        ),
        Template("empty_password_unknown", 1, empty_password, reject),
        Template("no_password_unknown", 1, request("", None), reject),
    ]


# ---------------------------------------------------------------------- mutations


class Mutator:
    """Mutations of a valid packet; each returns the bytes to send."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.catalogue: list[tuple[str, Callable[[bytes], bytes]]] = [
            (name.removeprefix("m_"), getattr(self, name))
            for name in sorted(dir(self))
            if name.startswith("m_")
        ]

    def mutate(self, packet: bytes) -> tuple[str, bytes]:
        rng = self.rng
        if rng.random() < 0.15:
            for _ in range(rng.randrange(2, 4)):
                if len(packet) < 20:
                    break  # nothing left to mutate as a packet
                packet = rng.choice(self.catalogue)[1](packet)
            result = "stacked"
        else:
            result, mutation = rng.choice(self.catalogue)
            packet = mutation(packet)
        # Re-signed, a mutation gets past the Message-Authenticator to the checks behind it.
        if rng.random() < 0.5:
            packet = sign(packet)
        return result, packet

    def _parts(self, packet: bytes) -> tuple[bytes, list[bytes]]:
        """Header and attributes; a packet an earlier mutation broke has none left to keep."""
        return packet[:20], split(packet) if _well_framed(packet) else []

    @staticmethod
    def _join(head: bytes, parts: Sequence[bytes]) -> bytes:
        return assemble(head[0], head[1], head[4:20], parts)

    # -- header
    def m_length_random(self, packet: bytes) -> bytes:
        return packet[:2] + self.rng.randrange(65536).to_bytes(2, "big") + packet[4:]

    def m_length_short(self, packet: bytes) -> bytes:
        cut = self.rng.randrange(0, len(packet))
        return packet[:2] + cut.to_bytes(2, "big") + packet[4:]

    def m_length_long(self, packet: bytes) -> bytes:
        longer = len(packet) + self.rng.randrange(1, 64)
        return packet[:2] + longer.to_bytes(2, "big") + packet[4:]

    def m_trailing_padding(self, packet: bytes) -> bytes:
        # RFC 2865 §3: octets beyond Length are padding, to be ignored.
        return packet + self.rng.randbytes(self.rng.randrange(1, 64))

    def m_code(self, packet: bytes) -> bytes:
        code = self.rng.choice((0, 2, 3, 4, 5, 11, 12, 13, 40, 255, self.rng.randrange(256)))
        return bytes((code,)) + packet[1:]

    def m_identifier(self, packet: bytes) -> bytes:
        return packet[:1] + bytes((self.rng.randrange(256),)) + packet[2:]

    def m_truncate_datagram(self, packet: bytes) -> bytes:
        return packet[: self.rng.randrange(0, len(packet))]

    # -- attributes
    def m_attribute_length(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        if not parts:
            return packet
        index = self.rng.randrange(len(parts))
        part = bytearray(parts[index])
        choices = (0, 1, 2, part[1] - 1, (part[1] + 1) % 256, 255, self.rng.randrange(256))
        part[1] = self.rng.choice(choices)
        parts[index] = bytes(part)
        return self._join(head, parts)

    def m_attribute_truncated(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        if not parts:
            return packet
        index = self.rng.randrange(len(parts))
        parts[index] = parts[index][: self.rng.randrange(1, len(parts[index]))]
        return self._join(head, parts[: index + 1])

    def m_attribute_duplicated(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        if not parts:
            return packet
        copy = self.rng.choice(parts)
        parts.insert(self.rng.randrange(len(parts) + 1), copy)
        return self._join(head, parts)

    def m_attribute_deleted(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        if not parts:
            return packet
        del parts[self.rng.randrange(len(parts))]
        return self._join(head, parts)

    def m_attributes_shuffled(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        self.rng.shuffle(parts)
        return self._join(head, parts)

    def m_attributes_random(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        rng = self.rng
        for _ in range(rng.randrange(1, 6)):
            kind = rng.choice((rng.randrange(256), 0, 2, 3, 4, 24, 31, 32, 79, 255))
            value = rng.randbytes(rng.choice((0, 1, 4, 16, rng.randrange(254))))
            parts.insert(rng.randrange(len(parts) + 1), attribute(kind, value))
        return self._join(head, parts)

    def m_vendor_specific_garbage(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        rng = self.rng
        vendor = rng.choice((*KNOWN_VENDORS, 0, 32473, rng.randrange(1 << 32)))
        match rng.randrange(4):
            case 0:  # too short to hold a vendor id
                value = rng.randbytes(rng.randrange(0, 5))
            case 1:  # sub-attributes whose lengths lie
                value = vendor.to_bytes(4, "big") + b"".join(
                    bytes((rng.randrange(256), rng.randrange(256)))
                    + rng.randbytes(rng.randrange(8))
                    for _ in range(rng.randrange(1, 4))
                )
            case 2:  # well-formed sub-attributes of random types
                value = vendor.to_bytes(4, "big") + b"".join(
                    attribute(rng.randrange(256), rng.randbytes(rng.randrange(20)))
                    for _ in range(rng.randrange(1, 4))
                )
            case _:  # random bytes after the vendor id
                value = vendor.to_bytes(4, "big") + rng.randbytes(rng.randrange(0, 249))
        parts.insert(rng.randrange(len(parts) + 1), attribute(VENDOR_SPECIFIC, value))
        return self._join(head, parts)

    # -- authenticators
    def m_request_authenticator(self, packet: bytes) -> bytes:
        authenticator = bytearray(packet[4:20])
        authenticator[self.rng.randrange(16)] ^= 1 << self.rng.randrange(8)
        return packet[:4] + bytes(authenticator) + packet[20:]

    def m_message_authenticator_wrong(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        value = self.rng.choice((bytes(16), self.rng.randbytes(16)))
        parts = [attribute(80, value) if p[0] == 80 else p for p in parts]
        return self._join(head, parts)

    def m_message_authenticator_moved(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        signatures = [p for p in parts if p[0] == MESSAGE_AUTHENTICATOR]
        parts = [p for p in parts if p[0] != MESSAGE_AUTHENTICATOR]
        for signature in signatures:
            parts.insert(self.rng.randrange(len(parts) + 1), signature)
        return self._join(head, parts)

    def m_message_authenticator_duplicated(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        copy = attribute(
            MESSAGE_AUTHENTICATOR, self.rng.choice((bytes(16), self.rng.randbytes(16)))
        )
        parts.insert(self.rng.randrange(len(parts) + 1), copy)
        return self._join(head, parts)

    def m_message_authenticator_length(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        size = self.rng.choice((0, 1, 15, 17, 32, self.rng.randrange(254)))
        parts = [attribute(80, self.rng.randbytes(size)) if p[0] == 80 else p for p in parts]
        return self._join(head, parts)

    def m_message_authenticator_missing(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        return self._join(head, [p for p in parts if p[0] != MESSAGE_AUTHENTICATOR])

    def m_message_authenticator_other_secret(self, packet: bytes) -> bytes:
        return sign(packet, OTHER_SECRET)

    # -- State and Proxy-State
    def m_state_random(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        parts = [p for p in parts if p[0] != STATE]
        value = self.rng.randbytes(self.rng.choice((0, 1, 42, 253, self.rng.randrange(254))))
        parts.insert(self.rng.randrange(len(parts) + 1), attribute(STATE, value))
        return self._join(head, parts)

    def m_proxy_state_many(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        rng = self.rng
        size = rng.choice((0, 1, 8, 40))
        count = rng.randrange(1, min(200, 3800 // (size + 2)))
        parts += [attribute(PROXY_STATE, rng.randbytes(size)) for _ in range(count)]
        return self._join(head, parts)

    def m_proxy_state_huge(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        room = 4096 - len(packet)
        count = self.rng.randrange(1, max(2, room // 255 + 1))
        parts += [attribute(PROXY_STATE, self.rng.randbytes(253)) for _ in range(count)]
        return self._join(head, parts)

    # -- User-Password
    def m_password_length(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        parts = [p for p in parts if p[0] != USER_PASSWORD]
        size = self.rng.choice((0, 1, 15, 16, 17, 112, 128, 129, 144, 240, 253))
        parts.append(attribute(USER_PASSWORD, self.rng.randbytes(size)))
        return self._join(head, parts)

    def m_password_huge_valid(self, packet: bytes) -> bytes:
        # 128 octets of printable text: the longest password RFC 2865 §5.2 allows.
        head, parts = self._parts(packet)
        parts = [p for p in parts if p[0] != USER_PASSWORD]
        plain = bytes(self.rng.randrange(33, 127) for _ in range(128))
        parts.append(attribute(USER_PASSWORD, _hide(plain, head[4:20])))
        return self._join(head, parts)

    def m_password_empty(self, packet: bytes) -> bytes:
        head, parts = self._parts(packet)
        parts = [p for p in parts if p[0] != USER_PASSWORD]
        value = self.rng.choice((b"", _hide(b"", head[4:20])))
        parts.append(attribute(USER_PASSWORD, value))
        return self._join(head, parts)

    def m_byte_flip(self, packet: bytes) -> bytes:
        data = bytearray(packet)
        for _ in range(self.rng.randrange(1, 4)):
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return bytes(data)


def _well_framed(packet: bytes) -> bool:
    if len(packet) < 20 or int.from_bytes(packet[2:4], "big") != len(packet):
        return False
    offset = 20
    while offset < len(packet):
        if offset + 2 > len(packet) or packet[offset + 1] < 2:
            return False
        offset += packet[offset + 1]
    return offset == len(packet)


def _hide(plain: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 §5.2: NUL-padded to 16-octet blocks, each XORed with a chained MD5."""
    padded = plain.ljust(max(16, -(-len(plain) // 16) * 16), b"\x00")
    hidden = bytearray()
    previous = authenticator
    for start in range(0, len(padded), 16):
        key = _md5(SECRET + previous)
        block = bytes(a ^ b for a, b in zip(padded[start : start + 16], key, strict=True))
        hidden += block
        previous = block
    return bytes(hidden)


# ---------------------------------------------------------------------- sending and checking


@dataclasses.dataclass(slots=True)
class Sent:
    """One distinct packet sent, what it deserves and what came back."""

    packet: bytes
    kind: str  # the mutation (or "valid", "marker", ...)
    expect: Expect
    outcomes: frozenset[Outcome]
    proxy_states: tuple[bytes, ...]
    sent_at: float
    batch: int
    sends: int = 1
    replies: list[bytes] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FuzzReport:
    """The run's numbers; ``ok`` when nothing went wrong."""

    seed: int
    packets_sent: int = 0  # the fuzz stream, retransmissions included
    control_packets: int = 0  # markers and liveness checks, besides
    distinct_packets: int = 0
    retransmissions: int = 0
    seconds: float = 0.0
    answers: int = 0
    answers_by_outcome: dict[str, int] = dataclasses.field(default_factory=dict)
    expected: dict[str, int] = dataclasses.field(default_factory=dict)
    unanswered: dict[str, int] = dataclasses.field(default_factory=dict)
    bad_answers: int = 0
    answers_to_silence: int = 0
    lost: int = 0
    liveness_checks: int = 0
    liveness_failures: int = 0
    liveness_max_ms: float = 0.0
    crashed: bool = False
    exit_status: int | None = None
    internal_errors: list[str] = dataclasses.field(default_factory=list)
    bridge_drops: dict[str, int] = dataclasses.field(default_factory=dict)
    fic_requests: int = 0
    rss_kib_start: int | None = None
    rss_kib_end: int | None = None
    rss_kib_by_packets: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    bridge_cpu_seconds: float | None = None
    stopped_early: str | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    kinds: dict[str, int] = dataclasses.field(default_factory=dict)  # distinct packets by kind

    def _rss_after(self, fraction: float) -> int | None:
        """VmRSS at the first batch boundary at or past ``fraction`` of the packets sent."""
        for sent, rss in self.rss_kib_by_packets:
            if sent >= fraction * self.packets_sent:
                return rss
        return None

    @property
    def rate(self) -> float:
        return self.packets_sent / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.crashed
            and self.exit_status == 0
            and self.bad_answers == 0
            and self.lost == 0
            and self.liveness_failures == 0
            and self.liveness_checks > 0
            and not self.internal_errors
        )

    def text(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.answers_by_outcome.items()))
        expected = ", ".join(f"{k} {v}" for k, v in sorted(self.expected.items()))
        unanswered = ", ".join(f"{k} {v}" for k, v in sorted(self.unanswered.items()))
        drops = ", ".join(f"{k} {v}" for k, v in self.bridge_drops.items())
        lines = [
            f"packets sent        {self.packets_sent:,} ({self.distinct_packets:,} distinct, "
            f"{self.retransmissions:,} retransmissions) in {self.seconds:.1f} s = "
            f"{self.rate:,.0f} packets/s (seed {self.seed})",
            f"oracle said         {expected}",
            f"answers             {self.answers:,} ({outcomes})",
            f"unanswered          {unanswered} (silence is what malformed or forged deserve)",
            f"bridge drop reasons {drops}",
            f"bad answers         {self.bad_answers} (garbage, unverifiable, to a packet that "
            "deserved none, wrong outcome or Proxy-State echo, differing retransmission)",
            f"lost answers        {self.lost} (well-formed, authentic packets never answered)",
            f"liveness checks     {self.liveness_checks - self.liveness_failures}/"
            f"{self.liveness_checks} answered right within {LIVENESS_TIMEOUT:g} s "
            f"(slowest {self.liveness_max_ms:.0f} ms)",
            f"bridge process      {'CRASHED' if self.crashed else 'alive throughout'}, exit "
            f"status {self.exit_status} after SIGTERM, {len(self.internal_errors)} internal "
            "errors logged",
            f"bridge memory       VmRSS {self.rss_kib_start} KiB at start, "
            f"{self._rss_after(0.25)} KiB after a quarter of the packets, {self._rss_after(0.5)} "
            f"KiB after half, {self.rss_kib_end} KiB at end; "
            f"{self.bridge_cpu_seconds or 0:.1f} s of CPU",
            f"FIC simulator       {self.fic_requests:,} API requests",
        ]
        if self.stopped_early:
            lines.append(f"stopped early       {self.stopped_early}")
        lines += [f"PROBLEM: {problem}" for problem in self.problems[:20]]
        lines += [f"INTERNAL ERROR: {error}" for error in self.internal_errors[:5]]
        lines.append("result              " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


class Checker:
    """Matches replies to the packets they answer and holds every rule an answer must obey."""

    def __init__(self, codec: RadiusCodec, report: FuzzReport) -> None:
        self._codec = codec
        self._report = report
        # By Identifier, the packets that may be answered apart from those that may not, so
        # that a reply is matched against few candidates (newest first).
        self._deserving: dict[int, list[Sent]] = collections.defaultdict(list)
        self._silent: dict[int, list[Sent]] = collections.defaultdict(list)

    def track(self, sent: Sent) -> None:
        if len(sent.packet) >= 20:
            table = self._silent if sent.expect is Expect.SILENCE else self._deserving
            table[sent.packet[1]].append(sent)

    def problem(self, text: str) -> None:
        self._report.bad_answers += 1
        if len(self._report.problems) < 50:
            self._report.problems.append(text)

    def reply(self, data: bytes) -> None:
        """Check one received datagram."""
        self._report.answers += 1
        if len(data) < 20:
            self.problem(f"a datagram of {len(data)} octets came back: {data.hex()}")
            return
        length = min(int.from_bytes(data[2:4], "big"), len(data))
        identifier = data[1]
        for table in (self._deserving, self._silent):
            for sent in reversed(table.get(identifier, ())):
                # RFC 2865 §3: the Response Authenticator covers the request's authenticator.
                expected = _md5(data[:4] + sent.packet[4:20] + data[20:length] + SECRET)
                if hmac.compare_digest(expected, data[4:20]):
                    self._answered(sent, data)
                    return
        self.problem(f"a reply that answers nothing sent (identifier {identifier}): {data.hex()}")

    def _answered(self, sent: Sent, data: bytes) -> None:
        report = self._report
        where = f"{sent.kind} packet {sent.packet.hex()}"
        try:
            reply = self._codec.decode_reply(
                data, secret=SECRET, request_authenticator=sent.packet[4:20]
            )
        except PacketError as error:
            self.problem(f"reply to {where} does not decode ({error}): {data.hex()}")
            return
        outcome = reply.outcome.value
        report.answers_by_outcome[outcome] = report.answers_by_outcome.get(outcome, 0) + 1
        if sent.expect is Expect.SILENCE:
            report.answers_to_silence += 1
            self.problem(f"{outcome} to a packet that deserved silence: {where}")
        elif reply.outcome not in sent.outcomes:
            self.problem(f"{outcome} where only {sorted(o.value for o in sent.outcomes)}: {where}")
        if not reply.message_authenticator_first:
            self.problem(f"reply without Message-Authenticator first to {where}")
        if reply.proxy_states != sent.proxy_states:
            self.problem(f"Proxy-State not echoed in order to {where}")
        if sent.replies and data != sent.replies[0]:
            self.problem(f"two different replies to the same {where}")
        if len(sent.replies) >= sent.sends:
            self.problem(f"more replies than sends to {where}")
        sent.replies.append(data)

    def forget(self, keep: Callable[[Sent], bool]) -> None:
        """Drop the records ``keep`` refuses; a later reply to one answers nothing sent."""
        for table in (self._deserving, self._silent):
            for identifier in list(table):
                kept = [sent for sent in table[identifier] if keep(sent)]
                if kept:
                    table[identifier] = kept
                else:
                    del table[identifier]


@dataclasses.dataclass(frozen=True)
class Options:
    packets: int = 1_000_000
    seed: int = 1
    batch: int = 10_000
    window: int = 200  # packets between two markers
    markers_in_flight: int = 8
    max_seconds: float = 900.0
    log_level: str = "info"


def fic_users() -> list[SimUser]:
    return [
        SimUser("alice", "alice@example.com", push_delay=0.1),
        SimUser("bob", "bob@example.com", push="deny", push_delay=0.1),
        SimUser("carol", "carol@example.com", "+15550100003", auth_method="SMS", code=None),
        SimUser("liveness", "liveness@example.com"),
    ]


class Fuzzer:
    """One run: the traffic generator, the socket and the checks (see the module docstring)."""

    def __init__(
        self,
        options: Options,
        bridge: BridgeProcess,
        codec: RadiusCodec,
        kinds: Sequence[Template],
    ) -> None:
        self.options = options
        self.bridge = bridge
        self.codec = codec
        self.templates = list(kinds)
        # The packet stream comes from ``rng`` alone (it is generated on another thread), the
        # markers and liveness checks from ``control_rng``: one seed, one stream.
        self.rng = random.Random(options.seed)
        self.control_rng = random.Random(-options.seed - 1)
        self.report = FuzzReport(seed=options.seed)
        self.checker = Checker(codec, self.report)
        self.mutator = Mutator(self.rng)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.markers: collections.deque[Sent] = collections.deque()
        self.waiting: list[Sent] = []  # packets that may deserve an answer, not yet answered
        self.batch = 0

    def close(self) -> None:
        self.sock.close()

    # -- generation

    def generate_batch(self, count: int, batch_index: int) -> list[tuple[bytes, Sent, bool]]:
        """``count`` packets, precomputed: (bytes, record, whether it is a retransmission).

        Runs on the generator thread while the previous batch is sent: it uses only ``rng``,
        the mutator and the (thread-safe) codec.
        """
        rng = self.rng
        weights = [template.weight for template in self.templates]
        batch: list[tuple[bytes, Sent, bool]] = []
        fresh: list[Sent] = []
        for _ in range(count):
            roll = rng.random()
            if roll < 0.02 and fresh:
                previous = rng.choice(fresh)
                batch.append((previous.packet, previous, True))
                continue
            template = rng.choices(self.templates, weights)[0]
            if roll < 0.10:
                kind, packet = "valid", template.build(rng)
            elif roll < 0.13:
                kind = "random_bytes"
                packet = rng.randbytes(rng.choice((0, 1, 19, 20, 21, rng.randrange(4200))))
            elif roll < 0.15:
                kind = "random_attributes"
                body = rng.randbytes(rng.randrange(300))
                head = bytes((rng.choice((ACCESS_REQUEST, STATUS_SERVER)), rng.randrange(256)))
                packet = head + (20 + len(body)).to_bytes(2, "big") + rng.randbytes(16) + body
            else:
                kind, packet = self.mutator.mutate(template.build(rng))
            packet = packet[:4200]
            expect, proxy_states = judge(packet)
            if packet[:1] == bytes((STATUS_SERVER,)):
                outcomes = frozenset({Outcome.ACCEPT})
            elif kind == "valid":
                outcomes = template.outcomes
            else:
                # A mutation may cost a login its success, or turn it into a request for a
                # code (a password or State removed); it may never win an Accept.
                outcomes = template.outcomes | {Outcome.REJECT, Outcome.CHALLENGE}
            sent = Sent(packet, kind, expect, outcomes, proxy_states, 0.0, batch_index)
            fresh.append(sent)
            batch.append((packet, sent, False))
        return batch

    # -- traffic

    def send(self, packet: bytes) -> None:
        self.sock.sendto(packet, self.bridge.address)

    def record(self, sent: Sent) -> None:
        report = self.report
        sent.sent_at = time.monotonic()
        report.distinct_packets += 1
        report.kinds[sent.kind] = report.kinds.get(sent.kind, 0) + 1
        report.expected[sent.expect.value] = report.expected.get(sent.expect.value, 0) + 1
        self.checker.track(sent)
        if sent.expect is not Expect.SILENCE:
            self.waiting.append(sent)

    def drain(self, timeout: float = 0.0) -> None:
        """Check every datagram that has arrived (waiting up to ``timeout`` for the first)."""
        if timeout > 0:
            select.select([self.sock], [], [], timeout)
        while True:
            try:
                data = self.sock.recv(8192)
            except BlockingIOError:
                return
            self.checker.reply(data)

    def control(self, user: str, password: str, kind: str, outcome: Outcome) -> Sent:
        """A valid request of our own (marker or liveness check), sent and tracked."""
        packet = self.codec.build_request(
            secret=SECRET,
            identifier=self.control_rng.randrange(256),
            authenticator=self.control_rng.randbytes(16),
            user_name=user,
            password=password,
        )
        expect, proxy_states = judge(packet)
        assert expect is Expect.ANSWER, f"the oracle must find a {kind} request valid"
        sent = Sent(packet, kind, expect, frozenset({outcome}), proxy_states, 0.0, self.batch)
        self.record(sent)
        self.send(packet)
        self.report.control_packets += 1
        return sent

    def marker(self) -> None:
        """A valid request answered without FIC; waiting for old ones bounds what is in flight."""
        self.markers.append(self.control("fuzz-marker", "not-a-code", "marker", Outcome.REJECT))
        while len(self.markers) > self.options.markers_in_flight:
            self.wait_for_marker()

    def wait_for_marker(self) -> None:
        oldest = self.markers.popleft()
        deadline = time.monotonic() + MARKER_TIMEOUT
        while not oldest.replies and time.monotonic() < deadline:
            self.drain(0.05)
        # An unanswered marker is counted lost by ``settle`` like any other valid packet.

    def liveness(self) -> None:
        """After a batch: a valid login, accepted within ``LIVENESS_TIMEOUT`` seconds."""
        while self.markers:
            self.wait_for_marker()
        started = time.monotonic()
        sent = self.control("liveness", CODE, "liveness", Outcome.ACCEPT)
        while not sent.replies and time.monotonic() - started < LIVENESS_TIMEOUT:
            self.drain(0.01)
        elapsed_ms = (time.monotonic() - started) * 1000
        report = self.report
        report.liveness_checks += 1
        report.liveness_max_ms = max(report.liveness_max_ms, elapsed_ms)
        if not (sent.replies and sent.replies[0][0] == ACCESS_ACCEPT):
            report.liveness_failures += 1
            report.problems.append(
                f"liveness check {report.liveness_checks} not accepted within "
                f"{LIVENESS_TIMEOUT:g} s"
            )

    def send_batch(self, batch: Sequence[tuple[bytes, Sent, bool]]) -> None:
        report = self.report
        window = self.options.window
        for index, (packet, sent, retransmission) in enumerate(batch, 1):
            if retransmission:
                sent.sends += 1
                report.retransmissions += 1
            else:
                self.record(sent)
            self.send(packet)
            report.packets_sent += 1
            if index % 32 == 0:
                self.drain()
            if index % window == 0:
                self.marker()

    def settle(self, *, final: bool) -> None:
        """Count packets unanswered past their deadline; forget records no reply can match."""
        report = self.report
        now = time.monotonic()
        still_waiting = []
        for sent in self.waiting:
            if sent.replies:
                continue  # a retransmission dropped while the first copy was in progress is fine
            if not final and now - sent.sent_at <= ANSWER_DEADLINE:
                still_waiting.append(sent)
                continue
            label = f"{sent.expect.value}:{sent.kind}"
            report.unanswered[label] = report.unanswered.get(label, 0) + 1
            if sent.expect is Expect.ANSWER:
                report.lost += 1
                if len(report.problems) < 50:
                    report.problems.append(f"no answer to {sent.kind} packet {sent.packet.hex()}")
        self.waiting = still_waiting
        silent = report.expected.get(Expect.SILENCE.value, 0)
        report.unanswered["silence"] = silent - report.answers_to_silence
        # A reply that comes after its record is forgotten is reported as answering nothing.
        oldest_batch = self.batch - 2
        self.checker.forget(
            lambda sent: sent.batch >= oldest_batch or now - sent.sent_at < 2 * ANSWER_DEADLINE
        )

    def run(self) -> None:
        options = self.options
        report = self.report
        started = time.monotonic()
        report.rss_kib_start = self.bridge.rss_kib()
        sizes = [options.batch] * (options.packets // options.batch)
        if options.packets % options.batch:
            sizes.append(options.packets % options.batch)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="generate") as generator:
            # The next batch is generated while this one is sent: the bridge never waits.
            upcoming = generator.submit(self.generate_batch, sizes[0], 0) if sizes else None
            for index in range(len(sizes)):
                assert upcoming is not None
                batch = upcoming.result()
                upcoming = (
                    generator.submit(self.generate_batch, sizes[index + 1], index + 1)
                    if index + 1 < len(sizes)
                    else None
                )
                self.send_batch(batch)
                self.liveness()
                rss = self.bridge.rss_kib()
                if rss is not None:
                    report.rss_kib_by_packets.append((report.packets_sent, rss))
                self.settle(final=False)
                if not self.bridge.alive():
                    report.stopped_early = "the bridge process exited"
                    break
                if time.monotonic() - started > options.max_seconds:
                    report.stopped_early = f"--max-seconds {options.max_seconds:g} reached"
                    break
                self.batch += 1
            if upcoming is not None:
                upcoming.cancel()
        report.seconds = time.monotonic() - started
        # Answers still due (a push takes a moment) have until their deadline.
        deadline = time.monotonic() + ANSWER_DEADLINE
        while time.monotonic() < deadline and any(
            not sent.replies and sent.expect is Expect.ANSWER for sent in self.waiting
        ):
            self.drain(0.1)
        self.drain(0.5)
        self.settle(final=True)
        report.rss_kib_end = self.bridge.rss_kib()
        report.bridge_cpu_seconds = self.bridge.cpu_seconds()


def real_challenge_state(bridge: BridgeProcess, codec: RadiusCodec) -> bytes:
    """A genuine State from an SMS challenge, for the forged-State requests to start from."""
    client = RadiusClient(bridge.address, SECRET, codec=codec, timeout=3.0, attempts=2)
    reply = client.authenticate("carol", "sms")
    if reply.outcome is not Outcome.CHALLENGE or reply.state is None:
        raise RuntimeError(f"expected a challenge for carol, got {reply.outcome.value}")
    return reply.state


def run_fuzz(options: Options) -> FuzzReport:
    """Start the simulator and a bridge process, fuzz, stop both; the report of the run."""
    codec = RadiusCodec()
    sim = FicSimulator(users=fic_users(), settings=SimulatorSettings(codes_single_use=False))
    sim.start()
    bridge = BridgeProcess(
        fic_base_url=sim.base_url,
        clients=[Nas(name="fuzzer", address="127.0.0.1", secret=SECRET.decode())],
        auth={"push_timeout": PUSH_TIMEOUT, "push_poll_interval": 0.25, "challenge_timeout": 60},
        log_level=options.log_level,
    )
    try:
        bridge.start()
        fuzzer = Fuzzer(
            options, bridge, codec, templates(codec, real_challenge_state(bridge, codec))
        )
        try:
            fuzzer.run()
        finally:
            fuzzer.close()
        report = fuzzer.report
        report.crashed = not bridge.alive()
        if not report.crashed:
            report.bridge_drops = bridge.dropped_by_reason()
        report.fic_requests = sum(sim.counters()["requests"].values())
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
        "--packets",
        type=int,
        default=defaults.packets,
        help="fuzz packets to send (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--batch",
        type=int,
        default=defaults.batch,
        help="packets between liveness checks (default %(default)s)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=defaults.window,
        help="packets between flow-control markers (default %(default)s)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=defaults.max_seconds,
        help="stop sending after this long (default %(default)s)",
    )
    parser.add_argument(
        "--log-level", default=defaults.log_level, choices=("debug", "info", "warning", "error")
    )
    parser.add_argument(
        "--json", metavar="FILE", type=Path, help="also write the report to FILE as JSON"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when the run found nothing wrong, 1 otherwise."""
    args = build_parser().parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through run_fuzz, which stops its children

    signal.signal(signal.SIGTERM, terminate)
    options = Options(
        packets=args.packets,
        seed=args.seed,
        batch=args.batch,
        window=args.window,
        max_seconds=args.max_seconds,
        log_level=args.log_level,
    )
    report = run_fuzz(options)
    print(report.text())
    if args.json is not None:
        data = {**dataclasses.asdict(report), "rate": report.rate, "ok": report.ok}
        args.json.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
