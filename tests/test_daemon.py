"""The daemon's lifecycle as systemd drives it: SIGHUP reload and SIGTERM, on a real process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from bridge_harness import RADIUS_SECRET
from test_cli import COMMAND, environment, free_udp_port, wait_for_line, write_config

from radius_bridge.simulator import FicSimulator, SimUser

NEW_SECRET = "rotated-radius-secret-4567"


def login(port: int, secret: str, user: str, password: str, timeout: float = 3) -> str:
    result = subprocess.run(
        [
            *COMMAND,
            "test",
            "--server",
            f"127.0.0.1:{port}",
            "--secret",
            secret,
            "--timeout",
            str(timeout),
            user,
            password,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout + result.stderr


class Output:
    """Collects a process's stdout lines in a thread, so the test can wait for events."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.append(line)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def wait_for(self, event: str, count: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while sum(e.get("event") == event for e in self.events()) < count:
            assert time.monotonic() < deadline, f"{event} not logged within {timeout} s"
            time.sleep(0.05)


def test_sighup_changes_secret_and_level_while_pushes_are_pending(
    tmp_path: Path, sim: FicSimulator
) -> None:
    """A reload rotates a client's secret and the log level; a push pending across it completes,
    and a bad file afterwards is refused while the running configuration stays."""
    sim.add_user(SimUser("omar", "omar@example.com", push_delay=2.5))
    port = free_udp_port()
    config = write_config(tmp_path, sim.base_url, port)
    process = subprocess.Popen(
        [*COMMAND, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        wait_for_line(process, "bridge.started")
        output = Output(process)
        pending: list[str] = []
        waiter = threading.Thread(
            target=lambda: pending.append(login(port, RADIUS_SECRET, "omar", "push", 15))
        )
        waiter.start()
        deadline = time.monotonic() + 10
        while sim.counters()["pushes"].get("omar") != 1:  # the push is out and waiting
            assert time.monotonic() < deadline, "the push never started"
            time.sleep(0.05)
        assert not any(e.get("event") == "fic.call" for e in output.events())  # info level

        write_config(tmp_path, sim.base_url, port, secret=NEW_SECRET, level="debug")
        process.send_signal(signal.SIGHUP)
        output.wait_for("bridge.reloaded")
        assert "Access-Accept" in login(port, NEW_SECRET, "alice", "123456")
        assert "no answer" in login(port, RADIUS_SECRET, "alice", "123456", timeout=0.5)
        output.wait_for("fic.call")  # debug lines appear after the reload

        waiter.join(20)
        assert pending and "Access-Accept" in pending[0], "".join(output.lines)
        assert sim.counters()["pushes"] == {"omar": 1}

        config.write_text("radius: [this is not a mapping\n")
        process.send_signal(signal.SIGHUP)
        output.wait_for("bridge.reload.refused")
        assert "Access-Accept" in login(port, NEW_SECRET, "alice", "123456")
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=15)
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            stream.close()
    assert status == 0


def test_systemd_hears_ready_watchdog_reloading_and_stopping(
    tmp_path: Path, sim: FicSimulator
) -> None:
    """Through a real datagram socket posing as $NOTIFY_SOCKET, the daemon reports READY=1
    after binding, WATCHDOG=1 heartbeats, RELOADING=1 then READY=1 on SIGHUP, and STOPPING=1."""
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(10)
    port = free_udp_port()
    config = write_config(tmp_path, sim.base_url, port)
    process = subprocess.Popen(
        [*COMMAND, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**environment(), "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"},
    )
    messages: list[str] = []

    def receive_until(marker: str) -> None:
        while not any(marker in message for message in messages):
            messages.append(listener.recv(4096).decode())

    try:
        receive_until("READY=1")
        ready = next(m for m in messages if "READY=1" in m)
        assert f"127.0.0.1:{port}" in ready  # STATUS= names the bound address
        receive_until("WATCHDOG=1")
        process.send_signal(signal.SIGHUP)
        receive_until("RELOADING=1")
        messages.clear()
        receive_until("READY=1")
        process.send_signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        listener.close()
