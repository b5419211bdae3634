"""An agent as the read API shows it: its view, with what still runs on it as the board
says once it is dead or gone (its last heartbeat's list is history by then)."""

from __future__ import annotations

from typing import Any

from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentView

_ENDED = ("dead", "left")


def agent_json(view: AgentView, board: TaskBoard) -> dict[str, Any]:
    """`running` and `load` of a dead or departed agent are the tasks the board still
    holds on it (none once they moved off), not those of its last heartbeat."""
    body = view.to_json()
    if body["status"] in _ENDED:
        running = sorted(task.task_id for task in board.open_tasks_of(view.agent_id))
        body["running"] = running
        body["load"] = round(len(running) / view.capacity, 3) if view.capacity else 0.0
    return body
