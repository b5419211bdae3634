"""What this process does while it holds the leader lease, started when it is elected and
stopped when it loses the lease: the health monitor, the dispatcher, failover, snapshots
and (with a bounded log) the log keeper, each a job restarted if it fails while leading;
and submits placed at once by the dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from domain.tasks.task import TERMINAL
from infra import names as n
from infra.log.port import EventLog
from infra.log.repository import Repository
from projections.board.tasks import TaskBoard
from services.commands.tasks import TaskService
from services.health.monitor import HealthMonitor
from services.jobs import Job, Jobs
from services.leader.dispatcher import Dispatcher
from services.leader.failover import FailoverReactor
from services.leader.firing import ScheduleFiring
from services.leader.fleet import Fleet
from services.leader.log_keeper import LogKeeper
from services.leader.snapshots import Snapshots
from services.metrics import Metrics


class LeaderDuties:
    def __init__(self, jobs: Jobs, *, metrics: Metrics, monitor: HealthMonitor, fleet: Fleet,
                 tasks: TaskService, dispatcher: Dispatcher, failover: FailoverReactor,
                 snapshots: Snapshots, store: EventLog, board: TaskBoard,
                 repositories: dict[str, Repository], log_max_age: float,
                 is_leader: Callable[[], bool], firing: ScheduleFiring | None = None) -> None:
        self.jobs = jobs
        self.metrics = metrics
        self.monitor = monitor
        self.fleet = fleet
        self.tasks = tasks
        self.dispatcher = dispatcher
        self.board = board
        self.is_leader = is_leader
        self.duties: dict[str, Job] = {
            "health-monitor": monitor.run, "dispatcher": dispatcher.run,
            "failover": failover.run, "snapshots": snapshots.run}
        if firing is not None:
            self.duties["schedules"] = firing.run  # docs/scheduling.md
        if log_max_age:
            def keep_log() -> Coroutine[Any, Any, None]:
                # A keeper per term: what it has looked at is this term's.
                return LogKeeper(store, repositories, snapshots, log_max_age,
                                 self._may_need).run()

            self.duties["log-keeper"] = keep_log

    async def lead(self) -> None:
        """Elected: a new term (the last one's writes have stopped)."""
        self.metrics.leader_changes.labels("acquired").inc()
        self.monitor.restart_deadlines("elected")
        self.fleet.forget_unwritten()
        for name, run in self.duties.items():
            self.jobs.spawn(name, run, restart_while=self.is_leader)
        self.tasks.placer = self.dispatcher.claim  # submits placed at once, while leading
        self.dispatcher.poke()

    async def follow(self) -> None:
        """The lease lost (or given up): every duty stops."""
        self.metrics.leader_changes.labels("lost").inc()
        self.tasks.placer = None
        for name in self.duties:
            await self.jobs.cancel(name)
        await self.monitor.stop()

    def _may_need(self, kind: str, aggregate_id: str) -> bool:
        """Whether the log keeper should read an aggregate: not a task the board holds
        as finished, or no longer holds at all."""
        if kind != n.TASK:
            return True
        view = self.board.get(aggregate_id)
        return view is not None and view.status not in TERMINAL
