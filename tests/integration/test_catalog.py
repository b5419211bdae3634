"""Service catalog and discovery, over NATS and HTTP alike."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import nats.errors
import orjson
import pytest

from infra.names import Names
from sdk.catalog import query, watch
from services.app import Orchestrator
from tests.conftest import DEAD_AFTER, SUSPECT_AFTER
from tests.support import eventually, get_json, request, subject

SERVICES = ("web", "db", "cache")
ZONES = ("eu", "us")


def url(orch, path: str) -> str:
    return f"http://127.0.0.1:{orch.http_port}{path}"


def declaration(name: str, i: int, tags: list[str]) -> dict:
    return {"name": name, "address": f"10.0.0.{i}", "port": 8000 + i, "tags": tags,
            "meta": {"v": str(i)}}


async def heartbeat(nc, names: Names, agent_id: str, seq: int, incarnation: int = 1) -> None:
    await nc.jetstream().publish(names.heartbeat(agent_id),
                                 orjson.dumps({"incarnation": incarnation, "seq": seq}))


@pytest.fixture
async def fleet(orchestrator, nc, names):
    """20 agents; agent i offers a random subset of the services with random tags."""
    rng = random.Random(11)
    expected = []
    for i in range(20):
        zone = ZONES[i % 2]
        offered = [s for s in SERVICES if rng.random() < 0.6] or ["web"]
        declared = [declaration(s, i, rng.sample(["v1", "v2", "primary", "ssd"], 2))
                    for s in offered]
        reply = await request(nc, subject(names, "register", f"a{i:02d}"), {
            "agent_id": f"a{i:02d}", "capabilities": [], "capacity": 1,
            "labels": {"zone": zone}, "services": declared})
        assert reply["ok"]
        expected += [(d["name"], f"a{i:02d}", zone, tuple(d["tags"])) for d in declared]
    await orchestrator.runner.position.wait_for(reply["position"], 10)
    return expected


class TestQueries:
    @pytest.mark.parametrize(("service", "tag", "zone"), [
        ("web", None, None), ("db", None, None), ("cache", "ssd", None), ("web", None, "eu"),
        ("db", "primary", "us"), ("cache", "v1", "eu"),
    ])
    async def test_nats_and_http_return_exactly_the_matching_instances(
        self, orchestrator, nc, names, fleet, service, tag, zone
    ):
        want = sorted(a for s, a, z, tags in fleet if s == service
                      and (tag is None or tag in tags) and (zone is None or z == zone))
        over_nats = await query(nc, service, [tag] if tag else [],
                                {"zone": zone} if zone else {}, prefix=names.prefix)
        http_query = f"/v1/services/{service}?healthy=true"
        http_query += f"&tag={tag}" if tag else ""
        http_query += f"&label=zone={zone}" if zone else ""
        status, _, over_http = await get_json(url(orchestrator, http_query))

        assert status == 200
        assert sorted(i["agent_id"] for i in over_nats["instances"]) == want
        assert over_http["instances"] == over_nats["instances"]

    async def test_lists_services_with_counts(self, orchestrator, fleet):
        _, _, body = await get_json(url(orchestrator, "/v1/services"))
        for service in SERVICES:
            count = sum(1 for s, *_ in fleet if s == service)
            assert body["services"][service]["instances"] == count
            assert body["services"][service]["healthy"] == count

    async def test_a_service_is_read_a_page_of_agents_at_a_time(self, orchestrator, fleet):
        for service, tag in (("web", None), ("db", None), ("cache", "v1")):
            everything = f"/v1/services/{service}" + (f"?tag={tag}" if tag else "")
            _, _, whole = await get_json(url(orchestrator, everything))
            assert whole["next_after"] is None  # 500 agents a page without ?limit=
            pages: list[list[dict]] = []
            after = None
            while True:
                query = f"/v1/services/{service}?limit=2" + (f"&tag={tag}" if tag else "")
                status, _, body = await get_json(
                    url(orchestrator, query + (f"&after={after}" if after else "")))
                assert status == 200, body
                pages.append(body["instances"])
                after = body["next_after"]
                if after is None:
                    break
                assert after == body["instances"][-1]["agent_id"]
            assert len(pages) > 2 and all(1 <= len(page) <= 2 for page in pages[:-1])
            assert [i for page in pages for i in page] == whole["instances"]

    async def test_a_bad_page_size_is_a_coded_400(self, orchestrator, fleet):
        for bad in ("0", "-1", "10001", "two"):
            status, _, body = await get_json(url(orchestrator, f"/v1/services/web?limit={bad}"))
            assert status == 400 and body["error"]["code"] == "invalid_request", bad
        status, _, body = await get_json(url(orchestrator, "/v1/services/nothing?limit=0"))
        assert status == 400, body  # the query is checked before the service is looked up

    async def test_unknown_service_is_a_404(self, orchestrator, fleet):
        status, _, body = await get_json(url(orchestrator, "/v1/services/nothing"))
        assert status == 404 and body["error"]["code"] == "not_found"


class TestHealth:
    async def test_a_dying_agent_leaves_healthy_results_and_watchers_and_blocking_queries_see_it(
        self, orchestrator, nc, names
    ):
        await request(nc, subject(names, "register", "live"), {"agent_id": "live", "services": [
            declaration("web", 1, ["v1"])]})
        reply = await request(nc, subject(names, "register", "dying"), {
            "agent_id": "dying", "services": [declaration("web", 2, ["v1"])]})
        await orchestrator.runner.position.wait_for(reply["position"], 10)
        index = reply["position"]

        updates = watch(nc, "web", prefix=names.prefix, healthy_only=True)
        first = await anext(updates)
        assert sorted(i["agent_id"] for i in first) == ["dying", "live"]
        blocking = asyncio.create_task(get_json(url(
            orchestrator, f"/v1/services/web?healthy=true&index={index}&wait=30")))

        async def keep_live_beating() -> None:
            for seq in range(1, 1000):
                await heartbeat(nc, names, "live", seq)
                await asyncio.sleep(0.1)

        beating = asyncio.create_task(keep_live_beating())
        try:
            # "dying" never heartbeats: suspect after SUSPECT_AFTER, and out of results.
            changed = await asyncio.wait_for(anext(updates), SUSPECT_AFTER + 10)
            assert [i["agent_id"] for i in changed] == ["live"]
            status, headers, body = await asyncio.wait_for(blocking, 10)
            assert status == 200
            assert [i["agent_id"] for i in body["instances"]] == ["live"]
            assert int(headers["X-Orch-Index"]) > index
            everyone = await query(nc, "web", healthy_only=False, prefix=names.prefix)
            assert {i["agent_id"]: i["status"] for i in everyone["instances"]}["dying"] in (
                "suspect", "dead")
        finally:
            beating.cancel()
            await updates.aclose()

    async def test_changes_are_published_on_the_change_feed(self, orchestrator, nc, names):
        feed = await nc.subscribe(names.catalog_changes("web"))
        await request(nc, subject(names, "register", "a1"), {
            "agent_id": "a1", "services": [declaration("web", 1, [])]})
        change = orjson.loads((await feed.next_msg(timeout=10)).data)
        assert change["service"] == "web" and change["event"] == "Registered"
        assert [i["agent_id"] for i in change["instances"]] == ["a1"]


class TestWatch:
    """sdk.catalog.watch needs only the protocol: the change feed and catalog.query."""

    async def test_a_change_the_feed_never_published_is_found_by_asking_again(
        self, orchestrator, nc, names
    ):
        reply = await request(nc, subject(names, "register", "a1"), {
            "agent_id": "a1", "services": [declaration("web", 1, [])]})
        await orchestrator.runner.position.wait_for(reply["position"], 10)
        updates = watch(nc, "web", prefix=names.prefix, check_every=0.2)
        try:
            assert [i["agent_id"] for i in await anext(updates)] == ["a1"]
            orchestrator.change_feed.enabled = lambda: False  # as while nobody leads
            await request(nc, subject(names, "register", "a2"), {
                "agent_id": "a2", "services": [declaration("web", 2, [])]})

            seen = await asyncio.wait_for(anext(updates), 10)

            assert [i["agent_id"] for i in seen] == ["a1", "a2"]
        finally:
            await updates.aclose()

    async def test_with_no_orchestrator_a_query_by_identity_says_so_at_once(self, nc):
        with pytest.raises(nats.errors.NoRespondersError):
            await query(nc, "web", prefix="nobody-here", identity="dashboard", timeout=5)

    async def test_changes_older_than_what_it_holds_are_dropped(
        self, orchestrator, nc, names
    ):
        reply = await request(nc, subject(names, "register", "a1"), {
            "agent_id": "a1", "services": [declaration("web", 1, [])]})
        await orchestrator.runner.position.wait_for(reply["position"], 10)
        updates = watch(nc, "web", prefix=names.prefix, check_every=60)
        first = await anext(updates)
        position = (await query(nc, "web", prefix=names.prefix))["position"]
        moved = {**first[0], "address": "10.9.9.9"}

        async def change(at: int, instances: list) -> None:
            await nc.publish(names.catalog_changes("web"), orjson.dumps({
                "service": "web", "position": at, "event": "ServicesChanged",
                "agent_id": "a1", "instances": instances}))

        async def until_moved() -> list:
            seen = []
            async for instances in updates:  # a1 may turn suspect meanwhile: a real change
                seen.append(instances)
                if instances == [moved]:
                    return seen
            return seen

        try:
            await change(position - 1, [])  # from before the answer it started from
            await change(position + 1000, [moved])

            seen = await asyncio.wait_for(until_moved(), 10)

            assert seen[-1] == [moved] and [] not in seen
        finally:
            await updates.aclose()


class TestDeclareServices:
    async def test_replaces_the_set_without_registering_again(self, orchestrator, nc, names):
        await request(nc, subject(names, "register", "a1"), {
            "agent_id": "a1", "services": [declaration("web", 1, [])]})
        reply = await request(nc, subject(names, "services", "a1"), {
            "agent_id": "a1", "services": [declaration("db", 1, ["primary"])]})

        assert reply["ok"] and reply["status"] == "healthy"
        await orchestrator.runner.position.wait_for(reply["position"], 10)
        assert orchestrator.catalog.instances("web") == []
        assert [i["agent_id"] for i in orchestrator.catalog.instances("db")] == ["a1"]
        assert orchestrator.agents.agents["a1"].incarnation == 1
        again = await request(nc, subject(names, "services", "a1"), {
            "agent_id": "a1", "services": [declaration("db", 1, ["primary"])]})
        assert again["ok"] and "position" not in again  # unchanged: nothing written

    @pytest.mark.parametrize("services", [
        [{"name": "a.b", "address": "h", "port": 1}],
        [{"name": "web", "address": "", "port": 1}],
        [{"name": "web", "address": "h", "port": -1}],
        [{"name": "web", "address": "h", "port": "80"}],
        [{"name": "web", "address": "h", "port": 1, "tags": ["x" * 65]}],
        [{"name": "web", "address": "h", "port": 1, "weight": 3}],
        [{"name": "web", "address": "h", "port": 1}] * 33,
        "web",
    ])
    async def test_invalid_declarations_are_refused_and_write_nothing(
        self, orchestrator, nc, names, services
    ):
        await request(nc, subject(names, "register", "a1"), {"agent_id": "a1"})
        before = await orchestrator.store.last_position()
        for command, agent_id in (("services", "a1"), ("register", "a2")):
            body = {"agent_id": agent_id, "services": services}
            reply = await request(nc, subject(names, command, agent_id), body)
            assert reply["error"]["code"] == "invalid_request", command
        assert await orchestrator.store.last_position() == before

    async def test_unknown_agent_is_not_found(self, orchestrator, nc, names):
        reply = await request(nc, subject(names, "services", "nobody"),
                              {"agent_id": "nobody", "services": []})
        assert reply["error"]["code"] == "not_found"


class TestHistory:
    async def test_the_catalog_at_a_past_position_is_reconstructed(
        self, orchestrator, nc, names
    ):
        await request(nc, subject(names, "register", "a1"),
                      {"agent_id": "a1", "services": [declaration("web", 1, [])]})
        past = await request(nc, subject(names, "register", "a2"), {"agent_id": "a2",
                                            "services": [declaration("web", 2, [])]})
        await request(nc, subject(names, "services", "a1"), {
            "agent_id": "a1", "services": [declaration("db", 1, [])]})
        reply = await request(nc, subject(names, "deregister", "a2"),
                              {"agent_id": "a2", "incarnation": 1})
        await orchestrator.runner.position.wait_for(reply["position"], 10)
        assert "web" not in orchestrator.catalog.by_service

        _, _, then = await get_json(url(orchestrator, f"/v1/services/web?at={past['position']}"))
        _, _, before_a2 = await get_json(url(orchestrator,
                                             f"/v1/services/web?at={past['position'] - 1}"))

        assert [i["agent_id"] for i in then["instances"]] == ["a1", "a2"]
        assert then["position"] == past["position"]
        assert [i["agent_id"] for i in before_a2["instances"]] == ["a1"]


async def test_dead_instances_are_deregistered_after_the_configured_period(
    settings, nc, names
):
    orch = Orchestrator(replace(settings, deregister_dead_after=0.5))
    await orch.start()
    try:
        await request(nc, subject(names, "register", "a1"), {
            "agent_id": "a1", "services": [declaration("web", 1, [])]})
        await eventually(lambda: "a1" in orch.agents.agents and
                         orch.agents.agents["a1"].status == "left",
                         timeout=DEAD_AFTER + 10, what="deregistered after death")
        assert orch.catalog.instances("web") == []
        history = await orch.store.history("agent", "a1")
        assert [e.name for e in history][-2:] == ["DeclaredDead", "Deregistered"]
        assert history[-1].data()["reason"] == "dead for 0.5s"
        assert history[-1].causation_id == history[-2].event_id
    finally:
        await orch.stop()


async def test_success_before_passing_damps_recovery(settings, nc, names):
    orch = Orchestrator(replace(settings, success_before_passing=3))
    await orch.start()
    try:
        await request(nc, subject(names, "register", "a1"), {"agent_id": "a1"})
        await eventually(lambda: orch.agents.agents["a1"].status == "suspect",
                         timeout=SUSPECT_AFTER + 10)
        await heartbeat(nc, names, "a1", 1)
        await eventually(lambda: orch.agents.agents["a1"].last_heartbeat_seq == 1)
        ticks = orch.monitor.ticks
        await eventually(lambda: orch.monitor.ticks > ticks + 5)  # one beat is not enough
        assert orch.agents.agents["a1"].status == "suspect"
        for seq in (2, 3):
            await heartbeat(nc, names, "a1", seq)
        await eventually(lambda: orch.agents.agents["a1"].status == "healthy",
                         what="recovered after three beats")
    finally:
        await orch.stop()
