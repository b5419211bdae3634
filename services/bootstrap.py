"""The composition root: every component of one orchestrator, built in one place.

`bootstrap` reads as the object graph: each component is made from the ones above it and
handed what it needs at construction; what an applied event sets off is the declared
table of services/reactions.py; what runs while leading is services/leader/duties.py.
The process around it (connections, start and stop order, reconnects) is services/app.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext

from domain.agents.agent import ALIVE
from domain.agents.health import DetectorSettings
from domain.tasks.placement import Strategy
from domain.tasks.task import TERMINAL
from infra import names as n
from infra.caller import admin_token
from infra.log.durable_jetstream import JetStreamDurable
from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from infra.log.group_commit import GroupCommit
from infra.log.port import EventLog
from infra.log.repository import Repository
from infra.log.snapshot_store import SnapshotStore
from infra.settings import Settings
from projections.board.submitters import Submitters
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.fleet.catalog import Catalog
from projections.limits import Limits
from projections.position import Position
from projections.runner import ProjectionRunner
from projections.schedules import ScheduleBook
from services.audit.log_notice import LogNotice
from services.auth.access_control import AccessControl
from services.commands.catalog import CatalogQueries, ChangeFeed
from services.commands.feed import TaskFeed
from services.commands.limits import LimitService
from services.commands.registry import AgentRegistry, silence_in
from services.commands.results import OutcomeNotice, TaskResultsQuery, submitter_in
from services.commands.schedules import ScheduleService
from services.commands.service import Command
from services.commands.table import command_table
from services.commands.tasks import TaskService
from services.health.heartbeats import HeartbeatIntake, heartbeat_stream_check
from services.health.monitor import HealthMonitor
from services.http.api import ReadModel
from services.jobs import Jobs
from services.leader.dispatcher import Dispatcher
from services.leader.duties import LeaderDuties
from services.leader.failover import FailoverReactor, failover_feed
from services.leader.firing import ScheduleFiring
from services.leader.fleet import Fleet
from services.leader.lease import LeaderLease
from services.leader.snapshots import Snapshots
from services.leader.unresponsive import Unresponsiveness
from services.metrics import Metrics
from services.reactions import DISPATCH, TELL_SUBMITTER, WATCH_INCARNATION, Reactions

log = logging.getLogger(__name__)

# How long a new leader waits for its projections to reach the log's position before its
# first placement (they follow the log live: this is the rare case of one far behind).
LEAD_CATCH_UP_S = 10.0


@dataclass(frozen=True)
class Bus:
    """The orchestrator's two connections (infra.auth.own_users): `nc` serves requests
    and publishes replies and notices; `log_nc` (and its `js`) writes the streams."""

    nc: Client
    log_nc: Client
    js: JetStreamContext


@dataclass
class System:
    settings: Settings
    names: n.Names
    metrics: Metrics
    jobs: Jobs
    group_commit: GroupCommit | None
    store: EventLog
    agents: AgentHealth
    board: TaskBoard
    catalog: Catalog
    runner: ProjectionRunner
    snapshots: Snapshots
    catalog_queries: CatalogQueries
    results: TaskResultsQuery
    outcomes: OutcomeNotice
    feed: TaskFeed
    log_notice: LogNotice
    change_feed: ChangeFeed
    registry: AgentRegistry
    tasks: TaskService
    fleet: Fleet
    monitor: HealthMonitor
    intake: HeartbeatIntake
    dispatcher: Dispatcher
    failover: FailoverReactor
    access_control: AccessControl
    duties: LeaderDuties
    lease: LeaderLease
    read_model: ReadModel
    schedules: ScheduleService

    # Flow control: the limits in force, and the operators' command that sets them.
    limits: Limits
    limit_service: LimitService

    @property
    def is_leader(self) -> bool:
        return self.lease.is_leader

    def commands(self) -> list[Command]:
        return command_table(self.registry, self.tasks, self.catalog_queries, self.results,
                             self.access_control.admin, self.access_control.gate,
                             self.schedules, limits=self.limit_service)


def bootstrap(settings: Settings, bus: Bus, holder: str, *, metrics: Metrics | None = None,
              event_log: EventStore | None = None) -> System:
    """Every component, wired once; `holder` names this process in the leader lease.
    `event_log`: a store of the caller's instead of one with group commit on `bus` (the
    failover reactor's durable feed, infra.log.durable, is built here on JetStream, so it
    is a JetStream store; the handlers and duties that take the EventLog port, failover
    with infra.log.durable_memory's feed, run on the in-memory log in unit tests)."""
    names = n.Names(settings.subject_prefix)
    metrics = metrics or Metrics()
    strategy = Strategy(settings.placement_strategy)
    nc, log_nc, js = bus.nc, bus.log_nc, bus.js
    jobs = Jobs()
    group_commit = None
    if event_log is None:
        group_commit = GroupCommit(log_nc, names.events_stream)
        group_commit.on_batch = metrics.append_batch.observe
        event_log = EventStore(js, names, create_mapper(), group_commit=group_commit)
    store = event_log
    store.on_append = metrics.append_latency.observe
    store.foreign.on_skip = metrics.log_records_skipped.inc

    agents = AgentHealth()
    board = TaskBoard(settings.finished_task_retention, settings.finished_task_limit)
    limits = Limits(settings.max_unfinished_per_submitter, settings.max_unfinished_tasks)
    board.follow(limits)
    limit_service = LimitService(Repository(store, n.LIMIT))
    catalog = Catalog()
    submitters = Submitters()
    position = Position()  # how far the projections have applied the log
    catalog_queries = CatalogQueries(catalog, position)
    registry = AgentRegistry(
        # Only agents whose health is in question stay cached: a decision on them is
        # near. A healthy agent's aggregate (about 400 B) is read from the log when it is
        # next commanded (re-registration, drain, a suspicion), which is rare.
        Repository(store, n.AGENT, keep=lambda agent: agent.liveness != ALIVE),
        names, settings.heartbeat_interval, silence_in(agents), settings.suspect_after,
        settings.auth_jwt_ttl if settings.auth_on else None,
        known=lambda agent_id: agents.get(agent_id) is not None, publish=nc.publish)
    access_control = AccessControl(nc, names, store, settings, metrics)

    def is_operator(identity: str) -> bool:
        # With auth off there are no identities to tell apart: anyone may act on any
        # task, as before owners.
        return (not settings.auth_on or admin_token.get()  # an admin token's action
                or access_control.access.has_role(identity, "operator"))

    feed = TaskFeed(nc, names, board, submitters, metrics)
    tasks = TaskService(
        # A finished task leaves the cache: commands on it are rare, read from the log.
        Repository(store, n.TASK, keep=lambda task: task.status not in TERMINAL),
        names, board, nc.publish, settings.retry_backoff, settings.retry_backoff_max,
        is_operator=is_operator, on_progress=feed.progress, limits=limits,
        on_refused=lambda bound: metrics.flow.refused.labels(bound).inc(),
        kind_runs=agents.declares_kind)
    results = TaskResultsQuery(tasks.repository, is_operator)
    fleet = Fleet(agents, board, position)
    detector = DetectorSettings(settings.suspect_after, settings.dead_after,
                                settings.heartbeat_interval, settings.failures_before_critical,
                                settings.success_before_passing)
    monitor = HealthMonitor(
        agents, position, registry, detector,
        lambda: log_nc.is_connected, metrics,
        deregister_dead_after=settings.deregister_dead_after,
        bus_check=heartbeat_stream_check(js, names))
    intake = HeartbeatIntake(nc, js, names, agents, monitor, metrics,
                             reregister_every=settings.heartbeat_interval, log_nc=log_nc,
                             position=position)
    async def caught_up() -> None:
        last = await store.last_position()
        if not await position.wait_for(last, LEAD_CATCH_UP_S):
            log.warning("projections not at the log's position %d after %.0fs; placing "
                        "anyway", last, LEAD_CATCH_UP_S)

    unresponsive = Unresponsiveness(agents, board, registry, position, metrics,
                                    settings.unresponsive_after, settings.unresponsive_hold)
    dispatcher = Dispatcher(board, fleet, tasks, strategy, settings.accept_timeout, metrics,
                            limits=limits, catch_up=caught_up, unresponsive=unresponsive)
    schedules = ScheduleService(store, ScheduleBook(), is_operator)
    failover = FailoverReactor(JetStreamDurable(js, store, failover_feed(names)), board,
                               fleet, tasks, position, strategy, metrics)

    # Late-bound: the runner and the lease are made below, from what is made here.
    def live() -> bool:
        return runner.ready

    def leading() -> bool:
        return lease.is_leader

    # Wakes readers that follow the log by direct gets (auditors create no consumer).
    log_notice = LogNotice(nc.publish, names.log_appended)
    change_feed = ChangeFeed(catalog, names, nc.publish,
                             enabled=lambda: leading() and runner.ready)
    outcomes = OutcomeNotice(submitters, board, names, nc.publish, live,
                             submitter_in(tasks.repository))
    reactions = Reactions(
        {WATCH_INCARNATION: lambda event: monitor.noticed(event.aggregate_id),
         DISPATCH: lambda event: dispatcher.poke(), TELL_SUBMITTER: outcomes.finished},
        live=live, count_task_event=metrics.task_event, notice_position=log_notice.applied,
        catalog=catalog, feed=change_feed.on_event)
    # The limits first: a placement is decided under those in force before it.
    runner = ProjectionRunner(store, [limits, agents, board, catalog, submitters],
                              on_applied=reactions.on_applied, position=position)
    snapshots = Snapshots(SnapshotStore(js, names, settings.stream_replicas), store, runner,
                          agents, board, catalog, settings.snapshot_every, metrics)
    duties = LeaderDuties(
        jobs, metrics=metrics, monitor=monitor, fleet=fleet, tasks=tasks,
        dispatcher=dispatcher, failover=failover, snapshots=snapshots, store=store,
        board=board, repositories={n.AGENT: registry.repository, n.TASK: tasks.repository,
                                   n.IDENTITY: access_control.identities,
                                   n.SCHEDULE: schedules.repository,
                                   n.LIMIT: limit_service.repository},
        log_max_age=settings.log_max_age, is_leader=leading,
        firing=ScheduleFiring(schedules.book, schedules, tasks, board, metrics,
                              revoked=lambda identity: settings.auth_on
                              and access_control.access.is_revoked(identity)))
    lease = LeaderLease(js, names, holder, settings.lease_ttl, duties.lead, duties.follow,
                        replicas=settings.stream_replicas)
    read_model = ReadModel(
        names, store, js, runner, agents, board, catalog, metrics,
        lambda: nc.is_connected and log_nc.is_connected, leading,
        access_control.access if settings.auth_on else None, detector, limits=limits,
        schedules=schedules.book)
    _report_on_scrape(metrics, store, runner, intake, js, names)
    return System(
        settings, names, metrics, jobs, group_commit, store, agents, board, catalog, runner,
        snapshots, catalog_queries, results, outcomes, feed, log_notice, change_feed, registry,
        tasks, fleet, monitor, intake, dispatcher, failover, access_control, duties, lease,
        read_model, schedules, limits, limit_service)


def _report_on_scrape(metrics: Metrics, store: EventLog, runner: ProjectionRunner,
                      intake: HeartbeatIntake, js: JetStreamContext, names: n.Names) -> None:
    """The figures read when metrics are scraped, not kept up to date as they change."""
    reported = [0]

    async def events_applied() -> None:
        # Counted by the runner, handed to prometheus here: a locked increment per event
        # was a share of a replay.
        applied = runner.applied
        metrics.events_applied.inc(applied - reported[0])
        reported[0] = applied

    async def log_position() -> None:
        metrics.log_position.set(await store.last_position())

    heartbeats_last = heartbeat_stream_check(js, names)

    async def heartbeat_lag() -> None:
        metrics.heartbeat_consumer_lag.set(max(0, await heartbeats_last() - intake.delivered))

    metrics.on_scrape(log_position)
    metrics.on_scrape(events_applied)
    metrics.on_scrape(heartbeat_lag)
