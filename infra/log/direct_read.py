"""Reading a stream by batched direct gets, over a plain nats-py connection.

What an auditor (and the local operator's CLI, which holds the auditor role) reads the
log, the heartbeats and the liveness record with. It may create no consumer: nats-server
does not check a push consumer's deliver subject against its creator's permissions, so
that right would let it have the server publish a stream's messages onto any subject,
an agent's control subject among them (services/auth/permissions.py). A direct get
answers the requester's own inbox and nothing else.

A batched request, `{"seq": start, "next_by_subj": subject, "batch": n}` on
`$JS.API.DIRECT.GET.<stream>`, is answered by up to n messages and an end-of-batch
status: 204 with how many more match (Nats-Num-Pending), or 404 when none matched. A
message's subject is then our inbox: its own subject, sequence and time are headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from infra.bus import nats_internals
from infra.bus.connection import flush_subscriptions
from infra.names import JsHeader

log = logging.getLogger(__name__)

DIRECT_GET = "$JS.API.DIRECT.GET."
SUBJECT, SEQUENCE, TIME_STAMP = JsHeader.SUBJECT, JsHeader.SEQUENCE, JsHeader.TIME_STAMP
_STATUS, _NUM_PENDING = JsHeader.STATUS, JsHeader.NUM_PENDING
# Messages asked for in one request: the server may send fewer (a byte bound), and says
# how many more there are.
PAGE = 500
# A follower looks again this often even if no notice came: one published while its
# connection was away is not sent again.
LOOK_EVERY_S = 5.0


class DirectGetError(nats.errors.Error):
    """The server answered a direct get with an error status."""


def recorded_at(stamp: str) -> datetime:
    """A direct get's `Nats-Time-Stamp` (RFC 3339, nanoseconds) as a UTC datetime: the
    one a consumer's delivery gives for the same message (infra.bus.direct), to the
    microsecond, so that an auditor's reading and the orchestrator's agree."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
    nanos = seconds * 1_000_000_000 + int((fraction + "000000000")[:9])
    return datetime.fromtimestamp(nanos / 1e9, UTC)


def sequence(msg: Msg) -> int:
    """The stream sequence of a message read by direct get."""
    return int((msg.headers or {})[SEQUENCE])


def where(msg: Msg) -> tuple[str, int, datetime]:
    """A direct-get message's stored subject, stream sequence and time."""
    headers = msg.headers or {}
    return headers[SUBJECT], int(headers[SEQUENCE]), recorded_at(headers[TIME_STAMP])


def as_stored(msg: Msg) -> Msg:
    """The message with the subject it was stored on, for readers that look at that."""
    return nats_internals.with_subject(msg, (msg.headers or {})[SUBJECT])


async def get_batch(nc: Client, stream: str, subject: str, start: int, batch: int,
                    timeout: float) -> tuple[list[Msg], int]:
    """Up to `batch` messages on `subject` (wildcards allowed) from sequence `start`, and
    how many more match after them."""
    # A fresh inbox per request: answers of an earlier request that timed out can never
    # be taken for this one's.
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, pending_msgs_limit=0, pending_bytes_limit=0)
    request = {"seq": max(start, 1), "next_by_subj": subject, "batch": batch}
    try:
        await nc.publish(DIRECT_GET + stream, orjson.dumps(request), reply=inbox)
        messages: list[Msg] = []
        while True:
            msg = await sub.next_msg(timeout)
            status = (msg.headers or {}).get(_STATUS)
            if status is None:
                messages.append(msg)
            elif status == "204":  # end of batch
                return messages, int((msg.headers or {}).get(_NUM_PENDING, "0"))
            elif status == "404":  # nothing (more) matched
                return messages, 0
            else:
                raise DirectGetError(f"direct get from {stream} failed with status {status}")
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def read(nc: Client, stream: str, subject: str, after: int, limit: int,
               timeout: float) -> list[Msg]:
    """Up to `limit` messages on `subject` with sequences above `after`, oldest first."""
    found: list[Msg] = []
    start = after + 1
    while len(found) < limit:
        batch, pending = await get_batch(nc, stream, subject, start,
                                         min(limit - len(found), PAGE), timeout)
        found.extend(batch)
        if not batch or pending == 0:
            break
        start = sequence(batch[-1]) + 1
    return found


async def stored(nc: Client, stream: str, subject: str,
                 timeout: float = 5.0) -> AsyncIterator[Msg]:
    """Every message on `subject`, oldest first, a page at a time, as stored (its own
    subject)."""
    start = 1
    while True:
        batch, pending = await get_batch(nc, stream, subject, start, PAGE, timeout)
        for msg in batch:
            yield as_stored(msg)
        if not batch or pending == 0:
            return
        start = sequence(batch[-1]) + 1


class Following:
    """Messages on a subject after a position, in order, live: read by direct gets, and
    read again when the writer's notice says there is more (`follow`)."""

    def __init__(self, nc: Client, stream: str, subject: str, after: int,
                 on_message: Callable[[Msg], Awaitable[None]], timeout: float) -> None:
        self.nc = nc
        self.stream = stream
        self.subject = subject
        self.position = after
        self.on_message = on_message
        self.timeout = timeout
        self._woken = asyncio.Event()
        self._notices: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, notice_subject: str) -> None:
        async def woken(_: Msg) -> None:
            self._woken.set()

        # Subscribed before the first read: whatever is stored after it, a notice says.
        self._notices = await self.nc.subscribe(notice_subject, cb=woken)
        await flush_subscriptions(self.nc)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._woken.clear()
            try:
                batch, pending = await get_batch(self.nc, self.stream, self.subject,
                                                 self.position + 1, PAGE, self.timeout)
            except (TimeoutError, nats.errors.Error) as exc:
                # The connection may be away for a while: read again once it may be back.
                log.warning("following %s: read failed, trying again: %r", self.stream, exc)
                batch, pending = [], 0
            for msg in batch:
                self.position = sequence(msg)
                await self.on_message(msg)
            if batch and pending:
                continue
            # Not wait_for: on Python 3.11 it swallows a cancel that arrives while the
            # event is set, and the reader would go on after unsubscribe.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LOOK_EVERY_S):
                    await self._woken.wait()

    async def unsubscribe(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._notices is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._notices.unsubscribe()


async def follow(nc: Client, stream: str, subject: str, after: int, notice_subject: str,
                 on_message: Callable[[Msg], Awaitable[None]],
                 timeout: float = 5.0) -> Following:
    """Hand every message on `subject` with a sequence above `after` to `on_message`,
    in order, live; woken by each message on `notice_subject` (the orchestrator's
    `<prefix>.log.appended`), and every LOOK_EVERY_S besides. `unsubscribe()` stops."""
    following = Following(nc, stream, subject, after, on_message, timeout)
    await following.start(notice_subject)
    return following
