"""What the demo agent (`orchestrator agent`) can run."""

from __future__ import annotations

import asyncio
from typing import Any

from sdk.agent import TaskContext, TaskFailed, TaskHandler


async def echo(ctx: TaskContext) -> Any:
    """Returns the payload."""
    return ctx.payload


async def sleep(ctx: TaskContext) -> dict[str, float]:
    """Sleeps `payload.seconds` (default 1), reporting progress ten times."""
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    seconds = float(payload.get("seconds", 1.0))
    for step in range(1, 11):
        await asyncio.sleep(seconds / 10)
        await ctx.progress(step / 10)
    return {"slept_s": seconds}


async def fail(ctx: TaskContext) -> None:
    """Fails; `payload.retryable` (default true) says whether it may be retried."""
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    raise TaskFailed("asked to fail", retryable=bool(payload.get("retryable", True)))


DEMO_HANDLERS: dict[str, TaskHandler] = {"echo": echo, "sleep": sleep, "fail": fail}
