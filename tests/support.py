"""Helpers for tests: waiting on conditions with deadlines, raw requests, HTTP reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from nats.aio.client import Client

from infra.names import AGENT_COMMANDS, CLIENT_COMMANDS, Names


async def eventually(
    probe: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Poll until `probe` returns something truthy; fail after `timeout` seconds.

    A probe that looks something up which is not there yet (a KeyError, or None where an
    object will be) counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
            if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
                value = await value
        except (LookupError, AttributeError, TypeError) as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout}s") from last_error
        await asyncio.sleep(interval)


async def request(nc: Client, subject: str, body: Any, timeout: float = 5.0) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    msg = await nc.request(subject, data, timeout=timeout)
    reply: dict[str, Any] = orjson.loads(msg.data)
    return reply


async def get_json(url: str, timeout: float = 30.0,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    """GET a URL: (status, headers, parsed JSON body)."""
    async with aiohttp.ClientSession() as session, session.get(
        url, timeout=aiohttp.ClientTimeout(total=timeout), headers=headers
    ) as response:
        body = await response.read()
        return response.status, dict(response.headers), orjson.loads(body) if body else None


def registration(agent_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"agent_id": agent_id, "capabilities": ["cpu"], "capacity": 2}
    body.update(extra)
    return body


# The identity the tests send submitter and operator commands as (auth is off in most
# tests: the subject names the sender, the server does not check it).
TEST_IDENTITY = "tests"


def subject(names: Names, command: str, agent_id: str = "a1") -> str:
    """A command's subject: an agent's names the agent, the others the tests' identity."""
    if command in AGENT_COMMANDS:
        return names.agent_command(agent_id, command)
    if command in CLIENT_COMMANDS:
        return names.client_command(command, TEST_IDENTITY)
    return names.command(command)
