"""The UDP fuzz script, briefly: a few thousand mutated packets at a bridge process, nothing wrong.

The full run (``python tests/tools/fuzz_bridge.py --packets 1000000``) is outside the suite;
here the same code runs 5,000 packets, and its oracle and answer checks are shown to catch what
they are there to catch.
"""

from __future__ import annotations

import socket

import pytest
from bridge_harness import RADIUS_SECRET, RunningBridge
from conftest import LogStream
from tools.fuzz_bridge import (
    SECRET,
    Checker,
    Expect,
    FuzzReport,
    Options,
    Sent,
    judge,
    run_fuzz,
    sign,
    split,
)

from radius_bridge.model import AccessRequest, Decision, Outcome, Reason
from radius_bridge.radius import RadiusCodec

CODEC = RadiusCodec()


def valid_request(**extra: object) -> bytes:
    fields: dict[str, object] = {
        "identifier": 9,
        "authenticator": bytes(range(16)),
        "user_name": "fuzz-1",
        "password": "hunter2",
    }
    return CODEC.build_request(secret=SECRET, **{**fields, **extra})  # type: ignore[arg-type]


def reply_to(packet: bytes, outcome: Outcome) -> bytes:
    """The bridge codec's signed reply to ``packet`` with ``outcome``."""
    request: AccessRequest = CODEC.decode(
        packet, secret=SECRET, client_name="fuzz", require_message_authenticator=True
    )
    reason = Reason.OTP_ACCEPTED if outcome is Outcome.ACCEPT else Reason.OTP_REJECTED
    return CODEC.encode(request, Decision(outcome=outcome, reason=reason), secret=SECRET)


@pytest.mark.slow
def test_fuzz_run_finds_no_crash_no_bad_answer_and_every_liveness_check_passes() -> None:
    """5,000 mutated packets: the bridge stays up, answers only what deserves it, correctly."""
    report = run_fuzz(Options(packets=5_000, batch=1_000, seed=7))

    assert not report.crashed, report.text()
    assert report.exit_status == 0, report.text()
    assert report.bad_answers == 0, report.text()
    assert report.lost == 0, report.text()
    assert (report.liveness_checks, report.liveness_failures) == (5, 0), report.text()
    assert report.internal_errors == [], report.text()
    assert report.ok
    # Not vacuous: the stream held packets of each kind, and the bridge saw them as such.
    assert report.expected["answer"] > 500 and report.expected["silence"] > 2_000
    assert report.answers_by_outcome.get("accept", 0) > 0
    assert report.answers_by_outcome.get("challenge", 0) > 0
    assert report.retransmissions > 0
    drops = report.bridge_drops
    assert drops["malformed"] > 0 and drops["bad_message_authenticator"] > 0, drops
    assert drops["missing_message_authenticator"] > 0, drops


def test_oracle_reads_the_rfc_rules() -> None:
    """The oracle wants an answer for a valid request and silence for each kind of breakage."""
    valid = valid_request()
    parts = split(valid)  # Message-Authenticator first, then User-Name and User-Password
    head = valid[:20]

    def packet(*attributes: bytes, signed: bool = True) -> bytes:
        body = b"".join(attributes)
        built = head[:2] + (20 + len(body)).to_bytes(2, "big") + head[4:] + body
        return sign(built) if signed else built

    assert judge(valid) == (Expect.ANSWER, ())
    assert judge(packet(parts[1], parts[2], parts[0]))[0] is Expect.ANSWER  # moved, re-signed
    assert judge(valid + b"padding")[0] is Expect.ANSWER  # RFC 2865 §3: ignored past Length
    assert judge(packet(parts[1], parts[2], parts[0], signed=False))[0] is Expect.SILENCE
    assert judge(packet(parts[1], parts[2]))[0] is Expect.SILENCE  # no Message-Authenticator
    assert judge(packet(*parts, parts[1]))[0] is Expect.SILENCE  # two User-Names
    assert judge(packet(*parts, parts[0]))[0] is Expect.SILENCE  # two Message-Authenticators
    assert judge(packet(parts[0], parts[1], b"\x02\x13" + bytes(17)))[0] is Expect.SILENCE
    assert judge(valid[:-1])[0] is Expect.SILENCE  # Length past the datagram
    assert judge(bytes((4,)) + valid[1:])[0] is Expect.SILENCE  # not a request code
    huge = valid_request(proxy_states=[bytes(253)] * 15)
    assert judge(huge)[0] is Expect.EITHER  # its echo may not fit in a reply


@pytest.mark.parametrize(
    ("expect", "allowed", "answer", "problem"),
    [
        (Expect.SILENCE, {Outcome.REJECT}, Outcome.REJECT, "deserved silence"),
        (Expect.ANSWER, {Outcome.REJECT}, Outcome.ACCEPT, "where only"),
        (Expect.ANSWER, {Outcome.ACCEPT}, None, "answers nothing sent"),
    ],
)
def test_checker_reports_each_kind_of_bad_answer(
    expect: Expect, allowed: set[Outcome], answer: Outcome | None, problem: str
) -> None:
    """A reply to a packet that deserved none, a forbidden outcome, or a stray datagram count."""
    packet = valid_request()
    report = FuzzReport(seed=0)
    checker = Checker(CODEC, report)
    checker.track(Sent(packet, "test", expect, frozenset(allowed), (), 0.0, 0))
    if answer is None:
        stray = reply_to(valid_request(authenticator=bytes(16)), Outcome.ACCEPT)
        checker.reply(stray)
    else:
        checker.reply(reply_to(packet, answer))

    assert report.bad_answers == 1
    assert problem in report.problems[0]


def test_checker_accepts_a_right_answer_and_its_identical_repeat() -> None:
    """The right outcome, then the same bytes for a retransmission, is no bad answer."""
    packet = valid_request()
    report = FuzzReport(seed=0)
    checker = Checker(CODEC, report)
    sent = Sent(packet, "test", Expect.ANSWER, frozenset({Outcome.REJECT}), (), 0.0, 0, sends=2)
    checker.track(sent)
    reply = reply_to(packet, Outcome.REJECT)
    checker.reply(reply)
    checker.reply(reply)

    assert report.bad_answers == 0, report.problems
    assert sent.replies == [reply, reply]


def test_a_request_whose_proxy_state_echo_cannot_fit_is_dropped_without_an_internal_error(
    bridge: RunningBridge, log_stream: LogStream
) -> None:
    """A signed request whose Proxy-States leave no room for a reply is dropped cleanly."""
    packet = CODEC.build_request(
        secret=RADIUS_SECRET.encode(),
        identifier=1,
        user_name="fuzz-1",
        password="hunter2",
        proxy_states=[bytes(253)] * 15 + [bytes(200)],
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(packet, bridge.address)
        try:
            reply: bytes | None = sock.recv(8192)
        except TimeoutError:
            reply = None

    if reply is not None:  # answering is fine too, if the reply is a valid one
        CODEC.decode_reply(reply, secret=RADIUS_SECRET.encode(), request_authenticator=packet[4:20])
    assert log_stream.events("radius.request.failed") == []
    (drop,) = log_stream.events("radius.packet.dropped")
    assert drop["reason"] == "malformed" and "4096" in drop["detail"]
