"""Leader duty: each schedule's due slot submits its task, through the same submit a
client sends, and the decision is recorded on the schedule.

Once per slot, whoever leads: the task's id is the schedule's name and the slot
(domain.schedules.schedule.firing_task_id), so a submit retried by a leader after another is the
same submit, answered without a second task; and the schedule records each slot once
(`Fired` or `Skipped`, refused for a slot already decided). The submit comes first: a
leader that dies between the two leaves the task, and the next one submits it again (no
change) and records the firing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from domain.errors import CommandRefused, ErrorCode
from domain.schedules.schedule import FIRE, Decision, Schedule, firing_cause, firing_task_id
from domain.tasks.commands import SubmitTask
from domain.tasks.task import TERMINAL
from infra.caller import ORCHESTRATOR, current_identity
from projections.board.tasks import TaskBoard
from projections.schedules import ScheduleBook
from services.commands.schedules import ScheduleService
from services.commands.tasks import TaskService
from services.execute import execute
from services.metrics import Metrics

log = logging.getLogger(__name__)

MAX_WAIT_S = 30.0  # a round at least this often, whatever the schedules say
RETRY_S = 1.0  # after a firing that failed (the log, or a refused submit)
# Refusals of a slot's submit that another try would meet again: the slot is skipped.
_FOR_GOOD = frozenset({ErrorCode.INVALID_REQUEST, ErrorCode.NOT_FOUND,
                       ErrorCode.UNAUTHORIZED, ErrorCode.PAYLOAD_TOO_LARGE})


class ScheduleFiring:
    def __init__(self, book: ScheduleBook, schedules: ScheduleService, tasks: TaskService,
                 board: TaskBoard, metrics: Metrics,
                 clock: Callable[[], float] = time.time,
                 revoked: Callable[[str], bool] = lambda identity: False) -> None:
        self.book = book
        self.schedules = schedules
        self.tasks = tasks
        self.board = board
        self.metrics = metrics
        self.clock = clock
        # Whether an identity is revoked: its schedules are paused, not fired.
        self.revoked = revoked
        self._wake = asyncio.Event()
        book.on_change = self._wake.set  # a schedule made, changed or decided

    async def run(self) -> None:
        current_identity.set(ORCHESTRATOR)  # the firings are the orchestrator's decisions
        while True:
            self._wake.clear()
            wait = await self.round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def round(self) -> float:
        """Act on every schedule due now; seconds until the next one is due."""
        now = self.clock()
        soonest = MAX_WAIT_S
        for view in self.book.live():
            due = view.next_due()
            if due is not None and due <= now:
                try:
                    due = await self.act(view.name, now)
                except Exception as exc:  # the next round tries again: never stop leading
                    log.warning("schedule not fired schedule=%s: %r", view.name, exc)
                    due = now + RETRY_S
            if due is not None:
                soonest = min(soonest, due - now)
        return max(0.0, soonest)

    async def act(self, name: str, now: float) -> float | None:
        """Decide the slot due at `now` (read from the log: no command elsewhere is
        missed); the next slot, as the schedule then stands."""
        schedule, _ = await self.schedules.repository.get(name, fresh=True)
        if schedule is None:
            return None
        decision = schedule.decide(now, self._open(schedule.last_task_id))
        if decision is None:  # paused or deleted: woken when that changes
            return None if schedule.paused else schedule.next_due()
        if self.revoked(schedule.owner):
            await self._pause(name, f"its owner {schedule.owner} is revoked")
            return None
        if decision.action == FIRE:
            task_id = firing_task_id(name, decision.due.due)
            taken = await self._submit(schedule, task_id, decision)
            if taken:
                decision = Decision("skip", decision.due, taken)
        return await self._record(name, decision, now)

    def _open(self, task_id: str | None) -> bool:
        if task_id is None:
            return False
        view = self.board.get(task_id)
        if view is None:  # not applied yet, or finished and forgotten: this cache knows
            return self.tasks.repository.cached(task_id)
        return view.status not in TERMINAL

    async def _submit(self, schedule: Schedule, task_id: str, decision: Decision) -> str:
        """Submit the slot's task as its owner's; "" when it is there (now or already),
        or why it cannot be (its id taken by another's task)."""
        template = schedule.definition["task"]
        owner = current_identity.set(schedule.owner)
        try:
            reply = await self.tasks.submit(
                SubmitTask(task_id=task_id, **template),
                firing_cause(schedule.id, decision.due.due))
        except CommandRefused as refused:
            if refused.code in _FOR_GOOD:
                return f"submit refused: {refused.code}: {refused.message}"
            if refused.code != ErrorCode.CONFLICT:
                raise
            task, _ = await self.tasks.repository.get(task_id, fresh=True)
            if task is not None and task.submitted_by == schedule.owner:
                return ""  # submitted before, with the definition of then
            return f"task id {task_id} is taken by another's task"
        finally:
            current_identity.reset(owner)
        if not reply.get("ok"):
            raise RuntimeError(f"submit refused: {reply.get('error')}")
        return ""

    async def _pause(self, name: str, reason: str) -> None:
        def decide(schedule: Schedule | None) -> Schedule | None:
            if schedule is None or not schedule.pause(ORCHESTRATOR, reason):
                return None
            return schedule

        await execute(self.schedules.repository, name, decide)
        log.warning("schedule paused schedule=%s reason=%s", name, reason)

    async def _record(self, name: str, decision: Decision, now: float) -> float | None:
        task_id = firing_task_id(name, decision.due.due)

        def decide(schedule: Schedule | None) -> Schedule | None:
            if schedule is None:
                return None
            if decision.action == FIRE:
                schedule.fire(decision.due, task_id)
            else:
                schedule.skip(decision.due, decision.reason)
            return schedule

        try:
            outcome = await execute(self.schedules.repository, name, decide,
                                    firing_cause(name, decision.due.due))
        except CommandRefused as refused:  # decided by another leader, or paused since
            log.info("schedule slot not recorded schedule=%s due=%d: %s", name,
                     decision.due.due, refused.message)
            return now + RETRY_S
        outcome_name = "fired" if decision.action == FIRE else "skipped"
        self.metrics.schedule_firings.labels(outcome_name).inc()
        log.info("schedule %s schedule=%s due=%d task=%s missed=%d%s", outcome_name, name,
                 decision.due.due, task_id, decision.due.missed,
                 f" reason={decision.reason}" if decision.reason else "")
        schedule = outcome.aggregate
        return schedule.next_due() if schedule is not None else None
