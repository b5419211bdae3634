"""Projection snapshots on a real nats-server: written by the leader, restored on start,
and ignored when they do not belong to the log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import nats
import orjson
import pytest

from infra.log.snapshot_store import SnapshotStore
from infra.settings import Settings
from projections import snapshot
from projections.board.tasks import TaskView
from projections.fleet.agents import AgentView
from services.app import Orchestrator
from tests.support import eventually, registration, request, subject

HEARTBEAT_FIELDS = ("last_heartbeat_at", "load", "running")


def projections(orch: Orchestrator) -> dict[str, Any]:
    """Everything the read API serves from the projections, heartbeat fields aside."""
    return {
        "position": orch.runner.position.value,
        "agents": [{k: v for k, v in view.to_json().items() if k not in HEARTBEAT_FIELDS}
                   for view in orch.agents.query()],
        "tasks": [view.to_json() for view in orch.board.query(limit=10_000)],
        "open": {a: sorted(t) for a, t in orch.board.open_by_agent.items()},
        "queued": sorted(orch.board.queued),
        "catalog": orch.catalog.instances(),
    }


async def start(started: list[Orchestrator], settings: Settings) -> Orchestrator:
    orch = Orchestrator(settings)
    await orch.start()
    started.append(orch)
    await eventually(lambda: orch.is_leader, what="leader lease acquired")
    return orch


async def stop(started: list[Orchestrator], orch: Orchestrator) -> None:
    started.remove(orch)
    await orch.stop()


async def write_history(nc: nats.NATS, names: Any) -> None:
    """Agents registered, changed, drained and gone; tasks submitted and cancelled."""
    for i in range(6):
        await request(nc, subject(names, "register", f"a{i}"), registration(
            f"a{i}", capabilities=["nobody-asks"], labels={"n": str(i)},
            services=[{"name": "web", "address": f"10.0.0.{i}", "port": 80, "tags": [f"t{i}"]}]))
    await request(nc, subject(names, "services", "a1"), {"agent_id": "a1", "services": [
        {"name": "api", "address": "10.0.1.1", "port": 443}]})
    await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "a2"})
    await request(nc, subject(names, "deregister", "a3"), {"agent_id": "a3", "incarnation": 1})
    for i in range(8):
        await request(nc, subject(names, "task.submit"), {"task_id": f"t{i}", "kind": "k",
                                                   "requires": ["gpu"], "priority": i % 3})
    await request(nc, subject(names, "task.cancel"), {"task_id": "t0"})


async def test_a_restart_resumes_from_the_leaders_snapshot_and_equals_a_full_replay(
        settings: Settings, started: list[Orchestrator], nc: nats.NATS, names: Any) -> None:
    # Heartbeats would make agents suspect and dead while the test runs: long deadlines.
    quiet = replace(settings, heartbeat_interval=1.0, suspect_after=300.0, dead_after=300.0,
                    snapshot_every=10)
    first = await start(started, quiet)
    await write_history(nc, names)
    last = await first.store.last_position()
    await first.runner.position.wait_for(last, 10)
    # The leader wrote snapshots while the log grew.
    await eventually(lambda: first.snapshots.written > 0 or None, what="a periodic snapshot")
    await request(nc, subject(names, "task.submit"), {"task_id": "late", "kind": "k",
                                                     "requires": ["gpu"]})
    last = await first.store.last_position()
    await first.runner.position.wait_for(last, 10)
    before = projections(first)
    await stop(started, first)  # a clean stop leaves a snapshot at the last position

    second = await start(started, quiet)
    assert second.snapshots.written == second.runner.started_from == last, "from the snapshot"
    assert projections(second) == before
    # It goes on from there: new events apply on top of the restored state.
    reply = await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "a4"})
    await second.runner.position.wait_for(reply["position"], 10)
    view = second.agents.get("a4")
    assert view is not None and view.status == "draining"
    resumed = projections(second)
    await stop(started, second)

    # And the same log replayed from its beginning, without snapshots, agrees.
    replayed = await start(started, replace(quiet, snapshot_every=0))
    assert replayed.runner.started_from == 0
    assert projections(replayed) == resumed


async def test_a_snapshot_that_is_not_of_this_log_is_ignored(
        settings: Settings, started: list[Orchestrator], nc: nats.NATS, names: Any) -> None:
    quiet = replace(settings, suspect_after=300.0, dead_after=300.0, snapshot_every=5)
    first = await start(started, quiet)
    await write_history(nc, names)
    await stop(started, first)
    # The log is replaced by another (its stream deleted and written again): the
    # snapshot's position exists in the new log, but holds another event.
    js = nc.jetstream()
    await js.delete_stream(names.events_stream)
    other = await start(started, replace(quiet, snapshot_every=0))
    for i in range(40):
        await request(nc, subject(names, "register", f"other{i}"), registration(f"other{i}"))
    await stop(started, other)

    again = await start(started, quiet)
    assert again.runner.started_from == 0, "the foreign snapshot was not restored"
    assert sorted(v.agent_id for v in again.agents.query()) == sorted(
        f"other{i}" for i in range(40))
    assert again.catalog.instances() == []


def _flipped_in_the_middle(data: bytes) -> bytes:
    return data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1:]


# Documents naming the log's last position and the event there, that must not be used.
UNUSABLE: dict[str, Callable[[Orchestrator, int, str], bytes]] = {
    "cut-short": lambda orch, position, event_id: b'{"version": 1, "position": 3',
    # What version 2 wrote (JSON rows); had it been used, the projections would be empty.
    "version-2": lambda orch, position, event_id: orjson.dumps({
        "version": 2, "position": position, "event_id": event_id,
        "agent_fields": [f.name for f in fields(AgentView)],
        "task_fields": [f.name for f in fields(TaskView)],
        "agents": [], "tasks": [], "finished": []}),
    # Stored with the object store's digest of it (the store reads it back intact): the
    # document's own digest tells, before marshal reads a byte of it.
    "corrupt": lambda orch, position, event_id: _flipped_in_the_middle(
        snapshot.encode(orch.agents, orch.board, position, event_id)),
}


@pytest.mark.parametrize("document", UNUSABLE.values(), ids=UNUSABLE.keys())
async def test_an_unusable_snapshot_is_ignored_and_the_log_replayed(
        settings: Settings, started: list[Orchestrator], nc: nats.NATS, names: Any,
        document: Callable[[Orchestrator, int, str], bytes]) -> None:
    quiet = replace(settings, suspect_after=300.0, dead_after=300.0, snapshot_every=0)
    first = await start(started, quiet)
    await write_history(nc, names)
    last = await first.store.last_position()
    await first.runner.position.wait_for(last, 10)
    before = projections(first)
    event_id = await first.store.event_id_at(last)
    assert event_id is not None
    data = document(first, last, event_id)
    await stop(started, first)
    await SnapshotStore(nc.jetstream(), names).save(data)

    again = await start(started, replace(quiet, snapshot_every=5))
    assert again.runner.started_from == 0
    assert projections(again) == before
