"""The dispatcher: places queued tasks as soon as capacity appears, and moves assignments
that were not accepted in time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from domain.errors import CommandRefused
from domain.placement import Candidate, Strategy, choose
from projections.agents import AgentHealth
from projections.deadlines import ACCEPTING, step_of
from projections.position import Position
from projections.tasks import TaskBoard, TaskView
from services.commands.tasks import TaskService
from services.metrics import Metrics

log = logging.getLogger(__name__)

_UNWRITTEN = 2**63  # the position of a placement whose append has not returned yet
# Placements written at once per round: appends overlap, each still checked by OCC.
MAX_CONCURRENT_PLACEMENTS = 64


class Fleet:
    """Placement's view of the agents: the projections plus assignments still in flight.

    An assignment this process made counts against its agent at once, before the
    projection has applied it, so a burst of placements cannot overfill an agent.
    """

    def __init__(self, agents: AgentHealth, board: TaskBoard, position: Position) -> None:
        self.agents = agents
        self.board = board
        self.position = position
        self._in_flight: dict[str, tuple[str, int]] = {}  # task id -> (agent id, position)
        # round_robin's cursor, the agent chosen last: placements and moves share it.
        self.cursor = ""

    def note(self, task_id: str, agent_id: str, position: int) -> None:
        self._in_flight[task_id] = (agent_id, position)

    def reserve(self, task_id: str, agent_id: str) -> None:
        """Count a placement being written against its agent until it is settled."""
        self._in_flight[task_id] = (agent_id, _UNWRITTEN)

    def release(self, task_id: str) -> None:
        self._in_flight.pop(task_id, None)

    def forget_unwritten(self) -> None:
        """Drop reservations whose writes will never report back: those of a leadership
        term that ended while they were being written."""
        for task_id in [t for t, (_, p) in self._in_flight.items() if p == _UNWRITTEN]:
            del self._in_flight[task_id]

    def in_flight(self, task_id: str) -> bool:
        self._settle()
        return task_id in self._in_flight

    def reserved(self, task_id: str) -> bool:
        """`in_flight` as of the last settling (snapshot() settles): for a loop that
        does not await, where settling per task would cost the in-flight count each."""
        return task_id in self._in_flight

    def _settle(self) -> None:
        applied = self.position.value
        for task_id in [t for t, (_, p) in self._in_flight.items() if p <= applied]:
            del self._in_flight[task_id]

    def snapshot(self) -> dict[str, Candidate]:
        """The candidates by id: a plan that placements made in one go update."""
        return {c.agent_id: c for c in self.candidates()}

    def candidates(self) -> list[Candidate]:
        self._settle()
        extra: dict[str, int] = {}
        for agent_id, _ in self._in_flight.values():
            extra[agent_id] = extra.get(agent_id, 0) + 1
        return [
            Candidate(v.agent_id, v.incarnation, frozenset(v.capabilities), v.capacity,
                      self.board.load(v.agent_id) + extra.get(v.agent_id, 0), v.status,
                      frozenset(v.kinds))
            for v in self.agents.agents.values() if v.status == "healthy"
        ]


class Dispatcher:
    def __init__(self, board: TaskBoard, fleet: Fleet, tasks: TaskService, strategy: Strategy,
                 accept_timeout: float, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.board = board
        self.fleet = fleet
        self.tasks = tasks
        self.strategy = strategy
        self.accept_timeout = accept_timeout
        self.metrics = metrics
        self.clock = clock
        self.wake = asyncio.Event()

    def poke(self) -> None:
        """Something changed (a task, a result, an agent): look again."""
        self.wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self._next_timer())
            self.wake.clear()
            try:
                await self.round()
            except Exception:
                log.exception("dispatch round failed")
                await asyncio.sleep(0.1)

    def _deadline(self, view: TaskView) -> float | None:
        """When an open task's current step runs out: accepting it, or running it."""
        step = step_of(view)
        if step is None:
            return None
        which, key = step
        return key + self.accept_timeout if which == ACCEPTING else key

    def _next_timer(self) -> float:
        """Seconds until a retry falls due or an open task's deadline passes."""
        now = self.clock()
        times = [self.board.next_retry_at() or now + 1.0]
        due = self.board.deadlines.next_due(self.board.tasks, self.accept_timeout)
        if due is not None:
            times.append(due)
        return max(0.005, min(min(times) - now, 1.0))

    async def round(self) -> None:
        """Decide placements one by one (each sees the loads the previous ones add), then
        write them concurrently."""
        now = self.clock()
        await self._expire(now)
        due = self.board.due(now)
        first = next(due, None)
        if first is None:
            return  # registrations poke too: no O(agents) plan when nothing waits
        fleet = self.fleet.snapshot()
        free = sum(max(0, c.free) for c in fleet.values())
        writes: list[Awaitable[None]] = []
        for view in itertools.chain((first,), due):
            if free <= 0:
                break  # the fleet is full: the rest of the queue waits for capacity
            if len(writes) >= MAX_CONCURRENT_PLACEMENTS:
                self.poke()  # more to place: another round right after this one
                break
            if self.fleet.reserved(view.task_id):
                continue
            seen = list(fleet.values())
            agent = choose(seen, view.requires, self.strategy, self.fleet.cursor,
                           kind=view.kind)
            if agent is None:
                continue  # a later task may need less; this one waits for capacity
            self.fleet.cursor = agent.agent_id
            self.fleet.reserve(view.task_id, agent.agent_id)
            fleet[agent.agent_id] = replace(agent, load=agent.load + 1)
            free -= 1
            writes.append(self._place(view, agent, seen))
        await asyncio.gather(*writes)

    async def _place(self, view: TaskView, agent: Candidate, seen: list[Candidate]) -> None:
        try:
            outcome = await self.tasks.assign(view.task_id, agent, self.strategy, seen,
                                              causation_id=f"dispatch-{view.position}")
        except CommandRefused as refused:
            log.debug("placement refused task=%s: %s", view.task_id, refused.message)
            self.fleet.release(view.task_id)
            return
        except BaseException:
            # Cancelled mid-append (leadership lost): the log now says whether it was
            # written. A reservation kept would hide the task from every later round.
            self.fleet.release(view.task_id)
            raise
        if outcome.position is None:
            self.fleet.release(view.task_id)
            return
        self.fleet.note(view.task_id, agent.agent_id, outcome.position)
        self.metrics.decisions.labels("assigned").inc()

    async def _expire(self, now: float) -> None:
        """Unaccepted assignments move elsewhere; tasks running past timeout_s fail."""
        for view in self.board.deadlines.overdue(self.board.tasks, now, self.accept_timeout):
            deadline = self._deadline(view)  # again: an earlier move may have changed it
            if (deadline is None or now < deadline or view.agent_id is None
                    or self.fleet.in_flight(view.task_id)):
                continue
            if view.status == "assigned":
                await move(self.tasks, self.fleet, view, view.agent_id, self.strategy,
                           reason="accept_timeout", causation_id=f"timeout-{view.position}",
                           unaccepted_token=view.token)
                continue
            try:
                outcome = await self.tasks.time_out(view.task_id, view.token or "",
                                                    causation_id=f"timeout-{view.position}")
            except CommandRefused as refused:
                log.debug("time-out refused task=%s: %s", view.task_id, refused.message)
                continue
            if outcome.position is not None:
                self.fleet.note(view.task_id, "", outcome.position)


async def move(tasks: TaskService, fleet: Fleet, view: TaskView, from_agent: str,
               strategy: Strategy, reason: str, causation_id: str | None,
               unaccepted_token: str | None = None,
               plan: dict[str, Candidate] | None = None) -> str | None:
    """Give an open task to another agent, or back to the queue if none can take it;
    returns the agent it was delivered to, if it was.

    Moves made together share one `plan` of the fleet, so that each sees the loads the
    others add without rebuilding the candidates for every task.
    """
    plan = fleet.snapshot() if plan is None else plan
    candidates = list(plan.values())
    agent = choose(candidates, view.requires, strategy, fleet.cursor,
                   exclude=frozenset({from_agent}), kind=view.kind)
    if agent is not None and agent.agent_id == from_agent:
        agent = None
    if agent is not None:
        fleet.cursor = agent.agent_id
    # Reserved before the first await, so concurrent moves see each other's choices.
    fleet.reserve(view.task_id, agent.agent_id if agent is not None else "")
    if agent is not None:
        plan[agent.agent_id] = replace(agent, load=agent.load + 1)
    try:
        if agent is not None:
            outcome = await tasks.reassign(view.task_id, from_agent, agent, reason, strategy,
                                           candidates, causation_id, unaccepted_token)
        else:
            outcome = await tasks.requeue(view.task_id, from_agent, reason, causation_id,
                                          unaccepted_token)
    except CommandRefused as refused:
        log.debug("move refused task=%s: %s", view.task_id, refused.message)
        fleet.release(view.task_id)
        return None
    except BaseException:
        fleet.release(view.task_id)  # cancelled mid-append: see Dispatcher._place
        raise
    if outcome.position is None:
        fleet.release(view.task_id)
        return None
    fleet.note(view.task_id, agent.agent_id if agent is not None else "", outcome.position)
    return agent.agent_id if agent is not None else None
