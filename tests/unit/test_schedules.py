"""Schedules on the in-memory log: the commands and who may send them, and the leader's
firing duty with a clock of the test's: one task per slot, overlap and catch-up, pauses,
and two leaders on one slot. The same handlers, projection and duty as the product."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from domain.errors import CommandRefused, ErrorCode
from domain.schedules.commands import CreateSchedule, ListSchedules, ScheduleRef
from domain.schedules.schedule import fired_by, firing_cause, firing_task_id
from domain.tasks.commands import CancelTask
from infra.caller import current_identity
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.repository import Repository
from infra.names import Names
from projections.board.tasks import TaskBoard
from projections.runner import ProjectionRunner
from projections.schedules import ScheduleBook
from services.audit.chain import task_story
from services.commands.schedules import ScheduleService
from services.commands.tasks import TaskService
from services.leader.firing import ScheduleFiring
from services.metrics import Metrics

NAMES = Names("unit")
T0 = 1_800_000_000.0  # a multiple of 10 and of 60


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 1

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    log: InMemoryEventLog
    board: TaskBoard
    tasks: TaskService
    schedules: ScheduleService
    firing: ScheduleFiring
    clock: Clock
    runner: ProjectionRunner
    metrics: Metrics

    def leader(self) -> ScheduleFiring:
        """Another leader on the same log: caches of its own."""
        book = ScheduleBook()
        service = ScheduleService(self.log, book, clock=self.clock)
        tasks = TaskService(Repository(self.log, "task"), NAMES, self.board, _nowhere, 1, 60)
        return ScheduleFiring(self.schedules.book, service, tasks, self.board, self.metrics,
                              clock=self.clock)

    async def settle(self) -> None:
        last = await self.log.last_position()
        assert await self.runner.position.wait_for(last, 5)
        mine = await self.log.read(0, 10_000, NAMES.kind_events("schedule"))
        assert await self.schedules.book.position.wait_for(mine[-1].position, 5)

    async def events(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e.name, e.data()) for e in await self.log.history("schedule", name)]


async def _nowhere(subject: str, data: bytes) -> None:
    pass


@pytest.fixture
async def world() -> AsyncIterator[World]:
    log = InMemoryEventLog(NAMES, create_mapper())
    board, clock, metrics = TaskBoard(), Clock(), Metrics()
    tasks = TaskService(Repository(log, "task"), NAMES, board, _nowhere, 1.0, 60.0,
                        is_operator=lambda identity: identity == "op")
    schedules = ScheduleService(log, ScheduleBook(), is_operator=lambda i: i == "op",
                                clock=clock)
    runner = ProjectionRunner(log, [board])
    await runner.start()
    await schedules.start()
    firing = ScheduleFiring(schedules.book, schedules, tasks, board, metrics, clock=clock)
    current_identity.set("alice")
    try:
        yield World(log, board, tasks, schedules, firing, clock, runner, metrics)
    finally:
        await schedules.stop()
        await runner.stop()


def every(name: str = "tick", seconds: int = 10, **extra: Any) -> CreateSchedule:
    return CreateSchedule.model_validate(
        {"name": name, "every_s": seconds, "task": {"kind": "report", "payload": {"n": 1}},
         **extra})


class TestCreateSchedule:
    async def test_records_it_and_answers_its_next_slot(self, world: World) -> None:
        reply = await world.schedules.create(every())
        assert reply["ok"] and reply["schedule"]["next_due"] == T0 + 10
        assert reply["schedule"]["owner"] == "alice" and "position" in reply
        await world.settle()
        [view] = world.schedules.book.page("alice", None, 10)
        assert view.to_json()["next_due"] == T0 + 10

    async def test_the_same_again_writes_nothing_and_another_needs_replace(self, world):
        await world.schedules.create(every())
        before = await world.log.last_position()
        assert "position" not in await world.schedules.create(every())
        with pytest.raises(CommandRefused) as refused:
            await world.schedules.create(every(seconds=20))
        assert refused.value.code == ErrorCode.CONFLICT
        assert await world.log.last_position() == before
        reply = await world.schedules.create(every(seconds=20, replace=True))
        assert reply["schedule"]["every_s"] == 20
        assert [name for name, _ in await world.events("tick")] == ["Created", "Redefined"]

    async def test_another_submitter_can_neither_take_nor_touch_it(self, world):
        await world.schedules.create(every())
        before = await world.log.last_position()
        current_identity.set("mallory")
        with pytest.raises(CommandRefused) as taken:
            await world.schedules.create(every(seconds=5, replace=True))
        assert taken.value.code == ErrorCode.CONFLICT
        for act in (world.schedules.pause, world.schedules.resume, world.schedules.delete):
            with pytest.raises(CommandRefused) as refused:
                await act(ScheduleRef(name="tick"))
            assert refused.value.code == ErrorCode.NOT_FOUND  # as if it did not exist
        await world.settle()
        assert (await world.schedules.list(ListSchedules()))["schedules"] == []
        assert await world.log.last_position() == before
        current_identity.set("op")  # an operator sees and acts on everyone's
        assert len((await world.schedules.list(ListSchedules()))["schedules"]) == 1
        assert (await world.schedules.pause(ScheduleRef(name="tick")))["schedule"][
            "status"] == "paused"

    async def test_refuses_a_timing_that_is_not_one_of_cron_or_every(self) -> None:
        for body in ({}, {"cron": "* * * * *", "every_s": 5}, {"cron": "0 0 30 2 *"},
                     {"cron": "61 * * * *"}, {"every_s": 0}):
            with pytest.raises(ValueError):
                CreateSchedule.model_validate({"name": "x", "task": {"kind": "k"}, **body})
        with pytest.raises(ValueError):  # too long to make task ids of
            CreateSchedule.model_validate({"name": "x" * 49, "every_s": 5,
                                           "task": {"kind": "k"}})


class TestFiring:
    async def test_each_slot_submits_one_task_as_its_owner(self, world: World) -> None:
        await world.schedules.create(every())
        await world.settle()
        assert await world.firing.round() == pytest.approx(9)  # not yet
        world.clock.now = T0 + 10.2
        await world.firing.round()
        await world.firing.round()  # again, on the same slot: nothing more
        task_id = firing_task_id("tick", T0 + 10)
        assert task_id == f"tick-{int(T0) + 10}"
        task, _ = await world.tasks.repository.get(task_id, fresh=True)
        assert task is not None
        assert task.submitted_by == "alice" and task.payload == {"n": 1}
        assert [(n, d.get("due"), d.get("task_id"), d.get("missed"))
                for n, d in await world.events("tick")][1:] == [
            ("Fired", T0 + 10, task_id, 0)]
        history = await world.log.history("task", task_id)
        assert fired_by(history[0].causation_id) == ("tick", T0 + 10)
        story = task_story(history, {})
        assert story["chain"][0]["schedule"] == {"name": "tick", "due": T0 + 10}
        assert "fired by schedule tick for its slot due at" in story["chain"][0]["reason"]

    async def test_the_task_carries_the_templates_flow_control_keys(self, world: World):
        await world.schedules.create(CreateSchedule.model_validate(
            {"name": "keyed", "every_s": 10, "task": {
                "kind": "report", "concurrency_key": "db:main", "selector": {"zone": "a"}}}))
        await world.settle()
        world.clock.now = T0 + 10
        await world.firing.round()
        task, _ = await world.tasks.repository.get(firing_task_id("keyed", T0 + 10), True)
        assert task is not None and task.concurrency_key == "db:main"

    async def test_a_slot_meeting_the_last_task_unfinished_is_skipped(self, world):
        await world.schedules.create(every())
        await world.settle()
        world.clock.now = T0 + 10
        await world.firing.round()
        await world.settle()
        world.clock.now = T0 + 20
        await world.firing.round()  # the task of T0+10 is still pending
        events = await world.events("tick")
        assert events[-1][0] == "Skipped" and events[-1][1]["reason"].startswith("overlap")
        await world.tasks.cancel(CancelTask(task_id=firing_task_id("tick", T0 + 10)))
        await world.settle()
        world.clock.now = T0 + 30
        await world.firing.round()
        assert (await world.events("tick"))[-1][0] == "Fired"
        assert world.metrics.schedule_firings.labels("skipped")._value.get() == 1

    async def test_overlap_allow_fires_beside_the_last_task(self, world):
        await world.schedules.create(every(overlap="allow"))
        await world.settle()
        for slot in (10, 20):
            world.clock.now = T0 + slot
            await world.firing.round()
            await world.settle()
        assert [n for n, _ in await world.events("tick")] == ["Created", "Fired", "Fired"]

    async def test_catch_up_once_fires_the_latest_missed_slot_once(self, world):
        await world.schedules.create(every())
        await world.settle()
        world.clock.now = T0 + 55  # slots 10..50 went by with no leader
        await world.firing.round()
        await world.firing.round()
        fired = [d for n, d in await world.events("tick") if n == "Fired"]
        assert [(d["due"], d["missed"]) for d in fired] == [(T0 + 50, 4)]

    async def test_catch_up_skip_lets_a_slot_later_than_grace_go(self, world):
        await world.schedules.create(every(catch_up="skip", grace_s=3.0))
        await world.settle()
        world.clock.now = T0 + 25  # 5 s late for the slot of T0+20
        await world.firing.round()
        [(name, data)] = (await world.events("tick"))[1:]
        assert name == "Skipped" and data["due"] == T0 + 20 and data["missed"] == 1
        assert data["reason"].startswith("late")
        await world.settle()
        world.clock.now = T0 + 31  # 1 s late: within grace
        await world.firing.round()
        assert (await world.events("tick"))[-1][0] == "Fired"

    async def test_paused_fires_nothing_and_resumed_owes_nothing_from_the_pause(self, world):
        await world.schedules.create(every())
        await world.schedules.pause(ScheduleRef(name="tick"))
        await world.settle()
        world.clock.now = T0 + 45
        await world.firing.round()
        assert [n for n, _ in await world.events("tick")] == ["Created", "Paused"]
        await world.schedules.resume(ScheduleRef(name="tick"))
        await world.settle()
        await world.firing.round()  # slots 10..40 passed while paused: not owed
        assert [n for n, _ in await world.events("tick")][-1] == "Resumed"
        world.clock.now = T0 + 50
        await world.firing.round()
        fired = [d for n, d in await world.events("tick") if n == "Fired"]
        assert [(d["due"], d["missed"]) for d in fired] == [(T0 + 50, 0)]

    async def test_deleted_fires_nothing(self, world):
        await world.schedules.create(every())
        await world.schedules.delete(ScheduleRef(name="tick"))
        await world.settle()
        world.clock.now = T0 + 30
        await world.firing.round()
        assert [n for n, _ in await world.events("tick")] == ["Created", "Deleted"]
        assert world.schedules.book.get("tick") is None

    async def test_a_revoked_owners_schedule_is_paused_not_fired(self, world):
        await world.schedules.create(every())
        await world.settle()
        world.firing.revoked = lambda identity: identity == "alice"
        world.clock.now = T0 + 10
        await world.firing.round()
        [*_, (name, data)] = await world.events("tick")
        assert name == "Paused" and data["by"] == "orchestrator"
        assert data["reason"] == "its owner alice is revoked"
        assert await world.log.history("task", firing_task_id("tick", T0 + 10)) == []

    async def test_a_submit_refused_for_good_skips_the_slot(self, world, monkeypatch):
        await world.schedules.create(every())
        await world.settle()

        async def refuse(*args: Any) -> dict[str, Any]:
            raise CommandRefused(ErrorCode.INVALID_REQUEST, "no such thing")

        monkeypatch.setattr(world.tasks, "submit", refuse)
        world.clock.now = T0 + 10
        await world.firing.round()
        [*_, (name, data)] = await world.events("tick")
        assert name == "Skipped" and data["reason"] == (
            "submit refused: invalid_request: no such thing")

    async def test_a_submit_refused_for_now_is_tried_again(self, world, monkeypatch):
        await world.schedules.create(every())
        await world.settle()
        refusals = [CommandRefused(ErrorCode.UNAVAILABLE, "event log unavailable; retry")]
        submit = world.tasks.submit

        async def once_unavailable(*args: Any) -> dict[str, Any]:
            if refusals:
                raise refusals.pop()
            return await submit(*args)

        monkeypatch.setattr(world.tasks, "submit", once_unavailable)
        world.clock.now = T0 + 10
        assert await world.firing.round() == pytest.approx(1.0)  # again in a second
        assert [n for n, _ in await world.events("tick")] == ["Created"]
        await world.firing.round()
        assert [n for n, _ in await world.events("tick")] == ["Created", "Fired"]

    async def test_a_long_history_is_carried_forward_and_reads_the_same(self, world):
        await world.schedules.create(every(overlap="allow"))
        await world.settle()
        for slot in range(1, 13):
            world.clock.now = T0 + 10 * slot
            await world.firing.round()
        await world.settle()
        names = [n for n, _ in await world.events("tick")]
        assert names.count("Fired") == 12 and "CarriedForward" in names
        fresh = ScheduleService(world.log, ScheduleBook(), clock=world.clock)
        schedule, _ = await fresh.repository.get("tick", fresh=True)
        assert schedule is not None and schedule.fired == 12
        assert schedule.last_due == T0 + 120 and schedule.next_due() == T0 + 130
        await fresh.start()  # a projection made from the log reads the same
        view = fresh.book.get("tick")
        assert view is not None and view.fired == 12 and view.next_due() == T0 + 130
        await fresh.stop()

    async def test_two_leaders_on_one_slot_make_one_task_and_one_firing(self, world):
        await world.schedules.create(every())
        await world.settle()
        world.clock.now = T0 + 10
        other = world.leader()
        await world.firing.act("tick", world.clock.now)
        await other.act("tick", world.clock.now)  # its caches knew nothing of the first
        fired = [n for n, _ in await world.events("tick")].count("Fired")
        submitted = await world.log.history("task", firing_task_id("tick", T0 + 10))
        assert fired == 1 and [e.name for e in submitted] == ["Submitted"]

    async def test_a_submit_the_last_leader_made_but_did_not_record_is_recorded(self, world):
        await world.schedules.create(every())
        await world.settle()
        world.clock.now = T0 + 10
        task_id = firing_task_id("tick", T0 + 10)
        # The last leader submitted the slot's task, then died before recording it.
        from domain.tasks.commands import SubmitTask
        await world.tasks.submit(SubmitTask(task_id=task_id, kind="report", payload={"n": 1}),
                                 firing_cause("tick", T0 + 10))
        await world.firing.round()
        assert [n for n, _ in await world.events("tick")][-1] == "Fired"
        assert len(await world.log.history("task", task_id)) == 1
