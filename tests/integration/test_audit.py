"""Audit and replay: a scripted incident read back through the CLI and the API."""

from __future__ import annotations

import asyncio
import time

import orjson

from sdk.agent import AgentClient, TaskContext
from tests.conftest import DEAD_AFTER
from tests.integration.test_cli import cli
from tests.support import eventually, get_json, registration, request


async def incident(orchestrator, nc, names, nats_server) -> AgentClient:
    """doomed runs t0 and dies; rescuer gets it; doomed's late completion is refused."""
    await request(nc, names.command("agent.register"), registration(
        "doomed", capacity=1, services=[{"name": "web", "address": "d", "port": 80}]))
    offers = await nc.subscribe(names.agent_tasks("doomed"))
    await request(nc, names.command("task.submit"), {"task_id": "t0", "kind": "work"})
    offer = orjson.loads((await offers.next_msg(timeout=10)).data)
    await request(nc, names.command("task.accept"), {"task_id": "t0", "token": offer["token"]})

    async def hold(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    rescuer = AgentClient("rescuer", ["cpu"], capacity=2, nats_url=nats_server.url,
                          prefix=names.prefix, handlers={"work": hold})
    await rescuer.start()
    await nc.jetstream().publish(names.heartbeat("doomed"),
                                 orjson.dumps({"incarnation": 1, "seq": 1}))
    await eventually(lambda: orchestrator.board.tasks["t0"].agent_id == "rescuer",
                     timeout=DEAD_AFTER + 10, what="t0 moved to the rescuer")
    late = await request(nc, names.command("task.complete"),
                         {"task_id": "t0", "token": offer["token"], "result": "late"})
    assert late["error"]["code"] == "stale_token"
    return rescuer


def prefix_args(nats_server, names) -> list[str]:
    return ["--nats-url", nats_server.url, "--subject-prefix", names.prefix]


async def test_a_scripted_incident_is_explained_replayed_and_exported(
    orchestrator, nc, names, nats_server
):
    rescuer = await incident(orchestrator, nc, names, nats_server)
    try:
        common = prefix_args(nats_server, names)

        # explain task: the whole chain, from the missed heartbeat to the refused result.
        code, out = await cli("explain", "task", "t0", "--json", *common)
        assert code == 0
        why = orjson.loads(out)
        types = [s["type"] for s in why["chain"]]
        assert types[:4] == ["Submitted", "Assigned", "Accepted", "Reassigned"]
        moved = why["chain"][3]
        assert moved["cause"]["type"] == "DeclaredDead"
        assert moved["cause"]["aggregate_id"] == "doomed"
        assert moved["cause"]["detector"]["dead_after_s"] == DEAD_AFTER
        assert "last_heartbeat_at" in moved["cause"]["detector"]
        assert moved["cause"]["suspected"]["type"] == "Suspected"
        assert moved["placement"]["chosen"] == "rescuer"
        assert [c["agent_id"] for c in moved["placement"]["considered"]] == ["rescuer"]
        assert [r["data"]["action"] for r in why["stale_results_refused"]] == ["complete"]
        code, text = await cli("explain", "task", "t0", *common)
        assert code == 0 and "caused by DeclaredDead of doomed" in text
        assert "placement: least_loaded chose rescuer" in text
        _, _, over_http = await get_json(
            f"http://127.0.0.1:{orchestrator.http_port}/v1/tasks/t0/why")
        assert over_http["chain"] == why["chain"]

        # state --at before and after the death differ by exactly the death and the move.
        death = moved["cause"]["position"]
        _, before = await cli("state", "--at", str(death - 1), "--json", *common)
        _, after = await cli("state", "--at", str(moved["position"]), "--json", *common)
        before_state, after_state = orjson.loads(before), orjson.loads(after)
        changed_agents = {a["agent_id"] for a, b in zip(
            before_state["agents"], after_state["agents"], strict=True) if a != b}
        changed_tasks = {a["task_id"] for a, b in zip(
            before_state["tasks"], after_state["tasks"], strict=True) if a != b}
        assert changed_agents == {"doomed"} and changed_tasks == {"t0"}
        assert [a["status"] for a in after_state["agents"] if a["agent_id"] == "doomed"] == [
            "dead"]
        assert before_state["tasks"][0]["agent_id"] == "doomed"
        assert after_state["tasks"][0]["agent_id"] == "rescuer"
        assert (before_state["services"]["web"][0]["status"],
                after_state["services"]["web"][0]["status"]) == ("suspect", "dead")

        # events --agent exports JSON lines that parse.
        code, lines = await cli("events", "--agent", "doomed", "--json", *common)
        exported = [orjson.loads(line) for line in lines.splitlines()]
        assert code == 0 and {e["aggregate_id"] for e in exported} == {"doomed"}
        assert [e["type"] for e in exported] == ["Registered", "Suspected", "DeclaredDead"]
        code, listing = await cli("events", "--type", "DeclaredDead", *common)
        assert code == 0 and "doomed" in listing and "DeclaredDead" in listing
    finally:
        await rescuer.stop(deregister=False)


async def test_what_if_reports_the_false_death_and_what_a_longer_dead_after_costs(
    orchestrator, nc, names, nats_server
):
    flappy = AgentClient("flappy", ["cpu"], nats_url=nats_server.url, prefix=names.prefix)
    goner = AgentClient("goner", ["cpu"], nats_url=nats_server.url, prefix=names.prefix)
    await flappy.start()
    await goner.start()
    try:
        await eventually(lambda: flappy.heartbeats_sent > 5 and goner.heartbeats_sent > 5)
        flappy.heartbeats_paused = True  # a 2 s pause: longer than dead_after (1 s)
        paused = time.monotonic()
        await eventually(lambda: orchestrator.agents.agents["flappy"].status == "dead",
                         timeout=10)
        await eventually(lambda: time.monotonic() - paused >= 2.0, interval=0.01)
        flappy.heartbeats_paused = False
        await eventually(lambda: flappy.incarnation == 2, what="flappy re-registered")
        goner.heartbeats_paused = True  # and this one dies for real
        gone = time.monotonic()
        await eventually(lambda: orchestrator.agents.agents["goner"].status == "dead",
                         timeout=10)
        await eventually(lambda: time.monotonic() - gone > 3.5, timeout=10, interval=0.05)

        common = prefix_args(nats_server, names)
        _, out = await cli("what-if", "--suspect-after", "0.5", "--dead-after", "1.0",
                           "--json", *common)
        in_force = orjson.loads(out)
        _, out = await cli("what-if", "--suspect-after", "1.5", "--dead-after", "3.0",
                           "--json", *common)
        longer = orjson.loads(out)
        code, text = await cli("what-if", "--suspect-after", "1.5", "--dead-after", "3.0",
                               *common)
    finally:
        await flappy.stop(deregister=False)
        await goner.stop(deregister=False)

    by_agent = {d["agent_id"]: d for d in in_force["deaths"]}
    assert in_force["summary"]["recorded_deaths"] == 2
    assert in_force["summary"]["false_deaths_recorded"] == 1
    assert by_agent["flappy"]["false_death"] and by_agent["flappy"]["verdict"] == "same"
    assert not by_agent["goner"]["false_death"] and by_agent["goner"]["verdict"] == "same"
    assert in_force["recorded_dead_after"] == [DEAD_AFTER]

    by_agent = {d["agent_id"]: d for d in longer["deaths"]}
    assert by_agent["flappy"]["verdict"] == "avoided"
    assert by_agent["goner"]["verdict"] == "later"
    assert 1.5 < by_agent["goner"]["shift_s"] <= 2.05  # work moves ~2 s later
    assert code == 0 and "avoided 1" in text
