"""Bearer tokens on the read API: 401 without a valid one, 403 for a scope that does not
reach the route. Tokens are compared by digest, in constant time, and never logged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from domain.errors import ErrorCode
from projections.access import Access
from services.auth.admin import parse_api_token

OPEN_ROUTES = frozenset({"/healthz", "/readyz"})
UI_ROOT = "/ui"
# The raw log carries every payload and result, and a what-if replays the whole agent log
# and heartbeat stream: for admin tokens only.
ADMIN_ROUTES = ("/v1/events", "/v1/what-if")
SCOPES_REACHING = {"read": frozenset({"read", "admin"}), "admin": frozenset({"admin"})}
# Reads; every other method acts (the dashboard's drain, undrain and cancel): admin only.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Where the bearer check leaves the token's identity for the route (an action records it).
CALLER: web.RequestKey[str | None] = web.RequestKey("caller", str)


def required_scope(path: str, method: str = "GET") -> str | None:
    """The scope a route needs; None for the open ones."""
    if path in OPEN_ROUTES or path == UI_ROOT or path.startswith(UI_ROOT + "/"):
        return None  # the dashboard's static files hold no data; it asks /v1 with a token
    if method not in READ_METHODS:
        return "admin"
    return "admin" if path.startswith(ADMIN_ROUTES) else "read"


def _refuse(status: int, message: str) -> web.Response:
    body = {"ok": False, "error": {"code": str(ErrorCode.UNAUTHORIZED), "message": message}}
    response = web.Response(body=orjson.dumps(body), status=status,
                            content_type="application/json")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="orchestrator"'
    return response


Middleware = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]],
                      Any]


def bearer_auth(access: Access) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request],
                    Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        needed = required_scope(request.path, request.method)
        if needed is None:
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        parsed = parse_api_token(token.strip()) if scheme.lower() == "bearer" else None
        scope = access.token_scope(*parsed) if parsed is not None else None
        if scope is None:
            return _refuse(401, "a valid bearer token is required (orchestrator token "
                                "create --scope read)")
        if scope not in SCOPES_REACHING[needed]:
            if request.method not in READ_METHODS:
                return _refuse(403, f"a {scope} token may not act: {request.method} "
                                    f"{request.path} needs an admin token (orchestrator "
                                    f"token create --scope admin)")
            return _refuse(403, f"a {scope} token does not reach {request.path}; it needs "
                                f"{needed}")
        request[CALLER] = parsed[0] if parsed is not None else None
        return await handler(request)

    return check
