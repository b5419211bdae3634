"""The catalog projection's reads: a service's instances a page of agents at a time, and
the summary of every service, kept until the catalog changes."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from domain.agent import Agent
from projections.catalog import AgentEntry, Catalog
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


def test_the_summary_is_kept_until_the_catalog_changes_and_follows_each_change() -> None:
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
    assert catalog.services() is catalog.services()  # kept while nothing changes
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
