"""Revocation taking effect at once, and agents held to the policy they were enrolled
with, tried as an attacker would: a revoked agent that is still connected registering and
reporting, a revoked submitter submitting, an agent claiming a service, capability,
label or capacity it was not enrolled for. Every refusal is coded and writes nothing."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import orjson

from domain.identities.commands import RevokeIdentity
from infra import names as n
from infra.auth.keys import Role, new_seed
from infra.caller import current_identity
from sdk.agent import AgentClient
from services.audit.explain import Explainer
from tests.security.conftest import Connected, Secure
from tests.support import eventually, registration

POLICY = {"services": ["web"], "capabilities": ["cpu"], "labels": {"zone": ["eu", "us"]},
          "max_capacity": 4}


async def ask(secure: Secure, connected: Connected, command: str,
              body: dict[str, Any]) -> dict[str, Any]:
    """An agent's command on its own subject; the reply."""
    msg = await connected.nc.request(secure.names.agent_command(connected.identity, command),
                                     orjson.dumps(body), timeout=5)
    reply: dict[str, Any] = orjson.loads(msg.data)
    return reply


def refused_as(reply: dict[str, Any], code: str = "unauthorized") -> str:
    assert not reply["ok"], reply
    assert reply["error"]["code"] == code, reply
    message: str = reply["error"]["message"]
    return message


async def settled(secure: Secure) -> int:
    """The log's last position once this orchestrator's projections have applied it."""
    last = await secure.orch.store.last_position()
    await secure.orch.runner.position.wait_for(last, 10)
    return last


def service(name: str) -> dict[str, Any]:
    return {"name": name, "address": "evil.example", "port": 443}


async def enrolled_with(secure: Secure, agent_id: str, policy: dict[str, Any]) -> str:
    """An agent enrolled with a policy (its first connection made and closed); its seed."""
    seed = new_seed(Role.USER)
    token = await secure.enroll(agent_id, policy=policy)
    await (await secure.connect(agent_id, seed, token)).close()
    return seed


class TestRevocation:
    async def test_a_revoked_agent_still_connected_is_refused_at_once(self, secure):
        seed = await secure.enrolled_agent("w1")
        first = await secure.connect("w1", seed)
        assert (await ask(secure, first, "register", registration("w1")))["ok"]
        await first.close()
        live = await secure.connect("w1", seed)  # fresh credentials, good for a while yet

        reply = await secure.admin("admin.revoke", {"name": "w1", "reason": "compromised"})
        assert reply["ok"] and reply["deregistered"], reply
        before = await settled(secure)
        for command, body in (("register", registration("w1", replace=True)),
                              ("services", {"services": [service("web")]}),
                              ("assignments", {}),
                              ("deregister", {"incarnation": 1})):
            assert "w1 is revoked" in refused_as(await ask(secure, live, command, body))
        assert await secure.orch.store.last_position() == before
        assert secure.orch.agents.get("w1").status == "left"

    async def test_a_revoked_submitter_still_connected_submits_nothing(self, secure):
        seed = await secure.identity("ci", ["submitter"])
        ci = await secure.connect("ci", seed)
        assert (await secure.admin("admin.revoke", {"name": "ci"}))["ok"]
        before = await settled(secure)
        msg = await ci.nc.request(secure.names.client_command("task.submit", "ci"),
                                  orjson.dumps({"task_id": "t1", "kind": "echo"}), timeout=5)
        refused_as(orjson.loads(msg.data))
        assert await secure.orch.store.last_position() == before
        assert secure.orch.board.get("t1") is None

    async def test_a_revoked_reader_still_connected_reads_nothing(self, secure):
        # catalog.query names no sender in its subject; the reader is the owner of the
        # inbox it is answered in, and only that identity may read it.
        seed = await secure.identity("dash", ["reader"])
        dash = await secure.connect("dash", seed)
        query = secure.names.command(n.CATALOG_QUERY)
        msg = await dash.nc.request(query, b"{}", timeout=5)
        assert orjson.loads(msg.data)["ok"]
        assert (await secure.admin("admin.revoke", {"name": "dash"}))["ok"]
        msg = await dash.nc.request(query, b"{}", timeout=5)
        assert "dash is revoked" in refused_as(orjson.loads(msg.data))

    async def test_a_revoked_agent_leaves_placement_at_once_and_its_tasks_move(self, secure):
        release = asyncio.Event()

        async def hold(ctx: Any) -> str:
            await release.wait()
            return "done"

        def worker(agent_id: str, seed: str, token: str | None) -> AgentClient:
            return AgentClient(agent_id, nats_url=secure.url, nkey_seed=seed, capacity=3,
                               enrollment_token=token, handlers={"hold": hold})

        def on_w2(task_id: str) -> bool:
            return bool(secure.orch.board.get(task_id).agent_id == "w2")

        seed1, seed2 = new_seed(Role.USER), new_seed(Role.USER)
        w1 = worker("w1", seed1, await secure.enroll("w1"))
        await w1.start()
        assert (await secure.admin("task.submit", {"task_id": "t1", "kind": "hold"}))["ok"]
        await eventually(lambda: "t1" in w1.running, what="t1 running on w1")
        w2 = worker("w2", seed2, await secure.enroll("w2"))
        await w2.start()
        try:
            reply = await secure.admin("admin.revoke", {"name": "w1", "reason": "stolen"})
            assert reply["ok"] and reply["deregistered"], reply
            # Out of the fleet at the revocation's own position, not when it falls silent.
            assert await secure.orch.runner.position.wait_for(reply["position"], 10)
            assert secure.orch.agents.get("w1").status == "left"
            left = (await secure.orch.store.history("agent", "w1"))[-1]
            assert (left.name, left.data()["reason"], left.identity) == (
                "Deregistered", "revoked", "operator")

            await eventually(partial(on_w2, "t1"), what="t1 moved to w2")
            for task_id in ("t2", "t3"):
                assert (await secure.admin("task.submit",
                                           {"task_id": task_id, "kind": "hold"}))["ok"]
                await eventually(partial(on_w2, task_id),
                                 what=f"{task_id} placed on w2")
            explainer = Explainer(secure.orch.store, secure.orch.js, secure.names)
            assert "revoked" in orjson.dumps(await explainer.task("t1")).decode()
            agent_story = await explainer.agent("w1")
            assert agent_story is not None
            assert agent_story["chain"][-1]["reason"] == "left (revoked)"
        finally:
            release.set()
            await w1.stop(deregister=False)
            await w2.stop()

    async def test_revoking_again_takes_out_an_agent_the_first_revocation_left(self, secure):
        # As after a crash between the two appends: Revoked is in the log, the agent is
        # still registered. The operator's retry finishes the revocation.
        seed = await secure.enrolled_agent("w1")
        first = await secure.connect("w1", seed)
        assert (await ask(secure, first, "register", registration("w1")))["ok"]
        current_identity.set("operator")  # the sender the command service would set
        await secure.orch.access_control.admin.revoke(RevokeIdentity(name="w1"))
        assert secure.orch.agents.get("w1").status != "left"
        reply = await secure.admin("admin.revoke", {"name": "w1"})
        assert reply["ok"] and reply["deregistered"], reply
        assert await secure.orch.runner.position.wait_for(reply["position"], 10)
        assert secure.orch.agents.get("w1").status == "left"


class TestEnrollmentPolicy:
    async def test_an_agent_cannot_claim_beyond_its_enrollment_policy(self, secure):
        enrolled = await secure.admin("admin.enroll", {"agent_id": "w1", "policy": POLICY})
        assert enrolled["ok"] and enrolled["policy"] == {**POLICY}, enrolled
        w1 = await secure.connect("w1", new_seed(Role.USER), enrolled["token"])
        before = await settled(secure)
        for claim, problem in (
                ({"services": [service("payments-db")]}, "service 'payments-db'"),
                ({"capabilities": ["cpu", "gpu"]}, "capability 'gpu'"),
                ({"labels": {"zone": "ap"}}, "label zone='ap'"),
                ({"labels": {"tier": "gold"}}, "label tier='gold'"),
                ({"capacity": 100_000}, "capacity 100000")):
            body = {**registration("w1", capacity=2), **claim}
            assert problem in refused_as(await ask(secure, w1, "register", body))
        assert await secure.orch.store.last_position() == before
        assert secure.orch.agents.get("w1") is None

        within = registration("w1", capacity=4, labels={"zone": "us"},
                              services=[service("web")])
        assert (await ask(secure, w1, "register", within))["ok"]
        before = await settled(secure)
        refusal = await ask(secure, w1, "services",
                            {"services": [service("web"), service("payments-db")]})
        assert "service 'payments-db'" in refused_as(refusal)
        assert await secure.orch.store.last_position() == before
        assert secure.orch.catalog.instances("payments-db") == []

    async def test_a_policy_binds_its_agent_and_reserves_nothing(self, secure):
        # w2, enrolled without a policy, may still offer the service w1's policy names:
        # the documented default (unrestricted; a policy is a bound on its own agent).
        w1 = await secure.connect("w1", await enrolled_with(secure, "w1", POLICY))
        w2 = await secure.connect("w2", await secure.enrolled_agent("w2"))
        assert (await ask(secure, w1, "register",
                          registration("w1", services=[service("web")])))["ok"]
        assert (await ask(secure, w2, "register",
                          registration("w2", capacity=50, services=[service("web")])))["ok"]
        await eventually(lambda: len(secure.orch.catalog.instances("web")) == 2,
                         what="both instances of web in the catalog")

    async def test_a_new_enrollment_states_the_policy_whole(self, secure):
        seed = await enrolled_with(secure, "w1", POLICY)
        rotated = await secure.admin("admin.enroll", {"agent_id": "w1", "rotate": True,
                                                      "policy": {"max_capacity": 1}})
        assert rotated["ok"], rotated
        w1 = await secure.connect("w1", new_seed(Role.USER), rotated["token"])
        await settled(secure)
        refused_as(await ask(secure, w1, "register", registration("w1", capacity=2)))
        # The rest of the old policy is gone: only the capacity is bound now.
        assert (await ask(secure, w1, "register",
                          registration("w1", capacity=1, capabilities=["gpu"])))["ok"]
        assert seed  # the old key was replaced by the rotation

    async def test_a_malformed_policy_is_refused_and_writes_nothing(self, secure):
        before = await settled(secure)
        for policy in ({"services": ["a.b"]}, {"max_capacity": 100_001},
                       {"labels": {"zone": "eu"}}, {"reserve": True}):
            reply = await secure.admin("admin.enroll", {"agent_id": "w1", "policy": policy})
            refused_as(reply, "invalid_request")
        assert await secure.orch.store.last_position() == before
        # What the enrollment records is the policy whole, each part sorted.
        reply = await secure.admin("admin.enroll", {"agent_id": "w1", "policy": {
            "services": ["web", "api", "web"], "labels": {"zone": ["us", "eu"]}}})
        assert reply["ok"] and reply["policy"] == {
            "services": ["api", "web"], "capabilities": None, "labels": {"zone": ["eu", "us"]},
            "max_capacity": None}, reply
        assert secure.orch.access_control.access.policy_of("w1") == reply["policy"]
