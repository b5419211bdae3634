"""`GET /v1/schedules` and `/v1/schedules/{name}`: the schedules and their next runs,
from the schedule projection (projections/schedules.py).

`?index=N&wait=S` waits until a schedule event past position N is applied (or S
seconds): a page that follows the schedules asks again with the `index` it was given."""

from __future__ import annotations

from aiohttp import web

from domain.errors import ErrorCode
from projections.schedules import ScheduleBook
from services.http.query import (
    READ_MODEL,
    BadQuery,
    error_response,
    float_param,
    int_param,
    json_reply,
)

MAX_WAIT_S = 600.0
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _name(value: str | None, what: str) -> str | None:
    if value is not None and not (0 < len(value) <= 64 and set(value) <= _NAME_CHARS):
        raise BadQuery(f"{what} must match ^[A-Za-z0-9_-]{{1,64}}$")
    return value


def _book(request: web.Request) -> ScheduleBook:
    book = request.app[READ_MODEL].schedules
    if book is None:
        raise web.HTTPNotFound(reason="this orchestrator keeps no schedules")
    return book


async def _block(request: web.Request, book: ScheduleBook) -> None:
    if "index" in request.query:
        index = int_param(request, "index", 0, 0, 2**63)
        await book.position.wait_past(index, float_param(request, "wait", 60.0, 0,
                                                         MAX_WAIT_S))


async def list_schedules(request: web.Request) -> web.Response:
    book = _book(request)
    owner = _name(request.query.get("owner"), "owner")
    after = _name(request.query.get("after"), "after")
    limit = int_param(request, "limit", 100, 1, 1000)
    await _block(request, book)
    page = book.page(owner, after, limit)
    return json_reply({"schedules": [view.to_json() for view in page],
                       "next_after": page[-1].name if len(page) == limit else None,
                       "index": book.position.value})


async def get_schedule(request: web.Request) -> web.Response:
    book = _book(request)
    name = _name(request.match_info["name"], "name") or ""
    await _block(request, book)
    view = book.get(name)
    if view is None:
        return error_response(404, ErrorCode.NOT_FOUND, f"schedule {name} does not exist")
    return json_reply({**view.to_json(), "index": book.position.value})


def add_schedule_routes(app: web.Application) -> None:
    app.router.add_get("/v1/schedules", list_schedules)
    app.router.add_get("/v1/schedules/{name}", get_schedule)
