"""The RADIUS wire format: request bytes into an ``AccessRequest``, a ``Decision`` into reply bytes.

This is the only module that imports pyrad, and no pyrad object leaves it. pyrad reads the
dictionaries (the one shipped in ``radius_bridge.dictionaries`` plus the administrator's files,
loaded once per codec) and turns a reply attribute given by name into its wire form. Packets are
framed, checked and signed here, on the raw bytes: pyrad is lenient on input (it truncates an
attribute running past the end, verifies only the first of two Message-Authenticators, drops
undecodable password bytes silently) and decodes lazily, and a single pass keeps the hot path
cheap. Nothing here does I/O besides reading dictionaries, and nothing logs.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pyrad import dictionary as pyrad_dictionary
from pyrad import packet as pyrad_packet

from radius_bridge.errors import BadAuthenticator, MalformedPacket, MissingAuthenticator
from radius_bridge.model import AccessRequest, Decision, Outcome, PacketKind, PasswordScheme

# Packet codes (RFC 2865 §3, RFC 5997 §3).
ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCESS_CHALLENGE = 11
STATUS_SERVER = 12

# RFC 2865 §3: the Length field is at least 20 and at most 4096.
HEADER_LENGTH = 20
MAX_PACKET_LENGTH = 4096

# Attribute types read or written by code, independent of any dictionary.
USER_NAME = 1
USER_PASSWORD = 2
CHAP_PASSWORD = 3
NAS_IP_ADDRESS = 4
REPLY_MESSAGE = 18
STATE = 24
VENDOR_SPECIFIC = 26
CALLING_STATION_ID = 31
NAS_IDENTIFIER = 32
PROXY_STATE = 33
EAP_MESSAGE = 79
MESSAGE_AUTHENTICATOR = 80

MICROSOFT_VENDOR_ID = 311
MS_CHAP_RESPONSE = 1
MS_CHAP2_RESPONSE = 25

MAX_ATTRIBUTE_VALUE = 253  # RFC 2865 §5: one Length octet covering type and length too
MAX_HIDDEN_PASSWORD = 128  # RFC 2865 §5.2
PASSWORD_BLOCK = 16
MESSAGE_AUTHENTICATOR_LENGTH = 16

_ZERO_MESSAGE_AUTHENTICATOR = bytes(MESSAGE_AUTHENTICATOR_LENGTH)
_MESSAGE_AUTHENTICATOR_PLACEHOLDER = (
    bytes((MESSAGE_AUTHENTICATOR, 2 + MESSAGE_AUTHENTICATOR_LENGTH)) + _ZERO_MESSAGE_AUTHENTICATOR
)
# Distinct configured reply attributes are few; the bound only guards against a caller that
# passes ever-new values.
_ENCODED_ATTRIBUTE_CACHE_SIZE = 1024
_REQUEST_KINDS = {
    ACCESS_REQUEST: PacketKind.ACCESS_REQUEST,
    STATUS_SERVER: PacketKind.STATUS_SERVER,
}
_REPLY_CODES = {
    Outcome.ACCEPT: ACCESS_ACCEPT,
    Outcome.REJECT: ACCESS_REJECT,
    Outcome.CHALLENGE: ACCESS_CHALLENGE,
}
_REPLY_OUTCOMES = {code: outcome for outcome, code in _REPLY_CODES.items()}
# Attributes that appear at most once in an Access-Request (RFC 2865 §5.44): a second copy makes
# the request ambiguous (which user, which password?), so it is refused. A second
# Message-Authenticator is refused where the walk meets it (RFC 3579 §3.2).
_SINGLE_ATTRIBUTES = {
    USER_NAME: "User-Name",
    USER_PASSWORD: "User-Password",
    CHAP_PASSWORD: "CHAP-Password",
    STATE: "State",
}
# The codec writes these itself, in the places the RFCs require; configured reply attributes
# may not add more of them.
_CODEC_ATTRIBUTES = frozenset({"Message-Authenticator", "Proxy-State", "State"})

_SHIPPED_DICTIONARY_PACKAGE = "radius_bridge.dictionaries"
_SHIPPED_DICTIONARY_NAME = "dictionary"

AttributeValue = str | int | bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """A verified reply from a RADIUS server, as ``decode_reply`` reads it.

    ``attributes`` maps dictionary names (or ``Attr-<type>`` / ``Attr-26.<vendor>.<type>`` for
    attributes the dictionary does not know) to their decoded values; ``attribute_types`` lists
    the top-level attribute types in wire order.
    """

    code: int
    outcome: Outcome
    identifier: int
    reply_messages: tuple[str, ...]
    state: bytes | None = field(repr=False)
    proxy_states: tuple[bytes, ...]
    attributes: Mapping[str, tuple[object, ...]]
    attribute_types: tuple[int, ...]
    message_authenticator_first: bool

    @property
    def reply_message(self) -> str:
        """The Reply-Message text, its chunks joined (RFC 2865 §5.18)."""
        return "".join(self.reply_messages)


def peek_header(data: bytes) -> tuple[int, int, bytes] | None:
    """Return (code, identifier, authenticator) of a datagram, or None if it cannot be RADIUS.

    RFC 2865 §3: the Length field must lie within 20..4096 and not exceed the datagram; octets
    after Length are padding.
    """
    if len(data) < HEADER_LENGTH:
        return None
    length = (data[2] << 8) | data[3]
    if length < HEADER_LENGTH or length > MAX_PACKET_LENGTH or length > len(data):
        return None
    return data[0], data[1], bytes(data[4:HEADER_LENGTH])


@dataclass(slots=True)
class _Attributes:
    """The attributes of one packet after the strict walk: raw values, nothing decoded yet."""

    types: list[int]  # in wire order
    values: dict[int, list[bytes]]  # by type, each in wire order
    message_authenticator_offset: int | None
    # (vendor id, vendor type) of every sub-attribute of a vendor the dictionary defines
    vendor_types: set[tuple[int, int]]

    def first(self, attribute_type: int) -> bytes | None:
        found = self.values.get(attribute_type)
        return found[0] if found else None


class RadiusCodec:
    """Decodes requests and encodes replies with one loaded dictionary (thread-safe, reusable).

    ``extra_dictionaries`` are FreeRADIUS-syntax files read after the shipped dictionary; later
    definitions replace earlier ones. A file that cannot be read or parsed raises ``ValueError``
    naming the file.
    """

    def __init__(self, extra_dictionaries: Sequence[str | os.PathLike[str]] = ()) -> None:
        shipped = resources.files(_SHIPPED_DICTIONARY_PACKAGE) / _SHIPPED_DICTIONARY_NAME
        self._dictionary = _load_dictionary(shipped.read_text(encoding="utf-8"), "shipped")
        for path in extra_dictionaries:
            _read_into(self._dictionary, os.fspath(path))
        # Vendors whose attributes the dictionary defines all use the RFC 2865 §5.26 layout
        # (pyrad skips every other format), so their sub-attributes must tile the VSA exactly.
        # Other vendors' VSAs are left opaque: RFC 2865 only says they SHOULD use that layout.
        self._tlv_vendor_ids = frozenset(
            self._dictionary.vendors.GetForward(definition.vendor)
            for definition in self._dictionary.attributes.values()
            if definition.vendor
        )
        self._encoded_attributes: dict[tuple[str, type, AttributeValue], bytes] = {}

    # ------------------------------------------------------------------ requests

    def decode(
        self,
        data: bytes,
        *,
        secret: bytes,
        client_name: str,
        require_message_authenticator: bool,
    ) -> AccessRequest:
        """Decode and authenticate an Access-Request or Status-Server datagram.

        Raises ``MalformedPacket`` for anything that is not a well-formed request of those two
        kinds, ``BadAuthenticator`` for a wrong Message-Authenticator and
        ``MissingAuthenticator`` when one is required but absent.
        """
        header = peek_header(data)
        if header is None:
            raise MalformedPacket("not a RADIUS packet: too short or invalid Length field")
        code, identifier, authenticator = header
        kind = _REQUEST_KINDS.get(code)
        if kind is None:
            raise MalformedPacket(f"packet code {code} is not served on the authentication port")
        length = (data[2] << 8) | data[3]
        packet = bytes(data[:length])  # RFC 2865 §3: octets past Length are padding
        attributes = self._walk(packet)

        self._authenticate(
            packet, attributes, kind, secret, client_name, require_message_authenticator
        )

        hidden_password = attributes.first(USER_PASSWORD)
        password = None
        if hidden_password is not None:
            password = _unhide_password(hidden_password, secret, authenticator)
        raw_user_name = attributes.first(USER_NAME)
        try:
            user_name = None if raw_user_name is None else raw_user_name.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("User-Name is not valid UTF-8") from None

        return AccessRequest(
            kind=kind,
            identifier=identifier,
            authenticator=authenticator,
            user_name=user_name,
            password=password,
            scheme=_scheme(attributes),
            state=attributes.first(STATE),
            proxy_states=tuple(attributes.values.get(PROXY_STATE, ())),
            nas_identifier=_informational_text(attributes.first(NAS_IDENTIFIER)),
            nas_ip_address=_ipv4_text(attributes.first(NAS_IP_ADDRESS)),
            calling_station_id=_informational_text(attributes.first(CALLING_STATION_ID)),
            had_message_authenticator=attributes.message_authenticator_offset is not None,
        )

    def _walk(self, packet: bytes) -> _Attributes:
        """Split the attributes of a packet, refusing any that do not tile it exactly."""
        types: list[int] = []
        values: dict[int, list[bytes]] = {}
        vendor_types: set[tuple[int, int]] = set()
        message_authenticator_offset = None
        end = len(packet)
        offset = HEADER_LENGTH
        while offset < end:
            if end - offset < 2:
                raise MalformedPacket("attribute header truncated at the end of the packet")
            attribute_type = packet[offset]
            attribute_length = packet[offset + 1]
            if attribute_length < 2:
                raise MalformedPacket(
                    f"attribute {attribute_type} has length {attribute_length} (minimum 2)"
                )
            next_offset = offset + attribute_length
            if next_offset > end:
                raise MalformedPacket(f"attribute {attribute_type} runs past the end of the packet")
            value = packet[offset + 2 : next_offset]
            if attribute_type == MESSAGE_AUTHENTICATOR:
                if message_authenticator_offset is not None:
                    raise MalformedPacket("more than one Message-Authenticator (RFC 3579 §3.2)")
                if attribute_length != 2 + MESSAGE_AUTHENTICATOR_LENGTH:
                    raise MalformedPacket(
                        f"Message-Authenticator of {len(value)} octets, not 16 (RFC 3579 §3.2)"
                    )
                message_authenticator_offset = offset
            elif attribute_type == VENDOR_SPECIFIC:
                self._walk_vendor_specific(value, vendor_types)
            types.append(attribute_type)
            same_type = values.get(attribute_type)
            if same_type is None:
                values[attribute_type] = [value]
            else:
                if attribute_type in _SINGLE_ATTRIBUTES:
                    raise MalformedPacket(f"more than one {_SINGLE_ATTRIBUTES[attribute_type]}")
                same_type.append(value)
            offset = next_offset
        return _Attributes(types, values, message_authenticator_offset, vendor_types)

    def _walk_vendor_specific(self, value: bytes, vendor_types: set[tuple[int, int]]) -> None:
        # RFC 2865 §5.26: a Vendor-Specific attribute has Length >= 7 (vendor id + one octet).
        if len(value) < 5:
            raise MalformedPacket(f"Vendor-Specific attribute of {len(value) + 2} octets (min 7)")
        vendor_id = int.from_bytes(value[:4], "big")
        if vendor_id not in self._tlv_vendor_ids:
            return
        offset = 4
        while offset < len(value):
            if offset + 2 > len(value):
                raise MalformedPacket(f"vendor {vendor_id} sub-attribute header truncated")
            vendor_type = value[offset]
            sub_length = value[offset + 1]
            if sub_length < 2 or offset + sub_length > len(value):
                raise MalformedPacket(
                    f"vendor {vendor_id} sub-attribute {vendor_type} has invalid length "
                    f"{sub_length}"
                )
            vendor_types.add((vendor_id, vendor_type))
            offset += sub_length

    @staticmethod
    def _authenticate(
        packet: bytes,
        attributes: _Attributes,
        kind: PacketKind,
        secret: bytes,
        client_name: str,
        require_message_authenticator: bool,
    ) -> None:
        offset = attributes.message_authenticator_offset
        if offset is None:
            # RFC 5997 §3: Status-Server always carries a Message-Authenticator. Without one, a
            # request echoing Proxy-State is the shape of the BlastRADIUS forgery (CVE-2024-3596),
            # so it is refused even where the client is not required to sign (FreeRADIUS
            # limit_proxy_state); a NAS talking to us directly never sends Proxy-State.
            if (
                require_message_authenticator
                or kind is PacketKind.STATUS_SERVER
                or PROXY_STATE in attributes.values
            ):
                raise MissingAuthenticator(client_name)
            return
        # RFC 3579 §3.2: HMAC-MD5 over the packet as received with the Message-Authenticator
        # value zeroed, wherever in the packet it stands; compared in constant time.
        received = packet[offset + 2 : offset + 2 + MESSAGE_AUTHENTICATOR_LENGTH]
        signed = (
            packet[: offset + 2]
            + _ZERO_MESSAGE_AUTHENTICATOR
            + packet[offset + 2 + MESSAGE_AUTHENTICATOR_LENGTH :]
        )
        expected = hmac.digest(secret, signed, "md5")
        if not hmac.compare_digest(received, expected):
            raise BadAuthenticator(client_name)

    # ------------------------------------------------------------------ replies

    def encode(self, request: AccessRequest, decision: Decision, *, secret: bytes) -> bytes:
        """Encode the reply to ``request`` (deterministic for the same inputs).

        Message-Authenticator first (RFC 3579 §3.2 and the BlastRADIUS guidance), the request's
        Proxy-States in order (RFC 2865 §5.33), Reply-Message, State, then the decision's
        attributes in their order. Raises ``ValueError`` for an attribute ``check_attributes``
        would refuse, a State longer than 253 octets or a reply longer than 4096 octets.
        """
        parts = [_MESSAGE_AUTHENTICATOR_PLACEHOLDER]
        parts.extend(_attribute(PROXY_STATE, value) for value in request.proxy_states)
        if decision.reply_message:
            parts.extend(
                _attribute(REPLY_MESSAGE, chunk)
                for chunk in _split_reply_message(decision.reply_message)
            )
        if decision.state is not None:
            parts.append(_attribute(STATE, decision.state))
        parts.extend(self._encode_attribute(name, value) for name, value in decision.attributes)
        return _sign_reply(
            _REPLY_CODES[decision.outcome],
            request.identifier,
            request.authenticator,
            b"".join(parts),
            secret,
        )

    def check_attributes(self, attributes: Iterable[tuple[str, AttributeValue]]) -> None:
        """Raise ``ValueError`` naming the first attribute that is unknown or does not encode."""
        for name, value in attributes:
            self._encode_attribute(name, value)

    def _encode_attribute(self, name: str, value: AttributeValue) -> bytes:
        """Return the wire form of one reply attribute by dictionary name (cached).

        Reply attributes come from the configuration, so the same few pairs recur in every
        reply; encoding each once keeps pyrad's per-attribute cost off the hot path.
        """
        key = (name, type(value), value)
        encoded = self._encoded_attributes.get(key)
        if encoded is None:
            encoded = self._encode_attribute_uncached(name, value)
            if len(self._encoded_attributes) >= _ENCODED_ATTRIBUTE_CACHE_SIZE:
                self._encoded_attributes.clear()
            self._encoded_attributes[key] = encoded
        return encoded

    def _encode_attribute_uncached(self, name: str, value: AttributeValue) -> bytes:
        base_name = name.partition(":")[0]  # a tag suffix, "Tunnel-Type:1" (RFC 2868)
        definition = self._dictionary.attributes.get(base_name)
        if definition is None:
            raise ValueError(f"reply attribute {name}: not in the RADIUS dictionary")
        if base_name in _CODEC_ATTRIBUTES:
            raise ValueError(f"reply attribute {name}: written by radius-bridge itself")
        if definition.encrypt:
            # Hidden values depend on the request (RFC 2868 §3.5); nothing we send needs one.
            raise ValueError(f"reply attribute {name}: encrypted attributes are not supported")
        if isinstance(value, bool) or not isinstance(value, str | int | bytes):
            raise ValueError(f"reply attribute {name}: value must be text, a number or bytes")
        # A one-attribute packet encoded by pyrad: its attribute section is the wire form,
        # vendor wrapping (RFC 2865 §5.26), named values and tags included.
        scratch = pyrad_packet.AuthPacket(
            code=ACCESS_ACCEPT, id=0, secret=b"", authenticator=bytes(16), dict=self._dictionary
        )
        try:
            if definition.type == "octets" and not definition.has_tag:
                # Raw bytes by key: pyrad's octets encoder turns "0x41" into b"A" and "12"
                # into b"\x0c" (pyrad-notes §2); configured text is meant literally.
                if isinstance(value, int):
                    raise ValueError("an octets value must be text or bytes, not a number")
                raw = value.encode("utf-8") if isinstance(value, str) else value
                scratch[self._dictionary.attrindex.GetForward(base_name)] = [raw]
            elif definition.type == "string" and isinstance(value, int):
                scratch.AddAttribute(name, str(value))
            else:
                scratch.AddAttribute(name, value)
            encoded: bytes = scratch.ReplyPacket()[HEADER_LENGTH:]
        except (ValueError, TypeError, KeyError, struct.error) as error:
            raise ValueError(f"reply attribute {name}: {error}") from None
        return encoded

    # ------------------------------------------------------------------ client side

    def build_request(
        self,
        *,
        secret: bytes,
        identifier: int,
        user_name: str,
        password: str | None,
        state: bytes | None = None,
        message_authenticator: bool = True,
        authenticator: bytes | None = None,
        proxy_states: Iterable[bytes] = (),
        attributes: Iterable[tuple[str, AttributeValue]] = (),
    ) -> bytes:
        """Build an Access-Request as a NAS would (for ``radius-bridge test`` and the tests).

        With ``message_authenticator`` the Message-Authenticator is the first attribute.
        """
        if not 0 <= identifier <= 255:
            raise ValueError(f"identifier {identifier} is not within 0..255")
        if authenticator is None:
            authenticator = secrets.token_bytes(16)  # RFC 2865 §3: unpredictable
        if len(authenticator) != 16:
            raise ValueError("the Request Authenticator is 16 octets")
        parts = [_MESSAGE_AUTHENTICATOR_PLACEHOLDER] if message_authenticator else []
        parts.append(_attribute(USER_NAME, user_name.encode("utf-8")))
        if password is not None:
            parts.append(_attribute(USER_PASSWORD, _hide_password(password, secret, authenticator)))
        if state is not None:
            parts.append(_attribute(STATE, state))
        parts.extend(_attribute(PROXY_STATE, value) for value in proxy_states)
        parts.extend(self._encode_attribute(name, value) for name, value in attributes)
        body = b"".join(parts)
        length = HEADER_LENGTH + len(body)
        if length > MAX_PACKET_LENGTH:
            raise ValueError(f"request of {length} octets, at most {MAX_PACKET_LENGTH} allowed")
        head = struct.pack("!BBH", ACCESS_REQUEST, identifier, length) + authenticator
        if message_authenticator:
            # RFC 3579 §3.2: HMAC-MD5 over the whole request with the value zeroed.
            signature = hmac.digest(secret, head + body, "md5")
            body = body[:2] + signature + body[2 + MESSAGE_AUTHENTICATOR_LENGTH :]
        return head + body

    def decode_reply(
        self,
        data: bytes,
        *,
        secret: bytes,
        request_authenticator: bytes,
        server_name: str = "server",
    ) -> Reply:
        """Verify and decode an Access-Accept, -Reject or -Challenge to our request.

        Raises ``MalformedPacket`` for a packet that is not such a reply or whose Response
        Authenticator does not verify (RFC 2865 §3), ``BadAuthenticator`` for a wrong
        Message-Authenticator.
        """
        header = peek_header(data)
        if header is None:
            raise MalformedPacket("not a RADIUS packet: too short or invalid Length field")
        code, identifier, response_authenticator = header
        outcome = _REPLY_OUTCOMES.get(code)
        if outcome is None:
            raise MalformedPacket(f"packet code {code} is not a reply to an Access-Request")
        length = (data[2] << 8) | data[3]
        packet = bytes(data[:length])
        attributes = self._walk(packet)

        # RFC 2865 §3: MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
        expected = _md5(packet[:4] + request_authenticator + packet[HEADER_LENGTH:] + secret)
        if not hmac.compare_digest(expected, response_authenticator):
            raise MalformedPacket(
                "Response Authenticator does not verify: wrong shared secret, or not the reply "
                "to this request"
            )
        offset = attributes.message_authenticator_offset
        if offset is not None:
            # RFC 3579 §3.2: in a reply the HMAC covers the Request Authenticator instead.
            signed = (
                packet[:4]
                + request_authenticator
                + packet[HEADER_LENGTH : offset + 2]
                + _ZERO_MESSAGE_AUTHENTICATOR
                + packet[offset + 2 + MESSAGE_AUTHENTICATOR_LENGTH :]
            )
            received = packet[offset + 2 : offset + 2 + MESSAGE_AUTHENTICATOR_LENGTH]
            if not hmac.compare_digest(received, hmac.digest(secret, signed, "md5")):
                raise BadAuthenticator(server_name)

        return Reply(
            code=code,
            outcome=outcome,
            identifier=identifier,
            reply_messages=tuple(
                chunk.decode("utf-8", errors="replace")
                for chunk in attributes.values.get(REPLY_MESSAGE, ())
            ),
            state=attributes.first(STATE),
            proxy_states=tuple(attributes.values.get(PROXY_STATE, ())),
            attributes=self._decode_by_name(packet, secret),
            attribute_types=tuple(attributes.types),
            message_authenticator_first=bool(attributes.types)
            and attributes.types[0] == MESSAGE_AUTHENTICATOR,
        )

    def _decode_by_name(self, packet: bytes, secret: bytes) -> dict[str, tuple[object, ...]]:
        try:
            decoded = pyrad_packet.Packet(packet=packet, secret=secret, dict=self._dictionary)
            by_name: dict[str, tuple[object, ...]] = {}
            # pyrad's keys() gives dictionary names; iterating the packet gives raw codes.
            for key in decoded.keys():  # noqa: SIM118
                by_name[_attribute_label(key)] = tuple(decoded[key])
        except (pyrad_packet.PacketError, ValueError, TypeError, KeyError, struct.error) as error:
            raise MalformedPacket(f"reply attribute does not decode: {error}") from None
        return by_name


# ---------------------------------------------------------------------- helpers


def _load_dictionary(text: str, label: str) -> Any:
    try:
        return pyrad_dictionary.Dictionary(io.StringIO(text))
    except (pyrad_dictionary.ParseError, ValueError, OSError) as error:
        raise ValueError(f"RADIUS dictionary {label}: {error}") from None


def _read_into(dictionary: Any, path: str) -> None:
    try:
        dictionary.ReadDictionary(path)
    except (pyrad_dictionary.ParseError, ValueError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"RADIUS dictionary {path}: {error}") from None


def _attribute(attribute_type: int, value: bytes) -> bytes:
    if len(value) > MAX_ATTRIBUTE_VALUE:
        raise ValueError(
            f"attribute {attribute_type} value of {len(value)} octets, at most "
            f"{MAX_ATTRIBUTE_VALUE} fit (RFC 2865 §5)"
        )
    return bytes((attribute_type, len(value) + 2)) + value


def _sign_reply(
    code: int, identifier: int, request_authenticator: bytes, body: bytes, secret: bytes
) -> bytes:
    """Sign a reply whose attributes start with a zeroed Message-Authenticator.

    RFC 3579 §3.2: the HMAC-MD5 covers the reply with the Request Authenticator in the
    Authenticator field; RFC 2865 §3: the Response Authenticator then covers the attributes
    including the final Message-Authenticator, so the order of the two steps matters.
    """
    length = HEADER_LENGTH + len(body)
    if length > MAX_PACKET_LENGTH:
        raise ValueError(f"reply of {length} octets, at most {MAX_PACKET_LENGTH} allowed")
    head = struct.pack("!BBH", code, identifier, length)
    signature = hmac.digest(secret, head + request_authenticator + body, "md5")
    body = body[:2] + signature + body[2 + MESSAGE_AUTHENTICATOR_LENGTH :]
    response_authenticator = _md5(head + request_authenticator + body + secret)
    return head + response_authenticator + body


def _md5(data: bytes) -> bytes:
    # RADIUS itself prescribes MD5 (RFC 2865 §3, §5.2); nothing here chooses it.
    return hashlib.md5(data).digest()  # noqa: S324


def _password_keystream_xor(block: bytes, secret: bytes, previous: bytes) -> bytes:
    key = _md5(secret + previous)
    return (int.from_bytes(block, "big") ^ int.from_bytes(key, "big")).to_bytes(16, "big")


def _unhide_password(hidden: bytes, secret: bytes, authenticator: bytes) -> str:
    """Reverse RFC 2865 §5.2 hiding; every empty form gives "" and bad bytes are an error."""
    if not hidden:
        # Zero-length value: breaks RFC 2865 §5.2 (at least 16 octets) but some NAS send it
        # for an empty password, which the bridge reads as "push".
        return ""
    if len(hidden) % PASSWORD_BLOCK or len(hidden) > MAX_HIDDEN_PASSWORD:
        raise MalformedPacket(
            f"User-Password of {len(hidden)} octets: not a multiple of 16 up to 128 (RFC 2865 §5.2)"
        )
    plain = bytearray()
    previous = authenticator
    for start in range(0, len(hidden), PASSWORD_BLOCK):
        block = hidden[start : start + PASSWORD_BLOCK]
        plain += _password_keystream_xor(block, secret, previous)
        previous = block
    try:
        # RFC 2865 §5.2 pads with NULs; no UTF-8 text ends in NUL otherwise.
        return bytes(plain).rstrip(b"\x00").decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("User-Password does not decode: wrong shared secret?") from None


def _hide_password(password: str, secret: bytes, authenticator: bytes) -> bytes:
    plain = password.encode("utf-8")
    if len(plain) > MAX_HIDDEN_PASSWORD:
        raise ValueError(f"a password is at most {MAX_HIDDEN_PASSWORD} octets (RFC 2865 §5.2)")
    # RFC 2865 §5.2: NUL-padded to a multiple of 16 octets, and at least one block.
    blocks = max(1, -(-len(plain) // PASSWORD_BLOCK))
    padded = plain.ljust(blocks * PASSWORD_BLOCK, b"\x00")
    hidden = bytearray()
    previous = authenticator
    for start in range(0, len(padded), PASSWORD_BLOCK):
        block = _password_keystream_xor(padded[start : start + PASSWORD_BLOCK], secret, previous)
        hidden += block
        previous = block
    return bytes(hidden)


def _scheme(attributes: _Attributes) -> PasswordScheme:
    present = attributes.values
    if USER_PASSWORD in present:
        if CHAP_PASSWORD in present:
            raise MalformedPacket("both User-Password and CHAP-Password (RFC 2865 §4.1)")
        return PasswordScheme.PAP
    if CHAP_PASSWORD in present:
        return PasswordScheme.CHAP
    vendor_types = attributes.vendor_types
    if (MICROSOFT_VENDOR_ID, MS_CHAP_RESPONSE) in vendor_types or (
        MICROSOFT_VENDOR_ID,
        MS_CHAP2_RESPONSE,
    ) in vendor_types:
        return PasswordScheme.MSCHAP
    if EAP_MESSAGE in present:
        return PasswordScheme.EAP
    return PasswordScheme.NONE


def _informational_text(raw: bytes | None) -> str | None:
    # Only logged and matched, never trusted: a NAS with odd bytes here must not lock users out.
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _ipv4_text(raw: bytes | None) -> str | None:
    if raw is None or len(raw) != 4:
        return None
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"


def _split_reply_message(text: str) -> list[bytes]:
    """Split UTF-8 text into attribute values of at most 253 octets, never inside a character."""
    encoded = text.encode("utf-8")
    chunks = []
    start = 0
    while start < len(encoded):
        end = min(start + MAX_ATTRIBUTE_VALUE, len(encoded))
        # 0b10xxxxxx octets continue a character: move the cut before the character starts.
        while end < len(encoded) and encoded[end] & 0xC0 == 0x80:
            end -= 1
        chunks.append(encoded[start:end])
        start = end
    return chunks


def _attribute_label(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, tuple):
        return "Attr-26." + ".".join(str(part) for part in key)
    return f"Attr-{key}"
