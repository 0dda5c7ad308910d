"""End to end through PAM: pam_radius_auth, driven by pamtester, logs in against the bridge.

pam_radius_auth (Debian's libpam-radius-auth) is the RADIUS client of a Linux login, and like
many older NASes it never sends Message-Authenticator: these tests show what such a client
needs (``require_message_authenticator: false`` or ``"auto"``) and that the default refuses it.
pamtester reads PAM services only from /etc/pam.d, so each test writes a uniquely named service
file there and removes it afterwards; that needs root. Where root, pamtester or the module is
missing (``make tools`` installs them when it can), the tests are skipped and say why.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from bridge_harness import RADIUS_SECRET, RunningBridge
from conftest import LogStream

from radius_bridge.simulator import FicSimulator

RunBridge = Callable[..., RunningBridge]

PAM_SERVICE_DIR = Path("/etc/pam.d")
PAM_MODULE_GLOBS = (
    "/lib/*/security/pam_radius_auth.so",
    "/usr/lib/*/security/pam_radius_auth.so",
    "/lib/security/pam_radius_auth.so",
    "/usr/lib/security/pam_radius_auth.so",
    "/usr/lib64/security/pam_radius_auth.so",
)
# The NAS-Identifier pam_radius_auth sends (its client_id option), found again in the bridge log.
NAS_IDENTIFIER = "radius-bridge-pam-test"
# pam_radius_auth 2.0.0 waits 3 s per try when its configuration says 1 s (measured): the least.
PAM_MIN_TIMEOUT = 3


@dataclass(frozen=True)
class PamTools:
    pamtester: str
    module: str


# What pamtester prints for the PAM result codes these tests meet.
PAM_SUCCESS = "successfully authenticated"
PAM_AUTH_ERR = "Authentication failure"  # the server answered Access-Reject
PAM_AUTHINFO_UNAVAIL = "Authentication service cannot retrieve authentication info"  # no answer


@dataclass(frozen=True)
class PamResult:
    exit_status: int
    output: str

    def ended_with(self, outcome: str) -> bool:
        """Whether pamtester reported ``outcome`` (and the matching exit status)."""
        expected_status = 0 if outcome == PAM_SUCCESS else 1
        return self.exit_status == expected_status and f"pamtester: {outcome}" in self.output


@pytest.fixture(scope="module")
def pam_tools() -> PamTools:
    """pamtester and pam_radius_auth.so, or a skip that says which one is missing."""
    pamtester = shutil.which("pamtester")
    if pamtester is None:
        pytest.skip("pamtester is not installed (`make tools` installs it where apt-get works)")
    modules = sorted(path for pattern in PAM_MODULE_GLOBS for path in glob.glob(pattern))
    if not modules:
        pytest.skip(
            "pam_radius_auth.so is not installed (`make tools` installs libpam-radius-auth "
            "where apt-get works)"
        )
    if os.geteuid() != 0:
        pytest.skip("needs root: pamtester reads PAM services only from /etc/pam.d")
    return PamTools(pamtester=pamtester, module=modules[0])


@pytest.fixture
def pam_service(pam_tools: PamTools, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Writes a PAM service that asks the bridge at ``address``; returns the service name."""
    written: list[Path] = []

    def write(address: tuple[str, int], *, timeout: int = 10, options: str = "") -> str:
        host, port = address
        # pam_radius_auth.conf: "server[:port] secret [timeout]", timeout in seconds per try;
        # the module option retry=N resends the same packet N more times.
        conf = tmp_path / "pam_radius_auth.conf"
        conf.write_text(f"{host}:{port} {RADIUS_SECRET} {timeout}\n")
        conf.chmod(0o600)
        name = f"radius-bridge-test-{secrets.token_hex(6)}"
        service = PAM_SERVICE_DIR / name
        written.append(service)
        service.write_text(
            "# Written by radius-bridge's tests/test_pam_radius.py; removed when the test ends.\n"
            f"auth    required {pam_tools.module} conf={conf}"
            f" client_id={NAS_IDENTIFIER} {options}\n"
            "account required pam_permit.so\n"
        )
        return name

    yield write
    for service in written:
        with contextlib.suppress(FileNotFoundError):
            service.unlink()


def pamtester(pam_tools: PamTools, service: str, user: str, password: str) -> PamResult:
    """One ``pamtester authenticate``, the password typed at pam_radius_auth's prompt."""
    completed = subprocess.run(
        [pam_tools.pamtester, "-v", service, user, "authenticate"],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return PamResult(exit_status=completed.returncode, output=completed.stdout + completed.stderr)


def pamtester_dialogue(
    pam_tools: PamTools,
    service: str,
    user: str,
    password: str,
    *,
    then: Callable[[IO[str]], None],
) -> PamResult:
    """A ``pamtester authenticate`` whose later input ``then`` writes while it runs."""
    with subprocess.Popen(
        [pam_tools.pamtester, "-v", service, user, "authenticate"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(password + "\n")
            process.stdin.flush()
            then(process.stdin)
            process.stdin.close()
            output = process.stdout.read()
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    return PamResult(exit_status=process.returncode, output=output)


def pam_client(require_message_authenticator: Any) -> dict[str, Any]:
    """The bridge configuration of a client that is pam_radius_auth on this host."""
    client: dict[str, Any] = {"name": "pam", "address": "127.0.0.1/32", "secret": RADIUS_SECRET}
    if require_message_authenticator is not None:
        client["require_message_authenticator"] = require_message_authenticator
    return {"radius": {"clients": [client]}}


def completed(log_stream: LogStream) -> list[dict[str, Any]]:
    return log_stream.events("radius.request.completed")


@pytest.mark.parametrize("policy", [False, "auto"])
def test_otp_login_succeeds(
    make_bridge: RunBridge,
    pam_service: Callable[..., str],
    pam_tools: PamTools,
    sim: FicSimulator,
    log_stream: LogStream,
    policy: Any,
) -> None:
    """A right one-time code typed at the PAM prompt logs the user in through the bridge."""
    running = make_bridge(pam_client(policy))
    result = pamtester(pam_tools, pam_service(running.address), "alice", "123456")
    assert result.ended_with(PAM_SUCCESS), result.output
    [line] = completed(log_stream)
    assert (line["factor"], line["outcome"]) == ("otp", "accept")
    assert (line["client"], line["nas_identifier"]) == ("pam", NAS_IDENTIFIER)
    assert sim.counters()["code_checks"] == {"alice": 1}


def test_wrong_code_fails(
    make_bridge: RunBridge,
    pam_service: Callable[..., str],
    pam_tools: PamTools,
    log_stream: LogStream,
) -> None:
    """A wrong one-time code fails the PAM login."""
    running = make_bridge(pam_client(False))
    result = pamtester(pam_tools, pam_service(running.address), "alice", "654321")
    assert result.ended_with(PAM_AUTH_ERR), result.output
    assert [line["reason"] for line in completed(log_stream)] == ["otp_rejected"]


def test_push_login_succeeds_with_one_push(
    make_bridge: RunBridge,
    pam_service: Callable[..., str],
    pam_tools: PamTools,
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """The keyword "push" logs the user in once the push is approved; exactly one push is sent."""
    running = make_bridge(pam_client(False))
    result = pamtester(pam_tools, pam_service(running.address, timeout=10), "alice", "push")
    assert result.ended_with(PAM_SUCCESS), result.output
    assert sim.counters()["pushes"] == {"alice": 1}
    assert [line["reason"] for line in completed(log_stream)] == ["push_approved"]


def test_denied_push_fails(
    make_bridge: RunBridge, pam_service: Callable[..., str], pam_tools: PamTools
) -> None:
    """A push the user denies fails the PAM login."""
    running = make_bridge(pam_client(False))
    result = pamtester(pam_tools, pam_service(running.address), "bob", "push")
    assert result.ended_with(PAM_AUTH_ERR), result.output


def test_sms_code_answers_the_challenge_at_the_pam_prompt(
    make_bridge: RunBridge,
    pam_service: Callable[..., str],
    pam_tools: PamTools,
    sim: FicSimulator,
) -> None:
    """pam_radius_auth shows the challenge prompt; the SMS code typed there logs the user in."""
    running = make_bridge(pam_client(False))

    def type_the_code(stdin: IO[str]) -> None:
        deadline = time.monotonic() + 10
        while not sim.outbox("carol") and time.monotonic() < deadline:
            time.sleep(0.05)
        [code] = sim.outbox("carol")
        stdin.write(code + "\n")

    result = pamtester_dialogue(
        pam_tools, pam_service(running.address), "carol", "sms", then=type_the_code
    )
    assert result.ended_with(PAM_SUCCESS), result.output
    assert "Enter the code sent by SMS." in result.output


def test_default_client_refuses_pam_radius_without_message_authenticator(
    make_bridge: RunBridge,
    pam_service: Callable[..., str],
    pam_tools: PamTools,
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """With the default require_message_authenticator, pam_radius_auth's requests are dropped."""
    running = make_bridge(pam_client(None))
    result = pamtester(
        pam_tools, pam_service(running.address, timeout=PAM_MIN_TIMEOUT), "alice", "123456"
    )
    assert result.ended_with(PAM_AUTHINFO_UNAVAIL), result.output
    drops = {event["reason"] for event in log_stream.events("radius.packet.dropped")}
    assert drops == {"missing_message_authenticator"}
    assert sim.counters()["auth_posts"] == {}


def test_retransmission_while_a_push_waits_sends_no_second_push(
    make_bridge: RunBridge,
    pam_service: Callable[..., str],
    pam_tools: PamTools,
    sim: FicSimulator,
) -> None:
    """pam_radius_auth resending while the user has not yet approved causes no second push."""
    running = make_bridge({**pam_client(False), "auth": {"push_timeout": 10.0}})
    server = running.bridge.server

    def approve_after_a_retransmission(stdin: IO[str]) -> None:
        deadline = time.monotonic() + 10
        while server.duplicates_dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        [push] = sim.auths("erin")  # erin never answers a push herself
        assert sim.approve(push["authid"])

    service = pam_service(running.address, timeout=PAM_MIN_TIMEOUT, options="retry=1")
    result = pamtester_dialogue(
        pam_tools, service, "erin", "push", then=approve_after_a_retransmission
    )
    assert server.duplicates_dropped == 1  # the resent request reached the bridge and waited
    assert result.ended_with(PAM_SUCCESS), result.output
    assert sim.counters()["pushes"] == {"erin": 1}
