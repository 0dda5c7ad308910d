"""Tests for radius_bridge.config: the YAML file format, its checks, secrets and client lookup."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from radius_bridge.config import (
    AuthConfig,
    ClientConfig,
    Config,
    EmptyPassword,
    Failmode,
    FicConfig,
    LimitsConfig,
    ListenAddress,
    LogFormat,
    LoggingConfig,
    MessageAuthenticatorPolicy,
    MetricsConfig,
    RadiusConfig,
    UsernameConfig,
    load_config,
    parse_config,
)
from radius_bridge.errors import ConfigError
from radius_bridge.model import Secret

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "radius-bridge.example.yaml"

FIC_SECRET = "fic-client-secret-Qx7w"
NAS_SECRET = "nas-shared-secret-K9pL"
STATE_SECRET = "state-hmac-key-0123456789abcdef"
# Environment of the table of bad files: one variable set, one set but empty.
TABLE_ENVIRON = {"SET_VAR": "short-value", "EMPTY_VAR": ""}
DELETE = object()  # in an overlay: remove this key from the base


def client(**changes: object) -> dict[str, object]:
    """A valid client mapping with ``changes`` applied (``DELETE`` removes a key)."""
    base: dict[str, object] = {"name": "fortigate", "address": "192.0.2.10", "secret": NAS_SECRET}
    return merged(base, changes)


def minimal() -> dict[str, Any]:
    """The smallest valid configuration."""
    return {
        "fic": {"client_id": "app-1", "client_secret": FIC_SECRET},
        "radius": {"clients": [client()]},
    }


def merged(base: Mapping[str, object], overlay: Mapping[str, object]) -> dict[str, object]:
    """``base`` with ``overlay`` merged in, recursively for mappings; lists are replaced."""
    result = dict(base)
    for key, value in overlay.items():
        if value is DELETE:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)  # type: ignore[arg-type]
        else:
            result[key] = value
    return result


def write(directory: Path, content: object, name: str = "bridge.yaml") -> Path:
    """Write ``content`` (text, or data dumped as YAML) to ``directory/name``."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def load(directory: Path, data: object, **environ: str) -> Config:
    """Write ``data`` as a config file in ``directory`` and load it with ``environ``."""
    return load_config(write(directory, data), environ=environ)


# --- defaults and the example -------------------------------------------------------------------


def test_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    """A file with only the required keys yields every documented default."""
    config = load(tmp_path, minimal())

    for f in dataclasses.fields(FicConfig):
        if f.default is not dataclasses.MISSING:
            assert getattr(config.fic, f.name) == f.default, f.name
    assert config.fic.base_url == "https://fic.fortinet.com:9696/api/v1"
    assert (config.fic.connect_timeout, config.fic.read_timeout) == (3.0, 5.0)
    assert (config.fic.pool_size, config.fic.token_renew_margin) == (10, 60.0)
    assert config.radius.listen == (
        ListenAddress(host="0.0.0.0", port=1812),
        ListenAddress(host="::", port=1812),
    )
    assert config.radius.dictionaries == ()
    assert config.radius.state_secret is None
    assert config.radius.duplicate_ttl == 30.0
    (nas,) = config.radius.clients
    assert nas.require_message_authenticator is MessageAuthenticatorPolicy.REQUIRED
    assert (nas.reply_attributes, nas.nas_timeout) == ((), None)
    assert config.auth == AuthConfig()
    assert config.auth.otp_pattern.pattern == r"^\d{6,8}$"
    assert (config.auth.push_timeout, config.auth.push_poll_interval) == (25.0, 1.0)
    assert config.auth.challenge_timeout == 120.0
    assert config.auth.empty_password is EmptyPassword.PREVIEW
    assert config.auth.failmode is Failmode.SECURE
    assert config.auth.username == UsernameConfig()
    assert dict(config.auth.username.realm_map) == {}
    assert config.logging == LoggingConfig(format=LogFormat.JSON, level="info")
    assert config.metrics == MetricsConfig(listen=None, allow_remote=False)
    assert config.limits == LimitsConfig()
    assert config.limits.one_push_per_user is True
    assert (config.limits.pushes_per_user, config.limits.pushes_window) == (3, 300.0)
    assert (config.limits.wrong_codes_per_user, config.limits.wrong_codes_window) == (5, 300.0)
    assert config.limits.cooldown_after_denied_push == 60.0
    assert config.source == str(tmp_path / "bridge.yaml")


@pytest.fixture
def example_environ(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The example file copied unchanged into a directory holding the secrets it names."""
    path = write(tmp_path / "etc", EXAMPLE.read_text(encoding="utf-8"), "radius-bridge.yaml")
    write(tmp_path / "etc" / "secrets", "vpn-secret\n", "vpn-concentrators.secret")
    credentials = tmp_path / "credentials"
    write(credentials, "fortigate-secret\n", "radius-fortigate-hq")
    write(credentials, STATE_SECRET + "\n", "radius-state-secret")
    yield path, {"FIC_CLIENT_SECRET": FIC_SECRET, "CREDENTIALS_DIRECTORY": str(credentials)}


def test_example_file_loads(example_environ: tuple[Path, dict[str, str]]) -> None:
    """The shipped example is a valid configuration with a FortiGate by IP and a VPN subnet."""
    path, environ = example_environ
    config = load_config(path, environ=environ)

    assert config.fic.client_secret.reveal() == FIC_SECRET
    fortigate, vpn = config.radius.clients
    assert fortigate.address == ipaddress.ip_network("192.0.2.10/32")
    assert fortigate.secret.reveal() == "fortigate-secret"
    assert vpn.address == ipaddress.ip_network("198.51.100.0/28")
    assert vpn.secret.reveal() == "vpn-secret"
    assert vpn.reply_attributes == (
        ("Class", "mfa-verified"),
        ("Class", "site-dc1"),
        ("Session-Timeout", 28800),
    )
    assert config.radius.state_secret is not None
    assert config.radius.state_secret.reveal() == STATE_SECRET
    assert dict(config.auth.username.realm_map)["example.com"] == "vpn-users"
    assert config.metrics.listen == ListenAddress(host="127.0.0.1", port=9812)


def test_example_file_states_the_default_limits(
    example_environ: tuple[Path, dict[str, str]],
) -> None:
    """The example's limits section shows exactly the defaults, so copying it changes nothing."""
    path, environ = example_environ
    assert load_config(path, environ=environ).limits == LimitsConfig()


@pytest.mark.parametrize("off", [0, None])
def test_zero_or_null_turns_a_per_user_limit_off(tmp_path: Path, off: object) -> None:
    """0 and null both switch off the push, wrong-code and cool-down limits."""
    limits = {"pushes_per_user": off, "wrong_codes_per_user": off}
    limits["cooldown_after_denied_push"] = off
    config = load(tmp_path, merged(minimal(), {"limits": limits}))
    assert config.limits.pushes_per_user is None
    assert config.limits.wrong_codes_per_user is None
    assert config.limits.cooldown_after_denied_push is None


def test_limits_are_read_as_written(tmp_path: Path) -> None:
    """Every limits key reaches the configuration with the value written."""
    written = {
        "one_push_per_user": False,
        "pushes_per_user": 5,
        "pushes_window": 600,
        "cooldown_after_denied_push": 30.5,
        "wrong_codes_per_user": 3,
        "wrong_codes_window": 120,
        "max_tracked_users": 500,
        "max_pending_pushes": 20,
        "max_challenges": 40,
        "duplicate_cache_size": 1000,
        "max_requests_in_progress": 20,
    }
    config = load(tmp_path, merged(minimal(), {"limits": written}))
    assert dataclasses.asdict(config.limits) == written


def _config_keys(cls: type[Any]) -> Iterator[str]:
    """Every field name of ``cls`` and of the configuration dataclasses nested in it."""
    for f in dataclasses.fields(cls):
        yield f.name
        nested = {
            "fic": FicConfig,
            "radius": RadiusConfig,
            "clients": ClientConfig,
            "auth": AuthConfig,
            "limits": LimitsConfig,
            "username": UsernameConfig,
            "logging": LoggingConfig,
            "metrics": MetricsConfig,
        }
        if f.name in nested and nested[f.name] is not cls:
            yield from _config_keys(nested[f.name])


SECRET_SUFFIXES = ("", "_file", "_env", "_credential")


def test_example_file_shows_every_key() -> None:
    """Every configuration field appears in the example, active or commented out."""
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = set(_config_keys(Config)) - {"source"}
    missing = [
        key
        for key in sorted(keys)
        if not re.search(rf"^[ #-]*{key}(_file|_env|_credential)?:", text, re.MULTILINE)
    ]
    assert missing == []


def test_example_comments_name_only_real_keys() -> None:
    """A key shown in a comment of the example is a key the parser knows (no stale names)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    known = {key + suffix for key in _config_keys(Config) for suffix in SECRET_SUFFIXES}
    commented = set(re.findall(r"^\s*#\s+(\w+):(?:\s|$)", text, re.MULTILINE))
    assert commented, "the pattern finds the commented keys"
    assert commented - known == set()


# --- the table of bad files ---------------------------------------------------------------------


def clients(*items: object) -> dict[str, object]:
    return {"radius": {"clients": list(items)}}


BAD = [
    # unknown keys, with and without a close match
    ({"loging": {}}, "loging", "unknown key 'loging' (did you mean 'logging'?)"),
    (
        {"auth": {"push_timout": 5}},
        "auth.push_timout",
        "unknown key 'push_timout' (did you mean 'push_timeout'?)",
    ),
    (clients(client(secert="x")), "radius.clients[0].secert", "did you mean 'secret'?"),
    ({"fic": {"zzz": 1}}, "fic.zzz", "unknown key 'zzz' (expected one of: base_url,"),
    ({"auth": {"username": {"lowercas": True}}}, "auth.username.lowercas", "'lowercase'"),
    # sections
    ({"fic": DELETE}, "fic", "missing: this section is required"),
    ({"radius": DELETE}, "radius", "missing: this section is required"),
    ({"auth": ["push"]}, "auth", "must be a mapping"),
    # secrets
    (
        {"fic": {"client_secret": DELETE}},
        "fic.client_secret",
        "missing: set one of client_secret, client_secret_file, client_secret_env or "
        "client_secret_credential",
    ),
    (
        {"fic": {"client_secret_env": "SET_VAR"}},
        "fic.client_secret",
        "set only one of client_secret, client_secret_env",
    ),
    ({"fic": {"client_secret": ""}}, "fic.client_secret", "must not be empty"),
    ({"fic": {"client_secret": None}}, "fic.client_secret", "must not be empty"),
    (clients(client(secret=123)), "radius.clients[0].secret", "must be a string"),
    (clients(client(secret=DELETE)), "radius.clients[0].secret", "missing: set one of secret,"),
    (
        {"fic": {"client_secret": DELETE, "client_secret_env": "UNSET_VAR"}},
        "fic.client_secret_env",
        "environment variable UNSET_VAR is not set",
    ),
    (
        {"fic": {"client_secret": DELETE, "client_secret_env": "EMPTY_VAR"}},
        "fic.client_secret_env",
        "environment variable EMPTY_VAR is empty",
    ),
    (
        {"fic": {"client_secret": DELETE, "client_secret_file": "no-such.secret"}},
        "fic.client_secret_file",
        "cannot read",
    ),
    (
        {"fic": {"client_secret": DELETE, "client_secret_file": "empty.secret"}},
        "fic.client_secret_file",
        "is empty; the secret must not be empty",
    ),
    (
        {"fic": {"client_secret": DELETE, "client_secret_credential": "fic"}},
        "fic.client_secret_credential",
        "CREDENTIALS_DIRECTORY is not set",
    ),
    (
        {"fic": {"client_secret": DELETE, "client_secret_credential": "../fic"}},
        "fic.client_secret_credential",
        "must be a credential name, not a path",
    ),
    ({"radius": {"state_secret": "short"}}, "radius.state_secret", "at least 16 characters"),
    (
        {"radius": {"state_secret_env": "SET_VAR"}},
        "radius.state_secret_env",
        "at least 16 characters",
    ),
    # fic
    ({"fic": {"client_id": DELETE}}, "fic.client_id", "missing: this key is required"),
    ({"fic": {"client_id": None}}, "fic.client_id", "must not be empty"),
    ({"fic": {"client_id": 12345}}, "fic.client_id", "must be a string"),
    ({"fic": {"connect_timeout": 0}}, "fic.connect_timeout", "must be greater than 0"),
    ({"fic": {"read_timeout": "5s"}}, "fic.read_timeout", "must be a number"),
    ({"fic": {"read_timeout": True}}, "fic.read_timeout", "must be a number"),
    ({"fic": {"read_timeout": None}}, "fic.read_timeout", "must be a number"),
    ({"fic": {"read_timeout": float("inf")}}, "fic.read_timeout", "must be a finite number"),
    ({"fic": {"token_renew_margin": 3600}}, "fic.token_renew_margin", "less than the FIC token"),
    ({"fic": {"token_renew_margin": -1}}, "fic.token_renew_margin", "must be at least 0"),
    ({"fic": {"pool_size": 0}}, "fic.pool_size", "must be between 1 and 1000"),
    ({"fic": {"pool_size": 2.5}}, "fic.pool_size", "must be a whole number"),
    (
        {"fic": {"base_url": "http://fic.fortinet.com:9696/api/v1"}},
        "fic.base_url",
        "must start with https:// (http:// is allowed only for a loopback host)",
    ),
    ({"fic": {"base_url": "http://10.0.0.1/api/v1"}}, "fic.base_url", "must start with https://"),
    ({"fic": {"base_url": "ftp://fic.fortinet.com/api"}}, "fic.base_url", "https://"),
    ({"fic": {"base_url": "fic.fortinet.com/api/v1"}}, "fic.base_url", "must be an absolute URL"),
    (
        {"fic": {"base_url": "https://app:pw@fic.fortinet.com/api/v1"}},
        "fic.base_url",
        "must not contain a user name or password",
    ),
    ({"fic": {"base_url": "https://fic.fortinet.com:99999/api"}}, "fic.base_url", "invalid port"),
    ({"fic": {"base_url": "https://fic.fortinet.com/api?x=1"}}, "fic.base_url", "query"),
    ({"fic": {"ca_bundle": "no-such-ca.pem"}}, "fic.ca_bundle", "does not exist"),
    ({"fic": {"proxy": "socks5://proxy:1080"}}, "fic.proxy", "must start with http:// or"),
    ({"fic": {"proxy": "proxy:3128"}}, "fic.proxy", "must be an absolute URL"),
    ({"fic": {"realm": "r" * 81}}, "fic.realm", "must be at most 80 characters"),
    # radius: clients
    ({"radius": {"clients": DELETE}}, "radius.clients", "at least one client"),
    ({"radius": {"clients": []}}, "radius.clients", "at least one client"),
    ({"radius": {"clients": {"name": "x"}}}, "radius.clients", "must be a list"),
    (clients("192.0.2.1"), "radius.clients[0]", "must be a mapping"),
    (clients(client(name=DELETE)), "radius.clients[0].name", "missing: this key is required"),
    (clients(client(name=7)), "radius.clients[0].name", "must be a string"),
    (
        clients(client(address="10.0.0.5/24")),
        "radius.clients[0].address",
        "'10.0.0.5/24' has host bits set (did you mean '10.0.0.0/24'?)",
    ),
    (
        clients(client(address="fortigate.example.com")),
        "radius.clients[0].address",
        "is not an IP address or a CIDR network",
    ),
    (
        clients(client(address="::ffff:192.0.2.0/120")),
        "radius.clients[0].address",
        "write IPv4-mapped networks as IPv4: '192.0.2.0/24'",
    ),
    (
        clients(client(), client(address="198.51.100.0/24")),
        "radius.clients[1].name",
        "'fortigate' is also the name of clients[0]",
    ),
    (
        clients(client(), client(name="other", address="192.0.2.10/32")),
        "radius.clients[1].address",
        "192.0.2.10/32 is also the network of clients[0]",
    ),
    (
        clients(client(require_message_authenticator="maybe")),
        "radius.clients[0].require_message_authenticator",
        "must be true, false or 'auto'",
    ),
    (clients(client(nas_timeout="60")), "radius.clients[0].nas_timeout", "must be a number"),
    (
        clients(client(reply_attributes=["Class"])),
        "radius.clients[0].reply_attributes",
        "must be a mapping",
    ),
    (
        clients(client(reply_attributes={"State": "x"})),
        "radius.clients[0].reply_attributes.State",
        "is set by the bridge itself",
    ),
    (
        clients(client(reply_attributes={"message-authenticator": "x"})),
        "radius.clients[0].reply_attributes.message-authenticator",
        "is set by the bridge itself",
    ),
    (
        clients(client(reply_attributes={"Session-Timeout": 1.5})),
        "radius.clients[0].reply_attributes.Session-Timeout",
        "must be a string or a whole number",
    ),
    (
        clients(client(reply_attributes={"Class": ["a", None]})),
        "radius.clients[0].reply_attributes.Class[1]",
        "must be a string or a whole number",
    ),
    (
        clients(client(reply_attributes={"Class": []})),
        "radius.clients[0].reply_attributes.Class",
        "must not be an empty list",
    ),
    (
        clients(client(reply_attributes={"Class": ""})),
        "radius.clients[0].reply_attributes.Class",
        "must not be empty",
    ),
    # radius: the rest
    ({"radius": {"listen": ["::1"]}}, "radius.listen[0]", "put an IPv6 address in brackets"),
    ({"radius": {"listen": ["127.0.0.1:0"]}}, "radius.listen[0]", "between 1 and 65535"),
    ({"radius": {"listen": ["[::1]:70000"]}}, "radius.listen[0]", "between 1 and 65535"),
    ({"radius": {"listen": ["127.0.0.1:radius"]}}, "radius.listen[0]", "between 1 and 65535"),
    ({"radius": {"listen": ["localhost:1812"]}}, "radius.listen[0]", "is not an IP address"),
    ({"radius": {"listen": ["[::1]1812"]}}, "radius.listen[0]", "such as '[::1]:1812'"),
    ({"radius": {"listen": ["[10.0.0.1]:1812"]}}, "radius.listen[0]", "is not an address"),
    ({"radius": {"listen": ["0.0.0.0:1812", "0.0.0.0"]}}, "radius.listen[1]", "listed twice"),
    ({"radius": {"listen": [1812]}}, "radius.listen[0]", "must be a string"),
    ({"radius": {"listen": []}}, "radius.listen", "at least one address"),
    (
        {"radius": {"dictionaries": ["no-such-dictionary"]}},
        "radius.dictionaries[0]",
        "is not a file",
    ),
    ({"radius": {"duplicate_ttl": 0}}, "radius.duplicate_ttl", "must be greater than 0"),
    # auth
    ({"auth": {"push_timeout": 121}}, "auth.push_timeout", "must be at most 120 seconds"),
    (
        {"auth": {"push_timeout": 25, "push_poll_interval": 25}},
        "auth.push_poll_interval",
        "must be less than auth.push_timeout (25)",
    ),
    ({"auth": {"challenge_timeout": -1}}, "auth.challenge_timeout", "must be greater than 0"),
    ({"auth": {"otp_pattern": "(["}}, "auth.otp_pattern", "is not a valid regular expression"),
    ({"auth": {"otp_pattern": r"\d*"}}, "auth.otp_pattern", "must not match an empty password"),
    ({"auth": {"sms_keyword": "PUSH"}}, "auth.sms_keyword", "'push' is also auth.push_keyword"),
    ({"auth": {"push_keyword": ""}}, "auth.push_keyword", "must not be empty"),
    ({"auth": {"push_keyword": "123456"}}, "auth.push_keyword", "matches auth.otp_pattern"),
    (
        {"auth": {"empty_password": "prevew"}},
        "auth.empty_password",
        "must be 'preview' or 'push' or 'reject' (did you mean 'preview'?)",
    ),
    ({"auth": {"failmode": "closed"}}, "auth.failmode", "must be 'secure' or 'open'"),
    (
        {"auth": {"username": {"strip_domain": "yes"}}},
        "auth.username.strip_domain",
        "must be true or false",
    ),
    (
        {"auth": {"username": {"realm_map": {"Example.com": "a", "example.COM": "b"}}}},
        "auth.username.realm_map.example.COM",
        "is listed twice",
    ),
    (
        {"auth": {"username": {"realm_map": {"example.com": 5}}}},
        "auth.username.realm_map.example.com",
        "must be the name of a FIC realm",
    ),
    (
        {"auth": {"username": {"realm_map": ["example.com"]}}},
        "auth.username.realm_map",
        "must be a mapping",
    ),
    # limits
    (
        {"limits": {"pushes_per_usr": 3}},
        "limits.pushes_per_usr",
        "unknown key 'pushes_per_usr' (did you mean 'pushes_per_user'?)",
    ),
    ({"limits": [3]}, "limits", "must be a mapping"),
    ({"limits": {"one_push_per_user": "yes"}}, "limits.one_push_per_user", "true or false"),
    ({"limits": {"pushes_per_user": -1}}, "limits.pushes_per_user", "between 0 (off) and 1000"),
    ({"limits": {"pushes_per_user": 1001}}, "limits.pushes_per_user", "between 0 (off) and"),
    ({"limits": {"pushes_per_user": 2.5}}, "limits.pushes_per_user", "must be a whole number"),
    ({"limits": {"pushes_per_user": True}}, "limits.pushes_per_user", "must be a whole number"),
    ({"limits": {"wrong_codes_per_user": "5"}}, "limits.wrong_codes_per_user", "whole number"),
    ({"limits": {"pushes_window": 0}}, "limits.pushes_window", "must be greater than 0"),
    ({"limits": {"pushes_window": None}}, "limits.pushes_window", "must be a number"),
    ({"limits": {"wrong_codes_window": 86401}}, "limits.wrong_codes_window", "at most 86400"),
    (
        {"limits": {"cooldown_after_denied_push": -5}},
        "limits.cooldown_after_denied_push",
        "must be at least 0",
    ),
    (
        {"limits": {"cooldown_after_denied_push": 3601}},
        "limits.cooldown_after_denied_push",
        "must be at most 3600 seconds (0 or null: off)",
    ),
    (
        {"limits": {"cooldown_after_denied_push": "1m"}},
        "limits.cooldown_after_denied_push",
        "must be a number",
    ),
    ({"limits": {"max_pending_pushes": 0}}, "limits.max_pending_pushes", "between 1 and"),
    ({"limits": {"max_challenges": None}}, "limits.max_challenges", "must be a whole number"),
    ({"limits": {"max_tracked_users": 10**8}}, "limits.max_tracked_users", "between 1 and"),
    ({"limits": {"duplicate_cache_size": 0}}, "limits.duplicate_cache_size", "between 1 and"),
    (
        {"limits": {"max_requests_in_progress": 100}},
        "limits.max_pending_pushes",
        "must not exceed limits.max_requests_in_progress (100): each pending push is a request",
    ),
    # logging
    (
        {"logging": {"level": "verbose"}},
        "logging.level",
        "must be one of debug, info, warning, error",
    ),
    ({"logging": {"format": "text"}}, "logging.format", "must be 'json' or 'console'"),
    # metrics
    ({"metrics": {"listn": "127.0.0.1:9812"}}, "metrics.listn", "did you mean 'listen'?"),
    ({"metrics": ["127.0.0.1:9812"]}, "metrics", "must be a mapping"),
    (
        {"metrics": {"listen": "0.0.0.0:9812"}},
        "metrics.listen",
        "0.0.0.0:9812 is not a loopback address; metrics have no authentication, so set "
        "metrics.allow_remote: true",
    ),
    ({"metrics": {"listen": "[::]:9812"}}, "metrics.listen", "is not a loopback address"),
    ({"metrics": {"listen": "192.0.2.1:9812"}}, "metrics.listen", "is not a loopback address"),
    (
        {"metrics": {"listen": "::ffff:127.0.0.1"}},
        "metrics.listen",
        "put an IPv6 address in brackets",
    ),
    (
        {"metrics": {"listen": "127.0.0.1"}},
        "metrics.listen",
        "'127.0.0.1' needs a port, such as '127.0.0.1:9812'",
    ),
    ({"metrics": {"listen": "[::1]"}}, "metrics.listen", "such as '[::1]:9812'"),
    ({"metrics": {"listen": "127.0.0.1:0"}}, "metrics.listen", "between 1 and 65535"),
    ({"metrics": {"listen": "localhost:9812"}}, "metrics.listen", "is not an IP address"),
    ({"metrics": {"listen": 9812}}, "metrics.listen", "must be a string"),
    ({"metrics": {"listen": ""}}, "metrics.listen", "must not be empty"),
    ({"metrics": {"listen": ["127.0.0.1:9812"]}}, "metrics.listen", "must be a string"),
    ({"metrics": {"allow_remote": "yes"}}, "metrics.allow_remote", "must be true or false"),
]


@pytest.mark.parametrize(("overlay", "key", "problem"), BAD, ids=[case[1] for case in BAD])
def test_bad_file_names_file_and_key(
    tmp_path: Path, overlay: dict[str, object], key: str, problem: str
) -> None:
    """Each mistake is refused with the file, the exact dotted key and what is wrong."""
    write(tmp_path, "", "empty.secret")
    path = write(tmp_path, merged(minimal(), overlay))

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=TABLE_ENVIRON)

    error = caught.value
    assert error.key == key
    assert error.file == str(path)
    assert problem in error.problem
    assert str(error) == f"{path}: {key}: {error.problem}"


# --- reading the file ---------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    """A YAML syntax error is a ConfigError naming the file and the line."""
    path = write(tmp_path, "fic:\n  client_id: a\n  client_secret: x: y\nradius: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == (
        f"{path}: invalid YAML at line 3, column 19: mapping values are not allowed here"
    )


def test_yaml_error_does_not_leak_the_line(tmp_path: Path) -> None:
    """A syntax error on a line with an inline secret shows the secret nowhere, not even chained."""
    secret = "Sup3r-inline-s3cret"
    path = write(tmp_path, f'fic:\n  client_secret: "{secret}\nradius:\n  clients: []\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "invalid YAML" in str(caught.value)
    assert secret not in "".join(traceback.format_exception(caught.value))


def test_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    """A key given twice in one mapping is an error (YAML would silently keep the last one)."""
    text = "fic:\n  client_id: a\n  client_secret: one\n  client_secret: two\nradius: {}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert caught.value.problem == (
        "invalid YAML at line 4, column 3: duplicate key 'client_secret' (each key may appear once)"
    )


def test_python_tags_are_refused(tmp_path: Path) -> None:
    """YAML tags that would build Python objects are refused (safe loading)."""
    path = write(tmp_path, "fic: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ConfigError, match="invalid YAML at line 1"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "is empty: it needs at least the sections fic and radius"),
        ("# only a comment\n", "is empty: it needs at least the sections fic and radius"),
        ("- fic\n- radius\n", "must be a mapping: it needs at least the sections fic and radius"),
    ],
)
def test_file_without_sections_is_refused(tmp_path: Path, content: str, problem: str) -> None:
    """An empty file, or one that is not a mapping, is refused naming the file."""
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"{path}: {problem}"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that does not exist is a ConfigError naming it."""
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"{path}: file not found"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A directory, or bytes that are not UTF-8, are ConfigErrors naming the path."""
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path, environ={})
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"fic: \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(binary, environ={})


def test_parse_config_takes_an_in_memory_mapping(tmp_path: Path) -> None:
    """parse_config builds a Config from a mapping, resolving relative paths against base_dir."""
    write(tmp_path, NAS_SECRET + "\n", "nas.secret")
    data = merged(minimal(), clients(client(secret=DELETE, secret_file="nas.secret")))
    config = parse_config(data, source="<demo>", base_dir=tmp_path, environ={})
    assert config.source == "<demo>"
    assert config.radius.clients[0].secret.reveal() == NAS_SECRET

    with pytest.raises(ConfigError) as caught:
        parse_config({"fic": {}}, source="<demo>", base_dir=tmp_path, environ={})
    assert str(caught.value) == "<demo>: fic.client_id: missing: this key is required"


# --- secrets ------------------------------------------------------------------------------------

# Where each secret lives: its section path in the file, and how to read it back from a Config.
SECRET_PLACES: dict[str, tuple[tuple[str | int, ...], str, Callable[[Config], Secret | None]]] = {
    "fic": (("fic",), "client_secret", lambda c: c.fic.client_secret),
    "client": (("radius", "clients", 0), "secret", lambda c: c.radius.clients[0].secret),
    "state": (("radius",), "state_secret", lambda c: c.radius.state_secret),
}


def with_secret(place: str, suffix: str, value: str) -> dict[str, Any]:
    """The minimal config whose secret at ``place`` is given by ``<name><suffix>: value``."""
    data = minimal()
    path, name, _ = SECRET_PLACES[place]
    section: Any = data
    for step in path:
        section = section.setdefault(step, {}) if isinstance(step, str) else section[step]
    section.pop(name, None)
    section[name + suffix] = value
    return data


@pytest.mark.parametrize("place", SECRET_PLACES)
@pytest.mark.parametrize("suffix", SECRET_SUFFIXES)
def test_secret_from_each_source(tmp_path: Path, place: str, suffix: str) -> None:
    """Every secret can be given inline, in a file, in the environment or as a credential."""
    expected = STATE_SECRET + "-" + place
    credentials = tmp_path / "credentials"
    write(credentials, expected + "\n", "the-credential")
    write(tmp_path / "conf" / "secrets", expected + "\n", "the.secret")
    reference = {
        "": expected,
        "_file": "secrets/the.secret",  # relative to the config file, not to the cwd
        "_env": "THE_SECRET",
        "_credential": "the-credential",
    }[suffix]
    path = write(tmp_path / "conf", with_secret(place, suffix, reference))

    config = load_config(
        path, environ={"THE_SECRET": expected, "CREDENTIALS_DIRECTORY": str(credentials)}
    )

    secret = SECRET_PLACES[place][2](config)
    assert secret is not None
    assert secret.reveal() == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("s3cret-value\n", "s3cret-value"),
        ("s3cret-value", "s3cret-value"),
        ("s3cret-value\r\n", "s3cret-value"),
        ("s3cret-value\n\n", "s3cret-value\n"),
        (" s3cret-value \n", " s3cret-value "),
    ],
)
def test_secret_file_loses_exactly_one_trailing_newline(
    tmp_path: Path, content: str, expected: str
) -> None:
    """A secret file's content is the secret, minus one trailing newline and nothing else."""
    write(tmp_path, content, "fic.secret")
    data = with_secret("fic", "_file", str(tmp_path / "fic.secret"))
    assert load(tmp_path, data).fic.client_secret.reveal() == expected


def test_repr_and_str_show_no_secret(tmp_path: Path) -> None:
    """Neither repr nor str of a Config contains any secret, including a proxy password."""
    data = merged(
        minimal(),
        {
            "fic": {"proxy": "http://proxyuser:Pr0xyPassw0rd@proxy.example.com:3128"},
            "radius": {"state_secret": STATE_SECRET},
        },
    )
    config = load(tmp_path, data)

    for text in (repr(config), str(config)):
        assert "proxy.example.com" in text and "ClientConfig(name='fortigate'" in text
        for secret in (FIC_SECRET, NAS_SECRET, STATE_SECRET, "Pr0xyPassw0rd"):
            assert secret not in text
    assert config.fic.proxy == "http://proxyuser:Pr0xyPassw0rd@proxy.example.com:3128"


@pytest.mark.parametrize(
    "overlay",
    [
        {"fic": {"client_secret_env": "SET_VAR"}},  # two sources at once
        {"radius": {"state_secret": "0123"}},  # too short
        clients(client(secret=112358132134)),  # a number, not a string
    ],
)
def test_errors_about_secrets_do_not_show_them(tmp_path: Path, overlay: dict[str, Any]) -> None:
    """A ConfigError about a secret names the key, never the value."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, merged(minimal(), overlay), SET_VAR="x")
    for secret in (FIC_SECRET, "0123", "112358132134"):
        assert secret not in str(caught.value)


def test_config_is_frozen(tmp_path: Path) -> None:
    """The loaded configuration cannot be changed, nor its realm map."""
    data = merged(minimal(), {"auth": {"username": {"realm_map": {"Example.COM": "corp"}}}})
    config = load(tmp_path, data)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.auth.push_timeout = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.auth.username.realm_map["x"] = "y"  # type: ignore[index]
    assert dict(config.auth.username.realm_map) == {"example.com": "corp"}


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        (["0.0.0.0:1812"], [("0.0.0.0", 1812, "0.0.0.0:1812")]),
        (["[::]:1812"], [("::", 1812, "[::]:1812")]),
        (["127.0.0.1"], [("127.0.0.1", 1812, "127.0.0.1:1812")]),
        (["[::1]"], [("::1", 1812, "[::1]:1812")]),
        ("127.0.0.1:11812", [("127.0.0.1", 11812, "127.0.0.1:11812")]),
        (
            ["10.0.0.1:1812", "[2001:DB8::1]:1645"],
            [("10.0.0.1", 1812, "10.0.0.1:1812"), ("2001:db8::1", 1645, "[2001:db8::1]:1645")],
        ),
    ],
)
def test_listen_addresses(
    tmp_path: Path, listen: object, expected: list[tuple[str, int, str]]
) -> None:
    """Listen addresses parse as IPv4[:port] or [IPv6][:port], port 1812 by default."""
    config = load(tmp_path, merged(minimal(), {"radius": {"listen": listen}}))
    assert [(a.host, a.port, str(a)) for a in config.radius.listen] == expected


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({}, MetricsConfig(listen=None, allow_remote=False)),
        ({"listen": None}, MetricsConfig(listen=None, allow_remote=False)),
        (
            {"listen": "127.0.0.1:9812"},
            MetricsConfig(listen=ListenAddress(host="127.0.0.1", port=9812)),
        ),
        (
            {"listen": "127.0.0.53:9100"},
            MetricsConfig(listen=ListenAddress(host="127.0.0.53", port=9100)),
        ),
        ({"listen": "[::1]:9812"}, MetricsConfig(listen=ListenAddress(host="::1", port=9812))),
        (
            {"listen": "0.0.0.0:9812", "allow_remote": True},
            MetricsConfig(listen=ListenAddress(host="0.0.0.0", port=9812), allow_remote=True),
        ),
        (
            {"listen": "[2001:DB8::5]:9812", "allow_remote": True},
            MetricsConfig(listen=ListenAddress(host="2001:db8::5", port=9812), allow_remote=True),
        ),
    ],
)
def test_metrics_listener(tmp_path: Path, metrics: object, expected: MetricsConfig) -> None:
    """metrics.listen is off by default, loopback with a port when set, remote only if allowed."""
    assert load(tmp_path, merged(minimal(), {"metrics": metrics})).metrics == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, MessageAuthenticatorPolicy.REQUIRED),
        (False, MessageAuthenticatorPolicy.OPTIONAL),
        ("auto", MessageAuthenticatorPolicy.AUTO),
        ("Auto", MessageAuthenticatorPolicy.AUTO),
    ],
)
def test_message_authenticator_policy(
    tmp_path: Path, value: object, expected: MessageAuthenticatorPolicy
) -> None:
    """require_message_authenticator reads YAML true, false and "auto"."""
    data = merged(minimal(), clients(client(require_message_authenticator=value)))
    assert load(tmp_path, data).radius.clients[0].require_message_authenticator is expected


def test_reply_attributes_keep_order_and_repeat_lists(tmp_path: Path) -> None:
    """Reply attributes keep the file's order; a list gives the attribute once per value."""
    attributes = {"Class": ["first", "second"], "Session-Timeout": 3600, "Filter-Id": "vpn"}
    data = merged(minimal(), clients(client(reply_attributes=attributes)))
    assert load(tmp_path, data).radius.clients[0].reply_attributes == (
        ("Class", "first"),
        ("Class", "second"),
        ("Session-Timeout", 3600),
        ("Filter-Id", "vpn"),
    )


def test_keywords_are_lowercased_and_enums_read(tmp_path: Path) -> None:
    """Keywords are stored lowercased; enum values and the log level ignore case."""
    data = merged(
        minimal(),
        {
            "auth": {
                "push_keyword": "PUSH",
                "sms_keyword": "Text",
                "empty_password": "Reject",
                "failmode": "open",
                "otp_pattern": r"^\d{6}$",
            },
            "logging": {"format": "console", "level": "DEBUG"},
        },
    )
    config = load(tmp_path, data)
    assert (config.auth.push_keyword, config.auth.sms_keyword) == ("push", "text")
    assert config.auth.empty_password is EmptyPassword.REJECT
    assert config.auth.failmode is Failmode.OPEN
    assert config.auth.otp_pattern.pattern == r"^\d{6}$"
    assert config.logging == LoggingConfig(format=LogFormat.CONSOLE, level="debug")


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://fic.example.com:9696/api/v1/", "https://fic.example.com:9696/api/v1"),
        ("http://127.0.0.1:8080/api/v1", "http://127.0.0.1:8080/api/v1"),
        ("http://127.8.9.10/api/v1", "http://127.8.9.10/api/v1"),
        ("http://localhost:9696/api/v1/", "http://localhost:9696/api/v1"),
        ("http://[::1]:9696/api/v1", "http://[::1]:9696/api/v1"),
    ],
)
def test_base_url_allows_http_only_on_loopback(
    tmp_path: Path, base_url: str, expected: str
) -> None:
    """https:// is always accepted; http:// only for a loopback host (the simulator)."""
    config = load(tmp_path, merged(minimal(), {"fic": {"base_url": base_url}}))
    assert config.fic.base_url == expected


def test_ca_bundle_and_dictionaries_resolve_against_the_file(tmp_path: Path) -> None:
    """ca_bundle and dictionary paths are relative to the config file and stored absolute."""
    write(tmp_path / "conf", "-----BEGIN CERTIFICATE-----\n", "ca.pem")
    write(tmp_path / "conf" / "dict", "ATTRIBUTE Test 250 string\n", "dictionary.local")
    data = merged(
        minimal(),
        {"fic": {"ca_bundle": "ca.pem"}, "radius": {"dictionaries": ["dict/dictionary.local"]}},
    )
    config = load_config(write(tmp_path / "conf", data), environ={})
    assert config.fic.ca_bundle == str(tmp_path / "conf" / "ca.pem")
    assert config.radius.dictionaries == (str(tmp_path / "conf" / "dict" / "dictionary.local"),)


# --- client_for ---------------------------------------------------------------------------------

LOOKUP_CLIENTS = [
    client(name="v4-wide", address="10.0.0.0/8"),
    client(name="v4-host", address="10.1.2.3"),
    client(name="v4-mid", address="10.1.0.0/16"),
    client(name="v6-wide", address="2001:db8::/32"),
    client(name="v6-narrow", address="2001:db8:1::/48"),
]


@pytest.fixture(params=["as-listed", "reversed"])
def lookup_config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """A config with overlapping networks, in the listed and in the reversed order."""
    items = LOOKUP_CLIENTS if request.param == "as-listed" else LOOKUP_CLIENTS[::-1]
    return load(tmp_path, merged(minimal(), clients(*items)))


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.1.2.3", "v4-host"),
        ("10.1.2.4", "v4-mid"),
        ("10.200.0.1", "v4-wide"),
        ("11.0.0.1", None),
        ("::ffff:10.1.2.3", "v4-host"),
        ("::ffff:10.9.9.9", "v4-wide"),
        ("::ffff:11.0.0.1", None),
        ("2001:db8:1::5", "v6-narrow"),
        ("2001:DB8:2::1", "v6-wide"),
        ("2001:db9::1", None),
        ("not-an-address", None),
    ],
)
def test_client_for_picks_the_longest_prefix(
    lookup_config: Config, address: str, expected: str | None
) -> None:
    """client_for returns the most specific network's client; IPv4-mapped counts as IPv4."""
    found = lookup_config.client_for(address)
    assert (found.name if found else None) == expected
