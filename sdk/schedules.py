"""Schedules from the client: a task submitted by the orchestrator at every due slot of a
cron expression (five fields, UTC) or an interval, by `Client.schedule`,
`Client.unschedule`, `Client.pause_schedule`, `Client.resume_schedule` and
`Client.schedules` (docs/scheduling.md).

    await client.schedule("nightly-report", cron="0 3 * * *", kind="report",
                          payload={"since": "yesterday"})

Each slot's task has the id `<name>-<slot epoch second>` and is this client's identity's
task: its outcome comes to this identity like any it submits (`client.handle(task_id)`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

SCHEDULE_CREATE = "schedule.create"
SCHEDULE_PAUSE = "schedule.pause"
SCHEDULE_RESUME = "schedule.resume"
SCHEDULE_DELETE = "schedule.delete"
SCHEDULE_LIST = "schedule.list"

Request = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Schedule:
    """A schedule as the orchestrator answered it; times in epoch seconds, UTC."""

    name: str
    owner: str
    cron: str | None
    every_s: int | None
    task: dict[str, Any]
    overlap: str
    catch_up: str
    grace_s: float
    status: str  # active, paused or deleted
    next_due: float | None
    last_due: float | None
    last_task_id: str | None
    fired: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Schedule:
        return cls(
            name=body["name"], owner=body["owner"], cron=body.get("cron"),
            every_s=body.get("every_s"), task=dict(body.get("task") or {}),
            overlap=body.get("overlap", "skip"), catch_up=body.get("catch_up", "once"),
            grace_s=float(body.get("grace_s") or 0.0), status=body.get("status", ""),
            next_due=body.get("next_due"), last_due=body.get("last_due"),
            last_task_id=body.get("last_task_id"), fired=int(body.get("fired") or 0))


def task_id_of(name: str, due: float) -> str:
    """The id of the task a schedule's slot due at `due` submits."""
    return f"{name}-{int(due)}"


async def create(request: Request, name: str, *, kind: str, cron: str | None = None,
                 every_s: int | None = None, payload: Any = None,
                 requires: Iterable[str] = (), priority: int = 0, max_attempts: int = 3,
                 timeout_s: float = 300.0, concurrency_key: str | None = None,
                 fairness_key: str | None = None, selector: Mapping[str, str] | None = None,
                 prefer: Mapping[str, str] | None = None,
                 overlap: Literal["skip", "allow"] = "skip",
                 catch_up: Literal["once", "skip"] = "once", grace_s: float = 60.0,
                 replace: bool = False) -> Schedule:
    """Create a schedule (`cron` or `every_s`); the same definition again changes nothing,
    another is refused `conflict` unless `replace`. The task's fields are submit's."""
    task: dict[str, Any] = {"kind": kind, "payload": payload, "requires": list(requires),
                            "priority": priority, "max_attempts": max_attempts,
                            "timeout_s": timeout_s}
    for key, value in (("concurrency_key", concurrency_key), ("fairness_key", fairness_key),
                       ("selector", selector), ("prefer", prefer)):
        if value:
            task[key] = dict(value) if isinstance(value, Mapping) else value
    body: dict[str, Any] = {"name": name, "task": task, "overlap": overlap,
                            "catch_up": catch_up, "grace_s": grace_s, "replace": replace}
    if cron is not None:
        body["cron"] = cron
    if every_s is not None:
        body["every_s"] = every_s
    return Schedule.parse((await request(SCHEDULE_CREATE, body))["schedule"])


async def act(request: Request, command: str, name: str) -> Schedule:
    """Pause, resume or delete a schedule: the schedule after it."""
    return Schedule.parse((await request(command, {"name": name}))["schedule"])


async def list_all(request: Request) -> list[Schedule]:
    """Every live schedule of the identity (an operator's: everyone's), by name."""
    found: list[Schedule] = []
    after: str | None = None
    while True:
        body: dict[str, Any] = {"limit": 1000}
        if after is not None:
            body["after"] = after
        reply = await request(SCHEDULE_LIST, body)
        found += [Schedule.parse(item) for item in reply["schedules"]]
        after = reply.get("next_after")
        if after is None:
            return found


class ScheduleCalls:
    """The client's schedule calls (Client has them from this class), over its requests."""

    _request: Request

    async def schedule(self, name: str, *, kind: str, cron: str | None = None,
                       every_s: int | None = None, payload: Any = None,
                       **options: Any) -> Schedule:
        """Create (with `replace=True`, replace) a schedule; `options` as `create`."""
        return await create(self._request, name, kind=kind, cron=cron, every_s=every_s,
                            payload=payload, **options)

    async def unschedule(self, name: str) -> Schedule:
        return await act(self._request, SCHEDULE_DELETE, name)

    async def pause_schedule(self, name: str) -> Schedule:
        return await act(self._request, SCHEDULE_PAUSE, name)

    async def resume_schedule(self, name: str) -> Schedule:
        return await act(self._request, SCHEDULE_RESUME, name)

    async def schedules(self) -> list[Schedule]:
        return await list_all(self._request)
