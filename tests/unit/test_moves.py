"""Moves off a dead agent follow the placement strategy: round_robin takes turns."""

from __future__ import annotations

from typing import Any

from domain.agent import Agent
from domain.placement import Strategy
from domain.task import Task
from projections.agents import AgentHealth
from projections.position import Position
from projections.tasks import TaskBoard
from services.commands.execute import Outcome
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


async def test_round_robin_moves_take_turns() -> None:
    log = Log()
    for agent_id in ("dead", "b", "c", "d"):
        log.record("agent", Agent(agent_id, [], 10, {}, []))
    for number in range(6):
        task = Task(f"t{number}", "work", None, [], 0, 3, 30.0, "fp")
        task.assign("dead", 1, f"tok-{number}", "round_robin", [], 0.0)
        log.record("task", task)
    agents, board, position = AgentHealth(), TaskBoard(), Position()
    for event in log.events:
        agents.apply(event)
        board.apply(event)
    fleet = Fleet(agents, board, position)
    moves = RecordedMoves()
    plan = {c.agent_id: c for c in fleet.candidates() if c.agent_id != "dead"}

    for view in board.open_tasks_of("dead"):
        await move(moves, fleet, view, "dead", Strategy.ROUND_ROBIN,  # type: ignore[arg-type]
                   reason="agent_dead", causation_id="ev", plan=plan)

    assert [moves.to[f"t{n}"] for n in range(6)] == ["b", "c", "d", "b", "c", "d"]
