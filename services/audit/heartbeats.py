"""Recorded heartbeats, read back from the heartbeat stream for what-if replays."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import nats.errors
import orjson
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from infra.names import Names

_BATCH = 1000


@dataclass(frozen=True)
class RecordedBeat:
    agent_id: str
    at: float  # server receive time, seconds since the epoch
    incarnation: int


async def recorded_heartbeats(js: JetStreamContext, names: Names,
                              agent_id: str | None = None) -> list[RecordedBeat]:
    """Every heartbeat the stream still holds (the last ORCH_HEARTBEAT_HISTORY per agent)."""
    subject = names.heartbeat(agent_id) if agent_id else names.heartbeats_wildcard
    stream = names.heartbeats_stream
    info = await js.add_consumer(stream, ConsumerConfig(
        filter_subject=subject, deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE, mem_storage=True, inactive_threshold=30.0))
    beats: list[RecordedBeat] = []
    remaining = info.num_pending or 0
    try:
        if remaining:
            sub = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
            try:
                while remaining > 0:
                    msgs = await sub.fetch(min(remaining, _BATCH), timeout=5)
                    remaining -= len(msgs)
                    beats += [_beat(names, m.subject, m.data, m.metadata.timestamp.timestamp())
                              for m in msgs]
            finally:
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.delete_consumer(stream, info.name)
    return beats


def _beat(names: Names, subject: str, data: bytes, at: float) -> RecordedBeat:
    try:
        incarnation = int(orjson.loads(data).get("incarnation", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        incarnation = 0
    return RecordedBeat(names.agent_id_of_heartbeat(subject), at, incarnation)
