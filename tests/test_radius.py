"""Tests for radius_bridge.radius: real packets in, real packets out, checked independently.

Requests are assembled here byte by byte (passwords hidden with pyrad's own ``PwCrypt``), and
replies are checked by recomputing the Response Authenticator and the HMAC-MD5 from the raw
bytes, by pyrad's client-side verification and by FreeRADIUS' radclient.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from pyrad import packet as pyrad_packet
from pyrad.dictionary import Dictionary

from radius_bridge.errors import BadAuthenticator, MalformedPacket, MissingAuthenticator
from radius_bridge.model import (
    AccessRequest,
    Decision,
    Outcome,
    PacketKind,
    PasswordScheme,
    Reason,
)
from radius_bridge.radius import RadiusCodec, peek_header

SECRET = b"testing123"
AUTHENTICATOR = bytes(range(16))
FORTINET = 12356
MICROSOFT = 311


@pytest.fixture(scope="module")
def codec() -> RadiusCodec:
    return RadiusCodec()


# ---------------------------------------------------------------------- independent helpers


def avp(attribute_type: int, value: bytes) -> bytes:
    return bytes((attribute_type, len(value) + 2)) + value


def vsa(vendor: int, vendor_type: int, value: bytes) -> bytes:
    return avp(26, struct.pack("!I", vendor) + avp(vendor_type, value))


def hidden(
    password: bytes, *, secret: bytes = SECRET, authenticator: bytes = AUTHENTICATOR
) -> bytes:
    """RFC 2865 §5.2 hiding done by pyrad, not by the code under test."""
    carrier = pyrad_packet.AuthPacket(secret=secret, authenticator=authenticator)
    result: bytes = carrier.PwCrypt(password)
    return result


def md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()  # noqa: S324 - RADIUS prescribes MD5


def request_bytes(
    attributes: Sequence[bytes],
    *,
    code: int = 1,
    identifier: int = 42,
    authenticator: bytes = AUTHENTICATOR,
    secret: bytes = SECRET,
    message_authenticator: str | None = "first",
) -> bytes:
    """Assemble a request; the Message-Authenticator goes first, last or nowhere."""
    body = list(attributes)
    placeholder = avp(80, bytes(16))
    if message_authenticator == "first":
        body.insert(0, placeholder)
    elif message_authenticator == "last":
        body.append(placeholder)
    raw = b"".join(body)
    head = struct.pack("!BBH", code, identifier, 20 + len(raw)) + authenticator
    packet = head + raw
    if message_authenticator is not None:
        signature = hmac.digest(secret, packet, "md5")
        at = packet.index(placeholder)
        packet = packet[: at + 2] + signature + packet[at + 18 :]
    return packet


def split_attributes(packet: bytes) -> list[tuple[int, bytes]]:
    found = []
    offset = 20
    while offset < len(packet):
        length = packet[offset + 1]
        found.append((packet[offset], packet[offset + 2 : offset + length]))
        offset += length
    assert offset == len(packet)
    return found


def assert_signed_reply(reply: bytes, request_authenticator: bytes, secret: bytes = SECRET) -> None:
    """Recompute the Response Authenticator (RFC 2865 §3) and the MA (RFC 3579 §3.2)."""
    assert struct.unpack("!H", reply[2:4])[0] == len(reply)
    assert reply[4:20] == md5(reply[:4] + request_authenticator + reply[20:] + secret)
    attributes = split_attributes(reply)
    assert attributes[0][0] == 80, "Message-Authenticator must be the first attribute"
    assert [code for code, _ in attributes].count(80) == 1
    zeroed = reply[:4] + request_authenticator + reply[20:22] + bytes(16) + reply[38:]
    assert attributes[0][1] == hmac.digest(secret, zeroed, "md5")


def pap_request(password: bytes = b"123456", **kwargs: object) -> bytes:
    return request_bytes(
        [avp(1, b"alice"), avp(2, hidden(password)), avp(32, b"vpn1")],
        **kwargs,  # type: ignore[arg-type]
    )


def decode(
    codec: RadiusCodec, data: bytes, *, require: bool = True, secret: bytes = SECRET
) -> AccessRequest:
    return codec.decode(
        data, secret=secret, client_name="vpn1", require_message_authenticator=require
    )


ACCEPT = Decision(outcome=Outcome.ACCEPT, reason=Reason.OTP_ACCEPTED)


# ---------------------------------------------------------------------- peek_header


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (struct.pack("!BBH", 1, 9, 20) + AUTHENTICATOR, (1, 9, AUTHENTICATOR)),
        (struct.pack("!BBH", 1, 9, 20) + AUTHENTICATOR + b"padding", (1, 9, AUTHENTICATOR)),
        (struct.pack("!BBH", 1, 9, 20) + AUTHENTICATOR[:15], None),
        (struct.pack("!BBH", 1, 9, 19) + AUTHENTICATOR, None),
        (struct.pack("!BBH", 1, 9, 21) + AUTHENTICATOR, None),
        (struct.pack("!BBH", 1, 9, 4097) + AUTHENTICATOR + bytes(4077), None),
        (b"", None),
    ],
    ids=["minimal", "padding", "short", "length-19", "length-past-end", "length-4097", "empty"],
)
def test_peek_header(data: bytes, expected: tuple[int, int, bytes] | None) -> None:
    """peek_header returns code, identifier and authenticator only for a plausible header."""
    assert peek_header(data) == expected


# ---------------------------------------------------------------------- decoding requests


def test_decode_reads_the_request_fields(codec: RadiusCodec) -> None:
    """A PAP request decodes into every field the bridge uses."""
    data = request_bytes(
        [
            avp(1, "élodie".encode()),
            avp(2, hidden("pässword".encode())),
            avp(4, bytes((192, 0, 2, 7))),
            avp(31, b"198.51.100.9"),
            avp(32, b"fgt-01"),
            avp(24, b"state-bytes"),
        ],
        identifier=200,
    )
    request = decode(codec, data)
    assert request.kind is PacketKind.ACCESS_REQUEST
    assert request.identifier == 200
    assert request.authenticator == AUTHENTICATOR
    assert request.user_name == "élodie"
    assert request.password == "pässword"
    assert request.scheme is PasswordScheme.PAP
    assert request.state == b"state-bytes"
    assert request.nas_ip_address == "192.0.2.7"
    assert request.calling_station_id == "198.51.100.9"
    assert request.nas_identifier == "fgt-01"
    assert request.proxy_states == ()
    assert request.had_message_authenticator is True


def test_decode_ignores_padding_after_length(codec: RadiusCodec) -> None:
    """Octets after the Length field are padding (RFC 2865 §3) and do not disturb the MA."""
    request = decode(codec, pap_request() + b"\x00garbage")
    assert request.password == "123456"


@pytest.mark.parametrize("position", ["first", "last"])
def test_message_authenticator_verified_wherever_it_stands(
    codec: RadiusCodec, position: str
) -> None:
    """A valid Message-Authenticator is accepted first or last in the request."""
    request = decode(codec, pap_request(message_authenticator=position))
    assert request.had_message_authenticator is True
    assert request.password == "123456"


@pytest.mark.parametrize("position", ["first", "last"])
@pytest.mark.parametrize("byte_index", [0, 15])
def test_tampered_message_authenticator_is_refused(
    codec: RadiusCodec, position: str, byte_index: int
) -> None:
    """One flipped bit in the Message-Authenticator raises BadAuthenticator naming the client."""
    data = bytearray(pap_request(message_authenticator=position))
    at = data.index(bytes((80, 18))) + 2
    data[at + byte_index] ^= 0x01
    with pytest.raises(BadAuthenticator) as caught:
        decode(codec, bytes(data))
    assert caught.value.client == "vpn1"


def test_tampered_attribute_is_refused(codec: RadiusCodec) -> None:
    """A changed attribute value invalidates the Message-Authenticator."""
    data = pap_request().replace(b"alice", b"mallo")
    with pytest.raises(BadAuthenticator):
        decode(codec, data)


def test_wrong_secret_with_message_authenticator_is_refused(codec: RadiusCodec) -> None:
    """A request signed with another secret raises BadAuthenticator."""
    with pytest.raises(BadAuthenticator):
        decode(codec, pap_request(), secret=b"other-secret")


def test_missing_message_authenticator_when_required(codec: RadiusCodec) -> None:
    """Without a Message-Authenticator a client that must sign gets MissingAuthenticator."""
    with pytest.raises(MissingAuthenticator) as caught:
        decode(codec, pap_request(message_authenticator=None), require=True)
    assert caught.value.client == "vpn1"


def test_missing_message_authenticator_when_optional(codec: RadiusCodec) -> None:
    """Without a Message-Authenticator an optional client's request decodes and says so."""
    request = decode(codec, pap_request(message_authenticator=None), require=False)
    assert request.had_message_authenticator is False
    assert request.password == "123456"


def test_proxy_state_without_message_authenticator_is_refused(codec: RadiusCodec) -> None:
    """Proxy-State without a Message-Authenticator is refused even when signing is optional."""
    data = request_bytes(
        [avp(1, b"alice"), avp(2, hidden(b"1")), avp(33, b"hop")], message_authenticator=None
    )
    with pytest.raises(MissingAuthenticator):
        decode(codec, data, require=False)


def test_proxy_states_are_kept_in_order(codec: RadiusCodec) -> None:
    """Every Proxy-State is decoded, in wire order, even when not adjacent."""
    data = request_bytes(
        [avp(33, b"second-hop"), avp(1, b"alice"), avp(33, b"first-hop"), avp(2, hidden(b"1"))]
    )
    assert decode(codec, data).proxy_states == (b"second-hop", b"first-hop")


def test_status_server_decodes(codec: RadiusCodec) -> None:
    """A signed Status-Server (RFC 5997) decodes with kind STATUS_SERVER."""
    request = decode(codec, request_bytes([avp(32, b"monitor")], code=12), require=False)
    assert request.kind is PacketKind.STATUS_SERVER
    assert request.user_name is None
    assert request.password is None
    assert request.scheme is PasswordScheme.NONE


def test_status_server_without_message_authenticator_is_refused(codec: RadiusCodec) -> None:
    """RFC 5997 §3: Status-Server must carry a Message-Authenticator, whatever the client."""
    data = request_bytes([avp(32, b"monitor")], code=12, message_authenticator=None)
    with pytest.raises(MissingAuthenticator):
        decode(codec, data, require=False)


# ---------------------------------------------------------------------- passwords


@pytest.mark.parametrize(
    ("password_attributes", "expected"),
    [
        ([avp(2, b"")], ""),
        ([avp(2, hidden(b""))], ""),
        ([avp(2, hidden(bytes(16)))], ""),
        ([], None),
    ],
    ids=["zero-length-attribute", "hidden-empty", "sixteen-nuls", "absent"],
)
def test_empty_password_forms(
    codec: RadiusCodec, password_attributes: list[bytes], expected: str | None
) -> None:
    """Every empty form of User-Password decodes to "", an absent one to None."""
    data = request_bytes([avp(1, b"alice"), *password_attributes])
    assert decode(codec, data).password == expected


@pytest.mark.parametrize(
    "password",
    [b"123456", b"push", b"0x4142", b"12", "ünïcødé-€".encode(), b"p" * 16, b"x" * 128],
    ids=["otp", "push", "hex-looking", "digits", "unicode", "one-block", "max-length"],
)
def test_password_round_trip(codec: RadiusCodec, password: bytes) -> None:
    """A password hidden by pyrad decodes to exactly its text."""
    data = request_bytes([avp(1, b"alice"), avp(2, hidden(password))])
    assert decode(codec, data).password == password.decode()


def test_password_that_is_not_utf8_is_malformed(codec: RadiusCodec) -> None:
    """Password octets that are not UTF-8 (wrong secret, no MA) raise MalformedPacket."""
    data = request_bytes(
        [avp(1, b"alice"), avp(2, hidden(b"\xff\xfe-not-text"))], message_authenticator=None
    )
    with pytest.raises(MalformedPacket, match="wrong shared secret"):
        decode(codec, data, require=False)


@pytest.mark.parametrize("length", [5, 17, 144])
def test_password_length_must_be_blocks_up_to_128(codec: RadiusCodec, length: int) -> None:
    """RFC 2865 §5.2: a hidden password of another length is malformed, whatever it hides."""
    data = request_bytes([avp(1, b"alice"), avp(2, (hidden(b"p" * 128) + bytes(16))[:length])])
    with pytest.raises(MalformedPacket, match="multiple of 16"):
        decode(codec, data)


def test_wrong_secret_without_message_authenticator_is_detected(codec: RadiusCodec) -> None:
    """Without a MA a wrong secret garbles the password, and garbage is not silently dropped."""
    garbled = 0
    for seed in range(20):
        authenticator = random.Random(seed).randbytes(16)
        data = request_bytes(
            [avp(1, b"alice"), avp(2, hidden(b"123456", authenticator=authenticator))],
            authenticator=authenticator,
            message_authenticator=None,
        )
        try:
            password = codec.decode(
                data, secret=b"wrong", client_name="vpn1", require_message_authenticator=False
            ).password
        except MalformedPacket:
            garbled += 1
        else:
            assert password != "123456"
    assert garbled > 0


# ---------------------------------------------------------------------- schemes


@pytest.mark.parametrize(
    ("attributes", "scheme"),
    [
        ([avp(2, hidden(b"pw"))], PasswordScheme.PAP),
        ([avp(3, bytes(17)), avp(60, bytes(16))], PasswordScheme.CHAP),
        (
            [vsa(MICROSOFT, 11, bytes(8)), vsa(MICROSOFT, 1, bytes(50))],
            PasswordScheme.MSCHAP,
        ),
        (
            [vsa(MICROSOFT, 11, bytes(16)), vsa(MICROSOFT, 25, bytes(50))],
            PasswordScheme.MSCHAP,
        ),
        ([avp(79, b"\x02\x01\x00\x0a\x01alice")], PasswordScheme.EAP),
        ([avp(24, b"state-only")], PasswordScheme.NONE),
        ([], PasswordScheme.NONE),
    ],
    ids=["pap", "chap", "mschap", "mschapv2", "eap", "state-only", "nothing"],
)
def test_password_scheme(
    codec: RadiusCodec, attributes: list[bytes], scheme: PasswordScheme
) -> None:
    """The scheme says how the NAS sent the credential."""
    request = decode(codec, request_bytes([avp(1, b"alice"), *attributes]))
    assert request.scheme is scheme
    if scheme is not PasswordScheme.PAP:
        assert request.password is None


def test_missing_user_name_decodes(codec: RadiusCodec) -> None:
    """A request without User-Name decodes with user_name None (policy rejects it)."""
    request = decode(codec, request_bytes([avp(2, hidden(b"pw"))]))
    assert request.user_name is None


def test_odd_bytes_in_informational_fields_do_not_drop_the_request(codec: RadiusCodec) -> None:
    """NAS-Identifier or Calling-Station-Id that are not UTF-8, a 3-octet NAS-IP still decode."""
    data = request_bytes(
        [avp(1, b"alice"), avp(32, b"nas\xff"), avp(31, b"\xfe"), avp(4, b"\x01\x02\x03")]
    )
    request = decode(codec, data)
    assert request.nas_identifier == "nas\ufffd"
    assert request.calling_station_id == "\ufffd"
    assert request.nas_ip_address is None


def test_unknown_vendor_attributes_are_opaque(codec: RadiusCodec) -> None:
    """A VSA of a vendor outside the dictionary is not parsed into sub-attributes."""
    not_tlv = avp(26, struct.pack("!I", 4846) + b"\x00\x00\x00\x01\x00\x05abc")
    assert decode(codec, request_bytes([avp(1, b"alice"), not_tlv])).user_name == "alice"


# ---------------------------------------------------------------------- malformed requests


def _header(code: int, length: int) -> bytes:
    return struct.pack("!BBH", code, 1, length) + AUTHENTICATOR


def _unsigned(attributes: bytes, code: int = 1) -> bytes:
    return _header(code, 20 + len(attributes)) + attributes


MALFORMED = {
    "random-bytes": random.Random(7).randbytes(64),
    "shorter-than-header": b"\x01\x01\x00\x14",
    "length-below-20": _header(1, 19) + avp(1, b"alice"),
    "length-past-datagram": _header(1, 60) + avp(1, b"alice"),
    "length-4097": _header(1, 4097) + bytes(4077),
    "datagram-8200": _header(1, 8200) + avp(1, b"alice") + bytes(8173),
    "attribute-length-0": _unsigned(b"\x01\x00alice"),
    "attribute-length-1": _unsigned(b"\x01\x01alice"),
    "attribute-past-end": _header(1, 27) + b"\x01\x09alice",
    "attribute-header-cut": _unsigned(avp(1, b"alice") + b"\x20"),
    "vsa-sub-attribute-length-0": _unsigned(
        avp(1, b"alice") + avp(26, struct.pack("!I", FORTINET) + b"\x01\x00abc")
    ),
    "vsa-sub-attribute-past-end": _unsigned(avp(26, struct.pack("!I", FORTINET) + b"\x01\x09abc")),
    "vsa-3-bytes": _unsigned(avp(1, b"alice") + b"\x1a\x03\x00"),
    "vsa-without-payload": _unsigned(avp(26, struct.pack("!I", FORTINET))),
    "access-accept": request_bytes([avp(18, b"hi")], code=2),
    "access-reject": request_bytes([], code=3),
    "access-challenge": request_bytes([avp(24, b"s")], code=11),
    "accounting-request": request_bytes([avp(1, b"alice")], code=4),
    "message-authenticator-10-bytes": _unsigned(avp(1, b"alice") + avp(80, bytes(10))),
    "two-message-authenticators": request_bytes(
        [avp(1, b"alice"), avp(80, bytes(16))], message_authenticator="first"
    ),
    "user-password-5-bytes": request_bytes([avp(1, b"alice"), avp(2, b"12345")]),
    "user-password-144-bytes": request_bytes([avp(1, b"alice"), avp(2, bytes(144))]),
    "two-user-names": request_bytes([avp(1, b"alice"), avp(1, b"bob")]),
    "two-user-passwords": request_bytes([avp(2, hidden(b"a")), avp(2, hidden(b"b"))]),
    "two-states": request_bytes([avp(24, b"a"), avp(24, b"b")]),
    "pap-and-chap": request_bytes([avp(2, hidden(b"a")), avp(3, bytes(17))]),
    "user-name-not-utf8": request_bytes([avp(1, b"al\xffce")]),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("require", [True, False])
def test_malformed_requests(codec: RadiusCodec, data: bytes, require: bool) -> None:
    """Each malformed datagram raises MalformedPacket, never another error."""
    with pytest.raises(MalformedPacket) as caught:
        decode(codec, data, require=require)
    assert type(caught.value) is MalformedPacket
    assert "123456" not in str(caught.value)


# ---------------------------------------------------------------------- encoding replies


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(Outcome.ACCEPT, 2), (Outcome.REJECT, 3), (Outcome.CHALLENGE, 11)],
)
def test_reply_codes_and_signatures(codec: RadiusCodec, outcome: Outcome, code: int) -> None:
    """Each outcome gets its code, the request's identifier and valid authenticators."""
    request = decode(codec, pap_request(identifier=77))
    reply = codec.encode(
        request, Decision(outcome=outcome, reason=Reason.OTP_ACCEPTED), secret=SECRET
    )
    assert reply[0] == code
    assert reply[1] == 77
    assert_signed_reply(reply, AUTHENTICATOR)


def test_reply_with_wrong_secret_does_not_verify(codec: RadiusCodec) -> None:
    """The independent check fails for a reply signed with another secret."""
    request = decode(codec, pap_request())
    reply = codec.encode(request, ACCEPT, secret=b"other")
    with pytest.raises(AssertionError):
        assert_signed_reply(reply, AUTHENTICATOR)


def test_reply_attribute_order(codec: RadiusCodec) -> None:
    """MA first, Proxy-States in order, Reply-Message, State, then configured attributes."""
    data = request_bytes(
        [avp(33, b"hop-a"), avp(1, b"alice"), avp(2, hidden(b"1")), avp(33, b"hop-b")],
        message_authenticator="last",
    )
    request = decode(codec, data)
    decision = Decision(
        outcome=Outcome.CHALLENGE,
        reason=Reason.CODE_SENT,
        reply_message="Enter the code sent to your phone",
        state=b"0x41",
        attributes=(("Fortinet-Group-Name", "vpn-users"), ("Session-Timeout", 3600)),
    )
    reply = codec.encode(request, decision, secret=SECRET)
    assert_signed_reply(reply, AUTHENTICATOR)
    assert split_attributes(reply)[1:] == [
        (33, b"hop-a"),
        (33, b"hop-b"),
        (18, b"Enter the code sent to your phone"),
        (24, b"0x41"),
        (26, struct.pack("!I", FORTINET) + avp(1, b"vpn-users")),
        (27, struct.pack("!I", 3600)),
    ]


@pytest.mark.parametrize(
    "state", [b"0x41", b"12", b"\x00\xff" * 8, b"fic:" + bytes(range(32))], ids=repr
)
def test_state_is_sent_literally(codec: RadiusCodec, state: bytes) -> None:
    """State bytes that look like hex or digits are sent unchanged (pyrad-notes §2)."""
    request = decode(codec, pap_request())
    decision = Decision(outcome=Outcome.CHALLENGE, reason=Reason.CODE_SENT, state=state)
    reply = codec.encode(request, decision, secret=SECRET)
    assert (24, state) in split_attributes(reply)


@pytest.mark.parametrize(
    "message",
    ["short", "a" * 253, "a" * 254, "é" * 300, "a" + "€" * 200, "🔑" * 130],
    ids=["short", "253", "254", "two-byte", "three-byte-offset", "four-byte"],
)
def test_reply_message_split_on_character_boundaries(codec: RadiusCodec, message: str) -> None:
    """Reply-Message is cut into <= 253-octet chunks that are each valid UTF-8."""
    request = decode(codec, pap_request())
    reply = codec.encode(
        request,
        Decision(outcome=Outcome.REJECT, reason=Reason.OTP_REJECTED, reply_message=message),
        secret=SECRET,
    )
    assert_signed_reply(reply, AUTHENTICATOR)
    chunks = [value for code, value in split_attributes(reply) if code == 18]
    assert all(0 < len(chunk) <= 253 for chunk in chunks)
    assert "".join(chunk.decode("utf-8") for chunk in chunks) == message
    # A cut moves back at most three octets, to the start of a character.
    assert all(len(chunk) >= 250 for chunk in chunks[:-1])


def test_encode_is_deterministic(codec: RadiusCodec) -> None:
    """The same request and decision give byte-identical replies (reply cache relies on it)."""
    request = decode(codec, pap_request())
    decision = Decision(
        outcome=Outcome.ACCEPT,
        reason=Reason.PUSH_APPROVED,
        reply_message="ok",
        attributes=(("Class", "grp"), ("Fortinet-Group-Name", "vpn")),
    )
    assert codec.encode(request, decision, secret=SECRET) == codec.encode(
        request, decision, secret=SECRET
    )


@pytest.mark.parametrize(
    ("name", "value", "wire"),
    [
        ("Fortinet-Group-Name", "vpn-users", vsa(FORTINET, 1, b"vpn-users")),
        ("Fortinet-Client-IP-Address", "10.1.2.3", vsa(FORTINET, 2, bytes((10, 1, 2, 3)))),
        ("Fortinet-Vdom-Name", "root", vsa(FORTINET, 3, b"root")),
        ("Fortinet-Access-Profile", "super_admin", vsa(FORTINET, 6, b"super_admin")),
        ("Cisco-AVPair", "shell:priv-lvl=15", vsa(9, 1, b"shell:priv-lvl=15")),
        ("PaloAlto-User-Group", "gp-users", vsa(25461, 5, b"gp-users")),
        ("Juniper-Local-User-Name", "remote", vsa(2636, 1, b"remote")),
        ("Service-Type", "Framed-User", avp(6, struct.pack("!I", 2))),
        ("Session-Timeout", "3600", avp(27, struct.pack("!I", 3600))),
        ("Idle-Timeout", 900, avp(28, struct.pack("!I", 900))),
        ("Class", "0x41", avp(25, b"0x41")),
        ("Class", "12", avp(25, b"12")),
        ("Class", b"\x00\x01", avp(25, b"\x00\x01")),
        ("Filter-Id", 42, avp(11, b"42")),
        ("Framed-IP-Address", "192.0.2.10", avp(8, bytes((192, 0, 2, 10)))),
    ],
)
def test_configured_attributes_encode(
    codec: RadiusCodec, name: str, value: str | int | bytes, wire: bytes
) -> None:
    """Attributes by dictionary name, vendor ones as RFC 2865 §5.26 VSAs, octets literally."""
    codec.check_attributes([(name, value)])
    request = decode(codec, pap_request())
    reply = codec.encode(
        request,
        Decision(outcome=Outcome.ACCEPT, reason=Reason.BYPASS, attributes=((name, value),)),
        secret=SECRET,
    )
    assert_signed_reply(reply, AUTHENTICATOR)
    assert reply.endswith(wire)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("No-Such-Attribute", "x"),
        ("Framed-IP-Address", "not-an-address"),
        ("Session-Timeout", "soon"),
        ("Session-Timeout", -1),
        ("Service-Type", True),
        ("Fortinet-Group-Name", "x" * 248),
        ("Class", "y" * 254),
        ("Class", 5),
        ("State", b"x"),
        ("Proxy-State", b"x"),
        ("Message-Authenticator", bytes(16)),
    ],
)
def test_check_attributes_names_the_bad_one(
    codec: RadiusCodec, name: str, value: str | int | bytes
) -> None:
    """check_attributes raises ValueError naming an attribute that would not encode."""
    good = ("Fortinet-Group-Name", "ok")
    with pytest.raises(ValueError, match=name):
        codec.check_attributes([good, (name, value)])


def test_extra_dictionary_adds_attributes(tmp_path: Path) -> None:
    """An administrator's dictionary file adds vendor attributes usable in replies."""
    extra = tmp_path / "dictionary.local"
    extra.write_text(
        "VENDOR Example 32473\n"
        "BEGIN-VENDOR Example\n"
        "ATTRIBUTE Example-Role 1 string\n"
        "END-VENDOR Example\n"
    )
    extended = RadiusCodec(extra_dictionaries=[extra])
    extended.check_attributes([("Example-Role", "admin"), ("Fortinet-Group-Name", "still-there")])
    with pytest.raises(ValueError, match="Example-Role"):
        RadiusCodec().check_attributes([("Example-Role", "admin")])


@pytest.mark.parametrize(
    "content",
    [None, "ATTRIBUTE Broken 1 String\n", "ATTRIBUTE Orphan 1 string NoVendor\n", "\xff"],
    ids=["missing", "bad-type", "unknown-vendor", "latin1"],
)
def test_bad_extra_dictionary_is_a_value_error_with_its_path(
    tmp_path: Path, content: str | None
) -> None:
    """A dictionary that cannot be read raises ValueError naming its path."""
    path = tmp_path / "dictionary.bad"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError, match=r"dictionary\.bad"):
        RadiusCodec(extra_dictionaries=[str(path)])


# ---------------------------------------------------------------------- client side


def test_build_request_is_read_by_pyrad(codec: RadiusCodec, pyrad_dictionary: Any) -> None:
    """pyrad verifies the MA of build_request's packet and recovers the password."""
    raw = codec.build_request(
        secret=SECRET,
        identifier=5,
        user_name="alice",
        password="123456",
        state=b"0x99",
        proxy_states=[b"p1"],
        attributes=[("NAS-Identifier", "radius-bridge-test")],
    )
    parsed = pyrad_packet.AuthPacket(packet=raw, secret=SECRET, dict=pyrad_dictionary)
    assert parsed.code == 1 and parsed.id == 5
    assert next(iter(parsed.keys())) == "Message-Authenticator"
    assert parsed.verify_message_authenticator()
    assert parsed.PwDecrypt(parsed[2][0]) == "123456"
    assert parsed[24] == [b"0x99"]
    assert parsed["NAS-Identifier"] == ["radius-bridge-test"]


@pytest.fixture(scope="module")
def pyrad_dictionary() -> Any:
    """The shipped dictionary loaded by pyrad itself, for pyrad as the independent party."""
    return Dictionary(str(resources.files("radius_bridge.dictionaries") / "dictionary"))


@pytest.mark.parametrize("password", [None, "", "push", "x" * 128])
def test_build_then_decode(codec: RadiusCodec, password: str | None) -> None:
    """A request built by the codec decodes back to the same user and password."""
    raw = codec.build_request(
        secret=SECRET, identifier=1, user_name="bob", password=password, message_authenticator=False
    )
    request = decode(codec, raw, require=False)
    assert (request.user_name, request.password) == ("bob", password)
    assert request.had_message_authenticator is False


def test_decode_reply_round_trip(codec: RadiusCodec) -> None:
    """decode_reply verifies and reads a reply produced by encode."""
    raw = codec.build_request(
        secret=SECRET, identifier=9, user_name="alice", password="1", proxy_states=[b"ps"]
    )
    request = decode(codec, raw)
    decision = Decision(
        outcome=Outcome.CHALLENGE,
        reason=Reason.CODE_SENT,
        reply_message="Code?",
        state=b"st",
        attributes=(("Fortinet-Group-Name", "g"), ("Session-Timeout", 60)),
    )
    reply = codec.decode_reply(
        codec.encode(request, decision, secret=SECRET),
        secret=SECRET,
        request_authenticator=request.authenticator,
    )
    assert reply.outcome is Outcome.CHALLENGE and reply.code == 11 and reply.identifier == 9
    assert reply.message_authenticator_first is True
    assert reply.reply_message == "Code?"
    assert reply.state == b"st"
    assert reply.proxy_states == (b"ps",)
    assert reply.attribute_types == (80, 33, 18, 24, 26, 27)
    assert reply.attributes["Fortinet-Group-Name"] == ("g",)
    assert reply.attributes["Session-Timeout"] == (60,)


def test_decode_reply_refuses_forgeries(codec: RadiusCodec) -> None:
    """decode_reply rejects a wrong secret, a tampered MA, a foreign request and a request code."""
    request = decode(codec, pap_request())
    good = codec.encode(request, ACCEPT, secret=SECRET)
    with pytest.raises(MalformedPacket, match="Response Authenticator"):
        codec.decode_reply(good, secret=b"other", request_authenticator=AUTHENTICATOR)
    with pytest.raises(MalformedPacket, match="Response Authenticator"):
        codec.decode_reply(good, secret=SECRET, request_authenticator=bytes(16))
    # Tamper the MA but re-sign the Response Authenticator: only the HMAC can catch it.
    tampered = bytearray(good)
    tampered[22] ^= 0x80
    tampered[4:20] = md5(bytes(tampered[:4]) + AUTHENTICATOR + bytes(tampered[20:]) + SECRET)
    with pytest.raises(BadAuthenticator):
        codec.decode_reply(bytes(tampered), secret=SECRET, request_authenticator=AUTHENTICATOR)
    with pytest.raises(MalformedPacket, match="code 1"):
        codec.decode_reply(pap_request(), secret=SECRET, request_authenticator=AUTHENTICATOR)


# ---------------------------------------------------------------------- interoperability


def pyrad_client_request(pyrad_dictionary: Any, proxy_states: Sequence[bytes]) -> Any:
    request = pyrad_packet.AuthPacket(id=31, secret=SECRET, dict=pyrad_dictionary)
    request.add_message_authenticator()
    request[1] = [b"alice"]
    request[2] = [request.PwCrypt("123456")]
    if proxy_states:
        request[33] = list(proxy_states)
    return request


@pytest.mark.parametrize("proxy_states", [(), (b"one",), (b"one", b"two")])
def test_pyrad_client_accepts_the_reply(
    codec: RadiusCodec, pyrad_dictionary: Any, proxy_states: tuple[bytes]
) -> None:
    """pyrad's client-side VerifyReply (MA enforced) accepts our reply, not a corrupted one."""
    pyrad_request = pyrad_client_request(pyrad_dictionary, proxy_states)
    raw_request = pyrad_request.RequestPacket()
    request = decode(codec, raw_request)
    decision = Decision(
        outcome=Outcome.ACCEPT,
        reason=Reason.OTP_ACCEPTED,
        reply_message="Welcome",
        attributes=(("Fortinet-Group-Name", "vpn-users"),),
    )
    raw_reply = codec.encode(request, decision, secret=SECRET)
    parsed = pyrad_request.CreateReply(packet=raw_reply)
    assert pyrad_request.VerifyReply(parsed, raw_reply, enforce_ma=True)
    assert parsed["Fortinet-Group-Name"] == ["vpn-users"]

    corrupted = bytearray(raw_reply)
    corrupted[25] ^= 0x01  # inside the MA; pyrad must notice
    corrupted[4:20] = md5(bytes(corrupted[:4]) + request.authenticator + corrupted[20:] + SECRET)
    parsed_bad = pyrad_request.CreateReply(packet=bytes(corrupted))
    assert not pyrad_request.VerifyReply(parsed_bad, bytes(corrupted), enforce_ma=True)


class Responder:
    """A one-thread UDP responder on 127.0.0.1 that answers with the codec under test."""

    def __init__(self, codec: RadiusCodec, *, corrupt_reply: bool) -> None:
        self.codec = codec
        self.corrupt_reply = corrupt_reply
        self.requests: list[AccessRequest] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            request = decode(self.codec, data)
            self.requests.append(request)
            decision = Decision(
                outcome=Outcome.ACCEPT,
                reason=Reason.OTP_ACCEPTED,
                reply_message="Welcome",
                attributes=(("Fortinet-Group-Name", "vpn-users"),),
            )
            reply = bytearray(self.codec.encode(request, decision, secret=SECRET))
            if self.corrupt_reply:
                reply[30] ^= 0x01
                reply[4:20] = md5(
                    bytes(reply[:4]) + request.authenticator + bytes(reply[20:]) + SECRET
                )
            self.sock.sendto(bytes(reply), source)

    def __enter__(self) -> Responder:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def radclient() -> Iterator[str]:
    path = shutil.which("radclient") or "/usr/bin/radclient"
    if not Path(path).exists():
        pytest.skip("radclient (freeradius-utils) is not installed; `make tools` installs it")
    yield path


def run_radclient(radclient: str, port: int, *, timeout: int) -> str:
    line = (
        'User-Name = "alice", User-Password = "123456", NAS-Identifier = "vpn1", '
        "Proxy-State = 0x0102, Proxy-State = 0x0304, Message-Authenticator = 0x00\n"
    )
    completed = subprocess.run(
        [
            radclient,
            "-x",
            "-r",
            "1",
            "-t",
            str(timeout),
            f"127.0.0.1:{port}",
            "auth",
            SECRET.decode(),
        ],
        input=line,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return completed.stdout + completed.stderr


def test_radclient_accepts_the_reply(codec: RadiusCodec, radclient: str) -> None:
    """radclient accepts our Access-Accept, Message-Authenticator shown first."""
    with Responder(codec, corrupt_reply=False) as responder:
        output = run_radclient(radclient, responder.port, timeout=2)
    assert responder.requests and responder.requests[0].password == "123456"
    assert responder.requests[0].proxy_states == (b"\x01\x02", b"\x03\x04")
    received = output.split("Received Access-Accept", 1)
    assert len(received) == 2, output
    lines = [line.strip() for line in received[1].splitlines()[1:] if line.strip()]
    assert lines[0].startswith("Message-Authenticator = 0x"), output
    assert lines[1:3] == ["Proxy-State = 0x0102", "Proxy-State = 0x0304"], output
    assert 'Fortinet-Group-Name = "vpn-users"' in lines, output


def test_radclient_rejects_a_corrupted_reply(codec: RadiusCodec, radclient: str) -> None:
    """radclient refuses a reply whose MA is wrong, so the acceptance test above can fail."""
    with Responder(codec, corrupt_reply=True) as responder:
        output = run_radclient(radclient, responder.port, timeout=1)
    assert responder.requests
    assert "Received Access-Accept" not in output
    assert "invalid Message-Authenticator" in output, output
