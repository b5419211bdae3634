"""The declared reactions to applied events (services/reactions.py), and the jobs of a
process restarted after a failure only while they should run (services/jobs.py)."""

from __future__ import annotations

import asyncio

from projections.fleet.catalog import Catalog
from services import jobs as jobs_module
from services.jobs import Jobs
from services.reactions import DISPATCH, TABLE, TELL_SUBMITTER, WATCH_INCARNATION, Reactions
from tests.support import eventually
from tests.unit.log_events import T0, FakeLogEvent


def event(name: str, kind: str = "agent", position: int = 1) -> FakeLogEvent:
    return FakeLogEvent(position, kind, "x1", name, f"e{position}", T0, {})


class Recorder:
    def __init__(self, live: bool = True) -> None:
        self.live = live
        self.seen: list[tuple[str, object]] = []
        self.catalog = Catalog()

    def reactions(self) -> Reactions:
        async def feed(e: object) -> None:
            self.seen.append(("feed", e))

        return Reactions(
            {WATCH_INCARNATION: lambda e: self.seen.append((WATCH_INCARNATION, e.aggregate_id)),
             DISPATCH: lambda e: self.seen.append((DISPATCH, e.name)),
             TELL_SUBMITTER: lambda e: self.seen.append((TELL_SUBMITTER, e.aggregate_id))},
            live=lambda: self.live, count_task_event=lambda e: self.seen.append(("count", e.name)),
            notice_position=lambda p: self.seen.append(("notice", p)), catalog=self.catalog,
            feed=feed)


async def test_a_new_incarnation_is_watched_and_wakes_the_dispatcher() -> None:
    recorder = Recorder()
    await recorder.reactions().on_applied(event("Registered", position=7))
    assert recorder.seen == [(WATCH_INCARNATION, "x1"), (DISPATCH, "Registered"),
                             ("notice", 7)]


async def test_events_outside_the_table_wake_no_component() -> None:
    recorder = Recorder()
    await recorder.reactions().on_applied(event("Heartbeat", position=3))
    assert recorder.seen == [("notice", 3)]
    assert "Heartbeat" not in TABLE and "Accepted" not in TABLE


async def test_a_rebuilds_replay_is_not_counted_nor_announced() -> None:
    recorder = Recorder(live=False)
    await recorder.reactions().on_applied(event("Submitted", kind="task"))
    assert recorder.seen == [(DISPATCH, "Submitted")]
    recorder.live = True
    await recorder.reactions().on_applied(event("Submitted", kind="task", position=2))
    assert recorder.seen[1:] == [("count", "Submitted"), (DISPATCH, "Submitted"), ("notice", 2)]


async def test_a_catalog_change_is_fed_after_the_rest() -> None:
    recorder = Recorder()
    recorder.catalog.changed = {"web"}
    changed = event("ServicesDeclared", position=4)
    await recorder.reactions().on_applied(changed)
    assert recorder.seen == [("notice", 4), ("feed", changed)]


async def test_a_finished_task_is_told_to_its_submitter_live_or_not() -> None:
    # The notice itself sends nothing in a replay (services/commands/results.py).
    for name in ("Completed", "DeadLettered", "Cancelled"):
        recorder = Recorder(live=False)
        await recorder.reactions().on_applied(event(name, kind="task"))
        assert recorder.seen == [(DISPATCH, name), (TELL_SUBMITTER, "x1")]
    assert TELL_SUBMITTER not in TABLE["Failed"]  # a retry is not an end


async def test_every_task_state_change_that_frees_or_fills_capacity_dispatches() -> None:
    for name in ("Submitted", "Requeued", "Completed", "Failed", "DeadLettered", "Cancelled",
                 "Registered", "Reregistered", "Recovered", "DrainStarted", "Deregistered"):
        assert DISPATCH in TABLE[name], name


async def test_a_failed_job_is_restarted_only_while_it_should_run(monkeypatch) -> None:
    monkeypatch.setattr(jobs_module, "RESTART_DELAY_S", 0)  # the next loop turn
    runs: list[bool] = []
    leading = [True]

    async def duty() -> None:
        runs.append(leading[0])
        if len(runs) < 3:
            raise RuntimeError("failed")
        await asyncio.Event().wait()  # the third run goes on

    async def turns(count: int) -> None:
        for _ in range(count):  # loop turns, not time: a restart due now has run
            await asyncio.sleep(0)

    jobs = Jobs()
    jobs.spawn("duty", duty, restart_while=lambda: leading[0])
    await eventually(lambda: len(runs) == 3, what="restarted twice")
    await jobs.cancel("duty")
    assert jobs.names() == []

    runs.clear()
    jobs.spawn("duty", duty, restart_while=lambda: leading[0])
    await turns(30)
    assert len(runs) == 3  # while leading, the same turns restarted it twice
    await jobs.cancel("duty")

    runs.clear()
    leading[0] = False
    jobs.spawn("duty", duty, restart_while=lambda: leading[0])
    await turns(30)
    assert runs == [False]  # failed once, not restarted
    await jobs.cancel("duty")
