"""A Python agent: registers, heartbeats, obeys control messages, shuts down cleanly.

Its tasks (TaskContext, the running of assignments) are in sdk/tasks.py; the exceptions,
in sdk/errors.py. Both are importable from here as before."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from sdk.connection import flush_subscriptions
from sdk.errors import CommandError, TaskFailed
from sdk.protocol import DEREGISTER, REGISTER, ControlMessage, Heartbeat, RegisterAgent, Subjects
from sdk.tasks import TaskContext, TaskHandler, TaskRunner

__all__ = ["AgentClient", "CommandError", "TaskContext", "TaskFailed", "TaskHandler"]

log = logging.getLogger(__name__)

# Longest wait in stop() for the background tasks to end.
STOP_TIMEOUT_S = 5.0
# Credentials are renewed (by reconnecting: the auth callout issues new ones) after this
# share of their lifetime, well before the server would cut the connection.
RENEW_AT = 0.7
# Refused connections (the key not enrolled, or revoked) are tried again after a wait that
# doubles from the first to the most; the refusal is logged at most once a while.
REFUSED_WAIT_FIRST_S = 0.5
REFUSED_WAIT_MAX_S = 30.0
REFUSED_LOG_EVERY_S = 60.0
COMPLETED_KEPT = 1000


class AgentClient(TaskRunner):
    """One agent's connection to the orchestrator: registration, heartbeats, tasks."""

    def __init__(
        self,
        agent_id: str,
        capabilities: list[str] | None = None,
        capacity: int = 1,
        labels: dict[str, str] | None = None,
        services: list[dict[str, Any]] | None = None,
        nats_url: str = "nats://127.0.0.1:4222",
        prefix: str = "orch",
        request_timeout: float = 5.0,
        on_control: Callable[[ControlMessage], Awaitable[None]] | None = None,
        handlers: dict[str, TaskHandler] | None = None,
        replace: bool = False,
        nkey_seed: str | None = None,
        enrollment_token: str | None = None,
        tls: ssl.SSLContext | None = None,
        progress_every_s: float | None = None,
    ) -> None:
        """`nkey_seed` (its own, made with `nkeys`; it never leaves the agent) and, for the
        first connection, the `enrollment_token` an operator made with `orchestrator
        enroll`: needed when the orchestrator runs with ORCH_AUTH=on.

        `progress_every_s`: a promise that its handlers call `ctx.progress(...)` at least
        this often while they run; a run silent for three times as long (15 s at least)
        is taken for stuck, moved elsewhere and revoked here, and an agent that does so
        twice in a row is out of placement for a while (docs/protocol.md, Health)."""
        handlers = dict(handlers or {})
        self.registration = RegisterAgent(
            agent_id=agent_id,
            capabilities=capabilities or [],
            capacity=capacity,
            labels=labels or {},
            services=services or [],
            # The kinds it has handlers for, so that no other kind is placed here; a
            # catch-all handler ("*") runs any kind.
            kinds=[] if "*" in handlers else sorted(handlers),
            replace=replace,
            instance_id=uuid.uuid4().hex,
            progress_every_s=progress_every_s,
        )
        self.agent_id = agent_id
        self.nkey_seed = nkey_seed
        self.enrollment_token = enrollment_token
        self.tls = tls
        self.credentials_ttl_s: float | None = None
        self.nats_url = nats_url
        self.names = Subjects(prefix)
        self.request_timeout = request_timeout
        self.on_control = on_control
        self.nc: Client | None = None
        self.incarnation = 0
        self.registered_at: int | None = None
        self.heartbeat_interval = 1.0
        self.heartbeats_sent = 0
        self.heartbeats_paused = False
        self.capacity = capacity
        # Set it to report a load of your own (0..1); by default the share of capacity
        # taken by the tasks it runs.
        self.load: float | None = None
        self.running: list[str] = []
        self.handlers = handlers
        # The tasks it completed last, newest at the end: at most COMPLETED_KEPT, so a
        # long-running agent does not hold one id per task it ever ran.
        self.completed: deque[str] = deque(maxlen=COMPLETED_KEPT)
        # Set when the orchestrator refused to let us re-register: another process holds
        # this agent id now, so we stopped heartbeating.
        self.replaced_by_another: CommandError | None = None
        # Set when the orchestrator deregistered this agent (an operator's `deregister`,
        # a revocation): it stopped; a program's run_until_stopped() returns.
        self.deregistered_by_orchestrator: ControlMessage | None = None
        self._deregistered_itself = 0  # the incarnation it deregistered itself, if any
        self._ended = asyncio.Event()  # set by stop()
        self._stopper: asyncio.Task[None] | None = None
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._work: dict[str, asyncio.Task[None]] = {}  # task id -> its handler run
        self._contexts: dict[str, TaskContext] = {}  # task id -> its current assignment
        self._refused_wait_s = 0.0  # the wait after the next refusal, doubled each time
        self._refused_logged_at: float | None = None

    async def start(self) -> dict[str, Any]:
        """Connect, register and start heartbeating; returns the registration reply."""
        self._stopping = False
        self.deregistered_by_orchestrator = None
        self._ended.clear()
        self.nc = await self._connect()
        reply = await self.register()
        self._tasks.append(asyncio.create_task(self._heartbeat_loop()))
        if self.credentials_ttl_s:
            self._tasks.append(asyncio.create_task(self._renew_loop()))
        return reply

    async def _connect(self) -> Client:
        """Connect as this agent: its own key, its own inbox (the only replies it may
        read), and its name, which tells the auth callout who it says it is."""
        nc = await nats.connect(
            servers=self.nats_url.split(","), name=self.agent_id,
            max_reconnect_attempts=-1, reconnect_time_wait=0.25,
            reconnected_cb=self._on_let_in_again, closed_cb=self._on_closed,
            error_cb=self._on_error,
            nkeys_seed_str=self.nkey_seed, token=self.enrollment_token, tls=self.tls,
            inbox_prefix=self.names.inbox_prefix(self.agent_id),
        )
        await nc.subscribe(self.names.agent_control(self.agent_id), cb=self._on_control)
        await nc.subscribe(self.names.agent_tasks(self.agent_id), cb=self._on_assignment)
        await flush_subscriptions(nc)  # subscribed before an assignment can be sent
        self._refused_wait_s = 0.0
        return nc

    async def _on_let_in_again(self) -> None:
        self._refused_wait_s = 0.0
        await self._on_reconnected()

    async def _on_error(self, exc: Exception) -> None:
        # nats-py's own handler prints a traceback per failed reconnect; one line will do.
        if "uthorization" not in str(exc):
            log.debug("nats error agent=%s: %r", self.agent_id, exc)
            return
        now = time.monotonic()
        if self._refused_logged_at is None or now - self._refused_logged_at >= \
                REFUSED_LOG_EVERY_S:
            self._refused_logged_at = now
            log.warning("not let in agent=%s: its key is not enrolled, or was revoked; run "
                        "`orchestrator enroll %s` and give the agent its token "
                        "(ORCH_ENROLLMENT_TOKEN)", self.agent_id, self.agent_id)
        # nats-py waits a fixed reconnect_time_wait between attempts (a refused agent
        # tried four times a second, for ever), and awaits this callback between them in
        # its connect and reconnect loops: the backoff is waited here.
        self._refused_wait_s = min(REFUSED_WAIT_MAX_S,
                                   self._refused_wait_s * 2 or REFUSED_WAIT_FIRST_S)
        if not self._stopping:
            await asyncio.sleep(self._refused_wait_s)

    async def _renew_loop(self) -> None:
        """Reconnect before the credentials run out: the callout issues fresh ones (and
        refuses a revoked agent). Work goes on: reports are retried, and assignments
        sent meanwhile are fetched on reconnect."""
        assert self.credentials_ttl_s
        while not self._stopping:
            await asyncio.sleep(self.credentials_ttl_s * RENEW_AT)
            if self.nc is not None and not self._stopping:
                log.debug("renewing credentials agent=%s", self.agent_id)
                await self.nc.force_reconnect()

    async def _on_closed(self) -> None:
        """The server closed us for good (credentials expired before renewal, say):
        connect again, unless we are stopping."""
        if self._stopping:
            return
        log.warning("connection closed by the server agent=%s; reconnecting", self.agent_id)
        self._tasks.append(asyncio.create_task(self._reconnect_after_close()))

    async def _reconnect_after_close(self) -> None:
        delay = 0.25
        while not self._stopping:
            try:
                self.nc = await self._connect()
                await self._on_reconnected()
                return
            except Exception as exc:
                log.info("reconnect failed agent=%s: %r", self.agent_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def request(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send one command; returns the reply, or raises CommandError with its code."""
        assert self.nc is not None, "start() first"
        msg = await self.nc.request(
            self.names.agent_command(self.agent_id, command), orjson.dumps(body),
            timeout=self.request_timeout,
        )
        reply: dict[str, Any] = orjson.loads(msg.data)
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise CommandError(error.get("code", "unknown"), error.get("message", ""),
                               error.get("details"))
        return reply

    async def register(self) -> dict[str, Any]:
        reply = await self.request(REGISTER, self.registration.to_dict())
        # Taking over is for the start only: a later re-registration must not take the
        # id back from a process that replaced this one.
        self.registration = dataclasses.replace(self.registration, replace=False)
        self.incarnation = reply["incarnation"]
        # Sent with every heartbeat: where in the log this incarnation was registered.
        self.registered_at = reply.get("position") or None
        self.heartbeat_interval = reply["heartbeat_interval_s"]
        self.credentials_ttl_s = reply.get("credentials_ttl_s")
        return reply

    async def deregister(self) -> dict[str, Any]:
        reply = await self.request(
            DEREGISTER, {"agent_id": self.agent_id, "incarnation": self.incarnation}
        )
        self._deregistered_itself = self.incarnation
        return reply

    async def heartbeat(self) -> None:
        """Publish one heartbeat to JetStream and wait for its acknowledgement."""
        assert self.nc is not None
        self._seq += 1
        beat = Heartbeat(incarnation=self.incarnation, seq=self._seq, load=self.current_load,
                         running=list(self.running), registered_at=self.registered_at)
        await self.nc.jetstream().publish(
            self.names.heartbeat(self.agent_id), beat.to_json(),
            timeout=max(self.heartbeat_interval, 0.5),
        )
        self.heartbeats_sent += 1

    @property
    def current_load(self) -> float:
        if self.load is not None:
            return self.load
        return min(1.0, len(self.running) / self.capacity) if self.capacity else 1.0

    async def _heartbeat_loop(self) -> None:
        # The flag, not only cancellation, ends the loop: on Python 3.11 asyncio.wait_for
        # (inside nats-py's publish) can swallow a cancel that arrives as it completes.
        while not self._stopping:
            if not self.heartbeats_paused:
                try:
                    await self.heartbeat()
                except Exception as exc:  # keep trying through outages
                    log.debug("heartbeat failed agent=%s: %r", self.agent_id, exc)
            await asyncio.sleep(self.heartbeat_interval)

    async def _on_control(self, msg: Msg) -> None:
        try:
            control = ControlMessage.parse(msg.data)
        except ValueError:
            log.warning("unreadable control message agent=%s", self.agent_id)
            return
        if control.type == "reregister":
            if control.incarnation not in (None, self.incarnation):
                return  # meant for another process with this id (the control subject is shared)
            await self._reregister(control.reason)
        elif control.type == "deregistered":
            if control.incarnation not in (None, self.incarnation) \
                    or control.incarnation == self._deregistered_itself or self._stopping:
                return  # another process's, or its own leaving
            self.deregistered_by_orchestrator = control
            log.error("agent %s was deregistered by the orchestrator (%s): stopping, no more "
                      "heartbeats; start it again to rejoin", self.agent_id, control.reason)
            self._stopper = asyncio.create_task(self.stop(deregister=False))
        elif control.type in ("cancel", "revoke") and control.task_id:
            work = self._work.get(control.task_id)
            context = self._contexts.get(control.task_id)
            if control.token and context is not None and context.assignment.token != control.token:
                return  # an older assignment's: the task was given to it again since
            if work is not None:
                log.info("stopping task=%s agent=%s reason=%s", control.task_id,
                         self.agent_id, control.reason)
                work.cancel()
        if self.on_control is not None:
            await self.on_control(control)

    async def _reregister(self, reason: str) -> None:
        log.info("re-registering agent=%s reason=%s", self.agent_id, reason)
        try:
            await self.register()
        except CommandError as refused:
            if refused.code != "conflict":
                log.warning("re-registration refused agent=%s: %s", self.agent_id, refused)
                return
            # Another live process took this id over: heartbeating on as an old
            # incarnation would only be refused again.
            self.replaced_by_another = refused
            self.heartbeats_paused = True
            log.error("agent %s stopped heartbeating: another process holds its id (%s)",
                      self.agent_id, refused.message)
        except Exception as exc:  # unreachable now; the next reregister control tries again
            log.info("re-registration failed agent=%s: %r", self.agent_id, exc)

    async def run_until_stopped(
        self, signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
        deregister: bool = True,
    ) -> None:
        """After start(): run until one of `signals` (then stop, and deregister unless
        told not to) or until the orchestrator deregisters this agent (then stop;
        deregistered_by_orchestrator says why)."""
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        for sig in signals:
            loop.add_signal_handler(sig, signalled.set)
        try:
            waits = [asyncio.create_task(signalled.wait()), asyncio.create_task(self._ended.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        await self.stop(deregister=deregister)

    async def stop(self, deregister: bool = True) -> None:
        """Stop heartbeating; deregister unless told not to; close the connection."""
        self._stopping = True
        background = self._tasks + list(self._work.values())
        for task in background:
            task.cancel()
        if background:
            # Bounded: a task whose cancel was swallowed ends at its next check of the
            # flag; what a task failed with was logged where it happened.
            await asyncio.wait(background, timeout=STOP_TIMEOUT_S)
            for task in background:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved, so asyncio does not report it again
        self._tasks.clear()
        if self.nc is None:
            self._ended.set()
            return
        if deregister and self.deregistered_by_orchestrator is None and self.incarnation \
                and self.nc.is_connected:
            with contextlib.suppress(Exception):
                await self.deregister()
        nc, self.nc = self.nc, None
        with contextlib.suppress(Exception):  # a connection already refused or closing
            if nc.is_connected:
                await nc.drain()
            else:
                await nc.close()
        self._ended.set()
