"""Reliability tools run outside the normal suite (fuzz, soak), and the bridge process they share.

``BridgeProcess`` runs ``python -m radius_bridge serve`` as a child process on 127.0.0.1 with a
configuration written to a temporary directory, so that a crash shows as an exit status, memory
is the child's own VmRSS, and the child is killed whatever happens to the tool. Its FIC is the
caller's in-process ``FicSimulator``. The suite imports this package with ``tests/`` on
``sys.path`` (conftest does that); the scripts put it there themselves.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BRIDGE_COMMAND = (sys.executable, "-m", "radius_bridge", "serve", "--config")
START_TIMEOUT = 30.0
STOP_GRACE = 10.0
_METRIC_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, kw_only=True)
class Nas:
    """A RADIUS client as the bridge knows it: a name, a source address and a shared secret."""

    name: str
    address: str
    secret: str


def free_port(kind: int) -> int:
    """A port on 127.0.0.1 that is free right now (``socket.SOCK_DGRAM`` or ``SOCK_STREAM``)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_rss_kib(pid: int) -> int | None:
    """Resident memory of process ``pid`` in KiB (VmRSS), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


class BridgeProcess:
    """``radius-bridge serve`` as a child process, listening on 127.0.0.1 with a free port.

    ``auth`` and ``radius`` are merged into the configuration's sections of the same name, and
    ``sections`` adds whole sections (``limits``, for instance). The
    bridge logs JSON at ``log_level`` into a file, read back by ``events``; its Prometheus
    listener is on a free loopback port, read by ``metrics``.
    """

    def __init__(
        self,
        *,
        fic_base_url: str,
        clients: Sequence[Nas],
        auth: Mapping[str, Any] | None = None,
        radius: Mapping[str, Any] | None = None,
        sections: Mapping[str, Any] | None = None,
        log_level: str = "info",
    ) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="radius-bridge-tool-")
        self.directory = Path(self._directory.name)
        self.log_path = self.directory / "bridge.log"
        self.stderr_path = self.directory / "bridge.stderr"
        self._fic_base_url = fic_base_url
        self._clients = list(clients)
        self._auth = dict(auth or {})
        self._radius = dict(radius or {})
        self._sections = dict(sections or {})
        self._log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ("127.0.0.1", 0)
        self.metrics_port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the child and wait until it listens; retry if a port was taken meanwhile."""
        for attempt in range(3):
            self.address = ("127.0.0.1", free_port(socket.SOCK_DGRAM))
            self.metrics_port = free_port(socket.SOCK_STREAM)
            config_path = self.directory / "radius-bridge.yaml"
            config_path.write_text(yaml.safe_dump(self._config()), encoding="utf-8")
            with self.log_path.open("wb") as log, self.stderr_path.open("wb") as stderr:
                self.process = subprocess.Popen(
                    [*BRIDGE_COMMAND, str(config_path)], stdout=log, stderr=stderr
                )
            if self._wait_started():
                return
            # Exit 1 is a listen failure: another process took the port between our probe
            # and the child's bind. Anything else is a real failure worth showing.
            if self.process.returncode != 1 or attempt == 2:
                raise RuntimeError(f"the bridge did not start: {self.stderr_text()[-2000:]}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _config(self) -> dict[str, Any]:
        radius: dict[str, Any] = {
            "listen": [f"{self.address[0]}:{self.address[1]}"],
            "clients": [
                {"name": nas.name, "address": nas.address, "secret": nas.secret}
                for nas in self._clients
            ],
        }
        radius.update(self._radius)
        return {
            "fic": {
                "base_url": self._fic_base_url,
                "client_id": "demo-client",
                "client_secret": "demo-secret",
                "connect_timeout": 1.0,
                "read_timeout": 3.0,
            },
            "radius": radius,
            "auth": self._auth,
            "logging": {"format": "json", "level": self._log_level},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            **self._sections,
        }

    def _wait_started(self) -> bool:
        """Wait until ``/healthz`` answers: the daemon opens it right after its UDP sockets.

        (Not the ``bridge.started`` log line: a run at log level warning has none.)
        """
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                urllib.request.urlopen(self._url("/healthz"), timeout=1).close()  # noqa: S310
            except urllib.error.HTTPError:
                return True  # 503 while FIC is judged down: listening all the same
            except OSError:
                time.sleep(0.05)
                continue
            return True
        self.kill()
        raise RuntimeError(f"the bridge did not start within {START_TIMEOUT:g} s")

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``STOP_GRACE`` seconds; the exit status (None: never ran)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def close(self) -> None:
        """Kill the child if it still runs and remove its directory."""
        self.kill()
        self._directory.cleanup()

    def __enter__(self) -> BridgeProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ observation

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kib(self) -> int | None:
        return read_rss_kib(self.pid) if self.alive() else None

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the child has used so far (None once it is gone)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return None
        fields = stat.rpartition(")")[2].split()
        # Fields 14 and 15 of proc(5), counted from after the command name in parentheses.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The bridge's JSON log lines (all, or those whose event is ``name``)."""
        found = []
        with self.log_path.open("rb") as log:
            for line in log:
                if name is not None and name.encode() not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {
                        "event": "unparsable.line",
                        "text": line[:300].decode(errors="replace"),
                    }
                if name is None or event.get("event") == name:
                    found.append(event)
        return found

    def internal_errors(self) -> list[str]:
        """Bugs the bridge survived: ``radius.request.failed`` lines and tracebacks on stderr."""
        problems = [
            f"{event.get('event')}: {str(event.get('exception', ''))[-600:]}"
            for event in self.events("radius.request.failed")
        ]
        stderr = self.stderr_text()
        if "Traceback" in stderr:
            problems.append("stderr: " + stderr[stderr.index("Traceback") :][:1500])
        return problems

    def metrics(self) -> dict[str, dict[str, float]]:
        """Scrape ``/metrics``: metric name -> {label text or "": value}."""
        with urllib.request.urlopen(self._url("/metrics"), timeout=5) as response:  # noqa: S310
            text = response.read().decode("utf-8")
        samples: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            match = _METRIC_LINE.match(line)
            if match is None or line.startswith("#"):
                continue
            name, labels, value = match.groups()
            label_text = ",".join(f"{k}={v}" for k, v in _LABEL.findall(labels or ""))
            samples.setdefault(name, {})[label_text] = float(value)
        return samples

    def dropped_by_reason(self) -> dict[str, int]:
        """``radius_bridge_packets_dropped_total`` by reason, from ``/metrics``."""
        counts = self.metrics().get("radius_bridge_packets_dropped_total", {})
        return {
            label.removeprefix("reason="): int(value)
            for label, value in sorted(counts.items())
            if value
        }
