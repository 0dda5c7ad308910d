"""The benchmark: its load generator against a real bridge, and ``radius-bridge bench`` itself."""

from __future__ import annotations

import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bridge_harness import RADIUS_SECRET, RunningBridge

from radius_bridge import bench, cli
from radius_bridge.bench_load import LoadGenerator, percentile, prepare
from radius_bridge.fic import FicClient
from radius_bridge.model import Secret
from radius_bridge.radius import RadiusCodec
from radius_bridge.simulator import DEMO_CODE, FicSimulator, SimUser

SECRET = RADIUS_SECRET.encode()
COMMAND = [sys.executable, "-m", "radius_bridge", "bench"]


CODE_USERS = 64


@pytest.fixture
def code_users(sim: FicSimulator) -> list[str]:
    """Users with the fixed code, so that no one user has many codes checked at once."""
    names = [f"bench-{i:02d}" for i in range(CODE_USERS)]
    for name in names:
        sim.add_user(SimUser(name, f"{name}@example.com", auth_method="FTK"))
    return names


def otp_logins(users: list[str], count: int) -> list[tuple[str, str, str]]:
    """``count`` OTP logins (the fixed code) over ``users``, each from its own station."""
    return [(users[i % len(users)], DEMO_CODE, f"10.9.{i >> 8}.{i & 0xFF}") for i in range(count)]


def code_checks(sim: FicSimulator) -> int:
    return sum(sim.counters()["code_checks"].values())


def test_paced_requests_are_each_matched_to_their_accept(
    bridge: RunningBridge, sim: FicSimulator, code_users: list[str]
) -> None:
    """Every paced request gets its own verified Accept, with one FIC call each."""
    requests = prepare(RadiusCodec(), SECRET, otp_logins(code_users, 300))
    with LoadGenerator(SECRET) as generator:
        stream = generator.stream("otp", bridge.address, requests, in_flight=300)
        generator.run_paced(stream, rate=2000, until=time.monotonic() + 10, count=300)
        generator.drain([stream], until=time.monotonic() + 10)
    result = stream.result
    assert (result.sent, result.accepted, result.invalid, result.lost) == (300, 300, 0, 0)
    assert len(result.latencies) == 300
    assert code_checks(sim) == 300


def test_window_keeps_requests_in_flight_until_the_deadline(
    bridge: RunningBridge, code_users: list[str]
) -> None:
    """A window run keeps sending for its whole time, and every reply is accounted for."""
    requests = prepare(RadiusCodec(), SECRET, otp_logins(code_users, 512))
    with LoadGenerator(SECRET) as generator:
        stream = generator.stream("otp", bridge.address, requests, in_flight=512)
        started = time.monotonic()
        generator.run_window(stream, window=8, until=started + 0.5)
        assert time.monotonic() - started >= 0.5
        generator.drain([stream], until=time.monotonic() + 5)
    assert stream.result.sent > 8
    assert stream.result.accepted == stream.result.sent
    assert stream.in_flight == 0


def test_a_reused_request_list_moves_to_another_socket(
    bridge: RunningBridge, sim: FicSimulator, code_users: list[str]
) -> None:
    """A second pass over the same requests comes from new source ports: no duplicates."""
    requests = prepare(RadiusCodec(), SECRET, otp_logins(code_users, 256))
    with LoadGenerator(SECRET) as generator:
        stream = generator.stream("otp", bridge.address, requests, in_flight=512)
        generator.run_window(stream, window=64, until=time.monotonic() + 20, count=512)
        generator.drain([stream], until=time.monotonic() + 10)
    server = bridge.bridge.server
    assert server.duplicates_resent == server.duplicates_dropped == 0
    assert code_checks(sim) == stream.result.accepted == 512


def test_retransmissions_repeat_the_bytes_and_start_one_push(
    bridge: RunningBridge, sim: FicSimulator
) -> None:
    """Re-sent requests are the same datagram: the bridge drops them and pushes once."""
    requests = prepare(RadiusCodec(), SECRET, [("alice", "push", "198.51.100.7")])
    with LoadGenerator(SECRET) as generator:
        stream = generator.stream(
            "storm", bridge.address, requests, in_flight=1, timeout=10, retransmit_every=0.1
        )
        generator.run_paced(stream, rate=10, until=time.monotonic() + 5, count=1)
        generator.drain([stream], until=time.monotonic() + 10)
    assert stream.result.accepted == 1
    assert stream.result.transmissions > 2
    server = bridge.bridge.server
    # Copies that arrive while the push is pending are dropped; one crossing the answer on the
    # wire gets the cached answer again.
    assert server.duplicates_dropped + server.duplicates_resent == stream.result.transmissions - 1
    assert sim.counters()["pushes"] == {"alice": 1}


def test_a_reply_signed_with_another_secret_is_not_counted_as_an_answer(
    bridge: RunningBridge, code_users: list[str]
) -> None:
    """Replies are verified against the generator's secret; others count as invalid."""
    requests = prepare(RadiusCodec(), SECRET, otp_logins(code_users, 5))
    with LoadGenerator(b"not-the-bridge-secret") as generator:
        stream = generator.stream("otp", bridge.address, requests, in_flight=5)
        generator.run_paced(stream, rate=100, until=time.monotonic() + 5, count=5)
        generator.drain([stream], until=time.monotonic() + 5)
    assert (stream.result.invalid, stream.result.accepted) == (5, 0)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([3.0, 1.0, 2.0], 0.5, 2.0),
        ([float(i) for i in range(1, 101)], 0.99, 99.0),
        ([float(i) for i in range(1, 101)], 0.5, 50.0),
        ([7.0], 0.99, 7.0),
    ],
)
def test_percentile_is_the_nearest_rank(
    values: list[float], fraction: float, expected: float
) -> None:
    """Percentiles are nearest-rank values of the sample."""
    assert percentile(values, fraction) == expected


def test_percentile_of_nothing_is_nan() -> None:
    """An empty sample has no percentile (NaN, which the report would show as missing)."""
    assert math.isnan(percentile([], 0.5))


def test_the_light_counters_have_totals_and_no_per_user_maps(sim: FicSimulator) -> None:
    """The counters the bench reads while it measures sum the per-user maps instead of
    listing every user."""
    sim.add_user(SimUser("pat", "pat@example.com", push="ignore"))
    control = bench.SimControl(sim.origin)
    try:
        control.call("POST", "/_sim/settings", {"codes_single_use": False})
        client = FicClient(
            base_url=sim.base_url, client_id="demo-client", client_secret=Secret("demo-secret")
        )
        with client:
            client.start_push("pat")
            client.verify_code("alice", DEMO_CODE)
            client.verify_code("alice", DEMO_CODE)
        light = control.counters()
    finally:
        control.close()
    assert light["totals"] == {"auth_posts": 3, "pushes": 1, "code_checks": 2, "codes_sent": 0}
    assert not {"auth_posts", "pushes", "code_checks", "codes_sent"} & set(light)
    assert sim.counters()["code_checks"] == {"alice": 2}


def test_server_without_its_simulator_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--server needs --fic and --secret-env: without a simulator nothing can be counted."""
    assert cli.main(["bench", "--server", "127.0.0.1:1812"]) == bench.EXIT_USAGE
    assert "--fic" in capsys.readouterr().err


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def bench_environment(tmp_path: Path) -> dict[str, str]:
    """The bench's working directory lands under ``tmp_path``, so its children are findable."""
    return {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    """`bench --quick` finishes within a minute with every figure numeric, and leaves nothing
    running or lying around."""
    report_file = tmp_path / "report.json"
    started = time.monotonic()
    result = subprocess.run(
        [*COMMAND, "--quick", "--json", str(report_file)],
        capture_output=True,
        text=True,
        env=bench_environment(tmp_path),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - started < 60
    report = json.loads(report_file.read_text())
    for figure in bench.FIGURES:
        value = report["figures"][figure.key]
        assert isinstance(value, int | float) and not isinstance(value, bool), figure.key
        assert math.isfinite(value), figure.key
        assert figure.label.strip() in result.stdout
    assert report["machine"]["cpu_count"] == os.cpu_count()
    assert report["settings"]["quick"] is True
    assert {target["figure"] for target in report["targets"]} <= set(report["figures"])
    assert "phase 5/5" in result.stderr
    assert processes_mentioning(str(tmp_path)) == []
    assert [path.name for path in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.slow
def test_sigterm_stops_the_run_and_its_children(tmp_path: Path) -> None:
    """SIGTERM during a phase ends the bench and both of its children at once."""
    process = subprocess.Popen(
        [*COMMAND, "--quick"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=bench_environment(tmp_path),
    )
    assert process.stderr is not None
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while b"phase 1/5" not in seen and time.monotonic() < deadline:
            if selector.select(deadline - time.monotonic()):
                chunk = os.read(process.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
    assert b"phase 1/5" in seen, seen.decode()
    assert len(processes_mentioning(str(tmp_path))) == 2  # the simulator and the bridge
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=30)
    assert process.returncode == 130
    assert b"interrupted" in rest
    assert processes_mentioning(str(tmp_path)) == []
