"""The exception tree, split by whose fault an error is.

::

    BridgeError
    ├── ConfigError            the operator's: a bad configuration file or value
    ├── PacketError            the NAS's: a datagram we will not answer
    │   ├── MalformedPacket        not a well-formed RADIUS packet of a kind we serve
    │   ├── UnknownClient          the source address matches no configured client
    │   ├── BadAuthenticator       Message-Authenticator wrong: secret mismatch or tampering
    │   └── MissingAuthenticator   Message-Authenticator required but absent
    └── FicError               FIC's (or the path to it)
        ├── FicUnavailable         no usable answer: connection, timeout, 5xx, 429
        │   └── FicRateLimited         429, with the Retry-After FIC asked for
        ├── FicRejected            FIC answered and said no (wrong code, unknown user, locked)
        │   ├── FicUnknownUser
        │   └── FicUserLocked
        ├── FicCredentialsRefused  our client id/secret were refused at login (operator's fix)
        └── FicProtocolError       FIC answered something we cannot read

Every error keeps its facts as attributes and builds its message from them, so callers can
log fields rather than parse text. No message ever includes a secret, password or code.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error radius-bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is wrong; ``file`` and the dotted ``key`` say where."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{key}: " if key else ""
        super().__init__(f"{file}: {where}{problem}")


class PacketError(BridgeError):
    """A datagram from a NAS that is dropped without an answer."""

    reason = "malformed"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class MalformedPacket(PacketError):
    reason = "malformed"


class UnknownClient(PacketError):
    reason = "unknown_client"

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"no client configured for {address}")


class BadAuthenticator(PacketError):
    reason = "bad_message_authenticator"

    def __init__(self, client: str) -> None:
        self.client = client
        super().__init__(
            f"invalid Message-Authenticator from client {client!r}: "
            "shared secret mismatch or tampering"
        )


class MissingAuthenticator(PacketError):
    reason = "missing_message_authenticator"

    def __init__(self, client: str) -> None:
        self.client = client
        super().__init__(
            f"client {client!r} sent no Message-Authenticator and this client requires one "
            "(BlastRADIUS, CVE-2024-3596)"
        )


class FicError(BridgeError):
    """Something went wrong talking to FIC; ``endpoint`` names the call (``"POST /auth"``)."""

    def __init__(self, endpoint: str, detail: str, *, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.detail = detail
        self.status = status
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{endpoint}{code}: {detail}")


class FicUnavailable(FicError):
    """No usable answer: connection refused or reset, timeout, 5xx, or throttled.

    ``reached_fic`` is False only when FIC certainly did not act on the request (the connection
    was never made, or FIC refused it unread with 429). Failmode ``open`` may accept only then:
    after a read timeout or a 5xx a push or code may already be on its way to the user.
    """

    def __init__(
        self, endpoint: str, detail: str, *, status: int | None = None, reached_fic: bool = True
    ) -> None:
        self.reached_fic = reached_fic
        super().__init__(endpoint, detail, status=status)


class FicRateLimited(FicUnavailable):
    """HTTP 429; ``retry_after`` is the number of seconds FIC asked us to wait, if it said."""

    def __init__(
        self, endpoint: str, detail: str, *, status: int = 429, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(endpoint, detail, status=status, reached_fic=False)


class FicRejected(FicError):
    """FIC answered and refused: a wrong code, an unknown or disabled user, and so on."""


class FicUnknownUser(FicRejected):
    """FIC does not know this user."""


class FicUserLocked(FicRejected):
    """FIC has locked the user out after too many failures."""


class FicCredentialsRefused(FicError):
    """FIC refused the bridge's own client id/secret at ``POST /login``."""


class FicProtocolError(FicError):
    """FIC answered, but not in a shape we understand (bad JSON, missing ``authid``...)."""
