"""The `orchestrator` NATS micro service: parses, validates and answers every command."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client
from nats.micro import ServiceConfig, add_service
from nats.micro.request import Request
from nats.micro.service import Service
from pydantic import BaseModel, ValidationError

from domain.errors import CommandRefused, ErrorCode
from domain.fields import MAX_COMMAND_BYTES
from infra.names import SERVICE_NAME, Names
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
    ErrorCode.INTERNAL: "500",
}

Handler = Callable[[Any, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Command:
    """One endpoint: its name (also its subject after the prefix), model and handler."""

    name: str
    model: type[BaseModel]
    handler: Handler


def parse(model: type[BaseModel], data: bytes) -> BaseModel:
    """Validate a command payload strictly, or refuse it with a coded error."""
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandRefused(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"command is {len(data)} bytes; the limit is {MAX_COMMAND_BYTES}",
        )
    try:
        # pydantic's parser takes NaN and Infinity, which are not JSON (RFC 8259) and
        # would be stored as null: orjson holds the payload to the standard first.
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CommandRefused(
            ErrorCode.INVALID_REQUEST, f"invalid {model.__name__}",
            [{"field": "", "problem": f"Invalid JSON: {exc.msg}", "type": "json_invalid"}],
        ) from None
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
    nc: Client, names: Names, commands: list[Command], metrics: Metrics
) -> Service:
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
            subject=names.command(command.name),
            handler=_endpoint(command, metrics),
        )
    return service


# Requests handled at once per endpoint: commands on different aggregates overlap their
# appends; commands on the same aggregate are serialised by OCC, not by arrival.
MAX_IN_FLIGHT = 256


def _endpoint(command: Command, metrics: Metrics) -> Callable[[Request], Awaitable[None]]:
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    running: set[asyncio.Task[None]] = set()

    async def dispatch(request: Request) -> None:
        await slots.acquire()  # back-pressure: the subscription waits when all are busy
        task = asyncio.create_task(handle(request))
        running.add(task)
        task.add_done_callback(running.discard)
        task.add_done_callback(lambda _: slots.release())

    async def handle(request: Request) -> None:
        request_id = (request.headers or {}).get(REQUEST_ID_HEADER) or f"cmd-{uuid.uuid4()}"
        try:
            parsed = parse(command.model, request.data)
            reply = await command.handler(parsed, request_id)
        except CommandRefused as refused:
            metrics.commands.labels(command.name, str(refused.code)).inc()
            body = orjson.dumps(refused.to_reply())
            await _answer(request, body, refused)
            return
        except Exception:
            log.exception("command failed command=%s", command.name)
            internal = CommandRefused(ErrorCode.UNAVAILABLE, "internal error; retry")
            metrics.commands.labels(command.name, "internal").inc()
            await _answer(request, orjson.dumps(internal.to_reply()), internal)
            return
        metrics.commands.labels(command.name, "ok").inc()
        await _answer(request, orjson.dumps(reply), None)

    return dispatch


async def _answer(request: Request, body: bytes, refused: CommandRefused | None) -> None:
    try:
        if refused is None:
            await request.respond(body)
        else:
            await request.respond_error(_MICRO_CODES[refused.code], refused.message, body)
    except ValueError:
        pass  # published without a reply subject: there is nobody to answer
