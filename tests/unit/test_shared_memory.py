"""What many agents repeat is held once; the aggregate cache forgets its least recently
used entries."""

from __future__ import annotations

import pytest

from domain import shared_values
from domain.agents.agent import Agent
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.repository import Repository
from infra.names import Names
from projections.fleet.agents import AgentHealth
from projections.fleet.catalog import Catalog
from tests.unit.log_events import Log

WEB = {"name": "web", "address": "10.0.0.1", "port": 80, "tags": [], "meta": {}}


def test_agents_of_one_kind_share_their_declarations() -> None:
    log = Log()
    log.record("agent", Agent("a1", ["cpu", "gpu"], 2, {}, []))
    log.record("agent", Agent("a2", ["cpu", "gpu"], 2, {}, []))
    log.record("agent", Agent("a3", ["cpu"], 2, {"zone": "eu"}, [WEB]))
    health, catalog = AgentHealth(), Catalog()
    for event in log.events:
        health.apply(event)
        catalog.apply(event)
    a1, a2, a3 = (health.agents[a] for a in ("a1", "a2", "a3"))

    assert a1.capabilities == ["cpu", "gpu"] and a1.capabilities is a2.capabilities
    assert a1.labels is a2.labels and a1.services is a2.services
    assert a3.capabilities == ["cpu"] and a3.capabilities is not a1.capabilities
    assert (a3.labels, a3.services) == ({"zone": "eu"}, [WEB])
    assert catalog.agents["a1"].services is a1.services


def test_an_aggregate_holds_shared_values_and_not_its_callers() -> None:
    labels = {"zone": "eu"}
    agent = Agent("a1", ["cpu"], 1, labels, [])
    other = Agent("a2", ["cpu"], 1, {}, [])
    assert agent.capabilities is other.capabilities
    assert agent.labels == labels and agent.labels is not labels  # a copy of the caller's


def test_the_shared_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_values, "_capabilities", {})
    for i in range(shared_values.MAX_SHARED_CAPABILITIES + 5):
        shared_values.capabilities([f"kind-{i}"])
    assert len(shared_values._capabilities) == shared_values.MAX_SHARED_CAPABILITIES
    past = shared_values.capabilities(["kind-past"])
    assert past == ["kind-past"]
    assert past is not shared_values.capabilities(["kind-past"])  # copied, not kept


async def test_the_aggregate_cache_forgets_the_least_recently_used() -> None:
    repository = Repository(InMemoryEventLog(Names(), create_mapper()), "agent",
                            cache_size=100)
    for i in range(100):
        repository._remember(f"a{i}", f"agent-{i}", i)
    assert await repository.get("a0") == ("agent-0", 0)  # now the most recent
    repository._remember("a100", "agent-100", 100)

    assert len(repository._cache) <= 100
    assert "a0" in repository._cache and "a100" in repository._cache
    assert "a1" not in repository._cache  # the oldest untouched went first
