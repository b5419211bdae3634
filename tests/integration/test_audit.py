"""Audit and replay: a scripted incident read back through the CLI and the API."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import orjson

from sdk.agent import AgentClient, TaskContext
from services.http.models import AgentWhy, TaskWhy
from services.http.redact import redacted
from tests.conftest import DEAD_AFTER, HEARTBEAT_INTERVAL
from tests.fuzz.world import World, build_world
from tests.integration.test_cli import cli
from tests.support import eventually, get_json, registration, request, subject


async def incident(orchestrator, nc, names, nats_server) -> AgentClient:
    """doomed runs t0 and dies; rescuer gets it; doomed's late completion is refused."""
    await request(nc, subject(names, "register", "doomed"), registration(
        "doomed", capacity=1, services=[{"name": "web", "address": "d", "port": 80}]))
    offers = await nc.subscribe(names.agent_tasks("doomed"))
    await request(nc, subject(names, "task.submit"), {"task_id": "t0", "kind": "work"})
    offer = orjson.loads((await offers.next_msg(timeout=10)).data)
    await request(nc, subject(names, "task.accept", "doomed"),
                  {"task_id": "t0", "token": offer["token"]})

    async def hold(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    rescuer = AgentClient("rescuer", ["cpu"], capacity=2, nats_url=nats_server.url,
                          prefix=names.prefix, handlers={"work": hold})
    await rescuer.start()
    await nc.jetstream().publish(names.heartbeat("doomed"),
                                 orjson.dumps({"incarnation": 1, "seq": 1}))
    await eventually(lambda: orchestrator.board.tasks["t0"].agent_id == "rescuer",
                     timeout=DEAD_AFTER + 10, what="t0 moved to the rescuer")
    late = await request(nc, subject(names, "task.complete", "doomed"),
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
        # The same chain, but a fencing token shows as its fingerprint to the read API.
        assert over_http["chain"] == redacted(why["chain"])

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
        # The table says who wrote each event and which event set it off, not a command id.
        code, listing = await cli("events", *common)
        header, _, *rows = listing.splitlines()
        assert header.split()[-2:] == ["by", "caused_by"] and "cmd-" not in listing
        [reassigned] = [row.split() for row in rows if "Reassigned" in row.split()]
        assert reassigned[-3:] == ["orchestrator", str(death), "DeclaredDead"]
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


class Heartbeats:
    """Raw-protocol heartbeats of one incarnation, until stopped (the agent goes silent)."""

    def __init__(self, nc, names, agent_id: str, incarnation: int = 1) -> None:
        self.nc, self.names, self.agent_id, self.incarnation = nc, names, agent_id, incarnation
        self.task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        for seq in itertools.count(1):
            body = {"incarnation": self.incarnation, "seq": seq}
            await self.nc.jetstream().publish(self.names.heartbeat(self.agent_id),
                                              orjson.dumps(body))
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def why(orchestrator, path: str) -> dict:
    status, headers, body = await get_json(f"http://127.0.0.1:{orchestrator.http_port}{path}")
    assert status == 200 and headers["Content-Type"] == "application/json", (status, body)
    return body


async def test_a_task_requeued_off_a_dead_agent_is_explained_by_the_api_and_the_cli(
    orchestrator, nc, names, nats_server
):
    # A raw-protocol agent, the only one with gpu, takes the task and starts it...
    await request(nc, subject(names, "register", "lonely"),
                  registration("lonely", capabilities=["gpu"], capacity=1))
    beats = Heartbeats(nc, names, "lonely")
    offers = await nc.subscribe(names.agent_tasks("lonely"))
    await request(nc, subject(names, "task.submit"),
                  {"task_id": "t-gpu", "kind": "render", "requires": ["gpu"]})
    offer = orjson.loads((await offers.next_msg(timeout=10)).data)
    await request(nc, subject(names, "task.accept", "lonely"),
                  {"task_id": "t-gpu", "token": offer["token"]})
    # ...then goes silent: declared dead, and with nobody else to take it the task waits.
    await beats.stop()
    await eventually(lambda: orchestrator.board.tasks["t-gpu"].status == "pending",
                     timeout=DEAD_AFTER + 10, what="t-gpu requeued")

    found = await why(orchestrator, "/v1/tasks/t-gpu/why")
    TaskWhy.model_validate(found)
    requeued = found["chain"][-1]
    assert requeued["type"] == "Requeued"
    assert requeued["reason"] == (
        "returned to the queue: no other agent could take it (agent lonely dead)")
    assert requeued["cause"]["type"] == "DeclaredDead"
    assert requeued["cause"]["detector"]["dead_after_s"] == DEAD_AFTER
    assert requeued["cause"]["suspected"]["type"] == "Suspected"
    assert [(r["code"], r["message"]) for r in found["waiting"]["reasons"]] == [
        ("no_capability", "no live agent has capability gpu"),
        ("not_healthy", "1 capable agent is not healthy (1 dead)")]
    agent = await why(orchestrator, "/v1/agents/lonely/why")
    AgentWhy.model_validate(agent)
    assert [(m["task_id"], m["to_agent"]) for m in agent["tasks_moved"]] == [("t-gpu", None)]

    common = prefix_args(nats_server, names)
    code, out = await cli("explain", "task", "t-gpu", "--json", *common)
    assert code == 0
    by_cli = orjson.loads(out)
    assert redacted(by_cli["chain"]) == found["chain"] and by_cli["waiting"] == found["waiting"]
    code, text = await cli("explain", "task", "t-gpu", *common)
    assert code == 0
    assert "returned to the queue: no other agent could take it (agent lonely dead)" in text
    assert "caused by DeclaredDead of lonely" in text
    assert "no_capability: no live agent has capability gpu" in text


async def test_a_task_nobody_can_take_says_why_it_waits(orchestrator, nc, names, nats_server):
    await request(nc, subject(names, "register", "cpu-only"), registration("cpu-only"))
    beats = Heartbeats(nc, names, "cpu-only")
    try:
        reply = await request(nc, subject(names, "task.submit"),
                              {"task_id": "t-tpu", "kind": "train", "requires": ["tpu"]})
        await orchestrator.runner.position.wait_for(reply["position"], 10)

        found = await why(orchestrator, "/v1/tasks/t-tpu/why")
        assert found["status"] == "pending" and found["requires"] == ["tpu"]
        assert found["waiting"]["reasons"] == [
            {"code": "no_capability", "message": "no live agent has capability tpu",
             "count": 1}]
        assert found["waiting"]["summary"] == (
            "waiting for an agent: no live agent has capability tpu")
        code, text = await cli("explain", "task", "t-tpu", *prefix_args(nats_server, names))
        assert code == 0 and "no live agent has capability tpu" in text
    finally:
        await beats.stop()


# The last step of each history the fuzz world builds, as explained.
LAST_REASONS = {
    "fz-requeued": "returned to the queue: no other agent could take it (agent fz-doomed dead)",
    "fz-reassigned": "refused a late complete from attempt 1 (fz-victim): the task is on "
                     "attempt 2 and running",
    "fz-retried": "accepted by fz-worker (incarnation 1) on attempt 2",
    "fz-exhausted": "dead-lettered: attempt 2 on fz-worker failed: fz-boom; 2 failure(s) "
                    "reached max_attempts",
    "fz-timed-out": "dead-lettered: attempt 1 on fz-worker timed out after 0.3s; 1 "
                    "failure(s) reached max_attempts",
    "fz-dead": "dead-lettered: attempt 1 on fz-worker failed: boom; the failure is not "
               "retryable",
    "fz-cancelled": "cancelled while assigned to fz-worker, not yet accepted: cancelled by "
                    "request; the agent was told to stop",
    "fz-cancelled-run": "cancelled while running on fz-worker: fz: not needed; the agent was "
                        "told to stop",
    "fz-cancelled-pending": "cancelled while waiting in the queue: cancelled by request",
    "fz-reborn": "accepted by fz-phoenix (incarnation 2) on attempt 2",
    "fz-moved": "accepted by fz-worker (incarnation 1) on attempt 2",
    "fz-retry-wait": "attempt 1 on fz-doomed failed: fz-boom; failure 1 of at most 3, retry "
                     "in 0.2s at ",
}


async def test_every_history_the_fuzz_world_holds_is_explained(orchestrator, nc, names):
    world = await build_world(orchestrator, nc, names, moved_task=True)
    try:
        found = {}
        for task_id in sorted({t.task_id for t in world.tasks.values()}):
            found[task_id] = await why(orchestrator, f"/v1/tasks/{task_id}/why")
            TaskWhy.model_validate(found[task_id])
            assert all(step["reason"] for step in found[task_id]["chain"]), task_id
            assert found[task_id]["status"] == world.orch.board.tasks[task_id].status
        for agent_id in (World.victim, World.doomed, World.phoenix, World.worker):
            AgentWhy.model_validate(await why(orchestrator, f"/v1/agents/{agent_id}/why"))
    finally:
        await world.stop()

    for task_id, reason in LAST_REASONS.items():
        assert found[task_id]["chain"][-1]["reason"].startswith(reason), task_id
    steps = {t: {s["type"]: s for s in f["chain"]} for t, f in found.items()}
    assert steps["fz-reassigned"]["Reassigned"]["reason"] == (
        "moved from fz-victim to fz-worker (incarnation 1) for attempt 2: agent fz-victim dead")
    assert steps["fz-reassigned"]["Reassigned"]["cause"]["type"] == "DeclaredDead"
    assert steps["fz-moved"]["Requeued"]["reason"] == (
        "returned to the queue: no other agent could take it (agent fz-worker did not "
        "accept it in time); failed attempt 1 of at most 3")
    assert steps["fz-moved"]["Requeued"]["cause"]["type"] == "timeout"
    assert steps["fz-reborn"]["Requeued"]["cause"]["type"] == "DeclaredDead"
    assert [s["type"] for s in found["fz-retried"]["chain"]] == [
        "Submitted", "Assigned", "Failed", "Assigned", "Accepted"]
    assert steps["fz-retried"]["Assigned"]["reason"] == (
        "retry: assigned to fz-worker (incarnation 1) for attempt 2")
    # The waiting ones say why, the retry when it fell due; the others do not wait.
    waits = {t: f["waiting"] for t, f in found.items() if f["waiting"]}
    assert set(waits) == {"fz-requeued", "fz-retry-wait", "fz-pending"}
    assert waits["fz-pending"]["reasons"][0]["message"] == (
        "no live agent has capability fz-nobody")
    for task_id in ("fz-requeued", "fz-retry-wait"):
        assert [(r["code"], r["message"]) for r in waits[task_id]["reasons"]] == [
            ("no_capability", "no live agent has capability fz-rare"),
            ("not_healthy", "1 capable agent is not healthy (1 dead)")]
    assert waits["fz-retry-wait"]["retry_in_s"] == 0.0
    assert waits["fz-retry-wait"]["summary"].startswith("the retry fell due at ")


async def test_the_what_if_route_answers_each_dead_after_and_refuses_bad_values(
    orchestrator, nc, names, nats_server
):
    flappy = AgentClient("flappy", ["cpu"], nats_url=nats_server.url, prefix=names.prefix)
    await flappy.start()
    try:
        await eventually(lambda: flappy.heartbeats_sent > 5)
        flappy.heartbeats_paused = True  # a 2 s pause: longer than dead_after (1 s)
        paused = time.monotonic()
        await eventually(lambda: orchestrator.agents.agents["flappy"].status == "dead",
                         timeout=10)
        await eventually(lambda: time.monotonic() - paused >= 2.0, interval=0.01)
        flappy.heartbeats_paused = False
        await eventually(lambda: flappy.incarnation == 2, what="flappy re-registered")
        base = f"http://127.0.0.1:{orchestrator.http_port}/v1/what-if"
        status, _, body = await get_json(f"{base}?dead_after=3,{DEAD_AFTER}&suspect_after=0.5")
        assert status == 200, body
        assert body["recorded_dead_after"] == [DEAD_AFTER]
        assert body["settings"] == {"suspect_after": 0.5, "dead_after": DEAD_AFTER}
        as_recorded, longer = body["points"]
        assert {k: as_recorded[k] for k in ("dead_after", "recorded_deaths",
                                            "false_deaths_recorded", "avoided", "added",
                                            "later", "earlier", "pending", "same")} == {
            "dead_after": DEAD_AFTER, "recorded_deaths": 1, "false_deaths_recorded": 1,
            "avoided": 0, "added": 0, "later": 0, "earlier": 0, "pending": 0, "same": 1}
        assert longer["dead_after"] == 3.0 and longer["avoided"] == 1
        assert longer["recorded_deaths"] == 1 and longer["added"] == 0
        # Without dead_after: multiples of the one in force.
        status, _, body = await get_json(base)
        assert status == 200, body
        assert [p["dead_after"] for p in body["points"]] == [0.25, 0.5, 0.75, 1.0, 1.5, 2.0,
                                                              3.0]
        for bad in ("dead_after=0", "dead_after=3600.5", "dead_after=x", "dead_after=",
                    "dead_after=nan", "dead_after=-1", "dead_after=1,2&suspect_after=1,2",
                    "dead_after=" + ",".join(str(i) for i in range(1, 12))):
            status, headers, body = await get_json(f"{base}?{bad}")
            assert status == 400, bad
            assert body["error"]["code"] == "invalid_request" and "X-Orch-Index" in headers
    finally:
        await flappy.stop(deregister=False)
