"""The Agent aggregate: the decisions it records and the commands it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from domain.agents.agent import ALIVE, DEAD, SUSPECT, Agent
from domain.errors import CommandRefused, ErrorCode

SERVICES: list[dict[str, Any]] = [{"name": "web", "address": "10.0.0.1", "port": 8080}]


def new_agent(agent_id: str = "agent-1") -> Agent:
    """A registered agent whose creation event has already been collected."""
    agent = Agent(agent_id, ["cpu", "gpu"], 4, {"zone": "eu-1"}, SERVICES)
    agent.collect_events()
    return agent


def event_names(agent: Agent) -> list[str]:
    return [type(e).__name__ for e in agent.collect_events()]


def assert_conflict(excinfo: pytest.ExceptionInfo[CommandRefused], agent: Agent) -> None:
    assert excinfo.value.code is ErrorCode.CONFLICT
    assert agent.id in excinfo.value.message


def suspect(agent: Agent) -> None:
    agent.suspect(agent.incarnation, 3.2, 3.0, 7)


def declare_dead(agent: Agent) -> None:
    agent.declare_dead(agent.incarnation, 5.1, 5.0, 7)


def deregister(agent: Agent) -> None:
    agent.deregister(agent.incarnation)


class TestRegister:
    def test_records_one_registered_event_with_the_declaration(self) -> None:
        agent = Agent("agent-1", ["cpu"], 2, {"zone": "eu-1"}, SERVICES)

        events = agent.collect_events()

        assert [type(e).__name__ for e in events] == ["Registered"]
        registered = events[0]
        assert registered.originator_id == "agent-1"
        assert registered.originator_version == 1
        state = vars(registered)
        assert state["agent_id"] == "agent-1"
        assert state["capabilities"] == ["cpu"]
        assert state["capacity"] == 2
        assert state["labels"] == {"zone": "eu-1"}
        assert state["services"] == SERVICES

    def test_the_aggregate_id_is_the_agent_id(self) -> None:
        assert Agent.create_id("agent-7") == "agent-7"
        assert new_agent("agent-7").id == "agent-7"

    def test_starts_at_incarnation_one_alive_and_healthy(self) -> None:
        agent = new_agent()

        assert agent.incarnation == 1
        assert agent.liveness == ALIVE
        assert agent.draining is False
        assert agent.left is False
        assert agent.status == "healthy"
        assert agent.capabilities == ["cpu", "gpu"]
        assert agent.capacity == 4
        assert agent.labels == {"zone": "eu-1"}
        assert agent.services == SERVICES

    def test_keeps_copies_of_the_declared_collections(self) -> None:
        capabilities = ["cpu"]
        labels = {"zone": "eu-1"}
        agent = Agent("agent-1", capabilities, 1, labels, [])

        capabilities.append("gpu")
        labels["zone"] = "us-1"

        assert agent.capabilities == ["cpu"]
        assert agent.labels == {"zone": "eu-1"}


class TestReregister:
    def test_records_reregistered_with_the_next_incarnation(self) -> None:
        agent = new_agent()

        agent.reregister(["tpu"], 9, {"zone": "us-1"}, [])

        events = agent.collect_events()
        assert [type(e).__name__ for e in events] == ["Reregistered"]
        assert vars(events[0])["incarnation"] == 2
        assert agent.incarnation == 2

    def test_each_reregistration_counts_one_more_incarnation(self) -> None:
        agent = new_agent()

        for _ in range(3):
            agent.reregister(["cpu"], 1, {}, [])

        assert agent.incarnation == 4

    def test_replaces_the_declaration(self) -> None:
        agent = new_agent()

        agent.reregister(["tpu"], 9, {"zone": "us-1"}, [])

        assert agent.capabilities == ["tpu"]
        assert agent.capacity == 9
        assert agent.labels == {"zone": "us-1"}
        assert agent.services == []

    @pytest.mark.parametrize(
        "before",
        [
            pytest.param([Agent.drain], id="draining"),
            pytest.param([suspect], id="suspect"),
            pytest.param([declare_dead], id="dead"),
            pytest.param([deregister], id="left"),
            pytest.param([Agent.drain, suspect, declare_dead], id="draining-then-dead"),
        ],
    )
    def test_resets_liveness_draining_and_left(self, before: list[Any]) -> None:
        agent = new_agent()
        for command in before:
            command(agent)

        agent.reregister(["cpu"], 1, {}, [])

        assert agent.liveness == ALIVE
        assert agent.draining is False
        assert agent.left is False
        assert agent.status == "healthy"


class TestDrain:
    def test_first_drain_records_drain_started_and_returns_true(self) -> None:
        agent = new_agent()

        assert agent.drain() is True

        events = agent.collect_events()
        assert [type(e).__name__ for e in events] == ["DrainStarted"]
        assert vars(events[0])["incarnation"] == 1
        assert agent.draining is True
        assert agent.status == "draining"

    def test_second_drain_returns_false_and_records_nothing(self) -> None:
        agent = new_agent()
        agent.drain()
        agent.collect_events()

        assert agent.drain() is False

        assert agent.collect_events() == []
        assert agent.draining is True

    def test_a_suspect_agent_can_be_drained(self) -> None:
        agent = new_agent()
        suspect(agent)
        agent.collect_events()

        assert agent.drain() is True
        assert event_names(agent) == ["DrainStarted"]

    def test_refuses_a_dead_agent(self) -> None:
        agent = new_agent()
        declare_dead(agent)
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.drain()

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.draining is False

    def test_refuses_an_agent_that_left(self) -> None:
        agent = new_agent()
        deregister(agent)
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.drain()

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []

    def test_refuses_an_agent_that_left_even_when_already_draining(self) -> None:
        agent = new_agent()
        agent.drain()
        deregister(agent)

        with pytest.raises(CommandRefused) as excinfo:
            agent.drain()

        assert_conflict(excinfo, agent)


class TestUndrain:
    def test_ends_a_drain_with_undrained(self) -> None:
        agent = new_agent()
        agent.drain()
        agent.collect_events()

        assert agent.undrain() is True

        events = agent.collect_events()
        assert [type(e).__name__ for e in events] == ["Undrained"]
        assert vars(events[0])["incarnation"] == 1
        assert agent.draining is False
        assert agent.status == "healthy"

    def test_an_agent_not_draining_records_nothing(self) -> None:
        agent = new_agent()

        assert agent.undrain() is False
        assert agent.collect_events() == []

    @pytest.mark.parametrize("end", [declare_dead, deregister], ids=["dead", "left"])
    def test_refuses_a_dead_agent_or_one_that_left(self, end: Any) -> None:
        agent = new_agent()
        agent.drain()
        end(agent)
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.undrain()

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []


class TestDeregister:
    def test_records_deregistered_and_returns_true(self) -> None:
        agent = new_agent()

        assert agent.deregister(1) is True

        events = agent.collect_events()
        assert [type(e).__name__ for e in events] == ["Deregistered"]
        assert vars(events[0])["incarnation"] == 1
        assert agent.left is True
        assert agent.status == "left"

    @pytest.mark.parametrize("incarnation", [0, 2, 99])
    def test_refuses_another_incarnation(self, incarnation: int) -> None:
        agent = new_agent()

        with pytest.raises(CommandRefused) as excinfo:
            agent.deregister(incarnation)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.left is False

    def test_refuses_an_old_incarnation_after_reregistration(self) -> None:
        agent = new_agent()
        agent.reregister(["cpu"], 1, {}, [])
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.deregister(1)

        assert_conflict(excinfo, agent)
        assert agent.left is False

    def test_second_call_returns_false_and_records_nothing(self) -> None:
        agent = new_agent()
        agent.deregister(1)
        agent.collect_events()

        assert agent.deregister(1) is False

        assert agent.collect_events() == []

    def test_old_incarnation_is_refused_even_after_the_agent_left(self) -> None:
        agent = new_agent()
        agent.reregister(["cpu"], 1, {}, [])
        agent.deregister(2)

        with pytest.raises(CommandRefused) as excinfo:
            agent.deregister(1)

        assert_conflict(excinfo, agent)


class TestSuspect:
    def test_records_suspected_with_its_evidence(self) -> None:
        agent = new_agent()

        agent.suspect(1, 3.25, 3.0, 41)

        events = agent.collect_events()
        assert [type(e).__name__ for e in events] == ["Suspected"]
        state = vars(events[0])
        assert state["incarnation"] == 1
        assert state["silence_s"] == 3.25
        assert state["suspect_after_s"] == 3.0
        assert state["last_heartbeat_seq"] == 41
        assert agent.liveness == SUSPECT
        assert agent.status == "suspect"

    @pytest.mark.parametrize("incarnation", [0, 2])
    def test_refuses_another_incarnation(self, incarnation: int) -> None:
        agent = new_agent()

        with pytest.raises(CommandRefused) as excinfo:
            agent.suspect(incarnation, 3.2, 3.0, 1)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.liveness == ALIVE

    def test_refuses_an_old_incarnation_after_reregistration(self) -> None:
        agent = new_agent()
        agent.reregister(["cpu"], 1, {}, [])
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.suspect(1, 3.2, 3.0, 1)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []

    @pytest.mark.parametrize(
        "before",
        [pytest.param(suspect, id="already-suspect"), pytest.param(declare_dead, id="dead")],
    )
    def test_refuses_an_agent_that_is_not_alive(self, before: Any) -> None:
        agent = new_agent()
        before(agent)
        liveness = agent.liveness
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.suspect(1, 3.2, 3.0, 1)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.liveness == liveness

    def test_refuses_an_agent_that_left(self) -> None:
        agent = new_agent()
        deregister(agent)
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.suspect(1, 3.2, 3.0, 1)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.liveness == ALIVE


class TestDeclareDead:
    def test_records_declared_dead_with_its_evidence(self) -> None:
        agent = new_agent()

        agent.declare_dead(1, 5.5, 5.0, 12)

        events = agent.collect_events()
        assert [type(e).__name__ for e in events] == ["DeclaredDead"]
        state = vars(events[0])
        assert state["incarnation"] == 1
        assert state["silence_s"] == 5.5
        assert state["dead_after_s"] == 5.0
        assert state["last_heartbeat_seq"] == 12
        assert agent.liveness == DEAD
        assert agent.status == "dead"

    def test_a_suspect_agent_can_be_declared_dead(self) -> None:
        agent = new_agent()
        suspect(agent)
        agent.collect_events()

        declare_dead(agent)

        assert event_names(agent) == ["DeclaredDead"]
        assert agent.liveness == DEAD

    @pytest.mark.parametrize("incarnation", [0, 2])
    def test_refuses_another_incarnation(self, incarnation: int) -> None:
        agent = new_agent()

        with pytest.raises(CommandRefused) as excinfo:
            agent.declare_dead(incarnation, 5.5, 5.0, 1)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.liveness == ALIVE

    def test_refuses_an_old_incarnation_after_reregistration(self) -> None:
        agent = new_agent()
        declare_dead(agent)
        agent.reregister(["cpu"], 1, {}, [])
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.declare_dead(1, 5.5, 5.0, 1)

        assert_conflict(excinfo, agent)
        assert agent.liveness == ALIVE

    def test_refuses_an_agent_already_dead(self) -> None:
        agent = new_agent()
        declare_dead(agent)
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            declare_dead(agent)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []

    def test_refuses_an_agent_that_left(self) -> None:
        agent = new_agent()
        deregister(agent)
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            declare_dead(agent)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.status == "left"


class TestRecover:
    def test_returns_a_suspect_agent_to_alive(self) -> None:
        agent = new_agent()
        suspect(agent)
        agent.collect_events()

        agent.recover(1, 8)

        events = agent.collect_events()
        assert [type(e).__name__ for e in events] == ["Recovered"]
        assert vars(events[0])["last_heartbeat_seq"] == 8
        assert agent.liveness == ALIVE
        assert agent.status == "healthy"

    def test_a_draining_agent_recovers_to_draining(self) -> None:
        agent = new_agent()
        agent.drain()
        suspect(agent)

        agent.recover(1, 8)

        assert agent.status == "draining"

    def test_refuses_another_incarnation(self) -> None:
        agent = new_agent()
        suspect(agent)
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.recover(2, 8)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.liveness == SUSPECT

    @pytest.mark.parametrize(
        "before",
        [pytest.param([], id="alive"), pytest.param([declare_dead], id="dead"),
         pytest.param([suspect, declare_dead], id="suspect-then-dead")],
    )
    def test_refuses_an_agent_that_is_not_suspect(self, before: list[Any]) -> None:
        agent = new_agent()
        for command in before:
            command(agent)
        liveness = agent.liveness
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.recover(1, 8)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []
        assert agent.liveness == liveness

    def test_refuses_an_agent_that_left(self) -> None:
        agent = new_agent()
        suspect(agent)
        deregister(agent)
        agent.collect_events()

        with pytest.raises(CommandRefused) as excinfo:
            agent.recover(1, 8)

        assert_conflict(excinfo, agent)
        assert agent.collect_events() == []


class TestStatus:
    @pytest.mark.parametrize(
        ("commands", "expected"),
        [
            ([], "healthy"),
            ([Agent.drain], "draining"),
            ([suspect], "suspect"),
            ([Agent.drain, suspect], "suspect"),
            ([declare_dead], "dead"),
            ([Agent.drain, declare_dead], "dead"),
            ([deregister], "left"),
            ([suspect, deregister], "left"),
            ([declare_dead, deregister], "left"),
            ([Agent.drain, deregister], "left"),
        ],
    )
    def test_status_shows_the_most_important_condition(
        self, commands: list[Any], expected: str
    ) -> None:
        agent = new_agent()
        for command in commands:
            command(agent)

        assert agent.status == expected


def full_history() -> Agent:
    agent = Agent("agent-9", ["cpu"], 2, {"zone": "eu-1"}, SERVICES)
    agent.drain()
    agent.suspect(1, 3.1, 3.0, 5)
    agent.recover(1, 6)
    agent.suspect(1, 3.2, 3.0, 6)
    agent.declare_dead(1, 5.0, 5.0, 6)
    agent.reregister(["gpu"], 8, {"zone": "us-2"}, [])
    agent.drain()
    agent.deregister(2)
    return agent


class TestReplay:
    def test_folding_the_collected_events_rebuilds_an_equal_agent(self) -> None:
        agent = full_history()
        events = agent.collect_events()

        rebuilt: Any = None
        for e in events:
            rebuilt = e.mutate(rebuilt)

        assert isinstance(rebuilt, Agent)
        assert rebuilt == agent
        assert vars(rebuilt) == vars(agent)
        assert rebuilt.version == len(events) == 9
        assert rebuilt.incarnation == 2
        assert rebuilt.status == "left"

    def test_every_prefix_of_the_history_replays_to_the_state_it_had(self) -> None:
        agent = Agent("agent-9", ["cpu"], 2, {}, [])
        commands: list[Any] = [
            Agent.drain, suspect, lambda a: a.recover(1, 3), declare_dead,
            lambda a: a.reregister(["gpu"], 1, {}, []), deregister,
        ]
        history = list(agent.collect_events())
        snapshots = [(agent.incarnation, agent.status, agent.version)]
        for command in commands:
            command(agent)
            history.extend(agent.collect_events())
            snapshots.append((agent.incarnation, agent.status, agent.version))

        rebuilt: Any = None
        replayed = []
        for e in history:
            rebuilt = e.mutate(rebuilt)
            replayed.append((rebuilt.incarnation, rebuilt.status, rebuilt.version))

        assert replayed == snapshots
