"""Issue 29, finding 2, tried as the attacker did: an auditor asks JetStream for a push
consumer on the heartbeats of one agent, delivering to another agent's control subject,
to turn the first agent's heartbeat bodies into control messages for the second. An
auditor may create no consumer at all (nats-server does not check a deliver subject
against its creator's rights): it reads by direct gets, and the CLI's audits, which run
as the local operator with the auditor role, need nothing the server denies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import nats.errors
import orjson
import pytest
from nats.aio.msg import Msg

from infra.auth.credentials import Keys
from infra.bus.embedded import LOG_NAME
from infra.log import direct_read
from tests.security.conftest import Secure
from tests.security.test_matrix import Case, server_denies
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]
VICTIM, SENDER, SPY = "victim1", "a1", "au-spy"


async def test_an_auditor_cannot_make_the_server_deliver_onto_an_agents_control_subject(
    secure: Secure,
) -> None:
    names = secure.names
    stream, control = names.heartbeats_stream, names.agent_control(VICTIM)
    victim_seed, spy_seed = await secure.enrolled_agent(VICTIM), await secure.identity(
        SPY, ["auditor"])
    sender = await secure.connect(SENDER, await secure.enrolled_agent(SENDER))
    # A heartbeat whose body is a control message: stored as sent.
    forged = orjson.dumps({"type": "reregister"})
    await sender.nc.publish(names.heartbeat(SENDER), forged)
    await sender.nc.flush()
    await sender.close()

    # Connected just now: credentials live JWT_TTL_S, and these do not renew.
    victim = await secure.connect(VICTIM, victim_seed)
    received: list[Msg] = []

    async def on_control(msg: Msg) -> None:
        received.append(msg)

    await victim.nc.subscribe(control, cb=on_control)
    spy = await secure.connect(SPY, spy_seed)
    # The attack as the client library makes it; the server drops the request.
    with pytest.raises(nats.errors.TimeoutError):
        await spy.nc.jetstream().add_consumer(
            stream, deliver_subject=control, filter_subject=names.heartbeat(SENDER),
            timeout=0.5)
    assert any("permissions violation" in e.lower() and f"$js.api.consumer.create.{stream}"
               .lower() in e.lower() for e in spy.errors), spy.errors
    # Each other form of the request is refused too, its body the same attack.
    for subject in (f"$JS.API.CONSUMER.CREATE.{stream}.spy",
                    f"$JS.API.CONSUMER.CREATE.{stream}.spy.{names.heartbeat(SENDER)}",
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.spy"):
        assert await server_denies(spy, Case(SPY, "publish", subject, False)), subject
    # No consumer delivers to the victim; a round trip on its connection shows that
    # nothing the server sent it before is still on the way.
    consumers = await secure.orch.js.consumers_info(stream)
    assert [c.name for c in consumers if c.config.deliver_subject == control] == []
    await victim.nc.flush()
    assert received == []
    await victim.close()
    await spy.close()

    # What an auditor may do still works: the heartbeat, by a direct get.
    reader = await secure.connect(SPY, spy_seed)
    found, pending = await direct_read.get_batch(reader.nc, stream, names.heartbeat(SENDER),
                                                 1, 10, 5.0)
    assert ([m.data for m in found], pending) == ([forged], 0)
    assert reader.errors == []


async def cli(secure: Secure, *args: str) -> tuple[int, str, str]:
    """A CLI command as the local operator on the orchestrator's machine."""
    env = {"PATH": "/usr/bin:/bin", "ORCH_DATA_DIR": str(secure.orch.settings.data_dir),
           "ORCH_NATS_URL": secure.url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args, cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


def violations(secure: Secure) -> list[str]:
    assert secure.orch.embedded is not None
    text = (secure.orch.embedded.data_dir / LOG_NAME).read_text(errors="replace")
    return [line for line in text.splitlines() if "Violation" in line]


async def test_the_audits_of_the_local_operator_need_nothing_the_server_denies(
    secure: Secure,
) -> None:
    assert Keys.of(secure.orch.settings.data_dir).operator.exists()
    await secure.enrolled_agent(VICTIM)  # more of a log to read
    code, out, err = await cli(secure, "events", "--json")
    assert (code, err) == (0, ""), err
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert lines and [e["position"] for e in lines] == sorted(e["position"] for e in lines)
    code, out, err = await cli(secure, "explain", "agent", VICTIM, "--json")
    assert code in (0, 1), err  # enrolled, not registered: a chain, or "no agent"
    code, out, err = await cli(secure, "what-if", "--suspect-after", "1", "--dead-after", "2",
                               "--json")
    assert code == 0 and "summary" in orjson.loads(out), err

    # A denied publish of the operator's own, last: once the server's log says it, it
    # has said anything the commands before did; it is the only violation there.
    operator = await secure.operator()
    sentinel = "$JS.API.CONSUMER.DELETE.NONE.sentinel"
    await operator.nc.publish(sentinel, b"")
    await operator.nc.flush()
    await eventually(lambda: any("sentinel" in line for line in violations(secure)),
                     what="the server logs the sentinel's violation")
    assert [line for line in violations(secure) if "sentinel" not in line] == []
