"""The orchestrator paused (SIGSTOP) longer than dead_after: no false deaths."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from tests.processes import AgentProcess, OrchestratorProcess
from tests.support import eventually, get_json


@pytest.fixture
def processes(nats_server, prefix, tmp_path) -> Iterator[tuple[OrchestratorProcess,
                                                               list[AgentProcess]]]:
    orch = OrchestratorProcess(nats_server.url, prefix, tmp_path / "orchestrator.log")
    agents = [AgentProcess(f"a{i}", nats_url=nats_server.url, prefix=prefix,
                           log_path=tmp_path / f"a{i}.log") for i in range(3)]
    yield orch, agents
    for agent in agents:
        agent.stop()
    orch.resume()
    orch.stop()


async def test_pause_longer_than_dead_after_declares_nobody_dead(processes, nc, names):
    orch, agents = processes
    orch.start()
    await eventually(orch.ready, timeout=30, what="orchestrator ready")
    for agent in agents:
        agent.start()

    async def all_healthy() -> bool:
        _, _, body = await get_json(orch.url("/v1/agents?status=healthy"))
        return len(body["agents"]) == len(agents)

    await eventually(all_healthy, timeout=30, what="agents healthy")
    store = EventStore(nc.jetstream(), names, create_mapper())
    before = await store.last_position()

    # The agents keep heartbeating while the orchestrator is frozen past dead_after.
    orch.pause()
    paused = time.monotonic()
    await eventually(lambda: time.monotonic() - paused > 2.5, timeout=10, interval=0.1)
    orch.resume()

    # Then a full dead_after and more of normal running.
    resumed = time.monotonic()
    await eventually(lambda: time.monotonic() - resumed > 2.5, timeout=10, interval=0.1)
    assert await all_healthy()
    events = await store.read(after=before)
    assert [e for e in events if e.name == "DeclaredDead"] == []
