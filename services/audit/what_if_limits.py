"""`what-if limits`: a recorded window of submissions and fleet replayed under other limits
(services/audit/limits_replay.py), reported per concurrency key beside what happened:
the waits for an agent, the longest, the throughput, and the placements of both sides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.errors import CommandRefused
from domain.limits.limit import LimitScope, check_values, limit_id, parse_rate
from domain.tasks.placement import Strategy
from infra.log.port import EventLog
from infra.names import TASK
from services.audit.limits_replay import RecordedTask, Replay, World, basis_of, recorded_tasks

NO_KEY = "(none)"


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
    world = World(changes, strategy)
    for event in before:
        world.apply(event)
    tasks = recorded_tasks(window)
    replay = Replay(world, tasks, window)
    decisions = replay.run()
    times = [e.recorded_at.timestamp() for e in window]
    seconds = (times[-1] - times[0]) if len(times) > 1 else 0.0
    last_at = times[-1] if times else 0.0
    actual = _figures(tasks, {task_id: t.first_placed[0] for task_id, t in tasks.items()
                              if t.first_placed is not None},
                      {task_id for task_id, t in tasks.items()
                       if t.ended is not None and t.ended[1] != "Cancelled"}, last_at)
    replayed = _figures(tasks, replay.placed_at, replay.finished, last_at)
    recorded = [(e.aggregate_id, e.data()["agent_id"], basis_of(e.causation_id))
                for e in window if e.kind == TASK and e.name == "Assigned"]
    return {
        "window": {"from_position": start, "to_position": end,
                   "from": _iso(times[0]) if times else None,
                   "to": _iso(times[-1]) if times else None, "seconds": round(seconds, 3)},
        "changes": [{"limit": limit, "values": values} for limit, values in changes],
        "keys": {key: {"actual": actual[key].to_json(seconds),
                       "what_if": replayed[key].to_json(seconds)}
                 for key in sorted(set(actual) | set(replayed))},
        # Each placement a dispatcher decided: task, agent, and the log position its
        # round decided at (null: at the task's submit). The same set on both sides:
        # the replay decided what the dispatcher did, where it did.
        "placements": {"actual": [list(p) for p in recorded],
                       "what_if": [list(p) for p in decisions],
                       "same": sorted(recorded, key=str) == sorted(decisions, key=str)},
    }


async def _read(store: EventLog, start: int, end: int) -> tuple[list[Any], list[Any]]:
    before: list[Any] = []
    window: list[Any] = []
    async for event in store.iterate(0, until=end):
        (before if event.position < start else window).append(event)
    return before, window


def _figures(tasks: dict[str, RecordedTask], placed_at: dict[str, float],
             finished: set[str], end: float) -> dict[str, Figures]:
    """Per key, the window's tasks: placed when `placed_at` says (first), finished as
    `finished` says (a cancelled task never is); one still waiting counts what it waited
    by the window's `end`."""
    found: dict[str, Figures] = defaultdict(Figures)
    for task_id, task in tasks.items():
        figures = found[task.key or NO_KEY]
        figures.submitted += 1
        if task_id in placed_at:
            figures.placed += 1
            figures.waits.append(placed_at[task_id] - task.submitted_at)
        elif task.cancelled_at is None:
            figures.still_waiting.append(end - task.submitted_at)
        if task_id in finished and task.cancelled_at is None:
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
