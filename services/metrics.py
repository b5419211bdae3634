"""Prometheus metrics of one orchestrator process, on their own registry.

What each metric means, and which alert in deploy/prometheus/ uses it, is in
docs/observability.md. Gauges read from the projections (tasks, agents, lags) are set at
scrape time by the read API's /metrics (services.http.api.metrics) and the hooks registered
with `on_scrape`.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from domain.tasks.task import TERMINAL, TaskStatus
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.log_event import LogEvent
from services.flow_metrics import FlowMetrics

log = logging.getLogger(__name__)

# Every status a task or an agent can be in: a status with no member reads 0, not the
# count it had at the previous scrape.
TASK_STATUSES = tuple(TaskStatus)
AGENT_STATUSES = ("healthy", "draining", "suspect", "unresponsive", "dead", "left")
# orch_assignments_total{outcome}: read from the log as it is applied (see `assignment`).
ASSIGNMENT_OUTCOMES = ("delivered", "accepted", "timed_out", "moved")
FINISHED_STATUSES = tuple(status for status in TaskStatus if status in TERMINAL)

# From a deadline to an action: the failover target is 100 ms, the tests allow seconds.
_DEADLINE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

ScrapeHook = Callable[[], Awaitable[None]]


class Tally:
    """A counter and a histogram fed in plain Python and handed to prometheus at scrape
    time: for an event as frequent as a heartbeat, prometheus's locked increment of
    each, per event, was a twentieth of the intake's time (py-spy). Values read by a
    scrape are the same as if each had been observed at once (tests/unit/test_tally.py)."""

    def __init__(self, counter: Counter, histogram: Histogram) -> None:
        self._counter = counter
        self._histogram = histogram
        self._bounds = list(histogram._upper_bounds)  # the last is +Inf
        self._count = 0
        self._sum = 0.0
        self._buckets = [0] * len(self._bounds)

    def observe(self, value: float) -> None:
        self._count += 1
        self._sum += value
        # Prometheus counts a value in the first bucket whose bound it does not exceed.
        self._buckets[bisect.bisect_left(self._bounds, value)] += 1

    async def flush(self) -> None:
        count, total, buckets = self._count, self._sum, self._buckets
        self._count, self._sum, self._buckets = 0, 0.0, [0] * len(self._bounds)
        if count:
            self._counter.inc(count)
            self._histogram._sum.inc(total)
            for bucket, n in zip(self._histogram._buckets, buckets, strict=True):
                if n:
                    bucket.inc(n)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # The process's own CPU, memory, file descriptors, and the Python it runs on.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._scrape_hooks: list[ScrapeHook] = []
        self._answered: dict[tuple[str, str], tuple[Any, Any]] = {}  # bound label children
        self.flow = FlowMetrics(self.registry)
        self.commands = Counter(
            "orch_commands_total", "Commands answered, by command and outcome",
            ["command", "outcome"], registry=self.registry,
        )
        self.command_latency = Histogram(
            "orch_command_duration_seconds",
            "From a command's arrival to its answer, by command and outcome",
            ["command", "outcome"], buckets=_APPEND_BUCKETS, registry=self.registry,
        )
        self.events_applied = Counter(
            "orch_events_applied_total", "Log events applied to the projections",
            registry=self.registry,
        )
        self.heartbeats = Counter(
            "orch_heartbeats_total", "Heartbeats received, by outcome",
            ["outcome"], registry=self.registry,
        )
        self.position = Gauge(
            "orch_projection_position", "Log position the projections have applied",
            registry=self.registry,
        )
        self.log_position = Gauge(
            "orch_log_last_position",
            "Position of the newest event in the log (read from the stream at scrape time)",
            registry=self.registry,
        )
        self.agents = Gauge(
            "orch_agents", "Agents by status", ["status"], registry=self.registry,
        )
        self.tasks = Gauge(
            "orch_tasks", "Tasks on the board by status (finished ones until retention "
            "drops them)", ["status"], registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "orch_task_oldest_pending_age_seconds",
            "How long the longest-waiting pending task has waited in the queue (since it "
            "was submitted or requeued); 0 when none waits",
            registry=self.registry,
        )
        self.assignments = Counter(
            "orch_assignments_total",
            "Assignments delivered to agents, accepted by them, timed out unaccepted, and "
            "moved off agents that died, left or restarted (from the log, live)",
            ["outcome"], registry=self.registry,
        )
        self.feed_messages = Counter(
            "orch_task_feed_messages_total",
            "Partial output and progress relayed to submitters (not logged), and partial "
            "output dropped: from an agent not holding the task, too large, or for a task "
            "with no submitter to tell",
            ["kind", "outcome"], registry=self.registry,
        )
        self.tasks_finished = Counter(
            "orch_tasks_finished_total",
            "Tasks that finished while this process followed the log, by final status",
            ["status"], registry=self.registry,
        )
        self.failover_time = Histogram(
            "orch_failover_seconds",
            "From a dead agent's dead deadline (last heartbeat + dead_after) to each of its "
            "tasks being delivered to another agent",
            buckets=_DEADLINE_BUCKETS, registry=self.registry,
        )
        self.death_lateness = Histogram(
            "orch_death_lateness_seconds",
            "From an agent's dead deadline (last heartbeat + dead_after) to its recorded "
            "death",
            buckets=_DEADLINE_BUCKETS, registry=self.registry,
        )
        self.leader = Gauge(
            "orch_leader", "1 while this process holds the leader lease, else 0",
            registry=self.registry,
        )
        self.leader_changes = Counter(
            "orch_leader_changes_total",
            "Times this process acquired or lost the leader lease",
            ["change"], registry=self.registry,
        )
        self.schedule_firings = Counter(
            "orch_schedule_firings_total",
            "Due slots of schedules decided by this process while leading: `fired` (its "
            "task submitted) or `skipped` (docs/scheduling.md)",
            ["outcome"], registry=self.registry,
        )
        self.heartbeat_consumer_lag = Gauge(
            "orch_heartbeat_consumer_lag_messages",
            "Heartbeats in the stream not yet taken in here (stream last sequence minus "
            "the intake's)",
            registry=self.registry,
        )
        self.append_latency = Histogram(
            "orch_event_append_seconds",
            "From an event's append to the log's answer (its position, or a refusal)",
            buckets=_APPEND_BUCKETS, registry=self.registry,
        )
        self.append_batch = Histogram(
            "orch_event_append_batch_messages",
            "Events written together in one group-commit batch",
            buckets=_BATCH_BUCKETS, registry=self.registry,
        )
        self.projection_resumes = Counter(
            "orch_projection_resumes_total",
            "Times the projections stopped following the log and were set to follow again",
            registry=self.registry,
        )
        self.snapshot_position = Gauge(
            "orch_snapshot_position",
            "Log position of the latest projection snapshot restored or written here",
            registry=self.registry,
        )
        self.decisions = Counter(
            "orch_health_decisions_total", "Health monitor decisions recorded",
            ["decision"], registry=self.registry,
        )
        self.blind_resets = Counter(
            "orch_health_deadline_resets_total",
            "Times every deadline restarted because the health evidence was not current "
            "(disconnected, a stall of NATS, of the path or of this process)",
            ["reason"], registry=self.registry,
        )
        self.heartbeat_lag = Histogram(
            "orch_heartbeat_lag_seconds",
            "From a heartbeat's arrival in its stream to its application here",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "orch_http_request_seconds", "Read API latency", ["route"],
            registry=self.registry,
        )
        self.auth_connections = Counter(
            "orch_auth_connections_total",
            "Connections the auth callout decided, by outcome (admitted, refused, unreadable)",
            ["outcome"], registry=self.registry,
        )
        self.auth_refusals = Counter(
            "orch_auth_refusals_total",
            "Refused connections by what the event log kept of them: recorded (a "
            "ConnectionRefused event), summarised (counted in the next RefusalsSummarised, "
            "past the per-host or per-interval bound), unrecorded (the log unavailable)",
            ["outcome"], registry=self.registry,
        )
        self.http_blocking_refused = Counter(
            "orch_http_blocking_refused_total",
            "Blocking queries of the read API answered 429, by the cap they met (token, "
            "total)", ["cap"], registry=self.registry,
        )
        self.requests_unanswered = Counter(
            "orch_requests_unanswered_total",
            "Requests neither acted on nor answered because their reply subject was not the "
            "requester's own inbox (an attempt to steer the orchestrator's publication)",
            ["endpoint"], registry=self.registry,
        )
        self.log_records_skipped = Counter(
            "orch_log_records_skipped_total",
            "Records in the event log without the orchestrator's headers, skipped wherever "
            "the log is read", registry=self.registry,
        )
        self.auth_callout_latency = Histogram(
            "orch_auth_callout_seconds",
            "From an authorization request's arrival to its signed answer",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        # Series that exist from the start (0), so rate() and increase() see the first
        # occurrence and the alert rules need no `or vector(0)`.
        for outcome in ASSIGNMENT_OUTCOMES:
            self.assignments.labels(outcome)
        for status in FINISHED_STATUSES:
            self.tasks_finished.labels(status)
        for change in ("acquired", "lost"):
            self.leader_changes.labels(change)
        for decision in ("suspect", "dead", "alive", "unresponsive", "readmitted"):
            self.decisions.labels(decision)

    # --- set at scrape time -------------------------------------------------------

    def on_scrape(self, hook: ScrapeHook) -> None:
        """Run `hook` before each scrape: it sets gauges read from elsewhere."""
        self._scrape_hooks.append(hook)

    async def before_scrape(self) -> None:
        for hook in self._scrape_hooks:
            try:
                await hook()
            except Exception as exc:  # a scrape still answers, with the last values
                log.debug("metrics scrape hook failed: %r", exc)

    def read_projections(self, agents: AgentHealth, board: TaskBoard,
                         now: float | None = None) -> None:
        """Agents and tasks by status, and the oldest pending task's wait."""
        _set_counts(self.agents, AGENT_STATUSES, agents.counts())
        _set_counts(self.tasks, TASK_STATUSES, board.counts())
        self.oldest_pending.set(oldest_pending_age(board, time.time() if now is None else now))

    def command_answered(self, command: str, outcome: str, started: float) -> None:
        """A command answered; `started` is its time.perf_counter() on arrival."""
        children = self._answered.get((command, outcome))
        if children is None:  # a label lookup per command was a measurable cost
            children = self._answered[(command, outcome)] = (
                self.commands.labels(command, outcome),
                self.command_latency.labels(command, outcome))
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    # --- from the log ---------------------------------------------------------------

    def task_event(self, event: LogEvent) -> None:
        """A task event applied live (not while rebuilding): the counters it moves."""
        name = event.name
        if name == "Assigned":
            self.assignments.labels("delivered").inc()
        elif name == "Accepted":
            self.assignments.labels("accepted").inc()
        elif name in ("Reassigned", "Requeued"):
            if name == "Reassigned":
                self.assignments.labels("delivered").inc()
            timed_out = event.data().get("reason") == "accept_timeout"
            self.assignments.labels("timed_out" if timed_out else "moved").inc()
        elif name == "Completed":
            self.tasks_finished.labels(TaskStatus.COMPLETED).inc()
        elif name == "DeadLettered":
            self.tasks_finished.labels(TaskStatus.DEAD_LETTERED).inc()
        elif name == "Cancelled":
            self.tasks_finished.labels(TaskStatus.CANCELLED).inc()


def _set_counts(gauge: Gauge, known: Iterable[str], counts: dict[str, int]) -> None:
    for status in (*known, *counts):
        gauge.labels(status).set(counts.get(status, 0))


def oldest_pending_age(board: TaskBoard, now: float) -> float:
    """Seconds the longest-waiting pending task has waited since it entered the queue
    (its Submitted or Requeued event: its `updated_at` while pending); 0 when none waits."""
    waiting = [board.tasks[t].updated_at.timestamp() for t in board.queued
               if board.tasks[t].status == TaskStatus.PENDING]
    return max(0.0, now - min(waiting)) if waiting else 0.0
