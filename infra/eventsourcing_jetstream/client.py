"""One NATS connection on its own asyncio loop thread, for synchronous recorders."""

# eventsourcing's recorders are synchronous and called from many threads; nats-py is
# asyncio. Each factory owns one `JetStreamClient`: a daemon thread running an event loop
# with one connection. Recorders submit coroutines to it and block on the result.

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, StreamConfig
from nats.js.client import JetStreamContext

from infra.bus.connection import flush_subscriptions
from infra.bus.headers import connect as nats_connect
from infra.log import direct_read
from infra.names import (
    DIRECT_GET,
    ERR_BATCH_WRONG_LAST_SEQUENCE,
    ERR_STREAM_NAME_IN_USE,
    ERR_WRONG_LAST_SEQUENCE,
    JsHeader,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

_CONFLICTS = {ERR_WRONG_LAST_SEQUENCE, ERR_BATCH_WRONG_LAST_SEQUENCE}

# Server limit on the messages of one atomic batch (ADR-50).
MAX_BATCH = 1000
_BATCH_ID, _BATCH_SEQUENCE = JsHeader.BATCH_ID, JsHeader.BATCH_SEQUENCE
_BATCH_COMMIT = JsHeader.BATCH_COMMIT
_STATUS, _NUM_PENDING = JsHeader.STATUS, JsHeader.NUM_PENDING
_DIRECT_GET = DIRECT_GET


@dataclass(frozen=True)
class Message:
    """A message to publish."""

    subject: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _translate(exc: BaseException) -> PersistenceError:
    """The eventsourcing exception for a NATS one."""
    if isinstance(exc, nats.js.errors.APIError):
        if exc.err_code in _CONFLICTS:
            return IntegrityError(str(exc))
        if exc.code is not None and exc.code >= 500:
            return OperationalError(str(exc))
        return DatabaseError(str(exc))
    if isinstance(exc, TimeoutError | nats.errors.Error):
        return OperationalError(repr(exc))
    return InterfaceError(repr(exc))


def _raise_for_ack(data: bytes) -> int:
    """The sequence of a publish acknowledgement, or the error it reports."""
    reply = orjson.loads(data)
    error = reply.get("error")
    if error is not None:
        raise nats.js.errors.APIError(
            code=error.get("code"), err_code=error.get("err_code"),
            description=error.get("description"),
        )
    return int(reply["seq"])


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The loop thread: run until stopped, then cancel what is left and close."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        # A read cut short by close() is cancelled (its caller sees an error), not lost.
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()


async def _shutdown(nc: Client | None) -> None:
    if nc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 5.0)
    asyncio.get_running_loop().stop()


def _stop_loop(
    loop: asyncio.AbstractEventLoop, nc: Client | None, closing: threading.Event
) -> None:
    """Close the connection and stop the loop; also run when a client is collected."""
    closing.set()
    # Never blocks: a collection may happen on the loop thread itself.
    with contextlib.suppress(RuntimeError):  # the loop is already closed
        asyncio.run_coroutine_threadsafe(_shutdown(nc), loop)


async def _log_error(exc: Exception) -> None:
    log.debug("nats error: %r", exc)


async def _log_reconnected() -> None:
    log.info("eventsourcing JetStream connection restored")


class JetStreamClient:
    """A NATS connection driven from synchronous code."""

    def __init__(self, servers: Sequence[str], name: str, timeout: float = 10.0,
                 options: Mapping[str, Any] | None = None) -> None:
        """`options` are more of nats.connect's: credentials, inbox prefix, TLS."""
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=_run_loop, args=(self._loop,), name=f"jetstream {name}", daemon=True
        )
        self._thread.start()
        self._replies: dict[str, asyncio.Queue[Msg]] = {}
        # Called once the connection is back: a notice published while it was away is
        # not sent again, so a reader woken by notices looks once more then.
        self._on_reconnect: list[Callable[[], None]] = []
        self._reply_prefix = ""
        self._closed = False
        self._closing = threading.Event()
        try:
            self._nc: Client = self.run(self._connect(list(servers), name, options or {}))
        except BaseException:
            _stop_loop(self._loop, None, self._closing)
            raise
        self._js: JetStreamContext = self._nc.jetstream(timeout=timeout)
        # Factories are not always closed (the projection runner drops its view's), so
        # the connection also ends when nothing refers to the client any more.
        self._finalizer = weakref.finalize(
            self, _stop_loop, self._loop, self._nc, self._closing
        )

    async def _connect(self, servers: list[str], name: str,
                       options: Mapping[str, Any]) -> Client:
        closing = self._closing
        on_reconnect = self._on_reconnect

        async def disconnected() -> None:
            if not closing.is_set():
                log.warning("eventsourcing JetStream connection lost; reconnecting")

        async def reconnected() -> None:
            await _log_reconnected()
            for wake in list(on_reconnect):
                wake()

        nc = await nats_connect(
            servers=servers, name=name, allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=0.25, connect_timeout=2, error_cb=_log_error,
            disconnected_cb=disconnected, reconnected_cb=reconnected, **options,
        )
        self._reply_prefix = nc.new_inbox()
        replies = self._replies

        # Closures, not bound methods: the connection must not keep the client alive, or
        # the finalizer would never run.
        async def route_reply(msg: Msg) -> None:
            queue = replies.get(msg.subject.rsplit(".", 1)[-1])
            if queue is not None:
                queue.put_nowait(msg)

        await nc.subscribe(f"{self._reply_prefix}.*", cb=route_reply)
        return nc

    @property
    def js(self) -> JetStreamContext:
        return self._js

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the connection's loop and wait for its result."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise ProgrammingError("a recorder was called from its own connection's loop")
        if self._closed:
            coro.close()
            raise InterfaceError("the JetStream connection is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self.timeout * 3)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise OperationalError("JetStream did not answer in time") from exc
        except PersistenceError:
            raise
        except Exception as exc:
            raise _translate(exc) from exc

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start a coroutine on the connection's loop without waiting for it."""
        if self._closed:
            coro.close()
            raise InterfaceError("the JetStream connection is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def renew_every(self, seconds: float) -> None:
        """Reconnect every `seconds`, for good: credentials issued by an auth callout
        expire, the server then closes the connection, and a reconnection is how a
        client gets fresh ones (as the SDK's agents do). Subscriptions carry over."""
        self.submit(self._renew(seconds))

    async def _renew(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._nc.force_reconnect()

    @property
    def stats(self) -> dict[str, int]:
        """The connection's counters (reconnects, messages, bytes), live."""
        return self._nc.stats

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection and stop the loop thread."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    # --- coroutines, run on the loop ---------------------------------------------------

    async def ensure_stream(self, config: StreamConfig, *, create: bool) -> None:
        """Create the stream if asked and absent; check it can take atomic batches."""
        assert config.name is not None
        try:
            info = await self._js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            if not create:
                raise ProgrammingError(f"stream {config.name} does not exist") from None
            try:
                info = await self._js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                # Another process created it between our look and our create.
                if exc.err_code != ERR_STREAM_NAME_IN_USE:
                    raise
                info = await self._js.stream_info(config.name)
        if not info.config.allow_atomic:
            # A server without atomic batches (before 2.12) would store a batch's messages
            # one by one: insert_events would no longer be all-or-nothing.
            raise NotSupportedError(
                f"stream {config.name} does not allow atomic batches "
                "(needs nats-server 2.12 or newer and allow_atomic)"
            )

    async def publish(self, messages: Sequence[Message]) -> int:
        """Store the messages all or none; the sequence of the last one."""
        if not messages:
            raise ProgrammingError("nothing to publish")
        if len(messages) > MAX_BATCH:
            raise ProgrammingError(
                f"{len(messages)} messages in one atomic write; at most {MAX_BATCH}"
            )
        if len(messages) == 1:
            only = messages[0]
            reply = await self._nc.request(
                only.subject, only.data, timeout=self.timeout, headers=only.headers
            )
            return _raise_for_ack(reply.data)
        batch_id = self._nc.new_inbox().rsplit(".", 1)[-1]
        # Only the commit asks for a reply: the server rejects the whole batch at commit
        # if any message was missing or failed a check, so one round trip suffices.
        for number, message in enumerate(messages[:-1], start=1):
            headers = {**message.headers, _BATCH_ID: batch_id, _BATCH_SEQUENCE: str(number)}
            await self._nc.publish(message.subject, message.data, headers=headers)
        commit = messages[-1]
        headers = {
            **commit.headers, _BATCH_ID: batch_id, _BATCH_SEQUENCE: str(len(messages)),
            _BATCH_COMMIT: "1",
        }
        reply = await self._nc.request(
            commit.subject, commit.data, timeout=self.timeout, headers=headers
        )
        return _raise_for_ack(reply.data)

    async def last_message(self, stream: str, subject: str) -> Msg | None:
        """The last stored message on a subject (wildcards allowed), or None."""
        reply = await self._nc.request(
            _DIRECT_GET + stream, orjson.dumps({"last_by_subj": subject}), timeout=self.timeout
        )
        status = (reply.headers or {}).get(_STATUS)
        if status is None:
            return reply
        if status == "404":
            return None
        raise DatabaseError(f"direct get from {stream} failed with status {status}")

    async def get_batch(
        self, stream: str, subject: str, start: int, batch: int
    ) -> tuple[list[Msg], int]:
        """Up to `batch` messages on `subject` from `start`, and how many more match."""
        token = self._nc.new_inbox().rsplit(".", 1)[-1]
        replies: asyncio.Queue[Msg] = asyncio.Queue()
        self._replies[token] = replies
        request = {"seq": max(start, 1), "next_by_subj": subject, "batch": batch}
        try:
            await self._nc.publish(
                _DIRECT_GET + stream, orjson.dumps(request),
                reply=f"{self._reply_prefix}.{token}",
            )
            messages: list[Msg] = []
            while True:
                msg = await asyncio.wait_for(replies.get(), self.timeout)
                status = (msg.headers or {}).get(_STATUS)
                if status is None:
                    messages.append(msg)
                elif status == "204":  # end of batch
                    return messages, int((msg.headers or {}).get(_NUM_PENDING, "0"))
                elif status == "404":
                    return messages, 0
                else:
                    raise DatabaseError(f"direct get from {stream} failed with status {status}")
        finally:
            del self._replies[token]

    async def watch(
        self, stream: str, subject: str, wake: Callable[[], None]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """Call `wake` after each message stored on `subject` from now on; returns its stop."""
        # An ordered consumer delivers a message only once it is stored, so a reader woken
        # by it finds the message.

        async def on_message(_: Msg) -> None:
            wake()

        sub = await self._js.subscribe(
            subject, stream=stream, cb=on_message, ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW, headers_only=True,
        )
        return sub.unsubscribe

    async def notice(
        self, subject: str, wake: Callable[[], None]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """Call `wake` on each message published on `subject` (core NATS, the writer's
        notice that it appended), once the connection is back after a loss, and every
        direct_read.LOOK_EVERY_S besides; returns its stop. For readers that may create
        no consumer (an auditor's), as `watch` needs."""

        async def on_message(_: Msg) -> None:
            wake()

        async def look_again() -> None:
            # A notice is at most once (lost with a connection, or never sent by an
            # orchestrator of an older version): a look now and then bounds the delay.
            while True:
                await asyncio.sleep(direct_read.LOOK_EVERY_S)
                wake()

        sub = await self._nc.subscribe(subject, cb=on_message)
        # Subscribed at the server before the caller's first read: nothing appended
        # after that read goes unannounced.
        await flush_subscriptions(self._nc)
        self._on_reconnect.append(wake)
        looking = asyncio.get_running_loop().create_task(look_again())

        async def stop() -> None:
            looking.cancel()
            with contextlib.suppress(ValueError):
                self._on_reconnect.remove(wake)
            await sub.unsubscribe()

        return stop
