"""The dashboard's actions over HTTP: drain, undrain and cancel.

Each runs the command handler the NATS endpoint runs (services/commands/table.py), not a
second implementation: the body is validated by the same model, the events record the
token's identity, and a refusal is the same coded error. Only an admin token reaches
them (services/auth/http.py: every method but a read needs admin); with auth off they
are as open as the rest of the API and record `anonymous`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from domain.errors import CommandRefused, ErrorCode
from infra import names as n
from infra.caller import admin_token, current_identity
from infra.log.format.event_headers import new_event_id
from services.auth.http import CALLER
from services.commands.service import Command, parse
from services.http.query import json_reply, path_id

COMMANDS: web.AppKey[dict[str, Command]] = web.AppKey("commands", dict)
MAX_ACTION_BYTES = 4096
_STATUS = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.STALE_TOKEN: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.OVERLOADED: 429,
    ErrorCode.INTERNAL: 500,
}


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (none: an empty one); a coded refusal otherwise.

    Only as application/json: another site's page cannot send that without asking first
    (a CORS preflight, which nothing here answers), so with auth off, where no token is
    asked, a page elsewhere still cannot drain or cancel through the user's browser."""
    if request.content_type != "application/json":
        raise CommandRefused(ErrorCode.INVALID_REQUEST,
                             "an action's body is JSON: send Content-Type: application/json")
    raw = await request.read()
    if len(raw) > MAX_ACTION_BYTES:
        raise CommandRefused(ErrorCode.PAYLOAD_TOO_LARGE,
                             f"body is {len(raw)} bytes; the limit is {MAX_ACTION_BYTES}")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandRefused(ErrorCode.INVALID_REQUEST, f"the body is not JSON: {exc.msg}"
                             ) from None
    if not isinstance(body, dict):
        raise CommandRefused(ErrorCode.INVALID_REQUEST, "the body must be a JSON object")
    return body


async def _act(request: web.Request, name: str, target: dict[str, str],
               allowed: Sequence[str] = ()) -> web.Response:
    command = request.app[COMMANDS].get(name)
    if command is None:
        return json_reply(CommandRefused(ErrorCode.UNAVAILABLE, "actions are not served "
                                         "here").to_reply(), 503)
    try:
        given = await _body(request)
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise CommandRefused(ErrorCode.INVALID_REQUEST,
                                 f"unknown field(s): {', '.join(unknown)}",
                                 [{"field": f, "problem": "not allowed here",
                                   "type": "extra_forbidden"} for f in unknown])
        parsed = parse(command.model, orjson.dumps({**given, **target}))
        # This request runs in a task of its own: what it sets is its own.
        current_identity.set(request.get(CALLER) or "anonymous")
        admin_token.set(request.get(CALLER) is not None)
        reply = await command.handler(parsed, f"cmd-{new_event_id()}")
    except CommandRefused as refused:
        return json_reply(refused.to_reply(), _STATUS.get(refused.code, 400))
    return json_reply(reply)


async def drain(request: web.Request) -> web.Response:
    return await _act(request, n.ADMIN_DRAIN, {"agent_id": path_id(request, "agent_id")})


async def undrain(request: web.Request) -> web.Response:
    return await _act(request, n.ADMIN_UNDRAIN, {"agent_id": path_id(request, "agent_id")})


async def cancel(request: web.Request) -> web.Response:
    return await _act(request, n.TASK_CANCEL, {"task_id": path_id(request, "task_id")},
                      allowed=("reason",))


def add_action_routes(app: web.Application, commands: Sequence[Command]) -> None:
    """POST /v1/agents/{agent_id}/drain|undrain and /v1/tasks/{task_id}/cancel."""
    app[COMMANDS] = {c.name: c for c in commands}
    app.router.add_post("/v1/agents/{agent_id}/drain", drain)
    app.router.add_post("/v1/agents/{agent_id}/undrain", undrain)
    app.router.add_post("/v1/tasks/{task_id}/cancel", cancel)
