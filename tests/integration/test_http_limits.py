"""The read API's size limits: each over-long part of a request gets a coded JSON error
that the OpenAPI document lists, whether our check or aiohttp's parser catches it.

Pinned from a schemathesis run that drew a request line over 8,190 bytes and got
aiohttp's plain-text 400, which the document did not describe.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from services.app import Orchestrator
from services.http.limits import (
    LIMIT_STATUSES,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS_TOTAL_BYTES,
    MAX_TARGET_BYTES,
    PARSER_LINE_BYTES,
)
from services.http.openapi import openapi_document


async def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes after an error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _get(target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _assert_coded(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"].startswith("application/json")
    error = orjson.loads(body)
    assert error["ok"] is False
    assert error["error"]["code"] in ("invalid_request", "payload_too_large")
    assert error["error"]["message"]


def _long_target(size: int) -> str:
    base = "/v1/services/"
    return base + "a" * (size - len(base))


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("target one byte over our limit", _get(_long_target(MAX_TARGET_BYTES + 1)), 414),
    ("target past the parser's limit", _get(_long_target(PARSER_LINE_BYTES + 10)), 414),
    ("query string over our limit", _get("/v1/agents?capability=" + "x" * MAX_TARGET_BYTES),
     414),
    ("one header over our limit", _get("/v1/stats", "X-Big: " + "h" * MAX_HEADER_BYTES), 431),
    ("one header past the parser's limit",
     _get("/v1/stats", "X-Big: " + "h" * (PARSER_LINE_BYTES + 10)), 431),
    ("many small headers over the total",
     _get("/v1/stats", *[f"X-H{i}: " + "v" * 1000
                         for i in range(MAX_HEADERS_TOTAL_BYTES // 1000 + 1)]), 431),
    ("a body over the limit", _get("/v1/stats", body=b"b" * (MAX_BODY_BYTES + 1)), 413),
    ("a request line that is not HTTP", b"\x16\x03\x01 garbage\r\n\r\n", 400),
])
async def test_an_over_long_or_malformed_request_gets_a_coded_json_error(
        orchestrator: Orchestrator, name: str, raw: bytes, expected: int) -> None:
    status, headers, body = await _exchange(orchestrator.http_port, raw)
    _assert_coded(status, headers, body, expected)


async def test_requests_just_within_the_limits_are_served(orchestrator: Orchestrator) -> None:
    query = "/v1/agents?capability="
    target = query + "x" * (MAX_TARGET_BYTES - len(query))
    status, _, body = await _exchange(orchestrator.http_port, _get(target))
    assert status == 200, body
    status, _, _ = await _exchange(
        orchestrator.http_port, _get("/v1/stats", "X-Big: " + "h" * (MAX_HEADER_BYTES - 10),
                                     body=b"b" * MAX_BODY_BYTES))
    assert status == 200


def test_every_operation_documents_the_limit_answers() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():  # the actions are POSTs
            for status in LIMIT_STATUSES:
                content = operation["responses"][str(status)]["content"]
                assert "application/json" in content, (method, path, status)
