"""The command line as an administrator uses it: real processes, real sockets, exit statuses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge_harness import RADIUS_SECRET, RunningBridge

from radius_bridge.simulator import FicSimulator

COMMAND = [sys.executable, "-m", "radius_bridge"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(
    tmp_path: Path,
    fic_url: str,
    port: int,
    *,
    secret: str = RADIUS_SECRET,
    level: str = "info",
    **auth: str,
) -> Path:
    """A configuration file on loopback; the client's secret in a file beside it; ``auth``
    keys added to (or replacing) the auth section."""
    path = tmp_path / "radius-bridge.yaml"
    auth_lines = "\n".join(
        f"  {key}: {value}" for key, value in {"push_timeout": "5", **auth}.items()
    )
    path.write_text(
        f"""
fic:
  base_url: {fic_url}
  client_id: demo-client
  client_secret_env: TEST_FIC_SECRET
radius:
  listen: ["127.0.0.1:{port}"]
  clients:
    - name: loopback
      address: 127.0.0.1
      secret_file: nas.secret
auth:
{auth_lines}
logging:
  format: json
  level: {level}
"""
    )
    (tmp_path / "nas.secret").write_text(secret + "\n")
    return path


def environment() -> dict[str, str]:
    return {**os.environ, "TEST_FIC_SECRET": "demo-secret", "PYTHONUNBUFFERED": "1"}


def run(
    *args: str, input: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        env=environment(),
        input=input,
        timeout=timeout,
    )


def radius_test(
    port: int, user: str, password: str, *, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`radius-bridge test` against 127.0.0.1:port with the test secret (from the environment)."""
    return subprocess.run(
        [
            *COMMAND,
            "test",
            "--server",
            f"127.0.0.1:{port}",
            "--secret-env",
            "TEST_NAS_SECRET",
            "--timeout",
            "8",
            user,
            password,
        ],
        capture_output=True,
        text=True,
        input=input,
        timeout=30,
        env={**environment(), "TEST_NAS_SECRET": RADIUS_SECRET},
    )


@pytest.fixture
def served(tmp_path: Path, sim: FicSimulator) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`radius-bridge serve` as a child process on a free port."""
    port = free_udp_port()
    config = write_config(tmp_path, sim.base_url, port)
    process = subprocess.Popen(
        [*COMMAND, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    wait_for_line(process, "bridge.started")
    yield process, port
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 20) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            return line
        if not line and process.poll() is not None:
            raise AssertionError(f"process exited {process.returncode}: {process.stderr.read()}")
    raise AssertionError(f"{text!r} not seen within {timeout} s")


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    """check-config exits 0 on a valid file."""
    config = write_config(tmp_path, "https://fic.fortinet.com:9696/api/v1", 1812)
    result = run("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_names_the_key_and_exits_78(tmp_path: Path) -> None:
    """A bad file exits 78 (EX_CONFIG) with file and dotted key on stderr."""
    config = write_config(tmp_path, "https://fic.fortinet.com:9696/api/v1", 1812, push_timout="20")
    result = run("check-config", "--config", str(config))
    assert result.returncode == 78
    assert str(config) in result.stderr
    assert "auth.push_timout" in result.stderr and "push_timeout" in result.stderr


def test_check_config_refuses_unknown_reply_attributes(tmp_path: Path) -> None:
    """A reply attribute missing from the dictionaries is a configuration error."""
    config = write_config(tmp_path, "https://fic.fortinet.com:9696/api/v1", 1812)
    config.write_text(
        config.read_text().replace(
            "      secret_file: nas.secret",
            "      secret_file: nas.secret\n      reply_attributes:\n        No-Such-Attribute: x",
        )
    )
    result = run("check-config", "--config", str(config))
    assert result.returncode == 78
    assert "radius.clients[0].reply_attributes" in result.stderr


def test_serve_answers_and_stops_cleanly_on_sigterm(
    served: tuple[subprocess.Popen[str], int], sim: FicSimulator
) -> None:
    """The daemon answers a login, then exits 0 on SIGTERM."""
    process, port = served
    result = radius_test(port, "alice", "123456")
    assert result.returncode == 0, result.stderr
    assert "Access-Accept" in result.stdout
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0


def test_sigterm_with_a_pending_push_rejects_it_and_exits_within_the_grace(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    """A push still waiting at SIGTERM is answered (Reject) and the daemon exits 0 promptly."""
    process, port = served
    waiting = subprocess.Popen(
        [
            *COMMAND,
            "test",
            "--server",
            f"127.0.0.1:{port}",
            "--secret-env",
            "TEST_NAS_SECRET",
            "--timeout",
            "10",
            "erin",
            "push",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**environment(), "TEST_NAS_SECRET": RADIUS_SECRET},
    )
    time.sleep(1.0)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert time.monotonic() - started < 6
    out, _ = waiting.communicate(timeout=15)
    assert "Access-Reject" in out
    assert "restarting" in out


def test_second_instance_on_the_same_port_fails_loudly(
    served: tuple[subprocess.Popen[str], int], tmp_path: Path, sim: FicSimulator
) -> None:
    """A second daemon on a port in use exits 1 and says why, instead of sharing the port."""
    _, port = served
    other = tmp_path / "second"
    other.mkdir()
    config = write_config(other, sim.base_url, port)
    result = run("serve", "--config", str(config), timeout=20)
    assert result.returncode == 1
    assert "address already in use" in result.stderr


def test_serve_with_a_bad_config_exits_78(tmp_path: Path) -> None:
    """serve refuses a bad file with exit 78, so systemd does not restart it in a loop."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("fic: {}\n")
    result = run("serve", "--config", str(bad))
    assert result.returncode == 78
    assert str(bad) in result.stderr


def test_test_command_follows_a_challenge(bridge: RunningBridge, sim: FicSimulator) -> None:
    """`radius-bridge test` answers an Access-Challenge with the code read from stdin."""
    port = bridge.address[1]
    first = radius_test(port, "frank", "", input="123456\n")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Access-Challenge" in first.stdout and "Access-Accept" in first.stdout


def test_test_command_reports_a_reject_with_exit_2(bridge: RunningBridge) -> None:
    """A rejected login prints the Reply-Message and exits 2."""
    result = radius_test(bridge.address[1], "alice", "999999")
    assert result.returncode == 2
    assert "Wrong code" in result.stdout


def test_test_command_without_an_answer_exits_1() -> None:
    """No server: exit 1 and a message, after the timeout."""
    result = subprocess.run(
        [
            *COMMAND,
            "test",
            "--server",
            f"127.0.0.1:{free_udp_port()}",
            "--secret",
            "x",
            "--timeout",
            "0.5",
            "alice",
            "123456",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "no answer" in result.stderr


def test_demo_runs_the_bridge_against_the_simulator() -> None:
    """`radius-bridge demo` serves logins out of the box."""
    port = free_udp_port()
    process = subprocess.Popen(
        [*COMMAND, "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        wait_for_line(process, "bridge.started")
        result = subprocess.run(
            [
                *COMMAND,
                "test",
                "--server",
                f"127.0.0.1:{port}",
                "--secret",
                "demo-radius-secret",
                "alice",
                "123456",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Access-Accept" in result.stdout
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        process.communicate()
