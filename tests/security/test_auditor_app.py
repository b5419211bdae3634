"""An auditor's own projection with real credentials: the read-only OrchestratorLog,
connected as an identity with the auditor role only, follows the log through the
library's projection runner; the same credentials publish nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from eventsourcing.projection import ProjectionRunner

from infra import names as n
from infra.auth.credentials import write_secret
from infra.eventsourcing_jetstream import OrchestratorLog, provenance_of
from infra.log.event_store import RecordedEvent
from services.audit.examples import deaths_per_day
from services.audit.examples.deaths_per_day import DeathsView
from tests.security.conftest import JWT_TTL_S, Secure
from tests.security.test_matrix import Case, server_denies
from tests.support import eventually, registration

AUDITOR = "au-app"
WAIT_S = 30.0
Runner = ProjectionRunner[OrchestratorLog, DeathsView]



def following(env: dict[str, str]) -> Runner:
    """The documented runner, entered as the library's runners are used (`with`)."""
    return deaths_per_day.follow(env).__enter__()


async def silent_death(secure: Secure, agent_id: str, deaths: int) -> RecordedEvent:
    """An enrolled agent registers and never heartbeats; its death, the `deaths`th."""
    names = secure.names
    agent = await secure.connect(agent_id, await secure.enrolled_agent(agent_id))
    reply = await agent.nc.request(names.agent_command(agent_id, n.REGISTER),
                                   orjson.dumps(registration(agent_id)), timeout=10)
    assert orjson.loads(reply.data)["ok"], reply.data
    await agent.close()
    subject = names.event(n.AGENT, "*", "DeclaredDead")

    async def recorded() -> list[RecordedEvent] | None:
        found = await secure.orch.store.read(0, 100, subject)
        return found if len(found) == deaths else None

    found: list[RecordedEvent] = await eventually(recorded, timeout=WAIT_S,
                                                  what=f"{agent_id} declared dead")
    assert found[-1].aggregate_id == agent_id
    return found[-1]


async def test_an_auditor_follows_the_log_and_can_publish_nothing(
    secure: Secure, tmp_path: Path
) -> None:
    names, store = secure.names, secure.orch.store
    seed = await secure.identity(AUDITOR, ["auditor"])
    credentials = tmp_path / f"{AUDITOR}.nk"
    write_secret(credentials, seed + "\n")
    env = {"ORCH_NATS_URL": secure.url, "ORCH_SUBJECT_PREFIX": names.prefix,
           "ORCH_CREDENTIALS": str(credentials), "ORCH_AUTH_JWT_TTL": str(JWT_TTL_S),
           "SQLITE_DBNAME": str(tmp_path / "d.db")}

    # The auditor's projection runs before the death it is to count.
    runner = await asyncio.to_thread(following, env)
    try:
        # An enrolled agent registers and falls silent: the orchestrator declares it dead.
        first = await silent_death(secure, "w1", 1)
        await asyncio.to_thread(runner.wait, first.position, WAIT_S)
        day = first.event.timestamp.date().isoformat()
        assert runner.view.deaths() == {("w1", day): 1}

        # Its first credentials expire: renewed twice by reconnecting, it follows on.
        stats = runner.app.factory.client.stats
        await eventually(lambda: stats["reconnects"] >= 2, timeout=WAIT_S,
                         what="the auditor's credentials renewed")
        second = await silent_death(secure, "w2", 2)
        await asyncio.to_thread(runner.wait, second.position, WAIT_S)
        assert sum(runner.view.deaths().values()) == 2
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)

    # Read as the auditor, each event says who caused it.
    log = await asyncio.to_thread(OrchestratorLog, env)
    try:
        notifications = await asyncio.to_thread(
            log.recorder.select_notifications, start=None, limit=1000)
        who = {provenance_of(log.mapper.to_domain_event(x)).identity for x in notifications}
    finally:
        log.close()
    assert {"operator", "w1", "orchestrator"} <= who

    # The same credentials may publish nothing that writes or commands.
    auditor = await secure.connect(AUDITOR, seed)
    before = await store.last_position()
    subjects = [names.event(n.AGENT, "w1", "DeclaredDead"), names.heartbeat("w1"),
                names.agent_command("w1", n.REGISTER),
                names.client_command(n.TASK_SUBMIT, AUDITOR),
                names.client_command(n.ADMIN_DRAIN, AUDITOR),
                f"$JS.API.STREAM.DELETE.{names.events_stream}",
                f"$JS.API.STREAM.PURGE.{names.events_stream}",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{names.events_stream}.failover",
                f"$JS.API.CONSUMER.DELETE.{names.events_stream}.failover",
                "$JS.API.STREAM.CREATE.ES_mine"]
    allowed = [s for s in subjects
               if not await server_denies(auditor, Case(AUDITOR, "publish", s, False))]
    assert allowed == []
    assert await store.last_position() == before
