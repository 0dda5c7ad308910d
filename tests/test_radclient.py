"""End to end with FreeRADIUS' radclient: a third-party NAS-side client against the running bridge.

Each test starts a real bridge (UDP on 127.0.0.1, port 0) in front of the FIC simulator and runs
Debian's ``radclient`` (freeradius-utils 3.2.1) as a subprocess, the request on its stdin. The
replies are judged from radclient's ``-x`` output, not from its exit status alone: radclient
3.2.1 cannot require Message-Authenticator in replies, so every reply is checked to carry it as
its first attribute (pyrad-notes §3.3), and radclient's own dictionary decodes the attributes
independently of ours. radclient is required: without it these tests fail and say how to get it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from bridge_harness import RADIUS_SECRET, RunningBridge
from conftest import LogStream

from radius_bridge.simulator import FicSimulator

RunBridge = Callable[..., RunningBridge]

# Seconds radclient waits for a reply it expects. Requests that must go unanswered use a short
# wait instead: the bridge answers in milliseconds, and each of those tests also asserts the
# log line that says why the bridge dropped the request, so a slow answer cannot pass as a drop.
REPLY_WAIT = 5.0
DROP_WAIT = 1.0

_RECEIVED = re.compile(r"^Received (Access-\w+) Id \d+ ")
_ATTRIBUTE = re.compile(r"^\t([\w-]+) = (.*)$")


@dataclass(frozen=True)
class Reply:
    """What radclient printed about the one reply it received (``code`` None: none came)."""

    code: str | None
    attributes: list[tuple[str, str]]
    output: str
    exit_status: int

    def values(self, name: str) -> list[str]:
        return [value for attribute, value in self.attributes if attribute == name]

    def value(self, name: str) -> str:
        found = self.values(name)
        assert len(found) == 1, f"expected one {name} in the reply:\n{self.output}"
        return found[0]


@pytest.fixture(scope="module")
def radclient_path() -> str:
    path = shutil.which("radclient")
    if path is None:
        pytest.fail(
            "radclient is required for these tests and is not installed: run `make tools` "
            "(it installs Debian's freeradius-utils) or `apt-get install freeradius-utils`"
        )
    return path


@pytest.fixture
def radclient(radclient_path: str) -> Callable[..., Reply]:
    """Sends one request with radclient and parses its ``-x`` output."""

    def send(
        address: tuple[str, int],
        *lines: str,
        secret: str = RADIUS_SECRET,
        wait: float = REPLY_WAIT,
    ) -> Reply:
        host, port = address
        completed = subprocess.run(
            [radclient_path, "-x", "-r", "1", "-t", str(wait), f"{host}:{port}", "auth", secret],
            input=", ".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=wait + 10,
            check=False,
        )
        output = completed.stdout + completed.stderr
        return parse_reply(output, completed.returncode)

    return send


def parse_reply(output: str, exit_status: int) -> Reply:
    """The code and the attributes (in order) of the reply shown after ``Received ...``."""
    code: str | None = None
    attributes: list[tuple[str, str]] = []
    for line in output.splitlines():
        received = _RECEIVED.match(line)
        if received:
            assert code is None, f"radclient received two replies:\n{output}"
            code = received.group(1)
            continue
        if code is not None:
            attribute = _ATTRIBUTE.match(line)
            if attribute is None:
                break
            attributes.append((attribute.group(1), attribute.group(2)))
    reply = Reply(code=code, attributes=attributes, output=output, exit_status=exit_status)
    if code is not None:
        # RFC 3579 §3.2 and the BlastRADIUS advice: the reply is signed, with the signature first.
        assert attributes and attributes[0][0] == "Message-Authenticator", output
        assert re.fullmatch(r"0x[0-9a-f]{32}", attributes[0][1]), output
        assert "invalid Message-Authenticator" not in output, output
    return reply


def request(user: str, password: str | None = None, *extra: str) -> list[str]:
    """The input lines of an Access-Request signed with Message-Authenticator."""
    lines = [f'User-Name = "{user}"']
    if password is not None:
        lines.append(f'User-Password = "{password}"')
    return [*lines, *extra, "Message-Authenticator = 0x00"]


def completed(log_stream: LogStream) -> list[dict[str, Any]]:
    return log_stream.events("radius.request.completed")


def dropped_reasons(log_stream: LogStream) -> list[str]:
    return [event["reason"] for event in log_stream.events("radius.packet.dropped")]


def assert_no_reply(reply: Reply) -> None:
    assert reply.code is None, reply.output
    assert "No reply from server" in reply.output, reply.output
    assert reply.exit_status != 0


def challenge_state(reply: Reply) -> str:
    """The State of an Access-Challenge, as radclient prints it (``0x`` and hex)."""
    assert reply.code == "Access-Challenge", reply.output
    state = reply.value("State")
    assert re.fullmatch(r"0x(?:[0-9a-f]{2})+", state), reply.output
    return state


# --- the output parser these tests rely on -----------------------------------------------------

SAMPLE_OUTPUT = """\
Sent Access-Request Id 7 from 0.0.0.0:40000 to 127.0.0.1:1812 length 63
\tUser-Name = "alice"
\tMessage-Authenticator = 0x00
Received Access-Accept Id 7 from 127.0.0.1:1812 to 127.0.0.1:40000 length 55
{attributes}
"""
SIGNATURE = "\tMessage-Authenticator = 0x1152cc11825e57a1936b8af9dd501946"
GROUP = '\tFortinet-Group-Name = "vpn-users"'


def test_parser_reads_the_reply_attributes_in_order() -> None:
    """The parser returns the received code and attributes, not the sent ones."""
    reply = parse_reply(SAMPLE_OUTPUT.format(attributes=f"{SIGNATURE}\n{GROUP}"), 0)
    assert reply.code == "Access-Accept"
    assert reply.attributes == [
        ("Message-Authenticator", "0x1152cc11825e57a1936b8af9dd501946"),
        ("Fortinet-Group-Name", '"vpn-users"'),
    ]


@pytest.mark.parametrize("attributes", [GROUP, f"{GROUP}\n{SIGNATURE}", ""])
def test_parser_refuses_a_reply_not_signed_first(attributes: str) -> None:
    """A reply without Message-Authenticator as its first attribute fails the test using it."""
    with pytest.raises(AssertionError):
        parse_reply(SAMPLE_OUTPUT.format(attributes=attributes), 0)


# --- one-time codes -----------------------------------------------------------------------------


def test_good_code_is_accepted_with_the_client_reply_attributes(
    bridge: RunningBridge, radclient: Callable[..., Reply], sim: FicSimulator
) -> None:
    """A right OTP gets Access-Accept, signed first, carrying the decoded Fortinet-Group-Name."""
    reply = radclient(bridge.address, *request("alice", "123456"))
    assert reply.code == "Access-Accept"
    assert reply.exit_status == 0
    assert reply.value("Fortinet-Group-Name") == '"vpn-users"'
    assert sim.counters()["code_checks"] == {"alice": 1}


def test_wrong_code_is_rejected_with_a_reply_message(
    bridge: RunningBridge, radclient: Callable[..., Reply], log_stream: LogStream
) -> None:
    """A wrong OTP gets Access-Reject with a message for the user and no group attribute."""
    reply = radclient(bridge.address, *request("alice", "654321"))
    assert reply.code == "Access-Reject"
    assert reply.value("Reply-Message") == '"Wrong code. Try again."'
    assert reply.values("Fortinet-Group-Name") == []
    [line] = completed(log_stream)
    assert (line["outcome"], line["reason"]) == ("reject", "otp_rejected")
    assert "654321" not in log_stream.getvalue()


def test_unknown_user_is_rejected(
    bridge: RunningBridge, radclient: Callable[..., Reply], log_stream: LogStream
) -> None:
    """A user FIC does not know is rejected with a message naming the cause."""
    reply = radclient(bridge.address, *request("zoe", "123456"))
    assert reply.code == "Access-Reject"
    assert "No MFA account" in reply.value("Reply-Message")
    assert [line["reason"] for line in completed(log_stream)] == ["unknown_user"]


# --- push ---------------------------------------------------------------------------------------


def test_approved_push_is_accepted(
    bridge: RunningBridge, radclient: Callable[..., Reply], sim: FicSimulator
) -> None:
    """The keyword "push" sends one push; once it is approved the login is accepted."""
    reply = radclient(bridge.address, *request("alice", "push"))
    assert reply.code == "Access-Accept"
    assert reply.value("Fortinet-Group-Name") == '"vpn-users"'
    assert sim.counters()["pushes"] == {"alice": 1}


def test_denied_push_is_rejected(
    bridge: RunningBridge, radclient: Callable[..., Reply], sim: FicSimulator
) -> None:
    """A push the user denies ends in Access-Reject saying so."""
    reply = radclient(bridge.address, *request("bob", "push"))
    assert reply.code == "Access-Reject"
    assert reply.value("Reply-Message") == '"Push denied on your phone."'
    assert sim.counters()["pushes"] == {"bob": 1}


def test_unanswered_push_is_rejected_at_the_push_timeout(
    make_bridge: RunBridge, radclient: Callable[..., Reply], log_stream: LogStream
) -> None:
    """A push nobody answers is rejected once push_timeout has passed, within the NAS's wait."""
    running = make_bridge({"auth": {"push_timeout": 1.5}})
    reply = radclient(running.address, *request("erin", "push"))
    assert reply.code == "Access-Reject"
    assert "not approved in time" in reply.value("Reply-Message")
    [line] = completed(log_stream)
    assert line["reason"] == "push_timeout"
    assert 1400 <= line["duration_ms"] < REPLY_WAIT * 1000


# --- codes sent by SMS or e-mail: the Access-Challenge round trip -------------------------------


@pytest.mark.parametrize(
    ("user", "keyword", "prompt"),
    [("carol", "sms", "SMS"), ("dave", "email", "email")],
)
def test_code_sent_by_keyword_completes_the_challenge_round_trip(
    bridge: RunningBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    user: str,
    keyword: str,
    prompt: str,
) -> None:
    """The keyword gets a challenge with State; the code sent, returned with it, is accepted."""
    first = radclient(bridge.address, *request(user, keyword))
    state = challenge_state(first)
    assert first.value("Reply-Message") == f'"Enter the code sent by {prompt}."'
    [code] = sim.outbox(user)
    second = radclient(bridge.address, *request(user, code, f"State = {state}"))
    assert second.code == "Access-Accept"
    assert second.value("Fortinet-Group-Name") == '"vpn-users"'
    assert second.values("State") == []
    assert sim.counters()["code_checks"] == {user: 1}


def test_empty_password_of_a_hardware_token_user_is_challenged_for_a_code(
    bridge: RunningBridge, radclient: Callable[..., Reply], sim: FicSimulator
) -> None:
    """An empty password from a FortiToken (hardware) user gets a challenge, then the code works."""
    first = radclient(bridge.address, *request("frank", ""))
    state = challenge_state(first)
    assert first.value("Reply-Message") == '"Enter your one-time code."'
    assert sim.counters()["pushes"] == {}
    second = radclient(bridge.address, *request("frank", "123456", f"State = {state}"))
    assert second.code == "Access-Accept"


def flip_one_byte(state: str) -> str:
    """The State with one byte in its middle changed (``0x`` prefix kept)."""
    raw = bytearray.fromhex(state[2:])
    raw[len(raw) // 2] ^= 0x01
    return "0x" + raw.hex()


def test_forged_state_is_rejected_without_checking_the_code(
    bridge: RunningBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """A State with one byte changed is refused, and the right code is never sent to FIC."""
    state = challenge_state(radclient(bridge.address, *request("carol", "sms")))
    [code] = sim.outbox("carol")
    forged = radclient(bridge.address, *request("carol", code, f"State = {flip_one_byte(state)}"))
    assert forged.code == "Access-Reject"
    assert "not recognised" in forged.value("Reply-Message")
    assert sim.counters()["code_checks"] == {}
    assert completed(log_stream)[-1]["reason"] == "state_invalid"


def test_replayed_state_is_rejected(
    bridge: RunningBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """A State already redeemed is refused the second time, even with the right code."""
    state = challenge_state(radclient(bridge.address, *request("carol", "sms")))
    [code] = sim.outbox("carol")
    answer = request("carol", code, f"State = {state}")
    assert radclient(bridge.address, *answer).code == "Access-Accept"
    replay = radclient(bridge.address, *answer)
    assert replay.code == "Access-Reject"
    assert "already used" in replay.value("Reply-Message")
    assert sim.counters()["code_checks"] == {"carol": 1}
    assert completed(log_stream)[-1]["reason"] == "state_replayed"


# --- requests the bridge must not answer --------------------------------------------------------


def test_unknown_client_gets_no_reply(
    make_bridge: RunBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """A request from an address that is no configured client is dropped unanswered."""
    only_other = {"name": "other", "address": "127.0.0.2/32", "secret": RADIUS_SECRET}
    running = make_bridge({"radius": {"clients": [only_other]}})
    reply = radclient(running.address, *request("alice", "123456"), wait=DROP_WAIT)
    assert_no_reply(reply)
    assert dropped_reasons(log_stream) == ["unknown_client"]
    assert sim.counters()["auth_posts"] == {}


def test_wrong_secret_gets_no_reply(
    bridge: RunningBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """A request signed with another secret fails its Message-Authenticator and is dropped."""
    reply = radclient(
        bridge.address, *request("alice", "123456"), secret="not-the-secret", wait=DROP_WAIT
    )
    assert_no_reply(reply)
    assert dropped_reasons(log_stream) == ["bad_message_authenticator"]
    assert sim.counters()["auth_posts"] == {}


def test_request_without_message_authenticator_gets_no_reply(
    bridge: RunningBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """By default a request without Message-Authenticator is dropped (BlastRADIUS)."""
    unsigned = ['User-Name = "alice"', 'User-Password = "123456"']
    reply = radclient(bridge.address, *unsigned, wait=DROP_WAIT)
    assert_no_reply(reply)
    assert dropped_reasons(log_stream) == ["missing_message_authenticator"]
    assert sim.counters()["auth_posts"] == {}


# --- protocol details ---------------------------------------------------------------------------


def test_proxy_state_attributes_are_echoed_in_order(
    bridge: RunningBridge, radclient: Callable[..., Reply]
) -> None:
    """Both Proxy-State attributes come back unchanged and in order (RFC 2865 §5.33)."""
    reply = radclient(
        bridge.address,
        *request("alice", "123456", "Proxy-State = 0x01aa", "Proxy-State = 0x02bbcc"),
    )
    assert reply.code == "Access-Accept"
    assert reply.values("Proxy-State") == ["0x01aa", "0x02bbcc"]


def test_chap_is_rejected_without_calling_fic(
    bridge: RunningBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """CHAP cannot carry a one-time code, so it is rejected with a message and FIC is not asked."""
    chap = ['User-Name = "alice"', 'CHAP-Password = "123456"', "Message-Authenticator = 0x00"]
    reply = radclient(bridge.address, *chap)
    # radclient turned the cleartext into a CHAP response (1 octet CHAP Id + 16 octets of MD5).
    assert re.search(r"^\tCHAP-Password = 0x[0-9a-f]{34}$", reply.output, re.MULTILINE)
    assert reply.code == "Access-Reject"
    assert "cannot carry an MFA code" in reply.value("Reply-Message")
    assert sim.counters()["auth_posts"] == {}
    [line] = completed(log_stream)
    assert (line["reason"], line["scheme"]) == ("unsupported_scheme", "chap")


# --- FIC unreachable ----------------------------------------------------------------------------


def test_fic_down_in_secure_mode_rejects(
    bridge: RunningBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """With FIC refusing connections, failmode secure rejects and tells the user why."""
    sim.refuse_connections()
    reply = radclient(bridge.address, *request("alice", "123456"))
    assert reply.code == "Access-Reject"
    assert reply.value("Reply-Message") == '"MFA service unavailable; try again later."'
    assert [line["reason"] for line in completed(log_stream)] == ["fic_unavailable"]


def test_fic_down_in_open_mode_accepts(
    make_bridge: RunBridge,
    radclient: Callable[..., Reply],
    sim: FicSimulator,
    log_stream: LogStream,
) -> None:
    """With FIC refusing connections, failmode open accepts, with the client's attributes."""
    running = make_bridge({"auth": {"failmode": "open"}})
    sim.refuse_connections()
    reply = radclient(running.address, *request("alice", "123456"))
    assert reply.code == "Access-Accept"
    assert reply.value("Fortinet-Group-Name") == '"vpn-users"'
    [line] = log_stream.events("radius.request.completed")
    assert (line["reason"], line["level"]) == ("fic_unavailable_failopen", "warning")
