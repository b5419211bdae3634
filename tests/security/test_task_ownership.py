"""Issue 29, findings 3, 5 and 6, as the attacker tried them, with real credentials:
agent A completes agent B's task with B's token; a read token reads the token from the
history; a submitter cancels, reserves or probes another's task; a client stores
kilobytes of request id on every event its commands write."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from infra import names as n
from infra.auth.credentials import Keys, read_secret
from tests.security.conftest import Connected, Secure
from tests.support import eventually, get_json, registration, request


class Agent:
    """An enrolled agent that registers, heartbeats and keeps its assignments."""

    def __init__(self, secure: Secure, connected: Connected) -> None:
        self.secure = secure
        self.connected = connected
        self.id = connected.identity
        self.assignments: list[dict[str, Any]] = []
        self._beating: asyncio.Task[None] | None = None

    async def start(self) -> None:
        names = self.secure.names

        async def on_assignment(msg: Any) -> None:
            self.assignments.append(orjson.loads(msg.data))

        await self.connected.nc.subscribe(names.agent_tasks(self.id), cb=on_assignment)
        reply = await self.send(n.REGISTER, registration(self.id))
        assert reply["ok"], reply
        self._beating = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        for seq in itertools.count(1):
            await self.connected.nc.publish(self.secure.names.heartbeat(self.id), orjson.dumps(
                {"incarnation": 1, "seq": seq, "load": 0.0}))
            await asyncio.sleep(0.05)

    async def send(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        return await request(self.connected.nc,
                             self.secure.names.agent_command(self.id, command), body, 10)

    async def stop(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating


@pytest.fixture
async def agents(secure: Secure) -> AsyncIterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        await agent.stop()


async def start_agent(secure: Secure, agents: list[Agent], agent_id: str) -> Agent:
    agent = Agent(secure, await secure.connect(agent_id, await secure.enrolled_agent(agent_id)))
    await agent.start()
    agents.append(agent)
    return agent


async def submitter(secure: Secure, name: str) -> Connected:
    return await secure.connect(name, await secure.identity(name, ["submitter"]))


async def submit(client: Connected, body: dict[str, Any]) -> dict[str, Any]:
    return await request(client.nc, f"orch.{n.TASK_SUBMIT}.{client.identity}", body, 10)


async def test_an_agent_cannot_report_on_a_task_held_by_another_even_with_its_token(
        secure: Secure, agents: list[Agent]) -> None:
    holder = await start_agent(secure, agents, "w-holder")
    client = await submitter(secure, "sub-a")
    placed = await submit(client, {"task_id": "t-held", "kind": "x"})
    assert placed["ok"] and placed["status"] == "assigned", placed
    await eventually(lambda: holder.assignments, what="the assignment delivered")
    token = holder.assignments[0]["token"]
    thief = await start_agent(secure, agents, "w-thief")
    before = await secure.orch.store.last_position()
    reports: list[tuple[str, dict[str, Any]]] = [
        (n.TASK_ACCEPT, {}), (n.TASK_PROGRESS, {"progress": 0.5}),
        (n.TASK_COMPLETE, {"result": {"forged": True}}),
        (n.TASK_FAIL, {"error": "forged", "retryable": False})]
    for command, extra in reports:
        reply = await thief.send(command, {"task_id": "t-held", "token": token, **extra})
        assert reply["ok"] is False and reply["error"]["code"] == "unauthorized", reply
    assert await secure.orch.store.last_position() == before  # nothing written
    done = await holder.send(n.TASK_COMPLETE, {"task_id": "t-held", "token": token,
                                               "result": {"by": "holder"}})
    assert done["ok"], done
    events = await secure.orch.store.history(n.TASK, "t-held")
    completed = [e for e in events if e.name == "Completed"]
    assert [(e.identity, e.data()["result"]) for e in completed] == [
        ("w-holder", {"by": "holder"})]


async def test_a_read_token_never_sees_a_fencing_token(
        secure: Secure, agents: list[Agent]) -> None:
    holder = await start_agent(secure, agents, "w-seen")
    client = await submitter(secure, "sub-r")
    assert (await submit(client, {"task_id": "t-seen", "kind": "x"}))["ok"]
    await eventually(lambda: holder.assignments, what="the assignment delivered")
    token = holder.assignments[0]["token"]
    read = read_secret(Keys.of(secure.orch.settings.data_dir).read_token)
    base = f"http://127.0.0.1:{secure.orch.http_port}"
    for path in ["/v1/tasks/t-seen/history", "/v1/tasks/t-seen/why", "/v1/tasks/t-seen",
                 "/v1/agents/w-seen/history", "/v1/agents/w-seen/why"]:
        status, _, body = await get_json(base + path,
                                         headers={"Authorization": f"Bearer {read}"})
        assert status == 200, (path, body)
        assert token not in orjson.dumps(body).decode(), path
    _, _, history = await get_json(base + "/v1/tasks/t-seen/history",
                                   headers={"Authorization": f"Bearer {read}"})
    assigned = [e for e in history["events"] if e["type"] == "Assigned"]
    assert assigned and assigned[0]["data"]["token"].startswith("fp-")


async def test_a_submitter_cannot_cancel_reserve_or_probe_anothers_task(
        secure: Secure) -> None:
    owner, other = await submitter(secure, "sub-owner"), await submitter(secure, "sub-other")
    body = {"task_id": "t-owned", "kind": "x", "payload": {"secret": "guess-me"}}
    assert (await submit(owner, body))["ok"]
    before = await secure.orch.store.last_position()
    cancel = await request(other.nc, f"orch.{n.TASK_CANCEL}.sub-other",
                           {"task_id": "t-owned"}, 10)
    missing = await request(other.nc, f"orch.{n.TASK_CANCEL}.sub-other",
                            {"task_id": "t-no-such-task"}, 10)
    # The same answer as for a task that does not exist: nothing learnt.
    assert cancel["error"]["code"] == missing["error"]["code"] == "not_found", cancel
    # The same body (a right guess of the payload) and another are answered alike.
    same = await submit(other, body)
    different = await submit(other, {**body, "payload": {"secret": "wrong"}})
    assert same["ok"] is False and same["error"] == different["error"], (same, different)
    assert same["error"]["code"] == "conflict"
    assert await secure.orch.store.last_position() == before
    # Its owner, and an operator, may.
    again = await submit(owner, body)
    assert again["ok"], again
    cancelled = await secure.admin(n.TASK_CANCEL, {"task_id": "t-owned"})
    assert cancelled["ok"] and cancelled["status"] == "cancelled", cancelled


async def test_request_headers_are_bounded_and_an_oversized_one_writes_nothing(
        secure: Secure) -> None:
    client = await submitter(secure, "sub-h")
    subject = f"orch.{n.TASK_SUBMIT}.sub-h"
    before = await secure.orch.store.last_position()
    for headers in [{"Orch-Request-Id": "r" * 250_000}, {"Orch-Request-Id": "r" * 65},
                    {"Orch-Request-Id": "has space"},
                    {"X-Padding": "p" * 2000, "Orch-Request-Id": "ok-1"}]:
        msg = await client.nc.request(subject, orjson.dumps({"kind": "x"}), timeout=10,
                                      headers=headers)
        reply = orjson.loads(msg.data)
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_request", reply
    assert await secure.orch.store.last_position() == before
    msg = await client.nc.request(subject, orjson.dumps({"kind": "x"}), timeout=10,
                                  headers={"Orch-Request-Id": "req-7f3a"})
    assert orjson.loads(msg.data)["ok"]
    last = (await secure.orch.store.read(before, 10))[-1]
    assert last.causation_id == "req-7f3a"
