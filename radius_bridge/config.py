"""The configuration: one YAML file read into frozen, keyword-only dataclasses.

This module owns the file format (the keys, their defaults and their limits), reading secrets from
their four sources (inline, a file, an environment variable, a systemd credential) and every check
that can be made before the daemon starts. Each problem raises ``ConfigError`` naming the file and
the dotted key (``radius.clients[2].secret``); no message ever carries a secret value. The result
is immutable and safe to ``repr``: secrets are ``model.Secret`` values and a proxy password is
masked. ``Config.client_for`` answers which configured NAS a source address belongs to.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import SplitResult, urlsplit

import yaml

from radius_bridge.errors import ConfigError
from radius_bridge.model import Secret

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_BASE_URL = "https://fic.fortinet.com:9696/api/v1"
# RFC 2865 §3: the authentication port is 1812.
DEFAULT_RADIUS_PORT = 1812
# A push is a person reaching for a phone; beyond two minutes no NAS still waits for the answer.
MAX_PUSH_TIMEOUT = 120.0
# FIC issues bearer tokens for one hour (shared/fic-api.md §3); renewing earlier than that is the
# only sensible margin.
FIC_TOKEN_LIFETIME = 3600.0
# FIC limits realm names to 80 characters (shared/fic-api.md §4).
MAX_REALM_LENGTH = 80
# The State HMAC key guards Access-Challenge State against forgery; shorter keys are guessable.
MIN_STATE_SECRET_LENGTH = 16
# Attributes whose value the bridge itself must control in every reply (RFC 2865 §5.24 State,
# §5.33 Proxy-State; RFC 3579 §3.2 Message-Authenticator).
RESERVED_REPLY_ATTRIBUTES = frozenset({"message-authenticator", "state", "proxy-state"})
KEYWORD_DEFAULTS = {"push_keyword": "push", "sms_keyword": "sms", "email_keyword": "email"}
# FortiToken codes are six digits (eight for some hardware tokens).
DEFAULT_OTP_PATTERN = re.compile(r"^\d{6,8}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
SECRET_SOURCES = ("", "_file", "_env", "_credential")


class Failmode(enum.Enum):
    """What happens to a login when FIC cannot be reached: refuse it, or let it in on password."""

    SECURE = "secure"
    OPEN = "open"


class EmptyPassword(enum.Enum):
    """What an empty password does."""

    PREVIEW = "preview"  # ask FIC what the user has (push when it can, otherwise challenge)
    PUSH = "push"  # always send a FortiToken Mobile push
    REJECT = "reject"  # refuse: the user must type a code or a keyword


class MessageAuthenticatorPolicy(enum.Enum):
    """Whether a client's Access-Requests must carry Message-Authenticator (RFC 3579 §3.2).

    The values are what the YAML file holds: ``true``, ``false`` or ``"auto"``.
    """

    REQUIRED = "true"  # drop a request without it (the default)
    OPTIONAL = "false"  # accept requests without it (a NAS that cannot send it)
    AUTO = "auto"  # optional until the client first sends one, required from then on


class LogFormat(enum.Enum):
    """How log lines are written to stdout."""

    JSON = "json"
    CONSOLE = "console"


@dataclass(frozen=True, kw_only=True, slots=True)
class FicConfig:
    """How to reach FortiIdentity Cloud and who the bridge is there (a web application)."""

    base_url: str = DEFAULT_BASE_URL
    client_id: str
    client_secret: Secret
    realm: str | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    ca_bundle: str | None = None
    proxy: str | None = None
    pool_size: int = 10
    token_renew_margin: float = 60.0

    def __repr__(self) -> str:
        # A proxy URL may carry a password (http://user:password@proxy:3128); mask it.
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["proxy"] = _mask_url_password(self.proxy)
        return f"FicConfig({', '.join(f'{name}={value!r}' for name, value in values.items())})"


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenAddress:
    """One UDP address the server binds."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# Every IPv4 and every IPv6 address. The two collide on Linux unless the IPv6 socket is bound
# IPv6-only (IPV6_V6ONLY), which the server is expected to do.
DEFAULT_LISTEN = (
    ListenAddress(host="0.0.0.0", port=DEFAULT_RADIUS_PORT),  # noqa: S104 - a server's default
    ListenAddress(host="::", port=DEFAULT_RADIUS_PORT),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    """A NAS (RADIUS client): the addresses it sends from and the secret it shares with us."""

    name: str
    address: IPNetwork
    secret: Secret
    require_message_authenticator: MessageAuthenticatorPolicy = MessageAuthenticatorPolicy.REQUIRED
    reply_attributes: tuple[tuple[str, str | int], ...] = ()
    nas_timeout: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RadiusConfig:
    """The RADIUS side: where to listen, which clients to answer, how to keep State."""

    listen: tuple[ListenAddress, ...] = DEFAULT_LISTEN
    clients: tuple[ClientConfig, ...]
    dictionaries: tuple[str, ...] = ()
    state_secret: Secret | None = None
    duplicate_ttl: float = 30.0


@dataclass(frozen=True, kw_only=True, slots=True)
class UsernameConfig:
    """How the RADIUS User-Name becomes a FIC user name (and, through its realm, a FIC realm)."""

    strip_domain: bool = True
    strip_realm: bool = True
    lowercase: bool = True
    # Keys are lowercased: realm suffixes are matched case-insensitively. Not hashed (a mapping).
    realm_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthConfig:
    """How a password maps to a second factor, and how long each factor may take."""

    push_keyword: str = "push"
    sms_keyword: str = "sms"
    email_keyword: str = "email"
    otp_pattern: re.Pattern[str] = DEFAULT_OTP_PATTERN
    empty_password: EmptyPassword = EmptyPassword.PREVIEW
    push_timeout: float = 25.0
    push_poll_interval: float = 1.0
    challenge_timeout: float = 120.0
    failmode: Failmode = Failmode.SECURE
    username: UsernameConfig = field(default_factory=UsernameConfig)


@dataclass(frozen=True, kw_only=True, slots=True)
class LoggingConfig:
    """How the daemon logs: JSON lines for journald, or a console layout for people."""

    format: LogFormat = LogFormat.JSON
    level: str = "info"


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricsConfig:
    """The optional HTTP listener for Prometheus (``/metrics``) and ``/healthz``.

    Off unless ``listen`` is set; a non-loopback ``listen`` needs ``allow_remote``.
    """

    listen: ListenAddress | None = None
    allow_remote: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitsConfig:
    """Per-user limits against push bombing and code guessing, and the caps that bound memory.

    A per-user limit of ``None`` is off. The caps (``max_*``, ``duplicate_cache_size``) always
    apply and take effect at start; the per-user limits also change on reload.
    """

    one_push_per_user: bool = True
    pushes_per_user: int | None = 3
    pushes_window: float = 300.0
    cooldown_after_denied_push: float | None = 60.0
    wrong_codes_per_user: int | None = 5
    wrong_codes_window: float = 300.0
    max_tracked_users: int = 100_000
    max_pending_pushes: int = 10_000
    max_challenges: int = 100_000
    duplicate_cache_size: int = 100_000
    max_requests_in_progress: int = 50_000


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """The whole configuration, and ``source``: the file it came from."""

    fic: FicConfig
    radius: RadiusConfig
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    source: str

    def client_for(self, address: str) -> ClientConfig | None:
        """The client whose network contains ``address`` most specifically (longest prefix).

        An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, what a dual-stack socket reports for
        IPv4 senders) is matched as the IPv4 address it carries. Returns ``None`` when no network
        contains the address or the address is not an IP address.
        """
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        containing = [
            client
            for client in self.radius.clients
            if client.address.version == ip.version and ip in client.address
        ]
        return max(containing, key=lambda client: client.address.prefixlen, default=None)


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, parse and check the YAML file at ``path``; ``environ`` defaults to ``os.environ``.

    Relative paths inside the file (secret files, ``ca_bundle``, dictionaries) are resolved
    against the file's own directory. Raises ``ConfigError`` for every problem.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "", "is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror}") from None
    data = _load_yaml(source, text)
    return parse_config(
        data,
        source=source,
        base_dir=Path(source).absolute().parent,
        environ=os.environ if environ is None else environ,
    )


def parse_config(
    data: object, *, source: str, base_dir: Path, environ: Mapping[str, str]
) -> Config:
    """Build a ``Config`` from an already-loaded mapping (what ``yaml.safe_load`` returns).

    ``source`` names the origin in error messages, ``base_dir`` resolves relative paths and
    ``environ`` supplies ``*_env`` secrets and ``CREDENTIALS_DIRECTORY``.
    """
    context = _Context(source=source, base_dir=Path(base_dir), environ=environ)
    if not isinstance(data, dict):
        problem = "is empty" if data is None else "must be a mapping"
        raise context.error("", f"{problem}: it needs at least the sections fic and radius")
    root = _Section(context, "", data, ("fic", "radius", "auth", "limits", "logging", "metrics"))
    return Config(
        fic=_parse_fic(root.section("fic", required=True)),
        radius=_parse_radius(root.section("radius", required=True)),
        auth=_parse_auth(root.section("auth")),
        limits=_parse_limits(root.section("limits")),
        logging=_parse_logging(root.section("logging")),
        metrics=_parse_metrics(root.section("metrics")),
        source=source,
    )


# --- reading YAML -------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    Plain YAML keeps the last value silently, so a second ``secret:`` further down a client
    would quietly replace the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key_node.value!r} (each key may appear once)",
                    key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(source: str, text: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its position: the exception's own text quotes the offending line,
        # which may hold an inline secret. ``from None`` keeps that text out of tracebacks too.
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(source, "", f"invalid YAML at {where}: {exc.problem}") from None
    except yaml.YAMLError:
        raise ConfigError(source, "", "invalid YAML") from None


# --- the generic reader -------------------------------------------------------------------------


class _Missing(enum.Enum):
    MISSING = "missing"


_MISSING = _Missing.MISSING
_E = TypeVar("_E", bound=enum.Enum)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Context:
    source: str
    base_dir: Path
    environ: Mapping[str, str]

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def resolve(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.base_dir / candidate


def _unknown_key_problem(key: str, allowed: Iterable[str]) -> str:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (expected one of: {', '.join(allowed)})"


def _secret_keys(name: str) -> tuple[str, ...]:
    return tuple(name + suffix for suffix in SECRET_SOURCES)


class _Section:
    """One mapping of the file at a dotted key, with typed getters that name the key on error.

    ``allowed`` lists the keys the mapping may hold (others are refused with a close-match
    hint); ``None`` allows any key, for mappings whose keys are data (reply attributes, realms).
    """

    def __init__(
        self, context: _Context, key: str, value: object, allowed: Iterable[str] | None
    ) -> None:
        self.context = context
        self.key = key
        if value is None:  # a section whose children are all commented out
            value = {}
        if not isinstance(value, dict):
            raise context.error(key, "must be a mapping (key: value lines)")
        self.data: dict[str, object] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise context.error(key, f"keys must be text, found {name!r}")
            if allowed is not None and name not in allowed:
                raise context.error(self.path(name), _unknown_key_problem(name, allowed))
            self.data[name] = item

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, problem: str) -> ConfigError:
        return self.context.error(self.path(name), problem)

    def section(self, name: str, *, required: bool = False) -> _Section:
        if required and name not in self.data:
            raise self.error(name, "missing: this section is required")
        return _Section(self.context, self.path(name), self.data.get(name), _KEYS[name])

    def mapping(self, name: str) -> _Section:
        return _Section(self.context, self.path(name), self.data.get(name), None)

    def sequence(self, name: str) -> list[object]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, "must be a list")
        return value

    def text(self, name: str, default: str | _Missing = _MISSING) -> str:
        if name not in self.data:
            if isinstance(default, _Missing):
                raise self.error(name, "missing: this key is required")
            return default
        return self._text_value(name)

    def optional_text(self, name: str) -> str | None:
        return None if self.data.get(name) is None else self._text_value(name)

    def _text_value(self, name: str) -> str:
        value = self.data[name]
        if value is None or value == "":
            raise self.error(name, "must not be empty")
        if not isinstance(value, str):
            raise self.error(name, "must be a string (put it in quotes)")
        return value

    def number(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        if name not in self.data:
            return default
        return self._number_value(name, allow_zero=allow_zero)

    def optional_number(self, name: str) -> float | None:
        return None if self.data.get(name) is None else self._number_value(name)

    def _number_value(self, name: str, *, allow_zero: bool = False) -> float:
        value = self.data[name]
        # bool is an int subclass; ``timeout: yes`` is a mistake, not 1 second.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, "must be a number")
        number = float(value)
        if not math.isfinite(number):
            raise self.error(name, "must be a finite number")
        if number < 0 or (number == 0 and not allow_zero):
            raise self.error(name, "must be at least 0" if allow_zero else "must be greater than 0")
        return number

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, "must be a whole number")
        if not minimum <= value <= maximum:
            raise self.error(name, f"must be between {minimum} and {maximum}")
        return value

    def optional_count(self, name: str, default: int | None, *, maximum: int) -> int | None:
        """A whole number from 1 to ``maximum``; ``0`` or ``null`` mean off (``None``)."""
        value = self.data.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, "must be a whole number (0 or null turns it off)")
        if value == 0:
            return None
        if not 1 <= value <= maximum:
            raise self.error(name, f"must be between 0 (off) and {maximum}")
        return value

    def optional_seconds(self, name: str, default: float | None, *, maximum: float) -> float | None:
        """Seconds up to ``maximum``; ``0`` or ``null`` mean off (``None``)."""
        if name not in self.data:
            return default
        if self.data[name] is None:
            return None
        seconds = self._number_value(name, allow_zero=True)
        if seconds > maximum:
            raise self.error(name, f"must be at most {maximum:g} seconds (0 or null: off)")
        return seconds or None

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, "must be true or false")
        return value

    def choice(self, name: str, kind: type[_E], default: _E) -> _E:
        if name not in self.data:
            return default
        value = self.data[name]
        choices = [str(member.value) for member in kind]
        if isinstance(value, str) and value.lower() in choices:
            return kind(value.lower())
        problem = f"must be {' or '.join(repr(choice) for choice in choices)}"
        close = difflib.get_close_matches(str(value).lower(), choices, n=1)
        if isinstance(value, str) and close:
            problem += f" (did you mean {close[0]!r}?)"
        raise self.error(name, problem)

    def existing_path(self, name: str) -> str | None:
        text = self.optional_text(name)
        if text is None:
            return None
        path = self.context.resolve(text)
        if not path.exists():
            raise self.error(name, f"{path} does not exist")
        return str(path)

    def secret(self, name: str, *, required: bool, min_length: int = 1) -> Secret | None:
        """The secret ``name`` from exactly one of its four sources.

        Errors about the value name the key that was used (``fic.client_secret_env``).
        """
        keys = _secret_keys(name)
        given = [key for key in keys if key in self.data]
        if len(given) > 1:
            raise self.error(name, f"set only one of {', '.join(given)}")
        if not given:
            if not required:
                return None
            raise self.error(name, f"missing: set one of {', '.join(keys[:-1])} or {keys[-1]}")
        key = given[0]
        value = self.data[key]
        if value is None or value == "":
            raise self.error(key, "must not be empty")
        if not isinstance(value, str):
            # Never echo the value: YAML reads ``secret: 0123`` as the number 83.
            raise self.error(key, "must be a string (put it in quotes)")
        if key.endswith("_env"):
            secret = self._read_environment(key, value)
        elif key.endswith("_credential"):
            secret = self._read_credential(key, value)
        elif key.endswith("_file"):
            secret = self._read_secret_file(key, self.context.resolve(value))
        else:
            secret = value
        if len(secret) < min_length:
            raise self.error(
                key,
                f"the secret must be at least {min_length} characters "
                "(generate one with: openssl rand -hex 32)",
            )
        return Secret(secret)

    def required_secret(self, name: str) -> Secret:
        secret = self.secret(name, required=True)
        assert secret is not None  # secret(required=True) returns a secret or raises
        return secret

    def _read_environment(self, key: str, variable: str) -> str:
        content = self.context.environ.get(variable)
        if content is None:
            raise self.error(key, f"environment variable {variable} is not set")
        if not content:
            raise self.error(
                key, f"environment variable {variable} is empty; the secret must not be empty"
            )
        return content

    def _read_credential(self, key: str, credential: str) -> str:
        # systemd hands credentials (LoadCredential=, SetCredential=) to the service as files in
        # the directory named by $CREDENTIALS_DIRECTORY (systemd.exec(5), "Credentials").
        if "/" in credential or credential in (".", ".."):
            raise self.error(key, "must be a credential name, not a path")
        directory = self.context.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise self.error(
                key,
                "CREDENTIALS_DIRECTORY is not set: systemd sets it for a unit with "
                "LoadCredential=; outside systemd use a _file or _env source",
            )
        return self._read_secret_file(key, Path(directory) / credential)

    def _read_secret_file(self, key: str, path: Path) -> str:
        try:
            content = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise self.error(key, f"{path} is not UTF-8 text") from None
        except OSError as exc:
            raise self.error(key, f"cannot read {path}: {exc.strerror}") from None
        # Editors and `echo` end the file with one newline; it is not part of the secret.
        content = (
            content.removesuffix("\r\n") if content.endswith("\r\n") else content.removesuffix("\n")
        )
        if not content:
            raise self.error(key, f"{path} is empty; the secret must not be empty")
        return content


_KEYS: dict[str, tuple[str, ...]] = {
    "fic": (
        "base_url",
        "client_id",
        *_secret_keys("client_secret"),
        "realm",
        "connect_timeout",
        "read_timeout",
        "ca_bundle",
        "proxy",
        "pool_size",
        "token_renew_margin",
    ),
    "radius": (
        "listen",
        "clients",
        "dictionaries",
        *_secret_keys("state_secret"),
        "duplicate_ttl",
    ),
    "client": (
        "name",
        "address",
        *_secret_keys("secret"),
        "require_message_authenticator",
        "reply_attributes",
        "nas_timeout",
    ),
    "auth": (
        "push_keyword",
        "sms_keyword",
        "email_keyword",
        "otp_pattern",
        "empty_password",
        "push_timeout",
        "push_poll_interval",
        "challenge_timeout",
        "failmode",
        "username",
    ),
    "username": ("strip_domain", "strip_realm", "lowercase", "realm_map"),
    "limits": tuple(f.name for f in fields(LimitsConfig)),
    "logging": ("format", "level"),
    "metrics": ("listen", "allow_remote"),
}


# --- sections -----------------------------------------------------------------------------------


def _parse_fic(section: _Section) -> FicConfig:
    realm = section.optional_text("realm")
    if realm is not None and len(realm) > MAX_REALM_LENGTH:
        raise section.error("realm", f"must be at most {MAX_REALM_LENGTH} characters")
    margin = section.number("token_renew_margin", 60.0, allow_zero=True)
    if margin >= FIC_TOKEN_LIFETIME:
        raise section.error(
            "token_renew_margin",
            f"must be less than the FIC token lifetime ({FIC_TOKEN_LIFETIME:g} s)",
        )
    return FicConfig(
        base_url=_check_base_url(section),
        client_id=section.text("client_id"),
        client_secret=section.required_secret("client_secret"),
        realm=realm,
        connect_timeout=section.number("connect_timeout", 3.0),
        read_timeout=section.number("read_timeout", 5.0),
        ca_bundle=section.existing_path("ca_bundle"),
        proxy=_check_proxy(section),
        pool_size=section.integer("pool_size", 10, minimum=1, maximum=1000),
        token_renew_margin=margin,
    )


def _split_url(section: _Section, name: str, example: str) -> SplitResult:
    """The URL at ``name``, split; it must be absolute, with a valid port and no password."""
    url = section.text(name)
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise section.error(name, f"must be an absolute URL such as {example!r}")
    try:
        _ = parts.port
    except ValueError:
        raise section.error(name, "has an invalid port") from None
    return parts


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(section: _Section) -> str:
    if "base_url" not in section.data:
        return DEFAULT_BASE_URL
    parts = _split_url(section, "base_url", DEFAULT_BASE_URL)
    if parts.scheme not in ("https", "http"):
        raise section.error("base_url", "must start with https://")
    # The bridge sends its client secret and users' codes here: TLS only, except to a loopback
    # host, where the built-in simulator listens without TLS.
    if parts.scheme == "http" and not _is_loopback_host(parts.hostname or ""):
        raise section.error(
            "base_url", "must start with https:// (http:// is allowed only for a loopback host)"
        )
    if parts.username is not None or parts.password is not None:
        # The URL is logged; credentials belong in client_id and client_secret.
        raise section.error("base_url", "must not contain a user name or password")
    if parts.query or parts.fragment:
        raise section.error("base_url", "must not contain a query (?) or fragment (#)")
    return parts.geturl().rstrip("/")


def _check_proxy(section: _Section) -> str | None:
    if section.data.get("proxy") is None:
        return None
    parts = _split_url(section, "proxy", "http://proxy.example.com:3128")
    if parts.scheme not in ("http", "https"):
        raise section.error("proxy", "must start with http:// or https://")
    return parts.geturl()


def _mask_url_password(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:********@{host}").geturl()


def _parse_radius(section: _Section) -> RadiusConfig:
    return RadiusConfig(
        listen=_parse_listen(section),
        clients=_parse_clients(section),
        dictionaries=tuple(_parse_dictionaries(section)),
        state_secret=section.secret(
            "state_secret", required=False, min_length=MIN_STATE_SECRET_LENGTH
        ),
        duplicate_ttl=section.number("duplicate_ttl", 30.0),
    )


def _parse_listen(section: _Section) -> tuple[ListenAddress, ...]:
    if "listen" not in section.data:
        return DEFAULT_LISTEN
    raw = section.data["listen"]
    items = [raw] if isinstance(raw, str) else section.sequence("listen")
    if not items:
        raise section.error("listen", "must name at least one address")
    addresses: list[ListenAddress] = []
    for index, item in enumerate(items):
        key = f"listen[{index}]" if not isinstance(raw, str) else "listen"
        if not isinstance(item, str):
            raise section.error(key, "must be a string such as '0.0.0.0:1812' or '[::]:1812'")
        try:
            address = _parse_listen_address(item)
        except ValueError as exc:
            raise section.error(key, str(exc)) from None
        if address in addresses:
            raise section.error(key, f"{address} is listed twice")
        addresses.append(address)
    return tuple(addresses)


def _parse_listen_address(
    text: str, *, default_port: int | None = DEFAULT_RADIUS_PORT
) -> ListenAddress:
    """``"0.0.0.0:1812"``, ``"[::]:1812"``, ``"127.0.0.1"`` (port 1812); ValueError if not.

    With ``default_port=None`` the port must be written out.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not an address such as '[::1]:1812'")
        port_text = rest[1:] if rest else None
        version = 6
    elif text.count(":") > 1:
        # "::1:1812" is itself a valid IPv6 address, so a port is only unambiguous in brackets.
        raise ValueError(f"put an IPv6 address in brackets, such as '[{text}]:1812'")
    else:
        host, colon, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if colon else None
        version = 4
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (a host name is not accepted)") from None
    if ip.version != version:
        raise ValueError(f"{text!r} is not an address such as '0.0.0.0:1812' or '[::]:1812'")
    port = default_port
    if port_text is not None:
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port {port_text!r} must be a number between 1 and 65535")
        port = int(port_text)
    if port is None:
        raise ValueError(f"{text!r} needs a port, such as '{text}:9812'")
    return ListenAddress(host=str(ip), port=port)


def _parse_dictionaries(section: _Section) -> list[str]:
    paths: list[str] = []
    for index, item in enumerate(section.sequence("dictionaries")):
        key = f"dictionaries[{index}]"
        if not isinstance(item, str) or not item:
            raise section.error(key, "must be the path of a dictionary file")
        path = section.context.resolve(item)
        if not path.is_file():
            raise section.error(key, f"{path} is not a file")
        paths.append(str(path))
    return paths


def _parse_clients(section: _Section) -> tuple[ClientConfig, ...]:
    if "clients" not in section.data:
        raise section.error("clients", "missing: at least one client (NAS) is required")
    items = section.sequence("clients")
    if not items:
        raise section.error("clients", "must list at least one client (NAS)")
    clients: list[ClientConfig] = []
    for index, item in enumerate(items):
        entry = _Section(section.context, section.path(f"clients[{index}]"), item, _KEYS["client"])
        client = _parse_client(entry)
        for earlier_index, earlier in enumerate(clients):
            if client.name == earlier.name:
                raise entry.error(
                    "name", f"{client.name!r} is also the name of clients[{earlier_index}]"
                )
            if client.address == earlier.address:
                raise entry.error(
                    "address",
                    f"{client.address} is also the network of clients[{earlier_index}] "
                    f"({earlier.name!r})",
                )
        clients.append(client)
    return tuple(clients)


def _parse_client(section: _Section) -> ClientConfig:
    return ClientConfig(
        name=section.text("name"),
        address=_parse_network(section),
        secret=section.required_secret("secret"),
        require_message_authenticator=_parse_ma_policy(section),
        reply_attributes=_parse_reply_attributes(section),
        nas_timeout=section.optional_number("nas_timeout"),
    )


def _parse_network(section: _Section) -> IPNetwork:
    text = section.text("address")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise section.error(
                "address", f"{text!r} is not an IP address or a CIDR network"
            ) from None
        raise section.error(
            "address", f"{text!r} has host bits set (did you mean '{loose}'?)"
        ) from None
    mapped = network.network_address.ipv4_mapped if network.version == 6 else None
    if mapped is not None and network.prefixlen >= 96:
        # client_for matches IPv4-mapped senders as IPv4, so such a network would never match.
        as_ipv4 = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        raise section.error("address", f"write IPv4-mapped networks as IPv4: '{as_ipv4}'")
    return network


def _parse_ma_policy(section: _Section) -> MessageAuthenticatorPolicy:
    name = "require_message_authenticator"
    value = section.data.get(name, True)
    if isinstance(value, bool):
        return MessageAuthenticatorPolicy.REQUIRED if value else MessageAuthenticatorPolicy.OPTIONAL
    if isinstance(value, str) and value.lower() in ("true", "false", "auto"):
        return MessageAuthenticatorPolicy(value.lower())
    raise section.error(name, "must be true, false or 'auto'")


def _parse_reply_attributes(section: _Section) -> tuple[tuple[str, str | int], ...]:
    # Any attribute name is accepted here; the RADIUS dictionary judges them when the server starts.
    attributes = section.mapping("reply_attributes")
    pairs: list[tuple[str, str | int]] = []
    for name, raw in attributes.data.items():
        if name.lower() in RESERVED_REPLY_ATTRIBUTES:
            raise attributes.error(name, "is set by the bridge itself and cannot be configured")
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise attributes.error(name, "must not be an empty list")
        for index, value in enumerate(values):
            key = f"{name}[{index}]" if isinstance(raw, list) else name
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise attributes.error(key, "must be a string or a whole number")
            if value == "":
                # RFC 2865 §5: text and string attributes carry at least one octet.
                raise attributes.error(key, "must not be empty")
            pairs.append((name, value))
    return tuple(pairs)


def _parse_auth(section: _Section) -> AuthConfig:
    otp_pattern = _parse_otp_pattern(section)
    keywords: dict[str, str] = {}
    for name, default in KEYWORD_DEFAULTS.items():
        keyword = section.text(name, default).lower()
        for other_name, other in keywords.items():
            if keyword == other:
                raise section.error(name, f"{keyword!r} is also {section.path(other_name)}")
        if otp_pattern.search(keyword):
            raise section.error(
                name, f"{keyword!r} matches auth.otp_pattern, so it would be read as a code"
            )
        keywords[name] = keyword
    push_timeout = section.number("push_timeout", 25.0)
    if push_timeout > MAX_PUSH_TIMEOUT:
        raise section.error("push_timeout", f"must be at most {MAX_PUSH_TIMEOUT:g} seconds")
    push_poll_interval = section.number("push_poll_interval", 1.0)
    if push_poll_interval >= push_timeout:
        raise section.error(
            "push_poll_interval", f"must be less than auth.push_timeout ({push_timeout:g})"
        )
    return AuthConfig(
        push_keyword=keywords["push_keyword"],
        sms_keyword=keywords["sms_keyword"],
        email_keyword=keywords["email_keyword"],
        otp_pattern=otp_pattern,
        empty_password=section.choice("empty_password", EmptyPassword, EmptyPassword.PREVIEW),
        push_timeout=push_timeout,
        push_poll_interval=push_poll_interval,
        challenge_timeout=section.number("challenge_timeout", 120.0),
        failmode=section.choice("failmode", Failmode, Failmode.SECURE),
        username=_parse_username(section.section("username")),
    )


def _parse_otp_pattern(section: _Section) -> re.Pattern[str]:
    if "otp_pattern" not in section.data:
        return DEFAULT_OTP_PATTERN
    text = section.text("otp_pattern")
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise section.error("otp_pattern", f"is not a valid regular expression: {exc}") from None
    if pattern.search(""):
        # An empty password must never count as a code.
        raise section.error("otp_pattern", "must not match an empty password")
    return pattern


def _parse_username(section: _Section) -> UsernameConfig:
    realm_map = section.mapping("realm_map")
    lowered: dict[str, str] = {}
    for suffix, realm in realm_map.data.items():
        if not suffix:
            raise realm_map.error(suffix, "the realm suffix must not be empty")
        if not isinstance(realm, str) or not realm:
            raise realm_map.error(suffix, "must be the name of a FIC realm")
        if len(realm) > MAX_REALM_LENGTH:
            raise realm_map.error(suffix, f"must be at most {MAX_REALM_LENGTH} characters")
        if suffix.lower() in lowered:
            raise realm_map.error(suffix, "is listed twice (realm suffixes ignore case)")
        lowered[suffix.lower()] = realm
    return UsernameConfig(
        strip_domain=section.boolean("strip_domain", True),
        strip_realm=section.boolean("strip_realm", True),
        lowercase=section.boolean("lowercase", True),
        realm_map=MappingProxyType(lowered),
    )


# Bounds of the limits section: wide enough for any deployment, narrow enough to catch a typo
# (an extra zero, minutes typed as hours).
MAX_LIMIT_WINDOW = 86_400.0
MAX_COOLDOWN = 3_600.0
MAX_PER_USER_COUNT = 1_000
MAX_TABLE_SIZE = 10_000_000


def _parse_limits(section: _Section) -> LimitsConfig:
    defaults = LimitsConfig()

    def window(name: str, default: float) -> float:
        seconds = section.number(name, default)
        if seconds > MAX_LIMIT_WINDOW:
            raise section.error(name, f"must be at most {MAX_LIMIT_WINDOW:g} seconds (a day)")
        return seconds

    def cap(name: str, default: int) -> int:
        # Caps cannot be turned off: they are what keeps a flood from exhausting memory.
        return section.integer(name, default, minimum=1, maximum=MAX_TABLE_SIZE)

    limits = LimitsConfig(
        one_push_per_user=section.boolean("one_push_per_user", defaults.one_push_per_user),
        pushes_per_user=section.optional_count(
            "pushes_per_user", defaults.pushes_per_user, maximum=MAX_PER_USER_COUNT
        ),
        pushes_window=window("pushes_window", defaults.pushes_window),
        cooldown_after_denied_push=section.optional_seconds(
            "cooldown_after_denied_push",
            defaults.cooldown_after_denied_push,
            maximum=MAX_COOLDOWN,
        ),
        wrong_codes_per_user=section.optional_count(
            "wrong_codes_per_user", defaults.wrong_codes_per_user, maximum=MAX_PER_USER_COUNT
        ),
        wrong_codes_window=window("wrong_codes_window", defaults.wrong_codes_window),
        max_tracked_users=cap("max_tracked_users", defaults.max_tracked_users),
        max_pending_pushes=cap("max_pending_pushes", defaults.max_pending_pushes),
        max_challenges=cap("max_challenges", defaults.max_challenges),
        duplicate_cache_size=cap("duplicate_cache_size", defaults.duplicate_cache_size),
        max_requests_in_progress=cap("max_requests_in_progress", defaults.max_requests_in_progress),
    )
    if limits.max_pending_pushes > limits.max_requests_in_progress:
        # Every pending push is a request in progress: the server would drop new datagrams
        # unanswered before the push cap could answer with a Reject.
        raise section.error(
            "max_pending_pushes",
            f"must not exceed limits.max_requests_in_progress ({limits.max_requests_in_progress})"
            ": each pending push is a request in progress",
        )
    return limits


def _parse_logging(section: _Section) -> LoggingConfig:
    level = section.text("level", "info").lower()
    if level not in LOG_LEVELS:
        raise section.error("level", f"must be one of {', '.join(LOG_LEVELS)}")
    return LoggingConfig(
        format=section.choice("format", LogFormat, LogFormat.JSON),
        level=level,
    )


def _parse_metrics(section: _Section) -> MetricsConfig:
    allow_remote = section.boolean("allow_remote", False)
    text = section.optional_text("listen")
    if text is None:
        return MetricsConfig(allow_remote=allow_remote)
    try:
        # No default port: nothing registers one for metrics, so the file must say which.
        address = _parse_listen_address(text, default_port=None)
    except ValueError as exc:
        raise section.error("listen", str(exc)) from None
    # The listener has no authentication and no TLS, and what it serves (client names, login
    # counts, FIC health) helps an attacker; off the machine only when the operator says so.
    if not allow_remote and not ipaddress.ip_address(address.host).is_loopback:
        raise section.error(
            "listen",
            f"{address} is not a loopback address; metrics have no authentication, so set "
            "metrics.allow_remote: true to serve them beyond this machine",
        )
    return MetricsConfig(listen=address, allow_remote=allow_remote)
