"""Caps on the read API's blocking queries (`?index=`): each holds a connection and a
waiter for up to 600 s, so without a cap a few clients could hold thousands of them
(2,000 held made `/healthz` take half a second). At most MAX_PER_TOKEN wait at once per
API token (per client address with auth off, where there are no tokens) and MAX_TOTAL in
all; past either, the query is answered 429 at once, never queued. A client that hangs
up gives its place back within CHECK_S, not at the end of its wait (aiohttp does not
cancel a handler whose client left)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from projections.position import Position
from services.auth.admin import parse_api_token

MAX_PER_TOKEN = 16
MAX_TOTAL = 256
RETRY_AFTER_S = 1
CHECK_S = 1.0


class TooManyBlocking(Exception):
    """A blocking query past a cap; `cap` names which ("token" or "total")."""

    def __init__(self, cap: str, limit: int) -> None:
        who = "for one token" if cap == "token" else "in all"
        super().__init__(f"at most {limit} blocking queries may wait at once {who}; "
                         f"retry after {RETRY_AFTER_S} s")
        self.cap = cap


class BlockingQueries:
    """The blocking queries waiting now, by token."""

    def __init__(self) -> None:
        self.waiting = 0
        self._by_key: dict[str, int] = {}

    @contextmanager
    def slot(self, request: web.Request, by_token: bool) -> Iterator[None]:
        """Hold a place while the query waits; TooManyBlocking past a cap. Without
        `by_token` (auth off: any made-up token would pass) by the client's address."""
        # The module's caps are read at each query (tests lower them).
        key = _key(request) if by_token else f"remote:{request.remote}"
        held = self._by_key.get(key, 0)
        if held >= MAX_PER_TOKEN:
            raise TooManyBlocking("token", MAX_PER_TOKEN)
        if self.waiting >= MAX_TOTAL:
            raise TooManyBlocking("total", MAX_TOTAL)
        self._by_key[key] = held + 1
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1
            left = self._by_key[key] - 1
            if left:
                self._by_key[key] = left
            else:
                del self._by_key[key]  # no entry kept per token that waits no more


# Set when the server shuts down: the queries waiting answer within CHECK_S, so that a
# stopping orchestrator neither waits for them nor leaves its dashboards on "Live".
CLOSING: web.AppKey[asyncio.Event] = web.AppKey("blocking_closing", asyncio.Event)


def release_on_shutdown(app: web.Application) -> None:
    app[CLOSING] = asyncio.Event()

    async def closing(app: web.Application) -> None:
        app[CLOSING].set()

    app.on_shutdown.append(closing)


async def wait_past(request: web.Request, position: Position, index: int,
                    wait: float) -> None:
    """Until `position` passes `index`, `wait` runs out, the client hangs up, or the
    server shuts down."""
    closing = request.app.get(CLOSING)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        remaining = deadline - loop.time()
        if await position.wait_past(index, min(remaining, CHECK_S)) or remaining <= CHECK_S:
            return
        if request.transport is None or request.transport.is_closing():
            return  # nobody to answer: the place goes to another query
        if closing is not None and closing.is_set():
            return  # the server is going: answer now


def _key(request: web.Request) -> str:
    """The token's id (never its secret): the bearer check ran before, so it is a valid
    token's."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    parsed = parse_api_token(token.strip()) if scheme.lower() == "bearer" else None
    if parsed is not None:
        identity, token_id, _ = parsed
        return f"token:{identity}.{token_id}"
    return f"remote:{request.remote}"
