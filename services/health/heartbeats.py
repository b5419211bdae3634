"""Heartbeat intake: the heartbeat stream feeds the health projection and the monitor.

The monitor is told the stream sequence of every heartbeat applied, so it can tell when
the intake has caught up with the stream's last sequence (its evidence is current only
then). A watchdog replaces the consumer if it stops following a stream that moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from domain.agents.commands import ControlMessage, Heartbeat
from domain.fields import ID_PATTERN
from infra.bus.direct import deliver_directly
from infra.log.event_store import position_and_time
from infra.names import Names
from projections.fleet.agents import AgentHealth
from projections.position import Position
from services.health.liveness_record import LivenessRecorder
from services.health.monitor import HealthMonitor
from services.metrics import Metrics, Tally

log = logging.getLogger(__name__)

_AGENT_ID = re.compile(ID_PATTERN)
_TOLD_LIMIT = 10_000
# How often the watchdog compares the consumer's position with the stream's.
WATCHDOG_INTERVAL_S = 2.0


class HeartbeatIntake:
    """Applies each heartbeat; tells agents we do not know (any more) to re-register, and
    deregistered ones that still beat to stop."""

    def __init__(
        self, nc: Client, js: JetStreamContext, names: Names, projection: AgentHealth,
        monitor: HealthMonitor, metrics: Metrics, reregister_every: float,
        log_nc: Client | None = None, position: Position | None = None,
    ) -> None:
        # `nc` sends control messages; the liveness record is written through `log_nc`
        # (the connection that writes streams, infra.auth.own_users), `nc` if not given.
        self.nc = nc
        # How far this process's projections have applied the log: an agent whose beat
        # says it registered further on is not unknown, only not applied here yet.
        self.position = position or Position()
        self.js = js
        self.names = names
        self.projection = projection
        self.monitor = monitor
        self.metrics = metrics
        self.reregister_every = reregister_every
        self._told: dict[str, float] = {}
        # Bound once: a label lookup per heartbeat was a measurable share of intake.
        # Applied beats and their lag, handed to prometheus at scrape time.
        self._applied = Tally(metrics.heartbeats.labels("applied"), metrics.heartbeat_lag)
        metrics.on_scrape(self._applied.flush)
        self._invalid = metrics.heartbeats.labels("invalid")
        self._unknown = metrics.heartbeats.labels("unknown")
        self._subscription: Any = None
        self._generation = 0  # of the subscription: a replaced one's messages are ignored
        self.delivered = 0  # stream sequence of the newest heartbeat taken in
        self._watchdog: asyncio.Task[None] | None = None
        self._restarting = asyncio.Lock()
        # Silences the monitor sees, written for what-if (every replica runs one; only
        # the leader's monitor reports silences and watches).
        self.liveness = LivenessRecorder(log_nc or nc, names, monitor,
                                         monitor.settings.heartbeat_interval)

    async def start(self) -> None:
        await self._subscribe()
        self.liveness.start()
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(self._watch())

    async def _subscribe(self) -> None:
        self._generation += 1
        generation = self._generation
        self.delivered = 0
        self.monitor.heartbeat_consumer_replaced()

        # The last heartbeat per agent first, then live: start-up cost grows with
        # agents, not with history.
        self._subscription = await self.js.subscribe(
            self.names.heartbeats_wildcard,
            stream=self.names.heartbeats_stream,
            # One coroutine per heartbeat, not a closure's and a method's.
            cb=functools.partial(self._on_message, generation),
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=1.0,
            pending_msgs_limit=0,  # flow control of the ordered consumer bounds it
            pending_bytes_limit=0,
        )
        # Data messages straight from the read loop, without nats-py's Msg, queue and
        # task per heartbeat (half the intake's time at saturation).
        deliver_directly(self._subscription,
                         functools.partial(self._direct, generation))

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        await self.liveness.stop()
        await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        self._generation += 1  # whatever the old subscription still delivers is ignored
        if self._subscription is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self._subscription.unsubscribe()
            self._subscription = None

    async def restart(self) -> None:
        """Subscribe afresh: after a NATS restart the old consumer no longer exists."""
        async with self._restarting:  # the app and the watchdog may both ask
            await self._unsubscribe()
            await self._subscribe()

    async def _watch(self) -> None:
        """Replace the consumer when the stream moves on and it does not follow (an
        ordered consumer lost, or re-created while NATS could not answer)."""
        check = heartbeat_stream_check(self.js, self.names)
        previous = -1
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            try:
                last = await check()
            except Exception as exc:
                log.debug("heartbeat watchdog: %r", exc)
                previous = -1
                continue
            if self._subscription is not None and last > self.delivered == previous:
                log.warning("heartbeat consumer stalled delivered=%d stream=%d; "
                            "subscribing again", self.delivered, last)
                try:
                    await self.restart()
                except Exception as exc:
                    log.warning("heartbeat consumer not replaced: %r", exc)
                previous = -1
                continue
            previous = self.delivered

    async def _on_message(self, generation: int, msg: Msg) -> None:
        """A heartbeat delivered the usual way (the first of a subscription): see
        `_direct` for the others."""
        if generation != self._generation:
            return  # a replaced subscription's
        # The sequence and time from the reply subject, without nats-py's Metadata object
        # per message (a tenth of the intake's time at saturation).
        sequence, at = position_and_time(msg.reply)
        pending = self._take(msg.subject, sequence, at, msg.data)
        if pending is not None:
            await pending

    def _direct(self, generation: int, subject: bytes, sequence: int, at: datetime,
                data: bytes, headers: dict[str, str] | None) -> Awaitable[None] | None:
        """A heartbeat handed over in the connection's read loop (infra.bus.direct); its
        headers, if any, say nothing the intake reads."""
        if generation != self._generation:
            return None
        return self._take(subject.decode(), sequence, at, data)

    def _take(self, subject: str, sequence: int, at: datetime,
              data: bytes) -> Awaitable[None] | None:
        """Apply one heartbeat, or set it aside; what is left to await when an agent we
        do not know sent it (telling it to register again). Not a coroutine: one per
        heartbeat was a measurable share of intake."""
        try:
            unknown = self._apply(subject, at, data, sequence)
        finally:
            # Applied or set aside (invalid, unknown agent): either way taken in.
            if sequence > self.delivered:
                self.delivered = sequence
            self.monitor.heartbeat_applied(sequence)
        return None if unknown is None else self._tell_to_reregister(*unknown)

    def _apply(self, subject: str, at: datetime, data: bytes,
               sequence: int) -> tuple[str, int, int | None] | None:
        agent_id = self.names.agent_id_of_heartbeat(subject)
        if not _AGENT_ID.match(agent_id):
            self._invalid.inc()
            return None
        try:
            incarnation, seq, load, running, registered_at = read_beat(data)
        except ValidationError:
            self._invalid.inc()
            return None
        applied = self.projection.apply_heartbeat(agent_id, incarnation, seq, load, running, at)
        if applied:
            self._applied.observe(time.time() - at.timestamp())
            self.monitor.saw(agent_id, incarnation, sequence)
            return None
        self._unknown.inc()
        return agent_id, incarnation, registered_at

    async def _tell_to_reregister(self, agent_id: str, incarnation: int,
                                  registered_at: int | None) -> None:
        if registered_at is not None and self.position.value < registered_at:
            # Registered at a position our projections have not applied yet (another
            # replica took the registration): its next beat will be applied. Only a beat
            # without the position (older agents) is judged by the projection alone.
            return
        view = self.projection.get(agent_id)
        if view is not None and incarnation > view.incarnation:
            return  # ahead of our projection: its registration is on its way
        now = time.monotonic()
        if now - self._told.get(agent_id, 0.0) < self.reregister_every:
            return
        if len(self._told) > _TOLD_LIMIT:  # forget old entries; they only rate-limit
            self._told = {a: t for a, t in self._told.items()
                          if now - t < self.reregister_every}
        self._told[agent_id] = now
        if view is not None and view.left:
            # Deregistered (by an operator, a revocation, ORCH_DEREGISTER_DEAD_AFTER) while
            # the process runs on: told to stop, in case the word sent then was missed.
            message = ControlMessage(type="deregistered", reason="deregistered",
                                     incarnation=incarnation)
        else:
            reason = "unknown agent" if view is None else (
                "declared dead" if view.liveness == "dead" else "old incarnation"
            )
            message = ControlMessage(type="reregister", reason=reason, incarnation=incarnation)
        await self.nc.publish(
            self.names.agent_control(agent_id), message.model_dump_json().encode()
        )


_BEAT_FIELDS = frozenset(Heartbeat.model_fields)


def read_beat(data: bytes) -> tuple[int, int, float, list[str], int | None]:
    """A heartbeat's incarnation, seq, load, running tasks and the log position it
    registered at (None if not given); ValidationError for one
    the protocol refuses. The usual beat (no running tasks, a float load) is read with
    orjson and checked here, half the model's cost: what this accepts is a part of what
    the model accepts, with the same values (tests/unit/test_read_beat.py); anything
    else is left to the model."""
    try:
        beat = orjson.loads(data)
    except orjson.JSONDecodeError:
        beat = None
    if type(beat) is dict and beat.keys() <= _BEAT_FIELDS:
        incarnation, seq = beat.get("incarnation"), beat.get("seq")
        load, running = beat.get("load", 0.0), beat.get("running", _NONE)
        registered_at = beat.get("registered_at")
        if (type(incarnation) is int and incarnation >= 1 and type(seq) is int and seq >= 0
                and type(load) is float and 0.0 <= load <= 1.0
                and type(running) is list and not running
                and (registered_at is None
                     or (type(registered_at) is int and registered_at >= 1))):
            return incarnation, seq, load, [], registered_at
    model = Heartbeat.model_validate_json(data)
    return model.incarnation, model.seq, model.load, list(model.running), model.registered_at


_NONE: list[str] = []  # never changed: only compared


def heartbeat_stream_check(js: JetStreamContext, names: Names) -> Callable[[], Awaitable[int]]:
    """A look at the bus for the monitor: the heartbeat stream's last sequence, 0 when it
    holds no message (then there is nothing the consumer could still be missing)."""

    async def last_sequence() -> int:
        info = await js.stream_info(names.heartbeats_stream)
        state = info.state
        return int(state.last_seq or 0) if state.messages else 0

    return last_sequence
