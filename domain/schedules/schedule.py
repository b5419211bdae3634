"""The Schedule aggregate: a recurring task's definition, its pauses, and every decision
about a due slot (fired, with the task it submitted, or skipped, and why).

Slots are times in epoch seconds, UTC. A slot is decided once: `last_due` only grows, so
a leader that comes after another (or beside it, for a moment) cannot fire a slot twice;
and the task a slot submits has an id made of the schedule and the slot, so a submit
retried by the next leader is the same submit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eventsourcing.domain import event

from domain.base import StrIdAggregate, named_in_the_log
from domain.errors import CommandRefused, ErrorCode
from domain.schedules.cron import Cron, every_next_after

FIRE, SKIP = "fire", "skip"
# Slots counted as missed before the one acted on; more are said as this many.
MAX_MISSED_COUNTED = 1000
_CAUSE = "schedule#"  # '#' is in no client's request id: the mark cannot be forged


@lru_cache(maxsize=4096)
def parsed(cron: str) -> Cron:
    return Cron.parse(cron)


def firing_task_id(name: str, due: float) -> str:
    """The id of the task a slot submits: the schedule and the slot's epoch second."""
    return f"{name}-{int(due)}"


def firing_cause(name: str, due: float) -> str:
    """The causation id of a firing's Submitted event, so its history says which
    schedule submitted it for which slot."""
    return f"{_CAUSE}{name}#{int(due)}"


def fired_by(causation_id: str | None) -> tuple[str, float] | None:
    """(schedule, due) from a firing's causation id; None for anything else."""
    if not causation_id or not causation_id.startswith(_CAUSE):
        return None
    name, _, due = causation_id[len(_CAUSE):].rpartition("#")
    return (name, float(due)) if name and due.isdigit() else None


def next_slot(definition: dict[str, Any], after: float) -> float | None:
    """The first slot of a definition (its `cron` or `every_s`) strictly after `after`."""
    every = definition.get("every_s")
    if every is not None:
        return float(every_next_after(every, after))
    return parsed(definition.get("cron") or "").next_after(after)


def definition_digest(definition: dict[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Due:
    """The latest slot due and not yet decided, and how many before it went by."""

    due: float
    missed: int


@dataclass(frozen=True)
class Decision:
    action: str  # FIRE or SKIP
    due: Due
    reason: str = ""


class Schedule(StrIdAggregate):
    """One named schedule of one owner."""

    @staticmethod
    def create_id(name: str) -> str:
        return name

    @event("Created")
    def __init__(self, name: str, owner: str, definition: dict[str, Any], digest: str,
                 since: float) -> None:
        self.owner = owner
        self._define(definition, digest, since)
        self.paused = False
        self.deleted = False
        self.last_due = 0.0  # the latest slot decided (fired or skipped)
        self.last_task_id: str | None = None  # the latest firing's task
        self.fired = 0

    def _define(self, definition: dict[str, Any], digest: str, since: float) -> None:
        self.definition = definition
        self.digest = digest
        self.since = since  # slots after this only: none from before it is owed

    # --- guards -----------------------------------------------------------------

    def check_owner(self, identity: str, operator: bool) -> None:
        """Only its owner, or an operator, may act on it; to anyone else it does not
        exist."""
        if operator or identity == self.owner:
            return
        raise CommandRefused(ErrorCode.NOT_FOUND, f"schedule {self.id} does not exist")

    def check_live(self) -> None:
        if self.deleted:
            raise CommandRefused(ErrorCode.NOT_FOUND, f"schedule {self.id} does not exist")

    # --- when -------------------------------------------------------------------

    @property
    def cron(self) -> str | None:
        value: str | None = self.definition.get("cron")
        return value

    @property
    def every_s(self) -> int | None:
        value: int | None = self.definition.get("every_s")
        return value

    def next_after(self, after: float) -> float | None:
        return next_slot(self.definition, after)

    def next_due(self) -> float | None:
        """The first slot not decided yet (None when deleted or it never fires)."""
        if self.deleted:
            return None
        return self.next_after(max(self.since, self.last_due))

    def due_at(self, now: float) -> Due | None:
        """The latest undecided slot at or before `now`, and how many went by before it."""
        first = self.next_due()
        if first is None or first > now:
            return None
        every = self.every_s
        if every is not None:
            latest = float(int(now // every) * every)
            return Due(latest, min(MAX_MISSED_COUNTED, int((latest - first) // every)))
        due, missed = first, 0
        while missed < MAX_MISSED_COUNTED:
            following = self.next_after(due)
            if following is None or following > now:
                return Due(due, missed)
            due, missed = following, missed + 1
        return Due(self._latest_cron_slot(due, now), missed)

    def _latest_cron_slot(self, floor: float, now: float) -> float:
        """The latest slot at or before `now`, past many: looked for in ever wider
        windows back from `now`."""
        for window in (3600.0, 86400.0, 32 * 86400.0, 367 * 86400.0):
            found = self.next_after(max(floor, now - window))
            if found is not None and found <= now:
                while (following := self.next_after(found)) is not None and following <= now:
                    found = following
                return found
        return floor

    def decide(self, now: float, previous_open: bool) -> Decision | None:
        """What to do about the slot due at `now`, if any: fire it, or skip it (a late
        slot under catch_up=skip; one that meets the previous task still open under
        overlap=skip). `previous_open`: the latest firing's task is not finished."""
        if self.paused or self.deleted:
            return None
        due = self.due_at(now)
        if due is None:
            return None
        late = now - due.due
        if self.definition.get("catch_up") == SKIP and late > self.definition["grace_s"]:
            return Decision(SKIP, due, f"late: {late:.1f}s past its time, more than grace_s")
        if self.definition.get("overlap") == SKIP and previous_open:
            return Decision(SKIP, due, f"overlap: task {self.last_task_id} is not finished")
        return Decision(FIRE, due)

    # --- commands ---------------------------------------------------------------

    def redefine(self, definition: dict[str, Any], digest: str, now: float,
                 by: str) -> None:
        """A new definition (or a deleted schedule made again): slots after `now`."""
        self._redefined(definition=definition, digest=digest, since=now, by=by)

    @event("Redefined")
    def _redefined(self, definition: dict[str, Any], digest: str, since: float,
                   by: str) -> None:
        self._define(definition, digest, since)
        self.deleted = False
        self.paused = False

    def pause(self, by: str, reason: str = "") -> bool:
        """False when paused already (nothing to record)."""
        self.check_live()
        if self.paused:
            return False
        self._paused(by=by, reason=reason)
        return True

    @event("Paused")
    def _paused(self, by: str, reason: str = "") -> None:
        self.paused = True

    def resume(self, now: float, by: str) -> bool:
        """Slots from now on: none that went by while paused is owed."""
        self.check_live()
        if not self.paused:
            return False
        self._resumed(since=now, by=by)
        return True

    @event("Resumed")
    def _resumed(self, since: float, by: str) -> None:
        self.paused = False
        self.since = max(self.since, since)

    def delete(self, by: str) -> bool:
        if self.deleted:
            return False
        self._deleted(by=by)
        return True

    @event("Deleted")
    def _deleted(self, by: str) -> None:
        self.deleted = True

    def _check_undecided(self, due: float) -> None:
        self.check_live()
        if self.paused:
            raise CommandRefused(ErrorCode.CONFLICT, f"schedule {self.id} is paused")
        if due <= self.last_due or due <= self.since:
            raise CommandRefused(ErrorCode.CONFLICT,
                                 f"schedule {self.id}: the slot {int(due)} is decided")

    def fire(self, due: Due, task_id: str) -> None:
        """The slot submitted `task_id` (submitted first: a firing recorded is one done)."""
        self._check_undecided(due.due)
        self._fired(due=due.due, task_id=task_id, missed=due.missed)

    @event("Fired")
    def _fired(self, due: float, task_id: str, missed: int) -> None:
        self.last_due = due
        self.last_task_id = task_id
        self.fired += 1

    def skip(self, due: Due, reason: str) -> None:
        self._check_undecided(due.due)
        self._skipped(due=due.due, reason=reason, missed=due.missed)

    @event("Skipped")
    def _skipped(self, due: float, reason: str, missed: int) -> None:
        self.last_due = due


named_in_the_log(Schedule, "domain.schedule:Schedule")
