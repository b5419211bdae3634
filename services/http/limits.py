"""Size limits of the read API, each answered with a coded JSON error its OpenAPI lists.

aiohttp's own parser refuses an over-long request line or header with a plain-text 400
before any handler runs, which no client or schema checker can read as the API's error.
So the parser's limits are set well above ours, and our limits are checked on the parsed
request (414 for the target, 431 for headers, 413 for a body); only a request past the
parser's limits still fails in the parser, and that answer is made JSON too.

aiohttp has no deadline on reading a request's head: a client sending half of one held
its connection until the keep-alive timeout (an hour by default). Here the head must be
whole within HEADER_READ_TIMEOUT_S of the connection's opening, or of its first byte
after an answer; else the answer is a coded 408 and the connection is closed. An idle
connection between requests ends after KEEPALIVE_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from domain.errors import ErrorCode

log = logging.getLogger(__name__)

MAX_TARGET_BYTES = 8_190  # path and query: what most proxies and servers accept
MAX_HEADER_BYTES = 8_190  # one header line, name and value
MAX_HEADERS_TOTAL_BYTES = 32_768
MAX_BODY_BYTES = 65_536  # no read route takes a body; a small one is ignored
# aiohttp's parser limits: far past ours, so that ours answer first.
PARSER_LINE_BYTES = 65_536
PARSER_FIELD_BYTES = 65_536
HEADER_READ_TIMEOUT_S = 5.0
KEEPALIVE_TIMEOUT_S = 75.0

_TOO_LARGE = {
    413: (ErrorCode.PAYLOAD_TOO_LARGE, f"request body over {MAX_BODY_BYTES} bytes"),
    414: (ErrorCode.INVALID_REQUEST, f"request target over {MAX_TARGET_BYTES} bytes"),
    431: (ErrorCode.INVALID_REQUEST,
          f"a header over {MAX_HEADER_BYTES} bytes, or headers over "
          f"{MAX_HEADERS_TOTAL_BYTES} bytes in all"),
}
# Statuses every operation may answer for these reasons; the OpenAPI document lists them.
LIMIT_STATUSES = (400, *_TOO_LARGE)


def _error(status: int, code: ErrorCode, message: str) -> web.Response:
    body = {"ok": False, "error": {"code": str(code), "message": message}}
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json")


def limit_exceeded(request: web.BaseRequest) -> int | None:
    """The status a request over one of our limits gets, or None if it is within them."""
    if len(request.raw_path.encode("latin-1", "replace")) > MAX_TARGET_BYTES:
        return 414
    total = 0
    for name, value in request.raw_headers:
        size = len(name) + len(value)
        if size > MAX_HEADER_BYTES:
            return 431
        total += size
    if total > MAX_HEADERS_TOTAL_BYTES:
        return 431
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return 413
    return None


@web.middleware
async def enforce_limits(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    status = limit_exceeded(request)
    if status is None:
        return await handler(request)
    code, message = _TOO_LARGE[status]
    response = _error(status, code, message)
    response.force_close()  # an unread body must not be taken for the next request
    return response


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse in JSON, and
    dropping a client too slow to send a request's head."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._await_head()  # a client that connects and sends nothing is slow too

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        between_requests = self._waiter is not None  # these bytes begin the next one
        super().data_received(data)
        if self._request_count != heads:  # a head parsed (or refused): it came in time
            self._head_read()
        elif data and between_requests and self._head_deadline is None:
            self._await_head()
        # Bytes sent while a request is served wait for its answer unparsed; the next
        # head's deadline starts with the next bytes, the keep-alive timeout bounds it.

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_read()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._head_deadline = self._loop.call_later(HEADER_READ_TIMEOUT_S, self._too_slow)

    def _head_read(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        self._head_deadline = None
        if self.transport is None or self._force_close:
            return
        log.info("dropped a client slow to send a request head remote=%s timeout_s=%s",
                 self.peername, HEADER_READ_TIMEOUT_S)
        body = orjson.dumps({"ok": False, "error": {
            "code": str(ErrorCode.INVALID_REQUEST),
            "message": f"request head not received within {HEADER_READ_TIMEOUT_S} s"}})
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
            + body)
        self.force_close()  # the transport sends what it holds, then closes

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # Part of an answer is out: the connection is beyond repair (as aiohttp does).
            raise ConnectionError("response already started; cannot send an error")
        if status == 500:
            self.log_exception("error handling a request", exc_info=exc)
            response = _error(500, ErrorCode.UNAVAILABLE, "internal error")
        elif isinstance(exc, LineTooLong):
            response = _error(431 if _is_header(exc) else 414, ErrorCode.INVALID_REQUEST,
                              f"request line or header over {PARSER_LINE_BYTES} bytes")
        else:
            response = _error(400, ErrorCode.INVALID_REQUEST, "malformed HTTP request")
        if status != 500:
            log.info("refused a request that could not be parsed status=%s remote=%s error=%s",
                     response.status, request.remote, type(exc).__name__)
        response.force_close()
        return response


def _is_header(exc: LineTooLong) -> bool:
    """A request target starts with '/' or a scheme; anything else was a header."""
    line = exc.args[0] if exc.args else b""
    text = bytes(line).decode("latin-1") if isinstance(line, bytes | bytearray) else str(line)
    return not text.startswith(("/", "http://", "https://", "*"))


class JsonErrorServer(web.Server):
    """A web.Server whose connections answer unparseable requests in JSON."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorAppRunner(web.AppRunner):
    """An AppRunner serving through JsonErrorServer, with our parser limits."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", PARSER_LINE_BYTES)
        kwargs.setdefault("max_field_size", PARSER_FIELD_BYTES)
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT_S)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = JsonErrorServer  # same state, our connection handler
        return server
