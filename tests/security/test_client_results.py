"""A task's outcome reaches its submitter alone, tried as another submitter would: with
real credentials on a real nats-server, subscribing to the owner's outcome subject, and
asking for the owner's task by id. The owner gets its result through the client SDK."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from nats.aio.msg import Msg

from infra import names as n
from infra.auth.keys import Role, new_seed
from sdk.agent import AgentClient, CommandError, TaskContext
from sdk.client import Client
from tests.security.conftest import JWT_TTL_S, Secure
from tests.support import eventually


async def echo(ctx: TaskContext) -> object:
    return ctx.payload


async def submitter(secure: Secure, name: str) -> Client:
    seed = await secure.identity(name, ["submitter"])
    return await Client.connect(secure.url, identity=name, nkey_seed=seed,
                                subject_prefix=secure.names.prefix)


async def test_only_the_submitter_reads_its_tasks_outcome(secure):
    worker = AgentClient("w1", nats_url=secure.url, nkey_seed=new_seed(Role.USER),
                         enrollment_token=await secure.enroll("w1"), handlers={"echo": echo})
    await worker.start()
    owner = await submitter(secure, "ci-a")
    thief_seed = await secure.identity("ci-b", ["submitter"])
    thief = await secure.connect("ci-b", thief_seed)
    stolen: list[bytes] = []
    try:
        # The thief listens where the owner's outcomes and feeds go: the server refuses it.
        async def steal(msg: Msg) -> None:
            stolen.append(msg.data)

        await thief.nc.subscribe(secure.names.task_outcomes("ci-a"), cb=steal)
        await thief.nc.subscribe(secure.names.task_feeds("ci-a"), cb=steal)
        await thief.nc.flush(timeout=5)

        handle = await owner.submit("echo", {"secret": 42}, task_id="t1")
        assert await handle.result(timeout=20) == {"secret": 42}

        assert any("permissions violation for subscription" in e.lower() for e in thief.errors)
        # Asked by id, another's task is unknown: not even that it exists.
        msg = await thief.nc.request(secure.names.client_command(n.TASK_RESULTS, "ci-b"),
                                     orjson.dumps({"task_ids": ["t1"]}), timeout=10)
        assert orjson.loads(msg.data) == {"ok": True, "tasks": [], "unknown": ["t1"]}
        other = await submitter(secure, "ci-c")
        try:
            with pytest.raises(CommandError) as refused:
                await other.get("t1")
            assert refused.value.code == "not_found"
        finally:
            await other.close()
        await asyncio.sleep(0)  # a delivery already read from the socket is handled
        assert stolen == []
        # The owner asks and is answered; so is an operator.
        assert (await owner.get("t1")).result == {"secret": 42}
        operator = await secure.operator()
        msg = await operator.nc.request(secure.names.client_command(n.TASK_RESULTS, "operator"),
                                        orjson.dumps({"task_ids": ["t1"]}), timeout=10)
        assert [t["status"] for t in orjson.loads(msg.data)["tasks"]] == ["completed"]
    finally:
        await owner.close()
        await worker.stop()


async def test_only_the_holder_writes_a_tasks_partial_output(secure):
    release = asyncio.Event()

    async def write(ctx: TaskContext) -> object:
        await ctx.stream("from the holder")
        await release.wait()
        return "done"

    holder = AgentClient("w1", nats_url=secure.url, nkey_seed=new_seed(Role.USER),
                         enrollment_token=await secure.enroll("w1"), handlers={"write": write})
    await holder.start()
    intruder_seed = await secure.enrolled_agent("w2")
    intruder = await secure.connect("w2", intruder_seed)
    owner = await submitter(secure, "ci-a")
    try:
        handle = await owner.submit("write", task_id="t1")
        chunks: list[bytes] = []

        async def read() -> None:
            async for chunk in handle.stream():
                chunks.append(chunk)

        reading = asyncio.create_task(read())
        await eventually(lambda: chunks == [b"from the holder"], what="the holder's chunk")
        # Under the holder's subjects: refused by the server. Under its own: the relay
        # drops it, as w2 does not hold t1.
        await intruder.nc.publish(secure.names.agent_stream("w1", "t1"), b"forged",
                                  headers={"Orch-Seq": "2"})
        await intruder.nc.publish(secure.names.agent_stream("w2", "t1"), b"forged",
                                  headers={"Orch-Seq": "2"})
        await intruder.nc.flush(timeout=5)
        await eventually(lambda: secure.orch.metrics.registry.get_sample_value(
            "orch_task_feed_messages_total", {"kind": "chunk", "outcome": "not_holder"}) == 1,
            what="the intruder's chunk dropped")
        assert any("permissions violation for publish" in e.lower() for e in intruder.errors)
        release.set()
        assert await handle.result(timeout=20) == "done"
        await asyncio.wait_for(reading, 10)
        assert chunks == [b"from the holder"]
    finally:
        await owner.close()
        await holder.stop()


async def test_the_client_renews_its_credentials_before_they_expire(secure, caplog):
    """As the agent SDK does: a reconnect before the callout's credentials run out, so the
    server never has to cut the client off; work goes on across the renewals."""
    caplog.set_level("DEBUG", logger="sdk.client")
    worker = AgentClient("w2", nats_url=secure.url, nkey_seed=new_seed(Role.USER),
                         enrollment_token=await secure.enroll("w2"), handlers={"echo": echo})
    await worker.start()
    seed = await secure.identity("renewer", ["submitter"])
    client = await Client.connect(secure.url, identity="renewer", nkey_seed=seed,
                                  subject_prefix=secure.names.prefix,
                                  credentials_ttl_s=JWT_TTL_S)
    try:
        done = 0
        while client.nc.stats["reconnects"] < 2:  # two renewals: over one lifetime
            handle = await client.submit("echo", done)
            assert await handle.result(timeout=20) == done
            done += 1
        handle = await client.submit("echo", "after")
        assert await handle.result(timeout=20) == "after"
        assert done >= 1
        said = " ".join(r.getMessage() for r in caplog.records).lower()
        assert "renewing credentials client=renewer" in said
        assert "expired" not in said  # the server never had to cut it off
    finally:
        await client.close()
        await worker.stop()
