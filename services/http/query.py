"""What the read API's routes share: the key of the app's ReadModel, the JSON answers,
and the parsing of query and path parameters (a bad one answers 400, by BadQuery)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from domain.errors import ErrorCode
from domain.fields import ID_PATTERN

if TYPE_CHECKING:
    from services.http.api import ReadModel

_ID = re.compile(ID_PATTERN)

READ_MODEL: web.AppKey[ReadModel] = web.AppKey("read_model")


class BadQuery(Exception):
    pass


def json_reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: ErrorCode, message: str) -> web.Response:
    return json_reply({"ok": False, "error": {"code": str(code), "message": message}}, status)


def float_param(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a number") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be between {low} and {high}")
    return value


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    return int(float_param(request, name, default, low, high))


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _ID.match(value):
        raise BadQuery(f"{name} must match {ID_PATTERN}")
    return value


def agent_path_id(request: web.Request) -> str:
    return path_id(request, "agent_id")

