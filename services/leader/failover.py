"""The failover reactor: when an agent incarnation is gone, its open tasks move.

It consumes DeclaredDead (the missed-heartbeat decision), Deregistered and Reregistered
events from the log through a durable feed (infra.log.durable: on JetStream, a durable
consumer), acknowledging each only once every task of that incarnation has moved; a
crash in between redelivers the event, and moving is idempotent (a task that already
moved is left alone). An event is given back to the feed, to come again shortly, when
its reaction fails (a move refused while the bus recovers, say) or when the task board
has not caught up with it in time (moving then could leave behind a task assigned just
before the death); while a reaction goes on, its events are kept from coming again (in
progress), however long it waits its turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from domain.tasks.placement import Strategy
from infra.log.durable import Delivery, DurableFeed, DurableSpec, DurableSubscription
from infra.log.recorded import RecordedEvent, StoreUnavailable
from infra.names import AGENT, Names
from projections.board.tasks import TaskBoard
from projections.position import Position
from services.leader.dispatcher import move
from services.leader.fleet import Fleet
from services.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

TRIGGERS = ("DeclaredDead", "Deregistered", "Reregistered")
CONSUMER = "failover"
# Events handled at once: a mass failure moves every agent's tasks in parallel.
BATCH = 256
# An event not acknowledged this long after its delivery comes again.
ACK_WAIT_S = 30.0
# A reaction going on says so this often, well within ACK_WAIT_S.
IN_PROGRESS_EVERY_S = ACK_WAIT_S / 3
# A reaction that failed is tried again this much later, not ACK_WAIT_S later.
RETRY_AFTER_S = 1.0
_REASONS = {
    "DeclaredDead": "agent declared dead",
    "Deregistered": "agent deregistered",
    "Reregistered": "agent restarted",
}


def failover_feed(names: Names) -> DurableSpec:
    """The reactor's feed: every agent's triggers from the log's start, explicit acks,
    at most BATCH outstanding (bounding the moves going on at once)."""
    return DurableSpec(CONSUMER, tuple(names.event(AGENT, "*", name) for name in TRIGGERS),
                       ack_wait=ACK_WAIT_S, max_ack_pending=BATCH)


class FailoverReactor:
    def __init__(self, feed: DurableFeed, board: TaskBoard, fleet: Fleet, tasks: Any,
                 position: Position, strategy: Strategy, metrics: Metrics) -> None:
        self.feed = feed  # failover_feed(names), on the log's adapter
        self.board = board
        self.fleet = fleet
        self.tasks = tasks
        self.position = position
        self.strategy = strategy
        self.metrics = metrics
        self._reacting: dict[str, asyncio.Future[None]] = {}  # the latest reaction per agent
        self._running: set[asyncio.Future[None]] = set()  # every reaction not finished
        # How long a batch waits for the board to catch up with it before it is given
        # back (it comes again RETRY_AFTER_S later).
        self.catch_up_timeout = ACK_WAIT_S / 2

    async def run(self) -> None:
        subscription: DurableSubscription | None = None
        try:
            while True:
                try:
                    if subscription is None:
                        subscription = await self.feed.subscribe()
                    deliveries = await subscription.next_batch(BATCH)
                except TimeoutError:
                    continue
                except StoreUnavailable as exc:
                    log.warning("failover consumer unavailable: %r", exc)
                    subscription = None
                    await asyncio.sleep(0.5)
                    continue
                if not deliveries:
                    continue
                events = [delivery.event for delivery in deliveries]
                # The board must know every assignment made before these events.
                if not await _giving_back_if_cancelled(deliveries, self.position.wait_for(
                        events[-1].position, self.catch_up_timeout)):
                    log.warning("failover deferred: the task board is behind the log "
                                "(at %d of %d); %d events given back", self.position.value,
                                events[-1].position, len(deliveries))
                    await _give_back(deliveries, RETRY_AFTER_S)
                    continue
                by_agent: dict[str, list[tuple[Delivery, RecordedEvent]]] = {}
                for delivery, event in zip(deliveries, events, strict=True):
                    by_agent.setdefault(event.aggregate_id, []).append((delivery, event))
                for agent_id, group in by_agent.items():
                    self._react_after(agent_id, group)
        finally:
            if subscription is not None:
                # First: a pull request of ours still waiting at the server would take
                # the events the reactions give back, and hold them for the ack wait.
                await subscription.close()
            await self._stop_reactions()

    async def _stop_reactions(self) -> None:
        """Cancel every reaction, not only each agent's latest: cancelling one that waits
        on an earlier one does not cancel that one, and a lost lead must stop moving."""
        running = list(self._running)
        for reaction in running:
            reaction.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._running.clear()
        self._reacting.clear()

    def _react_after(self, agent_id: str, group: list[tuple[Delivery, RecordedEvent]]) -> None:
        """React to an agent's events once its earlier ones are done, without holding
        up other agents': deaths that come while an earlier batch's tasks are still
        moving move at once (the consumer's max_ack_pending bounds how many at a time)."""
        earlier = self._reacting.get(agent_id)
        reaction = asyncio.ensure_future(self._react_in_order(group, earlier))
        self._reacting[agent_id] = reaction
        self._running.add(reaction)

        def done(finished: asyncio.Future[None]) -> None:
            self._running.discard(finished)
            if self._reacting.get(agent_id) is finished:
                del self._reacting[agent_id]
            if not finished.cancelled() and finished.exception() is not None:
                # Not a failed move (those are given back): the events come again after
                # the ack wait.
                log.error("failover of agent %s stopped: %r", agent_id, finished.exception())

        reaction.add_done_callback(done)

    async def _react_in_order(self, group: list[tuple[Delivery, RecordedEvent]],
                              earlier: asyncio.Future[None] | None) -> None:
        waiting = [delivery for delivery, _ in group]  # not acknowledged yet
        keeping = asyncio.ensure_future(_keep_in_progress(waiting))
        try:
            await _giving_back_if_cancelled(waiting, self._react_to(group, earlier, waiting))
        finally:
            keeping.cancel()

    async def _react_to(self, group: list[tuple[Delivery, RecordedEvent]],
                        earlier: asyncio.Future[None] | None,
                        waiting: list[Delivery]) -> None:
        if earlier is not None:
            await asyncio.wait({earlier})  # its failure is its own (given back)
        for delivery, event in group:
            try:
                await self.react(event)
            except Exception as exc:  # this and the agent's later events come again
                log.error("failover of agent %s failed, tried again in %.0fs: %r",
                          event.aggregate_id, RETRY_AFTER_S, exc)
                await _give_back(waiting, RETRY_AFTER_S)
                return
            waiting.remove(delivery)
            await delivery.ack()

    async def react(self, event: RecordedEvent) -> None:
        agent_id = event.aggregate_id
        incarnation = int(event.data()["incarnation"])
        reason = _REASONS[event.name]
        stranded = [
            view for view in self.board.open_tasks_of(agent_id)
            if (view.incarnation < incarnation if event.name == "Reregistered"
                else view.incarnation <= incarnation)
        ]
        deadline = self._dead_deadline(event)
        await asyncio.gather(*(
            self._move(view, agent_id, reason, event.event_id, deadline)
            for view in stranded))
        self.metrics.decisions.labels("moved").inc(len(stranded))
        log.info("failover done agent=%s incarnation=%d trigger=%s", agent_id, incarnation,
                 event.name)

    async def _move(self, view: Any, agent_id: str, reason: str, cause: str,
                    deadline: float | None) -> None:
        moved_to = await move(self.tasks, self.fleet, view, agent_id, self.strategy,
                              reason=reason, causation_id=cause)
        if moved_to is not None and deadline is not None:
            self.metrics.failover_time.observe(max(0.0, time.time() - deadline))

    def _dead_deadline(self, event: RecordedEvent) -> float | None:
        """A death's dead deadline (last heard + dead_after, wall clock), its lateness
        observed; None for the other triggers."""
        if event.name != "DeclaredDead":
            return None
        data = event.data()
        recorded = event.recorded_at.timestamp()
        view = self.fleet.agents.get(event.aggregate_id)
        if view is not None and view.incarnation == int(data["incarnation"]):
            deadline = view.last_heard_at.timestamp() + float(data["dead_after_s"])
        else:  # re-registered meanwhile: the silence the monitor measured
            deadline = recorded - (float(data["silence_s"]) - float(data["dead_after_s"]))
        self.metrics.death_lateness.observe(max(0.0, recorded - deadline))
        return deadline


async def _give_back(deliveries: list[Delivery], delay: float) -> None:
    """Redelivered `delay` seconds from now, at once if 0 (if the log cannot be told,
    after the ack wait). Taken out of `deliveries` first: one said to be in progress after
    it was given back would wait the whole ack wait again."""
    given = list(deliveries)
    deliveries.clear()
    for delivery in given:
        await delivery.nak(delay=delay)


async def _giving_back_if_cancelled(deliveries: list[Delivery], work: Awaitable[T]) -> T:
    """The work's result; if it is cancelled (the lead lost), the events not acknowledged
    are given back at once, for the next leader's reactor now rather than after ACK_WAIT_S."""
    try:
        return await work
    except asyncio.CancelledError:
        await _give_back(deliveries, 0)
        raise


async def _keep_in_progress(deliveries: list[Delivery]) -> None:
    """Tell the feed these events are being handled, so that none comes again while
    its reaction waits for an earlier one or moves many tasks; until cancelled."""
    while True:
        await asyncio.sleep(IN_PROGRESS_EVERY_S)
        for delivery in list(deliveries):
            await delivery.in_progress()
