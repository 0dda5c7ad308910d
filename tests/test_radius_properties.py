"""Property tests for the request decoder: whatever arrives, it decodes or raises a PacketError.

Three sources of input: arbitrary bytes, mutations of a valid signed request, and well-framed
packets of random attributes (signed or not), which reach the deeper decoding steps.
"""

from __future__ import annotations

import hmac
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radius_bridge.errors import PacketError
from radius_bridge.model import AccessRequest
from radius_bridge.radius import RadiusCodec

SECRET = b"property-secret"
CODEC = RadiusCodec()

PROPERTY_SETTINGS = settings(
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow],
)


def decode_or_packet_error(data: bytes, *, require: bool) -> AccessRequest | PacketError:
    """The invariant: an AccessRequest comes back or a PacketError is raised, nothing else."""
    try:
        return CODEC.decode(
            data, secret=SECRET, client_name="fuzz", require_message_authenticator=require
        )
    except PacketError as error:
        return error


VALID_REQUEST = CODEC.build_request(
    secret=SECRET,
    identifier=3,
    user_name="alice",
    password="123456",
    state=b"state",
    proxy_states=[b"hop"],
    authenticator=bytes(range(16)),
    attributes=[("NAS-Identifier", "vpn1"), ("Calling-Station-Id", "192.0.2.1")],
)


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=300), require=st.booleans())
def test_any_bytes(data: bytes, require: bool) -> None:
    """Arbitrary bytes decode or raise a PacketError."""
    decode_or_packet_error(data, require=require)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID_REQUEST)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "length"]))
        position = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif action == "set" and data:
            data[position] = draw(st.integers(min_value=0, max_value=255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[position : position + draw(st.integers(min_value=1, max_value=8))]
        elif action == "truncate":
            del data[position:]
        elif action == "length" and len(data) >= 4:
            data[2:4] = struct.pack("!H", draw(st.integers(min_value=0, max_value=0xFFFF)))
    return bytes(data)


@PROPERTY_SETTINGS
@given(data=mutated_requests(), require=st.booleans())
def test_mutated_valid_request(data: bytes, require: bool) -> None:
    """Mutations of a valid signed request decode or raise a PacketError."""
    decode_or_packet_error(data, require=require)


ATTRIBUTE_TYPES = st.one_of(
    st.sampled_from([1, 2, 3, 4, 24, 26, 31, 32, 33, 79, 80]),
    st.integers(min_value=0, max_value=255),
)
VENDOR_IDS = st.sampled_from([9, 311, 2636, 12356, 25461, 4846, 0])


@st.composite
def vendor_specific_values(draw: st.DrawFn) -> bytes:
    subs = draw(
        st.lists(
            st.tuples(st.integers(0, 255), st.binary(max_size=20), st.integers(-2, 2)),
            max_size=3,
        )
    )
    # A length skew of non-zero makes the sub-attribute lie about its size.
    body = b"".join(
        bytes((sub_type, max(0, min(255, len(value) + 2 + skew)))) + value
        for sub_type, value, skew in subs
    )
    return struct.pack("!I", draw(VENDOR_IDS)) + body


@st.composite
def framed_packets(draw: st.DrawFn) -> bytes:
    """Correctly framed packets of random attributes, sometimes signed at a random position."""
    attributes = []
    for attribute_type in draw(st.lists(ATTRIBUTE_TYPES, max_size=8)):
        if attribute_type == 26:
            value = draw(vendor_specific_values())
        elif attribute_type == 2:
            value = draw(st.one_of(st.binary(max_size=40), st.sampled_from([bytes(16), b""])))
        elif attribute_type == 80:
            value = draw(st.binary(min_size=16, max_size=16))
        else:
            value = draw(st.binary(max_size=40))
        attributes.append(bytes((attribute_type, min(len(value), 253) + 2)) + value[:253])
    signed_at = draw(st.one_of(st.none(), st.integers(0, len(attributes))))
    if signed_at is not None:
        attributes.insert(signed_at, bytes((80, 18)) + bytes(16))
    body = b"".join(attributes)
    code = draw(st.sampled_from([1, 1, 1, 12, 2, 4]))
    head = struct.pack("!BBH", code, 7, 20 + len(body)) + draw(st.binary(min_size=16, max_size=16))
    packet = head + body
    if signed_at is not None:
        at = 20 + sum(len(attribute) for attribute in attributes[:signed_at])
        signature = hmac.digest(SECRET, packet, "md5")
        packet = packet[: at + 2] + signature + packet[at + 18 :]
    return packet


@PROPERTY_SETTINGS
@given(data=framed_packets(), require=st.booleans())
def test_framed_random_attributes(data: bytes, require: bool) -> None:
    """Well-framed packets of random attributes decode or raise a PacketError."""
    result = decode_or_packet_error(data, require=require)
    if isinstance(result, AccessRequest):
        assert result.identifier == 7


def test_framed_packets_reach_a_decoded_request() -> None:
    """The framed strategy does produce decodable requests, so the property is not vacuous."""
    decoded = []

    @settings(deadline=None, max_examples=200, database=None)
    @given(data=framed_packets())
    def collect(data: bytes) -> None:
        if isinstance(decode_or_packet_error(data, require=False), AccessRequest):
            decoded.append(data)

    collect()
    assert decoded
    assert isinstance(decode_or_packet_error(VALID_REQUEST, require=True), AccessRequest)


@pytest.mark.parametrize("require", [True, False])
def test_valid_request_seed_decodes(require: bool) -> None:
    """The seed of the mutation test is itself a valid request."""
    request = decode_or_packet_error(VALID_REQUEST, require=require)
    assert isinstance(request, AccessRequest)
    assert request.password == "123456"
