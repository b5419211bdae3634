"""Moves off a dead agent follow the placement strategy: round_robin takes turns."""

from __future__ import annotations

from typing import Any

from domain.agents.agent import Agent
from domain.tasks.placement import Strategy
from domain.tasks.task import Task
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.position import Position
from services.execute import Outcome
from services.leader.dispatcher import move
from services.leader.fleet import Fleet
from tests.unit.log_events import Log


class RecordedMoves:
    """A task service that records where each task was moved (nothing is written)."""

    def __init__(self) -> None:
        self.to: dict[str, str] = {}

    async def reassign(self, task_id: str, from_agent: str, agent: Any, *args: Any) -> Outcome:
        self.to[task_id] = agent.agent_id
        return Outcome(None, [])


def projected(log: Log) -> tuple[TaskBoard, Fleet]:
    """The task board and placement's fleet as the log's events make them."""
    agents, board = AgentHealth(), TaskBoard()
    for event in log.events:
        agents.apply(event)
        board.apply(event)
    return board, Fleet(agents, board, Position())


async def test_round_robin_moves_take_turns() -> None:
    log = Log()
    for agent_id in ("dead", "b", "c", "d"):
        log.record("agent", Agent(agent_id, [], 10, {}, []))
    for number in range(6):
        task = Task(f"t{number}", "work", None, [], 0, 3, 30.0, "fp")
        task.assign("dead", 1, f"tok-{number}", "round_robin", [], 0.0)
        log.record("task", task)
    board, fleet = projected(log)
    moves = RecordedMoves()

    for view in board.open_tasks_of("dead"):
        await move(moves, fleet, view, "dead", Strategy.ROUND_ROBIN,  # type: ignore[arg-type]
                   reason="agent_dead", causation_id="ev")

    # "dead" is still healthy in the projection here: the move leaves it out itself.
    assert [moves.to[f"t{n}"] for n in range(6)] == ["b", "c", "d", "b", "c", "d"]


async def test_a_move_never_goes_back_to_the_agent_it_leaves_even_the_least_loaded() -> None:
    # An accept timeout moves a task off a live agent, which may be the least loaded:
    # the kept plan would choose it again, so the move sets it aside for that choice.
    log = Log()
    for agent_id in ("slow", "busy"):
        log.record("agent", Agent(agent_id, [], 10, {}, []))
    for number in range(3):
        task = Task(f"b{number}", "work", None, [], 0, 3, 30.0, "fp")
        task.assign("busy", 1, f"tok-b{number}", "least_loaded", [], 0.0)
        log.record("task", task)
    stuck = Task("t", "work", None, [], 0, 3, 30.0, "fp")
    stuck.assign("slow", 1, "tok-t", "least_loaded", [], 0.0)
    log.record("task", stuck)
    board, fleet = projected(log)
    moves = RecordedMoves()

    await move(moves, fleet, board.tasks["t"], "slow",  # type: ignore[arg-type]
               Strategy.LEAST_LOADED, reason="accept_timeout", causation_id="ev")

    assert moves.to == {"t": "busy"}
    # and "slow" is still a candidate for other tasks afterwards
    assert "slow" in fleet.plan(Strategy.LEAST_LOADED).candidates
