"""Reading the durable liveness record what-if replays: silences the detector saw, and
when it watched. The leader's health monitor writes it (services/health/liveness_record.py,
which says how); outside every watch nothing is known: a replay reports that as unknown
coverage, never as silence.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from domain.agents.what_if import Span, merged
from infra.names import Names
from services.audit.stream_read import stored_messages
from services.health.liveness_record import MARK_EVERY_S

log = logging.getLogger(__name__)

# A watch whose last mark is this recent is taken to go on until now.
ONGOING_WITHIN_S = 5 * MARK_EVERY_S


@dataclass(frozen=True)
class RecordedSilence:
    incarnation: int
    start: float
    end: float


@dataclass
class LivenessRecord:
    """The record as read back: silences by agent, and the spans it was kept."""

    silences: dict[str, list[RecordedSilence]] = field(default_factory=dict)
    watched: list[Span] = field(default_factory=list)
    resolution: float | None = None
    retention_s: float | None = None
    messages: int = 0
    bytes: int = 0


async def read_record(js: JetStreamContext, names: Names, now: float,
                      progress: Callable[[int, int], None] | None = None) -> LivenessRecord:
    """Every message of the liveness stream; an empty record if there is none."""
    stream = names.liveness_stream
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return LivenessRecord()
    record = LivenessRecord(retention_s=info.config.max_age or None,
                            messages=info.state.messages, bytes=info.state.bytes)
    silences: dict[str, list[RecordedSilence]] = defaultdict(list)
    watches: list[Span] = []
    silence_prefix = names.liveness_silence("")
    done = 0
    async for msg in stored_messages(js, stream, names.liveness_wildcard):
        subject, data = msg.subject, msg.data
        done += 1
        if progress is not None:
            progress(done, record.messages)
        try:
            body = orjson.loads(data)
            if subject.startswith(silence_prefix):
                silences[subject[len(silence_prefix):]].append(RecordedSilence(
                    int(body["i"]), float(body["f"]), float(body["t"])))
            else:
                watches.append(Span(float(body["f"]), float(body["t"])))
                record.resolution = float(body["r"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("liveness record: malformed message on %s", subject)
    kept_since = now - record.retention_s if record.retention_s else -float("inf")
    record.watched = merged(_clipped(watches, kept_since, now))
    record.silences = {a: sorted(s, key=lambda x: x.start) for a, s in silences.items()}
    return record


def _clipped(watches: list[Span], kept_since: float, now: float) -> list[Span]:
    """Watches within what the stream still holds; the latest one, marked recently,
    goes on until now."""
    latest = max((w.end for w in watches), default=None)
    spans = []
    for watch in watches:
        end = now if watch.end == latest and now - watch.end <= ONGOING_WITHIN_S else watch.end
        start = max(watch.start, kept_since)
        if end > start:
            spans.append(Span(start, end))
    return spans
