"""Reading every message a stream holds on a subject, once, for a replay."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from infra.bus import nats_internals
from infra.log import direct_read


async def stored_messages(js: JetStreamContext, stream: str,
                          subject: str) -> AsyncIterator[Msg]:
    """Every message on `subject`, oldest first, each with the subject it was stored on.

    By direct gets, not a consumer: an auditor, who reads this for what-if, may create
    none (services/auth/permissions.py)."""
    async for msg in direct_read.stored(nats_internals.connection_of(js), stream, subject):
        yield msg
