"""A running task's feed to its submitter: the partial output its agent streams, and its
progress, relayed over core NATS and never written to the log one by one.

An agent writes a chunk on `<prefix>.agent.<agent_id>.stream.<task_id>`, under its own
subjects: NATS lets no other identity publish there. One orchestrator (a queue group)
relays it to `<prefix>.stream.<submitter>.<task_id>.<agent_id>` only while that agent
holds the task
(the board says so), so no agent can write into another's task, and no one but the
submitter can read it. Chunks carry the agent's sequence number (`Orch-Seq`); the client
puts them in order. Progress reports, which the log keeps only now and then
(services/commands/tasks.py), are relayed the same way, as `Orch-Progress` messages.
"""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from infra.names import Names
from projections.board.submitters import Submitters
from projections.board.tasks import TaskBoard
from services.metrics import Metrics

log = logging.getLogger(__name__)

QUEUE = "orchestrator-feed"
MAX_CHUNK_BYTES = 64 * 1024
SEQ_HEADER = "Orch-Seq"
PROGRESS_HEADER = "Orch-Progress"


class TaskFeed:
    def __init__(self, nc: Client, names: Names, board: TaskBoard, submitters: Submitters,
                 metrics: Metrics) -> None:
        self.nc = nc
        self.names = names
        self.board = board
        self.submitters = submitters
        self.metrics = metrics
        self._subscription: Any = None

    async def start(self) -> None:
        self._subscription = await self.nc.subscribe(self.names.agent_streams_wildcard,
                                                     queue=QUEUE, cb=self._on_chunk)

    async def stop(self) -> None:
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except nats.errors.Error as exc:  # the connection may be gone already
                log.debug("task feed not unsubscribed: %r", exc)
            self._subscription = None

    async def _on_chunk(self, msg: Msg) -> None:
        tokens = msg.subject.split(".")
        agent_id, task_id = tokens[-3], tokens[-1]
        view = self.board.get(task_id)
        if view is None or not view.is_open or view.agent_id != agent_id:
            self.metrics.feed_messages.labels("chunk", "not_holder").inc()
            return  # not this agent's task (any more): dropped
        if len(msg.data) > MAX_CHUNK_BYTES:
            self.metrics.feed_messages.labels("chunk", "too_large").inc()
            return
        seq = (msg.headers or {}).get(SEQ_HEADER, "")
        await self._tell(task_id, agent_id, "chunk", msg.data,
                         {SEQ_HEADER: seq} if seq else None)

    async def progress(self, task_id: str, value: float) -> None:
        """An accepted progress report, to the submitter (TaskService.on_progress)."""
        view = self.board.get(task_id)
        agent_id = getattr(view, "agent_id", None) or "_"
        await self._tell(task_id, agent_id, "progress", b"", {PROGRESS_HEADER: repr(value)})

    async def _tell(self, task_id: str, agent_id: str, kind: str, data: bytes,
                    headers: dict[str, str] | None) -> None:
        submitter = self.submitters.of(task_id)
        if not submitter:
            self.metrics.feed_messages.labels(kind, "no_submitter").inc()
            return
        try:
            await self.nc.publish(self.names.task_feed(submitter, task_id, agent_id), data,
                                  headers=headers)
        except nats.errors.Error as exc:
            log.debug("task feed not relayed task=%s: %r", task_id, exc)
            self.metrics.feed_messages.labels(kind, "unsent").inc()
            return
        self.metrics.feed_messages.labels(kind, "relayed").inc()
