"""Counts by status kept as events apply, against counting the views afresh."""

from __future__ import annotations

import contextlib
import random
from typing import Any

from domain.agents.agent import Agent
from domain.errors import CommandRefused
from domain.tasks.task import Task
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.status_counts import StatusCounts
from tests.unit.log_events import Log


def afresh(views: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for view in views.values():
        totals[view.status] = totals.get(view.status, 0) + 1
    return totals


def test_agent_and_task_counts_follow_every_event_and_the_count_bound() -> None:
    draw = random.Random(7)
    log = Log()
    agents = {f"a{i}": Agent(f"a{i}", ["cpu"], 4, {}, []) for i in range(12)}
    for agent in agents.values():
        log.record("agent", agent)
    health, board = AgentHealth(), TaskBoard(finished_limit=5)
    applied = 0

    def catch_up() -> None:
        nonlocal applied
        for event in log.events[applied:]:
            health.apply(event)
            board.apply(event)
        applied = len(log.events)

    catch_up()
    assert health.counts() == afresh(health.agents)  # the first count is made afresh
    for number in range(60):
        agent = agents[f"a{draw.randrange(12)}"]
        step = draw.randrange(5)
        with contextlib.suppress(CommandRefused):  # a refused step records nothing
            if step == 0:
                agent.suspect(agent.incarnation, 1.0, 0.5, 0)
            elif step == 1:
                agent.declare_dead(agent.incarnation, 2.0, 1.0, 0)
            elif step == 2:
                agent.drain()
            elif step == 3:
                agent.deregister(agent.incarnation)
        log.record("agent", agent)
        task = Task(f"t{number}", "work", None, [], 0, 3, 30.0, "fp")
        task.assign("a0", 1, f"tok{number}", "least_loaded", [], 0.0)
        if draw.random() < 0.7:
            task.accept(f"tok{number}")
            task.complete(f"tok{number}", None)
        log.record("task", task)
        catch_up()
        assert health.counts() == afresh(health.agents)
        assert board.counts() == afresh(board.tasks)
    statuses = set(health.counts())
    assert {"healthy", "left"} <= statuses and statuses & {"suspect", "dead"}
    assert set(board.counts()) == {"assigned", "completed"}
    assert board.counts()["completed"] == 5  # the count bound dropped the others


def test_counts_are_made_afresh_for_another_dict_or_views_entered_around_apply() -> None:
    counts = StatusCounts(lambda status: status)
    views = {"a": "healthy", "b": "dead"}
    assert counts.totals(views) == {"healthy": 1, "dead": 1}
    views["c"] = "healthy"  # entered without an event (as a snapshot's restore does)
    assert counts.totals(views) == {"healthy": 2, "dead": 1}
    other = {"x": "left"}
    counts.moved(other, None, "left")  # not the dict counted: ignored
    assert counts.totals(other) == {"left": 1}
