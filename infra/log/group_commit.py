"""Group commit: appends that arrive together are written together, a few groups in
flight.

Under `sync_interval: always` the server fsyncs every message it stores, so appends
written one by one are capped by the disk's fsync rate. An atomic batch (`Nats-Batch-Id`,
nats-server 2.12+, stream `allow_atomic`) is stored, and synced, as one write, but costs
the server a staging store of its own; a small group is sooner written as separate
publishes sent at once (SEPARATELY_UP_TO, below). Each message keeps its own OCC and
`Nats-Msg-Id` headers; if any check fails the server stores nothing of a batch, and its
messages are then written one by one, each meeting its own fate.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError

from infra.names import JsHeader

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
MAX_BATCH = 256  # the server accepts up to 1,000 messages in a batch
# Appends written as separate publishes rather than one atomic batch, when no more wait.
# An atomic batch on a single-replica file stream costs the server a staging file store
# of its own, made and removed per batch (nats-server jetstream_batching.go,
# newBatchStore): measured here (nats-server 2.15, sync always) 2.3 to 2.9 ms for 1 to
# 64 messages, against 0.15 ms per message for publishes sent at once (each synced):
# separately is sooner up to about 14 (docs/performance.md has the table).
SEPARATELY_UP_TO = 12
# Groups written at once: the next group is sent while the ones before wait for their
# answers (each synced by the server), rather than after. Appends of one aggregate are
# never in two groups at once: each waits for the one before it (its OCC expects that
# one's position). With one group in flight, the orchestrator sat idle about a fifth of
# the time at its task capacity, waiting for the store's answers; three gave 11 % more
# durable lifecycles a second, in every one of six alternating runs (docs/performance.md).
GROUPS_IN_FLIGHT = 3


# Batch ids: a random prefix of the writer's and a count, in URL-safe base64's alphabet.
# The server stores the id with every message of the batch, so it is short. It needs the
# id unique only among the stream's batches in flight (nats-server keeps them by id, at
# most 50 a stream, until committed, refused or 10 s idle; an id is at most 64
# characters: jetstream_batching.go, stream.go processJetStreamAtomicBatchMsg). A writer
# counts up (its groups in flight have ids of their own), so only two writers with the same prefix
# could meet: 4 characters are 24 random bits, and even then, while one batch is in
# flight, the other's sequence 1 is a gap to the server, which refuses both: each
# message is then written on its own (tests/integration/test_group_commit.py). The count
# is one digit, modulo 64: a writer has at most GROUPS_IN_FLIGHT batches in flight, so
# the id stays 5 characters however long it runs (a batch left on the server by a lost
# connection, until its 10 s are up, meets a later one of its id as that gap would).
BATCH_PREFIX_CHARS = 4
BATCH_COUNT_MODULO = 64
_BASE64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def new_batch_prefix() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(BATCH_PREFIX_CHARS * 3 // 4)).decode()


def base64_count(number: int) -> str:
    """`number` (>= 0) in base 64, URL-safe base64's digits, most significant first."""
    digits = _BASE64[number % 64]
    while number >= 64:
        number //= 64
        digits = _BASE64[number % 64] + digits
    return digits


@dataclass
class _Append:
    subject: str
    data: bytes
    headers: dict[str, str]
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop()
                                      .create_future())


class _Replies:
    """The answers to our appends, on one wildcard inbox. When the connection drops every
    wait ends at once: the server's answer went out on the lost connection and will not
    come, and nats-py's own request would wait out its whole timeout for it."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._numbers = itertools.count()

    async def expect(self) -> tuple[str, asyncio.Future[Msg]]:
        """A reply subject, and the future its answer will complete."""
        if not self._prefix:
            prefix = self.nc.new_inbox()
            await self.nc.subscribe(f"{prefix}.*", cb=self._on_answer)
            self._prefix = prefix
        subject = f"{self._prefix}.{next(self._numbers)}"
        answer = self._waiting[subject] = asyncio.get_running_loop().create_future()
        return subject, answer

    async def wait(self, subject: str, answer: asyncio.Future[Msg], timeout: float) -> Msg:
        try:
            return await asyncio.wait_for(answer, timeout)
        finally:
            self._waiting.pop(subject, None)

    def lost(self) -> None:
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(nats.errors.Error("connection lost before the answer"))
        self._waiting.clear()

    async def _on_answer(self, msg: Msg) -> None:
        answer = self._waiting.pop(msg.subject, None)
        if answer is not None and not answer.done():
            answer.set_result(msg)


class GroupCommit:
    """Queues appends and writes each group of them, up to GROUPS_IN_FLIGHT groups at a
    time: up to SEPARATELY_UP_TO as separate publishes, more as one atomic batch."""

    def __init__(self, nc: Client, stream: str, timeout: float = 5.0) -> None:
        self.nc = nc
        self.stream = stream
        self.timeout = timeout
        self._queue: asyncio.Queue[_Append] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._replies = _Replies(nc)
        self._batch_prefix = new_batch_prefix()
        self._batch_numbers = itertools.count(1)
        self.on_batch: Callable[[int], None] | None = None  # told each batch's size

    async def append(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        """Store one message; returns its stream sequence, or raises APIError / NATS errors."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever())
        item = _Append(subject, data, headers)
        self._queue.put_nowait(item)
        return await item.done

    def connection_lost(self) -> None:
        """Stop waiting for answers sent on a lost connection: a batch is then written
        again one by one (Nats-Msg-Id keeps what was stored from being stored twice)."""
        self._replies.lost()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            # Bounded: on Python 3.11 asyncio.wait_for (a reply's wait) can swallow a
            # cancel that arrives as it completes, and the writer would go on.
            await asyncio.wait({self._writer}, timeout=CLOSE_TIMEOUT_S)

    async def _write_forever(self) -> None:
        """GROUPS_IN_FLIGHT writers, each taking the appends waiting when it is free and
        writing them as a group."""
        writers = [asyncio.create_task(self._write_groups()) for _ in range(GROUPS_IN_FLIGHT)]
        try:
            await asyncio.gather(*writers)
        finally:
            for writer in writers:
                writer.cancel()

    async def _write_groups(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write_group(batch)

    async def _write_group(self, batch: list[_Append]) -> None:
        if self.on_batch is not None:
            self.on_batch(len(batch))
        if len(batch) <= SEPARATELY_UP_TO:
            # An atomic batch costs the server a staged write and its sync before
            # the commit's (about 2 ms here, whatever its size); a few appends are
            # sooner stored as separate publishes, all sent at once.
            await self._separately(batch)
            return
        try:
            await self._atomic(batch)
        except Exception as exc:  # never let the writer die: its callers would wait
            # A conflict anywhere refuses the whole batch; a lost reply leaves its
            # fate unknown. Either way each message is written on its own: Nats-Msg-Id
            # makes a message the batch did store come back as a duplicate.
            log.debug("atomic batch of %d refused (%r); writing one by one",
                      len(batch), exc)
            await asyncio.gather(*(self._one(item) for item in batch))

    async def _atomic(self, batch: list[_Append]) -> None:
        batch_id = self._batch_prefix + base64_count(next(self._batch_numbers)
                                                     % BATCH_COUNT_MODULO)
        inbox, answer = await self._replies.expect()
        for number, item in enumerate(batch, 1):
            headers = {**item.headers, JsHeader.BATCH_ID: batch_id,
                       JsHeader.BATCH_SEQUENCE: str(number)}
            if number == len(batch):
                headers[JsHeader.BATCH_COMMIT] = "1"
                await self.nc.publish(item.subject, item.data, reply=inbox, headers=headers)
            else:
                await self.nc.publish(item.subject, item.data, headers=headers)
        last = _stored(await self._replies.wait(inbox, answer, self.timeout), self.stream)
        first = last - len(batch) + 1
        for offset, item in enumerate(batch):
            if not item.done.done():
                item.done.set_result(first + offset)

    async def _separately(self, batch: list[_Append]) -> None:
        """Each append as a publish of its own. One whose answer was lost with the
        connection is sent once more: if it was stored, it comes back as a duplicate."""
        lost = await asyncio.gather(*(self._one(item, last_try=False) for item in batch))
        again = [item for item, was_lost in zip(batch, lost, strict=True) if was_lost]
        if again:
            await asyncio.gather(*(self._one(item) for item in again))

    async def _one(self, item: _Append, last_try: bool = True) -> bool:
        """Store one append; True when its fate is unknown and it was left for another
        try (only when not `last_try`)."""
        try:
            inbox, answer = await self._replies.expect()
            # No Nats-Expected-Stream, as in a batch: it would be stored with the event,
            # the subject maps to one stream alone, and `_stored` checks the answer's.
            await self.nc.publish(item.subject, item.data, reply=inbox, headers=item.headers)
            sequence = _stored(await self._replies.wait(inbox, answer, self.timeout),
                               self.stream)
        except Exception as exc:
            # Refused, or not answered in time: that is its answer. Lost with the
            # connection: worth another try.
            if not last_try and not isinstance(exc, APIError | TimeoutError):
                return True
            if not item.done.done():
                item.done.set_exception(exc)
            return False
        if not item.done.done():
            item.done.set_result(sequence)
        return False


def _stored(msg: Msg, stream: str) -> int:
    """The stream sequence an answer reports, or the server's refusal raised; an error
    too when another stream than `stream` stored it (no stream could while `stream`
    exists: JetStream refuses streams whose subjects overlap)."""
    answer = _answer(msg)
    if "error" in answer:
        raise APIError.from_error(answer["error"])
    if answer.get("stream") != stream:
        raise nats.errors.Error(f"stored by stream {answer.get('stream')!r}, not {stream!r}")
    return int(answer["seq"])


def _answer(msg: Msg) -> dict[str, Any]:
    """The server's answer to a publish. A status message without a body (503: no
    stream leader to answer, as while a cluster node dies) is no answer."""
    if not msg.data:
        status = (msg.headers or {}).get(JsHeader.STATUS, "")
        raise nats.errors.Error(f"no answer to the append (status {status or 'none'})")
    try:
        answer: dict[str, Any] = orjson.loads(msg.data)
    except orjson.JSONDecodeError as exc:
        raise nats.errors.Error(f"unreadable answer to the append: {exc}") from None
    return answer
