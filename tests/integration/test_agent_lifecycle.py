"""Registration, heartbeats, suspicion and death, seen over raw NATS and the read API."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import orjson
from nats.aio.client import Client

from domain.protocol.replies import ErrorReply
from infra.names import Names
from services.app import Orchestrator
from tests.conftest import DEAD_AFTER, SUSPECT_AFTER
from tests.support import eventually, get_json, registration, request, subject

# Upper slack on a deadline: the monitor ticks every 25 ms, but a loaded 2-core machine
# can hold the event loop much longer. The benchmark measures the real precision.
SLACK = 1.5


def api(orch: Orchestrator, path: str) -> str:
    return f"http://127.0.0.1:{orch.http_port}{path}"


async def heartbeat(nc: Client, names: Names, agent_id: str, incarnation: int, seq: int) -> None:
    await nc.jetstream().publish(
        names.heartbeat(agent_id), orjson.dumps({"incarnation": incarnation, "seq": seq})
    )


class TestRegisterAgent:
    async def test_raw_request_gets_the_protocol_reply(self, orchestrator, nc, names):
        reply = await request(nc, subject(names, "register", "a1"), registration("a1"))

        assert reply["ok"] is True
        assert reply["agent_id"] == "a1"
        assert reply["incarnation"] == 1
        assert reply["heartbeat_subject"] == names.heartbeat("a1")
        assert reply["heartbeat_interval_s"] == orchestrator.settings.heartbeat_interval
        assert reply["tasks_subject"] == names.agent_tasks("a1")
        assert reply["control_subject"] == names.agent_control("a1")
        assert reply["position"] >= 1

    async def test_registered_agent_is_listed_healthy(self, orchestrator, nc, names):
        reply = await request(nc, subject(names, "register", "a1"), registration(
            "a1", labels={"zone": "eu"}, capabilities=["gpu", "cpu"]))

        status, headers, body = await get_json(
            api(orchestrator, f"/v1/agents?index={reply['position'] - 1}&wait=10"))

        assert status == 200
        assert int(headers["X-Orch-Index"]) >= reply["position"]
        [agent] = body["agents"]
        assert agent["agent_id"] == "a1"
        assert agent["status"] == "healthy"
        assert agent["labels"] == {"zone": "eu"}

    async def test_registering_again_with_replace_starts_a_new_incarnation(
            self, orchestrator, nc, names):
        first = await request(nc, subject(names, "register", "a1"), registration("a1"))
        second = await request(nc, subject(names, "register", "a1"),
                               registration("a1", replace=True))

        assert (first["incarnation"], second["incarnation"]) == (1, 2)
        assert second["position"] > first["position"]
        await orchestrator.runner.position.wait_for(second["position"], 10)
        view = orchestrator.agents.get("a1")
        assert view is not None and view.incarnation == 2

    async def test_registering_an_id_held_by_a_live_incarnation_is_a_conflict(
            self, orchestrator, nc, names):
        # Two processes started with one id: the second must not take it silently.
        first = await request(nc, subject(names, "register", "a1"), registration("a1"))
        await heartbeat(nc, names, "a1", first["incarnation"], 1)
        before = await orchestrator.store.last_position()

        second = await request(nc, subject(names, "register", "a1"), registration("a1"))

        assert second["ok"] is False and second["error"]["code"] == "conflict"
        message = second["error"]["message"]
        assert "incarnation 1" in message and "last heard from" in message
        assert '"replace": true' in message
        assert second["error"]["details"][0]["type"] == "live_incarnation"
        ErrorReply.model_validate(second)  # as docs/schemas/error.reply.json says
        assert await orchestrator.store.last_position() == before

    async def test_the_same_process_may_register_again_while_alive(
            self, orchestrator, nc, names):
        # A retry whose reply was lost, or a re-registration asked for by the orchestrator,
        # comes from the process holding the id: its instance id says so.
        first = await request(nc, subject(names, "register", "a1"),
                              registration("a1", instance_id="proc-1"))
        await heartbeat(nc, names, "a1", first["incarnation"], 1)

        again = await request(nc, subject(names, "register", "a1"),
                              registration("a1", instance_id="proc-1"))
        other = await request(nc, subject(names, "register", "a1"),
                              registration("a1", instance_id="proc-2"))

        assert again["ok"] is True and again["incarnation"] == 2
        assert other["ok"] is False and other["error"]["code"] == "conflict"

    async def test_a_restart_after_the_old_process_fell_silent_gets_a_new_incarnation(
            self, orchestrator, nc, names):
        first = await request(nc, subject(names, "register", "a1"), registration("a1"))
        await eventually(lambda: orchestrator.agents.get("a1").status == "suspect",
                         timeout=SUSPECT_AFTER + 10, what="the silent incarnation suspect")

        again = await request(nc, subject(names, "register", "a1"), registration("a1"))

        assert again["ok"] is True and again["incarnation"] == first["incarnation"] + 1

    async def test_registers_the_kinds_it_runs(self, orchestrator, nc, names):
        reply = await request(nc, subject(names, "register", "a1"),
                              registration("a1", kinds=["resize", "echo"]))
        await orchestrator.runner.position.wait_for(reply["position"], 10)

        status, _, body = await get_json(api(orchestrator, "/v1/agents/a1"))

        assert status == 200 and body["kinds"] == ["resize", "echo"]

    async def test_is_discoverable_as_a_micro_service(self, orchestrator, nc):
        info = await request(nc, "$SRV.INFO.orchestrator", b"")
        subjects = {e["subject"] for e in info["endpoints"]}
        assert info["name"] == "orchestrator"
        assert orchestrator.names.agent_command_wildcard("register") in subjects


class TestHealth:
    async def test_silent_agent_becomes_suspect_then_dead_at_its_deadlines(
        self, orchestrator, nc, names
    ):
        reply = await request(nc, subject(names, "register", "a1"), registration("a1"))
        for seq in range(1, 4):
            await asyncio.sleep(orchestrator.settings.heartbeat_interval)
            await heartbeat(nc, names, "a1", reply["incarnation"], seq)
        last_beat = time.monotonic()  # acknowledged by JetStream, so received no later
        await eventually(lambda: orchestrator.agents.agents["a1"].last_heartbeat_seq == 3,
                         what="third heartbeat applied")

        await eventually(lambda: orchestrator.agents.agents["a1"].status == "suspect",
                         timeout=SUSPECT_AFTER + SLACK, interval=0.01, what="suspect")
        suspected = time.monotonic() - last_beat
        await eventually(lambda: orchestrator.agents.agents["a1"].status == "dead",
                         timeout=DEAD_AFTER + SLACK, interval=0.01, what="dead")
        died = time.monotonic() - last_beat

        # Lower bounds are exact (never early); upper bounds allow for a loaded machine.
        assert SUSPECT_AFTER <= suspected < SUSPECT_AFTER + SLACK
        assert DEAD_AFTER <= died < DEAD_AFTER + SLACK

    async def test_history_lists_registration_suspicion_and_death_with_causes(
        self, orchestrator, nc, names
    ):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        await heartbeat(nc, names, "a1", 1, 1)
        await eventually(lambda: orchestrator.agents.agents.get("a1") and
                         orchestrator.agents.agents["a1"].status == "dead",
                         timeout=DEAD_AFTER + 5, what="dead")

        status, _, body = await get_json(api(orchestrator, "/v1/agents/a1/history"))

        assert status == 200
        registered, suspected, dead = body["events"]
        assert [registered["type"], suspected["type"], dead["type"]] == [
            "Registered", "Suspected", "DeclaredDead"]
        assert registered["causation_id"].startswith("cmd-")
        assert suspected["causation_id"].startswith("hb-")  # the last heartbeat heard
        assert dead["causation_id"] == suspected["event_id"]
        assert suspected["correlation_id"] == dead["correlation_id"] == registered["event_id"]
        assert dead["data"]["dead_after_s"] == DEAD_AFTER
        assert dead["data"]["silence_s"] >= DEAD_AFTER

    async def test_heartbeats_keep_an_agent_healthy(self, orchestrator, nc, names):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        deadline = time.monotonic() + DEAD_AFTER * 2
        seq = 0
        while time.monotonic() < deadline:
            seq += 1
            await heartbeat(nc, names, "a1", 1, seq)
            await asyncio.sleep(orchestrator.settings.heartbeat_interval)
        await eventually(lambda: orchestrator.agents.agents["a1"].last_heartbeat_seq == seq)

        assert orchestrator.agents.agents["a1"].status == "healthy"
        assert orchestrator.agents.agents["a1"].position == 1  # no event since registering

    async def test_suspect_agent_that_heartbeats_again_recovers(self, orchestrator, nc, names):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        await eventually(lambda: orchestrator.agents.agents["a1"].status == "suspect",
                         timeout=SUSPECT_AFTER + 5, interval=0.01, what="suspect")

        await heartbeat(nc, names, "a1", 1, 1)

        await eventually(lambda: orchestrator.agents.agents["a1"].status == "healthy",
                         what="recovered")
        history = await orchestrator.store.history("agent", "a1")
        assert [e.name for e in history][:3] == ["Registered", "Suspected", "Recovered"]

    async def test_heartbeat_of_a_dead_incarnation_is_told_to_reregister(
        self, orchestrator, nc, names
    ):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        await eventually(lambda: orchestrator.agents.agents["a1"].status == "dead",
                         timeout=DEAD_AFTER + 5, what="dead")
        control = await nc.subscribe(names.agent_control("a1"))

        await heartbeat(nc, names, "a1", 1, 99)

        msg = await control.next_msg(timeout=5)
        assert orjson.loads(msg.data) == {
            "type": "reregister", "reason": "declared dead", "incarnation": 1, "task_id": None}


class TestDeregisterAndDrain:
    async def test_deregistered_agent_has_left_and_is_never_declared_dead(
        self, orchestrator, nc, names
    ):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        reply = await request(nc, subject(names, "deregister", "a1"),
                              {"agent_id": "a1", "incarnation": 1})
        assert reply == {"ok": True, "agent_id": "a1", "status": "left",
                         "position": reply["position"]}
        await orchestrator.runner.position.wait_for(reply["position"], 10)
        assert orchestrator.agents.agents["a1"].status == "left"

        # Well past the dead deadline: leaving is final, nothing more is recorded.
        target = reply["position"]
        await asyncio.sleep(0)  # let the monitor tick at least once
        await eventually(lambda: orchestrator.monitor.visible_since + DEAD_AFTER + 0.3
                         < time.monotonic(), timeout=DEAD_AFTER + 5)
        assert await orchestrator.store.last_position() == target

    async def test_deregister_of_an_old_incarnation_is_a_conflict(self, orchestrator, nc, names):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        await request(nc, subject(names, "register", "a1"), registration("a1", replace=True))
        before = await orchestrator.store.last_position()

        reply = await request(nc, subject(names, "deregister", "a1"),
                              {"agent_id": "a1", "incarnation": 1})

        assert reply["ok"] is False and reply["error"]["code"] == "conflict"
        assert await orchestrator.store.last_position() == before

    async def test_drain_marks_the_agent_draining_once(self, orchestrator, nc, names):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        first = await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "a1"})
        again = await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "a1"})

        assert first["ok"] and first["status"] == "draining" and "position" in first
        assert again["ok"] and again["status"] == "draining" and "position" not in again
        _, _, body = await get_json(
            api(orchestrator, f"/v1/agents?status=draining&index={first['position'] - 1}"))
        assert [a["agent_id"] for a in body["agents"]] == ["a1"]

    async def test_unknown_agent_is_not_found(self, orchestrator, nc, names):
        reply = await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "nobody"})
        assert reply["error"]["code"] == "not_found"

    async def test_an_agent_taken_out_is_told_at_once_and_again_by_its_next_heartbeat(
        self, orchestrator, nc, names
    ):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        control = await nc.subscribe(names.agent_control("a1"))
        await nc.flush()

        reply = await request(nc, subject(names, "admin.agent.deregister"), {"agent_id": "a1"})
        told = orjson.loads((await control.next_msg(timeout=5)).data)

        assert reply["status"] == "left"
        assert told["type"] == "deregistered" and told["incarnation"] == 1
        assert told["reason"].startswith("removed by ")
        # Missed (the agent was reconnecting, say): a heartbeat of it says it again.
        await orchestrator.runner.position.wait_for(reply["position"], 10)
        await heartbeat(nc, names, "a1", 1, 7)
        again = orjson.loads((await control.next_msg(timeout=5)).data)
        assert again == {"type": "deregistered", "reason": "deregistered", "incarnation": 1,
                         "task_id": None}


async def test_a_healthy_agent_is_not_cached_and_still_re_registers_and_drains(
        settings, nc, names):
    # Only agents whose health is in question keep their aggregate in memory; the others
    # are read from the log when next commanded, and answered the same. The agent never
    # heartbeats here: suspicion is put out of reach so that it stays healthy throughout.
    orch = Orchestrator(replace(settings, suspect_after=600.0, dead_after=1200.0))
    await orch.start()
    try:
        first = await request(nc, subject(names, "register", "a1"), registration("a1"))
        assert not orch.registry.repository.cached("a1")
        await eventually(lambda: orch.agents.get("a1") is not None)

        again = await request(nc, subject(names, "register", "a1"),
                              {**registration("a1"), "replace": True})
        drained = await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "a1"})

        assert (first["incarnation"], again["incarnation"]) == (1, 2)
        assert drained["ok"] is True
        assert not orch.registry.repository.cached("a1")
    finally:
        await orch.stop()
