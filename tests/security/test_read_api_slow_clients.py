"""Clients of the read API that hold its connections, as an attacker with or without a
token would: half-sent requests, requests sent a byte at a time, and blocking queries
piled up past their caps. Each is dropped or refused, and honest requests go on."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from services.http import blocking, limits
from tests.security.conftest import Secure
from tests.security.test_read_api_tokens import get, token
from tests.support import eventually

FAR_AHEAD = 2**62  # an index the log will not pass: the query waits out its `wait`


async def opened(secure: Secure) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", secure.orch.http_port)


async def answer_then_close(reader: asyncio.StreamReader) -> tuple[int, dict]:
    """What the server sends until it closes the connection: (status, JSON body)."""
    raw = await asyncio.wait_for(reader.read(), timeout=20)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)


def head(path: str, bearer: str, close: bool = False) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {bearer}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class TestSlowHeads:
    @pytest.fixture(autouse=True)
    def short_deadline(self, monkeypatch):
        monkeypatch.setattr(limits, "HEADER_READ_TIMEOUT_S", 1.0)

    async def test_a_half_sent_request_is_answered_408_and_dropped(self, secure):
        read = await token(secure, "read")
        reader, writer = await opened(secure)
        writer.write(head("/v1/agents", read)[:-2])  # all but the blank line ending it
        status, body = await answer_then_close(reader)
        writer.close()
        assert status == 408
        assert body["error"]["code"] == "invalid_request"

    async def test_a_connection_that_sends_nothing_is_dropped(self, secure):
        reader, writer = await opened(secure)
        status, _ = await answer_then_close(reader)
        writer.close()
        assert status == 408

    async def test_bytes_trickling_in_do_not_keep_a_head_alive(self, secure):
        reader, writer = await opened(secure)
        sent = head("/v1/agents", "ot1.x.y.z") + b"X-Pad: " + b"p" * 10_000

        async def trickle() -> None:
            for byte in sent:  # a byte every 50 ms, longer than the deadline in all
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)  # the attack's pace, not a wait on the server

        trickling = asyncio.create_task(trickle())
        try:
            status, _ = await answer_then_close(reader)
        except ConnectionResetError:
            # Closed with the latest bytes unread, the kernel may reset the connection
            # and the 408 with it: dropped all the same.
            status = 408
        finally:
            trickling.cancel()
            writer.close()
        assert status == 408

    async def test_a_kept_alive_connection_gets_the_deadline_for_its_next_request(
            self, secure):
        read = await token(secure, "read")
        reader, writer = await opened(secure)
        writer.write(head("/healthz", read))
        first = await asyncio.wait_for(reader.readuntil(b'{"ok":true}'), timeout=20)
        assert b" 200 " in first.split(b"\r\n")[0]
        writer.write(b"GET /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # then nothing
        status, _ = await answer_then_close(reader)
        writer.close()
        assert status == 408

    async def test_a_request_sent_in_parts_in_time_is_served(self, secure):
        read = await token(secure, "read")
        reader, writer = await opened(secure)
        whole = head("/v1/agents", read, close=True)
        writer.write(whole[:20])
        await writer.drain()
        writer.write(whole[20:])
        status, body = await answer_then_close(reader)
        writer.close()
        assert status == 200
        assert body["agents"] == []


class TestBlockingQueryCaps:
    @pytest.fixture(autouse=True)
    def small_caps(self, monkeypatch):
        monkeypatch.setattr(blocking, "MAX_PER_TOKEN", 3)
        monkeypatch.setattr(blocking, "MAX_TOTAL", 5)

    async def test_past_the_caps_blocking_queries_get_429_and_others_go_on(self, secure):
        first, second, third = [await token(secure, "read") for _ in range(3)]
        held: list[asyncio.StreamWriter] = []

        async def hold(bearer: str) -> None:
            """A blocking query that waits (30 s at most) until its client hangs up."""
            _, writer = await opened(secure)
            writer.write(head(f"/v1/agents?index={FAR_AHEAD}&wait=30", bearer))
            held.append(writer)

        async def probe(bearer: str) -> tuple[int, dict[str, str], dict]:
            return await get(secure, f"/v1/tasks?index={FAR_AHEAD}&wait=0", bearer)

        try:
            for _ in range(3):
                await hold(first)
            # Once its three wait, the same token's next one is refused at once.
            refused = await eventually(
                lambda: _when(probe(first), lambda r: r[0] == 429),
                what="the token's fourth blocking query refused")
            assert refused[2]["error"]["code"] == "unavailable"
            assert "one token" in refused[2]["error"]["message"]
            assert refused[1]["Retry-After"] == "1"
            assert (await probe(second))[0] == 200  # another token is not held back

            for _ in range(2):
                await hold(second)
            refused = await eventually(
                lambda: _when(probe(third), lambda r: r[0] == 429),
                what="a blocking query past the total refused")
            assert "in all" in refused[2]["error"]["message"]
            # Reads that do not block, and the health checks, are still served.
            assert (await get(secure, "/v1/agents", third))[0] == 200
            assert (await get(secure, "/healthz"))[0] == 200
            registry = secure.orch.metrics.registry
            for cap in ("token", "total"):
                assert registry.get_sample_value("orch_http_blocking_refused_total",
                                                 {"cap": cap}) >= 1
        finally:
            for writer in held:
                writer.close()
        # Clients that hang up give their places back without waiting out their 30 s.
        await eventually(lambda: _when(probe(third), lambda r: r[0] == 200),
                         what="the places given back")
        await eventually(lambda: _when(probe(first), lambda r: r[0] == 200),
                         what="the token's places given back")


async def _when(reply, holds):
    """The awaited reply if `holds` is true of it, else None (eventually tries again)."""
    value = await reply
    return value if holds(value) else None
