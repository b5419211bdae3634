"""Recorded heartbeats, read back from the heartbeat stream for what-if replays."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from nats.js import JetStreamContext

from infra.names import Names
from services.audit.stream_read import stored_messages


@dataclass(frozen=True)
class RecordedBeat:
    agent_id: str
    at: float  # server receive time, seconds since the epoch
    incarnation: int


async def recorded_heartbeats(js: JetStreamContext, names: Names,
                              agent_id: str | None = None) -> list[RecordedBeat]:
    """Every heartbeat the stream still holds (the last ORCH_HEARTBEAT_HISTORY per agent)."""
    subject = names.heartbeat(agent_id) if agent_id else names.heartbeats_wildcard
    return [_beat(names, m.subject, m.data, m.metadata.timestamp.timestamp())
            async for m in stored_messages(js, names.heartbeats_stream, subject)]


def _beat(names: Names, subject: str, data: bytes, at: float) -> RecordedBeat:
    try:
        incarnation = int(orjson.loads(data).get("incarnation", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        incarnation = 0
    return RecordedBeat(names.agent_id_of_heartbeat(subject), at, incarnation)
