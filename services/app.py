"""The composition root: builds the running orchestrator from settings, once."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import itertools
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import nats.errors
from aiohttp import web
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.errors import ServiceUnavailableError

from infra import names as n
from infra.auth.credentials import Keys, server_auth_config_for
from infra.auth.own_users import LOG_INBOX, SERVING_INBOX
from infra.bus.connection import connect, flush_subscriptions, redact
from infra.bus.embedded import EmbeddedNats, PortInUse
from infra.bus.tls import client_context, server_context
from infra.log.recorded import StoreUnavailable
from infra.log.streams import provision
from infra.settings import Settings
from services.auth.external import check_external_server
from services.bootstrap import Bus, System, bootstrap
from services.commands.service import start_command_service
from services.gc_tuning import no_full_collections
from services.http.api import create_app
from services.http.limits import JsonErrorAppRunner
from services.jobs import Jobs
from services.metrics import Metrics

log = logging.getLogger(__name__)

REBUILD_TIMEOUT_S = 600.0
FINAL_SNAPSHOT_TIMEOUT_S = 10.0
PROVISION_TIMEOUT_S = 120.0
WATCHDOG_INTERVAL_S = 2.0


def _warn_of_a_log_auth_cannot_see(store: Path) -> None:
    """A store first run with auth off keeps its streams in NATS's global account, which
    the account auth puts everything in cannot see: say so rather than start empty."""
    global_streams = store / "jetstream" / "jetstream" / "$G" / "streams"
    if global_streams.is_dir() and any(global_streams.iterdir()):
        log.warning("the embedded store %s holds streams written with ORCH_AUTH=off, which "
                    "this start with auth on does not see (it starts a log of its own); run "
                    "with ORCH_AUTH=off to read them, or use another ORCH_DATA_DIR", store)


class LogNotCovered(Exception):
    """The log's beginning was cut and no snapshot stands for it: the projections
    rebuilt from what is left would be wrong, so the orchestrator does not start."""


class Orchestrator:
    """One orchestrator process: its connections, its components (`system`, built by
    services.bootstrap) started and stopped in order, and recovery after a reconnect.
    The components are read through it too (`orchestrator.store` is `system.store`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = n.Names(settings.subject_prefix)
        self.metrics = Metrics()
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.embedded: EmbeddedNats | None = None
        self.nc: Client | None = None  # serves commands and the callout
        self.log_nc: Client | None = None  # writes the streams, serves nothing
        self.system: System | None = None
        self.jobs = Jobs()  # replaced by the system's once built
        self.http_port = settings.http_port
        self._stack = contextlib.AsyncExitStack()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not set above: the system's components.
        system = self.__dict__.get("system")
        if system is None:
            raise AttributeError(f"{name}: the orchestrator is not started")
        return getattr(system, name)

    @property
    def nats_url(self) -> str:
        if self.settings.nats_url:
            return self.settings.nats_url
        assert self.embedded is not None
        return self.embedded.url

    @property
    def is_leader(self) -> bool:
        return self.system is not None and self.system.is_leader

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        keys = Keys.of(settings.data_dir)
        if not settings.auth_on:
            log.warning("ORCH_AUTH=off: any client that reaches NATS may act as any agent or "
                        "operator, and the read API answers anyone; for development only")
        if not settings.nats_url:
            if settings.auth_on:
                keys.ensure()
                _warn_of_a_log_auth_cannot_see(settings.data_dir / "nats")
            self.embedded = EmbeddedNats(
                settings.data_dir / "nats", settings.embedded_nats_port, settings.nats_sync,
                auth_config=server_auth_config_for(keys, self.names) if settings.auth_on else "",
            )
            await self.embedded.astart()
            self._stack.push_async_callback(self.embedded.astop)
        elif settings.auth_on:
            await check_external_server(settings.nats_url, keys)
        log.info("using NATS url=%s (%s)", redact(self.nats_url),
                 "ORCH_NATS_URL" if settings.nats_url else
                 f"embedded, store {settings.data_dir / 'nats'}")
        await self._connect(keys)
        assert self.nc is not None and self.log_nc is not None
        self.js = self.log_nc.jetstream()
        await self._provision()
        log.info("connected nats=%s; restoring the projections", redact(self.nats_url))
        system = self.system = bootstrap(settings, Bus(self.nc, self.log_nc, self.js),
                                         self.holder, metrics=self.metrics)
        self.jobs = system.jobs
        if system.group_commit is not None:
            self._stack.push_async_callback(system.group_commit.close)
        self._stack.push_async_callback(system.log_notice.close)
        self._stack.push_async_callback(system.outcomes.close)

        with no_full_collections():
            restored = await system.snapshots.restore()
            await self._check_log_covered(restored)
            await _limits_before(system, restored)
            await system.runner.start(after=restored)
            self._stack.push_async_callback(system.runner.stop)
            await system.runner.wait_ready(REBUILD_TIMEOUT_S)
            system.monitor.notice_fleet()
        # What the rebuild built lives as long as the process: out of the cyclic
        # collector's reach, so that its full collections (set off by a snapshot's rows,
        # say) do not walk millions of views and hold the loop for most of a second.
        gc.freeze()
        await system.intake.start()
        self._stack.push_async_callback(system.intake.stop)
        await system.access_control.start()
        self._stack.push_async_callback(system.access_control.stop)
        await system.schedules.start()  # before leading: the firing duty reads them
        self._stack.push_async_callback(system.schedules.stop)
        await system.feed.start()
        self._stack.push_async_callback(system.feed.stop)

        service = await start_command_service(self.nc, self.names, system.commands(),
                                              self.metrics, bound_inboxes=settings.auth_on)
        self._stack.push_async_callback(service.stop)
        await flush_subscriptions(self.nc)  # the server has our endpoints before we are up
        await self._start_http(system)
        self.jobs.spawn("leader-lease", system.lease.run)
        self.jobs.spawn("projection-watchdog", self._watch_projections)
        self._stack.push_async_callback(system.lease.release)
        log.info("orchestrator up nats=%s http=%s:%d prefix=%s holder=%s", redact(self.nats_url),
                 settings.http_host, self.http_port, self.names.prefix, self.holder)

    async def _connect(self, keys: Keys) -> None:
        """The orchestrator's two connections (infra.auth.own_users): the log's, which
        writes the streams and takes no request, and the serving one, which answers
        requests and can publish nowhere a requester could use to write."""
        auth_on = self.settings.auth_on
        tls = client_context(self.settings.nats_tls_ca, self.settings.nats_tls_cert,
                             self.settings.nats_tls_key)
        self.log_nc = await connect(
            self.nats_url, name="orchestrator-log", on_disconnected=self._on_disconnected,
            on_reconnected=self._on_reconnected,
            nkey_seed=keys.orchestrator_seed() if auth_on else None, tls=tls,
            inbox_prefix=LOG_INBOX)
        self._stack.push_async_callback(self.log_nc.close)
        self.nc = await connect(
            self.nats_url, name="orchestrator", nkey_seed=keys.serving_seed() if auth_on else None,
            tls=tls, inbox_prefix=SERVING_INBOX)
        self._stack.push_async_callback(self.nc.close)

    async def _check_log_covered(self, restored: int) -> None:
        """Refuse to serve projections rebuilt from a log whose beginning was cut
        (ORCH_LOG_MAX_AGE) unless a snapshot stands for what was cut."""
        assert self.system is not None
        first, _ = await self.system.store.bounds()
        if first > restored + 1:
            raise LogNotCovered(
                f"the log now begins at position {first} (older events were cut by its "
                f"max age) and no usable snapshot covers positions before it (the latest "
                f"usable one is at {restored}); restore the snapshot bucket, or rebuild "
                f"the log from an export")

    async def _provision(self) -> None:
        """Create or update the streams, waiting for JetStream to be able to answer: a
        cluster that starts with us may not have elected its meta leader yet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROVISION_TIMEOUT_S
        for attempt in itertools.count(1):
            try:
                await provision(self.js, self.names, self.settings.heartbeat_history,
                                self.settings.stream_replicas, self.settings.log_max_age)
                return
            except (TimeoutError, NoRespondersError, ServiceUnavailableError) as exc:
                if loop.time() > deadline:
                    raise
                log.warning("JetStream not ready attempt=%d: %r", attempt, exc)
                await asyncio.sleep(min(0.2 * attempt, 2.0))

    async def _start_http(self, system: System) -> None:
        http = JsonErrorAppRunner(create_app(system.read_model, system.commands()), access_log=None)
        await http.setup()
        self._stack.push_async_callback(http.cleanup)
        site = web.TCPSite(http, self.settings.http_host, self.settings.http_port,
                           ssl_context=server_context(self.settings.tls_cert,
                                                      self.settings.tls_key))
        try:
            await site.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(self.settings.http_port, "the read API's port",
                            "set ORCH_HTTP_PORT (--http-port) to a free port") from None
        self.http_port = int(http.addresses[0][1])

    async def _on_disconnected(self) -> None:
        if self.system is None:
            return
        if self.system.group_commit is not None:
            self.system.group_commit.connection_lost()
        self.system.monitor.restart_deadlines("disconnected")

    async def _on_reconnected(self) -> None:
        if self.system is None:
            return
        self.system.monitor.restart_deadlines("reconnected")
        # NATS may have restarted: the heartbeat stream (memory) and every consumer are
        # gone. Recreate them in the background; the callback must not block the client.
        self.jobs.spawn("recover-after-reconnect", self._recover_after_reconnect)

    async def _recover_after_reconnect(self) -> None:
        assert self.system is not None
        system = self.system
        for attempt in range(1, 61):
            try:
                await provision(self.js, self.names, self.settings.heartbeat_history,
                                self.settings.stream_replicas, self.settings.log_max_age)
                await system.runner.resume()
                await system.intake.restart()
            except Exception as exc:
                log.warning("recovery after reconnect failed attempt=%d: %r", attempt, exc)
                await asyncio.sleep(min(0.1 * attempt, 2.0))
                continue
            system.monitor.restart_deadlines("recovered")
            log.info("recovered after reconnect")
            return

    async def _watch_projections(self) -> None:
        """The projections follow the log. If they stop moving while the log is ahead
        (a consumer lost across a NATS restart), follow it again: applying is idempotent,
        so a needless resume costs nothing."""
        assert self.system is not None
        store, runner = self.system.store, self.system.runner
        previous = -1
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            try:
                last = await store.last_position()
                position = runner.position.value
                if position < last and position == previous:
                    log.warning("projections stalled position=%d log=%d; following again",
                                position, last)
                    self.metrics.projection_resumes.inc()
                    await runner.resume()
                previous = position
            except (StoreUnavailable, TimeoutError, nats.errors.Error) as exc:
                log.debug("projection watchdog: %r", exc)
                previous = -1

    async def stop(self) -> None:
        for name in self.jobs.names():
            if name != "leader-lease":
                await self.jobs.cancel(name)
        await self._final_snapshot()
        await self.jobs.cancel("leader-lease")
        await self._stack.aclose()
        if self.system is not None:  # started: say it has stopped, as it said it was up
            log.info("orchestrator stopped holder=%s", self.holder)

    async def _final_snapshot(self) -> None:
        """On a clean stop the leader leaves a snapshot, so the next start is quick."""
        system = self.system
        if not (system is not None and system.is_leader and system.snapshots.enabled
                and system.runner.ready):
            return
        try:
            await asyncio.wait_for(system.snapshots.write(), FINAL_SNAPSHOT_TIMEOUT_S)
        except Exception as exc:
            log.warning("final snapshot not written: %r", exc)


async def _limits_before(system: System, restored: int) -> None:
    """The limits set before the snapshot's position, which it does not hold: the runner
    applies those after it, in log order."""
    if restored:
        async for event in system.store.iterate(0, system.names.kind_events(n.LIMIT)):
            if event.position > restored:
                break
            system.limits.apply(event)
