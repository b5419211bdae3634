"""Leader duty when the log is bounded (ORCH_LOG_MAX_AGE): nothing the orchestrator still
needs is lost when the server cuts events older than the bound.

The server cuts by age alone (the stream's `max_age`). Before an event is that old, the
keeper makes sure that
- every aggregate with events about to go that still matters (an agent, an identity, a
  task not finished) has its state carried forward: a `CarriedForward` event, newer, from
  which the aggregate is made whatever was before it (domain/base.py);
- a projection snapshot newer than those events exists, so start-up has a base that
  stands for everything cut.
What is let go: finished tasks, and the hourly logs of refused connections. Exporting
them first is the operator's (`orchestrator events --json --before N`).

It acts on events once they are half the bound old, so that a keeper stopped for less
than half the bound (a leader change, a restart) still acts in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from domain.base import anchored_on
from domain.errors import CommandRefused
from domain.tasks.task import TERMINAL
from infra.log.port import EventLog
from infra.log.recorded import HistoryCut
from infra.log.repository import Repository
from infra.names import TASK
from services.execute import execute
from services.leader.snapshots import Snapshots

log = logging.getLogger(__name__)

# Longest wait between rounds, whatever the bound: a round that finds nothing is cheap.
MAX_INTERVAL_S = 3600.0
# Rounds per half bound: each event is looked at this many times before it is cut.
ROUNDS_PER_HALF_BOUND = 4


class LogKeeper:
    def __init__(self, store: EventLog, repositories: Mapping[str, Repository],
                 snapshots: Snapshots, max_age: float,
                 may_need: Callable[[str, str], bool] = lambda kind, aggregate_id: True,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        # The aggregates carried forward, by kind; kinds not here are let go.
        self.repositories = repositories
        # Whether an aggregate may still be needed, as the projections see it: false for
        # a task finished (or forgotten by the board), which is then not read at all.
        self.may_need = may_need
        self.snapshots = snapshots
        self.max_age = max_age
        self.clock = clock
        self.scanned = 0  # events up to this position have been looked at this term
        self.carried = 0  # CarriedForward events written this term

    @property
    def interval(self) -> float:
        return min(MAX_INTERVAL_S, self.max_age / 2 / ROUNDS_PER_HALF_BOUND)

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception as exc:  # the next round tries again: never stop leading
                log.warning("log keeper round failed: %r", exc)
            await asyncio.sleep(self.interval)

    async def round(self) -> int:
        """Look at the events now half the bound old; returns the last position looked at."""
        horizon = self.clock() - self.max_age / 2
        touched: dict[tuple[str, str], None] = {}  # in log order
        last = self.scanned
        async for event in self.store.iterate(self.scanned):
            if event.recorded_at.timestamp() > horizon:
                break
            if event.kind in self.repositories and self.may_need(event.kind,
                                                                 event.aggregate_id):
                touched[event.kind, event.aggregate_id] = None
            last = event.position
        if last == self.scanned:
            return last
        for kind, aggregate_id in touched:
            await self._carry(kind, aggregate_id, horizon)
        if self.snapshots.written <= last:
            await self.snapshots.write()  # start-up's base must be newer than the cut
        self.scanned = last
        log.info("log keeper looked at events to position=%d aggregates=%d carried=%d",
                 last, len(touched), self.carried)
        return last

    async def _carry(self, kind: str, aggregate_id: str, horizon: float) -> None:
        def decide(aggregate: Any) -> Any:
            if aggregate is None or (kind == TASK and aggregate.status in TERMINAL):
                return None  # nothing to keep
            if anchored_on(aggregate).timestamp() > horizon:
                return None  # its history begins after what is cut
            aggregate.carry_forward()
            return aggregate

        try:
            outcome = await execute(self.repositories[kind], aggregate_id, decide, fresh=True)
        except HistoryCut as exc:
            # Cut before it was carried (the keeper was stopped longer than half the
            # bound): nothing left can make it again.
            log.error("log keeper: %s; it is lost", exc)
            return
        except CommandRefused as exc:
            raise RuntimeError(f"{kind} {aggregate_id} not carried forward: {exc}") from exc
        self.carried += len(outcome.positions)
