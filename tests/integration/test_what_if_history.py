"""What-if over the durable liveness record, on a real nats-server: an agent whose life
is longer than the heartbeat stream holds, the verdicts the issue found wrong, the
sweep, and the heartbeat-derived fields of a dead agent across a kill -9."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator

import nats.js.errors
import orjson
import pytest

from domain.agents.what_if import Detector
from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from sdk.agent import AgentClient
from services.app import Orchestrator
from services.audit.liveness import read_record
from services.audit.what_if import recording, replay
from tests.conftest import DEAD_AFTER, HEARTBEAT_INTERVAL
from tests.integration.test_audit import prefix_args
from tests.integration.test_cli import cli
from tests.processes import OrchestratorProcess
from tests.support import eventually, get_json, registration, request, subject

# The heartbeat stream holds half a second of any agent's life.
HELD = 5


@pytest.fixture
async def short_memory(settings, names, nats_server) -> AsyncIterator[Orchestrator]:
    orch = Orchestrator(dataclasses.replace(settings, heartbeat_history=HELD))
    await orch.start()
    await eventually(lambda: orch.is_leader, what="leader lease acquired")
    # The record says it watches before any agent comes.
    await eventually(lambda: _watched(orch), what="the liveness record watching")
    yield orch
    await orch.stop()
    await _delete_record(nats_server.url, names)


async def _watched(orch: Orchestrator) -> bool:
    found = await read_record(orch.js, orch.names, time.time())
    return bool(found.watched)


async def _delete_record(url: str, names) -> None:
    client = await nats.connect(url)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await client.jetstream().delete_stream(names.liveness_stream)
    await client.close()


def agent(nats_server, names, agent_id: str) -> AgentClient:
    return AgentClient(agent_id, ["cpu"], nats_url=nats_server.url, prefix=names.prefix)


async def what_if(orch: Orchestrator, dead_after: float, end: float | None = None):
    store = EventStore(orch.js, orch.names, create_mapper())
    found = await recording(store, orch.js, orch.names, time.time())
    return replay(found, Detector(dead_after / 2, dead_after, 1, HEARTBEAT_INTERVAL),
                  end=end).to_json()


async def test_an_agent_that_never_missed_a_beat_gets_no_death_however_long_its_life(
    short_memory, nats_server, names
):
    steady = agent(nats_server, names, "steady")
    await steady.start()
    try:
        # Ten times what the heartbeat stream holds.
        await eventually(lambda: steady.heartbeats_sent > 10 * HELD, timeout=30)
        report = await what_if(short_memory, dead_after=0.4)
    finally:
        await steady.stop(deregister=False)
    assert [d for d in report["deaths"] if d["agent_id"] == "steady"] == []
    assert report["summary"]["added"] == 0
    assert [u for u in report["unknown"] if u["agent_id"] == "steady"] == []


async def test_a_silence_shorter_than_suspicion_is_kept_and_replayed(
    short_memory, nats_server, names
):
    quiet = agent(nats_server, names, "quiet")
    await quiet.start()
    try:
        await eventually(lambda: quiet.heartbeats_sent > 3)
        quiet.heartbeats_paused = True
        paused = time.monotonic()
        await eventually(lambda: time.monotonic() - paused >= 0.35, interval=0.01)
        quiet.heartbeats_paused = False

        async def recorded() -> bool:
            found = await read_record(short_memory.js, names, time.time())
            return any(s.end - s.start >= 0.3 for s in found.silences.get("quiet", []))

        await eventually(recorded, timeout=10, what="the silence in the liveness record")
        # And it outlives the heartbeat stream's memory of it.
        await eventually(lambda: quiet.heartbeats_sent > 10 * HELD, timeout=30)
        in_force = await what_if(short_memory, dead_after=DEAD_AFTER)
        shorter = await what_if(short_memory, dead_after=0.3)
    finally:
        await quiet.stop(deregister=False)
    assert [d for d in in_force["deaths"] if d["agent_id"] == "quiet"] == []
    added = [d for d in shorter["deaths"] if d["agent_id"] == "quiet"]
    assert [d["verdict"] for d in added] == ["added"] and added[0]["resumed"]


async def test_an_early_outage_and_a_final_death_get_their_own_verdicts(
    short_memory, nats_server, names
):
    flappy = agent(nats_server, names, "flappy")
    await flappy.start()
    try:
        await eventually(lambda: flappy.heartbeats_sent > 5)
        flappy.heartbeats_paused = True  # a 2 s outage: a false death
        paused = time.monotonic()
        await eventually(lambda: short_memory.agents.agents["flappy"].status == "dead",
                         timeout=10)
        await eventually(lambda: time.monotonic() - paused >= 2.0, interval=0.01)
        flappy.heartbeats_paused = False
        await eventually(lambda: flappy.incarnation == 2, what="flappy re-registered")
        # Long enough after that the outage is out of the heartbeat stream.
        sent = flappy.heartbeats_sent
        await eventually(lambda: flappy.heartbeats_sent > sent + 3 * HELD, timeout=30)
        flappy.heartbeats_paused = True  # and now for good
        await eventually(lambda: short_memory.agents.agents["flappy"].status == "dead",
                         timeout=10)
        as_recorded = await what_if(short_memory, dead_after=DEAD_AFTER)
    finally:
        await flappy.stop(deregister=False)

    early, final = [d for d in as_recorded["deaths"] if d["agent_id"] == "flappy"]
    assert early["death_position"] < final["death_position"]
    assert (early["verdict"], early["resumed"]) == ("same", True)
    assert (final["verdict"], final["resumed"]) == ("same", False)
    assert 1.9 <= early["silence_s"]

    # dead_after 3 s, the window ending 2 s into the final silence: the outage would not
    # have killed it; the final death is not decided yet (the agent is still silent).
    end = final["silence_from"] + 2.0
    longer = await what_if(short_memory, dead_after=3.0, end=end)
    verdicts = {d["death_position"]: d["verdict"] for d in longer["deaths"]
                if d["agent_id"] == "flappy"}
    assert verdicts == {early["death_position"]: "avoided",
                        final["death_position"]: "pending"}
    assert longer["summary"]["pending"] == 1 and longer["summary"]["avoided"] == 1
    # The window past the replayed deadline: a later death, 2 s later.
    later = await what_if(short_memory, dead_after=3.0, end=final["silence_from"] + 3.5)
    [row] = [d for d in later["deaths"] if d["death_position"] == final["death_position"]]
    assert row["verdict"] == "later" and 1.7 < row["shift_s"] < 2.3


async def test_the_sweep_prints_a_table_and_refuses_bad_grids(
    short_memory, nats_server, names
):
    goner = agent(nats_server, names, "goner")
    await goner.start()
    try:
        await eventually(lambda: goner.heartbeats_sent > 5)
        goner.heartbeats_paused = True
        await eventually(lambda: short_memory.agents.agents["goner"].status == "dead",
                         timeout=10)
    finally:
        await goner.stop(deregister=False)
    common = prefix_args(nats_server, names)
    code, out = await cli("what-if", "--sweep", "1,2,3", "--suspect-after", "0.5",
                          "--failures-before-critical", "1,2", "--json", *common)
    assert code == 0, out
    body = orjson.loads(out)
    assert [(p["dead_after"], p["failures_before_critical"]) for p in body["points"]] == [
        (1.0, 1), (1.0, 2), (2.0, 1), (2.0, 2), (3.0, 1), (3.0, 2)]
    assert {p["dead_after"]: p["real_deaths"] + p["pending"] for p in body["points"]} == {
        1.0: 1, 2.0: 1, 3.0: 1}
    code, text = await cli("what-if", "--sweep", "1,2", *common)
    assert code == 0 and "move_p99_s" in text and "false_deaths" in text
    for bad in (["--sweep", "0,1"], ["--sweep", "x"], ["--sweep", "1", "--suspect-after", "nan"],
                ["--sweep", "1", "--failures-before-critical", "0"], ["--dead-after", "1"]):
        code, text = await cli("what-if", *bad, *common)
        assert code == 2, bad
        assert "what-if" in text, text

    base = f"http://127.0.0.1:{short_memory.http_port}/v1/what-if"
    status, _, api = await get_json(f"{base}?dead_after=1,20")
    assert status == 200, api
    in_force, longer = api["points"]
    assert in_force["same"] == 1 and longer["pending"] == 1
    assert in_force["move_mean_s"] is not None


@pytest.fixture
def process(nats_server, prefix, tmp_path) -> Iterator[OrchestratorProcess]:
    proc = OrchestratorProcess(nats_server.url, prefix, tmp_path / "orchestrator.log")
    yield proc
    proc.stop()


async def test_kill_9_keeps_the_heartbeat_fields_of_dead_and_departed_agents(
    process, nats_server, nc, names
):
    process.start()
    await eventually(process.ready, timeout=30, what="orchestrator ready")
    js = nc.jetstream()
    for agent_id in ("dying", "leaving"):
        await request(nc, subject(names, "register", agent_id), registration(agent_id))
        for seq in range(1, 4):
            await js.publish(names.heartbeat(agent_id), orjson.dumps(
                {"incarnation": 1, "seq": seq, "load": 0.25 * seq, "running": []}))

    async def took(agent_id: str) -> bool:
        _, _, body = await get_json(process.url(f"/v1/agents/{agent_id}"))
        return body.get("load") == 0.75

    await eventually(lambda: took("dying"), what="dying's heartbeats")
    await eventually(lambda: took("leaving"), what="leaving's heartbeats")
    await request(nc, subject(names, "deregister", "leaving"),
                  {"agent_id": "leaving", "incarnation": 1})

    async def settled() -> dict[str, dict] | None:
        found = {a: (await get_json(process.url(f"/v1/agents/{a}")))[2]
                 for a in ("dying", "leaving")}
        statuses = (found["dying"]["status"], found["leaving"]["status"])
        return found if statuses == ("dead", "left") else None

    before = await eventually(settled, timeout=30, what="dead and left")
    assert before["dying"]["last_heartbeat_at"] is not None

    process.kill9()
    process.start()
    await eventually(process.ready, timeout=30, what="orchestrator ready again")

    async def as_before() -> bool:  # the newest heartbeats are read again after ready
        return await settled() == before

    await eventually(as_before, timeout=30, what="the views as they were before the kill")


async def test_a_restart_is_a_real_death_the_same_process_heard_again_a_false_one(
    orchestrator, nats_server, names
):
    """Killed and started again (a new process: a new instance id) is a real death
    followed by a restart; a process that went quiet and was heard from again is the false
    death (issue 34, item 5)."""
    killed = agent(nats_server, names, "phoenix")
    flappy = agent(nats_server, names, "flappy")
    await killed.start()
    await flappy.start()
    restarted = agent(nats_server, names, "phoenix")
    try:
        await killed.stop(deregister=False)  # as a SIGKILL: heartbeats stop, no goodbye
        flappy.heartbeats_paused = True
        await eventually(lambda: all(orchestrator.agents.agents[a].status == "dead"
                                     for a in ("phoenix", "flappy")), timeout=15)
        await restarted.start()  # another process, the same id: incarnation 2
        flappy.heartbeats_paused = False  # the same process again
        await eventually(lambda: flappy.incarnation == 2, timeout=15,
                         what="flappy re-registered")
        assert restarted.incarnation == 2
        report = await what_if(orchestrator, dead_after=DEAD_AFTER)
    finally:
        await restarted.stop(deregister=False)
        await flappy.stop(deregister=False)
    by_agent = {d["agent_id"]: d for d in report["deaths"]}
    assert by_agent["flappy"]["false_death"] and by_agent["flappy"]["resumed"]
    assert not by_agent["phoenix"]["false_death"] and not by_agent["phoenix"]["resumed"]
    assert report["summary"]["recorded_deaths"] == 2
    assert report["summary"]["false_deaths_recorded"] == 1
