"""CPU per placement decision of flow control, in-process on the pure code: the
dispatcher's `_plan` over a TaskBoard holding many waiting tasks across many concurrency
keys, most of them at their limit (their lanes set aside in every round).

No server: the board, the agents and the limits are fed made-up log events, and the
dispatcher's writes (coroutines of `TaskService.assign`) are dropped unrun; what each
placement would have written is applied to the board by hand, outside the timed part.

The steady state measured: the fleet has room for one task (a completion freed it), so
each round is one decision: walk the queue in serving order past the lanes whose keys
are at their limit, until a task that may be placed is found, and choose its agent.
After each decision the placed task's `Assigned` is applied, and the oldest open task of
the same key completes (its agent's slot and the key's slot free again), so the keys at
their limit stay the same ones from decision to decision.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import CoroutineType
from typing import Any, cast

from bench.harness import percentile
from domain.limits.limit import LimitScope, limit_id
from domain.tasks.placement import Strategy
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.limits import Limits
from projections.position import Position
from services.commands.tasks import TaskService
from services.leader.dispatcher import Dispatcher
from services.leader.fleet import Fleet
from services.metrics import Metrics

CONCURRENCY = 2  # every key's limit of tasks assigned or running
AGENT_CAPACITY = 19
WARM_UP = 200  # decisions made before any is timed (at most as many as are timed)


@dataclass(frozen=True)
class Event:
    """A log event as the projections read it (projections/log_event.py)."""

    position: int
    kind: str
    aggregate_id: str
    name: str
    body: dict[str, Any]
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def event_id(self) -> str:
        return f"e{self.position}"

    def data(self) -> dict[str, Any]:
        return self.body


class Board:
    """The projections a leader places from, fed made-up events."""

    def __init__(self) -> None:
        self.limits = Limits(0, 0)
        self.board = TaskBoard()
        self.board.follow(self.limits)
        self.agents = AgentHealth()
        self.position = Position()
        self.fleet = Fleet(self.agents, self.board, self.position)
        self._next = 0

    def apply(self, aggregate: str, aggregate_id: str, name: str, **body: Any) -> None:
        self._next += 1
        event = Event(self._next, aggregate, aggregate_id, name, body)
        for projection in (self.limits, self.agents, self.board):
            projection.apply(event)
        self.position.advance(self._next)

    def limit(self, key: str, **values: Any) -> None:
        limit = limit_id(LimitScope.KEY, key)
        self.apply("limit", limit, "Set", limit=limit, values=values)

    def agent(self, agent_id: str, capacity: int) -> None:
        self.apply("agent", agent_id, "Registered", capabilities=["cpu"], capacity=capacity,
                   labels={}, services=[], incarnation=1)

    def submit(self, task_id: str, submitter: str, key: str) -> None:
        self.apply("task", task_id, "Submitted", kind="k", payload=None, requires=[],
                   priority=0, max_attempts=3, timeout_s=600.0, submitted_by=submitter,
                   concurrency_key=key)

    def assign(self, task_id: str, agent_id: str) -> None:
        self.apply("task", task_id, "Assigned", agent_id=agent_id, incarnation=1, attempt=1,
                   token="t")

    def complete(self, task_id: str) -> None:
        self.apply("task", task_id, "Completed", result=None)


def placement_cpu(waiting: int, keys: int, submitters: int, at_limit: float,
                  decisions: int, limited: bool = True) -> dict[str, float]:
    """CPU milliseconds per placement decision (p50, p99, max) over `decisions` rounds,
    with `waiting` tasks across `keys` keys and `submitters` fairness keys, the share
    `at_limit` of the keys at their concurrency limit. Unlimited (`limited` False), the
    same board with no limit set: the queue's own cost."""
    state = Board()
    if limited:
        for k in range(keys):
            # A rate too, high enough never to hold: evaluated on every decision.
            state.limit(f"key-{k}", concurrency=CONCURRENCY, rate_per_s=1e6, burst=1000)
    # Keys at their limit hold CONCURRENCY open tasks, one key none, the rest one; the
    # fleet's capacity is those open tasks and one slot more.
    full = int(keys * at_limit)
    open_per_key = [CONCURRENCY] * full + [1] * (keys - full - 1) + [0]
    opened = sum(open_per_key)
    agents = (opened + 1 + AGENT_CAPACITY - 1) // AGENT_CAPACITY
    spare = agents * AGENT_CAPACITY - opened - 1  # the last agent is that much smaller
    for a in range(agents):
        state.agent(f"a{a}", AGENT_CAPACITY - (spare if a == agents - 1 else 0))
    open_of_key: dict[str, deque[str]] = {f"key-{k}": deque() for k in range(keys)}
    slot = 0
    for k, count in enumerate(open_per_key):
        for n in range(count):
            task_id = f"open-{k}-{n}"
            state.submit(task_id, "s0", f"key-{k}")
            state.assign(task_id, f"a{slot // AGENT_CAPACITY}")
            open_of_key[f"key-{k}"].append(task_id)
            slot += 1
    # The waiting tasks, submitted round-robin over the keys, each submitter in turn
    # (every submitter has tasks of every key when there are fewer submitters than keys).
    per_submitter = max(1, keys // submitters) if submitters <= keys else 1
    for i in range(waiting):
        state.submit(f"w{i}", f"s{(i // per_submitter) % submitters}", f"key-{i % keys}")
    dispatcher = Dispatcher(state.board, state.fleet, cast(TaskService, None),
                            Strategy.LEAST_LOADED, 600.0, Metrics(), limits=state.limits)
    assert state.fleet.plan(Strategy.LEAST_LOADED) is not None and state.fleet.free == 1
    # What was built lives on: out of the cyclic collector's reach, as the orchestrator
    # freezes what its rebuild built (services/app.py); else a full collection walking
    # the 100,000 tasks (75 ms) lands in whichever decision it interrupts. The young
    # generations still collect what the decisions themselves make.
    gc.collect()
    gc.freeze()
    try:
        return _decide(state, dispatcher, open_of_key, decisions)
    finally:
        gc.unfreeze()


def _decide(state: Board, dispatcher: Dispatcher, open_of_key: dict[str, deque[str]],
            decisions: int) -> dict[str, float]:
    now = time.time()
    cpu: list[float] = []
    walked: list[int] = []
    warm_up = min(WARM_UP, decisions)
    for number in range(warm_up + decisions):
        writes: list[Awaitable[None]] = []
        blocked_before = _throttled(dispatcher)
        started = time.process_time()
        walk = state.board.round(now)
        try:
            dispatcher._plan(walk, now, writes)
        finally:
            walk.close()
        spent = time.process_time() - started
        if number >= warm_up:
            cpu.append(spent * 1000)
            walked.append(int(_throttled(dispatcher) - blocked_before))
        if len(writes) != 1:
            raise RuntimeError(f"a round placed {len(writes)} tasks, not one")
        task_id = _task_of(writes[0])
        cast(Coroutine[Any, Any, None], writes[0]).close()  # the write is not made
        view = state.board.tasks[task_id]
        agent_id = state.fleet._in_flight[task_id][0]
        key = view.concurrency_key
        state.fleet.release(task_id)
        state.assign(task_id, agent_id)
        open_of_key[key].append(task_id)
        state.complete(open_of_key[key].popleft())
    return {
        "p50": percentile(cpu, 0.50), "p99": percentile(cpu, 0.99), "max": max(cpu),
        "lanes_set_aside_p50": percentile([float(w) for w in walked], 0.50),
        # Keys at their limit out of the walks at the end (Round.park).
        "keys_parked": float(len(state.board.waiting.parked)),
    }


def _throttled(dispatcher: Dispatcher) -> float:
    """Lanes set aside so far (the dispatcher counts each one it meets in a round)."""
    flow = dispatcher.metrics.flow
    return sum(sample.value for metric in flow.throttled.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


def _task_of(write: Awaitable[None]) -> str:
    """The task a dropped placement was for (its coroutine's `view` argument)."""
    frame = cast(CoroutineType, write).cr_frame
    assert frame is not None
    return str(frame.f_locals["view"].task_id)
