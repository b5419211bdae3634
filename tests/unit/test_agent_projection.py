"""The agent health read model, fed real Agent events as the log would deliver them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from domain.agents.agent import Agent
from projections.fleet.agents import AgentHealth, AgentView
from projections.position import Position
from tests.unit.log_events import FakeLogEvent

T0 = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)


class Log:
    """Numbers events as the log would and applies them to the projection."""

    def __init__(self, projection: AgentHealth) -> None:
        self.projection = projection
        self.position = 0

    def record(self, agent: Agent) -> list[FakeLogEvent]:
        recorded = []
        for domain_event in agent.collect_events():
            self.position += 1
            log_event = FakeLogEvent(
                position=self.position,
                kind="agent",
                aggregate_id=agent.id,
                name=type(domain_event).__name__,
                event_id=f"ev-{self.position}",
                recorded_at=T0 + timedelta(seconds=self.position),
                state=dict(vars(domain_event)),
            )
            self.projection.apply(log_event)
            recorded.append(log_event)
        return recorded

    def other(self, kind: str = "task", name: str = "Created") -> FakeLogEvent:
        self.position += 1
        log_event = FakeLogEvent(
            position=self.position, kind=kind, aggregate_id="x", name=name,
            event_id=f"ev-{self.position}", recorded_at=T0,
            state={"originator_version": 1},
        )
        self.projection.apply(log_event)
        return log_event


@pytest.fixture
def health() -> AgentHealth:
    return AgentHealth()


@pytest.fixture
def log(health: AgentHealth) -> Log:
    return Log(health)


def register(
    log: Log,
    agent_id: str = "agent-1",
    capabilities: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> Agent:
    agent = Agent(
        agent_id, capabilities if capabilities is not None else ["cpu"], 2,
        labels if labels is not None else {"zone": "eu-1"},
        [{"name": "web", "address": "10.0.0.1", "port": 80}],
    )
    log.record(agent)
    return agent


def view(health: AgentHealth, agent_id: str = "agent-1") -> AgentView:
    found = health.get(agent_id)
    assert found is not None
    return found


def heartbeat(health: AgentHealth, agent_id: str = "agent-1", incarnation: int = 1,
              seq: int = 1, at: datetime = T0) -> bool:
    return health.apply_heartbeat(agent_id, incarnation, seq, 0.25, ["task-1"], at)


class TestRegistered:
    def test_creates_a_healthy_view_of_the_declaration(
        self, health: AgentHealth, log: Log
    ) -> None:
        register(log)

        agent = view(health)
        assert agent.status == "healthy"
        assert agent.incarnation == 1
        assert agent.capabilities == ["cpu"]
        assert agent.capacity == 2
        assert agent.labels == {"zone": "eu-1"}
        assert agent.services == [{"name": "web", "address": "10.0.0.1", "port": 80}]

    def test_records_where_and_when_it_was_registered(
        self, health: AgentHealth, log: Log
    ) -> None:
        log.other()
        [registered] = register_events(log)

        agent = view(health)
        assert agent.position == registered.position == 2
        assert agent.registration_event_id == registered.event_id
        assert agent.last_event_id == registered.event_id
        assert agent.registered_at == agent.updated_at == registered.recorded_at
        assert health.position == 2

    def test_unknown_agent_has_no_view(self, health: AgentHealth) -> None:
        assert health.get("nobody") is None


def register_events(log: Log) -> list[FakeLogEvent]:
    return log.record(Agent("agent-1", ["cpu"], 2, {}, []))


class TestLivenessEvents:
    def test_suspected_makes_the_agent_suspect(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.suspect(1, 3.1, 3.0, 4)

        [suspected] = log.record(agent)

        assert view(health).status == "suspect"
        assert view(health).liveness == "suspect"
        assert view(health).last_event_id == suspected.event_id
        assert view(health).updated_at == suspected.recorded_at

    def test_recovered_makes_a_suspect_agent_healthy_again(
        self, health: AgentHealth, log: Log
    ) -> None:
        agent = register(log)
        agent.suspect(1, 3.1, 3.0, 4)
        agent.recover(1, 5)

        log.record(agent)

        assert view(health).status == "healthy"

    def test_declared_dead_makes_the_agent_dead(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.suspect(1, 3.1, 3.0, 4)
        agent.declare_dead(1, 5.0, 5.0, 4)

        log.record(agent)

        assert view(health).status == "dead"

    def test_drain_started_makes_the_agent_draining(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.drain()

        log.record(agent)

        assert view(health).status == "draining"
        assert view(health).draining is True

    def test_undrained_returns_the_agent_to_healthy(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.drain()
        log.record(agent)
        assert view(health).status == "draining"

        assert agent.undrain() is True
        log.record(agent)

        assert view(health).status == "healthy"
        assert health.counts()["healthy"] == 1 and not health.counts().get("draining")

    def test_a_draining_agent_that_recovers_is_draining_again(
        self, health: AgentHealth, log: Log
    ) -> None:
        agent = register(log)
        agent.drain()
        agent.suspect(1, 3.1, 3.0, 4)
        log.record(agent)
        assert view(health).status == "suspect"

        agent.recover(1, 5)
        log.record(agent)

        assert view(health).status == "draining"

    def test_services_changed_replaces_the_declared_services(
        self, health: AgentHealth, log: Log
    ) -> None:
        agent = register(log)
        services = [{"name": "api", "address": "10.0.0.2", "port": 443, "tags": ["v2"],
                     "meta": {}}]
        agent.change_services(services)

        log.record(agent)

        assert view(health).services == services
        assert view(health).status == "healthy"

    def test_deregistered_makes_the_agent_left(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.deregister(1)

        log.record(agent)

        assert view(health).status == "left"

    def test_reregistered_gives_a_fresh_healthy_view_of_the_new_incarnation(
        self, health: AgentHealth, log: Log
    ) -> None:
        agent = register(log)
        agent.drain()
        agent.declare_dead(1, 5.0, 5.0, 4)
        log.record(agent)
        agent.reregister(["gpu"], 7, {"zone": "us-1"}, [])

        [reregistered] = log.record(agent)

        fresh = view(health)
        assert fresh.status == "healthy"
        assert fresh.incarnation == 2
        assert fresh.capabilities == ["gpu"]
        assert fresh.capacity == 7
        assert fresh.labels == {"zone": "us-1"}
        assert fresh.draining is False
        assert fresh.registration_event_id == reregistered.event_id
        assert fresh.registered_at == reregistered.recorded_at

    def test_reregistered_after_leaving_is_healthy(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.deregister(1)
        agent.reregister(["cpu"], 1, {}, [])

        log.record(agent)

        assert view(health).status == "healthy"
        assert view(health).left is False

    def test_events_of_an_agent_never_registered_are_ignored(
        self, health: AgentHealth, log: Log
    ) -> None:
        agent = Agent("ghost", ["cpu"], 1, {}, [])
        agent.collect_events()  # its registration is not in this log
        agent.drain()

        log.record(agent)

        assert health.get("ghost") is None
        assert health.position == 1

    def test_events_of_other_aggregates_only_advance_the_position(
        self, health: AgentHealth, log: Log
    ) -> None:
        register(log)
        before = view(health).to_json()

        log.other(kind="task", name="Deregistered")

        assert view(health).to_json() == before
        assert health.position == 2


class TestApplyHeartbeat:
    def test_records_a_heartbeat_of_the_current_incarnation(
        self, health: AgentHealth, log: Log
    ) -> None:
        register(log)

        assert health.apply_heartbeat("agent-1", 1, 9, 0.75, ["task-1", "task-2"], T0) is True

        agent = view(health)
        assert agent.last_heartbeat_at == T0
        assert agent.last_heartbeat_seq == 9
        assert agent.load == 0.75
        assert agent.running == ["task-1", "task-2"]

    def test_a_suspect_agent_heartbeat_is_recorded(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.suspect(1, 3.1, 3.0, 4)
        log.record(agent)

        assert heartbeat(health, seq=5) is True
        assert view(health).last_heartbeat_seq == 5

    def test_returns_false_for_an_unknown_agent(self, health: AgentHealth) -> None:
        assert heartbeat(health, agent_id="nobody") is False
        assert health.get("nobody") is None

    @pytest.mark.parametrize("incarnation", [1, 3])
    def test_returns_false_for_another_incarnation(
        self, health: AgentHealth, log: Log, incarnation: int
    ) -> None:
        agent = register(log)
        agent.reregister(["cpu"], 1, {}, [])
        log.record(agent)

        assert heartbeat(health, incarnation=incarnation, seq=4) is False

        assert view(health).last_heartbeat_at is None
        assert view(health).last_heartbeat_seq == 0

    def test_returns_false_for_an_agent_that_left(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.deregister(1)
        log.record(agent)

        later = view(health).updated_at + timedelta(seconds=1)
        assert heartbeat(health, at=later) is False
        assert view(health).last_heartbeat_at is None
        # One sent before it left, read late (a rebuild reads the newest heartbeat after
        # the log): shown, as the live view showed it, though it is not a sign of life.
        assert heartbeat(health, seq=2) is False
        assert view(health).last_heartbeat_at == T0 and view(health).load == 0.25

    def test_returns_false_for_a_dead_agent(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        agent.declare_dead(1, 5.0, 5.0, 0)
        log.record(agent)

        later = view(health).updated_at + timedelta(seconds=1)
        assert heartbeat(health, at=later) is False
        assert view(health).last_heartbeat_at is None
        assert view(health).running == []


class TestQuery:
    @pytest.fixture
    def fleet(self, health: AgentHealth, log: Log) -> AgentHealth:
        register(log, "c-healthy", ["cpu"], {"zone": "eu-1", "tier": "gold"})
        draining = register(log, "b-draining", ["cpu", "gpu"], {"zone": "eu-1"})
        draining.drain()
        suspect = register(log, "a-suspect", ["gpu"], {"zone": "us-1"})
        suspect.suspect(1, 3.1, 3.0, 1)
        dead = register(log, "e-dead", ["cpu"], {"zone": "us-1", "tier": "gold"})
        dead.declare_dead(1, 5.0, 5.0, 1)
        left = register(log, "d-left", ["gpu"], {"zone": "eu-1"})
        left.deregister(1)
        register(log, "f-healthy", ["gpu", "cpu"], {})
        for agent in (draining, suspect, dead, left):
            log.record(agent)
        return health

    @staticmethod
    def ids(views: list[AgentView]) -> list[str]:
        return [v.agent_id for v in views]

    def test_without_filters_returns_every_agent_ordered_by_id(self, fleet: AgentHealth) -> None:
        assert self.ids(fleet.query()) == [
            "a-suspect", "b-draining", "c-healthy", "d-left", "e-dead", "f-healthy",
        ]

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("healthy", ["c-healthy", "f-healthy"]),
            ("draining", ["b-draining"]),
            ("suspect", ["a-suspect"]),
            ("dead", ["e-dead"]),
            ("left", ["d-left"]),
            ("alive", []),
        ],
    )
    def test_filters_by_status(
        self, fleet: AgentHealth, status: str, expected: list[str]
    ) -> None:
        assert self.ids(fleet.query(status=status)) == expected

    @pytest.mark.parametrize(
        ("capability", "expected"),
        [
            ("cpu", ["b-draining", "c-healthy", "e-dead", "f-healthy"]),
            ("gpu", ["a-suspect", "b-draining", "d-left", "f-healthy"]),
            ("tpu", []),
            ("cp", []),
        ],
    )
    def test_filters_by_capability(
        self, fleet: AgentHealth, capability: str, expected: list[str]
    ) -> None:
        assert self.ids(fleet.query(capability=capability)) == expected

    @pytest.mark.parametrize(
        ("labels", "expected"),
        [
            ({"zone": "eu-1"}, ["b-draining", "c-healthy", "d-left"]),
            ({"zone": "us-1", "tier": "gold"}, ["e-dead"]),
            ({"tier": "gold"}, ["c-healthy", "e-dead"]),
            ({"zone": "eu-1", "tier": "silver"}, []),
            ({"zone": "EU-1"}, []),
        ],
    )
    def test_filters_by_every_given_label(
        self, fleet: AgentHealth, labels: dict[str, str], expected: list[str]
    ) -> None:
        assert self.ids(fleet.query(labels=labels)) == expected

    def test_an_empty_label_filter_matches_every_agent(self, fleet: AgentHealth) -> None:
        assert len(fleet.query(labels={})) == 6

    def test_combines_filters(self, fleet: AgentHealth) -> None:
        assert self.ids(fleet.query(status="healthy", capability="cpu",
                                    labels={"tier": "gold"})) == ["c-healthy"]
        assert self.ids(fleet.query(status="dead", capability="gpu")) == []

    def test_counts_agents_by_status(self, fleet: AgentHealth) -> None:
        assert fleet.counts() == {
            "healthy": 2, "draining": 1, "suspect": 1, "dead": 1, "left": 1,
        }

    def test_counts_of_an_empty_fleet_are_empty(self, health: AgentHealth) -> None:
        assert health.counts() == {}

    def test_counts_follow_status_changes(self, health: AgentHealth, log: Log) -> None:
        agent = register(log)
        assert health.counts() == {"healthy": 1}

        agent.suspect(1, 3.1, 3.0, 1)
        log.record(agent)
        assert health.counts() == {"suspect": 1}

        agent.reregister(["cpu"], 1, {}, [])
        log.record(agent)
        assert health.counts() == {"healthy": 1}


class TestAgentViewJson:
    def test_serializes_the_view_for_the_read_api(self, health: AgentHealth, log: Log) -> None:
        register(log)
        heartbeat(health, seq=3)

        body = view(health).to_json()

        assert body["agent_id"] == "agent-1"
        assert body["status"] == "healthy"
        assert body["registered_at"] == (T0 + timedelta(seconds=1)).isoformat()
        assert body["last_heartbeat_at"] == T0.isoformat()
        assert body["running"] == ["task-1"]
        assert body["position"] == 1

    def test_an_agent_never_heard_has_no_last_heartbeat(
        self, health: AgentHealth, log: Log
    ) -> None:
        register(log)

        assert view(health).to_json()["last_heartbeat_at"] is None


class TestPositionWaitPast:
    async def test_returns_true_at_once_when_already_past(self) -> None:
        position = Position()
        position.advance(5)

        assert await position.wait_past(4, timeout=0.05) is True

    async def test_returns_false_when_the_timeout_passes_first(self) -> None:
        position = Position()
        position.advance(5)

        assert await position.wait_past(5, timeout=0.05) is False

    async def test_returns_false_for_a_zero_timeout(self) -> None:
        assert await Position().wait_past(0, timeout=0) is False

    async def test_returns_true_when_advanced_while_waiting(self) -> None:
        position = Position()
        waiter = asyncio.ensure_future(position.wait_past(2, timeout=30))
        await asyncio.sleep(0)
        position.advance(2)
        await asyncio.sleep(0)
        assert not waiter.done()

        position.advance(3)

        assert await waiter is True

    async def test_wait_for_is_reached_at_the_position_itself(self) -> None:
        position = Position()
        position.advance(7)

        assert await position.wait_for(7, timeout=0.05) is True
        assert await position.wait_for(8, timeout=0.05) is False

    def test_never_moves_backwards(self) -> None:
        position = Position()
        position.advance(5)
        position.advance(3)

        assert position.value == 5
