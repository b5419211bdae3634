"""Who submitted each unfinished task, so that its outcome can be sent to its submitter
alone (services/results.py) when it finishes. Only open tasks are held: the entry goes
when the task finishes, handed over as `finished`."""

from __future__ import annotations

import sys

from projections.log_event import LogEvent

# The events that end a task: its outcome is due to its submitter.
FINISHING = frozenset({"Completed", "DeadLettered", "Cancelled"})


class Submitters:
    def __init__(self) -> None:
        self._of: dict[str, str] = {}  # task id -> submitter identity
        # The task the last applied event finished, and its submitter ("" when unknown:
        # submitted before the projection was restored from a snapshot, which holds none).
        self.finished: tuple[str, str] | None = None

    def apply(self, event: LogEvent) -> None:
        if self.finished is not None:
            self.finished = None
        if event.kind != "task":
            return
        if event.name == "Submitted":
            submitter = event.data().get("submitted_by") or ""
            if submitter:  # identities repeat: one string each
                self._of[event.aggregate_id] = sys.intern(submitter)
        elif event.name in FINISHING:
            self.finished = (event.aggregate_id, self._of.pop(event.aggregate_id, ""))

    def of(self, task_id: str) -> str | None:
        return self._of.get(task_id)

    def __len__(self) -> int:
        return len(self._of)
