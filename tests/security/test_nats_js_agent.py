"""The protocol is not Python-only: an agent written with nats.js (tests/js/agent.mjs, on
the official @nats-io/transport-node client) makes its own nkey, enrolls with a one-time
token, runs tasks, renews its credentials with its key alone, cannot act as another
agent, and deregisters on SIGTERM, against an orchestrator with ORCH_AUTH=on.

It needs Node.js and the packages pinned in tests/js/package-lock.json, which
`make test` installs (`make js-deps`: npm ci). Without them the test fails, saying so."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.security.conftest import JWT_TTL_S, Secure
from tests.support import eventually

JS_DIR = Path(__file__).resolve().parents[1] / "js"
AGENT_SCRIPT = JS_DIR / "agent.mjs"
AGENT_ID = "js1"
OTHER_AGENT = "w2"  # an agent id the node agent tries to act as
# A user seed as nkeys encodes it: "SU" and 56 more base32 characters.
SEED_PATTERN = re.compile(r"SU[A-Z2-7]{56}")


@pytest.fixture
def node() -> str:
    """Node.js, and the nats.js packages installed: or the test fails, saying what to do
    (before the orchestrator is started)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: this test runs a nats.js agent and needs Node.js "
                    ">= 18 and npm; install them, then `make js-deps`", pytrace=False)
    if not (JS_DIR / "node_modules" / "@nats-io" / "transport-node").is_dir():
        pytest.fail(f"the nats.js packages are not installed in {JS_DIR}/node_modules: run "
                    "`make js-deps` (npm ci in tests/js; `make test` does it)", pytrace=False)
    return node


@dataclass
class NodeAgent:
    """The node process, and what it reported: one JSON object per stdout line."""

    process: asyncio.subprocess.Process
    reported: list[dict[str, Any]] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.reported if line.get("event") == name]

    def first(self, name: str) -> dict[str, Any] | None:
        found = self.events(name)
        return found[0] if found else None

    def transcript(self) -> str:
        return ("stdout:\n" + "".join(self.stdout) + "stderr:\n" + "".join(self.stderr))

    async def _read(self, stream: asyncio.StreamReader | None, into: list[str],
                    parse: bool) -> None:
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace")
            into.append(text)
            if parse:
                with contextlib.suppress(ValueError):
                    self.reported.append(orjson.loads(line))

    @classmethod
    async def start(cls, node: str, env: dict[str, str]) -> NodeAgent:
        process = await asyncio.create_subprocess_exec(
            node, str(AGENT_SCRIPT), cwd=JS_DIR, env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        agent = cls(process)
        agent.readers = [
            asyncio.create_task(agent._read(process.stdout, agent.stdout, parse=True)),
            asyncio.create_task(agent._read(process.stderr, agent.stderr, parse=False)),
        ]
        return agent

    async def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, and its exit status once it and its output have ended."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.wait_for(asyncio.gather(*self.readers), timeout)
        return status

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for reader in self.readers:
            reader.cancel()


async def completed(secure: Secure, task_id: str, what: str) -> Any:
    task = await eventually(
        lambda: (t := secure.orch.board.get(task_id)) and t.status == "completed" and t,
        timeout=15, what=what)
    return task.result


class TestNatsJsAgent:
    async def test_a_nats_js_agent_enrolls_runs_tasks_as_itself_and_leaves(self, node, secure):
        token = await secure.enroll(AGENT_ID)
        agent = await NodeAgent.start(node, {
            "NATS_URL": secure.url, "AGENT_ID": AGENT_ID, "ENROLLMENT_TOKEN": token,
            "ORCH_PREFIX": secure.names.prefix, "PROBE_AGENT": OTHER_AGENT})
        try:
            await self.check(secure, agent)
        except (AssertionError, TimeoutError) as failed:  # with what the agent said
            said = f"{failed or repr(failed)}\n--- the node agent ---\n{agent.transcript()}"
            raise AssertionError(said) from failed
        finally:
            await agent.kill()

    async def check(self, secure: Secure, agent: NodeAgent) -> None:
        registered = await eventually(lambda: agent.first("registered"), timeout=15,
                                      what="the node agent registered")
        assert registered["incarnation"] == 1
        assert registered["heartbeat_subject"] == secure.names.heartbeat(AGENT_ID)
        assert registered["credentials_ttl_s"] == JWT_TTL_S

        # It enrolled with the key it made; only the public half ever left it.
        key = agent.first("key")
        assert key is not None
        assert [c["token_sent"] for c in agent.events("connected")] == [True]
        identity_events = await secure.orch.store.read(
            0, 100_000, secure.names.kind_events("identity"))
        # (the event is being renamed from Enrolled to AgentEnrolled: either will do)
        enrolled = [(e.aggregate_id, e.data()["public_key"], e.identity)
                    for e in identity_events if e.name.endswith("Enrolled")]
        assert enrolled == [(AGENT_ID, key["public_key"], AGENT_ID)]

        # Acting as another agent is refused by the NATS server itself, and writes nothing.
        probes = await eventually(lambda: len(agent.events("probe")) == 2
                                  and agent.events("probe"), what="both probes reported")
        assert {(p["action"], p["subject"], p["outcome"]) for p in probes} == {
            ("request", secure.names.agent_command(OTHER_AGENT, "register"),
             "permission violation"),
            ("subscribe", secure.names.agent_tasks(OTHER_AGENT), "permission violation"),
        }
        assert OTHER_AGENT not in secure.orch.agents.agents

        # A task on its first connection, then one after it renewed its credentials by
        # reconnecting with its key alone (the token is used up).
        reply = await secure.admin("task.submit", {"task_id": "js-t1", "kind": "echo",
                                                   "payload": {"n": 1, "s": "één"}})
        assert reply["ok"], reply
        assert await completed(secure, "js-t1", "js-t1 completed") == {"n": 1, "s": "één"}
        renewed = await eventually(lambda: agent.events("reconnected"), timeout=JWT_TTL_S * 3,
                                   what="the node agent renewed its credentials")
        assert renewed[0]["token_sent"] is False
        reply = await secure.admin("task.submit", {"task_id": "js-t2", "kind": "echo",
                                                   "payload": {"n": 2, "list": [1, 2.5]}})
        assert reply["ok"], reply
        assert await completed(secure, "js-t2", "js-t2 completed") == {"n": 2, "list": [1, 2.5]}
        for task_id in ("js-t1", "js-t2"):
            history = await secure.orch.store.history("task", task_id)
            assert [(e.name, e.identity) for e in history] == [
                ("Submitted", "operator"), ("Assigned", "orchestrator"),
                ("Accepted", AGENT_ID), ("Completed", AGENT_ID)]
        await eventually(lambda: secure.orch.agents.agents[AGENT_ID].status == "healthy",
                         what="the node agent heartbeating")

        # SIGTERM: it deregisters and exits.
        assert await agent.terminate() == 0
        deregistered = agent.first("deregistered")
        assert deregistered is not None
        assert deregistered["reply"]["status"] == "left"
        await eventually(lambda: secure.orch.agents.agents[AGENT_ID].status == "left",
                         what="the node agent left")
        agent_history = await secure.orch.store.history("agent", AGENT_ID)
        assert agent_history[-1].name == "Deregistered"
        assert agent_history[-1].identity == AGENT_ID

        assert not SEED_PATTERN.search(agent.transcript()), "the seed must never leave it"
        # A heartbeat or report that failed during a reconnect is retried: not a fault.
        unexpected = [e for e in agent.events("error")
                      if e["where"] != "heartbeat" and not e["where"].endswith("(retrying)")]
        assert not unexpected
