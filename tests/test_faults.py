"""FIC fault injection, end to end: a real bridge on UDP against the simulator with faults.

Each fault (5xx, reset, hang, refused connection, 429 with and without Retry-After, malformed
JSON, token expiry during a push, slow answers either side of the read timeout, FIC down and
back) is checked for the answer per failmode, the time it took against a bound computed from the
configured timeouts, the reason on the completed log line, and that nothing is left behind: no
pending push, no request task, no shared FIC call, and the next ordinary login is answered at
once. The bridge runs with short timeouts and a pool of two FIC workers, so stuck work shows.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bridge_harness import RunningBridge
from conftest import LogStream
from pyrad import packet
from test_bridge import completed, login, messages, wait_until

from radius_bridge.simulator import FicSimulator, SimUser

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
PUSH_TIMEOUT = 2.0
POLL_INTERVAL = 0.2
# fic.FicClient gives every call connect + read timeout as its whole budget, login included.
CALL_BUDGET = CONNECT_TIMEOUT + READ_TIMEOUT
# A push ends at its deadline, or when the poll round under way at that moment ends.
PUSH_BUDGET = PUSH_TIMEOUT + POLL_INTERVAL + CALL_BUDGET
# What a loaded two-core machine may add to a bound (threads, UDP, logging).
SLACK = 0.6
# An ordinary login on a bridge with nothing stuck takes a few milliseconds.
PROMPT = 0.5
# The RADIUS client waits well past every bound, so a slow answer fails a bound, not a socket.
CLIENT_WAIT = PUSH_BUDGET + 3.0

UNAVAILABLE = "MFA service unavailable; try again later."
BUSY = "MFA service busy; try again in a few minutes."
FIC_ERROR = "MFA service error; contact your administrator."
FAILMODES = ["secure", "open"]


@pytest.fixture
def fault_bridge(
    make_bridge: Callable[..., RunningBridge],
) -> Callable[..., RunningBridge]:
    """Starts a bridge with short FIC timeouts, two FIC workers and the given failmode."""

    def make(failmode: str = "secure", **auth: Any) -> RunningBridge:
        return make_bridge(
            {
                "fic": {
                    "connect_timeout": CONNECT_TIMEOUT,
                    "read_timeout": READ_TIMEOUT,
                    "pool_size": 2,
                },
                "auth": {
                    "push_timeout": PUSH_TIMEOUT,
                    "push_poll_interval": POLL_INTERVAL,
                    "failmode": failmode,
                    **auth,
                },
            }
        )

    return make


@pytest.fixture
def background() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A thread for a login that must run while the test changes FIC underneath it."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def timed_login(
    bridge: RunningBridge, user: str, password: str | None, **attributes: Any
) -> tuple[packet.Packet, float]:
    """One login (sent once, never retransmitted) and the seconds until its answer."""
    started = time.monotonic()
    reply = login(bridge, user, password, timeout=CLIENT_WAIT, **attributes)
    return reply, time.monotonic() - started


def last_line(log_stream: LogStream) -> dict[str, Any]:
    return completed(log_stream)[-1]


def assert_nothing_leaks(bridge: RunningBridge, sim: FicSimulator, log_stream: LogStream) -> None:
    """No pending push, request task or shared FIC call is left, and the next login is prompt."""
    inner = bridge.bridge
    wait_until(lambda: bridge.in_loop(lambda: inner.server.in_progress) == 0, timeout=1.0)
    assert bridge.in_loop(lambda: len(inner.pending)) == 0
    assert bridge.in_loop(lambda: len(inner.service._in_flight)) == 0
    sim.clear_faults()
    sim.accept_connections()
    reply, elapsed = timed_login(bridge, "alice", "123456")
    assert reply.code == packet.AccessAccept
    assert elapsed < PROMPT, f"the login after the fault took {elapsed:.2f} s"
    assert last_line(log_stream)["reason"] == "otp_accepted"


def expected_answer(failmode: str) -> tuple[int, str]:
    """Code and reason when FIC is unreachable before anything was sent."""
    if failmode == "open":
        return packet.AccessAccept, "fic_unavailable_failopen"
    return packet.AccessReject, "fic_unavailable"


# -- POST /auth fails once the code or push request may have reached FIC ---------------------

LOGINS = {"otp": ("alice", "123456"), "push": ("alice", "push")}


@pytest.mark.parametrize("failmode", FAILMODES)
@pytest.mark.parametrize("factor", ["otp", "push"])
@pytest.mark.parametrize(
    ("kind", "delay", "min_seconds", "detail"),
    [
        ("500", None, 0.0, "HTTP 500"),
        ("502", None, 0.0, "HTTP 502"),
        ("503", None, 0.0, "HTTP 503"),
        ("reset", None, 0.0, "connection to FIC failed"),
        # Held past the read timeout: the bridge gives up at READ_TIMEOUT, FIC acts later.
        ("hang", READ_TIMEOUT + 1.0, READ_TIMEOUT, "no answer from FIC"),
        # A slow answer just past the read timeout is the same as a hang.
        ("slow", READ_TIMEOUT + 0.3, READ_TIMEOUT, "no answer from FIC"),
    ],
)
def test_post_auth_failure_after_sending_rejects_in_both_failmodes(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    failmode: str,
    factor: str,
    kind: str,
    delay: float | None,
    min_seconds: float,
    detail: str,
) -> None:
    """A 5xx, reset, hang or late answer to POST /auth is a Reject even in failmode open,
    because the code or push may already have reached FIC; it comes within the call budget."""
    bridge = fault_bridge(failmode)
    sim.inject_fault(kind, endpoint="POST /auth", count=1, delay=delay)
    user, password = LOGINS[factor]
    reply, elapsed = timed_login(bridge, user, password)
    assert reply.code == packet.AccessReject
    assert messages(reply) == [UNAVAILABLE]
    assert min_seconds <= elapsed < CALL_BUDGET + SLACK
    line = last_line(log_stream)
    assert line["reason"] == "fic_unavailable" and line["factor"] == factor
    assert "POST /auth" in line["fic_error"] and detail in line["fic_error"]
    assert_nothing_leaks(bridge, sim, log_stream)


@pytest.mark.parametrize(
    ("delay", "code", "reason"),
    [
        (READ_TIMEOUT - 0.3, packet.AccessAccept, "otp_accepted"),
        (READ_TIMEOUT + 0.3, packet.AccessReject, "fic_unavailable"),
    ],
)
def test_slow_code_check_either_side_of_the_read_timeout(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    delay: float,
    code: int,
    reason: str,
) -> None:
    """A code check answered just inside the read timeout is accepted; just outside, rejected."""
    bridge = fault_bridge()
    sim.inject_fault("slow", endpoint="POST /auth", count=1, delay=delay)
    reply, elapsed = timed_login(bridge, "alice", "123456")
    assert reply.code == code
    assert min(delay, READ_TIMEOUT) <= elapsed < min(delay, READ_TIMEOUT) + SLACK
    assert last_line(log_stream)["reason"] == reason
    assert_nothing_leaks(bridge, sim, log_stream)


# -- failures before anything was sent: the failmode decides ----------------------------------

EMPTY_PASSWORD_LOGINS = {
    "otp": ("alice", "123456"),
    "push": ("alice", "push"),
    "preview": ("alice", ""),  # an empty password asks FIC's preview first
}


@pytest.mark.parametrize("failmode", FAILMODES)
@pytest.mark.parametrize("warm", [False, True], ids=["no_token", "token_cached"])
@pytest.mark.parametrize("flow", ["otp", "push", "preview"])
def test_refused_connection_follows_the_failmode(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    failmode: str,
    warm: bool,
    flow: str,
) -> None:
    """A refused connection sent nothing: secure rejects, open accepts with a warning, at once."""
    bridge = fault_bridge(failmode)
    if warm:  # a pooled connection and a cached token, both of which the outage must defeat
        assert timed_login(bridge, "alice", "123456")[0].code == packet.AccessAccept
    before = sim.counters()
    sim.refuse_connections()
    user, password = EMPTY_PASSWORD_LOGINS[flow]
    reply, elapsed = timed_login(bridge, user, password)
    code, reason = expected_answer(failmode)
    assert reply.code == code
    assert elapsed < CALL_BUDGET + SLACK
    line = last_line(log_stream)
    assert line["reason"] == reason
    assert line["level"] == ("warning" if failmode == "open" else "info")
    assert "connection to FIC failed" in line["fic_error"]
    after = sim.counters()
    assert (after["pushes"], after["code_checks"]) == (before["pushes"], before["code_checks"])
    assert_nothing_leaks(bridge, sim, log_stream)


@pytest.mark.parametrize(
    ("failmode", "kind", "delay", "code", "reason"),
    [
        ("secure", "slow", READ_TIMEOUT - 0.3, packet.AccessChallenge, "challenge_issued"),
        ("secure", "slow", READ_TIMEOUT + 0.3, packet.AccessReject, "fic_unavailable"),
        ("open", "slow", READ_TIMEOUT + 0.3, packet.AccessAccept, "fic_unavailable_failopen"),
        ("secure", "500", None, packet.AccessReject, "fic_unavailable"),
        ("open", "500", None, packet.AccessAccept, "fic_unavailable_failopen"),
    ],
)
def test_preview_failure_follows_the_failmode(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    failmode: str,
    kind: str,
    delay: float | None,
    code: int,
    reason: str,
) -> None:
    """Preview sends the user nothing: when it fails or comes too late, the failmode decides;
    a slow preview inside the read timeout still leads to the challenge."""
    bridge = fault_bridge(failmode)
    sim.inject_fault(kind, endpoint="POST /auth/preview", count=1, delay=delay)
    reply, elapsed = timed_login(bridge, "frank", "")  # hardware token: challenged after preview
    assert reply.code == code
    floor = min(delay, READ_TIMEOUT) if delay is not None else 0.0
    assert floor <= elapsed < floor + SLACK
    assert last_line(log_stream)["reason"] == reason
    assert_nothing_leaks(bridge, sim, log_stream)


def test_fic_answering_503_to_everything_fails_open_for_a_code(
    fault_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """FIC down behind its load balancer (503 everywhere) before the bridge holds a token: the
    code was never sent, so failmode open accepts, as it does for an empty password."""
    bridge = fault_bridge("open")
    sim.inject_fault("503")
    reply, elapsed = timed_login(bridge, "alice", "123456")
    assert elapsed < CALL_BUDGET + SLACK
    assert sim.counters()["code_checks"] == {}
    assert last_line(log_stream)["reason"] == "fic_unavailable_failopen"
    assert reply.code == packet.AccessAccept


def test_fic_down_then_back(
    fault_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """While FIC refuses connections logins are rejected at once; the first one after it comes
    back is accepted at once."""
    bridge = fault_bridge()
    assert timed_login(bridge, "alice", "123456")[0].code == packet.AccessAccept
    sim.refuse_connections()
    for _ in range(2):
        reply, elapsed = timed_login(bridge, "alice", "123456")
        assert reply.code == packet.AccessReject and elapsed < CALL_BUDGET + SLACK
        assert last_line(log_stream)["reason"] == "fic_unavailable"
    sim.accept_connections()
    assert_nothing_leaks(bridge, sim, log_stream)


# -- throttling ---------------------------------------------------------------------------------

THROTTLED = {
    "otp": ("POST /auth", "alice", "123456"),
    "push": ("POST /auth", "alice", "push"),
    "preview": ("POST /auth/preview", "alice", ""),
}


@pytest.mark.parametrize("failmode", FAILMODES)
@pytest.mark.parametrize("retry_after", [None, 60.0], ids=["no_retry_after", "retry_after_60"])
@pytest.mark.parametrize("flow", ["otp", "push", "preview"])
def test_throttle_rejects_at_once_and_never_fails_open(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    failmode: str,
    retry_after: float | None,
    flow: str,
) -> None:
    """A 429 is a Reject in both failmodes, answered at once rather than after Retry-After."""
    bridge = fault_bridge(failmode)
    endpoint, user, password = THROTTLED[flow]
    sim.inject_fault("429", endpoint=endpoint, count=1, retry_after=retry_after)
    reply, elapsed = timed_login(bridge, user, password)
    assert reply.code == packet.AccessReject
    assert messages(reply) == [BUSY]
    assert elapsed < CALL_BUDGET + SLACK
    line = last_line(log_stream)
    assert line["reason"] == "rate_limited" and "HTTP 429" in line["fic_error"]
    assert sim.counters()["pushes"] == {} and sim.counters()["code_checks"] == {}
    assert_nothing_leaks(bridge, sim, log_stream)


def test_throttled_poll_waits_for_retry_after(
    fault_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """After FIC throttles the batch poll with Retry-After: 5, the poller does not ask again
    within those 5 s (trial accounts are disabled beyond 240 requests in 5 minutes), and the
    push is still answered by its deadline."""
    bridge = fault_bridge()
    sim.inject_fault("429", endpoint="GET /auth", retry_after=5.0)
    reply, elapsed = timed_login(bridge, "erin", "push")  # erin never answers her phone
    assert reply.code == packet.AccessReject and elapsed < PUSH_BUDGET + SLACK
    assert_nothing_leaks(bridge, sim, log_stream)
    assert sim.counters()["requests"].get("GET /auth", 0) <= 1


# -- malformed answers --------------------------------------------------------------------------


@pytest.mark.parametrize("failmode", FAILMODES)
@pytest.mark.parametrize(
    ("endpoint", "user", "password"),
    [
        ("POST /auth", "alice", "push"),  # push started, but no authid can be read
        ("POST /auth/preview", "frank", ""),
    ],
)
def test_unreadable_answer_rejects_in_both_failmodes(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    failmode: str,
    endpoint: str,
    user: str,
    password: str,
) -> None:
    """A 200 with truncated JSON where the bridge needs the body is a Reject (fic_error) even in
    failmode open: FIC is reachable, so failing open would only hide a real problem."""
    bridge = fault_bridge(failmode)
    sim.inject_fault("malformed_json", endpoint=endpoint, count=1)
    reply, elapsed = timed_login(bridge, user, password)
    assert reply.code == packet.AccessReject
    assert messages(reply) == [FIC_ERROR]
    assert elapsed < CALL_BUDGET + SLACK
    line = last_line(log_stream)
    assert line["reason"] == "fic_error" and endpoint in line["fic_error"]
    assert_nothing_leaks(bridge, sim, log_stream)


def test_unreadable_body_of_a_verified_code_still_accepts(
    fault_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """A code check is judged by its status alone (fic-api.md §5.2: the 200 body is not relied
    on), so a 200 with truncated JSON is an Accept."""
    bridge = fault_bridge()
    sim.inject_fault("malformed_json", endpoint="POST /auth", count=1)
    reply, elapsed = timed_login(bridge, "alice", "123456")
    assert reply.code == packet.AccessAccept and elapsed < PROMPT
    assert last_line(log_stream)["reason"] == "otp_accepted"
    assert_nothing_leaks(bridge, sim, log_stream)


# -- faults while a push is pending -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "count", "delay", "retry_after"),
    [
        ("500", 4, None, None),  # two poll rounds fail (each retried twice), then FIC answers
        ("503", 1, None, None),
        ("reset", 1, None, None),
        ("hang", 1, READ_TIMEOUT + 0.5, None),
        ("slow", None, READ_TIMEOUT - 0.4, None),  # every poll slow, but inside the read timeout
        ("429", 2, None, None),
        ("429", 1, None, 0.3),  # waited out inside the poll call
        ("malformed_json", 1, None, None),
    ],
)
def test_push_completes_when_a_poll_fault_clears(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    kind: str,
    count: int | None,
    delay: float | None,
    retry_after: float | None,
) -> None:
    """A batch poll that fails for a while does not lose the push: once FIC answers again the
    approval arrives, before the push deadline."""
    bridge = fault_bridge()
    sim.inject_fault(kind, endpoint="GET /auth", count=count, delay=delay, retry_after=retry_after)
    reply, elapsed = timed_login(bridge, "alice", "push")  # alice approves after 0.3 s
    assert reply.code == packet.AccessAccept
    assert elapsed < PUSH_TIMEOUT
    line = last_line(log_stream)
    assert line["reason"] == "push_approved" and line["fic_auth_id"]
    assert sim.counters()["pushes"] == {"alice": 1}
    assert_nothing_leaks(bridge, sim, log_stream)


@pytest.mark.parametrize(
    ("kind", "delay"),
    [
        ("500", None),
        ("hang", READ_TIMEOUT + 0.5),
        ("reset", None),
    ],
)
def test_push_is_rejected_by_its_deadline_when_polls_keep_failing(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    kind: str,
    delay: float | None,
) -> None:
    """With every batch poll failing, even failmode open rejects the push (it went out) by
    push_timeout plus one poll round, and the poller says FIC is unavailable."""
    bridge = fault_bridge("open")
    sim.inject_fault(kind, endpoint="GET /auth", delay=delay)
    reply, elapsed = timed_login(bridge, "alice", "push")  # approved on the phone, never seen
    assert reply.code == packet.AccessReject
    assert PUSH_TIMEOUT - 0.05 <= elapsed < PUSH_BUDGET + SLACK
    assert last_line(log_stream)["outcome"] == "reject"
    assert log_stream.events("fic.poll.unavailable")
    assert sim.counters()["pushes"] == {"alice": 1}
    assert_nothing_leaks(bridge, sim, log_stream)


def test_push_whose_polls_all_failed_is_logged_as_fic_unavailable(
    fault_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """A push rejected because no poll got an answer is logged as fic_unavailable, with the
    poll's error, so nobody tells the user they were too slow."""
    bridge = fault_bridge()
    sim.inject_fault("500", endpoint="GET /auth")
    reply, _ = timed_login(bridge, "alice", "push")
    assert reply.code == packet.AccessReject
    line = last_line(log_stream)
    assert line["reason"] == "fic_unavailable" and "GET /auth" in line.get("fic_error", "")


def test_batch_polling_survives_one_unreadable_answer(
    fault_bridge: Callable[..., RunningBridge], sim: FicSimulator
) -> None:
    """After one truncated batch answer the poller keeps using the batch endpoint, so polling
    stays one request per interval however many pushes wait."""
    bridge = fault_bridge()
    sim.inject_fault("malformed_json", endpoint="GET /auth", count=1)
    assert timed_login(bridge, "alice", "push")[0].code == packet.AccessAccept
    sim.reset_counters()
    assert timed_login(bridge, "alice", "push")[0].code == packet.AccessAccept
    counters = sim.counters()
    assert counters["batch_polls"] >= 1 and counters["status_polls"] == 0


@pytest.mark.parametrize(
    ("kind", "count", "delay"),
    [
        ("500", 3, None),  # one poll call with its two retries fails, the next round answers
        ("hang", 1, READ_TIMEOUT + 0.5),
        ("429", 1, None),
        ("malformed_json", 1, None),
    ],
)
def test_push_completes_when_a_per_id_poll_fault_clears(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    kind: str,
    count: int,
    delay: float | None,
) -> None:
    """Where FIC has no batch endpoint the poller asks per auth id, and a passing fault there
    does not lose the push either."""
    sim.configure(batch_supported=False)
    bridge = fault_bridge()
    sim.inject_fault(kind, endpoint="GET /auth/*", count=count, delay=delay)
    reply, elapsed = timed_login(bridge, "alice", "push")
    assert last_line(log_stream)["reason"] == "push_approved"
    assert reply.code == packet.AccessAccept and elapsed < PUSH_TIMEOUT
    assert sim.counters()["status_polls"] >= 1
    assert_nothing_leaks(bridge, sim, log_stream)


def test_push_survives_fic_refusing_connections_for_a_while(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    background: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """FIC unreachable while a push waits, long enough for whole poll rounds to fail: polling
    resumes when it comes back and the approval given meanwhile gets in before the deadline."""
    # One poll round fails within its retries (backoff 0.2 + 0.4 s) plus the poll interval;
    # an outage of twice that holds at least one whole failed round.
    outage = 2 * (0.2 + 0.4 + POLL_INTERVAL)
    sim.add_user(SimUser("ivy", "ivy@example.com", push_delay=outage / 2))
    bridge = fault_bridge(push_timeout=outage + PUSH_TIMEOUT)
    pending = background.submit(timed_login, bridge, "ivy", "push")
    wait_until(lambda: bridge.in_loop(lambda: len(bridge.bridge.pending)) == 1, timeout=1.0)
    sim.refuse_connections()
    time.sleep(outage)
    sim.accept_connections()
    reply, elapsed = pending.result(timeout=CLIENT_WAIT)
    assert reply.code == packet.AccessAccept
    assert outage <= elapsed < outage + POLL_INTERVAL + SLACK
    assert last_line(log_stream)["reason"] == "push_approved"
    assert log_stream.events("fic.poll.unavailable") and log_stream.events("fic.poll.recovered")
    assert sim.counters()["pushes"] == {"ivy": 1}
    assert_nothing_leaks(bridge, sim, log_stream)


# -- token expiry -------------------------------------------------------------------------------


def test_token_expiring_during_a_push_is_renewed_by_the_poller(
    fault_bridge: Callable[..., RunningBridge],
    sim: FicSimulator,
    log_stream: LogStream,
    background: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """FIC forgetting the bearer while a push waits costs one login; the push still completes."""
    sim.add_user(SimUser("ivy", "ivy@example.com", push_delay=1.0))
    bridge = fault_bridge()
    pending = background.submit(timed_login, bridge, "ivy", "push")
    wait_until(lambda: bridge.in_loop(lambda: len(bridge.bridge.pending)) == 1, timeout=1.0)
    assert sim.counters()["logins"] == 1
    sim.expire_tokens()
    reply, elapsed = pending.result(timeout=CLIENT_WAIT)
    assert reply.code == packet.AccessAccept and elapsed < PUSH_TIMEOUT
    assert last_line(log_stream)["reason"] == "push_approved"
    counters = sim.counters()
    assert counters["logins"] == 2 and counters["pushes"] == {"ivy": 1}
    assert_nothing_leaks(bridge, sim, log_stream)


def test_token_expired_before_a_code_check_sends_the_code_once(
    fault_bridge: Callable[..., RunningBridge], sim: FicSimulator, log_stream: LogStream
) -> None:
    """A code sent with an expired bearer is refused unread; the bridge logs in again and the
    code reaches FIC's check exactly once."""
    bridge = fault_bridge()
    assert timed_login(bridge, "alice", "123456")[0].code == packet.AccessAccept
    sim.expire_tokens()
    reply, elapsed = timed_login(bridge, "alice", "123456")
    assert reply.code == packet.AccessAccept and elapsed < CALL_BUDGET
    assert last_line(log_stream)["reason"] == "otp_accepted"
    counters = sim.counters()
    assert counters["logins"] == 2 and counters["code_checks"] == {"alice": 2}
    assert_nothing_leaks(bridge, sim, log_stream)
