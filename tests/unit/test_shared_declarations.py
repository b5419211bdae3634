"""Agents' declarations: what a fleet repeats is held once, and reads show what was sent."""

from __future__ import annotations

from domain.agents.agent import Agent
from projections.fleet.agents import AgentHealth
from projections.fleet.catalog import Catalog
from tests.unit.log_events import Log


def declared(number: int) -> Agent:
    return Agent(f"a{number}", ["cpu"], 1,
                 {"zone": "eu-1", "host": f"host-{number}", "version": "2.4.1"},
                 [{"name": "web", "address": f"10.0.0.{number}", "port": 80,
                   "tags": ["http", "v2"], "meta": {}}])


def test_repeated_values_are_shared_and_reads_are_unchanged() -> None:
    log = Log()
    for number in (1, 2):
        log.record("agent", declared(number))
    health, catalog = AgentHealth(), Catalog()
    for event in log.events:
        health.apply(event)
        catalog.apply(event)
    one, two = health.agents["a1"], health.agents["a2"]

    assert one.labels == {"zone": "eu-1", "host": "host-1", "version": "2.4.1"}
    assert one.labels["zone"] is two.labels["zone"]
    assert one.labels["version"] is two.labels["version"]
    assert one.services[0]["tags"] is two.services[0]["tags"] == ["http", "v2"]
    assert one.services[0]["meta"] is two.services[0]["meta"] == {}
    assert one.services == [{"name": "web", "address": "10.0.0.1", "port": 80,
                             "tags": ["http", "v2"], "meta": {}}]
    assert catalog.agents["a1"].services is one.services  # one object for both projections
    assert [i["agent_id"] for i in catalog.instances("web")] == ["a1", "a2"]
