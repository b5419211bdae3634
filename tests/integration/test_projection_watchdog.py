"""If the projections stop following the log (their consumer lost, as across a NATS
restart), the orchestrator notices that the log is ahead and follows it again."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

from services.app import WATCHDOG_INTERVAL_S, Orchestrator
from tests.support import eventually, registration, request, subject


async def test_projections_that_stop_following_are_set_to_follow_again(
        orchestrator: Orchestrator, nc: Client, names: Any) -> None:
    await orchestrator.runner.stop()  # the consumer is gone
    reply = await request(nc, subject(names, "register", "late"), registration("late"))
    assert reply["ok"] is True

    await eventually(lambda: orchestrator.agents.get("late"),
                     timeout=4 * WATCHDOG_INTERVAL_S + 5, what="the projection caught up")
    assert orchestrator.runner.position.value >= reply["position"]
    assert orchestrator.metrics.projection_resumes._value.get() >= 1
