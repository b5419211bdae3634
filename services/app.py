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
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import nats.errors
from aiohttp import web
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.errors import ServiceUnavailableError

from domain.agent import ALIVE
from domain.health import DetectorSettings
from domain.placement import Strategy
from domain.task import TERMINAL
from infra import names as n
from infra.auth.credentials import Keys, server_auth_config_for
from infra.auth.own_users import LOG_INBOX, SERVING_INBOX
from infra.bus.connection import connect, flush_subscriptions, redact
from infra.bus.embedded import EmbeddedNats, PortInUse
from infra.bus.tls import client_context, server_context
from infra.log.codec import create_mapper
from infra.log.event_store import EventStore, StoreUnavailable
from infra.log.group_commit import GroupCommit
from infra.log.repository import Repository
from infra.log.snapshot_store import SnapshotStore
from infra.log.streams import provision
from infra.settings import Settings
from projections.agents import AgentHealth
from projections.catalog import Catalog
from projections.log_event import LogEvent
from projections.runner import ProjectionRunner
from projections.tasks import TaskBoard
from services.audit.log_notice import LogNotice
from services.auth.access_control import AccessControl
from services.auth.external import check_external_server
from services.commands.catalog import CatalogQueries, ChangeFeed
from services.commands.registry import AgentRegistry, silence_in
from services.commands.service import Command, start_command_service
from services.commands.table import command_table
from services.commands.tasks import TaskService
from services.health.heartbeats import HeartbeatIntake, heartbeat_stream_check
from services.health.monitor import HealthMonitor
from services.http.api import ReadModel, create_app
from services.http.limits import JsonErrorAppRunner
from services.leader.dispatcher import Dispatcher
from services.leader.failover import FailoverReactor
from services.leader.fleet import Fleet
from services.leader.lease import LeaderLease
from services.leader.log_keeper import LogKeeper
from services.leader.snapshots import Snapshots
from services.metrics import Metrics

log = logging.getLogger(__name__)

REBUILD_TIMEOUT_S = 600.0
FINAL_SNAPSHOT_TIMEOUT_S = 10.0
PROVISION_TIMEOUT_S = 120.0
JOB_STOP_TIMEOUT_S = 5.0
JOB_RESTART_DELAY_S = 1.0
WATCHDOG_INTERVAL_S = 2.0
_NEW_INCARNATIONS = frozenset({"Registered", "Reregistered"})
# Events after which the dispatcher looks again: capacity or the queue changed.
_DISPATCH_TRIGGERS = frozenset({
    "Submitted", "Requeued", "Completed", "Failed", "DeadLettered", "Cancelled",
    "Registered", "Reregistered", "Recovered", "DrainStarted", "Deregistered",
})


def _warn_of_a_log_auth_cannot_see(store: Path) -> None:
    """A store first run with auth off keeps its streams in NATS's global account, which
    the account auth puts everything in cannot see: say so rather than start empty."""
    global_streams = store / "jetstream" / "jetstream" / "$G" / "streams"
    if global_streams.is_dir() and any(global_streams.iterdir()):
        log.warning("the embedded store %s holds streams written with ORCH_AUTH=off, which "
                    "this start with auth on does not see (it starts a log of its own); run "
                    "with ORCH_AUTH=off to read them, or use another ORCH_DATA_DIR", store)


@contextlib.contextmanager
def _no_full_collections() -> Iterator[None]:
    """No full collection of the cyclic garbage collector while the projections are
    rebuilt: the heap grows all the while, and each full collection walks all of it
    again (a full-size rebuild spent 2.7 s of its 19 in them, the last ones over half a
    second each). The young generations are still collected, so cycles made and dropped
    meanwhile still go; what is built is frozen after (above)."""
    global _rebuilding, _full_threshold
    if not _rebuilding:  # several orchestrators may start at once in one process (tests)
        young, middle, _full_threshold = gc.get_threshold()
        gc.set_threshold(young, middle, _NEVER)
    _rebuilding += 1
    try:
        yield
    finally:
        _rebuilding -= 1
        if not _rebuilding:
            young, middle, _ = gc.get_threshold()
            gc.set_threshold(young, middle, _full_threshold)


_NEVER = 2**30  # middle-generation collections before a full one: none in a rebuild
_rebuilding = 0  # orchestrators of this process rebuilding now
_full_threshold = 10  # the full generation's threshold to put back


class LogNotCovered(Exception):
    """The log's beginning was cut and no snapshot stands for it: the projections
    rebuilt from what is left would be wrong, so the orchestrator does not start."""


class Orchestrator:
    """One orchestrator process: commands, projections, read API, and (while it holds
    the leader lease) the health monitor, dispatcher and failover reactor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = n.Names(settings.subject_prefix)
        self.metrics = Metrics()
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.embedded: EmbeddedNats | None = None
        self.nc: Client | None = None  # serves commands and the callout
        self.log_nc: Client | None = None  # writes the streams, serves nothing
        self.http_port = settings.http_port
        self._stack = contextlib.AsyncExitStack()
        self._jobs: dict[str, asyncio.Task[None]] = {}

    @property
    def nats_url(self) -> str:
        if self.settings.nats_url:
            return self.settings.nats_url
        assert self.embedded is not None
        return self.embedded.url

    @property
    def is_leader(self) -> bool:
        return hasattr(self, "lease") and self.lease.is_leader

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
        nc = self.nc
        self.js = self.log_nc.jetstream()
        await self._provision()
        log.info("connected nats=%s; restoring the projections", redact(self.nats_url))
        self._build(nc, self.log_nc)

        with _no_full_collections():
            restored = await self.snapshots.restore()
            await self._check_log_covered(restored)
            await self.runner.start(after=restored)
            self._stack.push_async_callback(self.runner.stop)
            await self.runner.wait_ready(REBUILD_TIMEOUT_S)
            self.monitor.notice_fleet()
        # What the rebuild built lives as long as the process: out of the cyclic
        # collector's reach, so that its full collections (set off by a snapshot's rows,
        # say) do not walk millions of views and hold the loop for most of a second.
        gc.freeze()
        await self.intake.start()
        self._stack.push_async_callback(self.intake.stop)
        await self.access_control.start()
        self._stack.push_async_callback(self.access_control.stop)

        service = await start_command_service(nc, self.names, self._commands(), self.metrics,
                                              bound_inboxes=settings.auth_on)
        self._stack.push_async_callback(service.stop)
        await flush_subscriptions(nc)  # the server has our endpoints before we say we are up
        await self._start_http()
        self._spawn(self.lease.run(), "leader-lease")
        self._spawn(self._watch_projections(), "projection-watchdog")
        self._stack.push_async_callback(self.lease.release)
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
        first, _ = await self.store.bounds()
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

    def _build(self, nc: Client, log_nc: Client) -> None:
        """Every component, wired once."""
        settings = self.settings
        strategy = Strategy(settings.placement_strategy)
        self.group_commit = GroupCommit(log_nc, self.names.events_stream)
        self._stack.push_async_callback(self.group_commit.close)
        self.store = EventStore(self.js, self.names, create_mapper(),
                                group_commit=self.group_commit)
        self.group_commit.on_batch = self.metrics.append_batch.observe
        self.store.on_append = self.metrics.append_latency.observe
        self.store.foreign.on_skip = self.metrics.log_records_skipped.inc
        self.agents = AgentHealth()
        self.board = TaskBoard(settings.finished_task_retention, settings.finished_task_limit)
        self.catalog = Catalog()
        self.runner = ProjectionRunner(self.store, [self.agents, self.board, self.catalog],
                                       on_applied=self._on_applied)
        self.snapshots = Snapshots(
            SnapshotStore(self.js, self.names, settings.stream_replicas), self.store,
            self.runner, self.agents, self.board, self.catalog, settings.snapshot_every,
            self.metrics)
        self.catalog_queries = CatalogQueries(self.catalog, self.runner.position)
        # Wakes readers that follow the log by direct gets (auditors create no consumer).
        self.log_notice = LogNotice(nc.publish, self.names.log_appended)
        self._stack.push_async_callback(self.log_notice.close)
        self.change_feed = ChangeFeed(self.catalog, self.names, nc.publish,
                                      enabled=lambda: self.is_leader and self.runner.ready)
        self.registry = AgentRegistry(
            # Only agents whose health is in question stay cached: a decision on them is
            # near. A healthy agent's aggregate (about 400 B) is read from the log when it
            # is next commanded (re-registration, drain, a suspicion), which is rare.
            Repository(self.store, n.AGENT, keep=lambda agent: agent.liveness != ALIVE),
            self.names, settings.heartbeat_interval,
            silence_in(self.agents), settings.suspect_after,
            settings.auth_jwt_ttl if settings.auth_on else None,
            known=lambda agent_id: self.agents.get(agent_id) is not None)
        self.tasks = TaskService(
            # A finished task leaves the cache: commands on it are rare, read from the log.
            Repository(self.store, n.TASK, keep=lambda task: task.status not in TERMINAL),
            self.names, self.board, nc.publish,
            settings.retry_backoff, settings.retry_backoff_max,
            # With auth off there are no identities to tell apart: anyone may act on
            # any task, as before owners.
            is_operator=lambda identity: not settings.auth_on or self._is_operator(identity))
        self.fleet = Fleet(self.agents, self.board, self.runner.position)
        self.monitor = HealthMonitor(
            self.agents, self.runner.position, self.registry,
            DetectorSettings(
                settings.suspect_after, settings.dead_after, settings.heartbeat_interval,
                settings.failures_before_critical, settings.success_before_passing),
            lambda: log_nc.is_connected, self.metrics,
            deregister_dead_after=settings.deregister_dead_after,
            bus_check=heartbeat_stream_check(self.js, self.names),
        )
        self.intake = HeartbeatIntake(
            nc, self.js, self.names, self.agents, self.monitor, self.metrics,
            reregister_every=settings.heartbeat_interval, log_nc=log_nc,
        )
        self.metrics.on_scrape(self._scrape_log_position)
        self._events_applied_reported = 0
        self.metrics.on_scrape(self._scrape_events_applied)
        self.metrics.on_scrape(self._scrape_heartbeat_lag)
        self.dispatcher = Dispatcher(self.board, self.fleet, self.tasks, strategy,
                                     settings.accept_timeout, self.metrics)
        self.failover = FailoverReactor(
            self.js, self.names, self.store, self.board, self.fleet, self.tasks,
            self.runner.position, strategy, self.metrics)
        self.access_control = AccessControl(nc, self.names, self.store, settings, self.metrics)
        self.lease = LeaderLease(self.js, self.names, self.holder, settings.lease_ttl,
                                 self._lead, self._follow, replicas=settings.stream_replicas)

    def _is_operator(self, identity: str) -> bool:
        return self.access_control.access.has_role(identity, "operator")

    def _commands(self) -> list[Command]:
        return command_table(self.registry, self.tasks, self.catalog_queries,
                             self.access_control.admin, self.access_control.gate)

    async def _on_applied(self, event: LogEvent) -> None:
        if event.kind == n.TASK and self.runner.ready:  # live, not a rebuild's replay
            self.metrics.task_event(event)
        if event.name in _NEW_INCARNATIONS:
            self.monitor.noticed(event.aggregate_id)  # its deadlines start now
        if event.name in _DISPATCH_TRIGGERS:
            self.dispatcher.poke()
        if self.runner.ready:  # live: a rebuild's replay wakes nobody
            self.log_notice.applied(event.position)
        if self.catalog.changed:  # else nothing to publish: no call per replayed event
            await self.change_feed.on_event(event)

    # --- leadership -------------------------------------------------------------

    async def _scrape_events_applied(self) -> None:
        """Counted by the runner, handed to prometheus here: a locked increment per
        event was a share of a replay."""
        applied = self.runner.applied
        self.metrics.events_applied.inc(applied - self._events_applied_reported)
        self._events_applied_reported = applied

    async def _scrape_log_position(self) -> None:
        self.metrics.log_position.set(await self.store.last_position())

    async def _scrape_heartbeat_lag(self) -> None:
        last = await heartbeat_stream_check(self.js, self.names)()
        self.metrics.heartbeat_consumer_lag.set(max(0, last - self.intake.delivered))

    async def _lead(self) -> None:
        self.metrics.leader_changes.labels("acquired").inc()
        self.monitor.restart_deadlines("elected")
        self.fleet.forget_unwritten()  # a new term: the last one's writes have stopped
        for name, run in self._duties().items():
            self._spawn_job(run(), name)
        self.tasks.placer = self.dispatcher.claim  # submits placed at once, while leading
        self.dispatcher.poke()

    def _duties(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        duties = {"health-monitor": self.monitor.run, "dispatcher": self.dispatcher.run,
                  "failover": self.failover.run, "snapshots": self.snapshots.run}
        if self.settings.log_max_age:
            duties["log-keeper"] = LogKeeper(
                self.store, {n.AGENT: self.registry.repository, n.TASK: self.tasks.repository,
                             n.IDENTITY: self.access_control.identities},
                self.snapshots, self.settings.log_max_age, self._may_need).run
        return duties

    def _may_need(self, kind: str, aggregate_id: str) -> bool:
        """Whether the log keeper should read an aggregate: not a task the board holds
        as finished, or no longer holds at all."""
        if kind != n.TASK:
            return True
        view = self.board.get(aggregate_id)
        return view is not None and view.status not in TERMINAL

    async def _follow(self) -> None:
        self.metrics.leader_changes.labels("lost").inc()
        self.tasks.placer = None
        for name in self._duties():
            await self._cancel_job(name)
        await self.monitor.stop()

    # --- plumbing -----------------------------------------------------------------

    async def _start_http(self) -> None:
        assert self.nc is not None and self.log_nc is not None
        nc, log_nc = self.nc, self.log_nc
        app = create_app(ReadModel(
            self.names, self.store, self.runner, self.agents, self.board, self.catalog,
            self.metrics,
            lambda: nc.is_connected and log_nc.is_connected, lambda: self.is_leader,
            self.access_control.access if self.settings.auth_on else None,
            (self.settings.suspect_after, self.settings.dead_after),
        ))
        http = JsonErrorAppRunner(app, access_log=None)
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

    def _spawn_job(self, coro: Any, name: str) -> None:
        """Run a background job, replacing a running one of that name."""
        running = self._jobs.get(name)
        if running is not None and not running.done():
            running.cancel()
        job = self._jobs[name] = asyncio.create_task(coro, name=name)
        job.add_done_callback(self._job_ended)

    def _job_ended(self, job: asyncio.Task[None]) -> None:
        """A job that ends by itself failed: say so at once (not when it is collected),
        and give a leader duty another go while this process leads."""
        if job.cancelled() or job.exception() is None:
            return
        name = job.get_name()
        log.error("job failed name=%s: %r", name, job.exception(), exc_info=job.exception())
        if self._jobs.get(name) is job and name in self._duties() and self.is_leader:
            asyncio.get_running_loop().call_later(
                JOB_RESTART_DELAY_S, self._restart_duty, name, job)

    def _restart_duty(self, name: str, failed: asyncio.Task[None]) -> None:
        if self._jobs.get(name) is failed and self.is_leader:
            log.warning("restarting job name=%s", name)
            self._spawn_job(self._duties()[name](), name)

    async def _cancel_job(self, name: str) -> None:
        job = self._jobs.pop(name, None)
        if job is not None:
            job.cancel()
            # Bounded: on Python 3.11 asyncio.wait_for (inside nats-py) can swallow a
            # cancel that arrives as it completes, and a job's loop would go on.
            await asyncio.wait({job}, timeout=JOB_STOP_TIMEOUT_S)
            if not job.done():
                log.warning("job did not stop name=%s", name)
            elif not job.cancelled():
                job.exception()  # retrieved: what it failed with was logged by the job

    def _spawn(self, coro: Any, name: str) -> None:
        self._spawn_job(coro, name)

    async def _on_disconnected(self) -> None:
        if hasattr(self, "group_commit"):
            self.group_commit.connection_lost()
        if hasattr(self, "monitor"):
            self.monitor.restart_deadlines("disconnected")

    async def _on_reconnected(self) -> None:
        if not hasattr(self, "monitor"):
            return
        self.monitor.restart_deadlines("reconnected")
        # NATS may have restarted: the heartbeat stream (memory) and every consumer are
        # gone. Recreate them in the background; the callback must not block the client.
        self._spawn_job(self._recover_after_reconnect(), "recover-after-reconnect")

    async def _recover_after_reconnect(self) -> None:
        assert self.nc is not None
        for attempt in range(1, 61):
            try:
                await provision(self.js, self.names, self.settings.heartbeat_history,
                                self.settings.stream_replicas, self.settings.log_max_age)
                await self.runner.resume()
                await self.intake.restart()
            except Exception as exc:
                log.warning("recovery after reconnect failed attempt=%d: %r", attempt, exc)
                await asyncio.sleep(min(0.1 * attempt, 2.0))
                continue
            self.monitor.restart_deadlines("recovered")
            log.info("recovered after reconnect")
            return

    async def _watch_projections(self) -> None:
        """The projections follow the log. If they stop moving while the log is ahead
        (a consumer lost across a NATS restart), follow it again: applying is idempotent,
        so a needless resume costs nothing."""
        previous = -1
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            try:
                last = await self.store.last_position()
                position = self.runner.position.value
                if position < last and position == previous:
                    log.warning("projections stalled position=%d log=%d; following again",
                                position, last)
                    self.metrics.projection_resumes.inc()
                    await self.runner.resume()
                previous = position
            except (StoreUnavailable, TimeoutError, nats.errors.Error) as exc:
                log.debug("projection watchdog: %r", exc)
                previous = -1

    async def stop(self) -> None:
        for name in list(self._jobs):
            if name != "leader-lease":
                await self._cancel_job(name)
        await self._final_snapshot()
        await self._cancel_job("leader-lease")
        await self._stack.aclose()

    async def _final_snapshot(self) -> None:
        """On a clean stop the leader leaves a snapshot, so the next start is quick."""
        if not (self.is_leader and hasattr(self, "snapshots") and self.snapshots.enabled
                and self.runner.ready):
            return
        try:
            await asyncio.wait_for(self.snapshots.write(), FINAL_SNAPSHOT_TIMEOUT_S)
        except Exception as exc:
            log.warning("final snapshot not written: %r", exc)
