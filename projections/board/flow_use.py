"""What the tasks on the board use of their limits (domain/limits/limit.py): per concurrency key
the tasks open (assigned or running) and waiting, and its token bucket; per submitter its
unfinished tasks. Kept by the board as tasks enter and leave its indexes, so a board
restored from a snapshot counts them again; a bucket starts full after a restore (the
snapshot does not hold it), which may let one burst more through once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from domain.limits.limit import KeyLimit, TokenBucket
from projections.board.task_view import TaskView

NO_LIMIT = KeyLimit()


class FlowUse:
    def __init__(self) -> None:
        self.open: Counter[str] = Counter()  # concurrency key -> tasks assigned or running
        self.waiting: Counter[str] = Counter()  # concurrency key -> tasks waiting
        self.unfinished: Counter[str] = Counter()  # submitter -> tasks not finished
        self.total_unfinished = 0
        self.buckets: dict[str, TokenBucket] = {}
        # A key's limits as the log has them at this point (projections/limits.py).
        self.limit_of: Callable[[str], KeyLimit | None] = lambda key: None

    def entered(self, view: TaskView, waiting: bool) -> None:
        key = view.concurrency_key
        if key:
            (self.waiting if waiting else self.open)[key] += 1
        self.unfinished[view.submitter] += 1
        self.total_unfinished += 1

    def left(self, view: TaskView, waiting: bool) -> None:
        key = view.concurrency_key
        if key:
            _down(self.waiting if waiting else self.open, key)
        _down(self.unfinished, view.submitter)
        self.total_unfinished -= 1

    def placed(self, key: str, at: float) -> None:
        """A placement of a task of the key, at the log's time: it takes a token."""
        limit = self.limit_of(key)
        if limit is None or limit.rate_per_s is None:
            self.buckets.pop(key, None)
            return
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket.full(limit)
        bucket.take(limit, at)

    def tokens(self, key: str, limit: KeyLimit, now: float) -> float:
        bucket = self.buckets.get(key)
        return (bucket or TokenBucket.full(limit)).available(limit, now)

    def next_token_at(self, key: str, limit: KeyLimit, now: float, pending: int = 0) -> float:
        bucket = self.buckets.get(key) or TokenBucket.full(limit)
        return bucket.next_token_at(limit, now, pending)


def _down(counter: Counter[str], key: str) -> None:
    left = counter[key] - 1
    if left > 0:
        counter[key] = left
    else:
        del counter[key]
