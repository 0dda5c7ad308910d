"""The administrator's ``fic`` commands: users, a test login and the server version, from a shell.

``add_fic_commands`` hangs ``fic users list|get|create|delete``, ``fic auth`` and
``fic version`` under the main parser; ``run_fic_command`` runs the parsed command and returns
the exit status (0 done, 1 FIC refused or unreachable, 78 bad configuration). Each command
reaches FIC with the ``fic:`` section of ``--config FILE``, or for quick checks (the simulator)
with ``--base-url``, ``--client-id`` and a secret read from an environment variable, never
from argv. Output is a table for people, or JSON with ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from radius_bridge import logs
from radius_bridge.config import LogFormat, load_config
from radius_bridge.errors import ConfigError, FicCredentialsRefused, FicError, FicUnavailable
from radius_bridge.fic import FicClient
from radius_bridge.model import AuthMethod, Preview, PushStatus, Secret, User

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78

DEFAULT_SECRET_ENV = "FIC_CLIENT_SECRET"  # noqa: S105 - the name of a variable, not a secret
_METHODS = {method.value.lower(): method for method in AuthMethod}
_USER_COLUMNS = ("id", "username", "email", "mobile_number", "auth_method", "active")
_COLUMN_TITLES = {"mobile_number": "MOBILE", "auth_method": "METHOD"}


@dataclasses.dataclass(frozen=True)
class Io:
    """Where a command writes and reads; tests pass their own."""

    out: TextIO
    err: TextIO
    environ: Mapping[str, str]
    interactive: bool  # stdin is a terminal: confirmations and code prompts are possible
    ask: Callable[[str], str]
    ask_secret: Callable[[str], str]


def _standard_io() -> Io:
    return Io(
        out=sys.stdout,
        err=sys.stderr,
        environ=os.environ,
        interactive=sys.stdin.isatty(),
        ask=input,
        ask_secret=getpass.getpass,
    )


def _connection_options() -> argparse.ArgumentParser:
    """Options every ``fic`` command shares: how to reach FIC and as whom."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection (--config, or --base-url with --client-id)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="bridge configuration (its fic: section)")
    source.add_argument(
        "--base-url",
        metavar="URL",
        help="FIC base URL, e.g. https://fic.fortinet.com:9696 or the simulator",
    )
    group.add_argument("--client-id", metavar="ID", help="web application client id")
    group.add_argument(
        "--client-secret-env",
        metavar="NAME",
        default=DEFAULT_SECRET_ENV,
        help=f"environment variable holding the client secret (default {DEFAULT_SECRET_ENV})",
    )
    options.add_argument(
        "--verbose",
        action="store_true",
        help="log each FIC call (endpoint, status, seconds) to stderr",
    )
    return options


def add_fic_commands(subparsers: Any) -> None:
    """Add ``fic ...`` to the main parser's subcommands (``subparsers`` of argparse)."""
    connection = _connection_options()
    fic = subparsers.add_parser("fic", help="FortiIdentity Cloud: users, a test login, version")
    commands = fic.add_subparsers(dest="fic_command", required=True, metavar="FIC_COMMAND")

    users = commands.add_parser("users", help="list, show, create or delete FIC users")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    listing = user_commands.add_parser("list", parents=[connection], help="list users")
    listing.add_argument("--username", help="only this user name")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(fic_run=_users_list)

    show = user_commands.add_parser("get", parents=[connection], help="show one user by id")
    show.add_argument("id", metavar="ID", help="the user's id (userref)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(fic_run=_users_get)

    create = user_commands.add_parser("create", parents=[connection], help="create a user")
    create.add_argument("username", metavar="USERNAME")
    create.add_argument("--email", required=True, help="FIC e-mails the token activation here")
    create.add_argument("--mobile", help="mobile number (needed for SMS)")
    create.add_argument(
        "--method",
        choices=[method.value for method in AuthMethod],
        help="second-factor method (default: FIC's)",
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(fic_run=_users_create)

    delete = user_commands.add_parser("delete", parents=[connection], help="delete a user by id")
    delete.add_argument("id", metavar="ID", help="the user's id (userref)")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(fic_run=_users_delete)

    auth = commands.add_parser(
        "auth",
        parents=[connection],
        help="test a login: preview (default), check a code, push, or send an SMS/e-mail code",
    )
    auth.add_argument("username", metavar="USERNAME")
    factor = auth.add_mutually_exclusive_group()
    factor.add_argument(
        "--code",
        help="check this one-time code (counts toward lockout); '-' asks for it without echo",
    )
    factor.add_argument("--push", action="store_true", help="send a push and wait for it")
    factor.add_argument("--method", choices=["sms", "email"], help="send a code by SMS/e-mail")
    auth.add_argument("--realm", help="FIC realm name")
    auth.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for a push answer (default 60)"
    )
    auth.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    auth.set_defaults(fic_run=_auth)

    version = commands.add_parser("version", parents=[connection], help="FIC server version")
    version.set_defaults(fic_run=_version)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only the ``fic`` commands (``radius-bridge fic ...`` without the rest)."""
    parser = argparse.ArgumentParser(prog="radius-bridge")
    add_fic_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None, *, io: Io | None = None) -> int:
    """Parse ``fic ...`` arguments and run the command."""
    return run_fic_command(build_parser().parse_args(argv), io=io)


def run_fic_command(args: argparse.Namespace, *, io: Io | None = None) -> int:
    """Run a parsed ``fic`` command: 0 done, 1 FIC refused or unreachable, 78 bad config.

    Without ``io`` (a real terminal) logging goes to stderr, so stdout stays the command's
    output (a table, or JSON for scripts): warnings only, or each FIC call with --verbose.
    """
    if io is None:
        io = _standard_io()
        logs.configure_logging(
            LogFormat.CONSOLE, "debug" if args.verbose else "warning", stream=sys.stderr
        )
    try:
        client = _client(args, io.environ)
    except ConfigError as error:
        print(f"radius-bridge fic: configuration error: {error}", file=io.err)
        return EXIT_CONFIG
    try:
        status: int = args.fic_run(client, args, io)
        return status
    except FicError as error:
        print(f"radius-bridge fic: {_explain(error)}", file=io.err)
        return EXIT_FAILURE
    finally:
        client.close()


def _client(args: argparse.Namespace, environ: Mapping[str, str]) -> FicClient:
    if args.config:
        if args.client_id:
            raise ConfigError(
                "command line",
                "--client-id",
                "give either --config or --base-url with --client-id, not both",
            )
        fic = load_config(args.config).fic
        logs.register_secret(fic.client_secret)
        return FicClient.from_config(fic)
    if not args.base_url or not args.client_id:
        raise ConfigError(
            "command line", "--config", "give --config FILE, or --base-url URL and --client-id ID"
        )
    secret = environ.get(args.client_secret_env)
    if not secret:
        raise ConfigError(
            "environment", args.client_secret_env, "is not set (it must hold the client secret)"
        )
    logs.register_secret(secret)
    return FicClient(base_url=args.base_url, client_id=args.client_id, client_secret=Secret(secret))


def _explain(error: FicError) -> str:
    """What failed, and whose side it is on."""
    if isinstance(error, FicCredentialsRefused):
        return f"FIC refused the client id/secret: {error}"
    if isinstance(error, FicUnavailable):
        return f"FIC unavailable: {error}"
    return f"FIC refused: {error}"


# ---- users ---------------------------------------------------------------------------------


def _user_record(user: User) -> dict[str, Any]:
    return dataclasses.asdict(user)


def _print_users(users: Sequence[User], out: TextIO) -> None:
    rows = [[_cell(getattr(user, column)) for column in _USER_COLUMNS] for user in users]
    titles = [_COLUMN_TITLES.get(column, column.upper()) for column in _USER_COLUMNS]
    widths = [max(len(cell) for cell in column) for column in zip(titles, *rows, strict=False)]
    for row in [titles, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def _print_user(user: User, out: TextIO) -> None:
    record = _user_record(user)
    width = max(len(key) for key in record)
    for key, value in record.items():
        print(f"{key.ljust(width)}  {_cell(value)}", file=out)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _users_list(client: FicClient, args: argparse.Namespace, io: Io) -> int:
    filters = {"username": args.username} if args.username else {}
    users = list(client.iter_users(**filters))
    if args.json:
        print(json.dumps([_user_record(user) for user in users], indent=2), file=io.out)
    elif users:
        _print_users(users, io.out)
    else:
        print("no users", file=io.out)
    return EXIT_OK


def _users_get(client: FicClient, args: argparse.Namespace, io: Io) -> int:
    user = client.get_user(args.id)
    if args.json:
        print(json.dumps(_user_record(user), indent=2), file=io.out)
    else:
        _print_user(user, io.out)
    return EXIT_OK


def _users_create(client: FicClient, args: argparse.Namespace, io: Io) -> int:
    user = client.create_user(
        username=args.username,
        email=args.email,
        mobile_number=args.mobile,
        auth_method=AuthMethod(args.method) if args.method else None,
    )
    if args.json:
        print(json.dumps(_user_record(user), indent=2), file=io.out)
    else:
        print(f"created user {user.username} (id {user.id})", file=io.out)
    return EXIT_OK


def _users_delete(client: FicClient, args: argparse.Namespace, io: Io) -> int:
    if not args.yes:
        if not io.interactive:
            print(
                "radius-bridge fic: not deleting without --yes (stdin is not a terminal)",
                file=io.err,
            )
            return EXIT_FAILURE
        user = client.get_user(args.id)
        answer = io.ask(f"Delete FIC user {user.username} (id {user.id})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted", file=io.out)
            return EXIT_FAILURE
    client.delete_user(args.id)
    print(f"deleted user {args.id}", file=io.out)
    return EXIT_OK


# ---- auth and version ----------------------------------------------------------------------


def _describe_preview(preview: Preview) -> str:
    method = preview.auth_method.value if preview.auth_method else "unknown method"
    parts = [
        f"action {preview.action.value}",
        f"method {method}",
        f"push {'enabled' if preview.push_enabled else 'not enabled'}",
    ]
    if preview.temp_token:
        parts.append("temporary token")
    if preview.message:
        parts.append(f"message: {preview.message}")
    return ", ".join(parts)


def _auth(client: FicClient, args: argparse.Namespace, io: Io) -> int:
    if args.code is not None:
        code = io.ask_secret("Code: ").strip() if args.code == "-" else args.code
        client.verify_code(args.username, code, realm=args.realm)
        print(f"code accepted for {args.username}", file=io.out)
        return EXIT_OK
    if args.push:
        return _push(client, args, io)
    if args.method:
        return _send_code(client, args, io)
    preview = client.preview(args.username, realm=args.realm)
    print(f"{args.username}: {_describe_preview(preview)}", file=io.out)
    return EXIT_OK


def _push(client: FicClient, args: argparse.Namespace, io: Io) -> int:
    auth_id = client.start_push(args.username, realm=args.realm)
    print(
        f"push sent to {args.username} (auth id {auth_id}); waiting up to {args.timeout:g} s",
        file=io.out,
        flush=True,
    )
    started = time.monotonic()
    while True:
        status = client.push_status(auth_id)
        waited = time.monotonic() - started
        if status is PushStatus.APPROVED:
            print(f"push approved after {waited:.0f} s", file=io.out)
            return EXIT_OK
        if status is PushStatus.DENIED:
            print(f"push denied after {waited:.0f} s", file=io.out)
            return EXIT_FAILURE
        if waited + args.poll_interval > args.timeout:
            print(f"no answer within {args.timeout:g} s", file=io.out)
            return EXIT_FAILURE
        print(f"  waiting ({waited:.0f} s)", file=io.out, flush=True)
        time.sleep(args.poll_interval)


def _send_code(client: FicClient, args: argparse.Namespace, io: Io) -> int:
    method = _METHODS[args.method]
    client.send_code(args.username, method, realm=args.realm)
    print(f"code sent to {args.username} by {method.value}", file=io.out, flush=True)
    if not io.interactive:
        return EXIT_OK
    code = io.ask_secret("Code (empty to stop): ").strip()
    if not code:
        return EXIT_OK
    client.verify_code(args.username, code, realm=args.realm)
    print(f"code accepted for {args.username}", file=io.out)
    return EXIT_OK


def _version(client: FicClient, args: argparse.Namespace, io: Io) -> int:
    print(client.version(), file=io.out)
    return EXIT_OK
