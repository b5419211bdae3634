"""The composition root: builds the running orchestrator from settings, once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web
from nats.aio.client import Client

from domain.agent_commands import DeregisterAgent, DrainAgent, RegisterAgent
from domain.health import DetectorSettings
from infra.codec import create_mapper
from infra.connection import connect
from infra.embedded import EmbeddedNats
from infra.event_store import EventStore
from infra.names import AGENT, AGENT_DEREGISTER, AGENT_DRAIN, AGENT_REGISTER, Names
from infra.repository import Repository
from infra.settings import Settings
from infra.streams import provision
from projections.agents import AgentHealth
from projections.runner import ProjectionRunner
from services.api import ReadModel, create_app
from services.command_service import Command, start_command_service
from services.health_monitor import HealthMonitor
from services.heartbeats import HeartbeatIntake, heartbeat_probe
from services.metrics import Metrics
from services.registry import AgentRegistry

log = logging.getLogger(__name__)

REBUILD_TIMEOUT_S = 600.0


class Orchestrator:
    """One orchestrator process: commands, health monitor, projections and read API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = Names(settings.subject_prefix)
        self.metrics = Metrics()
        self.embedded: EmbeddedNats | None = None
        self.nc: Client | None = None
        self.http_port = settings.http_port
        self._stack = contextlib.AsyncExitStack()
        self._jobs: dict[str, asyncio.Task[None]] = {}

    @property
    def nats_url(self) -> str:
        if self.settings.nats_url:
            return self.settings.nats_url
        assert self.embedded is not None
        return self.embedded.url

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        if not settings.nats_url:
            self.embedded = EmbeddedNats(
                settings.data_dir / "nats", settings.embedded_nats_port, settings.nats_sync
            )
            await self.embedded.astart()
            self._stack.push_async_callback(self.embedded.astop)
        self.nc = nc = await connect(
            self.nats_url, on_disconnected=self._on_disconnected,
            on_reconnected=self._on_reconnected,
        )
        self._stack.push_async_callback(nc.close)
        js = nc.jetstream()
        await provision(js, self.names, settings.heartbeat_history)

        self.store = EventStore(js, self.names, create_mapper())
        self.registry = AgentRegistry(
            Repository(self.store, AGENT), self.names, settings.heartbeat_interval
        )
        self.agents = AgentHealth()
        self.runner = ProjectionRunner(
            self.store, [self.agents], on_applied=lambda _: self.metrics.events_applied.inc()
        )
        await self.runner.start()
        self._stack.push_async_callback(self.runner.stop)
        await self.runner.wait_ready(REBUILD_TIMEOUT_S)

        self.monitor = HealthMonitor(
            self.agents, self.runner.position, self.registry,
            DetectorSettings(settings.suspect_after, settings.dead_after),
            heartbeat_probe(js, self.names), lambda: nc.is_connected, self.metrics,
        )
        self.intake = HeartbeatIntake(
            nc, js, self.names, self.agents, self.monitor, self.metrics,
            reregister_every=settings.heartbeat_interval,
        )
        await self.intake.start()
        self._stack.push_async_callback(self.intake.stop)
        self._spawn(self.monitor.run(), "health-monitor")
        self._stack.push_async_callback(self.monitor.stop)

        service = await start_command_service(nc, self.names, self._commands(), self.metrics)
        self._stack.push_async_callback(service.stop)
        await self._start_http()
        log.info("orchestrator up nats=%s http=%s:%d prefix=%s", self.nats_url,
                 settings.http_host, self.http_port, self.names.prefix)

    def _commands(self) -> list[Command]:
        registry = self.registry
        return [
            Command(AGENT_REGISTER, RegisterAgent, registry.register),
            Command(AGENT_DEREGISTER, DeregisterAgent, registry.deregister),
            Command(AGENT_DRAIN, DrainAgent, registry.drain),
        ]

    async def _start_http(self) -> None:
        assert self.nc is not None
        nc = self.nc
        app = create_app(ReadModel(
            self.names, self.store, self.runner, self.agents, self.metrics,
            lambda: nc.is_connected,
        ))
        http = web.AppRunner(app, access_log=None)
        await http.setup()
        self._stack.push_async_callback(http.cleanup)
        site = web.TCPSite(http, self.settings.http_host, self.settings.http_port)
        await site.start()
        self.http_port = int(http.addresses[0][1])

    def _spawn_once(self, coro: Any, name: str) -> None:
        """Run a background job of this process, replacing a running one of that name."""
        running = self._jobs.get(name)
        if running is not None and not running.done():
            running.cancel()
        self._jobs[name] = asyncio.create_task(coro, name=name)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self._stack.push_async_callback(cancel)

    async def _on_disconnected(self) -> None:
        if hasattr(self, "monitor"):
            self.monitor.restart_deadlines("disconnected")

    async def _on_reconnected(self) -> None:
        if not hasattr(self, "monitor"):
            return
        self.monitor.restart_deadlines("reconnected")
        # NATS may have restarted: the heartbeat stream (memory) and every consumer are
        # gone. Recreate them in the background; the callback must not block the client.
        self._spawn_once(self._recover_after_reconnect(), "recover-after-reconnect")

    async def _recover_after_reconnect(self) -> None:
        assert self.nc is not None
        for attempt in range(1, 61):
            try:
                await provision(self.nc.jetstream(), self.names, self.settings.heartbeat_history)
                await self.runner.resume()
                await self.intake.restart()
            except Exception as exc:
                log.warning("recovery after reconnect failed attempt=%d: %r", attempt, exc)
                await asyncio.sleep(min(0.1 * attempt, 2.0))
                continue
            self.monitor.restart_deadlines("recovered")
            log.info("recovered after reconnect")
            return

    async def stop(self) -> None:
        for job in self._jobs.values():
            job.cancel()
        await asyncio.gather(*self._jobs.values(), return_exceptions=True)
        await self._stack.aclose()
