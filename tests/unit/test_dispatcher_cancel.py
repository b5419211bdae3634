"""A placement or move cancelled mid-write (leadership lost) must not leave its task
reserved: a kept reservation hid the task from every later round, and an assignment
nobody received was never timed out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from domain.agents.agent import Agent
from domain.tasks.placement import Strategy
from domain.tasks.task import Task
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.position import Position
from services.leader.dispatcher import Dispatcher
from services.leader.fleet import Fleet
from services.metrics import Metrics
from tests.unit.log_events import Log

ACCEPT_TIMEOUT = 2.0


class StuckWrites:
    """A task service whose appends never return, until cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def _stuck(self, *args: Any, **kwargs: Any) -> Any:
        self.started.set()
        await asyncio.Event().wait()

    assign = reassign = requeue = _stuck


def world(log: Log) -> tuple[Dispatcher, Fleet, StuckWrites]:
    agents, board, position = AgentHealth(), TaskBoard(), Position()
    for event in log.events:
        agents.apply(event)
        board.apply(event)
        position.advance(event.position)
    fleet = Fleet(agents, board, position)
    writes = StuckWrites()
    clock = log.events[-1].recorded_at.timestamp() + ACCEPT_TIMEOUT + 1.0
    dispatcher = Dispatcher(board, fleet, writes, Strategy.LEAST_LOADED,  # type: ignore[arg-type]
                            ACCEPT_TIMEOUT, Metrics(), clock=lambda: clock)
    return dispatcher, fleet, writes


def agents(log: Log, *ids: str) -> None:
    for agent_id in ids:
        log.record("agent", Agent(agent_id, ["cpu"], 4, {}, []))


async def cancelled_round(dispatcher: Dispatcher, writes: StuckWrites) -> None:
    round_ = asyncio.create_task(dispatcher.round())
    await asyncio.wait_for(writes.started.wait(), 5)
    round_.cancel()
    with pytest.raises(asyncio.CancelledError):
        await round_


async def test_a_placement_cancelled_mid_write_is_not_kept_reserved() -> None:
    log = Log()
    agents(log, "a1")
    log.record("task", Task("t1", "work", None, ["cpu"], 0, 3, 30.0, "fp"))
    dispatcher, fleet, writes = world(log)

    await cancelled_round(dispatcher, writes)

    assert not fleet.in_flight("t1")


async def test_a_move_cancelled_mid_write_is_not_kept_reserved() -> None:
    log = Log()
    agents(log, "a1", "a2")
    task = Task("t1", "work", None, ["cpu"], 0, 3, 30.0, "fp")
    task.assign("a1", 1, "tok-1", "least_loaded", [], 0.0)  # never accepted
    log.record("task", task)
    dispatcher, fleet, writes = world(log)

    await cancelled_round(dispatcher, writes)  # the accept timeout's move

    assert not fleet.in_flight("t1")


def test_a_new_term_forgets_reservations_whose_writes_never_began() -> None:
    log = Log()
    agents(log, "a1")
    log.record("task", Task("t1", "work", None, ["cpu"], 0, 3, 30.0, "fp"))
    _, fleet, _ = world(log)
    fleet.reserve("t1", "a1")  # a write cancelled before its first step
    fleet.note("t2", "a1", 10**6)  # written, not yet applied: still counts

    fleet.forget_unwritten()

    assert not fleet.in_flight("t1")
    assert fleet.in_flight("t2")
