"""The `orchestrator` NATS micro service: parses, validates and answers every command."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from nats.aio.client import Client
from nats.micro import ServiceConfig, add_service
from nats.micro.request import Request
from nats.micro.service import Service
from pydantic import BaseModel, ValidationError

from domain.errors import CommandRefused, ErrorCode
from domain.fields import ID_PATTERN, MAX_COMMAND_BYTES
from infra.caller import ORCHESTRATOR, current_identity
from infra.log.format.event_headers import new_event_id
from infra.names import SERVICE_NAME, Names
from services.auth.reply_to import inbox_owner, may_answer
from services.metrics import Metrics

log = logging.getLogger(__name__)

VERSION = "0.1.0"
REQUEST_ID_HEADER = "Orch-Request-Id"

_MICRO_CODES = {
    ErrorCode.INVALID_REQUEST: "400",
    ErrorCode.UNAUTHORIZED: "401",
    ErrorCode.NOT_FOUND: "404",
    ErrorCode.CONFLICT: "409",
    ErrorCode.STALE_TOKEN: "409",
    ErrorCode.PAYLOAD_TOO_LARGE: "413",
    ErrorCode.UNAVAILABLE: "503",
    ErrorCode.OVERLOADED: "429",
    ErrorCode.INTERNAL: "500",
}

Handler = Callable[[Any, str], Awaitable[dict[str, Any]]]
_ID = re.compile(ID_PATTERN)
RESERVED_SENDERS = frozenset({ORCHESTRATOR})


class Sender(StrEnum):
    """Who a command's subject names, so that NATS permissions can bind it to them."""

    AGENT = "agent"  # <prefix>.agent.<agent id>.<name>: the agent itself
    CLIENT = "client"  # <prefix>.<name>.<identity>: a person's or tool's identity
    ANYONE = "anyone"  # <prefix>.<name>: a read that writes nothing


@dataclass(frozen=True)
class Command:
    """One endpoint: its name, who its subject names, its model and its handler."""

    name: str
    model: type[BaseModel]
    handler: Handler
    sender: Sender = Sender.ANYONE

    def subject(self, names: Names) -> str:
        if self.sender is Sender.AGENT:
            return names.agent_command_wildcard(self.name)
        if self.sender is Sender.CLIENT:
            return names.client_command_wildcard(self.name)
        return names.command(self.name)

    def sender_of(self, names: Names, subject: str) -> str:
        """The identity the subject names ("" for a command anyone may send)."""
        if self.sender is Sender.AGENT:
            return names.agent_id_of_command(subject, self.name)
        if self.sender is Sender.CLIENT:
            return names.identity_of_command(subject, self.name)
        return ""


def _own_agent(model: type[BaseModel], data: bytes, body: Any, agent_id: str) -> bytes:
    """The body of an agent's command (`body` is `data` parsed), naming the agent its
    subject names: filled in when left out, refused when it names another agent."""
    if "agent_id" not in model.model_fields:
        return data
    if not isinstance(body, dict):
        return data  # the model's validation says what is wrong
    named = body.get("agent_id", agent_id)
    if named != agent_id:
        raise CommandRefused(
            ErrorCode.UNAUTHORIZED,
            # Cut short, and with no trailing blank: the message is a header value too,
            # and NATS trims those.
            f"the subject is agent {agent_id}'s; the body names agent "
            f"{repr(named)[:80].rstrip()}")
    if "agent_id" in body:
        return data
    # Spliced in rather than written again: orjson.dumps refuses nesting past 254 levels
    # (which loads takes) and would turn integers past 64 bits into floats.
    rest = data.lstrip()[1:]  # after the '{': it parsed as an object, JSON whitespace first
    return b'{"agent_id":' + orjson.dumps(agent_id) + (b"," if body else b"") + rest


def parse(model: type[BaseModel], data: bytes, agent_id: str | None = None) -> BaseModel:
    """Validate a command payload strictly, or refuse it with a coded error."""
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandRefused(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"command is {len(data)} bytes; the limit is {MAX_COMMAND_BYTES}",
        )
    try:
        # pydantic's parser takes NaN and Infinity, which are not JSON (RFC 8259) and
        # would be stored as null: orjson holds the payload to the standard first.
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CommandRefused(
            ErrorCode.INVALID_REQUEST, f"invalid {model.__name__}",
            [{"field": "", "problem": f"Invalid JSON: {exc.msg}", "type": "json_invalid"}],
        ) from None
    if agent_id is not None:
        data = _own_agent(model, data, body, agent_id)
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"],
             "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)[:20]
        ]
        raise CommandRefused(
            ErrorCode.INVALID_REQUEST, f"invalid {model.__name__}", details
        ) from None


async def start_command_service(
    nc: Client, names: Names, commands: list[Command], metrics: Metrics,
    bound_inboxes: bool = True,
) -> Service:
    """Serve every command; with `bound_inboxes` (auth on) a command whose subject names
    its sender is answered only in that sender's own inbox (services.auth.reply_to)."""
    service = await add_service(
        nc,
        ServiceConfig(
            name=SERVICE_NAME,
            version=VERSION,
            description="agent registry and task coordination",
            metadata={"prefix": names.prefix},
        ),
    )
    for command in commands:
        await service.add_endpoint(
            name=command.name.replace(".", "_"),
            subject=command.subject(names),
            handler=_endpoint(command, names, metrics, bound_inboxes),
        )
    return service


# Requests handled at once per endpoint: commands on different aggregates overlap their
# appends; commands on the same aggregate are serialised by OCC, not by arrival.
MAX_IN_FLIGHT = 256


def _endpoint(command: Command, names: Names, metrics: Metrics,
              bound_inboxes: bool) -> Callable[[Request], Awaitable[None]]:
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    running: set[asyncio.Task[None]] = set()
    steered = _SteeredReplies(command.name, metrics)

    async def dispatch(request: Request) -> None:
        reply = _reply_subject(request)
        if reply and not may_answer(reply, command.sender_of(names, request.subject),
                                    bound_inboxes):
            steered.dropped(request.subject, reply)
            return  # neither acted on nor answered: nothing written, nothing published
        await slots.acquire()  # back-pressure: the subscription waits when all are busy
        task = asyncio.create_task(handle(request))
        running.add(task)
        task.add_done_callback(running.discard)
        task.add_done_callback(lambda _: slots.release())

    async def handle(request: Request) -> None:
        started = time.perf_counter()
        request_id = ""
        try:
            request_id = _request_id(request.headers)
            sender = command.sender_of(names, request.subject)
            if command.sender is not Sender.ANYONE and not _ID.match(sender):
                raise CommandRefused(ErrorCode.INVALID_REQUEST,
                                     f"the subject must name a sender matching {ID_PATTERN}")
            if sender in RESERVED_SENDERS:  # they would pass for the orchestrator's own
                raise CommandRefused(ErrorCode.INVALID_REQUEST,
                                     f"{sender} is a reserved name; no client sends as it")
            agent_id = sender if command.sender is Sender.AGENT else None
            parsed = parse(command.model, request.data, agent_id)
            # This request runs in a task of its own: the events it appends record its
            # sender (infra.caller), and no other request sees the change. A read whose
            # subject names no one is sent by the owner of the inbox it is answered in
            # (with auth on, only that identity may read it): so a revoked reader's reads
            # are refused at once, not when its credentials run out.
            if not sender and bound_inboxes:
                sender = inbox_owner(_reply_subject(request) or "") or ""
            current_identity.set(sender or "anonymous")
            reply = await command.handler(parsed, request_id)
        except CommandRefused as refused:
            metrics.command_answered(command.name, str(refused.code), started)
            body = orjson.dumps(refused.to_reply())
            await _answer(request, body, refused)
            return
        except Exception:
            log.exception("command failed command=%s", command.name)
            internal = CommandRefused(ErrorCode.UNAVAILABLE, "internal error; retry")
            metrics.command_answered(command.name, "internal", started)
            await _answer(request, orjson.dumps(internal.to_reply()), internal)
            return
        metrics.command_answered(command.name, "ok", started)
        await _answer(request, orjson.dumps(reply), None)

    return dispatch


# A request's headers, all of them, and its request id, which every event the command
# writes stores (as causation and correlation id): bounded, so that no client can make
# each of its events carry kilobytes or slow everyone's appends (docs/protocol.md).
MAX_HEADER_BYTES = 1024
MAX_REQUEST_ID = 64
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,64}")


def _request_id(headers: dict[str, str] | None) -> str:
    """The client's request id, or one made here when it sent none (as short as an event
    id: 22 characters of a random 128 bits); CommandRefused when the headers are over
    their bound or the id is not a short token."""
    if not headers:
        return f"cmd-{new_event_id()}"
    size = sum(len(k) + len(v) + 4 for k, v in headers.items())
    if size > MAX_HEADER_BYTES:
        raise CommandRefused(ErrorCode.INVALID_REQUEST,
                             f"headers are {size} bytes; the limit is {MAX_HEADER_BYTES}")
    given = headers.get(REQUEST_ID_HEADER)
    if not given:
        return f"cmd-{new_event_id()}"
    if not _REQUEST_ID.fullmatch(given):
        raise CommandRefused(
            ErrorCode.INVALID_REQUEST,
            f"{REQUEST_ID_HEADER} must be 1 to {MAX_REQUEST_ID} characters of "
            f"A-Z a-z 0-9 . _ : @ / + = -")
    return given


def _reply_subject(request: Request) -> str:
    # nats-py's micro Request keeps its message's reply subject private; read once, here.
    return str(request._msg.reply or "")


class _SteeredReplies:
    """Requests whose reply subject was not the requester's inbox: counted, and said in
    the log at most once per endpoint every few seconds (an attacker may send many)."""

    EVERY_S = 10.0

    def __init__(self, endpoint: str, metrics: Metrics) -> None:
        self.endpoint = endpoint
        self.counter = metrics.requests_unanswered.labels(endpoint)
        self.last = float("-inf")
        self.since = 0

    def dropped(self, subject: str, reply: str) -> None:
        self.counter.inc()
        self.since += 1
        now = time.monotonic()
        if now - self.last >= self.EVERY_S:
            log.warning("request not answered: its reply subject is not the requester's "
                        "inbox endpoint=%s subject=%.120s reply=%.120s dropped=%d",
                        self.endpoint, subject, reply, self.since)
            self.last, self.since = now, 0


async def _answer(request: Request, body: bytes, refused: CommandRefused | None) -> None:
    try:
        if refused is None:
            await request.respond(body)
        else:
            await request.respond_error(_MICRO_CODES[refused.code], refused.message, body)
    except ValueError:
        pass  # published without a reply subject: there is nobody to answer
