"""Schedules on a real nats-server: the commands and their refusals, a schedule's tasks
run and explained as its firings, and one task per slot across a change of leader.
(Another submitter's refusals, with real credentials: tests/security.)"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as Nats

from domain.schedules.schedule import firing_task_id
from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from infra.names import Names
from infra.settings import Settings
from sdk.agent import AgentClient, CommandError, TaskContext
from sdk.client import Client
from services.app import Orchestrator
from tests.integration.test_cli_operations import run, settings_env
from tests.support import eventually, get_json, request

ALICE = "alice"


async def send(nc: Nats, names: Names, verb: str, body: Any,
               identity: str = ALICE) -> dict[str, Any]:
    return await request(nc, names.client_command(f"schedule.{verb}", identity), body, 10)


def every_second(name: str = "tick", **extra: Any) -> dict[str, Any]:
    return {"name": name, "every_s": 1, "task": {"kind": "echo", "payload": {"n": 1}},
            **extra}


async def fired(orch: Orchestrator, name: str) -> list[dict[str, Any]]:
    return [e.data() for e in await orch.store.history("schedule", name) if e.name == "Fired"]


async def echo(ctx: TaskContext) -> Any:
    return ctx.payload


async def test_commands_refuse_bad_input_and_others_and_write_nothing(orchestrator, nc,
                                                                      names):
    before = await orchestrator.store.last_position()
    for body in ({"name": "a.b", "every_s": 1, "task": {"kind": "k"}},
                 {"name": "x", "cron": "61 * * * *", "task": {"kind": "k"}},
                 {"name": "x", "cron": "* * * * *", "every_s": 5, "task": {"kind": "k"}},
                 {"name": "x", "every_s": 5},
                 {"name": "x", "every_s": 5, "task": {"kind": "k"}, "overlap": "sometimes"}):
        reply = await send(nc, names, "create", body)
        assert reply["error"]["code"] == "invalid_request", reply
    reply = await send(nc, names, "pause", {"name": "nothing"})
    assert reply["error"]["code"] == "not_found"
    assert await orchestrator.store.last_position() == before

    made = await send(nc, names, "create", every_second(overlap="allow", catch_up="skip",
                                                         grace_s=5.0))
    assert made["ok"] and made["schedule"]["owner"] == ALICE
    # The same again: answered, nothing written; another definition needs replace.
    before = await orchestrator.store.last_position()
    again = await send(nc, names, "create", every_second(overlap="allow", catch_up="skip",
                                                          grace_s=5.0))
    assert again["ok"] and "position" not in again
    assert (await send(nc, names, "create", every_second()))["error"]["code"] == "conflict"
    assert await orchestrator.store.last_position() == before
    paused = await send(nc, names, "pause", {"name": "tick"})
    assert paused["schedule"]["status"] == "paused" and paused["schedule"]["next_due"] is None
    [listed] = (await send(nc, names, "list", {}))["schedules"]
    assert listed["name"] == "tick" and listed["status"] == "paused"
    assert (await send(nc, names, "delete", {"name": "tick"}))["schedule"]["status"] == "deleted"
    assert (await send(nc, names, "list", {}))["schedules"] == []


async def test_a_schedule_runs_its_tasks_and_each_says_which_slot_fired_it(
        orchestrator, nc, names, nats_server):
    agent = AgentClient("w1", nats_url=nats_server.url, prefix=names.prefix,
                        handlers={"echo": echo})
    await agent.start()
    try:
        await send(nc, names, "create", every_second())

        async def two_fired() -> list[dict[str, Any]] | None:
            found = await fired(orchestrator, "tick")
            return found if len(found) >= 2 else None

        first, second = (await eventually(two_fired, timeout=15, what="two firings"))[:2]
        assert second["due"] > first["due"] and first["task_id"] == firing_task_id(
            "tick", first["due"])
        view = await eventually(lambda: (v := orchestrator.board.get(first["task_id"]))
                                and v.status == "completed" and v, timeout=15,
                                what="the first firing's task completed")
        assert view.result == {"n": 1}
        history = await orchestrator.store.history("task", first["task_id"])
        assert history[0].data()["submitted_by"] == ALICE
        port = orchestrator.http_port
        _, _, why = await get_json(f"http://127.0.0.1:{port}/v1/tasks/{first['task_id']}/why")
        assert why["chain"][0]["schedule"] == {"name": "tick", "due": first["due"]}
        assert "fired by schedule tick" in why["chain"][0]["reason"]
        _, _, listed = await get_json(f"http://127.0.0.1:{port}/v1/schedules")
        [tick] = listed["schedules"]
        assert tick["name"] == "tick" and tick["fired"] >= 2 and tick["next_due"]
        assert orchestrator.metrics.schedule_firings.labels("fired")._value.get() >= 2
    finally:
        await agent.stop()


async def test_one_task_per_slot_across_a_change_of_leader_and_one_for_slots_missed(
        settings: Settings, started, nc, names, tmp_path):
    first = Orchestrator(settings)
    await first.start()
    started.append(first)
    await eventually(lambda: first.is_leader, what="the first leads")
    await send(nc, names, "create", every_second(overlap="allow"))
    store = EventStore(nc.jetstream(), names, create_mapper())

    async def firings() -> list[dict[str, Any]]:
        return [e.data() for e in await store.history("schedule", "tick") if e.name == "Fired"]

    async def count(at_least: int) -> bool:
        return len(await firings()) >= at_least

    await eventually(lambda: count(1), timeout=15, what="fired by the first")
    started.remove(first)
    await first.stop()  # no leader now: slots go by undecided
    last = (await firings())[-1]
    await eventually(lambda: time.time() >= last["due"] + 2.2, timeout=10,
                     what="two slots gone by with no leader")
    second = Orchestrator(replace(settings, data_dir=tmp_path / "second"))
    await second.start()
    started.append(second)
    await eventually(lambda: second.is_leader, timeout=10, what="the second leads")
    before = len(await firings())
    await eventually(lambda: count(before + 1), timeout=15, what="fired by the second")
    await send(nc, names, "pause", {"name": "tick"})
    events = [e for e in await store.history("schedule", "tick")
              if e.name in ("Fired", "Skipped")]
    dues = [e.data()["due"] for e in events]
    assert dues == sorted(set(dues))  # each slot decided once, in order
    # catch_up=once: of the slots missed, the latest fired once, the others counted.
    caught_up = next(e.data() for e in events if e.data()["due"] > last["due"])
    assert caught_up["due"] >= last["due"] + 2 and caught_up["missed"] >= 1
    for event in events:
        if event.name == "Fired":
            task_id = event.data()["task_id"]
            history = await store.history("task", task_id)
            assert [e.name for e in history].count("Submitted") == 1


async def test_the_client_makes_lists_pauses_and_removes_schedules(orchestrator, nats_server,
                                                                   names):
    client = await Client.connect(nats_server.url, identity=ALICE,
                                  subject_prefix=names.prefix)
    try:
        made = await client.schedule("nightly", cron="0 3 * * *", kind="report",
                                     payload={"since": "yesterday"}, overlap="allow")
        assert made.owner == ALICE and made.cron == "0 3 * * *" and made.next_due
        assert made.next_due % 86400 == 3 * 3600  # 03:00 UTC
        with pytest.raises(CommandError) as refused:
            await client.schedule("nightly", cron="0 4 * * *", kind="report")
        assert refused.value.code == "conflict"
        moved = await client.schedule("nightly", cron="0 4 * * *", kind="report",
                                      replace=True)
        assert moved.next_due is not None and moved.next_due % 86400 == 4 * 3600
        assert (await client.pause_schedule("nightly")).status == "paused"
        assert (await client.resume_schedule("nightly")).status == "active"
        await eventually(lambda: orchestrator.schedules.book.get("nightly") is not None,
                         what="the schedule in the projection")
        assert [s.name for s in await client.schedules()] == ["nightly"]
        assert (await client.unschedule("nightly")).status == "deleted"
        await eventually(lambda: orchestrator.schedules.book.get("nightly") is None,
                         what="the deletion applied")
        assert await client.schedules() == []
    finally:
        await client.close()


async def test_the_cli_makes_lists_and_deletes_a_schedule(orchestrator, nats_server,
                                                          prefix, tmp_path):
    env = {**settings_env(orchestrator, nats_server.url, prefix, tmp_path),
           "ORCH_AUTH": "off", "ORCH_IDENTITY": ALICE}
    code, out, err = await run("schedule", "create", "backup", "--cron", "*/5 * * * *",
                               "--kind", "backup", "--payload", '{"disk": 1}', env=env)
    assert code == 0, err
    assert out.startswith("backup") and "cron '*/5 * * * *'" in out and "owner alice" in out
    code, out, err = await run("schedule", "create", "backup", "--every", "60", "--kind",
                               "backup", env=env)
    assert code == 1 and "conflict" in err and "replace" in err
    code, _, err = await run("schedule", "create", "x", "--every", "60", "--kind", "k",
                             "--payload", "{nope", env=env)
    assert code == 2 and "--payload is not JSON" in err
    code, out, _ = await run("schedule", "list", "--json", env=env)
    [listed] = orjson.loads(out)["schedules"]
    assert listed["name"] == "backup" and listed["next_due"] % 300 == 0
    code, out, _ = await run("schedule", "delete", "backup", env=env)
    assert code == 0 and "deleted" in out
