"""`what-if limits`: a recorded window of submissions and fleet replayed under other limits.

The replay is a simulation in log time through the projections and the placement
decision the live dispatcher uses (projections/board/placing.py): the same board, the
same waiting queue with its fairness and lanes, the same key gate and plan. What it
takes from the log:
- the state at the window's start (every projection replayed to there);
- the agents' events, the limits set and the tasks cancelled, at their recorded times;
- each task's arrival (`Submitted`) and its service time: from its first placement to
  its end (retries and moves included); a task that never ran in the window takes the
  median of its kind's, or never ends.
A task the replay places where and as the log did ends when the log says it did; one
placed otherwise ends its service time later. So, given the limits that were in force,
the replay decides what the dispatcher decided wherever the dispatcher saw the log as it
was (rounds between a placement and its being applied may differ, and a failover the
replay does not make: an agent that died has its tasks put back in the queue), and under
other limits it shows what would have happened instead.
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.base import CARRIED_FORWARD
from domain.errors import CommandRefused
from domain.flow import LimitScope, check_values, limit_id, parse_rate
from domain.placement import Candidate, Strategy
from domain.plan import Plan
from infra.log.port import EventLog
from infra.names import AGENT, TASK
from projections.board.key_gate import KeyGate
from projections.board.placing import decide
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.limits import LIMIT_KIND, Limits
from services.audit.waiting import fleet

NO_KEY = "(none)"
ENDS = frozenset({"Completed", "DeadLettered", "Cancelled"})
PLACED = frozenset({"Assigned", "Reassigned"})
GONE = frozenset({"DeclaredDead", "Deregistered", "Removed"})


@dataclass
class _Event:
    """A LogEvent the replay makes (or re-numbers): the projections read only these."""

    position: int
    kind: str
    aggregate_id: str
    name: str
    recorded_at: datetime
    body: dict[str, Any]
    event_id: str = ""

    def data(self) -> dict[str, Any]:
        return self.body


@dataclass
class _Task:
    submitted_at: float
    key: str
    kind: str
    first_placed: tuple[float, str] | None = None  # (when, agent) as the log has it
    ended: tuple[float, str] | None = None  # (when, event name)
    cancelled_at: float | None = None

    @property
    def service_s(self) -> float | None:
        if self.first_placed is None or self.ended is None or self.ended[1] == "Cancelled":
            return None
        return max(0.0, self.ended[0] - self.first_placed[0])


@dataclass
class Figures:
    """One key's tasks submitted in the window: how long they waited for an agent."""

    submitted: int = 0
    placed: int = 0
    waits: list[float] = field(default_factory=list)
    still_waiting: list[float] = field(default_factory=list)  # waited so far, at the end
    finished: int = 0

    def to_json(self, seconds: float) -> dict[str, Any]:
        every = self.waits + self.still_waiting
        return {
            "submitted": self.submitted, "placed": self.placed, "finished": self.finished,
            "p50_wait_s": _percentile(self.waits, 0.50),
            "p99_wait_s": _percentile(self.waits, 0.99),
            "longest_wait_s": round(max(every), 3) if every else None,
            "throughput_per_s": round(self.finished / seconds, 3) if seconds > 0 else None,
        }


async def what_if_limits(store: EventLog, start: int, end: int | None,
                         changes: Iterable[tuple[str, dict[str, Any]]] = (),
                         strategy: Strategy = Strategy.LEAST_LOADED) -> dict[str, Any]:
    """The window [start, end] of the log replayed with `changes` (limit id, values: as
    `admin.limits.set` records them) in force over the limits recorded; per concurrency
    key, the waits and throughput that happened beside the replay's."""
    changes = list(changes)
    last = await store.last_position()
    end = min(end or last, last)
    before, window = await _read(store, start, end)
    world = _World(changes, strategy)
    for event in before:
        world.apply(event)
    tasks = _tasks(window)
    replay = _Replay(world, tasks, window, changes)
    decisions = replay.run()
    times = [e.recorded_at.timestamp() for e in window]
    seconds = (times[-1] - times[0]) if len(times) > 1 else 0.0
    actual = _actual(tasks, times[-1] if times else 0.0)
    replayed = replay.figures(times[-1] if times else 0.0)
    recorded = [(task_id, t.first_placed[1]) for task_id, t in
                sorted(tasks.items(), key=lambda item: item[1].first_placed or (0, ""))
                if t.first_placed is not None]
    return {
        "window": {"from_position": start, "to_position": end,
                   "from": _iso(times[0]) if times else None,
                   "to": _iso(times[-1]) if times else None, "seconds": round(seconds, 3)},
        "changes": [{"limit": limit, "values": values} for limit, values in changes],
        "keys": {key: {"actual": actual[key].to_json(seconds),
                       "what_if": replayed[key].to_json(seconds)}
                 for key in sorted(set(actual) | set(replayed))},
        "placements": {"actual": [list(p) for p in recorded],
                       "what_if": [list(p) for p in decisions],
                       "same": recorded == decisions},
    }


async def _read(store: EventLog, start: int, end: int) -> tuple[list[Any], list[Any]]:
    before: list[Any] = []
    window: list[Any] = []
    async for event in store.iterate(0, until=end):
        (before if event.position < start else window).append(event)
    return before, window


def _tasks(window: list[Any]) -> dict[str, _Task]:
    """Each task submitted in the window: its arrival, first placement and end."""
    found: dict[str, _Task] = {}
    for event in window:
        if event.kind != TASK:
            continue
        at = event.recorded_at.timestamp()
        if event.name == "Submitted":
            data = event.data()
            found[event.aggregate_id] = _Task(at, data.get("concurrency_key") or "",
                                              data["kind"])
            continue
        task = found.get(event.aggregate_id)
        if task is None:
            continue
        if event.name in PLACED and task.first_placed is None:
            task.first_placed = (at, event.data()["agent_id"])
        elif event.name in ENDS and task.ended is None:
            task.ended = (at, event.name)
            if event.name == "Cancelled":
                task.cancelled_at = at
    by_kind: dict[str, list[float]] = defaultdict(list)
    for task in found.values():
        if task.service_s is not None:
            by_kind[task.kind].append(task.service_s)
    return found


class _World:
    """The projections the replay places on, and the limits in force in it."""

    def __init__(self, changes: list[tuple[str, dict[str, Any]]], strategy: Strategy) -> None:
        self.agents, self.board, self.limits = AgentHealth(), TaskBoard(), Limits()
        self.board.follow(self.limits)
        self.gate = KeyGate(self.limits, self.board.flow)
        self.changes = changes
        self.strategy = strategy
        self._positions = itertools.count(1)
        self._override()

    def _override(self) -> None:
        for limit, values in self.changes:
            self.limits.put(limit, values)

    def apply(self, event: Any) -> None:
        """A recorded event, numbered in the replay's own order."""
        own = _Event(next(self._positions), event.kind, event.aggregate_id, event.name,
                     event.recorded_at, event.data())
        self.limits.apply(own)
        if event.kind == LIMIT_KIND:
            self._override()  # the changes stand over what the log set
        if event.name != CARRIED_FORWARD:
            self.agents.apply(own)
            self.board.apply(own)

    def plan(self) -> tuple[Plan, int]:
        """The healthy agents as placement sees them now, and their free capacity."""
        healthy = {c.agent_id: c for c in fleet(self.agents, self.board)
                   if c.status == "healthy"}
        return Plan(healthy, self.strategy), sum(max(0, c.free) for c in healthy.values())

    def make(self, kind: str, aggregate_id: str, name: str, at: float,
             body: dict[str, Any]) -> None:
        """An event the replay decides (a placement, an end)."""
        self.apply(_Event(0, kind, aggregate_id, name, datetime.fromtimestamp(at, UTC), body))


class _Replay:
    def __init__(self, world: _World, tasks: dict[str, _Task], window: list[Any],
                 changes: list[tuple[str, dict[str, Any]]]) -> None:
        self.world, self.tasks = world, tasks
        self.queue: list[tuple[float, int, str, Any]] = []
        self.order = itertools.count()
        self.placed_at: dict[str, float] = {}
        self.finished: set[str] = set()
        self.decisions: list[tuple[str, str]] = []
        self.cursor = ""
        medians: dict[str, list[float]] = defaultdict(list)
        for task in tasks.values():
            if task.service_s is not None:
                medians[task.kind].append(task.service_s)
        self.median = {kind: statistics.median(v) for kind, v in medians.items()}
        for event in window:
            at = event.recorded_at.timestamp()
            if event.kind == TASK and event.name == "Submitted":
                self._at(at, "recorded", event)
            elif event.kind == TASK and event.name == "Cancelled":
                self._at(at, "cancel", event)
            elif event.kind in (AGENT, LIMIT_KIND):
                self._at(at, "recorded", event)
            elif event.kind == TASK and event.name in ENDS | {"Failed"} \
                    and event.aggregate_id not in tasks:
                self._at(at, "recorded", event)  # a task from before the window ends

    def _at(self, at: float, what: str, item: Any) -> None:
        heapq.heappush(self.queue, (at, next(self.order), what, item))

    def run(self) -> list[tuple[str, str]]:
        while self.queue:
            now = self.queue[0][0]
            while self.queue and self.queue[0][0] <= now:
                _, _, what, item = heapq.heappop(self.queue)
                self._do(what, item, now)
            self._place(now)
        return self.decisions

    def _do(self, what: str, item: Any, now: float) -> None:
        world = self.world
        if what == "recorded":
            gone = item.kind == AGENT and item.name in GONE
            held = world.board.open_tasks_of(item.aggregate_id) if gone else []
            world.apply(item)
            for open_view in held:  # no failover here: its tasks wait again
                if open_view.task_id not in self.finished:
                    world.make(TASK, open_view.task_id, "Requeued", now,
                               {"from_agent": item.aggregate_id, "reason": "agent_gone"})
        elif what == "cancel":
            found = world.board.get(item.aggregate_id)
            if found is not None and found.status not in ("completed", "dead_lettered",
                                                          "cancelled"):
                world.apply(item)
                self.finished.add(item.aggregate_id)
        elif what == "end":
            task_id, placed_at = item
            running = world.board.get(task_id)
            if running is not None and running.is_open \
                    and self.placed_at.get(task_id) == placed_at:
                world.make(TASK, task_id, "Completed", now,
                           {"token": running.token, "agent_id": running.agent_id,
                            "result": None, "attempt": running.attempt})
                self.finished.add(task_id)
        # "wake": only a round is wanted, for a key's next token.

    def _place(self, now: float) -> None:
        world = self.world
        while len(world.board.waiting):
            walk = world.board.round(now)
            try:
                decided = decide(walk, world.board.tasks, world.plan, world.gate, now,
                                 self.cursor)
            finally:
                walk.close()
            self.cursor = decided.cursor
            for decision in decided.decisions:
                self._placed(decision.view.task_id, decision.agent, now)
            if decided.token_at is not None and decided.token_at > now:
                self._at(decided.token_at, "wake", None)
            if not decided.more:
                return

    def _placed(self, task_id: str, agent: Candidate, now: float) -> None:
        view = self.world.board.get(task_id)
        attempt = (view.attempt if view is not None else 0) + 1
        self.world.make(TASK, task_id, "Assigned", now,
                        {"agent_id": agent.agent_id, "incarnation": agent.incarnation,
                         "attempt": attempt, "token": f"w{next(self.order)}",
                         "strategy": self.world.strategy.value, "considered": []})
        self.placed_at[task_id] = now
        task = self.tasks.get(task_id)
        if task is None:
            return  # submitted before the window: neither counted nor ended here
        self.decisions.append((task_id, agent.agent_id))
        end = self._end(task, agent.agent_id, now)
        if end is not None:
            self._at(end, "end", (task_id, now))

    def _end(self, task: _Task, agent_id: str, now: float) -> float | None:
        """Where and as the log placed it: when the log ended it; else a service later
        (its own, or its kind's median for a task the log never ran)."""
        if task.cancelled_at is not None:
            return None  # the log's cancel ends it
        if task.first_placed is not None and task.ended is None:
            return None  # it ran past the window
        if task.first_placed is not None and task.ended is not None \
                and task.first_placed[1] == agent_id and task.ended[0] >= now:
            return task.ended[0]
        service = task.service_s if task.service_s is not None else self.median.get(task.kind)
        return None if service is None else now + service

    def figures(self, end: float) -> dict[str, Figures]:
        found: dict[str, Figures] = defaultdict(Figures)
        for task_id, task in self.tasks.items():
            figures = found[task.key or NO_KEY]
            figures.submitted += 1
            if task_id in self.placed_at:
                figures.placed += 1
                figures.waits.append(self.placed_at[task_id] - task.submitted_at)
            elif task.cancelled_at is None:
                figures.still_waiting.append(end - task.submitted_at)
            if task_id in self.finished and task.cancelled_at is None:
                figures.finished += 1
        return found


def _actual(tasks: dict[str, _Task], end: float) -> dict[str, Figures]:
    found: dict[str, Figures] = defaultdict(Figures)
    for task in tasks.values():
        figures = found[task.key or NO_KEY]
        figures.submitted += 1
        if task.first_placed is not None:
            figures.placed += 1
            figures.waits.append(task.first_placed[0] - task.submitted_at)
        elif task.cancelled_at is None:
            figures.still_waiting.append(end - task.submitted_at)
        if task.ended is not None and task.ended[1] in ("Completed", "DeadLettered"):
            figures.finished += 1
    return found


def parse_change(text: str) -> tuple[str, dict[str, Any]]:
    """`gpu:concurrency=4,rate=600/min,burst=5` -> ("key:gpu", {...}) as a limit records
    them; `fairness:team-a:weight=3` a fairness key's. ValueError for anything else."""
    head, sep, values_text = text.rpartition(":")
    if not sep or "=" not in values_text or not head:
        raise ValueError(f"not KEY:NAME=VALUE,...: {text!r}")
    scope, name = ("key", head)
    for known in (LimitScope.KEY, LimitScope.FAIRNESS):
        if head.startswith(f"{known.value}:"):
            scope, name = known.value, head[len(known.value) + 1:]
    values: dict[str, Any] = {}
    for pair in values_text.split(","):
        field_name, _, value = pair.partition("=")
        if field_name == "rate":
            values["rate_per_s"] = parse_rate(value)
        elif field_name in ("concurrency", "burst"):
            values[field_name] = int(value)
        elif field_name == "weight":
            values[field_name] = float(value)
        else:
            raise ValueError(f"no limit {field_name!r} (concurrency, rate, burst, weight)")
    if "rate_per_s" in values:
        values.setdefault("burst", 1)
    try:
        check_values(LimitScope(scope), values)
    except CommandRefused as refused:
        raise ValueError(refused.message) from None
    return limit_id(LimitScope(scope), name), values


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
