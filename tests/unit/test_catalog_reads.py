"""The catalog projection's reads: a service's instances a page of agents at a time, and
the summary of every service, kept until the catalog changes."""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

from domain.agents.agent import Agent
from domain.errors import CommandRefused
from projections.fleet.catalog import AgentEntry, Catalog
from tests.unit.log_events import Log


def catalog_of(count: int) -> Catalog:
    """Agents a000.. offer "web" (two instances each for every third agent); every fourth
    is dead; agents in reverse id order, so no page may come out of insertion order."""
    catalog = Catalog()
    for i in reversed(range(count)):
        services: list[dict[str, Any]] = [
            {"name": "web", "address": f"10.0.0.{i}", "port": port, "tags": ["t"], "meta": {}}
            for port in ((80, 81) if i % 3 == 0 else (80,))]
        catalog.add(AgentEntry(f"a{i:03d}", 1, {"zone": "eu" if i % 2 else "us"}, services,
                               "dead" if i % 4 == 0 else "alive"))
    return catalog


def read_all(catalog: Catalog, limit: int, **filters: object) -> list[list[dict]]:
    pages, after = [], None
    while True:
        page, after = catalog.instances_page("web", after, limit, **filters)  # type: ignore[arg-type]
        pages.append(page)
        if after is None:
            return pages


def test_pages_in_id_order_make_up_the_whole_list_and_never_split_an_agent() -> None:
    catalog = catalog_of(40)
    pages = read_all(catalog, 7)
    assert [i for page in pages for i in page] == catalog.instances("web")
    for page in pages:
        assert len({i["agent_id"] for i in page}) <= 7
    agents_per_page = [[i["agent_id"] for i in page] for page in pages]
    for earlier, later in pairwise(agents_per_page):
        assert earlier[-1] < later[0]  # an agent's two instances on one page


def test_filters_page_over_the_matching_agents_only() -> None:
    catalog = catalog_of(40)
    for filters in ({"healthy_only": True}, {"labels": {"zone": "eu"}},
                    {"labels": {"zone": "eu"}, "healthy_only": True}, {"tags": ["nope"]}):
        pages = read_all(catalog, 3, **filters)
        assert [i for page in pages for i in page] == catalog.instances("web", **filters)
        assert all(len({i["agent_id"] for i in page}) == 3 for page in pages[:-1])


def test_the_last_page_says_so_even_when_it_is_full() -> None:
    catalog = catalog_of(6)
    page, after = catalog.instances_page("web", None, 6)
    assert after is None and len({i["agent_id"] for i in page}) == 6
    page, after = catalog.instances_page("web", None, 5)
    assert after == "a004"
    page, after = catalog.instances_page("web", after, 5)
    assert [i["agent_id"] for i in page] == ["a005"] and after is None


def test_an_unknown_service_or_a_cursor_past_the_end_is_an_empty_last_page() -> None:
    catalog = catalog_of(5)
    assert catalog.instances_page("db", None, 10) == ([], None)
    assert catalog.instances_page("web", "zzz", 10) == ([], None)


def test_the_summary_follows_each_change_of_the_catalog() -> None:
    log = Log()
    agents = [Agent(f"a{i}", ["cpu"], 1, {}, [{"name": "web", "address": "10.0.0.1",
                                               "port": 80, "tags": [f"t{i}"], "meta": {}}])
              for i in range(3)]
    for agent in agents:
        log.record("agent", agent)
    catalog = Catalog()
    applied = 0

    def apply_new() -> dict:
        nonlocal applied
        for event in log.events[applied:]:
            catalog.apply(event)
        applied = len(log.events)
        return catalog.services()

    assert apply_new() == {"web": {"instances": 3, "healthy": 3, "tags": ["t0", "t1", "t2"]}}
    agents[0].declare_dead(1, 9.0, 5.0, 0)
    log.record("agent", agents[0])
    assert apply_new()["web"]["healthy"] == 2
    agents[1].deregister(1)
    log.record("agent", agents[1])
    assert apply_new() == {"web": {"instances": 2, "healthy": 1, "tags": ["t0", "t2"]}}
    agents[2].change_services([{"name": "db", "address": "10.0.0.2", "port": 5432,
                                "tags": [], "meta": {}}])
    log.record("agent", agents[2])
    assert apply_new() == {"db": {"instances": 1, "healthy": 1, "tags": []},
                           "web": {"instances": 1, "healthy": 0, "tags": ["t0"]}}


def recount(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """The summary made afresh from every instance, as /v1/services once made it."""
    summary: dict[str, dict[str, Any]] = {}
    for instance in catalog.instances():
        count = summary.setdefault(instance["service"],
                                   {"instances": 0, "healthy": 0, "tags": set()})
        count["instances"] += 1
        count["healthy"] += int(instance["healthy"])
        count["tags"] |= set(instance["tags"])
    return {name: {**c, "tags": sorted(c["tags"])} for name, c in sorted(summary.items())}


def test_the_kept_counts_match_a_recount_after_every_event_of_a_random_history() -> None:
    rng = random.Random(7)
    catalog = Catalog()
    log = Log()
    agents: dict[str, Agent] = {}

    def declared() -> list[dict[str, Any]]:
        names = rng.sample(["web", "db", "cache"], rng.randint(0, 3))
        names += rng.sample(names, min(len(names), rng.randint(0, 1)))  # twice, at times
        return [{"name": n, "address": "10.0.0.1", "port": rng.randint(1, 9),
                 "tags": rng.sample(["a", "b", "c"], rng.randint(0, 2)), "meta": {}}
                for n in names]

    for _ in range(600):
        agent_id = f"a{rng.randrange(12)}"
        agent = agents.get(agent_id)
        try:
            if agent is None:
                agent = agents[agent_id] = Agent(agent_id, ["cpu"], 1, {}, declared())
            elif agent.status == "left":
                agent.reregister(["cpu"], 1, {}, declared())
            else:
                step = rng.choice(["suspect", "dead", "recover", "drain", "services", "leave",
                                   "restart"])
                incarnation = agent.incarnation
                if step == "suspect":
                    agent.suspect(incarnation, 4.0, 3.0, 0)
                elif step == "dead":
                    agent.declare_dead(incarnation, 9.0, 5.0, 0)
                elif step == "recover":
                    agent.recover(incarnation, 1)
                elif step == "drain":
                    agent.drain()
                elif step == "services":
                    agent.change_services(declared())
                elif step == "leave":
                    agent.deregister(incarnation)
                else:
                    agent.reregister(["cpu"], 1, {}, declared())
        except CommandRefused:
            continue  # not allowed from where the agent is: nothing recorded
        log.record("agent", agent)
        for event in log.events[catalog.position:]:  # positions count from 1
            catalog.apply(event)
        assert catalog.services() == recount(catalog), log.events[-1].name
