"""Tests for radius_bridge.doctor: each seeded mistake is found; FIC and sockets are real."""

from __future__ import annotations

import argparse
import calendar
import dataclasses
import errno
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bridge_harness import RADIUS_SECRET, RunningBridge, bridge_config

from radius_bridge import doctor, logs
from radius_bridge.config import Config, ListenAddress
from radius_bridge.doctor import Finding
from radius_bridge.fic import FicClient
from radius_bridge.radius import RadiusCodec
from radius_bridge.simulator import FicSimulator

UNUSED_FIC = "http://127.0.0.1:9/api/v1"  # never contacted by the pure checks
OTHER_SECRET = "another-radius-secret-4567"
JUNE_2026 = calendar.timegm((2026, 6, 1, 12, 0, 0))


def good_client(**changes: Any) -> dict[str, Any]:
    """A client no check objects to (the harness sets auth.push_timeout to 4 s)."""
    return {
        "name": "vpn",
        "address": "127.0.0.0/8",
        "secret": RADIUS_SECRET,
        "nas_timeout": 30,
        **changes,
    }


def config_with(*clients: dict[str, Any], **sections: Any) -> Config:
    """A loopback configuration with these clients (default: one good client)."""
    radius = {"clients": list(clients or [good_client()]), **sections.pop("radius", {})}
    return bridge_config(UNUSED_FIC, {"radius": radius, **sections})


def pure_findings(config: Config) -> list[Finding]:
    return [
        *doctor.check_secrets(config),
        *doctor.check_message_authenticator(config),
        *doctor.check_push_budget(config),
        *doctor.check_duplicate_window(config),
    ]


def problems(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.check, f.status) for f in findings if f.status != "ok"]


def test_good_configuration_passes_every_configuration_check() -> None:
    """A sound configuration gives one ok finding per configuration check and nothing else."""
    findings = pure_findings(config_with())
    assert problems(findings) == []
    assert [f.check for f in findings] == [
        "secrets",
        "message_authenticator",
        "push_budget",
        "duplicate_window",
    ]


BAD_CONFIGURATIONS = [
    pytest.param(
        [good_client(secret="twelve-chars")],
        {},
        ("secrets", "warning"),
        "has 12 octets; RFC 2865 §3 prefers at least 16",
        id="secret-shorter-than-16",
    ),
    pytest.param(
        [good_client(secret="x7#Qp")],
        {},
        ("secrets", "error"),
        "has 5 octets",
        id="secret-shorter-than-8",
    ),
    pytest.param(
        [good_client(secret="Testing123")],
        {},
        ("secrets", "error"),
        "well-known default",
        id="secret-freeradius-default",
    ),
    pytest.param(
        [good_client(secret="abababababababababab")],
        {},
        ("secrets", "warning"),
        "fewer than 6 distinct characters",
        id="secret-repetitive",
    ),
    pytest.param(
        [good_client(name="hq"), good_client(name="branch", address="10.0.0.0/8")],
        {},
        ("secrets", "warning"),
        "clients 'hq', 'branch' share one secret",
        id="secret-shared-by-two-clients",
    ),
    pytest.param(
        [good_client(require_message_authenticator=False)],
        {},
        ("message_authenticator", "warning"),
        "BlastRADIUS, CVE-2024-3596",
        id="message-authenticator-optional",
    ),
    pytest.param(
        [good_client(nas_timeout=5)],
        {},
        ("push_budget", "error"),
        "the NAS gives up after 5 s",
        id="nas-timeout-shorter-than-push",
    ),
    pytest.param(
        [good_client(nas_timeout=25)],
        {"auth": {"push_timeout": 25, "push_poll_interval": 1}},
        ("push_budget", "error"),
        "before a push can be approved (auth.push_timeout 25 s + 2 s)",
        id="nas-timeout-without-margin",
    ),
    pytest.param(
        [{k: v for k, v in good_client().items() if k != "nas_timeout"}],
        {},
        ("push_budget", "warning"),
        "no nas_timeout declared for 'vpn'",
        id="nas-timeout-undeclared",
    ),
    pytest.param(
        [good_client(nas_timeout=60)],
        {"radius": {"duplicate_ttl": 20}},
        ("duplicate_window", "warning"),
        "may retransmit for 60 s but answers are remembered for 20 s",
        id="duplicate-ttl-shorter-than-nas-retries",
    ),
]


@pytest.mark.parametrize(("clients", "sections", "expected", "words"), BAD_CONFIGURATIONS)
def test_each_seeded_mistake_is_found_alone(
    clients: list[dict[str, Any]],
    sections: dict[str, Any],
    expected: tuple[str, str],
    words: str,
) -> None:
    """Each bad configuration gives exactly its own finding, with a message and a fix."""
    findings = pure_findings(config_with(*clients, **sections))
    assert problems(findings) == [expected]
    (finding,) = [f for f in findings if f.status != "ok"]
    assert words in finding.message
    assert finding.fix


@pytest.mark.parametrize(
    "secret", ["twelve-chars", "x7#Qp", "Testing123", "abababababababababab", RADIUS_SECRET]
)
def test_no_finding_repeats_a_secret(secret: str) -> None:
    """Messages and fixes never contain the shared secret they judge."""
    config = config_with(
        good_client(name="a", secret=secret, require_message_authenticator=False, nas_timeout=1),
        good_client(name="b", address="10.0.0.0/8", secret=secret),
    )
    for finding in pure_findings(config):
        assert secret not in finding.message and secret not in (finding.fix or "")


@pytest.mark.parametrize(
    ("nas_timeout", "lower"),
    [(20, "or lower auth.push_timeout to 18 s or less"), (10, None)],
)
def test_push_budget_fix_names_the_timeouts_to_set(nas_timeout: float, lower: str | None) -> None:
    """The fix names the NAS timeout to set, and a lower push_timeout only if still usable."""
    config = config_with(
        good_client(nas_timeout=nas_timeout), auth={"push_timeout": 25, "push_poll_interval": 1}
    )
    (finding,) = doctor.check_push_budget(config)
    assert finding.fix is not None
    assert "to >= 27 s and radius.clients[0].nas_timeout with it" in finding.fix
    if lower is None:
        assert "lower auth.push_timeout" not in finding.fix
    else:
        assert finding.fix.endswith(lower)


def test_undeclared_nas_timeout_lists_vendor_defaults() -> None:
    """The warning for a missing nas_timeout carries the typical vendor defaults."""
    client = {k: v for k, v in good_client().items() if k != "nas_timeout"}
    (finding,) = doctor.check_push_budget(config_with(client))
    assert finding.fix is not None
    assert "FortiGate 5 s (config system global / set remoteauthtimeout)" in finding.fix
    assert "Palo Alto 3 s x 3 retries" in finding.fix


def test_auto_message_authenticator_is_accepted() -> None:
    """require_message_authenticator: auto raises no finding."""
    findings = doctor.check_message_authenticator(
        config_with(good_client(require_message_authenticator="auto"))
    )
    assert problems(findings) == []


# --- clock -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "ntp", "status", "words"),
    [
        (JUNE_2026, True, "ok", "NTP-synchronized"),
        (JUNE_2026, None, "ok", "NTP state unknown"),
        (JUNE_2026, False, "warning", "not synchronized by NTP"),
        (0.0, True, "error", "reads 1970-01-01 00:00:00 UTC, which cannot be right"),
        (calendar.timegm((2024, 1, 1, 0, 0, 0)), None, "error", "cannot be right"),
        (calendar.timegm((2150, 1, 1, 0, 0, 0)), True, "error", "cannot be right"),
    ],
)
def test_clock_sanity(now: float, ntp: bool | None, status: str, words: str) -> None:
    """A date before radius-bridge could exist, or far ahead, is an error; no NTP a warning."""
    finding = doctor.check_clock(now, ntp)
    assert (finding.check, finding.status) == ("clock", status)
    assert words in finding.message
    assert (finding.fix is None) == (status == "ok")


# --- listen addresses ------------------------------------------------------------------------


def listening_on(address: ListenAddress, metrics: ListenAddress | None = None) -> Config:
    config = config_with()
    return dataclasses.replace(
        config,
        radius=dataclasses.replace(config.radius, listen=(address,)),
        metrics=dataclasses.replace(config.metrics, listen=metrics),
    )


def test_free_listen_address_is_ok() -> None:
    """An address the kernel lets us bind is reported ok."""
    (finding,) = doctor.check_listen(listening_on(ListenAddress(host="127.0.0.1", port=0)))
    assert (finding.check, finding.status) == ("listen", "ok")


def test_listen_port_in_use_is_an_error() -> None:
    """A UDP port another socket holds is an error naming the other process and ss."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        (finding,) = doctor.check_listen(listening_on(ListenAddress(host="127.0.0.1", port=port)))
    assert (finding.check, finding.status) == ("listen", "error")
    assert "another process listens there" in finding.message
    assert finding.fix is not None
    assert f"ss -ulpn 'sport = :{port}'" in finding.fix and "radius.listen" in finding.fix


def test_metrics_port_in_use_is_an_error() -> None:
    """The metrics TCP address is checked too: a port another server listens on is an error."""
    radius = ListenAddress(host="127.0.0.1", port=0)
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        findings = doctor.check_listen(
            listening_on(radius, metrics=ListenAddress(host="127.0.0.1", port=port))
        )
    assert [(f.check, f.status) for f in findings] == [("listen", "ok"), ("listen", "error")]
    assert f"127.0.0.1:{port} (TCP, metrics.listen)" in findings[1].message
    assert findings[1].fix is not None and f"ss -tlpn 'sport = :{port}'" in findings[1].fix


def test_listen_address_not_on_this_machine_is_an_error() -> None:
    """An address no interface has (TEST-NET-1) is an error that says so."""
    address = ListenAddress(host="192.0.2.1", port=1812)
    (finding,) = doctor.check_listen(listening_on(address))
    assert (finding.check, finding.status) == ("listen", "error")
    assert "no interface of this machine has that address" in finding.message


def test_permission_denied_on_a_low_port_names_the_capability() -> None:
    """EACCES on a port below 1024 is an error whose fix grants CAP_NET_BIND_SERVICE."""
    denied = OSError(errno.EACCES, "Permission denied")
    listener = doctor.Listener(ListenAddress(host="0.0.0.0", port=812), "radius.listen")
    finding = doctor.listen_finding(listener, denied, privileged=False)
    assert (finding.check, finding.status) == ("listen", "error")
    assert finding.fix is not None
    assert "listen on 1812 (RFC 2865 §3)" in finding.fix
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in finding.fix


def test_low_port_bound_as_root_warns_about_the_service_user() -> None:
    """Binding a port below 1024 as root notes that the service needs the capability."""
    listener = doctor.Listener(ListenAddress(host="127.0.0.1", port=812), "radius.listen")
    as_root = doctor.listen_finding(listener, None, privileged=True)
    as_user = doctor.listen_finding(listener, None, privileged=False)
    assert as_root.status == as_user.status == "ok"
    assert "CAP_NET_BIND_SERVICE" in as_root.message
    assert "CAP_NET_BIND_SERVICE" not in as_user.message


# --- FIC -------------------------------------------------------------------------------------


def fic_finding(sim: FicSimulator, **fic: Any) -> Finding:
    config = bridge_config(sim.base_url, {"fic": fic})
    client = FicClient.from_config(config.fic)
    try:
        return doctor.check_fic(config, client)
    finally:
        client.close()


def test_fic_accepting_the_credentials_is_ok(sim: FicSimulator) -> None:
    """Good credentials: login and a harmless user read succeed, reported ok."""
    finding = fic_finding(sim)
    assert (finding.check, finding.status) == ("fic", "ok")
    assert sim.counters()["logins"] == 1
    assert sim.counters()["requests"].get("GET /user", 0) >= 1


def test_fic_refusing_the_client_secret_is_an_error(sim: FicSimulator) -> None:
    """A wrong client_secret is an error pointing at the FIC portal, without the secret."""
    finding = fic_finding(sim, client_secret="wrong-secret-value")
    assert (finding.check, finding.status) == ("fic", "error")
    assert "refused the client id or secret" in finding.message
    assert finding.fix is not None and "fic.client_secret" in finding.fix
    assert "wrong-secret-value" not in finding.message + finding.fix


def test_fic_unreachable_is_an_error(sim: FicSimulator) -> None:
    """Connections refused: an error that names the URL and what to check."""
    sim.refuse_connections()
    finding = fic_finding(sim)
    assert (finding.check, finding.status) == ("fic", "error")
    assert f"cannot reach FIC at {sim.base_url}" in finding.message
    assert finding.fix is not None and "fic.proxy" in finding.fix


def test_fic_answering_garbage_is_an_error(sim: FicSimulator) -> None:
    """Something at base_url that does not answer as FIC does is an error about base_url."""
    sim.inject_fault("malformed_json", endpoint="/login")
    finding = fic_finding(sim)
    assert (finding.check, finding.status) == ("fic", "error")
    assert finding.fix is not None and "fic.base_url" in finding.fix


def test_run_checks_covers_every_check_in_order(sim: FicSimulator) -> None:
    """run_checks gives FIC, clock, listen, then the configuration checks, I/O injected."""
    config = bridge_config(sim.base_url, {"radius": {"clients": [good_client()]}})
    findings = doctor.run_checks(config, clock=lambda: JUNE_2026, ntp_state=lambda: True)
    assert [f.check for f in findings] == [
        "fic",
        "clock",
        "listen",
        "secrets",
        "message_authenticator",
        "push_budget",
        "duplicate_window",
        "legacy_clients",
    ]
    assert problems(findings) == []


def test_legacy_clients_are_read_from_the_running_bridge(
    make_bridge: Callable[..., RunningBridge],
) -> None:
    """doctor names a client that the running bridge saw without Message-Authenticator."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    bridge = make_bridge(
        {
            "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
            "radius": {
                "clients": [
                    {**good_client(), "name": "old-pam", "require_message_authenticator": "auto"}
                ]
            },
        }
    )
    config = bridge.bridge.config
    assert [f.status for f in doctor.check_legacy_clients(config)] == ["ok"]
    packet = RadiusCodec().build_request(
        secret=good_client()["secret"].encode(),
        identifier=1,
        user_name="alice",
        password="123456",
        message_authenticator=False,
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.settimeout(5)
        nas.sendto(packet, bridge.address)
        nas.recvfrom(4096)
    (finding,) = doctor.check_legacy_clients(config)
    assert finding.status == "warning" and "'old-pam'" in finding.message


def test_legacy_clients_not_checked_without_a_running_bridge(sim: FicSimulator) -> None:
    """With metrics off, or nothing listening there, the check says it could not look."""
    off = bridge_config(sim.base_url, {"radius": {"clients": [good_client()]}})
    assert "metrics.listen is off" in doctor.check_legacy_clients(off)[0].message
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    silent = bridge_config(
        sim.base_url,
        {"metrics": {"listen": f"127.0.0.1:{port}"}, "radius": {"clients": [good_client()]}},
    )
    (finding,) = doctor.check_legacy_clients(silent)
    assert finding.status == "ok" and "not running" in finding.message


# --- command line ----------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """run_from_args configures logging for a terminal; put it back afterwards."""
    yield
    logs.reset_logging()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_config(directory: Path, sim: FicSimulator, **fic: Any) -> Path:
    data = {
        "fic": {
            "base_url": sim.base_url,
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            **fic,
        },
        "radius": {"listen": [f"127.0.0.1:{free_udp_port()}"], "clients": [good_client()]},
        "auth": {"push_timeout": 4, "push_poll_interval": 0.5},
    }
    path = directory / "bridge.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(path: Path | str, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    return doctor.run_from_args(parser.parse_args(["--config", str(path), *extra]))


@pytest.mark.usefixtures("restore_logging")
def test_cli_exits_0_when_nothing_is_wrong(
    tmp_path: Path, sim: FicSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sound file against a working FIC: exit 0, one OK line per check, no FAIL."""
    assert run(write_config(tmp_path, sim)) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK    config: ")
    assert "OK    fic: " in out and "FAIL" not in out


@pytest.mark.usefixtures("restore_logging")
def test_cli_exits_1_and_shows_the_fix_when_a_check_fails(
    tmp_path: Path, sim: FicSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused client secret: exit 1, a FAIL line for fic with its fix indented below."""
    assert run(write_config(tmp_path, sim, client_secret="wrong-secret")) == 1
    lines = capsys.readouterr().out.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("FAIL  fic: "))
    assert lines[failed + 1].startswith("      fix: ")
    assert lines[-1] == "1 error, 0 warnings"


@pytest.mark.usefixtures("restore_logging")
def test_cli_json_lists_every_finding(
    tmp_path: Path, sim: FicSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints a list of {check, status, message, fix} and nothing else on stdout."""
    assert run(write_config(tmp_path, sim, client_secret="wrong-secret"), "--json") == 1
    findings = json.loads(capsys.readouterr().out)
    assert all(set(item) == {"check", "status", "message", "fix"} for item in findings)
    statuses = {item["check"]: item["status"] for item in findings}
    assert statuses["config"] == "ok" and statuses["fic"] == "error"
    assert {"clock", "listen", "secrets", "push_budget"} <= set(statuses)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    "content",
    [None, "fic: [unclosed\n", "fic: {client_id: a, client_secret: b}\nradius: {}\n"],
    ids=["missing-file", "bad-yaml", "no-clients"],
)
def test_cli_exits_78_when_the_configuration_does_not_load(
    tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that does not load: exit 78 and a config error, as JSON too."""
    path = tmp_path / "bridge.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert run(path, "--json") == 78
    (finding,) = json.loads(capsys.readouterr().out)
    assert (finding["check"], finding["status"]) == ("config", "error")
    assert str(path) in finding["message"]


@pytest.mark.usefixtures("restore_logging")
def test_cli_exits_78_for_an_unknown_reply_attribute(
    tmp_path: Path, sim: FicSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reply attributes are judged by the dictionary, as serve does: unknown -> exit 78."""
    path = write_config(tmp_path, sim)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["radius"]["clients"][0]["reply_attributes"] = {"No-Such-Attribute": "x"}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert run(path) == 78
    assert "FAIL  config: " in capsys.readouterr().out
