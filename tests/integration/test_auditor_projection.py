"""Auditors' own projections over the orchestrator's log, through the library's runner:
the documented deaths-per-day example followed live through an orchestrator restart and
its own, agreeing with a full replay; the events and provenance an auditor sees; older
event versions upcast; and every write refused."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import get_topic
from nats.aio.client import Client

from domain.agents.agent import Agent
from domain.base import StrIdAggregate
from infra.eventsourcing_jetstream import (
    JetStreamTrackingRecorder,
    OrchestratorLog,
    ReadOnlyLogError,
    provenance_of,
)
from infra.eventsourcing_jetstream.log_errors import AggregateIdError
from infra.log.event_store import EventStore, RecordedEvent
from infra.log.format.codec import OrjsonTranscoder
from infra.log.streams import provision
from infra.names import AGENT, Header, Names
from infra.settings import Settings
from services.app import Orchestrator
from services.audit.examples import deaths_per_day
from services.audit.examples.deaths_per_day import DeathsView
from tests.support import eventually, registration, request

Runner = ProjectionRunner[OrchestratorLog, DeathsView]
WAIT_S = 30.0  # generous: a loaded 2-core machine


def log_env(settings: Settings) -> dict[str, str]:
    assert settings.nats_url is not None
    return {"ORCH_NATS_URL": settings.nats_url, "ORCH_SUBJECT_PREFIX": settings.subject_prefix}


async def started(settings: Settings) -> Orchestrator:
    orch = Orchestrator(settings)
    await orch.start()
    await eventually(lambda: orch.is_leader, what="leader lease acquired")
    return orch


async def register_and_fall_silent(nc: Client, names: Names, agent_id: str) -> None:
    """An agent that registers and never heartbeats: declared dead a second later."""
    reply = await request(nc, names.agent_command(agent_id, "register"),
                          registration(agent_id))
    assert reply["ok"], reply


async def deaths_recorded(store: EventStore, count: int) -> list[RecordedEvent]:
    """The log's DeclaredDead events, once there are `count` of them."""
    subject = store.names.event(AGENT, "*", "DeclaredDead")

    async def enough() -> list[RecordedEvent] | None:
        found = await store.read(0, 10_000, subject)
        return found if len(found) >= count else None

    found: list[RecordedEvent] = await eventually(enough, timeout=WAIT_S,
                                                  what=f"{count} deaths recorded")
    assert len(found) == count, [e.aggregate_id for e in found]
    return found


def counted(deaths: list[RecordedEvent]) -> Counter[tuple[str, str]]:
    """Deaths per agent per day, straight from the orchestrator's own reading."""
    return Counter((e.aggregate_id, e.event.timestamp.date().isoformat()) for e in deaths)



def following(env: dict[str, str]) -> Runner:
    """The documented runner, entered as the library's runners are used (`with`)."""
    return deaths_per_day.follow(env).__enter__()


async def caught_up(runner: Runner, position: int) -> None:
    # The runner blocks; the orchestrator shares this test's event loop.
    await asyncio.to_thread(runner.wait, position, WAIT_S)


async def stopped(runner: Runner) -> None:
    await asyncio.to_thread(runner.__exit__, None, None, None)


class TestDeathsPerDayExample:
    def test_the_documented_code_is_the_example_modules(self) -> None:
        doc = (Path(__file__).parents[2] / "docs" / "auditor-projections.md").read_text()
        module = Path(deaths_per_day.__file__).read_text()
        shown = re.findall(r"^```python\n(.*?)^```", doc, flags=re.M | re.S)
        definitions = [b for b in shown if b.startswith(("class ", "def "))]
        assert len(definitions) == 3
        assert [b for b in definitions if b not in module] == []

    async def test_follows_the_live_log_through_both_restarts_without_double_counting(
        self, settings: Settings, names: Names, nc: Client, tmp_path: Path
    ) -> None:
        env = {**log_env(settings), "SQLITE_DBNAME": str(tmp_path / "deaths.db")}
        orch = await started(settings)
        runner = await asyncio.to_thread(following, env)
        try:
            # Two agents fall silent: their deaths are counted as they are recorded.
            for agent_id in ("a1", "a2"):
                await register_and_fall_silent(nc, names, agent_id)
            deaths = await deaths_recorded(orch.store, 2)
            await caught_up(runner, deaths[-1].position)
            assert runner.view.deaths() == counted(deaths)

            # The orchestrator restarts; a1 comes back and dies again, a3 dies too.
            await orch.stop()
            orch = await started(settings)
            for agent_id in ("a1", "a3"):
                await register_and_fall_silent(nc, names, agent_id)
            deaths = await deaths_recorded(orch.store, 4)
            await caught_up(runner, deaths[-1].position)
            assert runner.view.deaths() == counted(deaths)

            # The projection stops; a2 comes back and dies while it is down.
            await stopped(runner)
            await register_and_fall_silent(nc, names, "a2")
            deaths = await deaths_recorded(orch.store, 5)

            # Started again on the same file, it resumes after what it counted (read
            # before it starts: once started it may catch up at once).
            kept = await asyncio.to_thread(deaths_per_day.open_view, env)
            resumes_after = kept.max_tracking_id(OrchestratorLog.name)
            kept.datastore.close()
            assert resumes_after == deaths[3].position
            runner = await asyncio.to_thread(following, env)
            await caught_up(runner, deaths[-1].position)
            counts = runner.view.deaths()
            assert counts == counted(deaths)
            assert sum(counts.values()) == 5
            assert await asyncio.to_thread(deaths_per_day.replay, runner.app) == counts
        finally:
            await stopped(runner)
            await orch.stop()

    async def test_a_report_reads_the_counts_without_following(
        self, orchestrator: Orchestrator, names: Names, nc: Client, tmp_path: Path,
        settings: Settings, capsys: pytest.CaptureFixture[str],
    ) -> None:
        env = {**log_env(settings), "SQLITE_DBNAME": str(tmp_path / "deaths.db")}
        await register_and_fall_silent(nc, names, "r1")
        (death,) = await deaths_recorded(orchestrator.store, 1)
        runner = await asyncio.to_thread(following, env)
        try:
            await caught_up(runner, death.position)
        finally:
            await stopped(runner)
        assert deaths_per_day.main([env["SQLITE_DBNAME"], "--report"]) == 0
        day = death.event.timestamp.date().isoformat()
        assert capsys.readouterr().out == f"{day}  r1  1\n"


class Seen(Projection[JetStreamTrackingRecorder]):
    """Tracks every event it is given: a view whose tracking records are in JetStream."""

    name = "seen_by_auditor"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)


class TestTrackingInJetStream:
    async def test_a_view_in_the_projects_jetstream_module_follows_the_log(
        self, orchestrator: Orchestrator, settings: Settings, nc: Client, names: Names
    ) -> None:
        await register_and_fall_silent(nc, names, "j1")
        (death,) = await deaths_recorded(orchestrator.store, 1)
        env = {**log_env(settings), "PERSISTENCE_MODULE": "infra.eventsourcing_jetstream"}
        runner: ProjectionRunner[OrchestratorLog, JetStreamTrackingRecorder] = (
            await asyncio.to_thread(lambda: ProjectionRunner(
                application_class=OrchestratorLog, projection_class=Seen,
                view_class=JetStreamTrackingRecorder, env=env).__enter__()))
        try:
            await asyncio.to_thread(runner.wait, death.position, WAIT_S)
            assert runner.view.max_tracking_id(OrchestratorLog.name) == death.position
            assert runner.view.log.stream == "ES_seen_by_auditor"
        finally:
            await asyncio.to_thread(runner.__exit__, None, None, None)
            await nc.jetstream().delete_stream("ES_seen_by_auditor")


@pytest.fixture
async def log(orchestrator: Orchestrator, settings: Settings) -> AsyncIterator[OrchestratorLog]:
    app = await asyncio.to_thread(OrchestratorLog, log_env(settings))
    yield app
    app.close()


class TestWhatAnAuditorSees:
    async def test_the_orchestrators_own_events_with_their_provenance(
        self, orchestrator: Orchestrator, log: OrchestratorLog, nc: Client, names: Names
    ) -> None:
        await register_and_fall_silent(nc, names, "p1")
        await deaths_recorded(orchestrator.store, 1)
        recorded = await orchestrator.store.read(0, 10_000)
        notifications = await asyncio.to_thread(
            log.recorder.select_notifications, start=1, limit=10_000)
        # Notification ids are the log's positions, and nothing is left out.
        assert [n.id for n in notifications] == [r.position for r in recorded]
        assert log.recorder.max_notification_id() == recorded[-1].position
        for notification, expected in zip(notifications, recorded, strict=True):
            event = log.mapper.to_domain_event(notification)
            assert type(event) is type(expected.event) and event == expected.event
            seen = provenance_of(event)
            assert (seen.position, seen.subject, seen.event_id, seen.causation_id,
                    seen.correlation_id, seen.identity) == (
                expected.position, expected.subject, expected.event_id,
                expected.causation_id, expected.correlation_id, expected.identity)
            assert abs((seen.recorded_at - expected.recorded_at).total_seconds()) < 1e-3
        identities = {type(log.mapper.to_domain_event(n)).__name__:
                      provenance_of(log.mapper.to_domain_event(n)).identity
                      for n in notifications}
        assert identities["Registered"] == "p1"  # the agent's own command
        assert identities["DeclaredDead"] == "orchestrator"  # its own decision

    async def test_the_repository_rebuilds_an_aggregate_from_the_log(
        self, orchestrator: Orchestrator, log: OrchestratorLog, nc: Client, names: Names
    ) -> None:
        await register_and_fall_silent(nc, names, "g1")
        await deaths_recorded(orchestrator.store, 1)
        agent: Agent = await asyncio.to_thread(log.repository.get, "g1")
        assert agent.liveness == "dead"
        with pytest.raises(AggregateIdError) as refused:
            log.repository.get("g1.>")
        assert refused.value.code == "invalid_aggregate_id"

    async def test_without_a_log_it_says_which_prefix_it_looked_for(
        self, settings: Settings
    ) -> None:
        env = {**log_env(settings), "ORCH_SUBJECT_PREFIX": "nobody"}
        with pytest.raises(Exception, match="no orchestrator log NOBODY_EVENTS") as error:
            await asyncio.to_thread(OrchestratorLog, env)
        assert getattr(error.value, "code", None) == "log_not_found"

    async def test_without_a_nats_url_it_names_the_setting(self) -> None:
        with pytest.raises(Exception, match="ORCH_NATS_URL") as error:
            OrchestratorLog({"ORCH_NATS_URL": ""})
        assert getattr(error.value, "code", None) == "invalid_settings"


class Probe(StrIdAggregate):
    """An aggregate of the tests' own, whose event gained a field in version 2."""

    class Noted(StrIdAggregate.Event):
        class_version = 2
        note: str
        severity: str  # new in version 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["severity"] = "unknown"


class TestUpcasting:
    async def test_an_event_recorded_before_its_class_grew_is_upcast(
        self, nc: Client, names: Names, settings: Settings
    ) -> None:
        js = nc.jetstream()
        await provision(js, names, heartbeat_history=10)
        topic, transcoder, now = get_topic(Probe.Noted), OrjsonTranscoder(), datetime.now(UTC)
        # As an older orchestrator recorded it (version 1 state, no class_version), then
        # as a newer one does.
        for version, state in ((1, {"timestamp": now, "note": "old"}),
                               (2, {"timestamp": now, "note": "new", "severity": "high",
                                    "class_version": 2})):
            await js.publish(
                names.event("probe", "x1", "Noted"), transcoder.encode(state),
                headers={Header.TOPIC: topic, Header.VERSION: str(version)},
                stream=names.events_stream)
        app = await asyncio.to_thread(OrchestratorLog, log_env(settings))
        try:
            events: list[Any] = [app.mapper.to_domain_event(n)
                      for n in app.recorder.select_notifications(start=None, limit=10)]
        finally:
            app.close()
        assert [(e.note, e.severity) for e in events] == [("old", "unknown"), ("new", "high")]
        assert all(isinstance(e, Probe.Noted) for e in events)


class TestWritesAreRefused:
    async def test_every_write_through_the_read_only_application_is_refused(
        self, orchestrator: Orchestrator, log: OrchestratorLog
    ) -> None:
        before = await orchestrator.store.last_position()
        agent = Agent("w1", ["cpu"], 1, {}, [])
        stored = StoredEvent("w1", 1, get_topic(type(agent.collect_events()[0])), b"{}")
        attempts = {
            "save": lambda: log.save(Agent("w2", ["cpu"], 1, {}, [])),
            "insert_events": lambda: log.recorder.insert_events([stored]),
            "take_snapshot": lambda: log.take_snapshot("w1"),
            "tracking_recorder": lambda: log.factory.tracking_recorder(),
            "process_recorder": lambda: log.factory.process_recorder(),
            "aggregate_recorder": lambda: log.factory.aggregate_recorder("snapshots"),
        }
        for what, attempt in attempts.items():
            with pytest.raises(ReadOnlyLogError, match="read-only") as refused:
                attempt()
            assert refused.value.code == "read_only", what
        assert await orchestrator.store.last_position() == before
