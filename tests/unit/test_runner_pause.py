"""A paused projection runner applies nothing until resumed, then everything in order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from projections.runner import ProjectionRunner
from tests.unit.log_events import FakeLogEvent


class Recorder:
    def __init__(self) -> None:
        self.applied: list[int] = []

    def apply(self, event: Any) -> None:
        self.applied.append(event.position)


class NoSource:
    async def last_position(self) -> int:
        return 0

    async def tail(self, after: int, handler: Any, subject_filter: str | None = None,
                   skipped: Any = None) -> Any:
        return None


def event(position: int) -> FakeLogEvent:
    return FakeLogEvent(position=position, kind="agent", aggregate_id="a1",
                        name="Heartbeat", event_id=f"e{position}",
                        recorded_at=datetime(2026, 1, 1, tzinfo=UTC))


async def test_events_wait_while_paused_and_follow_in_order() -> None:
    recorder = Recorder()
    runner = ProjectionRunner(NoSource(), [recorder])
    await runner._apply(event(1))
    async with runner.paused():
        # The subscription hands events over one at a time and waits for each.
        delivery = asyncio.create_task(runner._apply(event(2)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert recorder.applied == [1] and not delivery.done()
        assert runner.position.value == 1
    await asyncio.wait_for(delivery, 5)
    await runner._apply(event(3))
    assert recorder.applied == [1, 2, 3]
