"""The client half of the SDK: programs that give the fleet its work submit tasks, await
their results or take them as they finish, and cancel them.

Results are pushed, never polled: a finished task's outcome is published on
`<prefix>.result.<identity>.<task_id>` and a running task's feed on
`<prefix>.stream.<identity>.<task_id>.<agent_id>`, which no other identity may subscribe
to, and the client subscribes to both before it submits anything. What finished
while the client was away is asked for once it is connected again (`task.results`), so
no result is lost; each task's first outcome is kept and later copies are dropped (every
orchestrator that applies the finish sends it, so it is sent at least once across leader
changes).

    async with await Client.connect("nats://127.0.0.1:4222", identity="ci",
                                    nkey_seed=seed) as client:
        handle = await client.submit("summarise", {"text": "..."})
        print(await handle.result(timeout=60))
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import nats
import orjson
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from sdk.agent import RENEW_AT, CommandError
from sdk.connection import flush_subscriptions, request
from sdk.protocol import Subjects, check_identifier
from sdk.results import (  # noqa: F401  (importable from here, as before)
    FINISHED,
    Feed,
    TaskCancelled,
    TaskDeadLettered,
    TaskError,
    TaskHandle,
    TaskOutcome,
)
from sdk.schedules import Schedule, ScheduleCalls  # noqa: F401  (Schedule: as before)

log = logging.getLogger(__name__)

TASK_SUBMIT = "task.submit"
TASK_CANCEL = "task.cancel"
TASK_RESULTS = "task.results"
# A task's feed: partial output numbered by its agent, progress reports.
SEQ_HEADER = "Orch-Seq"
PROGRESS_HEADER = "Orch-Progress"
MAX_RESULTS_ASKED = 100  # task ids per task.results request (the server's bound)
# Submits in flight at once in submit_many: enough for the orchestrator's group commit to
# write many in one append, few enough not to be refused as a burst.
SUBMIT_MANY_IN_FLIGHT = 256
REQUEST_TIMEOUT_S = 10.0
# Retries of a request whose reply was lost (a timeout, no responders while an
# orchestrator restarts): safe, as a submit with its task id is idempotent.
REQUEST_ATTEMPTS = 5

# Credentials are renewed at RENEW_AT (the agent SDK's rule) of their lifetime, the
# orchestrator's ORCH_AUTH_JWT_TTL: 300 s unless set.
DEFAULT_CREDENTIALS_TTL_S = 300.0
# How long a submit refused as `overloaded` keeps trying, in all (seconds): each wait as
# the refusal says, a little spread out (the CLI waits 60 s: its --overload-wait).
OVERLOAD_PATIENCE_S = 300.0


class Client(ScheduleCalls):
    def __init__(self, nc: Nats, identity: str, subject_prefix: str = "orch") -> None:
        self.nc = nc
        self.identity = identity
        # How long a submit refused as overloaded keeps trying, in all (seconds).
        self.overload_patience_s = OVERLOAD_PATIENCE_S
        self.subjects = Subjects(subject_prefix)
        self._inbox = self.subjects.inbox_prefix(identity)
        # The tasks awaited: their outcome to come, and their feed meanwhile.
        self._waiting: dict[str, asyncio.Future[TaskOutcome]] = {}
        self._feeds: dict[str, Feed] = {}
        self._catching_up: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None  # with credentials: their renewal

    @classmethod
    async def connect(cls, nats_url: str = "nats://127.0.0.1:4222", *,
                      identity: str = "anonymous", nkey_seed: str | None = None,
                      subject_prefix: str = "orch", tls: Any = None,
                      name: str | None = None,
                      credentials_ttl_s: float | None = None) -> Client:
        """Connect as `identity` (with its nkey seed when the orchestrator runs with auth
        on: `orchestrator identity create NAME --role submitter`), reconnecting forever.
        With a seed, the credentials the auth callout issues are renewed before they
        expire, as the agent SDK does: a reconnect at RENEW_AT of `credentials_ttl_s`
        (default ORCH_AUTH_JWT_TTL from the environment, else the setting's default,
        300 s); a shorter TTL is still renewed, by the reconnect the server asks for when
        they expire. Results are caught up after every reconnect."""
        check_identifier(identity, "identity")
        holder: list[Client] = []

        async def reconnected() -> None:
            if holder:
                holder[0]._catch_up()

        async def on_error(exc: Exception) -> None:
            log.debug("nats error client=%s: %r", identity, exc)

        nc = await nats.connect(
            servers=nats_url.split(","), name=name or identity, nkeys_seed_str=nkey_seed,
            tls=tls, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
            inbox_prefix=Subjects(subject_prefix).inbox_prefix(identity),
            reconnected_cb=reconnected, error_cb=on_error)
        client = cls(nc, identity, subject_prefix)
        holder.append(client)
        await client.listen()
        if nkey_seed is not None:
            ttl = credentials_ttl_s or float(os.environ.get("ORCH_AUTH_JWT_TTL")
                                             or DEFAULT_CREDENTIALS_TTL_S)
            client._renewing = asyncio.create_task(client._renew(ttl * RENEW_AT))
        return client

    async def _renew(self, every_s: float) -> None:
        """Reconnect before the credentials run out: the callout issues fresh ones."""
        while not self.nc.is_closed:
            await asyncio.sleep(every_s)
            if self.nc.is_connected:
                log.debug("renewing credentials client=%s", self.identity)
                try:
                    await self.nc.force_reconnect()
                except (OSError, nats.errors.Error) as exc:  # reconnects on its own
                    log.debug("renewal reconnect failed client=%s: %r", self.identity, exc)

    async def listen(self) -> None:
        """Take this identity's outcomes and feeds (Client.connect does it; a client
        made on a connection of the caller's calls it once before submitting)."""
        prefix = self.subjects.prefix
        await self.nc.subscribe(f"{prefix}.result.{self.identity}.>", cb=self._on_outcome)
        await self.nc.subscribe(f"{prefix}.stream.{self.identity}.>", cb=self._on_feed)
        await flush_subscriptions(self.nc)  # subscribed before any task can finish

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._catching_up is not None:
            self._catching_up.cancel()
        if self._renewing is not None:
            self._renewing.cancel()
        if self.nc.is_closed:
            return
        try:
            if self.nc.is_connected:
                await self.nc.drain()  # what was published goes out first
            else:
                await self.nc.close()
        except (OSError, nats.errors.Error) as exc:  # the path went away as we left
            log.debug("client closed with an error client=%s: %r", self.identity, exc)

    # --- submitting -----------------------------------------------------------------

    async def submit(self, kind: str, payload: Any = None, *, task_id: str | None = None,
                     requires: Iterable[str] = (), priority: int = 0, max_attempts: int = 3,
                     timeout_s: float = 300.0, delay_s: float | None = None,
                     not_before: float | None = None, concurrency_key: str | None = None,
                     fairness_key: str | None = None,
                     selector: Mapping[str, str] | None = None,
                     prefer: Mapping[str, str] | None = None) -> TaskHandle:
        """Submit a task; its handle. Without `task_id` one is made here (72 random bits:
        short, as each of the task's events stores it twice), so a submit
        retried after a lost reply is still the same task (the orchestrator answers a
        repeated submission with the task as it is, and refuses a different body).
        `delay_s` or `not_before` (epoch seconds) schedule it: it waits as `scheduled`
        and is placed once its time has come. `concurrency_key`, `fairness_key`,
        `selector` and `prefer` are flow control's (docs/flow-control.md). Refused as
        `overloaded` (an admission bound), it waits as told and submits again, for at
        most `overload_patience_s` in all."""
        task_id = check_identifier(task_id or f"t-{secrets.token_urlsafe(9)}", "task_id")
        body = {"task_id": task_id, "kind": kind, "payload": payload,
                "requires": list(requires), "priority": priority,
                "max_attempts": max_attempts, "timeout_s": timeout_s}
        if delay_s is not None:
            body["delay_s"] = delay_s
        if not_before is not None:
            body["not_before"] = not_before
        for name, value in (("concurrency_key", concurrency_key),
                            ("fairness_key", fairness_key)):
            if value is not None:
                body[name] = value
        for name, labels in (("selector", selector), ("prefer", prefer)):
            if labels:
                body[name] = dict(labels)
        handle = self.handle(task_id, ask=False)  # waiting before it can finish
        try:
            reply = await self._request(TASK_SUBMIT, body)
        except BaseException:
            self._forget(task_id)
            raise
        if reply.get("status") in FINISHED:  # submitted before, and finished: no push
            self._catch_up()
        if reply.get("warning"):
            log.warning("task %s: %s", task_id, reply["warning"])
        return handle

    async def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[TaskHandle]:
        """Submit each of `tasks` (each the keyword arguments of `submit`, with `kind`),
        many at once: the orchestrator writes concurrent submits in as few appends as its
        group commit allows. The handles, in the order given; the first refusal raises
        once every submit has been answered."""
        slots = asyncio.Semaphore(SUBMIT_MANY_IN_FLIGHT)

        async def one(spec: Mapping[str, Any]) -> TaskHandle:
            async with slots:
                return await self.submit(**spec)

        return list(await asyncio.gather(*(one(spec) for spec in tasks)))

    async def cancel(self, task_id: str, reason: str = "cancelled by request") -> str:
        """Cancel a task of this client's identity; its status after the command."""
        reply = await self._request(TASK_CANCEL, {"task_id": task_id, "reason": reason})
        return str(reply["status"])

    async def get(self, task_id: str) -> TaskOutcome:
        """A task's state now (finished or not); CommandError `not_found` for a task that
        is unknown or another identity's."""
        [found] = await self.get_many([task_id])
        return found

    async def get_many(self, task_ids: Iterable[str]) -> list[TaskOutcome]:
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, TaskOutcome] = {}
        for start in range(0, len(ids), MAX_RESULTS_ASKED):
            reply = await self._request(TASK_RESULTS,
                                        {"task_ids": ids[start:start + MAX_RESULTS_ASKED]})
            for body in reply["tasks"]:
                outcome = TaskOutcome.parse(body)
                found[outcome.task_id] = outcome
            if reply["unknown"]:
                unknown = ", ".join(reply["unknown"][:5])
                raise CommandError("not_found", f"no task of {self.identity}: {unknown}")
        return [found[task_id] for task_id in ids]

    # --- results ----------------------------------------------------------------------

    def handle(self, task_id: str, *, ask: bool = True) -> TaskHandle:
        """A handle on a task this identity submitted (here or in another process):
        its result arrives when it finishes, or at once if it has (`ask`)."""
        future = self._waiting.get(task_id)
        if future is None:
            future = self._waiting[task_id] = asyncio.get_running_loop().create_future()
            self._feeds[task_id] = Feed()
            if ask:
                self._catch_up()
        return TaskHandle(self, task_id, future, self._feeds[task_id])

    async def results(self, handles: Iterable[TaskHandle],
                      timeout: float | None = None) -> AsyncIterator[TaskOutcome]:
        """The outcomes of `handles` in the order they finish (each once). A task that
        did not complete is yielded too: `outcome.value()` raises its error."""
        pending = {handle._future: handle for handle in handles}
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while pending:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(pending, timeout=left,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError(f"{len(pending)} tasks not finished in {timeout} s")
            for future in sorted(done, key=lambda f: f.result().position):
                pending.pop(future)
                yield future.result()

    async def _on_outcome(self, msg: Msg) -> None:
        try:
            outcome = TaskOutcome.parse(orjson.loads(msg.data))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable task outcome subject=%s", msg.subject)
            return
        self._settle(outcome)

    async def _on_feed(self, msg: Msg) -> None:
        # <prefix>.stream.<identity>.<task_id>.<agent_id>
        feed = self._feeds.get(msg.subject.rsplit(".", 2)[-2])
        if feed is None:
            return  # a task not awaited here (or finished)
        headers = msg.headers or {}
        try:
            if PROGRESS_HEADER in headers:
                feed.progress = float(headers[PROGRESS_HEADER])
            else:
                seq = int(headers[SEQ_HEADER])
                if seq >= feed.next:
                    feed.chunks[seq] = msg.data
        except (KeyError, ValueError):
            log.warning("unreadable task feed message subject=%s", msg.subject)
            return
        feed.changed.set()

    def _settle(self, outcome: TaskOutcome) -> None:
        if not outcome.finished:
            return
        future = self._waiting.pop(outcome.task_id, None)  # the handle keeps what it needs
        self._feeds.pop(outcome.task_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)  # the first copy; later ones are dropped

    def _forget(self, task_id: str) -> None:
        self._feeds.pop(task_id, None)
        future = self._waiting.pop(task_id, None)
        if future is not None and not future.done():
            future.cancel()

    def _catch_up(self) -> None:
        """Ask once for the outcomes of the tasks still awaited (what finished while the
        client was away, or before it asked)."""
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.get_running_loop().create_task(self._ask_pending())

    async def _ask_pending(self) -> None:
        awaited = [task_id for task_id, f in self._waiting.items() if not f.done()]
        for start in range(0, len(awaited), MAX_RESULTS_ASKED):
            try:
                reply = await self._request(
                    TASK_RESULTS, {"task_ids": awaited[start:start + MAX_RESULTS_ASKED]})
            except (CommandError, TimeoutError, nats.errors.Error) as exc:
                log.info("results not caught up client=%s: %r", self.identity, exc)
                return
            for body in sorted(reply["tasks"], key=lambda b: b.get("position", 0)):
                self._settle(TaskOutcome.parse(body))

    async def _request(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """One command, retried while no reply comes (safe: each is idempotent by the
        task id), and while the orchestrator is overloaded, as long as it says, for at
        most `overload_patience_s`; CommandError with the protocol's code for a refusal."""
        deadline: float | None = None
        while True:
            try:
                return await self._request_once(command, body)
            except CommandError as refused:
                if refused.code != "overloaded":
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.overload_patience_s
                # Spread out: many clients told the same wait do not all come back at once.
                wait = (refused.retry_after_s or 1.0) * (1.0 + random.random() / 2)
                if now + wait > deadline:
                    raise
                log.info("overloaded; submitting again in %.2fs client=%s", wait,
                         self.identity)
                await asyncio.sleep(wait)

    async def _request_once(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        subject = f"{self.subjects.prefix}.{command}.{self.identity}"
        data = orjson.dumps(body)
        delay = 0.1
        for attempt in range(1, REQUEST_ATTEMPTS + 1):
            try:
                msg = await request(self.nc, subject, data, REQUEST_TIMEOUT_S, self._inbox)
            except (TimeoutError, nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if attempt == REQUEST_ATTEMPTS:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            reply: dict[str, Any] = orjson.loads(msg.data)
            if not reply.get("ok"):
                error = reply.get("error") or {}
                if error.get("code") == "unavailable" and attempt < REQUEST_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise CommandError(str(error.get("code")), str(error.get("message")),
                                   error.get("details"), error.get("retry_after_s"))
            return reply
        raise AssertionError("unreachable")
