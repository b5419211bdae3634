"""Schedule commands: create (or replace), pause, resume, delete, list; and the follower
that keeps the schedule projection (projections/schedules.py) up with the log."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from domain.errors import CommandRefused, ErrorCode
from domain.schedules.commands import CreateSchedule, ListSchedules, ScheduleRef
from domain.schedules.schedule import Schedule, definition_digest
from infra import names as n
from infra.caller import current_identity
from infra.log.port import EventLog
from infra.log.recorded import RecordedEvent
from infra.log.repository import Repository
from projections.schedules import ScheduleBook, ScheduleView
from services.execute import Outcome, execute

log = logging.getLogger(__name__)

# Live schedules one identity may own: each costs the leader a look every slot.
MAX_SCHEDULES_PER_OWNER = 1000


def _existing(schedule: Schedule | None, name: str, identity: str,
              operator: bool) -> Schedule:
    if schedule is None:
        raise CommandRefused(ErrorCode.NOT_FOUND, f"schedule {name} does not exist")
    schedule.check_owner(identity, operator)
    return schedule


class ScheduleService:
    """Command handlers of the Schedule aggregate: thin load-decide-save wrappers."""

    def __init__(self, store: EventLog, book: ScheduleBook,
                 is_operator: Callable[[str], bool] = lambda identity: True,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.repository = Repository(store, n.SCHEDULE)
        self.book = book
        self.is_operator = is_operator
        self.clock = clock
        self._subscription: Any = None

    # --- the projection's follower -------------------------------------------------

    async def start(self) -> None:
        """Catch up with the schedule events, then follow them."""
        wanted = self.store.names.kind_events(n.SCHEDULE)
        async for event in self.store.iterate(0, wanted):
            self.book.apply(event)
        self._subscription = await self.store.tail(self.book.position.value, self._apply,
                                                   wanted)

    async def _apply(self, event: RecordedEvent) -> None:
        if event.position > self.book.position.value:
            self.book.apply(event)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self._subscription.unsubscribe()
            self._subscription = None

    # --- commands -------------------------------------------------------------------

    async def create(self, cmd: CreateSchedule,
                     causation_id: str | None = None) -> dict[str, Any]:
        sender = current_identity.get()
        operator = self.is_operator(sender)
        definition = cmd.model_dump(exclude={"name", "replace"})
        digest = definition_digest(definition)
        now = self.clock()

        def decide(schedule: Schedule | None) -> Schedule:
            if schedule is None:
                if self.book.count_of(sender) >= MAX_SCHEDULES_PER_OWNER:
                    raise CommandRefused(ErrorCode.CONFLICT,
                                         f"{sender} has {MAX_SCHEDULES_PER_OWNER} schedules, "
                                         f"the most one identity may have; delete one first")
                return Schedule(cmd.name, sender, definition, digest, now)
            if schedule.owner != sender and not operator:
                raise CommandRefused(ErrorCode.CONFLICT,
                                     f"schedule name {cmd.name} is taken; choose another")
            if schedule.deleted or (schedule.digest != digest and cmd.replace):
                schedule.redefine(definition, digest, now, sender)
            elif schedule.digest != digest:
                raise CommandRefused(
                    ErrorCode.CONFLICT, f"schedule {cmd.name} exists with another "
                    f"definition; send it with replace to change it")
            return schedule  # the same definition again: answered, not repeated

        return _reply(await execute(self.repository, cmd.name, decide, causation_id))

    async def pause(self, cmd: ScheduleRef, causation_id: str | None = None) -> dict[str, Any]:
        return await self._act(cmd, causation_id,
                               lambda schedule, by: schedule.pause(by))

    async def resume(self, cmd: ScheduleRef,
                     causation_id: str | None = None) -> dict[str, Any]:
        now = self.clock()
        return await self._act(cmd, causation_id,
                               lambda schedule, by: schedule.resume(now, by))

    async def delete(self, cmd: ScheduleRef,
                     causation_id: str | None = None) -> dict[str, Any]:
        return await self._act(cmd, causation_id,
                               lambda schedule, by: schedule.delete(by), deleted_ok=True)

    async def _act(self, cmd: ScheduleRef, causation_id: str | None,
                   act: Callable[[Schedule, str], bool],
                   deleted_ok: bool = False) -> dict[str, Any]:
        sender = current_identity.get()
        operator = self.is_operator(sender)

        def decide(schedule: Schedule | None) -> Schedule:
            schedule = _existing(schedule, cmd.name, sender, operator)
            if not deleted_ok:
                schedule.check_live()
            act(schedule, sender)
            return schedule

        return _reply(await execute(self.repository, cmd.name, decide, causation_id))

    async def list(self, cmd: ListSchedules,
                   causation_id: str | None = None) -> dict[str, Any]:
        sender = current_identity.get()
        owner = None if self.is_operator(sender) else sender
        page = self.book.page(owner, cmd.after, cmd.limit)
        return {"ok": True, "schedules": [view.to_json() for view in page],
                "next_after": page[-1].name if len(page) == cmd.limit else None,
                "index": self.book.position.value}


def describe(schedule: Schedule) -> dict[str, Any]:
    """A schedule as a reply shows it (the read API's form, from the aggregate)."""
    view = ScheduleView(schedule.id, schedule.owner, schedule.definition, schedule.since,
                        paused=schedule.paused, deleted=schedule.deleted,
                        last_due=schedule.last_due, last_task_id=schedule.last_task_id,
                        fired=schedule.fired)
    found = view.to_json()
    found.pop("position")
    found.pop("skipped")
    found.pop("last_skip")
    found.pop("created_at")
    found["status"] = "deleted" if schedule.deleted else found["status"]
    return found


def _reply(outcome: Outcome) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": True, "schedule": describe(outcome.aggregate)}
    if outcome.position is not None:
        reply["position"] = outcome.position
    return reply
