"""Reading every message a stream holds on a subject, once, for a replay."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

_BATCH = 1000


async def stored_messages(js: JetStreamContext, stream: str,
                          subject: str) -> AsyncIterator[Msg]:
    """Every message on `subject`, oldest first, through an ephemeral consumer that is
    deleted afterwards (and expires by itself if this reader dies)."""
    info = await js.add_consumer(stream, ConsumerConfig(
        filter_subject=subject, deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE, mem_storage=True, inactive_threshold=30.0))
    remaining = info.num_pending or 0
    try:
        if remaining:
            sub = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
            try:
                while remaining > 0:
                    msgs = await sub.fetch(min(remaining, _BATCH), timeout=5)
                    remaining -= len(msgs)
                    for msg in msgs:
                        yield msg
            finally:
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.delete_consumer(stream, info.name)
