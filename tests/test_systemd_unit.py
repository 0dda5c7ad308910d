"""The systemd unit, sysusers and tmpfiles snippets: systemd's own checks, and the sandbox at work.

``systemd-analyze verify`` and ``systemd-analyze security --offline=true`` read unit files and
need no running systemd (in a container PID 1 is something else). ``verify`` insists that every
Exec*= binary exists, so it checks a copy whose ``/usr/bin/radius-bridge`` is the command this
test environment installed, as a pip/venv install's drop-in would do. The last tests run the
real daemon under a seccomp filter built from the unit's own SystemCallFilter=,
SystemCallArchitectures=, RestrictAddressFamilies= and MemoryDenyWriteExecute= lines (as
systemd documents them), since those are the settings that can break a Python program; the
namespace settings (ProtectSystem=, PrivateTmp=, ...) only hide what the daemon never touches.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import queue
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from radius_bridge.cli import EXIT_CONFIG, build_parser
from radius_bridge.client import RadiusClient
from radius_bridge.model import Outcome
from radius_bridge.simulator import FicSimulator, SimulatorSettings, SimUser

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "radius-bridge.service"
SYSUSERS = ROOT / "systemd" / "radius-bridge.sysusers"
TMPFILES = ROOT / "systemd" / "radius-bridge.tmpfiles"
EXAMPLE_CONFIG = ROOT / "config" / "radius-bridge.example.yaml"
UNIT_BINARY = "/usr/bin/radius-bridge"
MAX_EXPOSURE = 2.0

requires_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed here; it is what checks a unit file",
)


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key`` -> its values in file order, for every section (the unit's keys do not repeat)."""
    settings: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def setting(key: str) -> list[str]:
    return unit_settings(UNIT.read_text()).get(key, [])


def installed_command() -> str:
    """The ``radius-bridge`` script of this environment (pip puts it beside the interpreter)."""
    beside = Path(sys.executable).parent / "radius-bridge"
    found = str(beside) if beside.exists() else shutil.which("radius-bridge")
    assert found, "the radius-bridge command is not installed (pip install -e .)"
    return found


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    """A copy of the unit whose commands point at this environment's radius-bridge."""
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(UNIT_BINARY, installed_command()))
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=30, check=False
    )


# --- systemd's own checks --------------------------------------------------------------------


@requires_analyze
def test_unit_passes_systemd_analyze_verify(checkable_unit: Path) -> None:
    """systemd-analyze verify accepts the unit without a single warning."""
    result = analyze("verify", "--man=no", str(checkable_unit))
    # verify exits 0 even for unknown keys or unparsable values ("ignoring"), so any output at
    # all is a failure.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@requires_analyze
def test_verify_would_catch_a_bad_line(checkable_unit: Path) -> None:
    """The verify check can fail: a misspelt directive or a bad value produces output."""
    text = checkable_unit.read_text()
    checkable_unit.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    result = analyze("verify", "--man=no", str(checkable_unit))
    assert "strikt" in result.stderr


@requires_analyze
def test_exposure_is_at_most_two(checkable_unit: Path) -> None:
    """systemd-analyze security rates the unit's exposure at 2.0 or less (0 best, 10 worst)."""
    # --threshold is the exposure times ten; above it the command fails.
    threshold = str(int(MAX_EXPOSURE * 10))
    result = analyze("security", "--offline=true", f"--threshold={threshold}", str(checkable_unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stderr


@requires_analyze
def test_exposure_check_can_fail(checkable_unit: Path) -> None:
    """The exposure check can fail: the same unit with its sandbox removed scores above 2.0."""
    bare = [
        line
        for line in checkable_unit.read_text().splitlines()
        if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability"))
    ]
    checkable_unit.write_text("\n".join(bare) + "\n")
    threshold = str(int(MAX_EXPOSURE * 10))
    result = analyze("security", "--offline=true", f"--threshold={threshold}", str(checkable_unit))
    assert result.returncode != 0


# --- what the unit must say -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", ["notify"]),
        ("NotifyAccess", ["main"]),
        ("WatchdogSec", ["30s"]),
        ("Restart", ["on-failure"]),
        ("RestartPreventExitStatus", [str(EXIT_CONFIG)]),
        ("ExecReload", ["/bin/kill -HUP $MAINPID"]),
        ("User", ["radius-bridge"]),
        ("CapabilityBoundingSet", [""]),
        ("AmbientCapabilities", [""]),
        ("NoNewPrivileges", ["yes"]),
        ("ProtectSystem", ["strict"]),
        ("ProtectHome", ["yes"]),
        ("PrivateTmp", ["yes"]),
        ("PrivateDevices", ["yes"]),
        ("MemoryDenyWriteExecute", ["yes"]),
        ("RestrictAddressFamilies", ["AF_INET AF_INET6 AF_UNIX"]),
        ("SystemCallFilter", ["@system-service", "~@privileged @resources"]),
        ("SystemCallArchitectures", ["native"]),
        ("UMask", ["0077"]),
    ],
)
def test_unit_settings(key: str, expected: list[str]) -> None:
    """The unit states the service type, restart policy and sandbox the issue asks for."""
    assert setting(key) == expected


def test_unit_commands_are_what_the_cli_accepts() -> None:
    """ExecStartPre= runs check-config and ExecStart= runs serve, on the same configuration file."""
    (pre,) = setting("ExecStartPre")
    (start,) = setting("ExecStart")
    pre_argv, start_argv = shlex.split(pre), shlex.split(start)
    assert pre_argv[0] == start_argv[0] == UNIT_BINARY
    pre_args = build_parser().parse_args(pre_argv[1:])
    start_args = build_parser().parse_args(start_argv[1:])
    assert (pre_args.command, start_args.command) == ("check-config", "serve")
    assert pre_args.config == start_args.config == "/etc/radius-bridge/radius-bridge.yaml"


def credential_names(node: object) -> set[str]:
    """Values of every ``*_credential`` key in a parsed configuration."""
    if isinstance(node, dict):
        names = {v for k, v in node.items() if str(k).endswith("_credential")}
        return names.union(*(credential_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(credential_names(v) for v in node))
    return set()


def test_unit_loads_every_credential_the_example_configuration_uses() -> None:
    """Each *_credential name the example configuration uses has a LoadCredential= line."""
    used = credential_names(yaml.safe_load(EXAMPLE_CONFIG.read_text()))
    loaded = {value.partition(":")[0] for value in setting("LoadCredential")}
    assert used, "the example configuration uses no *_credential key"
    assert used <= loaded
    # The FIC secret's credential is shown commented out in the example; the unit loads it too.
    assert "fic-client-secret" in loaded


# --- sysusers and tmpfiles --------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="systemd-sysusers/systemd-tmpfiles are not installed here",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles needs root to set ownership")
def test_sysusers_and_tmpfiles_set_up_a_scratch_root(tmp_path: Path) -> None:
    """In an empty root the snippets create a no-login system user and private directories."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for command in (
        ["systemd-sysusers", f"--root={root}", str(SYSUSERS)],
        ["systemd-tmpfiles", f"--root={root}", "--create", str(TMPFILES)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
    (passwd,) = (root / "etc" / "passwd").read_text().splitlines()
    name, _, uid, gid, _, home, shell = passwd.split(":")
    assert (name, home) == ("radius-bridge", "/")
    assert shell.endswith("nologin")
    assert int(uid) < 1000  # a system account
    config_dir = (root / "etc" / "radius-bridge").stat()
    assert (oct(config_dir.st_mode & 0o777), config_dir.st_uid, config_dir.st_gid) == (
        "0o750",
        0,
        int(gid),
    )
    credstore = (root / "etc" / "credstore").stat()
    assert (oct(credstore.st_mode & 0o777), credstore.st_uid) == ("0o700", 0)


# --- the daemon inside the unit's seccomp sandbox --------------------------------------------

requires_seccomp_emulation = pytest.mark.skipif(
    platform.machine() != "x86_64"
    or shutil.which("systemd-analyze") is None
    or not Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").exists(),
    reason="the sandbox emulation needs x86-64, systemd-analyze and the kernel's syscall table "
    "(/usr/include/x86_64-linux-gnu/asm/unistd_64.h, package linux-libc-dev)",
)

# Classic BPF opcodes and seccomp constants (linux/filter.h, linux/seccomp.h, linux/audit.h).
BPF_LD_W_ABS, BPF_JEQ_K, BPF_AND_K, BPF_RET_K = 0x20, 0x15, 0x54, 0x06
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
# Offsets in struct seccomp_data: nr, arch, args[0], args[2] (low 32 bits, little-endian).
DATA_NR, DATA_ARCH, DATA_ARG0, DATA_ARG2 = 0, 4, 16, 32
NR_MMAP, NR_MPROTECT, NR_SHMAT, NR_SOCKET, NR_PKEY_MPROTECT = 9, 10, 30, 41, 329
PROT_WRITE_EXEC, PROT_EXEC, SHM_EXEC = 0o6, 0o4, 0o100000
EPERM, EAFNOSUPPORT = 1, 97


def syscall_group(name: str) -> set[str]:
    """The system calls in a systemd group such as @system-service, nested groups expanded."""
    result = analyze("syscall-filter", name)
    assert result.returncode == 0, result.stderr
    calls: set[str] = set()
    for line in result.stdout.splitlines()[1:]:
        item = line.strip()
        if item.startswith("@"):
            calls |= syscall_group(item)
        elif item and not item.startswith("#"):
            calls.add(item)
    return calls


def syscall_numbers() -> dict[str, int]:
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+) (\d+)", header)}


def seccomp_program() -> bytes:
    """The unit's seccomp settings as one BPF program (systemd.exec(5) describes each rule)."""
    allowed: set[str] = set()
    for value in setting("SystemCallFilter"):
        deny = value.startswith("~")
        names: set[str] = set()
        for item in value.removeprefix("~").split():
            names |= syscall_group(item) if item.startswith("@") else {item}
        allowed = allowed - names if deny else allowed | names
    numbers = syscall_numbers()
    families = [getattr(socket, name) for name in setting("RestrictAddressFamilies")[0].split()]
    assert setting("SystemCallArchitectures") == ["native"]
    assert setting("MemoryDenyWriteExecute") == ["yes"]

    code: list[bytes] = []

    def op(opcode: int, k: int, jump_true: int = 0, jump_false: int = 0) -> None:
        code.append(struct.pack("=HBBI", opcode, jump_true, jump_false, k))

    def refuse(errno: int = EPERM) -> None:
        op(BPF_RET_K, SECCOMP_RET_ERRNO | errno)

    # SystemCallArchitectures=native: no other ABI.
    op(BPF_LD_W_ABS, DATA_ARCH)
    op(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0)
    refuse()
    # MemoryDenyWriteExecute=: mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect adding
    # PROT_EXEC, shmat with SHM_EXEC. Each block is: load nr, match, test the flags, refuse.
    for calls, mask in (
        ((NR_MMAP,), PROT_WRITE_EXEC),
        ((NR_MPROTECT, NR_PKEY_MPROTECT), PROT_EXEC),
        ((NR_SHMAT,), SHM_EXEC),
    ):
        op(BPF_LD_W_ABS, DATA_NR)
        for index, number in enumerate(calls):
            later = len(calls) - index - 1
            op(BPF_JEQ_K, number, later, 0 if later else 4)
        op(BPF_LD_W_ABS, DATA_ARG2)
        op(BPF_AND_K, mask)
        op(BPF_JEQ_K, mask, 0, 1)
        refuse()
    # RestrictAddressFamilies=: socket() of any other family fails with EAFNOSUPPORT.
    op(BPF_LD_W_ABS, DATA_NR)
    op(BPF_JEQ_K, NR_SOCKET, 0, len(families) + 2)
    op(BPF_LD_W_ABS, DATA_ARG0)
    for index, family in enumerate(families):
        op(BPF_JEQ_K, family, len(families) - index, 0)
    refuse(EAFNOSUPPORT)
    # SystemCallFilter= with SystemCallErrorNumber=EPERM: the allow list, everything else EPERM.
    op(BPF_LD_W_ABS, DATA_NR)
    for number in sorted(numbers[name] for name in allowed if name in numbers):
        op(BPF_JEQ_K, number, 0, 1)
        op(BPF_RET_K, SECCOMP_RET_ALLOW)
    refuse()
    return b"".join(code)


# Installs the filter as systemd does just before exec (NoNewPrivileges=, then seccomp), then
# execs the command, which starts and runs entirely inside it.
SANDBOX_LAUNCHER = """
import ctypes, os, sys
program = open(sys.argv[1], "rb").read()
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
fprog = SockFprog(len(program) // 8, program)
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0
):
    raise OSError(ctypes.get_errno(), "prctl")
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.fixture(scope="module")
def sandbox_filter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seccomp") / "filter.bpf"
    path.write_bytes(seccomp_program())
    return path


def sandboxed(filter_path: Path, argv: list[str]) -> list[str]:
    return [sys.executable, "-c", SANDBOX_LAUNCHER, str(filter_path), *argv]


@requires_seccomp_emulation
def test_sandbox_emulation_refuses_what_the_unit_forbids(sandbox_filter: Path) -> None:
    """The emulated sandbox really refuses W+X memory, AF_PACKET sockets and setpriority()."""
    probe = """
import mmap, os, socket
refused = []
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    refused.append("wx-mmap")
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
except OSError as error:
    refused.append(f"af-packet:{error.errno}")
try:
    os.setpriority(os.PRIO_PROCESS, 0, 1)
except PermissionError:
    refused.append("setpriority")
print(" ".join(refused))
"""
    result = subprocess.run(
        sandboxed(sandbox_filter, [sys.executable, "-c", probe]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wx-mmap", f"af-packet:{EAFNOSUPPORT}", "setpriority"]


@pytest.fixture
def fic() -> Iterator[FicSimulator]:
    """A FIC simulator on 127.0.0.1 (outside the sandbox) with a quick-approving push user."""
    simulator = FicSimulator(
        users=[SimUser("alice", "alice@example.com", push_delay=0.2)],
        settings=SimulatorSettings(),
    )
    simulator.start()
    yield simulator
    simulator.stop()


def free_udp_port() -> int:
    # The configuration refuses port 0 (a NAS needs a fixed port), so borrow a free one.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_service_files(tmp_path: Path, fic_url: str, port: int) -> tuple[Path, Path]:
    """A configuration using the unit's credential names, and the credentials systemd would load."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    values = {
        "fic-client-secret": SimulatorSettings().client_secret,
        "radius-state-secret": "state-secret-0123456789abcdef",
        "radius-fortigate-hq": "radius-secret-for-the-sandbox-test",
    }
    assert set(values) <= {v.partition(":")[0] for v in setting("LoadCredential")}
    for name, value in values.items():
        (credentials / name).write_text(value + "\n")
    config = tmp_path / "radius-bridge.yaml"
    config.write_text(
        f"""
fic:
  base_url: {fic_url}
  client_id: {SimulatorSettings().client_id}
  client_secret_credential: fic-client-secret
radius:
  listen: ["127.0.0.1:{port}"]
  state_secret_credential: radius-state-secret
  clients:
    - name: fortigate-hq
      address: 127.0.0.1
      secret_credential: radius-fortigate-hq
auth:
  push_poll_interval: 0.1
logging:
  format: json
"""
    )
    return config, credentials


@requires_seccomp_emulation
def test_daemon_serves_and_stops_inside_the_units_sandbox(
    tmp_path: Path, sandbox_filter: Path, fic: FicSimulator
) -> None:
    """check-config and serve, run as the unit runs them, answer OTP and push, and exit 0."""
    port = free_udp_port()
    config, credentials = write_service_files(tmp_path, fic.base_url, port)
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(credentials)}
    command = installed_command()

    check = subprocess.run(
        sandboxed(sandbox_filter, [command, "check-config", "--config", str(config)]),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr

    output: list[str] = []
    with subprocess.Popen(
        sandboxed(sandbox_filter, [command, "serve", "--config", str(config)]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as daemon:
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in daemon.stdout or ()])
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while not output or '"bridge.started"' not in output[-1]:
                with contextlib.suppress(queue.Empty):
                    output.append(lines.get(timeout=0.1))
                assert daemon.poll() is None, f"exited {daemon.returncode}: {output}"
                assert time.monotonic() < deadline, output
            client = RadiusClient(
                ("127.0.0.1", port), b"radius-secret-for-the-sandbox-test", timeout=5.0, attempts=2
            )
            assert client.authenticate("alice", "123456").outcome is Outcome.ACCEPT
            assert client.authenticate("alice", "push").outcome is Outcome.ACCEPT
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
            reader.join(timeout=10)
    while not lines.empty():
        output.append(lines.get())
    records = [json.loads(line) for line in output if line.startswith("{")]
    assert len(records) == len(output), output  # every line is a log record: no stray traceback
    assert [r for r in records if r.get("level") in ("error", "critical")] == []
