"""Issue 29, finding 1, as the attacker tried it: a reader names a reply subject of its
choosing (the leader lease, an event subject, the snapshot bucket, another agent's
control subject or inbox) and waits for the orchestrator to write there for it.

Then the same line held by NATS itself: the orchestrator's serving user cannot publish
onto the log or the buckets, and its log user takes no request. And a record without the
orchestrator's headers, got into the log somehow, is skipped by every reader."""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession

from infra import names as n
from infra.auth.credentials import Keys, read_secret
from infra.auth.own_users import LOG_INBOX
from services.auth.reply_to import inbox_owner, may_answer
from tests.security.conftest import Connected, Secure
from tests.support import eventually, registration

VICTIM = "victim1"


def unanswered(secure: Secure) -> float:
    counter = secure.orch.metrics.requests_unanswered.labels(n.CATALOG_QUERY)
    return float(counter._value.get())


async def lease_value(secure: Secure) -> tuple[bytes | None, int]:
    kv = await secure.orch.js.key_value(secure.names.leader_bucket)
    entry = await kv.get("leader")
    return entry.value, int(entry.revision or 0)


async def test_a_reader_cannot_steer_a_reply_onto_the_lease_the_log_or_an_agent(
        secure: Secure) -> None:
    names = secure.names
    victim = await secure.connect(VICTIM, await secure.enrolled_agent(VICTIM))
    heard: list[str] = []

    async def on_message(msg: Any) -> None:
        heard.append(msg.subject)

    await victim.nc.subscribe(names.agent_control(VICTIM), cb=on_message)
    await victim.nc.subscribe(f"_INBOX.{VICTIM}.>", cb=on_message)
    await victim.nc.flush()
    reader = await secure.connect("rd-attacker", await secure.identity("rd-attacker",
                                                                     ["reader"]))
    lease_before = await lease_value(secure)
    log_before = await secure.orch.store.last_position()
    steered = [f"$KV.{names.leader_bucket}.leader",
               names.event(n.AGENT, VICTIM, "DeclaredDead"),
               f"$O.{names.snapshots_bucket}.M.bG9n",
               names.agent_control(VICTIM), f"_INBOX.{VICTIM}.stolen",
               f"{LOG_INBOX}.x.y", "_INBOX.>", "_INBOX.*.x", "anything.else"]
    for reply in steered:
        await reader.nc.publish(names.command(n.CATALOG_QUERY), b"{}", reply=reply)
    # Its own inbox is answered: the orchestrator serves it, and has taken the others in.
    own = await reader.nc.request(names.command(n.CATALOG_QUERY), b"{}", timeout=10)
    assert orjson.loads(own.data)["ok"]
    await eventually(lambda: unanswered(secure) >= len(steered) - 1
                     and f"_INBOX.{VICTIM}.stolen" in heard,
                     what="the steered requests taken in")
    # `_INBOX.victim1.stolen` is an identity's inbox: answered for a catalog query
    # (anyone's), and harmless: only victim1 may subscribe there. Nothing else is.
    assert [s for s in heard if s != f"_INBOX.{VICTIM}.stolen"] == []
    assert unanswered(secure) == len(steered) - 1
    assert await lease_value(secure) == lease_before
    assert secure.orch.is_leader
    assert await secure.orch.store.last_position() == log_before


async def test_an_agent_is_answered_in_its_own_inbox_only(secure: Secure) -> None:
    names = secure.names
    agent = await secure.connect("w-steer", await secure.enrolled_agent("w-steer"))
    other = await secure.connect(VICTIM, await secure.enrolled_agent(VICTIM))
    heard: list[bytes] = []

    async def on_message(msg: Any) -> None:
        heard.append(msg.data)

    await other.nc.subscribe(f"_INBOX.{VICTIM}.>", cb=on_message)
    await other.nc.flush()
    before = await secure.orch.store.last_position()
    await agent.nc.publish(names.agent_command("w-steer", n.REGISTER),
                           orjson.dumps(registration("w-steer")),
                           reply=f"_INBOX.{VICTIM}.abc")
    # A command of its own answered after it: the first was taken in and dropped.
    counter = secure.orch.metrics.requests_unanswered.labels(n.REGISTER)
    await eventually(lambda: counter._value.get() >= 1, what="the steered register dropped")
    assert heard == []
    assert await secure.orch.store.last_position() == before  # not carried out either


def violated(connected: Connected, subject: str) -> bool:
    """The server answered a permissions violation for `subject` (nats-py lowercases)."""
    return any("permissions violation" in e.lower() and subject.lower() in e.lower()
               for e in connected.errors)


class TestTheOrchestratorsOwnUsers:
    async def _as(self, secure: Secure, seed: str, inbox: str) -> Connected:
        return await secure.connect("orchestrator", seed, inbox=inbox)

    async def test_the_serving_user_cannot_write_the_log_or_the_buckets(
            self, secure: Secure) -> None:
        keys = Keys.of(secure.orch.settings.data_dir)
        serving = await self._as(secure, keys.serving_seed(), "_ORCH_SERVE")
        names = secure.names
        for subject in [f"$KV.{names.leader_bucket}.leader",
                        names.event(n.AGENT, VICTIM, "DeclaredDead"),
                        f"$O.{names.snapshots_bucket}.M.x",
                        f"$JS.API.STREAM.PURGE.{names.events_stream}", f"{LOG_INBOX}.x"]:
            serving.errors.clear()
            await serving.nc.publish(subject, b"{}")
            await serving.nc.flush(timeout=5)
            await eventually(partial(violated, serving, subject), what=f"{subject} denied")

    async def test_the_log_user_takes_no_request(self, secure: Secure) -> None:
        keys = Keys.of(secure.orch.settings.data_dir)
        writer = await self._as(secure, read_secret(keys.orchestrator), LOG_INBOX)
        names = secure.names
        for subject in [names.command(n.CATALOG_QUERY), names.agent_command("*", n.REGISTER),
                        n.AUTH_CALLOUT_SUBJECT, "_INBOX.>"]:
            writer.errors.clear()
            await writer.nc.subscribe(subject)
            await writer.nc.flush(timeout=5)
            await eventually(partial(violated, writer, subject),
                             what=f"subscribe {subject} denied")


@pytest.mark.parametrize(("reply", "sender", "bound", "answered"), [
    ("_INBOX.w1.abc.1", "w1", True, True),
    ("_INBOX.w1", "w1", True, True),
    ("_INBOX.w2.abc", "w1", True, False),  # another's inbox
    ("_INBOX.w2.abc", "", True, True),  # a read anyone may send: any identity's inbox
    ("_INBOX.w2.abc", "w1", False, True),  # auth off: no identities to tell apart
    ("$KV.ORCH_LEADER.leader", "", False, False),
    ("orch.evt.agent.a.DeclaredDead", "", False, False),
    ("_INBOX.>", "", False, False),
    ("_INBOX.*.x", "", False, False),
    ("_INBOX.w1..x", "w1", True, False),
    ("_INBOX.w1.x.", "w1", True, False),
    ("_INBOX.w1." + "x" * 300, "w1", True, False),
    ("_ORCH_LOG.x", "", False, False),
])
def test_where_a_reply_may_go(reply: str, sender: str, bound: bool, answered: bool) -> None:
    assert may_answer(reply, sender, bound) is answered


def test_the_owner_of_an_inbox() -> None:
    assert inbox_owner("_INBOX.op1.AbC.7") == "op1"
    assert inbox_owner("_INBOX") is None


async def test_a_record_without_our_headers_is_skipped_by_every_reader(
        secure: Secure) -> None:
    """What the steered reply left in the log before: a header-less record on an event
    subject, there for good. Failover, the projections, /v1/events, history and why go
    on across it."""
    orch, names = secure.orch, secure.names
    agent_id = "w-foreign"
    agent = await secure.connect(agent_id, await secure.enrolled_agent(agent_id))
    reply = orjson.loads((await agent.nc.request(
        names.agent_command(agent_id, n.REGISTER), orjson.dumps(registration(agent_id)),
        timeout=10)).data)
    assert reply["ok"], reply
    # Only the log user can write there now; it stands in for what got in before.
    ack = await orch.js.publish(names.event(n.AGENT, agent_id, "DeclaredDead"),
                                b'{"catalog": "reply"}')
    foreign_at = ack.seq
    skipped = orch.metrics.log_records_skipped
    await eventually(lambda: orch.runner.position.value >= foreign_at,
                     what="the projections past the foreign record")
    # The agent goes silent: declared dead, its failover runs across the record.
    await agent.close()
    async def declared_dead() -> bool:
        return any(e.name == "DeclaredDead" for e in await orch.store.history(n.AGENT,
                                                                              agent_id))

    await eventually(declared_dead, timeout=20, what="the agent declared dead")
    assert skipped._value.get() >= 1
    made = await secure.admin("admin.token.create", {"name": "auditor-http", "scope": "admin"})
    token = made["token"]
    base = f"http://127.0.0.1:{orch.http_port}"
    async with ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for path in [f"/v1/events?after={foreign_at - 1}&limit=5",
                     f"/v1/agents/{agent_id}/history", f"/v1/agents/{agent_id}/why"]:
            async with http.get(base + path) as response:
                assert response.status == 200, (path, await response.text())
                body = await response.json()
        async with http.get(f"{base}/v1/events?after={foreign_at - 1}&limit=1") as response:
            page = await response.json()
        assert response.status == 200
        assert page["next_after"] >= foreign_at  # the page moved past it
    assert body  # why answered
    history = await orch.store.history(n.AGENT, agent_id)
    assert all(e.position != foreign_at for e in history)
