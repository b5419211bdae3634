"""Every schedule as the log says it: what the command list, the read API, the dashboard
and the leader's firing duty read.

Fed only the schedule events (a follower of its own, from the log's start, like the
identities): a projection snapshot of agents and tasks never needs to carry it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.schedules.schedule import next_slot
from projections.log_event import LogEvent
from projections.position import Position

KIND = "schedule"
_STATE = ("owner", "definition", "since", "paused", "deleted", "last_due", "last_task_id",
          "fired")


@dataclass(slots=True)
class ScheduleView:
    name: str
    owner: str
    definition: dict[str, Any]
    since: float
    created_at: str = ""
    paused: bool = False
    deleted: bool = False
    last_due: float = 0.0
    last_task_id: str | None = None
    fired: int = 0
    skipped: int = 0
    last_skip: str = ""  # why the latest skipped slot was skipped
    position: int = 0

    def next_due(self) -> float | None:
        """The first slot not decided yet; None when deleted or paused."""
        if self.deleted or self.paused:
            return None
        return next_slot(self.definition, max(self.since, self.last_due))

    def to_json(self) -> dict[str, Any]:
        d = self.definition
        return {
            "name": self.name, "owner": self.owner, "cron": d.get("cron"),
            "every_s": d.get("every_s"), "task": d.get("task"), "overlap": d.get("overlap"),
            "catch_up": d.get("catch_up"), "grace_s": d.get("grace_s"),
            "status": "paused" if self.paused else "active",
            "next_due": self.next_due(), "last_due": self.last_due or None,
            "last_task_id": self.last_task_id, "fired": self.fired, "skipped": self.skipped,
            "last_skip": self.last_skip or None, "created_at": self.created_at,
            "position": self.position,
        }


class ScheduleBook:
    """The schedule projection. `apply` is pure state change; no I/O."""

    def __init__(self) -> None:
        self.schedules: dict[str, ScheduleView] = {}
        self._names: list[str] = []  # live ones, sorted: pages by name
        self.position = Position()
        self.on_change: Callable[[], None] | None = None  # the firing duty's wake-up

    def apply(self, event: LogEvent) -> None:
        if event.kind == KIND:
            self._apply(event)
            if self.on_change is not None:
                self.on_change()
        self.position.advance(event.position)

    def _apply(self, event: LogEvent) -> None:
        data, name = event.data(), event.aggregate_id
        view = self.schedules.get(name)
        if event.name == "Created":
            view = ScheduleView(name, data["owner"], data["definition"], data["since"],
                                created_at=event.recorded_at.isoformat())
            self.schedules[name] = view
        elif event.name == "CarriedForward":
            state = data["state"]
            if view is None:
                view = ScheduleView(name, state["owner"], state["definition"], state["since"])
                self.schedules[name] = view
            for key in _STATE:
                setattr(view, key, state[key])
        elif view is None:
            return
        elif event.name == "Redefined":
            view.definition, view.since = data["definition"], data["since"]
            view.paused = view.deleted = False
        elif event.name == "Paused":
            view.paused = True
        elif event.name == "Resumed":
            view.paused, view.since = False, max(view.since, data["since"])
        elif event.name == "Deleted":
            view.deleted = True
        elif event.name == "Fired":
            view.last_due, view.last_task_id = data["due"], data["task_id"]
            view.fired += 1
        elif event.name == "Skipped":
            view.last_due, view.last_skip = data["due"], data["reason"]
            view.skipped += 1
        view.position = event.position
        self._index(view)

    def _index(self, view: ScheduleView) -> None:
        at = bisect.bisect_left(self._names, view.name)
        listed = at < len(self._names) and self._names[at] == view.name
        if view.deleted and listed:
            del self._names[at]
        elif not view.deleted and not listed:
            self._names.insert(at, view.name)

    def get(self, name: str) -> ScheduleView | None:
        view = self.schedules.get(name)
        return view if view is not None and not view.deleted else None

    def page(self, owner: str | None, after: str | None, limit: int) -> list[ScheduleView]:
        """Live schedules by name after `after`; only `owner`'s unless None (all)."""
        found: list[ScheduleView] = []
        start = bisect.bisect_right(self._names, after) if after else 0
        for name in self._names[start:]:
            view = self.schedules[name]
            if owner is None or view.owner == owner:
                found.append(view)
                if len(found) == limit:
                    break
        return found

    def count_of(self, owner: str) -> int:
        return sum(1 for name in self._names if self.schedules[name].owner == owner)

    def live(self) -> list[ScheduleView]:
        return [self.schedules[name] for name in self._names]
