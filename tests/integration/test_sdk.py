"""The Python agent SDK against a running orchestrator."""

from __future__ import annotations

import asyncio

import pytest

from sdk.agent import AgentClient, CommandError
from tests.support import eventually, request, subject


@pytest.fixture
async def make_agent(orchestrator, nats_server, prefix):
    made: list[AgentClient] = []

    def make(agent_id: str, **kwargs) -> AgentClient:
        agent = AgentClient(agent_id, nats_url=nats_server.url, prefix=prefix, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        if agent.nc is not None:  # a test that failed before its own stop()
            await agent.stop(deregister=False)


class TestAgentClient:
    async def test_registers_and_stays_healthy_while_heartbeating(self, orchestrator, make_agent):
        agent = make_agent("sdk1", capabilities=["gpu"], capacity=3)
        reply = await agent.start()
        try:
            assert reply["incarnation"] == 1
            await eventually(lambda: agent.heartbeats_sent >= 10, what="ten heartbeats")
            view = orchestrator.agents.get("sdk1")
            assert view is not None and view.status == "healthy" and view.capacity == 3
        finally:
            await agent.stop()

    async def test_comes_back_with_a_new_incarnation_after_being_declared_dead(
        self, orchestrator, make_agent
    ):
        agent = make_agent("sdk1")
        await agent.start()
        try:
            agent.heartbeats_paused = True
            await eventually(lambda: orchestrator.agents.agents["sdk1"].status == "dead",
                             timeout=orchestrator.settings.dead_after + 5, what="dead")

            agent.heartbeats_paused = False  # told to re-register by its next heartbeat

            await eventually(lambda: agent.incarnation == 2, what="re-registered")
            await eventually(lambda: orchestrator.agents.agents["sdk1"].status == "healthy"
                             and orchestrator.agents.agents["sdk1"].incarnation == 2)
        finally:
            await agent.stop()

    async def test_stop_deregisters(self, orchestrator, make_agent):
        agent = make_agent("sdk1")
        await agent.start()
        await agent.stop()
        await eventually(lambda: orchestrator.agents.agents["sdk1"].status == "left")

    async def test_an_operator_drains_it(self, orchestrator, make_agent, nc, names):
        agent = make_agent("sdk1")
        await agent.start()
        try:
            reply = await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "sdk1"})
            assert reply["status"] == "draining"
        finally:
            await agent.stop()

    async def test_an_operators_deregister_stops_it_and_ends_its_run(
        self, orchestrator, make_agent, nc, names, caplog
    ):
        agent = make_agent("sdk1")
        await agent.start()
        running = asyncio.create_task(agent.run_until_stopped(signals=()))

        reply = await request(nc, subject(names, "admin.agent.deregister"), {"agent_id": "sdk1"})

        assert reply["status"] == "left"
        await asyncio.wait_for(running, 10)  # its run ends
        told = agent.deregistered_by_orchestrator
        assert told is not None and told.reason.startswith("removed by ")
        assert agent.nc is None  # no more heartbeats: its connection is closed
        assert "sdk1 was deregistered by the orchestrator" in caplog.text

    async def test_refusals_raise_with_their_code(self, orchestrator, make_agent):
        agent = make_agent("sdk1")
        await agent.start()
        try:
            with pytest.raises(CommandError) as refused:
                await agent.request("deregister", {"agent_id": "sdk1", "incarnation": 9})
            assert refused.value.code == "conflict"
        finally:
            await agent.stop()

    async def test_unreadable_messages_are_ignored_and_work_goes_on(
        self, orchestrator, make_agent, nc, names
    ):
        async def echo(ctx) -> object:
            return ctx.payload

        agent = make_agent("sdk1", handlers={"echo": echo})
        await agent.start()
        try:
            for garbage in (b"not json", b"[]", b'{"task_id": "t0"}', b'{"type": "explode"}'):
                await nc.publish(names.agent_tasks("sdk1"), garbage)
                await nc.publish(names.agent_control("sdk1"), garbage)
            await request(nc, subject(names, "task.submit"),
                          {"task_id": "t1", "kind": "echo", "payload": {"n": 1}})

            await eventually(lambda: list(agent.completed) == ["t1"], what="t1 completed")
            assert orchestrator.board.get("t1").result == {"n": 1}
        finally:
            await agent.stop()


class TestOneIdTwoProcesses:
    async def test_a_second_process_with_a_live_id_is_refused_and_the_first_keeps_it(
        self, orchestrator, make_agent
    ):
        first, second = make_agent("twin"), make_agent("twin")
        await first.start()
        await eventually(lambda: first.heartbeats_sent >= 2, what="the first heartbeating")

        with pytest.raises(CommandError) as refused:
            await second.start()

        assert refused.value.code == "conflict" and "incarnation 1" in refused.value.message
        await second.stop(deregister=False)
        sent = first.heartbeats_sent
        await eventually(lambda: first.heartbeats_sent >= sent + 5, what="five more beats")
        view = orchestrator.agents.get("twin")
        assert view is not None and view.incarnation == 1 and view.status == "healthy"
        await first.stop()

    async def test_replace_takes_the_id_over_once_and_the_old_process_stands_down(
        self, orchestrator, make_agent
    ):
        old, new = make_agent("twin"), make_agent("twin", replace=True)
        await old.start()
        await eventually(lambda: old.heartbeats_sent >= 2, what="the old one heartbeating")

        reply = await new.start()

        assert reply["incarnation"] == 2
        # The old process is told to re-register, is refused, and stops heartbeating
        # instead of taking the id back (they used to swap it twice a second).
        await eventually(lambda: old.replaced_by_another is not None, timeout=10,
                         what="the old process refused")
        sent = new.heartbeats_sent
        await eventually(lambda: new.heartbeats_sent >= sent + 5, what="five more beats")
        view = orchestrator.agents.get("twin")
        assert view is not None and view.incarnation == 2 and view.status == "healthy"
        await old.stop(deregister=False)
        await new.stop()


class TestKinds:
    async def test_the_sdk_declares_the_kinds_it_has_handlers_for(
        self, orchestrator, make_agent
    ):
        async def handler(ctx) -> None:
            return None

        specific = make_agent("k1", handlers={"resize": handler, "echo": handler})
        catch_all = make_agent("k2", handlers={"*": handler})
        await specific.start()
        await catch_all.start()
        try:
            await eventually(lambda: orchestrator.agents.get("k2"), what="both registered")
            assert orchestrator.agents.get("k1").kinds == ["echo", "resize"]
            assert orchestrator.agents.get("k2").kinds == []
        finally:
            await specific.stop()
            await catch_all.stop()


class TestAssignedAgain:
    async def test_work_goes_on_under_the_newest_token_when_given_the_task_again(
        self, orchestrator, make_agent, nc, names
    ):
        # Its first accept is lost: after the accept timeout the orchestrator gives the
        # task back to the only agent with a new token while the handler still runs.
        runs: list[str] = []
        release = asyncio.Event()

        async def slow(ctx) -> str:
            runs.append(ctx.assignment.token)
            await release.wait()
            return "done"

        agent = make_agent("again", handlers={"slow": slow})
        await agent.start()
        report = agent._report
        lost: list[dict] = []

        async def lose_first_accept(command: str, body: dict) -> dict:
            if command.endswith("accept") and not lost:
                lost.append(body)
                return {"ok": True}
            return await report(command, body)

        agent._report = lose_first_accept
        try:
            await request(nc, subject(names, "task.submit"), {"task_id": "t1", "kind": "slow"})
            await eventually(lambda: orchestrator.board.get("t1").status == "running",
                             timeout=20, what="accepted under the second assignment")
            assert orchestrator.board.get("t1").attempt == 2
            release.set()
            await eventually(lambda: orchestrator.board.get("t1").status == "completed",
                             timeout=20, what="completed")
            assert len(runs) == 1  # one run of the handler, reported under the new token
        finally:
            release.set()
            await agent.stop()
