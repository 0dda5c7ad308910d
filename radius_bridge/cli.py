"""The command line, and the composition root: argv and environment in, exit status out.

Exit statuses: 0 success; 1 a runtime failure (FIC refused or unreachable, a port in use, a login
rejected by ``test``); 78 a bad configuration (EX_CONFIG), which the systemd unit's
``RestartPreventExitStatus=78`` uses to stop a crash loop.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from radius_bridge import __version__, admin, bench, doctor, logs, simulator
from radius_bridge.config import Config, load_config, parse_config
from radius_bridge.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_REJECTED = 2
EXIT_CONFIG = 78

DEMO_RADIUS_SECRET = "demo-radius-secret"  # noqa: S105 - the demo's published, loopback-only secret


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radius-bridge",
        description="RADIUS server for FortiIdentity Cloud (FortiToken Cloud) MFA.",
    )
    parser.add_argument("--version", action="version", version=f"radius-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the RADIUS server")
    serve.add_argument("--config", required=True, metavar="FILE", help="configuration file")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("--config", required=True, metavar="FILE", help="configuration file")

    demo = commands.add_parser(
        "demo", help="run the bridge against the built-in FIC simulator on 127.0.0.1"
    )
    demo.add_argument("--port", type=int, default=18120, help="RADIUS port (default 18120)")
    demo.add_argument(
        "--fic-port", type=int, default=0, help="simulator HTTP port (default: any free one)"
    )

    sim = commands.add_parser("simulator", help="run the built-in FIC simulator")
    simulator.add_arguments(sim)

    test = commands.add_parser("test", help="send one Access-Request and print the outcome")
    test.add_argument("--server", default="127.0.0.1:1812", metavar="HOST:PORT")
    secret = test.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret", help="shared secret (visible in ps; prefer --secret-env)")
    secret.add_argument("--secret-env", metavar="NAME", help="read the shared secret from $NAME")
    test.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt")
    test.add_argument("--attempts", type=int, default=1, help="transmissions (default 1)")
    test.add_argument("--nas-identifier", default="radius-bridge-test")
    test.add_argument("--calling-station-id", default=None)
    test.add_argument("user", metavar="USER")
    test.add_argument("password", metavar="PASSWORD", nargs="?", default="")

    doctor.add_arguments(
        commands.add_parser("doctor", help="check an installation and say how to fix it")
    )
    admin.add_fic_commands(commands)
    bench.add_arguments(
        commands.add_parser("bench", help="measure throughput, latency and FIC economy")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    match args.command:
        case "serve":
            return _serve(args.config)
        case "check-config":
            return _check_config(args.config)
        case "demo":
            return _demo(args.port, args.fic_port)
        case "simulator":
            return simulator.run_from_args(args)
        case "test":
            return _test(args)
        case "fic":
            return admin.run_fic_command(args)
        case "doctor":
            return doctor.run_from_args(args)
        case "bench":
            return bench.run_from_args(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


def run() -> NoReturn:
    sys.exit(main())


def _load(path: str) -> Config:
    return load_config(path)


def _check_config(path: str) -> int:
    from radius_bridge.daemon import build_codec

    try:
        config = _load(path)
        build_codec(config)
    except ConfigError as error:
        print(f"radius-bridge: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: OK ({len(config.radius.clients)} clients)")
    return EXIT_OK


def _serve(path: str) -> int:
    from radius_bridge.daemon import config_secrets, run_daemon
    from radius_bridge.metrics import MetricsListenError
    from radius_bridge.server import ListenError

    try:
        config = _load(path)
    except ConfigError as error:
        print(f"radius-bridge: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure_logging(
        config.logging.format, config.logging.level, secrets=config_secrets(config)
    )
    try:
        return asyncio.run(run_daemon(path, config))
    except ConfigError as error:
        print(f"radius-bridge: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (ListenError, MetricsListenError) as error:
        print(f"radius-bridge: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILURE


def demo_config(*, radius_port: int, fic_base_url: str) -> Config:
    """The demo's configuration: one client on loopback, the simulator as FIC."""
    data = {
        "fic": {
            "base_url": fic_base_url,
            "client_id": simulator.SimulatorSettings().client_id,
            "client_secret": simulator.SimulatorSettings().client_secret,
        },
        "radius": {
            "listen": [f"127.0.0.1:{radius_port}"],
            "clients": [
                {
                    "name": "demo-nas",
                    "address": "127.0.0.1",
                    "secret": DEMO_RADIUS_SECRET,
                    "reply_attributes": {"Fortinet-Group-Name": "vpn-users"},
                }
            ],
        },
        "logging": {"format": "console" if sys.stdout.isatty() else "json"},
    }
    return parse_config(data, source="<demo>", base_dir=Path.cwd(), environ=os.environ)


def _demo(radius_port: int, fic_port: int) -> int:
    from radius_bridge.daemon import run_daemon

    # The demo's fixed code 123456 may be typed again within its 30 s step (real codes may not),
    # so that trying the flows one after another just works.
    sim = simulator.FicSimulator(
        users=simulator.demo_users(),
        settings=simulator.SimulatorSettings(codes_single_use=False),
    )
    base_url = sim.start(port=fic_port)
    try:
        config = demo_config(radius_port=radius_port, fic_base_url=base_url)
        logs.configure_logging(config.logging.format, "info")
        print(_demo_banner(radius_port, base_url), flush=True)
        return asyncio.run(run_daemon("", config))
    finally:
        sim.stop()


def _demo_banner(port: int, base_url: str) -> str:
    sim_root = base_url.split("/api/")[0]
    test = f"radius-bridge test --server 127.0.0.1:{port} --secret {DEMO_RADIUS_SECRET}"
    return f"""
radius-bridge demo: RADIUS on 127.0.0.1:{port} (secret {DEMO_RADIUS_SECRET}),
FIC simulator at {base_url}. Try, in another terminal:

  {test} alice 123456    # one-time code: Access-Accept
  {test} alice 000000    # wrong code: Access-Reject
  {test} alice push      # push, approved on the 'phone' after 3 s
  {test} bob push        # push, denied
  {test} erin push       # push nobody answers: rejected when push_timeout runs out
  {test} carol ''        # SMS user: code sent, Access-Challenge; type the code shown below
  {test} dave email      # e-mail code, then the challenge
  {test} gina ''         # bypass user

Codes "sent" by SMS/e-mail: curl {sim_root}/_sim/outbox/carol
FIC counters:              curl {sim_root}/_sim/counters
Press Ctrl-C to stop.
"""


def _test(args: argparse.Namespace) -> int:
    from radius_bridge.client import NoReply, RadiusClient
    from radius_bridge.model import Outcome

    secret = args.secret if args.secret is not None else os.environ.get(args.secret_env, "")
    if not secret:
        print("radius-bridge: the shared secret is empty", file=sys.stderr)
        return EXIT_CONFIG
    host, _, port = args.server.rpartition(":")
    server = (host.strip("[]") or "127.0.0.1", int(port or 1812))
    client = RadiusClient(
        server, secret.encode(), timeout=args.timeout, attempts=max(1, args.attempts)
    )
    attributes: list[tuple[str, str | int | bytes]] = [("NAS-Identifier", args.nas_identifier)]
    if args.calling_station_id:
        attributes.append(("Calling-Station-Id", args.calling_station_id))
    password: str = args.password
    state: bytes | None = None
    while True:
        try:
            reply = client.authenticate(args.user, password, state=state, attributes=attributes)
        except NoReply as error:
            print(f"no answer: {error}", file=sys.stderr)
            return EXIT_FAILURE
        for line in reply.reply_messages:
            print(f"Reply-Message: {line}")
        if reply.outcome is not Outcome.CHALLENGE:
            print(f"Access-{reply.outcome.value.capitalize()}")
            return EXIT_OK if reply.outcome is Outcome.ACCEPT else EXIT_REJECTED
        print("Access-Challenge")
        if not sys.stdin.isatty():
            line = sys.stdin.readline()
            if not line:
                return EXIT_REJECTED
            password = line.strip()
        else:
            password = getpass.getpass("Code: ")
        state = reply.state
