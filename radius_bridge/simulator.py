"""The built-in FortiIdentity Cloud simulator: an HTTP server that behaves like FIC's REST API.

Administrators run it (``radius-bridge simulator``) to try the bridge without an FIC account,
the demo uses it as its backend and the test suite uses it as its FIC. This module is the thin
HTTP shell (standard-library ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, one daemon thread
per connection), fault injection, the ``/_sim/`` control endpoints and the CLI hooks; the rules
of ``shared/fic-api.md`` §15 live in ``simulator_state`` and the users in ``simulator_users``.

API paths (``/api/v1/...``, ``/api/v2/user``, ``/version``) are those of fic-api.md. Control
endpoints need no bearer token, are never faulted, delayed or rate limited:

=============================================  ===============================================
``GET    /_sim/counters[?per_user=0]``         counters (see ``FicSimulator.counters``)
``POST   /_sim/reset``                         zero the counters (``DELETE /_sim/counters`` too)
``GET    /_sim/faults``                        active faults with their remaining count
``POST   /_sim/faults``                        add one: ``{"kind", "endpoint", "count",
                                               "retry_after", "delay"}`` -> 201
``DELETE /_sim/faults``                        clear every fault -> 204
``POST   /_sim/expire-tokens``                 every issued access token becomes invalid -> 204
``GET    /_sim/outbox/{username}``             codes "sent" by SMS/e-mail: ``{"username",
                                               "codes": [oldest..newest], "latest"}``
``POST   /_sim/users``                         add or replace a user (``SimUser`` fields) -> 201
``GET    /_sim/users/{username}``              the FIC user object (fail_times, lockout_at)
``GET    /_sim/auths[?username=]``             known auths: authid, username, kind, status
``POST   /_sim/auth/{id}/approve|deny``        answer a waiting push -> 200; 404 unknown;
                                               409 already answered
``POST   /_sim/push/{username}/approve|deny``  the same for the user's oldest waiting push
``GET    /_sim/settings``                      current switches (the client secret left out)
``POST   /_sim/settings``                      change switches: ``{"auth_status_shape": "list"}``
=============================================  ===============================================
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote

from radius_bridge.errors import ConfigError
from radius_bridge.simulator_state import (
    FAULT_KINDS,
    MALFORMED_BODY,
    Fault,
    SimResponse,
    SimulatorSettings,
    SimulatorState,
    route,
    totp_code,
)
from radius_bridge.simulator_users import (
    DEMO_CODE,
    SimUser,
    demo_users,
    load_users,
    user_from_mapping,
)

DEFAULT_PORT = 9696  # FIC's documented API port (fic-api.md §1)
MAX_BODY = 1 << 20
_MAX_LINE = 8192
_MAX_HEADERS = 100
# Idle keep-alive connections are closed after this long, as web servers in front of FIC do;
# it also frees the connection's thread.
IDLE_TIMEOUT = 120.0
_SETTING_NAMES = frozenset(f.name for f in fields(SimulatorSettings))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        simulator: FicSimulator,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.simulator = simulator
        self.tls = tls
        self.stopped = False
        super().__init__(address, _Handler)

    def accept_forever(self) -> None:
        """Accept connections until ``stop_accepting``; each is served on its own thread.

        A blocking accept (rather than serve_forever's select loop with a poll interval)
        lets ``stop`` and ``refuse_connections`` take effect at once.
        """
        while not self.stopped:
            try:
                connection, address = self.socket.accept()
            except OSError:
                break
            if self.stopped:
                connection.close()
                break
            if self.tls is not None:
                # The handshake happens on the connection's own thread (see _Handler.setup),
                # so a slow or broken TLS client cannot stall the accept loop.
                connection = self.tls.wrap_socket(
                    connection, server_side=True, do_handshake_on_connect=False
                )
            self.process_request(connection, address)

    def stop_accepting(self) -> None:
        self.stopped = True
        # On Linux, shutdown() of a listening socket wakes the thread blocked in accept().
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (or a connection we closed on purpose) is not an error
        # worth a traceback; anything else is a simulator bug and is shown.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FIC-simulator"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _Server
    raw_requestline: bytes
    fields: dict[str, str]

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()
        # One write per response, and no Nagle delay against the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.simulator._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.simulator._connection_closed(self.connection)

    def parse_request(self) -> bool:
        """Read the request line and headers into ``fields`` (lower-case names).

        Replaces the base class's email-package header parser, which costs more than the
        rest of a request put together; the simulator must serve thousands per second.
        """
        self.command = ""
        self.close_connection = True
        self.fields = {}
        self.requestline = line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            self.send(SimResponse(400, {"error": "Bad request line"}))
            return False
        self.command, self.path, self.request_version = words
        for _ in range(_MAX_HEADERS):
            raw = self.rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, colon, value = str(raw, "iso-8859-1").partition(":")
            if len(raw) > _MAX_LINE or not colon or not name.strip():
                self.send(SimResponse(400, {"error": "Bad header line"}))
                return False
            self.fields[name.strip().lower()] = value.strip()
        else:
            self.send(SimResponse(431, {"error": "Too many headers"}))
            return False
        connection = self.fields.get("connection", "").lower()
        # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
        if self.request_version == "HTTP/1.1":
            self.close_connection = connection == "close"
            if self.fields.get("expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        else:
            self.close_connection = connection != "keep-alive"
        return True

    def log_message(self, format: str, *args: Any) -> None:
        # The base class logs every request line (with its query) to stderr; the simulator
        # logs only when verbose, and only the route template (never tokens or codes).
        return

    def do_GET(self) -> None:
        self.server.simulator._dispatch(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def read_body(self) -> bytes | None:
        """The request body, or ``None`` after answering a framing error."""
        if "chunked" in self.fields.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length_text = self.fields.get("content-length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self.send(SimResponse(400 if length < 0 else 413, {"error": "Bad Content-Length"}))
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                size = -1
            total += max(size, 0)
            if size < 0 or total > MAX_BODY:
                self.close_connection = True
                self.send(SimResponse(400, {"error": "Bad chunked body"}))
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def send(self, response: SimResponse, raw: bytes | None = None) -> None:
        """Write the whole response in one ``write`` (status line, headers, body)."""
        if raw is not None:
            payload = raw
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body).encode()
        status = response.status
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {status} {phrase}", "Server: FIC-simulator"]
        if status != 204:
            lines.append(f"Content-Length: {len(payload)}")
        if payload:
            lines.append("Content-Type: application/json")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + payload)

    def reset(self) -> None:
        """Drop the connection without an answer (SO_LINGER 0 makes the close an RST)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class FicSimulator:
    """A fake FIC on a local port. Use as a context manager or call ``start``/``stop``.

    >>> with FicSimulator(users=demo_users()) as sim:   # doctest: +SKIP
    ...     sim.base_url                                # http://127.0.0.1:PORT/api/v1
    """

    def __init__(
        self,
        *,
        users: Iterable[SimUser] = (),
        settings: SimulatorSettings = SimulatorSettings(),  # noqa: B008 - frozen value
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = SimulatorState(users=users, settings=settings, clock=clock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._tls: ssl.SSLContext | None = None
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._print_lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle

    def start(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> str:
        """Listen on ``host:port`` (0 picks a free port); return the ``/api/v1`` base URL.

        With ``tls`` (a server-side ``ssl.SSLContext`` holding a certificate) it serves HTTPS,
        as FIC does, so a client's certificate verification can be exercised.
        """
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._stopping.clear()
        self._host = host
        self._tls = tls
        self._listen(port)
        return self.base_url

    def _listen(self, port: int) -> None:
        server_class = _Server6 if ":" in self._host else _Server
        server = server_class((self._host, port), self, self._tls)
        self._port = server.server_address[1]
        thread = threading.Thread(
            target=server.accept_forever,
            name=f"fic-simulator-{self._port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()

    def _unlisten(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.stop_accepting()
        thread.join(1.0)
        if thread.is_alive():
            # Where shutdown() does not wake a blocked accept(), one connection does.
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self._host, self._port), timeout=1.0),
            ):
                pass
            thread.join()
        server.server_close()

    def stop(self) -> None:
        """Stop listening, drop every connection and wake requests held by faults."""
        self._stopping.set()
        self._unlisten()
        self._drop_connections()

    def __enter__(self) -> FicSimulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def refuse_connections(self) -> None:
        """Close the listening socket (connects are refused) and drop open connections."""
        self._unlisten()
        self._drop_connections()

    def accept_connections(self) -> None:
        """Listen again on the same port after ``refuse_connections``."""
        if self._server is None and not self._stopping.is_set():
            self._listen(self._port)

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        """``http://host:port`` (where ``/version`` and ``/_sim/`` live)."""
        host = self._host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading the bind address, not binding
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v1"

    # ----------------------------------------------------------------- Python control API

    @property
    def settings(self) -> SimulatorSettings:
        return self.state.settings

    def configure(self, **changes: Any) -> SimulatorSettings:
        """Change switches while running, e.g. ``configure(auth_status_shape="list")``."""
        return self.state.configure(**changes)

    def add_user(self, user: SimUser) -> None:
        self.state.add_user(user)

    def outbox(self, username: str) -> list[str]:
        return self.state.outbox(username)

    def approve(self, auth_id: str) -> bool:
        """Approve a waiting push; False if it had already finished; KeyError if unknown."""
        return self.state.decide(auth_id, approve=True)

    def deny(self, auth_id: str) -> bool:
        """Deny a waiting push; False if it had already finished; KeyError if unknown."""
        return self.state.decide(auth_id, approve=False)

    def auth_status(self, auth_id: str) -> str | None:
        return self.state.auth_status(auth_id)

    def auths(self, username: str | None = None) -> list[dict[str, Any]]:
        return self.state.auths(username)

    def user_state(self, username: str) -> dict[str, Any] | None:
        return self.state.user_state(username)

    def inject_fault(
        self,
        kind: str,
        *,
        endpoint: str = "*",
        count: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
    ) -> Fault:
        """Make the next ``count`` (None: all) API requests matching ``endpoint`` fail.

        ``endpoint``: ``"*"``, ``"POST /auth"``, ``"GET /auth/*"``, ``"/login"`` (any method).
        Kinds: ``"500"``/``"502"``/``"503"`` answer that status with a JSON error;
        ``"429"`` adds ``Retry-After: retry_after`` when given; ``"reset"`` drops the
        connection with an RST and no answer; ``"malformed_json"`` answers 200 with a
        truncated JSON body; ``"hang"`` (default 30 s) and ``"slow"`` (default 1 s) wait
        ``delay`` seconds, then process and answer normally. Only ``hang``/``slow`` requests
        reach the FIC logic; the others never do (no push is sent, no code checked).
        """
        fault = Fault(kind, endpoint, count, retry_after, delay)
        self.state.add_fault(fault)
        return fault

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def faults(self) -> list[dict[str, Any]]:
        return self.state.faults()

    def expire_tokens(self) -> None:
        self.state.expire_tokens()

    def counters(self, *, per_user: bool = True) -> dict[str, Any]:
        """logins, requests per "METHOD /template", auth_posts/pushes/code_checks/codes_sent
        per username and their ``totals``, status_polls, batch_polls, tcp_connections,
        in_flight, in_flight_max, faults_applied, rate_limited.

        ``per_user=False`` leaves out the per-username maps, which are large with many users
        (``GET /_sim/counters?per_user=0``).
        """
        return self.state.counters(per_user=per_user)

    def reset_counters(self) -> None:
        self.state.reset_counters()

    # ----------------------------------------------------------------- HTTP plumbing

    def _connection_opened(self, connection: socket.socket) -> None:
        self.state.connection_opened()
        with self._conn_lock:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(connection)

    def _drop_connections(self) -> None:
        with self._conn_lock:
            connections = list(self._connections)
        for connection in connections:
            # shutdown (not close) wakes the handler thread blocked in recv; that thread
            # closes its own socket, so no descriptor is closed under another thread's feet.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _log(self, line: str) -> None:
        with self._print_lock:
            print(line, flush=True)

    def _dispatch(self, handler: _Handler) -> None:
        body = handler.read_body()
        if body is None:
            return
        path, _, query = handler.path.partition("?")
        started = time.monotonic()
        response: SimResponse | None
        if path == "/_sim" or path.startswith("/_sim/"):
            response = self._control(handler.command, path, query, body)
            handler.send(response)
            template = f"{handler.command} /_sim/..."
        else:
            template, response = self._serve_api(handler, path, query, body)
        if self.state.settings.verbose:
            status = response.status if response is not None else "reset"
            elapsed = (time.monotonic() - started) * 1000
            self._log(f"fic-simulator {template} -> {status} ({elapsed:.1f} ms)")

    def _serve_api(
        self, handler: _Handler, path: str, query: str, body: bytes
    ) -> tuple[str, SimResponse | None]:
        state = self.state
        route_ = route(handler.command, path)
        state.request_started(route_)
        try:
            fault = state.take_fault(route_)
            latency = state.settings.latency
            if latency > 0:
                self._stopping.wait(latency)
            raw: bytes | None = None
            response: SimResponse | None = None
            if fault is not None:
                kind = fault.kind
                if kind in ("hang", "slow"):
                    # Waiting on an event (not sleeping) lets stop() release held requests.
                    self._stopping.wait(fault.seconds)
                elif kind == "reset":
                    handler.reset()
                    return route_.template, None
                elif kind == "429":
                    headers: tuple[tuple[str, str], ...] = ()
                    if fault.retry_after is not None:
                        headers = (("Retry-After", f"{fault.retry_after:g}"),)
                    message = state.error_response(429, "Too many requests").body
                    response = SimResponse(429, message, headers)
                elif kind == "malformed_json":
                    response, raw = SimResponse(200), MALFORMED_BODY
                else:
                    response = state.error_response(int(kind), HTTPStatus(int(kind)).phrase)
            if response is None:
                host = handler.fields.get("host") or f"{self._host}:{self._port}"
                response = state.handle(
                    route_,
                    query=query,
                    authorization=handler.fields.get("authorization"),
                    body=body,
                    origin=f"{'https' if self._tls is not None else 'http'}://{host}",
                )
            handler.send(response, raw)
            return route_.template, response
        finally:
            state.request_finished()

    # ----------------------------------------------------------------- control endpoints

    def _control(self, method: str, path: str, query: str, body: bytes) -> SimResponse:
        parts = [unquote(p) for p in path.split("/") if p][1:]
        try:
            data = json.loads(body) if body.strip() else {}
        except (UnicodeDecodeError, ValueError):
            return SimResponse(400, {"error": "The request body is not valid JSON"})
        try:
            return self._control_route(method, parts, query, data)
        except (ValueError, TypeError, ConfigError) as exc:
            return SimResponse(400, {"error": str(exc)})

    def _control_route(self, method: str, parts: list[str], query: str, data: Any) -> SimResponse:
        head = parts[0] if parts else ""
        key = (method, head, len(parts))
        if key == ("GET", "counters", 1):
            per_user = dict(parse_qsl(query)).get("per_user", "1") not in ("0", "false")
            return SimResponse(200, self.counters(per_user=per_user))
        if key in (("POST", "reset", 1), ("DELETE", "counters", 1)):
            self.reset_counters()
            return SimResponse(204)
        if key == ("GET", "faults", 1):
            return SimResponse(200, self.faults())
        if key == ("POST", "faults", 1):
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            fault = self.inject_fault(**{k: v for k, v in data.items()})
            return SimResponse(201, fault.as_json())
        if key == ("DELETE", "faults", 1):
            self.clear_faults()
            return SimResponse(204)
        if key == ("POST", "expire-tokens", 1):
            self.expire_tokens()
            return SimResponse(204)
        if key == ("GET", "outbox", 2):
            codes = self.outbox(parts[1])
            latest = codes[-1] if codes else None
            return SimResponse(200, {"username": parts[1], "codes": codes, "latest": latest})
        if key == ("POST", "users", 1):
            user = user_from_mapping(data, file="POST /_sim/users", where="body")
            self.add_user(user)
            return SimResponse(201, self.user_state(user.username))
        if key == ("GET", "users", 2):
            found = self.user_state(parts[1])
            if found is None:
                return SimResponse(404, {"error": "no such user"})
            return SimResponse(200, found)
        if key == ("GET", "auths", 1):
            wanted = dict(parse_qsl(query)).get("username")
            return SimResponse(200, self.auths(wanted))
        if method == "POST" and head in ("auth", "push") and len(parts) == 3:
            return self._control_decide(head, parts[1], parts[2])
        if key == ("GET", "settings", 1):
            shown = {k: v for k, v in asdict(self.settings).items() if k != "client_secret"}
            shown["push_disabled_realms"] = sorted(shown["push_disabled_realms"])
            return SimResponse(200, shown)
        if key == ("POST", "settings", 1):
            return self._control_settings(data)
        return SimResponse(404, {"error": "unknown control endpoint"})

    def _control_decide(self, kind: str, target: str, verb: str) -> SimResponse:
        if verb not in ("approve", "deny"):
            return SimResponse(404, {"error": "use .../approve or .../deny"})
        auth_id = target
        if kind == "push":
            waiting = [a for a in self.auths(target) if a["status"] == "waiting"]
            if not waiting:
                return SimResponse(404, {"error": "no waiting push for this user"})
            auth_id = waiting[0]["authid"]
        try:
            changed = self.state.decide(auth_id, approve=verb == "approve")
        except KeyError:
            return SimResponse(404, {"error": "unknown auth ID"})
        status = self.auth_status(auth_id)
        return SimResponse(200 if changed else 409, {"authid": auth_id, "status": status})

    def _control_settings(self, data: Any) -> SimResponse:
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object of settings")
        unknown = sorted(set(data) - _SETTING_NAMES)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        changes = dict(data)
        if isinstance(changes.get("rate_limit"), list):
            changes["rate_limit"] = tuple(changes["rate_limit"])
        if "push_disabled_realms" in changes:
            changes["push_disabled_realms"] = frozenset(changes["push_disabled_realms"])
        self.configure(**changes)
        return SimResponse(204)


# --------------------------------------------------------------------- CLI hooks


def _rate_limit(text: str) -> tuple[int, float]:
    count_text, _, window_text = text.partition("/")
    try:
        count, window = int(count_text), float(window_text)
    except ValueError:
        raise argparse.ArgumentTypeError("use N/SECONDS, e.g. 60/300") from None
    if count < 1 or window <= 0:
        raise argparse.ArgumentTypeError("N must be >= 1 and SECONDS > 0")
    return count, window


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser`` (for ``radius-bridge simulator``)."""
    defaults = SimulatorSettings()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}, FIC's API port)",
    )
    parser.add_argument(
        "--users", metavar="FILE", help="YAML file with 'users: [...]' (default: the demo users)"
    )
    parser.add_argument(
        "--latency",
        metavar="MS",
        type=_non_negative,
        default=0.0,
        help="milliseconds added to every API request",
    )
    parser.add_argument(
        "--client-id",
        default=defaults.client_id,
        help="client ID the simulator accepts (simulator only)",
    )
    parser.add_argument(
        "--client-secret",
        default=defaults.client_secret,
        help="client secret the simulator accepts (a demo value, "
        "for the simulator only; never a real FIC secret)",
    )
    parser.add_argument(
        "--token-lifetime",
        metavar="SECONDS",
        type=float,
        default=defaults.token_lifetime,
        help="access token lifetime",
    )
    parser.add_argument(
        "--wrong-code-status",
        type=int,
        choices=(400, 401, 403),
        default=defaults.wrong_code_status,
        help="HTTP status of a wrong code",
    )
    parser.add_argument(
        "--auth-status-shape",
        choices=("object", "list"),
        default=defaults.auth_status_shape,
        help="GET /auth/{id} answers an object or a one-element list",
    )
    parser.add_argument("--no-batch", action="store_true", help="GET /auth (batch) answers 404")
    parser.add_argument(
        "--rate-limit",
        metavar="N/SECONDS",
        type=_rate_limit,
        help="trial-style limit, e.g. 60/300 -> 429 beyond it",
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate (needs --tls-key)"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print one line per request (route and status, no secrets)",
    )


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """The ``SimulatorSettings`` an ``add_arguments`` namespace asks for."""
    return SimulatorSettings(
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_lifetime=args.token_lifetime,
        latency=args.latency / 1000.0,
        wrong_code_status=args.wrong_code_status,
        auth_status_shape=args.auth_status_shape,
        batch_supported=not args.no_batch,
        rate_limit=args.rate_limit,
        verbose=args.verbose,
    )


def tls_context_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A server TLS context from ``--tls-cert``/``--tls-key``, or ``None`` for plain HTTP."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("--tls-cert and --tls-key must be given together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        # The message names the files, never their content.
        raise ValueError(f"cannot load --tls-cert {cert} / --tls-key {key}: {exc}") from None
    return context


def run_from_args(args: argparse.Namespace) -> int:
    """Run the simulator in the foreground until SIGINT/SIGTERM; 0 on a clean stop.

    Returns 78 (bad configuration) for an unreadable users file or invalid settings, and 1
    when the port cannot be bound.
    """
    try:
        settings = settings_from_args(args)
        users = load_users(args.users) if args.users else demo_users()
        tls = tls_context_from_args(args)
    except (ConfigError, ValueError) as exc:
        print(f"radius-bridge simulator: {exc}", file=sys.stderr)
        return 78
    simulator = FicSimulator(users=users, settings=settings)
    try:
        simulator.start(args.host, args.port, tls=tls)
    except OSError as exc:
        print(
            f"radius-bridge simulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _print_banner(simulator, settings, users, demo=not args.users)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        simulator.stop()
    print("FIC simulator stopped.", flush=True)
    return 0


def _print_banner(
    simulator: FicSimulator, settings: SimulatorSettings, users: list[SimUser], *, demo: bool
) -> None:
    # The simulator's own client secret is printed only when it is the public demo value.
    default_secret = SimulatorSettings().client_secret
    secret = (
        settings.client_secret
        if settings.client_secret == default_secret
        else ("<the value given with --client-secret>")
    )
    origin = simulator.origin
    lines = [
        "FIC simulator (for trying radius-bridge without an FIC account; not a real FIC)",
        f"  base URL:      {simulator.base_url}",
        f"  client_id:     {settings.client_id}",
        f"  client_secret: {secret}",
        "  users:",
    ]
    for user in users:
        behaviour = {"FTM": f"push {user.push}", "FTK": "codes only"}.get(
            user.auth_method, f"code by {user.auth_method} (see outbox)"
        )
        extra = " bypass" if user.bypass else ""
        lines.append(f"    {user.username:<12} {user.auth_method:<5} {behaviour}{extra}")
    if demo:
        lines.append(f"  demo users with a token accept the fixed test code {DEMO_CODE}")
    lines += [
        f"  counters:      curl {origin}/_sim/counters",
        f"  SMS/e-mail:    curl {origin}/_sim/outbox/<username>",
        f"  approve push:  curl -X POST {origin}/_sim/push/<username>/approve",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


__all__ = [
    "DEFAULT_PORT",
    "FAULT_KINDS",
    "Fault",
    "FicSimulator",
    "SimUser",
    "SimulatorSettings",
    "add_arguments",
    "demo_users",
    "load_users",
    "run_from_args",
    "settings_from_args",
    "totp_code",
]
