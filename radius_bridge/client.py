"""A small RADIUS client: one Access-Request out, its verified reply back, with retransmissions.

It serves ``radius-bridge test`` (an administrator checks a login end to end) and the demo.
Retransmissions reuse the very same packet bytes, as a NAS does (RFC 5080 §2.2.1), so the bridge
recognises them as duplicates.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterable

from radius_bridge.errors import PacketError
from radius_bridge.radius import RadiusCodec, Reply


class NoReply(TimeoutError):
    """No valid reply arrived within the timeout, after every retransmission."""


class RadiusClient:
    """Sends Access-Requests to one server and waits for verified replies."""

    def __init__(
        self,
        server: tuple[str, int],
        secret: bytes,
        *,
        codec: RadiusCodec | None = None,
        timeout: float = 5.0,
        attempts: int = 3,
    ) -> None:
        self._server = server
        self._secret = secret
        self._codec = codec or RadiusCodec()
        self._timeout = timeout
        self._attempts = attempts

    def authenticate(
        self,
        user_name: str,
        password: str | None,
        *,
        state: bytes | None = None,
        attributes: Iterable[tuple[str, str | int | bytes]] = (),
    ) -> Reply:
        identifier = secrets.randbelow(256)
        authenticator = secrets.token_bytes(16)
        packet = self._codec.build_request(
            secret=self._secret,
            identifier=identifier,
            user_name=user_name,
            password=password,
            state=state,
            authenticator=authenticator,
            attributes=tuple(attributes),
        )
        family = socket.AF_INET6 if ":" in self._server[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(self._server)
            for _ in range(self._attempts):
                sock.send(packet)
                deadline = time.monotonic() + self._timeout
                while (remaining := deadline - time.monotonic()) > 0:
                    sock.settimeout(remaining)
                    try:
                        data = sock.recv(4096)
                    except TimeoutError:
                        break
                    except ConnectionRefusedError:
                        # ICMP port unreachable: nothing listens there (yet); wait and resend.
                        time.sleep(min(remaining, 0.2))
                        break
                    if len(data) < 20 or data[1] != identifier:
                        continue
                    try:
                        return self._codec.decode_reply(
                            data, secret=self._secret, request_authenticator=authenticator
                        )
                    except PacketError:
                        continue  # not signed with our secret: keep waiting for the real one
        raise NoReply(
            f"no valid reply from {self._server[0]}:{self._server[1]} after "
            f"{self._attempts} attempts of {self._timeout:g} s"
        )
