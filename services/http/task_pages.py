"""The newest tasks first (`/v1/tasks?order=newest`): the dashboard's task list, where
what was just submitted matters most. Pages go back in submission order with `before`
(the `next_after` of the page before)."""

from __future__ import annotations

import heapq
from operator import attrgetter

from projections.board.tasks import HeldTask, TaskBoard

_submitted = attrgetter("submitted_position")


def newest_first(board: TaskBoard, status: str | None, agent_id: str | None,
                 kind: str | None, before: int | None, limit: int) -> list[HeldTask]:
    """Tasks matching the filters, newest first, submitted before position `before`."""
    found = (
        v for v in board.tasks.values()
        if (status is None or v.status == status)
        and (agent_id is None or v.agent_id == agent_id)
        and (kind is None or v.kind == kind)
        and (before is None or v.submitted_position < before)
    )
    return heapq.nlargest(limit, found, key=_submitted)
