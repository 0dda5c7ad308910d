"""A running bridge: builds the parts from a configuration, starts, reloads and stops them.

``Bridge`` is the composition used by ``radius-bridge serve``, by the demo and by the tests, so
all three run the same wiring: the codec, the FIC client with its executor, the push poller, the
challenge states, the service and the UDP server. ``run_daemon`` adds what only a daemon needs:
signal handling (SIGTERM/SIGINT stop gracefully, SIGHUP reloads) on the main event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from radius_bridge import __version__, logs
from radius_bridge.challenge import ChallengeStates
from radius_bridge.config import Config, load_config
from radius_bridge.errors import ConfigError, FicError
from radius_bridge.fic import FicCall, FicClient
from radius_bridge.health import FicHealth
from radius_bridge.metrics import Metrics, MetricsServer
from radius_bridge.model import PushStatus
from radius_bridge.notify import Notifier, watchdog_loop
from radius_bridge.pending import PendingPushes
from radius_bridge.radius import RadiusCodec
from radius_bridge.server import RadiusServer, ReplyCache
from radius_bridge.service import FicApi, Service

log = structlog.get_logger("radius_bridge.daemon")

# How often the FIC health probe wakes up to see whether a probe is due (health decides).
_PROBE_EVERY = 5.0


def build_codec(config: Config) -> RadiusCodec:
    """The codec with the configured extra dictionaries; reply attributes checked against it."""
    try:
        codec = RadiusCodec(config.radius.dictionaries)
    except ValueError as error:
        raise ConfigError(config.source, "radius.dictionaries", str(error)) from error
    for index, client in enumerate(config.radius.clients):
        try:
            codec.check_attributes(client.reply_attributes)
        except ValueError as error:
            key = f"radius.clients[{index}].reply_attributes"
            raise ConfigError(config.source, key, str(error)) from error
    return codec


def config_secrets(config: Config) -> list[str]:
    """Every secret value in ``config``, for the log redactor."""
    values = [config.fic.client_secret.reveal()]
    values += [client.secret.reveal() for client in config.radius.clients]
    if config.radius.state_secret is not None:
        values.append(config.radius.state_secret.reveal())
    return values


class Bridge:
    """Every part of a running radius-bridge, wired together (see the module docstring)."""

    def __init__(self, config: Config, *, fic: FicApi | None = None) -> None:
        self.config = config
        self.codec = build_codec(config)
        self.health = FicHealth()
        self.metrics = Metrics()
        self.fic: Any = fic if fic is not None else self._fic_client(config)
        self._owns_fic = fic is None
        self.executor = ThreadPoolExecutor(
            max_workers=config.fic.pool_size, thread_name_prefix="fic"
        )
        self.pending = PendingPushes(
            fetch_finished=self._fetch_finished,
            fetch_one=self._fetch_one,
            interval=config.auth.push_poll_interval,
            max_pending=config.limits.max_pending_pushes,
        )
        state_key = (
            config.radius.state_secret.reveal_bytes()
            if config.radius.state_secret is not None
            else os.urandom(32)
        )
        self.challenges = ChallengeStates(
            state_key,
            ttl=config.auth.challenge_timeout,
            max_outstanding=config.limits.max_challenges,
        )
        self.service = Service(
            config=config,
            codec=self.codec,
            fic=self.fic,
            executor=self.executor,
            pending=self.pending,
            challenges=self.challenges,
            metrics=self.metrics,
            health=self.health,
        )
        self.server = RadiusServer(
            handler=self.service.handle,
            listen=[(a.host, a.port) for a in config.radius.listen],
            cache=ReplyCache(
                ttl=config.radius.duplicate_ttl,
                max_replies=config.limits.duplicate_cache_size,
                max_in_progress=config.limits.max_requests_in_progress,
            ),
            metrics=self.metrics,
            on_overload=self._log_overload,
        )
        # Read on the metrics server's threads at scrape time: only sizes and copies.
        self.metrics.set_gauge_sources(
            pending_pushes=lambda: len(self.pending),
            in_progress=lambda: self.server.in_progress,
            fic_up=self.health.is_up,
            clients_without_message_authenticator=lambda: sorted(
                self.service.clients_without_message_authenticator
            ),
        )
        self.metrics_server: MetricsServer | None = None
        self._probe: asyncio.Task[None] | None = None

    def _log_overload(self, source: str) -> None:
        self.service.drops.note(
            source,
            "overloaded",
            detail="too many requests in progress (limits.max_requests_in_progress)",
        )

    def _fic_client(self, config: Config) -> FicClient:
        def observe(call: FicCall) -> None:
            self.health.record(call)
            self.metrics.fic_call(call)

        return FicClient.from_config(
            config.fic, observer=observe, on_login=self.metrics.token_renewed
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self.server.addresses

    def healthy(self) -> bool:
        """For the systemd watchdog: sockets open and the push poller making progress.

        A blocked event loop needs no check here: the heartbeat runs on it and stops by itself.
        """
        fic = self.config.fic
        poll = self.config.auth.push_poll_interval
        stuck_after = fic.connect_timeout + fic.read_timeout + 3 * poll
        return self.server.accepting and self.pending.healthy(stuck_after=stuck_after)

    def describe(self) -> str:
        """One line for systemd's STATUS=."""
        listen = ", ".join(f"{host}:{port}" for host, port in self.addresses)
        return (
            f"listening on {listen}; {len(self.config.radius.clients)} clients; "
            f"{len(self.pending)} pushes pending"
        )

    async def _fetch_finished(self) -> dict[str, PushStatus]:
        loop = asyncio.get_running_loop()
        result: dict[str, PushStatus] = await loop.run_in_executor(
            self.executor, self.fic.finished_pushes
        )
        return result

    async def _probe_fic(self) -> None:
        """Ask FIC something harmless when it has been quiet or failing, so that health (and
        so Status-Server and /healthz) notices FIC coming back even while no one logs in."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_PROBE_EVERY)
            if self.health.probe_due():
                # A failure is recorded by the client's observer; nothing else to do here.
                with contextlib.suppress(FicError):
                    await loop.run_in_executor(self.executor, self.fic.version)

    async def _fetch_one(self, auth_id: str) -> PushStatus:
        loop = asyncio.get_running_loop()
        result: PushStatus = await loop.run_in_executor(
            self.executor, self.fic.push_status, auth_id
        )
        return result

    async def start(self) -> None:
        await self.server.start()
        listen = self.config.metrics.listen
        if listen is not None:
            self.metrics_server = MetricsServer(self.metrics, self.health)
            try:
                self.metrics_server.start(listen.host, listen.port)
            except BaseException:
                await self.server.stop(grace=0)
                raise
        self.pending.start()
        self._probe = asyncio.get_running_loop().create_task(self._probe_fic())
        log.info(
            "bridge.started",
            version=__version__,
            listen=[f"{host}:{port}" for host, port in self.addresses],
            clients=len(self.config.radius.clients),
            fic=self.config.fic.base_url,
        )

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop taking requests; pending pushes are rejected; in-flight work gets ``grace``."""
        self.service.stopping = True
        self.server.accepting = False
        self.pending.cancel_all()
        await self.server.stop(grace=grace)
        await self.pending.stop()
        if self._probe is not None:
            self._probe.cancel()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_fic:
            self.fic.close()
        log.info("bridge.stopped")

    def reload(self, path: str) -> bool:
        """Re-read the configuration; on any error keep the running one and say why."""
        try:
            new = load_config(path)
            codec = build_codec(new)
        except ConfigError as error:
            log.error("bridge.reload.refused", error=str(error))
            return False
        old = self.config
        if new.radius.listen != old.radius.listen or new.metrics != old.metrics:
            log.warning(
                "bridge.reload.listen_unchanged",
                detail="listen addresses (RADIUS and metrics) change only on restart",
            )
        if new.fic != old.fic and self._owns_fic:
            old_fic = self.fic
            self.fic = self._fic_client(new)
            old_fic.close()
            self.service.set_fic(self.fic)
        for value in config_secrets(new):
            logs.register_secret(value)
        logs.set_level(new.logging.level)
        self.codec = codec
        self.service.reconfigure(new, codec=codec)
        self.config = new
        log.info("bridge.reloaded", clients=len(new.radius.clients))
        return True


async def run_daemon(config_path: str, config: Config, *, notifier: Notifier | None = None) -> int:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads ``config_path``. Returns the exit status.

    systemd hears READY=1 only once every socket is bound, so a busy port fails the start.
    """
    notifier = notifier or Notifier.from_environ()
    bridge = Bridge(config)
    await bridge.start()
    # Everything built so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise also walk it while thousands of pushes are pending.
    gc.freeze()
    notifier.ready(bridge.describe())
    loop = asyncio.get_running_loop()
    watchdog = loop.create_task(watchdog_loop(notifier, healthy=bridge.healthy))
    stop = asyncio.Event()

    def reload() -> None:
        notifier.reloading()
        accepted = bridge.reload(config_path)
        # READY=1 always follows RELOADING=1, or systemd would wait for the reload to finish.
        status = bridge.describe() if accepted else "reload refused; previous configuration kept"
        notifier.ready(status)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    notifier.stopping()
    watchdog.cancel()
    log.info("bridge.stopping", pending_pushes=len(bridge.pending))
    await bridge.stop()
    return 0
