"""``radius-bridge doctor``: finds what administrators get wrong and says how to fix each thing.

This module owns the checks and their advice. The checks that only read the configuration are
pure functions (``check_secrets``, ``check_message_authenticator``, ``check_push_budget``,
``check_duplicate_window``, ``check_clock`` on a given time, ``listen_finding`` on a given bind
result); the others touch the world: ``check_fic`` logs in to FIC through an injected client,
``check_listen`` binds the RADIUS and metrics sockets, ``read_ntp_synchronized`` asks
timedatectl. Each check returns ``Finding`` values: ``ok``, ``warning`` (works, but risky) or
``error`` (logins will fail or an attacker gets an opening). ``run_from_args`` prints them, one
line each with the fix indented, or as JSON, and exits 0 when no finding is an error, 1 when
one is, 78 when the configuration does not load. No finding ever carries a secret's value.
"""

from __future__ import annotations

import argparse
import calendar
import dataclasses
import errno
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from prometheus_client.parser import text_string_to_metric_families

from radius_bridge import logs
from radius_bridge.config import (
    ClientConfig,
    Config,
    ListenAddress,
    LogFormat,
    MessageAuthenticatorPolicy,
    load_config,
)
from radius_bridge.errors import (
    ConfigError,
    FicCredentialsRefused,
    FicError,
    FicProtocolError,
    FicRateLimited,
    FicRejected,
    FicUnavailable,
)
from radius_bridge.fic import FicClient
from radius_bridge.model import User

if TYPE_CHECKING:
    from radius_bridge.config import FicConfig

Status = Literal["ok", "warning", "error"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 78  # EX_CONFIG, as everywhere in the CLI

# Check names: what a Finding's ``check`` holds, stable for scripts reading --json.
CHECK_CONFIG = "config"
CHECK_FIC = "fic"
CHECK_CLOCK = "clock"
CHECK_LISTEN = "listen"
CHECK_SECRETS = "secrets"
CHECK_MESSAGE_AUTHENTICATOR = "message_authenticator"
CHECK_PUSH_BUDGET = "push_budget"
CHECK_DUPLICATE_WINDOW = "duplicate_window"

# RFC 2865 §3: the shared secret "SHOULD be at least as large and unguessable as a well-chosen
# password. It is preferred that the secret be at least 16 octets." The MD5 password hiding
# (§5.2) lets anyone who captures one Access-Request test guesses offline; below 8 octets
# that search is short.
RECOMMENDED_SECRET_OCTETS = 16
MINIMUM_SECRET_OCTETS = 8
# Fewer distinct characters than this ("aaaaaaaaaaaaaaaa", "abababab...") is length without
# unpredictability.
MINIMUM_DISTINCT_CHARACTERS = 6
# Secrets printed in vendor guides, defaults and our own demo: the first ones an attacker tries.
WELL_KNOWN_SECRETS = frozenset(
    {
        "testing123",  # FreeRADIUS's default client secret
        "secret",
        "sharedsecret",
        "radius",
        "radiussecret",
        "password",
        "changeme",
        "cisco",
        "fortinet",
        "paloalto",
        "pfsense",
        "demo-radius-secret",  # `radius-bridge demo`
    }
)
SECRET_GENERATOR = "openssl rand -base64 24"  # noqa: S105 - a command, not a secret

# Between the end of auth.push_timeout and the NAS giving up, the last FIC poll, the
# Access-Reject on the wire and the NAS's own timer granularity need a little time.
PUSH_MARGIN = 2.0
# Lowering auth.push_timeout is suggested only down to this: a person needs time to find the
# phone, unlock it and approve.
SHORTEST_USEFUL_PUSH_TIMEOUT = 15.0

# The one table of NAS RADIUS timeouts. Typical factory defaults: check the NAS's own version.
# Each is the time the NAS waits per try, far below what a person needs to approve a push.
VENDOR_NAS_TIMEOUTS: tuple[tuple[str, str, str], ...] = (
    ("FortiGate", "5 s", "config system global / set remoteauthtimeout"),
    ("Cisco ASA/FTD", "10 s", "aaa-server host ... / timeout"),
    ("Palo Alto", "3 s x 3 retries", "RADIUS server profile Timeout and Retries"),
    ("pfSense/OPNsense", "5 s", "RADIUS server Authentication Timeout"),
    ("pam_radius", "3 s", "timeout column of pam_radius_auth.conf"),
    ("FreeRADIUS proxy", "20 s", "home_server response_window"),
)

# A clock earlier than this is wrong: radius-bridge handles BlastRADIUS (CVE-2024-3596),
# disclosed on 2024-07-09, so it cannot really be running before that day.
EARLIEST_PLAUSIBLE = calendar.timegm((2024, 7, 9, 0, 0, 0))
LATEST_PLAUSIBLE = calendar.timegm((2100, 1, 1, 0, 0, 0))
SET_THE_CLOCK = (
    "synchronize the clock: timedatectl set-ntp true (systemd-timesyncd) or install chrony"
)
NTP_QUERY_TIMEOUT = 3.0

# A user name no one has: the harmless read that proves FIC accepts our bearer token.
PROBE_USERNAME = "radius-bridge-doctor-probe"


@dataclass(frozen=True)
class Finding:
    """One result: which check, how bad, what was found, and how to fix it (``None`` if ok)."""

    check: str
    status: Status
    message: str
    fix: str | None = None


class FicProbe(Protocol):
    """What ``check_fic`` needs of a FIC client (``FicClient`` has it)."""

    def login(self) -> None: ...

    def find_user(self, username: str) -> User | None: ...

    def version(self) -> str: ...

    def close(self) -> None: ...


# --- secrets -------------------------------------------------------------------------------------


def _client_key(index: int) -> str:
    return f"radius.clients[{index}]"


def _secret_problem(secret: bytes) -> tuple[Status, str] | None:
    """How weak a shared secret is, in words that never repeat it; None when it is fine."""
    if secret.decode("utf-8", "replace").casefold() in WELL_KNOWN_SECRETS:
        return "error", "is a well-known default or example secret, the first one guessed"
    if len(secret) < MINIMUM_SECRET_OCTETS:
        return "error", (
            f"has {len(secret)} octets; fewer than {MINIMUM_SECRET_OCTETS} are found by an "
            "offline search of one captured request"
        )
    if len(secret) < RECOMMENDED_SECRET_OCTETS:
        return "warning", (
            f"has {len(secret)} octets; RFC 2865 §3 prefers at least {RECOMMENDED_SECRET_OCTETS}"
        )
    if len(set(secret)) < MINIMUM_DISTINCT_CHARACTERS:
        return "warning", f"repeats fewer than {MINIMUM_DISTINCT_CHARACTERS} distinct characters"
    return None


def check_secrets(config: Config) -> list[Finding]:
    """Each client's shared secret: long enough, not a known default, not shared with another."""
    findings: list[Finding] = []
    for index, client in enumerate(config.radius.clients):
        problem = _secret_problem(client.secret.reveal_bytes())
        if problem is not None:
            status, detail = problem
            key = _client_key(index)
            findings.append(
                Finding(
                    CHECK_SECRETS,
                    status,
                    f"client {client.name!r}: the shared secret {detail}",
                    f"generate a new secret ({SECRET_GENERATOR}), set it on the NAS and in "
                    f"{key}.secret (or secret_file/_env/_credential)",
                )
            )
    groups: list[list[ClientConfig]] = []
    for client in config.radius.clients:
        group = next((g for g in groups if g[0].secret == client.secret), None)
        if group is None:
            groups.append([client])
        else:
            group.append(client)
    for group in groups:
        if len(group) > 1:
            names = ", ".join(repr(client.name) for client in group)
            findings.append(
                Finding(
                    CHECK_SECRETS,
                    "warning",
                    f"clients {names} share one secret: one leaked NAS configuration exposes all",
                    f"give each client its own secret ({SECRET_GENERATOR})",
                )
            )
    if not findings:
        count = len(config.radius.clients)
        findings.append(
            Finding(
                CHECK_SECRETS,
                "ok",
                f"{count} client secret{'s' if count != 1 else ''} of "
                f"{RECOMMENDED_SECRET_OCTETS}+ octets, none shared, none well known",
            )
        )
    return findings


# --- Message-Authenticator -------------------------------------------------------------------


def check_message_authenticator(config: Config) -> list[Finding]:
    """A client that may omit Message-Authenticator is open to BlastRADIUS forgery."""
    findings: list[Finding] = []
    for index, client in enumerate(config.radius.clients):
        # RFC 3579 §3.2 makes the attribute mandatory only with EAP; CVE-2024-3596 is why the
        # bridge wants it on every Access-Request.
        if client.require_message_authenticator is not MessageAuthenticatorPolicy.OPTIONAL:
            continue
        findings.append(
            Finding(
                CHECK_MESSAGE_AUTHENTICATOR,
                "warning",
                f"client {client.name!r} accepts Access-Requests without Message-Authenticator "
                "(require_message_authenticator: false): an attacker on the path can forge an "
                "Access-Accept (BlastRADIUS, CVE-2024-3596)",
                f'set {_client_key(index)}.require_message_authenticator: "auto" (required as '
                "soon as the NAS sends it) or true, and update a NAS that cannot send it",
            )
        )
    if not findings:
        findings.append(
            Finding(
                CHECK_MESSAGE_AUTHENTICATOR,
                "ok",
                "every client requires Message-Authenticator (true or auto)",
            )
        )
    return findings


# --- push budget and duplicates --------------------------------------------------------------


def vendor_timeouts_text() -> str:
    """The vendor table as one line of advice."""
    return "; ".join(
        f"{nas} {default} ({setting})" for nas, default, setting in VENDOR_NAS_TIMEOUTS
    )


def check_push_budget(config: Config) -> list[Finding]:
    """Each NAS must wait longer than a push may take, or every push login fails."""
    push_timeout = config.auth.push_timeout
    needed = push_timeout + PUSH_MARGIN
    findings: list[Finding] = []
    undeclared: list[ClientConfig] = []
    for index, client in enumerate(config.radius.clients):
        if client.nas_timeout is None:
            undeclared.append(client)
            continue
        if client.nas_timeout >= needed:
            continue
        key = _client_key(index)
        lower = client.nas_timeout - PUSH_MARGIN
        or_lower = (
            f", or lower auth.push_timeout to {lower:g} s or less"
            if lower >= SHORTEST_USEFUL_PUSH_TIMEOUT
            else ""
        )
        findings.append(
            Finding(
                CHECK_PUSH_BUDGET,
                "error",
                f"client {client.name!r}: the NAS gives up after {client.nas_timeout:g} s "
                f"({key}.nas_timeout), before a push can be approved (auth.push_timeout "
                f"{push_timeout:g} s + {PUSH_MARGIN:g} s)",
                f"raise the NAS's RADIUS timeout (timeout x attempts) to >= {needed:g} s and "
                f"{key}.nas_timeout with it{or_lower}",
            )
        )
    if undeclared:
        names = ", ".join(repr(client.name) for client in undeclared)
        findings.append(
            Finding(
                CHECK_PUSH_BUDGET,
                "warning",
                f"no nas_timeout declared for {names}: whether the NAS waits the "
                f"{needed:g} s a push needs is unknown, and most vendors' defaults are shorter",
                f"set the NAS's RADIUS timeout to >= {needed:g} s, then declare it as "
                "nas_timeout (total seconds: timeout x attempts) on the client. Typical "
                f"defaults: {vendor_timeouts_text()}",
            )
        )
    if not findings:
        findings.append(
            Finding(
                CHECK_PUSH_BUDGET,
                "ok",
                f"every NAS waits at least {needed:g} s (auth.push_timeout {push_timeout:g} s "
                f"+ {PUSH_MARGIN:g} s)",
            )
        )
    return findings


def check_duplicate_window(config: Config) -> list[Finding]:
    """Answers must be remembered as long as a NAS may retransmit, or a retry starts a push.

    RFC 5080 §2.2.2: a retransmission gets the cached answer only while it is cached.
    """
    ttl = config.radius.duplicate_ttl
    findings = [
        Finding(
            CHECK_DUPLICATE_WINDOW,
            "warning",
            f"client {client.name!r} may retransmit for {client.nas_timeout:g} s but answers "
            f"are remembered for {ttl:g} s (radius.duplicate_ttl): a late retransmission "
            "could start a second push",
            f"raise radius.duplicate_ttl to at least {client.nas_timeout:g}",
        )
        for client in config.radius.clients
        if client.nas_timeout is not None and client.nas_timeout > ttl
    ]
    if not findings:
        findings.append(
            Finding(
                CHECK_DUPLICATE_WINDOW,
                "ok",
                f"answers are remembered for {ttl:g} s, as long as any declared NAS retries",
            )
        )
    return findings


# --- clock -----------------------------------------------------------------------------------


def check_clock(now: float, ntp_synchronized: bool | None) -> Finding:
    """A plausible date, kept by NTP: TLS to FIC judges certificates by it, logs are dated by it.

    ``ntp_synchronized`` is None when the synchronization state is not known.
    """
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if not EARLIEST_PLAUSIBLE <= now < LATEST_PLAUSIBLE:
        return Finding(
            CHECK_CLOCK,
            "error",
            f"the system clock reads {shown}, which cannot be right: TLS to FIC will reject "
            "its certificate as not yet valid or expired",
            SET_THE_CLOCK,
        )
    if ntp_synchronized is False:
        return Finding(
            CHECK_CLOCK,
            "warning",
            f"the system clock ({shown}) is not synchronized by NTP: it may drift until TLS to "
            "FIC fails, and log times will not match the NAS's and FIC's",
            SET_THE_CLOCK,
        )
    state = "NTP-synchronized" if ntp_synchronized else "NTP state unknown (no timedatectl)"
    return Finding(CHECK_CLOCK, "ok", f"the system clock reads {shown}, {state}")


def read_ntp_synchronized() -> bool | None:
    """systemd's view of NTP synchronization; None without timedatectl or systemd."""
    try:
        result = subprocess.run(
            # From PATH on purpose: /usr/bin or /bin, depending on the distribution.
            ["timedatectl", "show", "--property=NTPSynchronized", "--value"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=NTP_QUERY_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = result.stdout.strip()
    if result.returncode != 0 or answer not in ("yes", "no"):
        return None
    return answer == "yes"


# --- listen addresses ------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """An address the daemon will bind: RADIUS over UDP, or the metrics HTTP server over TCP."""

    address: ListenAddress
    key: str  # where the configuration sets it: "radius.listen" or "metrics.listen"
    tcp: bool = False

    def __str__(self) -> str:
        return f"{self.address} ({'TCP' if self.tcp else 'UDP'}, {self.key})"


def listeners(config: Config) -> list[Listener]:
    """Every address ``serve`` binds."""
    found = [Listener(address, "radius.listen") for address in config.radius.listen]
    if config.metrics.listen is not None:
        found.append(Listener(config.metrics.listen, "metrics.listen", tcp=True))
    return found


def try_bind(listener: Listener) -> OSError | None:
    """Bind as the daemon does (IPv6-only for IPv6), release at once; the error, if any."""
    address = listener.address
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    kind = socket.SOCK_STREAM if listener.tcp else socket.SOCK_DGRAM
    try:
        with socket.socket(family, kind) as sock:
            if family == socket.AF_INET6:
                # As the server binds: "[::]" must not claim IPv4 too, or "0.0.0.0" collides.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if listener.tcp:
                # As Python's HTTP servers do, so a connection in TIME_WAIT is no conflict.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address.host, address.port))
    except OSError as error:
        return error
    return None


def listen_finding(listener: Listener, error: OSError | None, *, privileged: bool) -> Finding:
    """What binding ``listener`` gave (``error`` None: it bound) means for the administrator.

    ``privileged``: doctor itself ran as root, which may hide a permission the service lacks.
    """
    port = listener.address.port
    if error is None:
        note = ""
        if port < 1024 and privileged:
            note = " (as root here; the service needs CAP_NET_BIND_SERVICE for a port below 1024)"
        return Finding(CHECK_LISTEN, "ok", f"{listener} can be bound{note}")
    if error.errno == errno.EADDRINUSE:
        ss = "ss -tlpn" if listener.tcp else "ss -ulpn"
        return Finding(
            CHECK_LISTEN,
            "error",
            f"{listener}: another process listens there (radius-bridge itself, if the "
            "service is running: then this is expected)",
            f"find it with: {ss} 'sport = :{port}'; stop it, or change {listener.key}",
        )
    if error.errno == errno.EACCES and port < 1024:
        # RFC 2865 §3: RADIUS has its own port above 1023, so no privilege is ever needed.
        unprivileged = "1812 (RFC 2865 §3)" if not listener.tcp else "a port above 1023"
        return Finding(
            CHECK_LISTEN,
            "error",
            f"{listener}: permission denied: ports below 1024 need CAP_NET_BIND_SERVICE",
            f"listen on {unprivileged}, which needs no privilege, or grant the capability in "
            "the unit (systemctl edit radius-bridge): AmbientCapabilities=CAP_NET_BIND_SERVICE "
            "and CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return Finding(
            CHECK_LISTEN,
            "error",
            f"{listener}: no interface of this machine has that address",
            f"in {listener.key}, use an address shown by 'ip -brief address', or 0.0.0.0 / "
            "[::] for all",
        )
    if error.errno == errno.EAFNOSUPPORT:
        return Finding(
            CHECK_LISTEN,
            "error",
            f"{listener}: this machine has no IPv6",
            f"remove the IPv6 address from {listener.key}, or enable IPv6",
        )
    return Finding(
        CHECK_LISTEN,
        "error",
        f"{listener}: cannot bind: {error.strerror or error}",
        f"check {listener.key} and any security policy (SELinux, AppArmor) on this port",
    )


def check_listen(config: Config) -> list[Finding]:
    """Each address the daemon listens on: can this machine bind it right now?"""
    privileged = hasattr(os, "geteuid") and os.geteuid() == 0
    return [
        listen_finding(listener, try_bind(listener), privileged=privileged)
        for listener in listeners(config)
    ]


# --- FIC -------------------------------------------------------------------------------------


def _fic_failure(config: Config, error: FicError) -> Finding:
    """The finding for a FIC call that failed, with the fix that belongs to its cause."""
    where = config.fic.base_url
    if isinstance(error, FicCredentialsRefused):
        return Finding(
            CHECK_FIC,
            "error",
            f"FIC refused the client id or secret: {error}",
            "copy the client ID and secret of the web application (FIC portal: Applications "
            "> Web Apps) into fic.client_id and fic.client_secret; a lost secret must be "
            "regenerated there",
        )
    if isinstance(error, FicRateLimited):
        wait = f"after {error.retry_after:g} s" if error.retry_after is not None else "later"
        return Finding(
            CHECK_FIC,
            "error",
            f"FIC throttles this account: {error}",
            f"try again {wait}; trial accounts may make 60 API calls per 5 minutes",
        )
    if isinstance(error, FicUnavailable):
        if "TLS" in error.detail:
            fix = (
                "if a TLS-inspecting proxy re-signs FIC's certificate, set fic.ca_bundle to its "
                "CA; a wrong system clock also fails certificates"
            )
        else:
            fix = (
                f"check DNS and that this host may open TCP connections to {where} (firewall, "
                "fic.proxy); try: curl -sv " + where.split("/api/")[0] + "/version"
            )
        return Finding(CHECK_FIC, "error", f"cannot reach FIC at {where}: {error}", fix)
    if isinstance(error, FicProtocolError):
        return Finding(
            CHECK_FIC,
            "error",
            f"{where} answered, but not as FIC does: {error}",
            "check fic.base_url (default https://fic.fortinet.com:9696/api/v1)",
        )
    if isinstance(error, FicRejected) and error.status == 402:
        return Finding(
            CHECK_FIC,
            "error",
            f"FIC reports no valid subscription: {error}",
            "renew the FortiIdentity Cloud licence or trial in the FIC portal",
        )
    return Finding(
        CHECK_FIC,
        "error",
        f"FIC refused a harmless read with the bridge's token: {error}",
        "check the web application's realm and permissions in the FIC portal",
    )


def check_fic(config: Config, fic: FicProbe) -> Finding:
    """Log in to FIC, then read one user that does not exist: proves the token works."""
    try:
        fic.login()
    except FicError as error:
        return _fic_failure(config, error)
    try:
        fic.find_user(PROBE_USERNAME)
    except FicRejected as error:
        if error.status == 403:
            return Finding(
                CHECK_FIC,
                "warning",
                f"FIC accepted the credentials but refuses to list users ({error}); logins "
                "work, 'radius-bridge fic users' will not",
                "allow the web application to read users in the FIC portal",
            )
        return _fic_failure(config, error)
    except FicError as error:
        return _fic_failure(config, error)
    try:
        version = f" (FIC {fic.version()})"
    except FicError:  # only decoration for the message: the checks above already passed
        version = ""
    return Finding(
        CHECK_FIC,
        "ok",
        f"{config.fic.base_url} accepted the client credentials and a read{version}",
    )


# --- all checks ------------------------------------------------------------------------------


def fetch_metrics(host: str, port: int, *, timeout: float = 3.0) -> str:
    """The running bridge's /metrics text (loopback HTTP; raises OSError when none answers)."""
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        text: str = answer.read().decode("utf-8")
        return text


def check_legacy_clients(
    config: Config, *, fetch: Callable[[str, int], str] = fetch_metrics
) -> list[Finding]:
    """Ask the running bridge which clients sent requests without Message-Authenticator.

    Only the daemon knows what its NASes actually send, so this reads its metrics endpoint.
    """
    check = "legacy_clients"
    listen = config.metrics.listen
    if listen is None:
        return [
            Finding(
                check,
                "ok",
                "not checked: metrics.listen is off, so the running "
                "bridge cannot be asked which clients omit Message-Authenticator",
            )
        ]
    try:
        text = fetch(listen.host, listen.port)
    except OSError:
        return [
            Finding(check, "ok", f"not checked: no bridge answers on {listen} (it is not running)")
        ]
    names = sorted(
        sample.labels["client"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "radius_bridge_client_without_message_authenticator" and sample.value
    )
    if not names:
        return [Finding(check, "ok", "every client seen so far signs its requests")]
    return [
        Finding(
            check,
            "warning",
            f"client {name!r} has sent requests without Message-Authenticator "
            "(BlastRADIUS, CVE-2024-3596)",
            "configure or upgrade that NAS to send Message-Authenticator, then set its "
            "require_message_authenticator: true",
        )
        for name in names
    ]


def run_checks(
    config: Config,
    *,
    fic_factory: Callable[[FicConfig], FicProbe] = FicClient.from_config,
    clock: Callable[[], float] = time.time,
    ntp_state: Callable[[], bool | None] = read_ntp_synchronized,
) -> list[Finding]:
    """Every check, in the order an administrator reads them."""
    fic = fic_factory(config.fic)
    try:
        fic_finding = check_fic(config, fic)
    finally:
        fic.close()
    return [
        fic_finding,
        check_clock(clock(), ntp_state()),
        *check_listen(config),
        *check_secrets(config),
        *check_message_authenticator(config),
        *check_push_budget(config),
        *check_duplicate_window(config),
        *check_legacy_clients(config),
    ]


# --- command line ----------------------------------------------------------------------------

_LABELS: dict[Status, str] = {"ok": "OK", "warning": "WARN", "error": "FAIL"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``doctor`` switches."""
    parser.add_argument("--config", required=True, metavar="FILE", help="configuration file")
    parser.add_argument(
        "--json", action="store_true", help="print the findings as a JSON list, for scripts"
    )


def format_findings(findings: Sequence[Finding]) -> str:
    """One line per finding (OK/WARN/FAIL, check, message), the fix indented under it."""
    lines: list[str] = []
    for finding in findings:
        lines.append(f"{_LABELS[finding.status]:<4}  {finding.check}: {finding.message}")
        if finding.fix:
            lines.append(f"      fix: {finding.fix}")
    errors = sum(finding.status == "error" for finding in findings)
    warnings = sum(finding.status == "warning" for finding in findings)
    if errors or warnings:
        lines.append(
            f"{errors} error{'s' if errors != 1 else ''}, "
            f"{warnings} warning{'s' if warnings != 1 else ''}"
        )
    else:
        lines.append("all checks passed")
    return "\n".join(lines)


def findings_json(findings: Sequence[Finding]) -> str:
    """The findings as a JSON list of objects with check, status, message and fix."""
    return json.dumps([dataclasses.asdict(finding) for finding in findings], indent=2)


def run_from_args(args: argparse.Namespace) -> int:
    """Run every check for ``args.config``: 0 no errors, 1 errors found, 78 bad configuration."""
    from radius_bridge.daemon import build_codec, config_secrets

    # Log lines (FIC calls, warnings) go to stderr, so stdout stays the report (or JSON).
    logs.configure_logging(LogFormat.CONSOLE, "warning", stream=sys.stderr)
    try:
        config = load_config(args.config)
        build_codec(config)  # the dictionaries and reply attributes, as serve checks them
    except ConfigError as error:
        findings = [
            Finding(
                CHECK_CONFIG,
                "error",
                str(error),
                f"correct the file, then run: radius-bridge check-config --config {args.config}",
            )
        ]
        _print(findings, as_json=args.json)
        return EXIT_CONFIG
    for value in config_secrets(config):
        logs.register_secret(value)
    count = len(config.radius.clients)
    loaded = Finding(
        CHECK_CONFIG, "ok", f"{args.config} loads ({count} client{'s' if count != 1 else ''})"
    )
    findings = [loaded, *run_checks(config)]
    _print(findings, as_json=args.json)
    return EXIT_PROBLEMS if any(f.status == "error" for f in findings) else EXIT_OK


def _print(findings: Sequence[Finding], *, as_json: bool) -> None:
    print(findings_json(findings) if as_json else format_findings(findings))
