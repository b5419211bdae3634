"""The replay of `what-if limits` (services/audit/what_if_limits.py): a recorded window
of submissions and fleet simulated in log time through the projections and the placement
decision the live dispatcher uses (projections/board/placing.py): the same board, the same
waiting queue with its fairness, lanes and parked keys, the same key gate and plan.

It takes from the log the state at the window's start, the agents' events, the limits
set and the cancellations, each task's arrival and its service time (from its first
placement to its end; a task that never ran takes its kind's median). It makes the
dispatchers' decisions where and in the order their causes say (`dispatch-<position>.<n>`),
and once one differs, its world is its own (docs/flow-control.md, What-if for limits).
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from domain.base import CARRIED_FORWARD
from domain.tasks.placement import Candidate, Strategy
from domain.tasks.plan import Plan
from infra.names import AGENT, TASK
from projections.board.key_gate import KeyGate
from projections.board.placing import decide, parse_dispatch_cause
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.limits import LIMIT_KIND, Limits
from services.audit.waiting import fleet

ENDS = frozenset({"Completed", "DeadLettered", "Cancelled"})
FINISHED = frozenset({"completed", "dead_lettered", "cancelled"})
PLACED = frozenset({"Assigned", "Reassigned"})
GONE = frozenset({"DeclaredDead", "Deregistered", "Removed"})


@dataclass
class ReplayEvent:
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
class RecordedTask:
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


def recorded_tasks(window: list[Any]) -> dict[str, RecordedTask]:
    """Each task submitted in the window: its arrival, first placement and end."""
    found: dict[str, RecordedTask] = {}
    for event in window:
        if event.kind != TASK:
            continue
        at = event.recorded_at.timestamp()
        if event.name == "Submitted":
            data = event.data()
            found[event.aggregate_id] = RecordedTask(at, data.get("concurrency_key") or "",
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
    return found


class World:
    """The projections the replay places on, the limits in force in it, and the
    placements it decided that the log has not applied yet (in flight, as the leader's
    fleet counts them: against their agent and key, and not placed again)."""

    def __init__(self, changes: list[tuple[str, dict[str, Any]]], strategy: Strategy) -> None:
        self.agents, self.board, self.limits = AgentHealth(), TaskBoard(), Limits()
        self.board.follow(self.limits)
        self.in_flight: dict[str, tuple[str, str]] = {}  # task -> (agent, key)
        self.gate = KeyGate(self.limits, self.board.flow, self._key_in_flight)
        self.changes = changes
        self.strategy = strategy
        self._positions = itertools.count(1)
        self._override()

    def _override(self) -> None:
        for limit, values in self.changes:
            self.limits.put(limit, values)

    def _key_in_flight(self, key: str) -> int:
        return sum(1 for _, of in self.in_flight.values() if of == key)

    def apply(self, event: Any) -> None:
        """A recorded event, numbered in the replay's own order."""
        own = ReplayEvent(next(self._positions), event.kind, event.aggregate_id, event.name,
                     event.recorded_at, event.data())
        self.limits.apply(own)
        if event.kind == LIMIT_KIND:
            self._override()  # the changes stand over what the log set
        if event.name != CARRIED_FORWARD:
            self.agents.apply(own)
            self.board.apply(own)
        if event.kind == TASK and event.name in PLACED:
            self.in_flight.pop(event.aggregate_id, None)

    def plan(self) -> tuple[Plan, int]:
        """The healthy agents as placement sees them now, with the placements in flight
        counted against them, and their free capacity."""
        extra: dict[str, int] = defaultdict(int)
        for agent_id, _ in self.in_flight.values():
            extra[agent_id] += 1
        healthy = {c.agent_id: replace(c, load=c.load + extra[c.agent_id])
                   for c in fleet(self.agents, self.board) if c.status == "healthy"}
        return Plan(healthy, self.strategy), sum(max(0, c.free) for c in healthy.values())

    def make(self, kind: str, aggregate_id: str, name: str, at: float,
             body: dict[str, Any]) -> None:
        """An event the replay decides (a placement, an end)."""
        self.apply(ReplayEvent(0, kind, aggregate_id, name, datetime.fromtimestamp(at, UTC), body))


@dataclass(frozen=True)
class Placed:
    """A placement the log records: the agent, and the board position it was decided at
    (from its cause; None for one made with its submit before decisions were numbered)."""

    agent_id: str
    basis: int | None


class Replay:
    """The window's events in log order, and rounds where the dispatcher decided: at each
    position its placements name as their round's, and right after a submit it placed at
    once. While every decision is the log's, the log's own events carry the world on (a
    placement the replay decides as the log did is in flight until the log applies it).
    Once one differs, the replay's world is its own: it also looks after every event, as
    the dispatcher looks on every change, and tasks it placed otherwise end a service
    time later."""

    def __init__(self, world: World, tasks: dict[str, RecordedTask], window: list[Any]) -> None:
        self.world, self.tasks, self.window = world, tasks, window
        self.queue: list[tuple[float, int, str, Any]] = []  # the replay's own: ends, wakes
        self.order = itertools.count()
        self.placed_at: dict[str, float] = {}  # a task's first placement in the replay
        self.latest: dict[str, float] = {}  # its latest
        self.finished: set[str] = set()
        self.decisions: list[tuple[str, str, int | None]] = []
        self.diverged: set[str] = set()  # tasks whose course is the replay's own
        self.cursor = ""
        self.expected: dict[str, deque[Placed]] = defaultdict(deque)
        # The dispatchers' decisions in their order: (basis, number, when, the task a
        # submit's placement was for, or "" for a round's), and the submits of tasks
        # placed with their submit before decisions were numbered.
        self.steps: list[tuple[int, int, float, str]] = []
        self.after_submit: dict[int, float] = {}
        self.submits: dict[str, Any] = {}  # task -> its Submitted in the window
        self.early: set[int] = set()  # Submitted positions applied ahead, for a claim
        medians: dict[str, list[float]] = defaultdict(list)
        for task in tasks.values():
            if task.service_s is not None:
                medians[task.kind].append(task.service_s)
        self.median = {kind: statistics.median(v) for kind, v in medians.items()}
        # A placement made with its submit (every `Assigned` not caused by a round) is
        # written in the submit's append; others may be written between the two (an
        # append is atomic, not alone in the log).
        seen_steps: set[tuple[int, int | str]] = set()
        for event in window:
            if event.kind == TASK and event.name == "Submitted":
                self.submits[event.aggregate_id] = event
            elif event.kind == TASK and event.name == "Assigned":
                cause = parse_dispatch_cause(event.causation_id)
                at = event.recorded_at.timestamp()
                submit = self.submits.get(event.aggregate_id)
                if cause is None:
                    if submit is not None:  # placed with its submit, not numbered
                        self.after_submit.setdefault(submit.position, at)
                else:
                    basis, number = cause
                    # A submit's placement: its task came after the board it was
                    # decided on (the same append wrote both).
                    claim = submit is not None and submit.position > basis
                    key = (basis, number) if claim or number else (basis, "round")
                    if key not in seen_steps:
                        seen_steps.add(key)
                        self.steps.append((basis, number, at,
                                           event.aggregate_id if claim else ""))
                self.expected[event.aggregate_id].append(
                    Placed(event.data()["agent_id"], None if cause is None else cause[0]))
        self.steps.sort(key=lambda step: (step[0], step[1]))
        # One round's numbered decisions are one step: the first of each run of them.
        merged: list[tuple[int, int, float, str]] = []
        for step in self.steps:
            previous = merged[-1] if merged else None
            if previous is not None and not step[3] and not previous[3] \
                    and previous[0] == step[0] and step[1] == previous[1] + 1:
                merged[-1] = (previous[0], step[1], previous[2], "")
                continue
            merged.append(step)
        self.steps = merged

    @property
    def own_world(self) -> bool:
        return bool(self.diverged)

    def run(self) -> list[tuple[str, str, int | None]]:
        steps = deque(self.steps)
        first = self.window[0].position if self.window else 0
        while steps and steps[0][0] < first:
            steps.popleft()  # decided before the window: its state is not replayed
        for event in self.window:
            at = event.recorded_at.timestamp()
            while steps and steps[0][0] < event.position:  # a position no event of the
                self._step(steps.popleft())  # log has (a record the read skips)
            self._own_until(at)
            if event.position in self.early:
                continue  # applied ahead, for the placement made with it
            self._recorded(event, at)
            if event.position in self.after_submit:  # placed with its submit, unnumbered
                self._round(self.after_submit[event.position], None)
            looked = False
            while steps and steps[0][0] == event.position:
                self._step(steps.popleft())
                looked = True
            if self.own_world and not looked and event.position not in self.after_submit:
                self._round(at, event.position)
        while steps:
            self._step(steps.popleft())
        self._own_until(float("inf"))
        return self.decisions

    def _step(self, step: tuple[int, int, float, str]) -> None:
        """One of the dispatchers' decisions: a round, or a placement made with a submit
        (its task's Submitted applied ahead: the same append wrote them)."""
        basis, _, at, task_id = step
        if not task_id:
            self._round(at, basis)
            return
        submit = self.submits[task_id]
        if submit.position not in self.early:
            self.early.add(submit.position)
            self._recorded(submit, submit.recorded_at.timestamp())
        self._claim(task_id, at, basis)

    def _claim(self, task_id: str, now: float, basis: int) -> None:
        """As the dispatcher's claim: the task alone, if its key's limits allow."""
        world = self.world
        view = world.board.get(task_id)
        if view is None or view.is_open or task_id in world.in_flight:
            return
        key = view.concurrency_key
        if key and world.gate.holds(key, now) is not None:
            return
        plan, _ = world.plan()
        agent = plan.choose(view.requires, view.kind, self.cursor, view.selector, view.prefer)
        if agent is not None:
            self.cursor = agent.agent_id
            self._placed(task_id, agent, now, basis, key)

    def _own_until(self, until: float) -> None:
        """The replay's own events before `until`, each followed by a look."""
        while self.queue and self.queue[0][0] < until:
            at, _, what, item = heapq.heappop(self.queue)
            if what == "end":
                self._end(item, at)
            self._round(at, None)

    def _recorded(self, event: Any, at: float) -> None:
        world = self.world
        task_id = event.aggregate_id
        if event.kind != TASK:
            gone = event.kind == AGENT and event.name in GONE
            held = world.board.open_tasks_of(task_id) if gone else []
            world.apply(event)
            for view in held:  # no failover of the replay's own placements: they wait
                if view.task_id in self.diverged and view.task_id not in self.finished:
                    world.make(TASK, view.task_id, "Requeued", at,
                               {"from_agent": task_id, "reason": "agent_gone"})
            return
        if event.name == "Assigned" and task_id not in world.in_flight:
            return  # a dispatcher's decision the replay's rounds did not make as the log
        if task_id in self.diverged and event.name != "Cancelled":
            return  # its course is the replay's own now
        found = world.board.get(task_id)
        if event.name == "Cancelled" and (found is None or found.status in FINISHED):
            return
        world.apply(event)
        if event.name in ENDS:
            self.finished.add(task_id)

    def _round(self, now: float, basis: int | None) -> None:
        world = self.world
        while len(world.board.waiting):
            walk = world.board.round(now)
            try:
                decided = decide(walk, world.board.tasks, world.plan, world.gate, now,
                                 self.cursor, lambda task_id: task_id in world.in_flight)
            finally:
                walk.close()
            self.cursor = decided.cursor
            for decision in decided.decisions:
                self._placed(decision.view.task_id, decision.agent, now, basis,
                             decision.view.concurrency_key)
            if decided.token_at is not None and decided.token_at > now:
                heapq.heappush(self.queue, (decided.token_at, next(self.order), "wake", None))
            if not decided.more:
                return

    def _placed(self, task_id: str, agent: Candidate, now: float, basis: int | None,
                key: str) -> None:
        world = self.world
        expected = self.expected.get(task_id)
        head = expected[0] if expected else None
        self.decisions.append((task_id, agent.agent_id, basis))
        if task_id not in self.placed_at:
            self.placed_at[task_id] = now
        self.latest[task_id] = now
        if expected and head is not None and task_id not in self.diverged \
                and head.agent_id == agent.agent_id and head.basis == basis:
            expected.popleft()  # the log's own: in flight until the log applies it
            world.in_flight[task_id] = (agent.agent_id, key)
            return
        self.diverged.add(task_id)
        view = world.board.get(task_id)
        world.make(TASK, task_id, "Assigned", now,
                   {"agent_id": agent.agent_id, "incarnation": agent.incarnation,
                    "attempt": (view.attempt if view is not None else 0) + 1,
                    "token": f"w{next(self.order)}", "strategy": world.strategy.value,
                    "considered": []})
        task = self.tasks.get(task_id)
        service = None if task is None else (
            task.service_s if task.service_s is not None else self.median.get(task.kind))
        if service is not None and (task is None or task.cancelled_at is None):
            heapq.heappush(self.queue, (now + service, next(self.order), "end",
                                        (task_id, now)))

    def _end(self, item: tuple[str, float], now: float) -> None:
        task_id, placed_at = item
        running = self.world.board.get(task_id)
        if running is not None and running.is_open and self.latest.get(task_id) == placed_at:
            self.world.make(TASK, task_id, "Completed", now,
                            {"token": running.token, "agent_id": running.agent_id,
                             "result": None, "attempt": running.attempt})
            self.finished.add(task_id)


def basis_of(causation_id: str | None) -> int | None:
    """The board position a dispatcher's decision was made at, from its placement's
    cause; None for a placement made with its submit before decisions were numbered."""
    cause = parse_dispatch_cause(causation_id)
    return None if cause is None else cause[0]
