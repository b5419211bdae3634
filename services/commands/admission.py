"""Admission control (domain/limits/limit.py): a new task past its submitter's bound of unfinished
tasks, or past the bound for all, is refused as `overloaded` and nothing is written.

The board counts the unfinished tasks it has applied. A submit let in is counted here
from then until the board has its event, so a burst of concurrent submits is held to the
bound before the board has applied any of them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from domain.errors import Overloaded
from projections.board.tasks import TaskBoard
from projections.limits import Limits

# How long a submitter refused as overloaded is told to wait before it tries again.
OVERLOADED_RETRY_AFTER_S = 1.0


class Admission:
    def __init__(self, board: TaskBoard, limits: Limits,
                 on_refused: Callable[[str], None] = lambda bound: None) -> None:
        self.board = board
        self.limits = limits
        self.on_refused = on_refused  # told each submit refused, by bound (metrics)
        self._admitting: Counter[str] = Counter()  # submitter -> let in, not on the board
        self._unapplied: deque[tuple[int, str]] = deque()  # (position written, submitter)

    def let_in(self, submitter: str) -> None:
        """Count a new task of the submitter, or refuse it (`Overloaded`)."""
        use, limits = self.board.flow, self.limits
        unapplied = self._unapplied
        while unapplied and unapplied[0][0] <= self.board.position:
            self._leave(unapplied.popleft()[1])
        quota = limits.quota(submitter)
        if quota and use.unfinished[submitter] + self._admitting[submitter] >= quota:
            raise Overloaded("submitter",
                             f"{submitter or 'this submitter'} has {quota} unfinished "
                             f"tasks, its bound; submit again when some have finished",
                             OVERLOADED_RETRY_AFTER_S)
        total = limits.max_unfinished_total
        if total and use.total_unfinished + self._admitting.total() >= total:
            raise Overloaded("total",
                             f"the orchestrator holds {total} unfinished tasks, its bound; "
                             f"submit again when some have finished", OVERLOADED_RETRY_AFTER_S)
        self._admitting[submitter] += 1

    def settled(self, submitter: str, position: int | None) -> None:
        """A task let in was written at `position` (counted until the board has it), or
        not written at all (None)."""
        if position is not None:
            self._unapplied.append((position, submitter))
        else:
            self._leave(submitter)

    def _leave(self, submitter: str) -> None:
        left = self._admitting[submitter] - 1
        if left > 0:
            self._admitting[submitter] = left
        else:
            del self._admitting[submitter]
