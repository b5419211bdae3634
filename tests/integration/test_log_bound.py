"""A bounded log (ORCH_LOG_MAX_AGE) on a real nats-server: the server cuts old events, and
the orchestrator loses nothing it still needs — agents and unfinished tasks are carried
forward and can still be commanded, a restart starts from a snapshot that covers the cut,
and without one it refuses to start rather than serve a wrong fleet."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import nats
import pytest

from infra.settings import Settings
from services.app import LogNotCovered, Orchestrator
from tests.integration.test_snapshots import projections, start, write_history
from tests.support import eventually, registration, request, subject

MAX_AGE_S = 4.0


def bounded(settings: Settings) -> Settings:
    # No heartbeats in this test: deadlines out of reach. Snapshots by count out of reach
    # too: the keeper must write the one that covers the cut itself.
    return replace(settings, suspect_after=300.0, dead_after=300.0,
                   snapshot_every=1_000_000, log_max_age=MAX_AGE_S)


def incarnation(orch: Orchestrator, agent_id: str) -> int | None:
    view = orch.agents.get(agent_id)
    return view.incarnation if view is not None else None


def without_positions(state: dict[str, Any]) -> dict[str, Any]:
    """Projections minus the log's position, which restatements move (the views' own
    positions stay: projections skip a restatement)."""
    return {k: v for k, v in state.items() if k != "position"}


async def test_old_events_are_cut_and_what_is_needed_is_carried_forward(
        settings: Settings, started: list[Orchestrator], nc: nats.NATS, names: Any) -> None:
    orch = await start(started, bounded(settings))
    await write_history(nc, names)  # agents a0..a5 (a3 left), tasks t0..t7 (t0 cancelled)
    early = await orch.store.last_position()
    await orch.runner.position.wait_for(early, 10)
    before = projections(orch)
    assert [e.name for e in await orch.store.history("task", "t0")] == [
        "Submitted", "Cancelled"]

    async def cut() -> bool:
        first, _ = await orch.store.bounds()
        return first > early

    await eventually(cut, timeout=30, what="the server cut the first events")
    # Nothing the projections serve changed.
    assert without_positions(projections(orch)) == without_positions(before)
    # A finished task is let go; a pending one and every agent begin with their state.
    assert await orch.store.history("task", "t0") == []
    for kind, aggregate_id in (("task", "t1"), ("agent", "a0"), ("agent", "a3")):
        history = await orch.store.history(kind, aggregate_id)
        assert history and history[0].name == "CarriedForward", (kind, aggregate_id)
        assert all(e.position > early for e in history)

    # Carried aggregates are commanded as before: their state came through whole.
    reply = await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "a0"})
    assert reply["ok"], reply
    reply = await request(nc, subject(names, "task.cancel"), {"task_id": "t1"})
    assert reply["ok"], reply
    await orch.runner.position.wait_for(reply["position"], 10)
    # The agent that left comes back as its next incarnation, not as a new agent.
    back = await request(nc, subject(names, "register", "a3"), registration("a3"))
    assert back["ok"] and back["incarnation"] == 2, back
    await eventually(lambda: incarnation(orch, "a3") == 2 or None, what="a3 registered again")
    after = projections(orch)
    drained, cancelled = orch.agents.get("a0"), orch.board.get("t1")
    assert drained is not None and drained.status == "draining"
    assert cancelled is not None and cancelled.status == "cancelled"

    # A restart starts from the keeper's snapshot, which covers what was cut.
    started.remove(orch)
    await orch.stop()
    again = await start(started, bounded(settings))
    first, _ = await again.store.bounds()
    assert again.runner.started_from >= first - 1 > 0
    assert without_positions(projections(again)) == without_positions(after)


async def test_a_cut_log_without_a_covering_snapshot_does_not_start(
        settings: Settings, started: list[Orchestrator], nc: nats.NATS, names: Any) -> None:
    orch = await start(started, bounded(settings))
    await write_history(nc, names)
    early = await orch.store.last_position()

    async def cut() -> bool:
        first, _ = await orch.store.bounds()
        return first > early

    await eventually(cut, timeout=30, what="the server cut the first events")
    started.remove(orch)
    await orch.stop()
    # The snapshots are lost: what is left of the log cannot stand for the fleet.
    await nc.jetstream().delete_object_store(names.snapshots_bucket)
    with pytest.raises(LogNotCovered, match="no usable snapshot covers"):
        await Orchestrator(bounded(settings)).start()


def test_a_bound_needs_snapshots() -> None:
    with pytest.raises(ValueError, match="needs snapshots"):
        Settings(log_max_age=3600.0, snapshot_every=0)
    with pytest.raises(ValueError, match="log_max_age must be >= 0"):
        Settings(log_max_age=-1.0)
