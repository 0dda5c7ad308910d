"""``radius-bridge bench``: how much the bridge holds, measured end to end over real sockets.

By default it starts the FIC simulator and the bridge on 127.0.0.1, each in its own process
(``radius-bridge simulator`` and ``radius-bridge serve`` with generated files, so the bridge
has its own interpreter lock and its memory can be read from ``/proc``), and drives them with
``bench_load``'s generator from this process. With ``--server`` and ``--fic`` it targets a bridge
that is already running against a simulator, and reports only what can be seen from outside.

Five phases, each bounded in requests and time:

1. OTP throughput: Accept answers per second with a window of requests in flight; then the
   latency (p50/p90/p99) at half that rate, paced.
2. Bridge overhead: round trip minus the simulator's configured FIC latency, at half load; and
   minus what the simulator takes by itself (a bare HTTP client's round trip), the bridge's share.
3. Pending pushes: N logins wait on pushes (approved only after the phase) while OTP traffic
   runs at the idle rate: OTP p99 against idle, the bridge's resident memory, FIC status
   requests per second; then the pushes are approved and every login must be accepted.
4. Retransmit storm: every push login re-sent every second until answered: pushes per login.
5. FIC economy, from the simulator's counters: requests per OTP and per push login, FIC logins
   against the token lifetime, TCP connections against the pool size.

It prints a table (stdout), progress (stderr) and, with ``--json FILE``, every figure with the
machine's core count and the settings. Children are stopped on exit, Ctrl-C or any error.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from radius_bridge import __version__
from radius_bridge.bench_load import (
    IDENTIFIERS,
    LoadGenerator,
    Prepared,
    Stream,
    completed_between,
    percentile,
    prepare,
)
from radius_bridge.fic import normalize_base_url
from radius_bridge.radius import ACCESS_ACCEPT, RadiusCodec
from radius_bridge.simulator_state import SimulatorSettings
from radius_bridge.simulator_users import DEMO_CODE

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# The simulator's public demo credentials (not real secrets), as the demo uses them.
SIM_CLIENT_ID = SimulatorSettings().client_id
SIM_CLIENT_SECRET = SimulatorSettings().client_secret
# Names of environment variables that hand the secrets to the bridge (never its command line).
_SECRET_ENV = "RADIUS_BRIDGE_BENCH_SECRET"  # noqa: S105 - a variable name, not a secret
_FIC_SECRET_ENV = "RADIUS_BRIDGE_BENCH_FIC_SECRET"  # noqa: S105 - a variable name
# A generator process using this much of one core may itself be the bottleneck.
GENERATOR_SATURATED = 0.9
_CHILD_START_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------- settings


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What one run does; ``full()`` and ``quick_run()`` are the two presets."""

    quick: bool
    duration: float  # seconds measured per step
    warmup: float  # seconds of load before the saturation step is measured
    window: int  # OTP requests in flight at saturation
    otp_users: int
    otp_requests: int  # distinct precomputed OTP Access-Requests per stream
    pushes: int
    push_rate: float  # push logins sent per second in phase 3
    storm_logins: int
    storm_push_delay: float
    overhead_latency: float  # seconds the simulator adds in phase 2
    pool_size: int
    token_lifetime: float
    token_renew_margin: float

    @classmethod
    def full(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "quick": False,
            "duration": 10.0,
            "warmup": 2.0,
            "window": 64,
            "otp_users": 1000,
            "otp_requests": 32 * IDENTIFIERS,
            "pushes": 10_000,
            "push_rate": 400.0,
            "storm_logins": 200,
            "storm_push_delay": 2.5,
            "overhead_latency": 0.020,
            "pool_size": 10,
            "token_lifetime": 60.0,
            "token_renew_margin": 10.0,
        }
        return cls(**{**values, **overrides})

    @classmethod
    def quick_run(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "quick": True,
            "duration": 2.5,
            "warmup": 0.5,
            "otp_users": 200,
            "otp_requests": 8 * IDENTIFIERS,
            "pushes": 500,
            "push_rate": 250.0,
            "storm_logins": 30,
            "storm_push_delay": 1.5,
        }
        return cls.full(**{**values, **overrides})

    @property
    def push_delay(self) -> float:
        """When the phase-3 users approve, after their push started: after the measurement."""
        return self.pushes / self.push_rate + self.duration + (3.0 if self.quick else 12.0)

    @property
    def push_timeout(self) -> float:
        """The bridge's ``auth.push_timeout``: long enough for phase 3's approvals."""
        return min(120.0, self.push_delay + 15.0)


# ------------------------------------------------------------------------------------ figures


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str


# Every figure a run reports; the table prints them in this order and the JSON has each one.
FIGURES: tuple[Figure, ...] = (
    Figure("otp_accepts_per_second", "OTP Accepts/s at saturation", "/s"),
    Figure("otp_saturation_window", "  requests in flight", ""),
    Figure("otp_saturation_p50_ms", "  latency p50 at saturation", "ms"),
    Figure("otp_failures", "  rejects, losses, bad replies", ""),
    Figure("otp_generator_cpu", "  load generator CPU (one core = 1)", ""),
    Figure("otp_bridge_cpu", "  bridge CPU (one core = 1)", ""),
    Figure("otp_bridge_cpu_ms_per_login", "  bridge CPU per login", "ms"),
    Figure("otp_simulator_cpu", "  simulator CPU (one core = 1)", ""),
    Figure("otp_others_cpu", "  other processes' CPU (cores)", ""),
    Figure("otp_paced_rate", "OTP at 50 % load: rate", "/s"),
    Figure("otp_p50_ms", "  latency p50", "ms"),
    Figure("otp_p90_ms", "  latency p90", "ms"),
    Figure("otp_p99_ms", "  latency p99", "ms"),
    Figure("otp_paced_others_cpu", "  other processes' CPU meanwhile (cores)", ""),
    Figure("overhead_fic_latency_ms", "Overhead: simulator FIC latency", "ms"),
    Figure("overhead_rate", "  rate (50 % of capacity)", "/s"),
    Figure("overhead_round_trip_p50_ms", "  round trip - FIC latency, p50", "ms"),
    Figure("overhead_round_trip_p99_ms", "  round trip - FIC latency, p99", "ms"),
    Figure("overhead_simulator_p50_ms", "  of which simulator + HTTP alone, p50", "ms"),
    Figure("overhead_simulator_p99_ms", "  of which simulator + HTTP alone, p99", "ms"),
    Figure("overhead_p50_ms", "  bridge overhead p50 (the rest)", "ms"),
    Figure("overhead_p99_ms", "  bridge overhead p99 (the rest)", "ms"),
    Figure("pending_pushes", "Pending pushes reached", ""),
    Figure("pending_otp_rate", "  OTP rate meanwhile", "/s"),
    Figure("pending_otp_p99_ms", "  OTP latency p99", "ms"),
    Figure("pending_otp_p99_ratio", "  OTP p99 / idle p99", "x"),
    Figure("pending_fic_status_per_second", "  FIC status requests", "/s"),
    Figure("pending_others_cpu", "  other processes' CPU meanwhile (cores)", ""),
    Figure("idle_bridge_rss_mb", "  bridge RSS before the pushes", "MB"),
    Figure("pending_bridge_rss_mb", "  bridge RSS with them pending (max)", "MB"),
    Figure("pending_push_accepts", "  push logins accepted once approved", ""),
    Figure("pending_answer_p50_s", "  approval to Accept p50", "s"),
    Figure("pending_answer_p99_s", "  approval to Accept p99", "s"),
    Figure("fic_posts_per_otp_login", "FIC POST /auth per OTP login", ""),
    Figure("fic_requests_per_otp_login", "  FIC requests per OTP login", ""),
    Figure("fic_posts_per_push_login", "  FIC POST /auth per push login", ""),
    Figure("fic_requests_per_push_login", "  FIC requests per push login", ""),
    Figure("fic_logins", "  FIC logins during the run", ""),
    Figure("fic_logins_expected", "  expected (one per token lifetime)", ""),
    Figure("fic_logins_per_hour", "  FIC logins per hour (at this lifetime)", "/h"),
    Figure("fic_tcp_connections", "  TCP connections opened to FIC", ""),
    Figure("pool_size", "  fic.pool_size", ""),
    Figure("storm_logins", "Retransmit storm: push logins", ""),
    Figure("storm_transmissions_per_login", "  transmissions per login", ""),
    Figure("storm_pushes_per_login", "  pushes per login", ""),
    Figure("storm_accepts", "  accepted", ""),
    Figure("run_seconds", "Run time", "s"),
)


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    check: Callable[[float], bool]


TARGETS: tuple[Target, ...] = (
    Target("otp_accepts_per_second", ">= 1200", lambda v: v >= 1200),
    Target("overhead_p50_ms", "< 1", lambda v: v < 1.0),
    Target("overhead_p99_ms", "< 5", lambda v: v < 5.0),
    Target("pending_otp_p99_ratio", "< 2", lambda v: v < 2.0),
    Target("pending_bridge_rss_mb", "< 300", lambda v: v < 300.0),
    Target("pending_fic_status_per_second", "<= 2", lambda v: v <= 2.0),
    Target("fic_posts_per_otp_login", "= 1", lambda v: abs(v - 1.0) < 1e-9),
    Target("fic_posts_per_push_login", "= 1", lambda v: abs(v - 1.0) < 1e-9),
    Target("storm_pushes_per_login", "= 1", lambda v: abs(v - 1.0) < 1e-9),
)
# Targets that compare two figures.
_PAIRED_TARGETS = (
    ("fic_logins", "<= expected", "fic_logins_expected"),
    ("fic_tcp_connections", "<= pool", "pool_size"),
    ("pending_push_accepts", "= pushes", "pending_pushes"),
    ("storm_accepts", "= logins", "storm_logins"),
)


# --------------------------------------------------------------------------- the outside world


class Progress:
    """Progress lines on stderr, each with the seconds since the start."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self._started
        print(f"[bench {elapsed:6.1f} s] {message}", file=self._stream, flush=True)


class BenchError(Exception):
    """The run cannot go on; the message says why (and where the logs are)."""


class SimControl:
    """The simulator's ``/_sim/`` control endpoints over one keep-alive connection.

    ``connections`` counts the TCP connections this client opened, so that they can be taken
    out of the simulator's count of connections (which should be the bridge's alone).
    """

    def __init__(self, origin: str) -> None:
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme != "http" or parts.hostname is None:
            raise BenchError(f"the FIC simulator must be plain http://host:port, not {origin}")
        self.origin = origin
        self._host = parts.hostname
        self._port = parts.port or 80
        self._connection: http.client.HTTPConnection | None = None
        self.connections = 0

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def call(self, method: str, path: str, body: object = None) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=10)
                self.connections += 1
            try:
                self._connection.request(method, path, body=payload, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
                continue
            if response.status >= 300:
                raise BenchError(
                    f"simulator {method} {path}: HTTP {response.status} {data[:200]!r}"
                )
            return json.loads(data) if data.strip() else None
        raise AssertionError("unreachable")  # pragma: no cover

    def counters(self) -> dict[str, Any]:
        """The counters with totals instead of per-user maps: light enough to ask for while
        the simulator serves the bridge (with ten thousand users the maps take it a while)."""
        result: dict[str, Any] = self.call("GET", "/_sim/counters?per_user=0")
        return result

    def settings(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/_sim/settings")
        return result

    def configure(self, **changes: Any) -> None:
        self.call("POST", "/_sim/settings", changes)

    def add_user(self, user: Mapping[str, Any]) -> None:
        self.call("POST", "/_sim/users", dict(user))


class Child:
    """A subprocess with its output in a log file; ``stop`` ends it (TERM, then KILL)."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user time
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU used by the generator, the bridge, the simulator and everything else over a step."""

    bridge_pid: int | None
    simulator_pid: int | None
    _wall: float = 0.0
    _start: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        values = {"generator": time.process_time(), "machine": machine_busy_seconds()}
        if self.bridge_pid is not None:
            values["bridge"] = cpu_seconds(self.bridge_pid)
        if self.simulator_pid is not None:
            values["simulator"] = cpu_seconds(self.simulator_pid)
        return values

    def start(self) -> None:
        self._wall = time.monotonic()
        self._start = self._read()

    def stop(self) -> dict[str, float | None]:
        """Fractions of one core per part over the step; ``others`` is the rest of the machine."""
        wall = max(1e-9, time.monotonic() - self._wall)
        end = self._read()
        used = {key: (end[key] - self._start[key]) / wall for key in end}
        ours = sum(value for key, value in used.items() if key != "machine")
        return {
            "generator": used["generator"],
            "bridge": used.get("bridge"),
            "simulator": used.get("simulator"),
            "others": max(0.0, used["machine"] - ours),
            "seconds": wall,
        }


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# ----------------------------------------------------------------------------- the test bed


def otp_user(index: int) -> str:
    return f"bench-otp-{index:05d}"


def push_user(index: int) -> str:
    return f"bench-push-{index:05d}"


def storm_user(index: int) -> str:
    return f"bench-storm-{index:05d}"


def _station(network: int, index: int) -> str:
    """A distinct Calling-Station-Id (an IPv4 address, as FortiGate sends) per login."""
    return (
        f"10.{network}.{(index >> 8) & 0xFF}.{index & 0xFF}"
        if index < 65536
        else (f"10.{network + (index >> 16)}.{(index >> 8) & 0xFF}.{index & 0xFF}")
    )


def simulator_users(settings: Settings) -> list[dict[str, Any]]:
    """Every user a run needs: code users, push users approving late, storm users."""
    users: list[dict[str, Any]] = [
        {"username": otp_user(i), "email": f"{otp_user(i)}@bench.invalid", "auth_method": "FTK",
         "push_enabled": False}
        for i in range(settings.otp_users)
    ]  # fmt: skip
    users += [
        {"username": push_user(i), "email": f"{push_user(i)}@bench.invalid", "push": "approve",
         "push_delay": settings.push_delay}
        for i in range(settings.pushes)
    ]  # fmt: skip
    users += [
        {"username": storm_user(i), "email": f"{storm_user(i)}@bench.invalid",
         "push": "approve", "push_delay": settings.storm_push_delay}
        for i in range(settings.storm_logins)
    ]  # fmt: skip
    return users


def bridge_config_text(
    *, fic_base_url: str, port: int, settings: Settings, secret_env: str, fic_secret_env: str
) -> str:
    """The bridge's configuration for the run: defaults except what the bench needs."""
    document = {
        "fic": {
            "base_url": fic_base_url,
            "client_id": SIM_CLIENT_ID,
            "client_secret_env": fic_secret_env,
            "pool_size": settings.pool_size,
            "token_renew_margin": settings.token_renew_margin,
        },
        "radius": {
            "listen": [f"127.0.0.1:{port}"],
            "clients": [{"name": "bench", "address": "127.0.0.1", "secret_env": secret_env}],
        },
        "auth": {"push_timeout": settings.push_timeout},
        "logging": {"format": "json", "level": "info"},
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass
class Bed:
    """What the phases talk to: the bridge's address and secret, the simulator's control."""

    server: tuple[str, int]
    secret: bytes
    sim: SimControl
    bridge: Child | None = None
    simulator: Child | None = None
    workdir: Path | None = None
    token_lifetime: float = 0.0
    token_renew_margin: float | None = None
    started_at: float = field(default_factory=time.monotonic)  # when the bridge was started

    @property
    def bridge_pid(self) -> int | None:
        return self.bridge.pid if self.bridge is not None else None

    @property
    def simulator_pid(self) -> int | None:
        return self.simulator.pid if self.simulator is not None else None

    def check_alive(self) -> None:
        for child in (self.simulator, self.bridge):
            if child is not None and not child.alive():
                raise BenchError(
                    f"the {child.name} exited ({child.process.returncode}); its log "
                    f"{child.log} ends with:\n{child.tail()}"
                )


def _environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RADIUS_BRIDGE")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _wait_for_base_url(child: Child, deadline: float) -> str:
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"the FIC simulator did not start:\n{child.tail()}")
        for line in child.log.read_text(errors="replace").splitlines():
            if line.strip().startswith("base URL:"):
                return line.split("base URL:", 1)[1].strip()
        time.sleep(0.05)
    raise BenchError(f"the FIC simulator did not report its address:\n{child.tail()}")


def start_local_bed(settings: Settings, workdir: Path, progress: Progress) -> Bed:
    """Start the simulator and the bridge as children; return once the bridge answers."""
    users_file = workdir / "simulator-users.yaml"
    users_file.write_text(yaml.safe_dump({"users": simulator_users(settings)}, sort_keys=False))
    python = [sys.executable, "-m", "radius_bridge"]
    progress(f"starting the FIC simulator ({len(simulator_users(settings))} users)")
    simulator = Child(
        "FIC simulator",
        [*python, "simulator", "--host", "127.0.0.1", "--port", "0", "--users", str(users_file),
         "--token-lifetime", f"{settings.token_lifetime:g}"],
        workdir / "simulator.log",
        _environment(),
    )  # fmt: skip
    bed: Bed | None = None
    try:
        base_url = _wait_for_base_url(simulator, time.monotonic() + _CHILD_START_TIMEOUT)
        sim = SimControl(normalize_base_url(base_url))
        radius_secret = secrets.token_urlsafe(24)
        bed = Bed(
            server=("127.0.0.1", 0),
            secret=radius_secret.encode(),
            sim=sim,
            simulator=simulator,
            workdir=workdir,
            token_lifetime=settings.token_lifetime,
            token_renew_margin=settings.token_renew_margin,
        )
        for attempt in range(3):
            port = free_udp_port()
            config = workdir / "radius-bridge.yaml"
            config.write_text(
                bridge_config_text(
                    fic_base_url=base_url,
                    port=port,
                    settings=settings,
                    secret_env=_SECRET_ENV,
                    fic_secret_env=_FIC_SECRET_ENV,
                )
            )
            progress(f"starting the bridge on 127.0.0.1:{port}")
            env = _environment(**{_SECRET_ENV: radius_secret, _FIC_SECRET_ENV: SIM_CLIENT_SECRET})
            bed.bridge = Child(
                "bridge", [*python, "serve", "--config", str(config)], workdir / "bridge.log", env
            )
            bed.server = ("127.0.0.1", port)
            bed.started_at = time.monotonic()
            if _wait_until_serving(bed, time.monotonic() + _CHILD_START_TIMEOUT):
                return bed
            bed.bridge.stop()
            if attempt == 2 or "address already in use" not in bed.bridge.tail():
                break  # only a port taken in the meantime is worth another try
        assert bed.bridge is not None
        raise BenchError(f"the bridge did not start; {bed.bridge.log} ends with:\n"
                         f"{bed.bridge.tail()}")  # fmt: skip
    except BaseException:
        if bed is not None and bed.bridge is not None:
            bed.bridge.stop()
        simulator.stop()
        raise


def _wait_until_serving(bed: Bed, deadline: float) -> bool:
    """True once an OTP login is accepted; False when the bridge exits or time runs out."""
    codec = RadiusCodec()
    attempt = 0
    while time.monotonic() < deadline:
        if bed.bridge is not None and not bed.bridge.alive():
            return False
        attempt += 1
        if _probe(bed, codec, attempt) is not None:
            return True
        time.sleep(0.1)
    return False


def _probe(bed: Bed, codec: RadiusCodec, attempt: int) -> int | None:
    """One OTP login through the bridge; its reply code, or None without an Accept."""
    request = prepare(codec, bed.secret, [(otp_user(0), DEMO_CODE, f"192.0.2.{attempt % 250}")])[0]
    with LoadGenerator(bed.secret) as generator:
        stream = generator.stream("probe", bed.server, [request], in_flight=1, timeout=1.0)
        stream.send_next(time.monotonic())
        generator.drain([stream], until=time.monotonic() + 1.0)
        if stream.result.accepted:
            return 2
        if stream.result.answered:
            raise BenchError(
                "the bridge answered the probe login with a Reject: is the simulator's user "
                f"{otp_user(0)} there with code {DEMO_CODE}?"
            )
    return None


def connect_external_bed(
    server: tuple[str, int], secret: bytes, fic: str, settings: Settings, progress: Progress
) -> Bed:
    """A running bridge and its simulator: users added through the control endpoints."""
    sim = SimControl(normalize_base_url(fic))
    try:
        current = sim.settings()
    except (OSError, http.client.HTTPException, BenchError, ValueError) as error:
        raise BenchError(
            f"--fic {fic}: no FIC simulator control endpoints there ({error}); the bench needs "
            "the simulator to create its users and to count FIC requests"
        ) from None
    users = simulator_users(settings)
    progress(f"adding {len(users)} users to the simulator at {sim.origin}")
    for user in users:
        sim.add_user(user)
    bed = Bed(
        server=server,
        secret=secret,
        sim=sim,
        token_lifetime=float(current.get("token_lifetime") or 0.0),
    )
    if not _wait_until_serving(bed, time.monotonic() + 10.0):
        raise BenchError(f"no answer from the bridge at {server[0]}:{server[1]}")
    return bed


# ------------------------------------------------------------------------------------ phases


def _otp_requests(
    settings: Settings, secret: bytes, codec: RadiusCodec, network: int
) -> list[Prepared]:
    logins = [
        (otp_user(index % settings.otp_users), DEMO_CODE, _station(network, index))
        for index in range(settings.otp_requests)
    ]
    return prepare(codec, secret, logins)


# Sockets per OTP stream: a request list used up moves to the next socket (a new source port,
# so not a duplicate for the bridge); this many lists fit in before one repeats on a socket.
_OTP_SOCKETS = 16


def _otp_stream(
    generator: LoadGenerator, bed: Bed, name: str, requests: Sequence[Prepared]
) -> Stream:
    return generator.stream(
        name, bed.server, requests, in_flight=_OTP_SOCKETS * IDENTIFIERS, timeout=5.0
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _count_failures(stream: Stream) -> int:
    result = stream.result
    return result.rejected + result.challenged + result.lost + result.invalid


@dataclass
class Run:
    """The state shared by the phases of one run, and what they found."""

    settings: Settings
    bed: Bed
    progress: Progress
    codec: RadiusCodec = field(default_factory=RadiusCodec)
    figures: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    generator_saturated: bool = False

    def meter(self) -> CpuMeter:
        return CpuMeter(self.bed.bridge_pid, self.bed.simulator_pid)

    def note_generator(self, phase: str, cpu: Mapping[str, float | None]) -> None:
        load = cpu["generator"] or 0.0
        if load >= GENERATOR_SATURATED:
            self.generator_saturated = True
            self.notes.append(
                f"{phase}: the load generator used {load:.0%} of a core and may have "
                "saturated before the bridge did"
            )

    def rss_mb(self) -> float | None:
        pid = self.bed.bridge_pid
        return None if pid is None else rss_bytes(pid) / 1e6


def phase_otp(run: Run, generator: LoadGenerator) -> None:
    """Phase 1: Accepts per second with a window in flight, then latency at half that rate."""
    settings, bed = run.settings, run.bed
    requests = _otp_requests(settings, bed.secret, run.codec, network=1)
    run.progress(
        f"phase 1/5: OTP at saturation ({settings.window} in flight, "
        f"{settings.warmup:g} + {settings.duration:g} s)"
    )
    stream = _otp_stream(generator, bed, "otp-saturation", requests)
    meter = run.meter()
    started = time.monotonic()
    generator.run_window(stream, window=settings.window, until=started + settings.warmup)
    measured_from = time.monotonic()
    meter.start()
    generator.run_window(stream, window=settings.window, until=measured_from + settings.duration)
    measured_to = time.monotonic()
    cpu = meter.stop()
    generator.drain([stream], until=time.monotonic() + 5.0)
    bed.check_alive()
    window = completed_between(stream.result, measured_from, measured_to)
    window_latencies = [latency for _, latency, _ in window]
    accepts = sum(1 for _, _, code in window if code == ACCESS_ACCEPT)
    rate = accepts / (measured_to - measured_from)
    run.figures.update(
        otp_accepts_per_second=round(rate, 1),
        otp_saturation_window=settings.window,
        otp_saturation_p50_ms=_ms(percentile(window_latencies, 0.5)),
        otp_failures=_count_failures(stream),
        otp_generator_cpu=round(cpu["generator"] or 0.0, 3),
        otp_bridge_cpu=_round(cpu["bridge"], 3),
        otp_bridge_cpu_ms_per_login=(
            None if cpu["bridge"] is None or not rate else round(cpu["bridge"] / rate * 1000, 3)
        ),
        otp_simulator_cpu=_round(cpu["simulator"], 3),
        otp_others_cpu=round(cpu["others"] or 0.0, 3),
    )
    run.note_generator("phase 1", cpu)
    if not rate:
        raise BenchError("no OTP login was accepted at saturation; see the bridge's log")

    paced_rate = rate / 2
    run.progress(
        f"phase 1/5: OTP latency at 50 % load ({paced_rate:.0f}/s, {settings.duration:g} s)"
    )
    paced = _otp_stream(generator, bed, "otp-paced", requests)
    meter = run.meter()
    meter.start()
    generator.run_paced(paced, rate=paced_rate, until=time.monotonic() + settings.duration)
    paced_cpu = meter.stop()
    generator.drain([paced], until=time.monotonic() + 5.0)
    latencies = paced.result.latencies
    run.figures.update(
        otp_paced_rate=round(paced_rate, 1),
        otp_p50_ms=_ms(percentile(latencies, 0.5)),
        otp_p90_ms=_ms(percentile(latencies, 0.9)),
        otp_p99_ms=_ms(percentile(latencies, 0.99)),
        otp_paced_others_cpu=round(paced_cpu["others"] or 0.0, 3),
    )
    run.details["otp_paced_failures"] = _count_failures(paced)
    run.details["otp_answered"] = stream.result.answered + paced.result.answered


def phase_overhead(run: Run, generator: LoadGenerator) -> None:
    """Phase 2: round trip minus the simulator's FIC latency, at half of what the pool allows."""
    settings, bed = run.settings, run.bed
    latency = settings.overhead_latency
    saturation = run.figures["otp_accepts_per_second"] or 0.0
    # With FIC taking `latency` per call, pool_size connections carry pool_size/latency calls a
    # second at most; half of the lower of that and the measured saturation is "50 % load".
    capacity = min(saturation, settings.pool_size / latency) if latency > 0 else saturation
    rate = max(1.0, capacity / 2)
    run.progress(
        f"phase 2/5: bridge overhead with {latency * 1000:g} ms FIC latency "
        f"({rate:.0f}/s, {settings.duration:g} s)"
    )
    requests = _otp_requests(settings, bed.secret, run.codec, network=2)
    previous = bed.sim.settings().get("latency", 0.0)
    bed.sim.configure(latency=latency)
    try:
        fic_alone = _bare_fic_round_trips(bed.sim, 30 if settings.quick else 60)
        stream = _otp_stream(generator, bed, "otp-overhead", requests)
        generator.run_paced(stream, rate=rate, until=time.monotonic() + settings.duration)
        generator.drain([stream], until=time.monotonic() + 5.0)
    finally:
        bed.sim.configure(latency=previous)
    bed.check_alive()
    overheads = [value - latency for value in stream.result.latencies]
    p50, p99 = percentile(overheads, 0.5), percentile(overheads, 0.99)
    # What the simulator and loopback HTTP add by themselves: a bare client's round trip to a
    # light endpoint, minus the same latency. Not the bridge's doing, so taken out of its share.
    alone50 = percentile(fic_alone, 0.5) - latency if fic_alone else None
    alone99 = percentile(fic_alone, 0.99) - latency if fic_alone else None
    run.figures.update(
        overhead_fic_latency_ms=_ms(latency),
        overhead_rate=round(rate, 1),
        overhead_round_trip_p50_ms=_ms(p50),
        overhead_round_trip_p99_ms=_ms(p99),
        overhead_simulator_p50_ms=None if alone50 is None else _ms(alone50),
        overhead_simulator_p99_ms=None if alone99 is None else _ms(alone99),
        overhead_p50_ms=None if alone50 is None else _ms(p50 - alone50),
        overhead_p99_ms=None if alone99 is None else _ms(p99 - alone99),
    )
    run.details["overhead_failures"] = _count_failures(stream)


def _bare_fic_round_trips(sim: SimControl, count: int) -> list[float]:
    """Round trips of a plain HTTP client to the simulator's ``GET /version``, one at a time.

    Empty when that endpoint wants a bearer token (a switch of the simulator).
    """
    times = []
    for _ in range(count):
        started = time.monotonic()
        try:
            sim.call("GET", "/version")
        except BenchError:
            return []
        times.append(time.monotonic() - started)
        time.sleep(0.002)
    return times


def _settle(bed: Bed, generator: LoadGenerator, *, until: float) -> None:
    """Wait for the bridge to finish what it was given (its CPU falls quiet), before ``until``.

    FIC counts a push when it starts; the bridge still has to take the answer and register the
    login as waiting, and a measurement started meanwhile would time that backlog too.
    """
    if bed.bridge_pid is None:
        generator.poll(max(0.0, min(2.0, until - time.monotonic())))
        return
    quiet_below = 0.2  # of one core
    limit = min(until, time.monotonic() + 10.0)
    while time.monotonic() < limit:
        before, started = cpu_seconds(bed.bridge_pid), time.monotonic()
        while (left := started + 0.25 - time.monotonic()) > 0:
            generator.poll(left)
        if (cpu_seconds(bed.bridge_pid) - before) / (time.monotonic() - started) < quiet_below:
            return


def _pushes(counters: Mapping[str, Any]) -> int:
    """Pushes FIC started (all users: the phases run one after the other)."""
    return int(counters["totals"]["pushes"])


def _status_requests(counters: Mapping[str, Any]) -> int:
    return int(counters["status_polls"]) + int(counters["batch_polls"])


def phase_pending(run: Run, generator: LoadGenerator) -> None:
    """Phase 3: N push logins waiting while OTP runs at the idle rate; then all approved."""
    settings, bed = run.settings, run.bed
    count = settings.pushes
    push_requests = prepare(
        run.codec, bed.secret, [(push_user(i), "push", _station(20, i)) for i in range(count)]
    )
    otp_requests = _otp_requests(settings, bed.secret, run.codec, network=3)
    run.figures["idle_bridge_rss_mb"] = _round(run.rss_mb(), 1)
    before = bed.sim.counters()
    run.progress(
        f"phase 3/5: starting {count} pushes ({settings.push_rate:g}/s; users approve "
        f"{settings.push_delay:.0f} s after their push)"
    )
    pushes = generator.stream(
        "pushes", bed.server, push_requests, in_flight=count,
        timeout=settings.push_timeout + 10.0,
    )  # fmt: skip
    sending_started = time.monotonic()
    generator.run_paced(
        pushes,
        rate=settings.push_rate,
        until=sending_started + count / settings.push_rate * 3 + 10,
        count=count,
    )
    # Wait until FIC has every push (each one a POST /auth), so all N are pending at once.
    deadline = sending_started + settings.push_delay - settings.duration - 1.0
    started = 0
    while time.monotonic() < deadline:
        started = _pushes(bed.sim.counters()) - _pushes(before)
        if started >= count:
            break
        generator.poll(0.2)
    _settle(bed, generator, until=deadline)
    bed.check_alive()
    pending = pushes.in_flight
    run.progress(f"phase 3/5: {pending} pushes pending; OTP traffic for {settings.duration:g} s")
    rate = run.figures["otp_paced_rate"] or 1.0
    otp = _otp_stream(generator, bed, "otp-pending", otp_requests)
    at_start = bed.sim.counters()
    counted_from = time.monotonic()
    generator.poll(0.2)  # the control call done with, before anything is measured
    measured_from = time.monotonic()
    rss_max = run.rss_mb()
    next_sample = measured_from + 0.5

    def sample_rss(now: float) -> None:
        nonlocal rss_max, next_sample
        if now >= next_sample:
            next_sample = now + 0.5
            value = run.rss_mb()
            if value is not None and (rss_max is None or value > rss_max):
                rss_max = value

    meter = run.meter()
    meter.start()
    generator.run_paced(
        otp, rate=rate, until=measured_from + settings.duration, alongside=sample_rss
    )
    pending_cpu = meter.stop()
    generator.drain([otp], until=time.monotonic() + 5.0)
    at_end = bed.sim.counters()
    counted_to = time.monotonic()
    answered_early = pushes.result.answered
    idle_p99 = run.figures["otp_p99_ms"]
    p99 = _ms(percentile(otp.result.latencies, 0.99))
    status_rate = (_status_requests(at_end) - _status_requests(at_start)) / (
        counted_to - counted_from
    )
    if answered_early:
        run.notes.append(
            f"phase 3: {answered_early} push logins were answered before the measurement ended "
            "(the bridge was slower than the push schedule assumed)"
        )
    run.progress("phase 3/5: waiting for the approvals")
    first_approval = sending_started + settings.push_delay
    generator.drain([pushes], until=first_approval + settings.push_timeout + 5.0)
    # From the user's approval (push_delay after FIC got the push, which is at or after the
    # login was sent) to the Accept: what the poller adds. An upper bound, by that "at or after".
    answer_lags = [
        latency - settings.push_delay
        for _, latency, code in pushes.result.completions
        if code == ACCESS_ACCEPT
    ]
    after = bed.sim.counters()
    bed.check_alive()
    run.figures.update(
        pending_pushes=pending,
        pending_otp_rate=round(rate, 1),
        pending_otp_p99_ms=p99,
        pending_otp_p99_ratio=(round(p99 / idle_p99, 2) if idle_p99 else None),
        pending_fic_status_per_second=round(status_rate, 2),
        pending_others_cpu=round(pending_cpu["others"] or 0.0, 3),
        pending_bridge_rss_mb=_round(rss_max, 1),
        pending_push_accepts=pushes.result.accepted,
        pending_answer_p50_s=round(percentile(answer_lags, 0.5), 2),
        pending_answer_p99_s=round(percentile(answer_lags, 0.99), 2),
    )
    push_posts = _pushes(after) - _pushes(before)
    status = _status_requests(after) - _status_requests(before)
    run.details["pending"] = {
        "push_logins_sent": pushes.result.sent,
        "push_rejects": pushes.result.rejected,
        "push_lost": pushes.result.lost,
        "otp_failures": _count_failures(otp),
        "fic_push_posts": push_posts,
        "fic_status_requests": status,
        "fic_pushes_started_before_measurement": started,
    }
    run.figures.update(
        fic_posts_per_push_login=round(push_posts / max(1, pushes.result.sent), 4),
        fic_requests_per_push_login=round((push_posts + status) / max(1, pushes.result.sent), 4),
    )


def phase_storm(run: Run, generator: LoadGenerator) -> None:
    """Phase 4: push logins re-sent every second until answered; one push each."""
    settings, bed = run.settings, run.bed
    count = settings.storm_logins
    run.progress(f"phase 4/5: retransmit storm ({count} push logins, re-sent every 1 s)")
    requests = prepare(
        run.codec, bed.secret, [(storm_user(i), "push", _station(30, i)) for i in range(count)]
    )
    before = bed.sim.counters()
    stream = generator.stream(
        "storm", bed.server, requests, in_flight=count, timeout=30.0, retransmit_every=1.0
    )
    generator.run_paced(stream, rate=500.0, until=time.monotonic() + 10.0, count=count)
    generator.drain([stream], until=time.monotonic() + 30.0)
    after = bed.sim.counters()
    bed.check_alive()
    pushes = _pushes(after) - _pushes(before)
    run.figures.update(
        storm_logins=count,
        storm_transmissions_per_login=round(stream.result.transmissions / max(1, count), 2),
        storm_pushes_per_login=round(pushes / max(1, count), 4),
        storm_accepts=stream.result.accepted,
    )


def phase_economy(
    run: Run,
    baseline: Mapping[str, Any],
    before_otp: Mapping[str, Any],
    after_otp: Mapping[str, Any],
    last: Mapping[str, Any],
    seconds: float,
) -> None:
    """Phase 5: what the counters say about FIC requests, logins and connections.

    ``baseline`` is where the bridge's FIC traffic is counted from (a fresh simulator's zeros
    when the bench started both); ``seconds`` the time the bridge ran since then.
    """
    settings, bed = run.settings, run.bed
    run.progress("phase 5/5: FIC economy from the simulator's counters")
    answered = run.details.get("otp_answered", 0)
    requests_before, requests_after = before_otp["requests"], after_otp["requests"]
    posts = requests_after.get("POST /auth", 0) - requests_before.get("POST /auth", 0)
    logins_in_otp = after_otp["logins"] - before_otp["logins"]
    total = sum(requests_after.values()) - sum(requests_before.values()) - logins_in_otp
    logins = last["logins"] - baseline["logins"]
    lifetime = bed.token_lifetime
    margin = bed.token_renew_margin
    expected: float | None = None
    if lifetime and margin is not None:
        renew_every = lifetime / 2 if lifetime < 2 * margin else lifetime - margin
        expected = 1 + math.floor(seconds / renew_every)
    connections = last["tcp_connections"] - baseline["tcp_connections"] - bed.sim.connections
    run.figures.update(
        fic_posts_per_otp_login=round(posts / max(1, answered), 4),
        fic_requests_per_otp_login=round(total / max(1, answered), 4),
        fic_logins=logins,
        fic_logins_expected=expected,
        fic_logins_per_hour=round(logins * 3600.0 / max(1e-9, seconds), 1),
        fic_tcp_connections=connections,
        pool_size=settings.pool_size,
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# ------------------------------------------------------------------------------------- a run


def run_bench(settings: Settings, bed: Bed, progress: Progress) -> dict[str, Any]:
    """Run every phase against ``bed``; the report (figures, targets, notes, settings)."""
    run = Run(settings=settings, bed=bed, progress=progress)
    started = time.monotonic()
    started_wall = time.time()
    previous = bed.sim.settings()
    bed.sim.configure(codes_single_use=False)  # one fixed code, accepted again and again
    try:
        before_otp = bed.sim.counters()
        if bed.bridge is not None:
            # A simulator of our own counted from zero: the bridge's first login and
            # connections (made for the readiness probe) are part of the run.
            baseline: Mapping[str, Any] = {"logins": 0, "tcp_connections": 0}
            since = bed.started_at
        else:
            baseline, since = before_otp, started
            bed.sim.connections = 0  # counted from this snapshot on
        with LoadGenerator(bed.secret) as generator:
            phase_otp(run, generator)
            after_otp = bed.sim.counters()
            phase_overhead(run, generator)
            phase_pending(run, generator)
            phase_storm(run, generator)
        last = bed.sim.counters()
        phase_economy(run, baseline, before_otp, after_otp, last, time.monotonic() - since)
    finally:
        bed.sim.configure(codes_single_use=previous.get("codes_single_use", True))
    run.figures["run_seconds"] = round(time.monotonic() - started, 1)
    return _report(run, started_wall)


def _report(run: Run, started_wall: float) -> dict[str, Any]:
    figures = {figure.key: run.figures.get(figure.key) for figure in FIGURES}
    targets = []
    for target in TARGETS:
        value = figures.get(target.key)
        targets.append({
            "figure": target.key, "target": target.text,
            "value": value, "met": None if value is None else target.check(value),
        })  # fmt: skip
    for key, text, other in _PAIRED_TARGETS:
        value, bound = figures.get(key), figures.get(other)
        met = None
        if value is not None and bound is not None:
            met = value == bound if text.startswith("=") else value <= bound
        targets.append({"figure": key, "target": text, "value": value, "met": met})
    return {
        "radius_bridge": __version__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_wall)),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": list(os.getloadavg()),
        },
        "mode": "local" if run.bed.bridge is not None else "external",
        "server": f"{run.bed.server[0]}:{run.bed.server[1]}",
        "settings": asdict(run.settings)
        | {
            "push_delay": run.settings.push_delay,
            "push_timeout": run.settings.push_timeout,
            "token_lifetime": run.bed.token_lifetime,
        },
        "figures": figures,
        "targets": targets,
        "generator_saturated": run.generator_saturated,
        "notes": run.notes,
        "details": run.details,
    }


def render_table(report: Mapping[str, Any]) -> str:
    """The report as an aligned text table, targets marked."""
    figures = report["figures"]
    verdicts = {target["figure"]: target for target in report["targets"]}
    machine = report["machine"]
    settings = report["settings"]
    lines = [
        f"radius-bridge bench {'--quick ' if settings['quick'] else ''}({report['mode']}): "
        f"{machine['cpus_usable']} of {machine['cpu_count']} CPUs, load average "
        f"{machine['load_average'][0]:.2f} at the end, pool_size {settings['pool_size']}",
        "",
        f"{'figure':<44} {'value':>12}  {'target':<12}",
    ]
    for figure in FIGURES:
        value = figures.get(figure.key)
        shown = "n/a" if value is None else _format(value)
        unit = f" {figure.unit}" if figure.unit and value is not None else ""
        verdict = verdicts.get(figure.key)
        target = ""
        if verdict is not None:
            mark = {True: "met", False: "NOT MET", None: ""}[verdict["met"]]
            target = f"{verdict['target']} {mark}".strip()
        lines.append(f"{figure.label:<44} {shown + unit:>12}  {target}")
    if report["generator_saturated"]:
        lines.append("")
        lines.append("The load generator saturated first in at least one phase (see notes).")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _format(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


# ----------------------------------------------------------------------------------- the CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    parser.description = (
        "Measure OTP throughput and latency, bridge overhead, pending pushes, FIC economy and "
        "retransmission handling, against a simulator and bridge started on 127.0.0.1 (or an "
        "existing bridge with --server and its simulator with --fic)."
    )
    parser.add_argument("--quick", action="store_true",
                        help="small counts and short phases (under a minute)")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON to FILE")
    parser.add_argument("--pushes", type=_positive_int, metavar="N",
                        help="pending pushes in phase 3 (default 10000; --quick 500)")  # fmt: skip
    parser.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                        help="seconds measured per step (default 10; --quick 2.5)")  # fmt: skip
    parser.add_argument("--window", type=_positive_int, metavar="N",
                        help="OTP requests in flight at saturation (default 64)")  # fmt: skip
    parser.add_argument("--pool-size", type=_positive_int, metavar="N",
                        help="the bridge's fic.pool_size (default 10)")  # fmt: skip
    parser.add_argument("--fic-latency", type=float, metavar="MS",
                        help="simulator latency in the overhead phase (default 20)")  # fmt: skip
    parser.add_argument("--server", metavar="HOST:PORT",
                        help="bench a running bridge instead of starting one")  # fmt: skip
    parser.add_argument("--secret-env", metavar="NAME",
                        help="with --server: the shared secret is in $NAME")  # fmt: skip
    parser.add_argument("--fic", metavar="URL",
                        help="the FIC simulator the bridge uses (with --server; without it, "
                        "the started bridge uses this simulator)")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="keep the working directory (configuration, logs)")  # fmt: skip


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.pushes is not None:
        overrides["pushes"] = args.pushes
    if args.duration is not None:
        overrides["duration"] = args.duration
    if args.window is not None:
        overrides["window"] = args.window
    if args.pool_size is not None:
        overrides["pool_size"] = args.pool_size
    if args.fic_latency is not None:
        overrides["overhead_latency"] = args.fic_latency / 1000.0
    return Settings.quick_run(**overrides) if args.quick else Settings.full(**overrides)


def _parse_server(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise BenchError(f"--server {text}: use HOST:PORT") from None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does, so the children are stopped on the way out."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_from_args(args: argparse.Namespace) -> int:
    """``radius-bridge bench``: 0 when the run completed (targets met or not), 1 when it could
    not run, 2 for contradictory options."""
    if args.server is not None and (args.fic is None or args.secret_env is None):
        print("radius-bridge bench: --server needs --secret-env and --fic (the FIC simulator "
              "that bridge uses: the bench adds its users there and reads its counters)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    settings = settings_from_args(args)
    progress = Progress()
    workdir: Path | None = None
    bed: Bed | None = None
    failed = True
    try:
        with _terminate_as_interrupt():
            if args.server is not None:
                secret = os.environ.get(args.secret_env, "")
                if not secret:
                    raise BenchError(f"${args.secret_env} is empty or not set")
                bed = connect_external_bed(
                    _parse_server(args.server), secret.encode(), args.fic, settings, progress
                )
            else:
                workdir = Path(tempfile.mkdtemp(prefix="radius-bridge-bench-"))
                bed = start_local_bed(settings, workdir, progress)
            report = run_bench(settings, bed, progress)
        failed = False
    except BenchError as error:
        print(f"radius-bridge bench: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("radius-bridge bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if bed is not None:
            for child in (bed.bridge, bed.simulator):
                if child is not None:
                    child.stop()
            bed.sim.close()
        if workdir is not None:
            if args.keep or failed:
                progress(f"logs and configuration kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    print(render_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        progress(f"figures written to {args.json}")
    return EXIT_OK
