"""The dispatcher: places queued tasks as soon as capacity appears, and moves assignments
that were not accepted in time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from domain.errors import CommandRefused
from domain.tasks.commands import SubmitTask
from domain.tasks.placement import Candidate, Strategy
from domain.tasks.plan import Plan
from domain.tasks.task import NO_PROGRESS, TaskStatus
from projections.board.deadlines import ACCEPTING, step_of
from projections.board.key_gate import KeyGate
from projections.board.placing import decide, dispatch_cause
from projections.board.tasks import HeldTask, TaskBoard, TaskView
from projections.board.waiting import Round
from projections.limits import Limits
from services.commands.tasks import TaskService
from services.leader.fleet import Fleet
from services.leader.unresponsive import Unresponsiveness
from services.metrics import Metrics

log = logging.getLogger(__name__)



@dataclass
class Placement:
    """An agent set aside for a new task (TaskService.submit's Claim)."""

    fleet: Fleet
    task_id: str
    agent: Candidate
    seen: list[Candidate]
    strategy: str
    metrics: Metrics
    cause: str  # the decision's: its board position and number (placing.dispatch_cause)

    def settle(self, position: int) -> None:
        self.fleet.note(self.task_id, self.agent.agent_id, position)
        self.metrics.decisions.labels("assigned").inc()

    def release(self) -> None:
        self.fleet.release(self.task_id)


class Dispatcher:
    def __init__(self, board: TaskBoard, fleet: Fleet, tasks: TaskService, strategy: Strategy,
                 accept_timeout: float, metrics: Metrics,
                 clock: Callable[[], float] = time.time, limits: Limits | None = None,
                 catch_up: Callable[[], Awaitable[None]] | None = None,
                 unresponsive: Unresponsiveness | None = None) -> None:
        self.board = board
        # Agents that leave their assignments unaccepted: out of placement for a while.
        self.unresponsive = unresponsive
        # Waited for before a term's first decision: the projections have applied what
        # the log held then, so what the last leader wrote (a key's placements, say)
        # counts before anything is placed past it.
        self.catch_up = catch_up
        self.ready = False  # caught up, in this term
        # Concurrency and rate limits of the tasks' keys (domain/limits/limit.py).
        self.gate = KeyGate(limits or Limits(), board.flow,
                            lambda key: fleet.keys_in_flight.get(key, 0))
        self.fleet = fleet
        self.tasks = tasks
        self.strategy = strategy
        self.accept_timeout = accept_timeout
        self.metrics = metrics
        self.clock = clock
        self.wake = asyncio.Event()
        self._token_at: float | None = None  # when a key held for its rate next may place
        # (board position, tasks waiting) when a round looked at every waiting task and
        # could place none: while both hold, a new task goes before none that can be
        # placed, so a submit may place it at once (the queue keeps its order).
        self._stuck_at: tuple[int, int] | None = None
        # Each decision's number in this process: a replay decides in the same order.
        self._decided = itertools.count(1)

    def claim(self, task_id: str, cmd: SubmitTask) -> Placement | None:
        """An agent for a task being submitted, set aside (counted against it) until the
        submit's append settles or releases it: only when no task waits before this one
        (the queue keeps its order), its key's limits allow and an agent has room."""
        if not self.ready or (len(self.board.waiting) and not self._queue_stuck()):
            return None
        key = cmd.concurrency_key or ""
        if key and self.gate.holds(key, self.clock()) is not None:
            return None
        chosen = self._set_aside(self.fleet.plan(self.strategy), task_id, list(cmd.requires),
                                 cmd.kind, _pairs(cmd.selector), _pairs(cmd.prefer), key)
        if chosen is None:
            return None
        agent, seen = chosen
        return Placement(self.fleet, task_id, agent, seen, self.strategy, self.metrics,
                         dispatch_cause(self.board.position, next(self._decided)))

    def _queue_stuck(self) -> bool:
        """Nothing waiting can be placed now: the last round looked at all of it, at this
        position, placed nothing, and no retry or token has fallen due since."""
        board, now = self.board, self.clock()
        if self._stuck_at != (board.position, len(board.waiting)):
            return False
        due = [at for at in (self._token_at, board.next_retry_at()) if at is not None]
        return all(now < at for at in due)

    def _set_aside(self, plan: Plan, task_id: str, requires: list[str], kind: str,
                   selector: tuple[tuple[str, str], ...] = (),
                   prefer: tuple[tuple[str, str], ...] = (),
                   key: str = "") -> tuple[Candidate, list[Candidate]] | None:
        """The agent the plan gives the task, counted against it from now on, with the
        candidates the placement records it looked at (the least loaded, before it)."""
        agent = plan.choose(requires, kind, self.fleet.cursor, selector, prefer)
        if agent is None:
            return None
        seen = plan.considered()
        self.fleet.cursor = agent.agent_id
        self.fleet.reserve(task_id, agent.agent_id, key)
        plan.take(agent.agent_id)
        return agent, seen

    def poke(self) -> None:
        """Something changed (a task, a result, an agent): look again."""
        self.wake.set()

    async def run(self) -> None:
        self.ready = False
        if self.catch_up is not None:
            await self.catch_up()
        self.board.waiting.unpark_all()  # a new term looks at every key again
        self.ready = True
        try:
            await self._run()
        finally:
            self.ready = False

    async def _run(self) -> None:
        while True:
            # Not wait_for: on Python 3.11 it swallows a cancel that arrives while the
            # event is set, and a dispatcher told to stop (leadership lost) went on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_timer()):
                    await self.wake.wait()
            self.wake.clear()
            try:
                await self.round()
            except Exception:
                log.exception("dispatch round failed")
                await asyncio.sleep(0.1)

    def _deadline(self, view: HeldTask) -> float | None:
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
        if self._token_at is not None:
            times.append(self._token_at)
        due = self.board.deadlines.next_due(self.board.tasks, self.accept_timeout)
        if due is not None:
            times.append(due)
        readmit_at = self.unresponsive.next_due() if self.unresponsive is not None else None
        if readmit_at is not None:
            times.append(readmit_at)
        return max(0.005, min(min(times) - now, 1.0))

    async def round(self) -> None:
        """Decide placements one by one (each sees the loads the previous ones add), then
        write them concurrently."""
        now = self.clock()
        self._token_at = None
        await self._expire(now)
        if self.unresponsive is not None:
            await self._move_quiet_runs(now)
            await self.unresponsive.review(now)
        if not len(self.board.waiting):
            return  # registrations poke too: no O(agents) plan when nothing waits
        walk = self.board.round(now)
        writes: list[Awaitable[None]] = []
        try:
            self._plan(walk, now, writes)
        finally:
            walk.close()  # the queue is whole again before anything else reads it
        await asyncio.gather(*writes)

    def _plan(self, walk: Round, now: float, writes: list[Awaitable[None]]) -> None:
        """Decide the round (projections/board/placing.py), set each placement aside
        against its agent and key, and start writing it."""
        fleet = self.fleet
        basis = (self.board.position, len(self.board.waiting))
        decided = decide(walk, self.board.tasks, lambda: (fleet.plan(self.strategy),
                                                          fleet.free),
                         self.gate, now, fleet.cursor, fleet.reserved)
        fleet.cursor = decided.cursor
        self._token_at = decided.token_at  # look again when the next token comes
        self._stuck_at = basis if decided.looked_at_all and not decided.decisions else None
        for key, hold in decided.holds:
            self.metrics.flow.throttled.labels(self.metrics.flow.label(key), hold.code).inc()
        for decision in decided.decisions:
            view = decision.view
            fleet.reserve(view.task_id, decision.agent.agent_id, view.concurrency_key)
            writes.append(self._place(view, decision.agent, decision.seen,
                                      dispatch_cause(basis[0], next(self._decided))))
        if decided.more:
            self.poke()  # more to place: another round right after this one

    async def _place(self, view: TaskView, agent: Candidate, seen: list[Candidate],
                     cause: str) -> None:
        try:
            # Caused by the decision: the log position its board stood at and its number,
            # so that a replay decides at the same point, in the same order (what-if).
            outcome = await self.tasks.assign(view.task_id, agent, self.strategy, seen,
                                              causation_id=cause)
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
            if view.status == TaskStatus.ASSIGNED:
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


    async def _move_quiet_runs(self, now: float) -> None:
        """Running tasks of agents that promised progress and went quiet: moved as an
        unaccepted assignment is, counted as a failed attempt, and revoked."""
        assert self.unresponsive is not None
        for view in list(self.unresponsive.quiet_runs(now)):
            if view.agent_id is None or self.fleet.in_flight(view.task_id):
                continue
            await move(self.tasks, self.fleet, view, view.agent_id, self.strategy,
                       reason=NO_PROGRESS, causation_id=f"quiet-{view.position}")


async def move(tasks: TaskService, fleet: Fleet, view: HeldTask, from_agent: str,
               strategy: Strategy, reason: str, causation_id: str | None,
               unaccepted_token: str | None = None) -> str | None:
    """Give an open task to another agent, or back to the queue if none can take it;
    returns the agent it was delivered to, if it was.

    From the fleet's kept plan, as placements are: moves made together (a mass failure)
    each see the loads the others add, and a move costs its task, not the fleet (choosing
    from a copy of every candidate took a quarter of a millisecond per move with 1,000
    agents, and a death's moves waited for all of them).
    """
    plan = fleet.plan(strategy)
    agent = _choose_except(plan, view, fleet.cursor, from_agent)
    seen = plan.considered()
    if agent is not None:
        fleet.cursor = agent.agent_id
        plan.take(agent.agent_id)
    # Reserved before the first await, so concurrent moves see each other's choices. A
    # move keeps its task's key count (it was open, and stays open or waits).
    fleet.reserve(view.task_id, agent.agent_id if agent is not None else "")
    try:
        if agent is not None:
            outcome = await tasks.reassign(view.task_id, from_agent, agent, reason, strategy,
                                           seen, causation_id, unaccepted_token)
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


def _choose_except(plan: Plan, view: HeldTask, cursor: str,
                   excluded: str) -> Candidate | None:
    """The plan's choice among every agent but `excluded` (the one the task leaves: it
    may be healthy again, re-registered, or merely slow to accept)."""
    agent = plan.choose(view.requires, view.kind, cursor, view.selector, view.prefer)
    if agent is None or agent.agent_id != excluded:
        return agent
    plan.update(excluded, None)  # set aside for this choice only
    try:
        return plan.choose(view.requires, view.kind, cursor, view.selector, view.prefer)
    finally:
        plan.update(excluded, agent)


def _pairs(labels: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items())) if labels else ()
