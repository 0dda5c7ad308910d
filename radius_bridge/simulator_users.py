"""The simulated FIC's end users: the ``SimUser`` value, the demo set and the YAML loader.

A ``SimUser`` scripts how one fake FIC user behaves: which second-factor method FIC reports
for them, the fixed test code and/or RFC 6238 secret their tokens produce, and what they do
with a push (approve or deny after ``push_delay`` seconds, or never answer). ``load_users``
reads ``users: [...]`` from a YAML file; every error is a ``ConfigError`` naming the file and
the dotted key (``users[2].push``), with a close-match hint for misspelt keys.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from radius_bridge.errors import ConfigError

AUTH_METHODS = ("FTM", "FTK", "SMS", "Email")
PUSH_SCRIPTS = ("approve", "deny", "ignore")
DEMO_CODE = "123456"
_SAFE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


@dataclass(frozen=True, slots=True)
class SimUser:
    """One fake FIC user and the script it follows.

    ``code`` is a fixed test code accepted like a token code (``None`` disables it);
    ``totp_secret`` (base32) makes the user's token produce real RFC 6238 codes as well.
    ``push`` is what the user does with a push: ``approve``/``deny`` after ``push_delay``
    seconds, or ``ignore`` (the push stays ``waiting``). ``activated=False`` models a user whose
    token was never activated (FIC answers 400). Codes and secrets are kept out of ``repr``.
    """

    username: str
    email: str
    mobile_number: str | None = None
    auth_method: str = "FTM"
    code: str | None = field(default=DEMO_CODE, repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    push: str = "approve"
    push_delay: float = 2.0
    active: bool = True
    bypass: bool = False
    push_enabled: bool = True
    activated: bool = True
    realm: str = "default"

    def __post_init__(self) -> None:
        for name in _FIELD_NAMES:
            problem = _field_problem(name, getattr(self, name))
            if problem is not None:
                raise ValueError(f"SimUser.{name}: {problem}")


_FIELD_NAMES = tuple(f.name for f in fields(SimUser))
_REQUIRED = ("username", "email")


def _field_problem(name: str, value: Any) -> str | None:
    """Say what is wrong with ``value`` for field ``name`` (``None`` when it is fine)."""
    if name in ("username", "email", "realm"):
        if not isinstance(value, str) or not value.strip():
            return "must be a non-empty string"
        if len(value) > 80:
            return "must be at most 80 characters (FIC's limit)"
        return None
    if name == "mobile_number":
        if value is not None and (not isinstance(value, str) or not value.strip()):
            return "must be a non-empty string (quote it) or null"
        return None
    if name == "auth_method":
        if value not in AUTH_METHODS:
            return f"must be one of {', '.join(AUTH_METHODS)}"
        return None
    if name == "code":
        if value is None:
            return None
        if not isinstance(value, str) or not value.isdigit():
            return "must be a quoted string of digits (YAML reads 012345 as a number) or null"
        return None
    if name == "totp_secret":
        if value is None:
            return None
        if not isinstance(value, str) or _decode_base32(value) is None:
            return "must be a base32 string (RFC 4648) or null"
        return None
    if name == "push":
        if value not in PUSH_SCRIPTS:
            return f"must be one of {', '.join(PUSH_SCRIPTS)}"
        return None
    if name == "push_delay":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number of seconds"
        if not math.isfinite(value) or value < 0:
            return "must be a finite number of seconds >= 0"
        return None
    # The remaining fields are the switches.
    if not isinstance(value, bool):
        return "must be true or false"
    return None


def _decode_base32(secret: str) -> bytes | None:
    """Decode a base32 TOTP secret, tolerating lower case, spaces and missing padding."""
    compact = secret.replace(" ", "").upper()
    if not compact:
        return None
    try:
        return base64.b32decode(compact + "=" * (-len(compact) % 8))
    except (binascii.Error, ValueError):
        return None


def totp_key(secret: str) -> bytes:
    """The HMAC key behind a validated base32 ``totp_secret``."""
    key = _decode_base32(secret)
    if key is None:
        raise ValueError("not a base32 secret")
    return key


def demo_users() -> list[SimUser]:
    """The demo cast: one user per behaviour the bridge must handle.

    alice approves pushes after 3 s, bob denies them, carol gets SMS codes, dave e-mail codes,
    erin never answers a push, frank has a hardware token (codes only), gina is bypassed.
    Users with a token accept the fixed test code 123456; carol and dave only accept the code
    sent to their outbox.
    """
    return [
        SimUser("alice", "alice@example.com", "+15550100001", push="approve", push_delay=3.0),
        SimUser("bob", "bob@example.com", "+15550100002", push="deny", push_delay=3.0),
        SimUser("carol", "carol@example.com", "+15550100003", auth_method="SMS", code=None),
        SimUser("dave", "dave@example.com", auth_method="Email", code=None),
        SimUser("erin", "erin@example.com", push="ignore"),
        SimUser("frank", "frank@example.com", auth_method="FTK", push_enabled=False),
        SimUser("gina", "gina@example.com", bypass=True),
    ]


def user_from_mapping(data: object, *, file: str, where: str) -> SimUser:
    """Build a ``SimUser`` from a parsed mapping; errors name ``file`` and the key ``where.x``."""
    if not isinstance(data, Mapping):
        raise ConfigError(file, where, "must be a mapping of user fields")
    for key in data:
        if key not in _FIELD_NAMES:
            hint = difflib.get_close_matches(str(key), _FIELD_NAMES, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(file, f"{where}.{key}", f"unknown key{suffix}")
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(file, f"{where}.{key}", "is required")
    values: dict[str, Any] = {}
    for key, value in data.items():
        problem = _field_problem(str(key), value)
        if problem is not None:
            raise ConfigError(file, f"{where}.{key}", problem)
        values[str(key)] = float(value) if key == "push_delay" else value
    return SimUser(**values)


def load_users(path: str | Path) -> list[SimUser]:
    """Read ``users: [...]`` from a YAML file (see config/simulator-users.example.yaml)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read the file: {exc.strerror}") from None
    try:
        # libyaml's safe loader when PyYAML was built with it: the same documents and errors,
        # and ten thousand users (the benchmark's) load in a second instead of eight.
        document = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(file, "", f"not valid YAML{where}") from None
    if not isinstance(document, Mapping):
        raise ConfigError(file, "", "must be a mapping with a 'users' list")
    for key in document:
        if key != "users":
            close = difflib.get_close_matches(str(key), ["users"])
            hint = " (did you mean 'users'?)" if close else ""
            raise ConfigError(file, str(key), f"unknown key{hint}")
    entries = document.get("users")
    if not isinstance(entries, list):
        raise ConfigError(file, "users", "must be a list of users")
    users: list[SimUser] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(entries):
        where = f"users[{index}]"
        user = user_from_mapping(entry, file=file, where=where)
        # FIC matches usernames case-insensitively within a realm by default (fic-api.md §4).
        identity = (user.realm.casefold(), user.username.casefold())
        if identity in seen:
            raise ConfigError(file, f"{where}.username", "duplicate username in this realm")
        seen.add(identity)
        users.append(user)
    return users
